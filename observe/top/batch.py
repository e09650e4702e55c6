"""`vcam-observe top --batch`: read the source, wait, read it again, and
print what happened in between, as a plain-text table or (`--json`) as
one JSON object with the same content:

    {"source": "http://127.0.0.1:9477/metrics",   # where the readings came from
     "window_seconds": 10.0,                      # time between the two readings
     "cameras": [                                 # in device order
       {"device": "video0", "card": "zero copy",
        "producer": "vcam-producer", "consumer": "vcam-producer",  # command names, "" if not seen
        "path": "zero-copy",                      # zero-copy | copy | mixed | idle, over the window
        "frames_delivered": 3423,                 # totals at the second reading
        "frames_errored": 0,
        "fps": 29.8,                              # over the window; null for a camera
        "zero_copy_share": 1.0,                   #   that appeared within it (or, for
        "bytes_copied_per_second": 0.0,           #   zero_copy_share, delivered nothing)
        "p50_seconds": 0.002, "p99_seconds": 0.015}]}  # frame latency (QUEUE to DQBUF); null if none
"""

from __future__ import annotations

import json
import sys
import time

from .fmt import fmt_rate, fmt_seconds, fmt_share
from .model import camera_row
from .sources import Reading, SourceError


def path_name(zero_copy_share: float | None) -> str:
    """The frame path a camera took over a window, from its zero-copy share."""
    if zero_copy_share is None:
        return "idle"
    return {1.0: "zero-copy", 0.0: "copy"}.get(zero_copy_share, "mixed")


def summary(first: Reading, last: Reading, source_name: str) -> dict:
    """Every camera at `last`: totals, and the rates, zero-copy share and
    latency percentiles over the window since `first` (the schema above)."""
    cameras = []
    for device in last.cameras:
        r = camera_row(first, last, first, device)
        cameras.append({
            "device": r.device, "card": r.card, "producer": r.producer, "consumer": r.consumer,
            "path": path_name(r.zero_copy_share),
            "frames_delivered": int(r.frames), "frames_errored": int(r.errors),
            "fps": r.fps, "zero_copy_share": r.zero_copy_share, "bytes_copied_per_second": r.bytes_s,
            "p50_seconds": r.p50, "p99_seconds": r.p99,
        })
    return {"source": source_name, "window_seconds": last.t - first.t, "cameras": cameras}


# (header, cell) of the plain-text table, one per column
TEXT_COLUMNS = (
    ("device", lambda c: c["device"]),
    ("label", lambda c: c["card"] or "-"),
    ("producer", lambda c: c["producer"] or "-"),
    ("consumer", lambda c: c["consumer"] or "-"),
    ("path", lambda c: c["path"]),
    ("frames", lambda c: str(c["frames_delivered"])),
    ("fps", lambda c: fmt_rate(c["fps"])),
    ("zc%", lambda c: fmt_share(c["zero_copy_share"])),
    ("B/s", lambda c: fmt_rate(c["bytes_copied_per_second"])),
    ("err", lambda c: str(c["frames_errored"])),
    ("p50", lambda c: fmt_seconds(c["p50_seconds"])),
    ("p99", lambda c: fmt_seconds(c["p99_seconds"])),
)


def summary_text(s: dict) -> str:
    """A summary (from `summary()`, or its JSON read back) as a plain-text
    table, columns two or more spaces apart."""
    seconds = s["window_seconds"]
    rows = [[h for h, _ in TEXT_COLUMNS]] + [[cell(c) for _, cell in TEXT_COLUMNS] for c in s["cameras"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TEXT_COLUMNS))]
    lines = [f"vcam: {len(s['cameras'])} camera(s) over {seconds:.1f} s from {s['source']}", ""]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines += ["",
              "frames and err: totals; fps, zc% (zero-copy share of frames delivered), B/s (bytes copied),",
              f"p50 and p99 (QUEUE to DQBUF latency): over these {seconds:.1f} s."]
    return "\n".join(lines) + "\n"


def batch(source, seconds: float, out, as_json: bool = False) -> int:
    """top without a terminal: read the source, wait `seconds`, read it
    again and print what happened in between."""
    try:
        first = source.read()
        time.sleep(seconds)
        last = source.read()
    except SourceError as e:
        print(f"vcam-observe: {e}", file=sys.stderr)
        return 1
    s = summary(first, last, source.name)
    out.write(json.dumps(s, indent=2) + "\n" if as_json else summary_text(s))
    out.flush()
    return 0
