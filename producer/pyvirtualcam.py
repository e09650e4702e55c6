"""pyvirtualcam's API on vcam: a pyvirtualcam program moves to vcam by
changing its import, `import pyvirtualcam` to `from producer import pyvirtualcam`.

    from producer import pyvirtualcam

    with pyvirtualcam.Camera(640, 480, 30, fmt=pyvirtualcam.PixelFormat.BGR) as cam:
        print(cam.device)                # /dev/videoN, made for this program
        while True:
            cam.send(frame)              # e.g. an OpenCV frame: HxWx3 uint8, BGR
            cam.sleep_until_next_frame()

The public names and what they mean are pyvirtualcam's (0.15): Camera(width,
height, fps, *, fmt, device, backend, print_fps, **kw) with send(),
sleep_until_next_frame(), close(), the context manager and the properties
backend, device, width, height, fps, fmt, native_fmt, frames_sent and
current_fps; PixelFormat with RGB, BGR, RGBA, GRAY, I420, NV12, YUYV, UYVY.

Where vcam differs:
  - Each Camera is a new vcam camera; the driver chooses its /dev/videoN.
    device=None takes whatever it is; device="/dev/videoN" is a check that
    the new camera got that node (a CameraError, and no camera, if not).
  - The camera's own V4L2 format is the keyword camera_fmt (one of vcam's,
    see formats.FORMATS; default: YUYV for RGB, BGR, RGBA and GRAY input,
    which is converted, BT.601 limited range as pixels.convert does; the
    input's own format for I420, NV12, YUYV and UYVY, passed through as is).
    An input whose layout is the camera's is always passed through as is.
  - Frames go through the driver's output slots (slots=4). While nobody
    streams from the camera, send() drops the frame and counts it in
    frames_dropped: a frame queued then would wait in the driver and be
    the first a consumer sees, however old (as vcam-producer run's
    --while-idle wait; a program that sends frames as it makes them has
    the newest one ready anyway). While a consumer streams, send() waits
    for a free slot (back-pressure, as vcam-producer run does), and drops
    the frame if the consumer stops meanwhile.
  - vcam's other keywords: label (the card name consumers see) and
    slot_memory (VirtualCamera's).
"""

import collections
import errno
import enum
import operator
import time

import numpy as np

from . import formats, pixels
from .camera import VirtualCamera
from .errors import open_error
from .uapi import VCAM_STATUS_STREAMING

BACKEND = "vcam"  # the one backend, for code that names pyvirtualcam's
DEFAULT_CAMERA_FORMAT = "YUYV"
BACK_PRESSURE_CHECK_S = 0.1  # how often a send() waiting for a slot checks that a consumer still streams


class PixelFormat(enum.Enum):
    """The formats send() takes. Each value is the V4L2 fourcc of the same
    memory layout, which vcam carries unconverted where it has that format
    (RGBA's, V4L2 RGBA32, it has not)."""

    RGB = "RGB3"   # shape (h, w, 3)
    BGR = "BGR3"   # shape (h, w, 3): OpenCV's frames
    RGBA = "AB24"  # shape (h, w, 4); alpha is dropped
    GRAY = "GREY"  # shape (h, w)
    I420 = "YU12"  # any shape of w * h * 3/2 elements
    NV12 = "NV12"  # any shape of w * h * 3/2 elements
    YUYV = "YUYV"  # any shape of w * h * 2 elements
    UYVY = "UYVY"  # any shape of w * h * 2 elements

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


# Input formats pixels.convert can take (as RGB) to any camera format.
CONVERTED = {PixelFormat.RGB, PixelFormat.BGR, PixelFormat.RGBA, PixelFormat.GRAY}
_IMAGE_CHANNELS = {PixelFormat.RGB: 3, PixelFormat.BGR: 3, PixelFormat.RGBA: 4, PixelFormat.GRAY: None}


class CameraError(OSError, RuntimeError):
    """The camera could not be made (one line, with the errno): an OSError
    like the rest of the producer's, a RuntimeError as pyvirtualcam raises."""


def camera_format(fmt: PixelFormat, camera_fmt=None) -> formats.PixelFormat:
    """The camera's format for input fmt and the camera_fmt asked for
    (a fourcc or alias, a PixelFormat, or None for the default)."""
    same = formats.FORMATS.get(fmt.value)  # vcam's format with the input's layout, if any
    if camera_fmt is None:
        return same if fmt not in CONVERTED else formats.lookup(DEFAULT_CAMERA_FORMAT)
    if isinstance(camera_fmt, PixelFormat):
        camera_fmt = camera_fmt.value
    if not isinstance(camera_fmt, str):
        raise TypeError(f"camera_fmt is a fourcc such as 'YUYV' or a PixelFormat, not {camera_fmt!r}")
    chosen = formats.lookup(camera_fmt)
    if fmt not in CONVERTED and chosen is not same:
        raise ValueError(f"{fmt} frames are passed through as they are: camera_fmt must be {same.fourcc} "
                         f"(or left out), not {chosen.fourcc}")
    return chosen


def check_frame(frame, fmt: PixelFormat, width: int, height: int, camera: formats.PixelFormat) -> None:
    """TypeError or ValueError, in one line, unless frame is what send() takes for fmt."""
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"a frame is a numpy.ndarray, not {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise TypeError(f"unexpected frame dtype: {frame.dtype} != uint8")
    if fmt in CONVERTED:
        channels = _IMAGE_CHANNELS[fmt]
        shape = (height, width) if channels is None else (height, width, channels)
        if frame.shape != shape:
            raise ValueError(f"unexpected frame shape for {fmt}: {frame.shape} != {shape}")
    elif frame.size != camera.frame_size(width, height):
        raise ValueError(f"unexpected frame size for {fmt}: {frame.size} != {camera.frame_size(width, height)}")


def to_camera(frame: np.ndarray, fmt: PixelFormat, camera: formats.PixelFormat) -> np.ndarray:
    """A checked frame of input format fmt as the bytes of one frame in the
    camera's format (1-D uint8)."""
    if fmt.value == camera.fourcc:
        return np.ascontiguousarray(frame).reshape(-1)
    if fmt is PixelFormat.RGB:
        rgb = frame
    elif fmt is PixelFormat.BGR:
        rgb = frame[..., ::-1]
    elif fmt is PixelFormat.RGBA:
        rgb = frame[..., :3]
    elif fmt is PixelFormat.GRAY:
        rgb = np.broadcast_to(frame[..., None], frame.shape + (3,))  # a grey pixel is R = G = B
    else:
        raise ValueError(f"no conversion from {fmt} to {camera.fourcc}")
    return pixels.convert(rgb, camera)


class Camera:
    """A new vcam camera fed with numpy frames, as pyvirtualcam.Camera."""

    def __init__(self, width: int, height: int, fps: float, *, fmt: PixelFormat = PixelFormat.RGB,
                 device: str | None = None, backend: str | None = None, print_fps: bool = False,
                 camera_fmt=None, label: str = "vcam", slots: int = 4, slot_memory: str = "auto"):
        self._cam: VirtualCamera | None = None  # first, so close() works whatever fails below
        # Everything that can be checked without the driver is, before /dev/vcam is opened.
        if backend not in (None, BACKEND):
            raise ValueError(f"unknown backend {backend!r}: this Camera is vcam's, its one backend is {BACKEND!r}")
        if not isinstance(fmt, PixelFormat):
            raise ValueError(f"fmt must be a PixelFormat ({', '.join(f.name for f in PixelFormat)}), not {fmt!r}")
        try:
            width, height = operator.index(width), operator.index(height)
        except TypeError:
            raise TypeError(f"width and height are whole numbers of pixels, not {width!r} x {height!r}") from None
        if width < 1 or height < 1:
            raise ValueError(f"width and height must be positive, not {width}x{height}")
        if not fps > 0:
            raise ValueError(f"fps must be more than 0, not {fps!r}")
        self._camera_fmt = camera_format(fmt, camera_fmt)
        cf = self._camera_fmt
        if width % cf.hstep or height % cf.vstep:
            raise ValueError(f"a {cf.fourcc} camera needs a width divisible by {cf.hstep} and a height divisible "
                             f"by {cf.vstep}, not {width}x{height}")
        try:
            self._cam = VirtualCamera(width, height, cf.code, label=label, slots=slots, nonblock=True,
                                      slot_memory=slot_memory)
        except OSError as e:
            why = e.strerror if e.filename is None else open_error(e, e.filename)
            raise CameraError(e.errno, why) from None
        self._device = self._cam.video_path
        if device is not None and device != self._device:
            self.close()
            raise CameraError(errno.ENODEV, f"vcam made {self._device}, not {device}: the driver numbers new "
                                            "cameras itself (device=None takes the one it made)")
        self._width, self._height, self._fps, self._fmt = width, height, fps, fmt
        self._print_fps = print_fps
        self._free = collections.deque(range(self._cam.slots))
        self._frames_sent = 0
        self.frames_dropped = 0  # sent while nobody streamed
        # The last second's send() times, for current_fps.
        self._send_times: collections.deque[float] = collections.deque(maxlen=max(2, round(fps) + 1))
        self._last_printed = time.monotonic()
        # sleep_until_next_frame()'s schedule: frame n is due at _epoch + n / fps.
        self._epoch: float | None = None
        self._since_epoch = 0

    # --- pyvirtualcam's properties --------------------------------------------

    @property
    def backend(self) -> str:
        return BACKEND

    @property
    def device(self) -> str:
        """The /dev/videoN consumers open."""
        return self._device

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def fmt(self) -> PixelFormat:
        """The input format send() takes."""
        return self._fmt

    @property
    def native_fmt(self) -> PixelFormat | None:
        """The camera's own format as a PixelFormat; None where it has no
        PixelFormat name (vcam's XRGB32, for one)."""
        for f in PixelFormat:
            if f.value == self._camera_fmt.fourcc:
                return f
        return None

    @property
    def camera_fmt(self) -> str:
        """The camera's V4L2 fourcc, what consumers capture."""
        return self._camera_fmt.fourcc

    @property
    def frames_sent(self) -> int:
        return self._frames_sent

    @property
    def current_fps(self) -> float:
        """Frames per second over the last second's send() calls."""
        times = self._send_times
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    # --- frames ------------------------------------------------------------------

    def send(self, frame: np.ndarray) -> None:
        """Convert frame (of the input format) to the camera's format and queue it."""
        if self._cam is None:
            raise RuntimeError("send() on a closed Camera")
        check_frame(frame, self._fmt, self._width, self._height, self._camera_fmt)
        data = to_camera(frame, self._fmt, self._camera_fmt)
        now = time.monotonic()
        self._frames_sent += 1
        self._send_times.append(now)
        if self._epoch is None:
            self._epoch = now
        else:
            self._since_epoch += 1
        if self._print_fps and now - self._last_printed >= 1.0:
            self._last_printed = now
            print(f"{self.current_fps:.1f} fps")
        index = self._free_slot()
        if index is None:
            self.frames_dropped += 1
            return
        self._cam.write(index, data)
        self._cam.queue(index, timestamp=time.monotonic_ns())

    def _streaming(self) -> bool:
        return bool(self._cam.ctl.status() & VCAM_STATUS_STREAMING)

    def _free_slot(self) -> int | None:
        """A slot for a frame a consumer will see: one the driver has handed
        back, or, while a consumer streams, the next one it hands back
        (back-pressure); None while nobody streams, so that no frame waits
        in the driver for a consumer and a program with no viewer never hangs."""
        self._free.extend(self._cam.take_back())
        while self._streaming():
            if self._free:
                return self._free.popleft()
            if self._cam.poll(BACK_PRESSURE_CHECK_S):
                self._free.extend(self._cam.take_back())
        return None

    def sleep_until_next_frame(self) -> None:
        """Sleep until the next frame is due: frame n at the first send()
        plus n / fps, so the rate holds without drift. A loop more than a
        frame late starts a new schedule instead of hurrying to catch up."""
        if self._epoch is None:
            return
        interval = 1.0 / self._fps
        due = self._epoch + (self._since_epoch + 1) * interval
        now = time.monotonic()
        if now > due + interval:
            self._epoch = now - (self._since_epoch + 1) * interval  # the next frame is due now
            return
        if due > now:
            time.sleep(due - now)

    # --- lifetime ---------------------------------------------------------------

    def close(self) -> None:
        """Remove the camera (its /dev/videoN goes) and free its buffers; safe to repeat."""
        cam, self._cam = getattr(self, "_cam", None), None
        if cam is not None:
            cam.close()

    def __enter__(self) -> "Camera":
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> bool:
        self.close()
        return False

    def __del__(self):
        self.close()
