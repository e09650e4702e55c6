"""Pixel formats the producer can generate: geometry and ffmpeg names
(no numpy here, so commands that only parse options start fast; the
converter is in pixels.py).

Geometry matches the driver's table (driver/vcam-capture.c): one plane in
memory, stride = width x bytes per pixel of the first plane.
"""

from dataclasses import dataclass

from . import v4l2


@dataclass(frozen=True)
class PixelFormat:
    fourcc: str
    ffmpeg: str  # ffmpeg's -pix_fmt for the same memory layout
    # Planes as (bytes per pixel, horizontal subsampling, vertical subsampling)
    planes: tuple[tuple[int, int, int], ...]
    hstep: int = 1  # width must be a multiple of this
    vstep: int = 1  # height must be a multiple of this
    # A compressed format's frames vary in size: MJPG's are JPEG images
    # encoded from frames rendered in `planes`' layout (RGB24).
    compressed: bool = False

    @property
    def code(self) -> int:
        return v4l2.fourcc(self.fourcc)

    def plane_shapes(self, width: int, height: int) -> list[tuple[int, int]]:
        """(rows, bytes per row) of each plane."""
        shapes = []
        for bpp, hsub, vsub in self.planes:
            shapes.append((height // vsub, width // hsub * bpp))
        return shapes

    def frame_size(self, width: int, height: int) -> int:
        return sum(rows * row for rows, row in self.plane_shapes(width, height))


FORMATS = {
    f.fourcc: f
    for f in (
        PixelFormat("YUYV", "yuyv422", ((2, 1, 1),), hstep=2),
        PixelFormat("UYVY", "uyvy422", ((2, 1, 1),), hstep=2),
        PixelFormat("NV12", "nv12", ((1, 1, 1), (2, 2, 2)), hstep=2, vstep=2),
        PixelFormat("YU12", "yuv420p", ((1, 1, 1), (1, 2, 2), (1, 2, 2)), hstep=2, vstep=2),
        PixelFormat("GREY", "gray", ((1, 1, 1),)),
        PixelFormat("RGB3", "rgb24", ((3, 1, 1),)),
        PixelFormat("BGR3", "bgr24", ((3, 1, 1),)),
        PixelFormat("BX24", "bgr0", ((4, 1, 1),)),  # V4L2 XRGB32: B, G, R, X in memory
    )
}
# vcam-producer run's output as JPEG images (Pillow encodes them); kept out
# of FORMATS, whose formats are raw pixels that numpy converts.
MJPEG = PixelFormat("MJPG", "rgb24", ((3, 1, 1),), compressed=True)
# Friendly aliases accepted on the command line.
ALIASES = {"YUV420": "YU12", "I420": "YU12", "RGB24": "RGB3", "BGR24": "BGR3", "XRGB32": "BX24", "GRAY": "GREY",
           "MJPEG": "MJPG", "JPEG": "MJPG"}


def lookup(name: str, compressed: bool = False) -> PixelFormat:
    """The format for a fourcc or alias; ValueError naming the choices.
    compressed: MJPEG is one of them."""
    key = ALIASES.get(name.upper(), name.upper())
    if compressed and key == MJPEG.fourcc:
        return MJPEG
    if key not in FORMATS:
        choices = [*FORMATS, "MJPEG"] if compressed else FORMATS
        raise ValueError(f"unknown format {name!r}: choose one of {', '.join(choices)}")
    return FORMATS[key]


def raw_format(fmt: PixelFormat) -> PixelFormat:
    """The raw format a source renders frames of fmt in."""
    return FORMATS["RGB3"] if fmt.compressed else fmt
