#!/usr/bin/env bash
# Builds the lab's debug kernel, once: Debian's 6.12 source with KASAN,
# lockdep, DEBUG_ATOMIC_SLEEP, DEBUG_LIST and kmemleak, plus what vcam and
# its tests need (lab/debug-kernel.config says what and why).
#
#   lab/debug-kernel.sh     (run by KERNEL=6.12-debug lab/setup.sh, as root)
#
# The base is virtme-ng's minimal config (x86_64_defconfig plus what its
# guests need), not Debian's full one: the build takes about an hour on a
# 2-core machine instead of many. It runs at nice 19 with JOBS=2 jobs.
#
# Everything lives in $VCAM_DEBUG_KERNEL (default /opt/vcam/kernels/6.12-debug):
#   src/        Debian's linux-source-6.12, unpacked
#   build/      the build tree: .config, vmlinux (the base of module BTF,
#               and symbols for a KASAN report), Module.symvers, scripts;
#               what out-of-tree modules compile against (objects pruned)
#   modules/    modules_install's tree (stripped modules, with BTF)
#   bzImage, build.log
# and is linked where lab/vm-run looks for a kernel, as for Debian's:
#   /boot/vmlinuz-<ver> -> bzImage, /lib/modules/<ver> -> modules/lib/modules/<ver>,
#   whose build and source links point at build/ and src/.
# Idempotent: a stamp (the config fragment, this script and the source's
# version) says the kernel in place is current; then nothing happens.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
dir=${VCAM_DEBUG_KERNEL:-/opt/vcam/kernels/6.12-debug}
fragment=$top/lab/debug-kernel.config
configkernel=$top/.venv/bin/virtme-configkernel
src=$dir/src
out=$dir/build
log=$dir/build.log
jobs=${JOBS:-2}
source_package=linux-source-6.12

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "lab/debug-kernel.sh needs root"
[ -x "$configkernel" ] || die "$configkernel is missing (lab/setup.sh makes the virtualenv first)"

# The tools a kernel build needs, and pahole for BTF.
packages=("$source_package" build-essential bc bison flex libelf-dev libssl-dev pahole cpio kmod xz-utils)
want=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || want+=("$p")
done
if [ ${#want[@]} -gt 0 ]; then
	say "installing ${want[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi

source_version=$(dpkg-query -W -f='${Version}' "$source_package")
stamp_want=$(cat "$fragment" "$0" <(echo "$source_version") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$stamp_want" ]; then
	kver=$(cat "$dir/kernelrelease")
	if [ -e "/boot/vmlinuz-$kver" ] && [ -e "/lib/modules/$kver/build/Makefile" ]; then
		exit 0
	fi
fi
rm -f "$dir/.stamp"
mkdir -p "$dir"

# Debian's source, unpacked once per version.
if [ "$(cat "$src/.vcam-source-version" 2>/dev/null)" != "$source_version" ]; then
	tarball=$(ls /usr/src/linux-source-6.12.tar.* | head -n 1)
	say "unpacking $tarball into $src"
	rm -rf "$src" "$src.new" "$out"
	mkdir -p "$src.new"
	tar -xaf "$tarball" -C "$src.new" --strip-components=1
	echo "$source_version" >"$src.new/.vcam-source-version"
	mv "$src.new" "$src"
fi

# virtme-ng's minimal config with the fragment on top, then olddefconfig
# (virtme-configkernel runs it); every option the fragment sets must have
# survived: a dependency that dropped one would build the wrong kernel.
say "configuring (virtme-ng's minimal config + $fragment)"
(cd "$src" && "$configkernel" --defconfig --custom "$fragment" "O=$out") >"$log" 2>&1 ||
	die "configuring the debug kernel failed (log: $log)"
missing=()
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=*) grep -qxF -- "$line" "$out/.config" || missing+=("$line") ;;
	"# CONFIG_"*" is not set") grep -qxF -- "$line" "$out/.config" || missing+=("$line") ;;
	esac
done <"$fragment"
[ ${#missing[@]} -eq 0 ] || die "options lost after olddefconfig: ${missing[*]}"

# The build: nice 19, so that guests and other work on the machine go first.
say "building the debug kernel in $out (about an hour on 2 cores; log: $log)"
started=$(date +%s)
nice -n 19 make -C "$src" "O=$out" "-j$jobs" all >>"$log" 2>&1 ||
	die "building the debug kernel failed (log: $log)"
say "built in $(( ($(date +%s) - started) / 60 )) min"
kver=$(make -s -C "$src" "O=$out" kernelrelease)

# Modules stripped of DWARF (their .BTF stays), as Debian ships them.
rm -rf "$dir/modules"
nice -n 19 make -C "$src" "O=$out" INSTALL_MOD_PATH="$dir/modules" INSTALL_MOD_STRIP=1 modules_install >>"$log" 2>&1 ||
	die "installing the debug kernel's modules failed (log: $log)"
cp "$out/arch/x86/boot/bzImage" "$dir/bzImage"

# What out-of-tree modules need stays in build/: the config, generated
# headers, scripts and objtool, Module.symvers, vmlinux. The objects,
# archives and intermediate images go (most of the space).
find "$out" \( -path "$out/scripts" -o -path "$out/tools" \) -prune -o \
	-type f \( -name '*.o' -o -name '*.ko' -o -name '*.a' -o -name '*.mod.c' -o -name '.tmp_vmlinux*' \) -print0 |
	xargs -0 rm -f
rm -f "$out/arch/x86/boot/compressed/vmlinux" "$out/arch/x86/boot/compressed/vmlinux.bin"* \
	"$out/arch/x86/boot/vmlinux.bin" "$out/arch/x86/boot/bzImage"

# Linked where lab/vm-run and the guest's modprobe and bcc look.
moddir=$dir/modules/lib/modules/$kver
ln -sfn "$out" "$moddir/build"
ln -sfn "$src" "$moddir/source"
rm -rf "/lib/modules/$kver"
ln -sfn "$moddir" "/lib/modules/$kver"
echo "$kver" >"$dir/kernelrelease"
# Last: lab/vm-run takes the image as the sign of a complete install.
ln -sfn "$dir/bzImage" "/boot/vmlinuz-$kver"
echo "$stamp_want" >"$dir/.stamp"
say "installed the debug kernel $kver ($(du -sh "$dir" | cut -f1) in $dir)"
