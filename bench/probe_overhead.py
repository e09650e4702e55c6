#!/usr/bin/env python3
"""What the vcam-observe probes cost: zero-copy and copy frame rates with
every probe attached next to the rates without, from one run.

Runs in the guest (make bench, or lab/vm-run -- python3 bench/probe_overhead.py
build/vcam-bench). The frame loop is bench/vcam-bench.c (producer and
consumer in C, one process), the cheapest loop we have, so the probes'
share of it is the largest we can show. Order: without, with, without
again; "without" is the mean of the two runs around "with", which cancels
slow drift of a shared machine. Prints a table; asserts nothing.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

from observe.probes import ObserveError, Probes  # noqa: E402

MODES = ("zero-copy", "copy")
SIZE = (640, 480)


def measure(binary: str, mode: str, seconds: int) -> float:
    r = subprocess.run([binary, mode, str(SIZE[0]), str(SIZE[1]), str(seconds)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"probe_overhead: {mode} failed: {r.stderr.strip()}")
    return json.loads(r.stdout)["fps"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary", nargs="?", default=str(TOP / "build" / "vcam-bench"),
                    help="the compiled bench/vcam-bench.c (default build/vcam-bench)")
    ap.add_argument("--seconds", type=int, default=3, help="seconds per measurement (default 3)")
    args = ap.parse_args(argv)
    if not Path(args.binary).exists():
        sys.exit(f"probe_overhead: {args.binary} not found (make bench builds it)")

    before = {m: measure(args.binary, m, args.seconds) for m in MODES}
    try:
        probes = Probes(log=lambda msg: print(f"probe_overhead: {msg}", file=sys.stderr))
        probes.refresh()
    except ObserveError as e:
        sys.exit(f"probe_overhead: {e}")
    attached = sum(probes.attached().values())
    try:
        with_probes = {m: measure(args.binary, m, args.seconds) for m in MODES}
    finally:
        probes.close()
    after = {m: measure(args.binary, m, args.seconds) for m in MODES}

    print(f"vcam-observe probe overhead, {SIZE[0]}x{SIZE[1]} YUYV, bench/vcam-bench.c, "
          f"{args.seconds} s per run, {attached} probes attached")
    print(f"{'path':>10} {'fps without':>12} {'fps with':>9} {'with/without':>13} {'cost':>7} {'us/frame added':>15}")
    for m in MODES:
        without = (before[m] + after[m]) / 2
        ratio = with_probes[m] / without
        added_us = (1 / with_probes[m] - 1 / without) * 1e6
        print(f"{m:>10} {without:>12.1f} {with_probes[m]:>9.1f} {ratio:>13.3f} {(1 - ratio) * 100:>6.1f}%"
              f" {added_us:>15.1f}")
    print("(without = mean of the runs before and after; under TCG compare the ratio, not the rates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
