"""What vcam-producer and vcam-observe share as command lines: the version
(from the installed distribution's metadata), the exit statuses and the
way a signal during set-up ends a command.

Exit statuses, the same in both commands:
    0    success
    1    the run found something wrong, or could not be done (one line on stderr)
    2    a usage error: a bad option or value, a missing command (argparse's usage and message)
    130  SIGINT, 143 SIGTERM, where a command has no clean stop of its own (see each --help)
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import textwrap
import threading

DISTRIBUTION = "vcam"  # [project] name in pyproject.toml

OK, FAILED, USAGE = 0, 1, 2
SIGINT_STATUS, SIGTERM_STATUS = 128 + signal.SIGINT, 128 + signal.SIGTERM


def version() -> str:
    """The installed distribution's version; pyproject.toml holds the one copy."""
    from importlib import metadata  # only for --version: importing it costs a second under emulation

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


# The top-level --help's epilog of both commands
MAIN_EPILOG = """\
Each command's --help has its options, examples and exit statuses.

exit status:
  0    success
  1    the run found something wrong, or could not be done (one line on stderr)
  2    usage error: a bad option or value, no COMMAND
  130  SIGINT (143 SIGTERM) where the command has no clean stop of its own
"""


class _PrintVersion(argparse.Action):
    """--version, with the version looked up only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default,
                         help=help or "show program's version number and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog} {version()}")
        parser.exit()


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action=_PrintVersion)


def epilog(examples: str, statuses: str, note: str = "") -> str:
    """A --help epilog: the examples, then the exit statuses, then a note."""
    text = "examples:\n" + examples.rstrip("\n") + "\n\nexit status:\n" + statuses.rstrip("\n") + "\n"
    return text + (f"\n{note.rstrip()}\n" if note else "")


def subcommand(sub, name: str, help: str, description: str, examples: str, statuses: str,
               note: str = "") -> argparse.ArgumentParser:
    """A subcommand with its own description, examples and exit statuses."""
    return sub.add_parser(name, help=help, description=textwrap.fill(description, 79),
                          epilog=epilog(examples, statuses, note),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so that set-up unwinds (cameras
    closed, sockets removed) before the command exits with 143."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def terminate_unwinds():
    """While the command runs, SIGTERM raises Terminated in the main thread
    (as SIGINT raises KeyboardInterrupt); a command's own clean stop (the
    producer loop, the exporter) replaces it while it runs. The previous
    handler comes back afterwards, for callers of main() as a library."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_command(command) -> int:
    """Run a parsed command, `command()` -> its exit status; a signal during
    set-up ends it with 130 (SIGINT) or 143 (SIGTERM)."""
    try:
        with terminate_unwinds():
            return command()
    except KeyboardInterrupt:
        return SIGINT_STATUS
    except Terminated:
        return SIGTERM_STATUS
