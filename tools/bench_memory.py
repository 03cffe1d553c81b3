# SPDX-License-Identifier: MIT
"""Memory across processes: N concurrent processes of each workload, stock
and with an archive, each paused after its work.

Per process with the archive: the resident kB of the archive's address
range (the file mapping and the huge pages the runtime put in place of
chunks it copies anyway), how much of it is the process's own copy (its
Anonymous kB: on tmpfs the page cache itself reads as dirty, so
Private_Dirty is not the copied amount), the rest (still the shared page
cache), and ShmemPmdMapped.  For each: the total PSS of the N processes
(smaps_rollup) and minor faults per start (/proc/PID/stat), also with
PYCDS_PREFAULT=write (copies taken page by page, no huge pages).

With --hash-seed N, a second table: every process run with
PYTHONHASHSEED=N, stock against the archive without stored hashes and one
built with `pycds build --hash-seed N`.

Environment: PYCDS, PYCDS_PYTHON, PYCDS_WORKLOADS, and PYCDS_LOADER to
publish on a huge-page tmpfs (root), else archives stay where built.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

from bench import other_tree, setup

RUNNER = r"""
import contextlib, io, runpy, sys
script = sys.argv[1]
sys.argv = [script]
with contextlib.redirect_stdout(io.StringIO()):
    runpy.run_path(script, run_name="__main__")
try:
    import _pycds
    st = _pycds.stats()
    where = f"{st['base'] or 0} {st['size']} {st.get('huge_chunks', 0)}"
except ImportError:
    where = "0 0 0"
sys.stdout.write(f"ready {where}\n")
sys.stdout.flush()
sys.stdin.read()
"""


def hashed_name(name):
    return name.replace(".pycds", "-hashes.pycds")


def base_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYCDS_") and k != "PYTHONHASHSEED"}
    env.update(extra)
    return env


def smaps_mapping(pid, base, size):
    """Rss, Anonymous, Pss, ShmemPmdMapped, AnonHugePages (kB) of the
    archive's address range: the file mapping and the huge pages the
    runtime put in place of chunks it copies anyway."""
    keys = ("Rss", "Anonymous", "Pss", "ShmemPmdMapped", "AnonHugePages")
    out = dict.fromkeys(keys, 0)
    end = base + ((size + 4095) & ~4095)
    cur = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head[0]) > 8 and \
                    all(c in "0123456789abcdef-" for c in head[0]):
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                cur = lo >= base and hi <= end
            elif cur and head[0].rstrip(":") in out:
                out[head[0].rstrip(":")] += int(head[1])
    return out


def pss_total(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def minflt(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def start_group(python, script, n, env):
    procs = []
    for _ in range(n):
        procs.append(subprocess.Popen([python, "-c", RUNNER, script],
                                      env=env, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for p in procs:
        line = p.stdout.readline().split()
        if not line or line[0] != "ready":
            raise SystemExit(f"bench-memory: {script} did not start: "
                             f"{p.stderr.read()}")
        p.base, p.size, p.huge = (int(x) for x in line[1:4])
    return procs


def stop_group(procs):
    for p in procs:
        p.stdin.close()
    for p in procs:
        p.wait()


def measure(python, script, n, archive=None, **extra):
    env = base_env(**({"PYCDS_ARCHIVE": archive} if archive else {}),
                   **extra)
    procs = start_group(python, script, n, env)
    try:
        time.sleep(0.2)
        rows = []
        for p in procs:
            r = {"pss": pss_total(p.pid), "minflt": minflt(p.pid)}
            if archive:
                if not p.base:
                    raise SystemExit(f"bench-memory: {script}: the archive "
                                     "is not in use")
                r.update(smaps_mapping(p.pid, p.base, p.size))
            rows.append(r)
    finally:
        stop_group(procs)
    return rows


def fleet(pycds, python, scripts, per, rounds, loader, out, prefault=None):
    """A host running several programs: @per concurrent processes of each
    workload at once, total PSS, stock against one archive per workload
    and against a standard-library layer (pycds build --stdlib) under one
    layer per workload (--on), setups rotating over @rounds rounds."""
    src = os.path.abspath(os.path.join(out, "fleet-src"))
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src)
    std = os.path.join(src, "stdlib.pycds")
    # The host's standard-library layer, laid out from the programs the
    # host runs (what they import of it first).
    runs = "; ".join(f"{python} -c \"$0\" {s}" for s in scripts)
    subprocess.run([pycds, "build", "-o", std, "--python", python,
                    "--stdlib", "--", "sh", "-c", runs, RUNNER], check=True,
                   capture_output=True, input="")
    ok = []
    for s in scripts:
        name = os.path.basename(s)[:-3]
        if subprocess.run([python, s], env=base_env(),
                          capture_output=True).returncode:
            print(f"bench-memory: skipping {s}: it fails stock",
                  file=sys.stderr)
            continue
        cmd = ["--", python, "-c", RUNNER, s]
        subprocess.run([pycds, "build", "-o", os.path.join(src, name +
                        ".pycds"), "--python", python, *cmd], check=True,
                       capture_output=True, input="")
        subprocess.run([pycds, "build", "-o", os.path.join(src, name +
                        "-on-stdlib.pycds"), "--on", std, "--python", python,
                        *cmd], check=True, capture_output=True, input="")
        ok.append((s, name))
    mnt, where = os.path.abspath(os.path.join(out, "fleet-mnt")), src
    use_loader = bool(loader) and os.geteuid() == 0
    if use_loader:
        os.makedirs(mnt, exist_ok=True)
        subprocess.run([loader, "--mount", mnt, "--source", src],
                       check=True, capture_output=True)
        where = mnt
    setups = {
        "stock": lambda name: None,
        "one archive each": lambda name: os.path.join(where, name +
                                                      ".pycds"),
        "stdlib layer + layer each": lambda name: (
            os.path.join(where, "stdlib.pycds") + ":" +
            os.path.join(where, name + "-on-stdlib.pycds")),
    }
    extra = {"PYCDS_PREFAULT": prefault} if prefault else {}
    totals = {k: [] for k in setups}
    faults = {k: [] for k in setups}
    for r in range(rounds):
        order = list(setups)
        order = order[r % 3:] + order[:r % 3]
        for k in order:
            groups = []
            try:
                for s, name in ok:
                    a = setups[k](name)
                    groups.append(start_group(python, s, per, base_env(
                        **({"PYCDS_ARCHIVE": a} if a else {}), **extra)))
                time.sleep(0.3)
                procs = [p for g in groups for p in g]
                if k != "stock" and not all(p.base for p in procs):
                    raise SystemExit(f"bench-memory: {k}: an archive is "
                                     "not in use")
                totals[k].append(sum(pss_total(p.pid) for p in procs))
                faults[k].append(statistics.median(minflt(p.pid)
                                                   for p in procs))
            finally:
                for g in groups:
                    stop_group(g)
    n = per * len(ok)
    print(f"{python}; a fleet of {n} concurrent processes ({per} of each "
          f"of {', '.join(nm for _, nm in ok)}), paused after the workload; "
          f"archives on {'huge-page tmpfs (pycds-loader)' if use_loader else 'the build directory'}; "
          f"median of {rounds} rounds, setups rotating"
          + (f"; PYCDS_PREFAULT={prefault}" if prefault else ""))
    print(f"{'setup':<28}{'total PSS':>11}{'saved':>8}{'minflt':>8}"
          f"{'archives':>10}")
    ps = statistics.median(totals["stock"])
    sizes = {"stock": 0,
             "one archive each": sum(os.path.getsize(os.path.join(
                 src, nm + ".pycds")) for _, nm in ok),
             "stdlib layer + layer each": os.path.getsize(std) + sum(
                 os.path.getsize(os.path.join(src, nm + "-on-stdlib.pycds"))
                 for _, nm in ok)}
    for k in setups:
        t = statistics.median(totals[k])
        print(f"{k:<28}{t / 1024:>9.1f}MB{(ps - t) / ps * 100:>7.1f}%"
              f"{statistics.median(faults[k]):>8.0f}"
              f"{sizes[k] / 1048576:>8.1f}MB")
    if use_loader:
        subprocess.run([loader, "--unmount", "--mount", mnt],
                       capture_output=True)


def compare_trees(pycds, python, against, scripts, n, rounds, loader, out):
    """Old tree against new: each workload's archive built by each tree's
    pycds for its own venv, published by one loader mount; rounds of
    N stock, N old and N new processes, the order rotating."""
    old_tool, old_python = other_tree(against)
    src = os.path.abspath(os.path.join(out, "cmp-src"))
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src)
    for s in scripts:
        name = os.path.basename(s)[:-3]
        for tool, py, suffix in ((pycds, python, ".pycds"),
                                 (old_tool, old_python, ".against.pycds")):
            subprocess.run([tool, "build", "-o", os.path.join(src, name + suffix),
                            "--python", py, "--", py, "-c", RUNNER, s],
                           check=True, capture_output=True, input="")
    where = src
    if loader and os.geteuid() == 0:
        where = os.path.abspath(os.path.join(out, "cmp-mnt"))
        os.makedirs(where, exist_ok=True)
        subprocess.run([loader, "--mount", where, "--source", src],
                       check=True, capture_output=True)
    print(f"new tree: {pycds} with {python}; old tree: {against}; "
          f"{rounds} rounds of {n} concurrent processes each, stock/old/new "
          f"rotating; archives in {where}")
    print(f"{'workload':<14}{'PSS stock':>11}{'PSS old':>11}{'PSS new':>11}"
          f"{'new/old':>9}{'range new/old':>17}{'copied old':>12}"
          f"{'copied new':>12}")
    for s in scripts:
        name = os.path.basename(s)[:-3]
        variants = [(python, None), (old_python, os.path.join(
            where, name + ".against.pycds")), (python, os.path.join(
                where, name + ".pycds"))]
        pss = [[] for _ in variants]
        anon = [[] for _ in variants]
        for i in range(rounds):
            for j in range(3):
                v = (i + j) % 3
                rows = measure(variants[v][0], s, n, variants[v][1])
                pss[v].append(sum(r["pss"] for r in rows))
                if variants[v][1]:
                    anon[v].append(statistics.median(r["Anonymous"]
                                                     for r in rows))
        med = statistics.median
        ratios = sorted(b / a for a, b in zip(pss[1], pss[2]))
        print(f"{name:<14}{med(pss[0]) / 1024:>9.1f}MB"
              f"{med(pss[1]) / 1024:>9.1f}MB{med(pss[2]) / 1024:>9.1f}MB"
              f"{med(pss[2]) / med(pss[1]):>8.3f}x"
              f"{ratios[0]:>9.3f}-{ratios[-1]:.3f}"
              f"{med(anon[1]):>10.0f}kB{med(anon[2]):>10.0f}kB")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workloads", nargs="*")
    ap.add_argument("-n", type=int, default=16)
    ap.add_argument("--out", default="build/bench-memory")
    ap.add_argument("--hash-seed", type=int, default=None,
                    help="also compare archives with stored hashes for "
                         "this PYTHONHASHSEED (see --help of pycds build)")
    ap.add_argument("--against", metavar="BUILDDIR",
                    help="compare with another tree's build directory (its "
                         "pycds and venv/bin/python): stock, that tree and "
                         "this one, rotating")
    ap.add_argument("--rounds", type=int, default=3,
                    help="with --against: rounds per workload; with "
                         "--fleet: rounds of the three setups")
    ap.add_argument("--fleet", type=int, metavar="PER", default=None,
                    help="the fleet figure instead: PER processes of every "
                         "workload at once, stock, one archive per "
                         "workload, and a standard-library layer under a "
                         "layer per workload")
    ap.add_argument("--prefault", choices=("huge", "write", "read", "none"),
                    help="with --fleet: PYCDS_PREFAULT for every process")
    a = ap.parse_args()
    pycds, python, scripts = setup(a.workloads, a.out)
    loader = os.environ.get("PYCDS_LOADER")
    if a.fleet:
        fleet(pycds, python, scripts, a.fleet, a.rounds, loader, a.out,
              a.prefault)
        return
    if a.against:
        compare_trees(pycds, python, os.path.abspath(a.against), scripts,
                      a.n, a.rounds, loader, a.out)
        return
    src = os.path.abspath(os.path.join(a.out, "src"))
    # Only this run's archives: the loader refuses to publish a stale one.
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src, exist_ok=True)
    mnt = os.path.abspath(os.path.join(a.out, "mnt"))
    use_loader = bool(loader) and os.geteuid() == 0

    built = {}
    for s in scripts:
        name = os.path.basename(s).replace(".py", ".pycds")
        if subprocess.run([python, s], env=base_env(),
                          capture_output=True).returncode:
            print(f"bench-memory: skipping {s}: it fails stock",
                  file=sys.stderr)
            continue
        subprocess.run([pycds, "build", "-o", os.path.join(src, name),
                        "--python", python, "--", python, "-c", RUNNER, s],
                       check=True, capture_output=True, input="")
        if a.hash_seed is not None:
            subprocess.run([pycds, "build", "--hash-seed", str(a.hash_seed),
                            "-o", os.path.join(src, hashed_name(name)),
                            "--python", python, "--", python, "-c", RUNNER,
                            s], check=True, capture_output=True, input="")
        built[s] = name
    if use_loader:
        os.makedirs(mnt, exist_ok=True)
        subprocess.run([loader, "--mount", mnt, "--source", src],
                       check=True, capture_output=True)
        where = mnt
        fs = "huge-page tmpfs (pycds-loader)"
    else:
        where = src
        fs = "build directory (no loader: not root)"

    print(f"{python}; {a.n} concurrent processes per row, paused after the "
          f"workload; archives on {fs}")
    print(f"{'workload':<14}{'PSS stock':>11}{'PSS pycds':>11}{'saved':>7}"
          f"{'map rss':>9}{'copied':>8}{'shared':>8}{'clean':>7}"
          f"{'pmd':>7}{'flt stock':>10}{'flt pycds':>10}"
          f"{'PSS write':>11}{'flt write':>10}")
    for s, name in built.items():
        archive = os.path.join(where, name)
        stock = measure(python, s, a.n)
        fast = measure(python, s, a.n, archive)
        # The same without huge pages for the copies (PYCDS_PREFAULT=write).
        small = measure(python, s, a.n, archive, PYCDS_PREFAULT="write")
        ps, pf = sum(r["pss"] for r in stock), sum(r["pss"] for r in fast)
        pw = sum(r["pss"] for r in small)
        rss = statistics.median(r["Rss"] for r in fast)
        anon = statistics.median(r["Anonymous"] for r in fast)
        pmd = statistics.median(r["ShmemPmdMapped"] for r in fast)
        clean = (rss - anon) / rss if rss else 0
        print(f"{os.path.basename(s)[:-3]:<14}{ps / 1024:>9.1f}MB"
              f"{pf / 1024:>9.1f}MB{(ps - pf) / ps * 100:>6.1f}%"
              f"{rss:>7.0f}kB{anon:>6.0f}kB{rss - anon:>6.0f}kB"
              f"{clean * 100:>6.0f}%{pmd:>5.0f}kB"
              f"{statistics.median(r['minflt'] for r in stock):>10.0f}"
              f"{statistics.median(r['minflt'] for r in fast):>10.0f}"
              f"{pw / 1024:>9.1f}MB"
              f"{statistics.median(r['minflt'] for r in small):>10.0f}")
    if a.hash_seed is not None:
        seed = str(a.hash_seed)
        print(f"\nevery process with PYTHONHASHSEED={seed}: the archive "
              f"without stored hashes against one with them "
              f"(pycds build --hash-seed {seed})")
        print(f"{'workload':<14}{'PSS stock':>11}{'PSS plain':>11}"
              f"{'PSS hashes':>12}{'copied':>8}{'copied':>8}"
              f"{'flt plain':>10}{'flt hashes':>11}")
        for s, name in built.items():
            stock = measure(python, s, a.n, PYTHONHASHSEED=seed)
            plain = measure(python, s, a.n, os.path.join(where, name),
                            PYTHONHASHSEED=seed)
            hashed = measure(python, s, a.n,
                             os.path.join(where, hashed_name(name)),
                             PYTHONHASHSEED=seed)
            med = statistics.median
            print(f"{os.path.basename(s)[:-3]:<14}"
                  f"{sum(r['pss'] for r in stock) / 1024:>9.1f}MB"
                  f"{sum(r['pss'] for r in plain) / 1024:>9.1f}MB"
                  f"{sum(r['pss'] for r in hashed) / 1024:>10.1f}MB"
                  f"{med(r['Anonymous'] for r in plain):>6.0f}kB"
                  f"{med(r['Anonymous'] for r in hashed):>6.0f}kB"
                  f"{med(r['minflt'] for r in plain):>10.0f}"
                  f"{med(r['minflt'] for r in hashed):>11.0f}")
    if use_loader:
        subprocess.run([loader, "--unmount", "--mount", mnt],
                       capture_output=True)


if __name__ == "__main__":
    main()
