"""promtool unit tests of the alerts (prometheus/vcam-alerts_test.yml), one
row a case: an alert, the series fed to it, when it must stay silent and
when it fires, with which labels and $value.

Series are one sample a minute in promtool's notation: `a+bxN` is a, a+b,
… a+N·b (N+1 samples), `vxN` is v N+1 times, and parts follow each other.
Every case's camera is job="vcam", instance="lab1:9477", device="video3";
a second machine (lab2) or camera (video4) is the one that must not fire.
"""

import re
from dataclasses import dataclass

from observe import metrics as m

from .queries import bucket, total
from .rules import ALERTS

LAB1 = 'job="vcam", instance="lab1:9477"'
LAB2 = 'job="vcam", instance="lab2:9477"'
VIDEO3 = LAB1 + ', device="video3"'
VIDEO4 = LAB1 + ', device="video4"'
CAMERA = {"job": "vcam", "instance": "lab1:9477", "device": "video3"}


@dataclass(frozen=True)
class AlertCase:
    alert: str
    story: str                      # the promtool test's name
    series: dict[str, str]          # series -> its samples
    silent_at: tuple[str, ...]      # evaluation times at which the alert is not firing
    fires_at: str                   # an evaluation time at which it fires, once,
    labels: dict[str, str]          # with these labels (and the rule's severity)
    value: str = ""                 # and $value as its annotations render it


def latency_buckets(camera: str, le_samples: dict[str, str]) -> dict[str, str]:
    return {f'{bucket(m.FRAME_LATENCY)}{{{camera}, le="{le}"}}': v for le, v in le_samples.items()}


# Frame latency buckets of 2^24 ns (16.8 ms) and 2^28 ns (268 ms)
FAST_LE, SLOW_LE = (repr(m.slot_upper_seconds(s)) for s in (24, 28))

CASES = [
    AlertCase("VcamExporterDown", "exporter down fires, exporter up does not",
              series={f"up{{{LAB1}}}": "0x10", f"up{{{LAB2}}}": "1x10"},
              silent_at=("3m",), fires_at="6m", labels={"job": "vcam", "instance": "lab1:9477"}),
    AlertCase("VcamProbeNotAttached", "a missing probe fires, attached probes do not",
              series={f'{m.PROBE_ATTACHED}{{{LAB1}, probe="kprobe:vcam_copy"}}': "0x15",
                      f'{m.PROBE_ATTACHED}{{{LAB1}, probe="kprobe:vcam_frame_delivered"}}': "1x15"},
              silent_at=("5m",), fires_at="11m",
              labels={"job": "vcam", "instance": "lab1:9477", "probe": "kprobe:vcam_copy"}),
    AlertCase("VcamExporterReadFailing", "a failing source fires, a working one does not",
              series={f'{m.SCRAPE_SUCCESS}{{{LAB1}}}': "1x4 0x10",
                      f'{m.SCRAPE_SUCCESS}{{{LAB2}}}': "1x15"},
              silent_at=("6m",), fires_at="11m",
              labels={"job": "vcam", "instance": "lab1:9477"}),
    # frames flow for 10m, then the consumer stops and the output queue fills
    AlertCase("VcamConsumerStalled", "a stalled consumer fires, a streaming one does not",
              series={f'{total(m.FRAMES_DELIVERED)}{{{VIDEO3}, path="copy"}}': "0+1800x10 18000x15",
                      f'{total(m.FRAMES_DELIVERED)}{{{VIDEO3}, path="zero_copy"}}': "0x25",
                      f"{m.OUTPUT_QUEUE_DEPTH}{{{VIDEO3}}}": "1x10 4x15"},
              silent_at=("10m", "14m"), fires_at="18m", labels=CAMERA, value="4"),
    # 30 frames/s; none errored for 10m, then 3/s do (9%)
    AlertCase("VcamFrameErrorsHigh", "an error ratio above the threshold fires, a clean stream does not",
              series={f'{total(m.FRAMES_DELIVERED)}{{{VIDEO3}, path="copy"}}': "0+1800x30",
                      f'{total(m.FRAMES_DELIVERED)}{{{VIDEO3}, path="zero_copy"}}': "0x30",
                      f"{total(m.FRAMES_ERRORED)}{{{VIDEO3}}}": "0x10 0+180x20"},
              silent_at=("10m",), fires_at="25m", labels=CAMERA, value="9.091%"),
    # video3 delivers zero-copy for 20m, then copies; video4 always copied
    AlertCase("VcamZeroCopyFellBack", "a zero-copy camera that copies fires; zero-copy alone and copy alone do not",
              series={f'{total(m.FRAMES_DELIVERED)}{{{VIDEO3}, path="zero_copy"}}': "0+1800x20 36000x20",
                      f'{total(m.FRAMES_DELIVERED)}{{{VIDEO3}, path="copy"}}': "0x20 0+1800x20",
                      f'{total(m.FRAMES_DELIVERED)}{{{VIDEO4}, path="zero_copy"}}': "0x40",
                      f'{total(m.FRAMES_DELIVERED)}{{{VIDEO4}, path="copy"}}': "0+1800x40"},
              silent_at=("15m",), fires_at="30m", labels={**CAMERA, "path": "copy"}, value="30"),
    # video3's frames move from the 16.8 ms bucket to the 268 ms one after 10m; video4's stay fast
    AlertCase("VcamLatencyP99High", "a slow camera's p99 fires, a fast camera's does not",
              series={**latency_buckets(VIDEO3, {FAST_LE: "0+30x10 300x30", SLOW_LE: "0+30x40", "+Inf": "0+30x40"}),
                      **latency_buckets(VIDEO4, {FAST_LE: "0+30x40", SLOW_LE: "0+30x40", "+Inf": "0+30x40"})},
              silent_at=("10m",), fires_at="30m", labels=CAMERA, value="265.9ms"),
]


def rendered_annotations(rule: dict, labels: dict[str, str], value: str) -> dict[str, str]:
    """The rule's annotations as promtool renders them for these labels
    and this $value (given already formatted)."""
    out = {}
    for key, text in rule["annotations"].items():
        text = re.sub(r"\{\{ \$value[^}]*\}\}", value, text)
        out[key] = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda mt: labels[mt.group(1)], text)
    return out


def promtool_test(case: AlertCase) -> dict:
    rule = next(a for a in ALERTS if a["alert"] == case.alert)
    silent = [{"eval_time": t, "alertname": case.alert, "exp_alerts": []} for t in case.silent_at]
    firing = {"eval_time": case.fires_at, "alertname": case.alert, "exp_alerts": [
        {"exp_labels": {"severity": rule["labels"]["severity"], **case.labels},
         "exp_annotations": rendered_annotations(rule, case.labels, case.value)}]}
    return {"name": case.story, "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
            "alert_rule_test": silent + [firing]}


def alert_tests():
    """The promtool test file: every case, against the generated rule files."""
    return {"rule_files": ["vcam-rules.yml", "vcam-alerts.yml"], "evaluation_interval": "1m",
            "tests": [promtool_test(case) for case in CASES]}
