"""Numbers, bars and process names as text, for the table, the panels and
the batch summary."""

from __future__ import annotations

import math

from .rates import Buckets, per_bucket


def fmt_rate(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.1f}{suffix}{unit}"
    return f"{v:.1f}{unit}" if v < 100 else f"{v:.0f}{unit}"


def fmt_seconds(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1:
        return f"{v:.2f}s"
    if v >= 0.1:
        return f"{v * 1e3:.0f}ms"
    if v >= 1e-3:
        return f"{v * 1e3:.1f}ms"
    return f"{v * 1e6:.0f}us"


def fmt_share(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.0f}%"


def depth_bar(depth: float, slots: float | None, width: int = 4) -> str:
    """'██··2/4': filled cells for depth against slots, readable without colour."""
    depth = int(depth)
    if not slots:
        return f"{'·' * width}{depth}/?"
    filled = min(width, math.ceil(width * depth / slots)) if depth > 0 else 0
    return f"{'█' * filled}{'·' * (width - filled)}{depth}/{int(slots)}"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


ARROW = " → "
SAME = "(same)"


def processes(producer: str, consumer: str, width: int | None = None) -> str:
    """'vcam-producer → ffmpeg': the command names on each side ('-' for a
    side not seen yet; '(same)' for a consumer running the producer's
    program). Too long for `width`, each side is cut short with '…' (the
    shorter one keeps up to half), never the arrow or a whole side."""
    p = producer or "-"
    c = SAME if consumer and consumer == producer else (consumer or "-")
    text = p + ARROW + c
    if width is None or len(text) <= width:
        return text
    room = width - len(ARROW)
    keep = min(len(p), max(room // 2, room - len(c)))
    return _cut(p, keep) + ARROW + _cut(c, room - keep)


def hist_bars(buckets: Buckets, fmt, width: int = 30, limit: int = 10) -> str:
    """Text bars, one line per non-empty bucket (at most `limit`, busiest kept in order)."""
    counts = [(le, n) for le, n in per_bucket(buckets) if n > 0]
    if not counts:
        return "  (nothing in the last minute)"
    if len(counts) > limit:
        counts = sorted(sorted(counts, key=lambda x: -x[1])[:limit], key=lambda x: x[0])
    top = max(n for _, n in counts)
    lines = []
    for le, n in counts:
        bar = "█" * max(1, round(width * n / top))
        label = "+Inf" if math.isinf(le) else fmt(le)
        lines.append(f"  <={label:>8} {bar} {int(n)}")
    return "\n".join(lines)
