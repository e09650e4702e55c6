"""vcam-observe top: a live Textual view of every camera, local or remote,
and its plain-text/JSON summary without a terminal.

What lives where:

- `sources`: where readings come from: `ProbesSource` (the in-process
  probes, through `metrics.families()` as the exporter renders them) and
  `UrlSource` (an exporter's /metrics, parsed with prometheus-client);
  both give a `Reading` (a time and the cameras, `metrics.read_cameras()`).
- `rates`: the arithmetic: counter and bucket deltas, rates, quantiles.
- `model`: `Model` keeps the last minute of readings and derives one
  `CameraRow` per camera (rates, zero-copy share, p50/p99).
- `fmt`: numbers and bars as text (no Textual).
- `app`: the Textual app: the camera table, the selected camera's panel,
  the detail and help screens; `top.tcss` its styles.
- `batch`: `top --batch`: two readings, one summary, as a table or JSON.

Only `app` imports Textual; the rest is plain Python.
"""
