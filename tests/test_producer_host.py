"""vcam-producer without the module: bad input gets one clear line and a
non-zero exit, no traceback, nothing left behind; the pure parts (formats,
patterns, the integrity header, fd passing) work."""

import io
import os
import socket
import zlib

import numpy as np
import pytest

from producer import formats, integrity, share, sources
from producer_procs import run_cli

MISSING_NODE = {**os.environ, "VCAM_CONTROL_NODE": "/nonexistent/vcam"}


def one_line_error(r, code: int, text: str) -> None:
    assert r.returncode == code, r.stderr
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert text in lines[0], lines[0]


def usage_error(r, command: str, text: str) -> None:
    """argparse's way, status 2: the usage, then one line naming the problem."""
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert r.stderr.startswith(f"usage: vcam-producer {command} "), r.stderr
    assert "Traceback" not in r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith(f"vcam-producer {command}: error: ") and text in last, last


@pytest.mark.parametrize("args, text", [
    (["--size", "0x480"], "width and height must be 2..8192"),
    (["--size", "99999x2"], "width and height must be 2..8192"),
    (["--size", "640x-1"], "expected WIDTHxHEIGHT"),
    (["--size", "huge"], "expected WIDTHxHEIGHT"),
    (["--size", "641x480"], "YUYV needs a width divisible by 2"),
    (["--format", "H264"], "unknown format 'H264'"),
    (["--fps", "-5"], "bad --fps"),
    (["--slots", "1"], "bad --slots 1"),
    (["--slots", "33"], "bad --slots 33"),
    (["--frames", "0"], "bad --frames 0"),
    (["--label", "no/slash"], "bad --label"),
    (["--label", " x"], "bad --label"),
    (["--size", "4x4"], "too small for the integrity header"),
    (["--format", "MJPEG", "--input", "-"], "bad --format MJPEG with --input -"),
])
def test_run_rejects_bad_options(args, text):
    usage_error(run_cli(["run", *args], env=MISSING_NODE), "run", text)


def test_run_without_the_module():
    one_line_error(run_cli(["run"], env=MISSING_NODE), 1,
                   "/nonexistent/vcam does not exist: is the vcam module loaded?")


def test_run_with_a_missing_input(tmp_path):
    one_line_error(run_cli(["run", "--input", tmp_path / "nope.mp4"], env=MISSING_NODE), 1,
                   "cannot read input")


def test_run_with_an_unreadable_input(tmp_path):
    one_line_error(run_cli(["run", "--input", tmp_path], env=MISSING_NODE), 1, "not a file or a device")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(4096))
    one_line_error(run_cli(["run", "--input", garbage], env=MISSING_NODE), 1, "cannot decode input")


def test_consume_from_a_socket_nobody_listens_on(tmp_path):
    path = tmp_path / "nobody.sock"
    one_line_error(run_cli(["consume", "--import", path]), 1, f"no producer is listening on {path}")
    # a socket file left behind by a dead producer: still nobody listening
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()
    one_line_error(run_cli(["consume", "--import", path]), 1, "no producer is listening")


def test_consume_needs_a_device():
    usage_error(run_cli(["consume"]), "consume", "--device /dev/videoN or --import SOCKET")
    usage_error(run_cli(["consume", "--device", "/dev/video-none", "--frames", "-1"]), "consume",
                "bad --frames -1: 0 (until stopped) or more")
    one_line_error(run_cli(["consume", "--device", "/dev/video-none"]), 1, "No such file or directory")


def test_help_has_examples():
    r = run_cli(["run", "--help"])
    assert r.returncode == 0 and "examples:" in r.stdout and "--share SOCKET" in r.stdout


# --- the pure parts ------------------------------------------------------------


@pytest.mark.parametrize("fourcc, size", [("YUYV", 640 * 480 * 2), ("UYVY", 640 * 480 * 2), ("NV12", 640 * 480 * 3 // 2),
                                          ("YU12", 640 * 480 * 3 // 2), ("GREY", 640 * 480), ("RGB3", 640 * 480 * 3),
                                          ("BGR3", 640 * 480 * 3), ("BX24", 640 * 480 * 4)])
def test_every_pattern_in_every_format(fourcc, size):
    fmt = formats.lookup(fourcc)
    assert fmt.frame_size(640, 480) == size
    for name in sources.PATTERNS:
        src = sources.PatternSource(name, fmt, 640, 480)
        for n in range(3):  # a frame's data is valid until the next frame() call
            frame = src.frame(n)
            assert frame.data.size == size
            if frame.crc is not None:
                assert frame.crc == zlib.crc32(frame.data[integrity.HEADER_SIZE:])


def test_moving_patterns_move_and_bars_stand_still():
    fmt = formats.lookup("YUYV")
    for name, moves in (("smpte", False), ("gradient", True), ("counter", True)):
        src = sources.PatternSource(name, fmt, 320, 240)
        first = src.frame(0).data.copy()
        assert (not np.array_equal(first, src.frame(1).data)) == moves, name


def test_integrity_header_catches_tearing_and_corruption():
    frame = bytearray(os.urandom(1000))
    frame[:integrity.HEADER_SIZE] = integrity.pack(7, 123, len(frame) - integrity.HEADER_SIZE,
                                                   integrity.payload_crc(frame))
    header, problem = integrity.check(frame)
    assert problem is None and (header.sequence, header.timestamp_ns) == (7, 123)
    torn = bytearray(frame)
    torn[500] ^= 1
    assert integrity.check(torn)[1] == "torn"
    corrupt = bytearray(frame)
    corrupt[9] ^= 1  # the sequence number
    assert integrity.check(corrupt)[1] == "corrupt"
    assert integrity.check(bytes(1000))[1] == "corrupt"


def test_mjpeg_frames_are_jpeg_images_with_the_header_in_a_comment():
    from PIL import Image
    raw = sources.PatternSource("counter", formats.raw_format(formats.MJPEG), 160, 120)
    jpeg = sources.JpegSource(raw, 160 * 120 * 4)
    sizes = set()
    for n in range(3):
        frame = bytearray(jpeg.frame(n).data)
        at = integrity.header_offset(frame)
        assert at > 0 and frame[:2] == b"\xff\xd8"
        frame[at : at + integrity.HEADER_SIZE] = integrity.pack(
            n, 5, len(frame) - at - integrity.HEADER_SIZE, jpeg.frame(n).crc)
        header, problem = integrity.check(frame)
        assert problem is None and header.sequence == n
        assert Image.open(io.BytesIO(bytes(frame))).size == (160, 120)   # still a JPEG a decoder reads
        frame[-10] ^= 1
        assert integrity.check(frame)[1] == "torn"
        sizes.add(len(frame))
    assert len(sizes) > 1   # the burnt-in counter changes each image's size


def test_share_passes_fds_over_scm_rights(tmp_path):
    path = str(tmp_path / "s.sock")
    fds = [os.memfd_create(f"slot{i}") for i in range(3)]
    for i, fd in enumerate(fds):
        os.write(fd, bytes([i]) * 10)
    server = share.ShareServer(path, {"device": "/dev/video9", "slots": 3, "buffer_size": 4096}, fds)
    try:
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)  # queued in the backlog until serve()
        server.serve()
        message, got, _, _ = socket.recv_fds(client, 1 << 16, 32)
        client.close()
        assert b'"/dev/video9"' in message and len(got) == 3
        for i, fd in enumerate(got):
            assert os.pread(fd, 10, 0) == bytes([i]) * 10
            os.close(fd)
    finally:
        server.close()
        for fd in fds:
            os.close(fd)
    assert not os.path.exists(path)
