"""vcam-observe top in a real terminal (tmux, read with capture-pane) against
a live exporter with a real producer and a real zero-copy consumer: the
frame count it displays follows what the consumer captured."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from observe_scrape import fetch
from producer_procs import run_cli, running_producer, short_socket_path
from vcam_helpers import wait_until

pytestmark = pytest.mark.guest

PORT = 9481
URL = f"http://127.0.0.1:{PORT}/metrics"
SESSION = "vcam-top-test"
BUFFERS = 4
_BIN = os.path.dirname(sys.executable)
OBSERVE = os.path.join(_BIN, "vcam-observe") if os.path.exists(os.path.join(_BIN, "vcam-observe")) else "vcam-observe"


def wait_for(condition, what, timeout):
    """wait_until (a deadline for waiting, not a timing assertion) that shows
    the screen when it times out."""
    try:
        return wait_until(condition, timeout, what, interval=0.5, ignore=(OSError,))
    except AssertionError as e:
        screen = pane() if _session_up() else "(no tmux session)"
        raise AssertionError(f"{e}; the screen:\n{screen}") from None


def _session_up() -> bool:
    return subprocess.run(["tmux", "has-session", "-t", SESSION], capture_output=True).returncode == 0


def tmux(*args) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def pane() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


def displayed_frames(device: str) -> int | None:
    """The frame count the detail view of `device` shows ("frames N"); the
    table has a frames column only on wide terminals, the detail view always."""
    import re
    text = pane()
    if f"{device}  " not in text:
        return None
    m = re.search(r"frames (\d+)", text)
    return int(m.group(1)) if m else None


@pytest.fixture
def exporter(tmp_path):
    log = tmp_path / "exporter.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([OBSERVE, "export", "--listen", f"127.0.0.1:{PORT}"], stderr=err)
    try:
        # bcc compiles for 15 s to minutes under TCG
        wait_for(lambda: proc.poll() is not None or fetch(URL), "the exporter to serve", 600)
        assert proc.poll() is None, log.read_text()
        yield URL
    finally:
        proc.terminate()
        proc.wait(60)


@pytest.fixture
def top(exporter):
    assert shutil.which("tmux"), "tmux is needed (Debian package tmux)"
    subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    tmux("-f", "/dev/null", "new-session", "-d", "-s", SESSION, "-x", "160", "-y", "48",
         f"TERM=xterm-256color {OBSERVE} top --url {exporter} --interval 0.5")
    # a detached session may still come up 80x24: size the window explicitly
    tmux("set-window-option", "-t", SESSION, "window-size", "manual")
    tmux("resize-window", "-t", SESSION, "-x", "160", "-y", "48")
    try:
        wait_for(lambda: "vcam-observe top" in pane(), "the TUI to draw", 120)
        yield
    finally:
        subprocess.run(["tmux", "send-keys", "-t", SESSION, "q"], capture_output=True)
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)


def test_top_frame_count_follows_the_consumer(top):
    sock = short_socket_path()
    with running_producer(["--fps", "30", "--size", "160x120", "--share", sock, "--label", "Top Test"]) as producer:
        device = os.path.basename(producer.device)
        wait_for(lambda: any(line.split()[:1] == [device] for line in pane().splitlines()),
                 f"{device} in the table", 60)
        tmux("send-keys", "-t", SESSION, "Enter")          # its detail view
        wait_for(lambda: displayed_frames(device) is not None, f"the detail view of {device}", 60)
        assert displayed_frames(device) == 0          # nobody consumed yet: nothing delivered
        captured = runs = 0
        for frames in (20, 40):
            runs += 1
            result = run_cli(["consume", "--import", sock, "--frames", frames, "--json"])
            assert result.returncode == 0, result.stderr
            report = json.loads(result.stdout)
            captured += report["frames"]
            # delivered = what the consumers dequeued, plus at most the buffers
            # each run had queued when it stopped (filled before its STREAMOFF)
            shown = wait_for(lambda: (n := displayed_frames(device)) is not None and n >= captured and n,
                             f"the TUI to show {captured} frames", 60)
            assert captured <= shown <= captured + runs * BUFFERS, (shown, captured, pane())
        text = pane()
        assert "SOURCE DOWN" not in text
        assert "Top Test" in text                   # the card label
