# SPDX-License-Identifier: MIT
"""An archive that cannot be used costs one pycds: line and nothing else.

Truncated and bit-flipped archives (header fields, tables, the spans of
modules the program imports, the names pool), archives for another
interpreter (header checksum recomputed, so only the identity differs),
a foreign owner, loose permissions, a missing path, a directory, a FIFO:
each run exits 0 with stock's stdout, prints exactly one stderr line
starting with "pycds:" that names the archive, and _pycds.stats()['error']
is set.  A stale source is not an error: that module alone is compiled
from its new source and counted in stats()['stale'].
"""
import os
import stat
import struct

from pycdslib import (CHECKSUM_OFF, HEADER_SIZE, OFF, PYTHON, Archive, Tap,
                      build, describe, diff, header_checksum, pycds_lines,
                      require, run, run_with_stats, scratch, write_tree)

require()
tmp = scratch()
app = os.path.join(tmp, "app")
write_tree(app, {
    "pkg/__init__.py": "from .calc import total, known\n",
    "pkg/calc.py": (
        "NAMES = ('alpha', 'beta')\n"
        "def known(x):\n"
        "    return x in {'alpha', 'beta', 'gamma'}\n"
        "def total(xs):\n"
        "    return sum(xs) * 2\n"),
    "main.py": (
        "import json, pkg\n"
        "print(json.dumps([pkg.total([1, 2, 3]), pkg.known('beta')]))\n"),
})
main = os.path.join(app, "main.py")
calc = os.path.join(app, "pkg", "calc.py")

stock = run([PYTHON, main], cwd=app)
good = os.path.join(tmp, "good.pycds")
b = build(good, ["--", PYTHON, main], cwd=app)
if b.returncode or stock.returncode or not os.path.isfile(good):
    Tap.skip_all("cannot build the test archive: " +
                 " ".join((b.stderr + stock.stderr).split())[:200])
A = Archive(good)
GOOD = A.data
H = A.h
size = len(GOOD)


def variant(name, data, mode=0o644):
    path = os.path.join(tmp, name + ".pycds")
    if os.path.lexists(path):
        os.unlink(path)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def flip(data, off, mask=0x10):
    d = bytearray(data)
    d[off] ^= mask
    return bytes(d)


# ---- the cases ----

# (description, bytes) written to a fresh file with mode 0644.
cases = []
for n in sorted({0, 1, 8, HEADER_SIZE - 1, HEADER_SIZE, 4096,
                 size // 2, size - 4096, size - 1}):
    cases.append((f"truncated to {n} of {size} bytes", GOOD[:n]))
cases.append(("4 KiB of zeros appended", GOOD + b"\0" * 4096))
cases.append(("all zeros, right size", b"\0" * size))

# Bit flips.  Header fields first (caught by the header checks or its
# checksum), then the tables and the objects of modules main.py imports
# (caught when the module is first imported).
for field in ("magic", "version", "header_size", "file_size",
              "preferred_base", "hexversion", "cache_tag", "build_id",
              "layout", "regions", "names_index_off", "modules_off",
              "nr_modules", "buckets_off", "names", "relocs_off",
              "nr_relocs", "images_off", "interns_off", "fsets_off",
              "meta_checksum", "header_checksum", "hash_flags",
              "hash_seed", "hash_probe"):
    off = OFF[field] + (5 if field == "preferred_base" else 0)
    cases.append((f"bit flip in header field {field} (offset {off})",
                  flip(GOOD, off)))

want = ["pkg.calc", "pkg", "json.decoder"]
missing = [m for m in want if m not in A.by_name]
targets = []
if not missing:
    m = A.by_name["pkg.calc"]
    noff = H["names"][0]
    targets += [
        ("module table entry of pkg.calc (src_size)", m["entry_off"] + 32),
        ("module table entry of pkg.calc (root)", m["entry_off"] + 40),
        ("module table entry of pkg.calc (checksum)", m["entry_off"] + 104),
        ("hash buckets", H["buckets_off"] +
         4 * next((i for i in range(H["nr_buckets"]) if struct.unpack_from(
             "<I", GOOD, H["buckets_off"] + 4 * i)[0]), 0)),
        ("names blob: name of pkg.calc", noff + struct.unpack_from(
            "<I", GOOD, m["entry_off"])[0] + 2),
        ("names blob: origin of pkg.calc", noff + struct.unpack_from(
            "<I", GOOD, m["entry_off"] + 8)[0] + 3),
    ]
    for mod in want:
        m = A.by_name[mod]
        for r, what in enumerate(("code", "data", "cold", "idle")):
            if m["span_size"][r]:
                targets.append((f"{what} span of {mod}",
                                m["span_off"][r] + m["span_size"][r] // 2))
        targets.append((f"root code object header of {mod} (ob_type)",
                        m["root"] + 8))
        first, count = m["relocs"]
        if count:
            targets.append((f"relocation table slice of {mod}",
                            H["relocs_off"] + 4 * (first + count // 2)))
        first, count = m["images"]
        if count:
            targets.append((f"image relocation slice of {mod}",
                            H["images_off"] + 8 * (first + count // 2)))
        first, count = m["interns"]
        if count:
            targets.append((f"intern fixup slice of {mod}",
                            H["interns_off"] + 8 * (first + count // 2)))
    m = A.by_name["pkg.calc"]
    first, count = m["fsets"]
    if count:
        targets.append(("frozenset fixup of pkg.calc",
                        H["fsets_off"] + 8 * first))
    # A names pool string pkg.calc uses, and its index entry.
    first, count = m["interns"]
    if count:
        arg = A.intern_fixup(first + count - 1)[1]
        noff_, nsize, _ = A.name_entry(arg)
        targets.append(("names pool string used by pkg.calc",
                        noff_ + nsize - 8))
        targets.append(("names pool index entry used by pkg.calc",
                        H["names_index_off"] + 16 * arg + 8))
for what, off in targets:
    cases.append((f"bit flip in {what} (offset {off:#x})", flip(GOOD, off)))


# Another interpreter: only the identity differs, the header checksum is
# recomputed (XXH3-64 through xxhsum) so the identity check must catch it.
def patched(field, fmt, value):
    d = bytearray(GOOD)
    if isinstance(value, bytes):
        d[OFF[field]:OFF[field] + len(value)] = value
    else:
        struct.pack_into(fmt, d, OFF[field], value)
    s = header_checksum(bytes(d))
    if s is None:
        return None
    struct.pack_into("<Q", d, CHECKSUM_OFF, s)
    return bytes(d)


bid = bytearray(GOOD[OFF["build_id"]:OFF["build_id"] + 32])
bid[0] ^= 0xff
identity = [
    ("build ID", patched("build_id", None, bytes(bid))),
    # Versions other than the archive's own, whatever interpreter runs.
    ("hexversion + 1 minor", patched("hexversion", "<I",
                                     H["hexversion"] + 0x10000)),
    ("hexversion + 1 micro", patched("hexversion", "<I",
                                     H["hexversion"] + 0x100)),
    ("pyc magic", patched("pyc_magic", "<I", H["pyc_magic"] ^ 1)),
    ("cache tag cpython-399", patched("cache_tag", None,
                                      b"cpython-399".ljust(16, b"\0"))),
    ("abiflags 'd'", patched("abiflags", None, b"d".ljust(8, b"\0"))),
    ("optimize level 1", patched("optimize", "<I", 1)),
    ("object layout hash", patched("layout", "<Q", H["layout"] ^ 1)),
]

PER = 3
# per-case checks: damaged variants, identities, no-checksum build ID,
# forged runtime_addr, owner, 4 modes, 4 kinds of path; then the good
# archive, its modules, the checksum, empty PYCDS_ARCHIVE and 10
# stale-source checks.
plan = (len(cases) + len(identity) + 1 + 1 + 1 + 4 + 4) * PER + 4 + 10
t = Tap(plan)
t.diag(f"archive {size} bytes, {H['nr_modules']} modules; "
       f"{len(cases)} damaged variants")


def expect_fallback(path, what, timeout=60):
    """Stock's output and exit 0, exactly one pycds: line naming @path,
    stats()['error'] set."""
    p, st = run_with_stats(main, path, cwd=app, PYTHONHASHSEED="random",
                           timeout=timeout)
    t.ok(p.returncode == 0 and p.stdout == stock.stdout,
         f"{what}: exit 0, stdout identical to stock",
         diff(stock.stdout, p.stdout) + "\n" + describe(p))
    lines = pycds_lines(p.stderr)
    t.ok(len(lines) == 1 and path in lines[0],
         f"{what}: exactly one pycds: line, naming the archive",
         f"pycds: lines: {lines}\nstderr: {p.stderr}")
    t.ok(st is not None and st.get("error") is not None,
         f"{what}: stats()['error'] set", st and {
             k: st.get(k) for k in ("archive", "error", "hits", "rejected")})
    return lines


t.ok(not missing, "the archive holds pkg.calc, pkg and json.decoder, "
     f"so their spans and tables can be damaged ({len(targets)} targets)",
     f"missing: {missing}; has: {sorted(A.by_name)}")
# The good archive first: every check above can pass and can fail.
p, st = run_with_stats(main, good, cwd=app, PYTHONHASHSEED="random")
t.ok(p.returncode == 0 and p.stdout == stock.stdout and
     not pycds_lines(p.stderr) and st and st["error"] is None and
     st["hits"] >= 2 and st["stale"] == 0,
     "good archive: stock output, no pycds: line, modules served",
     (st, describe(p)))

for what, data in cases:
    expect_fallback(variant("bad", data), what)

sum_ = header_checksum(GOOD)
if sum_ is None:
    t.skip("header_checksum is XXH3-64 of the header",
           "cannot compute XXH3-64 (install xxhash for xxhsum)")
else:
    t.ok(sum_ == H["header_checksum"],
         "header_checksum is XXH3-64 of the header with the field zeroed "
         "(xxhsum -H3)", f"{sum_:#x} vs {H['header_checksum']:#x}")
for what, data in identity:
    if data is None:
        t.skip_n(PER, f"archive for another interpreter: {what}",
                 "cannot compute XXH3-64 (install xxhash for xxhsum)")
        continue
    lines = expect_fallback(variant("other", data),
                            f"archive for another interpreter ({what}, "
                            f"header checksum recomputed)")
    if lines:
        t.diag(f"  {lines[0]}")
    if lines and "checksum" in lines[0]:
        t.diag("  ^ rejected by a checksum, not the identity check")
bad_id = flip(GOOD, OFF["build_id"], 0xff)
expect_fallback(variant("other-nosum", bad_id),
                "archive for another build ID, checksum not recomputed")
# The link-time address of _PyRuntime (image relocation base) forged, the
# checksum recomputed: must not be applied blindly.
forged = patched("runtime_addr", "<Q", H["runtime_addr"] + 0x200000)
if forged is None:
    t.skip_n(PER, "forged runtime_addr", "no xxhsum")
else:
    expect_fallback(variant("forged", forged),
                    "runtime_addr moved by 2 MiB, checksum recomputed")

# Ownership, permissions, the kind of file.
if os.geteuid() == 0:
    path = variant("nobody", GOOD)
    os.chown(path, 65534, 65534)
    expect_fallback(path, "archive owned by nobody (uid 65534)")
else:
    t.skip_n(PER, "archive owned by another user", "needs root to chown")
for mode in (0o666, 0o664, 0o646, 0o660):
    expect_fallback(variant(f"mode{mode:o}", GOOD, mode),
                    f"archive with mode {mode:04o}")
expect_fallback(os.path.join(tmp, "does-not-exist.pycds"), "missing path")
expect_fallback(tmp, "a directory")
fifo = os.path.join(tmp, "fifo.pycds")
os.mkfifo(fifo, 0o600)
expect_fallback(fifo, "a FIFO (must not block)", timeout=10)
expect_fallback("/dev/null", "/dev/null (a character device)")

# Empty PYCDS_ARCHIVE means off: nothing printed.
p = run([PYTHON, main], cwd=app, PYCDS_ARCHIVE="")
t.ok(p.returncode == 0 and p.stdout == stock.stdout and
     not pycds_lines(p.stderr), "PYCDS_ARCHIVE empty: off, silent",
     describe(p))

# ---- stale sources ----
p, st = run_with_stats(main, good, cwd=app)
fresh_hits = st["hits"] if st else 0
t.ok(st and st["stale"] == 0 and fresh_hits >= 2 and
     st["error"] is None, f"fresh sources: {fresh_hits} served, none stale",
     st)
orig = os.stat(calc)
with open(calc) as f:
    ORIG = f.read()


def stale_run(what, want_stdout, want_stale):
    p, st = run_with_stats(main, good, cwd=app, PYTHONHASHSEED="random")
    t.ok(p.returncode == 0 and p.stdout == want_stdout,
         f"{what}: output reflects the source on disk",
         diff(want_stdout, p.stdout) + "\n" + describe(p))
    t.ok(st is not None and st["stale"] == want_stale and
         st["hits"] == fresh_hits - want_stale and st["error"] is None and
         not pycds_lines(p.stderr),
         f"{what}: stale == {want_stale}, the other modules still served, "
         f"no error, no pycds: line", (st, p.stderr))


# touch: same bytes, newer mtime.
os.utime(calc, ns=(orig.st_atime_ns, orig.st_mtime_ns + 10 * 10**9))
stale_run("touched pkg/calc.py", stock.stdout, 1)
# edit: new behaviour, new size.
with open(calc, "w") as f:
    f.write(ORIG.replace("* 2", "* 3"))
os.utime(calc, ns=(orig.st_atime_ns, orig.st_mtime_ns + 20 * 10**9))
stale_run("edited pkg/calc.py", '[18, true]\n', 1)
# same size, different bytes and mtime.
with open(calc, "w") as f:
    f.write(ORIG.replace("* 2", "* 4"))
os.utime(calc, ns=(orig.st_atime_ns, orig.st_mtime_ns + 30 * 10**9))
stale_run("same-size edit of pkg/calc.py", '[24, true]\n', 1)
# a different size with the archived mtime.
with open(calc, "w") as f:
    f.write(ORIG.replace("* 2", "*  2"))
os.utime(calc, ns=(orig.st_atime_ns, orig.st_mtime_ns))
stale_run("size change, archived mtime", stock.stdout, 1)
# back to the archived bytes and mtime: served again.
with open(calc, "w") as f:
    f.write(ORIG)
os.utime(calc, ns=(orig.st_atime_ns, orig.st_mtime_ns))
p, st = run_with_stats(main, good, cwd=app)
t.ok(st and st["stale"] == 0 and st["hits"] == fresh_hits and
     p.stdout == stock.stdout, "restored source: served again", st)
