"""Run by tests/test_gst_sink.py in a process of its own: vivid through
v4l2src io-mode=dmabuf into vcamsink, and a consumer in this process that
imports the same DMA-BUFs (gathered by a pad probe on the sink). gst-python
keeps the buffers a pad probe sees alive until the process ends, which
would hold vivid loaded for every later test; here it ends with the process.

    python3 tests/gst_import_consumer.py NODE WIDTH HEIGHT FRAMES_OUT

Prints {"path", "before", "after"} as JSON; the captured frames go to FRAMES_OUT.
"""

import json
import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstAllocators", "1.0")
from gi.repository import Gst, GstAllocators  # noqa: E402

from producer import v4l2  # noqa: E402
from producer.capture import Capture  # noqa: E402
from producer.dmabuf import DmaBuf  # noqa: E402
from producer.sysfs import stats  # noqa: E402
from vcam_helpers import wait_until  # noqa: E402

FRAMES = 30


def main(node: str, width: int, height: int, out: str) -> None:
    Gst.init(None)
    size = width * height * 2
    pipeline = Gst.parse_launch(f"v4l2src device={node} io-mode=dmabuf ! "
                                f"video/x-raw,format=YUY2,width={width},height={height} "
                                "! vcamsink name=sink label=\"Gst Zero Copy\"")
    sink = pipeline.get_by_name("sink")
    # v4l2src's DMA-BUFs as they reach the sink, each once: its pool cycles
    # through them in order, so the first one seen again closes the set.
    seen, complete = {}, []

    def probe(pad, info):
        if not complete:
            mem = info.get_buffer().peek_memory(0)
            assert GstAllocators.is_dmabuf_memory(mem)
            fd = GstAllocators.dmabuf_memory_get_fd(mem)
            inode = os.fstat(fd).st_ino
            if inode in seen:
                complete.append(True)
            else:
                seen[inode] = os.dup(fd)
        return Gst.PadProbeReturn.OK

    sink.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, probe)
    bufs = []
    try:
        assert pipeline.set_state(Gst.State.PLAYING) != Gst.StateChangeReturn.FAILURE
        pipeline.get_state(Gst.CLOCK_TIME_NONE)
        device = sink.get_property("device")
        wait_until(lambda: complete, 120, "every buffer of v4l2src's pool")
        bufs = [DmaBuf(size, fd=fd) for fd in seen.values()]
        nr = int(device.removeprefix("/dev/video"))
        with Capture(device) as cap, open(out, "wb") as frames:
            cap.reqbufs(len(bufs), v4l2.V4L2_MEMORY_DMABUF)
            for i, buf in enumerate(bufs):
                cap.qbuf(i, buf.fd, buf.size)
            before = stats(nr)
            cap.streamon()
            for _ in range(FRAMES):
                done = cap.dqbuf(timeout=60)
                assert done.bytesused == size and not done.flags & v4l2.V4L2_BUF_FLAG_ERROR
                with bufs[done.index].cpu_access(write=False) as pixels:
                    frames.write(bytes(pixels[:size]))
                cap.qbuf(done.index, bufs[done.index].fd, bufs[done.index].size)
            after = stats(nr)
            cap.streamoff()
        path = sink.get_property("path")
    finally:
        pipeline.set_state(Gst.State.NULL)
        pipeline.get_state(Gst.CLOCK_TIME_NONE)
        for buf in bufs:
            buf.close()
    print(json.dumps({"path": path, "before": before, "after": after}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
