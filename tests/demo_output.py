"""Reading what make demo leaves: the summary (from the exporter, as JSON in
the log directory) and the camera half's per-camera reports (from the
consumers and the driver, in its output)."""

import json
import re
from pathlib import Path

CONSUMER = re.compile(r"demo: (?P<device>/dev/video\d+) '(?P<label>[^']+)': consumer \((?P<memory>\w+)(?P<imported>, imported)?\) "
                      r"got (?P<frames>\d+) frames, (?P<missing>\d+) missing, (?P<torn>\d+) torn, "
                      r"(?P<corrupt>\d+) corrupt, (?P<flagged>\d+) error-flagged")
DRIVER = re.compile(r"demo: (?P<device>/dev/video\d+) '(?P<label>[^']+)': producer queued (?P<queued>\d+) frames .*"
                    r"driver delivered (?P<zero_copy>\d+) zero-copy, (?P<copied>\d+) copied, (?P<errored>\d+) errored")


def read_summary(log_dir: Path) -> dict:
    """The demo's --batch summary, as `vcam-observe top --batch --json` wrote it."""
    return json.loads((log_dir / "summary.json").read_text())


def reports(pattern: re.Pattern, text: str) -> dict[str, dict[str, str]]:
    return {m["label"]: m.groupdict() for m in pattern.finditer(text)}


def check_demo_output(summary: dict, text: str) -> None:
    """Both cameras delivered frames, each on its own path, with nothing lost
    or broken, by the exporter's (the summary), the driver's and the
    consumers' accounts; the summary's table was printed for the user."""
    rows = {c["card"]: c for c in summary["cameras"]}
    assert set(rows) == {"zero copy", "copy"}, summary
    zc, cp = rows["zero copy"], rows["copy"]
    assert (zc["path"], zc["zero_copy_share"], zc["frames_errored"]) == ("zero-copy", 1.0, 0), zc
    assert (cp["path"], cp["zero_copy_share"], cp["frames_errored"]) == ("copy", 0.0, 0), cp
    for row in (zc, cp):
        assert row["frames_delivered"] > 0 and row["fps"] > 0, row
        assert row["producer"] and row["consumer"], row       # both sides seen by the probes
        assert row["p50_seconds"] is not None and 0 < row["p50_seconds"] <= row["p99_seconds"], row
    assert zc["bytes_copied_per_second"] == 0 and cp["bytes_copied_per_second"] > 0, (zc, cp)
    assert f"vcam: 2 camera(s) over {summary['window_seconds']:.1f} s from {summary['source']}" in text, text
    delivered = check_demo_reports(text)
    for label, row in rows.items():
        # the exporter saw the frames up to the end of its window
        assert delivered[label] >= row["frames_delivered"], (delivered, row)


def check_demo_reports(text: str) -> dict[str, int]:
    """The camera half's closing reports: each camera on its own path by the
    driver's count, every frame consumed whole and in order. Returns the
    frames the driver delivered, by label."""
    consumers, drivers = reports(CONSUMER, text), reports(DRIVER, text)
    assert set(consumers) == set(drivers) == {"zero copy", "copy"}, text
    assert consumers["zero copy"]["imported"] and consumers["zero copy"]["memory"] == "dmabuf"
    assert not consumers["copy"]["imported"] and consumers["copy"]["memory"] == "mmap"
    assert drivers["zero copy"]["copied"] == "0" and drivers["copy"]["zero_copy"] == "0"
    delivered = {}
    for label in ("zero copy", "copy"):
        c, d = consumers[label], drivers[label]
        assert (c["missing"], c["torn"], c["corrupt"], c["flagged"], d["errored"]) == ("0",) * 5, (c, d)
        delivered[label] = int(d["zero_copy"]) + int(d["copied"])
        # the consumer dequeued every frame the driver delivered, except those
        # done in its 4 capture buffers when it stopped
        assert 0 < int(c["frames"]) <= delivered[label] <= int(c["frames"]) + 4, (c, d)
    return delivered
