#!/usr/bin/env python3
"""Benchmark of the vcam frame path in Python: zero-copy against copy.

Runs in the guest (make bench, or lab/vm-run -- python bench/framepath.py).
Two tables:

1. transport: the same loop as bench/vcam-bench.c with the producer and the
   consumer in Python (the producer package's ctypes layer), in one process,
   one thread: consume a capture buffer, give it back, take the output slot
   back, queue it again. Frame contents are written once, so this measures
   the driver's frame path plus Python's ioctl overhead, three sizes.
2. vcam-producer: the real producer (`vcam-producer run --fps 0`, with the
   integrity header) feeding the reference consumer (`vcam-producer consume`,
   --import for zero-copy, --memory mmap for copy) at 1080p YUYV, two
   processes. A still pattern (smpte: only the 32-byte header is written per
   frame) and a moving one (gradient: every pixel rewritten per frame).

CPU per frame is the whole machine's busy time (/proc/stat: user, nice,
system, irq, softirq) divided by the frames, so it includes the kernel
worker that copies (table 1); table 2 shows the producer loop's own CPU
(user + system of its process while it runs), without start-up. Prints tables; --json prints the rows.
"""

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

from producer import v4l2  # noqa: E402
from producer.camera import VirtualCamera  # noqa: E402
from producer.capture import Capture  # noqa: E402
from producer.sysfs import stats  # noqa: E402

PRODUCER = [sys.executable, "-m", "producer.cli"]

SIZES = {"640x480": (640, 480), "1920x1080": (1920, 1080), "3840x2160": (3840, 2160)}
NR = 4


def busy_jiffies() -> int:
    f = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, idle, iowait, irq, softirq = map(int, f[1:8])
    return user + nice + system + irq + softirq


def run(width: int, height: int, zero_copy: bool, frames: int) -> dict:
    with VirtualCamera(width, height, label="bench", slots=NR) as cam, Capture(cam.video_path) as cap:
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


def run_producer(zero_copy: bool, pattern: str, frames: int, width: int = 1920, height: int = 1080) -> dict:
    """vcam-producer run feeding vcam-producer consume. CPU per frame: the
    producer's loop only (its own report), so start-up and pre-rendering,
    seconds under TCG, do not hide the per-frame cost."""
    sock = os.path.join(tempfile.mkdtemp(prefix="vcam-bench-"), "share.sock")
    producer = subprocess.Popen(PRODUCER + ["run", "--json", "--size", f"{width}x{height}", "--fps", "0",
                                            "--pattern", pattern, "--frames", str(frames), "--share", sock,
                                            "--label", "bench"], stdout=subprocess.PIPE, text=True, cwd=TOP)
    ready = json.loads(producer.stdout.readline())
    where = ["--import", sock] if zero_copy else ["--device", ready["device"], "--memory", "mmap"]
    consumer = subprocess.run(PRODUCER + ["consume", *where, "--frames", str(frames), "--json", "--timeout", "60"],
                              capture_output=True, text=True, cwd=TOP)
    out = producer.stdout.read()
    producer.wait()
    if consumer.returncode != 0 or producer.returncode != 0:
        raise RuntimeError(f"producer {producer.returncode}, consumer {consumer.returncode}: {consumer.stderr}")
    done = json.loads(out.strip().splitlines()[-1])
    report = json.loads(consumer.stdout)
    return {
        "size": f"{width}x{height}",
        "path": "zero-copy" if zero_copy else "copy",
        "pattern": pattern,
        "frames": frames,
        "fps": report["fps"],
        "producer_cpu_ms_per_frame": done["cpu_s"] * 1000 / frames,
        "latency_ms_p50": report["latency_ms"]["p50"],
        "zero_copy_frames": done["driver"]["frames_zero_copy"],
        "copied_frames": done["driver"]["frames_copied"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=0, help="frames per run (default: by size)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--producer-only", action="store_true", help="only the vcam-producer table")
    args = ap.parse_args(argv)
    rows = []
    if not args.producer_only:
        for name, (w, h) in SIZES.items():
            n = args.frames or max(100, 600 * 640 * 480 // (w * h))
            for zc in (True, False):
                rows.append(run(w, h, zc, n))
    producer_rows = [run_producer(zc, pattern, args.frames or 150)
                     for pattern in ("smpte", "gradient") for zc in (True, False)]
    if args.json:
        print(json.dumps({"transport": rows, "producer": producer_rows}, indent=2))
        return 0
    if rows:
        print_transport(rows)
    print("vcam-producer run -> vcam-producer consume, 1920x1080 YUYV, integrity header (bench/framepath.py)")
    print(f"{'path':>10} {'pattern':>9} {'frames':>6} {'fps':>8} {'producer CPU ms/frame':>22} {'latency p50 ms':>15}")
    for r in producer_rows:
        print(f"{r['path']:>10} {r['pattern']:>9} {r['frames']:>6} {r['fps']:>8.1f}"
              f" {r['producer_cpu_ms_per_frame']:>22.3f} {r['latency_ms_p50']:>15.2f}")
    print("fps: as the consumer saw it, first to last frame; producer CPU: its loop only, no start-up")
    return 0


def print_transport(rows: list[dict]) -> None:
    print("vcam frame path, YUYV, producer and consumer in Python (bench/framepath.py)")
    print(f"{'size':>10} {'path':>10} {'frames':>6} {'fps':>8} {'cpu ms/frame':>13} {'wall ms/frame':>14} {'MiB copied':>11}")
    for r in rows:
        print(f"{r['size']:>10} {r['path']:>10} {r['frames']:>6} {r['fps']:>8.1f} {r['cpu_ms_per_frame']:>13.3f}"
              f" {r['wall_ms_per_frame']:>14.3f} {r['mib_copied']:>11.1f}")
    print()


if __name__ == "__main__":
    sys.exit(main())
