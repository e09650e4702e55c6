"""Reproducer found by vcam-fuzz: a QBUF that vb2 refuses after the buffer
was set up drops the buffer's memory without buf_cleanup, so the buffer
stays on dev->cap_all; freeing it (REQBUFS 0) leaves a dangling node and the
next buf_init (REQBUFS) hits "list_add corruption" (kernel BUG, the
camera's spinlock held for ever).

    lab/vm-run -- python3 fuzz/repro/qbuf_error_leaves_buffer_listed.py dmabuf
    lab/vm-run -- python3 fuzz/repro/qbuf_error_leaves_buffer_listed.py userptr

vb2 (6.12 videobuf2-core.c): __prepare_dmabuf's error paths (a bad fd, a
length below the minimum) end in __vb2_buf_dmabuf_put() without
buf_cleanup; __prepare_userptr's "provided buffer size ... is less than
setup size" check comes before its buf_cleanup call, and its error path
puts the plane. __vb2_queue_free() then calls buf_cleanup only for
buffers whose planes[0].mem_priv is set, which is no longer the case.
"""

import ctypes
import mmap
import sys

sys.path.insert(0, "tests")
from producer import v4l2  # noqa: E402
from vcam_helpers import Camera, Capture, foreign_dmabuf  # noqa: E402

mode = sys.argv[1] if len(sys.argv) > 1 else "dmabuf"
cam = Camera(nr_frames=2)
cap = Capture(cam.video)
if mode == "dmabuf":
    buf = foreign_dmabuf(cap.fmt().sizeimage)
    cap.reqbufs(1, v4l2.V4L2_MEMORY_DMABUF)
    cap.qbuf(0, buf.fd, buf.size)          # buf_init: on cap_all
    cap.streamon()
    cap.streamoff()                        # the buffer is DEQUEUED again
    bad = v4l2.v4l2_buffer(index=0, type=v4l2.V4L2_BUF_TYPE_VIDEO_CAPTURE,
                           memory=v4l2.V4L2_MEMORY_DMABUF)
    bad.m.fd = -1                          # vb2 puts the planes, no buf_cleanup
else:
    cap.reqbufs(1, v4l2.V4L2_MEMORY_USERPTR)
    cap.qbuf(0)                            # buf_init: on cap_all
    cap.streamon()
    cap.streamoff()
    other = mmap.mmap(-1, cap.fmt().sizeimage)
    bad = v4l2.v4l2_buffer(index=0, type=v4l2.V4L2_BUF_TYPE_VIDEO_CAPTURE,
                           memory=v4l2.V4L2_MEMORY_USERPTR)
    bad.m.userptr = ctypes.addressof(ctypes.c_char.from_buffer(other))
    bad.length = 64                        # too short: vb2 puts the plane, no buf_cleanup
try:
    v4l2.qbuf(cap.fd, bad)
except OSError as e:
    print(f"QBUF refused as expected: {e}")
cap.reqbufs(0, cap.memory)                 # the buffer is freed, still listed
print("REQBUFS 1 MMAP: buf_init's list_add_tail meets the freed node", flush=True)
cap.reqbufs(1, v4l2.V4L2_MEMORY_MMAP)
print("survived")
cap.close()
cam.close()
