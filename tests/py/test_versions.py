# SPDX-License-Identifier: MIT
"""Archived functions are specialized as stock's are.  From 3.13 a
function takes its version from its code object at creation and never
gets another, and the specializer needs one for calls to Python
functions, properties and __getitem__: archived code carries versions of
its own.  A loop in an archived module, run enough to be specialized,
shows the same adaptive instructions as stock's (dis, adaptive=True), and
two functions of the archive never share a version (a property and a
__getitem__ of different shapes, both specialized, still give the right
answers when swapped)."""
import os

from pycdslib import (Tap, PYTHON, build, describe, diff, pycds_lines,
                      require, run_with_stats, scratch, write_tree)

require()
tmp = scratch()
app = os.path.join(tmp, "app")
write_tree(app, {
    "shapes.py": '''
def area(w, h):
    return w * h

class Box:
    def __init__(self, w):
        self.w = w
    @property
    def side(self):
        return self.w + 1
    def __getitem__(self, i):
        return self.w * i

class Other:
    def __init__(self, w):
        self.w = w
    @property
    def side(self):
        return -self.w
    def __getitem__(self, i):
        return i - self.w

def run(objs):
    total = 0
    for i in range(400):
        o = objs[i % len(objs)] if i >= 300 else objs[0]
        total += area(i, 2) + o.side + o[3]
    return total
''',
    "main.py": '''
import dis, shapes
print(shapes.run([shapes.Box(5)]))
print(shapes.run([shapes.Box(5), shapes.Other(7)]))
wanted = ("CALL_PY_EXACT_ARGS", "LOAD_ATTR_PROPERTY", "BINARY_SUBSCR_GETITEM")
seen = {i.opname for i in dis.get_instructions(shapes.run, adaptive=True)}
print(sorted(seen & set(wanted)))
''',
})
main = os.path.join(app, "main.py")
t = Tap(4)

stock, _ = run_with_stats(main, cwd=app)
t.ok(stock.returncode == 0 and "CALL_PY_EXACT_ARGS" in stock.stdout,
     "stock specializes the loop's call (the check can tell)", describe(stock))
archive = os.path.join(tmp, "v.pycds")
b = build(archive, ["--", PYTHON, main], cwd=app)
t.ok(b.returncode == 0, "archive built", describe(b))
p, st = run_with_stats(main, archive, cwd=app)
t.ok(st is not None and "shapes" in st.get("served", ()),
     "shapes is served from the archive", st)
t.ok(p.returncode == 0 and p.stdout == stock.stdout and
     not pycds_lines(p.stderr),
     "same results and the same specialized instructions as stock: "
     + stock.stdout.splitlines()[-1] if stock.stdout else "",
     diff(stock.stdout, p.stdout) + "\n" + describe(p))
