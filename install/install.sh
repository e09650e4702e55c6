#!/usr/bin/env bash
# Installs vcam on this machine, or removes it (make install / make uninstall).
#
#   install/install.sh install     the module (DKMS), the udev rule, the
#                                  commands (a virtual environment in /opt/vcam),
#                                  the exporter's systemd unit and the
#                                  GStreamer sink vcamsink
#   install/install.sh uninstall   removes all of that
#   install/install.sh wheels DIR  downloads the Python dependencies into DIR
#                                  (for an install without network:
#                                  WHEELS=DIR install/install.sh install)
#
# The module is built for the running kernel, or for KVER=<release> (a
# kernel installed but not yet booted).
#
# What goes where is listed below; uninstall removes exactly those paths.
set -Eeuo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
here="$top/install"
# The version lives in pyproject.toml alone; the DKMS package takes it from there.
version=$(sed -nE 's/^version = "([^"]+)"$/\1/p' "$top/pyproject.toml")
# Debian's python: the one python3-bpfcc (bcc) is installed for.
system_python=${VCAM_SYSTEM_PYTHON:-/usr/bin/python3}

src=/usr/src/vcam-$version
venv_root=/opt/vcam
venv=$venv_root/venv
bindir=/usr/local/bin
commands=(vcam-producer vcam-observe)
# Files shipped with vcam go under /usr/local (udev and systemd read
# both); an admin's own copy in /etc/udev/rules.d or /etc/systemd/system
# overrides them. The environment file is configuration: /etc.
rule=/usr/local/lib/udev/rules.d/60-vcam.rules
unit=/usr/local/lib/systemd/system/vcam-exporter.service
envfile=/etc/default/vcam-exporter
# vcamsink, the GStreamer sink: GStreamer's python plugin loader
# (gstreamer1.0-python3-plugin-loader) scans only its own folder's python/
# (and GST_PLUGIN_PATH's, which a system-wide install cannot count on), so
# this one file goes next to Debian's plugins. It imports vcam from $venv.
gst_plugin=
for gst_loader in /usr/lib/*/gstreamer-1.0/libgstpython.so /usr/lib*/gstreamer-1.0/libgstpython.so; do
	[ -e "$gst_loader" ] && { gst_plugin=$(dirname "$gst_loader")/python/vcamsink.py; break; }
done

say() { printf 'install: %s\n' "$*" >&2; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

need_root() {
	[ "$(id -u)" -eq 0 ] || die "make $1 changes the system: run it as root (sudo make $1)"
}

# The kernel the module is built for.
kver=${KVER:-$(uname -r)}
if [ -n "${KVER:-}" ]; then which_kernel="kernel $kver"; else which_kernel="running kernel $kver"; fi

have_systemctl() { command -v systemctl >/dev/null && [ -d /run/systemd/system ]; }

# Everything install checks before it changes anything.
preflight() {
	need_root install
	[ -n "$version" ] || die "no version in $top/pyproject.toml"
	local driver_version
	[ -e "/lib/modules/$kver/build/Makefile" ] ||
		die "no headers for the $which_kernel in /lib/modules/$kver/build (Debian: apt install linux-headers-$kver)"
	command -v dkms >/dev/null || die "dkms is not installed (Debian: apt install dkms)"
	[ -x "$system_python" ] || die "$system_python is missing (Debian: apt install python3)"
	"$system_python" -c 'import ensurepip, venv' 2>/dev/null ||
		die "$system_python cannot make a virtual environment (Debian: apt install python3-venv)"
	getent group video >/dev/null || die "there is no group 'video' on this system"
	# MODULE_VERSION must agree with the package's version: modinfo and
	# dkms status would otherwise tell two stories.
	driver_version=$(sed -nE 's/^MODULE_VERSION\("([^"]+)"\);/\1/p' "$top"/driver/*.c)
	[ "$driver_version" = "$version" ] ||
		die "driver/ says MODULE_VERSION(\"$driver_version\") but pyproject.toml says $version: make them agree"
	if [ -n "${WHEELS:-}" ]; then
		[ -d "$WHEELS" ] || die "WHEELS=$WHEELS is not a directory (install/install.sh wheels DIR makes one)"
	fi
}

# Install a file only when it differs: a second install changes nothing.
put() {
	local mode=$1 from=$2 to=$3
	if ! cmp -s "$from" "$to"; then
		install -D -m "$mode" "$from" "$to"
		say "installed $to"
	fi
}

install_module() {
	# DKMS keeps one source tree per version; other versions are removed
	# so that exactly one vcam is built for each kernel.
	local other
	for other in $(dkms_versions); do
		[ "$other" = "$version" ] || quiet dkms remove -m vcam -v "$other" --all
	done
	local stage
	stage=$(mktemp -d)
	mkdir -p "$stage/include/uapi/linux"
	cp "$top"/driver/Kbuild "$top"/driver/Makefile "$top"/driver/vcam-*.c "$top"/driver/vcam-*.h "$stage/"
	cp "$top"/driver/include/uapi/linux/vcam.h "$stage/include/uapi/linux/"
	sed "s/@VERSION@/$version/" "$top/driver/dkms.conf" >"$stage/dkms.conf"
	if ! diff -r "$stage" "$src" >/dev/null 2>&1; then
		# Changed sources: DKMS rebuilds from a fresh tree.
		dkms remove -m vcam -v "$version" --all >/dev/null 2>&1 || true
		rm -rf "$src"
		mkdir -p "$(dirname "$src")"
		cp -r "$stage" "$src"
		chmod -R u=rwX,go=rX "$src"
		say "installed the module's source in $src"
	fi
	rm -rf "$stage"
	dkms status -m vcam -v "$version" 2>/dev/null | grep -q . || quiet dkms add -m vcam -v "$version"
	if ! dkms status -m vcam -v "$version" -k "$kver" 2>/dev/null | grep -q ': installed'; then
		say "building vcam $version for $kver with DKMS"
		local log
		log=$(mktemp)
		if ! dkms install -m vcam -v "$version" -k "$kver" >"$log" 2>&1; then
			cat "$log" >&2
			local make_log="/var/lib/dkms/vcam/$version/build/make.log"
			[ -f "$make_log" ] && tail -n 20 "$make_log" >&2
			rm -f "$log"
			return 1
		fi
		rm -f "$log"
	fi
}

# A command whose chatter (dkms' readelf warnings) matters only when it fails.
quiet() {
	local out
	if ! out=$("$@" 2>&1); then
		printf '%s\n' "$out" >&2
		return 1
	fi
}

dkms_versions() {
	# "vcam/0.1.0, 6.12.1, x86_64: installed" or "vcam/0.1.0: added"
	dkms status -m vcam 2>/dev/null | sed -nE 's|^vcam/([^,:]+)[,:].*|\1|p' | sort -u
}

# The package from this checkout, built in a scratch copy: the checkout
# stays untouched (it may be read-only, or a user's own files).
install_python() {
	if [ ! -x "$venv/bin/python" ]; then
		mkdir -p "$venv_root"
		# System site packages: bcc (python3-bpfcc) is a Debian package.
		"$system_python" -m venv --system-site-packages "$venv"
		say "created $venv"
	fi
	local scratch stamp pip_from=()
	scratch=$(mktemp -d)
	mkdir -p "$scratch/src"
	cp -r "$top/pyproject.toml" "$top/README.md" "$top/producer" "$top/observe" "$scratch/src/"
	find "$scratch/src" -name __pycache__ -prune -exec rm -rf {} +
	# The sources' checksum: a second install of the same sources changes nothing.
	stamp=$(cd "$scratch/src" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
	if [ "$(cat "$venv/.vcam-sources" 2>/dev/null)" != "$stamp" ]; then
		[ -n "${WHEELS:-}" ] && pip_from=(--no-index --find-links "$WHEELS")
		local pip=("$venv/bin/pip" --disable-pip-version-check --no-cache-dir -q)
		# The dependencies first, then this build of vcam over any older one
		# of the same version.
		if ! "${pip[@]}" wheel --no-deps -w "$scratch/wheel" "${pip_from[@]}" "$scratch/src" >"$scratch/log" 2>&1 ||
			! "${pip[@]}" install "${pip_from[@]}" "$scratch"/wheel/vcam-*.whl >>"$scratch/log" 2>&1 ||
			! "${pip[@]}" install --force-reinstall --no-deps "$scratch"/wheel/vcam-*.whl >>"$scratch/log" 2>&1; then
			cat "$scratch/log" >&2
			rm -rf "$scratch"
			return 1
		fi
		echo "$stamp" >"$venv/.vcam-sources"
		say "installed vcam $version and its dependencies in $venv"
	fi
	rm -rf "$scratch"
	local c
	for c in "${commands[@]}"; do
		[ "$(readlink "$bindir/$c" 2>/dev/null)" = "$venv/bin/$c" ] && continue
		mkdir -p "$bindir"
		ln -sfn "$venv/bin/$c" "$bindir/$c"
		say "linked $bindir/$c"
	done
}

install_files() {
	put 0644 "$here/60-vcam.rules" "$rule"
	if [ -n "$gst_plugin" ]; then
		put 0644 "$top/producer/gstreamer/python/vcamsink.py" "$gst_plugin"
	else
		say "note: no GStreamer python plugin loader, so no vcamsink (Debian: apt install gstreamer1.0-python3-plugin-loader python3-gst-1.0, then make install again)"
	fi
	put 0644 "$here/vcam-exporter.service" "$unit"
	# The admin's settings survive a reinstall (like a conffile).
	[ -e "$envfile" ] || put 0644 "$here/vcam-exporter.default" "$envfile"
	if command -v udevadm >/dev/null && [ -d /run/udev ]; then
		udevadm control --reload 2>/dev/null || true
		# A vcam loaded already gets the rule now, not at the next load.
		[ -e /sys/class/misc/vcam ] && udevadm trigger --action=change /sys/class/misc/vcam || true
	fi
	if have_systemctl; then systemctl daemon-reload; fi
}

do_install() {
	preflight
	# A failure part way removes what this run put in place: either vcam
	# is installed whole or not at all.
	trap 'remove_all >/dev/null 2>&1 || true; say "install failed; vcam removed (the reason is above)"; exit 1' ERR
	install_module
	install_python
	install_files
	trap - ERR
	say "vcam $version installed: modprobe vcam; vcam-producer and vcam-observe in $bindir;" \
		"members of group video use /dev/vcam; systemctl enable --now vcam-exporter"
}

remove_all() {
	if have_systemctl && systemctl is-active -q vcam-exporter 2>/dev/null; then
		systemctl disable --now vcam-exporter >/dev/null 2>&1 || true
	elif have_systemctl; then
		systemctl disable vcam-exporter >/dev/null 2>&1 || true
	fi
	# A loaded vcam keeps running until unloaded; its files go now.
	local v
	for v in $(dkms_versions); do
		quiet dkms remove -m vcam -v "$v" --all
	done
	rm -rf /usr/src/vcam-*
	rm -f "$rule" "$unit" "$envfile"
	if [ -n "$gst_plugin" ]; then
		rm -f "$gst_plugin"
		rmdir "$(dirname "$gst_plugin")" 2>/dev/null || true
	fi
	local c
	for c in "${commands[@]}"; do
		# Only our own links: another vcam-producer there is not ours to remove.
		[ "$(readlink "$bindir/$c" 2>/dev/null)" = "$venv/bin/$c" ] && rm -f "$bindir/$c"
	done
	rm -rf "$venv"
	# /opt/vcam may hold other things (the lab's tools): removed only when empty.
	rmdir "$venv_root" 2>/dev/null || true
	# The directories install may have made, when nothing else is in them.
	rmdir /usr/local/lib/udev/rules.d /usr/local/lib/udev /usr/local/lib/systemd/system /usr/local/lib/systemd \
		2>/dev/null || true
	if have_systemctl; then systemctl daemon-reload; fi
	if command -v udevadm >/dev/null && [ -d /run/udev ]; then udevadm control --reload 2>/dev/null || true; fi
	return 0
}

do_uninstall() {
	need_root uninstall
	remove_all
	if [ -e /sys/module/vcam ]; then
		say "vcam removed; the module loaded now stays until 'rmmod vcam' or a reboot"
	else
		say "vcam removed"
	fi
}

do_wheels() {
	local dir=${1:-}
	[ -n "$dir" ] || die "say where: install/install.sh wheels DIR"
	mkdir -p "$dir"
	local scratch
	scratch=$(mktemp -d)
	# A throwaway pip of the same python as the install's venv.
	"$system_python" -m venv "$scratch/venv"
	mkdir -p "$scratch/src"
	cp -r "$top/pyproject.toml" "$top/README.md" "$top/producer" "$top/observe" "$scratch/src/"
	# The dependencies as wheels, and what building vcam's own wheel needs.
	"$scratch/venv/bin/pip" --disable-pip-version-check -q wheel -w "$scratch/all" "$scratch/src"
	"$scratch/venv/bin/pip" --disable-pip-version-check -q download -d "$scratch/all" "setuptools>=61" wheel
	rm -f "$scratch"/all/vcam-*.whl
	cp -n "$scratch"/all/* "$dir/"
	rm -rf "$scratch"
	say "Python wheels for vcam's dependencies in $dir"
}

case "${1:-}" in
install) do_install ;;
uninstall) do_uninstall ;;
wheels) do_wheels "${2:-}" ;;
*) die "usage: install/install.sh install | uninstall | wheels DIR" ;;
esac
