"""Prometheus rules: the dashboards' quantities recorded at a fixed window,
and the alerts, which read those recorded series where they can."""

from observe import metrics as m

from .config import BY, CONFIG, SEL
from .queries import (q_copied_bytes_per_second, q_error_ratio, q_errors_per_second, q_frames_by_path,
                      q_frames_per_second, q_queued_per_second, q_quantile, q_zero_copy_ratio, total)

RW = CONFIG["rule_window"]


def p99(name):
    """The builder of a histogram's p99, shaped like the other queries."""
    return lambda sel, w: q_quantile(name, 0.99, sel, w)


RECORDING = [
    # (record, expression builder); names are level:metric:operations
    (f"instance_device:vcam_frames_delivered:rate{RW}", q_frames_per_second),
    (f"instance_device_path:vcam_frames_delivered:rate{RW}", q_frames_by_path),
    (f"instance_device:vcam_frames_zero_copy:ratio_rate{RW}", q_zero_copy_ratio),
    (f"instance_device:vcam_frames_errored:rate{RW}", q_errors_per_second),
    (f"instance_device:vcam_frames_errored:ratio_rate{RW}", q_error_ratio),
    (f"instance_device:vcam_frames_queued:rate{RW}", q_queued_per_second),
    (f"instance_device:vcam_copied_bytes:rate{RW}", q_copied_bytes_per_second),
    (f"instance_device:vcam_frame_latency_seconds:p99_rate{RW}", p99(m.FRAME_LATENCY)),
    (f"instance_device:vcam_frame_delivery_latency_seconds:p99_rate{RW}", p99(m.DELIVERY_LATENCY)),
    (f"instance_device:vcam_copy_duration_seconds:p99_rate{RW}", p99(m.COPY_DURATION)),
]
RECORDED = {name for name, _ in RECORDING}


def recording_groups():
    return [{"name": "vcam.rules", "rules": [{"record": name, "expr": build(SEL, RW)} for name, build in RECORDING]}]


def recorded(level, metric_ops):
    """A recorded series' name, checked to be recorded."""
    name = f"{level}:{metric_ops}"
    assert name in RECORDED, name
    return name


ALERTS = [
    {
        "alert": "VcamExporterDown",
        "expr": f"up{{{SEL}}} == 0",
        "for": "5m",
        "labels": {"severity": "critical"},
        "annotations": {
            "summary": "vcam exporter {{ $labels.instance }} is down.",
            "description": "Prometheus has not scraped the vcam-observe exporter on {{ $labels.instance }} for 5 minutes: "
                           "its cameras are not watched.",
        },
    },
    {
        "alert": "VcamProbeNotAttached",
        "expr": f"{m.PROBE_ATTACHED}{{{SEL}}} == 0",
        "for": "10m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "vcam probe {{ $labels.probe }} is not attached on {{ $labels.instance }}.",
            "description": "The exporter on {{ $labels.instance }} could not attach {{ $labels.probe }} for 10 minutes "
                           "(the vcam module is not loaded, or this kernel lacks the attach point): "
                           "the numbers that probe feeds are missing.",
        },
    },
    {
        "alert": "VcamExporterReadFailing",
        "expr": f"{m.SCRAPE_SUCCESS}{{{SEL}}} == 0",
        "for": "5m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "vcam exporter {{ $labels.instance }} cannot read the driver's counters or the probes.",
            "description": "Every scrape of {{ $labels.instance }} for 5 minutes failed to read the driver's sysfs "
                           "counters or the probes' maps; see the exporter's log.",
        },
    },
    {
        "alert": "VcamConsumerStalled",
        # Frames wait in the output queue and none has been delivered for the
        # whole window: the consumer stopped returning capture buffers.
        "expr": f"{m.OUTPUT_QUEUE_DEPTH}{{{SEL}}} > 0 and on ({BY}) "
                f"{recorded('instance_device', 'vcam_frames_delivered:rate' + RW)} == 0",
        "for": "2m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Consumer of {{ $labels.device }} on {{ $labels.instance }} stalled.",
            "description": "{{ $value }} frames wait in the output queue of {{ $labels.device }} on {{ $labels.instance }} "
                           "and none was delivered for 5 minutes: the consumer stopped dequeuing capture buffers.",
        },
    },
    {
        "alert": "VcamFrameErrorsHigh",
        "expr": f"{recorded('instance_device', 'vcam_frames_errored:ratio_rate' + RW)} > {CONFIG['error_ratio_threshold']}",
        "for": "5m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "{{ $labels.device }} on {{ $labels.instance }} errors {{ $value | humanizePercentage }} of its frames.",
            "description": f"More than {CONFIG['error_ratio_threshold']:.0%} of the frames of {{{{ $labels.device }}}} on "
                           "{{ $labels.instance }} were completed with an error over 5 minutes (short frames, a failed "
                           "copy or import).",
        },
    },
    {
        "alert": "VcamZeroCopyFellBack",
        # Copying now, after delivering zero-copy within the last hour.
        "expr": (f'{recorded("instance_device_path", "vcam_frames_delivered:rate" + RW)}{{path="copy"}} > 0'
                 f' and on ({BY}) increase({total(m.FRAMES_DELIVERED)}{{{SEL}, path="zero_copy"}}[1h]) > 0'),
        "for": "5m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "{{ $labels.device }} on {{ $labels.instance }} fell back to copying frames.",
            "description": "{{ $labels.device }} on {{ $labels.instance }} delivered frames zero-copy within the last hour "
                           "and now copies {{ $value | humanize }} frames/s with the CPU: a consumer no longer imports "
                           "the producer's DMA-BUFs.",
        },
    },
    {
        "alert": "VcamLatencyP99High",
        "expr": f"{recorded('instance_device', 'vcam_frame_latency_seconds:p99_rate' + RW)} "
                f"> {CONFIG['latency_p99_threshold_seconds']}",
        "for": "10m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Frame latency p99 of {{ $labels.device }} on {{ $labels.instance }} is {{ $value | humanizeDuration }}.",
            "description": "99% of the frames of {{ $labels.device }} on {{ $labels.instance }} take up to {{ $value | humanizeDuration }} "
                           f"from the producer's QUEUE to the consumer's DQBUF (threshold {CONFIG['latency_p99_threshold_seconds']}s) "
                           "for 10 minutes.",
        },
    },
]


def alert_groups():
    return [{"name": "vcam.alerts", "rules": ALERTS}]
