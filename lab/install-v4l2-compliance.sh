#!/usr/bin/env bash
# Installs a v4l2-compliance new enough for the 6.12 kernel into /opt/vcam.
#
# Debian 12's v4l-utils (1.22) predates the CREATE_BUFS changes of Linux
# 6.8 and fails every driver there (vivid included), so the lab takes
# v4l-utils from Debian 13 (trixie). It is fetched through an isolated apt
# configuration (its own sources, lists, cache and an empty dpkg status) so
# the machine's own apt state never sees trixie, unpacked with dpkg-deb, and
# run with trixie's own dynamic loader and libraries.
set -euo pipefail

dest=/opt/vcam/v4l-utils
wrapper=/opt/vcam/bin/v4l2-compliance
packages=(v4l-utils libv4l-0t64 libv4l2rds0t64 libv4lconvert0t64 libc6 libgcc-s1
	libstdc++6 libudev1 libjpeg62-turbo libcap2)

# The Debian mirror this machine already uses for bookworm.
mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' | awk '$2 == "bookworm" {print $1; exit}')
[ -n "$mirror" ] || { echo "install-v4l2-compliance: no bookworm mirror in apt's sources" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{sources,lists/partial,cache/archives/partial,debs}
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$work/sources/trixie.list"
apt_opts=(
	-o "Dir::Etc::SourceList=$work/sources/trixie.list"
	-o "Dir::Etc::SourceParts=$work/sources"
	-o "Dir::State::Lists=$work/lists"
	-o "Dir::Cache=$work/cache"
	-o "Dir::State::status=/dev/null"
	-o "APT::Sandbox::User=root"
)
apt-get -qq "${apt_opts[@]}" update
(cd "$work/debs" && apt-get -qq "${apt_opts[@]}" download "${packages[@]}")

rm -rf "$dest.new"
mkdir -p "$dest.new" "$(dirname "$wrapper")"
for deb in "$work"/debs/*.deb; do
	dpkg-deb -x "$deb" "$dest.new"
done
rm -rf "$dest"
mv "$dest.new" "$dest"

cat >"$wrapper" <<WRAPPER
#!/bin/sh
# v4l2-compliance from Debian trixie, run with trixie's own libc
# (installed by lab/install-v4l2-compliance.sh).
lib=$dest/usr/lib/x86_64-linux-gnu
exec \$lib/ld-linux-x86-64.so.2 --library-path \$lib:$dest/lib/x86_64-linux-gnu $dest/usr/bin/v4l2-compliance "\$@"
WRAPPER
chmod +x "$wrapper"
"$wrapper" --version | head -n 1 >&2
