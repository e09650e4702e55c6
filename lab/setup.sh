#!/usr/bin/env bash
# Installs everything the lab needs, and nothing twice.
#
#   lab/setup.sh            Debian packages, the guest kernel, the virtualenv
#   KERNEL=6.1 lab/setup.sh the same with another guest kernel series
#                           (6.1, 6.12 the default, 7.2, 6.12-debug)
#
# 6.12-debug is built here from Debian's source by lab/debug-kernel.sh
# (about an hour, once; cached in /opt/vcam/kernels/6.12-debug).
#
# Idempotent: when everything is in place it changes nothing and returns in
# well under a second. Needs root, or sudo for the apt step.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
# The guest kernel series to install: Debian's newest point release of it.
kernel_series=${KERNEL:-6.12}
venv="$top/.venv"
stamp="$venv/.vcam-installed"
# The Debian python that sees python3-bpfcc (the PATH python may not).
system_python=/usr/bin/python3

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "need root (or sudo) to run: $*"
	fi
}

# Each series' installed version (a regular expression), checked before
# anything is installed. 6.1 and 6.12 come from bookworm's own sources;
# 7.2 from sid, through lab/sid-kernel.sh.
case "$kernel_series" in
6.1) kernel_pattern='6\.1\.0-[0-9]+-amd64' ;;
6.12) kernel_pattern='6\.12\.[0-9]+\+deb12-amd64' ;;
7.2) kernel_pattern='7\.2\.[0-9]+\+deb14-amd64' ;;
6.12-debug) kernel_pattern='6\.12\.[0-9]+-vcam-debug' ;;
*) die "unknown KERNEL '$kernel_series' (known: 6.1, 6.12, 6.12-debug, 7.2)" ;;
esac

[ -r /etc/debian_version ] || die "this set-up needs Debian 12 (apt); see README.md for other systems"

# What the lab runs: the guest (qemu), the module build, the BPF tools,
# the V4L2 peers (GStreamer, with the python plugin loader and bindings
# vcamsink runs on), Prometheus, and dkms (tests/test_install.py runs make
# install here, in a mount namespace of its own, for the guest's kernel).
# The guest kernel is added below.
packages=(
	qemu-system-x86 kmod busybox-static
	build-essential bc
	bpfcc-tools python3-bpfcc
	v4l-utils gstreamer1.0-tools gstreamer1.0-plugins-good ffmpeg
	gstreamer1.0-plugins-base python3-gst-1.0 gstreamer1.0-python3-plugin-loader gir1.2-gst-plugins-base-1.0
	prometheus
	python3-venv tmux curl
	dkms
)
# sid's kernel needs a sid build root for its modules.
[ "$kernel_series" = 7.2 ] && packages+=(mmdebstrap)

apt_updated=
apt_update_once() {
	[ -n "$apt_updated" ] && return
	say "apt-get update"
	as_root apt-get update -qq
	apt_updated=1
}

missing_packages() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || echo "$p"
	done
}

# Newest installed kernel of the series that has its headers, if any.
installed_kernel() {
	local v
	for v in $(ls /lib/modules 2>/dev/null | grep -E "^${kernel_pattern}\$" | sort -rV); do
		if [ -f "/boot/vmlinuz-$v" ] && [ -e "/lib/modules/$v/build/Makefile" ]; then
			echo "$v"
			return
		fi
	done
}

# Newest point release of the series that apt offers.
available_kernel() {
	apt-cache search --names-only "^linux-image-${kernel_pattern}-unsigned\$" |
		awk '{print $1}' | sed -E 's/^linux-image-(.*)-unsigned$/\1/' | sort -V | tail -n 1
}

want=($(missing_packages "${packages[@]}"))
kver=$(installed_kernel)
if [ -z "$kver" ] && [ "$kernel_series" != 7.2 ] && [ "$kernel_series" != 6.12-debug ]; then
	apt_update_once
	kver=$(available_kernel)
	[ -n "$kver" ] || die "no linux-image-$kernel_series.* (-unsigned) in apt's lists (bookworm and bookworm-security must be in the sources)"
	want+=("linux-image-$kver-unsigned" "linux-headers-$kver")
fi

if [ ${#want[@]} -gt 0 ]; then
	apt_update_once
	say "installing ${want[*]}"
	# INITRD=No: the guest boots without the distro initramfs, so skip
	# building one (it takes a minute and is never used).
	as_root env DEBIAN_FRONTEND=noninteractive INITRD=No \
		apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi

# sid is never added to the machine's sources: its kernel comes through
# an isolated apt configuration and is unpacked by hand.
if [ -z "$kver" ] && [ "$kernel_series" = 7.2 ]; then
	as_root "$top/lab/sid-kernel.sh" "$kernel_series"
fi

# v4l2-compliance from trixie (bookworm's is too old for 6.12).
if [ ! -x /opt/vcam/bin/v4l2-compliance ]; then
	say "installing v4l2-compliance from Debian 13 into /opt/vcam"
	as_root "$top/lab/install-v4l2-compliance.sh"
fi

# The virtualenv: Debian's python with system site packages so that bcc
# (python3-bpfcc) imports; the project installed editable with the lab's
# tools and make bench's plotting. Reinstalled only when pyproject.toml or
# the install mode changes. The compat mode puts the checkout on sys.path
# with a plain .pth line: the default mode's import hook cost every Python
# process in a guest a second (its imports read over 9p, under emulation).
if [ ! -x "$venv/bin/python" ]; then
	say "creating $venv"
	"$system_python" -m venv --system-site-packages "$venv"
fi
editable_mode=compat
pyproject_sha=$(sha256sum "$top/pyproject.toml" | cut -d' ' -f1)
want_stamp="$pyproject_sha $editable_mode"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want_stamp" ]; then
	say "installing the Python packages into $venv"
	"$venv/bin/pip" install -q --disable-pip-version-check \
		--config-settings editable_mode=$editable_mode -e "$top[dev,bench]"
	echo "$want_stamp" >"$stamp"
fi

# tests/test_install.py runs `make install` without the network (as a
# machine without it would, WHEELS=DIR): the Python dependencies wait
# here as wheels. Refetched only when pyproject.toml changes.
wheels="$top/build/wheels"
if [ "$(cat "$wheels/.pyproject-sha256" 2>/dev/null)" != "$pyproject_sha" ]; then
	say "downloading the Python wheels for the guest's make install into $wheels"
	rm -rf "$wheels"
	"$top/install/install.sh" wheels "$wheels"
	echo "$pyproject_sha" >"$wheels/.pyproject-sha256"
fi

# The debug kernel is built from source (it needs the virtualenv's
# virtme-configkernel); the script returns at once when it is current.
if [ "$kernel_series" = 6.12-debug ]; then
	as_root "$top/lab/debug-kernel.sh"
fi
