"""How vcam-observe top looks: main and detail views at 80x24 and 160x48.

SVG golden files live in tests/__snapshots__/test_tui_snapshots/ (committed).
After an intended change of looks: pytest tests/test_tui_snapshots.py
--snapshot-update, then review the report/diff before committing.
"""

import pytest

from observe.top.app import TopApp
from tui_scripted import ScriptedSource, camera, poll

SIZES = [(80, 24), (160, 48)]


def script():
    """Three cameras with different paths, queues and latencies; the latency
    rises on video2 so that its sparkline has a shape."""
    steps = []
    for k in range(8):
        steps.append((float(k), [
            camera(0, 30 * k, card="front", producer="vcam-producer", consumer="gst-launch-1.0"),
            camera(2, 60 * k, card="rear", zero_copy_share=0.5, out_depth=3, cap_depth=4,
                   latency_slot=20 + k // 3, consumer="ffmpeg", errors=k // 4),
            camera(5, 15 * k * k, card="bench", slots=8, out_depth=8, cap_depth=0,
                   latency_slot=24, zero_copy_share=0.0, producer="python3", consumer="vcam-producer"),
        ]))
    return steps


def make_app():
    return TopApp(ScriptedSource(script()), interval=3600, autopoll=False)


async def warm(pilot):
    await poll(pilot, 8)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_view(snap_compare, size):
    assert snap_compare(make_app(), terminal_size=size, run_before=warm)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_detail_view(snap_compare, size):
    async def open_detail(pilot):
        await warm(pilot)
        await pilot.press("down", "enter")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=size, run_before=open_detail)


def test_source_down_banner(snap_compare):
    steps = script()[:3] + [(3.0, ConnectionRefusedError("http://lab1:9477/metrics: [Errno 111] Connection refused"))]

    async def down(pilot):
        await poll(pilot, 4)

    app = TopApp(ScriptedSource(steps), interval=3600, autopoll=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=down)
