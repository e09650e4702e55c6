"""The capture node /dev/videoN: a normal single-planar V4L2 capture device."""

import errno
import mmap
import os
import time
from pathlib import Path

import pytest

from producer import v4l2
from producer.ioctl import ioctl
from producer.v4l2 import V4l2Ioctl
from vcam_helpers import Camera, Capture, dmabuf_count, wait_until, expect_errno, foreign_dmabuf, start_capture, stats

# every_kernel: also in the kernel tier of the lab's other kernels (make test)
pytestmark = [pytest.mark.guest, pytest.mark.every_kernel]

V4L2_CAP_EXT_PIX_FORMAT = 0x00200000  # added by the V4L2 core


@pytest.fixture
def cam():
    with Camera(nr_frames=3, width=64, height=48, label="Capture Test 1") as c:
        yield c


def test_querycap(cam):
    with Capture(cam.video) as cap:
        c = v4l2.querycap(cap.fd)
        assert c.driver == b"vcam"
        assert c.card == b"Capture Test 1"
        assert c.bus_info == f"platform:vcam-{cam.nr}".encode()
        assert c.device_caps & ~V4L2_CAP_EXT_PIX_FORMAT == v4l2.V4L2_CAP_VIDEO_CAPTURE | v4l2.V4L2_CAP_STREAMING
        assert c.capabilities & v4l2.V4L2_CAP_DEVICE_CAPS


def test_multiple_opens_only_owner_touches_queue(cam):
    with Capture(cam.video) as a, Capture(cam.video) as b:
        assert v4l2.g_fmt(b.fd).fmt.pix.width == 64
        a.reqbufs(2)
        expect_errno(errno.EBUSY, v4l2.reqbufs, b.fd, 2, v4l2.V4L2_MEMORY_MMAP)
        expect_errno(errno.EBUSY, v4l2.streamon, b.fd)
        a.streamon()
        # a third open while streaming still works and sees the format
        with Capture(cam.video) as c:
            assert v4l2.querycap(c.fd).driver == b"vcam"
        a.streamoff()


def test_enum_fmt_is_the_camera_format(cam):
    with Capture(cam.video) as cap:
        fmts = v4l2.enum_fmt(cap.fd)
        assert [f.pixelformat for f in fmts] == [v4l2.V4L2_PIX_FMT_YUYV]
        assert fmts[0].description


def test_try_and_s_fmt_return_the_camera_format(cam):
    with Capture(cam.video) as cap:
        f = v4l2.v4l2_format(type=v4l2.V4L2_BUF_TYPE_VIDEO_CAPTURE)
        f.fmt.pix.width, f.fmt.pix.height, f.fmt.pix.pixelformat = 1920, 1080, v4l2.V4L2_PIX_FMT_NV12
        v4l2.s_fmt(cap.fd, f, V4l2Ioctl.VIDIOC_TRY_FMT)
        assert (f.fmt.pix.width, f.fmt.pix.height, f.fmt.pix.pixelformat) == (64, 48, v4l2.V4L2_PIX_FMT_YUYV)
        f.fmt.pix.width = 1920
        v4l2.s_fmt(cap.fd, f)
        assert (f.fmt.pix.width, f.fmt.pix.bytesperline, f.fmt.pix.sizeimage) == (64, 128, 64 * 48 * 2)
        assert f.fmt.pix.field == v4l2.V4L2_FIELD_NONE


def test_format_fixed_while_streaming(cam):
    with Capture(cam.video) as cap:
        cap.reqbufs(2)
        cap.streamon()
        assert len(v4l2.enum_fmt(cap.fd)) == 1
        f = v4l2.g_fmt(cap.fd)
        v4l2.s_fmt(cap.fd, f)  # the same format is fine
        f.fmt.pix.width = 32
        expect_errno(errno.EBUSY, v4l2.s_fmt, cap.fd, f)
        f.fmt.pix.width, f.fmt.pix.pixelformat = 64, v4l2.V4L2_PIX_FMT_NV12
        expect_errno(errno.EBUSY, v4l2.s_fmt, cap.fd, f)
        cap.streamoff()


def test_enum_framesizes_and_intervals(cam):
    with Capture(cam.video) as cap:
        fs = v4l2.v4l2_frmsizeenum(index=0, pixel_format=v4l2.V4L2_PIX_FMT_YUYV)
        ioctl(cap.fd, V4l2Ioctl.VIDIOC_ENUM_FRAMESIZES, fs)
        assert fs.type == v4l2.V4L2_FRMSIZE_TYPE_DISCRETE
        assert (fs.discrete.width, fs.discrete.height) == (64, 48)
        fs.index = 1
        expect_errno(errno.EINVAL, ioctl, cap.fd, V4l2Ioctl.VIDIOC_ENUM_FRAMESIZES, fs)
        fs = v4l2.v4l2_frmsizeenum(index=0, pixel_format=v4l2.V4L2_PIX_FMT_NV12)
        expect_errno(errno.EINVAL, ioctl, cap.fd, V4l2Ioctl.VIDIOC_ENUM_FRAMESIZES, fs)

        fi = v4l2.v4l2_frmivalenum(index=0, pixel_format=v4l2.V4L2_PIX_FMT_YUYV, width=64, height=48)
        ioctl(cap.fd, V4l2Ioctl.VIDIOC_ENUM_FRAMEINTERVALS, fi)
        assert fi.type == v4l2.V4L2_FRMIVAL_TYPE_CONTINUOUS
        sw = fi.stepwise
        assert (sw.min.numerator, sw.min.denominator, sw.max.numerator, sw.max.denominator) == (1, 1000, 1, 1)
        fi.width = 32
        expect_errno(errno.EINVAL, ioctl, cap.fd, V4l2Ioctl.VIDIOC_ENUM_FRAMEINTERVALS, fi)


def test_parm_default_and_range(cam):
    with Capture(cam.video) as cap:
        p = v4l2.g_parm(cap.fd).parm.capture
        assert p.capability == v4l2.V4L2_CAP_TIMEPERFRAME
        assert (p.timeperframe.numerator, p.timeperframe.denominator) == (1, 30)
        # no producer yet: the requested rate is the nominal one, clamped
        for (num, den), want in {(1, 15): 15, (1, 5000): 1000, (10, 1): 1, (2, 0xFFFFFFFF): 1000,
                           (1001, 30000): 30, (0, 0): 30}.items():
            got = v4l2.s_parm(cap.fd, num, den).parm.capture.timeperframe
            assert (got.numerator, got.denominator) == (1, want)
            g = v4l2.g_parm(cap.fd).parm.capture.timeperframe
            assert (g.numerator, g.denominator) == (1, want)
        assert stats(cam.nr)["requested_fps"] == 30


def test_input(cam):
    with Capture(cam.video) as cap:
        inp = v4l2.enum_input(cap.fd, 0)
        assert inp.type == v4l2.V4L2_INPUT_TYPE_CAMERA and inp.name
        assert inp.status & v4l2.V4L2_IN_ST_NO_SIGNAL
        expect_errno(errno.EINVAL, v4l2.enum_input, cap.fd, 1)
        assert ioctl(cap.fd, V4l2Ioctl.VIDIOC_G_INPUT, v4l2.ctypes.c_int(7)).value == 0
        ioctl(cap.fd, V4l2Ioctl.VIDIOC_S_INPUT, v4l2.ctypes.c_int(0))
        expect_errno(errno.EINVAL, ioctl, cap.fd, V4l2Ioctl.VIDIOC_S_INPUT, v4l2.ctypes.c_int(1))
        cam.fill_and_queue(0, 1)
        assert not v4l2.enum_input(cap.fd, 0).status & v4l2.V4L2_IN_ST_NO_SIGNAL


@pytest.mark.parametrize("memory", [v4l2.V4L2_MEMORY_MMAP, v4l2.V4L2_MEMORY_USERPTR])
def test_sequence_restarts_at_each_streamon(cam, memory):
    with Capture(cam.video) as cap:
        for _ in range(2):
            start_capture(cap, 3, memory)
            seqs = []
            for n in range(3):
                cam.fill_and_queue(n, 0x40 + n)
                b = cap.dqbuf()
                seqs.append(b.sequence)
                assert cap.data(b) == bytes([0x40 + n]) * cam.size
            assert seqs == [0, 1, 2]
            cap.streamoff()
            for _ in range(3):
                cam.dequeue()


def test_producer_timestamp_on_capture_buffer(cam):
    with Capture(cam.video) as cap:
        cap.reqbufs(2)
        cap.qbuf(0)
        cap.streamon()
        ts = time.monotonic_ns() - 12_345_678_000
        cam.fill_and_queue(0, 7, timestamp=ts)
        b = cap.dqbuf()
        assert b.flags & v4l2.V4L2_BUF_FLAG_TIMESTAMP_MASK == v4l2.V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC
        assert b.timestamp_ns() == ts // 1000 * 1000
        assert cam.dequeue().timestamp == ts
        cap.streamoff()


def test_expbuf_exports_mmap_buffers(cam):
    """EXPBUF hands out an MMAP buffer's own memory as a DMA-BUF, which the
    producer may queue: the frame captured into buffer 1 is what was
    written into buffer 0's mapping."""
    with Capture(cam.video) as cap:
        cap.reqbufs(2)
        fd = v4l2.expbuf(cap.fd, 0)
        try:
            # a DMA-BUF (dma-buf's own file system and fdinfo) of the buffer's pages
            assert os.readlink(f"/proc/self/fd/{fd}").startswith("/dmabuf:")
            info = dict(line.split(":", 1) for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines())
            pages = -(-len(cap.maps[0]) // mmap.PAGESIZE) * mmap.PAGESIZE
            assert info["exp_name"].strip() and int(info["size"]) == pages, info
            cap.maps[0][: cam.size] = b"\x5a" * cam.size
            cam.ctl.queue(0, fd)
        finally:
            os.close(fd)
        cap.qbuf(1)
        cap.streamon()
        b = cap.dqbuf()
        assert b.index == 1 and b.bytesused == cam.size
        assert cap.data(b) == b"\x5a" * cam.size
        cap.streamoff()


def test_dmabuf_smaller_than_its_stated_length_is_refused_and_let_go(cam):
    """QBUF of a DMA-BUF smaller than the length the consumer states for it:
    EINVAL, the buffer is not queued, and the DMA-BUF is freed once its fd
    is closed. (vb2 itself keeps the reference when the memory allocator
    refuses the import, found by the fuzzer: vcam refuses it later, in
    buf_prepare, whose failure vb2 cleans up.)"""
    before = dmabuf_count()
    small = foreign_dmabuf(cam.size // 2)
    assert small.size < cam.size
    with Capture(cam.video) as cap:
        cap.reqbufs(1, v4l2.V4L2_MEMORY_DMABUF)
        for _ in range(3):
            expect_errno(errno.EINVAL, cap.qbuf, 0, small.fd, cam.size)
        big = foreign_dmabuf(cam.size)
        cap.qbuf(0, big.fd, cam.size)  # the buffer is still usable
        cap.reqbufs(0, v4l2.V4L2_MEMORY_DMABUF)
    small.close()
    big.close()
    assert wait_until(lambda: dmabuf_count() == before, 5, "the DMA-BUFs to be freed")
