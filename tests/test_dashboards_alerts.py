"""The Prometheus side of dashboards/, checked with Prometheus's own
promtool: the scrape configuration and the rules load, the recording rules
record what the dashboards show, and every alert passes its unit tests
(dashboards/generator/alert_tests.py, one row a case), firing in one and
silent in another; a broken alert fails them."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

TOP = Path(__file__).resolve().parent.parent
DASH = TOP / "dashboards"
PROM = DASH / "prometheus"
# dashboards/ is a directory of the checkout, not an installed package
sys.path.insert(0, str(TOP))

from dashboards.generator import check, rules  # noqa: E402
from dashboards.generator.boards import DASHBOARDS  # noqa: E402
from dashboards.generator.config import DASH_SEL, RATE_INTERVAL  # noqa: E402


def promtool(*args, cwd=PROM):
    assert shutil.which("promtool"), "promtool (Debian: prometheus) is needed"
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_promtool_check_config():
    r = promtool("check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 2 rule files found" in r.stdout
    sd = json.loads((PROM / "targets/vcam-lab.json").read_text())
    assert sd and all(t["targets"] for t in sd)


def test_promtool_check_rules():
    r = promtool("check", "rules", "vcam-rules.yml", "vcam-alerts.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(rules.RECORDING)} rules found" in r.stdout
    assert f"SUCCESS: {len(rules.ALERTS)} rules found" in r.stdout


def test_recording_rules_record_what_the_dashboards_show():
    shown = {e for name in DASHBOARDS for _, e in check.panel_exprs(json.loads((DASH / name).read_text()))}
    for name, build in rules.RECORDING:
        assert build(DASH_SEL, RATE_INTERVAL) in shown, name
    doc = yaml.safe_load((PROM / "vcam-rules.yml").read_text())
    for rule in doc["groups"][0]["rules"]:
        assert "[5m]" in rule["expr"] and "$" not in rule["expr"], rule
        level, metric, ops = rule["record"].split(":")
        assert metric.startswith("vcam_") and ops.endswith("rate5m")


def test_alerts_have_severity_summary_and_description():
    doc = yaml.safe_load((PROM / "vcam-alerts.yml").read_text())
    alerts = [r for g in doc["groups"] for r in g["rules"]]
    assert {r["alert"] for r in alerts} >= {"VcamConsumerStalled", "VcamFrameErrorsHigh", "VcamZeroCopyFellBack",
                                            "VcamLatencyP99High", "VcamExporterDown", "VcamProbeNotAttached"}
    for r in alerts:
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]


def test_every_alert_is_tested_firing_and_not_firing():
    doc = yaml.safe_load((PROM / "vcam-alerts_test.yml").read_text())
    fired, silent = set(), set()
    for t in doc["tests"]:
        for case in t["alert_rule_test"]:
            (fired if case["exp_alerts"] else silent).add(case["alertname"])
    names = {a["alert"] for a in rules.ALERTS}
    assert fired == names and silent == names, (names - fired, names - silent)


def test_promtool_test_rules_pass():
    r = promtool("test", "rules", "vcam-alerts_test.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


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
