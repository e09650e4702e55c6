"""Limits: cameras at once (global, per user), the memory one camera may
pin, the errnos that say which one was reached, the CLI's one line, and the
memory cgroup that pays for a camera's buffers. The module is reloaded with
parameters; every test leaves it loaded with its defaults."""

import contextlib
import ctypes
import errno
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from producer import v4l2
from producer.capture import Capture
from producer.control import Control
from producer.ioctl import IOWR, ioctl
from producer_procs import run_cli
from vcam_helpers import Camera, ProducerThread, expect_errno, start_capture, wait_until

pytestmark = pytest.mark.guest
# also in the kernel tier of the lab's other kernels (make test): every test
# but the CLI's wording, which is the same Python on any kernel
every_kernel = pytest.mark.every_kernel

MODULE = Path(__file__).resolve().parent.parent / "driver" / "vcam.ko"
PARAMS = Path("/sys/module/vcam/parameters")
DEFAULTS = {"max_cameras": "64", "max_cameras_per_user": "16", "max_camera_mb": "1024"}
YUYV = v4l2.V4L2_PIX_FMT_YUYV
PAGE = os.sysconf("SC_PAGE_SIZE")
OTHER_UID = 4242  # needs no passwd entry


def load(**params) -> subprocess.CompletedProcess:
    """vcam reloaded with PARAMS (nothing may hold it); the insmod's result."""
    if Path("/sys/module/vcam").exists():
        r = subprocess.run(["rmmod", "vcam"], capture_output=True, text=True)
        assert r.returncode == 0, f"rmmod vcam: {r.stderr}"
    r = subprocess.run(["insmod", str(MODULE), *(f"{k}={v}" for k, v in params.items())],
                       capture_output=True, text=True)
    if r.returncode == 0:
        wait_until(lambda: os.path.exists("/dev/vcam"), 5, "/dev/vcam after insmod")
    return r


@pytest.fixture
def module():
    """load() for the test; the default module again afterwards."""
    yield load
    if Path("/sys/module/vcam").exists():
        subprocess.run(["rmmod", "vcam"], check=True)
    subprocess.run(["insmod", str(MODULE)], check=True)
    wait_until(lambda: os.path.exists("/dev/vcam"), 5, "/dev/vcam after insmod")


def loaded(load_fn, **params) -> None:
    r = load_fn(**params)
    assert r.returncode == 0, r.stderr


def create(label: str = "Limits", width: int = 64, height: int = 48, nr_frames: int = 2) -> Control:
    ctl = Control()
    try:
        ctl.create(label, width, height, YUYV, nr_frames=nr_frames)
    except BaseException:
        ctl.close()
        raise
    return ctl


def refused(code: int, **kwargs) -> None:
    """CREATE on a fresh control file fails with CODE and leaves no node."""
    before = sorted(os.listdir("/sys/class/video4linux"))
    with Control() as ctl:
        expect_errno(code, ctl.create, kwargs.pop("label", "Refused"), kwargs.pop("width", 64),
                     kwargs.pop("height", 48), YUYV, nr_frames=kwargs.pop("nr_frames", 2))
    assert sorted(os.listdir("/sys/class/video4linux")) == before


class Child:
    """A forked process, with another uid or in another cgroup, that opens
    /dev/vcam and creates cameras when told to (one command, one answer)."""

    def __init__(self, uid: int | None = None, cgroup: Path | None = None):
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover (the child)
            status = 1
            try:
                # the parent's other files (its cameras' control files) are not the child's to hold
                for fd in map(int, os.listdir("/proc/self/fd")):
                    if fd > 2 and fd not in (cmd_r, res_w):
                        with contextlib.suppress(OSError):
                            os.close(fd)
                if cgroup is not None:
                    (cgroup / "cgroup.procs").write_text(str(os.getpid()))
                if uid is not None:
                    os.setgroups([])
                    os.setresgid(uid, uid, uid)
                    os.setresuid(uid, uid, uid)
                self._serve(os.fdopen(cmd_r), res_w)
                status = 0
            finally:
                os._exit(status)
        os.close(cmd_r)
        os.close(res_w)
        self._cmd = os.fdopen(cmd_w, "w")
        self._res = os.fdopen(res_r)
        assert self.do("ping") == 0

    @staticmethod
    def _serve(commands, res_w: int) -> None:
        ctls, fds = [], []
        for line in iter(commands.readline, ""):
            word, *args = line.split()
            answer = 0
            try:
                if word == "create":  # create [WIDTH HEIGHT SLOTS EXPORT]
                    width, height, slots, export = map(int, args or (64, 48, 2, 0))
                    ctls.append(create("Child", width, height, slots))
                    fds += [ctls[-1].export(i) for i in range(slots) if export]
                elif word == "close":
                    for fd in fds:
                        os.close(fd)
                    for ctl in ctls:
                        ctl.close()
                    ctls, fds = [], []
            except OSError as e:
                answer = e.errno
            os.write(res_w, f"{answer}\n".encode())

    def do(self, command: str) -> int:
        """0, or the errno the child's command failed with."""
        self._cmd.write(command + "\n")
        self._cmd.flush()
        return int(self._res.readline())

    def close(self) -> None:
        self._cmd.close()
        _, status = os.waitpid(self.pid, 0)
        self._res.close()
        assert os.waitstatus_to_exitcode(status) == 0


# ---------------------------------------------------------------------------
# Parameters


@every_kernel
def test_parameters_default_bounded_and_writable_by_root(module):
    for name, value in DEFAULTS.items():
        assert (PARAMS / name).read_text().strip() == value
        assert (PARAMS / name).stat().st_mode & 0o777 == 0o644
    # out of range or not a number: refused, the value kept
    for name, bad in (("max_cameras", "0"), ("max_cameras", "257"), ("max_cameras_per_user", "-1"),
                      ("max_camera_mb", "lots"), ("max_camera_mb", str(1 << 20 | 1))):
        with pytest.raises(OSError) as e:
            (PARAMS / name).write_text(bad)
        assert e.value.errno == errno.EINVAL
        assert (PARAMS / name).read_text().strip() == DEFAULTS[name]
    # a bad value at load time: no module
    r = module(max_cameras=0)
    assert r.returncode != 0 and not os.path.exists("/dev/vcam")
    loaded(module, max_cameras=3, max_cameras_per_user=2, max_camera_mb=8)
    assert [(PARAMS / n).read_text().strip() for n in DEFAULTS] == ["3", "2", "8"]


@every_kernel
def test_lowering_a_limit_keeps_existing_cameras(module):
    loaded(module)
    ctls = [create() for _ in range(3)]
    try:
        (PARAMS / "max_cameras").write_text("2")
        assert all(os.path.exists(c.video_path) for c in ctls)
        refused(errno.ENOSPC)
        ctls.pop().close()
        refused(errno.ENOSPC)  # 2 cameras, limit 2
        ctls.pop().close()
        ctls.append(create())
    finally:
        for c in ctls:
            c.close()


# ---------------------------------------------------------------------------
# Cameras at once


def create_when_shares_are_back(count, seconds=10):
    """COUNT cameras, as soon as the limit lets them be made. A camera's
    share comes back when it is freed: after its last reference, which a
    kernel worker may drop a moment after the last close (a streamed
    camera's DMA-BUFs); so ENOSPC is retried until SECONDS pass."""
    made, deadline = [], time.monotonic() + seconds
    while len(made) < count:
        try:
            made.append(create())
        except OSError as e:
            if e.errno != errno.ENOSPC or time.monotonic() > deadline:
                for c in made:
                    c.close()
                raise
            time.sleep(0.1)
    return made


def child_create_when_shares_are_back(child, seconds=10):
    """The errno of CHILD's create, ENOSPC retried as in create_when_shares_are_back."""
    deadline = time.monotonic() + seconds
    while (err := child.do("create")) == errno.ENOSPC and time.monotonic() < deadline:
        time.sleep(0.1)
    return err


@every_kernel
def test_global_limit_refuses_with_enospc_and_streaming_goes_on(module):
    loaded(module, max_cameras=3)
    cam = Camera(nr_frames=3)
    others = [create(), create()]
    try:
        with Capture(cam.video) as cap, ProducerThread(cam):
            start_capture(cap, 3)
            for _ in range(3):
                cap.qbuf(cap.dqbuf().index)
            refused(errno.ENOSPC)
            refused(errno.ENOSPC, nr_frames=32, width=1920, height=1080)
            # the streaming camera goes on, in sequence
            seqs = []
            for _ in range(5):
                b = cap.dqbuf()
                assert not b.flags & v4l2.V4L2_BUF_FLAG_ERROR
                seqs.append(b.sequence)
                cap.qbuf(b.index)
            assert seqs == list(range(seqs[0], seqs[0] + 5))
            cap.streamoff()
        others.pop().close()
        others.append(create())  # the closed camera's share came back
        refused(errno.ENOSPC)
    finally:
        for c in others:
            c.close()
        cam.close()
    # all shares back, exactly once: three again, not four
    again = create_when_shares_are_back(3)
    try:
        refused(errno.ENOSPC)
    finally:
        for c in again:
            c.close()


@every_kernel
def test_per_user_limit_counts_each_uid_apart(module):
    loaded(module, max_cameras=3, max_cameras_per_user=2)
    os.chmod("/dev/vcam", 0o666)  # the other user opens it too (reset by the reload)
    mine = [create(), create()]
    other = Child(uid=OTHER_UID)
    try:
        refused(errno.EDQUOT)  # root has 2 of 2
        assert other.do("create") == 0  # 3 of 3 machine-wide
        assert other.do("create") == errno.ENOSPC  # its own share is not used up
        refused(errno.EDQUOT)  # both full: the user's own limit is named
        mine.pop().close()
        assert child_create_when_shares_are_back(other) == 0  # 2 of 2 for it, 3 of 3 machine-wide
        assert other.do("create") == errno.EDQUOT
        refused(errno.ENOSPC)  # root has 1 of 2
        assert other.do("close") == 0
        mine += create_when_shares_are_back(1)  # the other user's shares came back
        assert other.do("create") == 0
    finally:
        other.close()
        for c in mine:
            c.close()


@every_kernel
def test_camera_released_when_its_last_user_is_gone(module):
    """The share comes back when the camera is freed: its video minor too."""
    loaded(module, max_cameras=1)
    ctl = create()
    cap = Capture(ctl.video_path)
    try:
        cap.reqbufs(2)
        ctl.close()
        assert not os.path.exists(ctl.video_path)
        refused(errno.ENOSPC)  # the consumer still holds the camera
    finally:
        cap.close()
        ctl.close()
    again = create()
    try:
        refused(errno.ENOSPC)
    finally:
        again.close()


# ---------------------------------------------------------------------------
# Memory one camera may pin


def buf_size(frame: int) -> int:
    return -(-frame // PAGE) * PAGE


@every_kernel
def test_memory_limit_at_create_is_efbig(module):
    loaded(module, max_camera_mb=8)
    frame = buf_size(640 * 480 * 2)
    fit = (8 << 20) // frame - 2  # slots, with 2 capture buffers beside them
    refused(errno.EFBIG, width=640, height=480, nr_frames=fit + 1)
    refused(errno.EFBIG, width=1920, height=1080, nr_frames=2)
    # the spec's own errors come first
    refused(errno.E2BIG, width=1920, height=1080, nr_frames=33)
    with create("Just Fits", 640, 480, fit) as ctl:
        # every slot's buffer can be made: they were counted at CREATE
        fds = [ctl.export(i) for i in range(fit)]
        for fd in fds:
            os.close(fd)


class v4l2_create_buffers(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("count", ctypes.c_uint32),
        ("memory", ctypes.c_uint32),
        ("format", v4l2.v4l2_format),
        ("capabilities", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 6),
    ]


VIDIOC_CREATE_BUFS = IOWR("V", 92, v4l2_create_buffers)


def create_bufs(fd: int, count: int, sizeimage: int = 0) -> int:
    req = v4l2_create_buffers(count=count, memory=v4l2.V4L2_MEMORY_MMAP, format=v4l2.g_fmt(fd))
    if sizeimage:
        req.format.fmt.pix.sizeimage = sizeimage
    return ioctl(fd, VIDIOC_CREATE_BUFS, req).count


def reqbufs(cap: Capture, count: int, memory: int = v4l2.V4L2_MEMORY_MMAP) -> int:
    """REQBUFS once the old buffers are unmapped (vb2 frees no mapped buffer)."""
    for m in cap.maps:
        m.close()
    cap.maps = []
    return cap.reqbufs(count, memory)


@every_kernel
def test_memory_limit_caps_mmap_capture_buffers(module):
    assert ctypes.sizeof(v4l2_create_buffers) == 256
    loaded(module, max_camera_mb=8)
    frame = buf_size(640 * 480 * 2)
    room = ((8 << 20) - 4 * frame) // frame  # capture buffers beside 4 slots
    with create("Capture Budget", 640, 480, 4) as ctl, Capture(ctl.video_path) as cap:
        assert room < 16
        assert reqbufs(cap, 16) == room  # fewer than asked: what fits
        assert reqbufs(cap, 2) == 2
        assert create_bufs(cap.fd, 16) == room - 2  # beside the 2 there are
        expect_errno(errno.ENOMEM, create_bufs, cap.fd, 1)  # not even one more
        assert reqbufs(cap, 0) == 0
        expect_errno(errno.ENOMEM, create_bufs, cap.fd, 1, 8 << 20)  # one too big alone
        # REQBUFS frees the old buffers first: all of the room again
        assert create_bufs(cap.fd, 1) == 1
        assert reqbufs(cap, 16) == room
        assert reqbufs(cap, 0) == 0
        # someone else's memory is not counted
        assert reqbufs(cap, 16, v4l2.V4L2_MEMORY_USERPTR) == 16
        assert reqbufs(cap, 0, v4l2.V4L2_MEMORY_USERPTR) == 0


@every_kernel
def test_capture_buffers_within_the_limit_stream(module):
    loaded(module, max_camera_mb=8)
    cam = Camera(nr_frames=4, width=640, height=480)
    try:
        with Capture(cam.video) as cap, ProducerThread(cam):
            n = cap.reqbufs(32)
            assert 2 <= n < 32
            for i in range(n):
                cap.qbuf(i)
            cap.streamon()
            for _ in range(2 * n):
                b = cap.dqbuf()
                assert not b.flags & v4l2.V4L2_BUF_FLAG_ERROR
                cap.qbuf(b.index)
            cap.streamoff()
    finally:
        cam.close()


# ---------------------------------------------------------------------------
# Memory cgroup


def cgroup2_root() -> tuple[Path, bool]:
    """Where cgroup v2 is mounted (mounted here if it is not); whether this mounted it."""
    with open("/proc/self/mounts") as f:
        for line in f:
            _, where, fstype, *_ = line.split()
            if fstype == "cgroup2":
                return Path(where), False
    where = Path(tempfile.mkdtemp(prefix="vcam-cgroup-"))
    subprocess.run(["mount", "-t", "cgroup2", "none", str(where)], check=True)
    return where, True


@every_kernel
def test_slot_buffers_are_charged_to_the_creators_memory_cgroup(module):
    loaded(module)
    root, mounted = cgroup2_root()
    group = root / f"vcam-limits-{os.getpid()}"
    child = None
    try:
        assert "memory" in (root / "cgroup.controllers").read_text().split()
        (root / "cgroup.subtree_control").write_text("+memory")
        group.mkdir()
        child = Child(cgroup=group)
        current = lambda: int((group / "memory.current").read_text())  # noqa: E731
        slots, frame = 8, buf_size(1280 * 720 * 2)
        before = current()
        assert child.do(f"create 1280 720 {slots} 1") == 0
        charged = current() - before
        assert charged >= slots * frame, f"{charged} bytes charged for {slots} slot buffers of {frame}"
        assert child.do("close") == 0
        wait_until(lambda: current() - before < frame, 10, "the slot buffers uncharged after close")
    finally:
        if child:
            child.close()
        if group.exists():
            group.rmdir()
        if mounted:
            subprocess.run(["umount", str(root)], check=True)
            root.rmdir()


# ---------------------------------------------------------------------------
# The CLI's one line


@pytest.mark.parametrize("params, args, limit", [
    ({"max_cameras": 1}, [], "max_cameras"),
    ({"max_cameras_per_user": 1}, [], "max_cameras_per_user"),
    ({"max_camera_mb": 1}, ["--size", "640x480", "--slots", "4"], "max_camera_mb"),
])
def test_cli_names_the_limit_and_how_to_raise_it(module, params, args, limit):
    loaded(module, **params)
    held = create() if limit != "max_camera_mb" else None
    try:
        r = run_cli(["run", "--frames", "1", "--fps", "0", "--slot-memory", "driver", *args], timeout=120)
    finally:
        if held:
            held.close()
    assert r.returncode == 1, r
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    value = params[limit]
    assert lines[0].startswith("vcam-producer run: ")
    assert f" {value} " in lines[0] and f"({limit})" in lines[0]
    assert f"echo N > /sys/module/vcam/parameters/{limit}" in lines[0]
    assert f"modprobe vcam {limit}=N" in lines[0]
    assert "Traceback" not in r.stderr
