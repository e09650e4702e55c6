"""The vcam control node /dev/vcam: typed free functions and a thin wrapper.

    with Control() as ctl:
        ctl.create("My Camera", 640, 480, V4L2_PIX_FMT_YUYV, nr_frames=4)
        ctl.queue(index=0, fd=dmabuf_fd)
        done = ctl.dequeue()
"""

import ctypes
import mmap
import os

from . import uapi
from .ioctl import ioctl
from .uapi import VcamIoctl

# VCAM_CONTROL_NODE points tools at another control node (tests use a missing one).
CONTROL_NODE = os.environ.get("VCAM_CONTROL_NODE", "/dev/vcam")


def create(fd: int, req: uapi.vcam_ioc_create) -> uapi.vcam_ioc_create:
    return ioctl(fd, VcamIoctl.VCAM_IOC_CREATE, req)


def queue(fd: int, req: uapi.vcam_ioc_queue) -> None:
    ioctl(fd, VcamIoctl.VCAM_IOC_QUEUE, req)


def dequeue(fd: int) -> uapi.vcam_ioc_dequeue:
    return ioctl(fd, VcamIoctl.VCAM_IOC_DEQUEUE, uapi.vcam_ioc_dequeue())


def status(fd: int) -> int:
    return ioctl(fd, VcamIoctl.VCAM_IOC_STATUS, ctypes.c_uint64()).value


def wait(fd: int, mask: int) -> int:
    return ioctl(fd, VcamIoctl.VCAM_IOC_WAIT, uapi.vcam_ioc_wait(mask=mask)).status


def export(fd: int, index: int) -> int:
    """A new (close-on-exec) DMA-BUF fd of slot index's driver-allocated buffer."""
    return ioctl(fd, VcamIoctl.VCAM_IOC_EXPORT, uapi.vcam_ioc_export(index=index, flags=os.O_CLOEXEC)).fd


class Control:
    """One open file of /dev/vcam, i.e. one camera once created."""

    def __init__(self, path: str = CONTROL_NODE, nonblock: bool = False):
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_NONBLOCK if nonblock else 0)
        self.fd = os.open(path, flags)
        self.device_nr: int | None = None
        self.frames: list[uapi.vcam_frame] = []
        # Keep the label buffer alive as long as the request refers to it.
        self._label = None

    def create(
        self,
        label: str | bytes = "vcam test",
        width: int = 0,
        height: int = 0,
        pixelformat: int = 0,
        nr_frames: int = 4,
        colorspace: int = 0,
        bytesperline: int = 0,
        **raw,
    ) -> uapi.vcam_ioc_create:
        """VCAM_IOC_CREATE. Keyword arguments in raw override struct fields."""
        if isinstance(label, str):
            label = label.encode()
        self._label = ctypes.create_string_buffer(label)
        frames = (uapi.vcam_frame * max(nr_frames, 1))()
        req = uapi.vcam_ioc_create(
            device_name=ctypes.addressof(self._label),
            width=width,
            height=height,
            pixelformat=pixelformat,
            colorspace=colorspace,
            bytesperline=bytesperline,
            nr_frames=nr_frames,
            frames=ctypes.addressof(frames),
        )
        for key, value in raw.items():
            setattr(req, key, value)
        create(self.fd, req)
        self.device_nr = req.device_nr
        self.frames = list(frames)[:nr_frames]
        return req

    @property
    def video_path(self) -> str:
        return f"/dev/video{self.device_nr}"

    @property
    def frame_size(self) -> int:
        return self.frames[0].length

    def queue(self, index: int, fd: int, length: int = 0, timestamp: int = 0, reserved: int = 0) -> None:
        queue(
            self.fd,
            uapi.vcam_ioc_queue(fd=fd & 0xFFFFFFFF, index=index, length=length, reserved=reserved, timestamp=timestamp),
        )

    @property
    def slot_stride(self) -> int:
        """Offset between the slots' driver-allocated buffers in mmap()."""
        return (self.frame_size + mmap.PAGESIZE - 1) & ~(mmap.PAGESIZE - 1)

    def map_slot(self, index: int) -> mmap.mmap:
        """Map the slot's driver-allocated buffer (for VCAM_QUEUE_FD_DRIVER),
        the fallback where no DMA-BUF allocator exists."""
        return mmap.mmap(self.fd, self.slot_stride, mmap.MAP_SHARED,
                         mmap.PROT_READ | mmap.PROT_WRITE, offset=index * self.slot_stride)

    def queue_driver_buffer(self, index: int, length: int = 0, timestamp: int = 0) -> None:
        self.queue(index, uapi.VCAM_QUEUE_FD_DRIVER, length=length, timestamp=timestamp)

    def export(self, index: int) -> int:
        """VCAM_IOC_EXPORT: slot index's driver-allocated buffer as a DMA-BUF fd
        (the memory map_slot() maps and queue_driver_buffer() queues)."""
        return export(self.fd, index)

    def dequeue(self) -> uapi.vcam_ioc_dequeue:
        return dequeue(self.fd)

    def status(self) -> int:
        return status(self.fd)

    def wait(self, mask: int) -> int:
        return wait(self.fd, mask)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
