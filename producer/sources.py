"""Frame sources: test patterns rendered with numpy, still images, and
video files or real cameras decoded by an ffmpeg subprocess, all in the
camera's pixel format; or raw frames already in that format on standard
input.

A source hands out frames by number. Each Frame carries a key (equal keys
mean equal pixels, so the producer can skip rewriting a slot that already
holds them) and, where it is known in advance, the CRC-32 of the payload
(so the integrity header costs nothing per frame for pre-rendered frames).
"""

import io
import os
import stat
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable

import numpy as np

from .errors import PATTERNS, SourceError
from .formats import PixelFormat
from .pixels import convert, planes_of
from .formats import MJPEG
from .integrity import HEADER_SIZE, JPEG_HEADER_AT, jpeg_with_room

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}


@dataclass
class Frame:
    key: Hashable
    data: np.ndarray  # 1-D uint8, exactly one frame; valid until the next frame() call
    crc: int | None = None  # CRC-32 of data[HEADER_SIZE:], when known


class Source:
    # Whether frames come whether or not they are read (a pipe, a camera):
    # such a source is read on while nobody watches, or its writer backs up.
    live = False
    # Whether a source that is not live can come to an end (a video file
    # played once): paused, it is read one frame ahead to see its end.
    ends = False

    def __init__(self, fmt: PixelFormat, width: int, height: int):
        self.fmt, self.width, self.height = fmt, width, height
        self.size = fmt.frame_size(width, height)
        self.partial = 0  # bytes of a last frame that the input's end cut short (dropped)

    def frame(self, n: int) -> Frame | None:
        """Frame number n, or None when the source has ended."""
        raise NotImplementedError

    def fileno(self) -> int | None:
        """The fd that the next frame() reads from, for the producer to wait
        on in poll(); None when frame() does not wait for input."""
        return None

    def close(self) -> None:
        pass


# --- test patterns -----------------------------------------------------------

# 75% SMPTE colour bars: white, yellow, cyan, green, magenta, red, blue.
_BARS = np.array([[191, 191, 191], [191, 191, 0], [0, 191, 191], [0, 191, 0],
                  [191, 0, 191], [191, 0, 0], [0, 0, 191]], np.uint8)
_CASTELLATIONS = np.array([[0, 0, 191], [19, 19, 19], [191, 0, 191], [19, 19, 19],
                           [0, 191, 191], [19, 19, 19], [191, 191, 191]], np.uint8)


def smpte_bars(width: int, height: int) -> np.ndarray:
    """SMPTE EG 1 colour bars as an HxWx3 RGB image."""
    columns = np.minimum(np.arange(width) * 7 // width, 6)
    img = np.empty((height, width, 3), np.uint8)
    top, middle = height * 2 // 3, height * 3 // 4
    img[:top] = _BARS[columns]
    img[top:middle] = _CASTELLATIONS[columns]
    # Bottom: -I, white, +Q, black, then the PLUGE (black, blacker, black).
    quarter = np.minimum(np.arange(width) * 6 // width, 5)
    bottom = np.array([[0, 33, 76], [255, 255, 255], [50, 0, 106], [19, 19, 19], [9, 9, 9], [19, 19, 19]], np.uint8)
    img[middle:] = bottom[quarter]
    return img


def hue_wheel(width: int, height: int) -> np.ndarray:
    """A horizontal rainbow that repeats every `width` pixels, darker towards the bottom."""
    x = np.arange(width) / width * 6.0
    r = np.clip(np.abs(x - 3) - 1, 0, 1)
    g = np.clip(2 - np.abs(x - 2), 0, 1)
    b = np.clip(2 - np.abs(x - 4), 0, 1)
    row = np.stack([r, g, b], axis=-1)
    shade = np.linspace(1.0, 0.35, height)[:, None, None]
    return (row[None, :, :] * shade * 255).astype(np.uint8)


# A 5x7 font for the burnt-in counter and clock.
_GLYPHS = {
    "0": "01110 10001 10011 10101 11001 10001 01110", "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111", "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010", "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110", "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110", "9": "01110 10001 10001 01111 00001 00010 01100",
    ":": "00000 01100 01100 00000 01100 01100 00000", ".": "00000 00000 00000 00000 00000 01100 01100",
    " ": "00000 00000 00000 00000 00000 00000 00000",
}
_GLYPH_BITS = {ch: np.array([[c == "1" for c in row] for row in rows.split()], bool) for ch, rows in _GLYPHS.items()}


def text_image(text: str, scale: int) -> np.ndarray:
    """White text on black, 1-character margin, as an HxWx3 RGB image."""
    cell_w, cell_h = 6 * scale, 9 * scale
    img = np.zeros((cell_h, cell_w * (len(text) + 1), 3), np.uint8)
    for i, ch in enumerate(text):
        bits = np.kron(_GLYPH_BITS[ch], np.ones((scale, scale), bool))
        y, x = scale, cell_w // 2 + i * cell_w
        img[y : y + bits.shape[0], x : x + bits.shape[1]][bits] = 255
    return img


class PatternSource(Source):
    """smpte: still bars. gradient: a rainbow moving 2 px per frame.
    counter: bars with the frame number and the wall clock burnt in."""

    def __init__(self, name: str, fmt: PixelFormat, width: int, height: int):
        super().__init__(fmt, width, height)
        if name not in PATTERNS:
            raise SourceError(f"unknown pattern {name!r}: choose one of {', '.join(PATTERNS)}")
        self.name = name
        self._crcs: dict[Hashable, int] = {}
        if name == "gradient":
            # One wide frame converted once; frame n is a window into it.
            self.period = max(2, width // 2 * 2)
            self._wide = convert(hue_wheel(width + self.period, height)[:, : width + self.period], fmt)
            self._wide_planes = planes_of(self._wide, fmt, width + self.period, height)
            self._scratch = np.empty(self.size, np.uint8)
            self._planes = planes_of(self._scratch, fmt, width, height)
        else:
            self._bars = convert(smpte_bars(width, height), fmt)
            self._bars_crc = zlib.crc32(self._bars[HEADER_SIZE:])
            self._scratch = self._bars.copy()
            self._planes = planes_of(self._scratch, fmt, width, height)
            self._scale = max(1, height // 120)

    def frame(self, n: int) -> Frame:
        if self.name == "smpte":
            return Frame("smpte", self._bars, self._bars_crc)
        if self.name == "gradient":
            shift = (2 * n) % self.period
            for (bpp, hsub, _), dst, src in zip(self.fmt.planes, self._planes, self._wide_planes):
                start = shift // hsub * bpp
                dst[:] = src[:, start : start + dst.shape[1]]
            key = ("gradient", shift)
            if key not in self._crcs:
                self._crcs[key] = zlib.crc32(self._scratch[HEADER_SIZE:])
            return Frame(key, self._scratch, self._crcs[key])
        now = time.time()
        clock = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
        self._overlay(text_image(f"{n:08d} {clock}", self._scale))
        return Frame(("counter", n), self._scratch, None)

    def _overlay(self, box: np.ndarray) -> None:
        """Paste an RGB box near the bottom-left corner, in the frame's format."""
        h, w = box.shape[:2]
        h, w = h // 2 * 2, w // 2 * 2
        x, y = 8 * self._scale // 2 * 2, (self.height - h - 8 * self._scale) // 2 * 2
        if w > self.width - x or y < 0:
            return  # too small a frame for the text
        coded = planes_of(convert(np.ascontiguousarray(box[:h, :w]), self.fmt), self.fmt, w, h)
        for (bpp, hsub, vsub), dst, src in zip(self.fmt.planes, self._planes, coded):
            row, col = y // vsub, x // hsub * bpp
            dst[row : row + src.shape[0], col : col + src.shape[1]] = src


# --- files and cameras through ffmpeg, raw frames from a pipe -----------------------


def read_into(stream, buf: np.ndarray) -> int:
    """Fill buf from a binary stream; the bytes read, fewer than buf holds
    only where the stream ended."""
    view, got = memoryview(buf), 0
    while got < len(view):
        chunk = stream.readinto(view[got:])
        if not chunk:
            break
        got += chunk
    return got


def check_readable(path: str) -> None:
    """SourceError unless path is a readable regular file or character device."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise SourceError(f"cannot read input {path}: {e.strerror}") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        raise SourceError(f"cannot read input {path}: not a file or a device")
    if not os.access(path, os.R_OK):
        raise SourceError(f"cannot read input {path}: permission denied")


class FfmpegSource(Source):
    """Frames decoded and scaled by ffmpeg, read from its stdout.

    A still image is decoded once and repeated; a video file plays once
    (loop=True: forever); /dev/videoX is captured live."""

    def __init__(self, path: str, fmt: PixelFormat, width: int, height: int, loop: bool = False):
        super().__init__(fmt, width, height)
        check_readable(path)
        self.path = path
        self.still = Path(path).suffix.lower() in IMAGE_SUFFIXES
        self.live = stat.S_ISCHR(os.stat(path).st_mode)  # a camera, not a file
        self.ends = not (self.still or loop or self.live)
        cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"]
        if loop and not self.still:
            cmd += ["-stream_loop", "-1"]
        if path.startswith("/dev/video"):
            cmd += ["-f", "v4l2"]
        cmd += ["-i", path, "-vf", f"scale={width}:{height}", "-pix_fmt", fmt.ffmpeg]
        if self.still:
            cmd += ["-frames:v", "1"]
        cmd += ["-f", "rawvideo", "-"]
        try:
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise SourceError("ffmpeg is not installed: it decodes --input files and cameras") from None
        self._buf = np.empty(self.size, np.uint8)
        self._first: Frame | None = None
        # Decode the first frame now, so a file ffmpeg cannot read fails
        # before any camera exists.
        first = self._read(0)
        if first is None:
            why = self._stderr_line() or "no video frame in it"
            self.close()
            raise SourceError(f"cannot decode input {path}: {why}")
        if self.still:
            self._first = Frame("still", first.data.copy(), zlib.crc32(first.data[HEADER_SIZE:]))
            self.close()
        else:
            self._first = Frame(0, first.data.copy())

    def _stderr_line(self) -> str:
        try:
            _, err = self._proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            return ""
        lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""

    def _read(self, n: int) -> Frame | None:
        if read_into(self._proc.stdout, self._buf) < self.size:
            return None
        return Frame(n, self._buf)

    def frame(self, n: int) -> Frame | None:
        if self.still:
            return self._first
        if n == 0 and self._first is not None:
            return self._first
        self._first = None
        return self._read(n)

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe:
                pipe.close()
        self._proc = None


class PipeSource(Source):
    """Raw frames of the camera's size and format, back to back, on standard
    input (`--input -`), e.g. from `ffmpeg ... -f rawvideo -pix_fmt yuyv422 -`.
    The input's end is the source's end; a last frame it cuts short is
    dropped (never shown torn) and its length kept in partial. Whatever
    writes into the pipe is taken to be live: it is never held up."""

    live = True

    def __init__(self, fmt: PixelFormat, width: int, height: int, stream=None):
        super().__init__(fmt, width, height)
        # Unbuffered: a frame goes on as soon as its last byte is in.
        self._stream = stream if stream is not None else open(0, "rb", buffering=0, closefd=False)
        self._buf = np.empty(self.size, np.uint8)
        self._ended = False
        # The first frame now, so an input with none fails before any camera exists.
        got = read_into(self._stream, self._buf)
        if got < self.size:
            raise SourceError(f"standard input ended after {got} bytes, before a whole {width}x{height} "
                              f"{fmt.fourcc} frame ({self.size} bytes): --input - takes raw frames of "
                              "--size and --format")
        self._first_pending = True

    def frame(self, n: int) -> Frame | None:
        if self._first_pending:
            self._first_pending = False
            return Frame(n, self._buf)
        if self._ended:
            return None
        got = read_into(self._stream, self._buf)
        if got < self.size:
            self._ended, self.partial = True, got
            return None
        return Frame(n, self._buf)

    def fileno(self) -> int | None:
        return None if self._first_pending or self._ended else self._stream.fileno()


class JpegSource(Source):
    """A raw source's RGB24 frames as JPEG images (MJPEG), each with an
    empty comment segment for the integrity header. Frames vary in size;
    `size` is the most one may take (the camera's buffer)."""

    QUALITY = 90

    def __init__(self, raw: Source, buffer_size: int):
        from PIL import Image   # only MJPEG output needs Pillow
        self._image = Image
        super().__init__(MJPEG, raw.width, raw.height)
        self.size = buffer_size
        self.raw, self.live, self.ends = raw, raw.live, raw.ends
        self._last: Frame | None = None

    def frame(self, n: int) -> Frame | None:
        raw = self.raw.frame(n)
        self.partial = self.raw.partial
        if raw is None:
            return None
        if self._last is None or raw.key is None or raw.key != self._last.key:
            image = self._image.frombuffer("RGB", (self.width, self.height), raw.data, "raw", "RGB", 0, 1)
            encoded = io.BytesIO()
            image.save(encoded, "JPEG", quality=self.QUALITY)
            jpeg = jpeg_with_room(encoded.getvalue())
            if len(jpeg) > self.size:
                raise SourceError(f"a {len(jpeg)}-byte JPEG does not fit the camera's {self.size}-byte buffer")
            self._last = Frame(raw.key, np.frombuffer(jpeg, np.uint8), zlib.crc32(jpeg[JPEG_HEADER_AT + HEADER_SIZE:]))
        return self._last

    def fileno(self) -> int | None:
        return self.raw.fileno()

    def close(self) -> None:
        self.raw.close()


def open_source(fmt: PixelFormat, width: int, height: int, pattern: str | None = None,
                input_path: str | None = None, loop: bool = False) -> Source:
    if input_path == "-":
        return PipeSource(fmt, width, height)
    if input_path:
        return FfmpegSource(input_path, fmt, width, height, loop=loop)
    return PatternSource(pattern or "smpte", fmt, width, height)
