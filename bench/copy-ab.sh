#!/bin/sh
# The copy path of two builds of vcam, A/B in one guest boot: each round
# loads OLD_KO, then NEW_KO, and runs `vcam-bench copy` and `vcam-bench
# memcpy` for 2 s at each size; one line of figures (JSON) per row.
# Asserts nothing. In the lab, with the old module built elsewhere:
#   flock /work/guest.lock lab/vm-run -- sh bench/copy-ab.sh OLD.ko driver/vcam.ko build/vcam-bench
set -eu
[ $# -eq 3 ] || { echo "usage: copy-ab.sh OLD_KO NEW_KO VCAM_BENCH" >&2; exit 2; }
old=$1 new=$2 bench=$3
for round in 1 2 3; do
	for which in old new; do
		if [ "$which" = old ]; then ko=$old; else ko=$new; fi
		rmmod vcam 2>/dev/null || true
		insmod "$ko"
		for size in "640 480" "1920 1080" "3840 2160"; do
			echo "$round $which copy $($bench copy $size 2)"
			echo "$round $which memcpy $($bench memcpy $size 2)"
		done
	done
done
rmmod vcam
insmod "$new"
