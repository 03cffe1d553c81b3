# SPDX-License-Identifier: MIT
"""PYCDS_PREFAULT=huge: chunks of the archive the process writes anyway are
replaced by private huge pages holding the same bytes.

Each case runs a workload under `python -S` with _pycds.enable() called by
hand, so the runner can first disturb what the copy relies on: the archive's
path removed or given to another file after mapping (the copy reads the
page cache through a descriptor it opens for the purpose, and must notice),
or the preferred base taken.  The process keeps no descriptor of the
archive.  The output must equal stock's and the same modules must be served;
where the chunk is copied, the range must hold anonymous huge pages."""
import os
import shutil
import subprocess

from pycdslib import (PYCDS, PYTHON, WORKLOADS, Archive, Tap, build,
                      describe, diff, parse_stats, pycds_lines, run, scratch,
                      site_dir)

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
if how == "unlink":
    os.unlink(archive)
elif how == "replace":
    with open(archive + ".new", "wb") as f:
        f.write(b"\0" * os.path.getsize(archive))
    os.rename(archive + ".new", archive)
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
    ("archive's path removed after mapping", "unlink", {}),
    ("another file at the archive's path", "replace", {}),
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


from pycdslib import REGION_CODE, REGION_DATA, REGION_IDLE, REGION_NAMES

CHUNK = 2 << 20
# How much of a chunk must be written for the runtime to copy it whole.
MOSTLY = CHUNK // 16 * 15


def written_chunks(A):
    """Chunks of archive A that its written regions (names pool, code,
    data) fill at least 15/16: those an unrelocated process copies whole,
    as the runtime decides (the mapping is at a 2 MiB-aligned base)."""
    reg = A.h["regions"]
    n = 0
    for c in range(A.h["file_size"] // CHUNK):
        lo, hi = c * CHUNK, (c + 1) * CHUNK
        hot = sum(max(0, min(hi, o + z) - max(lo, o))
                  for o, z in (reg[r] for r in (REGION_NAMES, REGION_CODE,
                                                 REGION_DATA)))
        n += hot >= MOSTLY
    return n


t = Tap(2 + len(CASES) * PER + 2 + 6)
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
    path = archive
    if how in ("unlink", "replace"):
        path = os.path.join(tmp, how + ".pycds")
        shutil.copyfile(archive, path)
    argv = [PYTHON, "-S", "-c", RUNNER, path, script, how, site]
    if how == "occupy":
        argv.append(hex(A.base + 8192))
    p = run(argv, PYTHONHASHSEED="5", **env)
    st = parse_stats(p.stderr) or {}
    t.ok(p.returncode == 0 and p.stdout == stock.stdout and
         not pycds_lines(p.stderr),
         f"{what}: exit 0, output identical to stock, no pycds: line",
         diff(stock.stdout, p.stdout) + "\n" + describe(p))
    t.ok(st.get("enabled") and st.get("error") is None and
         st.get("hits", 0) > 80 and st.get("archive_fds") == 0 and
         st.get("enable_ns", 0) > 0,
         f"{what}: in use, {st.get('hits')} modules served, no descriptor "
         f"of the archive kept, enable() took {st.get('enable_ns')} ns", st)
    hits.add(st.get("hits"))
    if "PYCDS_PREFAULT" in env:
        t.ok(st.get("huge_chunks") == 0 and st.get("anon_huge_kb") == 0,
             f"{what}: no chunk copied", st)
        t.eq(st.get("relocated"), False, f"{what}: not relocated")
        continue
    if not have_thp:
        t.skip_n(2, what, "no transparent huge pages for anonymous memory")
        continue
    if not st.get("image_bias") and not st.get("relocated") and \
            not written_chunks(A):
        # Written regions too small to fill a chunk (on 3.12+ they hold
        # only what runs and what is rewritten): pages are copied one by
        # one.
        t.ok(st.get("huge_chunks") == 0 and st.get("anon_huge_kb") == 0,
             f"{what}: no chunk copied (the written regions fill none)", st)
        t.eq(st.get("relocated"), False, f"{what}: not relocated")
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
     st.get("huge_chunks") == 0 and st.get("size", 1 << 30) < CHUNK,
     f"a {st.get('size')}-byte archive: served, no chunk copied", st)

# Where the written regions fill a chunk, they start on a 2 MiB boundary
# whatever precedes them, and the padding is a hole.  jinja2_app's written
# regions (2.4 MB) straddled two chunks before, and no chunk was copied.
JRUN = r"""
import json, runpy, sys
probe = int(sys.argv[1])
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
import _pycds
st = dict(_pycds.stats())
at = (st["base"] or 0) + probe
for line in open("/proc/self/smaps"):
    head = line.split()
    if "-" in head[0] and ":" not in head[0]:
        lo, hi = (int(x, 16) for x in head[0].split("-"))
        cur = lo <= at < hi
    elif cur and head[0] == "VmFlags:":
        st["padding_vmflags"] = head[1:]
print("PYCDS-STATS " + json.dumps(st), file=sys.stderr)
"""
jscript = os.path.join(WORKLOADS, "jinja2_app.py")
jstock = run([PYTHON, jscript])
ja = os.path.join(tmp, "jinja2.pycds")
jb = build(ja, ["--", PYTHON, jscript]) if jstock.returncode == 0 else None
if jb is None or jb.returncode != 0:
    t.skip_n(6, "jinja2_app: written regions on a 2 MiB boundary",
             "jinja2 not importable here" if jb is None else describe(jb))
else:
    J = Archive(ja)
    reg = J.h["regions"]
    written = sum((reg[r][1] + 4095) // 4096 * 4096
                  for r in (REGION_NAMES, REGION_CODE, REGION_DATA))
    idle_end = (reg[REGION_IDLE][0] + reg[REGION_IDLE][1] + 4095) \
        // 4096 * 4096
    p = run([PYTHON, "-c", JRUN, str(idle_end), jscript], PYCDS_ARCHIVE=ja)
    st = parse_stats(p.stderr) or {}
    if st.get("image_bias") or written < MOSTLY:
        why = ("position-independent interpreter: every chunk is written"
               if st.get("image_bias") else
               f"the written regions ({written} bytes) fill no chunk")
        t.ok(reg[REGION_NAMES][0] == (reg[REGION_IDLE][0] + reg[REGION_IDLE][1]
                                      + 4095) // 4096 * 4096,
             "no padding where it cannot help", reg)
        t.skip_n(5, "jinja2_app: written regions on a 2 MiB boundary", why)
    else:
        gap = reg[REGION_NAMES][0] - idle_end
        t.ok(written >= MOSTLY and
             reg[REGION_NAMES][0] % CHUNK == 0 and gap >= 0,
             f"jinja2_app: {written} bytes of written regions start at "
             f"{reg[REGION_NAMES][0]:#x}, after {gap} bytes of padding", reg)
        fd = os.open(ja, os.O_RDONLY)
        try:
            hole = os.lseek(fd, idle_end, os.SEEK_HOLE)
        finally:
            os.close(fd)
        t.ok(gap < 4096 or hole == idle_end or
             os.statvfs(ja).f_bsize > 4096,
             f"the padding is a hole in the file (first hole from the end "
             f"of the idle region: {hole:#x})")
        t.ok(p.returncode == 0 and p.stdout == jstock.stdout and
             not pycds_lines(p.stderr),
             "jinja2_app: output identical to stock, no pycds: line",
             diff(jstock.stdout, p.stdout) + "\n" + describe(p))
        # khugepaged would fill the hole while processes map the rest of
        # its 2 MiB extent: the runtime maps the padding without huge pages.
        t.ok("nh" in st.get("padding_vmflags", []),
             "the padding is mapped with MADV_NOHUGEPAGE (VmFlags "
             f"{' '.join(st.get('padding_vmflags', []))})", st)
        # Padding is checked too: one byte set in it fails verify.
        flipped = os.path.join(tmp, "jinja2-padding.pycds")
        with open(ja, "rb") as f:
            data = bytearray(f.read())
        at = idle_end + gap // 2
        data[at] = 0x5a
        with open(flipped, "wb") as f:
            f.write(data)
        v = subprocess.run([PYCDS, "verify", "--python", PYTHON, flipped],
                           capture_output=True, text=True)
        t.ok(v.returncode == 1 and
             f"non-zero byte in padding at offset {at}" in v.stderr and
             len(v.stderr.strip().splitlines()) == 1,
             "a byte set in the padding fails pycds verify in one line",
             v.stderr)
        if have_thp:
            t.ok(st.get("huge_chunks", 0) >= 1,
                 f"jinja2_app: {st.get('huge_chunks')} chunk copied whole", st)
        else:
            t.skip("jinja2_app: a chunk copied whole",
                   "no transparent huge pages for anonymous memory")
