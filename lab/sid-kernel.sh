#!/usr/bin/env bash
# Installs Debian sid's newest kernel of a series as a lab guest kernel.
#
#   lab/sid-kernel.sh 7.2       (run by KERNEL=7.2 lab/setup.sh, as root)
#
# sid is never added to the machine's sources (apt would then upgrade its
# libc and half its libraries). Instead:
#   - an isolated apt configuration (its own sources, lists and cache, an
#     empty dpkg status) finds and downloads the kernel's packages;
#   - the image and modules are unpacked to /lib/modules/<ver> (the guest
#     shares the host's root file system), the image linked from /boot, and
#     depmod run for them;
#   - a sid build root made with mmdebstrap, /opt/vcam/sid-root-<series>,
#     holds sid's gcc, make and the kernel's headers and kbuild (which need
#     sid's libc): lab/vm-run builds out-of-tree modules in it, and
#     /lib/modules/<ver>/build points into it so that bcc in the guest finds
#     the headers (the guest mounts a tmpfs over /var/cache, not over /opt).
# sid's apt state and downloads are cached in /var/cache/vcam-lab/<series>
# ($VCAM_LAB_CACHE/<series>); SID_MIRROR names another Debian mirror.
set -euo pipefail

series=${1:?usage: lab/sid-kernel.sh SERIES}
cache=${VCAM_LAB_CACHE:-/var/cache/vcam-lab}/$series
root=/opt/vcam/sid-root-$series
log=$cache/sid-kernel.log

die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'setup: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || die "lab/sid-kernel.sh needs root"

# The Debian mirror this machine already uses for bookworm, unless told.
mirror=${SID_MIRROR:-$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' | awk '$2 == "bookworm" {print $1; exit}')}
[ -n "$mirror" ] || die "no Debian mirror: none for bookworm in apt's sources and SID_MIRROR is not set"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
source_line="deb [signed-by=$keyring] $mirror sid main"

mkdir -p "$cache"/apt/{sources,lists/partial,cache/archives/partial}
echo "$source_line" >"$cache/apt/sources/sid.list"
: >"$log"
# Valid-Until is not checked: a mirror may be a dated snapshot of the
# archive; the signatures still are.
apt_opts=(
	-o "Dir::Etc::SourceList=$cache/apt/sources/sid.list"
	-o "Dir::Etc::SourceParts=$cache/apt/sources"
	-o "Dir::State::Lists=$cache/apt/lists"
	-o "Dir::Cache=$cache/apt/cache"
	-o "Dir::State::status=/dev/null"
	-o "APT::Sandbox::User=root"
	-o "Acquire::Check-Valid-Until=false"
)
sid_apt() { "$@" "${apt_opts[@]}" >>"$log" 2>&1; }

say "reading sid's package lists from $mirror"
sid_apt apt-get update --error-on=any || die "cannot read sid's package lists from $mirror (log: $log)"

# Newest point release of the series, e.g. 7.2.13+deb14-amd64.
kver=$(apt-cache "${apt_opts[@]}" search --names-only "^linux-image-${series//./\\.}\.[0-9]+\+deb[0-9]+-amd64\$" |
	awk '{print $1}' | sed 's/^linux-image-//' | sort -V | tail -n 1)
[ -n "$kver" ] || die "no linux-image-$series.*-amd64 in sid at $mirror"
abi=${kver%-amd64} # 7.2.13+deb14: the name of kbuild and -common
say "installing sid's $kver"

# The build root: sid's compiler (the one in the headers' .config) and the
# headers with their kbuild. Made afresh for a new point release.
headers=/usr/src/linux-headers-$kver
if [ ! -e "$root$headers/Makefile" ]; then
	say "making the sid build root $root (a few minutes, once)"
	rm -rf "$root.new"
	mkdir -p "$(dirname "$root")"
	mmdebstrap --mode=root --variant=minbase \
		--aptopt='Acquire::Check-Valid-Until "false"' \
		--include="make,libc6-dev,linux-headers-$kver" \
		sid "$root.new" "$source_line" >>"$log" 2>&1 ||
		die "cannot make the sid build root with linux-headers-$kver from $mirror (log: $log)"
	compiler=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="x86_64-linux-gnu-\(gcc-[0-9]*\) .*/\1/p' "$root.new$headers/.config")
	[ -x "$root.new/usr/bin/x86_64-linux-gnu-$compiler" ] ||
		die "the sid build root lacks ${compiler:-the compiler} named in $headers/.config (log: $log)"
	rm -rf "$root"
	mv "$root.new" "$root"
fi

# The image and its modules, unpacked where the guest looks for them.
debs=$cache/debs
rm -rf "$debs" "$cache/unpack"
mkdir -p "$debs" "$cache/unpack"
(cd "$debs" && sid_apt apt-get download "linux-base-$kver" "linux-binary-$kver" "linux-modules-$kver") ||
	die "cannot download linux-base/binary/modules-$kver from sid at $mirror (log: $log)"
for deb in "$debs"/*.deb; do
	dpkg-deb -x "$deb" "$cache/unpack"
done
rm -rf "/lib/modules/$kver"
mv "$cache/unpack/usr/lib/modules/$kver" "/lib/modules/$kver"
rm -rf "$debs" "$cache/unpack"
ln -sfn "$root$headers" "/lib/modules/$kver/build"
ln -sfn "$root/usr/src/linux-headers-$abi-common" "/lib/modules/$kver/source"
depmod -a "$kver"
# Last: lab/setup.sh and lab/vm-run take the image as the sign of a
# complete install.
ln -sfn "/lib/modules/$kver/vmlinuz" "/boot/vmlinuz-$kver"
say "installed $kver"
