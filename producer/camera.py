"""VirtualCamera: one vcam camera with a DMA-BUF per output slot.

    with VirtualCamera(1280, 720, "YUYV", label="Lab Cam", slots=4) as cam:
        print(cam.video_path)
        cam.write(0, frame_bytes)
        cam.queue(0)
        done = cam.dequeue(timeout=1.0)   # the slot, back for reuse

Creating opens /dev/vcam and asks for the camera; leaving the context
closes the control file (the driver removes the camera) and every DMA-BUF.
"""

import errno
import os
import select
import time

from . import sysfs, v4l2
from .control import CONTROL_NODE, Control
from .dmabuf import DmaBuf, NoAllocatorError, alloc, no_allocator_message, system_allocator
from .errors import limit_message, slot_memory_message
from .uapi import vcam_ioc_dequeue

# Where the slots' DMA-BUFs come from (VirtualCamera's slot_memory):
SLOT_MEMORY = {
    "auto": "a DMA-BUF heap or udmabuf this user may open, else the driver's own slot buffers",
    "system": "a DMA-BUF heap or udmabuf (the system's DMA-BUF allocator)",
    "driver": "the driver's own slot buffers, exported as DMA-BUFs (VCAM_IOC_EXPORT)",
}
# memory, when the caller brings the slots' DMA-BUFs (slot_dmabufs)
EXTERNAL = "external"


class VirtualCamera:
    """A camera created on /dev/vcam, owning its slots and their DMA-BUFs.

    slot_memory (see SLOT_MEMORY) says where the DMA-BUFs come from; the
    memory attribute then names the one used: "dma-heap", "udmabuf" or
    "driver". Either way they are plain DMA-BUFs: written through mmap,
    queued by fd, shared with consumers for the zero-copy path.

    slot_dmabufs: DMA-BUF fds the caller already has (another camera's
    exported buffers, producer/relay.py), one per slot, taken over (closed
    with the camera); `slots` and `slot_memory` are then unused and memory
    is "external".
    """

    def __init__(self, width: int = 640, height: int = 480, pixelformat: int | str = v4l2.V4L2_PIX_FMT_YUYV,
                 label: str = "vcam", slots: int = 4, nonblock: bool = False, slot_memory: str = "auto",
                 control_node: str = CONTROL_NODE, slot_dmabufs: list[int] | None = None):
        if slot_memory not in SLOT_MEMORY:
            raise ValueError(f"slot_memory must be one of {', '.join(SLOT_MEMORY)}, not {slot_memory!r}")
        external = list(slot_dmabufs or [])   # fds not yet in a slot's DmaBuf
        if slot_dmabufs is not None:
            self.memory, slots = EXTERNAL, len(external)
        else:
            self.memory = system_allocator() if slot_memory != "driver" else None
        if self.memory is None:
            if slot_memory == "system":
                raise NoAllocatorError(errno.ENODEV, no_allocator_message())
            self.memory = "driver"
        if isinstance(pixelformat, str):
            pixelformat = v4l2.fourcc(pixelformat)
        self.ctl: Control | None = None
        self.bufs: list[DmaBuf] = []
        try:
            self.ctl = Control(control_node, nonblock=nonblock)
            try:
                self.ctl.create(label, width, height, pixelformat, nr_frames=slots)
            except OSError as e:
                # Same errno, a message that says what was asked for, or which limit said no.
                raise OSError(e.errno, limit_message(e.errno) or
                              f"the driver refused a {width}x{height} {v4l2.fourcc_str(pixelformat)} "
                              f"camera with {slots} slots labelled {label!r}: {e.strerror}") from None
            self.size = self.ctl.frame_size
            for index in range(slots):
                if self.memory == EXTERNAL:
                    fd, external[index] = external[index], -1   # the camera's now: closed with it
                elif self.memory == "driver":
                    try:
                        fd = self.ctl.export(index)
                    except OSError as e:
                        if e.errno != errno.ENOMEM:
                            raise
                        raise OSError(e.errno, slot_memory_message(index, slots, self.size, e.strerror)) from None
                else:
                    fd = alloc(self.size)
                self.bufs.append(DmaBuf(self.size, fd=fd))
        except BaseException:
            for fd in external:
                if fd >= 0:
                    os.close(fd)
            self.close()
            raise
        self.width, self.height, self.pixelformat = width, height, pixelformat
        self._poll = select.poll()
        self._poll.register(self.ctl.fd, select.POLLIN)

    @property
    def nr(self) -> int:
        return self.ctl.device_nr

    @property
    def video_path(self) -> str:
        return self.ctl.video_path

    video = video_path  # the name the driver tests use

    @property
    def slots(self) -> int:
        return len(self.bufs)

    def write(self, index: int, data, offset: int = 0) -> None:
        """CPU-write into slot index's DMA-BUF (bracketed by DMA_BUF_IOCTL_SYNC)."""
        self.bufs[index].write(data, offset)

    def queue(self, index: int, length: int = 0, timestamp: int = 0) -> None:
        """VCAM_IOC_QUEUE slot index's DMA-BUF; timestamp in CLOCK_MONOTONIC ns (0: now)."""
        self.ctl.queue(index, self.bufs[index].fd, length=length, timestamp=timestamp)

    def fill_and_queue(self, index: int, byte: int, length: int = 0, timestamp: int = 0) -> None:
        self.bufs[index].fill(byte, self.size)
        self.queue(index, length=length, timestamp=timestamp)

    def poll(self, timeout: float | None = None) -> bool:
        """True when a slot can be dequeued; waits up to timeout seconds (None: forever)."""
        # POLLERR also counts as ready: DEQUEUE then reports the error itself.
        return bool(self._poll.poll(None if timeout is None else int(timeout * 1000)))

    def dequeue(self, timeout: float | None = 10.0) -> vcam_ioc_dequeue:
        """The next slot handed back; TimeoutError when none within timeout."""
        if not self.poll(timeout):
            raise TimeoutError(f"no output slot came back within {timeout:.1f}s")
        return self.ctl.dequeue()

    def take_back(self) -> list[int]:
        """The slots the driver has handed back by now, without waiting
        (a camera made with nonblock=True)."""
        returned = []
        while True:
            try:
                returned.append(self.ctl.dequeue().index)
            except BlockingIOError:
                return returned

    def wait_until_taken(self, timeout: float = 3.0, stopped=lambda: False) -> int:
        """Wait up to TIMEOUT s (or until STOPPED() is true) for the consumer
        to dequeue every frame filled for it; the frames it still has not
        dequeued. Closing the camera takes them away (its DQBUF then gets
        ENODEV), so a run whose input ended waits for this first."""
        deadline = time.monotonic() + timeout
        while True:
            left = sysfs.counter(self.nr, "capture_done")  # 0 too once the consumer stops streaming
            if not left or stopped() or time.monotonic() >= deadline:
                return left
            time.sleep(0.01)  # a DQBUF wakes nothing here

    def close(self) -> None:
        # The control file first: the driver removes the camera and lets go
        # of the DMA-BUFs it holds; then our own references.
        if self.ctl is not None:
            self.ctl.close()
        for buf in self.bufs:
            buf.close()
        self.bufs = []

    def __enter__(self) -> "VirtualCamera":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
