"""The fault tests' processes: tests/fault-target.c, built once per run,
started, read line by line with a timeout, and killed. A process that a
SIGKILL does not end within the timeout is a hang, and the assertion says
where the kernel holds it (/proc/PID/stack)."""

import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

from vcam_helpers import SYSCALLS

TOP = Path(__file__).resolve().parent.parent
SOURCE = TOP / "tests" / "fault-target.c"
UAPI = TOP / "driver" / "include" / "uapi"


def build(directory: Path) -> Path:
    """fault-target compiled into DIRECTORY (the checkout is read-only in the
    guest), with every warning an error."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "no C compiler: install build-essential"
    exe = directory / "fault-target"
    subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(UAPI), "-o", str(exe), str(SOURCE)],
                   check=True)
    return exe


def where(pid: int) -> str:
    """What the kernel says a process is doing: state, wait channel, stack."""
    out = []
    for name in ("stat", "wchan", "stack", "syscall"):
        try:
            out.append(f"{name}: {Path(f'/proc/{pid}/{name}').read_text().strip()}")
        except OSError as e:
            out.append(f"{name}: {e.strerror}")
    return "\n".join(out)


class Target:
    """One fault-target process, its stdout read line by line."""

    def __init__(self, exe: Path, *args):
        self.args = [str(exe), *map(str, args)]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        self.pid = self.proc.pid
        self._buf = b""

    def line(self, timeout: float = 30.0) -> str:
        """The next line it prints; an AssertionError after TIMEOUT seconds or
        when it ends first."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.args[1:]}: no line within {timeout:g} s\n{where(self.pid)}")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    self.proc.wait(timeout)
                    raise AssertionError(f"{self.args[1:]} ended (status {self.proc.returncode}) "
                                         f"without a line: {self._buf!r} {self.proc.stderr.read()!r}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = 30.0) -> int:
        """Its exit status; a hang (an AssertionError naming where it is
        stuck) if it has not ended within TIMEOUT seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.args[1:]} still running {timeout:g} s on:\n{where(self.pid)}") from None

    def kill(self, timeout: float = 30.0) -> None:
        """SIGKILL, and it must be gone within TIMEOUT seconds (a task in an
        uninterruptible sleep would not be)."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.wait(timeout)
        self.close()

    def close(self) -> None:
        for pipe in (self.proc.stdout, self.proc.stderr):
            pipe.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        self.close()


class Producer(Target):
    """fault-target producer: once it is ready, its camera's device, pid and
    the descriptors of its DMA-BUFs (for a consumer to import)."""

    def __init__(self, exe: Path, width: int = 64, height: int = 48, slots: int = 4, usec: int = 0):
        super().__init__(exe, "producer", width, height, slots, usec)
        words = self.line().split()
        assert words[0] == "ready", words
        self.nr = int(words[1])
        self.device = f"/dev/video{self.nr}"
        self.fds = [int(w) for w in words[3:]]

    def consumer(self, exe: Path, memory: str, stage: str) -> Target:
        """A consumer of this camera: MEMORY mmap or dmabuf (importing this
        producer's DMA-BUFs), stopping at STAGE (fault-target's usage)."""
        imports = [self.pid, *self.fds] if memory == "dmabuf" else []
        return Target(exe, "consumer", self.device, memory, stage, *imports)


def blocked_in_ioctl(pid: int, request: int) -> bool:
    """Whether single-threaded process PID sleeps (state S) in an ioctl
    REQUEST on any descriptor."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        nr, *regs = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    return state == "S" and nr == str(SYSCALLS["ioctl"]) and len(regs) > 1 and int(regs[1], 16) == request
