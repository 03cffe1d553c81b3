# SPDX-License-Identifier: MIT
"""Lazy imports (PEP 810, Python 3.15) served from the archive.

tests/workloads/lazy_app.py names its imports in __lazy_modules__; with the
global mode (-X lazy_imports=all) every import is lazy.  In each mode the
archive is built from the command measured (pycds build records what the
lazily importing program actually loads) and used under three hash seeds:
stdout byte-identical to stock's, no pycds: line, a module imported lazily
and reified later (json) served from the archive, and at least 95% of the
modules loaded from source served.  An archive built eagerly serves a lazy
run too.  Skipped, with the reason, on interpreters without lazy imports."""
import json
import os

from pycdslib import (PYTHON, WORKLOADS, STATS_RUNNER, Tap, build, describe,
                      diff, parse_stats, pycds_lines, require, run, scratch,
                      strip_stats)

require()
has = run([PYTHON, "-c", "import sys; sys.set_lazy_imports"])
if has.returncode != 0:
    Tap.skip_all("this interpreter has no lazy imports (PEP 810, 3.15+)")

script = os.path.join(WORKLOADS, "lazy_app.py")
MODES = {"normal": [], "all": ["-X", "lazy_imports=all"]}
SEEDS = ["0", "123", "random"]
PER = 2 + 2 * len(SEEDS) + 3
t = Tap(len(MODES) * PER + 1)
tmp = scratch()


def stats_run(flags, archive, **env):
    p = run([PYTHON, *flags, "-c", STATS_RUNNER, script],
            PYCDS_ARCHIVE=archive, **env)
    st = parse_stats(p.stderr) or {}
    p.stderr = strip_stats(p.stderr)
    return p, st


archives = {}
for mode, flags in MODES.items():
    stock = run([PYTHON, *flags, script], PYTHONHASHSEED="0")
    t.ok(stock.returncode == 0 and stock.stdout.startswith("lazy_app"),
         f"{mode}: runs stock", describe(stock))
    archive = os.path.join(tmp, f"lazy-{mode}.pycds")
    b = build(archive, ["--", PYTHON, *flags, "-c", STATS_RUNNER, script])
    if not t.ok(b.returncode == 0 and os.path.isfile(archive),
                f"{mode}: pycds build -- python {' '.join(flags)} succeeds",
                describe(b)):
        t.skip_n(PER - 2, mode, "no archive")
        continue
    archives[mode] = archive
    for seed in SEEDS:
        p = run([PYTHON, *flags, script], PYCDS_ARCHIVE=archive,
                PYTHONHASHSEED=seed)
        t.ok(p.stdout == stock.stdout and p.returncode == 0,
             f"{mode}: output identical to stock (PYTHONHASHSEED={seed})",
             diff(stock.stdout, p.stdout) + "\n" + describe(p))
        t.ok(not pycds_lines(p.stderr),
             f"{mode}: no pycds: line (PYTHONHASHSEED={seed})", p.stderr)
    p, st = stats_run(flags, archive, PYTHONHASHSEED="random")
    served = set(st.get("served") or [])
    src = st.get("source_modules") or []
    t.ok(p.returncode == 0 and st.get("hits") is not None and
         not pycds_lines(p.stderr), f"{mode}: stats run in use",
         describe(p))
    t.ok("json" in served and "decimal" in served,
         f"{mode}: json and decimal (imported lazily in this workload) "
         "served", sorted(served))
    hit = [m for m in src if m in served]
    t.ok(src and len(hit) >= 0.95 * len(src),
         f"{mode}: {len(hit)} of {len(src)} modules loaded from source "
         "served (at least 95%)", sorted(set(src) - served))

# What an eager run records covers what a lazy run loads.
if "normal" in archives:
    stock = run([PYTHON, *MODES["all"], script])
    p = run([PYTHON, *MODES["all"], script], PYCDS_ARCHIVE=archives["normal"])
    t.ok(p.stdout == stock.stdout and p.returncode == 0 and
         not pycds_lines(p.stderr),
         "the archive of the normal run serves the global lazy mode, "
         "stock's output", diff(stock.stdout, p.stdout) + describe(p))
else:
    t.skip("the normal run's archive in the lazy mode", "no archive")
