# SPDX-License-Identifier: MIT
"""A module whose compile warns (an invalid escape sequence: SyntaxWarning
on 3.12+, DeprecationWarning on 3.11) is served only where the interpreter
would read a valid .pyc; where it would compile the source instead (a
fresh sys.pycache_prefix, or no .pyc at all) it does, and warns as stock
does.  A module without warnings is served either way."""
import os
import shutil

from pycdslib import (PYCDS, Tap, PYTHON, build, describe, diff,
                      pycds_lines, require, run, run_with_stats, scratch,
                      write_tree)

require()
tmp = scratch()
app = os.path.join(tmp, "app")
write_tree(app, {
    "noisy.py": "PATTERN = '\\d+'\n",
    "quiet.py": "PATTERN = r'\\d+'\n",
    "main.py": "import noisy, quiet\nprint(noisy.PATTERN, quiet.PATTERN)\n",
})
main = os.path.join(app, "main.py")
t = Tap(8)

# Stock once, so the .pyc files exist where the interpreter looks.
first = run([PYTHON, main], cwd=app, PYTHONWARNINGS="always")
archive = os.path.join(tmp, "w.pycds")
b = build(archive, ["--", PYTHON, main], cwd=app)
if not t.ok(b.returncode == 0, "archive built", describe(b)):
    raise SystemExit(0)
ins = run([PYCDS, "inspect", "--modules", archive])
t.ok("noisy" in ins.stdout and "(compile warns)" in
     next((l for l in ins.stdout.splitlines() if " noisy " in l), "") and
     "(compile warns)" not in
     next((l for l in ins.stdout.splitlines() if " quiet " in l), "x"),
     "pycds inspect: noisy compiles with a warning, quiet does not",
     ins.stdout)

# With the .pyc files in place: both served, no warning (as stock).
stock = run([PYTHON, main], cwd=app, PYTHONWARNINGS="always")
p, st = run_with_stats(main, archive, cwd=app)
served = set((st or {}).get("served") or [])
t.ok(p.stdout == stock.stdout and not pycds_lines(p.stderr),
     "with .pyc files: stock's output, no pycds: line",
     diff(stock.stdout, p.stdout) + describe(p))
t.ok({"noisy", "quiet"} <= served, "with .pyc files: both served",
     sorted(served))

# A fresh pycache prefix: stock compiles noisy.py and warns.
for what, env in (("a fresh PYTHONPYCACHEPREFIX",
                   {"PYTHONPYCACHEPREFIX": os.path.join(tmp, "fresh")}),
                  ("no __pycache__", {})):
    if not env:
        shutil.rmtree(os.path.join(app, "__pycache__"), ignore_errors=True)
        env = {"PYTHONDONTWRITEBYTECODE": "1"}
    stock = run([PYTHON, main], cwd=app, PYTHONWARNINGS="always", **env)
    shutil.rmtree(os.path.join(tmp, "fresh"), ignore_errors=True)
    p, st = run_with_stats(main, archive, cwd=app, PYTHONWARNINGS="always",
                           **env)
    served = set((st or {}).get("served") or [])
    warned = [l for l in stock.stderr.splitlines() if "Warning" in l]
    t.ok(p.stdout == stock.stdout and warned and
         [l for l in p.stderr.splitlines() if "Warning" in l] == warned,
         f"{what}: stock's output and stock's warning",
         diff(stock.stderr, p.stderr, "stock stderr", "pycds stderr"))
    t.ok("noisy" not in served and "quiet" in served,
         f"{what}: noisy compiled as stock does, quiet served",
         sorted(served))
