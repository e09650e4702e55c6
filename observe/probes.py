"""Load vcam_probes.c with bcc, attach it where the running kernel allows,
and read its maps into a metrics.Snapshot.

Attach points are checked before attaching (kallsyms for functions, tracefs
for tracepoints); one that is missing is reported by name and the rest runs.
The vcam module may come and go while we run: `refresh()` notices a module
loaded, unloaded or reloaded (by its .text address) and attaches, detaches
or re-attaches its probes. The program is compiled once.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from producer import sysfs

from . import metrics
from .btf import BtfError, KernelBtf

PROGRAM_FILE = Path(__file__).with_name("vcam_probes.c")
TRACEFS_ROOTS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
# The vcam symbol whose address tells vb2 events on vcam's queues apart
VCAM_OPS_SYMBOL = "vcam_vb2_ops"
BPF_ERROR_KINDS = ("map_full", "unpaired")
# The histograms in struct cam (vcam_probes.c NR_HISTS, HIST_SLOTS)
NR_HISTS, HIST_SLOTS = 6, 65

# How bcc's clang must read the running kernel's headers: warnings about
# them, not about our program, kept quiet; -fms-extensions because from 6.19
# on they embed tagged structs anonymously (the kernel builds with it too)
KERNEL_HEADER_CFLAGS = ["-Wno-duplicate-decl-specifier", "-Wno-ignored-attributes", "-Wno-unknown-attributes",
                        "-fms-extensions", "-Wno-microsoft-anon-tag"]

# struct bpf_prog_info (uapi/linux/bpf.h): its size up to and with the
# recursion_misses field (5.12+), and that field's offset
PROG_INFO_SIZE, RECURSION_MISSES_OFFSET = 216, 208

# Linux capability numbers (CapEff in /proc/self/status)
CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39


class ObserveError(Exception):
    """A problem worth one clear line to the user."""


@dataclass(frozen=True)
class Probe:
    kind: str       # kprobe | kretprobe | raw_tracepoint
    target: str     # function or tracepoint name
    fn: str         # BPF function in vcam_probes.c
    module: str     # kernel module that holds the target

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.target}"


PROBES = (
    Probe("kretprobe", "vcam_device_create", "ret_device_create", "vcam"),
    Probe("kprobe", "vcam_device_free", "entry_device_free", "vcam"),
    Probe("kprobe", "vcam_out_queued", "entry_out_queued", "vcam"),
    Probe("kprobe", "vcam_frame_delivered", "entry_frame_delivered", "vcam"),
    Probe("kprobe", "vcam_out_dropped", "entry_out_dropped", "vcam"),
    Probe("kprobe", "vcam_copy", "entry_copy", "vcam"),
    Probe("kretprobe", "vcam_copy", "ret_copy", "vcam"),
    Probe("raw_tracepoint", "vb2_buf_queue", "on_vb2_buf_queue", "videobuf2_common"),
    Probe("raw_tracepoint", "vb2_buf_done", "on_vb2_buf_done", "videobuf2_common"),
    Probe("raw_tracepoint", "vb2_dqbuf", "on_vb2_dqbuf", "videobuf2_common"),
    Probe("kprobe", "vb2_core_streamon", "entry_core_streamon", "videobuf2_common"),
    Probe("kretprobe", "vb2_core_streamon", "ret_core_streamon", "videobuf2_common"),
    Probe("kprobe", "vb2_core_streamoff", "entry_core_streamoff", "videobuf2_common"),
    Probe("kretprobe", "vb2_core_streamoff", "ret_core_streamoff", "videobuf2_common"),
    Probe("kprobe", "vb2_core_queue_release", "entry_core_queue_release", "videobuf2_common"),
)
MODULES = ("vcam", "videobuf2_common")


def program_text() -> str:
    return PROGRAM_FILE.read_text()


@dataclass(frozen=True)
class Layout:
    """Where the program finds what it reads in kernel memory: the offsets
    of its struct config (vcam_probes.c), in bytes."""
    dev_queue: int      # offsetof(struct vcam_device, queue)
    dev_num: int        # offsetof(struct vcam_device, vdev) + offsetof(struct video_device, num)
    queue_ops: int      # offsetof(struct vb2_queue, ops)
    buf_index: int      # offsetof(struct vb2_buffer, index)


def _offset(btf: KernelBtf, module: str, struct: str, member: str, size: int) -> int:
    offset, got = btf.offsetof(module, struct, member)
    if got != size:
        raise BtfError(f"struct {struct} member {member} is {got} bytes in {module}'s BTF, not {size}")
    return offset


def vcam_device_offsets(btf: KernelBtf) -> tuple[int, int]:
    """offsetof(struct vcam_device, vdev) and (…, queue) from vcam's BTF."""
    return (btf.offsetof("vcam", "vcam_device", "vdev")[0], btf.offsetof("vcam", "vcam_device", "queue")[0])


def head_offsets(btf: KernelBtf) -> tuple[int, int]:
    """The same from the kernel's types alone: struct vcam_device starts
    with a struct v4l2_device, a struct video_device and a struct vb2_queue
    (driver/vcam-core.h), each at its alignment."""
    def align(n, a):
        return -(-n // a) * a
    vdev = align(btf.sizeof("videodev", "v4l2_device"), btf.alignof("videodev", "video_device"))
    return vdev, align(vdev + btf.sizeof("videodev", "video_device"), btf.alignof("videobuf2_common", "vb2_queue"))


def read_layout(root: Path | None = None) -> Layout:
    """The running kernel's layout, from its BTF (/sys/kernel/btf), read
    when vcam has appeared (videodev and videobuf2_common, which it needs,
    are loaded then too). Modules may come after the program was compiled,
    and vcam may come back from another build, so the offsets go into a
    map rather than into the program. vcam's own BTF is the truth when
    there is one; a vcam built against headers without a vmlinux (Debian's
    6.1, a DKMS build there) has none, and its head is laid out from the
    kernel's types. Raises BtfError."""
    with KernelBtf(*([root] if root else [])) as btf:
        vdev, queue = vcam_device_offsets(btf) if btf.has("vcam") else head_offsets(btf)
        return Layout(dev_queue=queue, dev_num=vdev + _offset(btf, "videodev", "video_device", "num", 2),
                      queue_ops=_offset(btf, "videobuf2_common", "vb2_queue", "ops", 8),
                      buf_index=_offset(btf, "videobuf2_common", "vb2_buffer", "index", 4))


def check_privileges() -> None:
    """Raise ObserveError unless we may load BPF and attach kprobes."""
    if os.geteuid() == 0:
        return
    caps = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                caps = int(line.split()[1], 16)
    except OSError:
        pass
    if caps & (1 << CAP_SYS_ADMIN) or (caps & (1 << CAP_BPF) and caps & (1 << CAP_PERFMON)):
        return
    raise ObserveError("needs root (or CAP_BPF and CAP_PERFMON) to load the BPF probes")


def module_identity(module: str) -> str | None:
    """Something that changes when a module is reloaded; None if not loaded."""
    base = Path("/sys/module") / module
    if not (base / "initstate").exists():
        return None
    try:
        return (base / "sections" / ".text").read_text().strip()
    except OSError:
        return "loaded"


def module_symbols(modules) -> dict[str, int]:
    """Addresses of the symbols of the given modules, from /proc/kallsyms."""
    wanted = {f"[{m}]" for m in modules}
    found = {}
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 4 and parts[3] in wanted:
                found[parts[2]] = int(parts[0], 16)
    return found


def tracepoint_exists(name: str) -> bool:
    for root in TRACEFS_ROOTS:
        if (root / "events").is_dir():
            return any((root / "events" / group / name).is_dir() for group in ("vb2",))
    return True     # no tracefs to ask: try, and report a failure


def kprobe_profile_missed(pid: int, roots=TRACEFS_ROOTS) -> dict[str, int]:
    """nmissed of this process's bcc kprobe events, by probe name, from
    tracefs kprobe_profile ("r_vcam_copy_bcc_<pid> NHIT NMISSED"). bcc makes
    return probes there (they take maxactive); its entry probes go through
    perf's kprobe PMU, which tracefs does not list."""
    suffix = f"_bcc_{pid}"
    for root in roots:
        try:
            text = (root / "kprobe_profile").read_text()
        except OSError:
            continue
        missed = {}
        for line in text.splitlines():
            words = line.split()
            if len(words) == 3 and words[0].endswith(suffix) and words[0][:2] in ("p_", "r_"):
                kind = "kprobe" if words[0][0] == "p" else "kretprobe"
                missed[f"{kind}:{words[0][2:-len(suffix)]}"] = int(words[2])
        return missed
    return {}


def remove_stale_probe_events(roots=TRACEFS_ROOTS, alive=lambda pid: Path(f"/proc/{pid}").exists(),
                              log=lambda msg: None) -> list[str]:
    """Remove the tracefs probe events that a killed exporter left behind;
    the names removed. bcc makes return probes in tracefs kprobe_events
    ("r64:kprobes/r_vcam_copy_bcc_<pid> vcam:vcam_copy") and deletes them
    when it closes; a process killed with SIGKILL never does, and each
    stays registered (disabled) until someone removes it. Only events of
    this program's probes (p_ or r_, a target of PROBES, _bcc_ and the pid
    of a process that no longer exists) are touched."""
    targets = {probe.target for probe in PROBES if probe.kind != "raw_tracepoint"}
    for root in roots:
        events = root / "kprobe_events"
        try:
            text = events.read_text()
        except OSError:
            continue
        stale = []
        for line in text.splitlines():
            words = line.split()
            if not words or ":" not in words[0] or "/" not in words[0]:
                continue
            event = words[0].split(":", 1)[1]             # kprobes/r_vcam_copy_bcc_1234
            name = event.split("/", 1)[1]
            head, sep, pid = name.rpartition("_bcc_")
            if sep and pid.isdigit() and head[:2] in ("p_", "r_") and head[2:] in targets and not alive(int(pid)):
                stale.append(event)
        removed = []
        for event in stale:
            # os.open, not open(..., "a"): Python seeks to the end of a file
            # opened for appending, which tracefs refuses (EINVAL)
            try:
                fd = os.open(events, os.O_WRONLY | os.O_APPEND)
                try:
                    os.write(fd, f"-:{event}\n".encode())
                finally:
                    os.close(fd)
                removed.append(event.split("/", 1)[1])
            except OSError as e:
                log(f"cannot remove the stale probe event {event}: {e.strerror}")
        return removed
    return []


def prog_recursion_misses(fd: int) -> int:
    """Times the kernel skipped a BPF program because another one was
    running on that CPU (bpf_prog_info.recursion_misses); 0 if unknown."""
    try:
        from bcc.libbcc import lib
    except ImportError:
        return 0
    info = (ctypes.c_uint8 * PROG_INFO_SIZE)()
    size = ctypes.c_uint32(PROG_INFO_SIZE)
    if lib.bpf_obj_get_info(fd, ctypes.byref(info), ctypes.byref(size)) != 0 or size.value < PROG_INFO_SIZE:
        return 0
    return int.from_bytes(bytes(info[RECURSION_MISSES_OFFSET:PROG_INFO_SIZE]), "little")


def cam_histograms(cam) -> dict[int, metrics.Histogram]:
    """The histograms kept in a camera's BPF entry: flat slot counts
    (kind * HIST_SLOTS + slot) and a sum per kind."""
    hists = {}
    for kind in range(NR_HISTS):
        counts = cam.hist[kind * HIST_SLOTS:(kind + 1) * HIST_SLOTS]
        hists[kind] = metrics.Histogram({slot: n for slot, n in enumerate(counts) if n}, cam.hist_sum[kind])
    return hists


class Probes:
    """The compiled program and its attachments. Thread-safe."""

    def __init__(self, log=None, bpf_factory=None, symbols=module_symbols, identity=module_identity,
                 layout=read_layout):
        self._symbols, self._module_identity, self._layout = symbols, identity, layout
        self.log = log or (lambda msg: print(f"vcam-observe: {msg}", file=sys.stderr))
        self._lock = threading.Lock()
        self._attached: dict[Probe, bool] = {p: False for p in PROBES}
        self._usable: set[Probe] = set()     # attached when their module last appeared
        self._reported: set[tuple[Probe, str]] = set()
        self._identity: dict[str, str | None] = {m: None for m in MODULES}
        self._started = False
        try:
            if bpf_factory is None:
                from bcc import BPF as bpf_factory
        except ImportError:
            raise ObserveError("bcc is not importable: install python3-bpfcc and use a venv with system site packages")
        check_privileges()
        stale = remove_stale_probe_events(log=self.log)
        if stale:
            self.log(f"removed {len(stale)} probe events that a killed exporter left behind")
        try:
            self.bpf = bpf_factory(text=program_text().encode(), cflags=KERNEL_HEADER_CFLAGS)
        except Exception as e:  # bcc raises plain Exception on compile/load failure
            raise ObserveError(f"cannot load the BPF program: {e}") from None

    # -- attaching -------------------------------------------------------

    def _report(self, probe: Probe, why: str) -> None:
        if (probe, why) not in self._reported:
            self._reported.add((probe, why))
            self.log(f"probe {probe.name}: {why}; the other probes still run")

    def _attach(self, probe: Probe, symbols: dict[str, int]) -> None:
        if probe.kind == "raw_tracepoint":
            if not tracepoint_exists(probe.target):
                self._report(probe, "tracepoint not found in the running kernel")
                return
        elif probe.target not in symbols:
            self._report(probe, f"symbol {probe.target} not found in module {probe.module}")
            return
        try:
            if probe.kind == "kprobe":
                self.bpf.attach_kprobe(event=probe.target.encode(), fn_name=probe.fn.encode())
            elif probe.kind == "kretprobe":
                self.bpf.attach_kretprobe(event=probe.target.encode(), fn_name=probe.fn.encode(), maxactive=64)
            else:
                self.bpf.attach_raw_tracepoint(tp=probe.target.encode(), fn_name=probe.fn.encode())
        except Exception as e:
            self._report(probe, f"cannot attach ({e})")
            return
        self._attached[probe] = True

    def _detach(self, probe: Probe) -> None:
        if not self._attached[probe]:
            return
        try:
            if probe.kind == "kprobe":
                self.bpf.detach_kprobe(event=probe.target.encode(), fn_name=probe.fn.encode())
            elif probe.kind == "kretprobe":
                self.bpf.detach_kretprobe(event=probe.target.encode(), fn_name=probe.fn.encode())
            else:
                self.bpf.detach_raw_tracepoint(tp=probe.target.encode())
        except Exception as e:
            self.log(f"probe {probe.name}: detach failed ({e})")
        self._attached[probe] = False

    def refresh(self) -> None:
        """Follow modules being loaded, unloaded or reloaded."""
        with self._lock:
            changed = [m for m in MODULES if self._module_identity(m) != self._identity[m]]
            if not self._started:
                self._started = True
                for m in MODULES:
                    if m not in changed:
                        self.log(f"module {m} is not loaded; its probes attach when it appears")
            if not changed:
                return
            for probe in PROBES:
                if probe.module in changed:
                    self._detach(probe)
            if "vcam" in changed:
                # Nothing of an unloaded module's cameras survives
                self.bpf["config"][0] = self.bpf["config"].Leaf()
                # (`calls` is task storage: each thread's record is
                # overwritten by its next entry probe, freed with the thread)
                self.bpf["cams"].clear()
            loaded = [m for m in changed if self._module_identity(m) is not None]
            symbols = self._symbols(loaded) if loaded else {}
            if "vcam" in loaded:
                self._configure(symbols)
            for probe in PROBES:
                if probe.module in loaded:
                    self._attach(probe, symbols)
            self._usable = {p for p in PROBES if self._attached[p] or (p in self._usable and p.module not in changed)}
            for m in changed:
                self._identity[m] = self._module_identity(m)

    def _configure(self, symbols: dict[str, int]) -> None:
        """Tell the program where vcam's ops are and where to read (its
        struct config); without either, vb2 events are not counted."""
        ops = symbols.get(VCAM_OPS_SYMBOL)
        if ops is None:
            self.log(f"symbol {VCAM_OPS_SYMBOL} not found: videobuf2 events cannot be told apart, "
                     "capture-side metrics stay empty")
            ops = 0
        try:
            layout = self._layout()
        except BtfError as e:
            self.log(f"no layout of vcam's structures ({e}): videobuf2 events cannot be told apart, "
                     "capture-side metrics stay empty")
            return
        self.bpf["config"][0] = self.bpf["config"].Leaf(ops, layout.dev_queue, layout.dev_num,
                                                        layout.queue_ops, layout.buf_index)

    def select(self, wanted=None) -> None:
        """Attach only the probes named in `wanted` (all when None) and
        detach the rest, e.g. to measure what a group of probes costs."""
        with self._lock:
            for probe in PROBES:
                if wanted is None or probe.name in wanted:
                    if probe in self._usable and not self._attached[probe]:
                        self._attach(probe, {probe.target: 0})
                else:
                    self._detach(probe)

    def _missed(self) -> dict[str, int]:
        """Per attached probe, hits whose program did not run: the kernel's
        nmissed where tracefs shows it, plus the program's recursion misses."""
        nmissed = kprobe_profile_missed(os.getpid())
        funcs = getattr(self.bpf, "funcs", {})
        missed = {}
        for probe, ok in self._attached.items():
            if ok:
                fn = funcs.get(probe.fn.encode())
                missed[probe.name] = nmissed.get(probe.name, 0) + (prog_recursion_misses(fn.fd) if fn else 0)
        return missed

    def attached(self) -> dict[str, bool]:
        with self._lock:
            return {p.name: ok for p, ok in self._attached.items()}

    # -- reading ---------------------------------------------------------

    def snapshot(self) -> metrics.Snapshot:
        """The driver's counters and the maps, for the cameras in sysfs now."""
        cameras = sysfs.cameras()
        with self._lock:
            # An entry is freed when its camera's memory is; for each N the
            # newest entry is the camera there now
            entries = {}
            for cam in self.bpf["cams"].values():
                if cam.dev and cam.dev_nr in cameras and (
                        cam.dev_nr not in entries or cam.id > entries[cam.dev_nr].id):
                    entries[cam.dev_nr] = cam
            errors = {kind: self.bpf["errors"][i].value for i, kind in enumerate(BPF_ERROR_KINDS)}
            attached = {p.name: ok for p, ok in self._attached.items()}
            missed = self._missed()

        samples = []
        for nr, files in cameras.items():
            n = files.counters
            sample = metrics.CameraSample(
                device_nr=nr, card=files.card, slots=sum(files.slots.values()),
                frames_queued=n["frames_queued"], frames_dequeued=n["frames_dequeued"],
                frames_zero_copy=n["frames_zero_copy"], frames_copied=n["frames_copied"],
                frames_errored=n["frames_errored"], frames_dropped=n["frames_dropped"],
                bytes_copied=n["bytes_copied"],
                output_depth=files.output_depth, capture_depth=n["capture_queued"])
            c = entries.get(nr)
            if c is not None:
                sample.streaming = bool(c.streaming)
                sample.producer = c.producer_comm.decode(errors="replace")
                sample.consumer = c.consumer_comm.decode(errors="replace")
                sample.histograms = cam_histograms(c)
            samples.append(sample)
        return metrics.Snapshot(cameras=samples, probes=attached, bpf_errors=errors, probes_missed=missed)

    def close(self) -> None:
        with self._lock:
            for probe in PROBES:
                self._detach(probe)
            self.bpf.cleanup()
