#!/usr/bin/env python3
"""How long bcc takes to compile the exporter's BPF program, against the
running kernel's headers, next to what the same program cost while it
included the media headers for four offsets (now read from BTF at run
time, observe/probes.py read_layout). Prints a table; asserts nothing.

Runs where bcc and the kernel's headers are, e.g. in the lab's guest:

    flock /work/guest.lock lab/vm-run -- python3 bench/bpf_compile.py

Each program is compiled and its functions loaded (the verifier runs) in
a process of its own, ROUNDS times, rotating the order; the table has each
one's median.
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

from observe.probes import KERNEL_HEADER_CFLAGS, PROBES, program_text  # noqa: E402

MEDIA_HEADERS = "#include <media/v4l2-device.h>\n#include <media/v4l2-dev.h>\n#include <media/videobuf2-core.h>\n"
PROGRAMS = {
    "ptrace.h only (empty)": "#include <uapi/linux/ptrace.h>\nint f(struct pt_regs *ctx) { return 0; }\n",
    "vcam_probes.c": program_text(),
    "vcam_probes.c + media headers (before)": program_text().replace(
        "#include <uapi/linux/ptrace.h>\n", "#include <uapi/linux/ptrace.h>\n" + MEDIA_HEADERS),
}

# One compile, in a fresh process: prints its seconds
CHILD = r"""
import sys, time
from bcc import BPF
text, cflags, fns = sys.stdin.read().split("\0")
t = time.monotonic()
b = BPF(text=text.encode(), cflags=cflags.split())
for fn in filter(None, fns.split()):
    kind, name = fn.split(":")
    b.load_func(name.encode(), BPF.RAW_TRACEPOINT if kind == "raw_tracepoint" else BPF.KPROBE)
print(time.monotonic() - t)
"""


def compile_seconds(text: str) -> float:
    fns = " ".join(f"{p.kind}:{p.fn}" for p in PROBES if f"int {p.fn}(" in text)
    r = subprocess.run([sys.executable, "-c", CHILD], input="\0".join([text, " ".join(KERNEL_HEADER_CFLAGS), fns]),
                       capture_output=True, text=True, check=True)
    return float(r.stdout.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    t = time.monotonic()
    subprocess.run([sys.executable, "-c", "import bcc"], check=True)
    import_s = time.monotonic() - t
    times = {name: [] for name in PROGRAMS}
    names = list(PROGRAMS)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(compile_seconds(PROGRAMS[name]))
    print(f"python3 -c 'import bcc': {import_s:.1f} s")
    print(f"{'program':<40} {'compile+load s (median)':>24} {'runs':>20}")
    for name in names:
        runs = " ".join(f"{s:.1f}" for s in times[name])
        print(f"{name:<40} {statistics.median(times[name]):>24.1f} {runs:>20}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
