"""The vcam that make install put in place, checked inside the guest
kernel it was built for. tests/test_install.py installs it on the host in a
private mount namespace and boots the guest from there (lab/vm-run
--no-driver): this file is run by that test alone, not by the guest tier.

As on a user's machine: modprobe loads it by name, udev gives /dev/vcam to
group video, an ordinary user in video streams through both paths and one
outside it is told what to do, GStreamer finds vcamsink, the exporter's
unit runs with its capabilities alone, and make demo NATIVE=1 takes the
installed module.
"""

import grp
import json
import os
import re
import shlex
import signal
import stat
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from labtools import free_port, load_demo, run_command
from producer import sysfs
from vcam_helpers import video_node, wait_until

pytestmark = pytest.mark.guest

RELEASE = os.uname().release
UNIT = Path("/usr/local/lib/systemd/system/vcam-exporter.service")
RULE = Path("/usr/local/lib/udev/rules.d/60-vcam.rules")
ENV_FILE = Path("/etc/default/vcam-exporter")
VIDEO_GID = grp.getgrnam("video").gr_gid
MEMBER, STRANGER = 4242, 4243   # uids with no passwd entry: nothing in /etc changes
USER_PATH = "/usr/local/bin:/usr/bin:/bin"


class Udevd:
    """systemd-udevd, started here when the guest has none (virtme-ng
    starts none), stopped again afterwards."""

    def __init__(self):
        self.proc = None
        if not Path("/run/udev/control").exists():
            self.proc = subprocess.Popen(["/lib/systemd/systemd-udevd"], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            wait_until(lambda: Path("/run/udev/control").exists(), 30, "udevd's control socket")

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


@pytest.fixture(scope="module")
def installed():
    """The installed vcam, not loaded yet (lab/vm-run --no-driver), udevd
    running; vcam unloaded again at the end."""
    assert RULE.is_file() and UNIT.is_file(), "run by tests/test_install.py, on the system it installed"
    assert not Path("/sys/module/vcam").exists()
    udevd = Udevd()
    try:
        yield
    finally:
        run_command("rmmod", "vcam", check=False)
        udevd.stop()


def as_user(uid, *groups):
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}",
            f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"]


def user_home(uid):
    """A home directory UID owns (pytest's tmp_path is root's alone)."""
    home = Path(tempfile.mkdtemp(prefix="vcam-user-", dir="/tmp"))
    home.chmod(0o755)
    os.chown(home, uid, uid)
    return home


def user_env(home):
    return {"PATH": USER_PATH, "HOME": str(home), "LANG": "C.UTF-8"}


# --- modprobe, udev, users ----------------------------------------------------------


def test_modprobe_loads_the_dkms_module_with_its_dependencies(installed):
    path = run_command("modinfo", "-n", "vcam").stdout.strip()
    assert re.search(rf"/modules/{re.escape(RELEASE)}/updates/dkms/vcam\.ko", path), path
    depends = list(filter(None, run_command("modinfo", "-F", "depends", "vcam").stdout.strip().split(",")))
    assert depends, "vcam depends on videobuf2"
    # Dependencies no one uses go first, so that modprobe has to load them
    run_command("modprobe", "-r", "-q", *depends, check=False)
    run_command("modprobe", "vcam")
    assert Path("/sys/module/vcam").exists()
    for dep in depends:
        assert Path(f"/sys/module/{dep.replace('-', '_')}").exists(), dep
    # the module loaded is the one DKMS built, not the checkout's
    assert Path("/sys/module/vcam/srcversion").read_text().strip() == \
        run_command("modinfo", "-F", "srcversion", path).stdout.strip()


def test_udev_gives_dev_vcam_to_group_video(installed):
    assert Path("/sys/module/vcam").exists()
    run_command("udevadm", "settle", "--timeout=60")
    st = os.stat("/dev/vcam")
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (VIDEO_GID, 0o660), (st.st_gid, oct(st.st_mode))
    # the rule itself, as udev reads it
    r = run_command("udevadm", "test", "/sys/class/misc/vcam", check=False)
    assert str(RULE) in r.stdout + r.stderr, (r.stdout + r.stderr)[-2000:]


def test_a_user_in_video_streams_zero_copy_and_copy(installed):
    home = user_home(MEMBER)
    sock = home / "share.sock"
    user, env = as_user(MEMBER, VIDEO_GID), user_env(home)
    producer = subprocess.Popen(user + ["vcam-producer", "run", "--json", "--size", "320x240", "--fps", "30",
                                        "--share", str(sock)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = producer.stdout.readline()
        if not line:
            producer.wait(30)
            raise AssertionError(f"the producer did not start: {producer.stderr.read()}")
        camera = json.loads(line)
        # Debian 12 gives /dev/dma_heap/system to root alone (and
        # /dev/udmabuf to group kvm; 6.1 has neither): the user's frames go
        # to the driver's own slot buffers by themselves, with a note
        assert camera["slot_memory"] == "driver", camera
        # capture nodes: group video from the system's own udev rules, once
        # udev has handled the new node
        run_command("udevadm", "settle", "--timeout=60")
        node = os.stat(camera["device"])
        assert (node.st_gid, stat.S_IMODE(node.st_mode) & 0o060) == (VIDEO_GID, 0o060), (node.st_gid,
                                                                                       oct(node.st_mode))
        nr = camera["device_nr"]
        r = run_command(*user, "vcam-producer", "consume", "--import", sock, "--frames", "30", "--verify", env=env)
        assert sysfs.stats(nr)["frames_zero_copy"] >= 30
        copied = sysfs.stats(nr)["frames_copied"]
        r = run_command(*user, "vcam-producer", "consume", "--device", camera["device"], "--memory", "mmap",
               "--frames", "30", "--verify", env=env)
        assert sysfs.stats(nr)["frames_copied"] >= copied + 30, r.stdout
    finally:
        producer.send_signal(signal.SIGTERM)
        out, err = producer.communicate(timeout=60)
    assert producer.returncode == 0, err
    notes = [line for line in err.splitlines() if line.startswith("vcam-producer run: note: no DMA-BUF allocator: ")]
    assert len(notes) == 1, err
    if Path("/dev/dma_heap/system").exists():
        assert "/dev/dma_heap/system is not open to this user" in notes[0], notes
    assert "Traceback" not in err


def test_the_installed_vcamsink_makes_a_camera_for_a_user_in_video(installed):
    """GStreamer finds vcamsink with no GST_PLUGIN_PATH (the loader's own
    folder), and it runs on the installed vcam (/opt/vcam/venv)."""
    assert list(Path("/usr/lib").glob("*/gstreamer-1.0/python/vcamsink.py"))
    home = user_home(MEMBER)
    user, env = as_user(MEMBER, VIDEO_GID), user_env(home)
    gst = subprocess.Popen(user + ["gst-launch-1.0", "-e", "videotestsrc", "!",
                                   "video/x-raw,format=YUY2,width=64,height=48,framerate=30/1", "!",
                                   "vcamsink", "label=Installed Sink"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        device = wait_until(lambda: video_node("Installed Sink"), 120, "vcamsink's camera",
                            ignore=(AssertionError, OSError))
        r = run_command(*user, "vcam-producer", "consume", "--device", device, "--frames", "10", "--json", env=env)
        assert json.loads(r.stdout)["frames"] == 10, r.stdout
    finally:
        gst.send_signal(signal.SIGINT)
        out, err = gst.communicate(timeout=120)
    assert gst.returncode == 0, out + err
    assert "ERROR" not in out + err and "Traceback" not in err, out + err


def test_a_user_outside_video_is_told_to_join_it(installed):
    r = run_command(*as_user(STRANGER), "vcam-producer", "run", "--frames", "1", check=False,
           env=user_env(user_home(STRANGER)))
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "vcam-producer run: cannot open /dev/vcam: permission denied: add yourself to group video "
        "(sudo usermod -aG video $USER), then log out and in again"], r.stderr


# --- the exporter's unit ---------------------------------------------------------------


def unit_service_section(path):
    """[Service]'s settings: {key: [values in order]}."""
    settings, section = {}, None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def unit_command(settings):
    """ExecStart with the unit's Environment= and EnvironmentFile= applied,
    as systemd expands ${VAR}; and that environment."""
    env = dict(kv.split("=", 1) for kv in settings.get("Environment", []))
    for name in settings.get("EnvironmentFile", []):
        f = Path(name.lstrip("-"))
        if f.exists():
            env.update(kv.split("=", 1) for kv in f.read_text().splitlines() if kv and not kv.startswith("#"))
    argv = [re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], word)
            for word in shlex.split(settings["ExecStart"][0])]
    return argv, env


def sandboxed(settings, caps):
    """A command prefix that runs as the unit would: root holding only
    CAPS, no new privileges, a private /tmp (PrivateTmp), no /root or
    /home (ProtectHome), everything else read-only (ProtectSystem=strict:
    the guest's root is read-only already; the overlays are made so)."""
    assert settings["NoNewPrivileges"] == ["yes"] and settings["PrivateTmp"] == ["yes"]
    assert settings["ProtectSystem"] == ["strict"] and settings["ProtectHome"] == ["yes"]
    bounding = ",".join(["-all"] + [f"+{c.removeprefix('CAP_').lower()}" for c in caps])
    # (a mount hidden under another cannot be remounted; the probe after
    # the loop checks that what is visible is read-only)
    inner = ("for m in $(awk '$4 ~ /^rw/ && $2 !~ /^[/](dev|proc|sys)([/]|$)/ {print $2}' /proc/self/mounts); do "
             "mount -o remount,bind,ro \"$m\" 2>/dev/null; done; "
             "for d in / /etc /usr /var /opt /run /work; do "
             "if [ -d $d ] && touch $d/.vcam-probe 2>/dev/null; then echo \"$d is writable\" >&2; exit 1; fi; done; "
             "mount -t tmpfs none /tmp && mount -t tmpfs none /root && mount -t tmpfs none /home && "
             f"exec setpriv --inh-caps=-all --bounding-set={bounding} --no-new-privs \"$@\"")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner, "sh"]


def test_the_units_execstart_serves_metrics_with_its_capabilities_only(installed):
    settings = unit_service_section(UNIT)
    caps = settings["CapabilityBoundingSet"][0].split()
    port = free_port()
    ENV_FILE.write_text(f"VCAM_EXPORTER_LISTEN=127.0.0.1:{port}\n")   # the address comes from the file
    argv, env = unit_command(settings)
    assert argv == ["/opt/vcam/venv/bin/vcam-observe", "export", "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(sandboxed(settings, caps) + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={"PATH": "/usr/bin:/bin", **env})
    try:
        def scrape():
            assert proc.poll() is None, proc.stderr.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                    return reply.read().decode()
            except OSError:
                return None
        text = wait_until(scrape, 600, "the exporter's metrics")
        assert re.search(r"^vcam_\w+", text, re.M), text[:2000]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "did not attach" not in err and "Traceback" not in err, err
    assert "no layout" not in err, err      # it read the offsets it needs from BTF


# BPF_PROG_LOAD of a kprobe program ("r0 = 0; exit"), the kind of program
# the probes load: the kernel's own capability checks, in a tenth of a
# second instead of a bcc compile. Prints "loaded" or the errno's name.
LOAD_A_KPROBE_PROGRAM = r"""
import ctypes, errno, os, struct
insns = struct.pack("<BBhi", 0xb7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
licence = ctypes.create_string_buffer(b"GPL")
code = ctypes.create_string_buffer(insns, len(insns))
attr = ctypes.create_string_buffer(128)
struct.pack_into("<IIQQ", attr, 0, 2, 2, ctypes.addressof(code), ctypes.addressof(licence))
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.syscall(321, 5, attr, 128)   # bpf(BPF_PROG_LOAD, ...), BPF_PROG_TYPE_KPROBE
print("loaded" if fd >= 0 else errno.errorcode[ctypes.get_errno()])
"""


@pytest.mark.parametrize("dropped", [None, "CAP_BPF", "CAP_PERFMON"])
def test_each_capability_of_the_unit_is_needed(installed, dropped):
    settings = unit_service_section(UNIT)
    caps = [c for c in settings["CapabilityBoundingSet"][0].split() if c != dropped]
    r = run_command(*sandboxed(settings, caps), "/usr/bin/python3", "-c", LOAD_A_KPROBE_PROGRAM)
    assert r.stdout.strip() == ("loaded" if dropped is None else "EPERM"), r.stdout + r.stderr


def test_without_cap_syslog_vcams_symbol_addresses_read_as_zero(installed):
    # probes.module_symbols() gives the BPF program vcam's vb2 ops address
    # from /proc/kallsyms; without CAP_SYSLOG every address there reads 0.
    settings = unit_service_section(UNIT)
    caps = settings["CapabilityBoundingSet"][0].split()
    assert Path("/sys/module/vcam").exists()
    read = ["sh", "-c", "grep -m1 '\\[vcam\\]$' /proc/kallsyms"]
    with_it = run_command(*sandboxed(settings, caps), *read).stdout.split()[0]
    without = run_command(*sandboxed(settings, [c for c in caps if c != "CAP_SYSLOG"]), *read).stdout.split()[0]
    assert int(with_it, 16) != 0 and int(without, 16) == 0, (with_it, without)


# --- make demo NATIVE=1 ----------------------------------------------------------------


def test_the_native_demo_takes_the_installed_module(installed, tmp_path, capsys):
    """make demo NATIVE=1's module, chosen, loaded and unloaded by the
    demo's own code (the rest of the demo is tests/test_demo_native.py's)."""
    run_command("rmmod", "vcam", check=False)
    native = load_demo().NativeModule(tmp_path)
    native.check()
    assert re.search(rf"/modules/{re.escape(RELEASE)}/updates/dkms/vcam\.ko", str(native.installed)), native.installed
    native.build()
    native.load()
    try:
        assert Path("/sys/module/vcam/srcversion").read_text().strip() == \
            run_command("modinfo", "-F", "srcversion", native.installed).stdout.strip()
    finally:
        assert native.unload()
    said = capsys.readouterr().err
    assert "using the installed vcam" in said and "building" not in said, said
    assert not list(tmp_path.iterdir())     # nothing of the checkout was copied to build
