#!/usr/bin/env bash
# Builds v4l2loopback for a lab guest kernel, for make bench's comparison.
#
#   lab/v4l2loopback.sh [SERIES]   prints the path of v4l2loopback.ko
#
# The source is Debian sid's v4l2loopback-dkms 0.15.4 (a plain Kbuild
# module in usr/src/v4l2loopback-0.15.4), found and downloaded through an
# isolated apt configuration like lab/sid-kernel.sh's (sid never enters
# the machine's sources), unpacked with dpkg-deb and built with
# make -C /lib/modules/<ver>/build M=..., as lab/vm-run builds vcam.
# The download and source are cached in /var/cache/vcam-lab/v4l2loopback,
# the module in /opt/vcam/v4l2loopback/<ver> ($V4L2LOOPBACK_BUILD/<ver>; the
# guest mounts a tmpfs over /var/cache, not over /opt), so a second run
# prints the path at once. SID_MIRROR names another Debian mirror. Any failure is one line on stderr
# and status 1; make bench then runs vcam's rows alone.
set -euo pipefail

version=0.15.4
series=${1:-${KERNEL:-6.12}}
top=$(cd "$(dirname "$0")/.." && pwd)
cache=${VCAM_LAB_CACHE:-/var/cache/vcam-lab}/v4l2loopback
log=$cache/v4l2loopback.log

die() { printf 'v4l2loopback: %s\n' "$*" >&2; exit 1; }

kver=$(cd "$top" && .venv/bin/python -c 'import sys; sys.path.insert(0, "lab"); from vmrun import find_kernel; print(find_kernel(sys.argv[1]))' "$series" 2>/dev/null) ||
	die "no $series guest kernel with headers installed (make setup)"
out=${V4L2LOOPBACK_BUILD:-/opt/vcam/v4l2loopback}/$kver
if [ -f "$out/v4l2loopback.ko" ]; then
	echo "$out/v4l2loopback.ko"
	exit 0
fi
# sid's kbuild needs sid's libc: only kernels built on the host (6.1, 6.12).
[ "$(readlink -f "/lib/modules/$kver/build")" = "/usr/src/linux-headers-$kver" ] ||
	die "$kver's modules are built in a build root; the bench builds v4l2loopback for 6.1 and 6.12 only"
mkdir -p "$cache" "$(dirname "$out")"
: >"$log"

src=$cache/src/usr/src/v4l2loopback-$version
if [ ! -f "$src/Kbuild" ] && [ ! -f "$src/Makefile" ]; then
	mirror=${SID_MIRROR:-$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' | awk '$2 == "bookworm" {print $1; exit}')}
	[ -n "$mirror" ] || die "no Debian mirror: none for bookworm in apt's sources and SID_MIRROR is not set"
	apt=$cache/apt
	mkdir -p "$apt"/{sources,lists/partial,cache/archives/partial} "$cache/debs"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main" >"$apt/sources/sid.list"
	apt_opts=(
		-o "Dir::Etc::SourceList=$apt/sources/sid.list"
		-o "Dir::Etc::SourceParts=$apt/sources"
		-o "Dir::State::Lists=$apt/lists"
		-o "Dir::Cache=$apt/cache"
		-o "Dir::State::status=/dev/null"
		-o "APT::Sandbox::User=root"
		-o "Acquire::Check-Valid-Until=false"
	)
	apt-get "${apt_opts[@]}" update --error-on=any >>"$log" 2>&1 ||
		die "cannot read sid's package lists from $mirror (log: $log)"
	# The exact Debian revision of 0.15.4 that sid has, e.g. 0.15.4-2.
	debver=$(apt-cache "${apt_opts[@]}" madison v4l2loopback-dkms | awk -F' *[|] *' -v v="$version" 'index($2, v "-") == 1 {print $2; exit}')
	[ -n "$debver" ] || die "sid at $mirror has no v4l2loopback-dkms $version"
	rm -f "$cache"/debs/*.deb
	(cd "$cache/debs" && apt-get "${apt_opts[@]}" download "v4l2loopback-dkms=$debver" >>"$log" 2>&1) ||
		die "cannot download v4l2loopback-dkms $debver from $mirror (log: $log)"
	rm -rf "$cache/src"
	dpkg-deb -x "$cache"/debs/v4l2loopback-dkms_*.deb "$cache/src"
	[ -d "$src" ] || die "v4l2loopback-dkms $debver holds no usr/src/v4l2loopback-$version"
fi

# Built in a copy per kernel, so the unpacked source stays as Debian ships it.
rm -rf "$out.new"
cp -r "$src" "$out.new"
make -C "/lib/modules/$kver/build" M="$out.new" modules >>"$log" 2>&1 ||
	die "building v4l2loopback $version for $kver failed (log: $log)"
rm -rf "$out"
mv "$out.new" "$out"
echo "$out/v4l2loopback.ko"
