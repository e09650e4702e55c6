"""The metric model: what vcam-observe exports, shared by the exporter, the
TUI and the dashboards.

Pure data and pure functions, no BPF. One table (`METRICS`) says for each
metric its name, type, labels, help, where its number comes from and which
`CameraSample` field carries it; from it `families()` writes a `Snapshot`
as prometheus-client metric families (the exporter), `read_cameras()`
reads families back into `CameraSample`s (the TUI, in-process or scraped),
`exposed_series()` lists what a scrape can show (the dashboards' check) and
`markdown_table()` writes the table in observe/README.md.

Where numbers come from: what the driver counts itself (frames by path,
bytes copied, queue depths, slots; its sysfs files) is read from the
driver, which is exact, costs nothing per frame and counts from the
camera's creation whenever the exporter started; the probes give only what
the driver does not keep: each event's latency and queue depth
(histograms), the processes on each side and the streaming state.

Histograms come from the BPF side as log2 slots of nanoseconds: slot s
counts the values v with 2^(s-1) < v <= 2^s (slot 0: v <= 1), so bucket
`le` is 2^s ns in seconds, upper bound inclusive. Depth histograms count
exact depths (slot = depth, the last slot holds everything deeper).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, InfoMetricFamily)

PREFIX = "vcam"

# Label names
DEVICE = "device"           # "video3": the N of /dev/videoN, as a node name
CARD = "card"               # the camera's card label
PATH = "path"               # zero_copy | copy
ROLE = "role"               # producer | consumer
COMM = "comm"               # a process's command name
PROBE = "probe"             # an attach point, e.g. "kprobe:vcam_copy"
KIND = "kind"               # kind of BPF-side error

PATHS = ("zero_copy", "copy")

# Where a number comes from (the `source` of each row below):
DRIVER = "driver"      # the driver's own counters in sysfs: exact, free per frame, count from the camera's creation
BPF = "bpf"            # the probes: what only a probe sees (each event's latency and depth, the processes)
EXPORTER = "exporter"  # the exporter about itself


@dataclass(frozen=True)
class Metric:
    """One row of the metric table. A family with a fixed label value per
    row (`frames_delivered` by path, `process` by role) has a row each."""
    name: str                     # family name without _total/_info, as prometheus-client wants it
    kind: str                     # counter | gauge | histogram | info
    source: str                   # DRIVER | BPF | EXPORTER
    help: str
    labels: tuple[str, ...] = (DEVICE,)
    field: str = ""               # the CameraSample attribute carrying it (camera metrics)
    fixed: tuple[tuple[str, str], ...] = ()  # label values that pick this row
    info_label: str = ""          # info metrics: the label that carries the field
    hist_kind: int | None = None  # histograms: the kind (H_*) in vcam_probes.c
    latency: bool = False         # histograms: log2 ns buckets (else depth buckets)

    @property
    def series(self) -> tuple[str, ...]:
        """The names a scrape shows for this family."""
        if self.kind == "counter":
            return (self.name + "_total",)
        if self.kind == "info":
            return (self.name + "_info",)
        if self.kind == "histogram":
            return tuple(self.name + s for s in ("_bucket", "_sum", "_count"))
        return (self.name,)

    @property
    def label_doc(self) -> str:
        fixed = dict(self.fixed)
        names = [f"{n}={fixed[n]}" if n in fixed else n for n in self.labels]
        return ", ".join(names + ([self.info_label] if self.info_label else []))


def _camera(name, kind, source, field, help, **kw) -> Metric:
    return Metric(name, kind, source, help, field=field, **kw)


CAMERA_INFO = "vcam_camera"
PROCESS_INFO = "vcam_process"
FRAMES_QUEUED = "vcam_frames_queued"
FRAMES_DEQUEUED = "vcam_frames_dequeued"
FRAMES_DELIVERED = "vcam_frames_delivered"
FRAMES_ERRORED = "vcam_frames_errored"
FRAMES_DROPPED = "vcam_frames_dropped"
COPIED_BYTES = "vcam_copied_bytes"
OUTPUT_QUEUE_DEPTH = "vcam_output_queue_depth"
CAPTURE_QUEUE_DEPTH = "vcam_capture_queue_depth"
OUTPUT_SLOTS = "vcam_output_slots"
CAPTURE_STREAMING = "vcam_capture_streaming"
OUTPUT_DEPTH_SEEN = "vcam_output_queue_depth_seen"
CAPTURE_DEPTH_SEEN = "vcam_capture_queue_depth_seen"
DELIVERY_LATENCY = "vcam_frame_delivery_latency_seconds"
DEQUEUE_LATENCY = "vcam_capture_dequeue_latency_seconds"
FRAME_LATENCY = "vcam_frame_latency_seconds"
COPY_DURATION = "vcam_copy_duration_seconds"
SCRAPE_DURATION = "vcam_exporter_scrape_duration_seconds"
SCRAPE_SUCCESS = "vcam_exporter_scrape_success"
PROBE_ATTACHED = "vcam_exporter_probe_attached"
BPF_ERRORS = "vcam_exporter_bpf_errors"
PROBE_MISSED = "vcam_exporter_probe_missed"

# The table: the exporter writes from it, the TUI reads with it, the
# dashboards are checked against it, observe/README.md shows it.
CAMERA_METRICS = (
    _camera(CAMERA_INFO, "info", DRIVER, "card", "A vcam camera present now: its video node and card label.",
            info_label=CARD),
    _camera(PROCESS_INFO, "info", BPF, "producer", "The last process seen queuing frames (role=producer) or capture "
            "buffers (role=consumer) on a camera.", labels=(DEVICE, ROLE), fixed=((ROLE, "producer"),),
            info_label=COMM),
    _camera(PROCESS_INFO, "info", BPF, "consumer", "", labels=(DEVICE, ROLE), fixed=((ROLE, "consumer"),),
            info_label=COMM),
    _camera(FRAMES_QUEUED, "counter", DRIVER, "frames_queued", "Frames the producer queued (VCAM_IOC_QUEUE accepted)."),
    _camera(FRAMES_DEQUEUED, "counter", DRIVER, "frames_dequeued",
            "Output slots handed back to the producer (VCAM_IOC_DEQUEUE)."),
    _camera(FRAMES_DELIVERED, "counter", DRIVER, "frames_zero_copy",
            "Frames delivered into a capture buffer without error, by path.", labels=(DEVICE, PATH),
            fixed=((PATH, "zero_copy"),)),
    _camera(FRAMES_DELIVERED, "counter", DRIVER, "frames_copied", "", labels=(DEVICE, PATH), fixed=((PATH, "copy"),)),
    _camera(FRAMES_ERRORED, "counter", DRIVER, "frames_errored",
            "Frames whose capture buffer the frame path completed with an error."),
    _camera(FRAMES_DROPPED, "counter", DRIVER, "frames_dropped",
            "Frames no consumer received: still waiting when the consumer stopped streaming."),
    _camera(COPIED_BYTES, "counter", DRIVER, "bytes_copied", "Bytes copied by the CPU on the copy path."),
    _camera(OUTPUT_QUEUE_DEPTH, "gauge", DRIVER, "output_depth",
            "Frames queued by the producer and not yet in a capture buffer."),
    _camera(CAPTURE_QUEUE_DEPTH, "gauge", DRIVER, "capture_depth", "Capture buffers queued to the driver and not yet done."),
    _camera(OUTPUT_SLOTS, "gauge", DRIVER, "slots", "Output slots of the camera (the most the output queue can hold)."),
    _camera(CAPTURE_STREAMING, "gauge", BPF, "streaming", "1 while the capture queue is streaming."),
    _camera(OUTPUT_DEPTH_SEEN, "histogram", BPF, "", "Output queue depth seen at each output queue operation "
            "(QUEUE, delivery).", hist_kind=4),
    _camera(CAPTURE_DEPTH_SEEN, "histogram", BPF, "", "Capture queue depth seen at each capture queue operation "
            "(buffer queued to the driver, buffer done).", hist_kind=5),
    _camera(DELIVERY_LATENCY, "histogram", BPF, "",
            "Time from the producer's output QUEUE to the frame being in a capture buffer.", hist_kind=0, latency=True),
    _camera(DEQUEUE_LATENCY, "histogram", BPF, "", "Time from a capture buffer being done to the consumer's DQBUF.",
            hist_kind=1, latency=True),
    _camera(FRAME_LATENCY, "histogram", BPF, "",
            "Time from the producer's output QUEUE to the consumer's DQBUF of that frame.", hist_kind=3, latency=True),
    _camera(COPY_DURATION, "histogram", BPF, "", "Time spent copying a frame with the CPU (copy path).",
            hist_kind=2, latency=True),
)

# The exporter's own health; `field` is the Snapshot attribute (label -> value).
EXPORTER_METRICS = (
    Metric(SCRAPE_DURATION, "gauge", EXPORTER, "Time this scrape took to read the driver's counters and the probes.",
           labels=()),
    Metric(SCRAPE_SUCCESS, "gauge", EXPORTER, "1 if reading the driver's counters and the probes succeeded in this "
           "scrape.", labels=()),
    Metric(PROBE_ATTACHED, "gauge", EXPORTER, "1 if the probe is attached, 0 if it could not be (see the exporter's "
           "log).", labels=(PROBE,), field="probes"),
    Metric(BPF_ERRORS, "counter", EXPORTER, "BPF-side problems: map_full (an update failed), unpaired (a return or "
           "delivery without its entry event, e.g. probes attached mid-call).", labels=(KIND,), field="bpf_errors"),
    Metric(PROBE_MISSED, "counter", EXPORTER, "Hits of an attached probe whose BPF program did not run: the kernel's "
           "kprobe nmissed (return probes: no free instance, see maxactive) plus the program's recursion misses. "
           "Those events are missing from the BPF numbers.", labels=(PROBE,), field="probes_missed"),
)

METRICS = CAMERA_METRICS + EXPORTER_METRICS
HISTOGRAMS = tuple(m for m in CAMERA_METRICS if m.kind == "histogram")


def metric(name: str) -> Metric:
    """The table's (first) row of a family."""
    return next(m for m in METRICS if m.name == name)


def exposed_series() -> set[str]:
    """Every series name a scrape of the exporter can show."""
    return {name for m in METRICS for name in m.series}


def markdown_table() -> str:
    """The metric table for observe/README.md: one line per family."""
    lines = ["| metric | type | labels | from | meaning |", "|---|---|---|---|---|"]
    for name in dict.fromkeys(m.name for m in METRICS):
        rows = [m for m in METRICS if m.name == name]
        first = rows[0]
        labels = []
        for label in first.labels:
            values = [dict(m.fixed)[label] for m in rows if label in dict(m.fixed)]
            labels.append(label + "=" + r"\|".join(values) if values else label)  # "\|": a | inside a table cell
        labels += [first.info_label] if first.info_label else []
        shown = first.name if first.kind == "histogram" else first.series[0]
        lines.append(f"| `{shown}` | {first.kind} | {', '.join(labels)} | {first.source} | {first.help} |")
    return "\n".join(lines) + "\n"


# Exported latency buckets: 2^10 ns (~1 us) to 2^34 ns (~17 s).
LATENCY_SLOTS = range(10, 35)
# Exported depth buckets; the BPF side clamps depths at MAX_DEPTH_SLOT.
DEPTH_BOUNDS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 64)
MAX_DEPTH_SLOT = 64


@dataclass
class Histogram:
    """Raw BPF histogram: slot -> count, and the sum of the observed values
    (nanoseconds for latencies, buffers for depths)."""
    slots: dict[int, int] = field(default_factory=dict)
    total: int = 0

    @property
    def count(self) -> int:
        return sum(self.slots.values())


@dataclass
class CameraSample:
    device_nr: int
    card: str = ""
    slots: int | None = None           # output slots, from sysfs
    frames_queued: int = 0
    frames_dequeued: int = 0
    frames_zero_copy: int = 0
    frames_copied: int = 0
    frames_errored: int = 0
    frames_dropped: int = 0
    bytes_copied: int = 0
    output_depth: int = 0
    capture_depth: int = 0
    streaming: bool = False
    producer: str = ""
    consumer: str = ""
    histograms: dict[int, Histogram] = field(default_factory=dict)  # kind -> raw BPF histogram (writing)
    # family name -> cumulative [(le, count)], le ascending, last +Inf (reading)
    buckets: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return f"video{self.device_nr}"

    @property
    def frames_delivered(self) -> int:
        return self.frames_zero_copy + self.frames_copied


@dataclass
class Snapshot:
    cameras: list[CameraSample] = field(default_factory=list)
    probes: dict[str, bool] = field(default_factory=dict)      # probe -> attached
    bpf_errors: dict[str, int] = field(default_factory=dict)   # kind -> count
    probes_missed: dict[str, int] = field(default_factory=dict)  # attached probe -> hits its program missed


def log2_slot(value_ns: int) -> int:
    """The slot vcam_probes.c files a value under: value <= 2^slot."""
    return 0 if value_ns <= 1 else (value_ns - 1).bit_length()


def slot_upper_seconds(slot: int) -> float:
    """The inclusive upper bound of a log2 nanosecond slot, in seconds."""
    return (1 << slot) / 1e9


def _cumulative(hist: Histogram, bounds) -> list[tuple[str, int]]:
    """Cumulative (le, count) pairs for (slot, le) bounds, ending in +Inf."""
    buckets = [(le, sum(n for s, n in hist.slots.items() if s <= slot)) for slot, le in bounds]
    return buckets + [("+Inf", hist.count)]


def latency_buckets(hist: Histogram) -> list[tuple[str, int]]:
    """Cumulative (le, count) pairs for a log2 ns histogram, ending in +Inf."""
    return _cumulative(hist, [(slot, repr(slot_upper_seconds(slot))) for slot in LATENCY_SLOTS])


def depth_buckets(hist: Histogram) -> list[tuple[str, int]]:
    """Cumulative (le, count) pairs for a depth histogram, ending in +Inf."""
    return _cumulative(hist, [(bound, str(float(bound))) for bound in DEPTH_BOUNDS])


def quantile_slot(hist: Histogram, q: float) -> int | None:
    """The log2 slot that holds the q-quantile of a histogram, or None."""
    total = hist.count
    if not total:
        return None
    seen = 0
    for slot in sorted(hist.slots):
        seen += hist.slots[slot]
        if seen >= q * total:
            return slot
    return max(hist.slots)


def _family(m: Metric):
    if m.kind == "info":
        return InfoMetricFamily(m.name, m.help, labels=list(m.labels))
    kind = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily, "histogram": HistogramMetricFamily}[m.kind]
    return kind(m.name, m.help, labels=list(m.labels))


def _histogram(m: Metric, cam: CameraSample):
    hist = cam.histograms.get(m.hist_kind, Histogram())
    if m.latency:
        return latency_buckets(hist), hist.total / 1e9
    return depth_buckets(hist), float(hist.total)


def families(snapshot: Snapshot):
    """Yield every metric family for a snapshot, as the table says (the
    collector adds its scrape duration and success)."""
    fams = {}  # a family's further rows (a fixed label value each) add to its first
    for m in CAMERA_METRICS:
        fam = fams.setdefault(m.name, _family(m))
        for cam in sorted(snapshot.cameras, key=lambda c: c.device_nr):
            labels = [cam.device if label == DEVICE else dict(m.fixed)[label] for label in m.labels]
            if m.kind == "histogram":
                fam.add_metric(labels, *_histogram(m, cam))
                continue
            value = getattr(cam, m.field)
            if m.kind == "info":
                if value or m.name == CAMERA_INFO:  # a process not seen yet has no series; a card may be ""
                    fam.add_metric(labels, {m.info_label: value})
            elif value is not None:
                fam.add_metric(labels, int(value))
    yield from fams.values()
    for m in EXPORTER_METRICS:
        if m.field:
            fam = _family(m)
            for label, value in sorted(getattr(snapshot, m.field).items()):
                fam.add_metric([label], int(value))
            yield fam


def _device_nr(device: str) -> int | None:
    digits = device[len("video"):]
    return int(digits) if device.startswith("video") and digits.isdigit() else None


def read_cameras(families) -> list[CameraSample]:
    """Metric families (parsed from a scrape, or straight from `families()`)
    -> the cameras, ordered by device number: the inverse of `families()`
    for camera metrics, driven by the same table. Only cameras with a
    vcam_camera_info series are present."""
    rows: dict[str, list[Metric]] = {}
    for m in CAMERA_METRICS:
        for series in m.series:
            rows.setdefault(series, []).append(m)
    seen = []
    for family in families:
        for s in family.samples:
            nr = _device_nr(s.labels.get(DEVICE, ""))
            for m in rows.get(s.name, ()):
                if nr is not None and all(s.labels.get(k) == v for k, v in m.fixed):
                    seen.append((m, nr, s))
    cams = {nr: CameraSample(nr, card=s.labels.get(CARD, "")) for m, nr, s in seen if m.name == CAMERA_INFO}
    for m, nr, s in seen:
        cam = cams.get(nr)
        if cam is None or m.name == CAMERA_INFO:
            continue
        if m.kind == "info":
            setattr(cam, m.field, s.labels.get(m.info_label, ""))
        elif m.kind == "histogram":
            if s.name.endswith("_bucket"):
                cam.buckets.setdefault(m.name, []).append((float(s.labels["le"]), s.value))
        elif isinstance(getattr(cam, m.field), bool):
            setattr(cam, m.field, bool(s.value))
        else:
            setattr(cam, m.field, int(s.value))
    for cam in cams.values():
        for b in cam.buckets.values():
            b.sort()
    return [cams[nr] for nr in sorted(cams)]


if __name__ == "__main__":
    print(markdown_table(), end="")
