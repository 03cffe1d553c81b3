#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes userspace/00-pycds.pth, the start-up hook, from the two blocks
below: site executes each line of a .pth file that starts with "import",
so the hook must be one line.  Every process that has PYCDS_ARCHIVE or
PYCDS_RECORD set (or PYCDS_ARCHIVE unset and a host-wide default file)
compiles FAST, once: when site reads the hook again (a
venv gives its site directory twice), _pycds is loaded already.  SLOW,
which explains why _pycds could not be loaded, is compiled only when
that happens (and then on each read: it prints its line once).

    python3 tools/mkpth.py            rewrite the hook
    python3 tools/mkpth.py --check    exit 1 if the hook is not what this writes
"""
import os
import sys

# The host-wide default, read when PYCDS_ARCHIVE is unset: the same path
# as the runtime's PYCDS_DEFAULT_FILE (userspace/runtime/runtime.h), which
# tests/py/test_default.py checks.  Without it, an unset PYCDS_ARCHIVE
# costs one stat().
DEFAULT_FILE = "/etc/pycds/archive"

# Runs in site.addpackage's frame: sitedir and known_paths are its locals.
FAST = '''\
_x = sys.modules.get("_frozen_importlib_external")
_f = _x and "sitedir" in dir() and os.path.join(sitedir, "_pycds" + _x.EXTENSION_SUFFIXES[0])
try:
    ((_f and os.path.isfile(_f) and sys.modules["_frozen_importlib"]._load(_x.spec_from_file_location("_pycds", _f))) or __import__("_pycds"))._hook()
except Exception as _e:
    exec(%r)
'''

SLOW = '''\
_m = str(_e).splitlines()[0] if str(_e) else type(_e).__name__
_s = 0
try:
    _p = "%d.%d.%d" % sys.version_info[:3]
    with open(getattr(_e, "path", None) or _f, "rb") as _h:
        _b = _h.read()
    _i = _b.find(b"pycds-built-for-python=")
    _v = _b[_i + 23:_b.index(b"\\0", _i)].decode() if _i >= 0 else _p
    if "_pycds was built for" not in _m and _v != _p:
        _m = "_pycds was built for Python %s, this is Python %s: %s" % (_v, _p, _m)
    # Once, even when site reads this file twice (it does for each site
    # directory it is given, and a venv gives its own twice): site's own
    # set of known paths, alive while site runs, holds a name no path can
    # have.
    if "known_paths" in dir() and isinstance(known_paths, set):
        _s = "\\0pycds" in known_paths
        known_paths.add("\\0pycds")
except Exception:
    pass
# A subinterpreter that refuses single-phase modules runs stock, silently:
# pycds serves the main interpreter only.
if not _s and not (isinstance(_e, ImportError) and "subinterpreters" in str(_e)):
    sys.stderr.write("pycds: " + _m + "\\n")
    sys.stderr.flush()
'''


def render():
    code = FAST % SLOW
    compile(code, "00-pycds.pth", "exec")
    return ("# pycds start-up hook, written by tools/mkpth.py\n"
            'import os, sys; (os.environ.get("PYCDS_ARCHIVE") or '
            'os.environ.get("PYCDS_RECORD") or ("PYCDS_ARCHIVE" not in '
            'os.environ and os.path.exists(%r))) and "_pycds" not in '
            'sys.modules and exec(%r)\n' % (DEFAULT_FILE, code))


def main():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "..", "userspace", "00-pycds.pth")
    text = render()
    if sys.argv[1:] == ["--check"]:
        with open(path) as f:
            if f.read() != text:
                sys.exit("mkpth: %s is not what tools/mkpth.py writes: "
                         "run it and commit the result" % path)
        return
    if sys.argv[1:]:
        sys.exit("usage: mkpth.py [--check]")
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
