"""make bench, the guest half: run vcam-bench over sizes and paths, print a table.

    python3 bench/run.py BENCH_BINARY

Each row is SECONDS of the C program (bench/vcam-bench.c), where one
process is both producer and consumer. Rates under TCG emulation are far
below real hardware; compare rows of one run with each other.
"""

import json
import subprocess
import sys

SIZES = [(640, 480), (1920, 1080), (3840, 2160)]
SECONDS = 3
MODES = ["zero-copy", "copy"]


def measure(binary, mode, width, height):
    result = subprocess.run([binary, mode, str(width), str(height), str(SECONDS)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"bench: {mode} {width}x{height} failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def main():
    binary = sys.argv[1]
    rows = [measure(binary, mode, w, h) for w, h in SIZES for mode in MODES]
    print("vcam transport, YUYV, producer and consumer in C (bench/vcam-bench.c)")
    print(f"{'size':>10} {'path':>10} {'MiB/frame':>10} {'frames':>7} {'fps':>9} {'CPU us/frame':>13}")
    for row in rows:
        print(f"{row['width']:>5}x{row['height']:<4} {row['mode']:>10} "
              f"{row['bytes_per_frame'] / 2**20:>10.2f} {row['frames']:>7} "
              f"{row['fps']:>9.1f} {row['cpu_us_per_frame']:>13.1f}")
    by_key = {(r["width"], r["mode"]): r for r in rows}
    print()
    print("copy / zero-copy CPU per frame:")
    for w, h in SIZES:
        ratio = by_key[(w, "copy")]["cpu_us_per_frame"] / by_key[(w, "zero-copy")]["cpu_us_per_frame"]
        print(f"  {w}x{h}: {ratio:.1f}x")


if __name__ == "__main__":
    main()
