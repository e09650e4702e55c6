"""The Linux ioctl number encoding (asm-generic/ioctl.h), written once.

    _IOC(dir, type, nr, size)  and  IO / IOR / IOW / IOWR taking a ctypes type

Numbers are the generic layout used by x86, arm and most others:
nr 8 bits, type 8 bits, size 14 bits, direction 2 bits.
"""

import ctypes
import fcntl

_IOC_NRBITS = 8
_IOC_TYPEBITS = 8
_IOC_SIZEBITS = 14
_IOC_DIRBITS = 2

_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS

IOC_NONE = 0
IOC_WRITE = 1
IOC_READ = 2


def _IOC(direction: int, type_: str | int, nr: int, size: int) -> int:
    if isinstance(type_, str):
        type_ = ord(type_)
    if size >= 1 << _IOC_SIZEBITS:
        raise ValueError(f"ioctl argument too large: {size} bytes")
    return (
        (direction << _IOC_DIRSHIFT)
        | (type_ << _IOC_TYPESHIFT)
        | (nr << _IOC_NRSHIFT)
        | (size << _IOC_SIZESHIFT)
    )


def IO(type_: str | int, nr: int) -> int:
    return _IOC(IOC_NONE, type_, nr, 0)


def IOR(type_: str | int, nr: int, ctype) -> int:
    return _IOC(IOC_READ, type_, nr, ctypes.sizeof(ctype))


def IOW(type_: str | int, nr: int, ctype) -> int:
    return _IOC(IOC_WRITE, type_, nr, ctypes.sizeof(ctype))


def IOWR(type_: str | int, nr: int, ctype) -> int:
    return _IOC(IOC_READ | IOC_WRITE, type_, nr, ctypes.sizeof(ctype))


def ioctl(fd: int, request: int, arg=None):
    """ioctl(2) with a ctypes structure (updated in place) or an int.

    Raises OSError with the kernel's errno; returns the structure (or the
    int result when arg is None or an int).
    """
    if arg is None:
        return fcntl.ioctl(fd, request, 0)
    if isinstance(arg, int):
        return fcntl.ioctl(fd, request, arg)
    fcntl.ioctl(fd, request, arg, True)
    return arg
