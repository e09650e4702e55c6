"""The vcam-producer command line: `run` turns frames into a camera,
`consume` proves what a consumer receives."""

import argparse
import json
import os
import re
import sys

from . import cliutil, formats, uapi
from .dmabuf import no_allocator_message
from .errors import PATTERNS, SourceError, open_error
from .produce import WHILE_IDLE
from .share import ShareError

RUN_EXAMPLES = """\
  vcam-producer run --size 1280x720 --fps 30 --pattern counter --label "Lab Cam"
  vcam-producer run --input /dev/video0 --size 1280x720 --format YUYV --while-idle newest   # a real camera, relayed
  vcam-producer run --input - --size 640x480 --format YUYV      # raw frames piped in: ffmpeg ... -f rawvideo -pix_fmt yuyv422 -
  vcam-producer run --pattern gradient --fps 0 --frames 1000 --share /tmp/vcam.sock --json
"""
RUN_STATUSES = """\
  0    the run ended: --frames reached (frames are queued only while a
       consumer streams), the input ended (a last frame cut short
       on standard input is dropped, with a note; the camera closes once the
       consumer dequeued the last frames, or after 3 s), or SIGINT/SIGTERM stopped it
       at a clean point (the report's stopped_by names the signal)
  1    the camera could not be made or fed: no /dev/vcam, no permission, an
       unreadable input or one without a whole frame, a --share socket in use,
       a driver error during the run
  2    usage error: a bad option or value (--size, --fps, --slots, --label, ...)
  130  SIGINT (143 SIGTERM) during set-up, before the first frame; the camera
       is removed all the same
"""

CONSUME_EXAMPLES = """\
  vcam-producer consume --device /dev/video1 --frames 300 --verify
  vcam-producer consume --import /tmp/vcam.sock --frames 1000 --verify --json   # zero-copy
  vcam-producer consume --device /dev/video1 --memory userptr --frames 0       # until Ctrl-C
"""
CONSUME_STATUSES = """\
  0    every frame arrived, in order and (with --verify) whole: N frames, or with
       --frames 0 every frame until SIGINT/SIGTERM ended the capture
  1    something was wrong: a frame missing, out of order, torn, corrupt or
       error-flagged; fewer than N frames (no frame within --timeout, the camera
       went away, a signal); or the camera or socket could not be opened
  2    usage error: a bad option or value, no --device or --import
  130  SIGINT (143 SIGTERM) before the capture started
"""

LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9 ]*[A-Za-z0-9])?$")


def _size(parser: argparse.ArgumentParser, text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d{1,5})x(\d{1,5})", text)
    if not m:
        parser.error(f"bad --size {text!r}: expected WIDTHxHEIGHT, e.g. 640x480")
    w, h = int(m[1]), int(m[2])
    lo, hi = uapi.VCAM_MIN_WIDTH, uapi.VCAM_MAX_WIDTH
    if not (lo <= w <= hi and lo <= h <= uapi.VCAM_MAX_HEIGHT):
        parser.error(f"bad --size {text}: width and height must be {lo}..{hi}")
    return w, h


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vcam-producer",
        description="Turn frames into a vcam virtual camera, and check what a consumer receives.",
        epilog=cliutil.MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cliutil.add_version(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = cliutil.subcommand(
        sub, "run", help="create a camera and feed it frames",
        description="Create a vcam camera and feed it frames from a test pattern, an image, a video or "
                    "another camera, or raw frames on standard input (--input -), paced at --fps, until "
                    "--frames, the input's end or SIGINT/SIGTERM. Frames are queued only while a consumer "
                    "streams, so the first frame a consumer gets is a fresh one (see --while-idle). "
                    "Prints the new /dev/videoN (or, with --json, a ready line, a waiting or streaming "
                    "line as consumers come and go, and the report). "
                    "Needs /dev/vcam (the vcam module) and permission to open it.",
        examples=RUN_EXAMPLES, statuses=RUN_STATUSES)
    run.set_defaults(handler=cmd_run, parser=run)
    run.add_argument("--size", default="640x480", help="WIDTHxHEIGHT (default 640x480)")
    run.add_argument("--format", default="YUYV",
                     help=f"pixel format fourcc: {', '.join(formats.FORMATS)}, or MJPEG (JPEG images "
                          "encoded here from a pattern or a decoded --input) (default YUYV)")
    run.add_argument("--fps", type=float, default=30.0, help="frames per second; 0 = as fast as consumed (default 30)")
    src = run.add_mutually_exclusive_group()
    src.add_argument("--pattern", choices=PATTERNS, help="test pattern (default smpte)")
    src.add_argument("--input", metavar="PATH",
                     help="still image or video file (decoded by ffmpeg); /dev/videoX, a camera (its buffers "
                          "relayed without a copy, or decoded by ffmpeg); or - for raw frames of --size and "
                          "--format on standard input")
    run.add_argument("--loop", action="store_true", help="play a video --input forever")
    run.add_argument("--no-relay", action="store_true",
                     help="decode a /dev/videoX --input with ffmpeg even when its own buffers could be relayed "
                          "without a copy (they are, by default, when it gives --size and --format; relayed "
                          "frames carry no integrity header)")
    run.add_argument("--label", default="vcam", help="card name consumers see (letters, digits, spaces)")
    run.add_argument("--frames", type=int, help="stop after N frames, once every slot is back (default: run until stopped)")
    run.add_argument("--slots", type=int, default=4, help=f"output slots, {uapi.VCAM_MIN_FRAMES}..{uapi.VCAM_MAX_FRAMES} (default 4)")
    run.add_argument("--share", metavar="SOCKET", help="offer the DMA-BUFs on this UNIX socket (zero-copy consumers)")
    run.add_argument("--slot-memory", choices=("auto", "system", "driver"), default="auto",
                     help="where the frames' DMA-BUFs come from: system = a DMA-BUF heap or udmabuf, "
                          "driver = the driver's own slot buffers, auto = system where there is one, "
                          "else driver (default)")
    run.add_argument("--while-idle", choices=WHILE_IDLE, default="wait",
                     help="while no consumer streams: wait = queue nothing, pause a file or pattern (a live "
                          "input, a pipe or a camera, is read on and dropped); newest = read on at the pace "
                          "and queue the newest frame as soon as a consumer starts (default wait)")
    run.add_argument("--no-header", action="store_true", help="no integrity header in the frames")
    run.add_argument("--json", action="store_true",
                     help="JSON lines: the camera when ready, waiting/streaming as consumers stop and start, "
                          "the report at the end")

    con = cliutil.subcommand(
        sub, "consume", help="capture frames and report what arrived",
        description="The reference consumer: capture N frames from a camera (any V4L2 capture device, "
                    "or zero-copy into a producer's DMA-BUFs with --import) and report sequence gaps, "
                    "order, torn or corrupt frames (--verify) and latency.",
        examples=CONSUME_EXAMPLES, statuses=CONSUME_STATUSES)
    con.set_defaults(handler=cmd_consume, parser=con)
    con.add_argument("--device", help="/dev/videoN (default: the one --import names)")
    con.add_argument("--memory", choices=("mmap", "userptr", "dmabuf"), default="mmap", help="capture memory (default mmap)")
    con.add_argument("--import", dest="import_socket", metavar="SOCKET",
                     help="capture into the producer's DMA-BUFs from its --share socket (zero-copy)")
    con.add_argument("--frames", type=int, default=100,
                     help="frames to capture; 0 = until SIGINT/SIGTERM (default 100)")
    con.add_argument("--buffers", type=int, default=4, help="capture buffers for mmap/userptr/dmabuf (default 4)")
    con.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a frame (default 10)")
    con.add_argument("--verify", action="store_true", help="check every frame's integrity header")
    con.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def check_run(parser: argparse.ArgumentParser, args) -> tuple[int, int, formats.PixelFormat, bool]:
    """Every value run takes, checked before anything is opened; a bad one
    is a usage error (status 2) naming its option."""
    width, height = _size(parser, args.size)
    try:
        fmt = formats.lookup(args.format, compressed=True)
    except ValueError as e:
        parser.error(f"bad --format: {e}")
    if fmt.compressed and args.input == "-":
        parser.error("bad --format MJPEG with --input -: standard input carries raw frames of --format; "
                     "encode JPEG from a pattern or a file instead")
    if width % fmt.hstep or height % fmt.vstep:
        parser.error(f"bad --size {args.size}: {fmt.fourcc} needs a width divisible by {fmt.hstep}"
                     f" and a height divisible by {fmt.vstep}")
    if not 0 <= args.fps <= 1000:
        parser.error(f"bad --fps {args.fps:g}: 0 (unpaced) or up to 1000")
    if not uapi.VCAM_MIN_FRAMES <= args.slots <= uapi.VCAM_MAX_FRAMES:
        parser.error(f"bad --slots {args.slots}: {uapi.VCAM_MIN_FRAMES}..{uapi.VCAM_MAX_FRAMES}")
    if args.loop and args.input == "-":
        parser.error("bad --loop: standard input (--input -) cannot be played again")
    if args.input == "-" and os.isatty(0):
        parser.error("--input - reads raw frames from a pipe or a file; standard input is a terminal")
    if args.frames is not None and args.frames < 1:
        parser.error(f"bad --frames {args.frames}: at least 1")
    if not LABEL.match(args.label) or len(args.label.encode()) >= uapi.VCAM_LABEL_MAX:
        parser.error(f"bad --label {args.label!r}: letters, digits and inner spaces, "
                     f"under {uapi.VCAM_LABEL_MAX} characters")
    header = not args.no_header
    if header and fmt.frame_size(width, height) <= 64:
        parser.error(f"bad --size {args.size}: too small for the integrity header (use --no-header)")
    return width, height, fmt, header


def check_consume(parser: argparse.ArgumentParser, args) -> None:
    if args.frames < 0:
        parser.error(f"bad --frames {args.frames}: 0 (until stopped) or more")
    if not 1 <= args.buffers <= 32:
        parser.error(f"bad --buffers {args.buffers}: 1..32")
    if not 0 < args.timeout <= 3600:
        parser.error(f"bad --timeout {args.timeout:g}: more than 0, up to 3600 seconds")
    if not args.device and not args.import_socket:
        parser.error("say which camera: --device /dev/videoN or --import SOCKET")
    if args.import_socket and args.memory not in ("mmap", "dmabuf"):
        parser.error("--import captures into DMA-BUFs; it cannot be combined with --memory userptr")


def cmd_run(args) -> int:
    from .camera import VirtualCamera
    from .produce import Producer
    from .relay import Relay, is_video_device, open_relay
    from .share import ShareServer
    from .sources import JpegSource, open_source

    width, height, fmt, header = check_run(args.parser, args)
    relayed = None
    # A camera's own MJPEG is not relayed yet: it is decoded and encoded again.
    if is_video_device(args.input) and not args.no_relay and not fmt.compressed:
        relayed, why = open_relay(args.input, fmt, width, height, args.fps, args.slots)
        if relayed:
            header = False   # the source's frames as they are
        else:
            print(f"vcam-producer run: note: {args.input} cannot be relayed without a copy ({why}): "
                  "decoding it with ffmpeg instead", file=sys.stderr, flush=True)
    source = relayed or open_source(formats.raw_format(fmt), width, height, pattern=args.pattern,
                                    input_path=args.input, loop=args.loop)
    cam = share = None
    try:
        try:
            cam = VirtualCamera(width, height, fmt.code, label=args.label, slots=args.slots, nonblock=True,
                                slot_memory=args.slot_memory, slot_dmabufs=relayed.dmabufs if relayed else None)
        except OSError as e:
            if e.filename is None:  # CREATE or a DMA-BUF allocation said no
                raise UserFacingError(e.strerror) from None
            raise UserFacingError(open_error(e, e.filename)) from None
        if fmt.compressed:
            source = JpegSource(source, cam.size)
        if args.slot_memory == "auto" and cam.memory == "driver":
            print(f"vcam-producer run: note: {no_allocator_message()}; the frames live in the driver's own "
                  "slot buffers (--share still gives consumers the zero-copy path)", file=sys.stderr, flush=True)
        if relayed:
            print(f"vcam-producer run: note: relaying {args.input}'s own buffers (VIDIOC_EXPBUF): "
                  "no frame is copied here", file=sys.stderr, flush=True)
        description = {"device": cam.video_path, "device_nr": cam.nr, "width": width, "height": height,
                       "format": fmt.fourcc, "frame_size": source.size, "buffer_size": cam.bufs[0].size,
                       "slots": cam.slots, "header": header, "slot_memory": cam.memory,
                       "relayed_from": args.input if relayed else None}
        if args.share:
            share = ShareServer(args.share, description, [b.fd for b in cam.bufs])
        if args.json:
            print(json.dumps({"event": "ready", **description, "socket": args.share}), flush=True)
        else:
            print(cam.video_path, flush=True)

        def event(name: str, fields: dict) -> None:
            if args.json:
                print(json.dumps({"event": name, "device": cam.video_path, **fields}), flush=True)

        if relayed:
            producer = Relay(relayed, cam, frames=args.frames, share=share, while_idle=args.while_idle,
                             on_event=event)
        else:
            producer = Producer(cam, source, fps=args.fps, frames=args.frames, header=header, share=share,
                                status=sys.stderr.isatty() and not args.json, while_idle=args.while_idle,
                                on_event=event)
        report = producer.run()
        if source.partial:
            print(f"vcam-producer run: note: the input ended {source.partial} bytes into frame "
                  f"{report.frames_queued} (a frame is {source.size} bytes); that partial frame was dropped",
                  file=sys.stderr, flush=True)
        if report.frames_not_taken:
            print(f"vcam-producer run: note: the consumer had not dequeued the last {report.frames_not_taken} "
                  "frame(s) when the run ended; they went with the camera", file=sys.stderr, flush=True)
    finally:
        if share:
            share.close()
        if cam:
            cam.close()
        source.close()
    if args.json:
        print(json.dumps({"event": "done", **report.as_dict()}), flush=True)
    else:
        print(f"{report.frames_queued} frames in {report.elapsed_s:.1f} s ({report.fps:.1f} fps while watched, "
              f"{report.idle_s:.1f} s unwatched), {report.late} late, {report.frames_dropped} dropped, "
              f"{report.consumer_starts} consumer starts, {report.slots_returned} slots returned", file=sys.stderr)
    return cliutil.OK


def cmd_consume(args) -> int:
    from .consume import consume

    check_consume(args.parser, args)
    try:
        report = consume(args.device, args.memory, args.frames, args.verify, args.import_socket,
                         args.buffers, args.timeout)
    except OSError as e:
        raise UserFacingError(open_error(e, e.filename or args.device or args.import_socket)) from None
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        lat = report.latency_ms
        print(f"{report.device} ({report.memory}{', imported: zero-copy' if report.imported else ''}): "
              f"{report.frames} frames, {report.sequence_gaps} missing, {report.out_of_order} out of order, "
              f"{report.torn} torn, {report.corrupt} corrupt, {report.errored} error-flagged, {report.fps:.1f} fps")
        if lat:
            print(f"latency ms: p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  max {lat['max']}")
        if report.ended:
            print(f"stopped early: {report.ended}")
    problems = consume_problems(report, args.frames)
    if problems:
        print(f"vcam-producer consume: not ok: {problems}", file=sys.stderr)
        return cliutil.FAILED
    return cliutil.OK


def consume_problems(report, wanted: int) -> str:
    """What a capture found wrong, in one line; empty when nothing was."""
    found = [f"{n} {what}" for n, what in ((report.sequence_gaps, "missing"), (report.out_of_order, "out of order"),
                                           (report.torn, "torn"), (report.corrupt, "corrupt"),
                                           (report.errored, "error-flagged")) if n]
    if report.ended or (wanted and report.frames != wanted):
        of = f" of {wanted}" if wanted else ""
        found.append(f"{report.frames}{of} frames" + (f" ({report.ended})" if report.ended else ""))
    return ", ".join(found)


class UserFacingError(Exception):
    """A failure to explain in one line (exit status 1)."""


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    def command():
        try:
            return args.handler(args)
        except (UserFacingError, SourceError, ShareError) as e:
            print(f"vcam-producer {args.command}: {e}", file=sys.stderr)
        except OSError as e:
            print(f"vcam-producer {args.command}: {e.strerror or e}", file=sys.stderr)
        return cliutil.FAILED
    return cliutil.run_command(command)


if __name__ == "__main__":
    sys.exit(main())
