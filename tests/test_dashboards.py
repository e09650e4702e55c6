"""dashboards/, checked on the host: the committed files are what the
generator writes from the metric model, the dashboards are well-formed
Grafana JSON in node-mixin style, every metric they name is one the
exporter exports, and Prometheus's own promtool accepts the configuration
and the rules and passes the alert unit tests."""

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from labtools import load_dashboards_generator
from observe import metrics as m

TOP = Path(__file__).resolve().parent.parent
DASH = TOP / "dashboards"
PROM = DASH / "prometheus"


gen = load_dashboards_generator()


def committed_dashboards() -> dict[str, dict]:
    return {name: json.loads((DASH / name).read_text()) for name in gen.DASHBOARDS}


def promtool(*args, cwd=PROM):
    assert shutil.which("promtool"), "promtool (Debian: prometheus) is needed"
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


# --- the committed files are the generated ones --------------------------------

def test_committed_files_are_not_stale():
    r = subprocess.run([sys.executable, str(DASH / "generate.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for rel, text in gen.outputs().items():
        assert (DASH / rel).read_text() == text, rel


def test_stale_check_fails_on_an_edited_copy(tmp_path):
    shutil.copytree(DASH, tmp_path / "d", ignore=shutil.ignore_patterns("__pycache__"))
    overview = tmp_path / "d" / "vcam-overview.json"
    overview.write_text(overview.read_text().replace("$__rate_interval", "5m", 1))
    r = subprocess.run([sys.executable, str(DASH / "generate.py"), "--check", "--dir", str(tmp_path / "d")],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip() == "generate.py: stale (run dashboards/generate.py): vcam-overview.json"
    # and regenerating puts it right
    r = subprocess.run([sys.executable, str(DASH / "generate.py"), "--dir", str(tmp_path / "d")])
    assert r.returncode == 0 and overview.read_text() == (DASH / "vcam-overview.json").read_text()


# --- the dashboards: Grafana JSON, node-mixin style -----------------------------

def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def test_dashboards_have_stable_uids_and_a_current_schema():
    dashes = committed_dashboards()
    assert {d["uid"] for d in dashes.values()} == {"vcam-overview", "vcam-camera"}
    for name, d in dashes.items():
        assert 36 <= d["schemaVersion"] <= 41, name     # Grafana 10.x - 12.x
        assert d["title"] and d["tags"] == ["vcam"]
        assert isinstance(d["panels"], list) and d["panels"]
        assert "id" not in d or d["id"] is None        # importable anywhere


def test_panels_are_well_formed():
    for name, d in committed_dashboards().items():
        ids = [p["id"] for p in all_panels(d["panels"])]
        assert len(ids) == len(set(ids)), name
        cells = set()
        for p in all_panels(d["panels"]):
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, (name, p["title"])
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not mine & cells, f"{name}: panel '{p['title']}' overlaps another"
            cells |= mine
            if p["type"] == "row":
                continue
            assert p["type"] in {"timeseries", "stat", "table", "heatmap"}, p["type"]
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            refs = [t["refId"] for t in p["targets"]]
            assert p["targets"] and len(refs) == len(set(refs)), p["title"]
            for t in p["targets"]:
                assert t["datasource"] == p["datasource"] and t["expr"].strip()


def test_datasource_instance_and_device_variables():
    for name, d in committed_dashboards().items():
        var = {v["name"]: v for v in d["templating"]["list"]}
        assert var["datasource"]["type"] == "datasource" and var["datasource"]["query"] == "prometheus"
        for v, label in (("instance", "instance"), ("device", "device")):
            q = var[v]["query"]["query"]
            assert var[v]["type"] == "query" and re.fullmatch(rf"label_values\(vcam_\w+\{{.*\}}, {label}\)", q), q
            assert var[v]["datasource"]["uid"] == "${datasource}"
        # the device list follows the chosen instance
        assert '$instance' in var["device"]["query"]["query"]
        for p in all_panels(d["panels"]):
            for t in p.get("targets", []):
                assert 'instance=~"$instance"' in t["expr"], (name, p["title"], t["expr"])
                assert 'job="vcam"' in t["expr"], (name, p["title"])


def test_every_rate_uses_rate_interval():
    for name, d in committed_dashboards().items():
        for title, expr in gen.panel_exprs(d):
            for mt in re.finditer(r"\b(rate|increase|irate)\(([^\[]*)\[([^\]]*)\]", expr):
                assert mt.group(3) == "$__rate_interval", (name, title, expr)


def test_every_histogram_is_a_heatmap_on_the_camera_dashboard():
    cam = json.loads((DASH / "vcam-camera.json").read_text())
    heat = {t["expr"] for p in all_panels(cam["panels"]) if p["type"] == "heatmap" for t in p["targets"]}
    hists = [name for name, _ in [*m.LATENCY_KINDS.values(), *m.DEPTH_KINDS.values()]]
    for h in hists:
        assert any(f"{h}_bucket{{" in e and e.startswith("sum by (le)") for e in heat), h
    for p in all_panels(cam["panels"]):
        if p["type"] == "heatmap":
            assert p["targets"][0]["format"] == "heatmap" and p["options"]["calculate"] is False


def test_overview_shows_each_camera_row_and_drill_down_shows_identity():
    ov = json.loads((DASH / "vcam-overview.json").read_text())
    table = next(p for p in all_panels(ov["panels"]) if p["type"] == "table")
    exprs = " ".join(t["expr"] for t in table["targets"])
    for needed in ("vcam_frames_delivered_total", 'path="zero_copy"', "vcam_frames_errored_total",
                   "vcam_output_queue_depth", "vcam_capture_queue_depth", "histogram_quantile(0.99"):
        assert needed in exprs, needed
    assert all(t["instant"] for t in table["targets"])
    cam = json.loads((DASH / "vcam-camera.json").read_text())
    exprs = " ".join(e for _, e in gen.panel_exprs(cam))
    for needed in ('role="producer"', 'role="consumer"', "vcam_copied_bytes_total", "vcam_copy_duration_seconds",
                   "vcam_output_slots"):
        assert needed in exprs, needed


def test_every_exported_family_is_on_a_dashboard():
    used = set()
    for d in committed_dashboards().values():
        for _, expr in gen.panel_exprs(d):
            used |= gen.names_in(expr)
    exported = gen.exported_names()
    families = {re.sub(r"_(bucket|sum|count|total|info)$", "", n) for n in exported}
    not_shown = {"vcam_exporter_bpf_errors"}   # an exporter-internal counter, not a dashboard's
    missing = {f for f in families - not_shown if not any(re.sub(r"_(bucket|sum|count|total|info)$", "", u) == f
                                                          for u in used)}
    assert not missing, missing


# --- bad input: a metric the exporter does not export ----------------------------

def test_every_name_in_the_dashboards_and_rules_is_exported():
    gen.check_metrics(committed_dashboards(), gen.recording_groups() + gen.alert_groups())


def test_panel_with_an_unknown_metric_is_named():
    dashes = committed_dashboards()
    bad = copy.deepcopy(dashes["vcam-camera.json"])
    panel = next(p for p in all_panels(bad["panels"]) if p["title"] == "Bytes copied")
    panel["targets"][0]["expr"] = 'sum(rate(vcam_frames_dropped_total{job="vcam"}[$__rate_interval]))'
    with pytest.raises(gen.UnknownMetric) as e:
        gen.check_metrics({**dashes, "vcam-camera.json": bad}, gen.recording_groups())
    assert str(e.value) == ("vcam-camera.json: panel 'Bytes copied' uses vcam_frames_dropped_total, "
                            "which the exporter does not export")


def test_a_metric_renamed_in_the_exporter_breaks_the_check():
    # As if observe/metrics.py renamed vcam_copied_bytes: every user is named
    exported = gen.exported_names() - {"vcam_copied_bytes_total"}
    with pytest.raises(gen.UnknownMetric) as e:
        gen.check_metrics(committed_dashboards(), gen.recording_groups(), exported=exported)
    lines = str(e.value).splitlines()
    assert "vcam-camera.json: panel 'Bytes copied' uses vcam_copied_bytes_total, which the exporter does not export" in lines
    assert any(line.startswith("rule instance_device:vcam_copied_bytes:rate5m uses vcam_copied_bytes_total") for line in lines)


def test_generator_refuses_a_bad_panel_with_one_clear_error(tmp_path, monkeypatch):
    orig = gen.DASHBOARDS["vcam-camera.json"]

    def bad():
        d = orig()
        d["panels"][1]["targets"][0]["expr"] = 'vcam_camera_nfo{job="vcam"}'
        return d
    monkeypatch.setitem(gen.DASHBOARDS, "vcam-camera.json", bad)
    assert gen.main(["--dir", str(tmp_path)]) == 1
    assert not any(tmp_path.iterdir()), "nothing half-written"


def test_names_in_reads_promql():
    assert gen.names_in('sum by (job, instance, device) (rate(vcam_a_total{x="y", path="b"}[5m])) '
                        '/ on (device) group_left vcam_b{}') == {"vcam_a_total", "vcam_b"}
    assert gen.names_in('label_values(vcam_camera_info{job="vcam"}, device)') == {"vcam_camera_info"}
    assert gen.names_in('histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))') == {"x_bucket"}


# --- provisioning ---------------------------------------------------------------

def test_provisioning_files():
    ds = yaml.safe_load((DASH / "provisioning/datasources/vcam.yml").read_text())
    assert ds["apiVersion"] == 1
    (src,) = ds["datasources"]
    assert src["type"] == "prometheus" and src["access"] == "proxy" and src["url"].startswith("http")
    prov = yaml.safe_load((DASH / "provisioning/dashboards/vcam.yml").read_text())
    (p,) = prov["providers"]
    assert prov["apiVersion"] == 1 and p["type"] == "file" and p["options"]["path"]


# --- Prometheus: promtool ---------------------------------------------------------

def test_promtool_check_config():
    r = promtool("check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 2 rule files found" in r.stdout
    sd = json.loads((PROM / "targets/vcam-lab.json").read_text())
    assert sd and all(t["targets"] for t in sd)


def test_promtool_check_rules():
    r = promtool("check", "rules", "vcam-rules.yml", "vcam-alerts.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(gen.RECORDING)} rules found" in r.stdout
    assert f"SUCCESS: {len(gen.ALERTS)} rules found" in r.stdout


def test_alerts_have_severity_summary_and_description():
    doc = yaml.safe_load((PROM / "vcam-alerts.yml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {"VcamConsumerStalled", "VcamFrameErrorsHigh", "VcamZeroCopyFellBack",
                                           "VcamLatencyP99High", "VcamExporterDown", "VcamProbeNotAttached"}
    for r in rules:
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]


def test_promtool_test_rules_pass():
    r = promtool("test", "rules", "vcam-alerts_test.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_every_alert_is_tested_firing_and_not_firing():
    doc = yaml.safe_load((PROM / "vcam-alerts_test.yml").read_text())
    fired, silent = set(), set()
    for t in doc["tests"]:
        for case in t["alert_rule_test"]:
            (fired if case["exp_alerts"] else silent).add(case["alertname"])
    names = {a["alert"] for a in gen.ALERTS}
    assert fired == names and silent == names, (names - fired, names - silent)


def test_promtool_test_rules_fails_when_an_alert_breaks(tmp_path):
    # The unit tests can fail: raise the latency threshold past the test's slow camera
    for f in ("vcam-rules.yml", "vcam-alerts.yml", "vcam-alerts_test.yml"):
        shutil.copy(PROM / f, tmp_path / f)
    alerts = tmp_path / "vcam-alerts.yml"
    text = alerts.read_text()
    assert "p99_rate5m > 0.1" in text
    alerts.write_text(text.replace("p99_rate5m > 0.1", "p99_rate5m > 1"))
    r = promtool("test", "rules", "vcam-alerts_test.yml", cwd=tmp_path)
    assert r.returncode == 1 and "VcamLatencyP99High" in r.stdout + r.stderr, r.stdout + r.stderr


def test_recording_rules_record_what_the_dashboards_show():
    shown = {e for d in committed_dashboards().values() for _, e in gen.panel_exprs(d)}
    for name, build in gen.RECORDING:
        assert build(gen.DASH_SEL, "$__rate_interval") in shown, name
    doc = yaml.safe_load((PROM / "vcam-rules.yml").read_text())
    for rule in doc["groups"][0]["rules"]:
        assert "[5m]" in rule["expr"] and "$" not in rule["expr"], rule
        level, metric, ops = rule["record"].split(":")
        assert metric.startswith("vcam_") and ops.endswith("rate5m")
