# SPDX-License-Identifier: MIT
"""The tree's layout holds: what may include what, where version tests
live, what links what.

- nothing under include/ or userspace/lib/ includes Python.h, liburing.h
  or vmlinux.h (the format and its reader are plain C);
- PY_VERSION_HEX appears only under userspace/compat/;
- the checksums are computed only in userspace/lib/sum.c (XXH3 is called
  nowhere else but for the bucket hash's definition and the layout hash
  of interpreter facts), and tests pin them by hand in one place;
- the loader, pycds-top and pycds link no libpython;
- no C file holds two things: none of 900 lines or more;
- the runtime keeps no file-scope state but its one stack of layers
  (userspace/runtime/session.c) and the method tables CPython takes.
"""
import os
import re
import subprocess

from pycdslib import PYCDS, Tap, require

require()
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
BUILD = os.path.dirname(PYCDS)


def sources(*dirs, exts=(".c", ".h")):
    for d in dirs:
        for root, _, files in os.walk(os.path.join(TOP, d)):
            for f in files:
                if f.endswith(exts):
                    p = os.path.join(root, f)
                    yield os.path.relpath(p, TOP), open(p, errors="replace").read()


def includes(text):
    return re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', text, re.M)


t = Tap(8)
bad = [(p, i) for p, s in sources("include", "userspace/lib")
       for i in includes(s)
       if os.path.basename(i) in ("Python.h", "liburing.h", "vmlinux.h")]
t.eq(bad, [], "include/ and userspace/lib/ include no Python.h, liburing.h "
     "or vmlinux.h")

ver = [p for p, s in sources("userspace", "include", "loader", "tools",
                             "tests", "bpf", exts=(".c", ".h", ".py"))
       if "PY_VERSION_HEX" in s and not p.startswith("userspace/compat/")
       and p != "tests/py/test_layout.py"]
t.eq(ver, [], "PY_VERSION_HEX only under userspace/compat/")

# XXH3 over archive bytes: only the library's sum.c computes checksums.
# interp.c hashes the interpreter's layout facts (not archive bytes),
# xxh_avx2.c is sum.c's kernel, and archive_test.c's sums_by_hand pins
# the definition independently.
allowed = {"userspace/lib/sum.c", "userspace/lib/xxh_avx2.c",
           "userspace/lib/xxh.h", "userspace/runtime/interp.c",
           "tests/archive_test.c"}
xxh = sorted(p for p, s in sources("userspace", "include", "loader", "tools",
                                   "tests")
             if re.search(r"\bXXH3_64bits", s) and p not in allowed)
t.eq(xxh, [], "checksums computed in one place (userspace/lib/sum.c)")

linked = {}
for name in ("pycds", "pycds-loader", "pycds-top"):
    path = os.path.join(BUILD, name)
    p = subprocess.run(["readelf", "-d", path], capture_output=True,
                       text=True)
    linked[name] = sorted(set(re.findall(r"\[(lib[^\]]+)\]", p.stdout))) \
        if p.returncode == 0 else None
t.ok(all(v is not None and not any(l.startswith("libpython") for l in v)
         for v in linked.values()),
     "pycds, pycds-loader and pycds-top link no libpython", linked)

# pycds-top finds _pycds from files: it starts no process (no interpreter
# run to ask where the extension is).
spawns = sorted(p for p, s in sources("tools/top")
                if re.search(r"\b(popen|system|execv\w*|posix_spawn\w*|fork)\s*\(", s))
t.eq(spawns, [], "pycds-top starts no process (no popen, system, exec)")

# A format fact (the highest preferred base) written once.
limits = sorted(p for p, s in sources("userspace", "loader", "tools",
                                      "include")
                if re.search(r"1ULL\s*<<\s*4[67]", s))
t.ok(len(limits) <= 1, "the preferred-base limit is defined in one file",
     limits)

big = sorted((p, s.count("\n")) for p, s in sources(
    "userspace", "loader", "tools", exts=(".c",)) if s.count("\n") >= 900)
t.eq(big, [], "no C file of 900 lines or more under userspace/, loader/, "
     "tools/")

# Writable file-scope data, from the objects' symbol tables (nm: b/B bss,
# d/D data): the stack of layers (session.c), the method tables CPython's API
# takes as writable, and finder.c's constant tables of names (their
# pointers are relocated, so they land in .data.rel.ro).  Function-local
# statics (name.N: once-per-process
# flags, a cache) are not file-scope state.
TABLES = {"stack", "pycds_methods", "pycds_module", "source_get_code_def",
          "pyc_get_code_def", "find_spec_def", "fs_names", "fs_helpers"}


def writable(obj):
    p = subprocess.run(["nm", obj], capture_output=True, text=True)
    return [l.split()[-1] for l in p.stdout.splitlines()
            if len(l.split()) == 3 and l.split()[1] in "bBdD"]


d = os.path.join(BUILD, "ext", "userspace", "runtime")
objs = {f: writable(os.path.join(d, f))
        for f in (sorted(os.listdir(d)) if os.path.isdir(d) else [])
        if f.endswith(".o")}
state = {f: [n for n in v if n not in TABLES and not re.search(r"\.\d+$", n)]
         for f, v in objs.items()}
state = {f: v for f, v in state.items() if v}
t.ok(len(objs) >= 8 and not state and "stack" in objs.get("session.o", []),
     "the runtime's file-scope state is its one stack of layers (session.c)",
     state if objs else "no objects under " + d)
