# SPDX-License-Identifier: MIT
"""pycds build, inspect and verify: what they print (checked against the
archive's own header and module table), their exit status, that the same
inputs give the same bytes, usage errors, and that a syntax error in a
file the command does not need does not stop a build."""
import os
import re

from pycdslib import (OFF, PYCDS, PYTHON, Archive, Tap, build, describe,
                      pycds_lines, require, run, scratch, write_tree)

require()
t = Tap(48)
tmp = scratch()
app = os.path.join(tmp, "app")
write_tree(app, {
    "good.py": "import json, textwrap\nVALUE = json.dumps([1])\n",
    # imported under try/except by main.py: a SyntaxError at import
    "broken.py": "def oops(:\n",
    # never imported, in the same directory and package
    "unrelated_broken.py": "class (:\n",
    "lib/__init__.py": "from . import ok\n",
    "lib/ok.py": "X = 1\n",
    "lib/bad.py": "x = = 1\n",
    "main.py": ("import good, lib\n"
                "try:\n    import broken\nexcept SyntaxError as e:\n"
                "    print('syntax error in', e.filename.rsplit('/', 1)[-1])\n"
                "print(good.VALUE, lib.ok.X)\n"),
})
main = os.path.join(app, "main.py")
stock = run([PYTHON, main], cwd=app)

# ---- build ----
a1, a2, a3 = (os.path.join(tmp, f"a{i}.pycds") for i in (1, 2, 3))
b1 = build(a1, ["--", PYTHON, main], cwd=app)
t.ok(b1.returncode == 0 and os.path.isfile(a1),
     "build of a command importing a module with a syntax error (and "
     "with an unrelated broken file alongside) succeeds", describe(b1))
t.ok(stock.stdout and stock.stdout in b1.stdout,
     "the recorded command ran (its output passes through)",
     f"stock {stock.stdout!r}\nbuild {b1.stdout!r}")
b2 = build(a2, ["--", PYTHON, main], cwd=app)
b3 = build(a3, ["--", PYTHON, main], cwd=app, seed="random")


def same_bytes(x, y):
    try:
        with open(x, "rb") as f, open(y, "rb") as g:
            return f.read() == g.read()
    except OSError:
        return False


t.ok(b2.returncode == 0 and same_bytes(a1, a2),
     "two builds of the same inputs are byte-identical")
t.ok(b3.returncode == 0 and same_bytes(a1, a3),
     "a build under PYTHONHASHSEED=random is byte-identical too")
p = run([PYTHON, main], cwd=app, PYCDS_ARCHIVE=a1)
t.ok(p.returncode == 0 and p.stdout == stock.stdout and
     not pycds_lines(p.stderr), "the archive runs the command as stock "
     "does", describe(p))

A = Archive(a1)
names = set(A.by_name)
t.ok({"good", "lib", "lib.ok", "json", "json.decoder"} <= names and
     not names & {"broken", "unrelated_broken", "lib.bad", "__main__"},
     "archive holds the imported modules, not the broken or unused ones",
     sorted(names))

# ---- inspect ----
i = run([PYCDS, "inspect", a1])
out = i.stdout
t.ok(i.returncode == 0 and out, "inspect exits 0", describe(i))
t.ok(re.search(rf"\b{A.base:#x}\b", out, re.I),
     f"inspect shows the preferred base {A.base:#x}", out)
m = re.search(r"modules?\s*:\s*(\d+)", out)
t.ok(m and int(m.group(1)) == A.h["nr_modules"],
     f"inspect shows the module count ({A.h['nr_modules']})", out)
hv = A.h["hexversion"]
t.ok(A.h["cache_tag"] in out and
     (f"{hv >> 24}.{hv >> 16 & 255}" in out or f"{hv:08x}" in out),
     f"inspect shows the interpreter ({A.h['cache_tag']}, "
     f"{hv >> 24}.{hv >> 16 & 255})", out)
t.ok(A.h["build_id"] and A.h["build_id"] in out,
     "inspect shows the interpreter's build ID", out)

im = run([PYCDS, "inspect", "--modules", a1])
listed = {}
for line in im.stdout.splitlines():
    words = line.split()
    if len(words) >= 2 and words[0] in names:
        listed[words[0]] = line
t.ok(im.returncode == 0 and set(listed) == names,
     f"inspect --modules lists all {len(names)} modules",
     f"missing: {sorted(names - set(listed))}\n{describe(im)}")
t.ok(all(A.by_name[n]["origin"] in listed.get(n, "") for n in names),
     "inspect --modules shows each module's source path",
     [line for n, line in listed.items()
      if A.by_name[n]["origin"] not in line][:5])
im2 = run([PYCDS, "inspect", a1, "--modules"])
t.ok(im2.returncode == 0 and im2.stdout == im.stdout,
     "inspect FILE --modules is the same as inspect --modules FILE",
     describe(im2))

# A different preferred base is read from the file, not assumed.
ab = os.path.join(tmp, "based.pycds")
bb = build(ab, ["--base", "0x300000000000", "--", PYTHON, main], cwd=app)
ib = run([PYCDS, "inspect", ab])
t.ok(bb.returncode == 0 and Archive(ab).base == 0x300000000000 and
     re.search(r"\b0x300000000000\b", ib.stdout),
     "build --base 0x300000000000: header and inspect agree",
     describe(bb) + "\n" + ib.stdout)
p = run([PYTHON, main], cwd=app, PYCDS_ARCHIVE=ab)
t.ok(p.returncode == 0 and p.stdout == stock.stdout and
     not pycds_lines(p.stderr), "an archive at another base works",
     describe(p))

# ---- verify ----
v = run([PYCDS, "verify", a1, "--python", PYTHON])
t.ok(v.returncode == 0 and not pycds_lines(v.stderr),
     "verify accepts a good archive (exit 0)", describe(v))
t.ok(a1 in v.stdout, "verify names the archive it accepted", v.stdout)


def damaged(name, offset=None, length=None, mask=0x20):
    with open(a1, "rb") as f:
        data = bytearray(f.read())
    if length is not None:
        data = data[:length]
    if offset is not None:
        data[offset] ^= mask
    path = os.path.join(tmp, name + ".pycds")
    with open(path, "wb") as f:
        f.write(data)
    return path


def rejects(path, what, python=PYTHON, timeout=60):
    argv = [PYCDS, "verify", path] + (["--python", python] if python else [])
    v = run(argv, timeout=timeout)
    lines = pycds_lines(v.stderr)
    named = [w for w in (path, python) if w and w in (lines or [""])[0]]
    t.ok(v.returncode == 1 and lines and named and
         len(lines[0]) > len(f"pycds: {named[0]}: "),
         f"verify rejects {what}: exit 1, a pycds: line naming the file "
         "with a reason",
         describe(v))


mod = A.by_name["lib.ok"]
# The module's own code object: in its code span, or its idle span where
# processes run copies of module bodies (3.11).
rejects(damaged("code", mod["root"] + 48),
        "a bit flip in a module's code object")
rejects(damaged("cold", mod["span_off"][2] + mod["span_size"][2] // 2),
        "a bit flip in a module's cold span")
rejects(damaged("hdr", OFF["nr_modules"]), "a bit flip in the header")
rejects(damaged("meta", mod["entry_off"] + 32), "a bit flip in the "
        "module table")
rejects(damaged("trunc", length=len(A.data) // 2), "a truncated archive")
rejects(damaged("empty", length=0), "an empty file")
rejects(a1, "an archive checked against /usr/bin/true as the interpreter",
        python="/usr/bin/true")
rejects(os.path.join(tmp, "none.pycds"), "a missing file")
rejects(tmp, "a directory")
fifo = os.path.join(tmp, "fifo.pycds")
os.mkfifo(fifo, 0o600)
rejects(fifo, "a FIFO, without blocking", timeout=10)
loose = damaged("loose")
os.chmod(loose, 0o666)
rejects(loose, "a world-writable archive")

i = run([PYCDS, "inspect", damaged("hdr2", 0)])
t.ok(i.returncode == 1 and pycds_lines(i.stderr),
     "inspect of a file with a bad magic: exit 1 with a pycds: line",
     describe(i))
i = run([PYCDS, "inspect", fifo], timeout=10)
t.ok(i.returncode == 1 and pycds_lines(i.stderr),
     "inspect of a FIFO: exit 1 without blocking", describe(i))

# ---- build -m ----
mm = os.path.join(tmp, "m.pycds")
bm = build(mm, ["-m", "json,email.parser"])
mnames = set(Archive(mm).by_name) if os.path.isfile(mm) else set()
t.ok(bm.returncode == 0 and {"json", "json.decoder", "email.parser",
                             "email.feedparser"} <= mnames,
     "build -m json,email.parser holds them and what they import",
     describe(bm) + f"\n{sorted(mnames)}")
bm = build(mm, ["-m", "json,no_such_module_xyz"])
t.ok("no_such_module_xyz" in bm.stderr,
     "build -m names a module it cannot import", describe(bm))

# ---- the layout run: the command runs twice, or once with --once ----
counted = os.path.join(tmp, "counted")
write_tree(counted, {
    "count.py": ("import sys, json, email.parser\n"
                 "sys.stdin.read()\n"
                 "with open(sys.argv[1], 'a') as f:\n"
                 "    f.write('run\\n')\n"
                 "print('counted', json.dumps([1]))\n"),
})
cscript = os.path.join(counted, "count.py")
for once, runs in ((False, 2), (True, 1)):
    log = os.path.join(counted, f"runs-{once}")
    arch = os.path.join(counted, f"c-{once}.pycds")
    argv = [PYCDS, "build", "-o", arch, "--python", PYTHON] + \
        (["--once"] if once else []) + ["--", PYTHON, cscript, log]
    # stdin a pipe at EOF: the recorded run reads it; the layout run
    # must not wait on it either.
    c = run(argv, cwd=counted, input="", timeout=300)
    n = open(log).read().count("run") if os.path.isfile(log) else 0
    what = "with --once" if once else "by default"
    t.ok(c.returncode == 0 and n == runs and
         c.stdout.count("counted [1]") == 1,
         f"build {what}: the command ran {runs} time(s), its output "
         "shown once", describe(c) + f"\nruns: {n}")
    v = run([PYCDS, "verify", arch, "--python", PYTHON])
    p = run([PYTHON, cscript, os.devnull], cwd=counted, input="",
            PYCDS_ARCHIVE=arch)
    t.ok(v.returncode == 0 and p.returncode == 0 and
         p.stdout == "counted [1]\n" and not pycds_lines(p.stderr),
         f"the archive built {what} verifies and serves the command",
         describe(v) + describe(p))

# ---- a sourceless module (.pyc, no source): archived and served ----
legacy = os.path.join(tmp, "legacy")
write_tree(legacy, {
    "oldmod_src.py": "WHAT = 'from a .pyc with no source'\n",
    "oldpkg_src.py": "PKG = 'package'\n",
    "main.py": ("import oldmod, oldpkg, json, _pycds\n"
                "print(oldmod.WHAT, oldpkg.PKG, json.dumps(1))\n"
                "print(type(oldmod.__loader__).__name__, oldmod.__file__ == "
                "oldmod.__spec__.origin, oldmod.__loader__.get_source("
                "'oldmod'))\n"),
})
import py_compile


def make_pyc(src, dst):
    py_compile.compile(src, cfile=dst, doraise=True)
    os.unlink(src)


os.makedirs(os.path.join(legacy, "oldpkg"))
make_pyc(os.path.join(legacy, "oldmod_src.py"), os.path.join(legacy, "oldmod.pyc"))
make_pyc(os.path.join(legacy, "oldpkg_src.py"),
         os.path.join(legacy, "oldpkg", "__init__.pyc"))
lmain = os.path.join(legacy, "main.py")
lstock = run([PYTHON, lmain], cwd=legacy)
la = os.path.join(tmp, "legacy.pycds")
lb = build(la, ["--", PYTHON, lmain], cwd=legacy)
LA = Archive(la) if lb.returncode == 0 and os.path.isfile(la) else None
t.ok(LA and {"oldmod", "oldpkg", "json"} <= set(LA.by_name) and
     LA.by_name["oldmod"]["origin"].endswith("oldmod.pyc"),
     "build: sourceless modules are archived from their .pyc",
     describe(lb))
lp = run([PYTHON, "-c", "import runpy, sys, _pycds; sys.argv = [sys.argv[1]];"
          " runpy.run_path(sys.argv[0], run_name='__main__');"
          " print(_pycds.stats()['hits'], file=sys.stderr)", lmain],
         cwd=legacy, PYCDS_ARCHIVE=la)
want = lstock.stdout
t.ok(lstock.returncode == 0 and lp.returncode == 0 and
     lstock.stdout.startswith("from a .pyc with no source package 1\n"
                              "SourcelessFileLoader True None") and
     lp.stdout == want and not pycds_lines(lp.stderr),
     "served from the archive: same output, module attributes and "
     "get_source() as stock", describe(lp) + "\nstock: " + lstock.stdout)
# A rewritten .pyc (another size) is stale: the new one is used.
with open(os.path.join(legacy, "oldmod_src.py"), "w") as f:
    f.write("WHAT = 'from a newer .pyc, with more in it'\n")
make_pyc(os.path.join(legacy, "oldmod_src.py"), os.path.join(legacy, "oldmod.pyc"))
ls = run([PYTHON, "-c", "import oldmod, _pycds; print(oldmod.WHAT, "
          "_pycds.stats()['stale'])"], cwd=legacy, PYCDS_ARCHIVE=la)
t.ok(ls.returncode == 0 and ls.stdout == "from a newer .pyc, with more in it 1\n",
     "a changed .pyc is stale and loaded as stock would", describe(ls))

# ---- usage ----
for argv, what in (([], "no arguments"),
                   (["frobnicate"], "an unknown command"),
                   (["--no-such-option"], "an unknown option"),
                   (["build"], "build without -o"),
                   (["build", "-o", mm], "build without a command"),
                   (["build", "-o", mm, "--"], "build with an empty command"),
                   (["inspect"], "inspect without a file"),
                   (["verify"], "verify without a file")):
    u = run([PYCDS, *argv])
    t.ok(u.returncode == 2 and re.search(r"^usage:", u.stderr, re.M | re.I),
         f"pycds with {what}: exit 2 and a usage line", describe(u))
