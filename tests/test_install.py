"""make install / make uninstall in the guest, as on a user's machine: DKMS
builds vcam for the running kernel, modprobe loads it by name, udev gives
/dev/vcam to group video, an ordinary user in video streams through both
paths, one outside it is told what to do, the exporter's unit runs, the
native demo takes the installed module, and uninstall leaves nothing.

Nothing reaches the host: /etc, /usr, /var and /opt are covered by
overlays whose upper layers are a tmpfs in the guest, and what is left in
those upper layers after uninstall is exactly what uninstall left behind.
"""

import filecmp
import grp
import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from labtools import TOP, free_port, vmrun
from producer import sysfs
from vcam_helpers import wait_until

RELEASE = os.uname().release

pytestmark = [pytest.mark.guest, pytest.mark.every_kernel]

# DKMS builds with the system's own compiler; sid's 7.2 headers want sid's
# (the lab builds vcam for 7.2 in its sid build root, lab/sid-kernel.sh).
OWN_TOOLCHAIN = vmrun.build_root_of(RELEASE) is not None
CANNOT_BUILD = ("DKMS cannot build vcam for this kernel in this guest: its headers were made with their build "
                "root's toolchain (7.2: sid's gcc 16, glibc 2.38), the guest's userland is Debian 12's (gcc 12, "
                "glibc 2.36)")

VERSION = re.search(r'^version = "([^"]+)"$', (TOP / "pyproject.toml").read_text(), re.M).group(1)
CHECKOUT_MODULE = TOP / "driver" / "vcam.ko"
INSTALL_SH = TOP / "install" / "install.sh"
WHEELS = TOP / "build" / "wheels"
# Where make install and DKMS write, and whatever else a package could
# (virtme-ng's own overlays make these writable in the guest already; ours
# on top record every change).
WRITABLE = ["/etc", "/usr", "/var", "/opt"]
UNIT = Path("/usr/local/lib/systemd/system/vcam-exporter.service")
RULE = Path("/usr/local/lib/udev/rules.d/60-vcam.rules")
ENV_FILE = Path("/etc/default/vcam-exporter")
# DKMS's key for signing every module it builds (made by its first build,
# enrolled for Secure Boot on a real machine): DKMS's, not vcam's to remove.
DKMS_OWN = {"/var/lib/dkms/mok.key", "/var/lib/dkms/mok.pub"}
VIDEO_GID = grp.getgrnam("video").gr_gid
MEMBER, STRANGER = 4242, 4243   # uids with no passwd entry: nothing in /etc changes
USER_PATH = "/usr/local/bin:/usr/bin:/bin"


def sh(*argv, check=True, timeout=900, **kwargs):
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and r.returncode != 0:
        raise AssertionError(f"{shlex.join(map(str, argv))} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r


def make(target, *args, **kwargs):
    return sh("make", "-s", "--no-print-directory", "-C", TOP, target, *args, **kwargs)


class Overlays:
    """A tmpfs-backed overlay on each of WRITABLE: the guest may write
    there, the host's files stay as they are."""

    def __init__(self):
        self.base = Path(tempfile.mkdtemp(prefix="vcam-install-"))
        sh("mount", "-t", "tmpfs", "vcam-install", self.base)
        self.layers = {}
        for i, path in enumerate(WRITABLE):
            assert Path(path).is_dir(), f"{path} is missing: lab/setup.sh installs dkms"
            lower, upper, work = (self.base / f"{kind}{i}" for kind in ("lower", "upper", "work"))
            for d in (lower, upper, work):
                d.mkdir()
            sh("mount", "--bind", path, lower)
            sh("mount", "-t", "overlay", "vcam-install", "-o",
               f"lowerdir={lower},upperdir={upper},workdir={work}", path)
            self.layers[path] = (lower, upper)

    def changes(self):
        """What differs from the system underneath: paths added (a new
        directory as DIR/, not its contents) or changed, and those removed
        (overlayfs' whiteouts)."""
        found = []
        for path, (lower, upper) in self.layers.items():
            for root, dirs, files in os.walk(upper):
                for name in list(dirs) + files:
                    u = Path(root) / name
                    rel = u.relative_to(upper)
                    l, st = lower / rel, u.lstat()
                    if f"{path}/{rel}" in DKMS_OWN:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        if not l.is_dir() or l.is_symlink():
                            found.append(f"{path}/{rel}/")
                            dirs.remove(name)
                        continue
                    elif stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                        found.append(f"{path}/{rel} (removed)")
                        continue
                    elif stat.S_ISREG(st.st_mode):
                        # depmod rewrites its indexes: the same bytes are no change
                        same = l.is_file() and not l.is_symlink() and filecmp.cmp(u, l, shallow=False)
                    else:
                        same = False
                    if not same:
                        found.append(f"{path}/{rel}")
        return sorted(found)

    def state(self):
        """Every entry of the upper layers with its size and mtime."""
        return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns)
                for _, upper in self.layers.values() for p in upper.rglob("*")}

    def remove(self):
        for path, (lower, _) in reversed(self.layers.items()):
            sh("umount", "-l", path, check=False)
            sh("umount", "-l", lower, check=False)
        sh("umount", "-l", self.base, check=False)
        self.base.rmdir()


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


def unload_vcam():
    for _ in range(50):
        if not Path("/sys/module/vcam").exists() or sh("rmmod", "vcam", check=False).returncode == 0:
            return
        time.sleep(0.2)
    sh("rmmod", "vcam")


@pytest.fixture(scope="module")
def system():
    """The guest as a user's machine before make install: the runner's
    vcam unloaded (and loaded again afterwards), the overlays, udevd."""
    assert WHEELS.is_dir(), f"{WHEELS} is missing: lab/setup.sh fetches the wheels the guest's install needs"
    unload_vcam()
    overlays = Overlays()
    udevd = None
    try:
        udevd = Udevd()
        yield overlays
    finally:
        sh(INSTALL_SH, "uninstall", check=False)
        unload_vcam()
        if udevd:
            udevd.stop()
        overlays.remove()
        if not Path("/sys/module/vcam").exists():
            for dep in filter(None, sh("modinfo", "-F", "depends", CHECKOUT_MODULE).stdout.strip().split(",")):
                sh("modprobe", dep)
            sh("insmod", CHECKOUT_MODULE)


@pytest.fixture(scope="module")
def installed(system):
    if OWN_TOOLCHAIN:
        pytest.skip(CANNOT_BUILD)
    r = make("install", f"WHEELS={WHEELS}", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


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


# --- bad input ---------------------------------------------------------------------


def test_install_without_root_is_one_line_and_changes_nothing(system):
    r = sh(*as_user(65534), INSTALL_SH, "install", check=False)
    assert r.returncode == 1
    assert r.stderr.splitlines() == ["install: error: make install changes the system: run it as root "
                                     "(sudo make install)"], r.stderr
    assert system.changes() == []


def test_install_without_the_kernels_headers_is_one_line_and_changes_nothing(system, tmp_path):
    # The running kernel's headers, hidden for this call: a private mount namespace
    hide = f"mount --bind {shlex.quote(str(tmp_path))} /usr/lib/modules/{RELEASE} && exec {INSTALL_SH} install"
    r = sh("unshare", "--mount", "--propagation", "private", "sh", "-c", hide, check=False)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"install: error: no headers for the running kernel {RELEASE} in "
                                     f"/lib/modules/{RELEASE}/build (Debian: apt install linux-headers-{RELEASE})"]
    assert system.changes() == []


@pytest.mark.skipif(not OWN_TOOLCHAIN, reason="the module builds with this system's toolchain here")
def test_an_install_whose_module_cannot_build_leaves_nothing(system):
    r = make("install", f"WHEELS={WHEELS}", check=False)
    assert r.returncode != 0, r.stderr
    assert "install: install failed; vcam removed" in r.stderr, r.stderr
    assert system.changes() == []


# --- install -------------------------------------------------------------------------


def test_install_puts_each_part_in_place(installed, system):
    created = system.changes()
    print("make install created:\n  " + "\n  ".join(created))
    expected = [
        f"/usr/src/vcam-{VERSION}/", "/var/lib/dkms/vcam/",
        f"/usr/lib/modules/{RELEASE}/updates/",
        "/usr/local/bin/vcam-producer", "/usr/local/bin/vcam-observe",
        "/usr/local/lib/udev/", "/usr/local/lib/systemd/", str(ENV_FILE),
        ("/opt/vcam/", "/opt/vcam/venv/"),   # /opt/vcam holds the lab's tools on the lab's machines
    ]
    for path in expected:
        assert set(path if isinstance(path, tuple) else [path]) & set(created), (path, created)
    assert sorted(os.listdir(f"/usr/src/vcam-{VERSION}")) == [
        "Kbuild", "Makefile", "dkms.conf", "include", *sorted(p.name for p in (TOP / "driver").glob("vcam-*.[ch]"))]
    assert list(Path(f"/usr/lib/modules/{RELEASE}/updates/dkms").glob("vcam.ko*"))
    assert RULE.is_file() and UNIT.is_file() and Path("/opt/vcam/venv/bin/vcam-observe").exists()
    conf = Path(f"/usr/src/vcam-{VERSION}/dkms.conf").read_text()
    assert f'PACKAGE_VERSION="{VERSION}"' in conf and 'AUTOINSTALL="yes"' in conf
    status = sh("dkms", "status", "-m", "vcam").stdout
    assert f"vcam/{VERSION}, {RELEASE}, x86_64: installed" in status, status
    assert os.readlink("/usr/local/bin/vcam-producer") == "/opt/vcam/venv/bin/vcam-producer"


def test_a_second_install_changes_nothing(installed, system):
    before = system.state()
    r = make("install", f"WHEELS={WHEELS}")
    assert r.stderr.splitlines()[-1].startswith(f"install: vcam {VERSION} installed:"), r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr    # nothing built, copied or linked again
    assert system.state() == before


def test_modprobe_loads_the_dkms_module_with_its_dependencies(installed):
    path = sh("modinfo", "-n", "vcam").stdout.strip()
    assert re.search(rf"/modules/{re.escape(RELEASE)}/updates/dkms/vcam\.ko", path), path
    depends = list(filter(None, sh("modinfo", "-F", "depends", "vcam").stdout.strip().split(",")))
    assert depends, "vcam depends on videobuf2"
    # Dependencies no one uses go first, so that modprobe has to load them
    sh("modprobe", "-r", "-q", *depends, check=False)
    sh("modprobe", "vcam")
    assert Path("/sys/module/vcam").exists()
    for dep in depends:
        assert Path(f"/sys/module/{dep.replace('-', '_')}").exists(), dep
    # the module loaded is the one DKMS built, not the checkout's
    assert Path("/sys/module/vcam/srcversion").read_text().strip() == \
        sh("modinfo", "-F", "srcversion", path).stdout.strip()


def test_udev_gives_dev_vcam_to_group_video(installed):
    assert Path("/sys/module/vcam").exists()
    sh("udevadm", "settle", "--timeout=60")
    st = os.stat("/dev/vcam")
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (VIDEO_GID, 0o660), (st.st_gid, oct(st.st_mode))
    # the rule itself, as udev reads it
    r = sh("udevadm", "test", "/sys/class/misc/vcam", check=False)
    assert str(RULE) in r.stdout + r.stderr, (r.stdout + r.stderr)[-2000:]


def test_a_user_in_video_streams_zero_copy_and_copy(installed):
    home = user_home(MEMBER)
    sock = home / "share.sock"
    user, env = as_user(MEMBER, VIDEO_GID), user_env(home)
    # The driver's own slot buffers: Debian 12 gives /dev/dma_heap/system
    # to root alone (and /dev/udmabuf to group kvm)
    producer = subprocess.Popen(user + ["vcam-producer", "run", "--json", "--size", "320x240", "--fps", "30",
                                        "--slot-memory", "driver", "--share", str(sock)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = producer.stdout.readline()
        if not line:
            producer.wait(30)
            raise AssertionError(f"the producer did not start: {producer.stderr.read()}")
        camera = json.loads(line)
        # capture nodes: group video from the system's own udev rules, once
        # udev has handled the new node
        sh("udevadm", "settle", "--timeout=60")
        node = os.stat(camera["device"])
        assert (node.st_gid, stat.S_IMODE(node.st_mode) & 0o060) == (VIDEO_GID, 0o060), (node.st_gid,
                                                                                       oct(node.st_mode))
        nr = camera["device_nr"]
        r = sh(*user, "vcam-producer", "consume", "--import", sock, "--frames", "30", "--verify", env=env)
        assert sysfs.stats(nr)["frames_zero_copy"] >= 30
        copied = sysfs.stats(nr)["frames_copied"]
        r = sh(*user, "vcam-producer", "consume", "--device", camera["device"], "--memory", "mmap",
               "--frames", "30", "--verify", env=env)
        assert sysfs.stats(nr)["frames_copied"] >= copied + 30, r.stdout
    finally:
        producer.send_signal(signal.SIGTERM)
        out, err = producer.communicate(timeout=60)
    assert producer.returncode == 0, err
    assert "Traceback" not in err


def test_a_user_outside_video_is_told_to_join_it(installed):
    r = sh(*as_user(STRANGER), "vcam-producer", "run", "--frames", "1", check=False,
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


def test_the_exporter_unit_verifies(installed):
    r = sh("systemd-analyze", "verify", UNIT, check=False)
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr


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


@pytest.mark.parametrize("dropped", ["CAP_BPF", "CAP_PERFMON"])
def test_each_capability_of_the_unit_is_needed(installed, dropped):
    settings = unit_service_section(UNIT)
    caps = [c for c in settings["CapabilityBoundingSet"][0].split() if c != dropped]
    r = sh(*sandboxed(settings, caps), "/opt/vcam/venv/bin/vcam-observe", "probes", check=False)
    # the command ran (the sandbox is not what failed) and bcc could not do without it
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.splitlines()[-1].startswith("vcam-observe: "), r.stderr


def test_without_cap_syslog_vcams_symbol_addresses_read_as_zero(installed):
    # probes.module_symbols() gives the BPF program vcam's vb2 ops address
    # from /proc/kallsyms; without CAP_SYSLOG every address there reads 0.
    settings = unit_service_section(UNIT)
    caps = settings["CapabilityBoundingSet"][0].split()
    assert Path("/sys/module/vcam").exists()
    read = ["sh", "-c", "grep -m1 '\\[vcam\\]$' /proc/kallsyms"]
    with_it = sh(*sandboxed(settings, caps), *read).stdout.split()[0]
    without = sh(*sandboxed(settings, [c for c in caps if c != "CAP_SYSLOG"]), *read).stdout.split()[0]
    assert int(with_it, 16) != 0 and int(without, 16) == 0, (with_it, without)


# --- the native demo ---------------------------------------------------------------------


def test_the_native_demo_uses_the_installed_module(installed, tmp_path):
    unload_vcam()
    r = sh(sys.executable, TOP / "lab" / "demo", "--native", "--batch", "--seconds", "5", "--log-dir", tmp_path,
           check=False, timeout=850)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text
    assert f"demo: using the installed vcam {VERSION} (" in text, text
    assert "updates/dkms/vcam.ko" in text
    assert "building" not in text
    assert "demo: vcam unloaded; kernel log clean" in text, text


# --- uninstall ----------------------------------------------------------------------------


def test_uninstall_leaves_nothing_behind(installed, system):
    unload_vcam()
    r = make("uninstall")
    assert r.stderr.strip() == "install: vcam removed", r.stderr
    assert system.changes() == []
    assert sh("modinfo", "vcam", check=False).returncode != 0
    assert "vcam" not in sh("dkms", "status").stdout
    # and a second uninstall finds nothing to do
    make("uninstall")
    assert system.changes() == []
