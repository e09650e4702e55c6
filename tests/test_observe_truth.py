"""The exporter tells the truth: every number, scraped over HTTP from the
real probes on the real module, is checked against the driver's own sysfs
counters and what a real consumer saw; and vcam-observe top, reading it,
shows what the consumer captured. One exporter for all (bcc compiles for
half a minute or more under TCG)."""

import errno
import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from observe import metrics, probes
from observe.btf import KernelBtf
from observe_scrape import buckets, fetch, samples, value
from producer import v4l2
from producer_procs import run_cli, running_producer, short_socket_path
from vcam_helpers import Camera, Capture, ProducerThread, expect_errno, stats, vivid_capture_node, wait_until

pytestmark = pytest.mark.guest
# also in the kernel tier of the lab's other kernels (make test): all but
# the TUI's test, whose emulated terminal costs a minute and more
every_kernel = pytest.mark.every_kernel

FRAMES = 30
SLOTS = 4


PORT = 9479
VCAM_KO = Path(__file__).resolve().parent.parent / "driver" / "vcam.ko"


@pytest.fixture(scope="module")
def exporter_proc(tmp_path_factory):
    """`vcam-observe export`, as a user runs it. bcc compiles its program
    for 15 s (an idle machine) to minutes (a busy one) under TCG: once per
    run, so every test here scrapes this one exporter."""
    log = tmp_path_factory.mktemp("exporter") / "stderr"
    with open(log, "w") as err:
        proc = subprocess.Popen(["vcam-observe", "export", "--listen", f"127.0.0.1:{PORT}"], stderr=err, text=True)
    url = f"http://127.0.0.1:{PORT}/metrics"
    try:
        wait_until(lambda: proc.poll() is not None or fetch(url), 600, "the exporter to serve",
                   ignore=(OSError,))  # OSError: not listening yet
        assert proc.poll() is None, log.read_text()
        yield proc, url, log
    finally:
        proc.terminate()
        proc.wait(60)
    assert proc.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text()


@pytest.fixture
def url(exporter_proc):
    return exporter_proc[1]


def scrape(url):
    return samples(fetch(url))


def stream(cam: Camera, cap: Capture, frames: int, zero_copy: bool) -> list[int]:
    """Push `frames` frames through; return the consumer's latency of each
    (DQBUF time minus the buffer's timestamp, which is the QUEUE time)."""
    if zero_copy:
        cap.reqbufs(SLOTS, v4l2.V4L2_MEMORY_DMABUF)   # buffer i imports slot i
    else:
        cap.reqbufs(SLOTS)
    requeue = (lambda i: cap.qbuf(i, cam.bufs[i].fd, cam.size)) if zero_copy else cap.qbuf
    for i in range(SLOTS):
        requeue(i)
    cap.streamon()
    queued = 0
    for slot in range(SLOTS):
        cam.fill_and_queue(slot, slot)
        queued += 1
    latencies = []
    while len(latencies) < frames:
        b = cap.dqbuf()
        latencies.append(time.monotonic_ns() - b.timestamp_ns())
        requeue(b.index)
        if queued < frames:
            slot = cam.dequeue().index
            cam.fill_and_queue(slot, queued & 0xFF)
            queued += 1
    # Take back the last slots so that nothing is in flight
    while stats(cam.nr)["frames_dequeued"] < frames:
        cam.dequeue()
    return latencies


def slot_of_quantile(sorted_values, q):
    return metrics.log2_slot(sorted_values[math.ceil(q * len(sorted_values)) - 1])


def hist_quantile_slot(cum: dict[float, float], q):
    total = cum[math.inf]
    le = next(le for le, n in cum.items() if n >= q * total)
    return round(math.log2(le * 1e9))


def check_truth(series, cam, consumed, latencies, path):
    dev = f"video{cam.nr}"
    s = stats(cam.nr)
    other = "copy" if path == "zero_copy" else "zero_copy"
    assert value(series, "vcam_camera_info", device=dev, card="vcam test") == 1
    assert value(series, "vcam_frames_queued_total", device=dev) == s["frames_queued"] == FRAMES
    assert value(series, "vcam_frames_dequeued_total", device=dev) == s["frames_dequeued"] == FRAMES
    assert value(series, "vcam_frames_delivered_total", device=dev, path=path) == s[f"frames_{'zero_copy' if path == 'zero_copy' else 'copied'}"] == consumed
    assert value(series, "vcam_frames_delivered_total", device=dev, path=other) == 0
    assert value(series, "vcam_frames_errored_total", device=dev) == s["frames_errored"] == 0
    assert value(series, "vcam_copied_bytes_total", device=dev) == s["bytes_copied"]
    # Every buffer is back with the driver, no frame is waiting
    assert value(series, "vcam_capture_queue_depth", device=dev) == s["capture_queued"] == SLOTS
    assert value(series, "vcam_output_queue_depth", device=dev) == 0
    assert value(series, "vcam_output_slots", device=dev) == SLOTS
    assert value(series, "vcam_capture_streaming", device=dev) == 1
    for name in ("vcam_frame_delivery_latency_seconds", "vcam_capture_dequeue_latency_seconds",
                 "vcam_frame_latency_seconds"):
        assert value(series, name + "_count", device=dev) == consumed, name
    copies = value(series, "vcam_copy_duration_seconds_count", device=dev)
    assert copies == (consumed if path == "copy" else 0)
    # The consumer's own latencies agree with QUEUE -> DQBUF within a bucket
    cum = buckets(series, "vcam_frame_latency_seconds", device=dev)
    mine = sorted(latencies)
    for q in (0.5, 0.9):
        assert abs(hist_quantile_slot(cum, q) - slot_of_quantile(mine, q)) <= 1, (q, cum, mine)
    me = Path("/proc/self/comm").read_text().strip()
    assert value(series, "vcam_process_info", device=dev, role="producer", comm=me) == 1
    assert value(series, "vcam_process_info", device=dev, role="consumer", comm=me) == 1


@every_kernel
@pytest.mark.parametrize("path", ["copy", "zero_copy"])
def test_counters_and_latencies_match_the_driver_and_the_consumer(url, path):
    with Camera(nr_frames=SLOTS) as cam, Capture(cam.video) as cap:
        latencies = stream(cam, cap, FRAMES, zero_copy=path == "zero_copy")
        series = scrape(url)
        check_truth(series, cam, len(latencies), latencies, path)
        cap.streamoff()
        after = scrape(url)
        assert value(after, "vcam_capture_queue_depth", device=f"video{cam.nr}") == 0
        assert value(after, "vcam_capture_streaming", device=f"video{cam.nr}") == 0
        # streamoff hands buffers back with an error: not frames delivered with one
        assert value(after, "vcam_frames_errored_total", device=f"video{cam.nr}") == 0


@every_kernel
def test_short_frames_count_as_errors(url):
    with Camera(nr_frames=2) as cam, Capture(cam.video) as cap:
        cap.reqbufs(2)
        cap.qbuf(0)
        cap.qbuf(1)
        cap.streamon()
        cam.fill_and_queue(0, 1, length=10)
        cam.fill_and_queue(1, 2)
        cap.dqbuf()
        cap.dqbuf()
        series = scrape(url)
        s = stats(cam.nr)
        dev = f"video{cam.nr}"
        assert value(series, "vcam_frames_errored_total", device=dev) == s["frames_errored"] == 1
        assert value(series, "vcam_frames_delivered_total", device=dev, path="copy") == s["frames_copied"] == 1
        assert value(series, "vcam_copied_bytes_total", device=dev) == s["bytes_copied"] == cam.size + 10
        cap.streamoff()


@every_kernel
def test_stalled_consumer_drains_capture_and_fills_output(url):
    with Camera(nr_frames=SLOTS) as cam, Capture(cam.video) as cap:
        cap.reqbufs(2)
        cap.qbuf(0)
        cap.qbuf(1)
        cap.streamon()
        before = scrape(url)
        dev = f"video{cam.nr}"
        starved_before = buckets(before, "vcam_capture_queue_depth_seen", device=dev).get(0.0, 0)
        # The producer keeps every slot queued; the consumer never dequeues
        with ProducerThread(cam):
            wait_until(lambda: stats(cam.nr)["frames_copied"] == 2
                       and stats(cam.nr)["frames_queued"] == SLOTS + 2, 30, "the output queue to fill up")
            series = scrape(url)
        assert value(series, "vcam_capture_queue_depth", device=dev) == stats(cam.nr)["capture_queued"] == 0
        assert value(series, "vcam_output_queue_depth", device=dev) == SLOTS
        assert value(series, "vcam_output_slots", device=dev) == SLOTS
        # The moment of starvation is in the depth histogram too
        assert buckets(series, "vcam_capture_queue_depth_seen", device=dev)[0.0] > starved_before
        assert buckets(series, "vcam_output_queue_depth_seen", device=dev)[float(SLOTS)] \
            > buckets(series, "vcam_output_queue_depth_seen", device=dev)[float(SLOTS - 1)]
        cap.streamoff()


@every_kernel
def test_refused_queue_and_empty_dequeue_count_nothing(url):
    with Camera(nr_frames=2, nonblock=True) as cam:
        dev = f"video{cam.nr}"
        cam.fill_and_queue(0, 1)
        expect_errno(errno.EBUSY, cam.queue, 0)             # slot 0 is still queued
        expect_errno(errno.EAGAIN, cam.ctl.dequeue)         # nothing is done yet
        series = scrape(url)
        assert value(series, "vcam_frames_queued_total", device=dev) == stats(cam.nr)["frames_queued"] == 1
        assert value(series, "vcam_frames_dequeued_total", device=dev) == stats(cam.nr)["frames_dequeued"] == 0
        assert value(series, "vcam_output_queue_depth", device=dev) == 1


@every_kernel
def test_consumer_closing_without_streamoff_ends_streaming(url):
    with Camera(nr_frames=SLOTS) as cam:
        dev = f"video{cam.nr}"
        cap = Capture(cam.video)
        stream(cam, cap, 8, zero_copy=False)
        series = scrape(url)
        assert value(series, "vcam_capture_streaming", device=dev) == 1
        assert value(series, "vcam_capture_queue_depth", device=dev) == SLOTS
        cap.close()     # no STREAMOFF: vb2 releases the queue
        series = scrape(url)
        assert value(series, "vcam_capture_streaming", device=dev) == 0
        assert value(series, "vcam_capture_queue_depth", device=dev) == stats(cam.nr)["capture_queued"] == 0


@every_kernel
def test_closed_cameras_consumer_does_not_touch_the_next_camera(url):
    old = Camera(nr_frames=SLOTS, label="closed early")
    cap = Capture(old.video)
    try:
        stream(old, cap, 8, zero_copy=False)
        old.close()         # the camera goes; its consumer still holds its queue
        with Camera(nr_frames=SLOTS, label="next one") as cam:
            dev = f"video{cam.nr}"
            before = vcam_numbers(scrape(url), dev)
            cap.close()     # vb2 hands the old camera's buffers back (STREAMOFF: ENODEV by now)
            assert vcam_numbers(scrape(url), dev) == before
            assert value(before, "vcam_capture_streaming", device=dev) == 0
            assert value(before, "vcam_frames_queued_total", device=dev) == 0
    finally:
        cap.close()
        old.close()


def vcam_numbers(series, dev):
    return {k: v for k, v in series.items()
            if dict(k[1]).get("device") == dev}


@every_kernel
def test_vivid_alongside_changes_nothing(url):
    assert shutil.which("v4l2-ctl"), "v4l2-ctl (v4l-utils) is needed"
    vivid = vivid_capture_node()
    with Camera(nr_frames=SLOTS) as cam, Capture(cam.video) as cap:
        dev = f"video{cam.nr}"
        # vivid alone: not one of vcam's numbers moves
        before = vcam_numbers(scrape(url), dev)
        subprocess.run(["v4l2-ctl", "-d", vivid, "--stream-mmap", "--stream-count=30"],
                       check=True, capture_output=True)
        assert vcam_numbers(scrape(url), dev) == before
        # both at once: vcam's numbers are exactly vcam's
        with subprocess.Popen(["v4l2-ctl", "-d", vivid, "--stream-mmap", "--stream-count=60"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as viv:
            latencies = stream(cam, cap, FRAMES, zero_copy=False)
            series = scrape(url)
            assert viv.wait(120) == 0
        check_truth(series, cam, len(latencies), latencies, "copy")
        # vivid's nodes are not cameras here
        devices = {dict(k[1])["device"] for k in series if k[0] == "vcam_camera_info"}
        assert "video" + vivid.removeprefix("/dev/video") not in devices
        cap.streamoff()


@every_kernel
def test_cameras_come_and_go(url):
    with Camera(nr_frames=SLOTS, label="comes and goes") as cam, Capture(cam.video) as cap:
        dev = f"video{cam.nr}"
        assert value(scrape(url), "vcam_camera_info", device=dev, card="comes and goes") == 1
        stream(cam, cap, 2 * SLOTS, zero_copy=False)
        cap.streamoff()
    assert not any(dict(k[1]).get("device") == dev for k in scrape(url))
    # The next camera (likely the same number, maybe the same memory) starts from zero
    with Camera(nr_frames=2, label="next one") as cam:
        series = scrape(url)
        dev = f"video{cam.nr}"
        assert value(series, "vcam_camera_info", device=dev, card="next one") == 1
        mine = {k: v for k, v in series.items() if dict(k[1]).get("device") == dev
                and k[0] not in ("vcam_camera_info", "vcam_output_slots") and not k[0].endswith("_bucket")}
        assert mine and all(v == 0 for v in mine.values()), mine


@every_kernel
def test_promtool_finds_nothing_wrong_with_a_real_scrape(url, tmp_path):
    with Camera(nr_frames=SLOTS) as cam, Capture(cam.video) as cap:
        stream(cam, cap, 8, zero_copy=False)
        text = fetch(url)
        cap.streamoff()
    assert "vcam_frames_delivered_total{" in text
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr


@every_kernel
def test_every_probe_is_attached(url):
    series = scrape(url)
    attached = {dict(k[1])["probe"]: v for k, v in series.items() if k[0] == "vcam_exporter_probe_attached"}
    assert attached and all(v == 1 for v in attached.values()), attached
    assert value(series, "vcam_exporter_scrape_success") == 1
    assert value(series, "vcam_exporter_bpf_errors_total", kind="map_full") == 0
    # every attached probe reports its misses, and none missed a hit here
    missed = {dict(k[1])["probe"]: v for k, v in series.items() if k[0] == "vcam_exporter_probe_missed_total"}
    assert missed.keys() == attached.keys() and not any(missed.values()), missed


@every_kernel
def test_the_layout_is_known(exporter_proc):
    """The exporter found where to read in vcam's and vb2's structures (the
    vb2 metrics checked above need it)."""
    assert "no layout" not in exporter_proc[2].read_text()


@every_kernel
def test_the_head_rule_agrees_with_vcams_own_btf():
    """Without BTF of its own (built against headers that ship no vmlinux,
    as on 6.1), struct vcam_device is laid out from its head of kernel
    types: the same offsets as vcam's BTF says where it has one."""
    with KernelBtf() as btf:
        head = probes.head_offsets(btf)
        if not btf.has("vcam"):
            pytest.skip("vcam has no BTF on this kernel: the head rule is what the exporter uses")
        assert head == probes.vcam_device_offsets(btf)


@every_kernel
def test_return_probe_misses_are_read_from_the_kernel(exporter_proc):
    """The kernel's nmissed behind vcam_exporter_probe_missed_total is there
    for the exporter's own return probes."""
    proc, url, _ = exporter_proc
    profile = next(p for p in (Path("/sys/kernel/tracing/kprobe_profile"),
                               Path("/sys/kernel/debug/tracing/kprobe_profile")) if p.exists())
    ours = {line.split()[0] for line in profile.read_text().splitlines()
            if line.split() and line.split()[0].endswith(f"_bcc_{proc.pid}")}
    returns = {p.removeprefix("kretprobe:") for p, ok in probes_attached(scrape(url)).items()
               if ok and p.startswith("kretprobe:")}
    assert returns and ours == {f"r_{fn}_bcc_{proc.pid}" for fn in returns}, ours


def probes_attached(series) -> dict[str, float]:
    return {dict(k[1])["probe"]: v for k, v in series.items() if k[0] == "vcam_exporter_probe_attached"}


# -- the module coming and going under a running exporter (keep these last) --

def vcam_probes_attached(series) -> set[float]:
    return {v for k, v in series.items()
            if k[0] == "vcam_exporter_probe_attached" and ":vcam_" in dict(k[1])["probe"]}


def stream_and_check(url):
    with Camera(nr_frames=SLOTS) as cam, Capture(cam.video) as cap:
        latencies = stream(cam, cap, FRAMES, zero_copy=False)
        check_truth(scrape(url), cam, len(latencies), latencies, "copy")
        cap.streamoff()


@every_kernel
def test_module_unloaded_and_loaded_again_under_the_exporter(exporter_proc):
    proc, url, log = exporter_proc
    try:
        subprocess.run(["rmmod", "vcam"], check=True)
        series = scrape(url)
        assert vcam_probes_attached(series) == {0}
        assert value(series, "vcam_exporter_scrape_success") == 1
        assert not any(k[0] == "vcam_camera_info" for k in series)
        assert proc.poll() is None
    finally:
        subprocess.run(["insmod", str(VCAM_KO)], check=True)
    # a module loaded after the exporter started is attached to when it appears
    wait_until(lambda: vcam_probes_attached(scrape(url)) == {1}, 30, "the vcam probes to attach again",
               ignore=(OSError,))
    stream_and_check(url)
    assert "probe " not in log.read_text()      # no probe failed to attach


@every_kernel
def test_busy_port_is_one_line(exporter_proc):
    r = subprocess.run(["vcam-observe", "export", "--listen", f"127.0.0.1:{PORT}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.startswith(f"vcam-observe: cannot listen on 127.0.0.1:{PORT}") and r.stderr.count("\n") == 1, r.stderr


# --- vcam-observe top in a real terminal ------------------------------------------------
# tmux, read with capture-pane, against this exporter with a real producer
# and a real zero-copy consumer: the frame count it displays follows what
# the consumer captured.

SESSION = "vcam-top-test"
BUFFERS = 4


def wait_for(condition, what, timeout):
    """wait_until (a deadline for waiting, not a timing assertion) that shows
    the screen when it times out."""
    try:
        return wait_until(condition, timeout, what, interval=0.5, ignore=(OSError,))
    except AssertionError as e:
        screen = pane() if _session_up() else "(no tmux session)"
        raise AssertionError(f"{e}; the screen:\n{screen}") from None


def _session_up() -> bool:
    return subprocess.run(["tmux", "has-session", "-t", SESSION], capture_output=True).returncode == 0


def tmux(*args) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def pane() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


def displayed_frames(device: str) -> int | None:
    """The frame count the detail view of `device` shows ("frames N"); the
    table has a frames column only on wide terminals, the detail view always."""
    text = pane()
    if f"{device}  " not in text:
        return None
    m = re.search(r"frames (\d+)", text)
    return int(m.group(1)) if m else None


@pytest.fixture
def top(url):
    assert shutil.which("tmux"), "tmux is needed (Debian package tmux)"
    subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    tmux("-f", "/dev/null", "new-session", "-d", "-s", SESSION, "-x", "160", "-y", "48",
         f"TERM=xterm-256color vcam-observe top --url {url} --interval 0.5")
    # a detached session may still come up 80x24: size the window explicitly
    tmux("set-window-option", "-t", SESSION, "window-size", "manual")
    tmux("resize-window", "-t", SESSION, "-x", "160", "-y", "48")
    try:
        wait_for(lambda: "vcam-observe top" in pane(), "the TUI to draw", 120)
        yield
    finally:
        subprocess.run(["tmux", "send-keys", "-t", SESSION, "q"], capture_output=True)
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)


def test_top_frame_count_follows_the_consumer(top):
    sock = short_socket_path()
    with running_producer(["--fps", "30", "--size", "160x120", "--share", sock, "--label", "Top Test"]) as producer:
        device = os.path.basename(producer.device)
        wait_for(lambda: any(line.split()[:1] == [device] for line in pane().splitlines()),
                 f"{device} in the table", 60)
        tmux("send-keys", "-t", SESSION, "Enter")          # its detail view
        wait_for(lambda: displayed_frames(device) is not None, f"the detail view of {device}", 60)
        assert displayed_frames(device) == 0          # nobody consumed yet: nothing delivered
        captured = runs = 0
        for frames in (20, 40):
            runs += 1
            result = run_cli(["consume", "--import", sock, "--frames", frames, "--json"])
            assert result.returncode == 0, result.stderr
            report = json.loads(result.stdout)
            captured += report["frames"]
            # delivered = what the consumers dequeued, plus at most the buffers
            # each run had queued when it stopped (filled before its STREAMOFF)
            shown = wait_for(lambda: (n := displayed_frames(device)) is not None and n >= captured and n,
                             f"the TUI to show {captured} frames", 60)
            assert captured <= shown <= captured + runs * BUFFERS, (shown, captured, pane())
        text = pane()
        assert "SOURCE DOWN" not in text
        assert "Top Test" in text                   # the card label
