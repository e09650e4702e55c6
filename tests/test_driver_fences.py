"""Fences: a frame a device is still writing is never handed out, and a
fence that never signals fails that frame instead of hanging the frame path.

The writing device is vgem, the kernel's virtual GEM driver: its buffers
export as DMA-BUFs and it can attach a write fence to one and signal it on
request (or on its own after 10 s), which is exactly a GPU that is late."""

import ctypes
import os
import select
import subprocess
import time
from pathlib import Path

import pytest

from producer import v4l2
from producer.ioctl import IOW, IOWR, ioctl
from vcam_helpers import Camera, Capture, start_capture, stats

# every_kernel: also in the kernel tier of the lab's other kernels (make test)
pytestmark = [pytest.mark.guest, pytest.mark.every_kernel]

DRM_COMMAND_BASE = 0x40
VGEM_FENCE_WRITE = 0x1
DRM_CLOEXEC = os.O_CLOEXEC
DRM_RDWR = os.O_RDWR


class drm_mode_create_dumb(ctypes.Structure):
    _fields_ = [("height", ctypes.c_uint32), ("width", ctypes.c_uint32), ("bpp", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("handle", ctypes.c_uint32), ("pitch", ctypes.c_uint32),
                ("size", ctypes.c_uint64)]


class drm_prime_handle(ctypes.Structure):
    _fields_ = [("handle", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("fd", ctypes.c_int32)]


class drm_vgem_fence_attach(ctypes.Structure):
    _fields_ = [("handle", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("out_fence", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


class drm_vgem_fence_signal(ctypes.Structure):
    _fields_ = [("fence", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


DRM_IOCTL_MODE_CREATE_DUMB = IOWR("d", 0xB2, drm_mode_create_dumb)
DRM_IOCTL_PRIME_HANDLE_TO_FD = IOWR("d", 0x2D, drm_prime_handle)
DRM_IOCTL_VGEM_FENCE_ATTACH = IOWR("d", DRM_COMMAND_BASE + 0x1, drm_vgem_fence_attach)
DRM_IOCTL_VGEM_FENCE_SIGNAL = IOW("d", DRM_COMMAND_BASE + 0x2, drm_vgem_fence_signal)


class VgemBuffer:
    """A vgem buffer exported as a DMA-BUF, with a write fence we signal."""

    def __init__(self, width: int, height: int):
        subprocess.run(["modprobe", "vgem"], check=True)
        self.card = os.open(self._vgem_card(), os.O_RDWR | os.O_CLOEXEC)
        dumb = ioctl(self.card, DRM_IOCTL_MODE_CREATE_DUMB,
                     drm_mode_create_dumb(width=width, height=height, bpp=16))
        self.handle, self.size = dumb.handle, dumb.size
        prime = ioctl(self.card, DRM_IOCTL_PRIME_HANDLE_TO_FD,
                      drm_prime_handle(handle=self.handle, flags=DRM_CLOEXEC | DRM_RDWR))
        self.fd = prime.fd

    @staticmethod
    def _vgem_card() -> str:
        # The card's device is /sys/devices/platform/vgem, or from 6.15 on
        # the faux device /sys/devices/faux/vgem
        for card in sorted(Path("/sys/class/drm").glob("card[0-9]*")):
            if (card / "device").resolve().name == "vgem":
                return f"/dev/dri/{card.name}"
        raise AssertionError("no vgem card after modprobe vgem")

    def attach_write_fence(self) -> int:
        attach = drm_vgem_fence_attach(handle=self.handle, flags=VGEM_FENCE_WRITE)
        return ioctl(self.card, DRM_IOCTL_VGEM_FENCE_ATTACH, attach).out_fence

    def signal(self, fence: int) -> None:
        ioctl(self.card, DRM_IOCTL_VGEM_FENCE_SIGNAL, drm_vgem_fence_signal(fence=fence))

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.card)


@pytest.mark.parametrize("zero_copy", [True, False], ids=["zero-copy", "copy"])
def test_frame_still_being_written_is_not_handed_out(zero_copy):
    with Camera(nr_frames=2, width=64, height=48) as cam, Capture(cam.video) as cap:
        gpu = VgemBuffer(64, 48)
        try:
            if zero_copy:
                cap.reqbufs(1, v4l2.V4L2_MEMORY_DMABUF)
                cap.qbuf(0, gpu.fd, gpu.size)
            else:
                cap.reqbufs(1)
                cap.qbuf(0)
            cap.streamon()
            fence = gpu.attach_write_fence()
            cam.ctl.queue(0, gpu.fd)
            # The write fence does not signal: after the driver's bounded
            # wait the frame fails, and its slot comes back to the producer.
            b = cap.dqbuf(timeout=8.0)
            assert b.sequence == 0 and b.flags & v4l2.V4L2_BUF_FLAG_ERROR
            assert cam.dequeue().index == 0
            # Once the device is done, the same buffer goes through.
            gpu.signal(fence)
            if zero_copy:
                cap.qbuf(0, gpu.fd, gpu.size)
            else:
                cap.qbuf(0)
            cam.ctl.queue(0, gpu.fd)
            b = cap.dqbuf(timeout=8.0)
            assert b.sequence == 1 and not b.flags & v4l2.V4L2_BUF_FLAG_ERROR
            s = stats(cam.nr)
            assert s["frames_errored"] == 1
            assert s["frames_zero_copy" if zero_copy else "frames_copied"] == 1
            cap.streamoff()
        finally:
            gpu.close()


def test_streamoff_does_not_wait_for_fences():
    """Fence waits are callbacks: with four frames still being written,
    STREAMOFF returns at once (a blocking wait of 1 s a frame would hold it
    for seconds), and the frames come back to the producer undelivered."""
    with Camera(nr_frames=4, width=64, height=48) as cam, Capture(cam.video) as cap:
        gpus = [VgemBuffer(64, 48) for _ in range(4)]
        try:
            start_capture(cap, 4)
            fences = [gpu.attach_write_fence() for gpu in gpus]
            for slot, gpu in enumerate(gpus):
                cam.ctl.queue(slot, gpu.fd)
            time.sleep(0.2)          # the frame path is waiting now
            started = time.monotonic()
            cap.streamoff()
            took = time.monotonic() - started
            assert took < 1.0, f"STREAMOFF took {took:.2f} s"
            assert sorted((d.index, d.length) for d in (cam.dequeue() for _ in range(4))) == \
                [(0, 0), (1, 0), (2, 0), (3, 0)]
            s = stats(cam.nr)
            assert (s["frames_dropped"], s["frames_errored"]) == (4, 0)
            for gpu, fence in zip(gpus, fences):
                gpu.signal(fence)
        finally:
            for gpu in gpus:
                gpu.close()


def test_frame_goes_out_when_its_fence_signals():
    with Camera(nr_frames=2, width=64, height=48) as cam, Capture(cam.video) as cap:
        gpu = VgemBuffer(64, 48)
        try:
            start_capture(cap, 1)
            fence = gpu.attach_write_fence()
            cam.ctl.queue(0, gpu.fd)
            time.sleep(0.3)
            assert select.select([cap.fd], [], [], 0)[0] == []   # still being written
            gpu.signal(fence)
            b = cap.dqbuf(timeout=8.0)
            assert not b.flags & v4l2.V4L2_BUF_FLAG_ERROR
            assert stats(cam.nr)["frames_copied"] == 1
            cap.streamoff()
        finally:
            gpu.close()


def test_close_does_not_wait_for_a_fence():
    gpu = VgemBuffer(64, 48)
    try:
        cam = Camera(nr_frames=2, width=64, height=48)
        with Capture(cam.video) as cap:
            start_capture(cap, 1)
            fence = gpu.attach_write_fence()
            cam.ctl.queue(0, gpu.fd)
            time.sleep(0.2)
            started = time.monotonic()
            cam.close()
            took = time.monotonic() - started
            assert took < 1.0, f"closing the camera took {took:.2f} s"
        gpu.signal(fence)
    finally:
        gpu.close()
