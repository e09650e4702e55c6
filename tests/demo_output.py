"""Reading what make demo prints: the summary table (from the exporter) and
the camera half's per-camera reports (from the consumers and the driver)."""

import re

CONSUMER = re.compile(r"demo: (?P<device>/dev/video\d+) '(?P<label>[^']+)': consumer \((?P<memory>\w+)(?P<imported>, imported)?\) "
                      r"got (?P<frames>\d+) frames, (?P<missing>\d+) missing, (?P<torn>\d+) torn, "
                      r"(?P<corrupt>\d+) corrupt, (?P<flagged>\d+) error-flagged")
DRIVER = re.compile(r"demo: (?P<device>/dev/video\d+) '(?P<label>[^']+)': producer queued (?P<queued>\d+) frames .*"
                    r"driver delivered (?P<zero_copy>\d+) zero-copy, (?P<copied>\d+) copied, (?P<errored>\d+) errored")


def summary_rows(text: str) -> dict[str, dict[str, str]]:
    """The summary table's rows by label; columns are two or more spaces apart."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("device  label"))
    header = re.split(r"\s{2,}", lines[start].strip())
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        row = dict(zip(header, re.split(r"\s{2,}", line.strip())))
        rows[row["label"]] = row
    return rows


def reports(pattern: re.Pattern, text: str) -> dict[str, dict[str, str]]:
    return {m["label"]: m.groupdict() for m in pattern.finditer(text)}


def check_demo_output(text: str) -> None:
    """Both cameras delivered frames, each on its own path, with nothing lost
    or broken, by the exporter's, the driver's and the consumers' accounts."""
    rows = summary_rows(text)
    assert set(rows) == {"zero copy", "copy"}, rows
    zc, cp = rows["zero copy"], rows["copy"]
    assert (zc["path"], zc["zc%"], zc["err"]) == ("zero-copy", "100%", "0"), zc
    assert (cp["path"], cp["zc%"], cp["err"]) == ("copy", "0%", "0"), cp
    for row in (zc, cp):
        assert int(row["frames"]) > 0 and float(row["fps"]) > 0, row
        assert row["p50"] != "-" and row["p99"] != "-", row
    assert zc["B/s"] == "0.0" and cp["B/s"] != "0.0"
    delivered = check_demo_reports(text)
    for label, row in rows.items():
        # the exporter saw the frames up to the end of its window
        assert delivered[label] >= int(row["frames"]), (delivered, row)


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
