"""Where the TUI's readings come from. Both sources give metric families,
read back into cameras by `metrics.read_cameras()`, the same table the
exporter writes with."""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass, field

from .. import metrics


@dataclass
class Reading:
    """Every camera's cumulative values at one instant, as exported."""
    t: float                                                       # seconds, monotonic
    cameras: dict[str, metrics.CameraSample] = field(default_factory=dict)  # by device, in device order

    @classmethod
    def from_families(cls, families, t: float) -> "Reading":
        return cls(t, {cam.device: cam for cam in metrics.read_cameras(families)})


class SourceError(Exception):
    """The source could not be read now; the next poll retries."""


class UrlSource:
    """Scrape an exporter's /metrics."""

    def __init__(self, url: str, timeout: float = 5.0, clock=time.monotonic):
        self.url = url
        self.timeout = timeout
        self.clock = clock
        self.name = url

    def read(self) -> Reading:
        from prometheus_client.parser import text_string_to_metric_families
        try:
            start = self.clock()
            with urllib.request.urlopen(self.url, timeout=self.timeout) as r:
                text = r.read().decode()
            t = (start + self.clock()) / 2   # the exporter read its counters in between
            return Reading.from_families(text_string_to_metric_families(text), t)
        except Exception as e:   # refused, timeout, HTTP error, bad text
            raise SourceError(f"{self.url}: {getattr(e, 'reason', None) or e}") from e


class ProbesSource:
    """The in-process probes, read as the exporter reads them."""

    def __init__(self, probes=None, clock=time.monotonic):
        if probes is None:
            from ..probes import Probes
            probes = Probes()
        self.probes = probes
        self.clock = clock
        self.name = "local probes"

    def read(self) -> Reading:
        try:
            self.probes.refresh()
            snapshot = self.probes.snapshot()
        except Exception as e:
            raise SourceError(f"probes: {e}") from e
        return Reading.from_families(metrics.families(snapshot), self.clock())

    def close(self):
        self.probes.close()
