"""The TUI's arithmetic: rates from counter deltas, percentiles from bucket deltas."""

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from observe import exporter, metrics
from observe.top.fmt import depth_bar, fmt_seconds, processes
from observe.top.model import Model
from observe.top.rates import bucket_delta, counter_delta, per_bucket, quantile, rate
from observe.top.sources import Reading
from tui_scripted import _Snap, camera

INF = math.inf


def test_rate_is_delta_over_time():
    assert rate(100, 160, 2.0) == 30.0
    assert rate(None, 160, 2.0) is None
    assert rate(100, 100, 0.0) is None


def test_counter_reset_counts_from_zero():
    # camera recreated: counter went 500 -> 20, so 20 are new
    assert counter_delta(500, 20) == 20
    assert rate(500, 20, 1.0) == 20.0


def test_quantile_interpolates_inside_the_bucket():
    b = [(1.0, 0), (2.0, 100), (4.0, 100), (INF, 100)]
    assert quantile(0.5, b) == pytest.approx(1.5)
    assert quantile(0.99, b) == pytest.approx(1.99)
    # first bucket starts at 0
    assert quantile(0.5, [(1.0, 10), (INF, 10)]) == pytest.approx(0.5)


def test_quantile_in_inf_bucket_is_highest_finite_bound():
    assert quantile(0.99, [(1.0, 10), (2.0, 50), (INF, 100)]) == 2.0


def test_quantile_of_nothing_is_none():
    assert quantile(0.5, [(1.0, 0), (INF, 0)]) is None
    assert quantile(0.5, []) is None


def test_bucket_delta_subtracts_and_survives_reset():
    prev = [(1.0, 5), (2.0, 10), (INF, 12)]
    cur = [(1.0, 7), (2.0, 20), (INF, 30)]
    assert bucket_delta(prev, cur) == [(1.0, 2), (2.0, 10), (INF, 18)]
    assert bucket_delta(cur, prev) == prev           # went down: a reset
    assert bucket_delta(None, cur) == cur
    assert per_bucket([(1.0, 2), (2.0, 10), (INF, 18)]) == [(1.0, 2), (2.0, 8), (INF, 8)]


def test_percentile_is_of_the_window_not_of_all_time():
    # 1000 slow frames long ago, then 100 fast ones: p99 of the delta is fast
    old = [(0.001, 0), (0.1, 1000), (INF, 1000)]
    new = [(0.001, 100), (0.1, 1000), (INF, 1100)]
    assert quantile(0.99, bucket_delta(old, new)) <= 0.001
    assert quantile(0.99, new) > 0.001


def parse(cams, t):
    text = exporter.render(_Snap(metrics.Snapshot(cameras=cams))).decode()
    return Reading.from_families(text_string_to_metric_families(text), t)


def test_reading_from_a_scrape_and_from_the_model_agree():
    cams = [camera(3, 300, zero_copy_share=0.5, errors=2), camera(1, 60)]
    scraped = parse(cams, 0.0)
    direct = Reading.from_families(metrics.families(metrics.Snapshot(cameras=cams)), 0.0)
    assert scraped == direct
    assert list(scraped.cameras) == ["video1", "video3"]
    c = scraped.cameras["video3"]
    assert (c.card, c.frames_zero_copy, c.frames_copied, c.frames_errored, c.slots) == ("cam3", 150, 150, 2, 4)
    assert c.bytes_copied == 150 * 614400
    assert c.producer == "vcam-producer" and c.consumer == "consumer"


def test_model_rows_rates_share_and_latency():
    m = Model()
    m.add(parse([camera(3, 0, zero_copy_share=0.25)], 10.0))
    m.add(parse([camera(3, 400, zero_copy_share=0.25)], 12.0))
    r = m.rows["video3"]
    assert r.fps == 200.0
    assert r.zero_copy_share == 0.25
    assert r.copies_s == 150.0
    assert r.bytes_s == 150.0 * 614400
    # 396 frames in (2^21, 2^22] ns, 4 in (2^25, 2^26]: p50 inside the first,
    # p99 (rank 396) exactly at its upper bound
    assert (1 << 21) / 1e9 < r.p50 < (1 << 22) / 1e9
    assert r.p99 == pytest.approx((1 << 22) / 1e9)


def test_new_camera_has_no_rate_yet():
    m = Model()
    m.add(parse([camera(1, 10)], 0.0))
    m.add(parse([camera(1, 40), camera(2, 999)], 1.0))
    assert m.rows["video1"].fps == 30.0
    assert m.rows["video2"].fps is None and m.rows["video2"].p99 is None


def test_history_keeps_a_minute():
    m = Model()
    for k in range(100):
        m.add(parse([camera(1, 30 * k)], float(k)))
    assert m.readings[0].t == 39.0 and len(m.series["video1"]) == 61
    hist = m.minute_histograms("video1")[metrics.FRAME_LATENCY]
    assert hist[-1][1] == 30 * 60


def test_depth_bar_and_formats():
    assert depth_bar(2, 4) == "██··2/4"
    assert depth_bar(0, 4) == "····0/4"
    assert depth_bar(9, 4) == "████9/4"
    assert depth_bar(1, None) == "····1/?"
    assert fmt_seconds(0.0042) == "4.2ms"
    assert fmt_seconds(None) == "-"


def test_processes_names_each_side_and_cuts_each_side_not_the_end():
    assert processes("vcam-producer", "ffmpeg") == "vcam-producer → ffmpeg"
    assert processes("vcam-producer", "vcam-producer") == "vcam-producer → (same)"
    assert processes("", "") == "- → -"
    assert processes("python3", "") == "python3 → -"
    assert processes("vcam-producer", "gst-launch-1.0", 22) == "vcam-pro… → gst-launc…"
    assert processes("python3", "vcam-producer", 22) == "python3 → vcam-produc…"
    assert processes("python3", "gst-launch-1.0", 20) == "python3 → gst-launc…"
    for p, c in [("a" * 15, "b" * 15), ("x", "y" * 15), ("y" * 15, "x")]:
        assert len(processes(p, c, 22)) <= 22 and " → " in processes(p, c, 22)
