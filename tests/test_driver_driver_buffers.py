"""Driver-allocated output buffers (spec weakness 3): a producer with no
DMA-BUF allocator maps the slots' own buffers from the control node and
queues them with VCAM_QUEUE_FD_DRIVER."""

import errno
import mmap
import os
import threading
import time

import pytest

from producer import v4l2
from producer.control import Control
from vcam_helpers import Capture, expect_errno, stats

pytestmark = pytest.mark.guest


@pytest.fixture
def ctl():
    with Control() as c:
        c.create("Mapped Cam", 64, 48, v4l2.V4L2_PIX_FMT_YUYV, nr_frames=3)
        yield c


def test_frames_from_driver_buffers(ctl):
    maps = [ctl.map_slot(i) for i in range(3)]
    with Capture(ctl.video_path) as cap:
        cap.reqbufs(3)
        for i in range(3):
            cap.qbuf(i)
        cap.streamon()
        for n in range(9):
            slot = n % 3
            if n >= 3:
                assert ctl.dequeue().index == slot
            maps[slot][: ctl.frame_size] = bytes([0x60 + n]) * ctl.frame_size
            ctl.queue_driver_buffer(slot)
            b = cap.dqbuf()
            assert cap.data(b) == bytes([0x60 + n]) * ctl.frame_size
            cap.qbuf(b.index)
        cap.streamoff()
    assert stats(ctl.device_nr)["frames_copied"] == 9
    for m in maps:
        m.close()


def test_queue_without_mapping_allocates(ctl):
    ctl.queue_driver_buffer(1)  # zero-filled buffer, still a frame
    with Capture(ctl.video_path) as cap:
        cap.reqbufs(1)
        cap.qbuf(0)
        cap.streamon()
        assert cap.data(cap.dqbuf()) == bytes(ctl.frame_size)
        cap.streamoff()


def test_two_mappings_share_memory(ctl):
    a, b = ctl.map_slot(2), ctl.map_slot(2)
    a[:4] = b"abcd"
    assert b[:4] == b"abcd"
    a.close()
    b.close()


def test_bad_mappings(ctl):
    stride = ctl.slot_stride
    with pytest.raises(OSError) as e:
        mmap.mmap(ctl.fd, stride, mmap.MAP_SHARED, offset=3 * stride)  # no slot 3
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        mmap.mmap(ctl.fd, 2 * stride, mmap.MAP_SHARED, offset=0)  # two slots at once
    assert e.value.errno == errno.EINVAL
    if stride > mmap.PAGESIZE:
        with pytest.raises(OSError) as e:
            mmap.mmap(ctl.fd, mmap.PAGESIZE, mmap.MAP_SHARED, offset=mmap.PAGESIZE)  # not a slot start
        assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        mmap.mmap(ctl.fd, stride, mmap.MAP_PRIVATE, offset=0)
    assert e.value.errno == errno.EINVAL


def test_mapping_before_create_fails():
    with Control() as c:
        with pytest.raises(OSError) as e:
            mmap.mmap(c.fd, 4096, mmap.MAP_SHARED)
        assert e.value.errno == errno.ENODEV


def test_mapping_outlives_close_of_the_fd():
    c = Control()
    c.create("Mapped Cam", 64, 48, v4l2.V4L2_PIX_FMT_YUYV, nr_frames=2)
    m = c.map_slot(0)
    video = c.video_path
    c.close()  # the mapping keeps the camera's file open
    assert os.path.exists(video)
    m[:3] = b"xyz"
    m.close()
    assert not os.path.exists(video)


def test_driver_buffer_slot_queued_twice(ctl):
    ctl.queue_driver_buffer(0)
    expect_errno(errno.EBUSY, ctl.queue_driver_buffer, 0)


def test_blocked_dequeue_wakes_for_driver_buffer_frames(ctl):
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("d", ctl.dequeue()))
    ctl.queue_driver_buffer(0)
    t.start()
    with Capture(ctl.video_path) as cap:
        cap.reqbufs(1)
        cap.qbuf(0)
        time.sleep(0.3)  # let the thread block in DEQUEUE
        cap.streamon()
        cap.dqbuf()
        t.join(10)
        assert not t.is_alive(), "DEQUEUE was not woken"
        assert got["d"].index == 0
        cap.streamoff()
