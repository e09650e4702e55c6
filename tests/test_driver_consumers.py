"""Real V4L2 consumers capture from a vcam camera fed by a producer."""

import subprocess

import pytest

from vcam_helpers import Camera, ProducerThread, stats

# every_kernel: also in the kernel tier of the lab's other kernels (make test)
pytestmark = [pytest.mark.guest, pytest.mark.every_kernel]


@pytest.fixture
def streaming_cam():
    with Camera(nr_frames=4, width=160, height=120, label="Consumer Cam") as cam:
        with ProducerThread(cam, pattern=lambda n: n & 0xFF):
            yield cam


def test_v4l2_ctl_stream_mmap(streaming_cam, tmp_path):
    cam = streaming_cam
    out = tmp_path / "frames.raw"
    r = subprocess.run(
        ["v4l2-ctl", "-d", cam.video, "--stream-mmap", "--stream-count=30", f"--stream-to={out}"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert len(data) == 30 * cam.size
    frames = [data[i * cam.size:(i + 1) * cam.size] for i in range(30)]
    firsts = [f[0] for f in frames]
    for f in frames:
        assert f == bytes([f[0]]) * cam.size  # whole frames
    assert all((b - a) & 0xFF == 1 for a, b in zip(firsts, firsts[1:]))  # none lost


def test_gstreamer_v4l2src(streaming_cam):
    r = subprocess.run(
        ["gst-launch-1.0", "-q", "v4l2src", f"device={streaming_cam.video}", "num-buffers=20", "!", "fakesink"],
        capture_output=True, text=True, timeout=180,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_ffmpeg_v4l2(streaming_cam):
    r = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "v4l2", "-i", streaming_cam.video,
         "-frames:v", "10", "-f", "null", "-"],
        capture_output=True, text=True, timeout=180,
    )
    assert r.returncode == 0, r.stderr
    assert stats(streaming_cam.nr)["frames_copied"] >= 10
