#!/usr/bin/env python3
"""Generate everything in dashboards/ from the metric model (observe/metrics.py).

    dashboards/generate.py           # (re)write the committed files
    dashboards/generate.py --check   # exit 1, naming the stale files, if they differ

The committed JSON and YAML are what Grafana and Prometheus load; this file
is where they are written, so a metric renamed in observe/metrics.py is a
regeneration away (and `--check`, run by the tests, fails until it is done).
Every metric a panel or rule names is checked against what the exporter
really exposes (its collector, rendered on a synthetic snapshot): a panel
that names a metric the exporter does not export stops generation with an
error naming the panel and the metric.

Style follows node_exporter's node-mixin: the selector is configurable
(CONFIG), uids are stable, every dashboard has a datasource variable and
`instance`/`device` variables from label_values(), every rate() uses
$__rate_interval, histograms are heatmaps, alerts carry severity, summary
and description.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from observe import metrics as m  # noqa: E402

# --- configuration (the node-mixin `_config`) -------------------------------

CONFIG = {
    "job": "vcam",                         # the scrape job of vcam-observe exporters
    "selector": 'job="vcam"',              # what selects them in every query
    "rule_window": "5m",                   # window of the recording rules
    "latency_p99_threshold_seconds": 0.1,  # VcamLatencyP99High
    "error_ratio_threshold": 0.01,         # VcamFrameErrorsHigh
    "grafana_schema_version": 39,          # Grafana 10.4 / 11.x
    "datasource_uid": "vcam-prometheus",
    "uid_prefix": "vcam-",
}

SEL = CONFIG["selector"]
DASH_SEL = SEL + ', instance=~"$instance", device=~"$device"'    # per camera
INST_SEL = SEL + ', instance=~"$instance"'                         # per exporter
BY = "job, instance, device"

# Exposed sample names, built from the model's family names.
def total(name): return name + "_total"
def bucket(name): return name + "_bucket"
def info(name): return name + "_info"


# --- the quantities, one expression each; window W is $__rate_interval on a
# dashboard, CONFIG["rule_window"] in a recording rule ------------------------

def q_frames_per_second(sel, w):
    return f"sum by ({BY}) (rate({total(m.FRAMES_DELIVERED)}{{{sel}}}[{w}]))"


def q_frames_by_path(sel, w):
    return f"sum by ({BY}, path) (rate({total(m.FRAMES_DELIVERED)}{{{sel}}}[{w}]))"


def q_zero_copy_ratio(sel, w):
    return (f'sum by ({BY}) (rate({total(m.FRAMES_DELIVERED)}{{{sel}, path="zero_copy"}}[{w}]))'
            f" / sum by ({BY}) (rate({total(m.FRAMES_DELIVERED)}{{{sel}}}[{w}]))")


def q_errors_per_second(sel, w):
    return f"sum by ({BY}) (rate({total(m.FRAMES_ERRORED)}{{{sel}}}[{w}]))"


def q_error_ratio(sel, w):
    return (f"sum by ({BY}) (rate({total(m.FRAMES_ERRORED)}{{{sel}}}[{w}]))"
            f" / (sum by ({BY}) (rate({total(m.FRAMES_ERRORED)}{{{sel}}}[{w}]))"
            f" + sum by ({BY}) (rate({total(m.FRAMES_DELIVERED)}{{{sel}}}[{w}])))")


def q_queued_per_second(sel, w):
    return f"sum by ({BY}) (rate({total(m.FRAMES_QUEUED)}{{{sel}}}[{w}]))"


def q_copied_bytes_per_second(sel, w):
    return f"sum by ({BY}) (rate({total(m.COPIED_BYTES)}{{{sel}}}[{w}]))"


def q_quantile(name, q, sel, w):
    return f"histogram_quantile({q}, sum by ({BY}, le) (rate({bucket(name)}{{{sel}}}[{w}])))"


def q_heatmap(name, sel, w):
    return f"sum by (le) (rate({bucket(name)}{{{sel}}}[{w}]))"


W = "$__rate_interval"

# --- recording rules: the dashboards' quantities at a fixed window -----------

RW = CONFIG["rule_window"]
RECORDING = [
    # (record, expression builder); level:metric:operations
    (f"instance_device:vcam_frames_delivered:rate{RW}", q_frames_per_second),
    (f"instance_device_path:vcam_frames_delivered:rate{RW}", q_frames_by_path),
    (f"instance_device:vcam_frames_zero_copy:ratio_rate{RW}", q_zero_copy_ratio),
    (f"instance_device:vcam_frames_errored:rate{RW}", q_errors_per_second),
    (f"instance_device:vcam_frames_errored:ratio_rate{RW}", q_error_ratio),
    (f"instance_device:vcam_frames_queued:rate{RW}", q_queued_per_second),
    (f"instance_device:vcam_copied_bytes:rate{RW}", q_copied_bytes_per_second),
    (f"instance_device:vcam_frame_latency_seconds:p99_rate{RW}",
     lambda s, w: q_quantile(m.FRAME_LATENCY, 0.99, s, w)),
    (f"instance_device:vcam_frame_delivery_latency_seconds:p99_rate{RW}",
     lambda s, w: q_quantile(m.DELIVERY_LATENCY, 0.99, s, w)),
    (f"instance_device:vcam_copy_duration_seconds:p99_rate{RW}",
     lambda s, w: q_quantile(m.COPY_DURATION, 0.99, s, w)),
]
RECORDED = {name for name, _ in RECORDING}


def recording_groups():
    return [{"name": "vcam.rules", "rules": [{"record": name, "expr": build(SEL, RW)} for name, build in RECORDING]}]


# --- alerting rules -------------------------------------------------------------

def r(level, metric_ops):
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
            "summary": "vcam exporter {{ $labels.instance }} cannot read its {{ $labels.source }} source.",
            "description": "Every scrape of {{ $labels.instance }} for 5 minutes failed to read the {{ $labels.source }} "
                           "source; see the exporter's log.",
        },
    },
    {
        "alert": "VcamConsumerStalled",
        # Frames wait in the output queue and none has been delivered for the
        # whole window: the consumer stopped returning capture buffers.
        "expr": f"{m.OUTPUT_QUEUE_DEPTH}{{{SEL}}} > 0 and on ({BY}) {r('instance_device', 'vcam_frames_delivered:rate' + RW)} == 0",
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
        "expr": f"{r('instance_device', 'vcam_frames_errored:ratio_rate' + RW)} > {CONFIG['error_ratio_threshold']}",
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
        "expr": (f'{r("instance_device_path", "vcam_frames_delivered:rate" + RW)}{{path="copy"}} > 0'
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
        "expr": f"{r('instance_device', 'vcam_frame_latency_seconds:p99_rate' + RW)} > {CONFIG['latency_p99_threshold_seconds']}",
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


# --- promtool unit tests for the alerts -----------------------------------------
# Series are written for job="vcam", instance="lab1:9477", device="video3".

L = 'job="vcam", instance="lab1:9477"'
LD = L + ', device="video3"'
CAM = {"job": "vcam", "instance": "lab1:9477", "device": "video3"}


def _bucket_series(name, le_values: dict[str, str]):
    return [{"series": f'{bucket(name)}{{{LD}, le="{le}"}}', "values": v} for le, v in le_values.items()]


def alert_tests():
    """Each alert fires in one test and stays silent in another."""
    t = []
    # exporter down / up
    t.append({"name": "exporter down fires, exporter up does not", "interval": "1m",
              "input_series": [{"series": f'up{{{L}}}', "values": "0x10"},
                               {"series": 'up{job="vcam", instance="lab2:9477"}', "values": "1x10"}],
              "alert_rule_test": [
                  {"eval_time": "3m", "alertname": "VcamExporterDown", "exp_alerts": []},
                  {"eval_time": "6m", "alertname": "VcamExporterDown", "exp_alerts": [
                      {"exp_labels": {"severity": "critical", "job": "vcam", "instance": "lab1:9477"},
                       "exp_annotations": _annotations("VcamExporterDown", {"instance": "lab1:9477"})}]}]})
    # probes
    t.append({"name": "a missing probe fires, attached probes do not", "interval": "1m",
              "input_series": [{"series": f'{m.PROBE_ATTACHED}{{{L}, probe="kprobe:vcam_copy"}}', "values": "0x15"},
                               {"series": f'{m.PROBE_ATTACHED}{{{L}, probe="kprobe:vcam_frame_delivered"}}', "values": "1x15"}],
              "alert_rule_test": [
                  {"eval_time": "5m", "alertname": "VcamProbeNotAttached", "exp_alerts": []},
                  {"eval_time": "11m", "alertname": "VcamProbeNotAttached", "exp_alerts": [
                      {"exp_labels": {"severity": "warning", "job": "vcam", "instance": "lab1:9477",
                                      "probe": "kprobe:vcam_copy"},
                       "exp_annotations": _annotations("VcamProbeNotAttached",
                                                       {"instance": "lab1:9477", "probe": "kprobe:vcam_copy"})}]}]})
    t.append({"name": "a failing source fires, a working one does not", "interval": "1m",
              "input_series": [{"series": f'{m.SCRAPE_SUCCESS}{{{L}, source="bpf"}}', "values": "1x4 0x10"},
                               {"series": f'{m.SCRAPE_SUCCESS}{{job="vcam", instance="lab2:9477", source="bpf"}}',
                                "values": "1x15"}],
              "alert_rule_test": [
                  {"eval_time": "6m", "alertname": "VcamExporterReadFailing", "exp_alerts": []},
                  {"eval_time": "11m", "alertname": "VcamExporterReadFailing", "exp_alerts": [
                      {"exp_labels": {"severity": "warning", "job": "vcam", "instance": "lab1:9477", "source": "bpf"},
                       "exp_annotations": _annotations("VcamExporterReadFailing",
                                                       {"instance": "lab1:9477", "source": "bpf"})}]}]})
    # consumer stalled: frames flow for 10m, then the consumer stops and the output queue fills
    t.append({"name": "a stalled consumer fires, a streaming one does not", "interval": "1m",
              "input_series": [
                  {"series": f'{total(m.FRAMES_DELIVERED)}{{{LD}, path="copy"}}', "values": "0+1800x10 18000x15"},
                  {"series": f'{total(m.FRAMES_DELIVERED)}{{{LD}, path="zero_copy"}}', "values": "0x25"},
                  {"series": f'{m.OUTPUT_QUEUE_DEPTH}{{{LD}}}', "values": "1x10 4x15"}],
              "alert_rule_test": [
                  {"eval_time": "10m", "alertname": "VcamConsumerStalled", "exp_alerts": []},
                  {"eval_time": "14m", "alertname": "VcamConsumerStalled", "exp_alerts": []},
                  {"eval_time": "18m", "alertname": "VcamConsumerStalled", "exp_alerts": [
                      {"exp_labels": {"severity": "warning", **CAM},
                       "exp_annotations": _annotations("VcamConsumerStalled", {**CAM}, value="4")}]}]})
    # errors: 30 frames/s, of which 3/s error (9%) after 10m; 0 before
    t.append({"name": "an error ratio above the threshold fires, a clean stream does not", "interval": "1m",
              "input_series": [
                  {"series": f'{total(m.FRAMES_DELIVERED)}{{{LD}, path="copy"}}', "values": "0+1800x30"},
                  {"series": f'{total(m.FRAMES_DELIVERED)}{{{LD}, path="zero_copy"}}', "values": "0x30"},
                  {"series": f'{total(m.FRAMES_ERRORED)}{{{LD}}}', "values": "0x10 0+180x20"}],
              "alert_rule_test": [
                  {"eval_time": "10m", "alertname": "VcamFrameErrorsHigh", "exp_alerts": []},
                  {"eval_time": "25m", "alertname": "VcamFrameErrorsHigh", "exp_alerts": [
                      {"exp_labels": {"severity": "warning", **CAM},
                       "exp_annotations": _annotations("VcamFrameErrorsHigh", {**CAM}, value="9.091%")}]}]})
    # zero-copy fell back: zero-copy for 20m, then copies
    t.append({"name": "a zero-copy camera that copies fires; zero-copy alone and copy alone do not", "interval": "1m",
              "input_series": [
                  {"series": f'{total(m.FRAMES_DELIVERED)}{{{LD}, path="zero_copy"}}', "values": "0+1800x20 36000x20"},
                  {"series": f'{total(m.FRAMES_DELIVERED)}{{{LD}, path="copy"}}', "values": "0x20 0+1800x20"},
                  # a camera that always copied
                  {"series": f'{total(m.FRAMES_DELIVERED)}{{{L}, device="video4", path="zero_copy"}}', "values": "0x40"},
                  {"series": f'{total(m.FRAMES_DELIVERED)}{{{L}, device="video4", path="copy"}}', "values": "0+1800x40"}],
              "alert_rule_test": [
                  {"eval_time": "15m", "alertname": "VcamZeroCopyFellBack", "exp_alerts": []},
                  {"eval_time": "30m", "alertname": "VcamZeroCopyFellBack", "exp_alerts": [
                      {"exp_labels": {"severity": "warning", **CAM, "path": "copy"},
                       "exp_annotations": _annotations("VcamZeroCopyFellBack", {**CAM}, value="30")}]}]})
    # latency p99: every frame in the 2^24 ns (16.8 ms) bucket, then in the 2^28 ns (268 ms) one
    les = [repr(m.slot_upper_seconds(s)) for s in (24, 28)] + ["+Inf"]
    fast = {les[0]: "0+30x40", les[1]: "0+30x40", "+Inf": "0+30x40"}
    slow = {les[0]: "0+30x10 300x30", les[1]: "0+30x40", "+Inf": "0+30x40"}
    t.append({"name": "a slow camera's p99 fires, a fast camera's does not", "interval": "1m",
              "input_series": _bucket_series(m.FRAME_LATENCY, slow) + [
                  {"series": f'{bucket(m.FRAME_LATENCY)}{{{L}, device="video4", le="{le}"}}', "values": v}
                  for le, v in fast.items()],
              "alert_rule_test": [
                  {"eval_time": "10m", "alertname": "VcamLatencyP99High", "exp_alerts": []},
                  {"eval_time": "30m", "alertname": "VcamLatencyP99High", "exp_alerts": [
                      {"exp_labels": {"severity": "warning", **CAM},
                       "exp_annotations": _annotations("VcamLatencyP99High", {**CAM}, value="265.9ms")}]}]})
    return {"rule_files": ["vcam-rules.yml", "vcam-alerts.yml"], "evaluation_interval": "1m", "tests": t}


def _annotations(alertname, labels, value=""):
    """The annotations of ALERTS[alertname] rendered for these labels and $value
    (as promtool renders them; value given already formatted)."""
    rule = next(a for a in ALERTS if a["alert"] == alertname)
    out = {}
    for k, text in rule["annotations"].items():
        text = re.sub(r"\{\{ \$value[^}]*\}\}", value, text)
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda mt: labels[mt.group(1)], text)
        out[k] = text
    return out


# --- dashboards --------------------------------------------------------------------

DS = {"type": "prometheus", "uid": "${datasource}"}


def target(expr, legend="", ref="A", instant=False, fmt=None):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref}
    if instant:
        t.update(instant=True, range=False, format="table")
    if fmt:
        t["format"] = fmt
    return t


class Layout:
    """Hands out ids and gridPos on a 24-column grid, left to right."""

    def __init__(self):
        self.id = 0
        self.x = self.y = 0
        self.row_h = 0

    def place(self, w, h):
        if self.x + w > 24:
            self.x, self.y = 0, self.y + self.row_h
            self.row_h = 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        self.id += 1
        return self.id, pos

    def row(self, title):
        if self.x:
            self.x, self.y = 0, self.y + self.row_h
        self.id += 1
        p = {"type": "row", "id": self.id, "title": title, "collapsed": False, "panels": [],
             "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}}
        self.y += 1
        self.row_h = 0
        return p


def timeseries(lay, title, targets, unit, description="", w=12, h=8, stack=False, maxv=None):
    pid, pos = lay.place(w, h)
    defaults = {"unit": unit, "custom": {"fillOpacity": 10, "showPoints": "never",
                                         "stacking": {"mode": "normal" if stack else "none", "group": "A"}}}
    if maxv is not None:
        defaults.update(min=0, max=maxv)
    return {"type": "timeseries", "id": pid, "title": title, "description": description, "datasource": DS,
            "gridPos": pos, "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max", "lastNotNull"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def heatmap(lay, title, name, unit, description="", w=12, h=8):
    pid, pos = lay.place(w, h)
    return {"type": "heatmap", "id": pid, "title": title, "description": description, "datasource": DS,
            "gridPos": pos, "maxDataPoints": 60,
            "targets": [{**target(q_heatmap(name, DASH_SEL, W), "{{le}}", fmt="heatmap")}],
            "fieldConfig": {"defaults": {"custom": {"scaleDistribution": {"type": "linear"}}}, "overrides": []},
            "options": {"calculate": False, "cellGap": 1, "yAxis": {"unit": unit, "axisPlacement": "left"},
                        "rowsFrame": {"layout": "auto"}, "color": {"mode": "scheme", "scheme": "Oranges",
                                                                   "exponent": 0.5, "steps": 64},
                        "tooltip": {"mode": "single", "yHistogram": True}, "legend": {"show": True},
                        "showValue": "never", "exemplars": {"color": "rgba(255,0,255,0.7)"}}}


def stat(lay, title, targets, unit="none", w=6, h=4, text_mode="auto", description=""):
    pid, pos = lay.place(w, h)
    return {"type": "stat", "id": pid, "title": title, "description": description, "datasource": DS,
            "gridPos": pos, "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "textMode": text_mode, "colorMode": "none", "graphMode": "none"}}


def variables(multi: bool):
    ds = {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
          "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []}

    def qvar(name, label, query):
        v = {"name": name, "label": label, "type": "query", "datasource": DS,
             "query": {"query": query, "refId": f"{name}-var"}, "definition": query,
             "refresh": 2, "sort": 1, "hide": 0, "regex": "", "current": {}, "options": [],
             "multi": multi, "includeAll": multi}
        if multi:
            v["allValue"] = ".+"
        return v
    return [ds,
            qvar("instance", "Instance", f"label_values({m.SCRAPE_SUCCESS}{{{SEL}}}, instance)"),
            qvar("device", "Camera", f"label_values({info(m.CAMERA_INFO)}{{{INST_SEL}}}, device)")]


def dashboard(uid, title, description, panels, multi, links):
    return {
        "uid": CONFIG["uid_prefix"] + uid, "title": title, "description": description,
        "tags": ["vcam"], "timezone": "", "editable": True, "graphTooltip": 1, "refresh": "30s",
        "schemaVersion": CONFIG["grafana_schema_version"], "version": 1,
        "time": {"from": "now-1h", "to": "now"}, "timepicker": {},
        "templating": {"list": variables(multi)},
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": links, "panels": panels, "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
    }


def overview():
    lay = Layout()
    lg = "{{instance}} {{device}}"
    p = [lay.row("Cameras")]
    pid, pos = lay.place(24, 8)
    cols = [  # (refId, header, expression, unit)
        ("A", "frames/s", q_frames_per_second(DASH_SEL, W), "fps"),
        ("B", "zero-copy", q_zero_copy_ratio(DASH_SEL, W), "percentunit"),
        ("C", "errors/s", q_errors_per_second(DASH_SEL, W), "short"),
        ("D", "output queue", f"max by ({BY}) ({m.OUTPUT_QUEUE_DEPTH}{{{DASH_SEL}}})", "short"),
        ("E", "capture queue", f"max by ({BY}) ({m.CAPTURE_QUEUE_DEPTH}{{{DASH_SEL}}})", "short"),
        ("F", "latency p99", q_quantile(m.FRAME_LATENCY, 0.99, DASH_SEL, W), "s"),
    ]
    p.append({
        "type": "table", "id": pid, "title": "Cameras", "datasource": DS, "gridPos": pos,
        "description": "One row per machine and camera, now. Click a camera for its drill-down.",
        "targets": [target(e, ref=ref, instant=True) for ref, _, e, _ in cols],
        "transformations": [{"id": "merge", "options": {}},
                            {"id": "organize", "options": {
                                "excludeByName": {"Time": True, "job": True},
                                "renameByName": {f"Value #{ref}": hdr for ref, hdr, _, _ in cols}}}],
        "fieldConfig": {"defaults": {"custom": {"align": "auto"}}, "overrides": [
            {"matcher": {"id": "byName", "options": hdr}, "properties": [{"id": "unit", "value": unit}]}
            for _, hdr, _, unit in cols] + [
            {"matcher": {"id": "byName", "options": "device"}, "properties": [{"id": "links", "value": [
                {"title": "Camera", "url": f"/d/{CONFIG['uid_prefix']}camera?${{datasource:queryparam}}"
                                           "&var-instance=${__data.fields.instance}&var-device=${__value.raw}"}]}]}]},
        "options": {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"]}},
    })
    p.append(timeseries(lay, "Frames delivered", [target(q_frames_per_second(DASH_SEL, W), lg)], "fps",
                        "Frames delivered into capture buffers per second, both paths."))
    p.append(timeseries(lay, "Zero-copy share", [target(q_zero_copy_ratio(DASH_SEL, W), lg)], "percentunit",
                        "Share of delivered frames that took the zero-copy path.", maxv=1))
    p.append(timeseries(lay, "Frame errors", [target(q_errors_per_second(DASH_SEL, W), lg)], "short",
                        "Capture buffers completed with an error per second."))
    p.append(timeseries(lay, "Frame latency p99", [target(q_quantile(m.FRAME_LATENCY, 0.99, DASH_SEL, W), lg)], "s",
                        "99th percentile of producer QUEUE → consumer DQBUF."))
    p.append(timeseries(lay, "Output queue depth", [target(f"{m.OUTPUT_QUEUE_DEPTH}{{{DASH_SEL}}}", lg)], "short",
                        "Frames queued by the producer waiting for a capture buffer."))
    p.append(timeseries(lay, "Capture queue depth", [target(f"{m.CAPTURE_QUEUE_DEPTH}{{{DASH_SEL}}}", lg)], "short",
                        "Capture buffers owned by the driver; 0 while streaming means the consumer starves the camera."))
    p.append(lay.row("Exporters"))
    p.append(timeseries(lay, "Exporter up", [target(f"up{{{INST_SEL}}}", "{{instance}}")], "short", w=8, maxv=1))
    p.append(timeseries(lay, "Probes not attached",
                        [target(f"count by (instance) ({m.PROBE_ATTACHED}{{{INST_SEL}}} == 0) "
                                f"or count by (instance) ({m.PROBE_ATTACHED}{{{INST_SEL}}}) * 0", "{{instance}}")],
                        "short", "Attach points the exporter could not attach (0 is good).", w=8))
    p.append(timeseries(lay, "Exporter read time", [target(f"{m.SCRAPE_DURATION}{{{INST_SEL}}}", "{{instance}}")],
                        "s", "Time each scrape took to read the probes.", w=8))
    return dashboard("overview", "vcam / Overview", "Every vcam camera on every machine: throughput, path, errors, "
                     "queues and latency.", p, True,
                     [{"title": "Camera", "type": "link", "url": f"/d/{CONFIG['uid_prefix']}camera",
                       "includeVars": True, "keepTime": True, "icon": "dashboard"}])


def camera():
    lay = Layout()
    p = [lay.row("Identity")]
    p.append(stat(lay, "Card", [target(f"{info(m.CAMERA_INFO)}{{{DASH_SEL}}}", "{{card}}")], text_mode="name"))
    p.append(stat(lay, "Producer", [target(f'{info(m.PROCESS_INFO)}{{{DASH_SEL}, role="producer"}}', "{{comm}}")],
                  text_mode="name", description="The last process seen queuing frames."))
    p.append(stat(lay, "Consumer", [target(f'{info(m.PROCESS_INFO)}{{{DASH_SEL}, role="consumer"}}', "{{comm}}")],
                  text_mode="name", description="The last process seen queuing or dequeuing capture buffers."))
    p.append(stat(lay, "Streaming", [target(f"{m.CAPTURE_STREAMING}{{{DASH_SEL}}}")],
                  description="1 while the capture queue streams."))
    p.append(lay.row("Frames"))
    p.append(timeseries(lay, "Frames by path", [target(q_frames_by_path(DASH_SEL, W), "{{path}}", "A"),
                                                target(q_queued_per_second(DASH_SEL, W), "queued", "B"),
                                                target(f"sum by ({BY}) (rate({total(m.FRAMES_DEQUEUED)}{{{DASH_SEL}}}[{W}]))",
                                                       "slots handed back", "C")], "fps",
                        "Delivered per second by path (zero_copy, copy); queued by the producer and slots handed back to it.", w=8))
    p.append(timeseries(lay, "Errors", [target(q_errors_per_second(DASH_SEL, W), "errors/s")], "short",
                        "Capture buffers completed with an error per second.", w=8))
    p.append(timeseries(lay, "Error ratio", [target(q_error_ratio(DASH_SEL, W), "errored / all")], "percentunit",
                        "Share of frames completed with an error (VcamFrameErrorsHigh watches this).", w=8))
    p.append(lay.row("Latency"))
    for name, title in ((m.FRAME_LATENCY, "Frame latency (QUEUE → DQBUF)"),
                        (m.DELIVERY_LATENCY, "Delivery latency (QUEUE → in a capture buffer)"),
                        (m.DEQUEUE_LATENCY, "Dequeue latency (done → DQBUF)")):
        p.append(heatmap(lay, title, name, "s", dict(((n, d) for n, d in m.LATENCY_KINDS.values()))[name]))
    p.append(timeseries(lay, "Latency percentiles",
                        [target(q_quantile(m.FRAME_LATENCY, q, DASH_SEL, W), f"frame p{int(q * 100)}", ref)
                         for ref, q in (("A", 0.5), ("B", 0.9), ("C", 0.99))]
                        + [target(q_quantile(m.DELIVERY_LATENCY, 0.99, DASH_SEL, W), "delivery p99", "D"),
                           target(q_quantile(m.DEQUEUE_LATENCY, 0.99, DASH_SEL, W), "dequeue p99", "E")], "s",
                        "Percentiles from the histograms; a log2 bucket bounds each (within a factor of 2)."))
    p.append(lay.row("Copy path"))
    p.append(heatmap(lay, "Copy duration", m.COPY_DURATION, "s", "Time inside vcam_copy() per frame.", w=8))
    p.append(timeseries(lay, "Copy duration p99", [target(q_quantile(m.COPY_DURATION, 0.99, DASH_SEL, W), "p99")],
                        "s", w=8))
    p.append(timeseries(lay, "Bytes copied", [target(q_copied_bytes_per_second(DASH_SEL, W), "copied")], "Bps",
                        "Bytes the CPU copied per second (0 on the zero-copy path).", w=8))
    p.append(lay.row("Queues"))
    p.append(timeseries(lay, "Queue depth", [
        target(f"{m.OUTPUT_QUEUE_DEPTH}{{{DASH_SEL}}}", "output (waiting frames)", "A"),
        target(f"{m.CAPTURE_QUEUE_DEPTH}{{{DASH_SEL}}}", "capture (driver-owned buffers)", "B"),
        target(f"{m.OUTPUT_SLOTS}{{{DASH_SEL}}}", "output slots", "C")], "short", w=8))
    p.append(heatmap(lay, "Output depth seen", m.OUTPUT_DEPTH_SEEN, "short",
                     "Output queue depth at each QUEUE and delivery.", w=8))
    p.append(heatmap(lay, "Capture depth seen", m.CAPTURE_DEPTH_SEEN, "short",
                     "Capture queue depth at each buffer queued and done; 0 is a starved camera.", w=8))
    return dashboard("camera", "vcam / Camera", "One camera: identity, paths, latency heatmaps, copy cost and queues.",
                     p, False,
                     [{"title": "Overview", "type": "link", "url": f"/d/{CONFIG['uid_prefix']}overview",
                       "includeVars": True, "keepTime": True, "icon": "dashboard"}])


DASHBOARDS = {"vcam-overview.json": overview, "vcam-camera.json": camera}


# --- provisioning and Prometheus configuration ----------------------------------------

def provisioning_datasource():
    return {"apiVersion": 1, "datasources": [{
        "name": "Prometheus (vcam)", "uid": CONFIG["datasource_uid"], "type": "prometheus", "access": "proxy",
        "url": "http://localhost:9090", "isDefault": False, "editable": True,
        "jsonData": {"timeInterval": "15s"}}]}


def provisioning_dashboards():
    return {"apiVersion": 1, "providers": [{
        "name": "vcam", "orgId": 1, "folder": "vcam", "type": "file", "disableDeletion": False,
        "allowUiUpdates": False, "updateIntervalSeconds": 60,
        # where this dashboards/ directory is dropped into the Grafana installation
        "options": {"path": "/etc/grafana/dashboards/vcam", "foldersFromFilesStructure": False}}]}


def prometheus_config():
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": ["vcam-rules.yml", "vcam-alerts.yml"],
        "scrape_configs": [{
            "job_name": CONFIG["job"],
            # static targets: lab machines running `vcam-observe export --listen 0.0.0.0:9477`
            "static_configs": [{"targets": ["lab1.example:9477", "lab2.example:9477"], "labels": {"lab": "bench"}}],
            # and more, from files a provisioning tool writes (see targets/vcam-lab.json)
            "file_sd_configs": [{"files": ["targets/*.json"], "refresh_interval": "1m"}],
        }],
    }


def file_sd_example():
    return [{"targets": ["lab3.example:9477", "lab4.example:9477"], "labels": {"lab": "rack2"}}]


# --- metric checks ---------------------------------------------------------------------

class UnknownMetric(ValueError):
    pass


def exported_names() -> set[str]:
    """Sample names the exporter exposes: its collector rendered on a
    snapshot with every kind of series, parsed back like Prometheus does."""
    from prometheus_client.parser import text_string_to_metric_families
    from observe.exporter import render

    class Source:
        def refresh(self):
            pass

        def snapshot(self):
            cam = m.CameraSample(device_nr=3, card="x", slots=4, producer="p", consumer="c")
            return m.Snapshot(cameras=[cam], probes={"kprobe:vcam_copy": True}, bpf_errors={"map_full": 0})
    names = set()
    for fam in text_string_to_metric_families(render(Source()).decode()):
        names.update(s.name for s in fam.samples)
    return names


PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "max", "min", "count", "avg", "on", "and",
                "or", "unless", "without", "ignoring", "group_left", "group_right", "label_values", "le",
                "max_over_time", "bool", "offset"}
BUILTIN = {"up"}


def names_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, strings and
    ranges removed first)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"label_values\((.*),\s*\w+\s*\)", r"(\1)", expr)
    names = set()
    for mt in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = mt.group(0)
        after = expr[mt.end():].lstrip()
        if word in PROMQL_WORDS or after.startswith("("):
            continue
        names.add(word)
    return names


def panel_exprs(dash: dict):
    """(panel title, expression) for every query of every panel, rows included."""
    def walk(panels):
        for p in panels:
            yield from walk(p.get("panels", []))
            for t in p.get("targets", []):
                yield p.get("title", ""), t["expr"]
    yield from walk(dash["panels"])
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            yield f"variable {v['name']}", v["query"]["query"]


def check_metrics(dashboards: dict[str, dict], rule_groups: list[dict], exported: set[str] | None = None):
    """Raise UnknownMetric naming each panel/rule that uses a metric neither
    the exporter exports nor a recording rule records."""
    exported = exported_names() if exported is None else exported
    recorded = {r["record"] for g in rule_groups for r in g["rules"] if "record" in r}
    known = exported | recorded | BUILTIN
    bad = []
    for fname, dash in dashboards.items():
        for title, expr in panel_exprs(dash):
            for name in sorted(names_in(expr) - known):
                bad.append(f"{fname}: panel '{title}' uses {name}, which the exporter does not export")
    for g in rule_groups:
        for rule in g["rules"]:
            for name in sorted(names_in(rule["expr"]) - known):
                bad.append(f"rule {rule.get('record') or rule.get('alert')} uses {name}, which the exporter does not export")
    if bad:
        raise UnknownMetric("\n".join(bad))


# --- output -------------------------------------------------------------------------

def to_yaml(obj, indent=0) -> str:
    """A small YAML writer (strings JSON-quoted, which YAML reads as is)."""
    pad = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        out = ""
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out += f"{pad}{k}:\n" + to_yaml(v, indent + 1)
            else:
                out += f"{pad}{k}: {_scalar(v)}\n"
        return out
    if isinstance(obj, list):
        if not obj:
            return pad + "[]\n"
        out = ""
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 1)
                out += pad + "- " + body[len(pad) + 2:]
            else:
                out += f"{pad}- {_scalar(item)}\n"
        return out
    return pad + _scalar(obj) + "\n"


def _scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (dict, list)):
        return "{}" if isinstance(v, dict) else "[]"
    return json.dumps(v, ensure_ascii=False)


HEADER = "# Generated by dashboards/generate.py from observe/metrics.py; do not edit by hand.\n"


def outputs() -> dict[str, str]:
    """Relative path -> file content, for everything this script writes."""
    dashes = {name: build() for name, build in DASHBOARDS.items()}
    check_metrics(dashes, recording_groups() + alert_groups())
    files = {name: json.dumps(d, indent=2, ensure_ascii=False) + "\n" for name, d in dashes.items()}
    files["provisioning/datasources/vcam.yml"] = HEADER + to_yaml(provisioning_datasource())
    files["provisioning/dashboards/vcam.yml"] = HEADER + to_yaml(provisioning_dashboards())
    files["prometheus/prometheus.yml"] = HEADER + to_yaml(prometheus_config())
    files["prometheus/targets/vcam-lab.json"] = json.dumps(file_sd_example(), indent=2) + "\n"
    files["prometheus/vcam-rules.yml"] = HEADER + to_yaml({"groups": recording_groups()})
    files["prometheus/vcam-alerts.yml"] = HEADER + to_yaml({"groups": alert_groups()})
    files["prometheus/vcam-alerts_test.yml"] = HEADER + to_yaml(alert_tests())
    return files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="examples:\n  dashboards/generate.py\n  dashboards/generate.py --check")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a committed file is stale")
    ap.add_argument("--dir", type=Path, default=HERE, help=argparse.SUPPRESS)   # tests check a copy
    args = ap.parse_args(argv)
    try:
        files = outputs()
    except UnknownMetric as e:
        print(f"generate.py: {e}", file=sys.stderr)
        return 1
    stale = []
    for rel, text in files.items():
        path = args.dir / rel
        if path.exists() and path.read_text() == text:
            continue
        stale.append(rel)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        print("generate.py: stale (run dashboards/generate.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
