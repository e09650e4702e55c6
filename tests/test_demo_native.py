"""make demo NATIVE=1, run inside the guest as if it were a user's machine:
the guest kernel is "the host kernel" here, with its headers installed. The
demo builds its own vcam, loads it, runs both cameras, unloads it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo_output import check_demo_output, read_summary
from labtools import TOP, vmrun

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


@pytest.mark.skipif(vmrun.build_root_of(os.uname().release) is not None,
                    reason="this kernel's headers need the toolchain of their own build root (sid's for 7.2), "
                           "not this system's: the lab builds vcam for it there")
def test_native_demo_builds_loads_runs_and_unloads(vcam_unloaded, tmp_path):
    r = subprocess.run([sys.executable, str(TOP / "lab" / "demo"), "--native", "--batch", "--seconds", "5",
                        "--log-dir", str(tmp_path)], capture_output=True, text=True, timeout=850)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text
    check_demo_output(read_summary(tmp_path), r.stdout)
    assert "demo: vcam unloaded; kernel log clean" in text, text
    assert not Path("/sys/module/vcam").exists()
    assert "demo: cameras streaming" in (tmp_path / "cameras.log").read_text()


def test_native_demo_refuses_a_loaded_vcam(tmp_path):
    r = subprocess.run([sys.executable, str(TOP / "lab" / "demo"), "--native", "--batch",
                        "--log-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "demo: error: a vcam module is loaded already: the demo loads its own (rmmod vcam first)" in r.stderr
    assert Path("/sys/module/vcam").exists()
