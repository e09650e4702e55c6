"""The Prometheus exporter: a Collector that reads the probes on each scrape.

Like prometheus_client's ProcessCollector, it holds no state of its own:
collect() asks its source for a snapshot now. The source is injectable (the
real Probes, or anything with refresh() and snapshot() in a test). The HTTP
side answers the scrapes that arrive while one is being answered with that
one's response (shared_responses()).
"""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, start_http_server
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


class _Answering:
    """One response being made, and the outcome once `done` is set."""

    def __init__(self):
        self.done = threading.Event()
        self.response: tuple[str, list, bytes] | None = None
        self.error: Exception | None = None


def shared_responses(app):
    """Wrap the WSGI app APP so that a request arriving while the same one
    (path, query, Accept, Accept-Encoding) is being answered waits for that
    answer and gets it too. A scrape's cost is reading the counters and the
    maps and writing them out; 50 scrapers each paying it made every scrape
    wait for all the others (p50 73 s under TCG with 8 cameras)."""
    lock = threading.Lock()
    under_way: dict[tuple, _Answering] = {}

    def shared(environ, start_response):
        key = tuple(environ.get(k, "") for k in ("PATH_INFO", "QUERY_STRING", "HTTP_ACCEPT", "HTTP_ACCEPT_ENCODING"))
        with lock:
            answering = under_way.get(key)
            first = answering is None
            if first:
                answering = under_way[key] = _Answering()
        if first:
            try:
                started = {}
                body = b"".join(app(environ, lambda status, headers, exc_info=None:
                                    started.update(status=status, headers=headers)))
                answering.response = (started["status"], started["headers"], body)
            except Exception as e:
                answering.error = e
            finally:
                with lock:
                    del under_way[key]
                answering.done.set()
        else:
            answering.done.wait()
        if answering.error is not None:
            raise answering.error
        status, headers, body = answering.response
        start_response(status, list(headers))
        return [body]

    return shared


def serve(registry, addr: str, port: int):
    """prometheus_client's threaded HTTP server for REGISTRY on ADDR:PORT,
    its answers shared; (server, thread). OSError when it cannot listen."""
    server, thread = start_http_server(port, addr, registry=registry)
    server.set_app(shared_responses(server.get_app()))
    return server, thread


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
