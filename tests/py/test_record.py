# SPDX-License-Identifier: MIT
"""Recording is invisible: under `pycds build` a program gets exactly its
stock behaviour (output, exit status, no extra lines on stderr), even when
it installs its own trace and profile functions from several threads,
imports from threads and with importlib, or starts a child that runs as
another user; and the archive built from that run serves the program.
"""
import os
import re
import shutil
import subprocess
import tempfile

from pycdslib import (PYCDS, PYTHON, Tap, at_end, build, describe, diff,
                      pycds_lines, require, run, scratch, write_tree)

require()
t = Tap(17)
tmp = scratch()
os.chmod(tmp, 0o755)

# ---- a program with its own tracing and profiling, in threads ----
app = os.path.join(tmp, "app")
write_tree(app, {
    "helper.py": "def work_helper(x):\n    return x * 2\n",
    "late.py": "VALUE = 'late'\n",
    "tracing.py": r'''
import importlib, sys, threading
seen, lock = [], threading.Lock()

def note(kind, frame):
    if frame.f_code.co_name.startswith("work"):
        with lock:
            seen.append((kind, threading.current_thread().name,
                         frame.f_code.co_name))

def tracer(frame, event, arg):
    if event == "call":
        note("trace", frame)
    return None

def profiler(frame, event, arg):
    if event == "call":
        note("profile", frame)

def work_json():
    import json
    return json.dumps({"a": [1, 2]})

def work_decimal():
    import decimal
    return str(decimal.Decimal(1) / 7)

def work_in_thread(i):
    # Each thread installs and removes its own functions.
    sys.settrace(tracer)
    sys.setprofile(profiler)
    r = (work_json(), work_decimal(), importlib.import_module("helper")
         .work_helper(i))
    sys.settrace(None)
    sys.setprofile(None)
    return r

threading.settrace(tracer)
threading.setprofile(profiler)
threads = [threading.Thread(target=work_in_thread, args=(i,), name=f"t{i}")
           for i in range(4)]
for th in threads:
    th.start()
for th in threads:
    th.join()
threading.settrace(None)
threading.setprofile(None)
print("main trace/profile before:", sys.gettrace(), sys.getprofile())
sys.settrace(tracer)
sys.setprofile(profiler)
work_json()
print("main trace/profile set:", sys.gettrace() is tracer,
      sys.getprofile() is profiler)
sys.settrace(None)
sys.setprofile(None)
# Deleted and imported again through importlib, not the import statement.
import late
del sys.modules["late"]
print(importlib.import_module("late").VALUE)
for kind, who, what in sorted(set(seen)):
    print(kind, who, what)
sys.exit(3)
''',
    "child.py": r'''
import json, os, subprocess, sys
# A child that runs as another user: it cannot write the record.
r = subprocess.run([sys.executable, "-c",
                    "import fractions; print(fractions.Fraction(3, 6))"],
                   user="nobody", group="nogroup", capture_output=True,
                   text=True, cwd="/")
print("child:", r.returncode, r.stdout.strip(), repr(r.stderr))
print(json.dumps([1]))
''',
})
prog = os.path.join(app, "tracing.py")
stock = run([PYTHON, prog], cwd=app)
t.ok(stock.returncode == 3 and "profile t3 work_in_thread" in stock.stdout
     and "trace MainThread work_json" in stock.stdout,
     "stock: the program traces and profiles its threads and exits 3",
     describe(stock))

arch = os.path.join(tmp, "tracing.pycds")
b = build(arch, ["--", PYTHON, prog], cwd=app)
t.ok(b.stdout.startswith(stock.stdout),
     "under pycds build: the program's output is stock's",
     describe(b) + "\n" + diff(stock.stdout, b.stdout[:len(stock.stdout)]))
rest = b.stdout[len(stock.stdout):].splitlines()
t.ok(rest and all(line.startswith("pycds: ") for line in rest),
     "after it only the build's own summary lines", describe(b))
t.ok(re.search(r"the command exited with status 3\b", b.stderr) and
     len(b.stderr.splitlines()) == 1,
     "the build reports the command's exit status 3, and nothing else on "
     "stderr", describe(b))
t.ok(b.returncode == 0 and os.path.isfile(arch), "the archive is written",
     describe(b))
m = re.search(r"recorded (\d+) modules from (\d+) process", b.stdout)
t.ok(m and int(m.group(1)) > 10 and m.group(2) == "1",
     "the summary says what was recorded, from one process", b.stdout)
mods = run([PYCDS, "inspect", "--modules", arch])
names = set(re.findall(r"^  (\S+) ", mods.stdout, re.M))
t.ok({"json.encoder", "decimal", "helper", "late", "threading"} <= names,
     "modules imported in threads, with importlib and again after deletion "
     "are in the archive", mods.stdout[-2000:])

# The archive serves the program, with the same output.
served = run([PYTHON, "-c", "import runpy, sys; sys.argv = [sys.argv[1]]\n"
              "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
              "finally:\n    import _pycds; s = _pycds.stats()\n"
              "    print('HITS', s['hits'], s['error'], file=sys.stderr)\n",
              prog], cwd=app, PYCDS_ARCHIVE=arch)
hits = re.search(r"HITS (\d+) None", served.stderr)
t.ok(hits and int(hits.group(1)) >= 5,
     "the archive serves the traced program's imports", describe(served))
t.eq(served.stdout, stock.stdout, "and its output is stock's")
t.eq(served.returncode, 3, "and its exit status too")

# ---- a child that runs as another user ----
def nobody_runs(python):
    """Why nobody cannot run @python, or None."""
    try:
        r = subprocess.run([python, "-c", "pass"], user="nobody",
                           group="nogroup", capture_output=True, cwd="/",
                           timeout=60)
    except OSError as e:
        return f"nobody cannot run {python}: {e}"
    return None if r.returncode == 0 else \
        f"nobody cannot run {python}: exit {r.returncode}"


def python_for_nobody(top):
    """(@PYTHON, None) when nobody can run it; else a venv in @top of its
    base interpreter with pycds staged (the tree may be under a private
    home); (None, why) when even the base interpreter is out of nobody's
    reach (a pyenv under /root)."""
    if os.geteuid() != 0:
        return None, "needs root to run a child as nobody"
    if not nobody_runs(PYTHON):
        return PYTHON, None
    q = run([PYTHON, "-c", "import _pycds, sys; "
             "print(sys._base_executable); print(_pycds.__file__)"])
    lines = q.stdout.split()
    if q.returncode or len(lines) != 2:
        return None, "cannot find the base interpreter: " + describe(q)
    base, ext = lines
    why = nobody_runs(base)
    if why:
        return None, why
    venv = os.path.join(top, "venv")
    v = run([base, "-m", "venv", "--without-pip", "--system-site-packages",
             venv])
    py = os.path.join(venv, "bin", "python")
    site = run([py, "-c", "import sysconfig; "
                "print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    if v.returncode or not site:
        return None, "cannot make a venv anyone can run: " + describe(v)
    for f in (ext, os.path.join(os.path.dirname(ext), "00-pycds.pth")):
        shutil.copy(f, site)
        os.chmod(os.path.join(site, os.path.basename(f)), 0o644)
    return py, None


# Where nobody can read: the archive (and a venv when needed).
pub = tempfile.mkdtemp(prefix="pycds-test-nobody-")
at_end(shutil.rmtree, pub, True)
os.chmod(pub, 0o755)
NOBODY_PY, why = python_for_nobody(pub)
if why:
    for what in ("child as another user: stock output under build",
                 "the child prints no pycds line",
                 "the summary counts the unrecorded child",
                 "the child's own imports are not recorded",
                 "the archive serves the parent; the child runs stock",
                 "and the child under the archive prints nothing more"):
        t.skip(what, why)
else:
    cprog = os.path.join(app, "child.py")
    cstock = run([NOBODY_PY, cprog], cwd=app)
    carch = os.path.join(pub, "child.pycds")
    cb = build(carch, ["--", NOBODY_PY, cprog], cwd=app, python=NOBODY_PY)
    t.ok(cstock.returncode == 0 and "child: 0 1/2 ''" in cstock.stdout and
         cb.stdout.startswith(cstock.stdout),
         "child as another user: stock output under pycds build",
         describe(cstock) + "\n" + describe(cb))
    t.ok(not pycds_lines(cb.stderr) and "cannot record" not in cb.stdout,
         "the child prints no pycds line", describe(cb))
    t.ok(re.search(r"1 process could not write the record", cb.stdout),
         "the summary counts the unrecorded child", describe(cb))
    cm = run([PYCDS, "inspect", "--modules", carch])
    cnames = set(re.findall(r"^  (\S+) ", cm.stdout, re.M))
    t.ok(cm.returncode == 0 and "fractions" not in cnames and
         "json" in cnames,
         "the child's own imports are not recorded (the parent's are)",
         cm.stdout[-1500:])
    cs = run([NOBODY_PY, cprog], cwd=app, PYCDS_ARCHIVE=carch)
    t.ok(cs.stdout == cstock.stdout and cs.returncode == 0,
         "the archive serves the parent; the child runs stock",
         describe(cs) + "\n" + diff(cstock.stdout, cs.stdout))
    t.eq(cs.stderr, cstock.stderr,
         "and with the archive nothing more on stderr")

# ---- the recorder never creates a record file of its own ----
gone = os.path.join(tmp, "no-such-dir", "record")
p = run([PYTHON, "-c", "import json; print(json.dumps(2))"],
        PYCDS_RECORD=gone)
t.ok(p.returncode == 0 and p.stdout == "2\n" and p.stderr == "" and
     not os.path.exists(os.path.dirname(gone)),
     "with a record path it cannot open: stock output, silence, nothing "
     "created", describe(p))
