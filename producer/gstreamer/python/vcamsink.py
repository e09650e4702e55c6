"""vcamsink: a GStreamer sink that is a vcam camera.

    gst-launch-1.0 videotestsrc ! vcamsink label="Lab Cam"

Each stream makes a camera (/dev/videoN, the read-only `device` property)
in the size and format of its caps; any V4L2 application captures from it.
A buffer whose memory is one DMA-BUF laid out as the camera's frame (from
`v4l2src io-mode=dmabuf`, say) is queued into the camera as it is, and held
until the driver hands its slot back: no pixel is copied here. Any other
buffer is copied into the camera's own DMA-BUFs. The `path` property, and
an element message `vcamsink-path` whenever it changes, say which.

GStreamer's python plugin loader (gstreamer1.0-python3-plugin-loader) finds
this file in the `python` folder of a GST_PLUGIN_PATH entry (the lab: this
checkout's producer/gstreamer) or of the system's plugin folder (make
install). It runs under the system python3 and imports vcam's producer
package from the checkout it sits in, else from make install's /opt/vcam/venv.
"""

import collections
import os
import select
import site
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstBase", "1.0")
gi.require_version("GstVideo", "1.0")
gi.require_version("GstAllocators", "1.0")
from gi.repository import GObject, Gst, GstAllocators, GstBase, GstVideo  # noqa: E402

_CHECKOUT = Path(__file__).resolve().parents[3]
if (_CHECKOUT / "producer" / "camera.py").is_file():
    sys.path.insert(0, str(_CHECKOUT))
else:
    for _packages in sorted(Path("/opt/vcam/venv/lib").glob("python3*/site-packages")):
        site.addsitedir(str(_packages))

from producer import formats  # noqa: E402
from producer.camera import VirtualCamera  # noqa: E402
from producer.control import CONTROL_NODE  # noqa: E402
from producer.errors import open_error  # noqa: E402
from producer.uapi import VCAM_STATUS_STREAMING  # noqa: E402

Gst.init(None)

# GStreamer's raw format names for vcam's formats (producer/formats.py);
# MJPG is image/jpeg.
GST_FORMATS = {"YUY2": "YUYV", "UYVY": "UYVY", "NV12": "NV12", "I420": "YU12", "GRAY8": "GREY",
               "RGB": "RGB3", "BGR": "BGR3", "BGRx": "BX24"}
MAX_SIZE = 8192   # the driver's max_width and max_height
SIZES = f"width=(int)[2,{MAX_SIZE}], height=(int)[2,{MAX_SIZE}], framerate=(fraction)[0/1,1000/1]"
CAPS = (f"video/x-raw, format=(string){{ {', '.join(GST_FORMATS)} }}, {SIZES}; "
        f"image/jpeg, {SIZES}")
ZERO_COPY, COPY = "zero-copy", "copy"
CHECK_STREAMING_MS = 100   # how often a render waiting for a slot checks that a consumer still streams


class Stream:
    """What the caps say about the frames: vcam's fourcc and its layout."""

    def __init__(self, caps: Gst.Caps):
        s = caps.get_structure(0)
        self.width, self.height = s.get_value("width"), s.get_value("height")
        if s.get_name() == "image/jpeg":
            self.fourcc, self.info, self.layout = "MJPG", None, None
            return
        self.info = GstVideo.VideoInfo.new_from_caps(caps)
        fmt = formats.FORMATS[GST_FORMATS[self.info.finfo.name]]
        self.fourcc = fmt.fourcc
        # vcam's frame: the planes one after the other, rows without padding
        self.layout, offset = [], 0
        for rows, row in fmt.plane_shapes(self.width, self.height):
            self.layout.append((offset, row, rows))
            offset += rows * row

    def key(self) -> tuple:
        return (self.width, self.height, self.fourcc)

    def planes(self, buf: Gst.Buffer) -> list[tuple[int, int]]:
        """(offset, stride) of each plane in buf."""
        meta = GstVideo.buffer_get_video_meta(buf)
        src = meta if meta is not None else self.info
        return [(src.offset[i], src.stride[i]) for i in range(len(self.layout))]

    def same_layout(self, buf: Gst.Buffer) -> bool:
        return self.layout is None or self.planes(buf) == [(o, row) for o, row, _ in self.layout]


class VcamSink(GstBase.BaseSink):
    __gtype_name__ = "GstVcamSink"   # elements named vcamsink0, ...
    __gstmetadata__ = ("vcam virtual camera sink", "Sink/Video",
                       "Makes a vcam camera (/dev/videoN) that any V4L2 application captures from; "
                       "DMA-BUF memory goes through without a copy", "vcam")
    __gsttemplates__ = Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS,
                                           Gst.Caps.from_string(CAPS))
    __gproperties__ = {
        "label": (str, "Label", "The camera's name, what consumers see as its card (letters, digits, spaces)",
                  "vcam", GObject.ParamFlags.READWRITE),
        "slots": (int, "Slots", "The camera's output slots: frames queued or held at once",
                  2, 32, 4, GObject.ParamFlags.READWRITE),
        "device": (str, "Device", "The /dev/videoN this stream's camera is (read-only)",
                   None, GObject.ParamFlags.READABLE),
        "path": (str, "Path", "How the last frame reached the camera: zero-copy (its DMA-BUF queued as it is) "
                 "or copy (read-only)", None, GObject.ParamFlags.READABLE),
    }

    def __init__(self):
        super().__init__()
        self.label, self.slots = "vcam", 4
        self.set_sync(True)   # frames leave at their timestamps
        self.cam: VirtualCamera | None = None
        self.stream: Stream | None = None
        self.path: str | None = None
        self.held: dict[int, Gst.Buffer | None] = {}   # queued slot -> the buffer whose DMA-BUF it holds
        self.free: collections.deque[int] = collections.deque()
        self.wake = -1   # an eventfd: unlock() wakes a render waiting for a slot
        self._unlocked = False

    # --- properties -----------------------------------------------------------

    def do_get_property(self, prop):
        if prop.name == "label":
            return self.label
        if prop.name == "slots":
            return self.slots
        if prop.name == "device":
            return self.cam.video_path if self.cam else None
        if prop.name == "path":
            return self.path
        raise AttributeError(prop.name)

    def do_set_property(self, prop, value):
        # Read by the next camera made: the one of the next caps, or stream.
        if prop.name == "label":
            self.label = value
        elif prop.name == "slots":
            self.slots = value
        else:
            raise AttributeError(prop.name)

    # --- errors ---------------------------------------------------------------

    def error(self, text: str, code=Gst.ResourceError.FAILED, domain=None) -> None:
        """GST_ELEMENT_ERROR: one line for the user, on the bus."""
        frame = sys._getframe(1)
        self.message_full(Gst.MessageType.ERROR, domain or Gst.resource_error_quark(), code, text, None,
                          __file__, frame.f_code.co_name, frame.f_lineno)

    # --- the camera -----------------------------------------------------------

    def do_start(self):
        self.wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._unlocked = False
        return True

    def do_stop(self):
        self.close_camera()
        if self.wake >= 0:
            os.close(self.wake)
            self.wake = -1
        self.path = None
        return True

    def close_camera(self) -> None:
        cam, self.cam = self.cam, None
        if cam is not None:
            cam.close()   # the driver lets go of every DMA-BUF it holds...
            self.notify("device")
        self.held.clear()   # ...then the buffers they came in go back upstream
        self.free.clear()
        self.stream = None

    def do_set_caps(self, caps):
        stream = Stream(caps)
        if self.cam is not None and self.stream.key() == stream.key():
            self.stream = stream
            return True
        # A new size or format is a new camera: the driver fixes both at CREATE.
        self.close_camera()
        try:
            cam = VirtualCamera(stream.width, stream.height, stream.fourcc, label=self.label, slots=self.slots,
                                nonblock=True)
        except OSError as e:
            why = open_error(e, e.filename) if e.filename else e.strerror
            self.error(f"cannot make a vcam camera: {why}",
                       Gst.ResourceError.OPEN_WRITE if e.filename == CONTROL_NODE else Gst.ResourceError.SETTINGS)
            return False
        self.cam, self.stream = cam, stream
        self.free.extend(range(cam.slots))
        self.poller = select.poll()
        self.poller.register(cam.ctl.fd, select.POLLIN)
        self.poller.register(self.wake, select.POLLIN)
        Gst.info(f"vcamsink: {cam.video_path} is {stream.width}x{stream.height} {stream.fourcc}")
        self.notify("device")
        self.post_message(Gst.Message.new_element(self, Gst.Structure.new_from_string(
            f"vcamsink-camera, device=(string){cam.video_path}, width=(int){stream.width}, "
            f"height=(int){stream.height}, format=(string){stream.fourcc}")))
        return True

    def do_propose_allocation(self, query):
        # Upstream may keep strides of its own (a copy lines them up), and
        # its pool needs more buffers than the slots hold.
        query.add_allocation_meta(GstVideo.video_meta_api_get_type(), None)
        caps, _ = query.parse_allocation()
        if caps is not None and self.stream and self.stream.info is not None:
            query.add_allocation_pool(None, self.stream.info.size, self.slots + 2, 0)
        return True

    # --- frames ---------------------------------------------------------------

    def take_back(self) -> None:
        for index in self.cam.take_back():
            self.held.pop(index, None)
            self.free.append(index)

    def wait_for_slot(self):
        """A free slot; None while nobody streams: the frame is dropped, as
        vcam-producer run's --while-idle wait does, so a consumer's first
        frame is never one made before it came, and a pipeline without a
        viewer never stalls. FLUSHING when unlock() says stop waiting."""
        self.take_back()
        while True:
            if self._unlocked:
                return Gst.FlowReturn.FLUSHING
            if not self.cam.ctl.status() & VCAM_STATUS_STREAMING:
                return None
            if self.free:
                return self.free.popleft()
            self.poller.poll(CHECK_STREAMING_MS)
            self.take_back()

    def dmabuf_fd(self, buf: Gst.Buffer) -> int | None:
        """The DMA-BUF to queue as it is, when buf is one laid out as the camera's frame."""
        if buf.n_memory() != 1:
            return None
        mem = buf.peek_memory(0)
        if not GstAllocators.is_dmabuf_memory(mem) or mem.offset != 0 or not self.stream.same_layout(buf):
            return None
        fd = GstAllocators.dmabuf_memory_get_fd(mem)
        return fd if os.lseek(fd, 0, os.SEEK_END) >= self.cam.size else None

    def copy_in(self, buf: Gst.Buffer, index: int) -> int:
        """Copy buf into slot index's DMA-BUF; the payload length to queue."""
        with buf.map(Gst.MapFlags.READ) as info:
            data = info.data
            stream = self.stream
            if stream.layout is None:   # compressed: the payload as it is
                if len(data) > self.cam.size:
                    raise ValueError(f"a {len(data)}-byte JPEG frame is larger than the camera's "
                                     f"{self.cam.size}-byte buffers")
                self.cam.write(index, data)
                return len(data)
            if stream.same_layout(buf):
                self.cam.write(index, data[:self.cam.size])
                return 0
            with self.cam.bufs[index].cpu_access() as dst:   # row by row, without the padding
                for (src_off, src_stride), (dst_off, row, rows) in zip(stream.planes(buf), stream.layout):
                    for r in range(rows):
                        dst[dst_off + r * row:dst_off + (r + 1) * row] = \
                            data[src_off + r * src_stride:src_off + r * src_stride + row]
            return 0

    def do_render(self, buf):
        index = self.wait_for_slot()
        if index is None:
            return Gst.FlowReturn.OK
        if isinstance(index, Gst.FlowReturn):
            return index
        fd = self.dmabuf_fd(buf)
        try:
            if fd is not None:
                length = buf.get_size() if self.stream.layout is None else 0
                self.cam.ctl.queue(index, fd, length=length)
                self.held[index] = buf   # a reference: upstream reuses it once the slot is back
                path = ZERO_COPY
            else:
                length = self.copy_in(buf, index)
                self.cam.queue(index, length=length)
                self.held[index] = None
                path = COPY
        except (OSError, ValueError) as e:
            self.free.appendleft(index)
            self.error(f"{self.cam.video_path} refused a frame: {getattr(e, 'strerror', None) or e}",
                       Gst.ResourceError.WRITE)
            return Gst.FlowReturn.ERROR
        if path != self.path:
            self.path = path
            self.notify("path")
            self.post_message(Gst.Message.new_element(self, Gst.Structure.new_from_string(
                f"vcamsink-path, device=(string){self.cam.video_path}, path=(string){path}")))
        return Gst.FlowReturn.OK

    def do_event(self, event):
        if event.type == Gst.EventType.EOS and self.cam is not None:
            self.drain()
        return GstBase.BaseSink.do_event(self, event)

    def drain(self) -> None:
        """At EOS, while a consumer streams, wait for every queued frame to
        be taken: the last frames reach it before the camera goes."""
        self.take_back()
        while len(self.free) < self.cam.slots and not self._unlocked:
            if not self.cam.ctl.status() & VCAM_STATUS_STREAMING:
                return
            self.poller.poll(CHECK_STREAMING_MS)
            self.take_back()

    def do_unlock(self):
        self._unlocked = True
        if self.wake >= 0:
            os.eventfd_write(self.wake, 1)
        return True

    def do_unlock_stop(self):
        self._unlocked = False
        if self.wake >= 0:
            try:
                os.eventfd_read(self.wake)
            except BlockingIOError:
                pass
        return True


GObject.type_register(VcamSink)
__gstelementfactory__ = ("vcamsink", Gst.Rank.NONE, VcamSink)
