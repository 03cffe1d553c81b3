# Prints a report of everything that must be the same stock and from an
# archive; test_semantics.py compares the two reports line by line.
import asyncio
import dis
import gc
import inspect
import io
import marshal
import sys
import traceback
from importlib.machinery import SourceFileLoader

import sempkg
import sempkg.sub as s

out = []


def p(*a):
    out.append(" ".join(map(str, a)))


def fresh(x):
    return "".join(list(x))


p("file", sempkg.__file__, s.__file__)
p("cached", sempkg.__cached__, s.__cached__)
p("spec", sempkg.__spec__.name, sempkg.__spec__.origin,
  sempkg.__spec__.submodule_search_locations, s.__spec__.parent,
  s.__spec__.has_location, s.__spec__.cached)
p("path", sempkg.__path__, getattr(s, "__path__", None))
p("loader", isinstance(s.__loader__, SourceFileLoader),
  s.__loader__.name, s.__loader__.path, s.__loader__.is_package("sempkg.sub"),
  sempkg.__loader__.is_package("sempkg"))
p("get_source", s.__loader__.get_source("sempkg.sub") == open(s.__file__).read())
p("getsource", inspect.getsource(s.closure))
p("getsourcelines", inspect.getsourcelines(s.K)[1])
p("doc", sempkg.__doc__, s.__doc__, s.K.__doc__)
p("consts", s.BIG, s.NEG, s.F, s.C, s.B, s.T, s.U)
p("small int identity", s.SMALL is int("5"), s.T[0] is int("1"))
p("frozenset", s.membership("beta"), s.membership("delta"),
  s.bmember(b"b"), s.tmember((2, "b")))
fs = [c for c in s.membership.__code__.co_consts if isinstance(c, frozenset)]
p("frozenset type", [type(c).__name__ for c in fs], [sorted(c) for c in fs],
  [hash(c) == hash(frozenset(c)) for c in fs])
p("closure", s.closure(2)(3), s.closure.__code__.co_cellvars)
p("eq set late", s.K() == s.K())
p("gen", list(s.gen()), asyncio.run(s.co()))
try:
    s.raiser()
except ValueError:
    p("traceback", "".join(traceback.format_exc().splitlines(True)[1:]))
names, varnames = s.names()
p("interned names", all(sys.intern(fresh(n)) is n for n in names),
  all(sys.intern(fresh(n)) is n for n in varnames),
  sys.intern(fresh(s.K.__init__.__code__.co_name)) is s.K.__init__.__code__.co_name)
f = io.StringIO()
dis.dis(s, file=f)
p("dis", f.getvalue())
src = compile(open(s.__file__, "rb").read(), s.__file__, "exec",
              dont_inherit=True)
p("code equal to compiled", s.raiser.__code__ ==
  [c for c in src.co_consts if getattr(c, "co_name", "") == "raiser"][0])
p("marshal round trip", marshal.loads(marshal.dumps(s.raiser.__code__)) ==
  s.raiser.__code__)
p("code attrs", s.raiser.__code__.co_filename, s.raiser.__code__.co_firstlineno,
  s.raiser.__code__.co_varnames, s.raiser.__code__.co_names,
  list(s.raiser.__code__.co_lines())[:3], s.raiser.__code__.co_code[:8])
p("gc", gc.collect() >= 0, gc.is_tracked(s.T))
p("repr", repr(s.U), ascii(s.U), s.U.encode())
print("\n".join(out))
