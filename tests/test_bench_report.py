"""bench/report.py on fixed figures: the table, the ratios, the JSON and the PNG (no guest)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import report  # noqa: E402

PATHS = {"vcam zero-copy": 30000, "vcam copy": 3000, "v4l2loopback": 750, "memcpy": 5000,
         "vcam-producer copy (py)": 400, "v4l2loopback write() (py)": 700}


def figures():
    runs = []
    for rnd in range(2):
        for w, h in ((640, 480), (1920, 1080)):
            for path, fps in PATHS.items():
                scale = 640 * 480 / (w * h)
                frames = int(fps * scale * 3) + rnd  # rounds differ a little
                runs.append({"path": path, "round": rnd, "mode": "x", "width": w, "height": h,
                             "frames": frames, "bytes_per_frame": w * h * 2, "seconds": 3.0,
                             "fps": frames / 3.0, "cpu_us_per_frame": 1e6 / (fps * scale)})
    return {"conditions": {"kernel": "6.12.0-test", "cpus": 2, "seconds_per_row": 3.0, "rounds": 2,
                           "format": "YUYV", "v4l2loopback": "0.15.4"}, "runs": runs}


def test_rows_pool_the_rounds():
    rows = report.rows(figures())
    assert len(rows) == 2 * len(PATHS)
    zc = next(r for r in rows if r["size"] == "640x480" and r["path"] == "vcam zero-copy")
    assert zc["rounds"] == 2 and zc["frames"] == 90000 + 90001
    assert zc["fps"] == pytest.approx(180001 / 6.0)
    assert zc["fps_min"] < zc["fps_max"]


def test_table_has_every_row_and_the_ratios():
    text = report.table(figures())
    for path in PATHS:
        assert text.count(path) >= 2
    assert "vcam zero-copy / v4l2loopback fps" in text
    assert "vcam copy / memcpy fps" in text
    found = {(label, size): v for label, size, v in report.ratios(report.rows(figures()))}
    assert found[("vcam zero-copy / v4l2loopback fps", "640x480")] == pytest.approx(40, rel=1e-3)


def test_ratios_skip_a_missing_path():
    f = figures()
    f["runs"] = [r for r in f["runs"] if "v4l2loopback" not in r["path"]]
    labels = {label for label, _, _ in report.ratios(report.rows(f))}
    assert labels == {"vcam copy / memcpy fps"}


def test_write_makes_json_with_every_row_and_a_png(tmp_path):
    json_path, png_path = report.write(figures(), tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert len(data["runs"]) == 2 * 2 * len(PATHS)
    assert {(r["size"], r["path"]) for r in data["rows"]} == {
        (s, p) for s in ("640x480", "1920x1080") for p in PATHS}
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_main_says_so_in_one_line_without_figures(tmp_path):
    with pytest.raises(SystemExit) as e:
        report.main([str(tmp_path / "missing.json"), str(tmp_path)])
    assert str(e.value).startswith("bench: no figures to plot")
