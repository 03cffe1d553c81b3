# SPDX-License-Identifier: MIT
"""With its preferred base taken, the archive is mapped elsewhere and its
relocation tables applied: the same output, the same modules served.  At
the preferred base nothing is relocated."""
import os

from pycdslib import PYTHON, WORKLOADS, Tap, build, header, run, scratch

RUNNER = r"""
import ctypes, io, json, os, runpy, sys, sysconfig, contextlib
archive, script, occupy = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
base, site_dir = int(sys.argv[4]), sys.argv[5]
if occupy:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                          ctypes.c_int, ctypes.c_int, ctypes.c_long]
    MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE = 0x02, 0x20, 0x100000
    got = libc.mmap(base, 4096, 1, MAP_PRIVATE | MAP_ANONYMOUS |
                    MAP_FIXED_NOREPLACE, -1, 0)
    assert got == base, f"could not occupy {base:#x}: {got}"
# -S: no site, so no hook; find _pycds where the hook would.
sys.path.append(site_dir)
import _pycds
assert _pycds.enable(archive) is True, _pycds.stats()
sys.argv = [script]
runpy.run_path(script, run_name="__main__")
print(json.dumps(_pycds.stats()), file=sys.stderr)
"""

NAMES = ["stdlib6", "cli_tool"]
t = Tap(len(NAMES) * 6)
tmp = scratch()
site_dir = run([PYTHON, "-c", "import sysconfig; "
                "print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
for name in NAMES:
    script = os.path.join(WORKLOADS, name + ".py")
    archive = os.path.join(tmp, name + ".pycds")
    b = build(archive, ["--", PYTHON, script])
    base = header(archive)["base"]
    stock = run([PYTHON, "-S", script])
    for occupy in (True, False):
        what = "base taken" if occupy else "at preferred base"
        p = run([PYTHON, "-S", "-c", RUNNER, archive, script,
                 "1" if occupy else "0", str(base), site_dir],
                PYTHONHASHSEED="99")
        import json
        st = None
        for line in p.stderr.splitlines():
            if line.startswith("{"):
                st = json.loads(line)
        t.ok(p.returncode == 0 and p.stdout == stock.stdout,
             f"{name}, {what}: output identical to stock",
             f"{p.stdout!r} vs {stock.stdout!r}\n{p.stderr}")
        if st is None:
            t.skip(f"{name}, {what}: relocation state", "no stats")
            t.skip(f"{name}, {what}: served", "no stats")
            continue
        if occupy:
            t.ok(st["relocated"] and st["base"] != base and
                 st["preferred_base"] == base,
                 f"{name}, {what}: mapped elsewhere and relocated", st)
        else:
            t.ok(not st["relocated"] and st["base"] == base,
                 f"{name}, {what}: mapped at {base:#x}, not relocated", st)
        t.ok(st["hits"] > 50 and st["rejected"] == 0,
             f"{name}, {what}: {st['hits']} modules served", st)
