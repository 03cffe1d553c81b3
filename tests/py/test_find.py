# SPDX-License-Identifier: MIT
"""PathFinder.find_spec answered by pycds gives stock's answer, always.

For modules a layer holds, pycds makes the path finder's search in C over
the path entry finders' own caches (userspace/runtime/finder.c).  A probe
runs the same steps stock (PYCDS_ARCHIVE set and empty) and with the
archive, and prints what PathFinder.find_spec and importing return after
each step; the two reports must be equal, step by step.  The steps: the
archived modules found in place; a new file shadowing one in an earlier
sys.path entry, then removed; a directory of the module's name without
__init__ (a namespace portion) in front of the package; a directory
named like the module's file; a sourceless .pyc in front; sys.path
without the directory, and a package's __path__ with another directory
first; '' in sys.path and a change of directory; a file added while its
directory's mtime is put back (the FileFinder mtime rule: stock does not
see it, and neither must pycds); importlib.invalidate_caches(); a
monkeypatched _path_stat.  With the archive, the fast path must have
answered (stats()['found']) and noticed the changed directories
(stats()['relisted']).
"""
import json
import os

from pycdslib import (PYTHON, Tap, build, describe, diff, pycds_lines,
                      require, run, scratch, write_tree)

require()
tmp = scratch()
A = os.path.join(tmp, "a")      # in front: empty at first
B = os.path.join(tmp, "b")      # the archived sources
C = os.path.join(tmp, "c")      # another directory for pkg.__path__
W = os.path.join(tmp, "w")      # a working directory
for d in (A, C, W):
    os.makedirs(d)
write_tree(B, {
    "top.py": "WHO = 'b'\n",
    "pkg/__init__.py": "WHO = 'b'\n",
    "pkg/mod.py": "WHO = 'b'\n",
    "main.py": ("import json, json.decoder, top, pkg, pkg.mod\n"
                "print(top.WHO, pkg.WHO, pkg.mod.WHO)\n"),
})
write_tree(C, {"mod.py": "WHO = 'c'\n"})
write_tree(W, {"top.py": "WHO = 'w'\n"})

PROBE = r"""
import importlib, json, os, sys
import importlib._bootstrap_external as be
from importlib.machinery import PathFinder
A, B, C, W = sys.argv[1:5]
report = []

def spec_of(s):
    if s is None:
        return None
    sl = s.submodule_search_locations
    return {"name": s.name, "origin": s.origin,
            "loader": type(s.loader).__name__ if s.loader else None,
            "loader_path": getattr(s.loader, "path", None),
            "smsl": list(sl) if sl is not None else None,
            "cached": s.cached, "has_location": s.has_location,
            "parent": s.parent}

def find(step, *names, path=None):
    for n in names:
        p = path
        if p is None and "." in n:
            p = sys.modules[n.rpartition(".")[0]].__path__
        report.append([step, n, spec_of(PathFinder.find_spec(n, p))])

def fresh(step, name):
    for m in [m for m in sys.modules if m == name or
              m.startswith(name + ".")]:
        del sys.modules[m]
    try:
        m = importlib.import_module(name)
        report.append([step, "import " + name,
                       [getattr(m, "WHO", None), m.__file__,
                        getattr(m, "__cached__", None)]])
    except ImportError as e:
        report.append([step, "import " + name, "ImportError " + str(e)])

def bump(d, back=False):
    # A directory's mtime, put forward a second (or back where it was).
    st = os.stat(d)
    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns +
                    (0 if back else 10**9)))

sys.path[:0] = [A, B]
import top, pkg, pkg.mod, json, json.decoder
NAMES = ("top", "pkg", "pkg.mod", "json", "json.decoder", "nonesuch")
find("in place", *NAMES)
find("again", *NAMES)

with open(os.path.join(A, "top.py"), "w") as f:
    f.write("WHO = 'a'\n")
bump(A)
find("shadow in front", "top")
fresh("shadow in front", "top")
find("shadow, unchanged since", "top")
os.unlink(os.path.join(A, "top.py"))
bump(A)
find("shadow removed", "top")
fresh("shadow removed", "top")

os.mkdir(os.path.join(A, "pkg"))
bump(A)
find("namespace portion in front", "pkg", "pkg.mod")
fresh("namespace portion in front", "pkg")
os.rmdir(os.path.join(A, "pkg"))
bump(A)
find("namespace portion removed", "pkg", "pkg.mod")

os.mkdir(os.path.join(A, "top.py"))
bump(A)
find("directory named top.py", "top")
os.rmdir(os.path.join(A, "top.py"))
bump(A)

import py_compile
src = os.path.join(W, "top.py")
py_compile.compile(src, cfile=os.path.join(A, "top.pyc"))
bump(A)
find("sourceless in front", "top")
fresh("sourceless in front", "top")
os.unlink(os.path.join(A, "top.pyc"))
bump(A)
find("sourceless removed", "top")

saved = sys.path[:]
sys.path.remove(B)
find("sys.path without b", "top", "pkg")
fresh("sys.path without b", "top")
sys.path[:] = saved
import pkg
pkg.__path__.insert(0, C)
find("pkg.__path__ with c first", "pkg.mod", path=pkg.__path__)
fresh("pkg.__path__ with c first", "pkg.mod")
pkg.__path__.remove(C)
find("pkg.__path__ as built", "pkg.mod", path=pkg.__path__)

sys.path.insert(0, "")
os.chdir(W)
find("'' first, in w", "top")
os.chdir(A)
find("'' first, in a", "top")
sys.path.remove("")

st = os.stat(A)
with open(os.path.join(A, "top.py"), "w") as f:
    f.write("WHO = 'a, unseen'\n")
os.utime(A, ns=(st.st_atime_ns, st.st_mtime_ns))
find("added, mtime put back", "top")
importlib.invalidate_caches()
find("after invalidate_caches", "top")
fresh("after invalidate_caches", "top")
os.unlink(os.path.join(A, "top.py"))
bump(A)

orig = be._path_stat
seen = []
def spy(p):
    seen.append(p)
    return orig(p)
be._path_stat = spy
find("_path_stat patched", "top", "pkg")
be._path_stat = orig
report.append(["_path_stat patched", "called", bool(seen)])

print(json.dumps(report, indent=1))
pc = sys.modules.get("_pycds")
if pc:
    s = pc.stats()
    print("STATS " + json.dumps({k: s.get(k) for k in
          ("found", "relisted", "hits", "error")}), file=sys.stderr)
"""

t = Tap(10)
probe = os.path.join(tmp, "probe.py")
with open(probe, "w") as f:
    f.write(PROBE)
archive = os.path.join(tmp, "find.pycds")
b = build(archive, ["--", PYTHON, os.path.join(B, "main.py")], cwd=B)
t.ok(b.returncode == 0 and os.path.isfile(archive), "archive built",
     describe(b))
argv = [PYTHON, probe, A, B, C, W]
stock = run(argv, cwd=tmp, PYCDS_ARCHIVE="")
served = run(argv, cwd=tmp, PYCDS_ARCHIVE=archive)
t.ok(stock.returncode == 0 and served.returncode == 0,
     "the probe runs stock and with the archive",
     describe(stock) + "\n" + describe(served))


def load(p):
    try:
        return json.loads(p.stdout)
    except ValueError:
        return []


def stats(p):
    for line in p.stderr.splitlines():
        if line.startswith("STATS "):
            return json.loads(line[6:])
    return {}


R0, R1 = load(stock), load(served)
t.ok(R0 and len(R0) == len(R1), f"both report {len(R0)} answers",
     diff(stock.stdout, served.stdout))
bad = [(a, b) for a, b in zip(R0, R1) if a != b]
t.ok(R0 and not bad, "every answer with the archive is stock's",
     "\n".join(f"stock: {a}\npycds: {b}" for a, b in bad[:6]))
# The report holds what it must: the steps did change the answers.
by = {(s, n): v for s, n, v in R0}
t.ok(by.get(("shadow in front", "top"), {}).get("origin") ==
     os.path.join(A, "top.py") and
     by.get(("shadow removed", "top"), {}).get("origin") ==
     os.path.join(B, "top.py") and
     by.get(("added, mtime put back", "top"), {}).get("origin") ==
     os.path.join(B, "top.py") and
     by.get(("after invalidate_caches", "top"), {}).get("origin") ==
     os.path.join(A, "top.py") and
     by.get(("pkg.__path__ with c first", "pkg.mod"), {}).get("origin") ==
     os.path.join(C, "mod.py") and
     by.get(("sourceless in front", "top"), {}).get("loader") ==
     "SourcelessFileLoader" and
     by.get(("'' first, in w", "top"), {}).get("origin") ==
     os.path.join(W, "top.py") and
     by.get(("in place", "nonesuch"), 0) is None,
     "stock's answers follow each step (shadow, removal, mtime rule, "
     "invalidate_caches, __path__, .pyc, '')",
     json.dumps(R0, indent=1)[:3000])
t.ok(by.get(("_path_stat patched", "called")) is True and
     R1 and R1[-1] == ["_path_stat patched", "called", True],
     "a patched _path_stat is called, as stock calls it")
S = stats(served)
t.ok(S.get("error") is None and (S.get("hits") or 0) >= 3,
     f"the archive served the package's modules ({S.get('hits')} hits)",
     served.stderr[-2000:])
t.ok((S.get("found") or 0) >= 10,
     f"pycds answered find_spec itself ({S.get('found')} times)",
     served.stderr[-2000:])
t.ok((S.get("relisted") or 0) >= 5,
     f"and left changed directories to stock ({S.get('relisted')} times)",
     served.stderr[-2000:])
t.ok(not pycds_lines(stock.stderr + served.stderr), "no pycds: line",
     stock.stderr + served.stderr)
