"""The producer loop's waiting for a consumer (--while-idle), as pure
logic: a stand-in camera whose status says when a consumer streams and
which hands every queued slot straight back. The guest half, on the real
module with real consumers, is test_producer_idle.py."""

import contextlib
import os
import threading

import numpy as np
import pytest

from producer import formats, integrity
from producer.produce import Producer
from producer.sources import Frame, PatternSource, Source
from producer.uapi import VCAM_STATUS_IDLE, VCAM_STATUS_STREAMING

YUYV = formats.lookup("YUYV")


class StandInCamera:
    """Two slots; a consumer streams while `streaming` is set, and takes
    every queued frame at once (take_back returns it)."""

    video_path = "/dev/video-stand-in"
    nr = -1
    slots = 2

    def __init__(self, size: int, stops_after: int | None = None):
        self.stops_after = stops_after  # the consumer stops once it has had this many frames
        self.queued: list[tuple[int, integrity.Header]] = []  # (slot, header) in QUEUE order
        self._back: list[int] = []
        # The control fd: readable while a slot waits to be taken back or the status
        # changed, as /dev/vcam's poll() says with POLLIN and POLLPRI (a pipe has no POLLPRI).
        self._ready = os.pipe2(os.O_NONBLOCK)
        self._streaming = False
        self.ctl = self
        self.fd = self._ready[0]
        self.bufs = [StandInBuffer(size) for _ in range(self.slots)]

    @property
    def streaming(self) -> bool:
        return self._streaming

    @streaming.setter
    def streaming(self, value: bool) -> None:
        if value != self._streaming:
            self._streaming = value
            os.write(self._ready[1], b"s")

    def status(self) -> int:
        return VCAM_STATUS_STREAMING if self.streaming else VCAM_STATUS_IDLE

    def queue(self, index: int, length: int = 0, timestamp: int = 0) -> None:   # VirtualCamera.queue's
        assert self.streaming, "queued while nobody streamed"
        self.queued.append((index, integrity.unpack(self.bufs[index].data)))
        self._back.append(index)
        os.write(self._ready[1], b"x")
        if len(self.queued) == self.stops_after:
            self.streaming = False

    def take_back(self) -> list[int]:
        try:
            os.read(self.fd, 64)
        except BlockingIOError:
            pass
        back, self._back = self._back, []
        return back

    def wait_until_taken(self, timeout: float = 3.0, stopped=lambda: False) -> int:
        return 0   # its consumer takes every frame the moment it is queued

    def close(self) -> None:
        for fd in self._ready:
            os.close(fd)


class StandInBuffer:
    def __init__(self, size: int):
        self.data = np.zeros(size, np.uint8)

    @contextlib.contextmanager
    def cpu_access(self, write: bool):
        yield memoryview(self.data)


class CountingSource(Source):
    """A source that records which frame numbers were taken; live or not."""

    def __init__(self, live: bool, length: int | None = None):
        super().__init__(YUYV, 16, 8)
        self.live, self.length, self.ends = live, length, length is not None
        self.taken: list[int] = []

    def frame(self, n: int) -> Frame | None:
        if self.length is not None and n >= self.length:
            return None
        self.taken.append(n)
        data = np.full(self.size, n & 0xFF, np.uint8)
        return Frame(n, data)


def run(source: Source, while_idle: str, streams_after_s: float, frames: int | None, fps: float,
        stops_after: int | None = None):
    cam = StandInCamera(source.size, stops_after)
    events = []
    # The consumer starts streams_after_s after the producer began to wait, not after
    # this function began: the report counts idle time from the producer's start.
    starter = threading.Timer(streams_after_s, lambda: setattr(cam, "streaming", True))

    def on_event(name, fields):
        if not events:
            starter.start()
        events.append((name, fields))

    producer = Producer(cam, source, fps=fps, frames=frames, while_idle=while_idle, on_event=on_event)
    try:
        report = producer.run()
    finally:
        starter.cancel()
        cam.close()
    return cam, report, events


def test_wait_reads_nothing_from_a_paused_source_while_idle():
    source = CountingSource(live=False)
    cam, report, events = run(source, "wait", 0.3, frames=3, fps=100)
    assert source.taken == [0, 1, 2]  # nothing read, so nothing dropped
    assert [h.sequence for _, h in cam.queued] == [0, 1, 2]
    assert (report.frames_queued, report.frames_dropped, report.consumer_starts) == (3, 0, 1)
    assert [name for name, _ in events] == ["waiting", "streaming"]
    assert report.idle_s >= 0.3 and report.idle_s <= report.elapsed_s


def test_a_paused_file_that_was_shown_whole_ends_the_run_with_nobody_watching():
    """A source that can end (a video file) is read one frame ahead while
    paused: not dropped, the first frame queued; and the end of the input
    is seen, and ends the run, once a consumer has had every frame and
    stopped streaming."""
    source = CountingSource(live=False, length=3)
    cam, report, events = run(source, "wait", 0.3, frames=None, fps=100, stops_after=3)
    assert source.taken == [0, 1, 2] and [h.sequence for _, h in cam.queued] == [0, 1, 2]
    assert report.source_ended and report.frames_dropped == 0 and report.stopped_by is None
    assert [name for name, _ in events] == ["waiting", "streaming", "waiting"]


class StopsTheConsumerAtFrame(CountingSource):
    """A paused source during whose frame N the consumer stops streaming,
    to start again 0.2 s later."""

    def __init__(self, n: int):
        super().__init__(live=False)
        self.n, self.cam, self.restarts = n, None, True

    def frame(self, n: int) -> Frame | None:
        if n == self.n and self.cam.streaming:
            self.cam.streaming = False
            if self.restarts:
                threading.Timer(0.2, lambda: setattr(self.cam, "streaming", True)).start()
        return super().frame(n)


def test_wait_keeps_a_frame_made_as_the_consumer_stopped_and_queues_it_first():
    """The consumer stops while a frame of a paused source is being made
    (after the loop saw it streaming, before the QUEUE): that frame is not
    dropped but queued first when a consumer streams again, so the
    consumers get every frame, in order."""
    source = StopsTheConsumerAtFrame(2)
    cam = source.cam = StandInCamera(source.size)
    cam.streaming = True
    try:
        report = Producer(cam, source, fps=100, frames=5, while_idle="wait").run()
    finally:
        cam.close()
    assert source.taken == [0, 1, 2, 3, 4]
    assert [h.sequence for _, h in cam.queued] == [0, 1, 2, 3, 4]
    assert [int(cam.bufs[i].data[-1]) for i, _ in cam.queued[-1:]] == [4]
    assert (report.frames_dropped, report.consumer_starts) == (0, 2)


def test_a_frame_kept_for_a_consumer_that_never_came_back_is_not_a_drop_of_a_pattern():
    """The run ends (SIGTERM) with the frame made as the consumer stopped
    still kept: a pattern pauses at that frame, nothing was lost."""
    source = StopsTheConsumerAtFrame(2)
    source.restarts = False
    cam = source.cam = StandInCamera(source.size)
    cam.streaming = True
    stopper = threading.Timer(0.5, lambda: os.kill(os.getpid(), 15))
    stopper.start()
    try:
        report = Producer(cam, source, fps=100, while_idle="wait").run()
    finally:
        stopper.cancel()
        cam.close()
    assert report.stopped_by == "SIGTERM" and source.taken == [0, 1, 2]
    assert [h.sequence for _, h in cam.queued] == [0, 1]
    assert (report.frames_dropped, report.consumer_starts) == (0, 1)


def test_wait_drains_a_live_source_at_the_pace_and_drops_it():
    source = CountingSource(live=True)
    cam, report, events = run(source, "wait", 0.3, frames=3, fps=100)
    dropped = report.frames_dropped
    assert dropped >= 1 and len(source.taken) == dropped + 3
    # the frames queued are the ones read once the consumer came, numbered from 0
    assert [h.sequence for _, h in cam.queued] == [0, 1, 2]
    assert [int(cam.bufs[i].data[-1]) for i, _ in cam.queued[-1:]] == [source.taken[-1]]
    assert events[1] == ("streaming", {"frames_queued": 0, "frames_dropped": dropped, "consumer_starts": 1})


def test_newest_holds_the_newest_frame_and_queues_it_first():
    source = PatternSource("counter", YUYV, 64, 48)
    cam, report, events = run(source, "newest", 0.3, frames=3, fps=100)
    held = events[1][1]["frames_dropped"] + 1  # frames read while idle: all dropped but the one held
    assert held >= 2
    assert [h.sequence for _, h in cam.queued] == [0, 1, 2]
    assert report.frames_dropped == held - 1 and report.frames_queued == 3
    # the first frame queued was made while idle: stamped before the two made after it
    first, second = cam.queued[0][1], cam.queued[1][1]
    assert first.timestamp_ns < second.timestamp_ns


def test_nobody_ever_comes_a_held_frame_counts_as_dropped():
    source = PatternSource("smpte", YUYV, 64, 48)
    cam = StandInCamera(source.size)
    producer = Producer(cam, source, fps=50, while_idle="newest")
    stopper = threading.Timer(0.3, lambda: os.kill(os.getpid(), 15))
    stopper.start()
    try:
        report = producer.run()
    finally:
        stopper.cancel()
        cam.close()
    assert report.stopped_by == "SIGTERM" and report.frames_queued == 0 and cam.queued == []
    assert report.frames_dropped >= 1 and report.in_flight == 0
    assert report.consumer_starts == 0 and report.idle_s == pytest.approx(report.elapsed_s)
    assert report.fps == 0.0


def test_an_unknown_policy_is_refused():
    source = PatternSource("smpte", YUYV, 64, 48)
    cam = StandInCamera(source.size)
    try:
        with pytest.raises(ValueError, match="while_idle must be one of wait, newest, not 'later'"):
            Producer(cam, source, while_idle="later")
    finally:
        cam.close()
