"""RGB images to frames in a camera's pixel format (numpy; BT.601 limited
range for the YUV formats), and plane views of a frame."""

import numpy as np

from .formats import PixelFormat


def _yuv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    y = (66 * r + 129 * g + 25 * b + 128 >> 8) + 16
    u = (-38 * r - 74 * g + 112 * b + 128 >> 8) + 128
    v = (112 * r - 94 * g - 18 * b + 128 >> 8) + 128
    return y.astype(np.uint8), u.astype(np.uint8), v.astype(np.uint8)


def _sub2(plane: np.ndarray, vertical: bool) -> np.ndarray:
    """Average 2x1 (or 2x2) blocks: chroma subsampling."""
    p = plane.astype(np.uint16)
    p = (p[:, 0::2] + p[:, 1::2] + 1) // 2
    if vertical:
        p = (p[0::2] + p[1::2] + 1) // 2
    return p.astype(np.uint8)


def convert(rgb: np.ndarray, fmt: PixelFormat) -> np.ndarray:
    """An HxWx3 uint8 RGB image as the bytes of one frame (1-D uint8)."""
    h, w, _ = rgb.shape
    name = fmt.fourcc
    if name == "RGB3":
        return np.ascontiguousarray(rgb).reshape(-1)
    if name == "BGR3":
        return np.ascontiguousarray(rgb[..., ::-1]).reshape(-1)
    if name == "BX24":
        out = np.zeros((h, w, 4), np.uint8)
        out[..., 0], out[..., 1], out[..., 2] = rgb[..., 2], rgb[..., 1], rgb[..., 0]
        return out.reshape(-1)
    y, u, v = _yuv(rgb)
    if name == "GREY":
        return y.reshape(-1)
    if name in ("YUYV", "UYVY"):
        u2, v2 = _sub2(u, False), _sub2(v, False)
        out = np.empty((h, w // 2, 4), np.uint8)
        if name == "YUYV":
            out[..., 0], out[..., 1], out[..., 2], out[..., 3] = y[:, 0::2], u2, y[:, 1::2], v2
        else:
            out[..., 0], out[..., 1], out[..., 2], out[..., 3] = u2, y[:, 0::2], v2, y[:, 1::2]
        return out.reshape(-1)
    u4, v4 = _sub2(u, True), _sub2(v, True)
    if name == "NV12":
        uv = np.empty((h // 2, w // 2, 2), np.uint8)
        uv[..., 0], uv[..., 1] = u4, v4
        return np.concatenate([y.reshape(-1), uv.reshape(-1)])
    if name == "YU12":
        return np.concatenate([y.reshape(-1), u4.reshape(-1), v4.reshape(-1)])
    raise ValueError(f"no converter for {name}")


def planes_of(frame: np.ndarray, fmt: PixelFormat, width: int, height: int) -> list[np.ndarray]:
    """2-D (rows x bytes) views of each plane of a 1-D frame buffer."""
    views, offset = [], 0
    for rows, row in fmt.plane_shapes(width, height):
        views.append(frame[offset : offset + rows * row].reshape(rows, row))
        offset += rows * row
    return views
