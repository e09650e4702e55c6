"""The dashboards: every camera at a glance (overview) and one camera in
depth (camera), each linking to the other."""

from observe import metrics as m

from .config import BY, CONFIG, DASH_SEL, INST_SEL, RATE_INTERVAL as W
from .panels import DS, Layout, dashboard, heatmap, link_to, stat, target, timeseries
from .queries import (info, q_copied_bytes_per_second, q_dequeued_per_second, q_dropped_per_second, q_error_ratio,
                      q_errors_per_second,
                      q_frames_by_path, q_frames_per_second, q_quantile, q_queued_per_second, q_zero_copy_ratio)


def cameras_table(lay):
    """One row per machine and camera, now; the device cell links to its drill-down."""
    pid, pos = lay.place(24, 8)
    cols = [  # (refId, header, expression, unit)
        ("A", "frames/s", q_frames_per_second(DASH_SEL, W), "fps"),
        ("B", "zero-copy", q_zero_copy_ratio(DASH_SEL, W), "percentunit"),
        ("C", "errors/s", q_errors_per_second(DASH_SEL, W), "short"),
        ("D", "output queue", f"max by ({BY}) ({m.OUTPUT_QUEUE_DEPTH}{{{DASH_SEL}}})", "short"),
        ("E", "capture queue", f"max by ({BY}) ({m.CAPTURE_QUEUE_DEPTH}{{{DASH_SEL}}})", "short"),
        ("F", "latency p99", q_quantile(m.FRAME_LATENCY, 0.99, DASH_SEL, W), "s"),
    ]
    return {
        "type": "table", "id": pid, "title": "Cameras", "datasource": DS, "gridPos": pos,
        "description": "One row per machine and camera, now. Click a camera for its drill-down.",
        "targets": [target(e, ref=ref, instant=True) for ref, _, e, _ in cols],
        "transformations": [{"id": "merge", "options": {}},
                            {"id": "organize", "options": {
                                "excludeByName": {"Time": True, "job": True},
                                "renameByName": {f"Value #{ref}": hdr for ref, hdr, _, _ in cols}}}],
        "fieldConfig": {"defaults": {"custom": {"align": "auto"}}, "overrides": [
            {"matcher": {"id": "byName", "options": hdr}, "properties": [{"id": "unit", "value": unit}]}
            for _, hdr, _, unit in cols] + [
            {"matcher": {"id": "byName", "options": "device"}, "properties": [{"id": "links", "value": [
                {"title": "Camera", "url": f"/d/{CONFIG['uid_prefix']}camera?${{datasource:queryparam}}"
                                           "&var-instance=${__data.fields.instance}&var-device=${__value.raw}"}]}]}]},
        "options": {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"]}},
    }


def series(name, sel=DASH_SEL):
    """A metric's series as this dashboard selects them."""
    return f"{name}{{{sel}}}"


def overview():
    lay = Layout()
    lg = "{{instance}} {{device}}"
    p = [lay.row("Cameras"), cameras_table(lay)]
    p.append(timeseries(lay, "Frames delivered", [target(q_frames_per_second(DASH_SEL, W), lg)], "fps",
                        "Frames delivered into capture buffers per second, both paths."))
    p.append(timeseries(lay, "Zero-copy share", [target(q_zero_copy_ratio(DASH_SEL, W), lg)], "percentunit",
                        "Share of delivered frames that took the zero-copy path.", maxv=1))
    p.append(timeseries(lay, "Frame errors", [target(q_errors_per_second(DASH_SEL, W), lg)], "short",
                        "Capture buffers completed with an error per second."))
    p.append(timeseries(lay, "Frame latency p99", [target(q_quantile(m.FRAME_LATENCY, 0.99, DASH_SEL, W), lg)], "s",
                        "99th percentile of producer QUEUE → consumer DQBUF."))
    p.append(timeseries(lay, "Output queue depth", [target(series(m.OUTPUT_QUEUE_DEPTH), lg)], "short",
                        "Frames queued by the producer waiting for a capture buffer."))
    p.append(timeseries(lay, "Capture queue depth", [target(series(m.CAPTURE_QUEUE_DEPTH), lg)], "short",
                        "Capture buffers owned by the driver; 0 while streaming means the consumer starves the camera."))
    p.append(lay.row("Exporters"))
    p.append(timeseries(lay, "Exporter up", [target(series("up", INST_SEL), "{{instance}}")], "short", w=8, maxv=1))
    p.append(timeseries(lay, "Probes not attached",
                        # 0 rather than no data for an exporter with every probe attached
                        [target(f"count by (instance) ({series(m.PROBE_ATTACHED, INST_SEL)} == 0) "
                                f"or count by (instance) ({series(m.PROBE_ATTACHED, INST_SEL)}) * 0", "{{instance}}")],
                        "short", "Attach points the exporter could not attach (0 is good).", w=8))
    p.append(timeseries(lay, "Exporter read time", [target(series(m.SCRAPE_DURATION, INST_SEL), "{{instance}}")],
                        "s", "Time each scrape took to read the probes.", w=8))
    return dashboard("overview", "vcam / Overview", "Every vcam camera on every machine: throughput, path, errors, "
                     "queues and latency.", p, True, [link_to("camera", "Camera")])


def camera():
    lay = Layout()
    p = [lay.row("Identity")]
    p.append(stat(lay, "Card", [target(series(info(m.CAMERA_INFO)), "{{card}}")], text_mode="name"))
    p.append(stat(lay, "Producer", [target(f'{info(m.PROCESS_INFO)}{{{DASH_SEL}, role="producer"}}', "{{comm}}")],
                  text_mode="name", description="The last process seen queuing frames."))
    p.append(stat(lay, "Consumer", [target(f'{info(m.PROCESS_INFO)}{{{DASH_SEL}, role="consumer"}}', "{{comm}}")],
                  text_mode="name", description="The last process seen queuing or dequeuing capture buffers."))
    p.append(stat(lay, "Streaming", [target(series(m.CAPTURE_STREAMING))],
                  description="1 while the capture queue streams."))
    p.append(lay.row("Frames"))
    p.append(timeseries(lay, "Frames by path", [target(q_frames_by_path(DASH_SEL, W), "{{path}}", "A"),
                                                target(q_queued_per_second(DASH_SEL, W), "queued", "B"),
                                                target(q_dequeued_per_second(DASH_SEL, W), "slots handed back", "C"),
                                                target(q_dropped_per_second(DASH_SEL, W), "dropped", "D")],
                        "fps", "Delivered per second by path (zero_copy, copy); queued by the producer, slots "
                        "handed back to it, and frames dropped undelivered when a consumer stopped.", w=8))
    p.append(timeseries(lay, "Errors", [target(q_errors_per_second(DASH_SEL, W), "errors/s")], "short",
                        "Capture buffers completed with an error per second.", w=8))
    p.append(timeseries(lay, "Error ratio", [target(q_error_ratio(DASH_SEL, W), "errored / all")], "percentunit",
                        "Share of frames completed with an error (VcamFrameErrorsHigh watches this).", w=8))
    p.append(lay.row("Latency"))
    for name, title in ((m.FRAME_LATENCY, "Frame latency (QUEUE → DQBUF)"),
                        (m.DELIVERY_LATENCY, "Delivery latency (QUEUE → in a capture buffer)"),
                        (m.DEQUEUE_LATENCY, "Dequeue latency (done → DQBUF)")):
        p.append(heatmap(lay, title, name, "s", m.metric(name).help))
    p.append(timeseries(lay, "Latency percentiles",
                        [target(q_quantile(m.FRAME_LATENCY, q, DASH_SEL, W), f"frame p{int(q * 100)}", ref)
                         for ref, q in (("A", 0.5), ("B", 0.9), ("C", 0.99))]
                        + [target(q_quantile(m.DELIVERY_LATENCY, 0.99, DASH_SEL, W), "delivery p99", "D"),
                           target(q_quantile(m.DEQUEUE_LATENCY, 0.99, DASH_SEL, W), "dequeue p99", "E")], "s",
                        "Percentiles from the histograms; a log2 bucket bounds each (within a factor of 2)."))
    p.append(lay.row("Copy path"))
    p.append(heatmap(lay, "Copy duration", m.COPY_DURATION, "s", "Time inside vcam_copy() per frame.", w=8))
    p.append(timeseries(lay, "Copy duration p99", [target(q_quantile(m.COPY_DURATION, 0.99, DASH_SEL, W), "p99")],
                        "s", w=8))
    p.append(timeseries(lay, "Bytes copied", [target(q_copied_bytes_per_second(DASH_SEL, W), "copied")], "Bps",
                        "Bytes the CPU copied per second (0 on the zero-copy path).", w=8))
    p.append(lay.row("Queues"))
    p.append(timeseries(lay, "Queue depth", [
        target(series(m.OUTPUT_QUEUE_DEPTH), "output (waiting frames)", "A"),
        target(series(m.CAPTURE_QUEUE_DEPTH), "capture (driver-owned buffers)", "B"),
        target(series(m.OUTPUT_SLOTS), "output slots", "C")], "short", w=8))
    p.append(heatmap(lay, "Output depth seen", m.OUTPUT_DEPTH_SEEN, "short",
                     "Output queue depth at each QUEUE and delivery.", w=8))
    p.append(heatmap(lay, "Capture depth seen", m.CAPTURE_DEPTH_SEEN, "short",
                     "Capture queue depth at each buffer queued and done; 0 is a starved camera.", w=8))
    return dashboard("camera", "vcam / Camera", "One camera: identity, paths, latency heatmaps, copy cost and queues.",
                     p, False, [link_to("overview", "Overview")])


DASHBOARDS = {"vcam-overview.json": overview, "vcam-camera.json": camera}
