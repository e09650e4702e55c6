"""vcam-producer run --input /dev/videoX relays a real camera without a
copy: vivid (the V4L2 reference driver) is the camera, its own buffers
(VIDIOC_EXPBUF) are the vcam camera's slots. Frames arrive as vivid made
them, the producer maps no pixel, a consumer that imports gets the
zero-copy path end to end; a source that cannot be relayed is decoded with
a note, and one that is no capture device is one line."""

import subprocess
import time

import pytest

from producer import v4l2
from producer.capture import Capture
from producer.dmabuf import DmaBuf
from producer.share import receive
from producer.sysfs import stats, video_nodes
from producer_procs import run_cli, running_producer, short_socket_path
from vcam_helpers import start_capture, video_node, vivid_capture_node

pytestmark = pytest.mark.guest

WIDTH, HEIGHT = 640, 480   # one of the sizes of vivid's webcam input
FRAME = WIDTH * HEIGHT * 2   # YUYV


@pytest.fixture(scope="module")
def vivid():
    """vivid's capture node, showing a still picture: colour bars without
    the moving text, so every frame it makes is the same."""
    node = vivid_capture_node()
    subprocess.run(["v4l2-ctl", "-d", node, "-c", "osd_text_mode=2",
                    f"--set-fmt-video=width={WIDTH},height={HEIGHT},pixelformat=YUYV"], check=True)
    yield node
    subprocess.run(["modprobe", "-r", "vivid"], capture_output=True)


@pytest.fixture(scope="module")
def picture(vivid, tmp_path_factory):
    """One of vivid's frames, captured from it directly: what every relayed frame must be."""
    out = tmp_path_factory.mktemp("vivid") / "frames.raw"
    subprocess.run(["v4l2-ctl", "-d", vivid, "--stream-mmap", "--stream-count=3", f"--stream-to={out}"],
                   check=True, capture_output=True)
    data = out.read_bytes()
    assert len(data) == 3 * FRAME
    frames = {data[i * FRAME:(i + 1) * FRAME] for i in range(3)}
    assert len(frames) == 1, "vivid's frames differ: the picture is not still"
    return frames.pop()


def mappings(pid: int) -> list[str]:
    """The DMA-BUF and video-device mappings of a process."""
    with open(f"/proc/{pid}/maps") as f:
        return [line.strip() for line in f if "dmabuf" in line or "/dev/video" in line]


def relay(vivid: str, *args: str):
    return running_producer(["--input", vivid, "--size", f"{WIDTH}x{HEIGHT}", "--format", "YUYV", *args])


def test_vivid_relayed_zero_copy_end_to_end_and_the_producer_maps_no_pixel(vivid, picture):
    sock = short_socket_path()
    with relay(vivid, "--share", sock, "--label", "Relayed") as producer:
        assert producer.ready["relayed_from"] == vivid and producer.ready["slot_memory"] == "external"
        assert producer.ready["header"] is False
        description, fds = receive(sock)
        bufs = [DmaBuf(FRAME, fd=fd) for fd in fds]
        frames, producer_maps = [], None
        with Capture(producer.device) as cap:
            cap.reqbufs(len(bufs), v4l2.V4L2_MEMORY_DMABUF)
            for i, buf in enumerate(bufs):
                cap.qbuf(i, buf.fd, buf.size)
            cap.streamon()
            for n in range(30):
                done = cap.dqbuf(timeout=30)
                assert done.bytesused == FRAME and not done.flags & v4l2.V4L2_BUF_FLAG_ERROR
                with bufs[done.index].cpu_access(write=False) as pixels:
                    frames.append(bytes(pixels[:FRAME]))
                if n == 15:
                    producer_maps = mappings(producer.proc.pid)
                cap.qbuf(done.index, bufs[done.index].fd, bufs[done.index].size)
            cap.streamoff()
        for buf in bufs:
            buf.close()
        counters = stats(producer.ready["device_nr"])
        done = producer.finish(sig=15)
    assert "relaying " + vivid in producer.stderr and "no frame is copied here" in producer.stderr
    assert producer_maps == [], producer_maps          # not one pixel of the frames in its address space
    assert all(frame == picture for frame in frames)   # each one whole, as vivid made it
    assert counters["frames_copied"] == 0 and counters["frames_zero_copy"] >= 30, counters
    assert done["frames_queued"] >= 30 and done["stopped_by"] == "SIGTERM"


def test_a_consumer_without_the_slots_gets_the_copy_path_with_the_same_pictures(vivid, picture, tmp_path):
    out = tmp_path / "copied.raw"
    with relay(vivid, "--frames", "12", "--label", "Relayed Copy") as producer:
        r = subprocess.run(["v4l2-ctl", "-d", producer.device, "--stream-mmap", "--stream-count=10",
                            f"--stream-to={out}"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        counters = stats(producer.ready["device_nr"])
    data = out.read_bytes()
    assert len(data) == 10 * FRAME
    assert all(data[i * FRAME:(i + 1) * FRAME] == picture for i in range(10))
    assert counters["frames_zero_copy"] == 0 and counters["frames_copied"] >= 10, counters


def test_a_size_the_source_cannot_give_is_decoded_with_a_note(vivid):
    # vivid's webcam input has a few fixed sizes; 200x150 is not one of them
    with running_producer(["--input", vivid, "--size", "200x150", "--format", "YUYV", "--label", "Decoded"]) as producer:
        consumer = run_cli(["consume", "--device", producer.device, "--frames", 10, "--verify", "--json"])
        assert producer.ready["relayed_from"] is None and producer.ready["header"] is True
        done = producer.finish(sig=15)
    assert consumer.returncode == 0, consumer.stdout + consumer.stderr
    notes = [line for line in producer.stderr.splitlines() if "note:" in line]
    assert len(notes) == 1 and f"{vivid} cannot be relayed without a copy (it gives " in notes[0] \
        and "not 200x150 YUYV): decoding it with ffmpeg instead" in notes[0], notes
    assert done["frames_queued"] >= 10


def test_a_device_that_is_no_capture_device_is_one_line_and_leaves_no_camera(vivid):
    output_node = video_node("vivid-000-vid-out")
    before = video_nodes()
    r = run_cli(["run", "--input", output_node, "--size", f"{WIDTH}x{HEIGHT}"])
    assert r.returncode == 1
    assert r.stderr == f"vcam-producer run: {output_node} is not a video capture device\n"
    assert video_nodes() == before


def test_the_source_busy_elsewhere_is_one_line(vivid):
    before = video_nodes()
    with Capture(vivid) as other:       # another program streaming from it
        other.reqbufs(2)
        for i in range(2):
            other.qbuf(i)
        other.streamon()
        r = run_cli(["run", "--input", vivid, "--size", f"{WIDTH}x{HEIGHT}"])
    assert r.returncode == 1
    assert r.stderr == f"vcam-producer run: {vivid} is busy: another program is streaming from it\n"
    assert video_nodes() == before


@pytest.mark.parametrize("while_idle", ["wait", "newest"])
def test_with_nobody_streaming_nothing_is_relayed_and_the_first_frame_is_fresh(vivid, picture, while_idle):
    """vivid runs on while nobody streams from the vcam camera: its frames
    go straight back to it (wait) or the newest is kept (newest), none is
    queued into vcam; a consumer that starts then gets a frame vivid made
    at most moments before it started, not one from seconds ago."""
    idle_s = 3
    with relay(vivid, "--while-idle", while_idle, "--label", "Relay Idle") as producer:
        nr = producer.ready["device_nr"]
        producer.wait_event("waiting")
        time.sleep(idle_s)
        assert stats(nr)["frames_queued"] == 0
        with Capture(producer.device) as cap:
            started = time.monotonic_ns()
            start_capture(cap, 2)
            first = cap.dqbuf(timeout=30)
            frame = cap.data(first)
            cap.streamoff()
        streaming = producer.wait_event("streaming")
        done = producer.finish(sig=15)
    assert frame == picture
    age = (started - first.timestamp_ns()) / 1e9
    assert age < 1.0, f"the first frame is {age:.3f} s older than the consumer (idle {idle_s} s)"
    assert streaming["frames_dropped"] > 0 and streaming["frames_queued"] == 0
    assert done["consumer_starts"] == 1 and done["idle_s"] >= idle_s
    print(f"relay, {while_idle}: first frame {age * 1e3:.1f} ms older than STREAMON; "
          f"{streaming['frames_dropped']} of vivid's frames given back while idle")
