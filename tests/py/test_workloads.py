# SPDX-License-Identifier: MIT
"""Each workload, stock and from its archive: byte-identical output under
several hash seeds, no pycds: line, and at least 95% of the modules it
loads from source served from the archive."""
import os

from pycdslib import (PYTHON, STATS_RUNNER, WORKLOADS, Tap, build,
                      pycds_lines, run, run_with_stats, scratch)

NAMES = ["stdlib6", "cli_tool", "requests_app", "jinja2_app", "rich_app"]
SEEDS = ["0", "1", "4242"]
t = Tap(len(NAMES) * 5)
tmp = scratch()

for name in NAMES:
    script = os.path.join(WORKLOADS, name + ".py")
    stock = run([PYTHON, script])
    if stock.returncode:
        why = (stock.stderr.strip().splitlines() or ["failed"])[-1]
        for _ in range(5):
            t.skip(f"{name}", f"fails without pycds: {why}")
        continue
    archive = os.path.join(tmp, name + ".pycds")
    b = build(archive, ["--", PYTHON, "-c", STATS_RUNNER, script])
    if not t.ok(b.returncode == 0 and os.path.exists(archive),
                f"{name}: pycds build succeeds", b.stdout + b.stderr):
        for _ in range(4):
            t.skip(name, "no archive")
        continue

    outs = [run([PYTHON, script], PYCDS_ARCHIVE=archive, PYTHONHASHSEED=s)
            for s in SEEDS]
    t.ok(all(o.stdout == stock.stdout for o in outs),
         f"{name}: output identical to stock under hash seeds {SEEDS}",
         "\n".join(f"stock: {stock.stdout!r}\npycds: {o.stdout!r}"
                   for o in outs))
    t.ok(all(o.returncode == 0 and not pycds_lines(o.stderr) for o in outs),
         f"{name}: exit 0 and no pycds: line",
         "\n".join(o.stderr for o in outs))

    p, st = run_with_stats(script, archive, PYTHONHASHSEED="random")
    if not t.ok(st is not None and st["error"] is None,
                f"{name}: archive in use", p.stderr):
        t.skip(name, "no stats")
        continue
    share = st["hits"] / max(1, st["source_modules"])
    t.ok(share >= 0.95,
         f"{name}: {st['hits']} of {st['source_modules']} source modules "
         f"served ({share:.0%} >= 95%)", st)
