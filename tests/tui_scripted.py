"""A scripted source for the TUI tests and bench: each read() returns the
next step of a script, rendered by the exporter's own code and parsed back
with prometheus-client's parser (the path a --url scrape takes); and
`screen_text`, what the screen shows as plain text."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from observe import exporter, metrics
from observe.top.sources import Reading, SourceError


def camera(nr: int, frames: int, *, card: str | None = None, zero_copy_share: float = 1.0,
           frame_bytes: int = 614400, slots: int = 4, out_depth: int = 1, cap_depth: int = 2,
           errors: int = 0, latency_slot: int = 22, producer: str = "vcam-producer",
           consumer: str = "consumer") -> metrics.CameraSample:
    """A camera that has delivered `frames` frames, all of them with a frame
    latency in log2 slot `latency_slot` (2^22 ns ~ 4.2 ms) but one in 100
    four slots higher."""
    zc = round(frames * zero_copy_share)
    slow = frames // 100
    lat = metrics.Histogram({latency_slot: frames - slow, latency_slot + 4: slow},
                            total=frames * (1 << latency_slot))
    depth = metrics.Histogram({out_depth: frames}, total=frames * out_depth)
    return metrics.CameraSample(
        device_nr=nr, card=card if card is not None else f"cam{nr}", slots=slots,
        frames_queued=frames, frames_dequeued=frames, frames_zero_copy=zc,
        frames_copied=frames - zc, frames_errored=errors, bytes_copied=(frames - zc) * frame_bytes,
        output_depth=out_depth, capture_depth=cap_depth, streaming=True,
        producer=producer, consumer=consumer,
        histograms={3: lat, 0: lat, 4: depth, 5: metrics.Histogram({cap_depth: frames}, cap_depth * frames)})


class _Snap:
    def __init__(self, snapshot):
        self._snapshot = snapshot

    def refresh(self):
        pass

    def snapshot(self):
        return self._snapshot


class ScriptedSource:
    """steps: list of (t, [CameraSample...]) or (t, Exception). After the
    last step the last one repeats. `index` counts reads."""

    name = "scripted"

    def __init__(self, steps):
        self.steps = list(steps)
        self.index = 0

    def read(self):
        t, what = self.steps[min(self.index, len(self.steps) - 1)]
        self.index += 1
        if isinstance(what, Exception):
            raise SourceError(str(what))
        text = exporter.render(_Snap(metrics.Snapshot(cameras=list(what)))).decode()
        return Reading.from_families(text_string_to_metric_families(text), t)


def steady(cameras: int, steps: int, fps: float = 30.0, dt: float = 1.0):
    """`cameras` cameras at `fps` (camera i at fps*(i+1)), for `steps` readings."""
    return [(k * dt, [camera(i, int(k * dt * fps * (i + 1)), zero_copy_share=1.0 if i % 2 == 0 else 0.5)
                      for i in range(cameras)]) for k in range(steps)]


async def poll(pilot, times: int = 1):
    """One refresh, deterministically: what the timer does, then wait for the
    worker and for its message to be handled."""
    app = pilot.app
    for _ in range(times):
        app.action_poll()
        await app.workers.wait_for_complete()
        await pilot.pause()


def sync(fn):
    """Run an async test with asyncio.run (no async pytest plugin needed)."""
    import asyncio
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))
    return wrapper


def screen_text(app) -> str:
    """The current screen as plain text (what a monochrome terminal shows).
    Renders through Textual's private compositor: a Textual upgrade may
    need this changed (the snapshot tests compare SVGs, not this)."""
    import io

    from rich.console import Console
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system=None, record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text(styles=False)
