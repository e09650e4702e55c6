"""The pixel converter (producer/pixels.py) against an independent
reference: ffmpeg's conversion of the same RGB picture, for every format
the producer carries. Host tier: needs ffmpeg, not the module.

The reference is told the conventions V4L2 gives a vcam camera (colorspace
sRGB, so Y'CbCr is BT.601 at limited range): `scale=out_color_matrix=bt601:
out_range=tv`. Its flags take the rounding and filter questions out:
`accurate_rnd` and `bitexact` for exact rounding, `full_chroma_int` for
chroma from every pixel, `area` so that 4:2:2 and 4:2:0 chroma is the mean
of each 2x1 or 2x2 block (chroma sited between its pixels), which is what
the converter does; swscale's default bicubic reaches over the block and
differs by 20 and more on a noisy picture.

Tolerance: at most 1 per sample (8-bit code value) on every Y', Cb and Cr
sample, 0 on R'G'B'. Both sides use BT.601's matrix at limited range; they
differ only in arithmetic: the converter's 8-bit fixed-point coefficients,
rounded per pixel and again when chroma is averaged, against swscale's
15-bit ones with a single rounding. A wrong matrix (BT.709), the wrong
range (full), swapped chroma or a wrong layout is off by 10 and more on the
saturated bars of the picture; an all-zero frame by up to 255.
"""

import subprocess

import numpy as np
import pytest

from producer import formats, pixels

WIDTH, HEIGHT = 64, 48
TOLERANCE = 1  # the largest |converter - ffmpeg| allowed in any Y'CbCr sample
REFERENCE_FILTER = "scale=flags=area+accurate_rnd+full_chroma_int+bitexact:out_color_matrix=bt601:out_range=tv"


def test_picture() -> np.ndarray:
    """HEIGHT x WIDTH RGB: noise (every value, every neighbour), the eight
    saturated bars (where a wrong matrix or range shows most) and a ramp."""
    rng = np.random.default_rng(14)
    rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    bars = np.array([[255, 255, 255], [255, 255, 0], [0, 255, 255], [0, 255, 0],
                     [255, 0, 255], [255, 0, 0], [0, 0, 255], [0, 0, 0]], np.uint8)
    rgb[24:36] = np.repeat(bars, WIDTH // len(bars), axis=0)[None]
    rgb[36:] = np.linspace(0, 255, WIDTH).astype(np.uint8)[None, :, None]
    return rgb


test_picture.__test__ = False  # a helper, not a test


def ffmpeg_convert(image: np.ndarray, pix_fmt: str, in_pix_fmt: str = "rgb24") -> np.ndarray:
    """ffmpeg's conversion of an HxW(xC) image in in_pix_fmt to pix_fmt."""
    h, w = image.shape[:2]
    r = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
                        "-f", "rawvideo", "-pix_fmt", in_pix_fmt, "-s", f"{w}x{h}", "-i", "-",
                        "-vf", REFERENCE_FILTER, "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"],
                       input=np.ascontiguousarray(image).tobytes(), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return np.frombuffer(r.stdout, np.uint8)


def reference(rgb: np.ndarray, fmt: formats.PixelFormat) -> np.ndarray:
    """ffmpeg's frame for fmt. GREY is V4L2's greyscale, limited range (the
    default quantization of any non-RGB format): ffmpeg's `gray` is full
    range, so the reference is the Y' plane of its limited-range yuv444p."""
    h, w, _ = rgb.shape
    if fmt.fourcc == "GREY":
        return ffmpeg_convert(rgb, "yuv444p")[: w * h]
    return ffmpeg_convert(rgb, fmt.ffmpeg)


def disagreement(frame: np.ndarray, expected: np.ndarray, fmt: formats.PixelFormat) -> list[int]:
    """The largest |frame - expected| in each plane. BX24's fourth byte is
    padding (V4L2's XRGB32: X is ignored; ffmpeg writes 255, the converter
    0) and is left out."""
    assert frame.dtype == np.uint8 and frame.shape == expected.shape == (fmt.frame_size(WIDTH, HEIGHT),)
    if fmt.fourcc == "BX24":
        return [int(np.abs(frame.reshape(-1, 4)[:, :3].astype(int) - expected.reshape(-1, 4)[:, :3]).max())]
    return [int(np.abs(a.astype(int) - b).max())
            for a, b in zip(pixels.planes_of(frame, fmt, WIDTH, HEIGHT), pixels.planes_of(expected, fmt, WIDTH, HEIGHT))]


def allowed(fmt: formats.PixelFormat) -> int:
    return 0 if fmt.fourcc in ("RGB3", "BGR3", "BX24") else TOLERANCE


@pytest.fixture(scope="module")
def picture():
    return test_picture()


@pytest.mark.parametrize("fourcc", list(formats.FORMATS))
def test_converter_matches_ffmpeg(picture, fourcc):
    fmt = formats.FORMATS[fourcc]
    frame = pixels.convert(picture, fmt)
    worst = disagreement(frame, reference(picture, fmt), fmt)
    assert max(worst) <= allowed(fmt), f"{fourcc}: largest difference per plane {worst} (tolerance {allowed(fmt)})"


@pytest.mark.parametrize("fourcc", list(formats.FORMATS))
def test_a_wrong_converter_is_caught(picture, fourcc):
    """The comparison above can fail: an all-zero frame, and for Y'CbCr
    full range instead of limited, are far outside the tolerance."""
    fmt = formats.FORMATS[fourcc]
    expected = reference(picture, fmt)
    zeros = np.zeros(fmt.frame_size(WIDTH, HEIGHT), np.uint8)
    assert min(disagreement(zeros, expected, fmt)) > 10 * TOLERANCE
    if fmt.fourcc not in ("RGB3", "BGR3", "BX24"):
        # full range: the limited-range samples stretched from 16..240 to 0..255
        full = pixels.convert(picture, fmt).astype(float)
        full = np.clip((full - 16) * 255 / 219, 0, 255).round().astype(np.uint8)
        assert max(disagreement(full, expected, fmt)) > 10 * TOLERANCE
