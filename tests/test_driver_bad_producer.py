"""Bad producers: each mistake gets an errno and leaves the camera usable."""

import errno
import os
import time

import pytest

from producer.ioctl import ioctl
from producer.uapi import VcamIoctl
from vcam_helpers import Camera, Capture, expect_errno, foreign_dmabuf, start_capture, stats

# every_kernel: also in the kernel tier of the lab's other kernels (make test)
pytestmark = [pytest.mark.guest, pytest.mark.every_kernel]


@pytest.fixture
def cam():
    with Camera(nr_frames=3, width=64, height=48) as c:
        yield c


def still_works(cam, slot=2):
    """A frame end to end through the given slot (after whatever a test left
    queued before it), and every queued slot comes back."""
    pending = stats(cam.nr)["frames_queued"] - stats(cam.nr)["frames_dequeued"]
    with Capture(cam.video) as cap:
        start_capture(cap, 1)
        cam.fill_and_queue(slot, 0x5A)
        for _ in range(pending + 1):
            b = cap.dqbuf()
            data = cap.data(b)
            cap.qbuf(0)
        assert data == b"\x5a" * cam.size
        cap.streamoff()
    assert slot in [cam.dequeue().index for _ in range(pending + 1)]


def test_bad_fd(cam):
    expect_errno(errno.EBADF, cam.ctl.queue, 0, 9999)
    expect_errno(errno.EBADF, cam.ctl.queue, 0, -2)  # -1 is VCAM_QUEUE_FD_DRIVER
    still_works(cam)


@pytest.mark.parametrize("kind", ["devnull", "pipe", "memfd", "control"])
def test_fd_that_is_not_a_dmabuf(cam, kind):
    if kind == "devnull":
        fds = [os.open("/dev/null", os.O_RDWR)]
    elif kind == "pipe":
        fds = list(os.pipe())
    elif kind == "memfd":
        fds = [os.memfd_create("x")]
        os.ftruncate(fds[0], cam.size)
    else:
        fds = [os.dup(cam.ctl.fd)]
    try:
        expect_errno(errno.EINVAL, cam.ctl.queue, 0, fds[0])
    finally:
        for fd in fds:
            os.close(fd)
    still_works(cam)


def test_dmabuf_too_small(cam):
    with foreign_dmabuf(4096) as small:
        assert small.size < cam.size
        expect_errno(errno.EINVAL, cam.ctl.queue, 0, small.fd)
    still_works(cam)


@pytest.mark.parametrize("index", [3, 32, 0xFFFFFFFF])
def test_index_out_of_range(cam, index):
    expect_errno(errno.EINVAL, cam.ctl.queue, index, cam.bufs[0].fd)
    still_works(cam)


def test_slot_queued_twice(cam):
    cam.ctl.queue(0, cam.bufs[0].fd)
    expect_errno(errno.EBUSY, cam.ctl.queue, 0, cam.bufs[1].fd)
    still_works(cam)


def test_same_dmabuf_in_two_slots(cam):
    cam.ctl.queue(0, cam.bufs[0].fd)
    expect_errno(errno.EBUSY, cam.ctl.queue, 1, cam.bufs[0].fd)
    still_works(cam)


@pytest.mark.parametrize("reserved", [1, 0x80000000])
def test_garbage_in_reserved(cam, reserved):
    expect_errno(errno.EINVAL, cam.ctl.queue, 0, cam.bufs[0].fd, reserved=reserved)
    still_works(cam)


def test_payload_larger_than_a_frame(cam):
    with foreign_dmabuf(cam.size * 2) as big:
        expect_errno(errno.EINVAL, cam.ctl.queue, 0, big.fd, length=cam.size + 1)
    still_works(cam)


def test_bad_pointers(cam):
    expect_errno(errno.EFAULT, ioctl, cam.ctl.fd, VcamIoctl.VCAM_IOC_QUEUE, 16)
    expect_errno(errno.EFAULT, ioctl, cam.ctl.fd, VcamIoctl.VCAM_IOC_STATUS, 16)
    expect_errno(errno.EFAULT, ioctl, cam.ctl.fd, VcamIoctl.VCAM_IOC_WAIT, 16)
    still_works(cam)


def test_failed_queues_are_not_counted(cam):
    expect_errno(errno.EBADF, cam.ctl.queue, 0, 9999)
    expect_errno(errno.EINVAL, cam.ctl.queue, 7, cam.bufs[0].fd)
    assert stats(cam.nr)["frames_queued"] == 0


def test_dmabuf_fd_closed_after_queue(cam):
    """The driver holds its own reference: closing the fd loses nothing."""
    extra = foreign_dmabuf(cam.size)
    extra.fill(0x77, cam.size)
    fd = os.dup(extra.fd)
    cam.ctl.queue(0, fd)
    os.close(fd)
    extra.close()
    with Capture(cam.video) as cap:
        start_capture(cap, 1)
        b = cap.dqbuf()
        assert cap.data(b) == b"\x77" * cam.size
        cap.streamoff()
    assert cam.dequeue().index == 0


def test_dequeue_into_bad_pointer(cam):
    cam.fill_and_queue(0, 1)
    with Capture(cam.video) as cap:
        start_capture(cap, 1)
        cap.dqbuf()
        expect_errno(errno.EFAULT, ioctl, cam.ctl.fd, VcamIoctl.VCAM_IOC_DEQUEUE, 16)
        cap.streamoff()
    # the slot was handed back even though it could not be reported
    still_works(cam, slot=0)


def test_timestamp_from_another_clock(cam):
    """CLOCK_REALTIME, or anything over a second ahead of CLOCK_MONOTONIC."""
    for stamp in (time.time_ns(), time.monotonic_ns() + 10_000_000_000):
        expect_errno(errno.EINVAL, cam.ctl.queue, 0, cam.bufs[0].fd, timestamp=stamp)
    still_works(cam)


def test_timestamp_earlier_than_the_last_frame(cam):
    """Capture timestamps never go back: a frame stamped before the last one
    is refused, one stamped the same is taken."""
    stamp = time.monotonic_ns() // 1000 * 1000 - 1_000_000_000   # capture timestamps are in µs
    cam.queue(0, timestamp=stamp)
    expect_errno(errno.EINVAL, cam.ctl.queue, 1, cam.bufs[1].fd, timestamp=stamp - 1)
    cam.queue(1, timestamp=stamp)
    with Capture(cam.video) as cap:
        start_capture(cap, 2)
        assert [cap.dqbuf().timestamp_ns() for _ in range(2)] == [stamp, stamp]
        cap.streamoff()
    assert sorted(cam.dequeue().index for _ in range(2)) == [0, 1]
    still_works(cam)
