"""vcam observe: eBPF probes on vcam and videobuf2, a Prometheus exporter and a TUI."""
