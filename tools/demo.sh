#!/bin/sh
# SPDX-License-Identifier: MIT
# make demo: mount /run/pycds, build an archive for a workload, run it stock
# and from the archive, and show the difference.
set -eu
: "${PYCDS:?}" "${PYCDS_PYTHON:?}"
top=$(cd "$(dirname "$0")/.." && pwd)
workload=${WORKLOAD:-$top/tests/workloads/stdlib6.py}
dir=/run/pycds

if [ "$(id -u)" = 0 ]; then
	if ! mountpoint -q "$dir"; then
		mkdir -p "$dir"
		mount -t tmpfs -o huge=within_size,mode=0755,nosuid,nodev,noexec pycds "$dir"
	fi
else
	dir=${TMPDIR:-/tmp}/pycds-demo
	mkdir -p "$dir"
	echo "not root: using $dir instead of a huge-page tmpfs"
fi
archive=$dir/$(basename "$workload" .py).pycds

echo "== build: $archive"
"$PYCDS" build -o "$archive" --python "$PYCDS_PYTHON" -- "$PYCDS_PYTHON" "$workload"
"$PYCDS" inspect "$archive"
"$PYCDS" verify "$archive" --python "$PYCDS_PYTHON"

echo "== output, stock and from the archive"
"$PYCDS_PYTHON" "$workload"
PYCDS_ARCHIVE=$archive PYCDS_VERBOSE=1 "$PYCDS_PYTHON" "$workload"

echo "== time, alternating runs (ratio of medians)"
"$PYCDS_PYTHON" "$top/tools/bench.py" --runs 20 --quick "$workload" --archive "$archive"
