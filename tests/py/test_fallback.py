# SPDX-License-Identifier: MIT
"""An archive that cannot be used costs one pycds: line and nothing else:
stale sources, truncation, bit flips, another interpreter, foreign owner,
loose permissions, missing paths.  The output is always stock's."""
import os
import shutil
import struct

from pycdslib import (BUILD_ID_OFF, CHECKSUM_OFF, HEADER_SIZE, PYTHON, Tap,
                      build, header, pycds_lines, run, run_with_stats,
                      scratch, xxh3_64)

tmp = scratch()
app = os.path.join(tmp, "app")
os.makedirs(os.path.join(app, "pkg"))
with open(os.path.join(app, "pkg", "__init__.py"), "w") as f:
    f.write("from .calc import total\n")
with open(os.path.join(app, "pkg", "calc.py"), "w") as f:
    f.write("def total(xs):\n    return sum(xs) * 2\n")
with open(os.path.join(app, "main.py"), "w") as f:
    f.write("import json, pkg\nprint(json.dumps(pkg.total([1, 2, 3])))\n")
main = os.path.join(app, "main.py")

good = os.path.join(tmp, "good.pycds")
b = build(good, ["--", PYTHON, main], cwd=app)
stock = run([PYTHON, main], cwd=app)
if b.returncode or stock.returncode:
    print("1..0 # SKIP cannot build the test archive: " + b.stderr)
    raise SystemExit(0)
with open(good, "rb") as f:
    GOOD = f.read()
hdr = header(good)


def variant(name, data, mode=0o644):
    path = os.path.join(tmp, name + ".pycds")
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def flip(data, off):
    b = bytearray(data)
    b[off] ^= 0x40
    return bytes(b)


def expect_fallback(t, path, what, reject_at_start=True):
    """Output equals stock, exit 0, exactly one pycds: line naming the
    file; stats report an error (start-up) or a rejected module."""
    p = run([PYTHON, main], cwd=app, PYCDS_ARCHIVE=path,
            PYTHONHASHSEED="random")
    lines = pycds_lines(p.stderr)
    ok = (p.returncode == 0 and p.stdout == stock.stdout and
          len(lines) == 1 and path in lines[0])
    t.ok(ok, f"{what}: stock output, one pycds: line",
         f"rc={p.returncode}\nstdout={p.stdout!r}\nstderr={p.stderr!r}")
    return lines


cases = []
size = len(GOOD)
for n in (0, 7, HEADER_SIZE - 1, HEADER_SIZE, 4096, size // 2, size - 8):
    cases.append((f"truncated to {n} bytes", GOOD[:n]))
code_off, code_size = hdr["regions"][0]
data_off, data_size = hdr["regions"][1]
names_off, names_size = hdr["regions"][3]
for what, off in (("header magic", 0), ("header version", 8),
                  ("preferred base", 24), ("module table", 400),
                  ("code object", code_off + code_size // 2),
                  ("constant", data_off + data_size // 3),
                  ("names pool", names_off + 16 + names_size // 2)):
    cases.append((f"bit flip in {what} (offset {off})", flip(GOOD, off)))
cases.append(("appended garbage", GOOD + b"\0" * 4096))

t = Tap(len(cases) + 12)

for what, data in cases:
    expect_fallback(t, variant("bad", data), what)

# Another interpreter build: only the build ID differs, header checksum
# recomputed so that the identity check itself must catch it.
bad_id = bytearray(GOOD)
bad_id[BUILD_ID_OFF] ^= 0xff
struct.pack_into("<Q", bad_id, CHECKSUM_OFF, 0)
sum_ = xxh3_64(bytes(bad_id[:HEADER_SIZE]))
if sum_ is None:
    t.skip("other interpreter build", "xxhsum (package xxhash) not found")
else:
    struct.pack_into("<Q", bad_id, CHECKSUM_OFF, sum_)
    lines = expect_fallback(t, variant("foreign", bytes(bad_id)),
                            "archive for another interpreter build")
    if lines and "build ID" not in lines[0]:
        t.diag("rejected, but not for its build ID: " + lines[0])

# Ownership and permissions.
if os.geteuid() == 0:
    p = variant("nobody", GOOD)
    os.chown(p, 65534, 65534)
    lines = expect_fallback(t, p, "archive owned by another user")
    t.ok(bool(lines) and "owned by uid 65534" in lines[0],
         "foreign owner named in the message", lines)
else:
    t.skip("archive owned by another user", "needs root to chown")
    t.skip("foreign owner named in the message", "needs root")
lines = expect_fallback(t, variant("loose", GOOD, 0o666),
                        "group/other-writable archive")
t.ok(bool(lines) and "writable" in lines[0], "loose mode named", lines)
expect_fallback(t, os.path.join(tmp, "missing.pycds"), "missing archive")
expect_fallback(t, tmp, "directory as archive")

# The error is visible from Python too.
p, st = run_with_stats(main, variant("trunc2", GOOD[:100]), cwd=app)
t.ok(st is not None and st["error"] and st["hits"] == 0,
     "stats() reports the error and no hits", st)

# Stale source: that module falls back and the new source is what runs.
p, st = run_with_stats(main, good, cwd=app)
t.ok(st and st["hits"] >= 2 and st["stale"] == 0,
     "fresh archive serves the app's modules", st)
calc = os.path.join(app, "pkg", "calc.py")
st_before = os.stat(calc)
with open(calc, "w") as f:
    f.write("def total(xs):\n    return sum(xs) * 3\n")
os.utime(calc, (st_before.st_atime, st_before.st_mtime + 5))
p, st = run_with_stats(main, good, cwd=app)
t.eq(p.stdout, "18\n", "edited module: the new source runs")
t.ok(st and st["stale"] == 1 and not pycds_lines(p.stderr),
     "edited module counted stale, silently", (st, p.stderr))
# Same size, same whole-second mtime would be indistinguishable from the
# .pyc's point of view too; a size change alone is caught.
with open(calc, "w") as f:
    f.write("def total(xs):\n    return sum(xs) * 2  # same result\n")
os.utime(calc, (st_before.st_atime, st_before.st_mtime))
p, st = run_with_stats(main, good, cwd=app)
t.ok(st and st["stale"] == 1 and p.stdout == stock.stdout,
     "size change with the old mtime is stale too", st)
