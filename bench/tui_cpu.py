"""make bench, host half: CPU cost of vcam-observe top refreshing.

    python3 bench/tui_cpu.py [SECONDS]

Runs the real TopApp headless (Textual renders every frame, the driver
discards the output) at 4 refreshes/s against a synthetic source whose
readings go through the exporter's renderer and prometheus-client's parser,
the way a --url scrape does (without the HTTP round trip). Prints the
process CPU share and CPU ms per refresh for 1 and 8 cameras, and the
source's own share (render + parse) measured alone. The machine is shared:
compare the rows of one run with each other.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from observe import exporter, metrics  # noqa: E402
from observe.top.app import TopApp  # noqa: E402
from observe.top.sources import Reading  # noqa: E402

INTERVAL = 0.25


class LiveSource:
    """`cameras` cameras at 30 fps each, counters following the clock."""

    name = "bench"

    def __init__(self, cameras: int):
        self.cameras = cameras
        self.t0 = time.monotonic()
        self.reads = 0

    def snapshot(self):
        t = time.monotonic() - self.t0
        frames = int(30 * t)
        cams = []
        for i in range(self.cameras):
            lat = metrics.Histogram({21 + i % 3: frames, 26: frames // 100}, total=frames * (1 << 21))
            cams.append(metrics.CameraSample(
                device_nr=i, card=f"cam{i}", slots=4, frames_queued=frames, frames_zero_copy=frames // 2,
                frames_copied=frames - frames // 2, bytes_copied=(frames - frames // 2) * 614400,
                output_depth=i % 4, capture_depth=(i + 1) % 4, streaming=True,
                producer="vcam-producer", consumer="consumer",
                histograms={m.hist_kind: lat if m.latency else metrics.Histogram({i % 4: frames}, (i % 4) * frames)
                            for m in metrics.HISTOGRAMS}))
        return metrics.Snapshot(cameras=cams)

    def refresh(self):
        pass

    def read(self):
        self.reads += 1
        text = exporter.render(self).decode()
        return Reading.from_families(text_string_to_metric_families(text), time.monotonic())


async def run_app(cameras: int, seconds: float, size=(160, 48)):
    source = LiveSource(cameras)
    app = TopApp(source, interval=INTERVAL)
    async with app.run_test(size=size, notifications=False):
        await asyncio.sleep(2.0)                 # warm up: first layout, first readings
        cpu0, wall0, reads0 = time.process_time(), time.monotonic(), source.reads
        await asyncio.sleep(seconds)
        cpu, wall, reads = time.process_time() - cpu0, time.monotonic() - wall0, source.reads - reads0
    return cpu, wall, reads


def source_only(cameras: int, refreshes: int):
    source = LiveSource(cameras)
    cpu0 = time.process_time()
    for _ in range(refreshes):
        source.read()
    return time.process_time() - cpu0


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    print(f"vcam-observe top, {1 / INTERVAL:g} refreshes/s, headless 160x48, {seconds:g} s per row")
    print(f"{'cameras':>8} {'refreshes':>10} {'CPU %':>7} {'CPU ms/refresh':>15} {'of which source ms':>19}")
    for cams in (1, 8):
        cpu, wall, reads = asyncio.run(run_app(cams, seconds))
        src = source_only(cams, max(reads, 1)) / max(reads, 1)
        print(f"{cams:>8} {reads:>10} {100 * cpu / wall:>7.1f} {1000 * cpu / max(reads, 1):>15.2f} {1000 * src:>19.2f}")


if __name__ == "__main__":
    main()
