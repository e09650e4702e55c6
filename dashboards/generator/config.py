"""The settings (node-mixin's `_config`) and the selectors every query shares."""

CONFIG = {
    "job": "vcam",                         # the scrape job of vcam-observe exporters
    "selector": 'job="vcam"',              # what selects them in every query
    "rule_window": "5m",                   # window of the recording rules
    "latency_p99_threshold_seconds": 0.1,  # VcamLatencyP99High
    "error_ratio_threshold": 0.01,         # VcamFrameErrorsHigh
    "grafana_schema_version": 39,          # Grafana 10.4 / 11.x
    "datasource_uid": "vcam-prometheus",
    "uid_prefix": "vcam-",
}

SEL = CONFIG["selector"]
DASH_SEL = SEL + ', instance=~"$instance", device=~"$device"'    # per camera
INST_SEL = SEL + ', instance=~"$instance"'                         # per exporter
BY = "job, instance, device"

# The window of every rate() on a dashboard: Grafana's, at least four scrapes.
RATE_INTERVAL = "$__rate_interval"
