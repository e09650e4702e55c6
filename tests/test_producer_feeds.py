"""Feeding a camera from Python (producer.pyvirtualcam) and from a pipe
(`vcam-producer run --input -`) on the real module, with real consumers
(v4l2-ctl): what arrives is the frame sent, converted as ffmpeg converts
it, in order; the driver's counters agree; a last frame cut short ends the
run cleanly; bad input is one line and leaves no camera and no fd. The
host half is test_producer_feeds_host.py."""

import errno
import fcntl
import json
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from producer import formats, integrity
from producer.capture import Capture
from producer.pyvirtualcam import Camera, CameraError, PixelFormat
from producer.uapi import VCAM_STATUS_STREAMING
from producer.sysfs import counter, stats, video_nodes
from producer_procs import CLI, running_producer
from test_producer_pixels import HEIGHT, TOLERANCE, WIDTH, disagreement, ffmpeg_convert, test_picture
from vcam_helpers import wait_until

pytestmark = pytest.mark.guest

ROOT = Path(__file__).resolve().parent.parent
YUYV = formats.lookup("YUYV")


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def capture(device: str, count: int, out: Path) -> bytes:
    """COUNT frames from DEVICE by v4l2-ctl (mmap: the driver's copy path)."""
    r = subprocess.run(["v4l2-ctl", "-d", device, "--stream-mmap", f"--stream-count={count}",
                        f"--stream-to={out}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


def frames_of(data: bytes, size: int) -> list[bytes]:
    assert len(data) % size == 0, f"{len(data)} bytes is not a whole number of {size}-byte frames"
    return [data[i:i + size] for i in range(0, len(data), size)]


# --- Python ---------------------------------------------------------------------------------


def streaming(cam: Camera) -> bool:
    """Whether a consumer streams from the Python camera (VCAM_IOC_STATUS)."""
    return bool(cam._cam.ctl.status() & VCAM_STATUS_STREAMING)


def capture_in_background(cam: Camera, count: int, out: Path) -> threading.Thread:
    """v4l2-ctl capturing COUNT frames from CAM into OUT, started and streaming."""
    consumer = threading.Thread(target=lambda: capture(cam.device, count, out))
    consumer.start()
    wait_until(lambda: streaming(cam) or not consumer.is_alive(), 120, "the consumer to stream")
    return consumer


def test_bgr_frames_arrive_as_ffmpegs_yuyv_in_order(tmp_path):
    """Two BGR frames sent with nobody streaming are dropped, not queued
    (the driver counts none). Four sent while a consumer streams reach it,
    in order, each within 1 per sample of ffmpeg's conversion of the same
    BGR bytes; the driver counts four frames queued and copied. One sent
    after the consumer stopped is dropped again."""
    picture = np.ascontiguousarray(test_picture()[..., ::-1])  # BGR
    sent = [np.roll(picture, 8 * k, axis=1) for k in range(6)]
    before, fds = video_nodes(), open_fds()
    out = tmp_path / "bgr.yuyv"
    with Camera(WIDTH, HEIGHT, 30, fmt=PixelFormat.BGR, label="Python Bgr", slots=4) as cam:
        assert (cam.camera_fmt, cam.native_fmt, cam.backend) == ("YUYV", PixelFormat.YUYV, "vcam")
        nr = int(cam.device.removeprefix("/dev/video"))
        for frame in sent[:2]:
            cam.send(frame)
        assert (cam.frames_sent, cam.frames_dropped) == (2, 2) and stats(nr)["frames_queued"] == 0
        consumer = capture_in_background(cam, 4, out)
        for frame in sent[2:]:
            cam.send(frame)
        consumer.join(120)
        assert not consumer.is_alive()
        counters = stats(nr)
        cam.send(sent[0])
        assert (cam.frames_sent, cam.frames_dropped) == (7, 3) and stats(nr)["frames_queued"] == 4
    assert counters["frames_queued"] == 4 and counters["frames_copied"] == 4 and counters["frames_errored"] == 0
    size = YUYV.frame_size(WIDTH, HEIGHT)
    data = out.read_bytes()
    # one ffmpeg run for the four: frames stacked vertically convert row by row alike in 4:2:2
    expected = frames_of(ffmpeg_convert(np.concatenate(sent[2:]), "yuyv422", in_pix_fmt="bgr24").tobytes(), size)
    for k, (got, want) in enumerate(zip(frames_of(data, size), expected, strict=True)):
        worst = disagreement(np.frombuffer(got, np.uint8), np.frombuffer(want, np.uint8), YUYV)
        assert max(worst) <= TOLERANCE, f"frame {k}: largest difference {worst}"
        if k:  # each frame is its own, not a repeat of the one before
            assert max(disagreement(np.frombuffer(got, np.uint8), np.frombuffer(expected[k - 1], np.uint8),
                                    YUYV)) > 10 * TOLERANCE
    assert video_nodes() == before and open_fds() == fds


def readme_program() -> str:
    """The README's example of a pyvirtualcam program moved to vcam."""
    text = (ROOT / "README.md").read_text()
    [program] = [block for block in re.findall(r"```python\n(.*?)```", text, re.S)
                 if "from producer import pyvirtualcam" in block]
    return program


def test_the_readme_program_streams_to_a_v4l2_application(tmp_path):
    """The README's program as it is written, a real consumer capturing
    while it runs: blue frames (BT.601 limited range: Y' 41, Cb 240, Cr
    110) with a white bar (235, 128, 128) 4 to 8 pixels wide; then the
    program ends by itself and its camera is gone."""
    before = video_nodes()
    script = tmp_path / "program.py"
    script.write_text(readme_program())
    program = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        device = program.stdout.readline().strip()
        assert re.fullmatch(r"/dev/video\d+", device), device + program.stderr.read()
        data = capture(device, 5, tmp_path / "readme.yuyv")
        out, err = program.communicate(timeout=120)
    finally:
        if program.poll() is None:
            program.kill()
            program.wait()
    assert program.returncode == 0 and err == "", err
    for k, frame in enumerate(frames_of(data, YUYV.frame_size(320, 240))):
        y0, u, y1, v = np.frombuffer(frame, np.uint8).reshape(240, 160, 4).transpose(2, 0, 1).astype(int)
        white = (np.abs(y0[0] - 235) <= 1) & (np.abs(u[0] - 128) <= 1) & (np.abs(v[0] - 128) <= 1)
        assert 2 <= white.sum() <= 4, f"frame {k}: {white.sum()} white pixel pairs in the first row"
        for plane, blue, bar in ((y0, 41, 235), (y1, 41, 235), (u, 240, 128), (v, 110, 128)):
            expected = np.where(white[None, :], bar, blue)
            assert np.abs(plane - expected).max() <= 1, f"frame {k}: not blue with a white bar"
    assert video_nodes() == before


def test_bad_input_is_one_line_and_leaves_nothing(tmp_path):
    """A size the driver refuses; a device it did not make; a bad frame on a
    live camera (which goes on working); no permission on /dev/vcam."""
    before, fds = video_nodes(), open_fds()
    with pytest.raises(CameraError) as e:
        Camera(9000, 480, 30)
    assert str(e.value) == "[Errno 22] the driver refused a 9000x480 YUYV camera with 4 slots labelled 'vcam': Invalid argument"
    assert video_nodes() == before and open_fds() == fds
    with pytest.raises(CameraError) as e:
        Camera(64, 48, 30, device="/dev/video99")
    assert re.fullmatch(r"\[Errno 19\] vcam made /dev/video\d+, not /dev/video99: the driver numbers new cameras "
                        r"itself \(device=None takes the one it made\)", str(e.value)), str(e.value)
    assert video_nodes() == before and open_fds() == fds
    with Camera(64, 48, 30, fmt=PixelFormat.GRAY, camera_fmt="GREY") as cam:
        with pytest.raises(ValueError, match=r"unexpected frame shape for GRAY: \(48, 64, 3\) != \(48, 64\)"):
            cam.send(np.zeros((48, 64, 3), np.uint8))
        frame = np.arange(64 * 48, dtype=np.uint32).astype(np.uint8).reshape(48, 64)
        consumer = capture_in_background(cam, 1, tmp_path / "grey.raw")
        cam.send(frame)
        consumer.join(120)
        assert (cam.frames_sent, cam.frames_dropped) == (1, 0)
        assert (tmp_path / "grey.raw").read_bytes() == frame.tobytes()  # GREY passes as it is
    assert video_nodes() == before and open_fds() == fds
    program = "from producer import pyvirtualcam\npyvirtualcam.Camera(64, 48, 30)\n"
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", program],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == ("producer.pyvirtualcam.CameraError: [Errno 13] cannot open /dev/vcam: "
                                         "permission denied (run as root or join the group that owns it)")
    assert video_nodes() == before


def test_send_waits_for_a_slot_while_a_consumer_streams(tmp_path):
    """With a consumer streaming, a send() that finds every slot queued
    waits for one (back-pressure) instead of dropping: the consumer gets
    every frame sent after it started, none dropped; those sent before it
    started were dropped, not queued."""
    with Camera(WIDTH, HEIGHT, 30, fmt=PixelFormat.GRAY, camera_fmt="GREY", slots=2) as cam:
        out = tmp_path / "frames.raw"
        consumer = threading.Thread(target=lambda: capture(cam.device, 12, out))
        consumer.start()
        nr = int(cam.device.removeprefix("/dev/video"))
        try:
            n = 0
            while consumer.is_alive() and n < 200:  # frames the consumer has not taken yet are never waited for
                cam.send(np.full((HEIGHT, WIDTH), n, np.uint8))
                n += 1
                cam.sleep_until_next_frame()
        finally:
            consumer.join(120)
        dropped, counters = cam.frames_dropped, stats(nr)
    values = [frame[0] for frame in frames_of(out.read_bytes(), WIDTH * HEIGHT)]
    assert len(values) == 12
    # Frames sent before the consumer streamed were dropped; once it streamed, none: it got a run of
    # consecutive ones, the first sent after it started.
    assert values == list(range(values[0], values[0] + 12)), values
    assert dropped >= values[0]
    assert counters["frames_queued"] == n - dropped and counters["frames_errored"] == 0


# --- a pipe ---------------------------------------------------------------------------------


def test_a_pipe_is_drained_while_nobody_watches_and_ends_cleanly_mid_frame(tmp_path):
    """A pipe is live: while nobody streams, its frames are read and dropped
    (the writer never backs up), nothing queued. Once a consumer streams,
    ffmpeg's raw YUYV frames and half a frame more on the producer's
    standard input: the five whole frames reach the consumer intact, as
    frames 0 to 4, the half is dropped with one note line, and the run
    ends with status 0."""
    raw = tmp_path / "six.yuyv"
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
                    "-i", f"testsrc=size={WIDTH}x{HEIGHT}:rate=30", "-frames:v", "6", "-f", "rawvideo",
                    "-pix_fmt", "yuyv422", str(raw)], check=True, timeout=120)
    size = YUYV.frame_size(WIDTH, HEIGHT)
    unseen, *frames = frames_of(raw.read_bytes(), size)
    assert len(frames) == 5
    before = video_nodes()
    out = tmp_path / "piped.yuyv"
    with running_producer(["--input", "-", "--size", f"{WIDTH}x{HEIGHT}", "--format", "YUYV", "--fps", "0",
                           "--label", "Piped In"], stdin=unseen, stdin_open=True) as producer:
        producer.wait_event("waiting")
        nr = producer.ready["device_nr"]
        consumer = threading.Thread(target=lambda: capture(producer.device, 5, out))
        consumer.start()
        streaming = producer.wait_event("streaming")
        assert streaming["frames_dropped"] == 1 and stats(nr)["frames_queued"] == 0
        producer.proc.stdin.buffer.write(b"".join(frames) + frames[0][: size // 2])
        producer.proc.stdin.close()
        consumer.join(120)
        done = producer.finish(timeout=120)
    for i, (got, sent) in enumerate(zip(frames_of(out.read_bytes(), size), frames, strict=True)):
        header, problem = integrity.check(got)
        assert problem is None and header.sequence == i, problem
        assert got[integrity.HEADER_SIZE:] == sent[integrity.HEADER_SIZE:], f"frame {i} is not the one piped in"
    assert done["source_ended"] and done["frames_queued"] == 5 and done["in_flight"] == 0
    assert done["frames_dropped"] == 1
    assert done["driver"]["frames_queued"] == 5 and done["driver"]["frames_errored"] == 0
    notes = [line for line in producer.stderr.splitlines() if " note: " in line]
    assert f"vcam-producer run: note: the input ended {size // 2} bytes into frame 5 (a frame is {size} bytes); " \
           "that partial frame was dropped" in notes
    assert len([n for n in notes if "partial frame" in n]) == 1
    assert video_nodes() == before


def three_frames_to_a_consumer_that_dequeues(after: float | None) -> tuple[list[bytes], dict, str, int | None]:
    """A run fed three frames by a pipe, then its end, with a consumer
    streaming that dequeues nothing until the three are filled and AFTER
    seconds more (None: never); what it dequeued, the run's report, its
    standard error, and the errno of a DQBUF once the run had ended."""
    size = YUYV.frame_size(WIDTH, HEIGHT)
    frames = [bytes([40 + 60 * n]) * size for n in range(3)]
    got, failed = [], None
    with running_producer(["--input", "-", "--size", f"{WIDTH}x{HEIGHT}", "--format", "YUYV", "--fps", "0"],
                          stdin=bytes(size), stdin_open=True) as producer:
        producer.wait_event("waiting")
        nr = producer.ready["device_nr"]
        with Capture(producer.device) as cap:
            cap.reqbufs(4)
            for i in range(cap.count):
                cap.qbuf(i)
            cap.streamon()
            producer.wait_event("streaming")
            producer.proc.stdin.buffer.write(b"".join(frames))
            producer.proc.stdin.close()
            wait_until(lambda: counter(nr, "capture_done") == 3, 60, "the three frames filled for the consumer")
            if after is not None:
                time.sleep(after)
                assert producer.proc.poll() is None, "the run ended while its last frames waited for the consumer"
                got = [cap.data(cap.dqbuf(timeout=10)) for _ in frames]
            done = producer.finish(timeout=120)
            try:
                cap.dqbuf(timeout=10)
            except OSError as e:
                failed = e.errno
    for i, (frame, sent) in enumerate(zip(got, frames)):
        assert frame[integrity.HEADER_SIZE:] == sent[integrity.HEADER_SIZE:], f"frame {i} is not the one piped in"
    return got, done, producer.stderr, failed


def test_the_run_closes_the_camera_only_once_the_consumer_dequeued_the_last_frames():
    """Closing the camera takes away frames filled and not yet dequeued (the
    consumer's DQBUF gets ENODEV), so a run whose input ended waits for the
    consumer to dequeue them: a consumer 1 s late still gets all three, and
    nothing is reported lost."""
    got, done, stderr, failed = three_frames_to_a_consumer_that_dequeues(after=1.0)
    assert len(got) == 3
    assert done["source_ended"] and done["frames_queued"] == 3 and done["frames_not_taken"] == 0
    assert "went with the camera" not in stderr
    assert failed == errno.ENODEV


def test_a_consumer_that_never_dequeues_holds_the_end_of_the_run_3_s():
    """A consumer that stops dequeuing does not hold the run for ever: it
    ends about 3 s after the last frame was filled, the frames left are
    counted and named in one note, and the consumer's next DQBUF fails."""
    started = time.monotonic()
    got, done, stderr, failed = three_frames_to_a_consumer_that_dequeues(after=None)
    assert not got and done["frames_not_taken"] == 3 and done["frames_queued"] == 3
    assert "vcam-producer run: note: the consumer had not dequeued the last 3 frame(s) when the run ended; " \
           "they went with the camera" in stderr
    assert failed == errno.ENODEV
    print(f"the run ended {time.monotonic() - started:.1f} s after it started")


def unread(pipe) -> int:
    """Bytes written into a pipe and not read yet (FIONREAD works on either end)."""
    return struct.unpack("i", fcntl.ioctl(pipe.fileno(), termios.FIONREAD, b"\0" * 4))[0]


def test_a_signal_ends_a_run_waiting_on_a_quiet_pipe():
    """A writer that goes quiet, its end of the pipe still open, does not
    hold the run: SIGTERM while the producer waits for input ends it at its
    clean point (status 0, the report, no camera left). Nobody streamed:
    both frames were read and dropped."""
    before = video_nodes()
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(CLI + ["run", "--json", "--input", "-", "--size", f"{WIDTH}x{HEIGHT}", "--fps", "0"],
                            stdin=read_end, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(read_end)
    try:
        with os.fdopen(write_end, "wb", buffering=0) as writer:
            writer.write(bytes(YUYV.frame_size(WIDTH, HEIGHT) * 2))  # two frames, then silence
            json.loads(proc.stdout.readline())  # ready
            wait_until(lambda: unread(writer) == 0, 60, "both frames read")
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    done = json.loads(out.strip().splitlines()[-1])
    assert done["stopped_by"] == "SIGTERM" and not done["source_ended"]
    assert (done["frames_queued"], done["frames_dropped"]) == (0, 2)
    assert video_nodes() == before
