"""The vcam-observe command line."""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading

from producer import cliutil

PRIVILEGES = "Loading the probes needs root (or CAP_BPF and CAP_PERFMON)."

EXPORT_EXAMPLES = """\
  vcam-observe export                          # serve http://127.0.0.1:9477/metrics
  vcam-observe export --listen 0.0.0.0:9477    # reachable from other machines: your choice
  vcam-observe export --listen [::1]:9100      # IPv6 loopback, another port
"""
EXPORT_STATUSES = """\
  0    SIGINT or SIGTERM stopped the exporter (the probes are detached)
  1    it could not start: the port is busy, no privileges for the probes, no bcc
  2    usage error: a malformed --listen
  130  SIGINT (143 SIGTERM) while the probes were still compiling
"""

DUMP_EXAMPLES = """\
  vcam-observe dump                            # one scrape on stdout, then exit
  vcam-observe dump | promtool check metrics   # lint the exposition
  vcam-observe dump | grep '^vcam_frames_'     # the frame counters only
"""
DUMP_STATUSES = """\
  0    the scrape is on stdout
  1    the probes could not be loaded (privileges, bcc); one line on stderr
  2    usage error
  130  SIGINT (143 SIGTERM) before the scrape was written
"""

PROBES_EXAMPLES = """\
  vcam-observe probes                          # one line per attach point
  vcam-observe probes --json                   # the same as a JSON object, name -> attached
"""
PROBES_STATUSES = """\
  0    every probe attached on this kernel
  1    some probe did not attach (listed as missing), or none could be loaded
  2    usage error
  130  SIGINT (143 SIGTERM) before the list was written
"""

TOP_EXAMPLES = """\
  vcam-observe top                             # live view of the probes in this process (root)
  vcam-observe top --url http://lab1:9477/metrics --interval 0.5   # live view of a remote exporter
  vcam-observe top --url http://lab1:9477/metrics --batch --duration 30  # a 30 s summary as text
  vcam-observe top --url http://lab1:9477/metrics --batch --json     # the same summary as JSON
"""
TOP_STATUSES = """\
  0    the live view was quit (q, or Ctrl-C in the view), or --batch printed its summary
  1    no source: the probes could not be loaded, or the exporter did not answer
  2    usage error: a bad --url, --interval or --duration
  130  SIGINT (143 SIGTERM) during --batch, before the summary was printed
"""



def build_parser():
    parser = argparse.ArgumentParser(
        prog="vcam-observe",
        description="Watch the vcam frame path: probes, a Prometheus exporter and a live TUI.",
        epilog=cliutil.MAIN_EPILOG + "\n" + PRIVILEGES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cliutil.add_version(parser)
    # Hidden, as in bcc's tools: print the BPF program and exit.
    parser.add_argument("--ebpf", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    export = cliutil.subcommand(
        sub, "export", help="serve the metrics for Prometheus",
        description="Load the probes and serve their metrics at http://ADDR:PORT/metrics until SIGINT "
                    "or SIGTERM; a vcam module loaded later is attached to when it appears.",
        examples=EXPORT_EXAMPLES, statuses=EXPORT_STATUSES, note=PRIVILEGES)
    export.add_argument("--listen", default=None, metavar="ADDR:PORT",
                        help="where to listen (default 127.0.0.1:9477; exposing it wider is your choice)")
    export.set_defaults(parser=export)
    dump = cliutil.subcommand(
        sub, "dump", help="print one scrape in the exposition format and exit",
        description="Load the probes, print what one scrape of the exporter would return "
                    "(Prometheus text exposition format) and exit.",
        examples=DUMP_EXAMPLES, statuses=DUMP_STATUSES, note=PRIVILEGES)
    dump.set_defaults(parser=dump)
    probes = cliutil.subcommand(
        sub, "probes", help="attach, report which probes attached, exit",
        description="Load the probes, report which attach points this kernel has (attached or missing) "
                    "and exit.",
        examples=PROBES_EXAMPLES, statuses=PROBES_STATUSES, note=PRIVILEGES)
    probes.add_argument("--json", action="store_true", help="machine-readable output")
    probes.set_defaults(parser=probes)
    top = cliutil.subcommand(
        sub, "top", help="live terminal view of every camera",
        description="A live view of every camera: rates, queues, latency. Reads the probes in this "
                    "process (root), or scrapes an exporter with --url. Without a terminal, or with "
                    "--batch, it watches for --duration and prints a plain-text summary instead.",
        examples=TOP_EXAMPLES, statuses=TOP_STATUSES, note="In the live view, ? lists the keys.")
    top.add_argument("--url", default=None, metavar="URL",
                     help="scrape this exporter (http://HOST:PORT/metrics) instead of loading the probes")
    top.add_argument("--interval", type=positive_seconds, default=1.0, metavar="SECONDS",
                     help="refresh every SECONDS (default 1)")
    top.add_argument("--batch", action="store_true",
                     help="no live view: watch for --duration, print a plain-text summary, exit "
                          "(the default when stdout is not a terminal)")
    top.add_argument("--duration", type=positive_seconds, default=10.0, metavar="SECONDS",
                     help="how long --batch watches (default 10)")
    top.add_argument("--json", action="store_true",
                     help="print the --batch summary as one JSON object (implies --batch)")
    top.set_defaults(parser=top)
    return parser


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"wants seconds between 0.05 and 3600, got {text!r}")
    return value


def fail(message: str) -> int:
    """An operational failure: one line on stderr, exit status 1."""
    print(f"vcam-observe: {message}", file=sys.stderr)
    return cliutil.FAILED


def run_export(parser: argparse.ArgumentParser, listen: str | None) -> int:
    from . import exporter
    from .probes import ObserveError, Probes

    try:
        addr, port = exporter.parse_listen(listen or exporter.DEFAULT_LISTEN)
    except ValueError as e:
        parser.error(str(e))
    # Fail fast on a busy port, before the ~15 s compile
    try:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        with socket.create_server((addr, port), family=family):
            pass
    except OSError as e:
        return fail(f"cannot listen on {addr}:{port}: {e.strerror or e}")
    try:
        source = Probes()
        source.refresh()
    except ObserveError as e:
        return fail(str(e))
    log = lambda msg: print(f"vcam-observe: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        server, thread = exporter.serve(exporter.make_registry(source, log=log), addr, port)
    except OSError as e:
        source.close()
        return fail(f"cannot listen on {addr}:{port}: {e.strerror or e}")
    stop = threading.Event()
    exporter.follow_modules(source, stop)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"vcam-observe: serving http://{addr}:{port}/metrics", file=sys.stderr, flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    stop.set()
    server.shutdown()
    source.close()
    return cliutil.OK


def run_dump() -> int:
    from . import exporter
    from .probes import ObserveError, Probes

    try:
        source = Probes()
    except ObserveError as e:
        return fail(str(e))
    try:
        sys.stdout.write(exporter.render(source).decode())
    finally:
        source.close()
    return cliutil.OK


def run_probes(as_json: bool) -> int:
    import json

    from .probes import ObserveError, Probes

    try:
        source = Probes()
        source.refresh()
    except ObserveError as e:
        return fail(str(e))
    attached = source.attached()
    source.close()
    if as_json:
        print(json.dumps(attached, indent=2))
    else:
        for name, ok in attached.items():
            print(f"{'attached' if ok else 'missing ':8}  {name}")
    missing = [name for name, ok in attached.items() if not ok]
    if missing:
        return fail(f"{len(missing)} of {len(attached)} probes did not attach: {', '.join(missing)}")
    return cliutil.OK


def run_top(parser: argparse.ArgumentParser, url: str | None, interval: float, batch: bool,
            duration: float, as_json: bool = False) -> int:
    if url is not None and not url.startswith(("http://", "https://")):
        parser.error(f"--url wants http://HOST:PORT/metrics, got {url!r}")
    from .top import batch as summary
    from .top import sources

    if url is not None:
        source = sources.UrlSource(url)
    else:
        from .probes import ObserveError
        try:
            source = sources.ProbesSource()
        except ObserveError as e:
            return fail(f"{e} (or watch an exporter: vcam-observe top --url http://HOST:PORT/metrics)")
    try:
        if batch or as_json or not sys.stdout.isatty():
            return summary.batch(source, duration, sys.stdout, as_json=as_json)
        # The live view restores the terminal when it quits; SIGTERM keeps
        # its default action there rather than raising into Textual's loop.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from .top import app
        return app.run(source, interval)
    finally:
        close = getattr(source, "close", None)
        if close:
            close()


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.ebpf:
        from .probes import program_text
        sys.stdout.write(program_text())
        return cliutil.OK
    if args.command is None:
        parser.error("the following arguments are required: COMMAND")

    def command():
        if args.command == "export":
            return run_export(args.parser, args.listen)
        if args.command == "dump":
            return run_dump()
        if args.command == "probes":
            return run_probes(args.json)
        return run_top(args.parser, args.url, args.interval, args.batch, args.duration, args.json)
    return cliutil.run_command(command)


if __name__ == "__main__":
    sys.exit(main())
