"""Driver-allocated output buffers (spec weakness 3): a producer with no
DMA-BUF allocator maps the slots' own buffers from the control node and
queues them with VCAM_QUEUE_FD_DRIVER. Each buffer is a DMA-BUF that
VCAM_IOC_EXPORT hands out, so a consumer can import it (zero-copy)."""

import ctypes
import errno
import mmap
import os
import threading
from pathlib import Path

import pytest

from producer import uapi, v4l2
from producer.control import Control
from producer.dmabuf import DmaBuf
from producer.ioctl import ioctl
from vcam_helpers import Capture, expect_errno, start_capture, stats, wait_blocked

# every_kernel: also in the kernel tier of the lab's other kernels (make test)
pytestmark = [pytest.mark.guest, pytest.mark.every_kernel]


@pytest.fixture
def ctl():
    with Control() as c:
        c.create("Mapped Cam", 64, 48, v4l2.V4L2_PIX_FMT_YUYV, nr_frames=3)
        yield c


def stream_nine_frames(ctl, cap, maps, first_byte, read, requeue):
    """Frames n = 0..8 written through the control file's mappings into slot
    n % 3 and queued as driver buffers; each captured frame read(buf) must
    be whole, then requeue(buf) gives the capture buffer back."""
    for n in range(9):
        slot = n % 3
        if n >= 3:
            assert ctl.dequeue().index == slot
        maps[slot][: ctl.frame_size] = bytes([first_byte + n]) * ctl.frame_size
        ctl.queue_driver_buffer(slot)
        b = cap.dqbuf()
        assert b.bytesused == ctl.frame_size
        assert read(b) == bytes([first_byte + n]) * ctl.frame_size
        requeue(b)


def test_frames_from_driver_buffers(ctl):
    maps = [ctl.map_slot(i) for i in range(3)]
    with Capture(ctl.video_path) as cap:
        start_capture(cap, 3)
        stream_nine_frames(ctl, cap, maps, 0x60, read=cap.data, requeue=lambda b: cap.qbuf(b.index))
        cap.streamoff()
    assert stats(ctl.device_nr)["frames_copied"] == 9
    for m in maps:
        m.close()


def test_queue_without_mapping_allocates(ctl):
    ctl.queue_driver_buffer(1)  # zero-filled buffer, still a frame
    with Capture(ctl.video_path) as cap:
        start_capture(cap, 1)
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


def test_mapping_outlives_the_camera():
    """A mapping holds the slot's memory, not the camera: closing the
    control file removes the camera at once, and the mapping stays valid."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    c = Control()
    c.create("Mapped Cam", 64, 48, v4l2.V4L2_PIX_FMT_YUYV, nr_frames=2)
    # libc's mmap: Python's mmap object would keep a dup of the fd open
    addr = libc.mmap(None, c.slot_stride, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, c.fd, 0)
    assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
    ctypes.memmove(addr, b"abc", 3)
    video = c.video_path
    c.close()
    assert not os.path.exists(video)
    assert ctypes.string_at(addr, 3) == b"abc"
    ctypes.memmove(addr, b"xyz", 3)
    assert libc.munmap(addr, c.slot_stride) == 0


def test_export_is_the_memory_the_control_file_maps(ctl):
    mapped = ctl.map_slot(1)
    with DmaBuf(ctl.frame_size, fd=ctl.export(1)) as exported:
        mapped[:5] = b"hello"
        assert exported.read(5) == b"hello"
        exported.write(b"world")
        assert mapped[:5] == b"world"
        # Each export is a new fd of the same DMA-BUF
        again, other = ctl.export(1), ctl.export(0)
        assert os.fstat(again).st_ino == os.fstat(exported.fd).st_ino
        assert os.fstat(other).st_ino != os.fstat(exported.fd).st_ino
        os.close(again)
        os.close(other)
    mapped.close()


def test_consumer_importing_exported_slots_gets_zero_copy(ctl):
    """The 6.1 case: no DMA-BUF allocator, yet zero-copy. The consumer
    imports the exported slots; frames queued with VCAM_QUEUE_FD_DRIVER
    reach it without a copy, whatever order its buffers come back in."""
    exported = [DmaBuf(ctl.frame_size, fd=ctl.export(i)) for i in range(3)]
    maps = [ctl.map_slot(i) for i in range(3)]
    with Capture(ctl.video_path) as cap:
        cap.reqbufs(3, v4l2.V4L2_MEMORY_DMABUF)
        for i in (2, 0, 1):  # not in slot order
            cap.qbuf(i, exported[i].fd, exported[i].size)
        cap.streamon()

        def read(b):
            assert b.index == b.sequence % 3  # the buffer importing the slot
            return exported[b.index].read(b.bytesused)

        stream_nine_frames(ctl, cap, maps, 0x30, read=read,
                           requeue=lambda b: cap.qbuf(b.index, exported[b.index].fd, exported[b.index].size))
        cap.streamoff()
    counters = stats(ctl.device_nr)
    assert (counters["frames_zero_copy"], counters["frames_copied"]) == (9, 0)
    for buf, m in zip(exported, maps):
        m.close()
        buf.close()


def test_exported_slot_outlives_the_camera_and_holds_the_module():
    refcnt = Path("/sys/module/vcam/refcnt")
    c = Control()
    c.create("Export Cam", 64, 48, v4l2.V4L2_PIX_FMT_YUYV, nr_frames=2)
    idle = int(refcnt.read_text()) - 1  # the control file holds one
    buf = DmaBuf(c.frame_size, fd=c.export(0))
    buf.write(b"kept")
    video = c.video_path
    c.close()
    assert not os.path.exists(video)
    assert buf.read(4) == b"kept"
    assert int(refcnt.read_text()) == idle + 1  # the DMA-BUF's exporter is vcam
    buf.close()
    assert int(refcnt.read_text()) == idle


@pytest.mark.parametrize("field, value", [("index", 3), ("flags", os.O_RDWR), ("flags", 1 << 30), ("reserved", 1)])
def test_bad_export(ctl, field, value):
    req = uapi.vcam_ioc_export(index=0, flags=os.O_CLOEXEC)
    setattr(req, field, value)
    fds = set(os.listdir("/proc/self/fd"))
    expect_errno(errno.EINVAL, ioctl, ctl.fd, uapi.VcamIoctl.VCAM_IOC_EXPORT, req)
    assert set(os.listdir("/proc/self/fd")) == fds  # no fd left behind


def test_export_before_create_fails():
    with Control() as c:
        expect_errno(errno.ENOTTY, c.export, 0)


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
        wait_blocked(t.native_id, "ioctl", ctl.fd, uapi.VcamIoctl.VCAM_IOC_DEQUEUE)
        cap.streamon()
        cap.dqbuf()
        t.join(10)
        assert not t.is_alive(), "DEQUEUE was not woken"
        assert got["d"].index == 0
        cap.streamoff()
