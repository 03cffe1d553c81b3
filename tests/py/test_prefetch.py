# SPDX-License-Identifier: MIT
"""PYCDS_PREFETCH: read-ahead of the archive through io_uring, posix_fadvise
or not at all (the default); auto picks none on a tmpfs and io_uring on a
disk.  Every
policy gives stock's output, and a fork() between mapping and the first
module (the io_uring completion still pending) leaves parent and child
both working."""
import os
import shutil

from pycdslib import (PYTHON, WORKLOADS, Tap, build, describe, diff,
                      parse_stats, pycds_lines, run, scratch, site_dir)

RUNNER = r"""
import json, os, runpy, sys
archive, script, site_dir, fork = sys.argv[1:5]
sys.path.append(site_dir)
import _pycds
_pycds.enable(archive)
if fork == "fork":
    pid = os.fork()
    if pid == 0:
        import fractions
        print("child", fractions.Fraction(3, 9), _pycds.stats()["hits"] > 0,
              flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print("child exit", os.waitstatus_to_exitcode(status), flush=True)
sys.argv = [script]
runpy.run_path(script, run_name="__main__")
print("PYCDS-STATS " + json.dumps(_pycds.stats()), file=sys.stderr)
"""


def uring_allowed():
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            return f.read().strip() == "0"
    except OSError:
        return True


t = Tap(1 + 6 * 2 + 2 + 2)
tmp = scratch()
site = site_dir()
script = os.path.join(WORKLOADS, "stdlib6.py")
disk = os.path.join(tmp, "stdlib6.pycds")
b = build(disk, ["--", PYTHON, "-c",
                 "import runpy, sys, fractions; sys.argv = [sys.argv[1]]; "
                 "runpy.run_path(sys.argv[0], run_name='__main__')", script])
if not t.ok(b.returncode == 0, "archive built", describe(b)):
    raise SystemExit(0)
shm = None
if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
    shm = os.path.join("/dev/shm", f"pycds-test-{os.getpid()}.pycds")
    shutil.copy(disk, shm)
    os.chmod(shm, 0o444)
    import taplib
    taplib.at_end(os.unlink, shm)
stock = run([PYTHON, "-S", script])
want_uring = "uring" if uring_allowed() else "sync"
CASES = [("on disk, default", disk, None, "none"),
         ("on disk, PYCDS_PREFETCH=auto", disk, "auto", want_uring),
         ("on disk, PYCDS_PREFETCH=sync", disk, "sync", "sync"),
         ("on disk, PYCDS_PREFETCH=none", disk, "none", "none"),
         ("on disk, PYCDS_PREFETCH=uring", disk, "uring", want_uring),
         ("on /dev/shm, PYCDS_PREFETCH=auto", shm, "auto", "none")]
for what, archive, policy, want in CASES:
    if archive is None:
        t.skip_n(2, what, "no writable /dev/shm")
        continue
    p = run([PYTHON, "-S", "-c", RUNNER, archive, script, site, "no"],
            PYCDS_PREFETCH=policy)
    st = parse_stats(p.stderr) or {}
    t.ok(p.returncode == 0 and p.stdout == stock.stdout and
         not pycds_lines(p.stderr) and st.get("hits", 0) > 80,
         f"{what}: output identical to stock, {st.get('hits')} served",
         diff(stock.stdout, p.stdout) + "\n" + describe(p))
    t.eq(st.get("prefetch"), want, f"{what}: prefetch {want}")

p = run([PYTHON, "-S", "-c", RUNNER, disk, script, site, "fork"],
        PYCDS_PREFETCH="uring", timeout=60)
t.ok(p.returncode == 0 and
     p.stdout.startswith("child 1/3 True\nchild exit 0\n") and
     p.stdout.endswith(stock.stdout),
     "fork before the first module: child and parent both served, "
     "no hang", describe(p))
t.ok(not pycds_lines(p.stderr), "fork: no pycds: line", p.stderr)

# A value it does not know: one line naming it, then the default.
for var, value, key, default in (("PYCDS_PREFETCH", "urign", "prefetch", "none"),
                                 ("PYCDS_PREFAULT", "hgue", "huge_chunks", None)):
    p = run([PYTHON, "-S", "-c", RUNNER, disk, script, site, "no"],
            **{var: value})
    st = parse_stats(p.stderr) or {}
    lines = pycds_lines(p.stderr)
    t.ok(p.returncode == 0 and p.stdout == stock.stdout and len(lines) == 1
         and f"{var}={value} is not" in lines[0] and st.get("hits", 0) > 80
         and (default is None or st.get(key) == default),
         f"{var}={value}: one pycds: line naming it, output identical, "
         "the default used", describe(p))
