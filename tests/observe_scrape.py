"""Scraping an exporter the way Prometheus does, for the observe tests."""

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def fetch(url: str, timeout: float = 30.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, frozenset of label items) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(series: dict, name: str, **labels) -> float | None:
    return series.get((name, frozenset(labels.items())))


def buckets(series: dict, name: str, **labels) -> dict[float, float]:
    """le (float) -> cumulative count of one histogram."""
    out = {}
    for (sname, lab), v in series.items():
        lab = dict(lab)
        le = lab.pop("le", None)
        if sname == name + "_bucket" and lab == labels:
            out[float(le)] = v
    return dict(sorted(out.items()))
