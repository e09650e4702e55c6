"""Lifetime: the camera goes away with its control file, memory goes away
with its last user, the module with its last camera."""

import errno
import os
import select
import subprocess
import threading
from pathlib import Path

import pytest

from producer import v4l2
from producer.control import Control
from vcam_helpers import Camera, Capture, KernelState, ProducerThread, start_capture, wait_blocked, wait_until

# every_kernel: also in the kernel tier of the lab's other kernels (make test)
pytestmark = [pytest.mark.guest, pytest.mark.every_kernel]

MODULE = Path(__file__).resolve().parent.parent / "driver" / "vcam.ko"


def test_close_control_while_consumer_blocks_in_dqbuf():
    cam = Camera(nr_frames=2)
    video = cam.video
    cap = Capture(video, nonblock=False)
    try:
        start_capture(cap, 2)
        result = {}

        def consumer():
            try:
                v4l2.dqbuf(cap.fd, v4l2.V4L2_MEMORY_MMAP)
                result["ok"] = True
            except OSError as e:
                result["errno"] = e.errno

        t = threading.Thread(target=consumer)
        t.start()
        wait_blocked(t.native_id, "ioctl", cap.fd, v4l2.V4l2Ioctl.VIDIOC_DQBUF)
        cam.close()
        # the node is gone at once, the blocked consumer gets an error
        assert not os.path.exists(video)
        t.join(10)
        assert not t.is_alive()
        assert result.get("errno") in (errno.EIO, errno.ENODEV, errno.EPIPE)
        with pytest.raises(OSError) as e:
            v4l2.querycap(cap.fd)
        assert e.value.errno == errno.ENODEV
        p = select.poll()
        p.register(cap.fd, select.POLLIN)
        [(_, ev)] = p.poll(1000)
        assert ev & select.POLLERR
        # mapped buffers stay readable until unmapped
        assert len(bytes(cap.maps[0][:16])) == 16
    finally:
        cap.close()


def test_close_control_while_streaming_frames():
    cam = Camera(nr_frames=3)
    video = cam.video
    cap = Capture(video)
    try:
        start_capture(cap, 3)
        prod = ProducerThread(cam).start()
        for _ in range(5):
            b = cap.dqbuf()
            cap.qbuf(b.index)
        prod._stop.set()
        prod._thread.join(10)
        cam.close()
        assert not os.path.exists(video)
        with pytest.raises(OSError) as e:
            for _ in range(10):
                b = cap.dqbuf(2)
        assert e.value.errno in (errno.ENODEV, errno.EIO, errno.EPIPE)
    finally:
        cap.close()


def test_producer_process_exit_removes_camera():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the producer: create, queue, tell, die
        try:
            cam = Camera(nr_frames=2)
            cam.fill_and_queue(0, 1)
            os.write(w, str(cam.nr).encode())
        finally:
            os._exit(0)
    os.close(w)
    nr = int(os.read(r, 16))
    os.close(r)
    os.waitpid(pid, 0)
    assert not os.path.exists(f"/dev/video{nr}")


def one_cycle(n: int) -> None:
    cam = Camera(nr_frames=2, width=32, height=16)
    cap = Capture(cam.video)
    cap.reqbufs(2)
    cap.qbuf(0)
    cap.streamon()
    cam.fill_and_queue(0, n & 0xFF)
    b = cap.dqbuf()
    assert cap.data(b)[0] == n & 0xFF
    if n % 2:  # either side may go first
        cam.close()
        cap.close()
    else:
        cap.close()
        cam.close()


def test_200_cycles_leave_memory_and_nodes_where_they_were():
    for n in range(10):  # warm caches up
        one_cycle(n)
    before = KernelState()
    for n in range(200):
        one_cycle(n)
    before.check("200 cycles", rounds=200)


def rmmod() -> subprocess.CompletedProcess:
    return subprocess.run(["rmmod", "vcam"], capture_output=True, text=True)


def test_module_pinned_while_in_use_then_unloads_cleanly():
    cam = Camera(nr_frames=2)
    assert rmmod().returncode != 0  # the control file pins it
    cap = Capture(cam.video)
    cam.close()
    assert rmmod().returncode != 0  # an open capture node pins it
    cap.close()
    r = rmmod()
    assert r.returncode == 0, r.stderr
    try:
        assert not os.path.exists("/dev/vcam")
    finally:
        subprocess.run(["insmod", str(MODULE)], check=True)
    wait_until(lambda: os.path.exists("/dev/vcam"), 5, "/dev/vcam after insmod")
    with Control() as ctl:
        ctl.create("After Reload", 64, 48, v4l2.V4L2_PIX_FMT_YUYV, nr_frames=2)
