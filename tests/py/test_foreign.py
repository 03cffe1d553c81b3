# SPDX-License-Identifier: MIT
"""A _pycds compiled for another interpreter never loads into this one.

The test builds _pycds for an interpreter of another minor version (in
that interpreter's own build directory), installs it under this
interpreter's file name in a fresh venv, as a mistaken `make install`
would, and shows that a process started with an archive (or with the
build's recorder) does not crash, prints one `pycds:` line naming both
versions, and gives stock's output and exit status; and that `pycds
verify` and `pycds build` refuse that pairing in one line.
"""
import glob
import os
import re
import shutil
import subprocess
import sys

from pycdslib import (PYCDS, PYTHON, WORKLOADS, Tap, build, describe, diff,
                      pycds_lines, require, run, scratch)

require()
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def facts(python):
    r = run([python, "-c",
             "import sys, sysconfig; print(sys._base_executable, "
             "'%d.%d.%d' % sys.version_info[:3], "
             "sysconfig.get_config_var('EXT_SUFFIX'))"])
    return r.stdout.split() if r.returncode == 0 else None


mine = facts(PYTHON)
pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
others = [*sorted(glob.glob("/usr/bin/python3.1?")),
          *sorted(glob.glob(os.path.join(pyenv, "versions", "3.1*", "bin",
                                         "python3.1*")))]
other = None
for cand in others:
    if not re.search(r"/python3\.\d+$", cand) or not os.access(cand,
                                                                os.X_OK):
        continue
    f = facts(cand)
    # Versions pycds builds for (userspace/compat/compat.h).
    if f and f[1].rsplit(".", 1)[0] in ("3.11", "3.12", "3.13", "3.14",
                                        "3.15") and mine and \
            f[1].rsplit(".", 1)[0] != mine[1].rsplit(".", 1)[0]:
        other, other_facts = cand, f
        break
if not mine:
    Tap.skip_all(f"cannot ask {PYTHON} about itself")
if not other:
    Tap.skip_all("no interpreter of another minor version to build a "
                 "foreign _pycds with")
# Its headers are needed to build for it.
inc = run([other, "-c", "import sysconfig; print(sysconfig.get_paths()"
           "['include'])"]).stdout.strip()
if not os.path.isfile(os.path.join(inc, "Python.h")):
    Tap.skip_all(f"{other} has no headers to build _pycds with")

t = Tap(16)
tmp = scratch()
base, version, suffix = mine
other_version = other_facts[1]

# ---- a _pycds for the other interpreter, in its own build directory ----
mk = run(["make", "-C", TOP, "-s", "ext", f"PYTHON={other}"], timeout=900)
bdir = run(["make", "-C", TOP, "-s", "--no-print-directory", "builddir",
            f"PYTHON={other}"]).stdout.strip()
mine_dir = run(["make", "-C", TOP, "-s", "--no-print-directory", "builddir",
                f"PYTHON={base}"]).stdout.strip()
foreign = glob.glob(os.path.join(TOP, bdir, "_pycds.*.so"))
t.ok(mk.returncode == 0 and len(foreign) == 1,
     f"_pycds builds for {other} ({other_version})", describe(mk))
t.ok(bdir and mine_dir and bdir != mine_dir,
     "the two interpreters get different build directories",
     f"{bdir!r} and {mine_dir!r}")
if not foreign:
    sys.exit(1)

venv = os.path.join(tmp, "venv")
subprocess.run([base, "-m", "venv", "--without-pip", venv], check=True)
vpy = os.path.join(venv, "bin", "python")
site = run([vpy, "-c", "import sysconfig; "
            "print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
shutil.copy(foreign[0], os.path.join(site, "_pycds" + suffix))
shutil.copy(os.path.join(TOP, "userspace", "00-pycds.pth"), site)

# A sound archive for this interpreter, built with the good _pycds.
workload = os.path.join(WORKLOADS, "stdlib6.py")
archive = os.path.join(tmp, "s6.pycds")
b = build(archive, ["--once", "--", PYTHON, workload])
t.ok(b.returncode == 0 and os.path.isfile(archive),
     "an archive for this interpreter builds", describe(b))

both = re.compile(r"built for Python %s, this is Python %s"
                  % (re.escape(other_version), re.escape(version)))
stock = run([vpy, workload])
for what, env in (("an archive", {"PYCDS_ARCHIVE": archive}),
                  ("the recorder", {"PYCDS_RECORD":
                                    os.path.join(tmp, "record")})):
    p = run([vpy, workload], **env)
    lines = pycds_lines(p.stderr)
    t.ok(p.returncode == stock.returncode and p.stdout == stock.stdout,
         f"with {what} and a foreign _pycds: stock's output and exit "
         f"status", describe(p) + "\n" + diff(stock.stdout, p.stdout))
    t.ok(len(lines) == 1 and both.search(lines[0]),
         f"with {what}: one pycds: line naming both versions", describe(p))
    t.eq(p.stderr.replace(lines[0] + "\n", "") if lines else p.stderr,
         stock.stderr, f"with {what}: nothing else on stderr")

# ---- the tools refuse the pairing ----
v = run([PYCDS, "verify", archive, "--python", vpy])
lines = pycds_lines(v.stderr)
t.eq(v.returncode, 1, "pycds verify --python (foreign _pycds) exits 1")
t.ok(len(lines) == 1 and both.search(lines[0]) and "sound" not in v.stdout,
     "pycds verify says why in one line", describe(v))

out = os.path.join(tmp, "never.pycds")
marker = os.path.join(tmp, "ran")
bb = run([PYCDS, "build", "-o", out, "--python", vpy, "--", vpy, "-c",
          f"open({marker!r}, 'w').close()"])
lines = pycds_lines(bb.stderr)
t.eq(bb.returncode, 1, "pycds build --python (foreign _pycds) exits 1")
t.ok(len(lines) == 1 and both.search(lines[0]),
     "pycds build says why in one line", describe(bb))
t.ok(not os.path.exists(out) and not os.path.exists(marker),
     "pycds build refuses before running the command, and writes nothing",
     describe(bb))

# ---- and with the right _pycds the same venv works ----
good = os.path.join(TOP, mine_dir, "_pycds" + suffix)
if os.path.isfile(good):
    shutil.copy(good, os.path.join(site, "_pycds" + suffix))
    p = run([vpy, "-c", "import _pycds, sys; print(_pycds.enable(sys.argv[1]))",
             archive])
    t.ok(p.returncode == 0 and p.stdout.strip() == "True" and
         not pycds_lines(p.stderr),
         "the _pycds built for this interpreter loads and enables the "
         "archive", describe(p))
    v = run([PYCDS, "verify", archive, "--python", vpy])
    t.ok(v.returncode == 0 and "sound" in v.stdout,
         "and pycds verify finds the archive sound", describe(v))
else:
    t.skip("the right _pycds enables the archive", f"{good} not built")
    t.skip("pycds verify with the right _pycds", f"{good} not built")
