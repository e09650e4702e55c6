"""The driver's per-camera files in sysfs (/sys/class/video4linux/videoN/
and its vcam/ directory): the one reader of them, for the producer's
report, the exporter and the tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SYSFS_V4L = Path("/sys/class/video4linux")
COUNTERS = ("frames_queued", "frames_dequeued", "frames_zero_copy", "frames_copied",
            "frames_errored", "frames_dropped", "bytes_copied", "fps", "requested_fps", "capture_queued")
SLOT_STATES = ("idle", "queued", "active", "inflight", "done")  # vcam/slots: "idle 2 queued 1 ..."


def stats(device_nr: int, root: Path = SYSFS_V4L) -> dict[str, int]:
    """The counters of camera N, as integers."""
    return {name: counter(device_nr, name, root) for name in COUNTERS}


def counter(device_nr: int, name: str, root: Path = SYSFS_V4L) -> int:
    """One of camera N's COUNTERS, or capture_done (frames filled for the
    consumer and not dequeued yet; not among COUNTERS, which an older
    module lacks)."""
    return int((root / f"video{device_nr}" / "vcam" / name).read_text())


def video_nodes(root: Path = SYSFS_V4L) -> set[str]:
    """The names of every V4L2 node (video0, video1, ...) that exists now."""
    return {p.name for p in root.iterdir()}


@dataclass
class CameraFiles:
    """One camera as its sysfs files show it at one moment."""
    nr: int
    card: str
    counters: dict[str, int]
    slots: dict[str, int]    # slot state -> how many slots are in it

    @property
    def output_depth(self) -> int:
        """Frames queued and not yet in a capture buffer (being delivered counts)."""
        return self.slots["queued"] + self.slots["active"]


def cameras(root: Path = SYSFS_V4L) -> dict[int, CameraFiles]:
    """Every vcam camera present now, by N; one that goes away while being
    read is left out."""
    found = {}
    try:
        nodes = list(root.iterdir())
    except OSError:
        return found
    for node in nodes:
        if not node.name.startswith("video") or not (node / "vcam").is_dir():
            continue
        try:
            nr = int(node.name[len("video"):])
            card = (node / "name").read_text().strip()
            counters = stats(nr, root)
            words = (node / "vcam" / "slots").read_text().split()
            slots = {state: int(n) for state, n in zip(words[0::2], words[1::2])}
            if set(slots) != set(SLOT_STATES):
                continue    # not a vcam this reader knows
        except (OSError, ValueError):
            continue
        found[nr] = CameraFiles(nr, card, counters, slots)
    return found
