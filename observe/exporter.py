"""The Prometheus exporter: a Collector that reads the probes on each scrape.

Like prometheus_client's ProcessCollector, it holds no state of its own:
collect() asks its source for a snapshot now. The source is injectable (the
real Probes, or anything with refresh() and snapshot() in a test).
"""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest

from . import metrics

DEFAULT_LISTEN = "127.0.0.1:9477"


class VcamCollector:
    """Yields the vcam metric families from `source.snapshot()` per scrape."""

    def __init__(self, source, clock=time.perf_counter, log=None):
        self.source = source
        self.clock = clock
        self.log = log or (lambda msg: None)

    def collect(self):
        start = self.clock()
        ok = True
        try:
            self.source.refresh()
            snapshot = self.source.snapshot()
        except Exception as e:  # a scrape reports failure, it never dies
            self.log(f"scrape failed: {e}")
            ok, snapshot = False, None
        if snapshot is not None:
            yield from metrics.families(snapshot)
        by_name = {m.name: m for m in metrics.EXPORTER_METRICS}
        yield GaugeMetricFamily(metrics.SCRAPE_SUCCESS, by_name[metrics.SCRAPE_SUCCESS].help, value=1 if ok else 0)
        yield GaugeMetricFamily(metrics.SCRAPE_DURATION, by_name[metrics.SCRAPE_DURATION].help,
                                value=self.clock() - start)


def make_registry(source, log=None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(VcamCollector(source, log=log))
    return registry


def render(source) -> bytes:
    """One scrape in the text exposition format."""
    return generate_latest(make_registry(source))


def parse_listen(text: str) -> tuple[str, int]:
    """'ADDR:PORT' (IPv6 as [ADDR]:PORT) -> (addr, port); ValueError if bad."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen wants ADDR:PORT, e.g. {DEFAULT_LISTEN}; got {text!r}")
    return host.strip("[]"), int(port)


def follow_modules(source, stop: threading.Event, interval: float = 1.0) -> threading.Thread:
    """Attach to modules that appear between scrapes too, so that counting
    starts when the module loads and not at the next scrape."""
    def run():
        while not stop.wait(interval):
            try:
                source.refresh()
            except Exception:
                pass    # the next scrape reports it
    thread = threading.Thread(target=run, name="vcam-observe-modules", daemon=True)
    thread.start()
    return thread
