"""The guest runner (lab/vm-run), tested on the host: its pure logic, its
refusals, and real guest boots for what only a boot can show."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from labtools import TOP, VM_RUN, free_port, vm_run
from labtools import vmrun as vm


# --- pure logic ------------------------------------------------------------

def test_ports_are_parsed_and_checked():
    assert vm.parse_ports("9477, 9090") == [9477, 9090]
    assert vm.parse_ports("") == []
    for bad in ("http", "0", "70000", "9477,9477"):
        with pytest.raises(vm.RunnerError):
            vm.parse_ports(bad)


def fake_kernel(tmp_path, version, headers=True, image=True):
    modules = tmp_path / "modules" / version
    modules.mkdir(parents=True)
    (tmp_path / "boot").mkdir(exist_ok=True)
    if headers:
        (modules / "build").mkdir()
        (modules / "build" / "Makefile").touch()
    if image:
        (tmp_path / "boot" / f"vmlinuz-{version}").touch()


def test_newest_kernel_with_image_and_headers_is_chosen(tmp_path):
    fake_kernel(tmp_path, "6.12.9+deb12-amd64")
    fake_kernel(tmp_path, "6.12.41+deb12-amd64")
    fake_kernel(tmp_path, "6.12.50+deb12-amd64", headers=False)
    fake_kernel(tmp_path, "6.12.51+deb12-amd64", image=False)
    fake_kernel(tmp_path, "6.1.0-30-amd64")
    found = vm.find_kernel("6.12", tmp_path / "modules", tmp_path / "boot")
    assert found == "6.12.41+deb12-amd64"


@pytest.mark.parametrize("series, version, other", [
    ("6.1", "6.1.0-57-amd64", "6.12.41+deb12-amd64"),
    ("6.12", "6.12.41+deb12-amd64", "6.1.0-57-amd64"),
    ("7.2", "7.2.13+deb14-amd64", "7.2.13+deb14-rt-amd64"),
    ("6.12-debug", "6.12.118-vcam-debug", "6.12.118+deb12-amd64"),
    ("6.12", "6.12.118+deb12-amd64", "6.12.118-vcam-debug"),
])
def test_each_series_finds_its_own_kernel(tmp_path, series, version, other):
    fake_kernel(tmp_path, version)
    fake_kernel(tmp_path, other)
    assert vm.find_kernel(series, tmp_path / "modules", tmp_path / "boot") == version


def test_a_kernel_with_headers_in_a_build_root_is_built_there(tmp_path):
    def link_build(version, headers):
        headers.mkdir(parents=True)
        (tmp_path / "modules" / version).mkdir(parents=True)
        (tmp_path / "modules" / version / "build").symlink_to(headers)
    root = tmp_path / "sid-root"
    link_build("7.2.13+deb14-amd64", root / "usr" / "src" / "linux-headers-7.2.13+deb14-amd64")
    link_build("6.12.41+deb12-amd64", tmp_path / "linux")  # a kernel tree of one's own
    assert vm.build_root_of("7.2.13+deb14-amd64", tmp_path / "modules") == root
    assert vm.build_root_of("6.12.41+deb12-amd64", tmp_path / "modules") is None


def test_unknown_or_missing_kernel_is_refused(tmp_path):
    with pytest.raises(vm.RunnerError, match="unknown KERNEL '5.4'"):
        vm.find_kernel("5.4")
    with pytest.raises(vm.RunnerError, match="make setup KERNEL=6.12"):
        vm.find_kernel("6.12", tmp_path / "none", tmp_path / "boot")


def test_bad_kernel_log_lines_are_found():
    log = "\n".join([
        "[    1.0] loading out-of-tree module taints kernel.",
        "[    2.0] WARNING: CPU: 1 PID: 7 at drivers/media/x.c:10 f+0x1/0x2",
        "[    3.0] BUG: kernel NULL pointer dereference, address: 0000000000000008",
        "[    4.0] Oops: 0000 [#1] PREEMPT SMP NOPTI",
        "[    5.0] general protection fault, probably for non-canonical address",
        "[    6.0] BUG: KASAN: slab-use-after-free in vcam_release",
        "[    7.0] vivid-000: V4L2 capture device registered as video0",
    ])
    bad = vm.bad_log_lines(log)
    assert [line[:8] for line in bad] == ["[    2.0", "[    3.0", "[    4.0", "[    5.0", "[    6.0"]


# The first line of each report the debug kernel (lab/debug-kernel.sh) can
# print, as 6.12 prints it, and the words that must catch it even without
# its BUG:/WARNING: header.
DEBUG_REPORTS = [
    ("BUG: KASAN: slab-out-of-bounds in labfaults_init+0x8e/0x1e0 [labfaults]", "KASAN"),
    ("BUG: KASAN: slab-use-after-free in vb2_buffer_done+0x2c/0x3c0 [videobuf2_common]", "KASAN"),
    ("WARNING: possible circular locking dependency detected", "possible circular locking"),
    ("WARNING: possible recursive locking detected", "possible recursive locking"),
    ("WARNING: inconsistent lock state", "inconsistent lock state"),
    ("DEBUG_LOCKS_WARN_ON(lock->magic != lock)", "DEBUG_LOCKS_WARN_ON"),
    ("BUG: sleeping function called from invalid context at kernel/locking/mutex.c:585",
     "sleeping function called from invalid context"),
    ("list_add corruption. next->prev should be prev (ffffc90000a77c38), but was 0000000000000000. "
     "(next=ffffc90000a77c48).", "list_add corruption"),
    ("list_del corruption, ffff888005d3e1c8->next is LIST_POISON1 (dead000000000100)", "list_del corruption"),
    ("list_add double add: new=ffff888005d3e1c8, prev=ffff888005d3e1c8, next=ffff888005d3e1d8.",
     "list_add double add"),
    ("unreferenced object 0xffff888004b8c400 (size 128):", "unreferenced object 0x"),
    ("kmemleak: 1 new suspected memory leaks (see /sys/kernel/debug/kmemleak)", "new suspected memory leak"),
    ("kmemleak: Kernel memory leak detector disabled", "Kernel memory leak detector disabled"),
    ("turning off the locking correctness validator.", "turning off the locking correctness validator"),
    ("vm-run: rmmod vcam failed at the end of the run: rmmod: ERROR: Module vcam is in use",
     "rmmod vcam failed"),
]


@pytest.mark.parametrize("line, words", DEBUG_REPORTS, ids=[words for _, words in DEBUG_REPORTS])
def test_each_debug_kernel_report_fails_a_run(line, words):
    assert vm.bad_log_lines(f"[   12.345678] {line}\n") == [f"[   12.345678] {line}"]
    # its own words alone, the header gone, still fail the run
    bare = line.replace("BUG: ", "").replace("WARNING: ", "")
    assert words in bare and vm.bad_log_lines(bare) == [bare]


def test_the_debug_kernels_ordinary_lines_pass():
    # Seen in the debug kernel's boot and runs (lab/debug-kernel.sh).
    log = "\n".join(DEBUG_KERNEL_CLEAN_LINES)
    assert vm.bad_log_lines(log) == []


DEBUG_KERNEL_CLEAN_LINES = [
    "[    0.000000] kasan: KernelAddressSanitizer initialized (generic)",
    "[    0.000000] Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar",
    "[    0.000000] ... MAX_LOCKDEP_SUBCLASSES:  8",
    "[    0.000000] kmemleak: Kernel memory leak detector initialized (mem pool available: 15660)",
]


# --- refusals: one line, non-zero, nothing started ---------------------------

def runner_lines(stderr):
    return [line for line in stderr.decode().splitlines() if line.startswith("vm-run:")]


def assert_one_line_error(result, text):
    assert result.returncode != 0
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("vm-run: error: ") and text in lines[0]


def test_unknown_kernel_gets_one_line():
    result = vm_run("--kernel", "5.4", "--", "true")
    assert_one_line_error(result, "unknown KERNEL '5.4' (known: 6.1, 6.12, 6.12-debug, 7.2)")


def test_setup_refuses_an_unknown_kernel_before_installing(tmp_path):
    # Every installer setup.sh could reach is a stub that leaves a trace.
    trace = tmp_path / "called"
    for tool in ("apt-get", "apt-cache", "dpkg-query", "mmdebstrap", "sudo", "pip"):
        stub = tmp_path / tool
        stub.write_text(f"#!/bin/sh\necho {tool} >> {trace}\n")
        stub.chmod(0o755)
    env = dict(os.environ, KERNEL="5.10", PATH=f"{tmp_path}:{os.environ['PATH']}")
    result = subprocess.run([str(TOP / "lab" / "setup.sh")], capture_output=True, env=env, timeout=10)
    assert result.returncode != 0
    assert result.stderr.decode().splitlines() == ["setup: error: unknown KERNEL '5.10' (known: 6.1, 6.12, 6.12-debug, 7.2)"]
    assert not trace.exists(), trace.read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="lab/sid-kernel.sh runs as root")
def test_unreachable_sid_mirror_gets_one_error_line_and_installs_nothing(tmp_path):
    modules_before = sorted(os.listdir("/lib/modules"))
    env = dict(os.environ, SID_MIRROR="file:///nonexistent/debian", VCAM_LAB_CACHE=str(tmp_path))
    result = subprocess.run([str(TOP / "lab" / "sid-kernel.sh"), "7.2"], capture_output=True, env=env, timeout=30)
    assert result.returncode != 0
    errors = [line for line in result.stderr.decode().splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("setup: error: cannot read sid's package lists from file:///nonexistent/debian"), errors
    assert sorted(os.listdir("/lib/modules")) == modules_before


@pytest.mark.skipif(os.geteuid() != 0, reason="apt-get download runs as root here")
def test_v4l2loopback_without_a_sid_mirror_is_one_line(tmp_path):
    # make bench then runs vcam's rows alone
    env = dict(os.environ, SID_MIRROR="file:///nonexistent/debian", VCAM_LAB_CACHE=str(tmp_path),
               V4L2LOOPBACK_BUILD=str(tmp_path / "build"), KERNEL="6.12")
    result = subprocess.run([str(TOP / "lab" / "v4l2loopback.sh")], capture_output=True, env=env, timeout=30)
    assert result.returncode == 1 and result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "v4l2loopback: cannot read sid's package lists from file:///nonexistent/debian"), lines


def test_missing_qemu_gets_one_line():
    env = dict(os.environ, PATH="/nonexistent")
    result = subprocess.run([sys.executable, str(VM_RUN), "--", "true"], capture_output=True, env=env)
    assert_one_line_error(result, "qemu-system-x86_64 is not installed")


def test_busy_port_gets_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = vm_run("--ports", str(port), "--", "true")
    assert_one_line_error(result, f"port {port} is already in use")


def test_icount_with_kvm_gets_one_line():
    result = vm_run("--icount", "--accel", "kvm", "--", "true")
    assert_one_line_error(result, "--icount counts instructions under TCG")


def test_make_vm_without_cmd_explains():
    result = subprocess.run(["make", "-s", "vm"], cwd=TOP, capture_output=True)
    assert result.returncode != 0
    assert b"say what to run" in result.stderr


# --- real boots -------------------------------------------------------------

def qemu_processes(run_dir):
    ps = subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if run_dir in line]


def run_dir_of(stderr):
    match = re.search(r"run directory (\S+)", stderr)
    assert match, stderr
    return match.group(1)


def guest_up(runner):
    """Read a running lab/vm-run's stderr until its guest is up; the run directory."""
    seen = []
    for line in runner.stderr:
        seen.append(line)
        if "guest up" in line:
            break
    return run_dir_of("".join(seen))


@pytest.mark.own_guest
def test_output_comes_back_byte_for_byte_under_an_instruction_clock_and_a_kernel_warning_fails_the_run():
    # One boot for three things (the exit status's way back is the port
    # test's). The program sleeps first, in the guest's counted time, so
    # QEMU is still there to be looked at once the guest is up.
    line = "WARNING: CPU: 0 PID: 1 at lab/vm-run test: planted by the runner test"
    program = (
        "import sys, time; time.sleep(2); "
        f"open('/dev/kmsg', 'w').write('{line}\\n'); "
        "sys.stdout.buffer.write(bytes(range(256)) * 3); "
        "sys.stderr.buffer.write(b'to stderr\\x00\\xfe\\n')"
    )
    runner = subprocess.Popen([str(VM_RUN), "--icount", "--no-driver", "--", "python3", "-c", program],
                              cwd=TOP, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = b""
    for text in runner.stderr:
        seen += text
        if b"guest up" in text:
            break
    qemu = qemu_processes(run_dir_of(seen.decode()))
    out, err = runner.communicate(timeout=300)
    assert qemu and all("-icount shift=1" in text for text in qemu), qemu
    assert out == bytes(range(256)) * 3
    assert b"to stderr\x00\xfe\n" in err
    # the command exited 0; the warning in the kernel log fails the run
    assert runner.returncode == 1
    stderr = (seen + err).replace(b"to stderr\x00\xfe\n", b"").decode()
    reported = [text for text in stderr.splitlines() if text.startswith("  ")]   # the bad lines, indented
    assert "bad line(s)" in stderr and len(reported) == 1 and line in reported[0], stderr
    # Everything else on stderr is the runner's own progress.
    rest = [text for text in stderr.splitlines() if not text.startswith("  ")]
    assert rest and all(text.startswith("vm-run: ") for text in rest), rest
    assert line in (TOP / "build" / "vm" / "last-dmesg.log").read_text()
    assert not qemu_processes(run_dir_of(stderr))


@pytest.mark.own_guest
def test_guest_that_does_not_boot_in_time_is_killed():
    result = vm_run("--no-driver", "--boot-timeout", "2", "--", "true")
    stderr = result.stderr.decode()
    assert result.returncode != 0
    assert "did not boot within 2 s" in stderr
    assert not qemu_processes(run_dir_of(stderr))


# Serves until asked for /stop (or 4 minutes pass): a server that quit after
# one answer could power the guest off before QEMU relayed that answer.
GUEST_SERVER = """
import http.server, time
stop = False
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global stop
        stop = self.path == "/stop"
        self.send_response(200); self.end_headers(); self.wfile.write(b"hello from the guest")
server = http.server.HTTPServer(("0.0.0.0", {port}), Hello)
server.timeout = 5
deadline = time.monotonic() + 240
while not stop and time.monotonic() < deadline:
    server.handle_request()
raise SystemExit(7)  # the status comes back as the runner's own
"""


def http_get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.mark.own_guest
def test_guest_port_is_forwarded_and_the_status_comes_back():
    port = free_port()
    runner = subprocess.Popen(
        [str(VM_RUN), "--no-driver", "--ports", str(port), "--", "python3", "-c", GUEST_SERVER.format(port=port)],
        cwd=TOP, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    body = None
    deadline = time.monotonic() + 240
    try:
        while body is None and time.monotonic() < deadline and runner.poll() is None:
            try:
                body = http_get(f"http://127.0.0.1:{port}/")
            except OSError:
                time.sleep(1)  # QEMU or the guest's server is not up yet
        if body is not None:
            http_get(f"http://127.0.0.1:{port}/stop")
        _, stderr = runner.communicate(timeout=120)
    finally:
        runner.kill()
    assert body == b"hello from the guest", stderr.decode()
    assert runner.returncode == 7, stderr.decode()


@pytest.mark.own_guest
def test_interrupted_runner_leaves_no_qemu():
    runner = subprocess.Popen(
        [str(VM_RUN), "--no-driver", "--", "sleep", "600"],
        cwd=TOP, stderr=subprocess.PIPE, text=True,
    )
    run_dir = guest_up(runner)
    assert qemu_processes(run_dir), "the guest should be running now"
    # SIGHUP (the terminal closed) takes the same way out as SIGTERM and
    # Ctrl-C: one handler for all three
    runner.send_signal(signal.SIGHUP)
    assert runner.wait(timeout=30) != 0
    assert not qemu_processes(run_dir)


def test_guest_test_on_the_host_fails_loudly():
    env = {k: v for k, v in os.environ.items() if k != "VCAM_GUEST"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/test_lab_guest.py"],
        cwd=TOP, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert "must run in the guest kernel" in result.stdout
    assert "skipped" not in result.stdout.splitlines()[-1]
