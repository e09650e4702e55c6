"""The vcam-observe command line."""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading

EXAMPLES = """\
examples:
  vcam-observe export                          # serve http://127.0.0.1:9477/metrics
  vcam-observe export --listen 0.0.0.0:9477    # reachable from other machines: your choice
  vcam-observe dump                            # one scrape on stdout, then exit
  vcam-observe probes --json                   # which probes attach on this kernel
  vcam-observe top                             # live TUI from the probes in this process (root)
  vcam-observe top --url http://lab1:9477/metrics --interval 0.5   # live TUI of a remote exporter
  vcam-observe top --url http://lab1:9477/metrics --batch --duration 30  # a 30 s summary as text

Loading the probes needs root (or CAP_BPF and CAP_PERFMON).
"""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="vcam-observe",
        description="Watch the vcam frame path: probes, a Prometheus exporter and a live TUI.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version="%(prog)s 0.1.0")
    # Hidden, as in bcc's tools: print the BPF program and exit.
    parser.add_argument("--ebpf", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    export = sub.add_parser("export", help="serve the metrics for Prometheus",
                            description="Serve the probes' metrics at http://ADDR:PORT/metrics.")
    export.add_argument("--listen", default=None, metavar="ADDR:PORT",
                        help="where to listen (default 127.0.0.1:9477; exposing it wider is your choice)")
    sub.add_parser("dump", help="print one scrape in the exposition format and exit")
    probes = sub.add_parser("probes", help="attach, report which probes attached, exit")
    probes.add_argument("--json", action="store_true", help="machine-readable output")
    top = sub.add_parser("top", help="live terminal view of every camera",
                         description="A live view of every camera: rates, queues, latency. Reads the "
                                     "probes in this process (root), or scrapes an exporter with --url.")
    top.add_argument("--url", default=None, metavar="URL",
                     help="scrape this exporter (http://HOST:PORT/metrics) instead of loading the probes")
    top.add_argument("--interval", type=positive_seconds, default=1.0, metavar="SECONDS",
                     help="refresh every SECONDS (default 1)")
    top.add_argument("--batch", action="store_true",
                     help="no live view: watch for --duration, print a plain-text summary, exit "
                          "(the default when stdout is not a terminal)")
    top.add_argument("--duration", type=positive_seconds, default=10.0, metavar="SECONDS",
                     help="how long --batch watches (default 10)")
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
    print(f"vcam-observe: {message}", file=sys.stderr)
    return 1


def run_export(listen: str | None) -> int:
    from prometheus_client import start_http_server

    from . import exporter
    from .probes import ObserveError, Probes

    try:
        addr, port = exporter.parse_listen(listen or exporter.DEFAULT_LISTEN)
    except ValueError as e:
        print(f"vcam-observe: {e}", file=sys.stderr)
        return 2
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
        server, thread = start_http_server(port, addr, registry=exporter.make_registry(source, log=log))
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
    return 0


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
    return 0


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
    return 0 if all(attached.values()) else 1


def run_top(url: str | None, interval: float, batch: bool, duration: float) -> int:
    from . import tui

    if url is not None:
        if not url.startswith(("http://", "https://")):
            return fail(f"--url wants http://HOST:PORT/metrics, got {url!r}")
        source = tui.UrlSource(url)
    else:
        from .probes import ObserveError
        try:
            source = tui.ProbesSource()
        except ObserveError as e:
            return fail(f"{e} (or watch an exporter: vcam-observe top --url http://HOST:PORT/metrics)")
    try:
        if batch or not sys.stdout.isatty():
            return tui.batch(source, duration, sys.stdout)
        return tui.run(source, interval)
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
        return 0
    if args.command == "export":
        return run_export(args.listen)
    if args.command == "dump":
        return run_dump()
    if args.command == "probes":
        return run_probes(args.json)
    if args.command == "top":
        return run_top(args.url, args.interval, args.batch, args.duration)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
