"""make install / make uninstall as on a user's machine, for the lab's
guest kernel: DKMS builds vcam, the commands and the exporter's unit go in
place, a second install changes nothing, and uninstall leaves nothing.

The install runs here, on the host, at native speed, inside a private
mount namespace whose /etc, /usr, /var and /opt are overlays with a tmpfs
upper layer: nothing reaches the host, and what the upper layers hold is
exactly what make install (or uninstall) changed. It builds the module for
the guest's kernel (KVER). The guest is then booted from inside that
namespace, so it sees the installed system as its own root file system,
and tests/guest_installed.py checks there that the installed vcam works:
modprobe by name, udev's group and mode, an ordinary user streaming, the
exporter's unit running with its capabilities alone.

Host tier (no marker): it boots its own guest, like tests/test_lab_runner.py.
"""

import filecmp
import os
import re
import shlex
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from labtools import TOP, VM_RUN, run_command, vmrun

pytestmark = pytest.mark.own_guest   # its install ends in a guest of its own

SERIES = os.environ.get("KERNEL") or vmrun.DEFAULT_KERNEL
KVER = vmrun.find_kernel(SERIES)
# DKMS builds with the system's own compiler; sid's 7.2 headers want sid's
# (the lab builds vcam for 7.2 in its sid build root, lab/sid-kernel.sh).
OWN_TOOLCHAIN = vmrun.build_root_of(KVER) is not None
CANNOT_BUILD = (f"DKMS cannot build vcam for {KVER} with this system's toolchain: its headers were made with "
                "their build root's (7.2: sid's gcc 16, glibc 2.38), this system's is Debian 12's (gcc 12, "
                "glibc 2.36)")

VERSION = re.search(r'^version = "([^"]+)"$', (TOP / "pyproject.toml").read_text(), re.M).group(1)
WHEELS = TOP / "build" / "wheels"
# Where make install and DKMS write, and whatever else a package could.
WRITABLE = ["/etc", "/usr", "/var", "/opt"]
UNIT = "/usr/local/lib/systemd/system/vcam-exporter.service"
RULE = "/usr/local/lib/udev/rules.d/60-vcam.rules"
ENV_FILE = "/etc/default/vcam-exporter"
# DKMS's key for signing every module it builds (made by its first build,
# enrolled for Secure Boot on a real machine): DKMS's, not vcam's to remove.
DKMS_OWN = {"/var/lib/dkms/mok.key", "/var/lib/dkms/mok.pub"}


class Machine:
    """A private mount namespace (held open by a sleeping process) with a
    tmpfs-backed overlay on each of WRITABLE: commands run in it with
    run(), its files are read from outside through path()."""

    def __init__(self):
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "infinity"])
        ours = os.readlink("/proc/self/ns/mnt")
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{self.holder.pid}/ns/mnt") == ours:
            assert time.monotonic() < deadline, "unshare made no mount namespace"
            time.sleep(0.05)
        self.base = Path(tempfile.mkdtemp(prefix="vcam-install-"))
        self.run("mount", "-t", "tmpfs", "vcam-install", self.base)
        self.layers = {}
        for i, path in enumerate(WRITABLE):
            lower, upper, work = (self.base / f"{kind}{i}" for kind in ("lower", "upper", "work"))
            self.run("mkdir", lower, upper, work)
            self.run("mount", "--bind", path, lower)
            self.run("mount", "-t", "overlay", "vcam-install", "-o",
                     f"lowerdir={lower},upperdir={upper},workdir={work}", path)
            self.layers[path] = (lower, upper)

    def run(self, *argv, **kwargs):
        return run_command("nsenter", "-t", self.holder.pid, "-m", f"--wd={TOP}", "--", *argv, **kwargs)

    def path(self, path):
        """PATH as the namespace sees it."""
        return Path(f"/proc/{self.holder.pid}/root{path}")

    def changes(self):
        """What differs from the system underneath: paths added (a new
        directory as DIR/, not its contents) or changed, and those removed
        (overlayfs' whiteouts)."""
        found = []
        for path, (lower, upper) in self.layers.items():
            lower, upper = self.path(lower), self.path(upper)
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
                for _, upper in self.layers.values() for p in self.path(upper).rglob("*")}

    def close(self):
        # The namespace's mounts, the tmpfs among them, go with its last process.
        self.holder.kill()
        self.holder.wait()
        self.base.rmdir()


@pytest.fixture(scope="module")
def machine():
    assert WHEELS.is_dir(), f"{WHEELS} is missing: lab/setup.sh fetches the wheels make install takes here"
    m = Machine()
    try:
        yield m
    finally:
        m.close()


def make_install(machine, check=True):
    return machine.run("make", "-s", "--no-print-directory", "-C", TOP, "install", f"KVER={KVER}",
                       f"WHEELS={WHEELS}", check=check)


@pytest.fixture(scope="module")
def installed(machine):
    if OWN_TOOLCHAIN:
        pytest.skip(CANNOT_BUILD)
    r = make_install(machine, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


# --- bad input ---------------------------------------------------------------------


def test_install_without_root_is_one_line_and_changes_nothing(machine):
    r = machine.run("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                    TOP / "install" / "install.sh", "install", check=False)
    assert r.returncode == 1
    assert r.stderr.splitlines() == ["install: error: make install changes the system: run it as root "
                                     "(sudo make install)"], r.stderr
    assert machine.changes() == []


def test_install_without_the_kernels_headers_is_one_line_and_changes_nothing(machine, tmp_path):
    # The kernel's headers, hidden for this call by a mount namespace of its own
    hide = (f"mount --bind {shlex.quote(str(tmp_path))} /usr/lib/modules/{KVER}/build && "
            f"exec make -s -C {shlex.quote(str(TOP))} install KVER={KVER}")
    r = machine.run("unshare", "--mount", "--propagation", "private", "sh", "-c", hide, check=False)
    assert r.returncode != 0
    assert r.stderr.splitlines()[0] == (f"install: error: no headers for the kernel {KVER} in "
                                        f"/lib/modules/{KVER}/build (Debian: apt install linux-headers-{KVER})"), \
        r.stderr
    assert machine.changes() == []


@pytest.mark.skipif(not OWN_TOOLCHAIN, reason="the module builds with this system's toolchain here")
def test_an_install_whose_module_cannot_build_leaves_nothing(machine):
    r = make_install(machine, check=False)
    assert r.returncode != 0, r.stderr
    assert "install: install failed; vcam removed" in r.stderr, r.stderr
    assert machine.changes() == []


# --- install -------------------------------------------------------------------------


def test_install_puts_each_part_in_place(installed, machine):
    created = machine.changes()
    print("make install created:\n  " + "\n  ".join(created))
    expected = [
        f"/usr/src/vcam-{VERSION}/", "/var/lib/dkms/vcam/",
        f"/usr/lib/modules/{KVER}/updates/",
        "/usr/local/bin/vcam-producer", "/usr/local/bin/vcam-observe",
        "/usr/local/lib/udev/", "/usr/local/lib/systemd/", ENV_FILE,
        ("/opt/vcam/", "/opt/vcam/venv/"),   # /opt/vcam holds the lab's tools on the lab's machines
    ]
    for path in expected:
        assert set(path if isinstance(path, tuple) else [path]) & set(created), (path, created)
    src = machine.path(f"/usr/src/vcam-{VERSION}")
    assert sorted(os.listdir(src)) == [
        "Kbuild", "Makefile", "dkms.conf", "include", *sorted(p.name for p in (TOP / "driver").glob("vcam-*.[ch]"))]
    assert list(machine.path(f"/usr/lib/modules/{KVER}/updates/dkms").glob("vcam.ko*"))
    assert machine.path(RULE).is_file() and machine.path(UNIT).is_file()
    conf = (src / "dkms.conf").read_text()
    assert f'PACKAGE_VERSION="{VERSION}"' in conf and 'AUTOINSTALL="yes"' in conf
    status = machine.run("dkms", "status", "-m", "vcam").stdout
    assert f"vcam/{VERSION}, {KVER}, x86_64: installed" in status, status
    assert os.readlink(machine.path("/usr/local/bin/vcam-producer")) == "/opt/vcam/venv/bin/vcam-producer"
    r = machine.run("/usr/local/bin/vcam-producer", "--version")
    assert r.stdout.split() == ["vcam-producer", VERSION], r.stdout


def test_a_second_install_changes_nothing(installed, machine):
    before = machine.state()
    r = make_install(machine)
    assert r.stderr.splitlines()[-1].startswith(f"install: vcam {VERSION} installed:"), r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr    # nothing built, copied or linked again
    assert machine.state() == before


def test_the_exporter_unit_verifies(installed, machine):
    r = machine.run("systemd-analyze", "verify", UNIT, check=False)
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr


def test_the_installed_vcam_works_in_the_guest(installed, machine):
    """The guest, booted from inside the namespace, without the checkout's
    module: tests/guest_installed.py there."""
    r = machine.run(VM_RUN, "--kernel", SERIES, "--no-driver", "--", "pytest", "-p", "no:cacheprovider",
                    "tests/guest_installed.py", check=False, timeout=1500)
    print(r.stdout + r.stderr)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    assert re.search(r"=+ \d+ passed", r.stdout), r.stdout[-3000:]


# --- uninstall ----------------------------------------------------------------------------


def test_uninstall_leaves_nothing_behind(installed, machine):
    r = machine.run("make", "-s", "--no-print-directory", "-C", TOP, "uninstall")
    assert r.stderr.strip() == "install: vcam removed", r.stderr
    assert machine.changes() == []
    assert machine.run("modinfo", "-k", KVER, "vcam", check=False).returncode != 0
    assert "vcam" not in machine.run("dkms", "status").stdout
    # and a second uninstall finds nothing to do
    machine.run("make", "-s", "--no-print-directory", "-C", TOP, "uninstall")
    assert machine.changes() == []
