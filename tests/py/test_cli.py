# SPDX-License-Identifier: MIT
"""pycds build, inspect and verify: what they print, their exit status,
and that the same inputs give the same bytes."""
import os

from pycdslib import PYCDS, PYTHON, Tap, build, header, run, scratch

t = Tap(15)
tmp = scratch()
app = os.path.join(tmp, "app")
os.makedirs(app)
with open(os.path.join(app, "good.py"), "w") as f:
    f.write("import json, textwrap\nprint(json.dumps([1]))\n")
with open(os.path.join(app, "broken.py"), "w") as f:
    f.write("def oops(:\n")
with open(os.path.join(app, "main.py"), "w") as f:
    f.write("import good\ntry:\n    import broken\nexcept SyntaxError:\n"
            "    pass\n")
main = os.path.join(app, "main.py")

a1, a2 = os.path.join(tmp, "a1.pycds"), os.path.join(tmp, "a2.pycds")
b1 = build(a1, ["--", PYTHON, main], cwd=app)
t.ok(b1.returncode == 0, "build from a command succeeds", b1.stderr)
t.ok("modules" in b1.stdout and "wrote" in b1.stdout,
     "build prints a summary", b1.stdout)
b2 = build(a2, ["--", PYTHON, main], cwd=app)
with open(a1, "rb") as f1, open(a2, "rb") as f2:
    t.ok(f1.read() == f2.read(), "two builds are byte-identical")

i = run([PYCDS, "inspect", a1])
t.ok(i.returncode == 0 and "preferred base:  0x200000000000" in i.stdout and
     "cpython-311" in i.stdout and "modules:" in i.stdout,
     "inspect shows base, interpreter and modules", i.stdout + i.stderr)
im = run([PYCDS, "inspect", "--modules", a1])
t.ok("good" in im.stdout and "json" in im.stdout and
     "broken" not in im.stdout.split(), "inspect --modules lists them",
     im.stdout)

v = run([PYCDS, "verify", a1, "--python", PYTHON])
t.ok(v.returncode == 0 and "sound" in v.stdout, "verify accepts a good one",
     v.stdout + v.stderr)
with open(a1, "rb") as f:
    data = bytearray(f.read())
code_off, code_size = header(a1)["regions"][0]
data[code_off + code_size // 2] ^= 1
bad = os.path.join(tmp, "bad.pycds")
with open(bad, "wb") as f:
    f.write(data)
v = run([PYCDS, "verify", bad, "--python", PYTHON])
t.ok(v.returncode == 1 and v.stderr.startswith("pycds: " + bad),
     "verify rejects a flipped bit with a reason", v.stderr)
v = run([PYCDS, "verify", a1, "--python", "/usr/bin/true"])
t.ok(v.returncode == 1, "verify against something that is not the "
     "interpreter fails", v.stderr)
v = run([PYCDS, "verify", os.path.join(tmp, "none.pycds")])
t.ok(v.returncode == 1 and "failed to open" in v.stderr,
     "verify of a missing file", v.stderr)

m = os.path.join(tmp, "m.pycds")
bm = build(m, ["-m", "json,email.parser"])
im = run([PYCDS, "inspect", "--modules", m])
t.ok(bm.returncode == 0 and "email.parser" in im.stdout and
     "email.feedparser" in im.stdout, "build -m follows imports",
     bm.stderr + im.stdout)
bm = build(m, ["-m", "json,no_such_module_xyz"])
t.ok(bm.returncode == 0 and "no_such_module_xyz" in bm.stderr,
     "build -m reports a module it cannot import and goes on", bm.stderr)

for argv, what in (([], "no command"), (["build"], "build without -o"),
                   (["frobnicate"], "unknown command"),
                   (["build", "-o", m], "build without a command")):
    u = run([PYCDS, *argv])
    t.ok(u.returncode == 2 and "usage:" in u.stderr,
         f"{what}: exit 2 with usage", u.stderr)
