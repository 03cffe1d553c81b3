# SPDX-License-Identifier: MIT
"""A stack of layers: PYCDS_ARCHIVE=LOWER:UPPER.

- `pycds build --stdlib` holds the standard library's pure-Python
  modules (json, email.mime.text), no test suite, no site directory;
  with a command, the same modules, what the command imported first;
- `pycds build --on LOWER` leaves out what LOWER serves, takes a
  preferred base above LOWER's range and function versions after LOWER's;
  `pycds inspect` says what it is built on; `--base` inside LOWER's range,
  or below it with an archive that would reach it, is refused, and the
  file at -o is kept;
- both layers serve one process, neither relocated, with stock's output
  and no pycds: line; the layers' figures in stats()["layers"] add up to
  the process's; each module from the first layer that holds it (either
  order);
- a module in two layers: the first wins;
- a missing, damaged or stale lower layer: its one line (or, stale, that
  module compiled stock), the upper still serves, output stock's;
- on interpreters that give code a version (3.13+), a layer not built on
  the one under it is refused with its line and the lower serves.
"""
import json
import os
import shutil
import subprocess

from pycdslib import (PYCDS, PYTHON, Tap, build, describe, diff,
                      parse_stats, pycds_lines, require, run, scratch,
                      strip_stats, write_tree)

require()
tmp = scratch()
app = os.path.join(tmp, "app")
write_tree(app, {
    "pkg/__init__.py": "from .calc import total\n",
    "pkg/calc.py": "def total(xs):\n    return sum(xs) * 2\n",
    "main.py": (
        "import json, keyword, pkg, _pycds\n"
        "print(json.dumps([pkg.total([1, 2, 3]), keyword.iskeyword('if')]))\n"
        "s = _pycds.stats()\n"
        "import sys\n"
        "print('PYCDS-STATS ' + json.dumps({k: s[k] for k in ('hits', 'misses', "
        "'stale', 'error', 'modules', 'relocated')} | {'layers': [{k: l[k] "
        "for k in ('archive', 'hits', 'misses', 'error', 'relocated', 'served', "
        "'preferred_base', 'base')} for l in s['layers']]}), file=sys.stderr)\n"),
})
main = os.path.join(app, "main.py")
calc = os.path.join(app, "pkg", "calc.py")


def describe_archive(path):
    p = run([PYTHON, "-c", "import _pycds, json, sys; d = _pycds.describe("
             "sys.argv[1]); d['modules'] = [m[0] for m in d['modules']]; "
             "print(json.dumps(d))", path])
    return json.loads(p.stdout) if p.returncode == 0 else {"error": p.stderr}


def go(archive):
    """(proc, stats) of main.py under PYCDS_ARCHIVE=@archive."""
    p = run([PYTHON, main], cwd=app, PYCDS_ARCHIVE=archive)
    st = parse_stats(p.stderr)
    p.stderr = strip_stats(p.stderr)
    return p, st


def served(st, i):
    return set(st["layers"][i]["served"]) if st and len(st["layers"]) > i \
        else set()


def check_run(t, what, archive, want_layers_hit):
    """Stock's stdout, no pycds: line, each layer named in
    @want_layers_hit served something, none relocated."""
    p, st = go(archive)
    t.ok(p.returncode == 0 and p.stdout == stock.stdout and
         not pycds_lines(p.stderr), f"{what}: stock's output, no pycds: line",
         describe(p) + "\n" + diff(stock.stdout, p.stdout))
    ok = bool(st) and all(st["layers"][i]["hits"] > 0
                          for i in want_layers_hit)
    ok = ok and not st["relocated"] and st["error"] is None
    ok = ok and st["hits"] == sum(l["hits"] for l in st["layers"])
    t.ok(ok, f"{what}: layers {want_layers_hit} serve, none relocated, "
         "their hits add up", json.dumps(st))
    return p, st


VERSIONS = run([PYTHON, "-c", "import sys; print(int(sys.version_info >= "
                "(3, 13)))"]).stdout.strip() == "1"

t = Tap(24)
stock = run([PYTHON, main], cwd=app)
stock.stderr = strip_stats(stock.stderr)
if stock.returncode:
    Tap.skip_all("main.py fails stock: " + stock.stderr[:200])

# ---- the standard-library layer, and a layer on it ----
std = os.path.join(tmp, "std.pycds")
b = build(std, ["--stdlib"])
d = describe_archive(std)
mods = set(d.get("modules", []))
t.ok(b.returncode == 0 and {"json", "json.decoder", "email.mime.text",
                            "keyword"} <= mods and
     not any(m == "test" or m.startswith("test.") or ".tests" in m or
             m == "pkg" for m in mods),
     "--stdlib: the standard library's modules, no test suite, nothing of "
     "the program", describe(b) + f"\n{len(mods)} modules")
std2 = os.path.join(tmp, "std-from-main.pycds")
b2 = build(std2, ["--stdlib", "--", PYTHON, main], cwd=app)
order = describe_archive(std2).get("modules", [])
t.ok(b2.returncode == 0 and set(order) == mods and
     order.index("json") < order.index("argparse") and
     order.index("keyword") < order.index("argparse"),
     "--stdlib with a command: the same modules, what it imported first, "
     "nothing of the program", describe(b2) + f"\n{order[:30]}")
upper = os.path.join(tmp, "app-on-std.pycds")
b = build(upper, ["--on", std, "--", PYTHON, main], cwd=app)
u = describe_archive(upper)
umods = set(u.get("modules", []))
t.ok(b.returncode == 0 and {"pkg", "pkg.calc"} <= umods and
     not umods & {"json", "keyword", "json.decoder"} and
     "left to" in b.stdout,
     "--on: the program's modules, not what the lower layer serves",
     describe(b) + f"\nupper: {sorted(umods)}")
t.ok(u.get("preferred_base", 0) >= d.get("preferred_base", 0) + d.get("size", 0)
     and u.get("preferred_base", 1) % (2 << 20) == 0
     and tuple(u.get("on") or ()) == (d.get("checksum"), d.get("preferred_base"),
                                       d.get("size")),
     "--on: the preferred base is above the lower layer's range, on a "
     "2 MiB boundary, and the header names the lower layer",
     json.dumps({k: v for k, v in u.items() if k != "modules"}) + "\n" +
     json.dumps({k: v for k, v in d.items() if k != "modules"}))
if VERSIONS:
    t.ok(d["versions_count"] > 0 and u["versions_first"] ==
         d["versions_first"] + d["versions_count"] and u["versions_count"] > 0,
         "--on: function versions follow the lower layer's",
         f"lower {d['versions_first']:#x}+{d['versions_count']}, upper "
         f"{u['versions_first']:#x}+{u['versions_count']}")
else:
    t.ok(d.get("versions_count") == 0 and u.get("versions_count") == 0,
         "no function versions where code has none (before 3.13)",
         str((d.get("versions_count"), u.get("versions_count"))))
ins = run([PYCDS, "inspect", upper])
t.ok(ins.returncode == 0 and f"0x{d['preferred_base']:x}" in ins.stdout and
     "built on:" in ins.stdout,
     "pycds inspect names the range of the layer it is built on",
     describe(ins))
over = run([PYCDS, "build", "-o", os.path.join(tmp, "x.pycds"), "--python",
            PYTHON, "--on", std, "--base", hex(d["preferred_base"] + 4096),
            "-m", "keyword"])
t.ok(over.returncode not in (0, None) and "overlaps" in over.stderr and
     not os.path.exists(os.path.join(tmp, "x.pycds")),
     "--base inside the lower layer's range is refused", describe(over))

# Below the lower layer but reaching into it: refused before anything is
# replaced (the file at -o stays what it was).
kept = os.path.join(tmp, "kept.pycds")
shutil.copy(upper, kept)
# The program's modules (the archive above, larger than the page left).
under = build(kept, ["--on", std, "--base", hex(d["preferred_base"] - 4096),
                     "--", PYTHON, main], cwd=app)
with open(kept, "rb") as f, open(upper, "rb") as g:
    same = f.read() == g.read()
t.ok(u.get("size", 0) > 4096 and under.returncode not in (0, None) and
     "would not end below" in under.stderr and same,
     "--base below the lower layer, reaching into it: refused in one "
     "line, the existing file kept", describe(under))

p, st = check_run(t, "std:app", f"{std}:{upper}", [0, 1])
t.ok(st is not None and {"json", "keyword"} <= served(st, 0) and
     {"pkg", "pkg.calc"} <= served(st, 1),
     "std:app: the standard library from the lower layer, the program "
     "from the upper", json.dumps(st))
# Everything is asked of the lower layer first: its misses are the
# process's (what no layer served), not the program's modules the upper
# layer serves.
t.ok(st is not None and st["layers"][0]["misses"] == st["misses"] and
     st["layers"][1]["misses"] <= st["misses"],
     "std:app: the lower layer's misses are what no layer served",
     json.dumps(st))
p, st = check_run(t, "app:std (other order)", f"{upper}:{std}", [0, 1])

# ---- a module in two layers: the first wins ----
# l1 holds json; l2 is built on l1 and holds colorsys; l3 on l2 holds
# json again (l2 does not serve it), with bases and versions above both.
l1, l2, l3 = (os.path.join(tmp, f"l{i}.pycds") for i in (1, 2, 3))
b1 = build(l1, ["-m", "json"])
b2 = build(l2, ["--on", l1, "-m", "colorsys"])
b3 = build(l3, ["--on", l2, "--", PYTHON, main], cwd=app)
m3 = set(describe_archive(l3).get("modules", []))
t.ok(all(x.returncode == 0 for x in (b1, b2, b3)) and "json" in m3,
     "a chain of three layers builds, the top one holding json again",
     "\n".join(describe(x) for x in (b1, b2, b3)))
p, st = check_run(t, "l1:l3", f"{l1}:{l3}", [0, 1])
t.ok("json" in served(st, 0) and "json" not in served(st, 1) and
     "pkg" in served(st, 1), "json in both layers: the first serves it",
     json.dumps(st))
p, st = go(f"{l3}:{l1}")
t.ok(p.stdout == stock.stdout and "json" in served(st, 0) and
     not served(st, 1) & {"json"},
     "the other order: the other layer serves it", json.dumps(st))

# ---- a lower layer missing, damaged or stale ----
p, st = go(f"{os.path.join(tmp, 'missing.pycds')}:{upper}")
lines = pycds_lines(p.stderr)
t.ok(p.stdout == stock.stdout and len(lines) == 1 and "missing.pycds" in
     lines[0] and st and st["layers"][1]["hits"] > 0,
     "a missing lower layer: its one line, the upper serves", describe(p))
bad = os.path.join(tmp, "bad.pycds")
with open(std, "rb") as f:
    data = bytearray(f.read())
data[200] ^= 0x40
with open(bad, "wb") as f:
    f.write(data)
p, st = go(f"{bad}:{upper}")
lines = pycds_lines(p.stderr)
t.ok(p.stdout == stock.stdout and len(lines) == 1 and "bad.pycds" in
     lines[0] and st and st["layers"][1]["hits"] > 0 and
     st["layers"][0]["error"] and st["error"],
     "a damaged lower layer: its one line, the upper serves, stats say "
     "which layer failed", describe(p) + "\n" + json.dumps(st))

lower = os.path.join(tmp, "pkg.pycds")
top = os.path.join(tmp, "main-on-pkg.pycds")
bl = build(lower, ["-m", "pkg"], cwd=app)
bt = build(top, ["--on", lower, "--", PYTHON, main], cwd=app)
mt = set(describe_archive(top).get("modules", []))
t.ok(bl.returncode == 0 and bt.returncode == 0 and "pkg.calc" not in mt and
     "json" in mt, "a layer on an application layer leaves out its modules",
     describe(bl) + "\n" + describe(bt) + f"\n{sorted(mt)}")
shutil.copy(calc, calc + ".orig")
with open(calc, "a") as f:
    f.write("def total(xs):\n    return sum(xs) * 3\n")
st_ = os.stat(calc)
os.utime(calc, (st_.st_atime, st_.st_mtime + 5))
stock2 = run([PYTHON, main], cwd=app)
p, st = go(f"{lower}:{top}")
t.ok(p.returncode == 0 and p.stdout == stock2.stdout and
     stock2.stdout != stock.stdout and not pycds_lines(p.stderr) and
     st and st["stale"] >= 1 and "pkg.calc" not in served(st, 0) and
     st["layers"][1]["hits"] > 0,
     "a stale module in the lower layer: compiled from its new source, "
     "the upper serves the rest", describe(p) + "\n" + json.dumps(st))
shutil.move(calc + ".orig", calc)

# ---- layers built apart ----
solo = os.path.join(tmp, "solo.pycds")
bs = build(solo, ["--", PYTHON, main], cwd=app)
p, st = go(f"{l1}:{solo}")
lines = pycds_lines(p.stderr)
if VERSIONS:
    t.ok(bs.returncode == 0 and p.stdout == stock.stdout and
         len(lines) == 1 and "overlap" in lines[0] and
         st["layers"][0]["hits"] > 0 and st["layers"][1]["hits"] == 0,
         "a layer not built on the one under it: refused (function "
         "versions overlap), the lower serves", describe(p))
else:
    t.ok(bs.returncode == 0 and p.stdout == stock.stdout and
         st["layers"][0]["hits"] > 0 and st["layers"][1]["hits"] > 0,
         "a layer not built on the one under it serves too where code has "
         "no version (before 3.13)", describe(p) + json.dumps(st))
