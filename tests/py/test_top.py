# SPDX-License-Identifier: MIT
"""pycds-top on real probes: a process running from an archive is shown
with the hits _pycds counted, exactly the imports -X importtime lists and
faults inside the archive mapping; a process on two layers with each
layer's hits; a stock process is shown with its import latency; the
interactive view sorts on keys and quits on q."""
import json
import os
import shutil
import subprocess
import time

from pycdslib import PYTHON, WORKLOADS, Tap, build, require_bpf, run, scratch

TOP = os.environ.get("PYCDS_TOP")
require_bpf(TOP)

t = Tap(14)
tmp = scratch()
script = os.path.join(WORKLOADS, "stdlib6.py")
archive = os.path.join(tmp, "stdlib6.pycds")
build(archive, ["--", PYTHON, script])
lower = os.path.join(tmp, "json.pycds")
upper = os.path.join(tmp, "stdlib6-on-json.pycds")
build(lower, ["-m", "json"])
build(upper, ["--on", lower, "--", PYTHON, script])

# Runs the workload with -X importtime, then reports its pid and stats and
# stays alive until stdin closes, so pycds-top sees it.
RUNNER = r"""
import json, os, runpy, sys, contextlib, io
sys.argv = [sys.argv[1]]
with contextlib.redirect_stdout(io.StringIO()):
    runpy.run_path(sys.argv[0], run_name="__main__")
try:
    import _pycds
    hits = _pycds.stats()["hits"]
    layers = [[l["archive"], l["hits"]] for l in _pycds.stats()["layers"]]
except ImportError:
    hits = layers = None
print(json.dumps({"pid": os.getpid(), "hits": hits, "layers": layers}),
      flush=True)
sys.stdin.read()
"""


def start(env_archive):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYCDS_")}
    if env_archive:
        env["PYCDS_ARCHIVE"] = env_archive
    return subprocess.Popen([PYTHON, "-X", "importtime", "-c", RUNNER,
                             script], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


top = subprocess.Popen([TOP, "-b", "-n", "1", "-d", "8", "--json",
                        "--python", PYTHON], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
line = top.stderr.readline()
t.ok("attached" in line, "pycds-top attaches", line)
fast, slow, two = start(archive), start(None), start(f"{lower}:{upper}")
rf = json.loads(fast.stdout.readline())
rs = json.loads(slow.stdout.readline())
r2 = json.loads(two.stdout.readline())
out, err = top.communicate(timeout=60)
for p in (fast, slow, two):
    p.stdin.close()
two.stderr.read()
two.wait()
imports_fast = sum(1 for l in fast.stderr.read().splitlines()
                   if l.startswith("import time:") and "|" in l and
                   "imported package" not in l)
slow.stderr.read()
fast.wait()
slow.wait()
rows = {r["pid"]: r for r in json.loads(out)}
a, s = rows.get(rf["pid"]), rows.get(rs["pid"])
t.ok(a is not None, "the archive process is listed", out[:2000])
t.ok(s is not None, "the stock process is listed")
a, s = a or {}, s or {}
t.eq(a.get("hits"), rf["hits"], "hits equal _pycds.stats()['hits']")
t.eq(a.get("imports"), imports_fast,
     "imports equal the modules -X importtime lists")
t.ok(a.get("archive") == os.path.realpath(archive) or
     a.get("archive") == archive, "archive path shown", a.get("archive"))
t.ok(a.get("archive_fits") is True and a.get("archive_stale_modules") == 0
     and s.get("archive_fits") is None,
     "the archive fits the installed interpreter, none of its modules "
     "stale; the stock process has no archive to fit", a)
t.ok(a.get("faults_in", 0) > 0, f"faults inside the archive mapping "
     f"({a.get('faults_in')})")
l2 = (rows.get(r2["pid"]) or {}).get("layers")
t.ok(l2 is not None and [[x["archive"], x["hits"]] for x in l2] ==
     r2["layers"] and len(l2) == 2 and all(h > 0 for _, h in r2["layers"]),
     "two layers: each shown with the hits _pycds counted for it",
     f"top: {l2}\n_pycds: {r2['layers']}")
t.ok(s.get("archive") is None and s.get("imports", 0) > 0 and
     s.get("p50_us", 0) > 0 and s.get("import_ms", 0) > 0,
     "stock process: no archive, imports with latency", s)

# The interactive view, under tmux.
if not shutil.which("tmux"):
    for _ in range(4):
        t.skip("interactive view", "tmux not installed")
    raise SystemExit(0)
sess = f"pycdstop{os.getpid()}"
subprocess.run(["tmux", "new-session", "-d", "-s", sess, "-x", "200", "-y",
                "50", f"{TOP} -d 0.3 --python {PYTHON}"], check=True)


def screen():
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", sess],
                          capture_output=True, text=True).stdout


def wait_for(text, secs=10):
    end = time.time() + secs
    while time.time() < end:
        if text in screen():
            return True
        time.sleep(0.1)
    return False


try:
    t.ok(wait_for("sort: t"), "interactive view starts sorted by time",
         screen())
    subprocess.run(["tmux", "send-keys", "-t", sess, "i"])
    t.ok(wait_for("sort: i"), "key i sorts by imports", screen())
    subprocess.run(["tmux", "send-keys", "-t", sess, "H"])
    t.ok(wait_for("import latency"), "key H shows the histogram", screen())
    subprocess.run(["tmux", "send-keys", "-t", sess, "q"])
    end = time.time() + 5
    while time.time() < end and subprocess.run(
            ["tmux", "has-session", "-t", sess],
            capture_output=True).returncode == 0:
        time.sleep(0.1)
    t.ok(subprocess.run(["tmux", "has-session", "-t", sess],
                        capture_output=True).returncode != 0,
         "q quits cleanly")
finally:
    subprocess.run(["tmux", "kill-session", "-t", sess], capture_output=True)
