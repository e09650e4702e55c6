"""dashboards/, checked on the host: the committed files are what the
generator writes from the metric model, the dashboards are well-formed
Grafana JSON in node-mixin style, and every metric they name is one the
exporter exposes. (The Prometheus side, promtool's checks and the alerts'
unit tests: tests/test_dashboards_alerts.py.)"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from observe import metrics as m

TOP = Path(__file__).resolve().parent.parent
DASH = TOP / "dashboards"
# dashboards/ is a directory of the checkout, not an installed package
sys.path.insert(0, str(TOP))

from dashboards.generator import check, main, provisioning, rules  # noqa: E402
from dashboards.generator.alert_tests import alert_tests  # noqa: E402
from dashboards.generator.boards import DASHBOARDS  # noqa: E402


def committed_dashboards() -> dict[str, dict]:
    return {name: json.loads((DASH / name).read_text()) for name in DASHBOARDS}


# --- the committed files are the generated ones --------------------------------

def test_committed_files_are_not_stale():
    r = subprocess.run([sys.executable, str(DASH / "generate.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for rel, text in main.outputs().items():
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
        for title, expr in check.panel_exprs(d):
            for mt in re.finditer(r"\b(rate|increase|irate)\(([^\[]*)\[([^\]]*)\]", expr):
                assert mt.group(3) == "$__rate_interval", (name, title, expr)


def test_every_histogram_is_a_heatmap_on_the_camera_dashboard():
    cam = json.loads((DASH / "vcam-camera.json").read_text())
    heat = {t["expr"] for p in all_panels(cam["panels"]) if p["type"] == "heatmap" for t in p["targets"]}
    for h in m.HISTOGRAMS:
        assert any(f"{h.name}_bucket{{" in e and e.startswith("sum by (le)") for e in heat), h.name
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
    exprs = " ".join(e for _, e in check.panel_exprs(cam))
    for needed in ('role="producer"', 'role="consumer"', "vcam_copied_bytes_total", "vcam_copy_duration_seconds",
                   "vcam_output_slots"):
        assert needed in exprs, needed


def test_every_exposed_family_is_on_a_dashboard():
    used = {name for d in committed_dashboards().values() for _, expr in check.panel_exprs(d)
            for name in check.names_in(expr)}
    # the exporter's own error counters: for its log and a debugging session, not a dashboard
    not_shown = {m.BPF_ERRORS, m.PROBE_MISSED}
    missing = {row.name for row in m.METRICS if row.name not in not_shown and not set(row.series) & used}
    assert not missing, missing


# --- bad input: a metric the exporter does not expose, a query that is not PromQL------------------------

def test_every_name_in_the_dashboards_and_rules_is_exported():
    check.check_metrics(committed_dashboards(), rules.recording_groups() + rules.alert_groups())


@pytest.mark.parametrize("fname, title, expr, error", [
    ("vcam-camera.json", "Bytes copied", 'sum(rate(vcam_frames_lost_total{job="vcam"}[$__rate_interval]))',
     "vcam-camera.json: panel 'Bytes copied' uses vcam_frames_lost_total, which the exporter does not export"),
    ("vcam-overview.json", "Exporter up", 'sum(up{job="vcam"}',
     "vcam-overview.json: panel 'Exporter up' is not PromQL (unclosed left parenthesis): sum(up{job=\"vcam\"}"),
])
def test_a_bad_panel_query_is_named(fname, title, expr, error):
    dashes = committed_dashboards()
    panel = next(p for p in all_panels(dashes[fname]["panels"]) if p["title"] == title)
    panel["targets"][0]["expr"] = expr
    with pytest.raises(check.BadQuery) as e:
        check.check_metrics(dashes, rules.recording_groups())
    assert str(e.value) == error


def test_a_metric_renamed_in_the_exporter_breaks_the_check():
    # As if observe/metrics.py renamed vcam_copied_bytes: every user is named
    exported = m.exposed_series() - {"vcam_copied_bytes_total"}
    with pytest.raises(check.BadQuery) as e:
        check.check_metrics(committed_dashboards(), rules.recording_groups(), exported=exported)
    lines = str(e.value).splitlines()
    assert "vcam-camera.json: panel 'Bytes copied' uses vcam_copied_bytes_total, which the exporter does not export" in lines
    assert any(line.startswith("rule instance_device:vcam_copied_bytes:rate5m uses vcam_copied_bytes_total") for line in lines)


def test_generator_refuses_a_bad_panel_with_one_clear_error(tmp_path, monkeypatch):
    orig = DASHBOARDS["vcam-camera.json"]

    def bad():
        d = orig()
        d["panels"][1]["targets"][0]["expr"] = 'vcam_camera_nfo{job="vcam"}'
        return d
    monkeypatch.setitem(DASHBOARDS, "vcam-camera.json", bad)
    assert main.main(["--dir", str(tmp_path)]) == 1
    assert not any(tmp_path.iterdir()), "nothing half-written"


@pytest.mark.parametrize("expr, names", [
    # what the regex that came before promql-parser took for metrics: "m", "e", "Inf"; and missed __name__
    ('rate(vcam_a_total{job="vcam"}[5m] offset 5m)', {"vcam_a_total"}),
    ("vcam_a > 1e-3", {"vcam_a"}),
    ("vcam_a < Inf", {"vcam_a"}),
    ('{__name__="vcam_a", job="vcam"}', {"vcam_a"}),
    # label lists, functions, keywords, subqueries and @ are not metrics either
    ('histogram_quantile(0.99, sum by (job, le) (rate(vcam_a_bucket{path="b"}[$__rate_interval])))', {"vcam_a_bucket"}),
    ("sum(vcam_a) by (le) / on (device) group_left (card) vcam_b_info", {"vcam_a", "vcam_b_info"}),
    ("vcam_a unless ignoring (le) vcam_b and on () vcam_c", {"vcam_a", "vcam_b", "vcam_c"}),
    ("max_over_time(vcam_a[10m:1m]) > bool 0.5", {"vcam_a"}),
    ("clamp_max(vcam_a @ end(), 1) or vector(0)", {"vcam_a"}),
    ("instance_device:vcam_frames_delivered:rate5m == 0", {"instance_device:vcam_frames_delivered:rate5m"}),
    # Grafana's variable query: its selector, not the label it lists
    ('label_values(vcam_camera_info{job="vcam", instance=~"$instance"}, device)', {"vcam_camera_info"}),
])
def test_names_in_reads_promql(expr, names):
    assert check.names_in(expr) == names


# --- provisioning ---------------------------------------------------------------

def test_provisioning_files():
    ds = yaml.safe_load((DASH / "provisioning/datasources/vcam.yml").read_text())
    assert ds["apiVersion"] == 1
    (src,) = ds["datasources"]
    assert src["type"] == "prometheus" and src["access"] == "proxy" and src["url"].startswith("http")
    prov = yaml.safe_load((DASH / "provisioning/dashboards/vcam.yml").read_text())
    (p,) = prov["providers"]
    assert prov["apiVersion"] == 1 and p["type"] == "file" and p["options"]["path"]


def test_yaml_files_read_back_as_built():
    # safe_dump quotes what YAML would read as another type: "0x10" (a promtool series) stays a string
    files = main.outputs()
    built = {"provisioning/datasources/vcam.yml": provisioning.provisioning_datasource(),
             "provisioning/dashboards/vcam.yml": provisioning.provisioning_dashboards(),
             "prometheus/prometheus.yml": provisioning.prometheus_config(),
             "prometheus/vcam-rules.yml": {"groups": rules.recording_groups()},
             "prometheus/vcam-alerts.yml": {"groups": rules.alert_groups()},
             "prometheus/vcam-alerts_test.yml": alert_tests()}
    assert set(built) == {rel for rel in files if rel.endswith(".yml")}
    for rel, obj in built.items():
        assert files[rel].startswith(main.HEADER)
        assert yaml.safe_load(files[rel]) == obj, rel
