# SPDX-License-Identifier: MIT
"""With its preferred base taken, the archive is mapped elsewhere and its
relocation tables applied: the same output, the same modules served.  At
the preferred base nothing is relocated.

Under `python -S` (no site, so no hook) a runner occupies one page of the
archive's range with mmap(MAP_FIXED_NOREPLACE) before calling
_pycds.enable(path) by hand, then runs the workload."""
import json
import os

from pycdslib import (PYTHON, REGION_COLD, REGION_NAMES, WORKLOADS, Archive,
                      Tap, build, describe, diff, pycds_lines, require, run,
                      scratch, site_dir)

require()

RUNNER = r"""
import ctypes, json, runpy, sys
archive, script, occupy, site_dir = sys.argv[1], sys.argv[2], int(sys.argv[3], 0), sys.argv[4]
cold_off, cold_size = int(sys.argv[5]), int(sys.argv[6])
found_off, found_size = int(sys.argv[7]), int(sys.argv[8])
if occupy:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                          ctypes.c_int, ctypes.c_int, ctypes.c_long]
    PROT_READ, MAP_PRIVATE, MAP_ANONYMOUS = 1, 0x02, 0x20
    MAP_FIXED_NOREPLACE = 0x100000
    got = libc.mmap(occupy, 4096, PROT_READ,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
    if got != occupy:
        print(f"OCCUPY-FAILED {occupy:#x} -> {got} errno "
              f"{ctypes.get_errno()}", file=sys.stderr)
        sys.exit(3)
# -S: no site, so no hook; find _pycds where the hook would.
sys.path.append(site_dir)
import _pycds
early = set(sys.modules)
enabled = _pycds.enable(archive)
sys.argv = [script]
runpy.run_path(script, run_name="__main__")
st = dict(_pycds.stats())
st["enabled"] = enabled
st["occupied"] = occupy
st["source_modules"] = len({id(m) for k, m in list(sys.modules.items())
                            if k not in early and str(getattr(getattr(
                                m, "__spec__", None), "origin", "")
                            ).endswith(".py")})
# The cold region's pages this process has mapped, and how many of them
# are still the file's (not copied): /proc/self/pagemap, present bit 63,
# file-page bit 61.
import struct
def pages(off, size):
    lo, n = st["base"] + off, (size + 4095) // 4096
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(lo // 4096 * 8)
        ents = [e for (e,) in struct.iter_unpack("<Q", f.read(n * 8))]
    return (sum(e >> 63 & 1 for e in ents),
            sum(e >> 63 & e >> 61 & 1 for e in ents))
st["cold_present"], st["cold_shared"] = pages(cold_off, cold_size)
# The names the build expected to find interned already: only read.
st["found_present"], st["found_shared"] = pages(found_off, found_size)
print("RELOC-STATS " + json.dumps(st), file=sys.stderr)
"""

NAMES = ["stdlib6", "cli_tool"]
SITUATIONS = [("at the preferred base", None),
              ("first page of the range taken", 0),
              ("a page in the middle of the range taken", "middle"),
              ("last page of the range taken", "last")]
SEED = "77"          # the archives are built under seed 0
PER = 1 + len(SITUATIONS) * 4 + (len(SITUATIONS) - 1) + 1 + 1
t = Tap(len(NAMES) * PER)
tmp = scratch()
site = site_dir()


def stats_of(p):
    for line in p.stderr.splitlines():
        if line.startswith("RELOC-STATS "):
            return json.loads(line[len("RELOC-STATS "):])
    return None


for name in NAMES:
    script = os.path.join(WORKLOADS, name + ".py")
    archive = os.path.join(tmp, name + ".pycds")
    b = build(archive, ["--", PYTHON, script])
    if not t.ok(b.returncode == 0 and os.path.isfile(archive),
                f"{name}: archive built", describe(b)):
        t.skip_n(PER - 1, name, "no archive")
        continue
    A = Archive(archive)
    base, size = A.base, A.h["file_size"]
    cold = A.h["regions"][REGION_COLD]
    pool = A.h["regions"][REGION_NAMES]
    found = A.h["names_found_off"]
    found = (found, pool[0] + pool[1] - found) if found else (pool[0], 0)
    stock = run([PYTHON, "-S", script], PYTHONHASHSEED=SEED)
    hits = {}
    for what, where in SITUATIONS:
        if where is None:
            occupy = 0
        elif where == "middle":
            occupy = base + (size // 2 & ~4095)
        elif where == "last":
            occupy = base + ((size - 1) & ~4095)
        else:
            occupy = base + where
        p = run([PYTHON, "-S", "-c", RUNNER, archive, script, hex(occupy),
                 site, str(cold[0]), str(cold[1]), str(found[0]),
                 str(found[1])], PYTHONHASHSEED=SEED)
        st = stats_of(p)
        t.ok(p.returncode == 0 and p.stdout == stock.stdout,
             f"{name}, {what}: exit 0, output identical to stock",
             diff(stock.stdout, p.stdout) + "\n" + describe(p))
        t.ok(not pycds_lines(p.stderr),
             f"{name}, {what}: no pycds: line", p.stderr)
        if st is None:
            t.skip_n(2 + bool(occupy), f"{name}, {what}", "no stats")
            continue
        if occupy:
            t.ok(st["relocated"] is True and st["base"] != base and
                 st["preferred_base"] == base and
                 not (st["base"] <= occupy < st["base"] + size),
                 f"{name}, {what}: mapped at {st['base']:#x}, not at "
                 f"{base:#x}, and relocated", st)
            # Only the pages holding a pointer to relocate are copied: the
            # cold region's line tables and byte strings stay shared.  A
            # position-independent interpreter slides every type pointer.
            if st.get("image_bias"):
                t.skip(f"{name}, {what}: cold pages shared",
                       "a position-independent interpreter writes every page")
            else:
                t.ok(st["cold_present"] and
                     st["cold_shared"] * 2 > st["cold_present"],
                     f"{name}, {what}: {st['cold_shared']} of "
                     f"{st['cold_present']} cold pages in use still the "
                     f"file's", st)
        else:
            t.ok(st["relocated"] is False and st["base"] == base and
                 st["preferred_base"] == base,
                 f"{name}, {what}: mapped at {base:#x}, not relocated", st)
        hits[what] = st["hits"]
        t.ok(st["enabled"] is True and st["error"] is None and
             st["hits"] > 0 and st["hits"] >= 0.95 * st["source_modules"],
             f"{name}, {what}: archive in use, {st['hits']} of "
             f"{st['source_modules']} source modules served", st)
    # The pool entries a process was expected to find interned already are
    # looked up through a copy: their pages are only read, whether the
    # guess was right or not.  (PYCDS_PREFAULT=write: under the default,
    # a chunk holding them may be copied whole into a huge page.)
    p = run([PYTHON, "-S", "-c", RUNNER, archive, script, "0", site,
             str(cold[0]), str(cold[1]), str(found[0]), str(found[1])],
            PYTHONHASHSEED=SEED, PYCDS_PREFAULT="write")
    st = stats_of(p) or {}
    if st.get("image_bias"):
        t.skip(f"{name}: the found names' pages only read",
               "a position-independent interpreter writes every page")
    else:
        t.ok(found[1] and st.get("found_present") and
             st["found_shared"] == st["found_present"],
             f"{name}: {st.get('found_shared')} of "
             f"{st.get('found_present')} pages of the names expected "
             f"interned already still the file's",
             {k: st.get(k) for k in ("found_present", "found_shared",
                                     "error", "interned", "redirected")})
    t.ok(len(set(hits.values())) == 1 and len(hits) == len(SITUATIONS),
         f"{name}: the same modules served wherever it is mapped", hits)
