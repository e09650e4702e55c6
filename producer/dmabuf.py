"""DMA-BUF allocation and CPU access.

Allocates from the DMA-BUF system heap (/dev/dma_heap/system) when there is
one, else from udmabuf over a sealed memfd. DmaBuf wraps the fd with
mmap-based reads and writes bracketed by DMA_BUF_IOCTL_SYNC.
"""

import contextlib
import ctypes
import enum
import errno
import mmap
import os
import fcntl

from .ioctl import IOW, IOWR, ioctl

DMA_HEAP_SYSTEM = "/dev/dma_heap/system"
UDMABUF_DEV = "/dev/udmabuf"


class dma_heap_allocation_data(ctypes.Structure):
    _fields_ = [
        ("len", ctypes.c_uint64),
        ("fd", ctypes.c_uint32),
        ("fd_flags", ctypes.c_uint32),
        ("heap_flags", ctypes.c_uint64),
    ]


class udmabuf_create(ctypes.Structure):
    _fields_ = [
        ("memfd", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("offset", ctypes.c_uint64),
        ("size", ctypes.c_uint64),
    ]


class dma_buf_sync(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64)]


class DmaBufIoctl(enum.IntEnum):
    DMA_HEAP_IOCTL_ALLOC = IOWR("H", 0x0, dma_heap_allocation_data)
    UDMABUF_CREATE = IOW("u", 0x42, udmabuf_create)
    DMA_BUF_IOCTL_SYNC = IOW("b", 0, dma_buf_sync)


DMA_HEAP_IOCTL_ALLOC = DmaBufIoctl.DMA_HEAP_IOCTL_ALLOC
UDMABUF_CREATE = DmaBufIoctl.UDMABUF_CREATE
DMA_BUF_IOCTL_SYNC = DmaBufIoctl.DMA_BUF_IOCTL_SYNC
STRUCTS = (dma_heap_allocation_data, udmabuf_create, dma_buf_sync)

UDMABUF_FLAGS_CLOEXEC = 0x01

DMA_BUF_SYNC_READ = 1 << 0
DMA_BUF_SYNC_WRITE = 2 << 0
DMA_BUF_SYNC_RW = DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE
DMA_BUF_SYNC_START = 0 << 2
DMA_BUF_SYNC_END = 1 << 2

F_ADD_SEALS = 1033
F_SEAL_SHRINK = 0x0002


def page_align(size: int) -> int:
    return (size + mmap.PAGESIZE - 1) & ~(mmap.PAGESIZE - 1)


def alloc_heap(size: int, heap: str = DMA_HEAP_SYSTEM) -> int:
    """A DMA-BUF fd of page_align(size) bytes from a DMA-BUF heap."""
    hfd = os.open(heap, os.O_RDWR | os.O_CLOEXEC)
    try:
        data = dma_heap_allocation_data(len=page_align(size), fd_flags=os.O_RDWR | os.O_CLOEXEC)
        ioctl(hfd, DMA_HEAP_IOCTL_ALLOC, data)
        return data.fd
    finally:
        os.close(hfd)


def alloc_udmabuf(size: int) -> int:
    """A DMA-BUF fd of page_align(size) bytes from udmabuf over a sealed memfd."""
    size = page_align(size)
    mfd = os.memfd_create("vcam-frame", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(mfd, size)
        fcntl.fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK)
        ufd = os.open(UDMABUF_DEV, os.O_RDWR | os.O_CLOEXEC)
        try:
            req = udmabuf_create(memfd=mfd, flags=UDMABUF_FLAGS_CLOEXEC, offset=0, size=size)
            return _udmabuf_ioctl(ufd, req)
        finally:
            os.close(ufd)
    finally:
        os.close(mfd)


def _udmabuf_ioctl(ufd: int, req: udmabuf_create) -> int:
    # UDMABUF_CREATE returns the new fd as the ioctl's return value.
    return fcntl.ioctl(ufd, UDMABUF_CREATE, req)


class NoAllocatorError(OSError):
    """Neither DMA-BUF allocator exists on this machine."""


# The system's DMA-BUF allocators, in the order alloc() tries them: name,
# device, the kernel option that makes it.
ALLOCATORS = (("dma-heap", DMA_HEAP_SYSTEM, "CONFIG_DMABUF_HEAPS_SYSTEM"),
              ("udmabuf", UDMABUF_DEV, "CONFIG_UDMABUF"))


def system_allocator() -> str | None:
    """Which DMA-BUF allocator alloc() uses here: "dma-heap", "udmabuf" or
    None. One this process may not open does not count (Debian 12 gives the
    system heap to root alone and udmabuf to group kvm)."""
    for name, path, _ in ALLOCATORS:
        if os.access(path, os.R_OK | os.W_OK):
            return name
    return None


def no_allocator_message() -> str:
    """Why system_allocator() found none, for each allocator."""
    reasons = [f"{path} is not open to this user" if os.path.exists(path) else f"no {path} ({config})"
               for _, path, config in ALLOCATORS]
    return "no DMA-BUF allocator: " + ", ".join(reasons)


def alloc(size: int) -> int:
    """A DMA-BUF fd: the system heap if this process may use it, else
    udmabuf, else NoAllocatorError saying why neither."""
    which = system_allocator()
    if which == "dma-heap":
        return alloc_heap(size)
    if which == "udmabuf":
        return alloc_udmabuf(size)
    raise NoAllocatorError(errno.ENODEV, no_allocator_message())


def sync(fd: int, flags: int) -> None:
    ioctl(fd, DMA_BUF_IOCTL_SYNC, dma_buf_sync(flags=flags))


class DmaBuf:
    """A DMA-BUF fd with CPU access through mmap."""

    def __init__(self, size: int, fd: int | None = None, allocator=alloc):
        self.size = page_align(size)
        self.fd = allocator(size) if fd is None else fd
        self._map: mmap.mmap | None = None

    @property
    def map(self) -> mmap.mmap:
        if self._map is None:
            self._map = mmap.mmap(self.fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        return self._map

    @contextlib.contextmanager
    def cpu_access(self, write: bool = True):
        """The mapping as a memoryview, bracketed by DMA_BUF_IOCTL_SYNC
        start/end; the view is released on leaving."""
        flags = DMA_BUF_SYNC_WRITE if write else DMA_BUF_SYNC_READ
        sync(self.fd, DMA_BUF_SYNC_START | flags)
        try:
            with memoryview(self.map) as view:
                yield view
        finally:
            sync(self.fd, DMA_BUF_SYNC_END | flags)

    def write(self, data, offset: int = 0) -> None:
        sync(self.fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE)
        try:
            self.map[offset : offset + len(data)] = data
        finally:
            sync(self.fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE)

    def fill(self, byte: int, length: int | None = None) -> None:
        length = self.size if length is None else length
        self.write(bytes([byte]) * length)

    def read(self, length: int | None = None, offset: int = 0) -> bytes:
        length = self.size - offset if length is None else length
        sync(self.fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ)
        try:
            return bytes(self.map[offset : offset + length])
        finally:
            sync(self.fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ)

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass  # a view is still alive; the mapping goes with it
            self._map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
