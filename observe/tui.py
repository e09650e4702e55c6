"""vcam-observe top: a live Textual view of every camera, local or remote.

Two sources behind one interface (`read() -> Reading`, cumulative values as
an exporter exposes them):

- `ProbesSource`: the in-process probes, `Probes().refresh()` then
  `.snapshot()`, turned into metric families by `metrics.families()`, the
  same code the exporter renders;
- `UrlSource`: scrapes `http://HOST:PORT/metrics` and parses it with
  prometheus-client's parser.

Both give metric families, so one function (`reading_from_families`) reads
both. Rates come from counter deltas between two readings, percentiles from
histogram bucket deltas (pure functions below, tested on their own).

The App owns the poller: a timer starts a thread worker that reads the
source and posts a `Polled` or `SourceDown` message; the UI changes only in
those message handlers.
"""

from __future__ import annotations

import math
import sys
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Input, Sparkline, Static

from . import metrics

HISTORY_SECONDS = 60.0       # sparklines and detail histograms cover this
PERCENTILE_SECONDS = 5.0     # p50/p99 in the table: bucket deltas over this

LATENCY_FAMILIES = (metrics.FRAME_LATENCY, metrics.DELIVERY_LATENCY,
                    metrics.DEQUEUE_LATENCY, metrics.COPY_DURATION)
DEPTH_FAMILIES = (metrics.OUTPUT_DEPTH_SEEN, metrics.CAPTURE_DEPTH_SEEN)


# ---------------------------------------------------------------- readings

@dataclass
class CameraReading:
    """One camera's cumulative values at one instant, as exported."""
    device: str
    card: str = ""
    producer: str = ""
    consumer: str = ""
    queued: float = 0
    zero_copy: float = 0
    copied: float = 0
    errored: float = 0
    copied_bytes: float = 0
    output_depth: float = 0
    capture_depth: float = 0
    slots: float | None = None
    streaming: bool = False
    # family name -> cumulative [(le, count)], le ascending, last is +Inf
    histograms: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    @property
    def delivered(self) -> float:
        return self.zero_copy + self.copied


@dataclass
class Reading:
    t: float                                   # seconds, monotonic
    cameras: dict[str, CameraReading] = field(default_factory=dict)


def _device_sort_key(device: str):
    digits = "".join(c for c in device if c.isdigit())
    return (int(digits) if digits else math.inf, device)


def reading_from_families(families, t: float) -> Reading:
    """Metric families (parsed from a scrape, or straight from
    `metrics.families()`) -> a Reading. Only cameras with a
    vcam_camera_info series are present."""
    cams: dict[str, CameraReading] = {}
    other: list = []
    buckets: dict[tuple[str, str], dict[float, float]] = {}

    def cam(device):
        return cams.setdefault(device, CameraReading(device))

    for family in families:
        for s in family.samples:
            name, labels, value = s.name, s.labels, s.value
            device = labels.get(metrics.DEVICE)
            if device is None:
                continue
            if name == metrics.CAMERA_INFO + "_info":
                cam(device).card = labels.get(metrics.CARD, "")
            else:
                other.append((name, labels, value, device))
    for name, labels, value, device in other:
        if device not in cams:
            continue
        c = cams[device]
        if name == metrics.PROCESS_INFO + "_info":
            if labels.get(metrics.ROLE) == "producer":
                c.producer = labels.get(metrics.COMM, "")
            elif labels.get(metrics.ROLE) == "consumer":
                c.consumer = labels.get(metrics.COMM, "")
        elif name == metrics.FRAMES_QUEUED + "_total":
            c.queued = value
        elif name == metrics.FRAMES_DELIVERED + "_total":
            if labels.get(metrics.PATH) == "zero_copy":
                c.zero_copy = value
            elif labels.get(metrics.PATH) == "copy":
                c.copied = value
        elif name == metrics.FRAMES_ERRORED + "_total":
            c.errored = value
        elif name == metrics.COPIED_BYTES + "_total":
            c.copied_bytes = value
        elif name == metrics.OUTPUT_QUEUE_DEPTH:
            c.output_depth = value
        elif name == metrics.CAPTURE_QUEUE_DEPTH:
            c.capture_depth = value
        elif name == metrics.OUTPUT_SLOTS:
            c.slots = value
        elif name == metrics.CAPTURE_STREAMING:
            c.streaming = bool(value)
        elif name.endswith("_bucket") and "le" in labels:
            fam = name[: -len("_bucket")]
            buckets.setdefault((device, fam), {})[float(labels["le"])] = value
    for (device, fam), b in buckets.items():
        cams[device].histograms[fam] = sorted(b.items())
    ordered = dict(sorted(cams.items(), key=lambda kv: _device_sort_key(kv[0])))
    return Reading(t, ordered)


class SourceError(Exception):
    """The source could not be read now; the next poll retries."""


class UrlSource:
    """Scrape an exporter's /metrics."""

    def __init__(self, url: str, timeout: float = 5.0, clock=time.monotonic):
        self.url = url
        self.timeout = timeout
        self.clock = clock
        self.name = url

    def read(self) -> Reading:
        from prometheus_client.parser import text_string_to_metric_families
        try:
            start = self.clock()
            with urllib.request.urlopen(self.url, timeout=self.timeout) as r:
                text = r.read().decode()
            t = (start + self.clock()) / 2   # the exporter read its counters in between
            return reading_from_families(text_string_to_metric_families(text), t)
        except Exception as e:   # refused, timeout, HTTP error, bad text
            raise SourceError(f"{self.url}: {getattr(e, 'reason', None) or e}") from e


class ProbesSource:
    """The in-process probes, read as the exporter reads them."""

    def __init__(self, probes=None, clock=time.monotonic):
        if probes is None:
            from .probes import Probes
            probes = Probes()
        self.probes = probes
        self.clock = clock
        self.name = "local probes"

    def read(self) -> Reading:
        try:
            self.probes.refresh()
            snapshot = self.probes.snapshot()
        except Exception as e:
            raise SourceError(f"probes: {e}") from e
        return reading_from_families(metrics.families(snapshot), self.clock())

    def close(self):
        self.probes.close()


# ---------------------------------------------------------------- math

def counter_delta(prev: float | None, cur: float) -> float:
    """Increase of a counter; a counter that went down was reset (a camera
    recreated), so everything it counts now is new (as Prometheus' rate)."""
    if prev is None:
        return 0.0
    return cur - prev if cur >= prev else cur


def rate(prev: float | None, cur: float, dt: float) -> float | None:
    if prev is None or dt <= 0:
        return None
    return counter_delta(prev, cur) / dt


def bucket_delta(prev: list[tuple[float, float]] | None,
                 cur: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Cumulative buckets observed between two readings. A reset (any bucket
    or the total going down) or a changed bucket layout counts from zero."""
    if not prev:
        return list(cur)
    before = dict(prev)
    if [le for le, _ in prev] != [le for le, _ in cur] or any(n < before[le] for le, n in cur):
        return list(cur)
    return [(le, n - before[le]) for le, n in cur]


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """histogram_quantile(): linear interpolation inside the bucket that
    holds the q-quantile; the first bucket starts at 0; a quantile in the
    +Inf bucket is the highest finite bound. None when nothing was seen."""
    if not buckets:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if math.isinf(le):
                return lower
            if n == below:
                return le
            return lower + (le - lower) * (rank - below) / (n - below)
        lower, below = le, n
    return lower


def per_bucket(buckets: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Cumulative -> count per bucket."""
    out, below = [], 0.0
    for le, n in buckets:
        out.append((le, n - below))
        below = n
    return out


# ---------------------------------------------------------------- model

@dataclass
class CameraRow:
    """What the table shows for one camera, derived from readings."""
    device: str
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
    c = cur.cameras[device]
    p = prev.cameras.get(device) if prev else None
    dt = cur.t - prev.t if prev else 0.0
    fps = rate(p.delivered if p else None, c.delivered, dt)
    copies = rate(p.copied if p else None, c.copied, dt)
    zc = None
    if p is not None:
        d_zc, d_all = counter_delta(p.zero_copy, c.zero_copy), counter_delta(p.delivered, c.delivered)
        zc = d_zc / d_all if d_all > 0 else None
    w = window.cameras.get(device) if window else None
    lat = latency_window(w, c, metrics.FRAME_LATENCY)
    return CameraRow(
        device=device, card=c.card, producer=c.producer, consumer=c.consumer,
        fps=fps, zero_copy_share=zc, copies_s=copies,
        bytes_s=rate(p.copied_bytes if p else None, c.copied_bytes, dt),
        errors=c.errored, output_depth=c.output_depth, capture_depth=c.capture_depth,
        slots=c.slots, streaming=c.streaming,
        p50=quantile(0.5, lat) if lat else None, p99=quantile(0.99, lat) if lat else None,
        frames=c.delivered)


def latency_window(old: CameraReading | None, cur: CameraReading, family: str):
    hist = cur.histograms.get(family)
    if not hist:
        return []
    if old is None:
        return []
    return bucket_delta(old.histograms.get(family), hist)


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

    def minute_histograms(self, device: str) -> dict[str, list[tuple[float, float]]]:
        """Bucket deltas over the kept history (up to a minute), per family."""
        if not self.readings or device not in self.readings[-1].cameras:
            return {}
        cur = self.readings[-1].cameras[device]
        old = None
        for r in self.readings:
            if device in r.cameras:
                old = r.cameras[device]
                break
        out = {}
        for fam, hist in cur.histograms.items():
            if old is cur:
                out[fam] = [(le, 0.0) for le, _ in hist]
            else:
                out[fam] = bucket_delta(old.histograms.get(fam) if old else None, hist)
        return out


# ---------------------------------------------------------------- formatting

def fmt_rate(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.1f}{suffix}{unit}"
    return f"{v:.1f}{unit}" if v < 100 else f"{v:.0f}{unit}"


def fmt_seconds(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1:
        return f"{v:.2f}s"
    if v >= 0.1:
        return f"{v * 1e3:.0f}ms"
    if v >= 1e-3:
        return f"{v * 1e3:.1f}ms"
    return f"{v * 1e6:.0f}us"


def fmt_share(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.0f}%"


def depth_bar(depth: float, slots: float | None, width: int = 4) -> str:
    """'██··2/4': filled cells for depth against slots, readable without colour."""
    depth = int(depth)
    if not slots:
        return f"{'·' * width}{depth}/?"
    filled = min(width, math.ceil(width * depth / slots)) if depth > 0 else 0
    return f"{'█' * filled}{'·' * (width - filled)}{depth}/{int(slots)}"


def hist_bars(buckets: list[tuple[float, float]], fmt, width: int = 30, limit: int = 10) -> str:
    """Text bars, one line per non-empty bucket (at most `limit`, busiest kept in order)."""
    counts = [(le, n) for le, n in per_bucket(buckets) if n > 0]
    if not counts:
        return "  (nothing in the last minute)"
    if len(counts) > limit:
        keep = sorted(sorted(counts, key=lambda x: -x[1])[:limit], key=lambda x: x[0])
        counts = keep
    top = max(n for _, n in counts)
    lines = []
    for le, n in counts:
        bar = "█" * max(1, round(width * n / top))
        label = "+Inf" if math.isinf(le) else fmt(le)
        lines.append(f"  <={label:>8} {bar} {int(n)}")
    return "\n".join(lines)


# ---------------------------------------------------------------- widgets

COLUMNS = (  # key, header, width
    ("device", "device", 7),
    ("card", "label", 10),
    ("procs", "producer>consumer", 22),
    ("fps", "fps", 6),
    ("zc", "zc%", 4),
    ("copies", "cp/s", 6),
    ("bytes", "B/s", 7),
    ("errors", "err", 4),
    ("outq", "out q", 8),
    ("capq", "cap q", 8),
    ("p50", "p50", 7),
    ("p99", "p99", 7),
    ("frames", "frames", 9),
)

SORTS = (  # name, key function, descending
    ("device", lambda r: _device_sort_key(r.device), False),
    ("fps", lambda r: r.fps if r.fps is not None else -1, True),
    ("zc%", lambda r: r.zero_copy_share if r.zero_copy_share is not None else -1, True),
    ("cp/s", lambda r: r.copies_s if r.copies_s is not None else -1, True),
    ("err", lambda r: r.errors, True),
    ("p99", lambda r: r.p99 if r.p99 is not None else -1, True),
)


# Below this width the table drops producer>consumer, B/s and frames (in
# the detail view) so that queues and latency fit in 80 columns.
WIDE = 132
NARROW_DROP = {"procs", "bytes", "frames"}


def columns_for(width: int):
    if width >= WIDE:
        return COLUMNS
    narrow = {"device": 6, "card": 7, "fps": 5, "copies": 5, "errors": 3, "outq": 7, "capq": 7, "p50": 6, "p99": 6}
    return tuple((k, h, narrow.get(k, w)) for k, h, w in COLUMNS if k not in NARROW_DROP)


def row_cells(r: CameraRow, columns=COLUMNS) -> tuple[str, ...]:
    cells = {
        "device": r.device, "card": r.card or "-",
        "procs": f"{r.producer or '-'}>{r.consumer or '-'}",
        "fps": fmt_rate(r.fps), "zc": fmt_share(r.zero_copy_share),
        "copies": fmt_rate(r.copies_s), "bytes": fmt_rate(r.bytes_s), "errors": f"{int(r.errors)}",
        "outq": depth_bar(r.output_depth, r.slots), "capq": depth_bar(r.capture_depth, r.slots),
        "p50": fmt_seconds(r.p50), "p99": fmt_seconds(r.p99), "frames": f"{int(r.frames)}",
    }
    return tuple(cells[k] for k, _, _ in columns)


def spark_values(series, index: int) -> list[float]:
    vals = [s[index] for s in series if s[index] is not None]
    # one value (or none) would draw as a full block: show a flat baseline
    return vals if len(vals) > 1 else (vals or [0.0]) * 2


class CameraTable(DataTable):
    """The camera table; Enter (detail) shows in the footer."""
    BINDINGS = [Binding("enter", "select_cursor", "detail", key_display="Enter")]


class Polled(Message):
    def __init__(self, reading: Reading) -> None:
        self.reading = reading
        super().__init__()


class SourceDown(Message):
    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__()


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]

    def compose(self) -> ComposeResult:
        yield Static(
            "vcam-observe top\n\n"
            "  q      quit\n"
            "  p      pause / resume refreshing\n"
            "  s      cycle the sort column\n"
            "  /      filter cameras (device, label, process); Esc clears\n"
            "  Enter  detail of the selected camera (Esc back)\n"
            "  ?      this help\n\n"
            "fps: frames delivered/s; zc%: share delivered zero-copy;\n"
            "cp/s, B/s: frames and bytes copied by the CPU per second;\n"
            "out q / cap q: output and capture queue depth / output slots;\n"
            "p50/p99: frame latency (QUEUE to DQBUF) over the last 5 s;\n"
            "frames: delivered since the camera appeared (wide terminals).",
            id="help")


class DetailScreen(Screen):
    """One camera: latency histograms and queue-depth history over the last minute."""

    BINDINGS = [Binding("escape", "app.pop_screen", "back"),
                Binding("q", "app.quit", "quit"),
                Binding("p", "app.toggle_pause", "pause"),
                Binding("question_mark", "app.help", "help")]

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="detail-banner", classes="banner")
        yield Static("", id="detail-head")
        with Horizontal(id="detail-sparks"):
            with Vertical():
                yield Static("output depth", classes="spark-label")
                yield Sparkline([0.0], id="spark-outq")
            with Vertical():
                yield Static("capture depth", classes="spark-label")
                yield Sparkline([0.0], id="spark-capq")
        with VerticalScroll(id="detail-body"):
            yield Static("", id="detail-hists")
        yield Footer()

    def on_mount(self) -> None:
        self.update_from(self.app)

    def update_from(self, app: "TopApp") -> None:
        model = app.model
        row = model.rows.get(self.device)
        self.query_one("#detail-banner", Static).update(Text(app.banner_text))
        self.query_one("#detail-banner").display = bool(app.banner_text)
        if row is None:
            self.query_one("#detail-head", Static).update(Text(f"{self.device}: gone"))
            return
        self.query_one("#detail-head", Static).update(Text(
            f"{row.device}  {row.card or '-'}  producer {row.producer or '-'}  consumer {row.consumer or '-'}\n"
            f"fps {fmt_rate(row.fps)}  zero-copy {fmt_share(row.zero_copy_share)}  "
            f"copies/s {fmt_rate(row.copies_s)}  B/s {fmt_rate(row.bytes_s)}  errors {int(row.errors)}\n"
            f"out q {depth_bar(row.output_depth, row.slots)}  cap q {depth_bar(row.capture_depth, row.slots)}  "
            f"p50 {fmt_seconds(row.p50)}  p99 {fmt_seconds(row.p99)}  frames {int(row.frames)}"))
        series = model.series.get(self.device, ())
        self.query_one("#spark-outq", Sparkline).data = spark_values(series, 3)
        self.query_one("#spark-capq", Sparkline).data = spark_values(series, 4)
        hists = model.minute_histograms(self.device)
        parts, empty = [], []
        for fam, fmt in [(f, fmt_seconds) for f in LATENCY_FAMILIES] + \
                        [(f, lambda le: f"{le:g}") for f in DEPTH_FAMILIES]:
            b = hists.get(fam)
            if b is None or not any(n for _, n in per_bucket(b)):
                empty.append(fam.removeprefix("vcam_"))
            else:
                parts.append(f"{fam}, last minute\n{hist_bars(b, fmt)}")
        if empty:
            parts.append("nothing in the last minute: " + ", ".join(empty))
        self.query_one("#detail-hists", Static).update(Text("\n\n".join(parts)))


class TopApp(App):
    """The table of cameras, sparklines of the selected one, a detail view."""

    CSS_PATH = "tui.tcss"
    TITLE = "vcam-observe top"
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("p", "toggle_pause", "pause"),
        Binding("s", "cycle_sort", "sort"),
        Binding("slash", "filter", "filter", key_display="/"),
        Binding("enter", "detail", "detail", key_display="Enter"),
        Binding("question_mark", "help", "help", key_display="?"),
    ]

    def __init__(self, source, interval: float = 1.0, autopoll: bool = True) -> None:
        super().__init__()
        self.source = source
        self.interval = interval
        self.autopoll = autopoll
        self.model = Model()
        self.paused = False
        self.sort_index = 0
        self.filter_text = ""
        self.banner_text = ""
        self.last_ok: float | None = None
        self.polls = 0
        self.columns = None

    def w(self, selector: str):
        """A widget of the main screen, whichever screen is on top."""
        return self.screen_stack[0].query_one(selector)

    def check_action(self, action: str, parameters) -> bool | None:
        # sort, filter and detail act on the table: hidden over the detail view
        if action in ("cycle_sort", "filter", "detail") and len(self.screen_stack) > 1:
            return False
        return True

    # -- layout
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="banner", classes="banner")
        table = CameraTable(id="cameras", cursor_type="row", zebra_stripes=False)
        yield table
        with Horizontal(id="sparks"):
            with Vertical():
                yield Static("fps", id="fps-label", classes="spark-label")
                yield Sparkline([0.0], id="spark-fps")
            with Vertical():
                yield Static("p99", id="lat-label", classes="spark-label")
                yield Sparkline([0.0], id="spark-lat")
        yield Input(placeholder="filter: device, label or process; Enter keeps, Esc clears", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        self.set_columns(self.size.width)
        self.w("#banner").display = False
        self.w("#filter").display = False
        self.update_subtitle()
        if self.autopoll:
            self.set_interval(self.interval, self.action_poll)
            self.action_poll()

    def set_columns(self, width: int) -> bool:
        columns = columns_for(width)
        if columns == self.columns:
            return False
        self.columns = columns
        table = self.w("#cameras")
        table.clear(columns=True)
        for key, header, w in columns:
            table.add_column(header, key=key, width=w)
        return True

    def on_resize(self, event) -> None:
        if self.columns is not None and self.set_columns(event.size.width):
            self.refresh_views()

    # -- polling: a timer starts a worker; the worker posts messages
    def action_poll(self) -> None:
        # one read at a time: a slow scrape makes ticks skip, never pile up
        if not self.paused and not any(w.group == "poll" and not w.is_finished for w in self.workers):
            self.fetch()

    @work(thread=True, group="poll")
    def fetch(self) -> None:
        try:
            reading = self.source.read()
        except SourceError as e:
            self.post_message(SourceDown(str(e)))
        except Exception as e:  # a source bug shows in the banner, it does not kill the TUI
            self.post_message(SourceDown(f"{type(e).__name__}: {e}"))
        else:
            self.post_message(Polled(reading))

    def on_polled(self, message: Polled) -> None:
        self.polls += 1
        self.last_ok = message.reading.t
        self.banner_text = ""
        self.model.add(message.reading)
        self.refresh_views()

    def on_source_down(self, message: SourceDown) -> None:
        self.banner_text = (f"SOURCE DOWN: {message.error}  retrying every {self.interval:g}s"
                            + ("; showing the last values" if self.model.rows else ""))
        self.refresh_views()

    # -- views
    def visible_rows(self) -> list[CameraRow]:
        rows = list(self.model.rows.values())
        if self.filter_text:
            f = self.filter_text.lower()
            rows = [r for r in rows if f in " ".join((r.device, r.card, r.producer, r.consumer)).lower()]
        _, key, desc = SORTS[self.sort_index]
        rows.sort(key=lambda r: _device_sort_key(r.device))
        rows.sort(key=key, reverse=desc)
        return rows

    def update_subtitle(self) -> None:
        parts = [getattr(self.source, "name", "")]
        parts.append(f"sort {SORTS[self.sort_index][0]}")
        if self.filter_text:
            parts.append(f"filter '{self.filter_text}'")
        if self.paused:
            parts.append("PAUSED")
        self.sub_title = " | ".join(p for p in parts if p)

    def refresh_views(self) -> None:
        banner = self.w("#banner")
        banner.update(Text(self.banner_text))
        banner.display = bool(self.banner_text)
        table = self.w("#cameras")
        selected = self.selected_device()
        rows = self.visible_rows()
        keys = [r.device for r in rows]
        if keys == [row.key.value for row in table.ordered_rows]:
            # same rows in the same order: touch only the cells that changed
            for r in rows:
                for (col, _, _), cell in zip(self.columns, row_cells(r, self.columns)):
                    if str(table.get_cell(r.device, col)) != cell:
                        table.update_cell(r.device, col, Text(cell))
        else:
            table.clear()
            for r in rows:
                table.add_row(*map(Text, row_cells(r, self.columns)), key=r.device)
        if selected is not None and selected in {r.device for r in rows}:
            table.move_cursor(row=table.get_row_index(selected), animate=False)
        self.update_sparks()
        self.update_subtitle()
        if isinstance(self.screen, DetailScreen):
            self.screen.update_from(self)

    def selected_device(self) -> str | None:
        table = self.w("#cameras")
        if not table.row_count:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            return None

    def update_sparks(self) -> None:
        device = self.selected_device()
        series = self.model.series.get(device, ()) if device else ()
        row = self.model.rows.get(device) if device else None
        self.w("#fps-label").update(Text(
            f"fps {device or ''} now {fmt_rate(row.fps) if row else '-'} (last minute)"))
        self.w("#lat-label").update(Text(
            f"p99 latency {device or ''} now {fmt_seconds(row.p99) if row else '-'}"))
        self.w("#spark-fps").data = spark_values(series, 1)
        self.w("#spark-lat").data = spark_values(series, 2)

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self.update_sparks()

    # -- keys
    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self.update_subtitle()

    def action_cycle_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        self.refresh_views()

    def action_filter(self) -> None:
        box = self.w("#filter")
        box.display = True
        box.value = self.filter_text
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.refresh_views()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        box = self.w("#filter")
        box.display = False
        self.w("#cameras").focus()

    def on_key(self, event) -> None:
        box = self.w("#filter")
        if event.key == "escape" and box.display and self.screen is self.screen_stack[0]:
            box.value = ""
            self.filter_text = ""
            box.display = False
            self.w("#cameras").focus()
            self.refresh_views()
            event.stop()

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_detail()

    def action_detail(self) -> None:
        device = self.selected_device()
        if device is not None and not isinstance(self.screen, DetailScreen):
            self.push_screen(DetailScreen(device))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


def run(source, interval: float) -> int:
    TopApp(source, interval=interval).run()
    return 0


# ---------------------------------------------------------------- batch mode

BATCH_COLUMNS = ("device", "card", "procs", "path", "frames", "fps", "zc", "bytes", "errors", "p50", "p99")


def path_name(zero_copy_share: float | None) -> str:
    """The frame path a camera took over a window, from its zero-copy share."""
    if zero_copy_share is None:
        return "idle"
    return {1.0: "zero-copy", 0.0: "copy"}.get(zero_copy_share, "mixed")


def summary_text(first: Reading, last: Reading, source_name: str) -> str:
    """A plain-text table of every camera: totals at `last`, rates, zero-copy
    share and latency percentiles over the window since `first`."""
    seconds = last.t - first.t
    headers = dict((k, h) for k, h, _ in COLUMNS) | {"path": "path"}
    rows = [[headers[k] for k in BATCH_COLUMNS]]
    for device in last.cameras:
        r = camera_row(first, last, first, device)
        cells = dict(zip((k for k, _, _ in COLUMNS), row_cells(r)))
        cells["path"] = path_name(r.zero_copy_share)
        rows.append([cells[k] for k in BATCH_COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(BATCH_COLUMNS))]
    lines = [f"vcam: {len(last.cameras)} camera(s) over {seconds:.1f} s from {source_name}", ""]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines += ["",
              "frames and err: totals; fps, zc% (zero-copy share of frames delivered), B/s (bytes copied),",
              f"p50 and p99 (QUEUE to DQBUF latency): over these {seconds:.1f} s."]
    return "\n".join(lines) + "\n"


def batch(source, seconds: float, out) -> int:
    """top without a terminal: read the source, wait `seconds`, read it
    again and print what happened in between."""
    try:
        first = source.read()
        time.sleep(seconds)
        last = source.read()
    except SourceError as e:
        print(f"vcam-observe: {e}", file=sys.stderr)
        return 1
    out.write(summary_text(first, last, source.name))
    out.flush()
    return 0


def screen_text(app: App) -> str:
    """The current screen as plain text (what a monochrome terminal shows);
    for tests and golden files."""
    import io

    from rich.console import Console
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system=None, record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text(styles=False)
