"""vcam-producer run and consume against the real module: the device it
prints, JSON, clean exits on signals, fds and cameras never leaked, frame
sources (still image, video file, another camera), bad input that only the
guest can show (permissions, a socket in use)."""

import json
import os
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from producer import cli, formats, integrity, produce
from producer.camera import VirtualCamera
from producer.consume import consume
from producer.dmabuf import system_allocator
from producer.sysfs import stats, video_nodes
from producer_procs import CLI, run_cli, running_producer, short_socket_path
from vcam_helpers import wait_until

pytestmark = pytest.mark.guest


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.every_kernel
def test_run_prints_the_device_and_consume_verifies_it():
    before = video_nodes()
    proc = subprocess.Popen(CLI + ["run", "--size", "320x240", "--fps", "0", "--frames", "40",
                                   "--pattern", "counter", "--label", "Plain Output"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    device = proc.stdout.readline().strip()
    assert device.startswith("/dev/video"), device
    consumer = run_cli(["consume", "--device", device, "--frames", 40, "--verify"])
    out, err = proc.communicate(timeout=120)
    assert consumer.returncode == 0, consumer.stdout + consumer.stderr
    assert "40 frames, 0 missing, 0 out of order, 0 torn, 0 corrupt" in consumer.stdout
    assert "latency ms: p50" in consumer.stdout
    assert proc.returncode == 0, err
    assert "40 frames in" in err and "40 slots returned" in err
    assert video_nodes() == before


@pytest.mark.every_kernel
def test_run_uses_the_drivers_slot_buffers_where_there_is_no_allocator():
    """6.1 has no DMA-BUF heap and no udmabuf: run says so in one line and
    takes the driver's own slot buffers; elsewhere it takes the system's."""
    with running_producer(["--size", "64x48", "--fps", "0", "--frames", "3"]) as producer:
        consumer = run_cli(["consume", "--device", producer.device, "--frames", 3, "--verify"])
        assert consumer.returncode == 0, consumer.stdout + consumer.stderr
        producer.finish(timeout=60)
    ready = producer.ready
    notes = [line for line in producer.stderr.splitlines() if "note:" in line]
    if system_allocator() is None:
        assert ready["slot_memory"] == "driver"
        assert len(notes) == 1 and "no DMA-BUF allocator" in notes[0] and "driver's own slot buffers" in notes[0]
    else:
        assert ready["slot_memory"] == system_allocator()
        assert notes == []


@pytest.mark.every_kernel
@pytest.mark.skipif(system_allocator() is not None, reason="this kernel has a DMA-BUF allocator")
def test_system_slot_memory_where_there_is_none_is_one_line():
    before = video_nodes()
    proc = run_cli(["run", "--slot-memory", "system", "--frames", "1"])
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "no DMA-BUF allocator" in proc.stderr, proc.stderr
    assert video_nodes() == before  # the camera made before the refusal is gone


@pytest.mark.parametrize("sig", [pytest.param(signal.SIGTERM, marks=pytest.mark.every_kernel), signal.SIGINT])
def test_a_signal_ends_the_run_cleanly(sig):
    before = video_nodes()
    sock = short_socket_path()
    with running_producer(["--fps", "200", "--size", "160x120", "--share", sock]) as producer:
        assert Path(f"/sys/class/video4linux/{Path(producer.device).name}").exists()
        consumer = run_cli(["consume", "--import", sock, "--frames", 20, "--verify", "--json"])
        assert consumer.returncode == 0, consumer.stderr
        done = producer.finish(sig=sig, timeout=60)
    assert done["stopped_by"] == sig.name
    assert done["frames_queued"] >= 20
    assert not os.path.exists(sock)  # socket removed
    assert video_nodes() == before  # camera removed


@pytest.mark.parametrize("frames, sig, status", [(0, signal.SIGINT, 0), (100_000, signal.SIGTERM, 1)])
def test_a_signal_ends_a_capture_with_its_report(frames, sig, status):
    """--frames 0 captures until a signal, which is a normal end (status 0);
    a signal before N frames is an early end (status 1). Both report."""
    with running_producer(["--fps", "100", "--size", "160x120"]) as producer:
        consumer = subprocess.Popen(CLI + ["consume", "--device", producer.device, "--frames", str(frames),
                                           "--verify", "--json"], stdout=subprocess.PIPE, text=True)
        wait_for_frames(producer.device, 30)
        consumer.send_signal(sig)
        out, _ = consumer.communicate(timeout=60)
        producer.finish(sig=signal.SIGINT, timeout=60)
    report = json.loads(out)
    assert consumer.returncode == status, report
    assert report["stopped_by"] == sig.name
    assert report["ended"] == (None if frames == 0 else f"stopped by {sig.name}")
    # 30 frames were copied; up to 4 of them may still sit in the consumer's buffers
    assert report["frames"] >= 26 and report["sequence_gaps"] == 0 and report["torn"] == 0
    assert report["latency_ms"]["p50"] > 0


def wait_for_frames(device: str, n: int, timeout: float = 60, counter: str = "frames_copied") -> None:
    nr = int(Path(device).name.removeprefix("video"))
    wait_until(lambda: stats(nr)[counter] >= n, timeout, f"{n} {counter} on {device}")


def test_virtual_camera_leaves_no_fd_behind():
    fds = open_fds()
    with VirtualCamera(64, 48, "YUYV", label="Fd Count", slots=3) as cam:
        assert len(open_fds() - fds) >= 4  # the control node and three DMA-BUFs
        cam.write(0, bytes(cam.size))
        cam.queue(0)
    assert open_fds() == fds
    with pytest.raises(OSError):
        VirtualCamera(64, 48, "YUYV", label="bad!label", slots=3)
    assert open_fds() == fds
    with pytest.raises(OSError):
        consume("/dev/video-none", frames=1)
    assert open_fds() == fds


def test_a_failed_run_leaves_no_camera_and_no_fd(tmp_path, capsys):
    """The camera exists by the time --share fails: it must go again."""
    not_a_socket = tmp_path / "plain-file"
    not_a_socket.write_text("")
    before, fds = video_nodes(), open_fds()
    assert cli.main(["run", "--frames", "1", "--share", str(not_a_socket)]) == 1
    # (a kernel without a DMA-BUF allocator adds its note line first)
    errors = [line for line in capsys.readouterr().err.splitlines() if " note: " not in line]
    assert len(errors) == 1 and "is not a socket" in errors[0]
    assert video_nodes() == before
    assert open_fds() == fds


def test_a_socket_in_use_is_refused():
    sock = short_socket_path()
    before = video_nodes()
    with running_producer(["--share", sock, "--size", "64x48"]) as first:
        second = run_cli(["run", "--share", sock, "--frames", "1"])
        assert second.returncode == 1
        assert second.stderr.strip().endswith("another producer is listening there"), second.stderr
        assert "Traceback" not in second.stderr
        assert video_nodes() == before | {Path(first.device).name}


def test_no_permission_on_dev_vcam():
    before = video_nodes()
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *CLI, "run"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip() == "vcam-producer run: cannot open /dev/vcam: permission denied (run as root or join the group that owns it)"
    assert video_nodes() == before


def test_an_input_file_without_read_permission():
    # pytest's tmp_path is private to root; nobody must reach the file itself
    folder = Path(tempfile.mkdtemp(prefix="vcam-", dir="/tmp"))
    folder.chmod(0o755)
    secret = folder / "secret.png"
    secret.write_bytes(b"not for nobody")
    secret.chmod(0o000)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *CLI, "run",
                        "--input", str(secret)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip() == f"vcam-producer run: cannot read input {secret}: permission denied"


# --- frame sources -------------------------------------------------------------


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-hide_banner", "-loglevel", "error", *args],
                   check=True, timeout=300)


def capture_frames(device: str, count: int, out: Path) -> bytes:
    r = subprocess.run(["v4l2-ctl", "-d", device, "--stream-mmap", f"--stream-count={count}",
                        f"--stream-to={out}"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


def test_still_image_is_the_picture_in_the_camera_format(tmp_path):
    image = tmp_path / "still.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240", "-frames:v", "1", str(image))
    reference = tmp_path / "still.nv12"
    ffmpeg("-i", str(image), "-vf", "scale=160:120", "-pix_fmt", "nv12", "-f", "rawvideo", str(reference))
    expected = reference.read_bytes()
    with running_producer(["--input", image, "--size", "160x120", "--format", "NV12", "--fps", "0"]) as producer:
        data = capture_frames(producer.device, 3, tmp_path / "out.raw")
    size = formats.lookup("NV12").frame_size(160, 120)
    assert len(expected) == size and len(data) == 3 * size
    for i in range(3):
        frame = data[i * size:(i + 1) * size]
        header, problem = integrity.check(frame)
        assert problem is None and header.sequence == i
        assert frame[integrity.HEADER_SIZE:] == expected[integrity.HEADER_SIZE:]


def test_video_file_plays_every_frame_once(tmp_path):
    video = tmp_path / "clip.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-frames:v", "30", "-c:v", "ffv1", str(video))
    with running_producer(["--input", video, "--size", "160x120", "--fps", "0"]) as producer:
        consumer = run_cli(["consume", "--device", producer.device, "--frames", 30, "--verify", "--json"])
        done = producer.finish(timeout=120)
    report = json.loads(consumer.stdout)
    assert report["ok"] and report["frames"] == 30 and report["last_sequence"] == 29
    assert done["source_ended"] and done["frames_queued"] == 30 and done["in_flight"] == 0


def test_another_camera_as_input(tmp_path):
    """A vcam camera captured by ffmpeg (--no-relay: decoded, not relayed as
    tests/test_producer_relay.py's are) is the input of a second producer."""
    with running_producer(["--pattern", "gradient", "--size", "160x120", "--fps", "60", "--no-header",
                           "--label", "Upstream"]) as upstream:
        with running_producer(["--input", upstream.device, "--no-relay", "--size", "160x120", "--format", "YUYV",
                               "--fps", "0", "--label", "Downstream"]) as downstream:
            consumer = run_cli(["consume", "--device", downstream.device, "--frames", 20, "--verify", "--json"])
    report = json.loads(consumer.stdout)
    assert consumer.returncode == 0 and report["ok"] and report["frames"] == 20, consumer.stdout


# --- real consumers ----------------------------------------------------------------


@pytest.fixture
def live_camera():
    with running_producer(["--pattern", "counter", "--size", "320x240", "--fps", "0",
                           "--label", "Real Consumers"]) as producer:
        yield producer


def test_gstreamer_v4l2src(live_camera):
    r = subprocess.run(["gst-launch-1.0", "-q", "v4l2src", f"device={live_camera.device}", "num-buffers=30",
                        "!", "fakesink"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ffmpeg_to_a_file(live_camera, tmp_path):
    out = tmp_path / "capture.yuv"
    r = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "v4l2",
                        "-i", live_camera.device, "-frames:v", "25", "-c:v", "rawvideo", "-f", "rawvideo",
                        str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    size = live_camera.ready["frame_size"]
    data = out.read_bytes()
    assert len(data) == 25 * size
    headers = [integrity.check(data[i * size:(i + 1) * size]) for i in range(25)]
    assert all(problem is None for _, problem in headers)


def test_v4l2_ctl_stream_mmap_frames_are_whole_and_consecutive(live_camera, tmp_path):
    size = live_camera.ready["frame_size"]
    data = capture_frames(live_camera.device, 40, tmp_path / "frames.raw")
    assert len(data) == 40 * size
    sequences = []
    for i in range(40):
        header, problem = integrity.check(data[i * size:(i + 1) * size])
        assert problem is None, f"frame {i}: {problem}"
        sequences.append(header.sequence)
    assert sequences == list(range(sequences[0], sequences[0] + 40))


def test_ctrl_c_in_process_frees_everything(capsys, monkeypatch):
    """cli.main() as a library call, interrupted: every fd closed, camera
    gone. The SIGINT comes once the run is ready for it (its handlers
    installed: the loop, with no consumer, then waits for one), not on a
    timer that may fire before."""
    before, fds = video_nodes(), open_fds()
    handlers_installed = threading.Event()

    class ReadyStopSignals(produce.StopSignals):
        def __init__(self):
            super().__init__()
            handlers_installed.set()

    monkeypatch.setattr(produce, "StopSignals", ReadyStopSignals)
    failed = []

    def interrupt_once_running():
        try:
            wait_until(handlers_installed.is_set, 120, "the run to install its signal handlers")
        except AssertionError as e:
            failed.append(e)
        os.kill(os.getpid(), signal.SIGINT)  # ends the run either way

    interrupter = threading.Thread(target=interrupt_once_running)
    interrupter.start()
    try:
        assert cli.main(["run", "--size", "64x48", "--fps", "50", "--slots", "4", "--json"]) == 0
    finally:
        interrupter.join(10)
    assert not failed, failed
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done["stopped_by"] == "SIGINT"
    assert done["frames_queued"] == 0 and done["consumer_starts"] == 0  # nobody came
    assert video_nodes() == before
    assert open_fds() == fds


def test_pacing_never_runs_ahead_of_the_clock(tmp_path):
    """Frame n is never queued before start + n/fps (a lower bound only:
    a slow machine may be late, never early). The bound is from the loop's
    own start, not from the first frame, which may itself be late."""
    fps, count = 25, 40
    with running_producer(["--pattern", "smpte", "--size", "160x120", "--fps", fps, "--frames", count]) as producer:
        data = capture_frames(producer.device, count, tmp_path / "paced.raw")
        done = producer.finish(timeout=120)
    size = producer.ready["frame_size"]
    headers = [integrity.unpack(data[i * size:(i + 1) * size]) for i in range(count)]
    for header in headers:
        due = done["started_ns"] + header.sequence * 1e9 / fps
        assert header.timestamp_ns >= due, f"frame {header.sequence} came {(due - header.timestamp_ns) / 1e6:.3f} ms early"
    assert done["elapsed_s"] >= (count - 1) / fps
    print(f"paced at {fps} fps: {done['fps']:.2f} fps measured, {done['late']} late")
