#!/usr/bin/env python3
"""What the vcam-observe probes cost: zero-copy and copy frame rates with
probes attached next to the rates without, from one run.

Runs in the guest (make bench, or lab/vm-run --icount -- python3
bench/probe_overhead.py build/vcam-bench). The frame loop is
bench/vcam-bench.c (producer and consumer in C, one process), the cheapest
loop we have, so the probes' share of it is the largest we can show.

One vcam-bench process streams per path while the probes are attached and
detached in turn, a short window each; the frame rate of a window comes
from the camera's own sysfs counter. Each round measures "without" and
every probe set once (rotating the order), and a set's ratio is the median
of its per-round ratios against that round's "without": a shared, busy
host (other guests, TCG) slows both sides of a round alike. Prints a table;
asserts nothing.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

from observe.probes import PROBES, ObserveError, Probes  # noqa: E402

PATHS = ("zero-copy", "copy")
SIZE = (640, 480)
CARD = "vcam bench"         # the card label vcam-bench gives its camera
SYSFS = Path("/sys/class/video4linux")
WQ_CPUMASK = Path("/sys/devices/virtual/workqueue/cpumask")    # where unbound kworkers run

# Probe sets measured against "without", by attach mechanism and module
GROUPS = {
    "all": None,
    "vcam: kprobes+kretprobes": {p.name for p in PROBES if p.module == "vcam"},
    "vb2: raw tracepoints": {p.name for p in PROBES if p.kind == "raw_tracepoint"},
    "vb2: kprobes+kretprobes": {p.name for p in PROBES if p.module != "vcam" and p.kind != "raw_tracepoint"},
}
# With --each: every probe that fires on the frame path, alone (a return
# probe with its entry probe, which hands it its data)
NOT_PER_FRAME = ("vcam_device_create", "vcam_device_free", "vb2_core_streamon", "vb2_core_streamoff",
                 "vb2_core_queue_release")
EACH = {}
for _p in PROBES:
    if _p.target not in NOT_PER_FRAME:
        _same = [q for q in PROBES if q.target == _p.target]
        EACH["+".join(sorted({q.kind for q in _same})) + ":" + _p.target] = {q.name for q in _same}


class Stream:
    """A vcam-bench process and its camera's delivered-frame counter."""

    def __init__(self, binary: str, path: str, seconds: float):
        # stderr to a file: a pipe nobody reads while we measure could fill and stall the loop
        self.err = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([binary, path, str(SIZE[0]), str(SIZE[1]), str(seconds)],
                                     stdout=subprocess.PIPE, stderr=self.err, text=True)
        deadline = time.monotonic() + 60
        self.counter = None
        while self.counter is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.fail(f"{path}: vcam-bench did not start")
            self.counter = next((n / "vcam" / "frames_dequeued" for n in SYSFS.glob("video*")
                                 if (n / "name").is_file() and (n / "name").read_text().strip() == CARD), None)
            time.sleep(0.1)
        while self.frames() == 0:       # frames flowing
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.fail(f"{path}: no frames came through")
            time.sleep(0.1)

    def fail(self, what: str) -> None:
        self.err.seek(0)
        message = self.err.read().strip()
        self.stop()
        sys.exit(f"probe_overhead: {what}: {message}")

    def frames(self) -> int:
        return int(self.counter.read_text())

    def rate(self, window: float) -> float:
        f0, t0 = self.frames(), time.monotonic()
        time.sleep(window)
        f1, t1 = self.frames(), time.monotonic()
        return (f1 - f0) / (t1 - t0)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        self.err.close()


def measure(stream: Stream, probes: Probes, sets: dict, rounds: int, window: float, settle: float) -> dict:
    """Rates per set name (None: without probes), one window each per round."""
    names = [None, *sets]
    rates = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            probes.select(set() if name is None else sets[name])
            time.sleep(settle)      # attaching is not free: keep it out of the window
            rates[name].append(stream.rate(window))
    probes.select(set())
    return rates


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary", nargs="?", default=str(TOP / "build" / "vcam-bench"),
                    help="the compiled bench/vcam-bench.c (default build/vcam-bench)")
    ap.add_argument("--rounds", type=int, default=8, help="rounds per path (default 8)")
    ap.add_argument("--window", type=float, default=1.0, help="seconds per window (default 1)")
    ap.add_argument("--pin", action="store_true",
                    help="run the loop and the frame path's kworker on CPU 0 only: lower rates, steadier ratios "
                         "on a busy host (sets the unbound workqueue cpumask for the run)")
    ap.add_argument("--each", action="store_true",
                    help="also measure every frame-path probe alone (one more window per probe and round)")
    ap.add_argument("--json", action="store_true", help="print the rates as JSON too")
    args = ap.parse_args(argv)
    sets = {**GROUPS, **(EACH if args.each else {})}
    if not Path(args.binary).exists():
        sys.exit(f"probe_overhead: {args.binary} not found (make bench builds it)")

    try:
        probes = Probes(log=lambda msg: print(f"probe_overhead: {msg}", file=sys.stderr))
        probes.refresh()
    except ObserveError as e:
        sys.exit(f"probe_overhead: {e}")
    attached = {name for name, ok in probes.attached().items() if ok}
    settle = 0.25
    seconds = args.rounds * (len(sets) + 1) * (args.window + settle + 1) + 30
    results = {}
    cpumask = WQ_CPUMASK.read_text().strip() if args.pin else None
    try:
        if args.pin:
            os.sched_setaffinity(0, {0})        # vcam-bench inherits it
            WQ_CPUMASK.write_text("1")
        for path in PATHS:
            stream = Stream(args.binary, path, seconds)
            try:
                results[path] = measure(stream, probes, sets, args.rounds, args.window, settle)
            finally:
                stream.stop()
    finally:
        probes.close()
        if cpumask is not None:
            WQ_CPUMASK.write_text(cpumask)

    print(f"vcam-observe probe overhead, {SIZE[0]}x{SIZE[1]} YUYV, bench/vcam-bench.c, {len(attached)} probes; "
          f"{args.rounds} rounds of {args.window:g} s windows per path, with and without in turn"
          f"{'; loop and kworker on CPU 0' if args.pin else ''}")
    width, path_width = max(map(len, sets)), max(map(len, results))
    print(f"{'path':>{path_width}} {'probes':<{width}} {'n':>2} {'fps without':>12} {'fps with':>9} {'with/without':>13} "
          f"{'spread':>13} {'cost':>6} {'us/frame added':>15}")
    for mode, rates in results.items():
        if not all(r > 0 for rs in rates.values() for r in rs):
            sys.exit(f"probe_overhead: {mode}: the frame loop stalled (a window without frames): {rates}")
        without = statistics.median(rates[None])
        for name, members in sets.items():
            ratios = [w / b for w, b in zip(rates[name], rates[None])]
            ratio = statistics.median(ratios)
            count = len(attached if members is None else attached & members)
            added_us = (1 / ratio - 1) / without * 1e6
            print(f"{mode:>{path_width}} {name:<{width}} {count:>2} {without:>12.0f} {statistics.median(rates[name]):>9.0f} "
                  f"{ratio:>13.3f} {min(ratios):>6.3f}-{max(ratios):<6.3f} {(1 - ratio) * 100:>5.1f}% "
                  f"{added_us:>15.1f}")
    print("(ratio: median over rounds of with/without in the same round; under TCG compare the ratio, not the rates)")
    if args.json:
        print(json.dumps({m: {str(k): v for k, v in r.items()} for m, r in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
