"""The lab's debug kernel (lab/debug-kernel.sh), booted: its instruments
report real faults, and each report fails a lab/vm-run run.

A small test module (tests/kernel_faults/labfaults.c) commits, when loaded,
a leak, an out-of-bounds read, a lock-order inversion, a might_sleep()
under a spinlock and a list_add() next to a corrupted entry. The command
that loads it exits 0; the run must still fail, naming each report.
They run in `make test KERNEL=6.12-debug` (each boot of the debug kernel
takes minutes: plain `make test` stays as it was), and are skipped where
the debug kernel is not built (`make setup KERNEL=6.12-debug`).
"""

import os
import shutil
import subprocess

import pytest

from labtools import TOP, run_command, vm_run
from labtools import vmrun as vm

DEBUG = "6.12-debug"


@pytest.fixture(scope="module")
def debug_kernel():
    if os.environ.get("KERNEL") != DEBUG:
        pytest.skip(f"the debug kernel's boots run in make test KERNEL={DEBUG}")
    try:
        return vm.find_kernel(DEBUG)
    except vm.RunnerError as err:
        pytest.skip(f"no debug kernel here ({err})")


@pytest.fixture(scope="module")
def labfaults(debug_kernel):
    """labfaults.ko built against the debug kernel, inside the checkout
    (the guest sees the checkout; it mounts its own /tmp)."""
    work = TOP / "build" / "labfaults"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(TOP / "tests" / "kernel_faults", work)
    run_command("make", "-s", "-C", f"/lib/modules/{debug_kernel}/build", f"M={work}", "modules")
    return work / "labfaults.ko"


def reported(stderr):
    """The bad lines the runner listed (indented under its summary line)."""
    return [line.strip() for line in stderr.splitlines() if line.startswith("  ")]


@pytest.mark.own_guest
def test_a_clean_run_on_the_debug_kernel_passes(debug_kernel):
    # Nothing at boot, and no leak kmemleak's final scan finds in the
    # kernel itself, fails a run that did nothing wrong.
    result = vm_run("--kernel", DEBUG, "--no-driver", "--", "true", timeout=900)
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert "kernel log and kmemleak's scan clean" in stderr, stderr


@pytest.mark.own_guest
def test_each_instrument_reports_and_the_report_fails_the_run(labfaults):
    result = vm_run("--kernel", DEBUG, "--no-driver", "--", "insmod", str(labfaults), timeout=900)
    stderr = result.stderr.decode()
    # insmod exited 0; the reports fail the run
    assert result.returncode == 1, stderr
    lines = reported(stderr)
    for words in (
        "BUG: KASAN: slab-out-of-bounds in fault_kasan",
        "WARNING: possible circular locking dependency detected",
        "BUG: sleeping function called from invalid context",
        "list_add corruption",
        "unreferenced object 0x",
    ):
        assert any(words in line for line in lines), f"{words!r} not reported:\n{stderr}"
    # the leak is labfaults' own (128 bytes, allocated by insmod; the
    # backtrace's module frame may be unnamed once init memory is freed)
    run_dir = TOP / next(line.split("run directory ")[1] for line in stderr.splitlines() if "run directory" in line)
    leaks = (run_dir / "kmemleak").read_text()
    assert "(size 128)" in leaks and 'comm "insmod"' in leaks, leaks


def test_the_fault_module_builds_warning_free_against_debian_6_12(tmp_path):
    # Cheap, everywhere 6.12's headers are: the module the guest test loads
    # compiles (the debug kernel's own build is the guest test's).
    try:
        kernel = vm.find_kernel("6.12")
    except vm.RunnerError as err:
        pytest.skip(str(err))
    work = tmp_path / "labfaults"
    shutil.copytree(TOP / "tests" / "kernel_faults", work)
    result = subprocess.run(["make", "-C", f"/lib/modules/{kernel}/build", f"M={work}", "W=1", "modules"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning:" not in result.stderr, result.stderr
    assert (work / "labfaults.ko").exists()
