"""vcam-producer run --format MJPEG: JPEG images of varying size through the
driver's compressed path, each carrying the integrity header in a comment
segment. Real consumers: `vcam-producer consume --verify` (zero-copy and
copy) and ffmpeg decoding the camera's MJPEG."""

import json
import subprocess

import pytest

from producer_procs import run_cli, running_producer, short_socket_path

pytestmark = pytest.mark.guest

FRAMES = 30
SIZE = ["--size", "320x240"]


@pytest.mark.parametrize("zero_copy", [True, False], ids=["zero-copy", "copy"])
def test_mjpeg_frames_arrive_whole_in_order_with_their_own_sizes(zero_copy):
    sock = short_socket_path()
    with running_producer(["--format", "MJPEG", *SIZE, "--pattern", "counter", "--fps", "0",
                           "--frames", FRAMES, "--share", sock, "--label", "Mjpeg Test"]) as producer:
        assert producer.ready["format"] == "MJPG" and producer.ready["header"]
        where = ["--import", sock] if zero_copy else ["--device", producer.device]
        consumer = run_cli(["consume", *where, "--frames", FRAMES, "--verify", "--json", "--timeout", "60"])
        assert consumer.returncode == 0, consumer.stdout + consumer.stderr
        done = producer.finish(timeout=120)
    report = json.loads(consumer.stdout)
    assert report["frames"] == FRAMES and (report["first_sequence"], report["last_sequence"]) == (0, FRAMES - 1)
    assert report["torn"] == report["corrupt"] == report["errored"] == report["sequence_gaps"] == 0
    counters = done["driver"]
    delivered = counters["frames_zero_copy"] if zero_copy else counters["frames_copied"]
    assert delivered == FRAMES and counters["frames_errored"] == 0
    if not zero_copy:
        # only each frame's JPEG was copied, not the buffer's worst case
        assert 0 < counters["bytes_copied"] < FRAMES * 320 * 240 * 3 // 4


def test_ffmpeg_decodes_the_cameras_mjpeg():
    with running_producer(["--format", "MJPEG", *SIZE, "--pattern", "smpte", "--fps", "30",
                           "--label", "Mjpeg Decode"]) as producer:
        r = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "v4l2", "-input_format", "mjpeg",
                            "-i", producer.device, "-frames:v", "5", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                           capture_output=True, timeout=120)
        producer.finish(sig=15, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    assert len(r.stdout) == 5 * 320 * 240 * 3
    # the bars' first column is 75% white, as encoded (JPEG is lossy: near, not equal)
    first = r.stdout[: 320 * 240 * 3]
    pixel = first[(120 * 320 + 20) * 3 : (120 * 320 + 20) * 3 + 3]
    assert all(abs(c - 191) <= 12 for c in pixel), list(pixel)

