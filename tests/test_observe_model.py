"""The metric model and the exporter's logic, without BPF: bucket
conversion, exposition format, the collector's failure handling, the CLI's
bad-input paths. Runs on the host."""

import dataclasses
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from observe import cli, exporter, metrics
from observe import probes as probes_mod
from observe.btf import BtfError
from observe.probes import PROBES, program_text
from labtools import free_port
from observe_scrape import buckets, fetch, samples, value
from vcam_helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
VCAM_OBSERVE = [sys.executable, "-m", "observe.cli"]


@pytest.mark.parametrize("ns,slot", [(0, 0), (1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (1024, 10), (1025, 11),
                                     (2**34, 34), (2**34 + 1, 35)])
def test_log2_slot_upper_bound_inclusive(ns, slot):
    assert metrics.log2_slot(ns) == slot
    assert ns <= 2**slot
    assert slot == 0 or ns > 2**(slot - 1)


def test_latency_buckets_are_cumulative_seconds_with_inf():
    hist = metrics.Histogram(slots={3: 1, 10: 2, 12: 4, 40: 1}, total=123)
    got = metrics.latency_buckets(hist)
    assert got[0] == (repr(1024 / 1e9), 3)      # slots 3 and 10 are <= 2^10 ns
    assert dict(got)[repr(4096 / 1e9)] == 7
    assert got[-2] == (repr(2**34 / 1e9), 7)    # slot 40 is beyond the last bound
    assert got[-1] == ("+Inf", 8)
    counts = [n for _, n in got]
    assert counts == sorted(counts)


def test_depth_buckets():
    hist = metrics.Histogram(slots={0: 2, 1: 1, 4: 3, 64: 1}, total=13)
    got = dict(metrics.depth_buckets(hist))
    assert got["0.0"] == 2 and got["1.0"] == 3 and got["3.0"] == 3 and got["4.0"] == 6
    assert got["64.0"] == 7 and got["+Inf"] == 7


def test_quantile_slot():
    hist = metrics.Histogram(slots={10: 50, 12: 49, 20: 1})
    assert metrics.quantile_slot(hist, 0.5) == 10
    assert metrics.quantile_slot(hist, 0.99) == 12
    assert metrics.quantile_slot(hist, 1.0) == 20
    assert metrics.quantile_slot(metrics.Histogram(), 0.5) is None


class FakeSource:
    """A scripted snapshot; the real source is tested in the guest."""

    def __init__(self, snapshot=None, error=None):
        self.snap, self.error, self.refreshed = snapshot, error, 0

    def refresh(self):
        self.refreshed += 1

    def snapshot(self):
        if self.error:
            raise self.error
        return self.snap


def sample_snapshot():
    cam = metrics.CameraSample(
        device_nr=3, card="lab cam", slots=4, frames_queued=10, frames_dequeued=9, frames_zero_copy=6,
        frames_copied=3, frames_errored=1, frames_dropped=2, bytes_copied=3 * 614400, output_depth=1, capture_depth=2,
        streaming=True, producer="vcam-producer", consumer="gst-launch-1.0",
        histograms={0: metrics.Histogram({12: 5, 14: 5}, 10 * 10000), 4: metrics.Histogram({0: 1, 2: 3}, 6)})
    return metrics.Snapshot(cameras=[cam], probes={"kprobe:vcam_copy": True, "kprobe:vcam_frame_delivered": False,
                                                   "kretprobe:vcam_copy": True},
                            bpf_errors={"map_full": 0, "unpaired": 2},
                            probes_missed={"kprobe:vcam_copy": 0, "kretprobe:vcam_copy": 3})


def test_exposition_of_a_snapshot():
    series = samples(exporter.render(FakeSource(sample_snapshot())).decode())
    d = dict(device="video3")
    assert value(series, "vcam_camera_info", card="lab cam", **d) == 1
    assert value(series, "vcam_process_info", role="producer", comm="vcam-producer", **d) == 1
    assert value(series, "vcam_process_info", role="consumer", comm="gst-launch-1.0", **d) == 1
    assert value(series, "vcam_frames_delivered_total", path="zero_copy", **d) == 6
    assert value(series, "vcam_frames_delivered_total", path="copy", **d) == 3
    assert value(series, "vcam_frames_errored_total", **d) == 1
    assert value(series, "vcam_frames_dropped_total", **d) == 2
    assert value(series, "vcam_copied_bytes_total", **d) == 3 * 614400
    assert value(series, "vcam_output_queue_depth", **d) == 1
    assert value(series, "vcam_capture_queue_depth", **d) == 2
    assert value(series, "vcam_output_slots", **d) == 4
    assert value(series, "vcam_frame_delivery_latency_seconds_count", **d) == 10
    assert value(series, "vcam_frame_delivery_latency_seconds_sum", **d) == pytest.approx(1e-4)
    assert buckets(series, "vcam_frame_delivery_latency_seconds", **d)[4096e-9] == 5
    assert value(series, "vcam_output_queue_depth_seen_count", **d) == 4
    assert value(series, "vcam_copy_duration_seconds_count", **d) == 0     # empty, but present
    assert value(series, "vcam_exporter_probe_attached", probe="kprobe:vcam_frame_delivered") == 0
    assert value(series, "vcam_exporter_bpf_errors_total", kind="unpaired") == 2
    assert value(series, "vcam_exporter_probe_missed_total", probe="kretprobe:vcam_copy") == 3
    assert value(series, "vcam_exporter_probe_missed_total", probe="kprobe:vcam_copy") == 0
    # a probe that is not attached has no miss count, rather than a false 0
    assert ("vcam_exporter_probe_missed_total", frozenset({("probe", "kprobe:vcam_frame_delivered")})) not in series
    assert value(series, "vcam_exporter_scrape_success") == 1
    assert ("vcam_exporter_scrape_duration_seconds", frozenset()) in series


def test_stale_probe_events_of_dead_exporters_only_are_removed(tmp_path):
    events = tmp_path / "kprobe_events"
    lines = ["r64:kprobes/r_vcam_copy_bcc_42 vcam:vcam_copy",             # dead: removed
             "r64:kprobes/r_vb2_core_streamon_bcc_42 videobuf2_common:vb2_core_streamon",
             "r64:kprobes/r_vcam_copy_bcc_7 vcam:vcam_copy",              # alive: kept
             "r64:kprobes/r_some_other_function_bcc_42 some_other_function",  # not ours: kept
             "p:kprobes/myprobe do_sys_open"]
    events.write_text("\n".join(lines) + "\n")
    removed = probes_mod.remove_stale_probe_events(roots=(tmp_path / "absent", tmp_path), alive=lambda pid: pid == 7)
    assert removed == ["r_vcam_copy_bcc_42", "r_vb2_core_streamon_bcc_42"]
    # tracefs takes "-:GROUP/EVENT" appended to kprobe_events as a removal
    assert events.read_text().splitlines()[len(lines):] == ["-:kprobes/r_vcam_copy_bcc_42",
                                                            "-:kprobes/r_vb2_core_streamon_bcc_42"]
    assert probes_mod.remove_stale_probe_events(roots=(tmp_path / "absent",)) == []


def test_kprobe_profile_missed_reads_this_process_probes_only(tmp_path):
    (tmp_path / "kprobe_profile").write_text(
        "  r_vcam_copy_bcc_42                                   120               2\n"
        "  p_vcam_frame_delivered_bcc_42                        120               0\n"
        "  r_vcam_copy_bcc_7                                      9               5\n"
        "  myprobe                                               1               1\n")
    got = probes_mod.kprobe_profile_missed(42, roots=(tmp_path / "absent", tmp_path))
    assert got == {"kretprobe:vcam_copy": 2, "kprobe:vcam_frame_delivered": 0}
    assert probes_mod.kprobe_profile_missed(42, roots=(tmp_path / "absent",)) == {}


def test_histograms_of_a_bpf_camera_entry():
    class Entry:     # struct cam's histogram fields, as bcc reads them
        hist = [0] * (probes_mod.NR_HISTS * probes_mod.HIST_SLOTS)
        hist_sum = [0] * probes_mod.NR_HISTS
    cam = Entry()
    cam.hist[0 * probes_mod.HIST_SLOTS + 12] = 5       # delivery latency, slot 12
    cam.hist[5 * probes_mod.HIST_SLOTS + 64] = 1       # capture depth, deepest slot
    cam.hist_sum[0] = 5 * 4000
    hists = probes_mod.cam_histograms(cam)
    assert hists[0] == metrics.Histogram({12: 5}, 20000)
    assert hists[5].slots == {64: 1} and hists[1] == metrics.Histogram()
    # the layout is the BPF program's
    assert f"#define NR_HISTS\t{probes_mod.NR_HISTS}\n" in program_text()
    assert f"#define HIST_SLOTS\t{probes_mod.HIST_SLOTS}\t" in program_text()



def test_config_fields_are_the_layouts_in_order():
    """probes.Probes writes struct config positionally: vcam_ops, then Layout's fields"""
    body = re.search(r"^struct config \{\n(.*?)^\};", program_text(), re.S | re.M).group(1)
    fields = re.findall(r"^\tu\d+ (\w+);", body, re.M)
    assert fields == ["vcam_ops"] + [f.name for f in dataclasses.fields(probes_mod.Layout)]


def test_metric_names_follow_the_rules():
    text = exporter.render(FakeSource(sample_snapshot())).decode()
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("vcam_")
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples)
        for s in family.samples:
            assert "pid" not in s.labels


def test_a_failing_source_is_a_failed_scrape_not_a_crash():
    logged = []
    registry = exporter.make_registry(FakeSource(error=RuntimeError("map gone")), log=logged.append)
    series = samples(exporter.generate_latest(registry).decode())
    assert value(series, "vcam_exporter_scrape_success") == 0
    assert not any(k[0].startswith("vcam_frames") for k in series)
    assert logged == ["scrape failed: map gone"]


def test_collector_reads_the_source_on_every_scrape():
    source = FakeSource(metrics.Snapshot())
    registry = exporter.make_registry(source)
    exporter.generate_latest(registry)
    exporter.generate_latest(registry)
    assert source.refreshed == 2


class SlowSource(FakeSource):
    """A snapshot that takes until `go` is set, counting how many were taken."""

    def __init__(self, snapshot=None, error=None):
        super().__init__(snapshot, error)
        self.go, self.taking, self.taken = threading.Event(), threading.Event(), 0

    def snapshot(self):
        self.taken += 1
        self.taking.set()
        self.go.wait(10)
        return super().snapshot()


@pytest.mark.parametrize("error", [None, RuntimeError("map gone")])
def test_scrapes_that_arrive_while_one_is_answered_share_its_answer(error):
    """Ten scrapes arriving while one is being answered all get that answer
    (or its failure) from one snapshot; a scrape after it takes a new one;
    one asking for another format (OpenMetrics) is answered on its own."""
    source = SlowSource(sample_snapshot(), error)
    server, thread = exporter.serve(exporter.make_registry(source), "127.0.0.1", free_port())
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        bodies = []
        scrape = lambda: bodies.append(fetch(url, timeout=30))  # noqa: E731
        first = threading.Thread(target=scrape)
        first.start()
        assert source.taking.wait(10)
        threads = threading.active_count()
        others = [threading.Thread(target=scrape) for _ in range(10)]
        for t in others:
            t.start()
        # all ten are in the server (a thread each there too), waiting for the answer under way
        wait_until(lambda: threading.active_count() == threads + 20, 10, "the ten scrapes in the server")
        time.sleep(0.2)
        source.go.set()
        for t in [first] + others:
            t.join(30)
        assert len(bodies) == 11 and len(set(bodies)) == 1 and source.taken == 1
        series = samples(bodies[0])
        assert value(series, "vcam_exporter_scrape_success") == (0 if error else 1)
        assert value(series, "vcam_frames_queued_total", device="video3") == (None if error else 10)
        assert fetch(url, timeout=30) and source.taken == 2
        request = urllib.request.Request(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        with urllib.request.urlopen(request, timeout=30) as r:
            assert r.headers["Content-Type"].startswith("application/openmetrics-text")
            assert r.read().decode().endswith("# EOF\n")
        assert source.taken == 3
    finally:
        source.go.set()
        server.shutdown()


@pytest.mark.parametrize("text,expected", [("127.0.0.1:9477", ("127.0.0.1", 9477)),
                                           ("0.0.0.0:1", ("0.0.0.0", 1)), ("[::1]:9477", ("::1", 9477))])
def test_parse_listen(text, expected):
    assert exporter.parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9477", "host:", ":9477", "host:0", "host:65536", "host:port"])
def test_parse_listen_rejects(text):
    with pytest.raises(ValueError):
        exporter.parse_listen(text)


def run_cli(*args, user=None):
    cmd = VCAM_OBSERVE + list(args)
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--inh-caps=-all"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_ebpf_flag_prints_the_program():
    r = run_cli("--ebpf")
    assert r.returncode == 0
    assert r.stdout == program_text()
    for probe in PROBES:
        assert f"int {probe.fn}(" in r.stdout


def test_ebpf_flag_is_hidden():
    assert "--ebpf" not in cli.build_parser().format_help()


def test_bad_listen_is_a_usage_error():
    r = run_cli("export", "--listen", "nonsense")
    assert r.returncode == 2
    assert r.stderr.startswith("usage: vcam-observe export ") and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.splitlines()[-1].startswith("vcam-observe export: error: --listen wants ADDR:PORT"), r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_without_privileges_one_line():
    # an explicit free port: the default one may be in use on this machine
    r = run_cli("export", "--listen", f"127.0.0.1:{free_port()}", user="65534")
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip() == "vcam-observe: needs root (or CAP_BPF and CAP_PERFMON) to load the BPF probes"


class FakeTable(dict):
    Key = int

    @staticmethod
    def Leaf(*fields):
        return fields or 0


class FakeBPF:
    """Records attach calls; the real attach is tested in the guest."""

    def __init__(self, text, cflags=None):
        self.text, self.tables, self.attached = text, {}, []

    def __getitem__(self, name):
        return self.tables.setdefault(name, FakeTable())

    def attach_kprobe(self, event, fn_name):
        self.attached.append(("kprobe", event.decode()))

    def attach_kretprobe(self, event, fn_name, maxactive=0):
        self.attached.append(("kretprobe", event.decode()))

    def attach_raw_tracepoint(self, tp, fn_name):
        self.attached.append(("raw_tracepoint", tp.decode()))

    def detach_kprobe(self, event, fn_name):
        self.attached.remove(("kprobe", event.decode()))

    def detach_kretprobe(self, event, fn_name):
        self.attached.remove(("kretprobe", event.decode()))

    def detach_raw_tracepoint(self, tp):
        self.attached.remove(("raw_tracepoint", tp.decode()))


LAYOUT = probes_mod.Layout(dev_queue=1408, dev_num=2284, queue_ops=8, buf_index=4)


@pytest.mark.skipif(os.geteuid() != 0, reason="Probes checks for root first")
def test_a_missing_symbol_is_named_and_the_rest_attaches(monkeypatch):
    from observe import probes as probes_mod
    monkeypatch.setattr(probes_mod, "tracepoint_exists", lambda name: True)
    all_symbols = {p.target: 0x1000 for p in PROBES} | {"vcam_vb2_ops": 0x2000}
    symbols = {k: v for k, v in all_symbols.items() if k != "vcam_copy"}
    loaded = {"vcam": "0xa", "videobuf2_common": "0xb"}
    logged = []
    p = probes_mod.Probes(log=logged.append, bpf_factory=FakeBPF, symbols=lambda mods: symbols,
                          identity=lambda m: loaded.get(m), layout=lambda: LAYOUT)
    p.refresh()
    attached = p.attached()
    assert attached["kprobe:vcam_copy"] is False and attached["kretprobe:vcam_copy"] is False
    assert all(ok for name, ok in attached.items() if "vcam_copy" not in name)
    assert logged == ["probe kprobe:vcam_copy: symbol vcam_copy not found in module vcam; the other probes still run",
                      "probe kretprobe:vcam_copy: symbol vcam_copy not found in module vcam; the other probes still run"]
    assert p.bpf["config"][0] == (0x2000, 1408, 2284, 8, 4)

    # vcam unloaded: its probes go, vb2's stay, nothing of its cameras is left
    del loaded["vcam"]
    p.bpf["cams"][1] = "stale"
    p.refresh()
    attached = p.attached()
    assert not any(ok for name, ok in attached.items() if ":vcam_" in name)
    assert all(ok for name, ok in attached.items() if ":vb2_" in name)
    assert p.bpf["config"][0] == 0 and not p.bpf["cams"]

    # loaded again (a new .text address): attached again
    loaded["vcam"] = "0xc"
    symbols["vcam_copy"] = 0x1000
    p.refresh()
    assert all(p.attached().values())


def test_the_table_reads_back_what_it_wrote():
    """metrics.read_cameras() is the inverse of metrics.families(), through
    the text format a scrape takes: every field, every histogram."""
    snap = sample_snapshot()
    quiet = metrics.CameraSample(device_nr=12, card="")   # nothing seen by the probes yet
    snap.cameras.append(quiet)
    text = exporter.render(FakeSource(snap)).decode()
    read = metrics.read_cameras(text_string_to_metric_families(text))
    assert [c.device for c in read] == ["video3", "video12"]
    fields = [m.field for m in metrics.CAMERA_METRICS if m.field]
    assert len(fields) == 14
    for wrote, got in zip(snap.cameras, read):
        for name in fields:
            assert getattr(got, name) == getattr(wrote, name), name
    cam = read[0]
    assert set(cam.buckets) == {m.name for m in metrics.HISTOGRAMS}
    assert cam.buckets[metrics.DELIVERY_LATENCY][-1] == (float("inf"), 10)
    assert dict(cam.buckets[metrics.OUTPUT_DEPTH_SEEN])[2.0] == 4
    assert cam.frames_delivered == 9


def test_every_exposed_series_is_in_the_table_and_back():
    text = exporter.render(FakeSource(sample_snapshot())).decode()
    shown = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert shown == metrics.exposed_series()


def test_the_readme_shows_the_table():
    readme = (ROOT / "observe" / "README.md").read_text()
    assert metrics.markdown_table() in readme, "regenerate it: python -m observe.metrics"


@pytest.mark.skipif(os.geteuid() != 0, reason="Probes checks for root first")
def test_no_layout_is_one_line_and_the_probes_still_attach():
    """A kernel without module BTF: vb2 events cannot be told apart, the
    rest works (vcam's own events carry their camera's N)."""
    def no_layout():
        raise BtfError("no BTF for videodev (/sys/kernel/btf/videodev missing)")
    symbols = {p.target: 0x1000 for p in PROBES} | {"vcam_vb2_ops": 0x2000}
    logged = []
    p = probes_mod.Probes(log=logged.append, bpf_factory=FakeBPF, symbols=lambda mods: symbols,
                          identity=lambda m: "0xa", layout=no_layout)
    p.refresh()
    assert all(p.attached().values())
    assert logged == ["no layout of vcam's structures (no BTF for videodev (/sys/kernel/btf/videodev missing)): "
                      "videobuf2 events cannot be told apart, capture-side metrics stay empty"]
    assert p.bpf["config"][0] == 0    # all zero: the layout unknown
