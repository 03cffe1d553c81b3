# SPDX-License-Identifier: MIT
"""A module from the archive behaves exactly like one from its .pyc: the
probe in data/semantics prints __file__, __spec__, loader, sources,
tracebacks, dis, constants of every type, frozenset membership under
another hash seed, small-int identity, interned names and a late
Cls.__eq__; the report must not change when the archive serves them."""
import os
import re
import shutil

from pycdslib import PYTHON, Tap, build, pycds_lines, run, run_with_stats, scratch

here = os.path.dirname(os.path.abspath(__file__))
tmp = scratch()
app = os.path.join(tmp, "semantics")
shutil.copytree(os.path.join(here, "data", "semantics"), app)
probe = os.path.join(app, "probe.py")

t = Tap(8)
# Stock writes .pyc files for the package; the archive must not depend on
# them either way.
stock = run([PYTHON, probe], cwd=app, PYTHONHASHSEED="1")
t.ok(stock.returncode == 0, "probe runs stock", stock.stderr)
archive = os.path.join(tmp, "sem.pycds")
b = build(archive, ["--", PYTHON, probe], cwd=app)
t.ok(b.returncode == 0, "archive built", b.stdout + b.stderr)

MASK = re.compile(r" at 0x[0-9a-f]+")


def report(**env):
    p = run([PYTHON, probe], cwd=app, **env)
    p.stdout = MASK.sub(" at 0x...", p.stdout)
    return p


# The archive was built under hash seed 0; use it under others.  Stock
# runs under the same seed, since dis shows frozensets in hash order.
for seed in ("2", "0"):
    stock = report(PYTHONHASHSEED=seed)
    p = report(PYTHONHASHSEED=seed, PYCDS_ARCHIVE=archive)
    diff = [f"- {a}\n+ {b}" for a, b in zip(stock.stdout.splitlines(),
                                            p.stdout.splitlines()) if a != b]
    t.ok(p.returncode == 0 and p.stdout == stock.stdout,
         f"report identical to stock (hash seed {seed})",
         "\n".join(diff) or p.stderr)
    t.ok(not pycds_lines(p.stderr), f"no pycds: line (hash seed {seed})",
         p.stderr)

p, st = run_with_stats(probe, archive, cwd=app, PYTHONHASHSEED="3")
t.ok(st is not None and st["hits"] >= 2 and st["error"] is None,
     "sempkg and sempkg.sub served from the archive", st)

# Without .pyc files at all (a read-only tree), the archive still serves.
shutil.rmtree(os.path.join(app, "sempkg", "__pycache__"), True)
stock = report(PYTHONHASHSEED="4", PYTHONDONTWRITEBYTECODE="1")
p = report(PYTHONHASHSEED="4", PYTHONDONTWRITEBYTECODE="1",
           PYCDS_ARCHIVE=archive)
t.ok(p.stdout == stock.stdout and p.returncode == 0,
     "identical without __pycache__", p.stderr)
