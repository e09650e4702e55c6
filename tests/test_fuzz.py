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

from vcam_helpers import video_nodes, wait_until

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


def shrink_slabs() -> None:
    """Flush every kmalloc cache's per-CPU slabs and free its empty ones, so
    that /proc/slabinfo's active objects are the objects in use (SLUB
    otherwise counts the free objects of per-CPU slabs as active)."""
    for shrink in Path("/sys/kernel/slab").glob("kmalloc*/shrink"):
        try:
            shrink.write_text("1")
        except OSError:
            pass


def slab_objects() -> dict[str, tuple[int, int]]:
    """Active objects and objects per slab of every kmalloc cache (vcam's
    and vb2's structures, DMA-BUF attachments, sg tables all live there)."""
    shrink_slabs()
    caches = {}
    for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
        f = line.split()
        if "kmalloc" in f[0]:
            caches[f[0]] = (int(f[1]), int(f[4]))
    return caches


def slab_grown(before: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Caches that grew by more than SLUB's per-CPU slack: the free objects
    of each CPU's current slab count as active, so up to one slab per CPU
    comes and goes without a leak (measured: see fuzz/README.md)."""
    grown = {}
    for name, (active, per_slab) in slab_objects().items():
        delta = active - before.get(name, (0, 0))[0]
        if delta > max(64, per_slab * os.cpu_count()):
            grown[name] = delta
    return grown


def vmalloc_areas() -> int:
    """Live vmalloc/vmap areas (lazily freed ones are listed as unpurged)."""
    return sum(1 for line in Path("/proc/vmallocinfo").read_text().splitlines() if "unpurged" not in line)


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


def fuzz_once(binary: Path, log: Path) -> None:
    """One run of the fuzzer, checked: exit 0, the deep states reached,
    nothing left open, vcam unloaded and loaded again."""
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
    reload_vcam()


def slab_after(before: dict[str, tuple[int, int]]) -> dict[str, int]:
    """The kmalloc caches grown past the slack since BEFORE. Some frees are
    deferred (RCU, workqueues) and lag on an emulated guest: they get 15 s
    to land. A leak never does."""
    try:
        wait_until(lambda: not slab_grown(before), 15, "the slab caches to shrink back", interval=0.5)
    except AssertionError:
        pass  # what still grew is named by the caller
    grown = slab_grown(before)
    deltas = {name: active - before.get(name, (0, 0))[0] for name, (active, _) in slab_objects().items()}
    print(f"kmalloc caches changed: { {k: v for k, v in deltas.items() if v} }; grown past the slack: {grown}")
    return grown


def test_fuzz_leaves_the_system_as_it_was(tmp_path):
    out_dir = Path(os.environ.get("VCAM_RUN_DIR") or tmp_path)
    binary = fuzzer(out_dir)
    subprocess.run(["modprobe", "vgem"], check=False)  # one more DMA-BUF exporter, where there is one
    nodes = video_nodes()
    slab_before = slab_objects()
    vmaps_before = vmalloc_areas()

    fuzz_once(binary, out_dir / "fuzz.log")
    grown = slab_after(slab_before)
    if grown:
        # A boot's first runs fill kernel caches (kmalloc-96 by a few hundred
        # objects, on runs of any length): the same run again from here must
        # grow at under half the rate. A leak keeps its rate.
        print("kmalloc caches grew: the same run again")
        slab_before = slab_objects()
        fuzz_once(binary, out_dir / "fuzz-again.log")
        again = slab_after(slab_before)
        grown = {name: n for name, n in again.items() if n * 2 >= grown.get(name, 0)}
    vmaps_after = vmalloc_areas()
    print(f"vmalloc areas {vmaps_before} -> {vmaps_after}")
    assert not grown, f"kmalloc caches grew (seed {SEED}): {grown}"
    assert vmaps_after - vmaps_before <= 16, f"vmalloc areas {vmaps_before} -> {vmaps_after} (seed {SEED})"
    assert video_nodes() == nodes
