# SPDX-License-Identifier: MIT
"""PYCDS_PREFAULT=huge: chunks of the archive the process writes anyway are
replaced by private huge pages holding the same bytes.

Each case runs a workload under `python -S` with _pycds.enable() called by
hand, so the runner can first disturb what the copy relies on: the archive's
descriptor closed, or another file put on its number, or the preferred base
taken.  The output must equal stock's and the same modules must be served;
where the chunk is copied, the range must hold anonymous huge pages."""
import os

from pycdslib import (PYTHON, WORKLOADS, Archive, Tap, build, describe, diff,
                      parse_stats, pycds_lines, run, scratch, site_dir)

RUNNER = r"""
import ctypes, json, os, runpy, sys
archive, script, how, site_dir = sys.argv[1:5]
if how == "occupy":
    base = int(sys.argv[5], 0)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                          ctypes.c_int, ctypes.c_int, ctypes.c_long]
    if libc.mmap(base, 4096, 1, 0x02 | 0x20 | 0x100000, -1, 0) != base:
        sys.exit(3)
sys.path.append(site_dir)
import _pycds
enabled = _pycds.enable(archive)
mine = [int(fd) for fd in os.listdir("/proc/self/fd")
        if os.path.realpath(f"/proc/self/fd/{fd}") == os.path.realpath(archive)]
if how == "close":
    for fd in mine:
        os.close(fd)
elif how == "replace":
    other = os.open("/dev/zero", os.O_RDONLY)
    for fd in mine:
        os.dup2(other, fd)
sys.argv = [script]
runpy.run_path(script, run_name="__main__")
st = dict(_pycds.stats())
st["enabled"] = enabled
st["archive_fds"] = len(mine)
b, e = st["base"] or 0, (st["base"] or 0) + st["size"]
st["anon_huge_kb"] = 0
cur = False
for line in open("/proc/self/smaps"):
    head = line.split()
    if "-" in head[0] and ":" not in head[0]:
        lo, hi = (int(x, 16) for x in head[0].split("-"))
        cur = lo >= b and hi <= (e + 4095) // 4096 * 4096
    elif cur and head[0] == "AnonHugePages:":
        st["anon_huge_kb"] += int(head[1])
print("PYCDS-STATS " + json.dumps(st), file=sys.stderr)
"""

CASES = [
    ("default policy", "plain", {}),
    ("descriptor closed by the program", "close", {}),
    ("another file on the descriptor", "replace", {}),
    ("preferred base taken (relocated)", "occupy", {}),
    ("PYCDS_PREFAULT=write", "plain", {"PYCDS_PREFAULT": "write"}),
]
PER = 4


def thp():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            s = f.read()
        return "[always]" in s or "[madvise]" in s
    except OSError:
        return False


t = Tap(2 + len(CASES) * PER + 2)
tmp = scratch()
site = site_dir()
script = os.path.join(WORKLOADS, "stdlib6.py")
archive = os.path.join(tmp, "stdlib6.pycds")
b = build(archive, ["--", PYTHON, script])
if not t.ok(b.returncode == 0, "stdlib6: archive built", describe(b)):
    raise SystemExit(0)
A = Archive(archive)
t.ok(A.h["file_size"] >= 4 << 20,
     f"stdlib6's archive is {A.h['file_size']} bytes: at least one 2 MiB "
     "chunk of write-bound spans")
stock = run([PYTHON, "-S", script], PYTHONHASHSEED="5")
have_thp = thp()
hits = set()
for what, how, env in CASES:
    argv = [PYTHON, "-S", "-c", RUNNER, archive, script, how, site]
    if how == "occupy":
        argv.append(hex(A.base + 8192))
    p = run(argv, PYTHONHASHSEED="5", **env)
    st = parse_stats(p.stderr) or {}
    t.ok(p.returncode == 0 and p.stdout == stock.stdout and
         not pycds_lines(p.stderr),
         f"{what}: exit 0, output identical to stock, no pycds: line",
         diff(stock.stdout, p.stdout) + "\n" + describe(p))
    t.ok(st.get("enabled") and st.get("error") is None and
         st.get("hits", 0) > 80 and st.get("archive_fds") == 1,
         f"{what}: in use, {st.get('hits')} modules served, the archive "
         "held open once", st)
    hits.add(st.get("hits"))
    if "PYCDS_PREFAULT" in env:
        t.ok(st.get("huge_chunks") == 0 and st.get("anon_huge_kb") == 0,
             f"{what}: no chunk copied", st)
        t.eq(st.get("relocated"), False, f"{what}: not relocated")
        continue
    if not have_thp:
        t.skip_n(2, what, "no transparent huge pages for anonymous memory")
        continue
    t.ok(st.get("huge_chunks", 0) >= 1,
         f"{what}: {st.get('huge_chunks')} chunks copied", st)
    # Under heavy fragmentation the kernel may hand out small pages
    # instead (slower, not wrong); a test machine has memory to spare.
    t.ok(st.get("anon_huge_kb", 0) >= 2048,
         f"{what}: {st.get('anon_huge_kb')} kB of anonymous huge pages "
         "in the archive's range", st)
t.eq(len(hits), 1, "the same modules served in every case", hits)

# An archive under 2 MiB has no whole chunk: nothing is copied whole.
small = os.path.join(tmp, "small.py")
with open(small, "w") as f:
    f.write("import fractions\nprint(fractions.Fraction(2, 6))\n")
sa = os.path.join(tmp, "small.pycds")
build(sa, ["--", PYTHON, small])
p = run([PYTHON, "-S", "-c", RUNNER, sa, small, "plain", site])
st = parse_stats(p.stderr) or {}
t.ok(p.stdout == "1/3\n" and st.get("hits", 0) >= 1 and
     st.get("huge_chunks") == 0 and st.get("size", 1 << 30) < 2 << 20,
     f"a {st.get('size')}-byte archive: served, no chunk copied", st)
