# SPDX-License-Identifier: MIT
"""CPython's own tests give stock's results under pycds build and from the
archive it writes (tools/conformance.py over its default subset: the
import system, strings, codecs, subprocess, pydoc, inspect, traceback,
pickle, threading).  `make conformance CONFORMANCE=--all` runs the whole
suite the same way."""
import json
import os
import sys

from pycdslib import PYCDS, PYTHON, Tap, describe, require, run, scratch

require()
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
has = run([PYTHON, "-c", "import test.libregrtest"])
if has.returncode:
    Tap.skip_all(f"CPython's test suite is not installed for {PYTHON} "
                 "(Debian: libpython3.X-testsuite)")
t = Tap(5)
out = scratch()
summ = os.path.join(out, "summary.json")
p = run([sys.executable, os.path.join(TOP, "tools", "conformance.py"),
         "--out", out, "--summary", summ], timeout=1800,
        PYCDS=PYCDS, PYCDS_PYTHON=PYTHON)
print("\n".join("# " + l for l in p.stdout.splitlines()))
s = {}
if os.path.exists(summ):
    with open(summ) as f:
        s = json.load(f)
c = s.get("cases", {})
t.ok(c.get("stock", 0) > 1000 and c.get("stock") == c.get("recorded") ==
     c.get("archive"), f"the same {c.get('stock')} test cases ran stock, "
     "recorded and from the archive", describe(p))
t.eq(s.get("recorded", {}).get("different"), [],
     "under pycds build: every outcome is stock's")
t.eq(s.get("archive", {}).get("different"), [],
     "from the archive: every outcome is stock's")
st = s.get("stats") or {}
t.ok(st.get("error") is None and len(st.get("served", [])) >= 50 and
     st.get("served_loaded", 0) >= 0.9 * st.get("source_modules", 1 << 30),
     f"the archive served the suite: {len(st.get('served', []))} modules "
     f"in the main process, {st.get('served_loaded')} of the "
     f"{st.get('source_modules')} it had loaded", st)
t.eq(p.returncode, 0, "tools/conformance.py exits 0", describe(p))
