"""Running vcam-producer as the user does: a `run` in the background and
`consume` or other commands to completion."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile

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
    line. With stdin, those bytes are its standard input (then closed)."""

    def __init__(self, args: list[str], stdin: bytes | None = None):
        self.proc = subprocess.Popen(CLI + ["run", "--json"] + [str(a) for a in args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     stdin=None if stdin is None else subprocess.PIPE)
        if stdin is not None:
            # Written whole before the ready line (the producer reads a frame before it makes the
            # camera), so keep it small: what the pipe's buffer and the slots hold without a consumer.
            self.proc.stdin.buffer.write(stdin)
            self.proc.stdin.close()
            self.proc.stdin = None  # closed: communicate() has nothing to flush or send
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read()
            self.proc.wait()
            raise AssertionError(f"producer did not start: {err}")
        self.ready = json.loads(line)
        self.done: dict | None = None

    @property
    def device(self) -> str:
        return self.ready["device"]

    def finish(self, timeout: float = 300, sig: int | None = None) -> dict:
        """Wait for (or, with sig, stop) the producer; its closing report."""
        if sig is not None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        self.stderr = err
        assert self.proc.returncode == 0, err
        assert "Traceback" not in err, err
        self.done = json.loads(out.strip().splitlines()[-1])
        assert self.done["event"] == "done"
        return self.done

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            pipe.close()


@contextlib.contextmanager
def running_producer(args: list[str], stdin: bytes | None = None):
    p = RunningProducer(args, stdin)
    try:
        yield p
    finally:
        p.stop()
