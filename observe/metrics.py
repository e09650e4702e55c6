"""The metric model: what vcam-observe exports, shared by the exporter, the
TUI and the dashboards.

Pure data and pure functions, no BPF: a `Snapshot` (what the probes saw,
per camera) goes in, prometheus-client metric families come out. Metric
names live here and nowhere else; import them rather than spelling them.

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
SOURCE = "source"           # bpf | sysfs
KIND = "kind"               # kind of BPF-side error

PATHS = ("zero_copy", "copy")

# Metric family names (histograms and counters without their suffixes,
# as prometheus-client wants them; the exposed series carry _bucket,
# _sum, _count, _total, _info).
CAMERA_INFO = "vcam_camera"                                 # _info {device, card}
PROCESS_INFO = "vcam_process"                               # _info {device, role, comm}
FRAMES_QUEUED = "vcam_frames_queued"                        # _total {device}
FRAMES_DEQUEUED = "vcam_frames_dequeued"                    # _total {device}
FRAMES_DELIVERED = "vcam_frames_delivered"                  # _total {device, path}
FRAMES_ERRORED = "vcam_frames_errored"                      # _total {device}
COPIED_BYTES = "vcam_copied_bytes"                          # _total {device}
OUTPUT_QUEUE_DEPTH = "vcam_output_queue_depth"              # gauge {device}
CAPTURE_QUEUE_DEPTH = "vcam_capture_queue_depth"            # gauge {device}
OUTPUT_SLOTS = "vcam_output_slots"                          # gauge {device}
CAPTURE_STREAMING = "vcam_capture_streaming"                # gauge {device}
OUTPUT_DEPTH_SEEN = "vcam_output_queue_depth_seen"          # histogram {device}
CAPTURE_DEPTH_SEEN = "vcam_capture_queue_depth_seen"        # histogram {device}
DELIVERY_LATENCY = "vcam_frame_delivery_latency_seconds"    # histogram {device}
DEQUEUE_LATENCY = "vcam_capture_dequeue_latency_seconds"    # histogram {device}
FRAME_LATENCY = "vcam_frame_latency_seconds"                # histogram {device}
COPY_DURATION = "vcam_copy_duration_seconds"                # histogram {device}
SCRAPE_DURATION = "vcam_exporter_scrape_duration_seconds"   # gauge
SCRAPE_SUCCESS = "vcam_exporter_scrape_success"             # gauge {source}
PROBE_ATTACHED = "vcam_exporter_probe_attached"             # gauge {probe}
BPF_ERRORS = "vcam_exporter_bpf_errors"                     # _total {kind}
PROBE_MISSED = "vcam_exporter_probe_missed"                 # _total {probe}

# Histogram kinds as numbered by vcam_probes.c (H_*), with their family.
LATENCY_KINDS = {
    0: (DELIVERY_LATENCY, "Time from the producer's output QUEUE to the frame being in a capture buffer."),
    1: (DEQUEUE_LATENCY, "Time from a capture buffer being done to the consumer's DQBUF."),
    3: (FRAME_LATENCY, "Time from the producer's output QUEUE to the consumer's DQBUF of that frame."),
    2: (COPY_DURATION, "Time spent copying a frame with the CPU (copy path)."),
}
DEPTH_KINDS = {
    4: (OUTPUT_DEPTH_SEEN, "Output queue depth seen at each output queue operation (QUEUE, delivery)."),
    5: (CAPTURE_DEPTH_SEEN, "Capture queue depth seen at each capture queue operation (buffer queued to the driver, buffer done)."),
}

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
    bytes_copied: int = 0
    output_depth: int = 0
    capture_depth: int = 0
    streaming: bool = False
    producer: str = ""
    consumer: str = ""
    histograms: dict[int, Histogram] = field(default_factory=dict)  # kind -> histogram

    @property
    def device(self) -> str:
        return f"video{self.device_nr}"


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


def latency_buckets(hist: Histogram) -> list[tuple[str, int]]:
    """Cumulative (le, count) pairs for a log2 ns histogram, ending in +Inf."""
    buckets = []
    for slot in LATENCY_SLOTS:
        below = sum(n for s, n in hist.slots.items() if s <= slot)
        buckets.append((repr(slot_upper_seconds(slot)), below))
    buckets.append(("+Inf", hist.count))
    return buckets


def depth_buckets(hist: Histogram) -> list[tuple[str, int]]:
    """Cumulative (le, count) pairs for a depth histogram, ending in +Inf."""
    buckets = []
    for bound in DEPTH_BOUNDS:
        below = sum(n for s, n in hist.slots.items() if s <= bound)
        buckets.append((str(float(bound)), below))
    buckets.append(("+Inf", hist.count))
    return buckets


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


def families(snapshot: Snapshot):
    """Yield every metric family for a snapshot (camera and probe metrics;
    the collector adds its own scrape metrics)."""
    dev = [DEVICE]
    info = InfoMetricFamily(CAMERA_INFO, "A vcam camera: its video node and card label.", labels=dev)
    procs = InfoMetricFamily(PROCESS_INFO, "The last process seen producing into (QUEUE) or consuming from (QBUF/DQBUF) a camera.",
                             labels=[DEVICE, ROLE])
    queued = CounterMetricFamily(FRAMES_QUEUED, "Frames the producer queued (VCAM_IOC_QUEUE).", labels=dev)
    dequeued = CounterMetricFamily(FRAMES_DEQUEUED, "Output slots handed back to the producer (VCAM_IOC_DEQUEUE).", labels=dev)
    delivered = CounterMetricFamily(FRAMES_DELIVERED, "Frames delivered into a capture buffer without error, by path.",
                                    labels=[DEVICE, PATH])
    errored = CounterMetricFamily(FRAMES_ERRORED, "Frames whose capture buffer was completed with an error.", labels=dev)
    copied = CounterMetricFamily(COPIED_BYTES, "Bytes copied by the CPU on the copy path.", labels=dev)
    out_depth = GaugeMetricFamily(OUTPUT_QUEUE_DEPTH, "Frames queued by the producer and waiting for a capture buffer.", labels=dev)
    cap_depth = GaugeMetricFamily(CAPTURE_QUEUE_DEPTH, "Capture buffers queued to the driver and not yet done.", labels=dev)
    slots = GaugeMetricFamily(OUTPUT_SLOTS, "Output slots of the camera (the most the output queue can hold).", labels=dev)
    streaming = GaugeMetricFamily(CAPTURE_STREAMING, "1 while the capture queue is streaming.", labels=dev)
    hists = {kind: HistogramMetricFamily(name, doc, labels=dev)
             for kind, (name, doc) in {**LATENCY_KINDS, **DEPTH_KINDS}.items()}

    for cam in sorted(snapshot.cameras, key=lambda c: c.device_nr):
        d = [cam.device]
        info.add_metric(d, {CARD: cam.card})
        if cam.producer:
            procs.add_metric([cam.device, "producer"], {COMM: cam.producer})
        if cam.consumer:
            procs.add_metric([cam.device, "consumer"], {COMM: cam.consumer})
        queued.add_metric(d, cam.frames_queued)
        dequeued.add_metric(d, cam.frames_dequeued)
        delivered.add_metric([cam.device, "zero_copy"], cam.frames_zero_copy)
        delivered.add_metric([cam.device, "copy"], cam.frames_copied)
        errored.add_metric(d, cam.frames_errored)
        copied.add_metric(d, cam.bytes_copied)
        out_depth.add_metric(d, cam.output_depth)
        cap_depth.add_metric(d, cam.capture_depth)
        if cam.slots is not None:
            slots.add_metric(d, cam.slots)
        streaming.add_metric(d, 1 if cam.streaming else 0)
        for kind, fam in hists.items():
            hist = cam.histograms.get(kind, Histogram())
            if kind in LATENCY_KINDS:
                fam.add_metric(d, latency_buckets(hist), hist.total / 1e9)
            else:
                fam.add_metric(d, depth_buckets(hist), float(hist.total))

    yield from (info, procs, queued, dequeued, delivered, errored, copied,
                out_depth, cap_depth, slots, streaming, *hists.values())

    attached = GaugeMetricFamily(PROBE_ATTACHED, "1 if the probe is attached, 0 if it could not be (see the exporter's log).",
                                 labels=[PROBE])
    for probe, ok in sorted(snapshot.probes.items()):
        attached.add_metric([probe], 1 if ok else 0)
    yield attached
    errors = CounterMetricFamily(BPF_ERRORS, "BPF-side problems: map_full (an update failed), unpaired (a return or "
                                 "delivery without its entry event, e.g. probes attached mid-call).", labels=[KIND])
    for kind, n in sorted(snapshot.bpf_errors.items()):
        errors.add_metric([kind], n)
    yield errors
    missed = CounterMetricFamily(PROBE_MISSED, "Hits of an attached probe whose BPF program did not run: the kernel's "
                                 "kprobe nmissed (return probes: no free instance, see maxactive) plus the program's "
                                 "recursion misses. Those frames are missing from the other numbers.", labels=[PROBE])
    for probe, n in sorted(snapshot.probes_missed.items()):
        missed.add_metric([probe], n)
    yield missed
