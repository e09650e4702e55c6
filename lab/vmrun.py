"""Run a command as root inside a guest kernel with the vcam module loaded.

The guest (virtme-ng on QEMU) sees the host's root file system, so the
command runs in this checkout with the project's virtualenv on PATH. Its
stdout and stderr come back on ours, byte for byte, and its exit status is
ours. The guest's kernel log is saved after every run; a warning, BUG, oops
or KASAN report in it fails the run. On a kernel with kmemleak (the lab's
6.12-debug) the run ends with vcam unloaded and a leak scan, and a
suspected leak fails the run too.
"""

import argparse
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
VENV_BIN = TOP / ".venv" / "bin"
GST_PLUGINS = TOP / "producer" / "gstreamer"   # python/vcamsink.py
DRIVER = TOP / "driver"
RUNS = TOP / "build" / "vm"
PYTHON_DIRS = ["producer", "observe", "tests", "bench", "dashboards"]

# Kernel series the runner knows how to boot. Each maps to the version
# pattern of Debian's installed image and headers (lab/setup.sh installs
# them: 6.1 and 6.12 from bookworm, 7.2 from sid by lab/sid-kernel.sh,
# 6.12-debug built from Debian's source by lab/debug-kernel.sh). A later
# kernel is one more line here and in lab/setup.sh.
KERNELS = {
    "6.1": r"6\.1\.0-\d+-amd64",
    "6.12": r"6\.12\.\d+\+deb12-amd64",
    "7.2": r"7\.2\.\d+\+deb14-amd64",
    "6.12-debug": r"6\.12\.\d+-vcam-debug",
}
# The series booted when neither --kernel nor $KERNEL names one.
DEFAULT_KERNEL = "6.12"
# Seconds a guest may take to start the command. Under TCG the debug
# kernel's boot took 139 s and once more than 180 s (udev's coldplug is
# most of it: every fork and exec runs under KASAN and lockdep).
BOOT_TIMEOUT = 180
DEBUG_BOOT_TIMEOUT = 600

# Lines of a kernel log that fail a run. WARNING: and BUG: already catch
# most of the debug kernel's reports by their first line (KASAN's "BUG:
# KASAN: ...", lockdep's "WARNING: possible circular locking dependency
# detected", "BUG: sleeping function called from invalid context"); each
# report's own words are listed too, so that what is covered is written
# down here and tested. kmemleak's report has neither: it is read from
# kmemleak's own file after the final scan.
BAD_LOG_LINE = re.compile(
    r"WARNING:|BUG:|Oops|general protection fault|KASAN"
    # lockdep
    r"|possible circular locking|possible recursive locking"
    r"|inconsistent lock state|DEBUG_LOCKS_WARN_ON"
    # DEBUG_ATOMIC_SLEEP
    r"|sleeping function called from invalid context"
    # DEBUG_LIST (printed before its "WARNING: CPU: ..." line)
    r"|list_(?:add|del) corruption|list_add double add"
    # kmemleak: a report in its file, and its note in the kernel log
    r"|unreferenced object 0x|new suspected memory leak"
    # an instrument that switched itself off would hide what follows
    r"|Kernel memory leak detector disabled|turning off the locking correctness validator"
    # the leak check could not unload vcam (a reference left behind)
    r"|rmmod vcam failed"
)

EXIT_RUNNER_ERROR = 125  # the runner itself failed; no command status

EXAMPLES = """\
examples:
  lab/vm-run -- uname -r
  lab/vm-run -- pytest -m guest tests/test_lab_guest.py
  lab/vm-run --ports 9477 -- vcam-observe export --listen 0.0.0.0:9477
  make vm CMD='v4l2-ctl --list-devices'
"""


class RunnerError(Exception):
    """A failure of the runner (not of the command); one line for the user."""


def progress(message):
    print(f"vm-run: {message}", file=sys.stderr, flush=True)


def find_kernel(series, modules_root=Path("/lib/modules"), boot=Path("/boot")):
    """Newest installed kernel of SERIES with its image and headers."""
    if series not in KERNELS:
        known = ", ".join(sorted(KERNELS))
        raise RunnerError(f"unknown KERNEL '{series}' (known: {known})")
    pattern = re.compile(KERNELS[series] + "$")
    found = []
    for path in modules_root.glob("*") if modules_root.is_dir() else []:
        if not pattern.match(path.name):
            continue
        if (boot / f"vmlinuz-{path.name}").is_file() and (path / "build" / "Makefile").exists():
            found.append(path.name)
    if not found:
        raise RunnerError(
            f"no {series} kernel with headers is installed; run 'make setup KERNEL={series}'"
        )
    return max(found, key=version_key)


def version_key(version):
    return [int(part) if part.isdigit() else part for part in re.split(r"[.+-]", version)]


def parse_ports(text):
    """'9477,9090' -> [9477, 9090]; empty -> []."""
    ports = []
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        if not item.isdigit() or not 0 < int(item) < 65536:
            raise RunnerError(f"bad port '{item}' in PORTS (want numbers 1-65535, comma-separated)")
        ports.append(int(item))
    if len(set(ports)) != len(ports):
        raise RunnerError(f"a port is listed twice in PORTS '{text}'")
    return ports


def check_ports_free(ports):
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                raise RunnerError(f"port {port} is already in use on the host; free it or pick another in PORTS")


def bad_log_lines(log_text):
    return [line for line in log_text.splitlines() if BAD_LOG_LINE.search(line)]


def build_root_of(kernel, modules_root=Path("/lib/modules")):
    """The build root KERNEL's modules are built in, or None for the host.

    lab/sid-kernel.sh links /lib/modules/<ver>/build to the headers inside a
    sid build root, because sid's kbuild and compiler need sid's libc.
    """
    src = (modules_root / kernel / "build").resolve().parent
    if src.name != "src" or src.parent.name != "usr":
        return None  # a kernel tree of one's own: built on the host
    root = src.parent.parent
    return None if root == Path("/") else root


def driver_make(kernel, *targets):
    """Run driver/'s Makefile for KERNEL: on the host, or in the kernel's build root."""
    root = build_root_of(kernel)
    if root is None:
        command = ["make", "-s", "-C", str(DRIVER), f"KDIR=/lib/modules/{kernel}/build"]
    else:
        # driver/ is bind-mounted into the root, and objtool reads /proc: a
        # private mount namespace keeps both mounts off the host.
        inner = (
            'mkdir -p "$2/build/vcam" && mount --bind "$1" "$2/build/vcam" && '
            f'exec chroot "$2" make -s -C /build/vcam KDIR=/usr/src/linux-headers-{kernel} "${{@:3}}"'
        )
        command = [
            "unshare", "--mount", "--pid", "--fork", f"--mount-proc={root}/proc",
            "bash", "-c", inner, "bash", str(DRIVER), str(root),
        ]
        if os.geteuid() != 0:
            command.insert(0, "sudo")
    return subprocess.run(command + list(targets), stdout=sys.stderr).returncode


def build_driver(kernel):
    """Build driver/ against KERNEL's headers, rebuilding when the kernel changed."""
    if not (DRIVER / "Kbuild").exists():
        progress("driver/ has no Kbuild yet; running without the vcam module")
        return None
    built_for = DRIVER / ".built-for"
    if not built_for.exists() or built_for.read_text().strip() != kernel:
        driver_make(kernel, "clean")
    if driver_make(kernel) != 0:
        raise RunnerError(f"building driver/ for {kernel} failed (see the compiler output above)")
    built_for.write_text(kernel + "\n")
    module = DRIVER / "vcam.ko"
    if not module.exists():
        raise RunnerError("driver/ built but produced no vcam.ko")
    return module


def guest_script(run_dir, command, module, ports, series):
    """The script the guest runs: set up, run COMMAND, save the kernel log."""
    r = shlex.quote(str(run_dir))
    lines = [
        "#!/bin/bash",
        "# Written by lab/vm-run for one run; runs as root in the guest.",
        f"R={r}",
        ': > "$R/booted"',
        'exec 3>>"$R/setup.log"',
        # With kmemleak (the debug kernel): vcam unloaded, so that what it
        # never freed is unreferenced, then two scans (a leak is reported
        # when its checksum held still between two, aged 5 s or more).
        "leak_check() {",
        "    [ -w /sys/kernel/debug/kmemleak ] || return 0",
        "    if grep -q '^vcam ' /proc/modules && ! rmmod vcam 2>\"$R/rmmod.err\"; then",
        '        echo "vm-run: rmmod vcam failed at the end of the run: $(cat "$R/rmmod.err")" > /dev/kmsg',
        "    fi",
        "    echo scan > /sys/kernel/debug/kmemleak; sleep 5; echo scan > /sys/kernel/debug/kmemleak",
        '    cat /sys/kernel/debug/kmemleak > "$R/kmemleak"',
        "}",
        'finish() { leak_check; dmesg > "$R/dmesg"; echo "$1" > "$R/status"; exit 0; }',
        'setup_failed() { echo "guest set-up failed: $1" >&3; finish ' f"{EXIT_RUNNER_ERROR}" "; }",
        f"cd {shlex.quote(str(TOP))} || setup_failed 'no project directory'",
        f"export PATH={shlex.quote(str(VENV_BIN))}:$PATH",
        # KERNEL: the series booted, for tests that depend on it
        f"export VCAM_GUEST=1 VCAM_RUN_DIR=\"$R\" KERNEL={shlex.quote(series)} HOME=/tmp/vcam-home "
        "PYTHONDONTWRITEBYTECODE=1",
        'mkdir -p "$HOME"',
        # Debian 12's v4l2-compliance is too old for 6.12; lab/setup.sh
        # installs trixie's.
        "[ -x /opt/vcam/bin/v4l2-compliance ] && export V4L2_COMPLIANCE=/opt/vcam/bin/v4l2-compliance",
        # GStreamer's python plugin loader finds vcamsink in GST_PLUGIN_PATH's python/ folder.
        f"export GST_PLUGIN_PATH={shlex.quote(str(GST_PLUGINS))}${{GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}}",
    ]
    if ports:
        # virtio_net is a module in Debian's kernel; QEMU's user network
        # puts the guest at 10.0.2.15 with the host at 10.0.2.2.
        lines += [
            "modprobe virtio_net >&3 2>&3 || setup_failed 'modprobe virtio_net'",
            "ip link set lo up",
            "dev=$(ls /sys/class/net | grep -v '^lo$' | head -n 1)",
            '[ -n "$dev" ] || setup_failed "no network interface"',
            'ip link set "$dev" up && ip addr add 10.0.2.15/24 dev "$dev" && '
            'ip route add default via 10.0.2.2 || setup_failed "network on $dev"',
        ]
    if module:
        m = shlex.quote(str(module))
        lines += [
            f"for dep in $(modinfo -F depends {m} | tr ',' ' '); do",
            '    modprobe "$dep" >&3 2>&3 || setup_failed "modprobe $dep"',
            "done",
            f"insmod {m} >&3 2>&3 || setup_failed 'insmod {module.name}'",
        ]
    lines += [
        f'{shlex.join(command)} </dev/null >"$R/stdout" 2>"$R/stderr"',
        "finish $?",
    ]
    return "\n".join(lines) + "\n"


class Guest:
    """One virtme-ng process group; killed whatever way the runner ends."""

    def __init__(self, argv, log_path):
        self.log = open(log_path, "wb")
        env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=TOP,
            start_new_session=True,
        )

    def running(self):
        return self.proc.poll() is None

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.log.close()


def vng_command(kernel, run_dir, accel, ports, memory, cpus, guest_cmd, icount=False, append=""):
    vng = VENV_BIN / "vng"
    if not vng.exists():
        raise RunnerError(f"{vng} is missing; run 'make setup'")
    argv = [
        str(vng), "--run", f"/boot/vmlinuz-{kernel}", "--force-9p",
        "--rwdir", str(run_dir), "--cwd", str(TOP),
        "--memory", memory, "--cpus", str(cpus),
        # The boot console goes to console.log, which explains a guest
        # that never came up.
        "--verbose",
        # The kernel log is read once, at the end of a run: room for a
        # whole tier's, and for the debug kernel's long reports, without
        # wrapping (Debian's own is 128 KiB, the debug kernel's 256 KiB).
        "--append", f"log_buf_len=8M {append}".strip(),
    ]
    qemu_opts = []
    if accel == "tcg":
        argv.append("--disable-kvm")
        # Multi-threaded TCG races with the kernel's int3-based code
        # patching: about one boot in fifteen oopsed in sched_clock_cpu.
        qemu_opts.append("-accel tcg,thread=single")
        if icount:
            # The guest clock advances 2 ns per instruction: a rate measured
            # in the guest counts instructions, unmoved by the host's load.
            qemu_opts.append("-icount shift=1,sleep=on")
    if ports:
        forwards = ",".join(f"hostfwd=tcp:127.0.0.1:{p}-:{p}" for p in ports)
        qemu_opts.append(f"-netdev user,id=n0,{forwards} -device virtio-net-pci,netdev=n0")
    if qemu_opts:
        # One '=' argument: a separate value starting with '-' reads as an option.
        argv.append("--qemu-opts=" + " ".join(qemu_opts))
    return argv + ["--", guest_cmd]


def kvm_works(kernel, run_dir, timeout):
    """Boot a guest that does nothing under KVM; False if it fails or hangs.

    Where KVM is broken QEMU either aborts at once or reports an internal
    error and hangs, so the probe is time-boxed and its process group killed.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    probe = Guest(vng_command(kernel, run_dir, "kvm", [], "512M", 1, "true"), run_dir / "kvm-probe.log")
    deadline = time.monotonic() + timeout
    try:
        while probe.running() and time.monotonic() < deadline:
            if b"KVM internal error" in (run_dir / "kvm-probe.log").read_bytes():
                return False
            time.sleep(0.1)
        return not probe.running() and probe.proc.returncode == 0
    finally:
        probe.kill()


class Tail:
    """Copies what a guest writes to a file onto one of our streams."""

    def __init__(self, path, stream):
        self.path, self.stream, self.offset = path, stream, 0

    def pump(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        if data:
            self.offset += len(data)
            self.stream.write(data)
            self.stream.flush()


def compile_python():
    """Byte-compile the project's Python on the host. The tree is read-only
    in the guest, where a module without its .pyc is compiled again by
    every process that imports it, under emulation."""
    python = VENV_BIN / "python"
    subprocess.run([str(python if python.exists() else sys.executable), "-m", "compileall", "-q",
                    *(str(TOP / d) for d in PYTHON_DIRS)], check=False, stdout=subprocess.DEVNULL)


def run(args):
    kernel = find_kernel(args.kernel)
    if args.build_driver:
        if not build_driver(kernel):
            raise RunnerError("driver/ has no Kbuild; nothing to build")
        progress(f"built driver/vcam.ko for {kernel}")
        return 0
    if args.clean_driver:
        return driver_make(kernel, "clean")
    ports = parse_ports(args.ports)
    if not shutil.which("qemu-system-x86_64"):
        raise RunnerError("qemu-system-x86_64 is not installed; run 'make setup'")
    check_ports_free(ports)
    if not args.command:
        raise RunnerError("no command given (usage: lab/vm-run [options] -- CMD [ARG...])")
    if args.icount and args.accel == "kvm":
        raise RunnerError("--icount counts instructions under TCG; it cannot run with --accel kvm")

    module = None if args.no_driver else build_driver(kernel)
    compile_python()

    RUNS.mkdir(parents=True, exist_ok=True)
    run_dir = RUNS / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run_dir.mkdir()

    accel = args.accel
    if args.icount:
        accel = "tcg"
    elif accel == "auto":
        accel = "kvm" if kvm_works(kernel, run_dir, args.kvm_probe_timeout) else "tcg"
    progress(f"booting {kernel} ({accel}), run directory {run_dir.relative_to(TOP)}")

    script = run_dir / "guest.sh"
    script.write_text(guest_script(run_dir, args.command, module, ports, args.kernel))
    guest = Guest(
        vng_command(kernel, run_dir, accel, ports, args.memory, args.cpus, f"bash {script}", args.icount, args.append),
        run_dir / "console.log",
    )
    outputs = [Tail(run_dir / "stdout", sys.stdout.buffer), Tail(run_dir / "stderr", sys.stderr.buffer)]
    boot_timeout = args.boot_timeout or (
        DEBUG_BOOT_TIMEOUT if args.kernel.endswith("-debug") else BOOT_TIMEOUT)
    started = time.monotonic()
    booted = False
    try:
        while guest.running():
            for tail in outputs:
                tail.pump()
            elapsed = time.monotonic() - started
            if not booted:
                booted = (run_dir / "booted").exists()
                if booted:
                    progress(f"guest up after {elapsed:.0f} s")
                elif elapsed > boot_timeout:
                    raise RunnerError(
                        f"the guest did not boot within {boot_timeout:.0f} s "
                        f"(console log: {run_dir / 'console.log'})"
                    )
            if args.timeout and elapsed > args.timeout:
                raise RunnerError(f"the command did not finish within {args.timeout:.0f} s; guest killed")
            time.sleep(0.05)
    finally:
        guest.kill()
    for tail in outputs:
        tail.pump()

    status_file = run_dir / "status"
    if not status_file.exists():
        # The guest died under the command (a panic, say): the boot
        # console is the only kernel log there is.
        report_bad_lines(run_dir / "console.log")
        raise RunnerError(
            f"the guest stopped before the command finished (vng exit {guest.proc.returncode}; "
            f"console log: {run_dir / 'console.log'})"
        )
    setup_log = run_dir / "setup.log"
    if status_file.read_text().strip() == str(EXIT_RUNNER_ERROR) and setup_log.exists():
        text = setup_log.read_text(errors="replace")
        if "guest set-up failed" in text:
            sys.stderr.write(text)
            report_bad_lines(run_dir / "dmesg")
            raise RunnerError(text.strip().splitlines()[-1])
    status = int(status_file.read_text())

    # Save the guest's kernel log; a bad line in it, or a leak kmemleak
    # found, fails the run.
    shutil.copyfile(run_dir / "dmesg", RUNS / "last-dmesg.log")
    bad_log = report_bad_lines(run_dir / "dmesg")
    leaks = run_dir / "kmemleak"
    bad_leaks = leaks.exists() and report_bad_lines(leaks)
    if bad_log or bad_leaks:
        return status or 1
    checked = " and kmemleak's scan" if leaks.exists() else ""
    progress(f"command exited {status}; kernel log{checked} clean (saved in {run_dir.relative_to(TOP)}/dmesg)")
    return status


def report_bad_lines(log_path):
    """Print the bad lines of a guest kernel log; True if there were any."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    bad = bad_log_lines(text)
    if bad:
        progress(f"the guest's kernel log has {len(bad)} bad line(s) (saved in {log_path}):")
        for line in bad:
            print(f"  {line}", file=sys.stderr)
    return bool(bad)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="lab/vm-run",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kernel", default=os.environ.get("KERNEL") or DEFAULT_KERNEL,
                        help=f"kernel series to boot (default: $KERNEL or {DEFAULT_KERNEL})")
    parser.add_argument("--ports", default=os.environ.get("PORTS", ""),
                        help="guest TCP ports to forward to the same port on 127.0.0.1, comma-separated")
    parser.add_argument("--accel", choices=["auto", "kvm", "tcg"], default=os.environ.get("ACCEL") or "auto",
                        help="auto: KVM when a probe boot works, else TCG (default)")
    parser.add_argument("--icount", action="store_true",
                        help="TCG with an instruction-counting guest clock: slower, but rates measured in the guest "
                             "are instruction counts, reproducible whatever else the host runs (benchmarks)")
    parser.add_argument("--boot-timeout", type=float, default=None,
                        help=f"seconds the guest may take to start the command (default {BOOT_TIMEOUT}, "
                             f"{DEBUG_BOOT_TIMEOUT} on a debug kernel)")
    parser.add_argument("--timeout", type=float, default=0,
                        help="seconds the whole run may take; 0 means no limit (default)")
    parser.add_argument("--kvm-probe-timeout", type=float, default=30, help=argparse.SUPPRESS)
    parser.add_argument("--append", default="",
                        help="more kernel command line, e.g. slub_debug=U to see what holds a slab cache")
    parser.add_argument("--memory", default="2G", help="guest memory (default 2G)")
    parser.add_argument("--cpus", type=int, default=2, help="guest CPUs (default 2)")
    parser.add_argument("--no-driver", action="store_true", help="do not build or load the vcam module")
    parser.add_argument("--build-driver", action="store_true",
                        help="build driver/vcam.ko for the kernel (in its build root, if it has one) and exit")
    parser.add_argument("--clean-driver", action="store_true",
                        help="remove what building driver/ for the kernel left there, and exit")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run in the guest")
    args = parser.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def stop(signum, _frame):
        raise KeyboardInterrupt

    # SIGHUP: the terminal went away; the guest must not outlive it.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        return run(args)
    except RunnerError as err:
        progress(f"error: {err}")
        return EXIT_RUNNER_ERROR
    except KeyboardInterrupt:
        progress("interrupted; guest stopped")
        return 130
