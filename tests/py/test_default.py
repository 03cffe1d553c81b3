# SPDX-License-Identifier: MIT
"""The host-wide default: /etc/pycds/archive, one line in PYCDS_ARCHIVE's
syntax, used when PYCDS_ARCHIVE is unset.

Each process runs in its own mount namespace with an overlay on /etc, so
the host's /etc is never written (root and overlayfs needed).

- the hook and the runtime name the same file;
- no file: an unset PYCDS_ARCHIVE does not even load _pycds;
- a file naming an archive, or two layers: served, stock's output, no
  pycds: line; comments and blank lines skipped; a file that names
  nothing: nothing, silently;
- PYCDS_ARCHIVE set overrides it; set and empty turns pycds off;
- a file writable by others, or owned by another user: one pycds: line
  saying why it is ignored, stock's output, nothing served;
- under -E the default is not read either.
"""
import json
import os
import shutil
import subprocess

from pycdslib import (PYTHON, Tap, build, describe, parse_stats,
                      pycds_lines, require, run, scratch, site_dir,
                      strip_stats, write_tree)

require()
if os.geteuid() != 0:
    Tap.skip_all("needs root (a private mount namespace with /etc overlaid)")
if not shutil.which("unshare"):
    Tap.skip_all("needs unshare(1) from util-linux")
tmp = scratch()
app = os.path.join(tmp, "app")
write_tree(app, {
    "pkg/__init__.py": "def total(xs):\n    return sum(xs) * 2\n",
    "main.py": (
        "import json, sys, pkg\n"
        "print(json.dumps(pkg.total([1, 2, 3])))\n"
        "m = sys.modules.get('_pycds')\n"
        "s = m.stats() if m else None\n"
        "print('PYCDS-STATS ' + json.dumps(s and {'hits': s['hits'], 'archive': "
        "s['archive'], 'layers': len(s['layers'])}), file=sys.stderr)\n"),
})
main = os.path.join(app, "main.py")
DEFAULT = "/etc/pycds/archive"

# An overlay on /etc inside a private mount namespace: the upper layer
# holds pycds/archive as each check writes it.
upper, work = os.path.join(tmp, "upper"), os.path.join(tmp, "work")
os.makedirs(os.path.join(upper, "pycds"))
os.makedirs(work)
WRAP = ("mount -t overlay overlay -o "
        f"lowerdir=/etc,upperdir={upper},workdir={work} /etc && exec \"$@\"")


def any_shared():
    """Does any mount this process sees propagate to other namespaces?"""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if any(x.startswith("shared:") for x in
                   fields[6:fields.index("-")]):
                return True
    return False


# unshare makes the new namespace's mounts private; in a chroot, whose
# root is no mount point, it cannot, and there (a private namespace
# already, see tools/chroot.sh) they are left as they are.
UNSHARE = ["unshare", "-m"]


def go(content=None, mode=0o644, uid=0, args=(), **env):
    """main.py with /etc/pycds/archive holding @content (None: absent)."""
    f = os.path.join(upper, "pycds", "archive")
    if os.path.lexists(f):
        os.unlink(f)
    if content is not None:
        with open(f, "w") as h:
            h.write(content)
        os.chown(f, uid, 0)
        os.chmod(f, mode)
    p = run([*UNSHARE, "sh", "-c", WRAP, "sh", PYTHON, *args, main],
            cwd=app, **env)
    # None: main.py saw no _pycds; "missing": it printed no figures.
    st = parse_stats(p.stderr) if "PYCDS-STATS " in p.stderr else "missing"
    p.stderr = strip_stats(p.stderr)
    return p, st


probe, _ = go(None, args=("-c", "pass"))
if probe.returncode and "propagation" in probe.stderr and not any_shared():
    UNSHARE = ["unshare", "-m", "--propagation", "unchanged"]
    probe, _ = go(None, args=("-c", "pass"))
if probe.returncode:
    Tap.skip_all("cannot overlay /etc in a mount namespace: " +
                 " ".join(probe.stderr.split())[:200])
t = Tap(12)
stock = run([PYTHON, main], cwd=app)
lower, top = os.path.join(tmp, "lower.pycds"), os.path.join(tmp, "top.pycds")
bl = build(lower, ["-m", "json"])
bt = build(top, ["--on", lower, "--", PYTHON, main], cwd=app)
if bl.returncode or bt.returncode:
    Tap.skip_all("cannot build the test archives: " +
                 " ".join((bl.stderr + bt.stderr).split())[:200])
want = stock.stdout

hook = ""
for name in sorted(os.listdir(site_dir())):
    if name.endswith("pycds.pth"):
        with open(os.path.join(site_dir(), name)) as f:
            hook = f.read()
m = run([PYTHON, "-c", "import _pycds; print(_pycds.DEFAULT_FILE)"])
t.ok(m.stdout.strip() == DEFAULT and repr(DEFAULT) in hook,
     "the hook and the runtime read the same default file",
     describe(m) + f"\nhook names it: {repr(DEFAULT) in hook}")

p, st = go(None)
t.ok(p.stdout == want and st is None and not pycds_lines(p.stderr),
     "no default file, PYCDS_ARCHIVE unset: _pycds is not even loaded",
     describe(p) + f"\n{st}")

p, st = go(top + "\n")
t.ok(p.stdout == want and not pycds_lines(p.stderr) and st and
     st["hits"] > 0 and st["archive"] == top,
     "the default names an archive: served, stock's output",
     describe(p) + f"\n{st}")
p, st = go(f"# the host's layers\n\n   {lower}:{top}  \n# not this\n")
t.ok(p.stdout == want and not pycds_lines(p.stderr) and st and
     st["hits"] > 0 and st["layers"] == 2,
     "two layers, after a comment and a blank line, blanks trimmed",
     describe(p) + f"\n{st}")
p, st = go("# nothing here\n\n")
t.ok(p.stdout == want and not pycds_lines(p.stderr) and
     (st is None or st["hits"] == 0),
     "a default file that names nothing: nothing, silently",
     describe(p) + f"\n{st}")

p, st = go(top + "\n", PYCDS_ARCHIVE=lower)
t.ok(p.stdout == want and st and st["archive"] == lower and st["hits"] > 0,
     "PYCDS_ARCHIVE set overrides the default", describe(p) + f"\n{st}")
p, st = go(top + "\n", PYCDS_ARCHIVE="")
t.ok(p.stdout == want and st is None and not pycds_lines(p.stderr),
     "PYCDS_ARCHIVE set and empty: pycds off, the default not read",
     describe(p) + f"\n{st}")

p, st = go(top + "\n", mode=0o666)
lines = pycds_lines(p.stderr)
t.ok(p.stdout == want and len(lines) == 1 and DEFAULT in lines[0] and
     "writable" in lines[0] and "ignored" in lines[0] and
     (st is None or st["hits"] == 0),
     "a default file others can write: one line, ignored",
     describe(p) + f"\n{st}")
p, st = go(top + "\n", uid=4242)
lines = pycds_lines(p.stderr)
t.ok(p.stdout == want and len(lines) == 1 and "uid 4242" in lines[0] and
     (st is None or st["hits"] == 0),
     "a default file owned by another user: one line, ignored",
     describe(p) + f"\n{st}")
p, st = go(os.path.join(tmp, "gone.pycds") + "\n")
lines = pycds_lines(p.stderr)
t.ok(p.stdout == want and len(lines) == 1 and "gone.pycds" in lines[0],
     "a default naming a missing archive: the archive's one line",
     describe(p))

p, st = go(top + "\n", args=("-E",))
t.ok(p.stdout == want and not pycds_lines(p.stderr) and
     (st is None or st["hits"] == 0),
     "under -E the default is not used", describe(p) + f"\n{st}")
p, st = go(top + "\n", args=("-X", "dev"))
t.ok(p.returncode == 0 and p.stdout == want and st and st["hits"] > 0 and
     not pycds_lines(p.stderr),
     "-X dev: served from the default, clean", describe(p) + f"\n{st}")
