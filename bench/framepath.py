#!/usr/bin/env python3
"""Benchmark of the vcam frame path: zero-copy against copy, three sizes.

Runs in the guest (make bench, or lab/vm-run -- python bench/framepath.py).
The same loop as bench/vcam-bench.c, with the producer and the consumer in
Python (producer/ ctypes layer), in one
process, one thread: consume a capture buffer, give it back, take the output
slot back, queue it again. Frame contents are written once, not per frame,
so the loop measures the driver's frame path, not Python filling pixels.

CPU per frame is the whole machine's busy time (/proc/stat: user, nice,
system, irq, softirq) divided by the frames, so it includes the kernel
worker that copies. Prints a table; --json prints the rows.
"""

import argparse
import json
import os
import select
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP / "tests"))
sys.path.insert(0, str(TOP))

from producer import v4l2  # noqa: E402
from vcam_helpers import Camera, Capture, stats  # noqa: E402

SIZES = {"640x480": (640, 480), "1920x1080": (1920, 1080), "3840x2160": (3840, 2160)}
NR = 4


def busy_jiffies() -> int:
    f = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, idle, iowait, irq, softirq = map(int, f[1:8])
    return user + nice + system + irq + softirq


def run(width: int, height: int, zero_copy: bool, frames: int) -> dict:
    with Camera(nr_frames=NR, width=width, height=height) as cam, Capture(cam.video) as cap:
        for i, b in enumerate(cam.bufs):
            b.fill(i, cam.size)
        if zero_copy:
            cap.reqbufs(NR, v4l2.V4L2_MEMORY_DMABUF)
            for i in range(NR):
                cap.qbuf(i, cam.bufs[i].fd, cam.bufs[i].size)
        else:
            cap.reqbufs(NR)
            for i in range(NR):
                cap.qbuf(i)
        cap.streamon()
        for i in range(NR):
            cam.ctl.queue(i, cam.bufs[i].fd)
        p = select.poll()
        p.register(cam.ctl.fd, select.POLLIN)

        def step():
            b = cap.dqbuf()
            if zero_copy:
                cap.qbuf(b.index, cam.bufs[b.index].fd, cam.bufs[b.index].size)
            else:
                cap.qbuf(b.index)
            # each consumed frame hands exactly one slot back
            if not p.poll(10000):
                raise TimeoutError("no output slot came back")
            d = cam.ctl.dequeue()
            cam.ctl.queue(d.index, cam.bufs[d.index].fd)

        for _ in range(NR):  # warm up
            step()
        hz = os.sysconf("SC_CLK_TCK")
        t0, j0 = time.monotonic(), busy_jiffies()
        for _ in range(frames):
            step()
        t1, j1 = time.monotonic(), busy_jiffies()
        cap.streamoff()
        s = stats(cam.nr)
    elapsed = t1 - t0
    return {
        "size": f"{width}x{height}",
        "path": "zero-copy" if zero_copy else "copy",
        "frames": frames,
        "fps": frames / elapsed,
        "cpu_ms_per_frame": (j1 - j0) * 1000 / hz / frames,
        "wall_ms_per_frame": elapsed * 1000 / frames,
        "zero_copy_frames": s["frames_zero_copy"],
        "copied_frames": s["frames_copied"],
        "mib_copied": s["bytes_copied"] / (1 << 20),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=0, help="frames per run (default: by size)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    rows = []
    for name, (w, h) in SIZES.items():
        n = args.frames or max(100, 600 * 640 * 480 // (w * h))
        for zc in (True, False):
            rows.append(run(w, h, zc, n))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("vcam frame path, YUYV, producer and consumer in Python (bench/framepath.py)")
    print(f"{'size':>10} {'path':>10} {'frames':>6} {'fps':>8} {'cpu ms/frame':>13} {'wall ms/frame':>14} {'MiB copied':>11}")
    for r in rows:
        print(f"{r['size']:>10} {r['path']:>10} {r['frames']:>6} {r['fps']:>8.1f} {r['cpu_ms_per_frame']:>13.3f}"
              f" {r['wall_ms_per_frame']:>14.3f} {r['mib_copied']:>11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
