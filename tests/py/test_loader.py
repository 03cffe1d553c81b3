# SPDX-License-Identifier: MIT
"""pycds-loader on real mounts: mount options, atomic publish of checked
copies, huge-page backing seen by a process, and that a corrupt source, a
full tmpfs or a killed loader never removes or damages what is published,
even while processes start from it over and over, and a stack of two
layers while either is republished."""
import json
import os
import shutil
import signal
import subprocess
import threading
import time

from pycdslib import (PYCDS, PYTHON, REGION_IDLE, REGION_NAMES, WORKLOADS,
                      Archive, Tap, build, pycds_lines, run, scratch)

LOADER = os.environ.get("PYCDS_LOADER")
PLAN = 27
if os.geteuid() != 0 or not LOADER:
    print(f"1..0 # SKIP needs root and PYCDS_LOADER (mounts tmpfs)")
    raise SystemExit(0)
t = Tap(PLAN)
tmp = scratch()
src = os.path.join(tmp, "src")
mnt = os.path.join(tmp, "mnt")
os.makedirs(src)
script = os.path.join(WORKLOADS, "stdlib6.py")
good = os.path.join(tmp, "app.pycds")
b = build(good, ["--", PYTHON, script])
shutil.copy(good, os.path.join(src, "app.pycds"))
with open(good, "rb") as f:
    GOOD = f.read()
stock = run([PYTHON, script]).stdout


def loader(*args, timeout=120):
    return subprocess.run([LOADER, "--mount", mnt, "--source", src, *args],
                          capture_output=True, text=True, timeout=timeout)


def umount():
    subprocess.run(["umount", "-l", mnt], capture_output=True)


def listing():
    return sorted(os.listdir(mnt))


import atexit
atexit.register(umount)

p = loader()
t.ok(p.returncode == 0, "first run mounts and publishes", p.stderr)
mi = [l for l in open("/proc/self/mountinfo") if f" {mnt} " in l]
opts = mi[-1].split()[5] if mi else ""
sup = mi[-1].split(" - ")[1] if mi else ""
t.ok(all(o in opts.split(",") for o in ("nosuid", "nodev", "noexec")) and
     sup.startswith("tmpfs ") and "huge=within_size" in sup and
     "mode=755" in sup, "tmpfs with huge=within_size,nosuid,nodev,noexec,"
     "mode 0755", mi)
pub = os.path.join(mnt, "app.pycds")
st = os.stat(pub)
t.ok(st.st_uid == 0 and (st.st_mode & 0o7777) == 0o444,
     "published root-owned, mode 0444", oct(st.st_mode))
t.ok(open(pub, "rb").read() == GOOD, "published bytes equal the source")
# The padding a build leaves before the written regions (3.11 with a
# non-PIE interpreter) is read back as zeros by the copy: the loader
# punches it out again, so it takes no memory in the mount.
A = Archive(good)
reg = A.h["regions"]
idle_end = (reg[REGION_IDLE][0] + reg[REGION_IDLE][1] + 4095) // 4096 * 4096
gap = reg[REGION_NAMES][0] - idle_end
if gap >= 64 << 10:
    held = os.stat(pub).st_blocks * 512
    t.ok(held <= len(GOOD) - gap,
         f"the {gap}-byte padding takes no memory in the mount "
         f"({held} bytes held for {len(GOOD)})")
    # Reading a hole through a mapping of a tmpfs file fills it: --status
    # and verify read around the holes.
    subprocess.run([LOADER, "--status", "--mount", mnt], capture_output=True)
    v = subprocess.run([PYCDS, "verify", "--python", PYTHON, pub],
                       capture_output=True, text=True)
    after = os.stat(pub).st_blocks * 512
    t.ok(v.returncode == 0 and after == held,
         f"--status and pycds verify leave it so ({after} bytes held)",
         v.stderr)
else:
    t.skip_n(2, "the padding takes no memory in the mount",
             f"this build left {gap} bytes of padding")
t.eq(listing(), [".pycds-loader.lock", "app.pycds"], "nothing else in the mount")

# The published file is in 2 MiB pages that processes map whole: a
# process served from it maps the file again, read-only, reads one byte
# of each 2 MiB chunk and finds them mapped with PMDs.  (Its own mapping
# of the archive is writable and private: a chunk in which the process
# writes one page, as every process does in the written regions and, for
# code the layout did not see run, in the idle region, is split into
# 4 KiB mappings, which still share the file's pages.)
PROBE = r"""
import _pycds, json, mmap, sys
with open(sys.argv[1], "rb") as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
view = memoryview(m)
for c in range(0, len(m), 2 << 20):
    view[c]
kb, cur = 0, False
for l in open("/proc/self/smaps"):
    w = l.split()
    if "-" in w[0]:
        cur = len(w) >= 6 and w[5] == sys.argv[1]
    elif cur and w[0] == "ShmemPmdMapped:":
        kb += int(w[1])
print(json.dumps({"pmd_kb": kb, "hits": _pycds.stats()["hits"]}))
del view
m.close()
"""
p = run([PYTHON, "-c", PROBE, pub], PYCDS_ARCHIVE=pub)
r = json.loads(p.stdout or "{}")
t.ok(r.get("pmd_kb", 0) > 0 and r.get("hits", 0) > 0,
     f"a process served from it maps it in 2 MiB pages (ShmemPmdMapped "
     f"{r.get('pmd_kb')} kB, {r.get('hits')} modules served)", p.stderr)

s = subprocess.run([LOADER, "--status", "--json", "--mount", mnt],
                   capture_output=True, text=True)
rows = json.loads(s.stdout or "[]")
tag = run([PYTHON, "-c", "import sys; print(sys.implementation.cache_tag)"]
          ).stdout.strip()
t.ok(len(rows) == 1 and rows[0]["huge"] and rows[0]["bytes"] == len(GOOD) and
     tag in rows[0]["interpreter"], "--status --json reports it",
     s.stdout + s.stderr)

# A corrupt source: rejected, the published inode stays.
ino = os.stat(pub).st_ino
bad = bytearray(GOOD)
bad[len(bad) // 2] ^= 1
with open(os.path.join(src, "app.pycds"), "wb") as f:
    f.write(bad)
p = loader()
t.ok(p.returncode == 1 and "keeping the published archive" in p.stderr,
     "corrupt source rejected in one line", p.stderr)
t.ok(os.stat(pub).st_ino == ino and open(pub, "rb").read() == GOOD,
     "published archive untouched")
t.eq(listing(), [".pycds-loader.lock", "app.pycds"], "no stray file")
shutil.copy(good, os.path.join(src, "app.pycds"))

# A full tmpfs: restaging needs room for a second copy.
size = (len(GOOD) * 3 // 2 + 4095) // 4096 * 4096
subprocess.run(["mount", "-o", f"remount,size={size}", mnt], check=True)
p = loader()
t.ok(p.returncode == 1 and "No space" in p.stderr,
     "ENOSPC reported in one line", p.stderr)
t.ok(open(pub, "rb").read() == GOOD, "published archive intact after ENOSPC")
t.eq(listing(), [".pycds-loader.lock", "app.pycds"], "no stray file after ENOSPC")
# Room for old versions that running processes still map.
subprocess.run(["mount", "-o", f"remount,size={len(GOOD) * 64}", mnt],
               check=True)

# A loader killed at random points while copying several archives.
for i in range(6):
    shutil.copy(good, os.path.join(src, f"copy{i}.pycds"))
killed_ok = True
for delay in (0.005, 0.02, 0.05, 0.1):
    proc = subprocess.Popen([LOADER, "--mount", mnt, "--source", src],
                            stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for name in os.listdir(mnt):
        if name.endswith(".pycds") and not name.startswith("."):
            v = run([PYCDS, "verify", os.path.join(mnt, name), "--python",
                     PYTHON])
            killed_ok &= v.returncode == 0
t.ok(killed_ok and open(pub, "rb").read() == GOOD,
     "after SIGKILL mid-copy every published archive verifies")
p = loader()
t.ok(p.returncode == 0 and all(n == ".pycds-loader.lock" or
                               (n.endswith(".pycds") and n[0] != ".")
                               for n in listing()),
     "the next run leaves no stray file", listing())
for i in range(6):
    os.unlink(os.path.join(src, f"copy{i}.pycds"))
    os.unlink(os.path.join(mnt, f"copy{i}.pycds"))

# Republish 50 times while 32 workers start from it over and over.
stop = threading.Event()
results = []


def worker(archive):
    while not stop.is_set():
        p = run([PYTHON, script], PYCDS_ARCHIVE=archive)
        results.append((p.returncode, p.stdout, pycds_lines(p.stderr)))


threads = [threading.Thread(target=worker, args=(pub,)) for _ in range(32)]
for th in threads:
    th.start()
fails, errs = 0, []
for i in range(50):
    os.utime(os.path.join(src, "app.pycds"))
    p = loader()
    if p.returncode:
        fails += 1
        errs.append(p.stderr)
stop.set()
for th in threads:
    th.join()
bad_runs = [r for r in results if r[0] != 0 or r[1] != stock or r[2]]
t.ok(fails == 0, f"50 republishes succeeded ({fails} failed)", errs[:2])
t.ok(len(results) >= 32 and not bad_runs,
     f"{len(results)} starts during republishing, {len(bad_runs)} failed or "
     "changed", bad_runs[:3])

# Two layers: --status names the one each is built on, and republishing
# either while 32 workers start from both changes nothing they print.
lower_src = os.path.join(src, "json.pycds")
upper_src = os.path.join(src, "app-on-json.pycds")
bl = build(lower_src, ["-m", "json"])
bu = build(upper_src, ["--on", lower_src, "--", PYTHON, script])
p = loader()
st = subprocess.run([LOADER, "--status", "--mount", mnt, "--json"],
                    capture_output=True, text=True)
try:
    ons = {os.path.basename(e["archive"]): e["on"]
           for e in json.loads(st.stdout)}
except ValueError:
    ons = {}
t.ok(bl.returncode == 0 and bu.returncode == 0 and p.returncode == 0 and
     ons.get("app-on-json.pycds") == os.path.join(mnt, "json.pycds") and
     ons.get("json.pycds") is None,
     "--status names the published layer a layer is built on",
     st.stdout + st.stderr + bl.stderr + bu.stderr)
stack = f"{os.path.join(mnt, 'json.pycds')}:{os.path.join(mnt, 'app-on-json.pycds')}"
probe = run([PYTHON, "-c", "import runpy, sys, io, contextlib, _pycds\n"
             "sys.argv = [sys.argv[1]]\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "print([l['hits'] for l in _pycds.stats()['layers']])", script],
            PYCDS_ARCHIVE=stack)
t.ok(probe.returncode == 0 and probe.stdout.strip().startswith("[") and
     all(int(x) > 0 for x in probe.stdout.strip()[1:-1].split(",")),
     "both published layers serve one process", probe.stdout + probe.stderr)
stop.clear()
results.clear()


threads = [threading.Thread(target=worker, args=(stack,)) for _ in range(32)]
for th in threads:
    th.start()
fails = 0
for i in range(30):
    os.utime(lower_src if i % 2 else upper_src)
    fails += loader().returncode != 0
stop.set()
for th in threads:
    th.join()
bad_runs = [r for r in results if r[0] != 0 or r[1] != stock or r[2]]
t.ok(fails == 0 and len(results) >= 32 and not bad_runs,
     f"30 republishes of either layer ({fails} failed), {len(results)} "
     f"starts from both, {len(bad_runs)} failed or changed", bad_runs[:3])
for f in (lower_src, upper_src):
    os.unlink(f)
    os.unlink(os.path.join(mnt, os.path.basename(f)))

# Two loaders at once: the second waits for the first.
a = subprocess.Popen([LOADER, "--mount", mnt, "--source", src],
                     stderr=subprocess.PIPE, text=True)
bb = subprocess.Popen([LOADER, "--mount", mnt, "--source", src],
                      stderr=subprocess.PIPE, text=True)
ea, eb = a.communicate(timeout=60)[1], bb.communicate(timeout=60)[1]
t.ok(a.returncode == 0 and bb.returncode == 0 and
     open(pub, "rb").read() == GOOD, "two concurrent loaders both succeed",
     ea + eb)

# --foreground republishes on change and exits on SIGTERM.
fg = subprocess.Popen([LOADER, "--mount", mnt, "--source", src,
                       "--foreground"], stderr=subprocess.PIPE, text=True)
time.sleep(0.5)
ino = os.stat(pub).st_ino
tmpf = os.path.join(src, ".app.tmp")
shutil.copy(good, tmpf)
os.rename(tmpf, os.path.join(src, "app.pycds"))
for _ in range(100):
    if os.stat(pub).st_ino != ino:
        break
    time.sleep(0.05)
t.ok(os.stat(pub).st_ino != ino, "--foreground republished on change")
fg.send_signal(signal.SIGTERM)
err = fg.communicate(timeout=10)[1]
t.ok(fg.returncode == 0 and "published" in err, "--foreground exits on "
     "SIGTERM", err)

# A mismatching mount is refused; --unmount detaches.
p = subprocess.run([LOADER, "--unmount", "--mount", mnt], capture_output=True,
                   text=True)
t.ok(p.returncode == 0 and not any(f" {mnt} " in l for l in
                                   open("/proc/self/mountinfo")),
     "--unmount detaches", p.stderr)
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "plain", mnt],
               check=True)
p = loader()
t.ok(p.returncode == 1 and "refusing" in p.stderr,
     "a tmpfs without huge pages is refused", p.stderr)
umount()
