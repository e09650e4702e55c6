"""The dashboards, proven on the real thing: a guest (lab/vm-run) runs the
vcam module, `vcam-observe export`, a producer and a consumer; Debian's
Prometheus on the host scrapes the exporter through the runner's port
forwarding and evaluates the committed rules. Every query of every panel,
with its variables resolved the way Grafana does, must return data through
Prometheus's HTTP API, and every recording rule must produce series.

Host tier (no marker): it boots its own guest, like tests/test_lab_runner.py."""

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from labtools import TOP, VM_RUN, free_port

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


# Runs in the guest: exporter + producer + consumer until the host connects
# to the forwarded stop port, then stops them in order and exits 0 only if
# the exporter and producer ended cleanly. (A stop file would not do: when
# the checkout is under /tmp, the guest's /tmp overlay hides host changes.)
GUEST = r"""
import json, os, signal, socket, subprocess, sys, time
port = {port}
stopper = socket.socket()
stopper.bind(("0.0.0.0", {stop_port}))
stopper.listen()
stopper.settimeout(0.5)

def stop_requested():
    try:
        stopper.accept()[0].close()
        return True
    except socket.timeout:
        return False

exp = subprocess.Popen(["vcam-observe", "export", "--listen", f"0.0.0.0:{{port}}"])
# stream only once bcc has compiled: under TCG the two would fight for the same CPUs
import urllib.request
while exp.poll() is None:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{{port}}/metrics", timeout=30).read()
        break
    except OSError:
        time.sleep(1)
if exp.poll() is not None:
    sys.exit(f"guest: the exporter exited with {{exp.returncode}}")
prod = subprocess.Popen(["vcam-producer", "run", "--fps", "15", "--size", "320x240", "--label", "dashboards",
                         "--json"], stdout=subprocess.PIPE, text=True)
ready = json.loads(prod.stdout.readline())
print("guest: camera", ready["device"], file=sys.stderr, flush=True)
cons = subprocess.Popen(["vcam-producer", "consume", "--device", ready["device"], "--frames", "10000000",
                         "--timeout", "60"], stdout=subprocess.DEVNULL)
deadline = time.monotonic() + {seconds}
while time.monotonic() < deadline and exp.poll() is None and not stop_requested():
    pass
codes = {{}}
for name, p, sig in (("consumer", cons, signal.SIGINT), ("producer", prod, signal.SIGTERM),
                     ("exporter", exp, signal.SIGTERM)):
    if p.poll() is None:
        p.send_signal(sig)
    try:
        codes[name] = p.wait(60)
    except subprocess.TimeoutExpired:
        p.kill()
        codes[name] = p.wait()
print("guest: exit codes", codes, file=sys.stderr, flush=True)
sys.exit(0 if codes["exporter"] == 0 and codes["producer"] == 0 else 1)
"""


def api(base, path, **params):
    url = f"{base}/api/v1/{path}?" + urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(url, timeout=30) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]


def query(base, expr):
    return api(base, "query", query=expr)["result"]


def wait_until(what, condition, deadline, alive):
    """Poll until condition() is true; fail (with what) when a process dies
    or the deadline passes. The deadline bounds a hang, it asserts no speed."""
    while True:
        for name, proc, log in alive:
            assert proc.poll() is None, f"{name} exited while waiting for {what}:\n{log.read_text()[-4000:]}"
        try:
            if condition():
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(1)


def label_values(base, selector, label):
    """Grafana's label_values(selector, label), through the series API."""
    return sorted({s[label] for s in api(base, "series", **{"match[]": selector}) if label in s})


def substitute(expr, variables):
    for name, value in variables.items():
        expr = expr.replace(f"${name}", value)
    return expr


def stop(proc, sig=signal.SIGTERM, timeout=60):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def request_guest_stop(stop_port):
    try:
        with socket.create_connection(("127.0.0.1", stop_port), timeout=10):
            pass
    except OSError:
        pass  # the guest is already gone


def test_every_panel_query_returns_data_from_a_real_prometheus(tmp_path):
    assert shutil.which("prometheus"), "Debian's prometheus is needed"
    port, stop_port, prom_port = free_port(), free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    # the committed rule files, a scrape config of our own for the guest
    config.write_text(main.to_yaml({
        "global": {"scrape_interval": SCRAPE, "scrape_timeout": SCRAPE, "evaluation_interval": SCRAPE},
        "rule_files": [str(PROM / "vcam-rules.yml"), str(PROM / "vcam-alerts.yml")],
        "scrape_configs": [{"job_name": CONFIG["job"], "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
    }))
    guest_log, prom_log = tmp_path / "guest.log", tmp_path / "prometheus.log"
    base = f"http://127.0.0.1:{prom_port}"
    runner = prom = None
    try:
        with open(guest_log, "w") as log:
            runner = subprocess.Popen(
                [str(VM_RUN), "--ports", f"{port},{stop_port}", "--", "python3", "-c",
                 GUEST.format(port=port, stop_port=stop_port, seconds=900)],
                cwd=TOP, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        with open(prom_log, "w") as log:
            prom = subprocess.Popen(
                ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}", "--storage.tsdb.retention.time=1h"],
                stdout=log, stderr=subprocess.STDOUT)
        alive = [("the guest runner", runner, guest_log), ("prometheus", prom, prom_log)]
        # bcc compiles for 15 s (KVM) to minutes (TCG on a busy host) before the first scrape answers
        deadline = time.monotonic() + 600
        inst = f"127.0.0.1:{port}"
        wait_until("the exporter to be up with a camera",
                   lambda: query(base, f'vcam_camera_info{{job="vcam", instance="{inst}"}}'), deadline, alive)
        # a few scrape intervals of samples under every rate() and every recording rule
        wait_until("6 scrapes of a streaming camera",
                   lambda: query(base, f'count_over_time(vcam_frames_delivered_total{{instance="{inst}", path="copy"}}[1m]) >= 6'
                                 f' and increase(vcam_frames_delivered_total[1m]) > 0'), deadline, alive)
        wait_until("the recording rules to be evaluated",
                   lambda: all(query(base, name) for name, _ in rules.RECORDING), deadline, alive)

        failures = []
        for fname in DASHBOARDS:
            dash = json.loads((DASH / fname).read_text())
            # the variables, resolved as Grafana would
            var = {v["name"]: v for v in dash["templating"]["list"]}
            sel = var["instance"]["query"]["query"].removeprefix("label_values(").rsplit(",", 1)[0]
            assert inst in label_values(base, sel, "instance"), fname
            sel = var["device"]["query"]["query"].removeprefix("label_values(").rsplit(",", 1)[0]
            devices = label_values(base, sel.replace("$instance", inst), "device")
            assert len(devices) == 1 and devices[0].startswith("video"), devices
            values = {"__rate_interval": RATE_INTERVAL, "instance": inst, "device": devices[0]}
            for title, expr in panel_exprs(dash):
                if title.startswith("variable "):
                    continue
                expr = substitute(expr, values)
                assert "$" not in expr, expr
                if not query(base, expr):
                    failures.append(f"{fname}: panel '{title}': no data for {expr}")
        assert not failures, "\n".join(failures)

        for name, _ in rules.RECORDING:
            series = query(base, f'{name}{{instance="{inst}"}}')
            assert series and all(s["metric"]["device"] == devices[0] for s in series), name
        # every rule, recording and alerting, evaluates without an error
        groups = api(base, "rules")["groups"]
        loaded = [r for g in groups for r in g["rules"]]
        assert len(loaded) == len(rules.RECORDING) + len(rules.ALERTS)
        assert all(r["health"] == "ok" for r in loaded), [(r["name"], r.get("lastError")) for r in loaded]
    finally:
        request_guest_stop(stop_port)
        if prom is not None:
            stop(prom)
        if runner is not None:
            try:
                runner.wait(180)
            except subprocess.TimeoutExpired:
                stop(runner)     # the runner takes its QEMU down on SIGTERM
    assert prom.returncode == 0, prom_log.read_text()[-4000:]
    assert runner.returncode == 0, guest_log.read_text()[-4000:]
