"""Helpers for the guest tests of the vcam driver: a minimal V4L2 capture
consumer, DMA-BUF frames and sysfs readers. Built on the producer package's
ctypes layer."""

import ctypes
import errno
import mmap
import os
import select
import time
from pathlib import Path

from producer import v4l2
from producer.control import Control
from producer.dmabuf import DmaBuf

CAP = v4l2.V4L2_BUF_TYPE_VIDEO_CAPTURE


def stats(device_nr: int) -> dict[str, int]:
    """The per-camera counters of /sys/class/video4linux/videoN/vcam/."""
    base = Path(f"/sys/class/video4linux/video{device_nr}/vcam")
    out = {}
    for name in ("frames_queued", "frames_dequeued", "frames_zero_copy", "frames_copied",
                 "frames_errored", "bytes_copied", "fps", "requested_fps", "capture_queued"):
        out[name] = int((base / name).read_text())
    return out


def video_nodes() -> set[str]:
    return {p.name for p in Path("/sys/class/video4linux").iterdir()}


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

    def dqbuf(self, timeout: float = 10.0) -> v4l2.v4l2_buffer:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return v4l2.dqbuf(self.fd, self.memory)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no capture buffer within %.1fs" % timeout)
                select.select([self.fd], [], [], left)

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

    def close(self) -> None:
        for m in self.maps:
            try:
                m.close()
            except BufferError:
                pass
        self.maps = []
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Camera:
    """A created camera with one DMA-BUF per output slot."""

    def __init__(self, nr_frames: int = 4, width: int = 64, height: int = 48,
                 pixelformat: int = v4l2.V4L2_PIX_FMT_YUYV, label: str = "vcam test", nonblock: bool = False):
        self.ctl = Control(nonblock=nonblock)
        self.ctl.create(label, width, height, pixelformat, nr_frames=nr_frames)
        self.size = self.ctl.frame_size
        self.bufs = [DmaBuf(self.size) for _ in range(nr_frames)]

    @property
    def nr(self) -> int:
        return self.ctl.device_nr

    @property
    def video(self) -> str:
        return self.ctl.video_path

    def fill_and_queue(self, index: int, byte: int, length: int = 0, timestamp: int = 0) -> None:
        self.bufs[index].fill(byte, self.size)
        self.ctl.queue(index, self.bufs[index].fd, length=length, timestamp=timestamp)

    def dequeue(self, timeout: float = 10.0):
        """DEQUEUE without blocking forever: poll first."""
        p = select.poll()
        p.register(self.ctl.fd, select.POLLIN)
        if not p.poll(int(timeout * 1000)):
            raise TimeoutError("no output slot came back within %.1fs" % timeout)
        return self.ctl.dequeue()

    def close(self) -> None:
        self.ctl.close()
        for b in self.bufs:
            b.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def expect_errno(code: int, fn, *args, **kwargs) -> OSError:
    try:
        fn(*args, **kwargs)
    except OSError as e:
        assert e.errno == code, f"expected {errno.errorcode[code]}, got {errno.errorcode.get(e.errno, e.errno)}"
        return e
    raise AssertionError(f"expected {errno.errorcode[code]}, the call succeeded")


class ProducerThread:
    """A producer that keeps every slot queued: each slot that comes back is
    refilled at once. Frame n is filled with pattern(n); optional pacing at
    fps frames per second against CLOCK_MONOTONIC, the frame's timestamp
    being its due time."""

    def __init__(self, cam: "Camera", pattern=lambda n: n & 0xFF, fps: float | None = None,
                 length: int = 0):
        import threading

        self.cam = cam
        self.pattern = pattern
        self.fps = fps
        self.length = length
        self.queued = 0
        self.returned = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _queue(self, index: int) -> None:
        ts = 0
        if self.fps:
            due = self._start + int(self.queued * 1e9 / self.fps)
            delay = (due - time.monotonic_ns()) / 1e9
            if delay > 0:
                self._stop.wait(delay)
            ts = due
        self.cam.fill_and_queue(index, self.pattern(self.queued), length=self.length, timestamp=ts)
        self.queued += 1

    def _run(self) -> None:
        try:
            self._start = time.monotonic_ns()
            for i in range(len(self.cam.bufs)):
                self._queue(i)
            p = select.poll()
            p.register(self.cam.ctl.fd, select.POLLIN)
            while not self._stop.is_set():
                if not p.poll(100):
                    continue
                done = self.cam.ctl.dequeue()
                self.returned.append(done.index)
                if not self._stop.is_set():
                    self._queue(done.index)
        except BaseException as e:  # reported by stop()
            self.error = e

    def start(self) -> "ProducerThread":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self.error:
            raise self.error

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
