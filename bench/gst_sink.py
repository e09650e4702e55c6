#!/usr/bin/env python3
"""Benchmark: vcamsink's CPU per frame against vcam-producer run's, for the
same stream (size, format, frames), each feeding the reference consumer
(vcam-producer consume --memory mmap) as fast as it takes frames.

Runs in the guest (make bench, or lab/vm-run -- python3 bench/gst_sink.py).

- vcam-producer run --pattern gradient --fps 0: every pixel rewritten per
  frame; CPU is its loop's own (its report), no start-up.
- videotestsrc ! vcamsink sync=false, in this process: CPU is the process's
  while the consumer takes the frames (its STREAMON to its exit), less the
  same source's into fakesink for as many frames, so the row is vcamsink's
  own: mapping, copying into the slot's DMA-BUF, queueing, taking slots back.
- v4l2src io-mode=dmabuf (vivid) ! vcamsink: the zero-copy path, measured the
  same way against v4l2src ! fakesink; paced by vivid's own frame rate.

Prints a table; asserts nothing.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))
os.environ["GST_PLUGIN_PATH"] = f"{TOP / 'producer' / 'gstreamer'}:{os.environ.get('GST_PLUGIN_PATH', '')}"
from producer.uapi import VCAM_STATUS_STREAMING  # noqa: E402

PRODUCER = [sys.executable, "-m", "producer.cli"]
W, H = 640, 480


def consumer(device: str, frames: int) -> subprocess.Popen:
    return subprocess.Popen(PRODUCER + ["consume", "--device", device, "--memory", "mmap", "--frames", str(frames),
                                        "--json", "--timeout", "60"], stdout=subprocess.PIPE, text=True, cwd=TOP)


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def cpu_until_eos(description: str) -> float:
    """CPU seconds of this process from PLAYING to EOS."""
    p = Gst.parse_launch(description)
    start = cpu_s()
    p.set_state(Gst.State.PLAYING)
    msg = p.get_bus().timed_pop_filtered(300 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    used = cpu_s() - start
    p.set_state(Gst.State.NULL)
    if msg is None or msg.type == Gst.MessageType.ERROR:
        sys.exit(f"bench: {description}: {msg.parse_error()[0].message if msg else 'no EOS'}")
    return used


def cpu_while_consumed(description: str, frames: int) -> tuple[float, dict]:
    """CPU seconds of this process while the consumer takes FRAMES frames
    (from its STREAMON to its exit: start-up left out), and its report."""
    p = Gst.parse_launch(description)
    p.set_state(Gst.State.PLAYING)   # a live source makes its caps, so the camera, only when playing
    sink = p.get_by_name("sink")   # vcamsink's own Python object
    while sink.cam is None:
        time.sleep(0.05)
    proc = consumer(sink.get_property("device"), frames)
    while not sink.cam.ctl.status() & VCAM_STATUS_STREAMING:
        time.sleep(0.01)
    start = cpu_s()
    out = proc.communicate(timeout=300)[0]
    used = cpu_s() - start
    p.set_state(Gst.State.NULL)
    return used, json.loads(out)


def producer_row(frames: int) -> dict:
    proc = subprocess.Popen(PRODUCER + ["run", "--json", "--size", f"{W}x{H}", "--format", "YUYV", "--fps", "0",
                                        "--pattern", "gradient", "--frames", str(frames), "--label", "bench"],
                            stdout=subprocess.PIPE, text=True, cwd=TOP)
    ready = json.loads(proc.stdout.readline())
    report = json.loads(consumer(ready["device"], frames).communicate(timeout=300)[0])
    done = json.loads(proc.stdout.read().strip().splitlines()[-1])
    proc.wait()
    return {"feeder": "vcam-producer run (gradient)", "path": "copy", "frames": frames, "fps": report["fps"],
            "cpu_ms_per_frame": done["cpu_s"] * 1000 / frames}


def sink_row(feeder: str, source: str, frames: int, path: str) -> dict:
    caps = f"video/x-raw,format=YUY2,width={W},height={H}"
    with_sink, report = cpu_while_consumed(f"{source} ! {caps} ! vcamsink name=sink sync=false label=bench", frames)
    alone = cpu_until_eos(f"{source} num-buffers={frames} ! {caps} ! fakesink sync=false")
    return {"feeder": feeder, "path": path, "frames": frames, "fps": report["fps"],
            "cpu_ms_per_frame": (with_sink - alone) * 1000 / frames,
            "with_source_ms_per_frame": with_sink * 1000 / frames}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--no-vivid", action="store_true", help="leave out the zero-copy row (no vivid)")
    args = ap.parse_args()
    Gst.init(None)
    n = args.frames
    rows = [producer_row(n),
            sink_row("videotestsrc ! vcamsink", "videotestsrc pattern=colors", n, "copy")]
    if not args.no_vivid:
        subprocess.run(["modprobe", "vivid"], check=True)
        node = next(f"/dev/{p.name}" for p in sorted(Path("/sys/class/video4linux").iterdir())
                    if (p / "name").read_text().strip() == "vivid-000-vid-cap")
        rows.append(sink_row("v4l2src (vivid) ! vcamsink", f"v4l2src device={node} io-mode=dmabuf",
                             n, "zero-copy"))
    print(f"vcamsink against vcam-producer run, {W}x{H} YUYV, {n} frames into vcam-producer consume "
          "(bench/gst_sink.py)")
    print(f"{'feeder':>30} {'path':>10} {'frames':>6} {'fps':>8} {'CPU ms/frame':>13} {'with source':>12}")
    for r in rows:
        with_source = f"{r['with_source_ms_per_frame']:>12.3f}" if "with_source_ms_per_frame" in r else f"{'':>12}"
        print(f"{r['feeder']:>30} {r['path']:>10} {r['frames']:>6} {r['fps']:>8.1f} {r['cpu_ms_per_frame']:>13.3f} "
              f"{with_source}")
    print("CPU ms/frame: the producer's loop; for vcamsink its process while the consumer takes the frames, less "
          "the same source into fakesink (with source: not less it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
