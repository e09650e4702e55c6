"""Helpers for the guest tests of the vcam driver, built on the producer
package: its capture consumer, its camera, its sysfs readers."""

import errno
import select
import time

from producer import v4l2
from producer.camera import VirtualCamera
from producer.capture import CAP, Capture  # noqa: F401  (re-exported for the tests)
from producer.control import Control
from producer.dmabuf import DmaBuf, system_allocator
from producer.sysfs import stats, video_nodes  # noqa: F401


class Camera(VirtualCamera):
    """A small camera for driver tests (the producer's VirtualCamera with
    test defaults)."""

    def __init__(self, nr_frames: int = 4, width: int = 64, height: int = 48,
                 pixelformat: int = v4l2.V4L2_PIX_FMT_YUYV, label: str = "vcam test", nonblock: bool = False):
        super().__init__(width, height, pixelformat, label=label, slots=nr_frames, nonblock=nonblock)


def foreign_dmabuf(size: int) -> DmaBuf:
    """A DMA-BUF of at least size bytes that no camera under test knows of:
    from the system's allocator, or where the kernel has none (6.1) the
    exported slot buffer of a throwaway vcam camera, which outlives it."""
    if system_allocator() is not None:
        return DmaBuf(size)
    with Control() as ctl:
        ctl.create("Foreign Memory", 64, -(-size // 64), v4l2.V4L2_PIX_FMT_GREY, nr_frames=2)
        return DmaBuf(size, fd=ctl.export(0))


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
