# SPDX-License-Identifier: MIT
"""Stored hashes: `pycds build --hash-seed N` stores the hashes of str,
bytes and frozenset constants for PYTHONHASHSEED=N.  A process with that
seed uses them as they are (a docstring nobody hashed already has its
hash; a frozenset is the archived one, not rebuilt) and computes what
stock computes (so does any process for a frozenset of ints, whose hash
does not depend on the seed); a process with any other seed, or a random one, does not
use the archive: one pycds: line, normal imports, the same output.
Without --hash-seed no hash is stored and any seed is served."""
import json
import os

from pycdslib import (PYCDS, PYTHON, Archive, Tap, build, describe, diff,
                      pycds_lines, run, scratch, write_tree)

CONSTS = '''
"""Constants whose hashes an archive can store."""
NAMES = {"alpha": 1, "beta": 2, "gamma": 3}
RAW = {b"one": 1, b"two": 2}
COLOURS = frozenset({"red", "green", "blue", "cyan", "magenta", "yellow",
                     "black", "white", "grey", "orange"})
SMALL = frozenset({"x", "y"})


def never_called():
    """A docstring no process hashes: its cached hash shows what the
    archive stored."""
    return ("a tuple", "of strs", b"and bytes")


def lookup(key):
    return NAMES.get(key, -1)


def primary(colour):
    # The compiler makes the set display a frozenset constant.
    return colour in {"red", "green", "blue", "cyan", "magenta", "yellow",
                      "black", "white", "grey", "orange"}


def small_prime(n):
    # A frozenset of ints: its hash and table are the same for every seed.
    return n in {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47}


class Shape:
    sides = 0

    def area(self):
        return 0
'''

APP = '''
import ctypes, json, sys
import consts
doc = consts.never_called.__doc__
# PyASCIIObject's hash, read before anything hashes the string here.
cached = ctypes.c_ssize_t.from_address(id(doc) + 24).value
fresh = hash("".join(list(doc)))
st = {}
if "_pycds" in sys.modules:
    s = sys.modules["_pycds"].stats()
    if s["base"] is not None:
        fs = [c for c in consts.primary.__code__.co_consts
              if isinstance(c, frozenset)][0]
        st["fs_in_archive"] = s["base"] <= id(fs) < s["base"] + s["size"]
        ints = [c for c in consts.small_prime.__code__.co_consts
                if isinstance(c, frozenset)][0]
        st["ints_in_archive"] = s["base"] <= id(ints) < s["base"] + s["size"]
    st["hits"], st["hash_seed"] = s["hits"], s["hash_seed"]
print("INFO " + json.dumps({"cached": cached, "fresh": fresh, **st}),
      file=sys.stderr)
print(hash("alpha"), hash(b"one"), hash(consts.SMALL), hash(consts.COLOURS))
print(consts.lookup("beta"), consts.lookup("delta"), consts.RAW[b"two"])
print("cyan" in consts.COLOURS, "pink" in consts.COLOURS,
      sorted(consts.COLOURS)[:3], consts.SMALL == frozenset("xy"))
print({consts.SMALL: 1}[frozenset({"y", "x"})], consts.Shape().area())
print(consts.primary("cyan"), consts.primary("pink"), consts.primary("red"),
      hash(frozenset(["red", "green"])))
print([n for n in range(50) if consts.small_prime(n)],
      hash([c for c in consts.small_prime.__code__.co_consts
            if isinstance(c, frozenset)][0]))
'''

PROBE = "pycds: hash seed probe"


def info(stderr):
    for line in (stderr or "").splitlines():
        if line.startswith("INFO "):
            return json.loads(line[5:])
    return {}


def without_info(stderr):
    return "".join(line for line in (stderr or "").splitlines(True)
                   if not line.startswith("INFO "))


t = Tap(25)
tmp = scratch()
write_tree(tmp, {"consts.py": CONSTS, "app.py": APP})
app = os.path.join(tmp, "app.py")
hashed = os.path.join(tmp, "seed7.pycds")
plain = os.path.join(tmp, "plain.pycds")

p = run([PYCDS, "build", "--hash-seed", "7", "-o", hashed, "--python",
         PYTHON, "--", PYTHON, app], cwd=tmp)
t.ok(p.returncode == 0 and os.path.exists(hashed),
     "pycds build --hash-seed 7 writes an archive", describe(p))
again = os.path.join(tmp, "seed7-again.pycds")
p = run([PYCDS, "build", "--hash-seed", "7", "-o", again, "--python",
         PYTHON, "--", PYTHON, app], cwd=tmp)
same = False
if p.returncode == 0 and os.path.exists(again):
    with open(hashed, "rb") as f1, open(again, "rb") as f2:
        same = f1.read() == f2.read()
t.ok(same, "the same inputs and seed give a byte-identical archive",
     describe(p))
p = run([PYCDS, "inspect", hashed])
t.ok(p.returncode == 0 and
     "hashes:          stored for PYTHONHASHSEED=7" in p.stdout,
     "inspect names the seed the hashes are for", describe(p))
p = run([PYCDS, "verify", hashed, "--python", PYTHON])
t.ok(p.returncode == 0, "verify: an archive with stored hashes is sound",
     describe(p))

probe = run([PYTHON, "-S", "-c", f"print(hash({PROBE!r}))"],
            PYTHONHASHSEED="7").stdout.strip()
try:
    h = Archive(hashed).h
except (OSError, ValueError, IndexError) as e:
    h = {"error": repr(e)}
t.ok(h.get("hash_flags") == 1 and h.get("hash_seed") == 7 and
     probe.lstrip("-").isdigit() and
     h.get("hash_probe") == int(probe) & ((1 << 64) - 1),
     "header: hash_flags 1, hash_seed 7, hash_probe = hash of the probe "
     "under seed 7", f"header {h}, probe {probe}")

# The seed the hashes are for.
stock = run([PYTHON, app], cwd=tmp, PYTHONHASHSEED="7")
arch = run([PYTHON, app], cwd=tmp, PYTHONHASHSEED="7", PYCDS_ARCHIVE=hashed)
si, ai = info(stock.stderr), info(arch.stderr)
t.ok(stock.returncode == 0 and arch.returncode == 0 and
     stock.stdout == arch.stdout and stock.stdout,
     "seed 7: output identical to stock (hashes, dict and frozenset "
     "lookups)", diff(stock.stdout, arch.stdout) + "\n" + describe(arch))
t.ok(not pycds_lines(arch.stderr) and ai.get("hits", 0) >= 1 and
     ai.get("hash_seed") == 7,
     "seed 7: served from the archive, no pycds: line, stats name seed 7",
     f"{ai}\n{describe(arch)}")
t.ok(ai.get("cached") == ai.get("fresh") and ai.get("cached") != -1,
     "seed 7: a docstring nobody hashed carries its hash, the one stock "
     "computes", f"{ai}")
t.ok(si.get("cached") == -1,
     "stock: the same docstring has no hash yet (the check can tell)",
     f"{si}")
t.ok(ai.get("fs_in_archive") is True,
     "seed 7: the frozenset is the archived one, not rebuilt", f"{ai}")

# Any other seed: not used, one line, same output.
for seed in ("8", "0", None):
    label = f"seed {seed}" if seed else "random seed"
    stock = run([PYTHON, app], cwd=tmp, PYTHONHASHSEED=seed)
    arch = run([PYTHON, app], cwd=tmp, PYTHONHASHSEED=seed,
               PYCDS_ARCHIVE=hashed)
    ai = info(arch.stderr)
    lines = pycds_lines(without_info(arch.stderr))
    t.ok(arch.returncode == 0 and
         (seed is None or stock.stdout == arch.stdout) and
         stock.stdout.count("\n") == arch.stdout.count("\n") == 6,
         f"{label}: output identical to stock" if seed else
         f"{label}: runs to the end (hashes differ run to run)",
         diff(stock.stdout, arch.stdout) + "\n" + describe(arch))
    t.ok(len(lines) == 1 and "PYTHONHASHSEED=7" in lines[0] and
         ai.get("hits") == 0,
         f"{label}: one pycds: line naming seed 7, nothing served",
         f"{lines}\n{ai}")

# Without --hash-seed: nothing stored, any seed served.
p = build(plain, ["--", PYTHON, app], cwd=tmp)
t.ok(p.returncode == 0 and "none stored (any PYTHONHASHSEED)" in
     run([PYCDS, "inspect", plain]).stdout,
     "without --hash-seed: inspect says no hashes are stored", describe(p))
stock = run([PYTHON, app], cwd=tmp, PYTHONHASHSEED="5")
arch = run([PYTHON, app], cwd=tmp, PYTHONHASHSEED="5", PYCDS_ARCHIVE=plain)
ai = info(arch.stderr)
t.ok(stock.stdout == arch.stdout and stock.stdout and
     not pycds_lines(arch.stderr) and ai.get("hits", 0) >= 1 and
     ai.get("hash_seed") is None,
     "without stored hashes: served under seed 5, output identical",
     diff(stock.stdout, arch.stdout) + "\n" + describe(arch))
t.ok(ai.get("cached") == -1 and ai.get("fs_in_archive") is False,
     "without stored hashes: hashes left for the process, a frozenset "
     "of str rebuilt for its seed", f"{ai}")
t.ok(ai.get("ints_in_archive") is True,
     "without stored hashes: a frozenset of ints is the archived one "
     "(its hash does not depend on the seed)", f"{ai}")

for bad in ("-1", "x", "4294967296", ""):
    p = run([PYCDS, "build", "--hash-seed", bad, "-o",
             os.path.join(tmp, "bad.pycds"), "--", PYTHON, app], cwd=tmp)
    t.ok(p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and
         "--hash-seed" in p.stderr and
         not os.path.exists(os.path.join(tmp, "bad.pycds")),
         f"--hash-seed {bad!r}: usage error in one line, nothing written",
         describe(p))

# Ellipsis hashes by its address, which moves with a position-independent
# interpreter: even with stored hashes, a frozenset holding it is rebuilt
# and a tuple holding it caches no hash.  (Its own archive: the order of
# such a frozenset, and so the bytes, differ from one compile to the next.)
write_tree(tmp, {"addr.py": (
    "def by_address(x):\n"
    "    return (x in {..., 'dots', 1},\n"
    "            {tuple([..., 0]): 't'}.get((..., 0)))\n"),
    "app2.py": ("import addr\n"
                "print(addr.by_address(Ellipsis), addr.by_address('dots'),\n"
                "      addr.by_address(2))\n")})
app2 = os.path.join(tmp, "app2.py")
addr = os.path.join(tmp, "addr.pycds")
b = run([PYCDS, "build", "--hash-seed", "7", "-o", addr, "--python", PYTHON,
         "--", PYTHON, app2], cwd=tmp, PYTHONHASHSEED="7")
stock = run([PYTHON, app2], cwd=tmp, PYTHONHASHSEED="7")
arch = run([PYTHON, app2], cwd=tmp, PYTHONHASHSEED="7", PYCDS_ARCHIVE=addr)
t.ok(b.returncode == 0 and stock.returncode == 0 and
     arch.stdout == stock.stdout and not pycds_lines(arch.stderr),
     "seed 7: constants holding Ellipsis (hashed by address) look up as "
     "stock's", diff(stock.stdout, arch.stdout) + describe(b) + describe(arch))
