"""The producer loop: frames from a source into a VirtualCamera, paced
against CLOCK_MONOTONIC.

Frame n is due at start + n / fps (a deadline from the frame count, so
lateness never accumulates into drift). A frame that cannot be queued on
time is still queued (no frame is skipped: a consumer can prove that it
got every one) and counted as late. A slot is written only after the
driver handed it back, so a consumer never sees a frame being rewritten.

Frames are queued only while a consumer streams from the camera
(VCAM_IOC_STATUS, asked again before each QUEUE): a frame queued with
nobody watching would wait in the driver and be the first a consumer
sees, however old. While nobody streams (WHILE_IDLE):

  wait    the source pauses: a pattern or a file is not read (a file
          that can end, one frame ahead, to see its end) and goes on
          where it stopped; a live source (a pipe, a camera
          through ffmpeg) is still read at the pace, so its writer never
          backs up, and its frames are dropped.
  newest  the source runs on at the pace; the newest frame is kept in a
          slot that is not queued, and queued the moment a consumer
          starts, so its first frame is at most a frame interval old. The driver cannot take back a queued
          frame, so the frame is held here rather than queued.

The schedule starts again when a consumer starts (frame n due now), so a
pause is not made up for with a burst of late frames.
"""

import os
import select
import signal
import sys
import time
import zlib
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from . import integrity, sysfs
from .camera import VirtualCamera
from .share import ShareServer
from .uapi import VCAM_STATUS_STREAMING

if TYPE_CHECKING:
    from .sources import Source  # numpy: not for the command line's option parsing

WHILE_IDLE = ("wait", "newest")


@dataclass
class ProducerReport:
    device: str
    frames_queued: int = 0
    slots_returned: int = 0  # VCAM_IOC_DEQUEUE results
    in_flight: int = 0  # slots still held by the driver at the end
    late: int = 0  # frames queued more than one interval after their deadline
    frames_dropped: int = 0  # frames read from the source while nobody streamed, never queued
    started_ns: int = 0  # CLOCK_MONOTONIC at the loop's start: no frame is due before started_ns + n / fps
    elapsed_s: float = 0.0
    idle_s: float = 0.0  # of elapsed_s, the time nobody streamed from the camera
    consumer_starts: int = 0  # times a consumer started streaming
    cpu_s: float = 0.0  # this process's CPU time (user + system) in the loop
    fps: float = 0.0  # frames queued per second while a consumer streamed
    stopped_by: str | None = None  # a signal name, when one ended the run
    source_ended: bool = False
    frames_not_taken: int = 0  # filled for the consumer, not dequeued by it when the run ended (lost)
    consumers_served: int = 0
    driver: dict = field(default_factory=dict)  # the camera's sysfs counters at the end

    def as_dict(self) -> dict:
        return asdict(self)

    def finish(self, cam, share, stopped_by: str | None, in_flight: int, end_ns: int, cpu_start: float) -> None:
        """The closing figures of a loop that ran from started_ns to end_ns
        (idle_s already counted up to end_ns)."""
        self.stopped_by, self.in_flight = stopped_by, in_flight
        self.elapsed_s = (end_ns - self.started_ns) / 1e9
        self.cpu_s = time.process_time() - cpu_start
        watched = self.elapsed_s - self.idle_s
        self.fps = self.frames_queued / watched if watched > 0 else 0.0
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


class ConsumerWatch:
    """Whether a consumer streams from the camera, from VCAM_IOC_STATUS,
    with the report's idle_s and consumer_starts kept as it changes.

    STATUS, not VCAM_IOC_WAIT: WAIT blocks without a timeout and only a
    signal ends it. A loop learns of a change from poll() on /dev/vcam:
    POLLPRI until the file reads the status again (check())."""

    def __init__(self, cam: VirtualCamera, report: ProducerReport, on_event=None):
        self.cam, self.report = cam, report
        self.on_event = on_event  # on_event(name, fields): "waiting" or "streaming", as it happens
        self.streaming: bool | None = None  # not asked yet
        self._since = 0

    def check(self, now: int) -> bool:
        streaming = bool(self.cam.ctl.status() & VCAM_STATUS_STREAMING)
        if streaming != self.streaming:
            if self.streaming is not None:  # the first answer's period began at the loop's start
                self.close(now)
            self.streaming = streaming
            r = self.report
            r.consumer_starts += streaming
            if self.on_event:
                self.on_event("streaming" if streaming else "waiting",
                              {"frames_queued": r.frames_queued, "frames_dropped": r.frames_dropped,
                               "consumer_starts": r.consumer_starts})
        return streaming

    def close(self, now: int) -> None:
        """Count the idle time up to now (from the last call)."""
        if self.streaming is False:
            self.report.idle_s += (now - self._since) / 1e9
        self._since = now


class Producer:
    STATUS_INTERVAL_S = 0.5

    def __init__(self, cam: VirtualCamera, source: "Source", fps: float = 30.0, frames: int | None = None,
                 header: bool = True, share: ShareServer | None = None, status: bool = False,
                 while_idle: str = "wait", on_event=None):
        if while_idle not in WHILE_IDLE:
            raise ValueError(f"while_idle must be one of {', '.join(WHILE_IDLE)}, not {while_idle!r}")
        self.cam, self.source, self.fps, self.frames = cam, source, fps, frames
        self.header, self.share, self.status = header, share, status
        self.while_idle = while_idle
        self._length = [0] * cam.slots  # each slot's payload for QUEUE
        self.report = ProducerReport(device=cam.video_path)
        self.watch = ConsumerWatch(cam, self.report, on_event)
        self._free = deque(range(cam.slots))
        self._slot_key: list = [None] * cam.slots  # which source frame each slot holds
        self._watched: int | None = None  # the source's fd while poll() waits for it
        self._held: tuple[int, int] | None = None  # newest: (slot, timestamp) written while idle, not queued
        self._next = None  # wait: the source's next frame, read ahead while idle (Source.ends) or made as the consumer stopped

    def _fill(self, index: int, n: int, frame, timestamp: int) -> None:
        buf = self.cam.bufs[index]
        size = len(frame.data)   # a compressed format's frames vary in size
        with buf.cpu_access(write=True) as pixels:
            if frame.key is None or self._slot_key[index] != frame.key:
                pixels[:size] = frame.data
                self._slot_key[index] = frame.key
            if self.header:
                at = integrity.header_offset(frame.data)
                payload = at + integrity.HEADER_SIZE
                crc = frame.crc
                if crc is None:
                    crc = zlib.crc32(pixels[payload:size])
                pixels[at:payload] = integrity.pack(n, timestamp, size - payload, crc)
        self._length[index] = size if self.source.fmt.compressed else 0   # 0: a whole frame

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

    def _queue(self, index: int, timestamp: int) -> None:
        self.cam.queue(index, length=self._length[index], timestamp=timestamp)
        self.report.frames_queued += 1

    def _idle_frame(self, frame, now: int) -> None:
        """A frame read while nobody streams: held (newest), kept to be
        queued first (wait, a paused source: the consumer stopped while it
        was being made) or dropped."""
        r = self.report
        if self.while_idle == "newest" and (self._held or self._free):
            if self._held:
                index = self._held[0]
                r.frames_dropped += 1  # the frame it held
            else:
                index = self._free.popleft()
            self._fill(index, r.frames_queued, frame, now)
            self._held = (index, now)
        elif self.while_idle == "wait" and not self.source.live and self._next is None:
            self._next = frame
        else:
            r.frames_dropped += 1

    def _print_status(self, now: int, start: int) -> None:
        r = self.report
        elapsed = max((now - start) / 1e9, 1e-9)
        line = (f"{r.device}  {r.frames_queued / elapsed:7.1f} fps  {r.frames_queued} frames  "
                f"{r.late} late  {self.cam.slots - len(self._free)}/{self.cam.slots} queued")
        if not self.watch.streaming:
            line += "  waiting for a consumer"
        sys.stderr.write("\r" + line + "\x1b[K")
        sys.stderr.flush()

    def _check(self, now: int) -> bool:
        """Whether a consumer streams now; when one has just started, the
        schedule starts again (the next frame is due now) and a held frame
        is queued at once."""
        was = self.watch.streaming
        streaming = self.watch.check(now)
        if streaming and not was:
            self._epoch = now - int(self._taken * self._interval)
            if self._held:
                (index, stamp), self._held = self._held, None
                self._queue(index, stamp)
        return streaming

    def run(self) -> ProducerReport:
        r = self.report
        signals = StopSignals()
        poller = select.poll()
        poller.register(self.cam.ctl.fd, select.POLLIN | select.POLLPRI)  # PRI: a consumer started or stopped
        poller.register(signals.read_fd, select.POLLIN)
        if self.share:
            poller.register(self.share.fileno(), select.POLLIN)
        self._interval = interval = 1e9 / self.fps if self.fps else 0.0
        start = r.started_ns = self._epoch = time.monotonic_ns()  # source frame t is due at _epoch + t * interval
        self._taken = 0  # frames taken from the source: queued, held or dropped
        self.watch.close(start)  # idle time counts from here
        cpu_start = time.process_time()
        next_status = start
        try:
            while signals.received is None:
                now = time.monotonic_ns()
                streaming = self._check(now)
                in_flight = self.cam.slots - len(self._free) - bool(self._held)
                wants_more = not r.source_ended and (self.frames is None or r.frames_queued < self.frames)
                if not wants_more and in_flight == 0:
                    break
                # While nobody streams, a paused source is not read, and one read at the pace needs no free slot.
                reads = streaming or self.source.live or self.while_idle == "newest"
                can_take = wants_more and reads and bool(self._free or not streaming)
                due = self._epoch + int(self._taken * interval)
                ready = can_take and now >= due
                # A source that reads an input waits for it in poll(), where a signal reaches the
                # loop, not inside frame()'s read (which, once a frame has begun, waits for the rest).
                source_fd = self.source.fileno() if ready else None
                waiting = source_fd is not None and not select.select([source_fd], [], [], 0)[0]
                self._watch_source(poller, source_fd if waiting else None)
                if not reads and self.source.ends and wants_more and self._next is None:
                    # Paused, a source that can end is read one frame ahead (the next one queued,
                    # not dropped), so that a run whose input has ended ends with nobody watching.
                    self._next = self.source.frame(self._taken)
                    if self._next is None:
                        r.source_ended = True
                        continue
                    self._taken += 1
                if ready and not waiting:
                    if self._next is not None:
                        frame, self._next = self._next, None
                    else:
                        frame = self.source.frame(self._taken)
                        if frame is None:
                            r.source_ended = True
                            continue
                        self._taken += 1
                    now = time.monotonic_ns()
                    if self._check(now) and self._free:  # asked again right before the QUEUE
                        if interval and now - due > interval:
                            r.late += 1
                        index = self._free.popleft()
                        self._fill(index, r.frames_queued, frame, now)
                        self._queue(index, now)
                    else:
                        self._idle_frame(frame, now)
                    timeout_ms = 0  # collect returned slots, then go on
                elif can_take and not ready:
                    timeout_ms = max(0, (due - now + 999_999) // 1_000_000)
                else:
                    timeout_ms = -1  # until input comes, a slot comes back or a signal
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
            r.frames_not_taken = self.cam.wait_until_taken(stopped=lambda: signals.received is not None)
        finally:
            signals.close()
        end = time.monotonic_ns()
        self.watch.close(end)
        # Read ahead from an input that ends, and nobody came for it. (A paused source that never
        # ends, a pattern, stops at the frame it kept: nothing a consumer could see was lost.)
        r.frames_dropped += self._next is not None and self.source.ends
        if self._held:  # a frame nobody came for
            r.frames_dropped += 1
            self._free.append(self._held[0])
            self._held = None
        r.finish(self.cam, self.share, signals.received, self.cam.slots - len(self._free), end, cpu_start)
        if self.status:
            self._print_status(end, start)
            sys.stderr.write("\n")
        return r
