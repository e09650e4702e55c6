"""make demo NATIVE=1, run inside the guest as if it were a user's machine:
the guest kernel is "the host kernel" here. The checkout's driver/vcam.ko
is built for it (the runner built it), so the demo takes that one, loads
it, runs both cameras, unloads it. Building the checkout when it has no
current build is tests/test_demo_native_build.py's, on the host: gcc
under emulation takes three minutes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo_output import check_demo_output, read_summary
from labtools import TOP

pytestmark = pytest.mark.guest

MODULE = TOP / "driver" / "vcam.ko"


@pytest.fixture
def vcam_unloaded():
    """The runner's vcam out of the way, and back afterwards."""
    subprocess.run(["rmmod", "vcam"], check=True)
    try:
        yield
    finally:
        if not Path("/sys/module/vcam").exists():
            subprocess.run(["insmod", str(MODULE)], check=True)


def test_native_demo_takes_the_checkouts_build_loads_runs_and_unloads(vcam_unloaded, tmp_path):
    r = subprocess.run([sys.executable, str(TOP / "lab" / "demo"), "--native", "--batch", "--seconds", "5",
                        "--log-dir", str(tmp_path)], capture_output=True, text=True, timeout=850)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text
    check_demo_output(read_summary(tmp_path), r.stdout)
    assert f"demo: no installed vcam: using {MODULE}, built for {os.uname().release}" in text, text
    assert "demo: vcam unloaded; kernel log clean" in text, text
    assert not Path("/sys/module/vcam").exists()
    assert "demo: cameras streaming" in (tmp_path / "cameras.log").read_text()


def test_native_demo_refuses_a_loaded_vcam(tmp_path):
    r = subprocess.run([sys.executable, str(TOP / "lab" / "demo"), "--native", "--batch",
                        "--log-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "demo: error: a vcam module is loaded already: the demo loads its own (rmmod vcam first)" in r.stderr
    assert Path("/sys/module/vcam").exists()
