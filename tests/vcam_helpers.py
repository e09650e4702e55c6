"""Helpers for the tests, each written once: waiting for a condition, the
kernel's version, a thread proven blocked in an ioctl, vivid's capture
node, a consumer's capture set-up; and for the guest tests of the vcam
driver, built on the producer package: its capture consumer, its camera,
its sysfs readers; and the kernel's state a leak would show in (slab,
vmap areas, video nodes, DMA-BUFs, the module's reference count)."""

import contextlib
import errno
import os
import platform
import re
import select
import subprocess
import time
from pathlib import Path

from producer import v4l2
from producer.camera import VirtualCamera
from producer.capture import CAP, Capture  # noqa: F401  (re-exported for the tests)
from producer.control import Control
from producer.dmabuf import DmaBuf, system_allocator
from producer.sysfs import stats, video_nodes  # noqa: F401


def wait_until(predicate, timeout: float = 30.0, what: str = "the condition", interval: float = 0.05,
               ignore: tuple[type[BaseException], ...] = ()):
    """Poll predicate() until it is true and return its value; an
    AssertionError naming WHAT after TIMEOUT seconds. Exceptions of the
    types in IGNORE count as not yet (a server not listening yet, say)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ignore:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def kernel_version(release: str | None = None) -> tuple[int, ...]:
    """The numeric version of a kernel release (this kernel's by default) as
    a tuple of integers to compare: '6.12.117+deb12-amd64' -> (6, 12, 117),
    which is after (6, 8) as a string comparison would not have it."""
    release = os.uname().release if release is None else release
    m = re.match(r"\d+(?:\.\d+)*", release)
    if not m:
        raise ValueError(f"not a kernel release: {release!r}")
    return tuple(int(part) for part in m[0].split("."))


# --- a thread blocked in a system call ------------------------------------------

# System call numbers of the lab's architectures, for /proc's syscall file
# (aarch64 has no poll or epoll_wait: glibc calls ppoll and epoll_pwait).
SYSCALLS = {"x86_64": {"read": 0, "ioctl": 16, "poll": 7, "epoll_wait": 232},
            "aarch64": {"read": 63, "ioctl": 29, "poll": 73, "epoll_wait": 22}}[platform.machine()]


def sleeping_in(tid: int, call: str, *args: int) -> bool:
    """Whether thread TID of this process sleeps in system call CALL with
    ARGS as its first arguments: its state is S (an interruptible sleep)
    and /proc's syscall file names the call and its arguments."""
    task = Path(f"/proc/self/task/{tid}")
    state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
    nr, *regs = (task / "syscall").read_text().split()
    return (state == "S" and nr == str(SYSCALLS[call]) and len(regs) >= len(args)
            and all(int(reg, 16) == arg & 0xFFFFFFFFFFFFFFFF for reg, arg in zip(regs, args)))


def wait_blocked(tid: int, call: str, *args: int, timeout: float = 30.0) -> None:
    """Return once thread TID sleeps in CALL(*ARGS, ...): what comes next
    (the wake-up) is then known to find it blocked, not on its way there.
    A thread's TID is its threading.Thread.native_id."""
    wait_until(lambda: sleeping_in(tid, call, *args), timeout,
               f"thread {tid} to block in {call}({', '.join(hex(a) for a in args)}, ...)", interval=0.01)


# --- nodes and capture ------------------------------------------------------------


def video_node(name: str) -> str:
    """/dev/videoN of the V4L2 node whose name is NAME."""
    for entry in sorted(Path("/sys/class/video4linux").iterdir()):
        if (entry / "name").read_text().strip() == name:
            return f"/dev/{entry.name}"
    raise AssertionError(f"no video node named {name}")


def vivid_capture_node(*modprobe_args: str) -> str:
    """vivid loaded (with MODPROBE_ARGS if it was not yet), its first
    capture node: the V4L2 reference driver, a peer for vcam."""
    subprocess.run(["modprobe", "vivid", *modprobe_args], check=True)
    return video_node("vivid-000-vid-cap")


def start_capture(cap: Capture, count: int, memory: int = v4l2.V4L2_MEMORY_MMAP, imports=None) -> None:
    """The consumer's set-up: COUNT buffers of MEMORY, every one queued
    (with DMABUF, buffer i importing the DMA-BUF imports[i]), then STREAMON."""
    cap.reqbufs(count, memory)
    for i in range(count):
        if imports is None:
            cap.qbuf(i)
        else:
            cap.qbuf(i, imports[i].fd, imports[i].size)
    cap.streamon()


class Camera(VirtualCamera):
    """A small camera for driver tests (the producer's VirtualCamera with
    test defaults)."""

    def __init__(self, nr_frames: int = 4, width: int = 64, height: int = 48,
                 pixelformat: int = v4l2.V4L2_PIX_FMT_YUYV, label: str = "vcam test", nonblock: bool = False):
        super().__init__(width, height, pixelformat, label=label, slots=nr_frames, nonblock=nonblock)


def foreign_dmabuf(size: int) -> DmaBuf:
    """A DMA-BUF of at least size bytes that no camera under test knows of:
    from the system's allocator, or where the kernel has none (6.1) the
    exported slot buffer of a throwaway vcam camera, which outlives it."""
    if system_allocator() is not None:
        return DmaBuf(size)
    with Control() as ctl:
        ctl.create("Foreign Memory", 64, -(-size // 64), v4l2.V4L2_PIX_FMT_GREY, nr_frames=2)
        return DmaBuf(size, fd=ctl.export(0))


def expect_errno(code: int, fn, *args, **kwargs) -> OSError:
    try:
        fn(*args, **kwargs)
    except OSError as e:
        assert e.errno == code, f"expected {errno.errorcode[code]}, got {errno.errorcode.get(e.errno, e.errno)}"
        return e
    raise AssertionError(f"expected {errno.errorcode[code]}, the call succeeded")


class ProducerThread:
    """A producer that keeps every slot queued: each slot that comes back is
    refilled at once. Frame n is filled with pattern(n); optional pacing at
    fps frames per second against CLOCK_MONOTONIC, the frame's timestamp
    being its due time."""

    def __init__(self, cam: "Camera", pattern=lambda n: n & 0xFF, fps: float | None = None,
                 length: int = 0):
        import threading

        self.cam = cam
        self.pattern = pattern
        self.fps = fps
        self.length = length
        self.queued = 0
        self.returned = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _queue(self, index: int) -> None:
        ts = 0
        if self.fps:
            due = self._start + int(self.queued * 1e9 / self.fps)
            # Until it is due: the driver refuses a timestamp in the future,
            # and a timed wait may end a little early.
            while (delay := (due - time.monotonic_ns()) / 1e9) > 0 and not self._stop.is_set():
                self._stop.wait(delay)
            ts = min(due, time.monotonic_ns())
        self.cam.fill_and_queue(index, self.pattern(self.queued), length=self.length, timestamp=ts)
        self.queued += 1

    def _run(self) -> None:
        try:
            self._start = time.monotonic_ns()
            for i in range(len(self.cam.bufs)):
                self._queue(i)
            p = select.poll()
            p.register(self.cam.ctl.fd, select.POLLIN)
            while not self._stop.is_set():
                if not p.poll(100):
                    continue
                done = self.cam.ctl.dequeue()
                self.returned.append(done.index)
                if not self._stop.is_set():
                    self._queue(done.index)
        except BaseException as e:  # reported by stop()
            self.error = e

    def start(self) -> "ProducerThread":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self.error:
            raise self.error

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --- what a leak would show in ------------------------------------------------------


def settle_caches() -> None:
    """Free what the kernel only caches, so that slab counts are objects in
    use: the dentries and inodes of the guest's 9p root file system (each
    holds a 9p fid in kmalloc-96: a test's first run of a program grew it
    by hundreds, seen with slub_debug=U's alloc_traces), and each cache's
    per-CPU slabs, whose free objects SLUB counts as active."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("2")
    for shrink in Path("/sys/kernel/slab").glob("*/shrink"):
        with contextlib.suppress(OSError):
            shrink.write_text("1")


def slab_bytes() -> tuple[int, dict[str, int]]:
    """Bytes in use in all slab caches, and the active objects of each,
    once the caches are settled."""
    settle_caches()
    total = 0
    counts = {}
    for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
        f = line.split()
        name, active, size = f[0], int(f[1]), int(f[3])
        total += active * size
        counts[name] = active
    return total, counts


def object_sizes() -> dict[str, int]:
    """Each slab cache's object size in bytes."""
    return {f[0]: int(f[3]) for f in (line.split() for line in
                                      Path("/proc/slabinfo").read_text().splitlines()[2:])}


# Objects a cache moved by without a leak, even settled: up to 334
# (kmalloc-96 over 200 cycles on 6.12; kmalloc-64 by 151 there, kmalloc-96
# by 121 after a fuzz run), as deferred frees and lazily purged vmap areas
# come and go. A leak of one object a round shows in the 1,000 cycles.
SLAB_NOISE_OBJECTS = 512


def slab_noise() -> dict[str, int]:
    """Objects a cache may still seem to grow by without a leak: a slab per
    CPU (256 objects of kmalloc-16 in one page) filled between the shrink
    and the reading by whatever runs meanwhile, and SLAB_NOISE_OBJECTS."""
    noise = {}
    for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
        f = line.split()
        noise[f[0]] = max(SLAB_NOISE_OBJECTS, int(f[4]) * os.cpu_count())
    return noise


def vmalloc_areas(unpurged: bool = False) -> int:
    """Live vmalloc/vmap areas; with UNPURGED, the lazily freed ones the
    kernel has not purged yet (listed as unpurged)."""
    return sum(1 for line in Path("/proc/vmallocinfo").read_text().splitlines()
               if ("unpurged" in line) == unpurged)


DMA_BUF_INFO = Path("/sys/kernel/debug/dma_buf/bufinfo")


def dmabuf_count() -> int:
    """DMA-BUFs alive in the whole kernel (debugfs's bufinfo, whose last
    line is "Total N objects, M bytes"); debugfs is mounted if it is not."""
    if not DMA_BUF_INFO.exists():
        subprocess.run(["mount", "-t", "debugfs", "none", "/sys/kernel/debug"], check=False)
    m = re.search(r"^Total (\d+) objects", DMA_BUF_INFO.read_text(), re.M)
    assert m, f"no total in {DMA_BUF_INFO}"
    return int(m[1])


def module_refcnt() -> int:
    """vcam's module reference count: each open control or capture file, and
    each DMA-BUF it exported, holds one."""
    return int(Path("/sys/module/vcam/refcnt").read_text())


class KernelState:
    """The kernel's state that a leak shows in, taken now (after a few
    warm-up rounds, so that caches are primed); check() then asserts it is
    back: the same video nodes, DMA-BUF count and module reference count,
    no kmalloc cache grown by more than its noise (slab_noise()) or half an
    object per round, less than 1 MiB (and 2 KiB a round) more slab and
    fewer than 100 more vmap areas. The counts are exact; a leak of one
    object per round shows in the 1,000-cycle test (tests/test_faults.py)."""

    def __init__(self):
        self.nodes = video_nodes()
        self.dmabufs = dmabuf_count()
        self.refcnt = module_refcnt()
        self.slab, self.counts = slab_bytes()
        self.vmaps = vmalloc_areas()
        self.unpurged = vmalloc_areas(unpurged=True)

    def kmalloc_grown(self, rounds: int = 0) -> dict[str, int]:
        """kmalloc caches grown by more than their noise, and by at least
        three quarters of an object per round."""
        _, counts = slab_bytes()
        noise = slab_noise()
        return {k: counts.get(k, 0) - v for k, v in self.counts.items()
                if k.startswith("kmalloc") and counts.get(k, 0) - v > max(noise[k], rounds * 3 // 4)}

    def grown_most(self, top: int = 5) -> str:
        """The caches that grew by the most bytes, to name where a total
        went (any cache, not only kmalloc)."""
        _, counts = slab_bytes()
        sizes = object_sizes()
        grown = sorted(((counts[k] - self.counts.get(k, 0)) * sizes[k], k) for k in counts)[::-1][:top]
        return ", ".join(f"{k} {b:+,} B" for b, k in grown if b > 0) or "none"

    def check(self, what: str = "", rounds: int = 0) -> str:
        """Assert that everything is back after ROUNDS rounds of the same
        work (a leak in each round is that many objects); returns one line
        of the figures."""
        # Some frees are deferred (RCU, workqueues, the last fput of a
        # killed process's files) and lag on a loaded, emulated guest: give
        # them up to 15 s to land. A leak never does.
        def back():
            return (video_nodes() == self.nodes and dmabuf_count() == self.dmabufs
                    and module_refcnt() == self.refcnt and not self.kmalloc_grown(rounds))
        with contextlib.suppress(AssertionError):  # what is still off is reported below
            wait_until(back, 15, interval=1)
        slab, _ = slab_bytes()
        vmaps = vmalloc_areas()
        grown = self.kmalloc_grown(rounds)
        line = (f"{what}: slab {self.slab} -> {slab} bytes (grown most: {self.grown_most()}); vmap areas {self.vmaps} -> {vmaps} "
                f"(unpurged {self.unpurged} -> {vmalloc_areas(unpurged=True)}); "
                f"DMA-BUFs {self.dmabufs} -> {dmabuf_count()}; vcam refcnt {self.refcnt} -> {module_refcnt()}; "
                f"video nodes {sorted(self.nodes)} -> {sorted(video_nodes())}; kmalloc caches grown: {grown}")
        print(line)
        assert video_nodes() == self.nodes, line
        assert dmabuf_count() == self.dmabufs, line
        assert module_refcnt() == self.refcnt, line
        assert vmaps - self.vmaps < 100, line
        # Lazily freed vmap areas hold slab until the kernel purges them:
        # +1.87 MB over 1,000 cycles with 4,230 of them waiting and no
        # kmalloc cache grown (6.12), so the bound grows with the rounds.
        assert slab - self.slab < (1 << 20) + rounds * 2048, line
        assert not grown, line
        return line
