"""vcamsink, the GStreamer sink that is a vcam camera, in real pipelines
with real consumers: frames intact on the copy path, vivid's DMA-BUFs
through v4l2src io-mode=dmabuf queued as they are and imported by the
consumer (zero-copy end to end by the driver's counters), new caps making a
new camera, EOS, flushing seeks and state changes, and bad input as one
GStreamer error with no camera left behind."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import IN_GUEST
from producer import v4l2
from producer.capture import Capture
from producer.sysfs import stats, video_nodes
from vcam_helpers import video_node, vivid_capture_node, wait_until

pytestmark = pytest.mark.guest

# GStreamer is started only where these tests run: started in the host
# tier's process at collection, it made a later test there that plots with
# matplotlib die of a segmentation fault.
if IN_GUEST:
    import gi
    gi.require_version("Gst", "1.0")
    from gi.repository import Gst
    Gst.init(None)

W, H = 64, 48
YUY2 = f"video/x-raw,format=YUY2,width={W},height={H},framerate=30/1"
FRAME = W * H * 2


def reference_frame(tmp_path, caps: str = YUY2, pattern: str = "colors") -> bytes:
    """One frame of videotestsrc's still pattern (colors: smpte's corner is
    noise), straight to a file: what every frame through vcam must be."""
    out = tmp_path / "reference.raw"
    subprocess.run(["gst-launch-1.0", "-q", "videotestsrc", "num-buffers=1", f"pattern={pattern}", "!", caps,
                    "!", "filesink", f"location={out}"], check=True, capture_output=True, timeout=300)
    return out.read_bytes()


def launch(*pipeline: str, user: list[str] = ()) -> subprocess.Popen:
    """gst-launch-1.0 -e -m (EOS on SIGINT, element messages on stdout)."""
    return subprocess.Popen([*user, "gst-launch-1.0", "-e", "-m", *pipeline], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def errors(out: str) -> list[str]:
    """The element errors gst-launch printed (it may print one twice)."""
    return sorted({line for line in out.splitlines() if line.startswith("ERROR: from element")})


def same_pictures(frames: list[bytes], picture: bytes) -> bool:
    """True when every frame is PICTURE; else an AssertionError saying how they differ."""
    bad = [i for i, f in enumerate(frames) if f != picture]
    if bad:
        f = frames[bad[0]]
        diff = [i for i in range(min(len(f), len(picture))) if f[i] != picture[i]]
        raise AssertionError(f"frames {bad} of {len(frames)} differ from the picture; frame {bad[0]}: "
                             f"{len(f)} bytes for {len(picture)}, {len(diff)} bytes differ, first at "
                             f"{diff[:1]}: {f[diff[0]:diff[0] + 16].hex() if diff else ''} for "
                             f"{picture[diff[0]:diff[0] + 16].hex() if diff else ''}")
    return True


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


class Pipeline:
    """A pipeline in this process, its bus read without a main loop."""

    def __init__(self, description: str):
        self.p = Gst.parse_launch(description)
        self.sink = self.p.get_by_name("sink")
        self.bus = self.p.get_bus()

    def play(self) -> None:
        assert self.p.set_state(Gst.State.PLAYING) != Gst.StateChangeReturn.FAILURE
        self.p.get_state(Gst.CLOCK_TIME_NONE)

    def wait(self, types=None, timeout_s: float = 120) -> "Gst.Message":
        types = types or Gst.MessageType.EOS
        msg = self.bus.timed_pop_filtered(int(timeout_s * Gst.SECOND), types | Gst.MessageType.ERROR)
        assert msg is not None, f"no {types} within {timeout_s} s"
        if msg.type == Gst.MessageType.ERROR:
            raise AssertionError(f"pipeline error: {msg.parse_error()[0].message}")
        return msg

    def stop(self) -> None:
        self.p.set_state(Gst.State.NULL)
        self.p.get_state(Gst.CLOCK_TIME_NONE)


def capture_frames(device: str, count: int, buffers: int = 4) -> list[bytes]:
    """COUNT frames from DEVICE into MMAP buffers (the driver copies)."""
    frames = []
    with Capture(device) as cap:
        cap.reqbufs(buffers)
        for i in range(cap.count):
            cap.qbuf(i)
        cap.streamon()
        while len(frames) < count:
            done = cap.dqbuf(timeout=60)
            assert not done.flags & v4l2.V4L2_BUF_FLAG_ERROR
            frames.append(cap.data(done))
            cap.qbuf(done.index)
        cap.streamoff()
    return frames


# --- the copy path, with gst-launch and real consumers ------------------------------------------


def test_gst_launch_videotestsrc_makes_a_camera_v4l2_ctl_captures_intact(tmp_path):
    picture = reference_frame(tmp_path)
    before = video_nodes()
    gst = launch("videotestsrc", "pattern=colors", "!", YUY2, "!", "vcamsink", "label=Lab Cam")
    try:
        device = wait_until(lambda: video_node("Lab Cam"), 120, "vcamsink's camera",
                            ignore=(AssertionError, OSError))
        out = tmp_path / "frames.raw"
        r = subprocess.run(["v4l2-ctl", "-d", device, "--stream-mmap", "--stream-count=20", f"--stream-to={out}"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        counters = stats(int(device.removeprefix("/dev/video")))
    finally:
        gst.send_signal(signal.SIGINT)
        stdout, stderr = gst.communicate(timeout=120)
    assert gst.returncode == 0, stdout + stderr
    data = out.read_bytes()
    assert len(data) == 20 * FRAME
    assert same_pictures([data[i * FRAME:(i + 1) * FRAME] for i in range(20)], picture)
    assert counters["frames_copied"] >= 20 and counters["frames_zero_copy"] == 0, counters
    # which path vcamsink took, as an element message; EOS on SIGINT; the camera gone with the pipeline
    assert f"vcamsink-camera, device=(string){device}, width=(int){W}, height=(int){H}, format=(string)YUYV" \
        in stdout, stdout
    assert f"vcamsink-path, device=(string){device}, path=(string)copy" in stdout, stdout
    assert "Got EOS from element" in stdout and not errors(stderr), stdout + stderr
    assert video_nodes() == before


def test_the_reference_consumer_checks_gstreamers_frames(tmp_path):
    picture = reference_frame(tmp_path, "video/x-raw,format=I420,width=64,height=48")
    pipeline = Pipeline("videotestsrc pattern=colors ! video/x-raw,format=I420,width=64,height=48,framerate=30/1 "
                        "! vcamsink name=sink label=\"Planar Cam\"")
    try:
        pipeline.play()
        device = pipeline.sink.get_property("device")
        with Capture(device) as cap:
            assert cap.fmt().pixelformat == v4l2.fourcc("YU12")
        r = subprocess.run(["vcam-producer", "consume", "--device", device, "--frames", "15", "--json"],
                           capture_output=True, text=True, timeout=300)
        frames = capture_frames(device, 5)
        path = pipeline.sink.get_property("path")
    finally:
        pipeline.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["frames"] == 15 and report["errored"] == 0 and report["sequence_gaps"] == 0, report
    assert same_pictures(frames, picture)
    assert path == "copy"


# --- zero-copy from an upstream DMA-BUF: vivid through v4l2src io-mode=dmabuf ------------------

VW, VH = 640, 480   # one of vivid's webcam sizes
VFRAME = VW * VH * 2


@pytest.fixture(scope="module")
def vivid(tmp_path_factory):
    """vivid showing a still picture (no moving text), and that picture."""
    node = vivid_capture_node()
    subprocess.run(["v4l2-ctl", "-d", node, "-c", "osd_text_mode=2",
                    f"--set-fmt-video=width={VW},height={VH},pixelformat=YUYV"], check=True)
    out = tmp_path_factory.mktemp("vivid") / "frames.raw"
    subprocess.run(["v4l2-ctl", "-d", node, "--stream-mmap", "--stream-count=3", f"--stream-to={out}"],
                   check=True, capture_output=True)
    data = out.read_bytes()
    frames = {data[i * VFRAME:(i + 1) * VFRAME] for i in range(3)}
    assert len(frames) == 1, "vivid's frames differ: the picture is not still"
    yield node, frames.pop()
    # vivid unloads: nothing here holds one of its buffers any more
    r = subprocess.run(["modprobe", "-r", "vivid"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_vivid_dmabufs_go_through_vcamsink_and_the_importing_consumer_without_a_copy(vivid, tmp_path):
    node, picture = vivid
    out = tmp_path / "frames.raw"
    r = subprocess.run([sys.executable, str(Path(__file__).parent / "gst_import_consumer.py"), node, str(VW), str(VH),
                        str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout.splitlines()[-1])
    before, after = result["before"], result["after"]
    data = out.read_bytes()
    assert result["path"] == "zero-copy"
    assert same_pictures([data[i * VFRAME:(i + 1) * VFRAME] for i in range(len(data) // VFRAME)], picture)
    assert len(data) == 30 * VFRAME   # each whole, as vivid made it
    assert after["frames_zero_copy"] - before["frames_zero_copy"] >= 30, (before, after)
    assert after["frames_copied"] == before["frames_copied"] == 0, (before, after)
    assert after["frames_errored"] == 0, after


def test_vivid_dmabufs_to_an_mmap_consumer_the_driver_copies_once(vivid, tmp_path):
    node, picture = vivid
    gst = launch("v4l2src", f"device={node}", "io-mode=dmabuf", "!",
                 f"video/x-raw,format=YUY2,width={VW},height={VH}", "!", "vcamsink", "label=Gst Relay")
    try:
        device = wait_until(lambda: video_node("Gst Relay"), 120, "vcamsink's camera",
                            ignore=(AssertionError, OSError))
        frames = capture_frames(device, 10)
        counters = stats(int(device.removeprefix("/dev/video")))
    finally:
        gst.send_signal(signal.SIGINT)
        stdout, stderr = gst.communicate(timeout=120)
    assert gst.returncode == 0, stdout + stderr
    assert f"vcamsink-path, device=(string){device}, path=(string)zero-copy" in stdout, stdout
    assert "path=(string)copy" not in stdout, stdout
    assert same_pictures(frames, picture)
    assert counters["frames_copied"] >= 10 and counters["frames_zero_copy"] == 0, counters


# --- GStreamer's own events and states ------------------------------------------------------


def test_new_caps_make_a_new_camera_of_the_new_size_and_format():
    def camera_format():
        with Capture(video_node("Resized")) as cap:
            fmt = cap.fmt()
        return fmt.width, fmt.height, fmt.pixelformat

    before = video_nodes()
    pipeline = Pipeline(f"videotestsrc ! capsfilter name=caps caps={YUY2} ! vcamsink name=sink label=\"Resized\"")
    try:
        pipeline.play()
        assert camera_format() == (W, H, v4l2.fourcc("YUYV"))
        pipeline.p.get_by_name("caps").set_property(
            "caps", Gst.Caps.from_string("video/x-raw,format=GRAY8,width=32,height=24,framerate=30/1"))
        wait_until(lambda: camera_format() == (32, 24, v4l2.fourcc("GREY")), 60, "the camera of the new caps",
                   ignore=(OSError, AssertionError))
        device = pipeline.sink.get_property("device")
        frames = capture_frames(device, 3)
        cameras = len(video_nodes() - before)
    finally:
        pipeline.stop()
    assert cameras == 1   # the first camera went with its caps
    assert all(len(f) == 32 * 24 for f in frames)


def test_eos_waits_until_the_consumer_has_every_queued_frame():
    pipeline = Pipeline(f"videotestsrc num-buffers=60 ! {YUY2} ! vcamsink name=sink label=\"Draining\"")
    got = []
    try:
        pipeline.p.set_state(Gst.State.PAUSED)
        pipeline.p.get_state(Gst.CLOCK_TIME_NONE)   # prerolled: the camera exists
        device = pipeline.sink.get_property("device")
        nr = int(device.removeprefix("/dev/video"))
        with Capture(device) as cap:
            cap.reqbufs(4)
            for i in range(cap.count):
                cap.qbuf(i)
            cap.streamon()   # streaming before the first frame: vcamsink drops none

            def consume():
                while len(got) < 60:
                    done = cap.dqbuf(timeout=120)
                    got.append(done.sequence)
                    cap.qbuf(done.index)

            consumer = threading.Thread(target=consume)
            consumer.start()
            pipeline.play()
            pipeline.wait(Gst.MessageType.EOS)
            at_eos = stats(nr)   # EOS came after every frame was delivered and handed back
            consumer.join(180)
            cap.streamoff()
    finally:
        pipeline.stop()
    assert at_eos["frames_queued"] == at_eos["frames_dequeued"] == at_eos["frames_copied"] == 60, at_eos
    assert got == list(range(60))


def test_a_flushing_seek_wakes_a_sink_waiting_for_a_slot():
    pipeline = Pipeline(f"videotestsrc ! {YUY2} ! vcamsink name=sink label=\"Seeking\" slots=2")
    try:
        pipeline.play()
        device = pipeline.sink.get_property("device")
        nr = int(device.removeprefix("/dev/video"))
        with Capture(device) as cap:
            # a consumer that streams and takes nothing: both slots stay queued
            cap.reqbufs(2)
            for i in range(cap.count):
                cap.qbuf(i)
            cap.streamon()
            wait_until(lambda: stats(nr)["frames_queued"] - stats(nr)["frames_dequeued"] == 2, 60,
                       "both slots queued")
            assert pipeline.p.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH, 0)
            pipeline.p.get_state(Gst.CLOCK_TIME_NONE)
            # the stream goes on after the seek as soon as the consumer takes frames again
            for _ in range(5):
                done = cap.dqbuf(timeout=60)
                cap.qbuf(done.index)
            cap.streamoff()
    finally:
        pipeline.stop()


def test_null_playing_null_again_and_again_leaves_no_camera_and_no_fd():
    before_nodes = video_nodes()
    pipeline = Pipeline(f"videotestsrc ! {YUY2} ! vcamsink name=sink label=\"Cycled\"")
    pipeline.play()   # the first round loads libraries and opens what stays open
    pipeline.stop()
    before_fds = open_fds()
    devices = []
    for _ in range(3):
        pipeline.play()
        devices.append(pipeline.sink.get_property("device"))
        assert os.path.exists(devices[-1])
        pipeline.stop()
        assert pipeline.sink.get_property("device") is None
        assert video_nodes() == before_nodes
    assert open_fds() == before_fds


# --- bad input: one GStreamer error, nothing left behind --------------------------------------


def run_bad(*pipeline: str, user: list[str] = ()) -> tuple[int, list[str], str]:
    gst = launch(*pipeline, user=user)
    stdout, stderr = gst.communicate(timeout=300)
    return gst.returncode, errors(stderr), stdout + stderr


def test_caps_vcam_cannot_carry_fail_negotiation():
    before = video_nodes()
    rc, _, out = run_bad("videotestsrc", "num-buffers=5", "!", "video/x-raw,format=RGBA", "!", "vcamsink")
    assert rc == 1
    assert "could not link videotestsrc0 to vcamsink0, vcamsink0 can't handle caps video/x-raw, " \
           "format=(string)RGBA" in out, out
    assert video_nodes() == before


def test_a_camera_over_the_drivers_memory_limit_is_one_error():
    before = video_nodes()
    rc, errs, out = run_bad("videotestsrc", "num-buffers=1", "!", "video/x-raw,format=BGRx,width=8192,height=8192",
                            "!", "vcamsink")
    assert rc == 1
    assert errs == ["ERROR: from element /GstPipeline:pipeline0/GstVcamSink:vcamsink0: cannot make a vcam camera: "
                    "this camera's slot buffers and 2 capture buffers need more than the 1024 MiB the vcam module "
                    "allows per camera (use fewer slots or a smaller frame) (max_camera_mb); raise it as root with: "
                    "echo N > /sys/module/vcam/parameters/max_camera_mb, or load the module with: "
                    "modprobe vcam max_camera_mb=N"], out
    assert video_nodes() == before


def test_a_size_the_driver_refuses_is_one_error_with_its_reason():
    before = video_nodes()
    rc, errs, out = run_bad("videotestsrc", "num-buffers=1", "!", "video/x-raw,format=YUY2,width=63,height=48",
                            "!", "vcamsink", "label=Odd")
    assert rc == 1
    assert errs == ["ERROR: from element /GstPipeline:pipeline0/GstVcamSink:vcamsink0: cannot make a vcam camera: "
                    "the driver refused a 63x48 YUYV camera with 4 slots labelled 'Odd': Invalid argument"], out
    assert video_nodes() == before


def test_no_permission_on_dev_vcam_is_one_error():
    before = video_nodes()
    rc, errs, out = run_bad("videotestsrc", "num-buffers=1", "!", YUY2, "!", "vcamsink",
                            user=["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
    assert rc == 1
    assert errs == ["ERROR: from element /GstPipeline:pipeline0/GstVcamSink:vcamsink0: cannot make a vcam camera: "
                    "cannot open /dev/vcam: permission denied (run as root or join the group that owns it)"], out
    assert video_nodes() == before
