# SPDX-License-Identifier: MIT
"""Each workload, stock and from its archive: the archive is built under
one hash seed and used under others; stdout byte-identical and the same
exit status, no pycds: line, and at least 95% of the modules the process
loads from source served from the archive (_pycds.stats()['hits']).  A
second build of the same command gives the same bytes."""
import os

from pycdslib import (PYTHON, WORKLOADS, STATS_RUNNER, Tap, build, describe,
                      diff, pycds_lines, require, run, run_with_stats,
                      scratch)

require()
# workload -> the module it needs beyond the standard library
WORKLOADS_NEEDS = {
    "stdlib6": None,
    "cli_tool": None,
    "requests_app": "requests",
    "jinja2_app": "jinja2",
    "rich_app": "rich",
    "lazy_app": None,
}
SEEDS = ["random", "123", "4242"]   # archives are built under seed 0
PER = 3 + 2 * len(SEEDS) + 5
t = Tap(len(WORKLOADS_NEEDS) * PER)
tmp = scratch()

for name, needs in WORKLOADS_NEEDS.items():
    script = os.path.join(WORKLOADS, name + ".py")
    if not os.path.exists(script):
        t.skip_n(PER, name, f"{script} not found (PYCDS_WORKLOADS)")
        continue
    if needs:
        imp = run([PYTHON, "-c", f"import {needs}"])
        if imp.returncode != 0:
            why = (imp.stderr.strip().splitlines() or ["fails"])[-1]
            t.skip_n(PER, name, f"import {needs} fails stock "
                     f"(install python3-{needs}): {why}")
            continue

    stock = run([PYTHON, script], PYTHONHASHSEED="0")
    t.ok(stock.returncode == 0 and stock.stdout.strip(),
         f"{name}: runs stock and prints its line", describe(stock))

    archive = os.path.join(tmp, name + ".pycds")
    b = build(archive, ["--", PYTHON, script])
    built = (b.returncode == 0 and os.path.isfile(archive) and
             os.path.getsize(archive) > 0)
    t.ok(built, f"{name}: pycds build -- {os.path.basename(PYTHON)} "
         f"{name}.py succeeds", describe(b))
    t.ok(not pycds_lines(run([PYTHON, script]).stderr),
         f"{name}: stock run has no pycds: line")
    again = os.path.join(tmp, name + "-again.pycds")
    b2 = build(again, ["--", PYTHON, script])
    same = False
    if built and b2.returncode == 0:
        with open(archive, "rb") as f1, open(again, "rb") as f2:
            same = f1.read() == f2.read()
    t.ok(same, f"{name}: built again, the archive is byte-identical",
         describe(b2))

    for seed in SEEDS:
        if not built:
            t.skip_n(2, f"{name}: seed {seed}", "no archive")
            continue
        p = run([PYTHON, script], PYCDS_ARCHIVE=archive,
                PYTHONHASHSEED=seed)
        t.ok(p.stdout == stock.stdout and p.returncode == stock.returncode,
             f"{name}: stdout and exit status identical to stock "
             f"(PYTHONHASHSEED={seed})",
             f"exit: stock {stock.returncode}, pycds {p.returncode}\n" +
             diff(stock.stdout, p.stdout) + "\n" + p.stderr)
        t.ok(not pycds_lines(p.stderr),
             f"{name}: no pycds: line on stderr (PYTHONHASHSEED={seed})",
             p.stderr)

    # Coverage: build from the stats runner so that its own imports are
    # recorded too, then count what it served.
    cov = os.path.join(tmp, name + "-runner.pycds")
    b = build(cov, ["--", PYTHON, "-c", STATS_RUNNER, script])
    if not t.ok(b.returncode == 0 and os.path.isfile(cov),
                f"{name}: build from the stats runner succeeds",
                describe(b)):
        t.skip_n(3, name, "no archive")
        continue
    p, st = run_with_stats(script, cov, PYTHONHASHSEED="random")
    t.ok(p.stdout == stock.stdout and p.returncode == 0 and
         not pycds_lines(p.stderr),
         f"{name}: stats run gives stock's output, no pycds: line",
         diff(stock.stdout, p.stdout) + "\n" + describe(p))
    if not t.ok(st is not None and st.get("error") is None and
                st.get("archive") == cov and st.get("modules", 0) > 0,
                f"{name}: stats() says the archive is in use", st or
                describe(p)):
        t.skip(f"{name}: served share", "archive not in use")
        continue
    src = st["source_modules"]
    hits = st["hits"]
    share = hits / max(1, len(src))
    t.ok(len(src) > 0 and share >= 0.95 and hits <= len(st["module_names"]),
         f"{name}: {hits} of {len(src)} modules loaded from source served "
         f"from the archive ({share:.0%}, at least 95%)",
         {k: st.get(k) for k in ("hits", "misses", "stale", "rejected",
                                 "modules", "source_modules")})
