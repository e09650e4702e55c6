"""The Prometheus exporter: a Collector that reads the probes on each scrape.

Like prometheus_client's ProcessCollector, it keeps no figures of its own:
collect() asks its source for a snapshot now. Scrapes that arrive while a
snapshot is being taken wait for that one and share it: reading the maps
and sysfs is most of a scrape's cost, and 50 scrapers each taking their
own made every scrape wait for all the others (p50 32 s under TCG). The
source is injectable (the real Probes, or anything with refresh() and
snapshot() in a test).
"""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest

from . import metrics

DEFAULT_LISTEN = "127.0.0.1:9477"


class _Taking:
    """One snapshot being taken, and its outcome once done is set."""

    def __init__(self):
        self.done = threading.Event()
        self.snapshot = None
        self.error: Exception | None = None


class VcamCollector:
    """Yields the vcam metric families from `source.snapshot()` per scrape,
    one snapshot for all the scrapes that arrive while it is taken."""

    def __init__(self, source, clock=time.perf_counter, log=None):
        self.source = source
        self.clock = clock
        self.log = log or (lambda msg: None)
        self._lock = threading.Lock()
        self._taking: _Taking | None = None

    def _snapshot(self):
        with self._lock:
            taking, first = self._taking, self._taking is None
            if first:
                taking = self._taking = _Taking()
        if first:
            try:
                self.source.refresh()
                taking.snapshot = self.source.snapshot()
            except Exception as e:
                taking.error = e
            finally:
                with self._lock:
                    self._taking = None
                taking.done.set()
        else:
            taking.done.wait()
        if taking.error is not None:
            raise taking.error
        return taking.snapshot

    def collect(self):
        start = self.clock()
        ok = True
        try:
            snapshot = self._snapshot()
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
