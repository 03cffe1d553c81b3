# SPDX-License-Identifier: MIT
"""Man pages: pycds(1), pycds-loader(8), pycds-top(8), pycds-archive(5).

`make install DESTDIR=...` installs them (generated from Documentation/
at build time); man(1) finds and renders each by name and section, its
NAME line giving the page's one-line description; every long option a
command's --help lists is in its page; `make uninstall` removes them.
"""
import os
import re
import shutil
import subprocess
import sys

from pycdslib import Tap, describe, run, scratch

TREE = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
PAGES = [("1", "pycds"), ("8", "pycds-loader"), ("8", "pycds-top"),
         ("5", "pycds-archive")]

t = Tap(1 + len(PAGES) + 3 + 1)
if not shutil.which("man"):
    Tap.skip_all("needs man(1) (Debian's man-db)")
tmp = scratch()
dest = os.path.join(tmp, "root")
make = ["make", "-s", "--no-print-directory", "-C", TREE,
        f"PYTHON={sys.executable}", f"DESTDIR={dest}", "PREFIX=/usr/local"]
inst = run(make + ["install"], timeout=600)
mandir = os.path.join(dest, "usr/local/share/man")
files = [os.path.join(mandir, f"man{s}", f"{n}.{s}") for s, n in PAGES]
t.ok(inst.returncode == 0 and all(map(os.path.isfile, files)),
     "make install DESTDIR: the four man pages under share/man",
     describe(inst))


def man(*args):
    return run(["man", "-M", mandir, *args], MANWIDTH="100",
               MANPAGER="cat", PAGER="cat", LC_ALL="C.UTF-8")


pages = {}
for sec, name in PAGES:
    p = man(sec, name)
    text = re.sub(r".\x08", "", p.stdout or "")
    pages[name] = text
    head = re.search(rf"^NAME\n\s+{re.escape(name)}\s+[-\u2010]\s+\S",
                     text, re.M)
    t.ok(p.returncode == 0 and head is not None and
         text.startswith(f"{name.upper()}({sec})"),
         f"man {sec} {name}: rendered, its NAME line a description",
         describe(p, 800))

# Every long option of each command's help is in its page.
helps = {"pycds": [[os.environ.get("PYCDS", ""), "--help"],
                   [os.environ.get("PYCDS", ""), "build", "--help"]],
         "pycds-loader": [[os.environ.get("PYCDS_LOADER", ""), "--help"]],
         "pycds-top": [[os.environ.get("PYCDS_TOP", ""), "--help"]]}
for name, cmds in helps.items():
    opts, outs = set(), []
    for cmd in cmds:
        p = run(cmd)
        outs.append(p)
        opts |= set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", p.stdout or ""))
    flat = re.sub(r"\s+", " ", pages.get(name, "").replace("\u2010", "-"))
    missing = sorted(o for o in opts if o not in flat)
    t.ok(all(p.returncode == 0 for p in outs) and opts and not missing,
         f"{name}: every long option of its --help is in its page",
         f"options: {sorted(opts)}\nmissing: {missing}\n" +
         "\n".join(describe(p, 400) for p in outs))

un = run(make + ["uninstall"], timeout=600)
t.ok(un.returncode == 0 and not any(map(os.path.exists, files)),
     "make uninstall removes them", describe(un))
