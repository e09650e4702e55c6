"""The dashboards, proven on the real thing: Debian's Prometheus scrapes a
live exporter (make demo's, in the guest, through its forwarded port) and
evaluates the committed rules. Every query of every panel, with its
variables resolved the way Grafana does, must return data through
Prometheus's HTTP API for every camera, and every recording rule must
produce series."""

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from labtools import TOP, free_port

DASH = TOP / "dashboards"
PROM = DASH / "prometheus"
SCRAPE = "2s"
RATE_INTERVAL = "1m"       # what Grafana's $__rate_interval becomes here (>= 4 scrapes)
# dashboards/ is a directory of the checkout, not an installed package
sys.path.insert(0, str(TOP))

from dashboards.generator import main, rules  # noqa: E402
from dashboards.generator.boards import DASHBOARDS  # noqa: E402
from dashboards.generator.check import panel_exprs  # noqa: E402
from dashboards.generator.config import CONFIG  # noqa: E402


class Prometheus:
    """Debian's prometheus on a free loopback port, scraping one exporter
    every 2 s with the committed rule files; its log in TMP."""

    def __init__(self, tmp, exporter_port):
        assert shutil.which("prometheus"), "Debian's prometheus is needed"
        self.instance = f"127.0.0.1:{exporter_port}"
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        config = tmp / "prometheus.yml"
        config.write_text(main.to_yaml({
            "global": {"scrape_interval": SCRAPE, "scrape_timeout": SCRAPE, "evaluation_interval": SCRAPE},
            "rule_files": [str(PROM / "vcam-rules.yml"), str(PROM / "vcam-alerts.yml")],
            "scrape_configs": [{"job_name": CONFIG["job"], "static_configs": [{"targets": [self.instance]}]}],
        }))
        self.log = tmp / "prometheus.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'prometheus-data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
                stdout=log, stderr=subprocess.STDOUT)

    def stop(self):
        """SIGTERM; its exit status (0: a clean shutdown)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def api(self, path, **params):
        url = f"{self.base}/api/v1/{path}?" + urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(url, timeout=30) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr):
        return self.api("query", query=expr)["result"]

    def label_values(self, selector, label):
        """Grafana's label_values(selector, label), through the series API."""
        return sorted({s[label] for s in self.api("series", **{"match[]": selector}) if label in s})


def wait_until(what, condition, deadline, alive):
    """Poll until condition() is true; fail (with what) when a process dies
    or the deadline passes. The deadline bounds a hang, it asserts no speed.
    `alive`: (name, Popen, its log as a function) of what must keep running."""
    while True:
        for name, proc, log in alive:
            assert proc.poll() is None, f"{name} exited while waiting for {what}:\n{log()[-4000:]}"
        try:
            if condition():
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(1)


def substitute(expr, variables):
    for name, value in variables.items():
        expr = expr.replace(f"${name}", value)
    return expr


def check_every_panel(prom, cameras, deadline, alive):
    """Once the exporter streams CAMERAS cameras (one of them on the copy
    path) and Prometheus has a few scrapes of them: every panel of every
    dashboard has data for each camera, every rule is healthy."""
    inst = prom.instance
    wait_until(f"the exporter to be up with {cameras} cameras",
               lambda: len(prom.query(f'vcam_camera_info{{job="{CONFIG["job"]}", instance="{inst}"}}')) == cameras,
               deadline, alive)
    # a few scrape intervals of samples under every rate() and every recording rule
    wait_until("6 scrapes of a streaming camera",
               lambda: prom.query(f'count_over_time(vcam_frames_delivered_total{{instance="{inst}", path="copy"}}[1m]) >= 6'
                                  f' and increase(vcam_frames_delivered_total[1m]) > 0'), deadline, alive)
    wait_until("the recording rules to be evaluated",
               lambda: all(prom.query(name) for name, _ in rules.RECORDING), deadline, alive)

    failures = []
    for fname in DASHBOARDS:
        dash = json.loads((DASH / fname).read_text())
        # the variables, resolved as Grafana would
        var = {v["name"]: v for v in dash["templating"]["list"]}
        sel = var["instance"]["query"]["query"].removeprefix("label_values(").rsplit(",", 1)[0]
        assert inst in prom.label_values(sel, "instance"), fname
        sel = var["device"]["query"]["query"].removeprefix("label_values(").rsplit(",", 1)[0]
        devices = prom.label_values(sel.replace("$instance", inst), "device")
        assert len(devices) == cameras and all(d.startswith("video") for d in devices), devices
        for device in devices:
            values = {"__rate_interval": RATE_INTERVAL, "instance": inst, "device": device}
            for title, expr in panel_exprs(dash):
                if title.startswith("variable "):
                    continue
                expr = substitute(expr, values)
                assert "$" not in expr, expr
                if not prom.query(expr):
                    failures.append(f"{fname}: panel '{title}' ({device}): no data for {expr}")
    assert not failures, "\n".join(failures)

    for name, _ in rules.RECORDING:
        series = prom.query(f'{name}{{instance="{inst}"}}')
        assert {s["metric"]["device"] for s in series} == set(devices), (name, series)
    # every rule, recording and alerting, evaluates without an error
    groups = prom.api("rules")["groups"]
    loaded = [r for g in groups for r in g["rules"]]
    assert len(loaded) == len(rules.RECORDING) + len(rules.ALERTS)
    assert all(r["health"] == "ok" for r in loaded), [(r["name"], r.get("lastError")) for r in loaded]
