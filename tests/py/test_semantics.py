# SPDX-License-Identifier: MIT
"""A module from the archive behaves exactly like one from its .pyc.

A package tree written to a scratch directory is archived under hash seed
0 and used under others.  A probe prints a JSON report of everything that
must not change: __file__, __cached__, __spec__, __path__, the loader and
get_source, inspect.getsource, tracebacks with source lines, constants of
every type, frozenset constants (type and membership under another hash
seed), string and bytes hashes, small-int and one-character-string
identity, interned names, Cls.__eq__ set late, f-strings, generators,
coroutines, dis output and marshal.dumps of code objects.  The report of a
run with the archive is compared key by key with stock's under the same
seed; a few values are also checked outright, and the probe checks that
the archive served the package's modules.
"""
import json
import marshal
import os
import re
import shutil

from pycdslib import (BUILD_SEED, PYTHON, Tap, build, describe, diff,
                      pycds_lines, require, run, scratch, write_tree)

require()

PKG = {
    "sempkg/__init__.py": '''\
"""Package doc: sempkg."""
from . import sub
from .sub import K, closure
VALUE = 5
''',
    "sempkg/sub.py": '''\
"""Sub doc: \u00fcn\u00efc\u00f6d\u00e9."""
import sys
BIG = 123456789012345678901234567890
HUGE = 2 ** 200
NEG = -98765432109876543210
SMALL = 5
NEG5 = -5
S256 = 256
F = 1.5e300
TINY = 5e-324
NEGZERO = -0.0
C = 3+4j
CNEG = -0.0-1j
B = b"bytes\\x00\\xff"
EB = b""
ES = ""
CH = "a"
EMPTY = ()
T = (1, "two", (3.0, None), ..., True, b"x")
U = "\u00fcn\u00efc\u00f6d\u00e9 \u2713 \U0001d11e"
SPACED = "hello world, not an identifier"
NAMELIKE = "looks_like_a_name"
def membership(x):
    return x in {'a', 'b', 'c'}
def bmember(x):
    return x in {b'a', b'b'}
def tmember(x):
    return x in {(1, 'a'), (2, 'b')}
def imember(x):
    return x in {1, 2, 3, 1000000, -7}
def closure(n):
    """Closure doc."""
    def inner(m, *, k=2):
        return n + m + k
    return inner
def counter():
    count = 0
    def bump():
        nonlocal count
        count += 1
        return count
    return bump
class K:
    """K doc."""
    def __init__(self, v=1):
        self.v = v
    def method(self, a: int, b: "str" = "d") -> list:
        return [self.v, a, b]
    @property
    def prop(self):
        return self.v * 2
    @classmethod
    def make(cls):
        return cls(7)
    @staticmethod
    def st(x):
        return -x
def eq(a, b):
    return True
K.__eq__ = eq
K.__hash__ = None
class L(K):
    def __repr__(self):
        return f"L({self.v!r})"
def gen():
    yield from range(3)
    x = yield "mid"
    return x
async def co():
    return f"{SMALL:>4}|{U!r}|{F:.3e}|{BIG:_}"
def fstr(v, w=8):
    return f"{v!s:^{w}}|{v!r}|{v=}|{v:>{w}}"
def raiser():
    x = 1
    raise ValueError("boom %d" % x)
def deep_raiser(n):
    if n == 0:
        return {}["missing"]
    return deep_raiser(n - 1) + 1
def names():
    return membership.__code__.co_names, closure.__code__.co_varnames
def annotated(a: int, b: "List[str]" = None, *args: float, **kw: "x") -> "y":
    return a
lam = lambda q, r=3: (q, r)
comp = [i * i for i in range(5) if i % 2]
dictcomp = {k: v for k, v in zip("abc", range(3))}
''',
    "sempkg/consts.py": '''\
"""Consts doc."""
EQ_NAME = "__eq__"
REPR_NAME = "__repr__"
LEN_NAME = "__len__"
def inset(x):
    return x in {'a', 'b', 'c'}
def notinset(x):
    return x not in {'alpha', 'beta', 'gamma', 'delta', 'epsilon'}
def getattr_name():
    return EQ_NAME
''',
    "sempkg/inner/__init__.py": '''\
"""Inner package."""
from .deep import deep_value
''',
    "sempkg/inner/deep.py": '''\
def deep_value():
    return ("deep", __name__, __package__)
''',
    "sempkg/boom.py": '''\
"""Raises while being imported."""
X = 1
def helper():
    return undefined_name_here
helper()
''',
}

PROBE = r'''
import asyncio, dis, gc, importlib, inspect, io, json, linecache, marshal
import pickle, re, sys, traceback, types
from importlib.machinery import SourceFileLoader

def stats():
    m = sys.modules.get("_pycds")
    return dict(m.stats()) if m else None

before = stats()
import sempkg, sempkg.sub as s, sempkg.consts as c, sempkg.inner
import sempkg.inner.deep as d
after = stats()
MODS = [sempkg, s, c, sempkg.inner, d]

R = {}

def fresh(x):
    return x[:1] + x[1:] if isinstance(x, (str, bytes)) else x

def interned(x):
    # Whether x is the interned copy of its value, without making a fresh
    # copy the interned one when none was.
    f = "".join(list(x))
    return sys.intern(f) is x

R["file"] = [m.__file__ for m in MODS]
R["cached"] = [getattr(m, "__cached__", "<unset>") for m in MODS]
R["name"] = [m.__name__ for m in MODS]
R["package"] = [m.__package__ for m in MODS]
R["spec"] = [[m.__spec__.name, m.__spec__.origin, m.__spec__.parent,
              m.__spec__.submodule_search_locations,
              m.__spec__.has_location, m.__spec__.cached,
              isinstance(m.__spec__.loader, SourceFileLoader),
              m.__spec__.loader is m.__loader__] for m in MODS]
R["path"] = [getattr(m, "__path__", None) for m in MODS]
R["loader"] = [[m.__loader__.name, m.__loader__.path,
                m.__loader__.is_package(m.__name__),
                m.__loader__.get_filename(m.__name__)] for m in MODS]
R["get_source equals file"] = [
    m.__loader__.get_source(m.__name__) == open(m.__file__).read()
    for m in MODS]
R["getsource"] = [inspect.getsource(o) for o in
                  (s.closure, s.K, s.K.method, s.raiser, s.gen, s.co, d,
                   s.lam)]
R["getsourcelines"] = [inspect.getsourcelines(o)[1] for o in
                       (s.closure, s.K, s.counter, s.annotated)]
R["getfile"] = [inspect.getsourcefile(s.raiser), inspect.getfile(s.K)]
R["linecache"] = linecache.getline(s.__file__, 3)
R["doc"] = [sempkg.__doc__, s.__doc__, c.__doc__, s.K.__doc__,
            s.closure.__doc__, d.__doc__]
R["const reprs"] = [repr(x) for x in (
    s.BIG, s.HUGE, s.NEG, s.SMALL, s.NEG5, s.S256, s.F, s.TINY, s.NEGZERO,
    s.C, s.CNEG, s.B, s.EB, s.ES, s.CH, s.EMPTY, s.T, s.U, s.SPACED)]
R["const types"] = [type(x).__name__ for x in (
    s.BIG, s.F, s.C, s.B, s.T, s.U, s.EMPTY)]
R["small int identity"] = [s.SMALL is int("5"), s.NEG5 is int("-5"),
                           s.S256 is int("256"), s.T[0] is int("1"),
                           s.T[4] is True]
R["singleton identity"] = [s.EMPTY is tuple(), s.ES is str(), s.EB is bytes(),
                           s.T[2][1] is None, s.T[3] is Ellipsis]
# Stock answers False here (the interned "a" is not the latin-1 cache's);
# the archive must answer the same.
R["one-character str identity"] = [s.CH is chr(97), s.CH is sys.intern("a")]
R["frozenset membership"] = [
    [s.membership(fresh(x)) for x in ("a", "b", "c", "d", "")],
    [c.inset(fresh(x)) for x in ("a", "b", "c", "ab")],
    [c.notinset(fresh(x)) for x in ("alpha", "epsilon", "zeta")],
    [s.bmember(fresh(x)) for x in (b"a", b"b", b"c")],
    [s.tmember(x) for x in ((1, "a"), (2, "b"), (1, "b"))],
    [s.imember(int(x)) for x in ("1", "3", "1000000", "-7", "4")]]
fsets = [k for f in (s.membership, s.bmember, s.tmember, s.imember,
                     c.inset, c.notinset)
         for k in f.__code__.co_consts if isinstance(k, (set, frozenset))]
R["frozenset consts"] = [
    [type(k) is frozenset for k in fsets],
    [sorted(map(repr, k)) for k in fsets],
    [hash(k) == hash(frozenset(list(k))) for k in fsets],
    [k == frozenset(list(k)) for k in fsets],
    [len(k | {"zz"}) for k in fsets]]
strs = [s.U, s.SPACED, s.NAMELIKE, s.CH, c.EQ_NAME,
        s.raiser.__code__.co_name, s.K.__qualname__]
R["str hash matches a fresh copy"] = [hash(x) == hash("".join(list(x)))
                                      for x in strs]
R["bytes hash matches a fresh copy"] = [hash(s.B) == hash(bytes(list(s.B)))]
R["tuple hash matches a fresh copy"] = [
    hash(s.T) == hash(tuple(list(s.T))),
    hash(s.lam.__defaults__) == hash((int("3"),))]
R["dict lookup by archived key"] = [
    {"".join(list(x)): 1}.get(x) for x in strs]
R["closure"] = [s.closure(2)(3), s.closure(2)(3, k=10),
                s.closure.__code__.co_cellvars,
                s.closure(1).__code__.co_freevars,
                s.closure(4).__closure__[0].cell_contents]
bump = s.counter()
R["nonlocal"] = [bump(), bump(), bump()]
R["eq set late in module"] = [s.K() == s.K(), s.K.__eq__ is s.eq,
                              s.L(1) == s.L(2), s.K.__hash__ is None]
class K2:
    pass
def always(a, b):
    return True
def rep(self):
    return "K2!"
setattr(K2, c.EQ_NAME, always)
setattr(K2, c.REPR_NAME, rep)
setattr(K2, c.LEN_NAME, lambda self: 3)
R["dunder set by archived name"] = [K2() == K2(), repr(K2()), len(K2())]
R["class"] = [s.K.__qualname__, s.K.__module__, s.L.__mro__[1].__name__,
              [k for k in vars(s.K) if not k.startswith("__")],
              s.K().method(3), s.K().prop, s.K.make().v, s.K.st(4),
              repr(s.L(5))]
R["functions"] = [[f.__name__, f.__qualname__, f.__module__,
                   f.__defaults__, f.__kwdefaults__,
                   {k: repr(v) for k, v in f.__annotations__.items()}]
                  for f in (s.closure, s.closure(1), s.K.method, s.annotated,
                            s.lam, s.fstr)]
R["module globals"] = sorted(k for k in vars(s) if not k.startswith("__"))
R["comprehensions"] = [s.comp, s.dictcomp]
R["fstring"] = [s.fstr(3), s.fstr("x", 4), s.fstr(s.U, 1)]
g = s.gen()
R["generator"] = [next(g), next(g), next(g), next(g)]
try:
    g.send("sent")
except StopIteration as e:
    R["generator"].append(e.value)
R["generator"] += [g.__name__, g.__qualname__, inspect.isgeneratorfunction(s.gen)]
R["coroutine"] = [asyncio.run(s.co()), inspect.iscoroutinefunction(s.co),
                  s.co.__code__.co_flags]
R["deep"] = list(d.deep_value())

def tb_of(fn, *a):
    try:
        fn(*a)
    except Exception:
        return traceback.format_exc()
R["traceback raiser"] = tb_of(s.raiser)
R["traceback deep"] = tb_of(s.deep_raiser, 3)
R["traceback inner closure"] = tb_of(s.closure(1), "x")
R["traceback import-time error"] = tb_of(importlib.import_module,
                                         "sempkg.boom")
R["interned"] = {}
for f in (s.membership, s.closure, s.K.__init__, s.K.method, s.raiser,
          s.fstr, s.names, s.annotated, c.inset, d.deep_value):
    co = f.__code__
    R["interned"][co.co_qualname] = {
        "co_names": [interned(n) for n in co.co_names],
        "co_varnames": [interned(n) for n in co.co_varnames],
        "co_freevars": [interned(n) for n in co.co_freevars],
        "co_cellvars": [interned(n) for n in co.co_cellvars],
        "co_name": interned(co.co_name),
        "co_qualname": interned(co.co_qualname),
        "str consts": [interned(k) for k in co.co_consts
                       if type(k) is str],
    }
n1, n2 = s.names()
R["interned names"] = [all(sys.intern("".join(list(n))) is n for n in n1),
                       all(sys.intern("".join(list(n))) is n for n in n2),
                       sys.intern("".join(list(c.EQ_NAME))) is c.EQ_NAME,
                       sys.intern("".join(list(s.NAMELIKE))) is s.NAMELIKE]
def code_attrs(co):
    return [co.co_filename, co.co_name, co.co_qualname, co.co_firstlineno,
            co.co_argcount, co.co_posonlyargcount, co.co_kwonlyargcount,
            co.co_nlocals, co.co_stacksize, co.co_flags,
            co.co_code.hex(), co.co_linetable.hex(),
            co.co_exceptiontable.hex(), list(co.co_lines()),
            list(co.co_positions()),
            re.sub(r" at 0x[0-9a-f]+", " at 0x...", repr(co.co_consts)),
            co.co_names,
            co.co_varnames]
CODES = {"module sub": None, "raiser": s.raiser.__code__,
         "membership": s.membership.__code__,
         "closure": s.closure.__code__,
         "inner": s.closure(1).__code__, "gen": s.gen.__code__,
         "co": s.co.__code__, "fstr": s.fstr.__code__,
         "K.method": s.K.method.__code__, "inset": c.inset.__code__,
         "notinset": c.notinset.__code__, "deep_value": d.deep_value.__code__}
del CODES["module sub"]
R["code attrs"] = {k: code_attrs(v) for k, v in CODES.items()}
src = compile(open(s.__file__, "rb").read(), s.__file__, "exec",
              dont_inherit=True)
byname = {k.co_name: k for k in src.co_consts if isinstance(k, types.CodeType)}
R["code equals a fresh compile"] = {
    k: byname[v.co_name] == v for k, v in CODES.items()
    if v.co_filename == s.__file__ and v.co_name in byname}
R["marshal round trip"] = {k: marshal.loads(marshal.dumps(v)) == v
                           for k, v in CODES.items()}
def dis_text(x):
    out = io.StringIO()
    dis.dis(x, file=out)
    return re.sub(r" at 0x[0-9a-f]+", " at 0x...", out.getvalue())
R["dis"] = {"sub": dis_text(s), "consts": dis_text(c),
            "raiser": dis_text(s.raiser), "membership": dis_text(s.membership)}
# Run the functions enough to quicken them, then look again.
for _ in range(64):
    s.membership("a"); c.inset("b"); s.fstr(1); s.closure(1)(2)
R["dis after quickening"] = dis_text(s.membership) + dis_text(c.inset)
R["pickle by reference"] = [pickle.dumps(s.closure).hex(),
                            pickle.loads(pickle.dumps(s.K)) is s.K]
gc.collect()
R["gc"] = [gc.is_tracked(s.EMPTY), gc.isenabled()]
MARSHAL = {k: marshal.dumps(v).hex() for k, v in CODES.items()}
print(json.dumps({"report": R, "marshal": MARSHAL, "before": before,
                  "after": after}, sort_keys=True))
'''

# Keys whose value is the same under every hash seed.  The others (dis and
# marshal show frozensets in hash order; code reprs too) are compared only
# between runs under the same seed.
SEED_DEPENDENT = {"dis", "dis after quickening", "code attrs"}
N_MODS = 5          # modules the probe imports from sempkg (boom aside)
SEEDS = ["123", "7"]

t = Tap(4 + len(SEEDS) * 9 + 3)
tmp = scratch()
app = os.path.join(tmp, "app")
write_tree(app, PKG)
probe = os.path.join(app, "probe.py")
with open(probe, "w") as f:
    f.write(PROBE)


def report(seed, archive=None, **env):
    if archive:
        env["PYCDS_ARCHIVE"] = archive
    p = run([PYTHON, probe], cwd=app, PYTHONHASHSEED=seed, **env)
    try:
        r = json.loads(p.stdout)
    except ValueError:
        r = None
    return p, r


def compare(a, b, what, keys=None):
    """One check: reports @a (stock) and @b (pycds) agree on @keys."""
    keys = sorted(set(a) | set(b)) if keys is None else keys
    bad = [k for k in keys if a.get(k) != b.get(k)]
    text = []
    for k in bad:
        x = json.dumps(a.get(k), indent=1, sort_keys=True)
        y = json.dumps(b.get(k), indent=1, sort_keys=True)
        text.append(f"--- {k!r} differs:\n" + diff(x, y))
    return t.ok(not bad, f"{what}: {len(keys)} report keys identical to "
                f"stock" + (f" (differ: {', '.join(bad)})" if bad else ""),
                "\n".join(text))


def first_difference(what, a, b):
    a, b = bytes.fromhex(a), bytes.fromhex(b)
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y),
             min(len(a), len(b)))
    return (f"{what}: first difference at byte {i} of {len(a)}/{len(b)}: "
            f"stock {a[max(0, i - 4):i + 12].hex()} "
            f"pycds {b[max(0, i - 4):i + 12].hex()}")


# Stock under the build seed first: it writes the .pyc files that later
# stock runs load, so stock and archive start from the same compilation.
p0, r0 = report(BUILD_SEED)
t.ok(r0 is not None and p0.returncode == 0, "probe runs stock",
     describe(p0))
t.ok(os.path.isdir(os.path.join(app, "sempkg", "__pycache__")),
     "stock run wrote the package's .pyc files")
archive = os.path.join(tmp, "sem.pycds")
b = build(archive, ["--", PYTHON, probe], cwd=app)
t.ok(b.returncode == 0 and os.path.isfile(archive), "archive built "
     f"(PYTHONHASHSEED={BUILD_SEED})", describe(b))
if r0 is None or b.returncode:
    raise SystemExit("cannot go on without a stock report and an archive")

# Sanity of the stock report itself: the values the archive must keep.
R0 = r0["report"]
t.ok(R0["small int identity"] == [True] * 5 and
     R0["singleton identity"] == [True] * 5 and
     R0["eq set late in module"] == [True, True, True, True] and
     R0["dunder set by archived name"] == [True, "K2!", 3],
     "stock report has the expected identities",
     {k: R0[k] for k in ("small int identity", "singleton identity",
                         "eq set late in module",
                         "dunder set by archived name")})

for seed in SEEDS:
    ps, rs = report(seed)
    pa, ra = report(seed, archive)
    if not t.ok(ra is not None and pa.returncode == 0 and rs is not None,
                f"probe runs with the archive (PYTHONHASHSEED={seed})",
                describe(pa)):
        t.skip_n(8, f"seed {seed}", "no report")
        continue
    t.ok(not pycds_lines(pa.stderr), f"no pycds: line (seed {seed})",
         pa.stderr)
    st = ra["after"] or {}
    served = st.get("hits", 0) - (ra["before"] or {}).get("hits", 0)
    t.ok(st.get("error") is None and served == N_MODS,
         f"all {N_MODS} sempkg modules served from the archive "
         f"(seed {seed}: {served})", {"before": ra["before"], "after": st})
    compare(rs["report"], ra["report"], f"seed {seed}")
    A = ra["report"]
    t.ok(A["frozenset membership"][0] == [True, True, True, False, False] and
         A["frozenset membership"][1] == [True, True, True, False] and
         all(A["frozenset consts"][0]) and all(A["frozenset consts"][2]),
         f"frozenset constants are frozensets, membership right "
         f"(seed {seed})", [A["frozenset membership"],
                            A["frozenset consts"]])
    t.ok(A["small int identity"] == [True] * 5 and
         A["singleton identity"] == [True] * 5 and
         all(A["str hash matches a fresh copy"]) and
         all(A["bytes hash matches a fresh copy"]),
         f"small ints, singletons and hashes (seed {seed})",
         {k: A[k] for k in ("small int identity", "singleton identity",
                            "str hash matches a fresh copy",
                            "bytes hash matches a fresh copy")})
    t.ok(all(A["interned names"]) and
         A["eq set late in module"][0] and
         A["dunder set by archived name"] == [True, "K2!", 3],
         f"interned names and late dunders (seed {seed})",
         {k: A[k] for k in ("interned names", "eq set late in module",
                            "dunder set by archived name")})
    t.todo(rs["marshal"] == ra["marshal"],
           f"marshal.dumps(code) byte-identical to stock (seed {seed})",
           "archived objects carry extra references, so marshal sets "
           "FLAG_REF where stock's refcount-1 objects do not",
           "\n".join(first_difference(k, rs["marshal"][k],
                                      ra["marshal"].get(k, ""))
                     for k in rs["marshal"]
                     if rs["marshal"][k] != ra["marshal"].get(k)))

    def canon(h):
        return marshal.dumps(marshal.loads(bytes.fromhex(h)))
    bad = [k for k in rs["marshal"]
           if canon(rs["marshal"][k]) != canon(ra["marshal"].get(k, ""))]
    t.ok(not bad, f"marshal.dumps(code) same objects as stock's, up to "
         f"reference flags (seed {seed})", bad)

# Seed "random": stock and archive runs get different seeds, so only the
# seed-independent part of the report can be compared.
ps, rs = report("random")
pa, ra = report("random", archive)
if rs and ra:
    keys = sorted(k for k in R0 if k not in SEED_DEPENDENT)
    compare(rs["report"], ra["report"], "PYTHONHASHSEED=random", keys)
else:
    t.ok(False, "PYTHONHASHSEED=random: reports", describe(pa))

# A tree without .pyc files (read-only install): still served, same report.
shutil.rmtree(os.path.join(app, "sempkg", "__pycache__"), True)
shutil.rmtree(os.path.join(app, "sempkg", "inner", "__pycache__"), True)
ps, rs = report(BUILD_SEED, PYTHONDONTWRITEBYTECODE="1")
pa, ra = report(BUILD_SEED, archive, PYTHONDONTWRITEBYTECODE="1")
if rs and ra:
    compare(rs["report"], ra["report"], "no __pycache__")
    st = ra["after"] or {}
    served = st.get("hits", 0) - (ra["before"] or {}).get("hits", 0)
    t.ok(served == N_MODS and not os.path.isdir(
        os.path.join(app, "sempkg", "__pycache__")),
         f"no __pycache__: {served} of {N_MODS} served, none written", st)
else:
    t.ok(False, "no __pycache__: reports", describe(pa))
    t.skip("no __pycache__: served", "no report")
