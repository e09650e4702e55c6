"""Running vcam-producer as the user does: a `run` in the background and
`consume` or other commands to completion."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading

# The console script the user runs, from the same virtualenv as pytest.
_SCRIPT = os.path.join(os.path.dirname(sys.executable), "vcam-producer")
CLI = [_SCRIPT] if os.path.exists(_SCRIPT) else [sys.executable, "-m", "producer.cli"]


def run_cli(args: list[str], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs)


def short_socket_path() -> str:
    """A UNIX socket path well under the 108-byte limit."""
    return os.path.join(tempfile.mkdtemp(prefix="vcam-", dir="/tmp"), "share.sock")


class RunningProducer:
    """`vcam-producer run --json ...` in the background; ready holds its first
    line, events every line as it comes (wait_event() waits for one). With
    stdin, those bytes are its standard input, then closed unless
    stdin_open (then write more to proc.stdin and close it)."""

    def __init__(self, args: list[str], stdin: bytes | None = None, stdin_open: bool = False):
        self.proc = subprocess.Popen(CLI + ["run", "--json"] + [str(a) for a in args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     stdin=None if stdin is None else subprocess.PIPE)
        if stdin is not None:
            # Written before the ready line (the producer reads a frame before it makes the
            # camera), so keep it small: what the pipe's buffer holds.
            self.proc.stdin.buffer.write(stdin)
            self.proc.stdin.flush()
            if not stdin_open:
                self.proc.stdin.close()
                self.proc.stdin = None
        self.events: list[dict] = []
        self._changed = threading.Condition()
        self._stderr: list[str] = []
        self._readers = [threading.Thread(target=self._read_events, daemon=True),
                         threading.Thread(target=lambda: self._stderr.append(self.proc.stderr.read()), daemon=True)]
        for reader in self._readers:
            reader.start()
        with self._changed:
            self._changed.wait_for(lambda: self.events or not self._readers[0].is_alive(), timeout=300)
        if not self.events:
            self.proc.wait()
            self._readers[1].join(10)
            raise AssertionError(f"producer did not start: {''.join(self._stderr)}")
        self.ready = self.events[0]
        self.done: dict | None = None
        self.stderr = ""

    def _read_events(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self.events.append(json.loads(line))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def device(self) -> str:
        return self.ready["device"]

    def wait_event(self, name: str, count: int = 1, timeout: float = 120) -> dict:
        """The COUNTth event line called NAME, once it has come."""
        def found():
            named = [e for e in self.events if e["event"] == name]
            return named[count - 1] if len(named) >= count else None
        with self._changed:
            if not self._changed.wait_for(lambda: found() or not self._readers[0].is_alive(), timeout):
                raise AssertionError(f"no {name!r} event #{count} within {timeout:g} s: {self.events}")
            if not found():
                raise AssertionError(f"the producer ended without {name!r} event #{count}: {self.events}")
            return found()

    def names(self) -> list[str]:
        """The events so far, by name."""
        return [e["event"] for e in self.events]

    def finish(self, timeout: float = 300, sig: int | None = None) -> dict:
        """Wait for (or, with sig, stop) the producer; its closing report."""
        if sig is not None:
            self.proc.send_signal(sig)
        if self.proc.stdin:
            self.proc.stdin.close()
            self.proc.stdin = None
        self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(60)
        err = self.stderr = "".join(self._stderr)
        assert self.proc.returncode == 0, err
        assert "Traceback" not in err, err
        self.done = self.events[-1]
        assert self.done["event"] == "done", self.events
        return self.done

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for reader in self._readers:
            reader.join(10)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe:
                try:
                    pipe.close()
                except OSError:
                    pass


@contextlib.contextmanager
def running_producer(args: list[str], stdin: bytes | None = None, stdin_open: bool = False):
    p = RunningProducer(args, stdin, stdin_open)
    try:
        yield p
    finally:
        p.stop()
