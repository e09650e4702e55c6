"""Helpers for tests of the lab itself: the runner as a module and as a command."""

import importlib.machinery
import importlib.util
import shlex
import socket
import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
VM_RUN = TOP / "lab" / "vm-run"

# The runner's logic is lab/vmrun.py (lab/vm-run is its command): lab/ on
# the path makes it an ordinary import.
sys.path.insert(0, str(TOP / "lab"))
import vmrun  # noqa: E402


def vm_run(*args, env=None, timeout=600):
    """Run lab/vm-run with ARGS; returns the CompletedProcess with bytes output."""
    return subprocess.run(
        [str(VM_RUN), *args], capture_output=True, env=env, timeout=timeout, cwd=TOP
    )


def free_port():
    """A TCP port nobody listens on at 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_command(*argv, check=True, timeout=900, **kwargs):
    """subprocess.run with the output captured as text; with check, a
    failure is an AssertionError that shows the command and its output."""
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and r.returncode != 0:
        raise AssertionError(f"{shlex.join(map(str, argv))} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r


def load_demo():
    """lab/demo (a script without .py) as a module."""
    loader = importlib.machinery.SourceFileLoader("vcam_demo", str(TOP / "lab" / "demo"))
    spec = importlib.util.spec_from_loader("vcam_demo", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module
