"""ctypes mirror of the vcam uAPI (driver/include/uapi/linux/vcam.h).

Structures keep their kernel names; tests/test_uapi_mirror.py checks every
size, offset and ioctl number against a C program built with the header.
"""

import ctypes
import enum

from .ioctl import IOR, IOW, IOWR

VCAM_MAX_FRAMES = 32
VCAM_MIN_FRAMES = 2
VCAM_MAX_WIDTH = 8192
VCAM_MAX_HEIGHT = 8192
VCAM_MIN_WIDTH = 2
VCAM_MIN_HEIGHT = 2
VCAM_LABEL_MAX = 32

# vcam_ioc_queue.fd naming the slot's own driver-allocated buffer (mmap-able
# from the control file, a DMA-BUF through VCAM_IOC_EXPORT)
VCAM_QUEUE_FD_DRIVER = 0xFFFFFFFF

VCAM_STATUS_IDLE = 1 << 0
VCAM_STATUS_STREAMING = 1 << 1
VCAM_STATUS_MASK = VCAM_STATUS_IDLE | VCAM_STATUS_STREAMING


class vcam_frame(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("length", ctypes.c_uint32),
    ]


class vcam_ioc_create(ctypes.Structure):
    _fields_ = [
        ("device_name", ctypes.c_uint64),
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("pixelformat", ctypes.c_uint32),
        ("colorspace", ctypes.c_uint32),
        ("bytesperline", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("device_nr", ctypes.c_uint32),
        ("nr_frames", ctypes.c_uint32),
        ("frames", ctypes.c_uint64),
    ]


class vcam_ioc_queue(ctypes.Structure):
    _fields_ = [
        ("fd", ctypes.c_uint32),
        ("index", ctypes.c_uint32),
        ("length", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("timestamp", ctypes.c_uint64),
    ]


class vcam_ioc_dequeue(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("length", ctypes.c_uint32),
        ("timestamp", ctypes.c_uint64),
    ]


class vcam_ioc_wait(ctypes.Structure):
    _fields_ = [
        ("mask", ctypes.c_uint64),
        ("status", ctypes.c_uint64),
    ]


class vcam_ioc_export(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("fd", ctypes.c_int32),
        ("reserved", ctypes.c_uint32),
    ]


class VcamIoctl(enum.IntEnum):
    VCAM_IOC_CREATE = IOWR("v", 0x00, vcam_ioc_create)
    VCAM_IOC_QUEUE = IOW("v", 0x01, vcam_ioc_queue)
    VCAM_IOC_DEQUEUE = IOR("v", 0x02, vcam_ioc_dequeue)
    VCAM_IOC_STATUS = IOR("v", 0x03, ctypes.c_uint64)
    VCAM_IOC_WAIT = IOWR("v", 0x04, vcam_ioc_wait)
    VCAM_IOC_EXPORT = IOWR("v", 0x05, vcam_ioc_export)  # beside the spec's five


STRUCTS = (vcam_frame, vcam_ioc_create, vcam_ioc_queue, vcam_ioc_dequeue, vcam_ioc_wait, vcam_ioc_export)
