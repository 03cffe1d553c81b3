#!/bin/sh
# SPDX-License-Identifier: MIT
# make demo: mount /run/pycds, build an archive for a workload, run it stock
# and from the archive, and show the difference.
set -eu
: "${PYCDS:?}" "${PYCDS_PYTHON:?}" "${PYCDS_LOADER:?}"
top=$(cd "$(dirname "$0")/.." && pwd)
workload=${WORKLOAD:-$top/tests/workloads/stdlib6.py}
dir=/run/pycds

src=${PYCDS_SOURCE:-$top/build/demo-src}
mkdir -p "$src"
name=$(basename "$workload" .py).pycds

echo "== build: $src/$name"
"$PYCDS" build -o "$src/$name" --python "$PYCDS_PYTHON" -- "$PYCDS_PYTHON" "$workload"
"$PYCDS" inspect "$src/$name"
"$PYCDS" verify "$src/$name" --python "$PYCDS_PYTHON"

if [ "$(id -u)" = 0 ]; then
	echo "== publish: pycds-loader --mount $dir --source $src"
	"$PYCDS_LOADER" --mount "$dir" --source "$src"
	"$PYCDS_LOADER" --status --mount "$dir"
else
	dir=$src
	echo "not root: using $dir instead of a huge-page tmpfs"
fi
archive=$dir/$name

echo "== output, stock and from the archive"
"$PYCDS_PYTHON" "$workload"
PYCDS_ARCHIVE=$archive PYCDS_VERBOSE=1 "$PYCDS_PYTHON" "$workload"

echo "== time, alternating runs (ratio of medians)"
"$PYCDS_PYTHON" "$top/tools/bench.py" --runs 20 --quick "$workload" --archive "$archive"

if [ "$(id -u)" = 0 ] && [ -n "${PYCDS_TOP:-}" ]; then
	echo "== pycds-top snapshot: one process from the archive, one stock"
	"$PYCDS_TOP" -b -n 1 -d 4 --python "$PYCDS_PYTHON" 2>/dev/null &
	top=$!
	sleep 1
	PYCDS_ARCHIVE=$archive "$PYCDS_PYTHON" -c "import runpy, sys, time; sys.argv=['$workload']; runpy.run_path('$workload', run_name='__main__'); time.sleep(4)" >/dev/null &
	"$PYCDS_PYTHON" -c "import runpy, sys, time; sys.argv=['$workload']; runpy.run_path('$workload', run_name='__main__'); time.sleep(4)" >/dev/null &
	wait $top
	wait
fi
