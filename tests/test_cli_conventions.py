"""The conventions both command lines keep (host tier, no module needed):
exit status 2 for every usage error, 1 for a run that went wrong, 0 for
success; each subcommand's --help with its own description, examples and
exit statuses; --version from the package metadata."""

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from observe import cli as observe_cli
from producer import cli as producer_cli
from producer import cliutil
from producer.consume import ConsumerReport

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PARSERS = {"vcam-producer": producer_cli.build_parser, "vcam-observe": observe_cli.build_parser}
SUBCOMMANDS = [("vcam-producer", "run"), ("vcam-producer", "consume"), ("vcam-observe", "export"),
               ("vcam-observe", "dump"), ("vcam-observe", "probes"), ("vcam-observe", "top")]
MISSING_NODE = {**os.environ, "VCAM_CONTROL_NODE": "/nonexistent/vcam"}


def command(prog: str) -> list[str]:
    script = BIN / prog
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", {"vcam-producer": "producer.cli", "vcam-observe": "observe.cli"}[prog]]


def run(prog: str, *args, env=None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(command(prog) + [str(a) for a in args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


def section(text: str, title: str) -> list[str]:
    """The indented lines under `title:` in a --help epilog."""
    lines = text.splitlines()
    start = lines.index(f"{title}:") + 1
    out = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        out.append(line)
    return out


def examples(prog: str, sub: str) -> list[str]:
    r = run(prog, sub, "--help")
    assert r.returncode == 0, r.stderr
    return section(r.stdout, "examples")


# --- --help ------------------------------------------------------------------


@pytest.mark.parametrize("prog, sub", SUBCOMMANDS)
def test_every_subcommand_has_help_with_its_own_examples_and_exit_statuses(prog, sub):
    r = run(prog, sub, "--help")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.startswith(f"usage: {prog} {sub} ")
    lines = section(r.stdout, "examples")
    assert 2 <= len(lines) <= 4, lines
    assert all(line.startswith(f"  {prog} {sub}") for line in lines), lines
    statuses = section(r.stdout, "exit status")
    codes = [line.split()[0] for line in statuses if not line.startswith("    ")]
    assert codes[:3] == ["0", "1", "2"], statuses
    assert "usage error" in statuses[[i for i, line in enumerate(statuses) if line.startswith("  2 ")][0]]


def test_no_two_subcommands_share_an_example_or_a_description():
    seen: dict[str, tuple] = {}
    descriptions: dict[str, tuple] = {}
    for prog, sub in SUBCOMMANDS:
        for line in examples(prog, sub):
            assert line not in seen, f"{line!r} in both {seen[line]} and {(prog, sub)}"
            seen[line] = (prog, sub)
        description = PARSERS[prog]()._subparsers._group_actions[0].choices[sub].description
        assert description and description not in descriptions, (prog, sub)
        descriptions[description] = (prog, sub)


@pytest.mark.parametrize("prog, sub", SUBCOMMANDS)
def test_every_example_is_accepted(prog, sub):
    """Each example parses and passes the checks made before anything is opened."""
    parser = PARSERS[prog]()
    for line in examples(prog, sub):
        argv = shlex.split(line.split("#")[0].split(" | ")[0])[1:]  # the command, not its comment or pipe
        args = parser.parse_args(argv)
        assert args.command == sub
        if (prog, sub) == ("vcam-producer", "run"):
            producer_cli.check_run(args.parser, args)
        elif (prog, sub) == ("vcam-producer", "consume"):
            producer_cli.check_consume(args.parser, args)
        elif (prog, sub) == ("vcam-observe", "export") and args.listen:
            from observe import exporter
            exporter.parse_listen(args.listen)


@pytest.mark.parametrize("prog", PARSERS)
def test_top_level_help_lists_the_exit_statuses(prog):
    r = run(prog, "--help")
    assert r.returncode == 0
    codes = [line.split()[0] for line in section(r.stdout, "exit status") if not line.startswith("    ")]
    assert codes == ["0", "1", "2", "130"]


# --- --version -----------------------------------------------------------------


@pytest.mark.parametrize("prog", PARSERS)
def test_version_is_the_package_metadata(prog):
    r = run(prog, "--version")
    assert r.returncode == 0
    assert r.stdout == f"{prog} {metadata.version('vcam')}\n"


def test_the_version_is_written_once():
    """pyproject.toml holds it; neither command carries a copy."""
    version = metadata.version(cliutil.DISTRIBUTION)
    for path in ("producer/cli.py", "observe/cli.py", "producer/cliutil.py"):
        assert version not in (ROOT / path).read_text(), path


# --- usage errors: status 2, a message naming the option ----------------------


@pytest.mark.parametrize("prog", PARSERS)
def test_no_subcommand_is_a_usage_error(prog):
    r = run(prog)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith(f"usage: {prog} ")
    assert r.stderr.splitlines()[-1] == f"{prog}: error: the following arguments are required: COMMAND"


@pytest.mark.parametrize("prog, args, option", [
    ("vcam-producer", ["run", "--size", "huge"], "--size"),
    ("vcam-producer", ["run", "--size", "641x480"], "--size"),
    ("vcam-producer", ["run", "--fps", "abc"], "--fps"),
    ("vcam-producer", ["run", "--fps", "nan"], "--fps"),
    ("vcam-producer", ["run", "--fps", "2000"], "--fps"),
    ("vcam-producer", ["run", "--format", "H264"], "--format"),
    ("vcam-producer", ["run", "--slots", "1"], "--slots"),
    ("vcam-producer", ["run", "--pattern", "plaid"], "--pattern"),
    ("vcam-producer", ["run", "--label", "a/b"], "--label"),
    ("vcam-producer", ["consume", "--device", "/dev/video-none", "--timeout", "0"], "--timeout"),
    ("vcam-producer", ["consume", "--device", "/dev/video-none", "--buffers", "0"], "--buffers"),
    ("vcam-producer", ["consume", "--import", "/tmp/x.sock", "--memory", "userptr"], "--import"),
    ("vcam-producer", ["consume", "--device", "/dev/video-none", "--frames", "x"], "--frames"),
    ("vcam-observe", ["export", "--listen", "nonsense"], "--listen"),
    ("vcam-observe", ["export", "--listen", "127.0.0.1:99999"], "--listen"),
    ("vcam-observe", ["top", "--url", "ftp://lab1/metrics"], "--url"),
    ("vcam-observe", ["top", "--interval", "0"], "--interval"),
    ("vcam-observe", ["top", "--duration", "soon"], "--duration"),
])
def test_a_bad_value_is_a_usage_error_naming_the_option(prog, args, option):
    r = run(prog, *args, env=MISSING_NODE)
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"usage: {prog} {args[0]} "), r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith(f"{prog} {args[0]}: error: ") and option in last, last


# --- operational failures: status 1, one line ---------------------------------


def one_line_failure(r, prefix: str, text: str) -> None:
    assert r.returncode == 1, r.stderr
    assert r.stdout == "" and "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix) and text in lines[0], r.stderr


def test_run_without_a_control_node_fails_with_one_line():
    one_line_failure(run("vcam-producer", "run", env=MISSING_NODE), "vcam-producer run: ",
                     "/nonexistent/vcam does not exist: is the vcam module loaded?")


@pytest.mark.skipif(Path("/dev/vcam").exists(), reason="the vcam module is loaded here")
def test_run_on_this_host_without_the_module_fails_with_one_line():
    one_line_failure(run("vcam-producer", "run"), "vcam-producer run: ",
                     "/dev/vcam does not exist: is the vcam module loaded? (sudo modprobe vcam)")


def test_consume_from_a_missing_device_fails_with_one_line():
    one_line_failure(run("vcam-producer", "consume", "--device", "/dev/video-none"), "vcam-producer consume: ",
                     "/dev/video-none: No such file or directory")


def test_top_batch_from_an_exporter_that_is_not_there_fails_with_one_line():
    from labtools import free_port
    r = run("vcam-observe", "top", "--url", f"http://127.0.0.1:{free_port()}/metrics", "--batch",
            "--duration", "0.1")
    one_line_failure(r, "vcam-observe: ", "http://127.0.0.1:")


def report(**fields) -> ConsumerReport:
    return ConsumerReport(device="/dev/video9", memory="mmap", imported=False, **fields)


@pytest.mark.parametrize("r, wanted, says", [
    (report(frames=100), 100, ""),
    (report(frames=7, stopped_by="SIGINT"), 0, ""),
    (report(frames=100, torn=2, sequence_gaps=3), 100, "3 missing, 2 torn"),
    (report(frames=40, ended="stopped by SIGTERM"), 100, "40 of 100 frames (stopped by SIGTERM)"),
    (report(frames=0, ended="no frame within 10 s"), 0, "0 frames (no frame within 10 s)"),
    (report(frames=100, errored=1, corrupt=1, out_of_order=1), 100, "1 out of order, 1 corrupt, 1 error-flagged"),
])
def test_a_capture_that_found_something_wrong_says_what(r, wanted, says):
    assert producer_cli.consume_problems(r, wanted) == says
    assert (says == "") == (r.ok and (wanted == 0 or r.frames == wanted))


# --- signals during set-up ---------------------------------------------------------


class Unhandled(Exception):
    """SIGTERM reached the test's own handler: the command did not install one."""


@pytest.fixture
def sigterm_guard():
    """A SIGTERM the command does not handle fails the test instead of ending
    pytest. SIGINT as on a terminal: Python's KeyboardInterrupt, even when
    pytest was started with SIGINT ignored (in the background, by a shell
    without job control), as a command started so rightly keeps it ignored."""
    def guard(signum, frame):
        raise Unhandled()
    old = signal.signal(signal.SIGTERM, guard)
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield guard
    signal.signal(signal.SIGTERM, old)
    signal.signal(signal.SIGINT, old_int)


def interrupted(sig):
    """A stand-in for set-up that a signal interrupts."""
    def handler(*args, **kwargs):
        os.kill(os.getpid(), sig)
        time.sleep(5)  # the signal's handler raises before this ends
        raise AssertionError(f"{sig.name} did not interrupt")
    return handler


def exit_status(main, argv) -> int:
    try:
        return main(argv)
    except (KeyboardInterrupt, Unhandled) as e:  # not pytest's to handle: it would end the session
        pytest.fail(f"{type(e).__name__} escaped main()")


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_producer_set_up(monkeypatch, sigterm_guard, sig, status):
    import producer.sources
    monkeypatch.setattr(producer.sources, "open_source", interrupted(sig))
    assert exit_status(producer_cli.main, ["run", "--frames", "1"]) == status
    assert signal.getsignal(signal.SIGTERM) is sigterm_guard  # restored, for a caller of main() as a library


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_observe_set_up(monkeypatch, sigterm_guard, sig, status):
    monkeypatch.setattr(observe_cli, "run_dump", interrupted(sig))
    assert exit_status(observe_cli.main, ["dump"]) == status
    assert signal.getsignal(signal.SIGTERM) is sigterm_guard


def test_the_statuses_are_the_ones_documented():
    assert (cliutil.OK, cliutil.FAILED, cliutil.USAGE) == (0, 1, 2)
    assert (cliutil.SIGINT_STATUS, cliutil.SIGTERM_STATUS) == (130, 143)
    for text in (producer_cli.build_parser().epilog, observe_cli.build_parser().epilog):
        assert re.search(r"^  130  SIGINT \(143 SIGTERM\)", text, re.M)
