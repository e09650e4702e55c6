"""A V4L2 capture consumer on /dev/videoN, with MMAP, USERPTR or DMABUF
memory. The building block of the reference consumer (producer/consume.py)
and of the driver's guest tests."""

import ctypes
import mmap
import os
import select
import time

from . import v4l2

CAP = v4l2.V4L2_BUF_TYPE_VIDEO_CAPTURE

MEMORY = {
    "mmap": v4l2.V4L2_MEMORY_MMAP,
    "userptr": v4l2.V4L2_MEMORY_USERPTR,
    "dmabuf": v4l2.V4L2_MEMORY_DMABUF,
}


class Capture:
    """A V4L2 capture consumer on /dev/videoN."""

    def __init__(self, path: str, nonblock: bool = True):
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | (os.O_NONBLOCK if nonblock else 0))
        self.memory = v4l2.V4L2_MEMORY_MMAP
        self.maps: list[mmap.mmap] = []
        self.userptrs: list = []
        self.count = 0

    def fmt(self) -> v4l2.v4l2_pix_format:
        return v4l2.g_fmt(self.fd).fmt.pix

    def reqbufs(self, count: int, memory: int = v4l2.V4L2_MEMORY_MMAP) -> int:
        self.memory = memory
        self.count = v4l2.reqbufs(self.fd, count, memory).count
        if memory == v4l2.V4L2_MEMORY_MMAP:
            for m in self.maps:
                m.close()
            self.maps = []
            for i in range(self.count):
                b = v4l2.querybuf(self.fd, i)
                self.maps.append(mmap.mmap(self.fd, b.length, mmap.MAP_SHARED,
                                           mmap.PROT_READ | mmap.PROT_WRITE, offset=b.m.offset))
        elif memory == v4l2.V4L2_MEMORY_USERPTR:
            size = self.fmt().sizeimage
            self.userptrs = [mmap.mmap(-1, size) for _ in range(self.count)]
        return self.count

    def qbuf(self, index: int, dmabuf_fd: int | None = None, length: int = 0) -> None:
        buf = v4l2.v4l2_buffer(index=index, type=CAP, memory=self.memory)
        if self.memory == v4l2.V4L2_MEMORY_DMABUF:
            buf.m.fd = dmabuf_fd
            buf.length = length
        elif self.memory == v4l2.V4L2_MEMORY_USERPTR:
            m = self.userptrs[index]
            buf.m.userptr = ctypes.addressof(ctypes.c_char.from_buffer(m))
            buf.length = len(m)
        v4l2.qbuf(self.fd, buf)

    def dqbuf(self, timeout: float = 10.0, stop_fd: int | None = None) -> v4l2.v4l2_buffer | None:
        """The next filled buffer; None as soon as `stop_fd` is readable
        (a stop request) while waiting for one."""
        deadline = time.monotonic() + timeout
        waited = [self.fd] if stop_fd is None else [self.fd, stop_fd]
        while True:
            try:
                return v4l2.dqbuf(self.fd, self.memory)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no capture buffer within %.1fs" % timeout)
                ready, _, _ = select.select(waited, [], [], left)
                if stop_fd is not None and stop_fd in ready:
                    return None

    def data(self, buf: v4l2.v4l2_buffer) -> bytes:
        if self.memory == v4l2.V4L2_MEMORY_MMAP:
            return bytes(self.maps[buf.index][: buf.bytesused])
        if self.memory == v4l2.V4L2_MEMORY_USERPTR:
            return bytes(self.userptrs[buf.index][: buf.bytesused])
        raise ValueError("read DMABUF buffers through their DmaBuf")

    def streamon(self) -> None:
        v4l2.streamon(self.fd)

    def streamoff(self) -> None:
        v4l2.streamoff(self.fd)

    def view(self, buf: v4l2.v4l2_buffer) -> memoryview:
        """The payload of a dequeued MMAP or USERPTR buffer, without copying."""
        maps = self.maps if self.memory == v4l2.V4L2_MEMORY_MMAP else self.userptrs
        return memoryview(maps[buf.index])[: buf.bytesused]

    def close(self) -> None:
        for m in self.maps + self.userptrs:
            try:
                m.close()
            except BufferError:
                pass
        self.maps = []
        self.userptrs = []
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


