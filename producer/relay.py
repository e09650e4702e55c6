"""A real camera relayed into vcam without a copy.

The source camera's own capture buffers (MMAP), exported as DMA-BUFs
(VIDIOC_EXPBUF), are the vcam camera's output slots: slot i is always
source buffer i. A buffer the source fills is queued into its slot as it
is; when vcam hands the slot back, the buffer goes back to the source.
This process never maps a pixel: consumers that import the slots
(--share) get vcam's zero-copy path from the source's memory to theirs.

Only a source that delivers exactly the camera's size and format, in the
same layout, can be relayed; otherwise the producer decodes it with
ffmpeg (sources.FfmpegSource) and says why.

While no consumer streams from the camera, nothing is queued into it (as
produce.Producer, --while-idle): with "wait" each filled buffer goes
straight back to the source; with "newest" the newest one is kept out of
the source's queue and queued into vcam as soon as a consumer starts.
"""

import errno
import os
import select
import time
from fractions import Fraction

from . import uapi, v4l2
from .camera import VirtualCamera
from .errors import SourceError, open_error
from .formats import PixelFormat
from .produce import WHILE_IDLE, ConsumerWatch, ProducerReport, StopSignals
from .share import ShareServer


class NotRelayable(Exception):
    """Why this source's buffers cannot be vcam's slots (one line)."""


def is_video_device(path: str | None) -> bool:
    return bool(path) and path.startswith("/dev/video")


class SourceCamera:
    """A V4L2 capture device set to the camera's size and format, with
    `count` MMAP buffers exported as DMA-BUFs (`dmabufs`, the caller's to
    keep or give away). SourceError when it is not a capture device at
    all; NotRelayable when it is one whose buffers cannot be relayed."""

    def __init__(self, path: str, fmt: PixelFormat, width: int, height: int, fps: float, count: int):
        self.path = path
        self.size = fmt.frame_size(width, height)
        self.partial = 0   # as a Source: a relayed frame is never cut short
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise SourceError(open_error(e, path)) from None
        self.count, self.dmabufs, self.streaming = 0, [], False
        try:
            self._set_up(fmt, width, height, fps, count)
        except BaseException:
            self.close()
            for fd in self.dmabufs:
                os.close(fd)
            raise

    def _set_up(self, fmt: PixelFormat, width: int, height: int, fps: float, count: int) -> None:
        try:
            cap = v4l2.querycap(self.fd)
        except OSError:
            raise SourceError(f"{self.path} is not a V4L2 device") from None
        caps = cap.device_caps if cap.capabilities & v4l2.V4L2_CAP_DEVICE_CAPS else cap.capabilities
        if not caps & v4l2.V4L2_CAP_VIDEO_CAPTURE:
            raise SourceError(f"{self.path} is not a video capture device")
        if not caps & v4l2.V4L2_CAP_STREAMING:
            raise NotRelayable("it has no streaming I/O")
        want = v4l2.v4l2_format(type=v4l2.V4L2_BUF_TYPE_VIDEO_CAPTURE)
        want.fmt.pix.width, want.fmt.pix.height = width, height
        want.fmt.pix.pixelformat, want.fmt.pix.field = fmt.code, v4l2.V4L2_FIELD_NONE
        try:
            got = v4l2.s_fmt(self.fd, want).fmt.pix
        except OSError as e:
            if e.errno == errno.EBUSY:
                raise SourceError(f"{self.path} is busy: another program is streaming from it") from None
            raise NotRelayable(f"it refused the format: {e.strerror}") from None
        stride = fmt.plane_shapes(width, height)[0][1]
        if (got.width, got.height, got.pixelformat) != (width, height, fmt.code):
            raise NotRelayable(f"it gives {got.width}x{got.height} {v4l2.fourcc_str(got.pixelformat)}, "
                               f"not {width}x{height} {fmt.fourcc}")
        if got.bytesperline != stride or got.field != v4l2.V4L2_FIELD_NONE:
            raise NotRelayable(f"its rows are {got.bytesperline} bytes (field {got.field}), not vcam's "
                               f"{stride} bytes, progressive")
        if fps:
            per_frame = Fraction(fps).limit_denominator(1000)
            try:   # a wish: the source's own pace is what the camera gets
                v4l2.s_parm(self.fd, per_frame.denominator, per_frame.numerator)
            except OSError:
                pass
        self.count = v4l2.reqbufs(self.fd, count, v4l2.V4L2_MEMORY_MMAP).count
        if not uapi.VCAM_MIN_FRAMES <= self.count <= uapi.VCAM_MAX_FRAMES:
            raise NotRelayable(f"it gave {self.count} buffers, not {uapi.VCAM_MIN_FRAMES}..{uapi.VCAM_MAX_FRAMES}")
        for index in range(self.count):
            try:
                self.dmabufs.append(v4l2.expbuf(self.fd, index))
            except OSError as e:
                raise NotRelayable(f"it cannot export its buffers (VIDIOC_EXPBUF: {e.strerror})") from None

    def give_back(self, index: int) -> None:
        v4l2.qbuf(self.fd, v4l2.v4l2_buffer(index=index, type=v4l2.V4L2_BUF_TYPE_VIDEO_CAPTURE,
                                            memory=v4l2.V4L2_MEMORY_MMAP))

    def start(self) -> None:
        for index in range(self.count):
            self.give_back(index)
        v4l2.streamon(self.fd)
        self.streaming = True

    def take(self) -> v4l2.v4l2_buffer | None:
        """The next filled buffer, or None when there is none yet."""
        try:
            return v4l2.dqbuf(self.fd, v4l2.V4L2_MEMORY_MMAP)
        except BlockingIOError:
            return None

    def close(self) -> None:
        if self.fd < 0:
            return
        if self.streaming:
            try:
                v4l2.streamoff(self.fd)
            except OSError:
                pass
        os.close(self.fd)   # the exported DMA-BUFs keep the memory for whoever holds them
        self.fd = -1


def open_relay(path: str, fmt: PixelFormat, width: int, height: int, fps: float, slots: int
               ) -> tuple[SourceCamera | None, str | None]:
    """(the source, None) when it can be relayed; (None, why not) when it
    must be decoded instead; SourceError when it is no camera at all."""
    try:
        return SourceCamera(path, fmt, width, height, fps, slots), None
    except NotRelayable as e:
        return None, str(e)


class Relay:
    """The relay loop: source buffers into vcam slots and back, until
    `frames` frames, the source failing, or SIGINT/SIGTERM."""

    def __init__(self, source: SourceCamera, cam: VirtualCamera, frames: int | None = None,
                 share: ShareServer | None = None, while_idle: str = "wait", on_event=None):
        if while_idle not in WHILE_IDLE:
            raise ValueError(f"while_idle must be one of {', '.join(WHILE_IDLE)}, not {while_idle!r}")
        self.source, self.cam, self.frames, self.share = source, cam, frames, share
        self.while_idle = while_idle
        self.report = ProducerReport(device=cam.video_path)
        self.watch = ConsumerWatch(cam, self.report, on_event)
        self._in_vcam = 0   # slots vcam holds
        self._kept: tuple[int, int, int] | None = None   # newest: (index, bytesused, timestamp) held while idle

    def _queue(self, index: int, length: int, timestamp: int) -> None:
        self.cam.queue(index, length=length, timestamp=timestamp)
        self._in_vcam += 1
        self.report.frames_queued += 1

    def _check(self) -> bool:
        """Whether a consumer streams now; a kept frame goes to one that has just started."""
        streaming = self.watch.check(time.monotonic_ns())
        if streaming and self._kept:
            (index, length, timestamp), self._kept = self._kept, None
            self._queue(index, length, timestamp)
        return streaming

    def _take_from_source(self, events: int) -> None:
        """Queue the frame the source filled into its slot, as it is (or,
        while nobody streams, keep it or give it back)."""
        r = self.report
        if events & (select.POLLERR | select.POLLHUP) and not events & select.POLLIN:
            r.source_ended = True   # the source stopped or went away
            return
        buf = self.source.take()
        if buf is None:
            return
        if buf.flags & v4l2.V4L2_BUF_FLAG_ERROR:
            self.source.give_back(buf.index)   # a damaged frame is not passed on
            return
        monotonic = buf.flags & v4l2.V4L2_BUF_FLAG_TIMESTAMP_MASK == v4l2.V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC
        frame = (buf.index, buf.bytesused, buf.timestamp_ns() if monotonic else 0)
        if self._check():
            self._queue(*frame)
            return
        r.frames_dropped += 1   # this frame, or the one kept before it
        if self.while_idle == "newest":
            frame, self._kept = self._kept, frame
        if frame:
            self.source.give_back(frame[0])

    def run(self) -> ProducerReport:
        r = self.report
        signals = StopSignals()
        poller = select.poll()
        for fd in (self.source.fd, signals.read_fd) + ((self.share.fileno(),) if self.share else ()):
            poller.register(fd, select.POLLIN)
        poller.register(self.cam.ctl.fd, select.POLLIN | select.POLLPRI)  # PRI: a consumer started or stopped
        watching_source = True
        r.started_ns = time.monotonic_ns()
        self.watch.close(r.started_ns)   # idle time counts from here
        cpu_start = time.process_time()
        self.source.start()
        try:
            while signals.received is None:
                wants_more = not r.source_ended and (self.frames is None or r.frames_queued < self.frames)
                if not wants_more and watching_source:
                    poller.unregister(self.source.fd)   # from now on only the slots coming back
                    watching_source = False
                self._check()
                if not wants_more and self._in_vcam == 0:
                    break
                for fd, events in poller.poll():
                    if fd == self.source.fd:
                        self._take_from_source(events)
                    elif fd == self.cam.ctl.fd:
                        for index in self.cam.take_back():
                            self._in_vcam -= 1
                            r.slots_returned += 1
                            if not r.source_ended:
                                self.source.give_back(index)
                    elif self.share and fd == self.share.fileno():
                        self.share.serve()
                    elif fd == signals.read_fd:
                        os.read(signals.read_fd, 64)
            r.frames_not_taken = self.cam.wait_until_taken(stopped=lambda: signals.received is not None)
        finally:
            signals.close()
        end = time.monotonic_ns()
        self.watch.close(end)
        r.frames_dropped += bool(self._kept)   # a frame nobody came for
        r.finish(self.cam, self.share, signals.received, self._in_vcam, end, cpu_start)
        return r
