"""The Python-producer rows of make bench: what users run, side by side.

- vcam-producer copy (py): `vcam-producer run --fps 0` (still pattern, the
  integrity header rewritten each frame) into a vcam camera;
- v4l2loopback write() (py): the usual way to feed v4l2loopback from
  Python, a loop of os.write() of a ready frame into its output side
  (this file, run as `python3 bench/pyrows.py write DEVICE WIDTH HEIGHT`).

Either way the consumer is vcam-bench's MMAP capture (C) in its own
process, so both paths copy each frame once in the kernel, and the rate
is what the consumer got. CPU per frame is the whole guest's, both
processes included.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent


def capture(binary, device, width, height, seconds):
    out = subprocess.run([binary, "capture", str(width), str(height), str(seconds), device],
                         capture_output=True, text=True, timeout=seconds + 120, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return json.loads(out.stdout)


def stop(proc):
    proc.send_signal(signal.SIGINT)  # vcam-producer's clean stop
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def vcam_row(binary, width, height, seconds):
    producer = subprocess.Popen([sys.executable, "-m", "producer.cli", "run", "--json", "--fps", "0",
                                 "--size", f"{width}x{height}", "--pattern", "smpte", "--label", "bench"],
                                stdout=subprocess.PIPE, text=True, cwd=TOP)
    try:
        ready = json.loads(producer.stdout.readline())
        return capture(binary, ready["device"], width, height, seconds)
    finally:
        stop(producer)


def loopback_row(binary, device, width, height, seconds):
    writer = subprocess.Popen([sys.executable, __file__, "write", device, str(width), str(height)],
                              stdout=subprocess.PIPE, text=True, cwd=TOP)
    try:
        if writer.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the write() loop into {device} did not start")
        return capture(binary, device, width, height, seconds)
    finally:
        stop(writer)


def measure(binary, width, height, seconds, device=None):
    """The Python rows at one size (v4l2loopback's when DEVICE is given)."""
    rows = [dict(vcam_row(binary, width, height, seconds), path="vcam-producer copy (py)")]
    if device:
        rows.append(dict(loopback_row(binary, device, width, height, seconds), path="v4l2loopback write() (py)"))
    return rows


def write_loop(device, width, height):
    """Feed v4l2loopback as a Python user does: set the format, write() frames."""
    sys.path.insert(0, str(TOP))
    from producer import v4l2

    fd = os.open(device, os.O_RDWR)
    fmt = v4l2.v4l2_format(type=v4l2.V4L2_BUF_TYPE_VIDEO_OUTPUT)
    fmt.fmt.pix.width, fmt.fmt.pix.height = width, height
    fmt.fmt.pix.pixelformat = v4l2.fourcc("YUYV")
    fmt.fmt.pix.field = 1  # V4L2_FIELD_NONE
    fmt = v4l2.s_fmt(fd, fmt)
    frame = bytes([0x80]) * fmt.fmt.pix.sizeimage
    os.write(fd, frame)  # the first frame makes the capture side ready
    print("ready", flush=True)
    try:
        while True:
            os.write(fd, frame)
    except KeyboardInterrupt:
        pass
    finally:
        os.close(fd)


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "write":
        sys.exit("usage: python3 bench/pyrows.py write DEVICE WIDTH HEIGHT")
    write_loop(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
