"""Feeding a camera from Python (producer/pyvirtualcam.py) and from a pipe
(`vcam-producer run --input -`), the parts that need no module: the API's
names against pyvirtualcam's, send()'s conversions against ffmpeg's,
argument and frame checks, and the pipe source's frames and its end.
The guest half is test_producer_feeds.py."""

import inspect
import io
import os
import pty
import subprocess
import sys
import types

import numpy as np
import pytest

from producer import formats, pyvirtualcam, sources
from producer.errors import SourceError
from producer.pyvirtualcam import Camera, PixelFormat
from producer.uapi import VCAM_STATUS_IDLE
from producer_procs import run_cli
from test_producer_pixels import HEIGHT, TOLERANCE, WIDTH, disagreement, ffmpeg_convert, test_picture

MISSING_NODE = {**os.environ, "VCAM_CONTROL_NODE": "/nonexistent/vcam"}


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# --- the API's shape ----------------------------------------------------------------


def test_the_public_names_are_pyvirtualcams():
    """What a pyvirtualcam program touches (pyvirtualcam 0.15) exists here
    under the same name, with the same parameters and defaults."""
    assert [f.name for f in PixelFormat] == ["RGB", "BGR", "RGBA", "GRAY", "I420", "NV12", "YUYV", "UYVY"]
    assert (str(PixelFormat.BGR), repr(PixelFormat.BGR)) == ("BGR", "PixelFormat.BGR")
    params = inspect.signature(Camera).parameters
    assert [p for p in params][:3] == ["width", "height", "fps"]
    assert all(params[p].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in ("width", "height", "fps"))
    for name, default in (("fmt", PixelFormat.RGB), ("device", None), ("backend", None), ("print_fps", False)):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY and params[name].default == default, name
    for name in ("backend", "device", "width", "height", "fps", "fmt", "native_fmt", "frames_sent", "current_fps"):
        assert isinstance(getattr(Camera, name), property), name
    for name in ("send", "sleep_until_next_frame", "close", "__enter__", "__exit__"):
        assert callable(getattr(Camera, name)), name


# --- send()'s conversions ----------------------------------------------------------------


@pytest.fixture(scope="module")
def picture():
    return test_picture()


def input_frame(picture: np.ndarray, fmt: PixelFormat) -> np.ndarray:
    """The test picture as a frame of input format fmt."""
    if fmt is PixelFormat.BGR:
        return np.ascontiguousarray(picture[..., ::-1])
    if fmt is PixelFormat.RGBA:
        alpha = np.random.default_rng(16).integers(0, 256, picture.shape[:2] + (1,), dtype=np.uint8)
        return np.concatenate([picture, alpha], axis=2)
    if fmt is PixelFormat.GRAY:
        return np.ascontiguousarray(picture[..., 1])
    return picture


@pytest.mark.parametrize("fmt, ffmpeg_in, camera", [
    (PixelFormat.BGR, "bgr24", "YUYV"),   # OpenCV's frames into the default camera
    (PixelFormat.BGR, "bgr24", "NV12"),
    (PixelFormat.RGB, "rgb24", "YUYV"),
    (PixelFormat.RGBA, "rgba", "UYVY"),
    (PixelFormat.GRAY, "gray", "YUYV"),
    (PixelFormat.BGR, "bgr24", "RGB3"),
])
def test_send_converts_like_ffmpeg(picture, fmt, ffmpeg_in, camera):
    """What send() writes is ffmpeg's conversion of the same input bytes,
    read as ffmpeg's pixel format of the same name: within 1 per Y'CbCr
    sample, exact on R'G'B' (the tolerance of test_producer_pixels.py)."""
    cam = formats.lookup(camera)
    frame = input_frame(picture, fmt)
    ours = pyvirtualcam.to_camera(frame, fmt, cam)
    expected = ffmpeg_convert(frame, cam.ffmpeg, in_pix_fmt=ffmpeg_in)
    worst = disagreement(ours, expected, cam)
    assert max(worst) <= (0 if camera == "RGB3" else TOLERANCE), f"{fmt} -> {camera}: {worst}"


def test_swapped_channels_would_be_caught(picture):
    """The comparison above tells BGR from RGB: the picture's saturated bars
    and noise differ by far more than the tolerance when the order is wrong."""
    cam = formats.lookup("YUYV")
    frame = input_frame(picture, PixelFormat.BGR)
    swapped = pyvirtualcam.to_camera(frame, PixelFormat.RGB, cam)  # BGR bytes read as RGB
    expected = ffmpeg_convert(frame, cam.ffmpeg, in_pix_fmt="bgr24")
    assert max(disagreement(swapped, expected, cam)) > 50


@pytest.mark.parametrize("fmt, camera", [
    (PixelFormat.BGR, "BGR3"), (PixelFormat.RGB, "RGB3"), (PixelFormat.GRAY, "GREY"),
    (PixelFormat.I420, None), (PixelFormat.NV12, None), (PixelFormat.YUYV, None), (PixelFormat.UYVY, None),
])
def test_a_frame_in_the_cameras_own_layout_goes_as_it_is(fmt, camera):
    chosen = pyvirtualcam.camera_format(fmt, camera)
    assert chosen.fourcc == fmt.value
    frame = np.random.default_rng(3).integers(0, 256, chosen.frame_size(WIDTH, HEIGHT), dtype=np.uint8)
    if fmt in pyvirtualcam.CONVERTED:
        frame = frame.reshape((HEIGHT, WIDTH, -1) if fmt is not PixelFormat.GRAY else (HEIGHT, WIDTH))
    assert pyvirtualcam.to_camera(frame, fmt, chosen).tobytes() == frame.tobytes()


def test_an_opencv_view_converts_like_its_copy(picture):
    """A crop of a larger OpenCV frame is a non-contiguous view."""
    big = np.zeros((HEIGHT + 20, WIDTH + 30, 3), np.uint8)
    big[7:7 + HEIGHT, 11:11 + WIDTH] = input_frame(picture, PixelFormat.BGR)
    view = big[7:7 + HEIGHT, 11:11 + WIDTH]
    assert not view.flags.c_contiguous
    cam = formats.lookup("YUYV")
    assert np.array_equal(pyvirtualcam.to_camera(view, PixelFormat.BGR, cam),
                          pyvirtualcam.to_camera(view.copy(), PixelFormat.BGR, cam))


def test_default_camera_formats():
    assert pyvirtualcam.camera_format(PixelFormat.BGR).fourcc == "YUYV"
    assert pyvirtualcam.camera_format(PixelFormat.GRAY).fourcc == "YUYV"
    assert pyvirtualcam.camera_format(PixelFormat.I420).fourcc == "YU12"
    assert pyvirtualcam.camera_format(PixelFormat.RGB, "nv12").fourcc == "NV12"
    assert pyvirtualcam.camera_format(PixelFormat.RGB, PixelFormat.UYVY).fourcc == "UYVY"


# --- bad input: one line, nothing opened -------------------------------------------------


@pytest.mark.parametrize("frame, fmt, error, text", [
    (np.zeros((HEIGHT, WIDTH, 3), np.float32), PixelFormat.BGR, TypeError, "unexpected frame dtype: float32 != uint8"),
    (np.zeros((HEIGHT, WIDTH), np.uint8), PixelFormat.BGR, ValueError, "unexpected frame shape for BGR: (48, 64) != (48, 64, 3)"),
    (np.zeros((WIDTH, HEIGHT, 3), np.uint8), PixelFormat.RGB, ValueError, "!= (48, 64, 3)"),
    (np.zeros((HEIGHT, WIDTH, 3), np.uint8), PixelFormat.RGBA, ValueError, "!= (48, 64, 4)"),
    (np.zeros(WIDTH * HEIGHT, np.uint8), PixelFormat.YUYV, ValueError, "unexpected frame size for YUYV: 3072 != 6144"),
    ([[0] * WIDTH] * HEIGHT, PixelFormat.GRAY, TypeError, "a frame is a numpy.ndarray, not list"),
])
def test_a_bad_frame_is_one_line(frame, fmt, error, text):
    with pytest.raises(error) as e:
        pyvirtualcam.check_frame(frame, fmt, WIDTH, HEIGHT, pyvirtualcam.camera_format(fmt))
    assert text in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(fmt="BGR"), ValueError, "fmt must be a PixelFormat"),
    (dict(backend="v4l2loopback"), ValueError, "unknown backend 'v4l2loopback'"),
    (dict(width=641), ValueError, "a YUYV camera needs a width divisible by 2"),
    (dict(width=0), ValueError, "width and height must be positive"),
    (dict(height=48.5), TypeError, "whole numbers of pixels"),
    (dict(fps=0), ValueError, "fps must be more than 0"),
    (dict(camera_fmt="H264"), ValueError, "unknown format 'H264'"),
    (dict(camera_fmt=42), TypeError, "camera_fmt is a fourcc"),
    (dict(fmt=PixelFormat.NV12, camera_fmt="YUYV"), ValueError, "camera_fmt must be NV12"),
    (dict(slot_memory="gpu"), ValueError, "slot_memory must be one of"),
])
def test_bad_arguments_are_refused_before_anything_is_opened(kwargs, error, text):
    args = dict(width=64, height=48, fps=30) | kwargs
    fds = open_fds()
    with pytest.raises(error) as e:
        Camera(args.pop("width"), args.pop("height"), args.pop("fps"), **args)
    assert text in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert open_fds() == fds


def test_without_the_module_one_line_and_no_fd():
    """The control node the producer reads from VCAM_CONTROL_NODE at import,
    hence a child process. The error is a RuntimeError (pyvirtualcam's) and
    an OSError with its errno (the producer's)."""
    script = ("import os\n"
              "from producer import pyvirtualcam\n"
              "fds = set(os.listdir('/proc/self/fd'))\n"
              "try:\n"
              "    pyvirtualcam.Camera(64, 48, 30, fmt=pyvirtualcam.PixelFormat.BGR)\n"
              "except RuntimeError as e:\n"
              "    print(isinstance(e, OSError), e.errno, e.strerror, sep='|')\n"
              "print(set(os.listdir('/proc/self/fd')) == fds)\n")
    r = subprocess.run([sys.executable, "-c", script], env=MISSING_NODE, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.splitlines() == [
        "True|2|/nonexistent/vcam does not exist: is the vcam module loaded? (sudo modprobe vcam)", "True"]


# --- pacing and slots, as pure logic ------------------------------------------------------


class FakeClock:
    """time for producer.pyvirtualcam: monotonic() moves only when told or slept."""

    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def monotonic_ns(self) -> int:
        return int(self.now * 1e9)

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


class IdleSlots:
    """Stands in for VirtualCamera: two slots, none ever handed back, nobody streaming."""

    video_path = "/dev/video7"
    slots = 2

    def __init__(self, *args, **kwargs):
        self.queued: list[int] = []
        self.ctl = types.SimpleNamespace(status=lambda: VCAM_STATUS_IDLE)

    def take_back(self) -> list[int]:
        return []

    def write(self, index: int, data) -> None:
        pass

    def queue(self, index: int, timestamp: int = 0) -> None:
        self.queued.append(index)

    def close(self) -> None:
        pass


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(pyvirtualcam, "time", fake)
    monkeypatch.setattr(pyvirtualcam, "VirtualCamera", IdleSlots)
    return fake


def test_sleep_until_next_frame_keeps_a_schedule_without_drift(clock):
    cam = Camera(64, 48, 10)  # a frame due every 0.1 s
    frame = np.zeros((48, 64, 3), np.uint8)
    cam.sleep_until_next_frame()  # nothing sent: nothing to wait for
    assert clock.slept == []
    for work in (0.03, 0.05):  # the program's own time per frame; the sleep makes up the rest
        cam.send(frame)
        clock.now += work
        cam.sleep_until_next_frame()
    assert clock.slept == [0.07, 0.05] and clock.now == pytest.approx(100.2)
    cam.send(frame)
    clock.now += 0.35  # more than a frame late: no sleep, and no hurry after it
    cam.sleep_until_next_frame()
    assert len(clock.slept) == 2
    cam.send(frame)
    clock.now += 0.02
    cam.sleep_until_next_frame()
    assert clock.slept[-1] == 0.08  # a new schedule from the late frame on
    assert cam.frames_sent == 4


def test_with_nobody_streaming_send_queues_nothing_and_drops(clock):
    cam = Camera(64, 48, 10, fmt=PixelFormat.BGR)
    for _ in range(5):
        cam.send(np.zeros((48, 64, 3), np.uint8))
        clock.now += 0.1
    assert cam._cam.queued == []
    assert (cam.frames_sent, cam.frames_dropped) == (5, 5)
    assert cam.current_fps == pytest.approx(10.0)
    assert cam.device == "/dev/video7"
    cam.close()
    with pytest.raises(RuntimeError, match="send\\(\\) on a closed Camera"):
        cam.send(np.zeros((48, 64, 3), np.uint8))


# --- raw frames on standard input ---------------------------------------------------------


def test_pipe_frames_and_a_clean_end_that_drops_the_partial_frame():
    fmt = formats.lookup("YUYV")
    size = fmt.frame_size(8, 4)
    data = np.random.default_rng(4).integers(0, 256, size * 5 // 2, dtype=np.uint8).tobytes()
    source = sources.PipeSource(fmt, 8, 4, stream=io.BytesIO(data))
    got = [source.frame(n) for n in range(4)]
    assert [f.key for f in got[:2]] == [0, 1] and got[2:] == [None, None]
    assert source.partial == size // 2  # and it stays: a call after the end reads nothing
    first = sources.PipeSource(fmt, 8, 4, stream=io.BytesIO(data)).frame(0)
    assert first.data.tobytes() == data[:size]


@pytest.mark.parametrize("data", [b"", b"\x10" * 100])
def test_pipe_without_a_whole_frame_fails_before_any_camera(data):
    with pytest.raises(SourceError) as e:
        sources.PipeSource(formats.lookup("YUYV"), 64, 48, stream=io.BytesIO(data))
    assert str(e.value) == (f"standard input ended after {len(data)} bytes, before a whole 64x48 YUYV frame "
                            "(6144 bytes): --input - takes raw frames of --size and --format")


def test_run_from_a_short_pipe_is_one_line_before_the_control_node():
    r = run_cli(["run", "--input", "-", "--size", "64x48"], input="x" * 100, env=MISSING_NODE)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == ("vcam-producer run: standard input ended after 100 bytes, before a whole 64x48 YUYV frame "
                        "(6144 bytes): --input - takes raw frames of --size and --format\n")


def test_run_from_a_terminal_or_looped_stdin_is_a_usage_error():
    primary, secondary = pty.openpty()
    try:
        r = run_cli(["run", "--input", "-"], stdin=secondary, env=MISSING_NODE)
    finally:
        os.close(primary)
        os.close(secondary)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1] == ("vcam-producer run: error: --input - reads raw frames from a pipe or a file; "
                                         "standard input is a terminal")
    r = run_cli(["run", "--input", "-", "--loop"], input="", env=MISSING_NODE)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1] == ("vcam-producer run: error: bad --loop: standard input (--input -) "
                                         "cannot be played again")
