"""make demo end to end on the host, on a terminal (tmux): the guest boots,
two cameras stream, the TUI watches them through the exporter's forwarded
port while Debian's Prometheus scrapes that exporter to prove every
dashboard panel (tests/prometheus_check.py), and q stops everything with
status 0 and nothing left running."""

import os
import re
import subprocess
import time

import pytest

from demo_output import check_demo_reports
from labtools import TOP
from prometheus_check import Prometheus, check_every_panel, wait_until

pytestmark = pytest.mark.own_guest

DEMO_LOG = TOP / "build" / "demo" / "cameras.log"   # make demo's log directory: build/demo


def run_dir_of(text: str) -> str:
    return re.search(r"run directory (\S+)", text)[1]


def assert_nothing_left(run_dir: str) -> None:
    left = subprocess.run(["pgrep", "-af", run_dir], capture_output=True, text=True).stdout
    assert left == "", f"processes left behind: {left}"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


class DemoOnATerminal:
    """make demo in a tmux session of its own: what it writes to its
    terminal is kept in a file, its exit status in another."""

    def __init__(self, tmp_path):
        self.session = f"vcam-demo-test-{os.getpid()}"
        self.output, self.status = tmp_path / "terminal.log", tmp_path / "status"
        self.output.touch()
        # The command waits for its output to be piped before it starts.
        tmux("new-session", "-d", "-s", self.session, "-x", "132", "-y", "30", "-c", str(TOP),
             f"sleep 1; make --no-print-directory demo; echo $? > {self.status}")
        tmux("pipe-pane", "-t", self.session, "-o", f"cat >> {self.output}")

    def poll(self):
        return int(self.status.read_text()) if self.status.exists() and self.status.read_text() else None

    def text(self):
        return self.output.read_text(errors="replace")

    def screen(self):
        return tmux("capture-pane", "-p", "-t", self.session)

    def close(self):
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


def test_make_demo_on_a_terminal_every_dashboard_panel_on_its_exporter_and_q_quits(tmp_path):
    """One guest boot for both: the TUI on the terminal, and Debian's
    Prometheus scraping the exporter the demo forwards meanwhile. (Without a
    terminal the demo prints a summary instead: tests/test_demo_native.py
    runs that way, on the guest's kernel.)"""
    demo = DemoOnATerminal(tmp_path)
    prom = None
    try:
        alive = [("make demo", demo, demo.text)]
        deadline = time.monotonic() + 1200
        port = lambda: re.search(r"exporter port (\d+)", demo.text())
        wait_until("make demo to name its exporter port", port, deadline, alive)
        prom = Prometheus(tmp_path, int(port()[1]))
        alive.append(("prometheus", prom.proc, prom.log.read_text))
        wait_until("the TUI to show both cameras streaming", lambda: both_cameras_streaming(demo.screen()),
                   deadline, alive)
        check_every_panel(prom, 2, deadline, alive)
        tmux("send-keys", "-t", demo.session, "q")
        deadline = time.monotonic() + 300
        while demo.poll() is None:
            assert time.monotonic() < deadline, "make demo did not end within 300 s of q"
            time.sleep(1)
    finally:
        demo.close()
        if prom is not None:
            assert prom.stop() == 0, prom.log.read_text()[-4000:]
    assert demo.poll() == 0, DEMO_LOG.read_text()
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
