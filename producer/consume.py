"""The reference consumer: capture N frames (or, with N = 0, until SIGINT
or SIGTERM) from /dev/videoN and report what arrived: sequence gaps, torn or corrupt frames (integrity header),
error-flagged frames, frame rate and latency (producer timestamp to
dequeue) percentiles.

Memory: mmap and userptr (the driver copies), dmabuf (our own DMA-BUFs:
the driver copies), or --import (the producer's own DMA-BUFs received over
its socket: zero-copy).
"""

import errno
import math
import os
import time
from dataclasses import asdict, dataclass, field

from . import integrity, v4l2
from .capture import MEMORY, Capture
from .dmabuf import DmaBuf
from .produce import StopSignals
from .share import receive


@dataclass
class ConsumerReport:
    device: str
    memory: str
    imported: bool  # capturing into the producer's DMA-BUFs
    frames: int = 0
    errored: int = 0  # V4L2_BUF_FLAG_ERROR
    verified: bool = False
    torn: int = 0  # header fine, payload checksum wrong
    corrupt: int = 0  # no valid header
    sequence_gaps: int = 0  # sequence numbers never seen
    out_of_order: int = 0  # a number at or below one already seen
    first_sequence: int | None = None
    last_sequence: int | None = None
    fps: float = 0.0
    latency_ms: dict = field(default_factory=dict)  # p50, p90, p99, max
    ended: str | None = None  # why capture stopped before N frames
    stopped_by: str | None = None  # the signal that ended the capture, if one did

    @property
    def ok(self) -> bool:
        return (self.ended is None and self.errored == 0 and self.torn == 0 and self.corrupt == 0
                and self.sequence_gaps == 0 and self.out_of_order == 0)

    def as_dict(self) -> dict:
        return asdict(self) | {"ok": self.ok}


class _Sequence:
    """Counts gaps and reordering in a stream of sequence numbers."""

    def __init__(self, report: ConsumerReport):
        self.r = report
        self.expected: int | None = None

    def see(self, seq: int) -> None:
        r = self.r
        if self.expected is None:
            r.first_sequence = seq
        elif seq > self.expected:
            r.sequence_gaps += seq - self.expected
        elif seq < self.expected:
            r.out_of_order += 1
            return
        r.last_sequence = seq
        self.expected = seq + 1


def consume(device: str | None = None, memory: str = "mmap", frames: int = 100, verify: bool = False,
            import_socket: str | None = None, buffers: int = 4, timeout: float = 10.0) -> ConsumerReport:
    imported: list[DmaBuf] = []
    if import_socket:
        description, fds = receive(import_socket)
        imported = [DmaBuf(description["buffer_size"], fd=fd) for fd in fds]
        device = device or description["device"]
        memory = "dmabuf"
    if not device:
        raise ValueError("say which camera: --device /dev/videoN or --import SOCKET")
    report = ConsumerReport(device=device, memory=memory, imported=bool(imported), verified=verify)
    own: list[DmaBuf] = []
    cap = None
    try:
        cap = Capture(device)
        if memory == "dmabuf":
            if not imported:
                own = [DmaBuf(cap.fmt().sizeimage) for _ in range(buffers)]
            dmabufs = imported or own
            cap.reqbufs(len(dmabufs), v4l2.V4L2_MEMORY_DMABUF)
            for i, buf in enumerate(dmabufs):
                cap.qbuf(i, buf.fd, buf.size)
        else:
            dmabufs = []
            for i in range(cap.reqbufs(buffers, MEMORY[memory])):
                cap.qbuf(i)
        _capture(cap, dmabufs, report, frames, verify, timeout)
    finally:
        if cap is not None:
            try:
                cap.streamoff()
            except OSError:
                pass  # the camera is gone already
            cap.close()
        for buf in own + imported:
            buf.close()
    return report


def _capture(cap: Capture, dmabufs: list[DmaBuf], r: ConsumerReport, frames: int, verify: bool,
             timeout: float) -> None:
    """Capture `frames` frames, or until a stop signal when `frames` is 0.
    A signal before N frames ends the capture early, with a report."""
    latencies: list[int] = []
    sequence = _Sequence(r)
    cap.streamon()
    first = last = 0
    signals = StopSignals()
    try:
        while frames == 0 or r.frames < frames:
            try:
                buf = cap.dqbuf(timeout, stop_fd=signals.read_fd)
            except TimeoutError:
                r.ended = f"no frame within {timeout:g} s"
                break
            except OSError as e:
                if e.errno in (errno.ENODEV, errno.EPIPE, errno.EIO):
                    r.ended = f"the camera went away ({os.strerror(e.errno)})"
                    break
                raise
            if buf is None or signals.received:
                r.stopped_by = signals.received
                if frames:
                    r.ended = f"stopped by {signals.received}"
                break
            now = _take(cap, buf, dmabufs, r, sequence, verify, latencies)
            if r.frames == 1:
                first = now
            last = now
            if frames == 0 or r.frames < frames:
                if dmabufs:
                    cap.qbuf(buf.index, dmabufs[buf.index].fd, dmabufs[buf.index].size)
                else:
                    cap.qbuf(buf.index)
    finally:
        signals.close()
    if r.frames > 1:
        r.fps = (r.frames - 1) / ((last - first) / 1e9)
    if latencies:
        ms = sorted(ns / 1e6 for ns in latencies)
        # nearest-rank percentiles
        r.latency_ms = {f"p{p}": round(ms[max(0, math.ceil(p / 100 * len(ms)) - 1)], 3) for p in (50, 90, 99)}
        r.latency_ms["max"] = round(ms[-1], 3)


def _take(cap: Capture, buf, dmabufs: list[DmaBuf], r: ConsumerReport, sequence: _Sequence, verify: bool,
          latencies: list[int]) -> int:
    """Account for one dequeued buffer; returns when it was dequeued (ns)."""
    now = time.monotonic_ns()
    stamp = buf.timestamp_ns()
    if buf.flags & v4l2.V4L2_BUF_FLAG_ERROR:
        r.errored += 1
    elif verify:
        if dmabufs:
            with dmabufs[buf.index].cpu_access(write=False) as pixels:
                header, problem = integrity.check(pixels[: buf.bytesused])
        else:
            header, problem = integrity.check(cap.view(buf))
        if problem == "corrupt":
            r.corrupt += 1
        else:
            r.torn += problem == "torn"
            sequence.see(header.sequence)
            stamp = header.timestamp_ns
    else:
        sequence.see(buf.sequence)
    latencies.append(now - stamp)
    r.frames += 1
    return now
