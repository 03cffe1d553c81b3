# SPDX-License-Identifier: MIT
"""Whole-process benchmarks: stock against pycds, alternating in one run.

For every workload: build an archive, then start the interpreter RUNS times
stock and RUNS times with PYCDS_ARCHIVE, alternating (and swapping which goes
first on every round so neither gets a systematic cache advantage), and
report medians and their ratio, with a 90% bootstrap interval of that
ratio (the runs resampled 2000 times): on a shared host the ratio moves by
several percent from one run of the benchmark to the next, and the
interval says how much.

The exec-only bound is measured: the same run of the workload in a process
that already holds every module's code object, unmarshalled from its .pyc
before the timed part (SourceLoader.get_code then returns it).  In-process
times of `runpy.run_path(workload)` are taken for three processes with the
same runner, in rounds between the whole-process ones: stock, pycds (plus
the time its enable() took, in site, before the runner starts) and
preloaded.  "gap closed" is (stock - pycds) / (stock - preloaded) of those
medians; "bound" the whole-process speedup that would follow, the stock
median over itself less the measured in-process gap.

Environment: PYCDS (the pycds tool), PYCDS_PYTHON (an interpreter with _pycds
and its hook installed), PYCDS_WORKLOADS (directory of workloads).
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

INPROC_RUNNER = r"""
import sys, time, runpy, io, contextlib, marshal
import importlib.util, importlib._bootstrap_external as be
mode, script, files = sys.argv[1:4]
if mode == "preloaded":
    # Every module's code object in memory before the timed part, as the
    # .pyc holds it; get_code returns it once, and stock does the rest.
    pre = {}
    with open(files) as f:
        for src in f.read().split("\0"):
            try:
                with open(importlib.util.cache_from_source(src), "rb") as c:
                    pre[src] = marshal.loads(memoryview(c.read())[16:])
            except (OSError, ValueError, EOFError):
                pass
    orig = be.SourceLoader.get_code
    def get_code(self, name, _orig=orig, _pre=pre):
        co = _pre.pop(self.get_filename(name), None)
        return co if co is not None else _orig(self, name)
    be.SourceLoader.get_code = get_code
sys.argv = [script]
out = io.StringIO()
t = time.perf_counter_ns()
with contextlib.redirect_stdout(out):
    runpy.run_path(script, run_name="__main__")
t = time.perf_counter_ns() - t
enable = 0
if mode == "pycds":
    import _pycds
    enable = _pycds.stats()["enable_ns"]
if mode == "list":
    with open(files, "w") as f:
        f.write("\0".join(sorted({m.__file__ for m in list(sys.modules.values())
                                   if (getattr(m, "__file__", None) or "")
                                   .endswith(".py")})))
print(t, enable, file=sys.stderr)
"""


def spawn_time(argv, env):
    """Wall-clock seconds of one whole process, output discarded."""
    t = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env,
                         file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull,
                                        os.O_WRONLY, 0)])
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed")
    return elapsed


def alternate(argv, env_a, env_b, runs, warmup=3, samples=None,
              between=None):
    """Medians of RUNS whole-process times of A and of B, alternating.
    With SAMPLES (a list), the two lists of times are appended to it;
    BETWEEN(i), if given, is called after round i."""
    a, b = [], []
    for _ in range(warmup):
        spawn_time(argv, env_a)
        spawn_time(argv, env_b)
    for i in range(runs):
        if i % 2:
            b.append(spawn_time(argv, env_b))
            a.append(spawn_time(argv, env_a))
        else:
            a.append(spawn_time(argv, env_a))
            b.append(spawn_time(argv, env_b))
        if between:
            between(i)
    if samples is not None:
        samples.extend((a, b))
    return statistics.median(a), statistics.median(b)


def rotate(variants, runs, warmup=3):
    """Whole-process times of each (argv, env) variant, RUNS each, in
    rounds whose order rotates, so that no variant always goes first."""
    times = [[] for _ in variants]
    for _ in range(warmup):
        for argv, env in variants:
            spawn_time(argv, env)
    k = len(variants)
    for i in range(runs):
        for j in range(k):
            v = (i + j) % k
            times[v].append(spawn_time(*variants[v]))
    return times


WORKLOADS = ("stdlib6.py", "cli_tool.py", "requests_app.py", "jinja2_app.py",
             "rich_app.py")


def setup(workloads, out):
    """The pycds tool, the interpreter and the workload scripts, from the
    environment (PYCDS, PYCDS_PYTHON, PYCDS_WORKLOADS) and the command
    line; OUT is created."""
    pycds = os.environ.get("PYCDS", "pycds")
    python = os.environ.get("PYCDS_PYTHON", "/usr/bin/python3")
    wdir = os.environ.get("PYCDS_WORKLOADS", "tests/workloads")
    os.makedirs(out, exist_ok=True)
    return pycds, python, workloads or [os.path.join(wdir, w)
                                        for w in WORKLOADS]


def other_tree(builddir):
    """The pycds tool and venv interpreter of another tree's build
    directory, for --against."""
    tool = os.path.join(builddir, "pycds")
    python = os.path.join(builddir, "venv", "bin", "python")
    for f in (tool, python):
        if not os.access(f, os.X_OK):
            raise SystemExit(f"{os.path.basename(sys.argv[0])}: --against "
                             f"{builddir}: no {f} (make all stage there "
                             "first)")
    return tool, python


def compare_trees(pycds, python, against, scripts, runs, loader, out):
    """Old tree against new in one run: each workload's archive built by
    each tree's pycds for its own venv, both published by one loader
    mount, then stock, old and new interleaved."""
    old_tool, old_python = other_tree(against)
    srcdir = os.path.abspath(os.path.join(out, "cmp-src"))
    mnt = os.path.abspath(os.path.join(out, "cmp-mnt"))
    os.makedirs(srcdir, exist_ok=True)
    todo = []
    for s in scripts:
        name = os.path.basename(s)[:-3]
        new = os.path.join(srcdir, name + ".pycds")
        old = os.path.join(srcdir, name + ".against.pycds")
        build(pycds, python, new, ["--", python, s])
        build(old_tool, old_python, old, ["--", old_python, s])
        todo.append((s, name))
    if loader and os.geteuid() == 0:
        os.makedirs(mnt, exist_ok=True)
        subprocess.run([loader, "--mount", mnt, "--source", srcdir],
                       check=True, capture_output=True)
        where = mnt
    else:
        where = srcdir
    print(f"new tree: {pycds} with {python}; old tree: {against}; "
          f"{runs} rounds, stock/old/new rotating; archives in {where}")
    print(f"{'workload':<18}{'stock ms':>10}{'old ms':>9}{'new ms':>9}"
          f"{'old/new':>9}{'90% interval':>15}{'speedup old':>13}"
          f"{'speedup new':>13}")
    rows = []
    for s, name in todo:
        env = base_env()
        stock, old, new = rotate([
            ([python, s], env),
            ([old_python, s], dict(env, PYCDS_ARCHIVE=os.path.join(
                where, name + ".against.pycds"))),
            ([python, s], dict(env, PYCDS_ARCHIVE=os.path.join(
                where, name + ".pycds")))], runs)
        med = statistics.median
        lo, hi = ratio_interval(old, new)
        r = {"workload": os.path.basename(s), "stock_ms": med(stock) * 1e3,
             "old_ms": med(old) * 1e3, "new_ms": med(new) * 1e3,
             "old_over_new": med(old) / med(new),
             "old_over_new_interval": [lo, hi]}
        rows.append(r)
        print(f"{r['workload']:<18}{r['stock_ms']:>10.1f}{r['old_ms']:>9.1f}"
              f"{r['new_ms']:>9.1f}{r['old_over_new']:>8.3f}x"
              f"{lo:>8.3f}-{hi:.3f}"
              f"{r['stock_ms'] / r['old_ms']:>12.2f}x"
              f"{r['stock_ms'] / r['new_ms']:>12.2f}x")
    with open(os.path.join(out, "compare.json"), "w") as f:
        json.dump({"python": python, "against": against, "runs": runs,
                   "workloads": rows}, f, indent=1)


def ratio_interval(a, b, level=0.90, resamples=2000):
    """Bootstrap interval of median(a) / median(b): how far the reported
    ratio could move with this host's noise.  Seeded, so that the same
    times give the same interval."""
    rng = random.Random(0)
    n, m = len(a), len(b)
    rs = sorted(statistics.median(rng.choices(a, k=n)) /
                statistics.median(rng.choices(b, k=m))
                for _ in range(resamples))
    lo = rs[int(resamples * (1 - level) / 2)]
    hi = rs[int(resamples * (1 + level) / 2) - 1]
    return lo, hi


def base_env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYCDS_") and k != "PYTHONHASHSEED"}
    return env


def inproc_once(python, mode, script, files, env):
    """Milliseconds one process spends running SCRIPT in-process (MODE
    stock, pycds or preloaded; with pycds, plus its enable())."""
    r = subprocess.run([python, "-c", INPROC_RUNNER, mode, script, files],
                       env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"bench: in-process {mode} run of {script} failed: "
                         + (r.stderr.strip().splitlines() or ["?"])[-1])
    t, enable = r.stderr.strip().splitlines()[-1].split()
    return (int(t) + int(enable)) / 1e6


def build(pycds, python, archive, argv):
    subprocess.run([pycds, "build", "-o", archive, "--python", python, *argv],
                   check=True, stdout=subprocess.DEVNULL)


def bench_workload(pycds, python, script, archive, runs, bound=True):
    if archive is None:
        fd, archive = tempfile.mkstemp(suffix=".pycds")
        os.close(fd)
        build(pycds, python, archive, ["--", python, script])
    stock_env = base_env()
    pycds_env = dict(stock_env, PYCDS_ARCHIVE=archive)
    argv = [python, script]
    times, inproc = [], {"stock": [], "pycds": [], "preloaded": []}
    files = archive + ".modules"
    if bound:
        # The source files a stock run of the workload imports.
        inproc_once(python, "list", script, files, stock_env)
    order = list(inproc)

    def probe(i):
        # The three in-process runs every second round, in an order that
        # rotates, so that they see the host as the whole processes do.
        if bound and i % 2 == 0:
            for k in range(3):
                mode = order[(i // 2 + k) % 3]
                inproc[mode].append(inproc_once(
                    python, mode, script, files,
                    pycds_env if mode == "pycds" else stock_env))

    stock, fast = alternate(argv, stock_env, pycds_env, runs, samples=times,
                            between=probe)
    lo, hi = ratio_interval(*times)
    row = {
        "workload": os.path.basename(script),
        "stock_ms": stock * 1e3,
        "pycds_ms": fast * 1e3,
        "speedup": stock / fast,
        "speedup_interval": [lo, hi],
    }
    if bound:
        med = {k: statistics.median(v) for k, v in inproc.items()}
        gap = med["stock"] - med["preloaded"]
        row["inproc_ms"] = med
        row["inproc_runs"] = len(inproc["stock"])
        row["bound"] = stock / (stock - gap / 1e3)
        row["gap_closed"] = (med["stock"] - med["pycds"]) / gap if gap else 0.0
        # The interval of the share closed, the three samples resampled.
        rng = random.Random(1)
        gs = []
        for _ in range(2000):
            m = {k: statistics.median(rng.choices(v, k=len(v)))
                 for k, v in inproc.items()}
            g = m["stock"] - m["preloaded"]
            if g > 0:
                gs.append((m["stock"] - m["pycds"]) / g)
        gs.sort()
        row["gap_closed_interval"] = ([gs[int(len(gs) * 0.05)],
                                       gs[int(len(gs) * 0.95) - 1]]
                                      if gs else [0.0, 0.0])
    return row


BIG_MODULES = ("json,argparse,email.parser,http.client,asyncio,decimal,"
               "logging,unittest,xml.dom.minidom,xml.etree.ElementTree,"
               "urllib.request,http.server,sqlite3,tarfile,zipfile,pydoc,"
               "multiprocessing,concurrent.futures,ftplib,imaplib,smtplib,"
               "mailbox,difflib,doctest,pdb,configparser,csv,statistics,"
               "fractions,ssl,shelve,turtle,tkinter,idlelib.pyshell,"
               "lib2to3.main,distutils.core,xmlrpc.server,"
               "wsgiref.simple_server")


def bench_pass(pycds, python, runs, outdir):
    """python -c pass: with a large archive set, and with it unset."""
    big = os.path.join(outdir, "big.pycds")
    build(pycds, python, big, ["-m", BIG_MODULES])
    size = os.path.getsize(big)
    env = base_env()
    stock, fast = alternate([python, "-c", "pass"], env,
                            dict(env, PYCDS_ARCHIVE=big), runs)
    return {"archive_bytes": size, "stock_ms": stock * 1e3,
            "pycds_ms": fast * 1e3, "added_ms": (fast - stock) * 1e3}


def bench_pass_trees(pycds, python, against, runs, outdir):
    """python -c pass with the large archive of bench_pass: stock, another
    tree's build (its tool, archive and _pycds) and this one, rotating;
    each tree's added milliseconds with the 90% interval of its ratio to
    stock."""
    variants = [("stock", [python, "-c", "pass"], base_env())]
    trees = [("this tree", pycds, python)]
    if against:
        tool, opy = other_tree(against)
        trees.insert(0, ("against", tool, opy))
    for i, (label, tool, py) in enumerate(trees):
        big = os.path.join(outdir, f"big-{i}.pycds")
        build(tool, py, big, ["-m", BIG_MODULES])
        variants.append((label, [py, "-c", "pass"],
                         dict(base_env(), PYCDS_ARCHIVE=big)))
    t = rotate([(argv, env) for _, argv, env in variants], runs)
    st = statistics.median(t[0])
    print(f"python -c pass, {python}; {runs} rotating rounds; archives of "
          f"{BIG_MODULES.count(',') + 1} modules and all they import, on "
          f"the build directory's disk as in the full run")
    rows = []
    for (label, argv, _), x in zip(variants, t):
        m = statistics.median(x)
        lo, hi = ratio_interval(x, t[0])
        extra = "" if label == "stock" else (
            f"  added {(m - st) * 1e3:+.2f} ms (ratio {m / st:.3f}, "
            f"90% interval {lo:.3f}-{hi:.3f})")
        print(f"  {label:<10} {m * 1e3:8.2f} ms{extra}")
        rows.append({"variant": label, "python": argv[0], "ms": m * 1e3,
                     "added_ms": (m - st) * 1e3, "interval": (lo, hi)})
    with open(os.path.join(outdir, "pass.json"), "w") as f:
        json.dump({"runs": runs, "rows": rows}, f, indent=1)


def bench_pass_prefetch(python, archive, runs, outdir):
    """python -c pass with the big archive on the build directory's disk,
    stock against each PYCDS_PREFETCH policy, the order rotating."""
    modes = ["stock", "none", "sync", "uring"]
    times = {m: [] for m in modes}
    env = base_env()
    for r in range(runs + 3):
        for m in modes[r % 4:] + modes[:r % 4]:
            e = env if m == "stock" else dict(env, PYCDS_ARCHIVE=archive,
                                              PYCDS_PREFETCH=m)
            t = spawn_time([python, "-c", "pass"], e)
            if r >= 3:
                times[m].append(t)
    med = {m: statistics.median(v) * 1e3 for m, v in times.items()}
    return {"ms": med, "added_ms": {m: med[m] - med["stock"]
                                    for m in modes[1:]}}


def bench_relocated(python, script, archive, runs, occupy_so):
    """A relocated start against an unrelocated one: the workload from
    its archive with one page of the archive's preferred range taken
    before the interpreter starts (LD_PRELOAD of bench-occupy.so), so
    that it is mapped elsewhere and relocated, against the same preload
    taking a page outside the range; stock with the same preload too.
    Rotating rounds; each variant's relocated flag is checked first."""
    desc = subprocess.run(
        [python, "-c", "import _pycds, sys; "
         "print(_pycds.describe(sys.argv[1])['preferred_base'])", archive],
        env=dict(base_env(), PYCDS_ARCHIVE=""), capture_output=True,
        text=True)
    base = int(desc.stdout.split()[0]) if desc.returncode == 0 else 0
    if not base:
        raise SystemExit(f"bench: cannot read the preferred base of "
                         f"{archive}: {desc.stderr.strip()}")
    size = os.path.getsize(archive)
    inside = base + (size // 2 & ~4095)
    outside = base - (1 << 30)
    pre = dict(base_env(), LD_PRELOAD=occupy_so)
    variants = {
        "stock": dict(pre, PYCDS_BENCH_OCCUPY=hex(outside)),
        "unrelocated": dict(pre, PYCDS_ARCHIVE=archive,
                            PYCDS_BENCH_OCCUPY=hex(outside)),
        "relocated": dict(pre, PYCDS_ARCHIVE=archive,
                          PYCDS_BENCH_OCCUPY=hex(inside)),
    }
    for label, want in (("unrelocated", False), ("relocated", True)):
        p = subprocess.run(
            [python, "-c", "import _pycds, json; s = _pycds.stats(); "
             "print(json.dumps([s['relocated'], s['error']]))"],
            env=variants[label], capture_output=True, text=True)
        got = json.loads(p.stdout) if p.returncode == 0 else None
        if not got or got[0] is not want or got[1] is not None:
            raise SystemExit(f"bench: the {label} start is not what it "
                             f"should be: {got} {p.stderr.strip()}")
    labels = list(variants)
    t = rotate([([python, script], variants[k]) for k in labels], runs)
    med = {k: statistics.median(x) * 1e3 for k, x in zip(labels, t)}
    lo, hi = ratio_interval(t[2], t[1])
    return {"workload": os.path.basename(script), "runs": runs,
            "ms": med, "occupied": hex(inside), "preferred_base": hex(base),
            "relocated_over_unrelocated": med["relocated"] /
            med["unrelocated"], "interval": (lo, hi)}


def bench_unset(python, runs, outdir):
    """The hook's cost when PYCDS_ARCHIVE is unset: the same interpreter
    with and without pycds.pth in its site directory."""
    plain = os.path.join(outdir, "venv-plain")
    if not os.path.exists(plain):
        subprocess.run([os.path.realpath(python), "-m", "venv",
                        "--without-pip", "--system-site-packages", plain],
                       check=True)
    env = base_env()
    hooked, plain_ms = [], []
    for i in range(runs):
        order = [(python, hooked), (os.path.join(plain, "bin", "python"),
                                    plain_ms)]
        if i % 2:
            order.reverse()
        for exe, acc in order:
            acc.append(spawn_time([exe, "-c", "pass"], env))
    h, p = statistics.median(hooked), statistics.median(plain_ms)
    return {"hooked_ms": h * 1e3, "plain_ms": p * 1e3, "ratio": h / p}


def bench_loader(loader, archives, runs, outdir):
    """Staging throughput against cp for a set of at least 100 MB, and the
    latency from a new source file to its publication by --foreground."""
    import shutil
    import signal
    src = os.path.join(outdir, "loader-src")
    shutil.rmtree(src, True)
    os.makedirs(src)
    total, i = 0, 0
    while total < 100 << 20:
        a = archives[i % len(archives)]
        dst = os.path.join(src, f"a{i:02d}.pycds")
        shutil.copy(a, dst)
        total += os.path.getsize(dst)
        i += 1
    mnt = os.path.join(outdir, "loader-mnt")
    cpdst = os.path.join(mnt, "cp")
    os.makedirs(mnt, exist_ok=True)
    subprocess.run([loader, "--mount", mnt, "--source", src,
                    "--size", f"{(total * 4 >> 20) + 64}M"],
                   check=True, capture_output=True)
    t_loader, t_cp = [], []
    for r in range(runs):
        for which in (("loader", "cp") if r % 2 else ("cp", "loader")):
            if which == "cp":
                shutil.rmtree(cpdst, True)
                t = time.perf_counter()
                subprocess.run(["cp", "-r", src, cpdst], check=True)
                subprocess.run(["sync", "-f", cpdst], check=True)
                t_cp.append(time.perf_counter() - t)
            else:
                t = time.perf_counter()
                subprocess.run([loader, "--mount", mnt, "--source", src],
                               check=True, capture_output=True)
                t_loader.append(time.perf_counter() - t)
    shutil.rmtree(cpdst, True)
    # Latency: a new source appears; when is it published?
    fg = subprocess.Popen([loader, "--mount", mnt, "--source", src,
                           "--foreground"], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    lat = []
    pub = os.path.join(mnt, "a00.pycds")
    for r in range(max(5, runs)):
        ino = os.stat(pub).st_ino
        tmp = os.path.join(src, ".incoming")
        shutil.copy(archives[0], tmp)
        t = time.perf_counter()
        os.rename(tmp, os.path.join(src, "a00.pycds"))
        while os.stat(pub).st_ino == ino:
            time.sleep(0.0005)
        lat.append(time.perf_counter() - t)
    fg.send_signal(signal.SIGTERM)
    fg.wait()
    subprocess.run([loader, "--unmount", "--mount", mnt], capture_output=True)
    shutil.rmtree(src, True)
    ml, mc = statistics.median(t_loader), statistics.median(t_cp)
    return {"bytes": total, "files": i, "loader_s": ml, "cp_s": mc,
            "loader_mb_s": total / ml / 1e6, "cp_mb_s": total / mc / 1e6,
            "ratio": mc / ml, "publish_latency_ms":
            statistics.median(lat) * 1e3}


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def bench_prefetch(python, script, archive, outdir, rounds=8):
    """Cold start from a disk: the archive on the build directory's file
    system, every cache dropped before each run (interpreter, libraries,
    .pyc files and archive alike), stock against pycds with each
    PYCDS_PREFETCH policy, the order rotating every round."""
    disk = os.path.join(outdir, "disk")
    os.makedirs(disk, exist_ok=True)
    ar = os.path.join(disk, os.path.basename(archive))
    with open(archive, "rb") as src, open(ar + ".tmp", "wb") as dst:
        dst.write(src.read())
    os.chmod(ar + ".tmp", 0o444)
    os.replace(ar + ".tmp", ar)
    modes = ["stock", "none", "sync", "uring"]
    times = {m: [] for m in modes}
    for r in range(rounds):
        order = modes[r % len(modes):] + modes[:r % len(modes)]
        for m in order:
            env = base_env()
            if m != "stock":
                env.update(PYCDS_ARCHIVE=ar, PYCDS_PREFETCH=m)
            drop_caches()
            times[m].append(spawn_time([python, script], env))
    med = {m: statistics.median(v) * 1e3 for m, v in times.items()}
    return {"fs": "build directory (ext4 here), caches dropped",
            "rounds": rounds, "ms": med}


def bench_top_overhead(top, python, script, archive, rounds=20, per=5):
    """stdlib6 from its archive with and without pycds-top attached:
    short blocks of runs, detached and attached, the block order swapped
    every round so drift in the machine falls on both alike (attaching
    takes about 0.1 s and detaching 0.4 s here, so not every run gets
    its own attach).  The overhead is the ratio of the medians of all
    attached and all detached runs, with its bootstrap interval; each
    round's own ratio is kept too, to show the spread."""
    env = dict(base_env(), PYCDS_ARCHIVE=archive)
    argv = [python, script]
    off, on, ratios = [], [], []

    def detached():
        return [spawn_time(argv, env) for _ in range(per)]

    def attached():
        t = subprocess.Popen([top, "-b", "-d", "3600", "--python", python],
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        t.stderr.readline()             # "attached ..."
        try:
            return [spawn_time(argv, env) for _ in range(per)]
        finally:
            t.terminate()
            t.wait()

    for r in range(rounds):
        if r % 2:
            b = attached()
            a = detached()
        else:
            a = detached()
            b = attached()
        off += a
        on += b
        ratios.append(statistics.median(b) / statistics.median(a))
    lo, hi = ratio_interval(on, off)
    return {"detached_ms": statistics.median(off) * 1e3,
            "attached_ms": statistics.median(on) * 1e3,
            "overhead": statistics.median(on) / statistics.median(off) - 1,
            "overhead_interval": [lo - 1, hi - 1],
            "runs_each": rounds * per, "block": per,
            "round_overheads": [x - 1 for x in ratios]}


def bench_layers(pycds, python, scripts, runs, loader, out):
    """Layers against one archive per workload: each workload stock, from
    its own archive, and from a standard-library layer (built from every
    workload, as a host's would be) under a layer of its own, rotating;
    and python -c pass with the standard-library layer alone, as the
    host-wide default gives every process."""
    src = os.path.abspath(os.path.join(out, "layers-src"))
    os.makedirs(src, exist_ok=True)
    ok = [s for s in scripts if subprocess.run(
        [python, s], env=base_env(), capture_output=True).returncode == 0]
    std = os.path.join(src, "stdlib.pycds")
    build(pycds, python, std, ["--stdlib", "--", "sh", "-c",
                               "; ".join(f"{python} {s}" for s in ok)])
    for s in ok:
        name = os.path.basename(s)[:-3]
        build(pycds, python, os.path.join(src, name + ".pycds"),
              ["--", python, s])
        build(pycds, python, os.path.join(src, name + "-on-stdlib.pycds"),
              ["--on", std, "--", python, s])
    use_loader = bool(loader) and os.geteuid() == 0
    where = src
    if use_loader:
        where = os.path.abspath(os.path.join(out, "layers-mnt"))
        os.makedirs(where, exist_ok=True)
        subprocess.run([loader, "--mount", where, "--source", src],
                       check=True, capture_output=True)
    env = base_env()
    lay = os.path.join(where, "stdlib.pycds")
    print(f"layers: {python}; {runs} rounds, stock / one archive / "
          f"stdlib layer + workload layer rotating; archives in {where}")
    print(f"{'workload':<18}{'stock ms':>10}{'one ms':>9}{'layers ms':>11}"
          f"{'one/layers':>12}{'90% interval':>15}")
    rows = []
    for s in ok:
        name = os.path.basename(s)[:-3]
        argv = [python, s]
        t = rotate([(argv, env),
                    (argv, dict(env, PYCDS_ARCHIVE=os.path.join(
                        where, name + ".pycds"))),
                    (argv, dict(env, PYCDS_ARCHIVE=lay + ":" + os.path.join(
                        where, name + "-on-stdlib.pycds")))], runs)
        st, one, two = (statistics.median(x) for x in t)
        lo, hi = ratio_interval(t[1], t[2])
        print(f"{name:<18}{st * 1e3:>10.1f}{one * 1e3:>9.1f}{two * 1e3:>11.1f}"
              f"{one / two:>11.3f}x{lo:>9.3f}-{hi:.3f}")
        rows.append({"workload": name, "stock_ms": st * 1e3,
                     "one_ms": one * 1e3, "layers_ms": two * 1e3,
                     "one_over_layers": one / two, "interval": (lo, hi)})
    t = rotate([([python, "-c", "pass"], env),
                ([python, "-c", "pass"], dict(env, PYCDS_ARCHIVE=lay))],
               runs * 2)
    a, b = statistics.median(t[0]), statistics.median(t[1])
    lo, hi = ratio_interval(t[1], t[0])
    print(f"python -c pass with the standard-library layer "
          f"({os.path.getsize(std) / 1e6:.1f} MB): stock {a * 1e3:.2f} ms, "
          f"layer {b * 1e3:.2f} ms, added {(b - a) * 1e3:+.2f} ms (ratio "
          f"{b / a:.3f}, 90% interval {lo:.3f}-{hi:.3f}; {runs * 2} rounds)")
    if use_loader:
        subprocess.run([loader, "--unmount", "--mount", where],
                       capture_output=True)
    return {"workloads": rows, "pass_stock_ms": a * 1e3,
            "pass_layer_ms": b * 1e3}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workloads", nargs="*")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--out", default="build/bench")
    p.add_argument("--archive", help="use this archive (one workload)")
    p.add_argument("--quick", action="store_true",
                   help="only the workload rows, no bound or -c pass rows")
    p.add_argument("--against", metavar="BUILDDIR",
                   help="compare with another tree's build directory (its "
                        "pycds and venv/bin/python): stock, that tree and "
                        "this one, in one rotating run")
    p.add_argument("--pass", dest="pass_only", action="store_true",
                   help="only python -c pass with a large archive, against "
                        "stock (and the --against tree's build, rotating)")
    p.add_argument("--relocated", action="store_true",
                   help="only the relocated start against the unrelocated "
                        "one (the first workload; needs "
                        "PYCDS_BENCH_OCCUPY_SO)")
    p.add_argument("--layers", action="store_true",
                   help="layers against one archive per workload instead "
                        "(and python -c pass with a standard-library layer)")
    a = p.parse_args()

    pycds, python, scripts = setup(a.workloads, a.out)
    if a.layers:
        bench_layers(pycds, python, scripts, a.runs,
                     os.environ.get("PYCDS_LOADER"), a.out)
        return
    if a.pass_only:
        bench_pass_trees(pycds, python, a.against and os.path.abspath(
            a.against), a.runs, a.out)
        return
    if a.relocated:
        occ = os.environ.get("PYCDS_BENCH_OCCUPY_SO")
        if not occ:
            raise SystemExit("bench: --relocated needs PYCDS_BENCH_OCCUPY_SO")
        script = scripts[0]
        archive = a.archive
        if not archive:
            where = tempfile.mkdtemp(prefix="pycds-bench-", dir="/dev/shm")
            archive = os.path.join(where, os.path.basename(script)
                                   .replace(".py", ".pycds"))
            build(pycds, python, archive, ["--", python, script])
        rl = bench_relocated(python, script, archive, a.runs, occ)
        ms, (lo, hi) = rl["ms"], rl["interval"]
        print(f"relocated start, {rl['workload']} ({a.runs} rotating rounds, "
              f"page {rl['occupied']} taken): stock {ms['stock']:.1f} ms, "
              f"unrelocated {ms['unrelocated']:.1f} ms, relocated "
              f"{ms['relocated']:.1f} ms; relocated/unrelocated "
              f"{rl['relocated_over_unrelocated']:.3f} (90% interval "
              f"{lo:.3f}-{hi:.3f})")
        with open(os.path.join(a.out, "relocated.json"), "w") as f:
            json.dump(rl, f, indent=1)
        return
    if a.against:
        compare_trees(pycds, python, os.path.abspath(a.against), scripts,
                      a.runs, os.environ.get("PYCDS_LOADER"), a.out)
        return

    # Archives are used from a tmpfs, as deployed: published by
    # pycds-loader on a huge-page tmpfs when root, else /dev/shm.  (On a
    # disk, writeback of freshly built archives disturbs the timings.)
    loader = os.environ.get("PYCDS_LOADER")
    srcdir = os.path.abspath(os.path.join(a.out, "src"))
    os.makedirs(srcdir, exist_ok=True)
    use_loader = bool(loader) and os.geteuid() == 0 and not a.archive
    if a.archive:
        where = os.path.dirname(os.path.abspath(a.archive))
    elif use_loader:
        where = os.path.abspath(os.path.join(a.out, "mnt"))
    else:
        where = tempfile.mkdtemp(prefix="pycds-bench-", dir="/dev/shm")
    rows, built = [], []
    todo = []
    for s in scripts:
        if subprocess.run([python, s], env=base_env(), capture_output=True
                          ).returncode:
            print(f"bench: skipping {s}: it fails stock", file=sys.stderr)
            continue
        name = os.path.basename(s).replace(".py", ".pycds")
        if not a.archive:
            build(pycds, python, os.path.join(srcdir, name), ["--", python, s])
            if not use_loader:
                import shutil
                shutil.copy(os.path.join(srcdir, name), where)
        todo.append((s, a.archive or os.path.join(where, name)))
    if use_loader:
        os.makedirs(where, exist_ok=True)
        subprocess.run([loader, "--mount", where, "--source", srcdir],
                       check=True, capture_output=True)
    for s, archive in todo:
        built.append(os.path.join(srcdir, os.path.basename(archive)))
        rows.append(bench_workload(pycds, python, s, archive, a.runs,
                                   bound=not a.quick))
    print(f"interpreter: {python}; {a.runs} alternating runs each; "
          f"medians of whole-process wall time; archives in {where}")
    if not a.quick:
        print("in-process: medians of runpy.run_path(workload) in a stock "
              "process, with the archive (plus its enable()), and with every "
              "module's code object unmarshalled before; bound and gap "
              "closed from those")
    hdr = (f"{'workload':<18}{'stock ms':>10}{'pycds ms':>10}{'speedup':>9}"
           f"{'90% interval':>15}")
    if not a.quick:
        hdr += (f"{'in-process: stock':>19}{'pycds':>7}{'preloaded':>10}"
                f"{'bound':>8}{'gap closed':>12}{'90% interval':>14}")
    print(hdr)
    for r in rows:
        line = (f"{r['workload']:<18}{r['stock_ms']:>10.1f}"
                f"{r['pycds_ms']:>10.1f}{r['speedup']:>8.2f}x"
                f"{r['speedup_interval'][0]:>8.2f}-{r['speedup_interval'][1]:.2f}")
        if "bound" in r:
            m, g = r["inproc_ms"], r["gap_closed_interval"]
            line += (f"{m['stock']:>19.1f}{m['pycds']:>7.1f}"
                     f"{m['preloaded']:>10.1f}{r['bound']:>7.2f}x"
                     f"{r['gap_closed'] * 100:>11.0f}%"
                     f"{g[0] * 100:>9.0f}-{g[1] * 100:.0f}%")
        print(line)
    result = {"python": python, "runs": a.runs, "workloads": rows}
    pages = os.environ.get("PYCDS_BENCH_PAGES")
    big = [ar for _, ar in todo if os.path.getsize(ar) >= 4 << 20]
    if pages and big:
        out = subprocess.run([pages, big[0], "15"], capture_output=True,
                             text=True)
        cost = dict((k, float(v)) for k, v in
                    (l.split() for l in out.stdout.splitlines()))
        if cost:
            print(f"a private copy of 4 MiB of {os.path.basename(big[0])} "
                  f"(medians of 15): copy-on-write populate {cost['cow']:.2f} "
                  f"ms, huge page + pread {cost['huge']:.2f} ms, small pages "
                  f"+ pread {cost['small']:.2f} ms; only reading it "
                  f"{cost['read']:.2f} ms")
            result["pages"] = cost
    if not a.quick:
        ps = bench_pass(pycds, python, a.runs, a.out)
        print(f"python -c pass, {ps['archive_bytes'] / 1e6:.1f} MB archive: "
              f"stock {ps['stock_ms']:.2f} ms, pycds {ps['pycds_ms']:.2f} ms, "
              f"added {ps['added_ms']:+.2f} ms")
        pp = bench_pass_prefetch(python, os.path.join(a.out, "big.pycds"),
                                 a.runs, a.out)
        print("python -c pass, archive on disk, added by PYCDS_PREFETCH: " +
              ", ".join(f"{m} {v:+.2f} ms"
                        for m, v in pp["added_ms"].items()))
        result["minimal_prefetch"] = pp
        un = bench_unset(python, a.runs, a.out)
        print(f"python -c pass, PYCDS_ARCHIVE unset: with hook "
              f"{un['hooked_ms']:.2f} ms, without {un['plain_ms']:.2f} ms, "
              f"ratio {un['ratio']:.3f}")
        result.update(minimal=ps, unset=un)
        if loader and os.geteuid() == 0 and built:
            ld = bench_loader(loader, built, 5, a.out)
            print(f"staging {ld['files']} archives, {ld['bytes'] / 1e6:.0f} MB: "
                  f"pycds-loader {ld['loader_s'] * 1e3:.0f} ms "
                  f"({ld['loader_mb_s']:.0f} MB/s, with checks), cp "
                  f"{ld['cp_s'] * 1e3:.0f} ms ({ld['cp_mb_s']:.0f} MB/s); "
                  f"cp/loader {ld['ratio']:.2f}x")
            print(f"publish latency (--foreground, new source to new inode "
                  f"published): {ld['publish_latency_ms']:.1f} ms")
            result["loader"] = ld
        else:
            print("loader: skipped (needs root and PYCDS_LOADER)")
        s6 = [(s, ar) for s, ar in todo if s.endswith("stdlib6.py")]
        if os.geteuid() == 0 and s6:
            pf = bench_prefetch(python, s6[0][0], s6[0][1], a.out)
            ms = pf["ms"]
            print(f"cold start from disk, caches dropped before each run "
                  f"({pf['rounds']} rounds): stock {ms['stock']:.0f} ms; "
                  f"pycds PYCDS_PREFETCH=none {ms['none']:.0f} ms, sync "
                  f"{ms['sync']:.0f} ms, uring {ms['uring']:.0f} ms")
            result["prefetch"] = pf
        occ = os.environ.get("PYCDS_BENCH_OCCUPY_SO")
        if occ and s6:
            rl = bench_relocated(python, s6[0][0], s6[0][1], a.runs, occ)
            lo, hi = rl["interval"]
            ms = rl["ms"]
            print(f"relocated start, stdlib6 with a page of the archive's "
                  f"range taken (LD_PRELOAD, {a.runs} rotating rounds): "
                  f"stock {ms['stock']:.1f} ms, unrelocated "
                  f"{ms['unrelocated']:.1f} ms, relocated "
                  f"{ms['relocated']:.1f} ms; relocated/unrelocated "
                  f"{rl['relocated_over_unrelocated']:.3f} (90% interval "
                  f"{lo:.3f}-{hi:.3f})")
            result["relocated"] = rl
        top = os.environ.get("PYCDS_TOP")
        if top and os.geteuid() == 0 and s6:
            ov = bench_top_overhead(top, python, s6[0][0], s6[0][1])
            rs = sorted(ov["round_overheads"])
            lo, hi = ov["overhead_interval"]
            print(f"pycds-top attached, stdlib6 from its archive: "
                  f"{ov['attached_ms']:.1f} ms against "
                  f"{ov['detached_ms']:.1f} ms detached (medians of "
                  f"{ov['runs_each']} runs each, blocks of {ov['block']} "
                  f"alternating); "
                  f"overhead {ov['overhead'] * 100:+.1f}% (90% interval "
                  f"{lo * 100:+.1f} to {hi * 100:+.1f}%; single rounds "
                  f"{rs[0] * 100:+.1f} to {rs[-1] * 100:+.1f}%)")
            result["top"] = ov
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    if use_loader:
        subprocess.run([loader, "--unmount", "--mount", where],
                       capture_output=True)


if __name__ == "__main__":
    main()
