"""vcam-observe top's behaviour, driven with Pilot against a scripted source."""


import subprocess
import sys

import pytest
from prometheus_client import start_http_server

from observe import exporter, metrics
from observe.cli import build_parser
from observe.top.app import DetailScreen, HelpScreen, Polled, SourceDown, TopApp
from observe.top.sources import UrlSource
from labtools import free_port
from tui_scripted import ScriptedSource, camera, poll, screen_text, steady, sync


def app_for(steps, size=(80, 24)):
    app = TopApp(ScriptedSource(steps), interval=3600, autopoll=False)
    return app, app.run_test(size=size)


def shown(app):
    table = app.query_one("#cameras")
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


def column(app, key):
    table = app.query_one("#cameras")
    return [str(table.get_cell(row.key, key)) for row in table.ordered_rows]


@sync
async def test_table_shows_every_camera_with_rates():
    app, ctx = app_for(steady(3, 3))
    async with ctx as pilot:
        await poll(pilot, 2)
        assert shown(app) == ["video0", "video1", "video2"]
        assert column(app, "fps") == ["30.0", "60.0", "90.0"]
        assert column(app, "zc") == ["100%", "50%", "100%"]
        assert column(app, "outq") == ["█···1/4"] * 3
        text = screen_text(app)
        assert "video2" in text and "90.0" in text


@sync
async def test_sort_cycles_and_orders_rows():
    app, ctx = app_for(steady(3, 3))
    async with ctx as pilot:
        await poll(pilot, 2)
        assert shown(app) == ["video0", "video1", "video2"]
        await pilot.press("s")                      # by fps, descending
        assert shown(app) == ["video2", "video1", "video0"]
        assert "sort fps" in app.sub_title
        await pilot.press("s")                      # by zero-copy share, descending
        assert shown(app)[-1] == "video1"
        for _ in range(5):
            await pilot.press("s")
        assert "sort fps" in app.sub_title          # wrapped round


@sync
async def test_filter_narrows_and_escape_clears():
    steps = [(k, [camera(1, 30 * k, card="front"), camera(2, 30 * k, card="rear"),
                  camera(3, 30 * k, card="front-wide")]) for k in range(3)]
    app, ctx = app_for(steps)
    async with ctx as pilot:
        await poll(pilot, 2)
        await pilot.press("slash")
        assert app.query_one("#filter").display
        await pilot.press(*"front")
        assert shown(app) == ["video1", "video3"]
        await pilot.press("enter")                  # keep the filter, back to the table
        assert not app.query_one("#filter").display
        await poll(pilot)
        assert shown(app) == ["video1", "video3"]   # still filtered after a refresh
        await pilot.press("slash", "escape")
        assert shown(app) == ["video1", "video2", "video3"]


@sync
async def test_pause_stops_refreshing_and_resume_catches_up():
    app, ctx = app_for(steady(1, 10))
    async with ctx as pilot:
        await poll(pilot, 2)
        assert app.source.index == 2
        await pilot.press("p")
        assert "PAUSED" in app.sub_title
        await poll(pilot, 3)
        assert app.source.index == 2                # the source was not read
        await pilot.press("p")
        await poll(pilot)
        assert app.source.index == 3 and "PAUSED" not in app.sub_title
        # the first reading after a pause spans the whole gap: still 30 fps
        assert column(app, "fps") == ["30.0"]


@sync
async def test_enter_opens_detail_and_escape_returns():
    app, ctx = app_for(steady(2, 5))
    async with ctx as pilot:
        await poll(pilot, 3)
        await pilot.press("down", "enter")
        assert isinstance(app.screen, DetailScreen) and app.screen.device == "video1"
        text = screen_text(app)
        assert "vcam_frame_latency_seconds, last minute" in text and "output depth" in text
        assert "<=   4.2ms ████" in text                # the busy latency bucket
        await poll(pilot)                           # detail follows refreshes
        assert "frames 180" in screen_text(app)   # video1: 60 fps, t=3
        footer = screen_text(app).splitlines()[-1]
        assert "esc back" in footer and "s sort" not in footer and "Enter" not in footer
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)


@sync
async def test_help_lists_keys():
    app, ctx = app_for(steady(1, 2))
    async with ctx as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "pause / resume" in screen_text(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


@sync
async def test_footer_shows_the_keys():
    app, ctx = app_for(steady(1, 2))
    async with ctx as pilot:
        await poll(pilot)
        footer = screen_text(app).splitlines()[-1]
        for key in ("q", "p", "s", "/", "Enter", "?"):
            assert f"{key} " in footer, (key, footer)


@sync
async def test_camera_appears_and_disappears():
    steps = [(0, [camera(1, 0)]), (1, [camera(1, 30)]),
             (2, [camera(1, 60), camera(5, 0)]), (3, [camera(1, 90), camera(5, 30)]),
             (4, [camera(5, 60)])]
    app, ctx = app_for(steps)
    async with ctx as pilot:
        await poll(pilot, 2)
        assert shown(app) == ["video1"]
        await poll(pilot)
        assert shown(app) == ["video1", "video5"]
        assert column(app, "fps") == ["30.0", "-"]  # new: no rate yet
        await poll(pilot)
        assert column(app, "fps") == ["30.0", "30.0"]
        await pilot.press("enter")                  # detail of video1, then it goes
        await poll(pilot)
        assert shown(app) == ["video5"]
        assert "video1: gone" in screen_text(app)
        await pilot.press("escape")
        assert shown(app) == ["video5"]


@sync
async def test_source_down_shows_banner_keeps_values_and_recovers():
    steps = [(0, [camera(1, 0)]), (1, [camera(1, 30)]),
             (2, ConnectionRefusedError("connection refused")),
             (3, ConnectionRefusedError("connection refused")),
             (4, [camera(1, 120)]), (5, [camera(1, 150)])]
    app, ctx = app_for(steps)
    async with ctx as pilot:
        await poll(pilot, 2)
        assert not app.query_one("#banner").display
        await poll(pilot)
        banner = app.query_one("#banner")
        assert banner.display
        text = screen_text(app)
        assert "SOURCE DOWN" in text and "connection refused" in text and "retrying" in text
        assert shown(app) == ["video1"]             # last values stay
        await poll(pilot)                           # still down: the timer retries
        assert app.source.index == 4 and banner.display
        await poll(pilot)                           # back
        assert not banner.display
        assert "SOURCE DOWN" not in screen_text(app)
        assert column(app, "fps") == ["30.0"]       # 90 frames over the 3 s gap


@sync
async def test_a_reading_that_arrives_after_exit_is_dropped_quietly():
    # the poll worker's reading can land after the screen is gone
    app, ctx = app_for(steady(3, 3))
    async with ctx as pilot:
        await poll(pilot, 1)
        reading = app.source.read()
    app.on_polled(Polled(reading))
    app.on_source_down(SourceDown("gone"))


@sync
async def test_uses_more_columns_when_wide():
    app, ctx = app_for(steady(1, 3), size=(160, 48))
    async with ctx as pilot:
        await poll(pilot, 2)
        assert column(app, "procs") == ["vcam-producer → consumer"]
        assert column(app, "frames") == ["30"]
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert "procs" not in [c.key.value for c in app.query_one("#cameras").ordered_columns]
        assert shown(app) == ["video0"]


class _Counting:
    def __init__(self):
        self.frames = 0

    def refresh(self):
        self.frames += 30

    def snapshot(self):
        return metrics.Snapshot(cameras=[camera(7, self.frames)])


def serve(port, source):
    server, thread = start_http_server(port, "127.0.0.1", registry=exporter.make_registry(source))
    return server


@sync
async def test_url_source_against_a_real_http_exporter_goes_down_and_back():
    """The --url path end to end on the host: a real prometheus_client HTTP
    server (fed by a fake probe), stopped and restarted on the same port."""
    port = free_port()
    counting = _Counting()
    server = serve(port, counting)
    app = TopApp(UrlSource(f"http://127.0.0.1:{port}/metrics", timeout=5), interval=3600, autopoll=False)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await poll(pilot, 2)
            assert shown(app) == ["video7"]
            assert app.model.rows["video7"].frames == 60
            server.shutdown()
            server.server_close()
            await poll(pilot)
            assert app.query_one("#banner").display
            assert "SOURCE DOWN" in screen_text(app)
            server = serve(port, counting)
            await poll(pilot)
            assert not app.query_one("#banner").display
            assert app.model.rows["video7"].frames == 90
    finally:
        server.shutdown()
        server.server_close()


def test_cli_top_arguments():
    args = build_parser().parse_args(["top", "--url", "http://h:9477/metrics", "--interval", "0.25"])
    assert (args.command, args.url, args.interval) == ("top", "http://h:9477/metrics", 0.25)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["top", "--interval", "0"])


class _TwoCameras:
    """A zero-copy camera and a copying one with errors, 30 frames each per scrape."""

    def __init__(self):
        self.frames = 0

    def refresh(self):
        self.frames += 30

    def snapshot(self):
        return metrics.Snapshot(cameras=[
            camera(3, self.frames, card="zc-cam", zero_copy_share=1.0),
            camera(4, self.frames, card="cp-cam", zero_copy_share=0.0, errors=2)])


def top_of_two_cameras(*options):
    """`vcam-observe top --url URL --duration 0.5 OPTIONS` against an exporter
    of _TwoCameras, stdout a pipe: (URL, the finished process)."""
    port = free_port()
    server = serve(port, _TwoCameras())
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        r = subprocess.run([sys.executable, "-m", "observe.cli", "top", "--url", url, "--duration", "0.5", *options],
                           capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 0, r.stderr
    return url, r


def test_top_without_a_terminal_prints_a_summary():
    """stdout is a pipe here, so `top` watches for --duration and prints a
    table (no --batch needed): totals, the path and the window's rates."""
    url, r = top_of_two_cameras()
    lines = r.stdout.splitlines()
    assert lines[0].startswith("vcam: 2 camera(s) over ") and lines[0].endswith(f" s from {url}")
    header = lines[2].split()
    assert header[:6] == ["device", "label", "producer", "consumer", "path", "frames"]
    rows = {cells[0]: dict(zip(header, cells)) for cells in (line.split() for line in lines[3:5])}
    # two scrapes: 30 frames at the first, 60 at the second
    pick = ("label", "path", "frames", "zc%", "err")
    assert [rows["video3"][k] for k in pick] == ["zc-cam", "zero-copy", "60", "100%", "0"]
    assert [rows["video4"][k] for k in pick] == ["cp-cam", "copy", "60", "0%", "2"]
    assert rows["video3"]["p50"] == "3.1ms"   # halfway into the scripted (2^21, 2^22] ns bucket


def test_top_batch_json_has_the_tables_content():
    """--json: the same summary as one JSON object, numbers unformatted
    (seconds, shares 0..1); it implies --batch."""
    import json
    url, r = top_of_two_cameras("--json")
    s = json.loads(r.stdout)
    assert set(s) == {"source", "window_seconds", "cameras"} and s["source"] == url
    assert 0.5 <= s["window_seconds"] < 30
    zc, cp = s["cameras"]
    assert set(zc) == {"device", "card", "producer", "consumer", "path", "frames_delivered", "frames_errored",
                       "fps", "zero_copy_share", "bytes_copied_per_second", "p50_seconds", "p99_seconds"}
    assert (zc["device"], zc["card"], zc["producer"], zc["consumer"]) == ("video3", "zc-cam", "vcam-producer", "consumer")
    assert (zc["path"], zc["frames_delivered"], zc["zero_copy_share"], zc["frames_errored"]) == ("zero-copy", 60, 1.0, 0)
    assert (cp["path"], cp["frames_delivered"], cp["zero_copy_share"], cp["frames_errored"]) == ("copy", 60, 0.0, 2)
    assert zc["fps"] == pytest.approx(30 / s["window_seconds"])
    assert zc["bytes_copied_per_second"] == 0 and cp["bytes_copied_per_second"] == pytest.approx(cp["fps"] * 614400)
    # every frame of the window in the scripted (2^21, 2^22] ns bucket: interpolated inside it
    assert zc["p50_seconds"] == pytest.approx(1.5 * (1 << 21) / 1e9)
    assert zc["p99_seconds"] == pytest.approx(1.99 * (1 << 21) / 1e9)
    # and the table prints the same summary
    from observe.top.batch import summary_text
    assert "zc-cam" in summary_text(s) and "3.1ms" in summary_text(s)


def test_top_batch_with_the_exporter_down_is_one_line():
    r = subprocess.run([sys.executable, "-m", "observe.cli", "top", "--url", f"http://127.0.0.1:{free_port()}/metrics",
                        "--batch", "--duration", "0.1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("vcam-observe: http://127.0.0.1:"), r.stderr
