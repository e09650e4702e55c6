"""The driver's per-camera counters (/sys/class/video4linux/videoN/vcam/)."""

from pathlib import Path

COUNTERS = ("frames_queued", "frames_dequeued", "frames_zero_copy", "frames_copied",
            "frames_errored", "bytes_copied", "fps", "requested_fps", "capture_queued")


def stats(device_nr: int) -> dict[str, int]:
    """The counters of camera N, as integers."""
    base = Path(f"/sys/class/video4linux/video{device_nr}/vcam")
    return {name: int((base / name).read_text()) for name in COUNTERS}


def video_nodes() -> set[str]:
    """The names of every V4L2 node (video0, video1, ...) that exists now."""
    return {p.name for p in Path("/sys/class/video4linux").iterdir()}
