"""vcam producer: feeds frames held in DMA-BUFs to a vcam virtual camera,
and the reference consumer that checks what arrives.

    ioctl.py      _IOC and IOR/IOW/IOWR, written once
    uapi.py       the vcam uAPI (structs, VcamIoctl)
    v4l2.py       the V4L2 subset (structs, V4l2Ioctl, typed free functions)
    dmabuf.py     DMA-BUF heaps, udmabuf, DMA_BUF_IOCTL_SYNC, DmaBuf
    control.py    /dev/vcam: typed free functions and Control
    camera.py     VirtualCamera: a camera with its slots and their DMA-BUFs
    formats.py    pixel formats and the RGB converter
    sources.py    test patterns, still images, video files and cameras, raw frames on stdin
    integrity.py  the per-frame integrity header
    produce.py    the paced producer loop
    share.py      DMA-BUF fds to consumers over SCM_RIGHTS
    capture.py    a V4L2 capture consumer (MMAP, USERPTR, DMABUF)
    consume.py    the reference consumer and its report
    sysfs.py      the driver's per-camera counters
    cli.py        vcam-producer run | consume
    pyvirtualcam.py  pyvirtualcam's Camera on vcam, for Python programs
"""
