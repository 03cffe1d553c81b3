# SPDX-License-Identifier: MIT
"""Each trust rule, tried: PYCDS_ARCHIVE is ignored under -E and -I and in
setuid processes, as CPython ignores its own variables; an archive owned
by another user or writable by others is refused even when everything
else about it is right; a symlink is followed only to a trusted file."""
import os
import shutil
import stat
import subprocess

from pycdslib import PYTHON, WORKLOADS, Tap, build, pycds_lines, run, scratch

t = Tap(12)
tmp = scratch()
os.chmod(tmp, 0o755)
script = os.path.join(WORKLOADS, "stdlib6.py")
archive = os.path.join(tmp, "a.pycds")
build(archive, ["--", PYTHON, script])
stock = run([PYTHON, script]).stdout

STATE = ("import sys; m = sys.modules.get('_pycds'); "
         "print('in use' if m and m.stats()['base'] else 'not in use')")

for flag in ("-E", "-I"):
    p = run([PYTHON, flag, "-c", STATE], PYCDS_ARCHIVE=archive)
    t.ok(p.stdout.strip() == "not in use" and not pycds_lines(p.stderr),
         f"{flag}: PYCDS_ARCHIVE ignored", p.stdout + p.stderr)
p = run([PYTHON, "-c", STATE], PYCDS_ARCHIVE=archive)
t.eq(p.stdout.strip(), "in use", "without -E/-I the same archive is used")

# A setuid-root copy of the interpreter run by nobody: real uid differs
# from the effective one, so the variable must be ignored.
if os.geteuid() != 0:
    t.skip("setuid interpreter ignores PYCDS_ARCHIVE", "needs root")
    t.skip("the setuid copy works without the variable", "needs root")
else:
    venv_bin = os.path.dirname(PYTHON)
    suid = os.path.join(venv_bin, f"python-suid-test-{os.getpid()}")
    shutil.copy(os.path.realpath(PYTHON), suid)
    try:
        os.chmod(suid, 0o4755)
        mounted_nosuid = "nosuid" in subprocess.run(
            ["findmnt", "-no", "OPTIONS", "-T", suid],
            capture_output=True, text=True).stdout
        if mounted_nosuid:
            t.skip("setuid interpreter ignores PYCDS_ARCHIVE",
                   "build directory is mounted nosuid")
            t.skip("the setuid copy works", "nosuid")
        else:
            os.chmod(archive, 0o644)
            cmd = ["setpriv", "--reuid=65534", "--regid=65534",
                   "--clear-groups", suid, "-c",
                   STATE + "; import os; print(os.getuid(), os.geteuid())"]
            p = run(cmd, PYCDS_ARCHIVE=archive)
            lines = p.stdout.split("\n")
            t.ok(lines[0] == "not in use" and not pycds_lines(p.stderr),
                 "setuid interpreter ignores PYCDS_ARCHIVE",
                 p.stdout + p.stderr)
            t.ok(len(lines) > 1 and lines[1] == "65534 0",
                 "the copy really ran setuid (uid 65534, euid 0)", p.stdout)
    finally:
        os.unlink(suid)

# Owned by another user: refused even though it is sound.
other = os.path.join(tmp, "other.pycds")
shutil.copy(archive, other)
if os.geteuid() == 0:
    os.chown(other, 65534, 65534)
    p = run([PYTHON, script], PYCDS_ARCHIVE=other)
    t.ok(p.stdout == stock and len(pycds_lines(p.stderr)) == 1 and
         "owned by uid 65534" in p.stderr, "foreign owner refused",
         p.stderr)
else:
    t.skip("foreign owner refused", "needs root to chown")
# Writable by group or others: refused.
for mode in (0o664, 0o646):
    w = os.path.join(tmp, f"w{mode:o}.pycds")
    shutil.copy(archive, w)
    os.chmod(w, mode)
    p = run([PYTHON, script], PYCDS_ARCHIVE=w)
    t.ok(p.stdout == stock and "writable by group or others" in p.stderr,
         f"mode {mode:o} refused", p.stderr)
# A symlink to a trusted archive is fine; to a foreign one it is not.
link = os.path.join(tmp, "link.pycds")
os.symlink(other if os.geteuid() == 0 else archive, link)
p = run([PYTHON, script], PYCDS_ARCHIVE=link)
if os.geteuid() == 0:
    t.ok(p.stdout == stock and "owned by uid 65534" in p.stderr,
         "a symlink does not launder a foreign owner", p.stderr)
else:
    t.skip("a symlink does not launder a foreign owner", "needs root")

# A FUSE file system can present any owner: bindfs shows a directory of
# nobody's as root's.  The archive there must be refused all the same.
if os.geteuid() != 0 or not shutil.which("bindfs"):
    t.skip("archive on FUSE refused", "needs root and bindfs")
    t.skip("the same bytes elsewhere are used", "needs root and bindfs")
else:
    lower, upper = os.path.join(tmp, "lower"), os.path.join(tmp, "fuse")
    os.makedirs(lower)
    os.makedirs(upper)
    shutil.copy(archive, os.path.join(lower, "a.pycds"))
    os.chown(os.path.join(lower, "a.pycds"), 65534, 65534)
    m = subprocess.run(["bindfs", "-u", "0", "-g", "0", "-p", "0444",
                        lower, upper], capture_output=True, text=True)
    try:
        fused = os.path.join(upper, "a.pycds")
        st = os.stat(fused) if m.returncode == 0 else None
        if not st or st.st_uid != 0:
            t.skip("archive on FUSE refused", "bindfs mount failed: " +
                   m.stderr.strip())
        else:
            p = run([PYTHON, script], PYCDS_ARCHIVE=fused)
            t.ok(p.stdout == stock and len(pycds_lines(p.stderr)) == 1 and
                 "FUSE" in p.stderr,
                 "archive on FUSE refused though it shows as root's 0444",
                 p.stderr)
    finally:
        subprocess.run(["fusermount", "-u", upper], capture_output=True)
        subprocess.run(["umount", "-l", upper], capture_output=True)
    p = run([PYTHON, "-c", STATE], PYCDS_ARCHIVE=archive)
    t.eq(p.stdout.strip(), "in use", "the same bytes elsewhere are used")

# A module name that is not valid UTF-8 (a lone surrogate) must fail to
# import exactly as it does stock, not trip over the archive's lookup.
PROBE = ("try:\n    __import__('bad\\udc80name')\n"
         "except BaseException as e:\n    print(type(e).__name__)\n")
a = run([PYTHON, "-c", PROBE], PYCDS_ARCHIVE=archive)
b = run([PYTHON, "-c", PROBE])
t.ok(a.stdout == b.stdout == "ModuleNotFoundError\n" and
     not pycds_lines(a.stderr), "a surrogate module name fails as stock",
     a.stdout + a.stderr)
