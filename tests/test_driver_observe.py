"""Observable by design: stable probe points and the driver's own counters."""

import re
from pathlib import Path

import pytest

from vcam_helpers import Camera, Capture, start_capture, stats

# every_kernel: also in the kernel tier of the lab's other kernels (make test)
pytestmark = [pytest.mark.guest, pytest.mark.every_kernel]

SYMBOLS = [
    "vcam_out_queue",
    "vcam_out_dequeue",
    "vcam_out_queued",
    "vcam_out_dequeued",
    "vcam_frame_delivered",
    "vcam_dispatch",
    "vcam_zero_copy",
    "vcam_copy",
    "vcam_out_release",
    "vcam_device_create",
    "vcam_device_free",
]


def test_probe_points_are_real_symbols():
    with open("/proc/kallsyms") as f:
        ours = "".join(line for line in f if line.endswith("\t[vcam]\n"))
    for name in SYMBOLS:
        assert re.search(rf"^[0-9a-f]+ [tT] {name}\t\[vcam\]$", ours, re.M), f"{name} is not in /proc/kallsyms"
        # no clone (name.isra.0, name.constprop.0) that callers might use
        # instead; a name.cold part is only the function's unlikely tail,
        # which gcc moves away (6.1's flags): it is entered from the body
        assert not re.search(rf" {name}\.(?!cold\t)", ours), f"{name} was cloned"


def test_probe_points_are_attachable():
    blacklist = Path("/sys/kernel/debug/kprobes/blacklist")
    if blacklist.exists():
        listed = blacklist.read_text()
        for name in SYMBOLS:
            assert f"\t{name}\n" not in listed


def test_probe_points_listed_in_the_source():
    src = (Path(__file__).resolve().parent.parent / "driver" / "vcam-queue.c").read_text()
    header = src.split("*/", 1)[0]
    for name in SYMBOLS:
        assert f"{name}(" in header


def test_counters_add_up():
    with Camera(nr_frames=3) as cam, Capture(cam.video) as cap:
        start_capture(cap, 2)
        cam.fill_and_queue(0, 1)
        cam.fill_and_queue(1, 2, length=10)  # short: an error
        cam.fill_and_queue(2, 3)
        for _ in range(2):
            b = cap.dqbuf()
            cap.qbuf(b.index)
        cap.dqbuf()
        for _ in range(3):
            cam.dequeue()
        s = stats(cam.nr)
        assert s["frames_queued"] == 3 == s["frames_dequeued"]
        assert s["frames_copied"] + s["frames_zero_copy"] + s["frames_errored"] == 3
        assert s["frames_errored"] == 1
        assert s["bytes_copied"] == 2 * cam.size + 10
        cap.streamoff()
