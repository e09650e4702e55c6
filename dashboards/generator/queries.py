"""The dashboards' quantities, one PromQL expression each. `sel` is the
label selector, `w` the rate window: RATE_INTERVAL on a dashboard,
CONFIG["rule_window"] in a recording rule."""

from observe import metrics as m

from .config import BY


# Exposed series names, from the model's family names.
def total(name): return name + "_total"
def bucket(name): return name + "_bucket"
def info(name): return name + "_info"


def _rate(name, sel, w, by=BY):
    return f"sum by ({by}) (rate({name}{{{sel}}}[{w}]))"


def q_frames_per_second(sel, w):
    return _rate(total(m.FRAMES_DELIVERED), sel, w)


def q_frames_by_path(sel, w):
    return _rate(total(m.FRAMES_DELIVERED), sel, w, by=f"{BY}, path")


def q_zero_copy_ratio(sel, w):
    zero_copy = sel + ', path="zero_copy"'
    return f"{_rate(total(m.FRAMES_DELIVERED), zero_copy, w)} / {q_frames_per_second(sel, w)}"


def q_errors_per_second(sel, w):
    return _rate(total(m.FRAMES_ERRORED), sel, w)


def q_error_ratio(sel, w):
    return f"{q_errors_per_second(sel, w)} / ({q_errors_per_second(sel, w)} + {q_frames_per_second(sel, w)})"


def q_queued_per_second(sel, w):
    return _rate(total(m.FRAMES_QUEUED), sel, w)


def q_dequeued_per_second(sel, w):
    return _rate(total(m.FRAMES_DEQUEUED), sel, w)


def q_dropped_per_second(sel, w):
    return _rate(total(m.FRAMES_DROPPED), sel, w)


def q_copied_bytes_per_second(sel, w):
    return _rate(total(m.COPIED_BYTES), sel, w)


def q_quantile(name, q, sel, w):
    return f"histogram_quantile({q}, {_rate(bucket(name), sel, w, by=BY + ', le')})"


def q_heatmap(name, sel, w):
    return _rate(bucket(name), sel, w, by="le")
