# SPDX-License-Identifier: MIT
"""Recipes: an archive says how it was made, and `pycds rebuild` makes it
again.

- `pycds build` stores its recipe in the archive (the directory, the
  variables that steer what Python imports, the options and command);
  `pycds inspect` shows it;
- `pycds rebuild --dry-run FILE` prints what it would run and runs
  nothing;
- `pycds rebuild FILE`, from another directory and with another
  PYTHONPATH, runs the recipe as recorded: the same archive, byte for
  byte; after a source file changed, the rebuilt archive serves the new
  source where the old one had gone stale;
- refused with one line each, the file untouched: an archive others could
  have written (its recipe is a command), one without a recipe, a recipe
  whose program is gone, a recipe whose directory is gone; with two
  files of which one fails, the other is rebuilt and the summary says so.
"""
import os
import shutil

from pycdslib import (PYCDS, PYTHON, Tap, build, describe, diff,
                      parse_stats, pycds_lines, require, run, scratch,
                      strip_stats, write_tree)

require()
tmp = scratch()
app = os.path.join(tmp, "app")
lib = os.path.join(tmp, "lib")
write_tree(lib, {"calc.py": "def total(xs):\n    return sum(xs) * 2\n"})
write_tree(app, {
    "main.py": (
        "import json, calc, _pycds, sys\n"
        "print(json.dumps(calc.total([1, 2, 3])))\n"
        "s = _pycds.stats()\n"
        "print('PYCDS-STATS ' + json.dumps({k: s[k] for k in ('hits', "
        "'misses', 'stale', 'error')} | {'served': sorted(set().union("
        "*(l['served'] for l in s['layers'])))}), file=sys.stderr)\n"),
})
main = os.path.join(app, "main.py")
calc = os.path.join(lib, "calc.py")
# The app finds calc through PYTHONPATH: the recipe must carry it.
recipe_env = {"PYTHONPATH": lib}

t = Tap(11)


def rebuild(*args, cwd=None, **env):
    return run([PYCDS, "rebuild", *args], cwd=cwd or tmp, timeout=300,
               **env)


def go(archive):
    p = run([PYTHON, main], cwd=app, PYCDS_ARCHIVE=archive, **recipe_env)
    st = parse_stats(p.stderr)
    p.stderr = strip_stats(p.stderr)
    return p, st


def read(path):
    with open(path, "rb") as f:
        return f.read()


def untouched(path, data, ino):
    st = os.stat(path)
    return st.st_ino == ino and read(path) == data


arch = os.path.join(tmp, "app.pycds")
p = run([PYCDS, "build", "-o", arch, "--python", PYTHON, "--", PYTHON,
         "main.py"], cwd=app, timeout=300, PYTHONHASHSEED="0", **recipe_env)
if not t.ok(p.returncode == 0, "pycds build with a command", describe(p)):
    raise SystemExit(1)
stock = run([PYTHON, main], cwd=app, **recipe_env)

# 1. inspect shows the recipe.
ins = run([PYCDS, "inspect", arch])
lines = ins.stdout.splitlines()
want = [f"recipe cwd:      {app}", f"recipe env:      PYTHONPATH={lib}"]
cmd = [ln for ln in lines if ln.startswith("recipe:")]
t.ok(ins.returncode == 0 and all(w in lines for w in want) and
     len(cmd) == 1 and cmd[0].split(None, 1)[1] ==
     f"pycds build --python {PYTHON} -- {PYTHON} main.py",
     "inspect: the recipe's directory, PYTHONPATH and command",
     describe(ins))

# 2. --dry-run prints the plan and runs nothing.
data0, ino0 = read(arch), os.stat(arch).st_ino
p = rebuild("--dry-run", arch)
t.ok(p.returncode == 0 and f"in {app}:" in p.stdout and
     f"PYTHONPATH={lib}" in p.stdout and f"-o {arch}" in p.stdout and
     "wrote" not in p.stderr and untouched(arch, data0, ino0),
     "rebuild --dry-run: prints where and what it would run, runs nothing",
     describe(p))

# 3. A rebuild from elsewhere, with another PYTHONPATH: the same archive.
p = rebuild(arch, cwd="/", PYTHONPATH="/nonexistent", PYTHONHASHSEED="0")
t.ok(p.returncode == 0 and read(arch) == data0 and
     os.stat(arch).st_ino != ino0,
     "rebuild from / with another PYTHONPATH: a new file, byte-identical",
     describe(p))

# 4. A source change: stale under the old archive, served after rebuild.
old = os.path.join(tmp, "old.pycds")
shutil.copy2(arch, old)
with open(calc, "w") as f:
    f.write("def total(xs):\n    return sum(xs) * 3\n")
stock = run([PYTHON, main], cwd=app, **recipe_env)
p, st = go(old)
t.ok(p.returncode == 0 and p.stdout == stock.stdout == "18\n" and
     st and st["stale"] >= 1 and "calc" not in st["served"],
     "after a source change: the old archive's calc stale, stock's output",
     describe(p) + f"\nstats: {st}")
p = rebuild(arch, PYTHONHASHSEED="0")
q, st = go(arch)
t.ok(p.returncode == 0 and q.returncode == 0 and q.stdout == stock.stdout
     and st and st["stale"] == 0 and "calc" in st["served"] and
     not pycds_lines(q.stderr),
     "rebuilt: the new source served, stock's output, nothing stale",
     describe(p) + "\n" + describe(q) + f"\nstats: {st}\n" +
     diff(stock.stdout, q.stdout))

# 5. Refusals: each one line, the file untouched.
data, ino = read(arch), os.stat(arch).st_ino


def refused(what, args, needle, target, **env):
    before = read(target), os.stat(target).st_ino
    p = rebuild(*args, **env)
    lines = [ln for ln in p.stderr.splitlines()
             if ln.startswith("pycds rebuild:")]
    t.ok(p.returncode != 0 and len(lines) == 1 and needle in lines[0] and
         untouched(target, *before), what, describe(p))


os.chmod(arch, 0o666)
refused("rebuild of a file others may write: refused, untouched",
        [arch], "not trusted", arch)
os.chmod(arch, 0o644)

bare = os.path.join(tmp, "bare.pycds")
builder = os.path.join(os.path.dirname(PYCDS), "pycds_build.py")
p = run([PYTHON, builder, "-o", bare, "--stdlib", "--quiet"], timeout=300,
        PYCDS_ARCHIVE="")
if p.returncode != 0 or not os.path.exists(bare):
    t.ok(False, "an archive written without a recipe", describe(p))
else:
    refused("rebuild of an archive with no recipe: refused, untouched",
            [bare], "holds no recipe", bare)

# A program that is gone (the command cannot run): the build fails and
# the archive stays.
prog = os.path.join(tmp, "prog")
write_tree(prog, {"run.py": f"#!{PYTHON}\nimport calc\nprint(calc.total([1]))\n"})
os.chmod(os.path.join(prog, "run.py"), 0o755)
progarch = os.path.join(tmp, "prog.pycds")
p = run([PYCDS, "build", "-o", progarch, "--python", PYTHON, "--",
         "./run.py"], cwd=prog, timeout=300, PYTHONHASHSEED="0",
        **recipe_env)
if p.returncode != 0:
    t.ok(False, "an archive built from ./run.py", describe(p))
else:
    os.unlink(os.path.join(prog, "run.py"))
    refused("rebuild whose program is gone: the build fails, the archive "
            "as it was", [progarch], "the build failed", progarch,
            PYTHONHASHSEED="0")

# Two files, one of which cannot be rebuilt (its directory is gone).
gone = os.path.join(tmp, "gone")
write_tree(gone, {"m.py": "import calc\n"})
other = os.path.join(tmp, "other.pycds")
p = run([PYCDS, "build", "-o", other, "--python", PYTHON, "--", PYTHON,
         "m.py"], cwd=gone, timeout=300, PYTHONHASHSEED="0", **recipe_env)
shutil.rmtree(gone)
before = read(other), os.stat(other).st_ino
ino = os.stat(arch).st_ino
q = rebuild(other, arch, PYTHONHASHSEED="0")
errs = [ln for ln in q.stderr.splitlines() if ln.startswith("pycds rebuild:")]
t.ok(p.returncode == 0 and q.returncode != 0 and len(errs) == 2 and
     "cannot enter" in errs[0] and "the build failed" in errs[1] and
     untouched(other, *before),
     "rebuild of a recipe whose directory is gone: its line, untouched",
     describe(p) + "\n" + describe(q))
t.ok("1 of 2 archives rebuilt" in q.stdout and
     os.stat(arch).st_ino != ino and go(arch)[0].stdout == stock.stdout,
     "two files, one failing: the other rebuilt, the summary says 1 of 2",
     describe(q))
