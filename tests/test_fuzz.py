"""The fuzzer (fuzz/vcam-fuzz.c) for a bounded time, then the system as it
was: the fuzzer exits 0 (no hang, no crash, every descriptor it had closed),
no process holds /dev/vcam or a /dev/video*, vcam unloads and loads again,
and the slab caches, vmalloc areas and video minors are back where they
started. The runner fails the run on any warning or oops in the kernel log.

VCAM_FUZZ_SECONDS (20), VCAM_FUZZ_SEED (from the clock, printed) and
VCAM_FUZZ_ARGS (more options) change the run; `make fuzz` sets them."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from vcam_helpers import KernelState, wait_until

SECONDS = float(os.environ.get("VCAM_FUZZ_SECONDS") or 20)
SEED = os.environ.get("VCAM_FUZZ_SEED") or str(int.from_bytes(os.urandom(6), "little"))
EXTRA_ARGS = (os.environ.get("VCAM_FUZZ_ARGS") or "").split()
THREADS = 4
# A call blocked this long is a hang (the fuzzer reports it and exits 2)
HANG_SECONDS = 30

# every_kernel: also in the kernel tier of the lab's other kernels (make test)
pytestmark = [pytest.mark.guest, pytest.mark.every_kernel,
              pytest.mark.timeout(int(SECONDS) + HANG_SECONDS + 300)]

TOP = Path(__file__).resolve().parent.parent
SOURCE = TOP / "fuzz" / "vcam-fuzz.c"
BUILT = TOP / "build" / "vcam-fuzz"
MODULE = TOP / "driver" / "vcam.ko"


def fuzzer(out_dir: Path) -> Path:
    """The fuzzer the Makefile built on the host (make test does), or when
    that is missing or older than its source, one built here by the same
    Makefile rule into OUT_DIR (the checkout is read-only in the guest)."""
    if BUILT.exists() and BUILT.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BUILT
    binary = out_dir / "vcam-fuzz"
    subprocess.run(["make", "-s", "-C", str(TOP), f"FUZZ_BIN={binary}", str(binary)], check=True)
    return binary


# --- what must come back ------------------------------------------------------


def open_device_files() -> list[str]:
    """Every descriptor of /dev/vcam or a /dev/video* in any process."""
    held = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                target = os.readlink(fd)
                if target == "/dev/vcam" or target.startswith("/dev/video"):
                    held.append(f"{fd}: {target}")
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue  # a process that ended meanwhile
    return held


def calls_ok(summary: str) -> dict[str, int]:
    """The summary's successful calls per call name."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+) +\d+ +(\d+)", summary, re.M)}


def reload_vcam() -> None:
    """rmmod vcam (the last file's release may lag a moment behind the
    fuzzer's exit), then insmod it again."""
    def unloaded():
        return subprocess.run(["rmmod", "vcam"], capture_output=True).returncode == 0

    try:
        wait_until(unloaded, 15, "rmmod vcam to succeed", interval=0.2)
        assert not os.path.exists("/dev/vcam")
    finally:
        if not os.path.exists("/sys/module/vcam"):
            subprocess.run(["insmod", str(MODULE)], check=True)
    wait_until(lambda: os.path.exists("/dev/vcam"), 5, "/dev/vcam after insmod")


# --- the run ------------------------------------------------------------------


def fuzz_once(binary: Path, log: Path) -> dict[str, int]:
    """One run of the fuzzer, checked: exit 0, the deep states reached,
    nothing left open. Returns its successful calls per call name."""
    cmd = [str(binary), "--seed", SEED, "--seconds", str(SECONDS), "--threads", str(THREADS),
           "--hang", str(HANG_SECONDS), *EXTRA_ARGS]
    print(" ".join(cmd), flush=True)
    # The log goes straight to a file in the run directory: it survives a
    # guest that the run wedges, with the seed on its first line.
    with open(log, "w") as out:
        r = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT,
                           timeout=SECONDS + HANG_SECONDS + 60)
    summary = log.read_text()
    print(summary)
    assert r.returncode == 0, f"vcam-fuzz --seed {SEED} exited {r.returncode}:\n{summary}"

    # It got past the validation into the deep states
    ok = calls_ok(summary)
    for call in ("CREATE", "QUEUE", "DEQUEUE", "EXPORT", "REQBUFS", "QBUF", "DQBUF", "STREAMON", "MMAP_VIDEO"):
        assert ok.get(call, 0) > 0, f"no successful {call} in {SECONDS:g} s (seed {SEED})"

    assert open_device_files() == []
    return ok


def test_fuzz_leaves_the_system_as_it_was(tmp_path):
    out_dir = Path(os.environ.get("VCAM_RUN_DIR") or tmp_path)
    binary = fuzzer(out_dir)
    subprocess.run(["modprobe", "vgem"], check=False)  # one more DMA-BUF exporter, where there is one
    before = KernelState()
    ok = fuzz_once(binary, out_dir / "fuzz.log")
    # A camera made and a DMA-BUF exported are the fuzzer's rounds: each
    # leaves objects freed lazily (its nodes, its file), as a cycle of the
    # fault tests does (6.1: +1.06 MB of slab, no kmalloc cache grown,
    # after 20 s; a 20 s run on 6.12 made 62 cameras and 303 exports)
    before.check(f"vcam-fuzz --seed {SEED}", rounds=ok["CREATE"] + ok["EXPORT"])
    reload_vcam()
