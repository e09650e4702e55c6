#!/bin/bash
# The demo's guest half, for now a tour of the lab: the guest kernel, the
# vcam module, and a real V4L2 driver (vivid) streaming to v4l2-ctl.
# The full demo (two vcam cameras, zero-copy and copy, the live TUI)
# replaces this with the demo issue.
set -euo pipefail

echo "guest kernel: $(uname -r)"
if [ -e /sys/module/vcam ]; then
	echo "vcam module:  loaded ($(cat /sys/module/vcam/refcnt) users)"
else
	echo "vcam module:  not built yet (driver/ has no sources)"
fi

modprobe vivid n_devs=1
trap 'modprobe -r vivid' EXIT
for dev in /sys/class/video4linux/*; do
	[ "$(cat "$dev/name")" = vivid-000-vid-cap ] && node=/dev/${dev##*/}
done
echo "streaming 60 frames from vivid ($node) to v4l2-ctl..."
start=$(date +%s.%N)
v4l2-ctl -d "$node" --stream-mmap=4 --stream-count=60 --stream-to=/dev/null 2>&1 | tr -d '\n' | tr -cd '<' | wc -c |
	xargs printf 'frames received: %s\n'
printf 'elapsed: %.1f s (software-emulated guest)\n' "$(echo "$(date +%s.%N) - $start" | bc)"
