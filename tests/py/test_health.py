# SPDX-License-Identifier: MIT
"""An archive's health against the host as it is now, where operators see
it: `pycds inspect`, `pycds-loader --status` and pycds-top's metrics.

With an interpreter of the test's own (a venv with copies of the binary,
the staged _pycds in its site directory) and a small program:

- a fresh archive fits the interpreter and has no stale module;
- after a source of the program changes, the archive still fits, one
  module is stale everywhere it is reported, and a process gives stock's
  output;
- after "an upgrade" of the interpreter (the binary replaced by one with
  another build ID, a new file as a package upgrade writes), the archive
  no longer fits, everywhere it is reported; a new process says so in one
  line and gives stock's output; a process started before the upgrade
  keeps being served;
- `pycds rebuild` and a republish make it fit again with nothing stale,
  and new processes are served the new source;
- healing: `pycds-loader --foreground --heal 1` notices the next upgrade
  (or, on the PIE builds, a source change) by itself, rebuilds the
  archive from its recipe and publishes it, and new processes are served
  again; when a rebuild fails (the program is gone) it says so and the
  published archive stays, byte for byte.

Where the interpreter's types live in libpython (the PIE builds), the
binary cannot be upgraded under the test: those checks skip.  The loader
and metrics checks need root (a tmpfs mount) and BPF (pycds-top).
"""
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request

from pycdslib import (PYCDS, PYTHON, Tap, describe, pycds_lines, require,
                      run, scratch, site_dir, write_tree)

LOADER = os.environ.get("PYCDS_LOADER")
TOP = os.environ.get("PYCDS_TOP")
require()
t = Tap(20)
tmp = scratch()

# An interpreter of our own: copies, so that it can be replaced.
base = run([PYTHON, "-c", "import sys; print(sys._base_executable)"]
           ).stdout.strip()
venv = os.path.join(tmp, "venv")
p = run([base, "-m", "venv", "--copies", "--without-pip",
         "--system-site-packages", venv])
vpy = os.path.join(venv, "bin", os.path.basename(base))
vsite = run([vpy, "-c", "import sysconfig; "
             "print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
for f in os.listdir(site_dir()):
    if f.startswith("_pycds") or f == "00-pycds.pth":
        shutil.copy(os.path.join(site_dir(), f), vsite)

app = os.path.join(tmp, "app")
write_tree(app, {
    "main.py": "import calc\nprint(calc.total([1, 2, 3]))\n",
    "calc.py": "import json\n\ndef total(xs):\n    return sum(xs)\n",
})
src = os.path.join(tmp, "src")
mnt = os.path.join(tmp, "mnt")
os.makedirs(src)
archive = os.path.join(src, "app.pycds")
pub = os.path.join(mnt, "app.pycds")

p = run([PYCDS, "build", "-o", archive, "--python", vpy, "--", vpy,
         "main.py"], cwd=app, timeout=300, PYTHONHASHSEED="0")
if not t.ok(p.returncode == 0, "pycds build with the venv's interpreter",
            describe(p)):
    raise SystemExit(1)


def inspect(path):
    p = run([PYCDS, "inspect", path])
    kv = {}
    for ln in p.stdout.splitlines():
        k, _, v = ln.partition(":")
        kv.setdefault(k, v.strip())
    return p, kv


p, kv = inspect(archive)
fits, stale0 = kv.get("fits", ""), kv.get("stale modules", "")
nmods = int(stale0.split(" of ")[1]) if " of " in stale0 else -1
elf = fits.split(": ")[1] if fits.count(": ") >= 2 else ""
t.ok(p.returncode == 0 and fits.startswith("yes: ") and
     fits.endswith(": same build ID") and stale0 == f"0 of {nmods}" and
     nmods >= 2, "inspect: a fresh archive fits its interpreter file, "
     "0 modules stale", describe(p))
own_binary = os.path.realpath(elf) == os.path.realpath(vpy)

# ---- the loader and the metrics, where they can run ----
can_mount = os.geteuid() == 0 and LOADER
mounted = False


def umount():
    if mounted:
        subprocess.run(["umount", "-l", mnt], capture_output=True)


import atexit
atexit.register(umount)


def publish():
    global mounted
    p = run([LOADER, "--mount", mnt, "--source", src])
    mounted = mounted or p.returncode == 0
    return p


def status():
    p = run([LOADER, "--status", "--json", "--mount", mnt])
    try:
        rows = {r["archive"]: r for r in json.loads(p.stdout)}
    except ValueError:
        rows = {}
    return p, rows.get(pub)


top = None
mport = None
top_why = "needs root (mounts a tmpfs)"
if can_mount:
    publish()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    mport = s.getsockname()[1]
    s.close()
    top = subprocess.Popen([TOP, "--listen", f"127.0.0.1:{mport}", "-d",
                            "0.5", "--python", vpy, "--mount", mnt],
                           stderr=subprocess.PIPE, text=True)
    atexit.register(top.kill)
    lines = [top.stderr.readline(), top.stderr.readline()]
    if not any("serving" in ln for ln in lines):
        top_why = "pycds-top cannot serve here: " + " ".join(
            ln.strip() for ln in lines)[-200:]
        top.kill()
        top = None


def metrics():
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics",
                                timeout=10) as r:
        body = r.read().decode()
    out = {}
    for ln in body.splitlines():
        for name in ("pycds_archive_fits", "pycds_archive_stale_modules",
                     "pycds_archive_modules"):
            if ln.startswith(f'{name}{{archive="{pub}"}} '):
                out[name] = int(ln.split()[-1])
    return out, body


def check_status(fits, stale, what):
    if not can_mount:
        t.skip(f"--status: {what}", "needs root (mounts a tmpfs)")
        return
    p, row = status()
    t.ok(row is not None and row["fits"] is fits and
         row["stale"] == stale and row["modules"] == nmods,
         f"--status: {what}", describe(p))


def check_metrics(fits, stale, what):
    if not top:
        t.skip(f"metrics: {what}", top_why)
        return
    got, body = metrics()
    want = {"pycds_archive_fits": fits, "pycds_archive_stale_modules": stale,
            "pycds_archive_modules": nmods}
    t.eq(got, want, f"metrics: {what}", body[-1500:])


check_status(True, 0, "the published archive fits, 0 stale, its modules")
check_metrics(1, 0, "pycds_archive_fits 1, stale 0, modules counted")

# ---- a source changes ----
stock = run([vpy, "main.py"], cwd=app)
with open(os.path.join(app, "calc.py"), "w") as f:
    f.write("import json\n\ndef total(xs):\n    return sum(xs) * 10\n")
p, kv = inspect(archive)
t.ok(kv.get("fits", "").startswith("yes: ") and
     kv.get("stale modules") == f"1 of {nmods}",
     "inspect after a source change: still fits, 1 module stale",
     describe(p))
check_status(True, 1, "after a source change: fits, 1 stale")
check_metrics(1, 1, "after a source change: fits 1, stale 1")
stock = run([vpy, "main.py"], cwd=app)
p = run([vpy, "main.py"], cwd=app,
        PYCDS_ARCHIVE=pub if can_mount else archive)
t.ok(p.returncode == 0 and p.stdout == stock.stdout == "60\n" and
     not pycds_lines(p.stderr), "a process under it: stock's output",
     describe(p))


# ---- the interpreter is upgraded ----
def other_build(path):
    """The bytes of ELF file @path with one byte of its build ID flipped."""
    d = bytearray(open(path, "rb").read())
    phoff, = struct.unpack_from("<Q", d, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", d, 0x36)
    for i in range(phnum):
        ptype, _, off, _, _, size = struct.unpack_from(
            "<IIQQQQ", d, phoff + i * phentsize)
        at = off
        while ptype == 4 and at + 12 <= off + size:
            namesz, descsz, ntype = struct.unpack_from("<III", d, at)
            desc = at + 12 + ((namesz + 3) & ~3)
            if ntype == 3 and d[at + 12:at + 16] == b"GNU\0":
                d[desc] ^= 0xFF
                return bytes(d)
            at = desc + ((descsz + 3) & ~3)
    raise ValueError(f"{path}: no build ID")


UPGRADE = ("the interpreter's types live in {} (libpython), which the test "
           "cannot replace".format(elf))
# A process started before the upgrade, to import after it.
early = subprocess.Popen(
    [vpy, "-c", "import sys\nsys.stdin.readline()\nimport json, _pycds\n"
     "print(json.dumps([1]), _pycds.stats()['hits'])\n"],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    text=True, env=dict(os.environ,
                        PYCDS_ARCHIVE=pub if can_mount else archive))
time.sleep(0.5)
if own_binary:
    new = vpy + ".new"
    with open(new, "wb") as f:
        f.write(other_build(vpy))
    os.chmod(new, 0o755)
    os.replace(new, vpy)
    p, kv = inspect(archive)
    t.ok(kv.get("fits", "").startswith("no: ") and
         "build ID differs" in kv.get("fits", ""),
         "inspect after the upgrade: does not fit, says why", describe(p))
    check_status(False, 1, "after the upgrade: does not fit")
    check_metrics(0, 1, "after the upgrade: pycds_archive_fits 0")
    stock = run([vpy, "main.py"], cwd=app, PYCDS_ARCHIVE="")
    p = run([vpy, "main.py"], cwd=app,
            PYCDS_ARCHIVE=pub if can_mount else archive)
    lines = pycds_lines(p.stderr)
    t.ok(p.returncode == 0 and p.stdout == stock.stdout and
         len(lines) == 1 and "build ID differs" in lines[0],
         "a new process: one line saying so, stock's output", describe(p))
else:
    for what in ("inspect after the upgrade", "--status after the upgrade",
                 "metrics after the upgrade", "a new process after it"):
        t.skip(what, UPGRADE)
out, err = early.communicate("go\n", timeout=60)
words = out.split()
t.ok(early.returncode == 0 and words[:1] == ["[1]"] and
     len(words) == 2 and int(words[1]) >= 1,
     "a process started before the upgrade: still served",
     f"stdout {out!r} stderr {err!r}")

# ---- rebuilt and republished ----
p = run([PYCDS, "rebuild", archive], timeout=300)
q, kv = inspect(archive)
t.ok(p.returncode == 0 and kv.get("fits", "").startswith("yes: ") and
     kv.get("stale modules") == f"0 of {nmods}",
     "pycds rebuild: fits again, nothing stale", describe(p) + describe(q))
if can_mount:
    publish()
check_status(True, 0, "republished: fits, 0 stale")
p = run([vpy, "-c", "import runpy, _pycds, sys; sys.path.insert(0, '.'); "
         "runpy.run_path('main.py'); "
         "print(_pycds.stats()['stale'], file=sys.stderr)"], cwd=app,
        PYCDS_ARCHIVE=pub if can_mount else archive)
t.ok(p.returncode == 0 and p.stdout == "60\n" and
     p.stderr.strip() == "0",
     "a new process: the new source, nothing stale", describe(p))


# ---- healing: the loader rebuilds by itself ----
def wait_for(cond, seconds=120):
    end = time.time() + seconds
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.5)
    return cond()


if not can_mount:
    for what in ("healing: the loader rebuilt and republished it",
                 "healing: --status fits, 0 stale",
                 "healing: new processes served again",
                 "healing: a failed rebuild keeps the published archive"):
        t.skip(what, "needs root (mounts a tmpfs)")
    raise SystemExit(0)
log = os.path.join(tmp, "loader.log")
logf = open(log, "w")
ino0 = os.stat(pub).st_ino
fg = subprocess.Popen([LOADER, "--mount", mnt, "--source", src,
                       "--foreground", "--heal", "1", "--pycds", PYCDS],
                      stdout=logf, stderr=logf)
atexit.register(fg.kill)
wait_for(lambda: "watching" in open(log).read(), 30)
if own_binary:
    new = vpy + ".new"
    with open(new, "wb") as f:
        f.write(other_build(vpy))
    os.chmod(new, 0o755)
    os.replace(new, vpy)
    cause = "does not fit the interpreter"
    out = "60\n"
else:
    with open(os.path.join(app, "calc.py"), "w") as f:
        f.write("import json\n\ndef total(xs):\n    return sum(xs) * 100\n")
    cause = "1 of its"
    out = "600\n"


def healed():
    _, row = status()
    return (row and row["fits"] is True and row["stale"] == 0 and
            os.stat(pub).st_ino != ino0 and row)


row = wait_for(healed)
text = open(log).read()
t.ok(row and cause in text and "rebuilt" in text and
     f"published {pub}" in text,
     "healing: the loader rebuilt and republished it", text[-3000:])
t.ok(bool(row), "healing: --status fits, 0 stale", str(status()[1]))
p = run([vpy, "-c", "import runpy, _pycds, sys; sys.path.insert(0, '.'); "
         "runpy.run_path('main.py'); s = _pycds.stats(); "
         "print(s['hits'], s['stale'], file=sys.stderr)"], cwd=app,
        PYCDS_ARCHIVE=pub)
hits, _, stale = p.stderr.strip().partition(" ")
t.ok(p.returncode == 0 and p.stdout == out and hits.isdigit() and
     int(hits) >= 2 and stale == "0",
     "healing: new processes served again", describe(p))

# A rebuild that cannot succeed: the program is gone.
published = open(pub, "rb").read()
ino1 = os.stat(pub).st_ino
os.rename(os.path.join(app, "main.py"), os.path.join(app, "main.py.gone"))
with open(os.path.join(app, "calc.py"), "w") as f:
    f.write("import json\n\ndef total(xs):\n    return sum(xs) * 1000\n")
failed = wait_for(lambda: "the rebuild failed; keeping the published "
                  "archive" in open(log).read())
time.sleep(1)
_, row = status()
t.ok(failed and os.stat(pub).st_ino == ino1 and
     open(pub, "rb").read() == published and row and row["fits"] is True
     and row["stale"] == 1 and fg.poll() is None,
     "healing: a failed rebuild keeps the published archive",
     open(log).read()[-3000:] + f"\nstatus {row}")
fg.terminate()
fg.wait(timeout=30)
