# SPDX-License-Identifier: MIT
"""Modules served from an archive are indistinguishable from stock's.

What CPython's own test suite found different, each shown here against a
stock run of the same program:

- the wide-character (wchar_t) view of archived 2- and 4-byte string
  constants, and of a 4-byte name from the names pool, as C code gets it
  (ctypes' conversion, and on 3.11 the legacy Py_UNICODE API);
- descriptors: the process keeps none of pycds's once the archive is
  mapped (the listing of /proc/self/fd and the number open() returns);
- loaders: a served module's loader is the path finder's own class, and
  its spec equals one made again for the same file (pydoc.importfile),
  for modules and packages;
- subinterpreters: one that refuses single-phase extension modules
  (3.12's isolated default) and a legacy one import as stock, silently,
  under pycds build and from the archive (pycds serves the main
  interpreter only).

Each program also prints what it can tell about being served; the
archive run must print the same, and _pycds.stats()["served"] must name
the modules, so that the comparison is not one between two stock runs.
"""
import json
import os

from pycdslib import (PYTHON, Tap, build, describe, diff, pycds_lines, run,
                      scratch, write_tree)

MAIN = r'''
import ctypes, importlib.util, json, json.decoder, os, pydoc, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmod, pkg, pkg.sub

def wide(s):
    buf = ctypes.create_unicode_buffer(s)
    return [ctypes.c_wchar_p(s).value == s, buf.value == s, len(buf)]

out = {}
names = [k for k in vars(wmod) if k.startswith("z") and not k.isascii()]
consts = dict(S4=wmod.S4, S4b=wmod.S4b, S2=wmod.S2, S2id=wmod.S2id,
              S1=wmod.S1, A=wmod.A, POOL=names[0], SUB=pkg.sub.S4)
for k, s in consts.items():
    r = wide(s)
    try:
        import _testcapi
        r.append(_testcapi.unicode_legacy_string(s).isidentifier())
    except (ImportError, AttributeError):
        pass
    try:
        import _testinternalcapi
        r.append(repr(_testinternalcapi.EncodeLocaleEx(s, 0, "strict")))
    except (ImportError, AttributeError):
        pass
    except Exception as e:
        r.append(repr(e))
    out[k] = r
out["isidentifier"] = [s.isidentifier() for s in consts.values()]

fd = os.open(os.devnull, os.O_RDONLY)
out["fds"] = sorted(int(x) for x in os.listdir("/proc/self/fd"))
out["first_open"] = fd
os.close(fd)

for m in (wmod, pkg, pkg.sub, json, json.decoder, pydoc):
    again = importlib.util.spec_from_file_location(
        m.__name__, m.__file__,
        submodule_search_locations=m.__spec__.submodule_search_locations)
    out[m.__name__] = [type(m.__loader__).__module__,
                       type(m.__loader__).__qualname__,
                       type(m.__spec__.loader).__qualname__,
                       m.__spec__.loader is m.__loader__,
                       again == m.__spec__,
                       m.__loader__.get_filename(m.__name__) == m.__file__]
for m in (wmod, pydoc):
    out["importfile " + m.__name__] = [
        pydoc.importfile(m.__file__).__spec__ == m.__spec__]
print(json.dumps(out, sort_keys=True))
_pc = sys.modules.get("_pycds")
print(json.dumps(_pc.stats()["served"] if _pc else []), file=sys.stderr)
'''

MOD = '''\
S4 = 'x\\U0001d400yz'
S4b = 'UCS:\\xe9\\u20ac\\U0010ffff'
S2 = 'caf\\u20ac'
S2id = 'x\\u0101'
S1 = 'caf\\xe9'
A = 'plain'
z\U00020000 = 1
'''

t = Tap(15)
d = scratch()
write_tree(d, {"main.py": MAIN, "wmod.py": MOD,
               "pkg/__init__.py": "X = 1\n",
               "pkg/sub.py": "S4 = 'sub\\U0010fffe'\n"})
main = os.path.join(d, "main.py")
stock = run([PYTHON, main], cwd=d)
t.ok(stock.returncode == 0 and stock.stdout.startswith("{"),
     "the program runs stock", describe(stock))
a = os.path.join(d, "a.pycds")
b = build(a, ["--", PYTHON, main], cwd=d)
t.ok(b.returncode == 0 and os.path.isfile(a), "pycds build", describe(b))
v = run([os.environ["PYCDS"], "verify", "--python", PYTHON, a])
t.ok(v.returncode == 0, "the archive verifies (a 3.11 str's wide view "
     "points into itself)", describe(v))

want = {"wmod", "pkg", "pkg.sub", "json", "json.decoder", "pydoc"}
for label, extra in (("", {}), (" with PYCDS_PREFETCH=uring",
                                {"PYCDS_PREFETCH": "uring"})):
    p = run([PYTHON, main], cwd=d, PYCDS_ARCHIVE=a, **extra)
    try:
        served = set(json.loads(p.stderr.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        served = set()
    t.ok(p.returncode == 0 and want <= served and not pycds_lines(p.stderr),
         "served from the archive" + label + ": " + ", ".join(sorted(want)),
         describe(p))
    t.eq(p.stdout, stock.stdout, "output identical to stock" + label,
         diff(stock.stdout, p.stdout))
    if p.stdout.startswith("{") and stock.stdout.startswith("{"):
        got, exp = json.loads(p.stdout), json.loads(stock.stdout)
        t.eq([got[k] for k in ("S4", "S4b", "S2", "S2id", "POOL", "SUB")],
             [exp[k] for k in ("S4", "S4b", "S2", "S2id", "POOL", "SUB")],
             "wide-character views of archived 2- and 4-byte constants and "
             "a pooled name as stock" + label)
        t.eq((got["fds"], got["first_open"]), (exp["fds"], exp["first_open"]),
             "no descriptor kept: /proc/self/fd and the first open() as "
             "stock" + label)
    else:
        t.skip_n(2, "wide characters and descriptors" + label,
                 "no output to compare")

# The loader checks themselves hold stock (they are what is compared).
e = json.loads(stock.stdout) if stock.stdout.startswith("{") else {}
t.ok(e and all(e[m][:3] == ["_frozen_importlib_external", "SourceFileLoader",
                            "SourceFileLoader"] and all(e[m][3:])
               for m in want) and
     all(v == [True] for k, v in e.items() if k.startswith("importfile")),
     "stock's loaders are SourceFileLoader and its specs compare equal "
     "(the checks mean something)", stock.stdout)

# ---- subinterpreters run stock, silently ----
SUB = r'''
import importlib, sys
res = {}
try:
    import _testcapi
    res["legacy"] = _testcapi.run_in_subinterp(
        "import json, textwrap; assert json.dumps([1]) == '[1]'")
except ImportError as e:
    res["legacy"] = "no _testcapi"
for name in ("_interpreters", "_xxsubinterpreters"):
    try:
        m = importlib.import_module(name)
    except ImportError:
        continue
    i = m.create()
    try:
        r = m.run_string(i, "import json, textwrap\n"
                         "assert json.dumps([1]) == '[1]'\n")
        res["isolated"] = repr(r)
    except Exception as e:
        res["isolated"] = type(e).__name__ + ": " + str(e)
    m.destroy(i)
    break
else:
    res["isolated"] = "none before 3.12"
import json
print(json.dumps(res, sort_keys=True))
'''
sub = os.path.join(d, "sub.py")
with open(sub, "w") as f:
    f.write(SUB)
sstock = run([PYTHON, sub], cwd=d)
sa = os.path.join(d, "sub.pycds")
sb = build(sa, ["--", PYTHON, sub], cwd=d)
t.ok(sstock.returncode == 0 and sstock.stderr == "" and
     sb.stdout.startswith(sstock.stdout) and not pycds_lines(sb.stderr),
     "subinterpreters under pycds build: stock output, no pycds line "
     "(stock: " + sstock.stdout.strip() + ")",
     describe(sstock) + "\n" + describe(sb))
ss = run([PYTHON, "-c", "import runpy, sys, json; sys.argv = [sys.argv[1]]\n"
          "runpy.run_path(sys.argv[0], run_name='__main__')\n"
          "import _pycds; print(json.dumps(sorted(_pycds.stats()['served'])),"
          " file=sys.stderr)", sub], cwd=d, PYCDS_ARCHIVE=sa)
try:
    sserved = set(json.loads(ss.stderr.strip().splitlines()[-1]))
except (ValueError, IndexError):
    sserved = set()
t.ok(ss.returncode == 0 and "json" in sserved and
     len(ss.stderr.strip().splitlines()) == 1,
     "with the archive the main interpreter is served (json) and nothing "
     "else is on stderr", describe(ss))
t.eq(ss.stdout, sstock.stdout, "and the subinterpreters' results are stock's",
     diff(sstock.stdout, ss.stdout))
