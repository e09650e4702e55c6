"""vcam-producer run waits for a consumer (--while-idle): with nobody
streaming it queues nothing, so the driver holds no frame and the first
frame a consumer gets is a fresh one, not one made before it started; it
says so in --json lines (waiting, streaming) and in its report (idle_s,
consumer_starts, frames_dropped). Real consumers: the producer's own
Capture, `vcam-producer consume`, v4l2-ctl."""

import json
import subprocess
import time

import pytest

from producer import integrity, v4l2
from producer.sysfs import cameras, stats
from producer_procs import run_cli, running_producer
from vcam_helpers import Capture, start_capture

pytestmark = pytest.mark.guest

IDLE_S = 3  # how long each test leaves a camera without a consumer


def queued_in_driver(nr: int) -> int:
    """Frames the driver holds for camera NR that no consumer has had yet."""
    return cameras()[nr].output_depth


def first_frames(device: str, count: int) -> tuple[int, list[integrity.Header]]:
    """(CLOCK_MONOTONIC just before the consumer started, the headers of
    its first COUNT frames), captured with mmap buffers."""
    headers = []
    with Capture(device) as cap:
        started = time.monotonic_ns()
        start_capture(cap, 4)
        while len(headers) < count:
            buf = cap.dqbuf(timeout=60)
            assert not buf.flags & v4l2.V4L2_BUF_FLAG_ERROR
            header, problem = integrity.check(cap.view(buf))
            assert problem is None, f"frame {len(headers)}: {problem}"
            headers.append(header)
            cap.qbuf(buf.index)
        cap.streamoff()
    return started, headers


@pytest.mark.every_kernel
def test_nothing_is_queued_while_nobody_streams_and_the_first_frame_is_fresh():
    with running_producer(["--pattern", "counter", "--size", "160x120", "--fps", "30",
                           "--label", "Idle Wait"]) as producer:
        nr = producer.ready["device_nr"]
        waiting = producer.wait_event("waiting")
        assert waiting["frames_queued"] == 0 and waiting["consumer_starts"] == 0
        time.sleep(IDLE_S)
        assert stats(nr)["frames_queued"] == 0 and queued_in_driver(nr) == 0
        started, headers = first_frames(producer.device, 10)
        producer.wait_event("streaming")
        producer.wait_event("waiting", 2)
        done = producer.finish(sig=15, timeout=60)
    # Nothing older than the consumer: the first frame was made after it started, and it is frame 0.
    assert headers[0].timestamp_ns >= started, \
        f"the first frame is {(started - headers[0].timestamp_ns) / 1e9:.3f} s older than the consumer"
    assert [h.sequence for h in headers] == list(range(10))
    assert producer.names()[:4] == ["ready", "waiting", "streaming", "waiting"]
    assert done["consumer_starts"] == 1 and done["frames_dropped"] == 0  # a pattern pauses: nothing read to drop
    assert done["idle_s"] >= IDLE_S and done["frames_queued"] >= 10
    assert done["driver"]["frames_queued"] == done["frames_queued"]
    print(f"first frame {(headers[0].timestamp_ns - started) / 1e6:.1f} ms after STREAMON was asked for; "
          f"{done['cpu_s']:.2f} s CPU over {done['elapsed_s']:.1f} s, {done['idle_s']:.1f} s of it idle")


def test_a_consumer_that_stops_and_starts_again():
    """consume twice: two consumer starts, frames flow each time, nothing
    is queued between them; the second consumer's frames go on from the
    first's (the sequence numbers are the producer's)."""
    with running_producer(["--pattern", "gradient", "--size", "160x120", "--fps", "60",
                           "--label", "Two Starts"]) as producer:
        nr = producer.ready["device_nr"]
        producer.wait_event("waiting")
        reports = []
        for start in (1, 2):
            r = run_cli(["consume", "--device", producer.device, "--frames", 20, "--verify", "--json"])
            assert r.returncode == 0, r.stdout + r.stderr
            reports.append(json.loads(r.stdout))
            producer.wait_event("streaming", start)
            idle = producer.wait_event("waiting", start + 1)
            queued = stats(nr)["frames_queued"]
            time.sleep(IDLE_S)
            assert stats(nr)["frames_queued"] == queued == idle["frames_queued"], "queued while nobody streamed"
        done = producer.finish(sig=15, timeout=60)
    assert all(rep["ok"] and rep["frames"] == 20 for rep in reports), reports
    assert reports[0]["first_sequence"] == 0
    assert reports[1]["first_sequence"] > reports[0]["last_sequence"]
    assert done["consumer_starts"] == 2
    assert producer.names() == ["ready", "waiting", "streaming", "waiting", "streaming", "waiting", "done"]
    assert done["idle_s"] >= 2 * IDLE_S and done["frames_dropped"] == 0


def test_newest_holds_the_newest_frame_and_queues_it_when_a_consumer_starts():
    """--while-idle newest: the pattern runs on while nobody streams (each
    frame replacing the one before, dropped), nothing is queued, and the
    consumer's first frame is the one held: frame 0, made while it was
    idle but not long before the consumer came."""
    fps = 30
    with running_producer(["--pattern", "counter", "--size", "160x120", "--fps", fps, "--while-idle", "newest",
                           "--label", "Idle Newest"]) as producer:
        nr = producer.ready["device_nr"]
        producer.wait_event("waiting")
        time.sleep(IDLE_S)
        assert stats(nr)["frames_queued"] == 0 and queued_in_driver(nr) == 0
        started, headers = first_frames(producer.device, 10)
        streaming = producer.wait_event("streaming")
        done = producer.finish(sig=15, timeout=60)
    assert [h.sequence for h in headers] == list(range(10))
    # Held, not queued ahead of time: read at most a frame interval (and the loop's lag, here a
    # generous second) before the consumer started, nothing like IDLE_S seconds.
    age = (started - headers[0].timestamp_ns) / 1e9
    assert age < 1.0, f"the first frame is {age:.3f} s older than the consumer"
    assert streaming["frames_dropped"] > 0  # the source ran on while idle
    assert done["consumer_starts"] == 1
    print(f"newest: first frame {age * 1e3:.1f} ms older than STREAMON; {streaming['frames_dropped']} frames "
          f"replaced while idle")


def test_a_frames_limit_counts_only_what_consumers_got(tmp_path):
    """--frames N with nobody streaming does not end by itself; a v4l2-ctl
    capture of N frames gets frames 0..N-1 and the run then ends (status 0)."""
    count = 12
    out = tmp_path / "frames.raw"
    with running_producer(["--pattern", "smpte", "--size", "160x120", "--fps", "0", "--frames", count,
                           "--label", "Frames Limit"]) as producer:
        producer.wait_event("waiting")
        time.sleep(1)
        assert producer.proc.poll() is None and stats(producer.ready["device_nr"])["frames_queued"] == 0
        r = subprocess.run(["v4l2-ctl", "-d", producer.device, "--stream-mmap", f"--stream-count={count}",
                            f"--stream-to={out}"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        done = producer.finish(timeout=120)
    size = producer.ready["frame_size"]
    data = out.read_bytes()
    assert len(data) == count * size
    assert [integrity.unpack(data[i * size:(i + 1) * size]).sequence for i in range(count)] == list(range(count))
    assert done["frames_queued"] == count and done["in_flight"] == 0 and done["stopped_by"] is None
