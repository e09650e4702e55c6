"""The control node /dev/vcam: every rule of the spec, with its errno."""

import contextlib
import ctypes
import errno
import os
import select
import signal
import threading
import time
from pathlib import Path

import pytest

from producer import uapi, v4l2
from producer.control import Control
from producer.ioctl import IOWR, ioctl
from producer.uapi import VcamIoctl
from vcam_helpers import Capture, Camera, expect_errno, sleeping_in, wait_blocked, wait_until

# every_kernel: also in the kernel tier of the lab's other kernels (make test)
pytestmark = [pytest.mark.guest, pytest.mark.every_kernel]

YUYV = v4l2.V4L2_PIX_FMT_YUYV


@pytest.fixture
def ctl():
    c = Control()
    yield c
    c.close()


def create(ctl, **kw):
    args = dict(label="Test Cam", width=64, height=48, pixelformat=YUYV, nr_frames=4)
    args.update(kw)
    return ctl.create(**args)


# --- CREATE ---------------------------------------------------------------


def test_create_reports_device_and_frames(ctl):
    req = create(ctl, nr_frames=3)
    assert os.path.exists(f"/dev/video{req.device_nr}")
    assert [(f.index, f.length) for f in ctl.frames] == [(0, 64 * 48 * 2), (1, 64 * 48 * 2), (2, 64 * 48 * 2)]


def test_double_create_is_ebusy(ctl):
    create(ctl)
    expect_errno(errno.EBUSY, create, ctl)


def test_defaults_640x480_srgb(ctl):
    create(ctl, width=0, height=0)
    with Capture(ctl.video_path) as cap:
        pix = cap.fmt()
        assert (pix.width, pix.height, pix.bytesperline, pix.sizeimage) == (640, 480, 1280, 640 * 480 * 2)
        assert pix.colorspace == v4l2.V4L2_COLORSPACE_SRGB


@pytest.mark.parametrize(
    "field, value, code",
    [
        ("reserved", 1, errno.EINVAL),
        ("device_nr", 3, errno.EINVAL),
        ("nr_frames", 0, errno.EINVAL),
        ("nr_frames", 1, errno.EINVAL),
        ("nr_frames", 33, errno.E2BIG),
        ("frames", 0, errno.EINVAL),
        ("frames", 8, errno.EFAULT),
        ("device_name", 0, errno.EFAULT),
        ("device_name", 8, errno.EFAULT),
    ],
)
def test_create_validation(ctl, field, value, code):
    expect_errno(code, create, ctl, **{field: value})
    # nothing half-done: the file can still create its camera
    create(ctl)


def test_nr_frames_limits_accepted(ctl):
    create(ctl, nr_frames=32)
    assert len(ctl.frames) == 32
    with Control() as other:
        create(other, nr_frames=2)


def test_create_bad_struct_pointer(ctl):
    expect_errno(errno.EFAULT, ioctl, ctl.fd, VcamIoctl.VCAM_IOC_CREATE, 8)


@pytest.mark.parametrize(
    "label, code",
    [
        (b"", errno.EINVAL),
        (b" Cam", errno.EINVAL),
        (b"Cam ", errno.EINVAL),
        (b"Cam-1", errno.EINVAL),
        (b"Cam_1", errno.EINVAL),
        (b"Caf\xc3\xa9", errno.EINVAL),
        (b"Cam\xe9ra", errno.EINVAL),  # Latin-1: a letter to the kernel's isalnum()
        (b"Tab\tCam", errno.EINVAL),
        (b"A" * 32, errno.E2BIG),
        (b"A" * 100, errno.E2BIG),
    ],
)
def test_bad_labels(ctl, label, code):
    expect_errno(code, create, ctl, label=label)


@pytest.mark.parametrize("label", [b"A", b"7", b"My Camera 2", b"A" * 31])
def test_good_labels_are_the_card(ctl, label):
    create(ctl, label=label)
    with Capture(ctl.video_path) as cap:
        assert v4l2.querycap(cap.fd).card == label


@pytest.mark.parametrize(
    "kw, code",
    [
        (dict(pixelformat=0), errno.EINVAL),
        (dict(pixelformat=v4l2.fourcc("H264")), errno.EINVAL),
        (dict(width=1), errno.EINVAL),
        (dict(height=1), errno.EINVAL),
        (dict(width=8194), errno.EINVAL),
        (dict(height=8193), errno.EINVAL),
        (dict(width=10000, height=10000), errno.EINVAL),
        (dict(width=65), errno.EINVAL),  # YUYV needs an even width
        (dict(pixelformat=v4l2.V4L2_PIX_FMT_NV12, height=47), errno.EINVAL),
        (dict(colorspace=4), errno.EINVAL),  # V4L2_COLORSPACE_BT878, obsolete
        (dict(colorspace=99), errno.EINVAL),
        (dict(bytesperline=64 * 2 + 2), errno.EINVAL),
        (dict(bytesperline=64), errno.EINVAL),
        (dict(pixelformat=v4l2.V4L2_PIX_FMT_MJPEG, bytesperline=64), errno.EINVAL),
        (dict(width=65536, height=65536), errno.EOVERFLOW),
        (dict(width=0xFFFFFFFF, height=2), errno.EOVERFLOW),
        (dict(width=0x80000000, height=0x80000000), errno.EOVERFLOW),  # 64-bit bits wrap
    ],
)
def test_strict_format(ctl, kw, code):
    expect_errno(code, create, ctl, **kw)


@pytest.mark.parametrize(
    "fmt, width, height, bpl, size",
    [
        ("YUYV", 64, 48, 128, 64 * 48 * 2),
        ("UYVY", 64, 48, 128, 64 * 48 * 2),
        ("NV12", 64, 48, 64, 64 * 48 * 3 // 2),
        ("YU12", 64, 48, 64, 64 * 48 * 3 // 2),
        ("MJPG", 64, 48, 0, 64 * 48 * 4),
        ("RGB3", 63, 47, 63 * 3, 63 * 47 * 3),
        ("BGR3", 64, 48, 192, 64 * 48 * 3),
        ("BX24", 64, 48, 256, 64 * 48 * 4),
        ("GREY", 63, 47, 63, 63 * 47),
        ("YUYV", 8192, 8192, 16384, 8192 * 8192 * 2),
        ("YUYV", 2, 2, 4, 8),
    ],
)
def test_formats_strides_and_sizes(ctl, fmt, width, height, bpl, size):
    create(ctl, width=width, height=height, pixelformat=v4l2.fourcc(fmt), bytesperline=bpl, nr_frames=2)
    assert ctl.frame_size == size
    with Capture(ctl.video_path) as cap:
        pix = cap.fmt()
        assert (v4l2.fourcc_str(pix.pixelformat), pix.width, pix.height) == (fmt, width, height)
        assert (pix.bytesperline, pix.sizeimage) == (bpl, size)


def test_explicit_colorspace_kept(ctl):
    create(ctl, colorspace=v4l2.V4L2_COLORSPACE_REC709)
    with Capture(ctl.video_path) as cap:
        assert cap.fmt().colorspace == v4l2.V4L2_COLORSPACE_REC709


# --- ioctls before CREATE, unknown ioctls ---------------------------------


@pytest.mark.parametrize("cmd", ["VCAM_IOC_QUEUE", "VCAM_IOC_DEQUEUE", "VCAM_IOC_STATUS", "VCAM_IOC_WAIT"])
def test_enotty_before_create(ctl, cmd):
    expect_errno(errno.ENOTTY, ioctl, ctl.fd, VcamIoctl[cmd], ctypes.create_string_buffer(64))


@pytest.mark.parametrize("created", [False, True])
def test_unknown_ioctl_enotty(ctl, created):
    if created:
        create(ctl)
    buf = ctypes.create_string_buffer(64)
    expect_errno(errno.ENOTTY, ioctl, ctl.fd, IOWR("v", 0x3F, uapi.vcam_ioc_wait), buf)
    expect_errno(errno.ENOTTY, ioctl, ctl.fd, IOWR("V", 0, uapi.vcam_ioc_wait), buf)
    # right number, wrong size
    expect_errno(errno.ENOTTY, ioctl, ctl.fd, IOWR("v", 0x03, ctypes.c_uint32), buf)


# --- DEQUEUE blocking / non-blocking, poll --------------------------------


def test_nonblocking_dequeue_eagain():
    with Control(nonblock=True) as ctl:
        create(ctl)
        expect_errno(errno.EAGAIN, ctl.dequeue)


class Interrupted(Exception):
    pass


@contextlib.contextmanager
def signal_once_blocked(fd: int, request: int):
    """Deliver SIGALRM to this thread once it sleeps in ioctl(fd, request)
    (not on a timer, which may fire before the call blocks); the blocked
    call must end in Interrupted."""
    def handler(signum, frame):
        raise Interrupted()

    me, ident = threading.get_native_id(), threading.get_ident()
    done, fired = threading.Event(), threading.Event()

    def fire():
        try:
            wait_until(lambda: done.is_set() or sleeping_in(me, "ioctl", fd, request), 60,
                       f"the call to block in ioctl {request:#x}", interval=0.01)
        except AssertionError:
            return
        if not done.is_set():
            fired.set()
            signal.pthread_kill(ident, signal.SIGALRM)

    old = signal.signal(signal.SIGALRM, handler)
    killer = threading.Thread(target=fire)
    try:
        killer.start()
        with pytest.raises(Interrupted):
            yield
    finally:
        done.set()
        killer.join(10)
        signal.signal(signal.SIGALRM, old)
    assert fired.is_set()


def test_blocking_dequeue_interrupted_by_signal(ctl):
    create(ctl)
    with signal_once_blocked(ctl.fd, VcamIoctl.VCAM_IOC_DEQUEUE):
        ctl.dequeue()
    # still usable
    assert ctl.status() == uapi.VCAM_STATUS_IDLE


def test_poll_before_create_is_pollerr(ctl):
    p = select.poll()
    p.register(ctl.fd, select.POLLIN | select.POLLOUT)
    assert p.poll(0) == [(ctl.fd, select.POLLERR)]


def test_epoll_set_up_before_create_wakes_after_it(ctl):
    """The wait queue exists from open on: CREATE wakes a waiter that
    registered before it, and so does a slot coming back later."""
    ep = select.epoll()
    try:
        ep.register(ctl.fd, select.EPOLLIN | select.EPOLLOUT | select.EPOLLET)
        assert ep.poll(0) == [(ctl.fd, select.EPOLLERR)]
        assert ep.poll(0) == []          # edge-triggered: reported once
        woken = {}

        def waiter():
            woken["events"] = ep.poll(30)

        t = threading.Thread(target=waiter)
        t.start()
        wait_until(lambda: sleeping_in(t.native_id, "epoll_wait"), 30, "epoll_wait to block")
        create(ctl, nr_frames=2)
        t.join(30)
        assert woken["events"] == [(ctl.fd, select.EPOLLOUT)]    # the slots are free
        # A frame consumed: the slot is done, EPOLLIN with no new registration.
        ctl.queue_driver_buffer(0)
        with Capture(ctl.video_path) as cap:
            cap.reqbufs(1)
            cap.qbuf(0)
            cap.streamon()
            # Each wake-up is an edge (STREAMON's comes first); one brings EPOLLIN
            wait_until(lambda: any(ev & select.EPOLLIN for _, ev in ep.poll(1)), 30, "EPOLLIN")
            cap.streamoff()
    finally:
        ep.close()


def test_pollout_wakes_when_another_thread_dequeues():
    with Camera(nr_frames=2) as cam, Capture(cam.video) as cap:
        cap.reqbufs(2)
        cap.qbuf(0)
        cap.qbuf(1)
        cap.streamon()
        cam.fill_and_queue(0, 1)
        cam.fill_and_queue(1, 2)
        cap.dqbuf()
        cap.dqbuf()
        wait_until(lambda: select.select([cam.ctl.fd], [], [], 0)[0], 30, "both slots done")
        p = select.poll()
        p.register(cam.ctl.fd, select.POLLOUT)
        assert p.poll(0) == []           # every slot is done, none free yet
        woken = {}

        def waiter():
            woken["events"] = p.poll(30000)

        t = threading.Thread(target=waiter)
        t.start()
        wait_until(lambda: sleeping_in(t.native_id, "poll"), 30, "poll to block")
        cam.ctl.dequeue()
        t.join(30)
        assert woken["events"] == [(cam.ctl.fd, select.POLLOUT)]
        cap.streamoff()


def test_pollpri_when_a_consumer_starts_and_stops():
    """EPOLLPRI: the status changed since this file last read it."""
    with Camera(nr_frames=2) as cam, Capture(cam.video) as cap:
        p = select.poll()
        p.register(cam.ctl.fd, select.POLLPRI)
        assert p.poll(0) == []
        cap.reqbufs(2)
        woken = {}

        def waiter():
            woken["events"] = p.poll(30000)

        t = threading.Thread(target=waiter)
        t.start()
        wait_until(lambda: sleeping_in(t.native_id, "poll"), 30, "poll to block")
        cap.streamon()
        t.join(30)
        assert woken["events"] == [(cam.ctl.fd, select.POLLPRI)]
        assert p.poll(0) == [(cam.ctl.fd, select.POLLPRI)]   # until the status is read
        assert cam.ctl.status() == uapi.VCAM_STATUS_STREAMING
        assert p.poll(0) == []
        # A start and stop between two reads is still a change
        cap.streamoff()
        cap.streamon()
        assert p.poll(0) == [(cam.ctl.fd, select.POLLPRI)]
        assert cam.ctl.wait(uapi.VCAM_STATUS_STREAMING) == uapi.VCAM_STATUS_STREAMING
        assert p.poll(0) == []
        cap.streamoff()
        assert p.poll(0) == [(cam.ctl.fd, select.POLLPRI)]


def test_poll_reports_dequeueable_slot():
    with Camera(nr_frames=2) as cam:
        p = select.poll()
        p.register(cam.ctl.fd, select.POLLIN | select.POLLOUT)
        [(_, ev)] = p.poll(0)
        assert ev & select.POLLOUT and not ev & select.POLLIN
        cam.fill_and_queue(0, 1)
        cam.fill_and_queue(1, 2)
        assert p.poll(200) == []  # nothing consumed, no free slot
        with Capture(cam.video) as cap:
            cap.reqbufs(2)
            cap.qbuf(0)
            cap.streamon()
            [(_, ev)] = p.poll(10000)
            assert ev & select.POLLIN
            done = cam.ctl.dequeue()
            assert done.index == 0
            cap.streamoff()


# --- STATUS and WAIT ------------------------------------------------------


def test_status_follows_capture_streaming():
    with Camera(nr_frames=2) as cam:
        assert cam.ctl.status() == uapi.VCAM_STATUS_IDLE
        with Capture(cam.video) as cap:
            cap.reqbufs(2)
            cap.streamon()
            assert cam.ctl.status() == uapi.VCAM_STATUS_STREAMING
            cap.streamoff()
            assert cam.ctl.status() == uapi.VCAM_STATUS_IDLE


# Idle and streaming together can never hold: refused rather than a wait forever
@pytest.mark.parametrize("mask", [0, 1 << 2, 1 << 63, uapi.VCAM_STATUS_MASK | 8,
                                  uapi.VCAM_STATUS_IDLE | uapi.VCAM_STATUS_STREAMING])
def test_wait_bad_mask(ctl, mask):
    create(ctl)
    expect_errno(errno.EINVAL, ctl.wait, mask)


def test_wait_idle_returns_at_once(ctl):
    create(ctl)
    assert ctl.wait(uapi.VCAM_STATUS_IDLE) == uapi.VCAM_STATUS_IDLE


def test_wait_nonblocking_eagain():
    with Control(nonblock=True) as ctl:
        create(ctl)
        expect_errno(errno.EAGAIN, ctl.wait, uapi.VCAM_STATUS_STREAMING)


def test_wait_streaming_returns_when_consumer_starts():
    with Camera(nr_frames=2) as cam:
        result = {}

        def waiter():
            result["status"] = cam.ctl.wait(uapi.VCAM_STATUS_STREAMING)
            result["at"] = time.monotonic()

        t = threading.Thread(target=waiter)
        t.start()
        wait_blocked(t.native_id, "ioctl", cam.ctl.fd, VcamIoctl.VCAM_IOC_WAIT)
        with Capture(cam.video) as cap:
            cap.reqbufs(2)
            started = time.monotonic()
            cap.streamon()
            t.join(10)
            assert not t.is_alive()
            assert result["status"] == uapi.VCAM_STATUS_STREAMING
            assert result["at"] >= started
            cap.streamoff()


def test_wait_interrupted_by_signal(ctl):
    create(ctl)
    with signal_once_blocked(ctl.fd, VcamIoctl.VCAM_IOC_WAIT):
        ctl.wait(uapi.VCAM_STATUS_STREAMING)


# --- sysfs ----------------------------------------------------------------


def test_sysfs_attributes():
    base = Path("/sys/class/misc/vcam")
    formats = (base / "formats").read_text().split()
    assert formats == sorted(formats)
    assert {"YUYV", "NV12", "MJPG"} <= set(formats)
    assert set(formats) == {"BGR3", "GREY", "MJPG", "NV12", "RGB3", "UYVY", "BX24", "YU12", "YUYV"}
    assert (base / "max_width").read_text() == "8192\n"
    assert (base / "max_height").read_text() == "8192\n"
    assert (base / "max_frames").read_text() == "32\n"
    for name in ("formats", "max_width", "max_height", "max_frames"):
        assert (base / name).stat().st_mode & 0o222 == 0


def test_every_listed_format_can_be_created():
    for name in Path("/sys/class/misc/vcam/formats").read_text().split():
        with Control() as ctl:
            create(ctl, pixelformat=v4l2.fourcc(name), nr_frames=2)
