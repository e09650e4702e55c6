"""make bench, the guest half: vcam next to v4l2loopback and memcpy, one table.

    python3 bench/run.py BENCH_BINARY [--loopback V4L2LOOPBACK_KO] [--out FILE]

Every row is SECONDS of the C program (bench/vcam-bench.c), one process
playing producer and consumer: vcam zero-copy, vcam copy, v4l2loopback
(write() into its output, MMAP capture) and memcpy of one frame, the bound
of any path that copies once. Rows run interleaved (each size: every path,
then the next size, ROUNDS times), so drift in the emulated guest hits all
paths alike. Rates under TCG emulation are far below real hardware; the
ratios between rows of one run are what carries over.

--loopback loads that v4l2loopback.ko here (one device, output and capture
on one node); without it, or when it does not load, the v4l2loopback rows
are left out with one line saying why. --out writes the figures as JSON
(bench/report.py plots them on the host).
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402

SIZES = [(640, 480), (1920, 1080), (3840, 2160)]
LOOPBACK_NR = 63  # /dev/video63: far from the numbers vcam hands out


def measure(binary, mode, width, height, seconds, *extra):
    result = subprocess.run([binary, mode, str(width), str(height), str(seconds), *extra],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"bench: {mode} {width}x{height} failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def load_loopback(ko):
    """insmod v4l2loopback; its device node, or None with one line why not."""
    if not ko:
        return None  # lab/v4l2loopback.sh said why, in one line; the table's title says so too
    subprocess.run(["modprobe", "videodev"], check=False)
    load = subprocess.run(["insmod", ko, "devices=1", "exclusive_caps=0", "max_buffers=4",
                           f"video_nr={LOOPBACK_NR}", "card_label=loopback bench"],
                          capture_output=True, text=True, check=False)
    if load.returncode != 0:
        print(f"bench: insmod {ko} failed ({load.stderr.strip()}); the v4l2loopback rows are left out")
        return None
    return f"/dev/video{LOOPBACK_NR}"


def version_of(ko):
    out = subprocess.run(["modinfo", "-F", "version", ko], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary", help="the built bench/vcam-bench.c")
    ap.add_argument("--loopback", metavar="KO", help="v4l2loopback.ko to load and compare with")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per row (default 3)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds over every row (default 2)")
    ap.add_argument("--python", action="store_true", help="also the Python-producer rows (bench/pyrows.py)")
    ap.add_argument("--out", metavar="FILE", help="write the figures as JSON")
    args = ap.parse_args(argv)

    device = load_loopback(args.loopback)
    paths = ["vcam zero-copy", "vcam copy"] + (["v4l2loopback"] if device else []) + ["memcpy"]
    modes = {"vcam zero-copy": ["zero-copy"], "vcam copy": ["copy"],
             "v4l2loopback": ["loopback", device], "memcpy": ["memcpy"]}
    runs = []
    for n in range(args.rounds):
        for w, h in SIZES:
            for path in paths:
                mode, *extra = modes[path]
                row = measure(args.binary, mode, w, h, args.seconds, *extra)
                runs.append({"path": path, "round": n, **row})

    if args.python:
        import pyrows
        for n in range(args.rounds):
            for w, h in SIZES:
                runs += [dict(r, round=n) for r in pyrows.measure(args.binary, w, h, args.seconds, device)]

    figures = {
        "conditions": {
            "kernel": os.uname().release,
            "cpus": os.cpu_count(),
            "seconds_per_row": args.seconds,
            "rounds": args.rounds,
            "format": "YUYV",
            "v4l2loopback": version_of(args.loopback) if device else None,
        },
        "runs": runs,
    }
    print(report.table(figures))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")
    if device:
        subprocess.run(["rmmod", "v4l2loopback"], check=False)


if __name__ == "__main__":
    main()
