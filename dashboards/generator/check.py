"""Every metric a panel or rule names must be one the exporter exposes (or
a recording rule records): a renamed metric stops generation, naming each
panel and rule that still uses the old name.

Names come from promql-parser's syntax tree (the name of every vector and
matrix selector), so numbers (`1e-3`, `Inf`), durations (`offset 5m`),
functions and the labels of `by`, `on` and `ignoring` are never taken for
metrics, and a query that is not PromQL is refused too.
"""

import re

import promql_parser

from observe import metrics as m

BUILTIN = {"up"}   # what Prometheus itself records for every target

# A variable's query, label_values(selector, label), is Grafana's, not PromQL; its selector is checked
GRAFANA_LABEL_VALUES = re.compile(r"label_values\((?P<selector>.*),\s*\w+\s*\)")
# Grafana's interval variables stand where PromQL has a duration: any duration parses the same
GRAFANA_INTERVAL = re.compile(r"\$\{?__(rate_interval|interval|range)\b\}?")


class BadQuery(ValueError):
    """A panel or rule names a metric nobody exports, or is not PromQL."""


def _selected_name(selector: promql_parser.VectorSelector) -> str:
    if selector.name:
        return selector.name
    # {__name__="x", ...}; any other nameless selector is reported as itself
    for matcher in selector.matchers.matchers:
        if matcher.name == "__name__" and matcher.op == promql_parser.MatchOp.Equal:
            return matcher.value
    return str(selector)


def names_in(expr: str) -> set[str]:
    """The metric names a query selects (raises ValueError if it does not parse)."""
    if variable := GRAFANA_LABEL_VALUES.fullmatch(expr):
        expr = variable["selector"]
    expr = GRAFANA_INTERVAL.sub("1m", expr)
    names = set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):   # a matrix selector's is visited too
            names.add(_selected_name(node))
    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def panel_exprs(dash: dict):
    """(panel title, expression) for every query of every panel, rows included,
    then ("variable NAME", query) for every query variable."""
    def walk(panels):
        for p in panels:
            yield from walk(p.get("panels", []))
            for t in p.get("targets", []):
                yield p.get("title", ""), t["expr"]
    yield from walk(dash["panels"])
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            yield f"variable {v['name']}", v["query"]["query"]


def check_metrics(dashboards: dict[str, dict], rule_groups: list[dict], exported: set[str] | None = None):
    """Raise BadQuery, one line a problem, for each panel or rule that does
    not parse or uses a metric neither the exporter exposes (the metric
    table's series, unless `exported` is given) nor a recording rule records."""
    exported = m.exposed_series() if exported is None else exported
    recorded = {r["record"] for g in rule_groups for r in g["rules"] if "record" in r}
    known = exported | recorded | BUILTIN
    queries = [(f"{fname}: panel '{title}'", expr)
               for fname, dash in dashboards.items() for title, expr in panel_exprs(dash)]
    queries += [(f"rule {rule.get('record') or rule.get('alert')}", rule["expr"])
                for g in rule_groups for rule in g["rules"]]
    bad = []
    for who, expr in queries:
        try:
            unknown = names_in(expr) - known
        except ValueError as e:
            bad.append(f"{who} is not PromQL ({e}): {expr}")
            continue
        bad += [f"{who} uses {name}, which the exporter does not export" for name in sorted(unknown)]
    if bad:
        raise BadQuery("\n".join(bad))
