"""Faults: processes killed at the worst moment, the module unloaded while
busy, a thousand cameras made and destroyed. After each: no hang (every
blocked call returns, every killed process is gone), no leak (slab, vmap
areas, video nodes, DMA-BUFs, the module's reference count back where they
started: vcam_helpers.KernelState), and a consumer whose producer dies sees
an error, never a hang.

The processes are tests/fault-target.c (tests/fault_procs.py): a Python
process costs about a second to start in the emulated guest, a C one
milliseconds. VCAM_FAULT_KILLS (100) and VCAM_FAULT_CYCLES (1000) set the
counts; each test prints its figures (pytest -s shows them)."""

import collections
import ctypes
import errno
import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from fault_procs import Producer, blocked_in_ioctl
from producer import v4l2
from producer.control import Control
from vcam_helpers import KernelState, module_refcnt, stats, wait_until

pytestmark = pytest.mark.guest
# also in the kernel tier of the lab's other kernels (make test): the cheap
# ones (about 30 s together in the emulated guest; the producer kills take 40 s)
every_kernel = pytest.mark.every_kernel

KILLS = int(os.environ.get("VCAM_FAULT_KILLS", "100"))
CYCLES = int(os.environ.get("VCAM_FAULT_CYCLES", "1000"))
MODULE = Path(__file__).resolve().parent.parent / "driver" / "vcam.ko"
# What a consumer may see when its camera goes away (vcam-spec.md).
CONSUMER_ERRORS = {"EPIPE", "ENODEV", "EIO", "POLLERR"}


def warm_up(fault_target) -> None:
    """One camera streamed and destroyed, so that caches are primed before a
    KernelState is taken."""
    subprocess.run([str(fault_target), "cycles", "6", "64", "48"], check=True, capture_output=True)


WARM_UP = 10  # rounds before the baseline: some kernel caches fill during a boot's first rounds


def test_producer_killed_mid_stream(fault_target):
    """A producer SIGKILLed at a random moment of its stream, KILLS times,
    against consumers of every kind: each consumer's blocked DQBUF or poll
    returns an error."""
    rng = random.Random(17)
    seen = collections.Counter()
    kinds = [("mmap", "stream"), ("mmap", "poll"), ("dmabuf", "stream"), ("dmabuf", "poll")]

    def one_round(n):
        memory, stage = kinds[n % len(kinds)]
        with Producer(fault_target, usec=rng.choice([0, 1000, 5000])) as prod, \
                prod.consumer(fault_target, memory, stage) as cons:
            assert cons.line() == "streaming"
            time.sleep(rng.uniform(0, 0.02))  # anywhere in DEQUEUE, the pause or QUEUE
            prod.kill()
            words = cons.line(10).split()  # "error CALL ERRNO-NAME ERRNO"
            assert words[0] == "error" and words[2] in CONSUMER_ERRORS, (n, memory, stage, words)
            assert cons.wait(10) == 3
            seen[f"{memory} {stage}: {words[1]} {words[2]}"] += 1

    for n in range(WARM_UP):
        one_round(n)
    before = KernelState()
    t0 = time.monotonic()
    for n in range(KILLS):
        one_round(n)
    took = time.monotonic() - t0
    print(f"\n{KILLS} producers killed in {took:.1f} s; what the consumers saw: {dict(seen)}")
    before.check(f"{KILLS} producers killed", rounds=KILLS)


@every_kernel
def test_consumer_killed(fault_target):
    """Consumers SIGKILLed KILLS times, in turn: asleep inside a blocking
    DQBUF, between QBUF and STREAMON, and holding a zero-copy buffer (the
    producer's DMA-BUF imported, dequeued, mapped, never queued back). The
    process dies at once, and the camera goes on: the producer gets its
    slots back, so the next consumer gets frames."""
    stages = [("mmap", "stream"), ("dmabuf", "stream"), ("mmap", "gap"), ("dmabuf", "gap"), ("dmabuf", "hold")]
    rng = random.Random(18)
    # 20 frames a second: a streaming consumer sleeps in DQBUF most of the time
    with Producer(fault_target, usec=50_000) as prod:
        def kill_one(n):
            memory, stage = stages[n % len(stages)]
            with prod.consumer(fault_target, memory, stage) as cons:
                first = cons.line(10)
                assert first.split()[0] == {"stream": "streaming", "gap": "queued", "hold": "holding"}[stage], first
                if stage == "stream":
                    wait_until(lambda: blocked_in_ioctl(cons.pid, v4l2.V4l2Ioctl.VIDIOC_DQBUF), 10,
                               "the consumer to sleep in DQBUF", interval=0.005)
                else:
                    time.sleep(rng.uniform(0, 0.05))
                cons.kill(10)
            assert prod.alive(), prod.line(1)

        for n in range(WARM_UP):
            kill_one(n)
        before = KernelState()
        t0 = time.monotonic()
        for n in range(KILLS):
            kill_one(n)
        # Every slot came back from the killed consumers: a last one streams.
        queued = stats(prod.nr)["frames_dequeued"]
        with prod.consumer(fault_target, "dmabuf", "stream") as cons:
            assert cons.line(10) == "streaming"
            wait_until(lambda: stats(prod.nr)["frames_dequeued"] >= queued + 2 * len(prod.fds), 30,
                       "the producer to get each slot back twice")
            cons.kill()
        print(f"\n{KILLS} consumers killed in {time.monotonic() - t0:.1f} s "
              f"({KILLS // len(stages)}+ at each of {stages})")
        # taken and checked with the producer alone streaming
        before.check(f"{KILLS} consumers killed", rounds=KILLS)
        prod.kill()


def delete_module(name: str) -> int:
    """delete_module(2) as rmmod calls it (O_NONBLOCK): 0, or the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    ret = libc.syscall(176, name.encode(), os.O_NONBLOCK)  # __NR_delete_module on x86_64
    return 0 if ret == 0 else ctypes.get_errno()


def refused_unload(what: str, steady: bool = True) -> None:
    """rmmod vcam fails cleanly now: EBUSY-like (EWOULDBLOCK from the
    kernel, "in use" from rmmod), and the module stays as it was: loaded,
    and where nothing runs (STEADY), with the same reference count (with
    cameras streaming it moved on its own once, 13 to 12 on 6.1: not
    explained yet)."""
    refs = module_refcnt()
    err = delete_module("vcam")
    assert err in (errno.EWOULDBLOCK, errno.EBUSY), f"{what}: delete_module gave {errno.errorcode.get(err, err)}"
    r = subprocess.run(["rmmod", "vcam"], capture_output=True, text=True)
    assert r.returncode != 0 and "in use" in r.stderr, (what, r.returncode, r.stderr)
    assert os.path.exists("/dev/vcam") and module_refcnt() > 0, what
    if steady:
        assert module_refcnt() == refs, what


@every_kernel
def test_rmmod_refused_while_busy_then_succeeds(fault_target):
    """rmmod while cameras stream, while a consumer holds a zero-copy buffer
    of a camera whose producer is gone, and while only a DMA-BUF the driver exported outlives its camera: refused
    each time, the stream unharmed; once everything is closed it unloads,
    and loads again."""
    with Producer(fault_target, usec=10_000) as prod, \
            prod.consumer(fault_target, "dmabuf", "stream") as zc, \
            Producer(fault_target, usec=10_000) as prod2, \
            prod2.consumer(fault_target, "dmabuf", "hold") as held:
        assert zc.line() == "streaming"
        assert held.line().startswith("holding")
        done = stats(prod.nr)["frames_dequeued"]
        for _ in range(5):
            refused_unload("streaming", steady=False)
        # the stream went on through the attempts
        wait_until(lambda: stats(prod.nr)["frames_dequeued"] > done + 4, 30, "frames after the rmmod attempts")
        prod.kill()
        words = zc.line(10).split()
        assert words[2] in CONSUMER_ERRORS, words
        assert zc.wait(10) == 3
        prod2.kill()
        refused_unload("a consumer holding a zero-copy buffer of a removed camera")
        held.kill()
    with Control() as ctl:
        ctl.create("Exported", 64, 48, v4l2.V4L2_PIX_FMT_YUYV, nr_frames=2)
        exported = ctl.export(0)
    try:
        refused_unload("a DMA-BUF exported by the driver, its camera gone")
    finally:
        os.close(exported)
    wait_until(lambda: module_refcnt() == 0, 15, "vcam's reference count to fall to 0")
    r = subprocess.run(["rmmod", "vcam"], capture_output=True, text=True)
    try:
        assert r.returncode == 0, r.stderr
        assert not os.path.exists("/dev/vcam")
    finally:
        subprocess.run(["insmod", str(MODULE)], check=True)
    wait_until(lambda: os.path.exists("/dev/vcam"), 5, "/dev/vcam after insmod")
    assert module_refcnt() == 0


@every_kernel
def test_create_stream_destroy_cycles(fault_target):
    """CYCLES cameras made, one frame through each (copy and zero-copy in
    turn), destroyed in either order, a third of them with a frame still
    queued and the capture side streaming."""
    warm_up(fault_target)
    before = KernelState()
    r = subprocess.run([str(fault_target), "cycles", str(CYCLES), "64", "48"],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"\n{r.stdout.strip()} (count, seconds)")
    before.check(f"{CYCLES} cycles", rounds=CYCLES)
