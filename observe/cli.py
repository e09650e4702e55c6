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
    return parser


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
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
