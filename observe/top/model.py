"""The last minute of readings and what the table shows for each camera."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .. import metrics
from .rates import Buckets, bucket_delta, counter_delta, quantile, rate
from .sources import Reading

HISTORY_SECONDS = 60.0       # sparklines and detail histograms cover this
PERCENTILE_SECONDS = 5.0     # p50/p99 in the table: bucket deltas over this


@dataclass
class CameraRow:
    """What the table shows for one camera, derived from readings."""
    device: str
    device_nr: int
    card: str
    producer: str
    consumer: str
    fps: float | None
    zero_copy_share: float | None      # 0..1 of frames delivered since last reading
    copies_s: float | None
    bytes_s: float | None
    errors: float
    output_depth: float
    capture_depth: float
    slots: float | None
    streaming: bool
    p50: float | None                  # frame latency, seconds
    p99: float | None
    frames: float                      # delivered, cumulative


def camera_row(prev: Reading | None, cur: Reading, window: Reading | None, device: str) -> CameraRow:
    """Rates between `prev` and `cur`, latency percentiles over `window` to `cur`."""
    c = cur.cameras[device]
    p = prev.cameras.get(device) if prev else None
    dt = cur.t - prev.t if prev else 0.0
    zc = None
    if p is not None:
        d_zc = counter_delta(p.frames_zero_copy, c.frames_zero_copy)
        d_all = counter_delta(p.frames_delivered, c.frames_delivered)
        zc = d_zc / d_all if d_all > 0 else None
    w = window.cameras.get(device) if window else None
    lat = bucket_delta(w.buckets.get(metrics.FRAME_LATENCY), c.buckets.get(metrics.FRAME_LATENCY, [])) if w else []
    return CameraRow(
        device=device, device_nr=c.device_nr, card=c.card, producer=c.producer, consumer=c.consumer,
        fps=rate(p.frames_delivered if p else None, c.frames_delivered, dt),
        zero_copy_share=zc,
        copies_s=rate(p.frames_copied if p else None, c.frames_copied, dt),
        bytes_s=rate(p.bytes_copied if p else None, c.bytes_copied, dt),
        errors=c.frames_errored, output_depth=c.output_depth, capture_depth=c.capture_depth,
        slots=c.slots, streaming=c.streaming,
        p50=quantile(0.5, lat), p99=quantile(0.99, lat),
        frames=c.frames_delivered)


class Model:
    """Readings over the last minute and the rows derived from them."""

    def __init__(self, history_seconds: float = HISTORY_SECONDS,
                 percentile_seconds: float = PERCENTILE_SECONDS):
        self.history_seconds = history_seconds
        self.percentile_seconds = percentile_seconds
        self.readings: deque[Reading] = deque()
        self.rows: dict[str, CameraRow] = {}
        # device -> [(t, fps, p99, output depth, capture depth)]
        self.series: dict[str, deque] = {}

    def _base(self, now: float, seconds: float) -> Reading | None:
        """The oldest kept reading no older than `seconds`, before the last."""
        for r in list(self.readings)[:-1]:
            if r.t >= now - seconds - 1e-9:
                return r
        return self.readings[-2] if len(self.readings) > 1 else None

    def add(self, reading: Reading) -> None:
        prev = self.readings[-1] if self.readings else None
        self.readings.append(reading)
        while self.readings and self.readings[0].t < reading.t - self.history_seconds - 1e-9:
            self.readings.popleft()
        window = self._base(reading.t, self.percentile_seconds)
        self.rows = {d: camera_row(prev, reading, window, d) for d in reading.cameras}
        for d in list(self.series):
            if d not in reading.cameras:
                del self.series[d]
        for d, row in self.rows.items():
            s = self.series.setdefault(d, deque())
            s.append((reading.t, row.fps, row.p99, row.output_depth, row.capture_depth))
            while s and s[0][0] < reading.t - self.history_seconds - 1e-9:
                s.popleft()

    def minute_histograms(self, device: str) -> dict[str, Buckets]:
        """Bucket deltas over the kept history (up to a minute), per family."""
        if not self.readings or device not in self.readings[-1].cameras:
            return {}
        cur = self.readings[-1].cameras[device]
        old = next(r.cameras[device] for r in self.readings if device in r.cameras)
        if old is cur:
            return {fam: [(le, 0.0) for le, _ in hist] for fam, hist in cur.buckets.items()}
        return {fam: bucket_delta(old.buckets.get(fam), hist) for fam, hist in cur.buckets.items()}
