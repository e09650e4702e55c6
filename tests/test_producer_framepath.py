"""Nothing lost, nothing torn: 4,000 frames at full speed from
`vcam-producer run` to `vcam-producer consume --verify`, on each frame path.
The consumer must see every sequence number once, in order, with a valid
checksum; the producer must get every slot back; the driver's counters must
show the path we asked for."""

import json

import pytest

from producer.sysfs import video_nodes
from producer_procs import run_cli, running_producer, short_socket_path

pytestmark = pytest.mark.guest

FRAMES = 4_000   # a thousand turns of the four slots

# The consumer's side of each path
PATHS = {
    "zero-copy": lambda sock, dev: ["--import", sock],
    "copy-mmap": lambda sock, dev: ["--device", dev, "--memory", "mmap"],
    "copy-userptr": lambda sock, dev: ["--device", dev, "--memory", "userptr"],
}
# Each path with the producer's frames where `run` puts them by itself (a
# DMA-BUF heap or udmabuf where the kernel has one, else the driver's own
# slot buffers): FRAMES each. Zero-copy and copy from the driver's slot
# buffers too, with fewer frames: the same frame path, other memory.
DRIVER_SLOT_FRAMES = 1_000
CASES = [
    ("zero-copy", "auto", FRAMES),
    ("copy-mmap", "auto", FRAMES),
    ("copy-userptr", "auto", FRAMES),
    ("zero-copy", "driver", DRIVER_SLOT_FRAMES),
    ("copy-mmap", "driver", DRIVER_SLOT_FRAMES),
]


@pytest.mark.parametrize("path, slot_memory, frames", CASES)
def test_every_frame_arrives_whole_and_in_order(path, slot_memory, frames):
    nodes_before = video_nodes()
    sock = short_socket_path()
    producer_args = ["--size", "160x120", "--format", "YUYV", "--fps", "0", "--pattern", "gradient",
                     "--frames", frames, "--slots", "4", "--share", sock, "--label", "Framepath Test",
                     "--slot-memory", slot_memory]
    with running_producer(producer_args) as producer:
        consumer = run_cli(["consume", *PATHS[path](sock, producer.device), "--frames", frames,
                            "--verify", "--json", "--timeout", "60"], timeout=900)
        assert consumer.returncode == 0, consumer.stdout + consumer.stderr
        report = json.loads(consumer.stdout)
        done = producer.finish(timeout=120)

    assert report["frames"] == frames
    assert (report["first_sequence"], report["last_sequence"]) == (0, frames - 1)
    assert report["sequence_gaps"] == report["out_of_order"] == 0
    assert report["torn"] == report["corrupt"] == report["errored"] == 0
    assert report["imported"] == (path == "zero-copy")

    assert done["frames_queued"] == frames
    assert done["slots_returned"] == frames  # every slot came back
    assert done["in_flight"] == 0
    counters = done["driver"]
    if path == "zero-copy":
        assert (counters["frames_zero_copy"], counters["frames_copied"]) == (frames, 0)
    else:
        assert (counters["frames_zero_copy"], counters["frames_copied"]) == (0, frames)
    assert video_nodes() == nodes_before  # the camera is gone
    print(f"{path} from {producer.ready['slot_memory']}: producer {done['fps']:.0f} fps, consumer {report['fps']:.0f} fps, "
          f"latency ms {report['latency_ms']}")
