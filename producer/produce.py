"""The producer loop: frames from a source into a VirtualCamera, paced
against CLOCK_MONOTONIC.

Frame n is due at start + n / fps (a deadline from the frame count, so
lateness never accumulates into drift). A frame that cannot be queued on
time is still queued (no frame is skipped: a consumer can prove that it
got every one) and counted as late. A slot is written only after the
driver handed it back, so a consumer never sees a frame being rewritten.
"""

import os
import select
import signal
import sys
import time
import zlib
from collections import deque
from dataclasses import asdict, dataclass, field

from . import integrity, sysfs
from .camera import VirtualCamera
from .share import ShareServer
from .sources import Source


@dataclass
class ProducerReport:
    device: str
    frames_queued: int = 0
    slots_returned: int = 0  # VCAM_IOC_DEQUEUE results
    in_flight: int = 0  # slots still held by the driver at the end
    late: int = 0  # frames queued more than one interval after their deadline
    started_ns: int = 0  # CLOCK_MONOTONIC at the loop's start: frame n is due at started_ns + n / fps
    elapsed_s: float = 0.0
    cpu_s: float = 0.0  # this process's CPU time (user + system) in the loop
    fps: float = 0.0
    stopped_by: str | None = None  # a signal name, when one ended the run
    source_ended: bool = False
    consumers_served: int = 0
    driver: dict = field(default_factory=dict)  # the camera's sysfs counters at the end

    def as_dict(self) -> dict:
        return asdict(self)

    def finish(self, cam, share, stopped_by: str | None, in_flight: int, end_ns: int, cpu_start: float) -> None:
        """The closing figures of a loop that ran from started_ns to end_ns."""
        self.stopped_by, self.in_flight = stopped_by, in_flight
        self.elapsed_s = (end_ns - self.started_ns) / 1e9
        self.cpu_s = time.process_time() - cpu_start
        self.fps = self.frames_queued / self.elapsed_s if self.elapsed_s > 0 else 0.0
        self.consumers_served = share.consumers if share else 0
        try:
            self.driver = sysfs.stats(cam.nr)
        except OSError:
            self.driver = {}


class StopSignals:
    """SIGINT/SIGTERM set a flag and wake poll() through a pipe, so the loop
    ends at a clean point instead of inside an ioctl."""

    def __init__(self):
        self.received: str | None = None
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old_wakeup = signal.set_wakeup_fd(self.write_fd)
        self._old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def _handler(self, signum, frame) -> None:
        self.received = signal.Signals(signum).name

    def close(self) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        signal.set_wakeup_fd(self._old_wakeup)
        os.close(self.read_fd)
        os.close(self.write_fd)


class Producer:
    STATUS_INTERVAL_S = 0.5

    def __init__(self, cam: VirtualCamera, source: Source, fps: float = 30.0, frames: int | None = None,
                 header: bool = True, share: ShareServer | None = None, status: bool = False):
        self.cam, self.source, self.fps, self.frames = cam, source, fps, frames
        self.header, self.share, self.status = header, share, status
        self.payload = source.size - integrity.HEADER_SIZE
        self.report = ProducerReport(device=cam.video_path)
        self._free = deque(range(cam.slots))
        self._slot_key: list = [None] * cam.slots  # which source frame each slot holds
        self._watched: int | None = None  # the source's fd while poll() waits for it

    def _fill(self, index: int, n: int, frame, timestamp: int) -> None:
        buf = self.cam.bufs[index]
        with buf.cpu_access(write=True) as pixels:
            if frame.key is None or self._slot_key[index] != frame.key:
                pixels[: self.source.size] = frame.data
                self._slot_key[index] = frame.key
            if self.header:
                crc = frame.crc
                if crc is None:
                    crc = zlib.crc32(pixels[integrity.HEADER_SIZE : self.source.size])
                head = integrity.pack(n, timestamp, self.payload, crc)
                pixels[: integrity.HEADER_SIZE] = head

    def _take_back(self) -> None:
        returned = self.cam.take_back()
        self._free.extend(returned)
        self.report.slots_returned += len(returned)

    def _watch_source(self, poller: select.poll, fd: int | None) -> None:
        """Poll the source's fd only while the loop waits for its input (an
        input with bytes waiting would otherwise wake every poll)."""
        if fd == self._watched:
            return
        if self._watched is not None:
            poller.unregister(self._watched)
        if fd is not None:
            poller.register(fd, select.POLLIN)
        self._watched = fd

    def _print_status(self, now: int, start: int) -> None:
        r = self.report
        elapsed = max((now - start) / 1e9, 1e-9)
        line = (f"{r.device}  {r.frames_queued / elapsed:7.1f} fps  {r.frames_queued} frames  "
                f"{r.late} late  {self.cam.slots - len(self._free)}/{self.cam.slots} queued")
        sys.stderr.write("\r" + line + "\x1b[K")
        sys.stderr.flush()

    def run(self) -> ProducerReport:
        r = self.report
        signals = StopSignals()
        poller = select.poll()
        poller.register(self.cam.ctl.fd, select.POLLIN)
        poller.register(signals.read_fd, select.POLLIN)
        if self.share:
            poller.register(self.share.fileno(), select.POLLIN)
        interval = 1e9 / self.fps if self.fps else 0.0
        start = r.started_ns = time.monotonic_ns()
        cpu_start = time.process_time()
        next_status = start
        n = 0
        try:
            while signals.received is None:
                in_flight = self.cam.slots - len(self._free)
                wants_more = not r.source_ended and (self.frames is None or n < self.frames)
                if not wants_more and in_flight == 0:
                    break
                now = time.monotonic_ns()
                due = start + int(n * interval)
                ready = bool(wants_more and self._free and now >= due)
                # A source that reads an input waits for it in poll(), where a signal reaches the
                # loop, not inside frame()'s read (which, once a frame has begun, waits for the rest).
                source_fd = self.source.fileno() if ready else None
                waiting = source_fd is not None and not select.select([source_fd], [], [], 0)[0]
                self._watch_source(poller, source_fd if waiting else None)
                if ready and not waiting:
                    frame = self.source.frame(n)
                    if frame is None:
                        r.source_ended = True
                        continue
                    if interval and now - due > interval:
                        r.late += 1
                    index = self._free.popleft()
                    self._fill(index, n, frame, now)
                    self.cam.queue(index, timestamp=now)
                    n += 1
                    r.frames_queued = n
                    timeout_ms = 0  # collect returned slots, then go on
                elif ready:
                    timeout_ms = int(self.STATUS_INTERVAL_S * 1000) if self.status else -1  # until input comes
                elif wants_more and self._free:
                    timeout_ms = max(0, (due - now + 999_999) // 1_000_000)
                else:
                    timeout_ms = int(self.STATUS_INTERVAL_S * 1000) if self.status else -1
                if self.status and now >= next_status:
                    self._print_status(now, start)
                    next_status = now + int(self.STATUS_INTERVAL_S * 1e9)
                for fd, _ in poller.poll(timeout_ms):
                    if fd == self.cam.ctl.fd:
                        self._take_back()
                    elif self.share and fd == self.share.fileno():
                        self.share.serve()
                    elif fd == signals.read_fd:
                        os.read(signals.read_fd, 64)
        finally:
            signals.close()
        end = time.monotonic_ns()
        r.finish(self.cam, self.share, signals.received, self.cam.slots - len(self._free), end, cpu_start)
        if self.status:
            self._print_status(end, start)
            sys.stderr.write("\n")
        return r
