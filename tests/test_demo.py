"""make demo end to end on the host: the guest boots, two cameras stream,
the host watches them through the exporter's forwarded port, and
everything stops with status 0 and nothing left running. Once without a
terminal (the summary), with Debian's Prometheus scraping the demo's
exporter meanwhile to prove every dashboard panel (tests/prometheus_check.py),
and once on a terminal (tmux) quitting the TUI."""

import os
import re
import subprocess
import threading
import time

from demo_output import check_demo_output, check_demo_reports, read_summary
from labtools import TOP
from prometheus_check import Prometheus, check_every_panel, wait_until

DEMO_LOG = TOP / "build" / "demo" / "cameras.log"   # make demo's log directory: build/demo


def run_dir_of(text: str) -> str:
    return re.search(r"run directory (\S+)", text)[1]


def assert_nothing_left(run_dir: str) -> None:
    left = subprocess.run(["pgrep", "-af", run_dir], capture_output=True, text=True).stdout
    assert left == "", f"processes left behind: {left}"


class Output:
    """A process's output, read as it comes on a thread of its own."""

    def __init__(self, stream):
        self.lines = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self.thread.start()

    def text(self):
        return "".join(self.lines)


def test_make_demo_without_a_terminal_and_every_dashboard_panel_on_its_exporter(tmp_path):
    seconds = 60   # the watch: time for Prometheus's scrapes and the panel checks
    demo = subprocess.Popen(["make", "--no-print-directory", "demo", f"DEMO_SECONDS={seconds}"], cwd=TOP,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = Output(demo.stdout), Output(demo.stderr)
    prom = None
    try:
        alive = [("make demo", demo, err.text)]
        deadline = time.monotonic() + 1200
        wait_until("make demo to name its exporter port", lambda: re.search(r"exporter port (\d+)", err.text()),
                   deadline, alive)
        prom = Prometheus(tmp_path, int(re.search(r"exporter port (\d+)", err.text())[1]))
        alive.append(("prometheus", prom.proc, prom.log.read_text))
        wait_until("the cameras to stream", lambda: "demo: watching" in err.text(), deadline, alive)
        # the checks end well inside the demo's watch, while the exporter still serves
        check_every_panel(prom, 2, time.monotonic() + seconds - 10, alive)
        demo.wait(600)
    finally:
        if demo.poll() is None:
            demo.terminate()     # the demo stops its guest on SIGTERM
            demo.wait(300)
        if prom is not None:
            assert prom.stop() == 0, prom.log.read_text()[-4000:]
    out.thread.join(10)
    err.thread.join(10)
    text = out.text() + err.text()
    assert demo.returncode == 0, text
    check_demo_output(read_summary(DEMO_LOG.parent), out.text())
    assert "demo: exporter was at http://127.0.0.1:" in text
    assert "kernel log clean" in text and text.rstrip().endswith("demo: done"), text
    assert_nothing_left(run_dir_of(text))


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def test_make_demo_on_a_terminal_quits_with_q(tmp_path):
    session = f"vcam-demo-test-{os.getpid()}"
    status_file = tmp_path / "status"
    tmux("new-session", "-d", "-s", session, "-x", "132", "-y", "30", "-c", str(TOP),
         f"make --no-print-directory demo; echo $? > {status_file}")
    try:
        deadline = time.monotonic() + 1200
        screen = ""
        while not both_cameras_streaming(screen):
            assert time.monotonic() < deadline, f"the TUI never showed both cameras streaming:\n{screen}"
            time.sleep(2)
            screen = tmux("capture-pane", "-p", "-t", session)
        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 300
        while not status_file.exists():
            assert time.monotonic() < deadline, "make demo did not end within 300 s of q"
            time.sleep(1)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    assert status_file.read_text().strip() == "0", DEMO_LOG.read_text()
    log = DEMO_LOG.read_text()
    check_demo_reports(log)
    assert "kernel log clean" in log, log
    assert_nothing_left(run_dir_of(log))


def both_cameras_streaming(screen: str) -> bool:
    """The table has two cameras with a frame rate, one all zero-copy and one
    all copied (labels may be cut short on a narrow terminal). The table
    ends at the rule above the highlighted camera's panel."""
    table = screen.split("\u2500" * 10)[0]
    rows = [line for line in table.splitlines() if re.match(r"\s*video\d+ ", line)]
    shares = sorted(re.search(r" (\d+)% ", row)[1] for row in rows if re.search(r" \d+% ", row))
    return shares == ["0", "100"] and all(re.search(r" \d+\.\d ", row) for row in rows)
