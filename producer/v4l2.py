"""The subset of the V4L2 uAPI (linux/videodev2.h) that vcam needs.

Structure and constant names are the kernel's. 64-bit layouts (the
structures holding a struct timeval or a pointer differ on 32-bit).
"""

import ctypes
import enum
import errno

from .ioctl import IOR, IOW, IOWR, ioctl


def fourcc(code: str) -> int:
    a, b, c, d = (ord(ch) for ch in code)
    return a | (b << 8) | (c << 16) | (d << 24)


def fourcc_str(value: int) -> str:
    return "".join(chr((value >> s) & 0xFF) for s in (0, 8, 16, 24))


V4L2_PIX_FMT_YUYV = fourcc("YUYV")
V4L2_PIX_FMT_UYVY = fourcc("UYVY")
V4L2_PIX_FMT_NV12 = fourcc("NV12")
V4L2_PIX_FMT_YUV420 = fourcc("YU12")
V4L2_PIX_FMT_MJPEG = fourcc("MJPG")
V4L2_PIX_FMT_RGB24 = fourcc("RGB3")
V4L2_PIX_FMT_BGR24 = fourcc("BGR3")
V4L2_PIX_FMT_XRGB32 = fourcc("BX24")
V4L2_PIX_FMT_GREY = fourcc("GREY")

V4L2_BUF_TYPE_VIDEO_CAPTURE = 1
V4L2_BUF_TYPE_VIDEO_OUTPUT = 2

V4L2_MEMORY_MMAP = 1
V4L2_MEMORY_USERPTR = 2
V4L2_MEMORY_DMABUF = 4

V4L2_FIELD_NONE = 1

V4L2_CAP_VIDEO_CAPTURE = 0x00000001
V4L2_CAP_STREAMING = 0x04000000
V4L2_CAP_READWRITE = 0x01000000
V4L2_CAP_DEVICE_CAPS = 0x80000000
V4L2_CAP_TIMEPERFRAME = 0x1000

V4L2_BUF_FLAG_MAPPED = 0x00000001
V4L2_BUF_FLAG_QUEUED = 0x00000002
V4L2_BUF_FLAG_DONE = 0x00000004
V4L2_BUF_FLAG_ERROR = 0x00000040
V4L2_BUF_FLAG_TIMESTAMP_MASK = 0x0000E000
V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC = 0x00002000
V4L2_BUF_FLAG_TIMESTAMP_COPY = 0x00004000

V4L2_COLORSPACE_SRGB = 8
V4L2_COLORSPACE_REC709 = 3

V4L2_FRMSIZE_TYPE_DISCRETE = 1
V4L2_FRMIVAL_TYPE_DISCRETE = 1
V4L2_FRMIVAL_TYPE_CONTINUOUS = 2
V4L2_FRMIVAL_TYPE_STEPWISE = 3

V4L2_INPUT_TYPE_CAMERA = 2
V4L2_IN_ST_NO_SIGNAL = 0x00000002


class v4l2_capability(ctypes.Structure):
    _fields_ = [
        ("driver", ctypes.c_char * 16),
        ("card", ctypes.c_char * 32),
        ("bus_info", ctypes.c_char * 32),
        ("version", ctypes.c_uint32),
        ("capabilities", ctypes.c_uint32),
        ("device_caps", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 3),
    ]


class v4l2_fmtdesc(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("description", ctypes.c_char * 32),
        ("pixelformat", ctypes.c_uint32),
        ("mbus_code", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 3),
    ]


class v4l2_pix_format(ctypes.Structure):
    _fields_ = [
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("pixelformat", ctypes.c_uint32),
        ("field", ctypes.c_uint32),
        ("bytesperline", ctypes.c_uint32),
        ("sizeimage", ctypes.c_uint32),
        ("colorspace", ctypes.c_uint32),
        ("priv", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("ycbcr_enc", ctypes.c_uint32),
        ("quantization", ctypes.c_uint32),
        ("xfer_func", ctypes.c_uint32),
    ]


class _v4l2_format_fmt(ctypes.Union):
    _fields_ = [
        ("pix", v4l2_pix_format),
        ("raw_data", ctypes.c_uint8 * 200),
        ("_align", ctypes.c_void_p),  # v4l2_window holds pointers
    ]


class v4l2_format(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("fmt", _v4l2_format_fmt),
    ]


class v4l2_fract(ctypes.Structure):
    _fields_ = [
        ("numerator", ctypes.c_uint32),
        ("denominator", ctypes.c_uint32),
    ]


class v4l2_captureparm(ctypes.Structure):
    _fields_ = [
        ("capability", ctypes.c_uint32),
        ("capturemode", ctypes.c_uint32),
        ("timeperframe", v4l2_fract),
        ("extendedmode", ctypes.c_uint32),
        ("readbuffers", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 4),
    ]


class _v4l2_streamparm_parm(ctypes.Union):
    _fields_ = [
        ("capture", v4l2_captureparm),
        ("raw_data", ctypes.c_uint8 * 200),
    ]


class v4l2_streamparm(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("parm", _v4l2_streamparm_parm),
    ]


class v4l2_frmsize_discrete(ctypes.Structure):
    _fields_ = [("width", ctypes.c_uint32), ("height", ctypes.c_uint32)]


class v4l2_frmsize_stepwise(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint32)
        for name in ("min_width", "max_width", "step_width", "min_height", "max_height", "step_height")
    ]


class _v4l2_frmsize_union(ctypes.Union):
    _fields_ = [("discrete", v4l2_frmsize_discrete), ("stepwise", v4l2_frmsize_stepwise)]


class v4l2_frmsizeenum(ctypes.Structure):
    _anonymous_ = ("u",)
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("pixel_format", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("u", _v4l2_frmsize_union),
        ("reserved", ctypes.c_uint32 * 2),
    ]


class v4l2_frmival_stepwise(ctypes.Structure):
    _fields_ = [("min", v4l2_fract), ("max", v4l2_fract), ("step", v4l2_fract)]


class _v4l2_frmival_union(ctypes.Union):
    _fields_ = [("discrete", v4l2_fract), ("stepwise", v4l2_frmival_stepwise)]


class v4l2_frmivalenum(ctypes.Structure):
    _anonymous_ = ("u",)
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("pixel_format", ctypes.c_uint32),
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("u", _v4l2_frmival_union),
        ("reserved", ctypes.c_uint32 * 2),
    ]


class v4l2_input(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("name", ctypes.c_char * 32),
        ("type", ctypes.c_uint32),
        ("audioset", ctypes.c_uint32),
        ("tuner", ctypes.c_uint32),
        ("std", ctypes.c_uint64),
        ("status", ctypes.c_uint32),
        ("capabilities", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 3),
    ]


class v4l2_requestbuffers(ctypes.Structure):
    _fields_ = [
        ("count", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("memory", ctypes.c_uint32),
        ("capabilities", ctypes.c_uint32),
        ("flags", ctypes.c_uint8),
        ("reserved", ctypes.c_uint8 * 3),
    ]


class timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class v4l2_timecode(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("frames", ctypes.c_uint8),
        ("seconds", ctypes.c_uint8),
        ("minutes", ctypes.c_uint8),
        ("hours", ctypes.c_uint8),
        ("userbits", ctypes.c_uint8 * 4),
    ]


class _v4l2_buffer_m(ctypes.Union):
    _fields_ = [
        ("offset", ctypes.c_uint32),
        ("userptr", ctypes.c_ulong),
        ("planes", ctypes.c_void_p),
        ("fd", ctypes.c_int32),
    ]


class v4l2_buffer(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("bytesused", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("field", ctypes.c_uint32),
        ("timestamp", timeval),
        ("timecode", v4l2_timecode),
        ("sequence", ctypes.c_uint32),
        ("memory", ctypes.c_uint32),
        ("m", _v4l2_buffer_m),
        ("length", ctypes.c_uint32),
        ("reserved2", ctypes.c_uint32),
        ("request_fd", ctypes.c_int32),
    ]

    def timestamp_ns(self) -> int:
        return self.timestamp.tv_sec * 1_000_000_000 + self.timestamp.tv_usec * 1000


class v4l2_exportbuffer(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("index", ctypes.c_uint32),
        ("plane", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("fd", ctypes.c_int32),
        ("reserved", ctypes.c_uint32 * 11),
    ]


class V4l2Ioctl(enum.IntEnum):
    VIDIOC_QUERYCAP = IOR("V", 0, v4l2_capability)
    VIDIOC_ENUM_FMT = IOWR("V", 2, v4l2_fmtdesc)
    VIDIOC_G_FMT = IOWR("V", 4, v4l2_format)
    VIDIOC_S_FMT = IOWR("V", 5, v4l2_format)
    VIDIOC_REQBUFS = IOWR("V", 8, v4l2_requestbuffers)
    VIDIOC_QUERYBUF = IOWR("V", 9, v4l2_buffer)
    VIDIOC_QBUF = IOWR("V", 15, v4l2_buffer)
    VIDIOC_EXPBUF = IOWR("V", 16, v4l2_exportbuffer)
    VIDIOC_DQBUF = IOWR("V", 17, v4l2_buffer)
    VIDIOC_STREAMON = IOW("V", 18, ctypes.c_int)
    VIDIOC_STREAMOFF = IOW("V", 19, ctypes.c_int)
    VIDIOC_G_PARM = IOWR("V", 21, v4l2_streamparm)
    VIDIOC_S_PARM = IOWR("V", 22, v4l2_streamparm)
    VIDIOC_ENUMINPUT = IOWR("V", 26, v4l2_input)
    VIDIOC_G_INPUT = IOR("V", 38, ctypes.c_int)
    VIDIOC_S_INPUT = IOWR("V", 39, ctypes.c_int)
    VIDIOC_TRY_FMT = IOWR("V", 64, v4l2_format)
    VIDIOC_ENUM_FRAMESIZES = IOWR("V", 74, v4l2_frmsizeenum)
    VIDIOC_ENUM_FRAMEINTERVALS = IOWR("V", 75, v4l2_frmivalenum)


STRUCTS = (v4l2_capability, v4l2_fmtdesc, v4l2_pix_format, v4l2_format, v4l2_fract, v4l2_captureparm,
           v4l2_streamparm, v4l2_frmsize_discrete, v4l2_frmsize_stepwise, v4l2_frmsizeenum,
           v4l2_frmival_stepwise, v4l2_frmivalenum, v4l2_input, v4l2_requestbuffers, v4l2_timecode,
           v4l2_buffer, v4l2_exportbuffer)


# --- typed free functions -------------------------------------------------


def querycap(fd: int) -> v4l2_capability:
    return ioctl(fd, V4l2Ioctl.VIDIOC_QUERYCAP, v4l2_capability())


def enum_fmt(fd: int, buf_type: int = V4L2_BUF_TYPE_VIDEO_CAPTURE) -> list[v4l2_fmtdesc]:
    """All formats; enumeration ends on EINVAL."""
    out = []
    while True:
        desc = v4l2_fmtdesc(index=len(out), type=buf_type)
        try:
            ioctl(fd, V4l2Ioctl.VIDIOC_ENUM_FMT, desc)
        except OSError as e:
            if e.errno == errno.EINVAL:
                return out
            raise
        out.append(desc)


def g_fmt(fd: int, buf_type: int = V4L2_BUF_TYPE_VIDEO_CAPTURE) -> v4l2_format:
    return ioctl(fd, V4l2Ioctl.VIDIOC_G_FMT, v4l2_format(type=buf_type))


def s_fmt(fd: int, fmt: v4l2_format, request=V4l2Ioctl.VIDIOC_S_FMT) -> v4l2_format:
    return ioctl(fd, request, fmt)


def g_parm(fd: int) -> v4l2_streamparm:
    return ioctl(fd, V4l2Ioctl.VIDIOC_G_PARM, v4l2_streamparm(type=V4L2_BUF_TYPE_VIDEO_CAPTURE))


def s_parm(fd: int, numerator: int, denominator: int) -> v4l2_streamparm:
    parm = v4l2_streamparm(type=V4L2_BUF_TYPE_VIDEO_CAPTURE)
    parm.parm.capture.timeperframe.numerator = numerator
    parm.parm.capture.timeperframe.denominator = denominator
    return ioctl(fd, V4l2Ioctl.VIDIOC_S_PARM, parm)


def enum_input(fd: int, index: int = 0) -> v4l2_input:
    return ioctl(fd, V4l2Ioctl.VIDIOC_ENUMINPUT, v4l2_input(index=index))


def reqbufs(fd: int, count: int, memory: int, buf_type: int = V4L2_BUF_TYPE_VIDEO_CAPTURE) -> v4l2_requestbuffers:
    return ioctl(fd, V4l2Ioctl.VIDIOC_REQBUFS, v4l2_requestbuffers(count=count, type=buf_type, memory=memory))


def querybuf(fd: int, index: int, memory: int = V4L2_MEMORY_MMAP) -> v4l2_buffer:
    return ioctl(fd, V4l2Ioctl.VIDIOC_QUERYBUF, v4l2_buffer(index=index, type=V4L2_BUF_TYPE_VIDEO_CAPTURE, memory=memory))


def qbuf(fd: int, buf: v4l2_buffer) -> v4l2_buffer:
    return ioctl(fd, V4l2Ioctl.VIDIOC_QBUF, buf)


def dqbuf(fd: int, memory: int) -> v4l2_buffer:
    return ioctl(fd, V4l2Ioctl.VIDIOC_DQBUF, v4l2_buffer(type=V4L2_BUF_TYPE_VIDEO_CAPTURE, memory=memory))


def expbuf(fd: int, index: int, flags: int = 0o2000002) -> int:
    """Export an MMAP buffer as a DMA-BUF fd (default flags O_RDWR|O_CLOEXEC)."""
    exp = v4l2_exportbuffer(type=V4L2_BUF_TYPE_VIDEO_CAPTURE, index=index, flags=flags)
    return ioctl(fd, V4l2Ioctl.VIDIOC_EXPBUF, exp).fd


def streamon(fd: int, buf_type: int = V4L2_BUF_TYPE_VIDEO_CAPTURE) -> None:
    ioctl(fd, V4l2Ioctl.VIDIOC_STREAMON, ctypes.c_int(buf_type))


def streamoff(fd: int, buf_type: int = V4L2_BUF_TYPE_VIDEO_CAPTURE) -> None:
    ioctl(fd, V4l2Ioctl.VIDIOC_STREAMOFF, ctypes.c_int(buf_type))
