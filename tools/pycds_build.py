# SPDX-License-Identifier: MIT
"""Compile recorded modules and write a pycds archive.

Run by `pycds build` with the target interpreter, under PYTHONHASHSEED=0 so
that the same inputs give a byte-identical archive.  Module bodies are never
executed: sources are compiled the way importlib compiles them.
"""
import importlib.machinery
import importlib.util
import marshal
import os
import subprocess
import sys
import types
import warnings


def fail(msg):
    print(f"pycds: {msg}", file=sys.stderr)
    sys.exit(1)


def read_records(paths, ran=None, native=None, main=None, pids=None):
    """name -> origin from the recorder's 'name<TAB>origin' lines, in the
    order the modules were first imported.  Its '@<TAB>file<TAB>line<TAB>
    qualname' lines, code that ran, go to the set @ran; '!<TAB>name' lines,
    modules with no Python code, to the dict @native: name -> how many
    source modules were recorded before it; the scripts run as __main__ to
    the list @main; the '#<TAB>pid' lines, one per process recorded, to
    the set @pids."""
    found, conflicts = {}, set()
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            if line.startswith("#\t"):
                if pids is not None:
                    pids.add(line[2:])
                continue
            if line.startswith("@\t"):
                f = line.split("\t")
                if ran is not None and len(f) == 4 and f[2].isdigit():
                    ran.add((f[1], int(f[2]), f[3]))
                continue
            if line.startswith("!\t"):
                if native is not None:
                    native.setdefault(line[2:], len(found))
                continue
            name, sep, origin = line.partition("\t")
            if name == "__main__" and sep:
                if main is not None and origin not in main:
                    main.append(origin)
                continue
            if not sep or not name:
                continue
            if found.setdefault(name, origin) != origin:
                conflicts.add(name)
    return found, conflicts


def read_stable(origin):
    """(bytes, stat) of a file read while it did not change, or (None,
    reason)."""
    for _ in range(3):
        try:
            st = os.stat(origin)
            with open(origin, "rb") as f:
                data = f.read()
            after = os.stat(origin)
        except OSError as e:
            return None, f"cannot read {origin}: {e.strerror}"
        if (st.st_mtime_ns, st.st_size) == (after.st_mtime_ns, after.st_size):
            return data, st
    return None, f"{origin} keeps changing"


def compile_module(name, origin):
    """(entry, None) or (None, reason)."""
    data, st = read_stable(origin)
    if data is None:
        return None, st
    is_package = os.path.basename(origin).startswith("__init__.")
    if origin.endswith(tuple(importlib.machinery.BYTECODE_SUFFIXES)):
        # A sourceless module: its code is what the .pyc holds, loaded as
        # SourcelessFileLoader does (header checked, then unmarshalled).
        if len(data) < 16 or data[:4] != importlib.util.MAGIC_NUMBER:
            return None, f"{origin} is not a .pyc of this interpreter"
        try:
            code = marshal.loads(data[16:])
        except (EOFError, ValueError, TypeError) as e:
            return None, f"{origin} does not unmarshal: {e}"
        if not isinstance(code, types.CodeType):
            return None, f"{origin} does not hold a code object"
        return (name, origin, is_package, int(st.st_mtime), st.st_size,
                code, True), None
    # What compiling it warns (SyntaxWarning): the archive says so, and a
    # process then serves it only where it would read a valid .pyc.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = compile(data, origin, "exec", dont_inherit=True,
                           optimize=-1)
        except (SyntaxError, ValueError) as e:
            return None, f"does not compile: {e}"
    return (name, origin, is_package, int(st.st_mtime), st.st_size, code,
            False, bool(caught)), None


def stdlib_modules():
    """name -> origin of every pure-Python module of this interpreter's
    standard library, as the path finder would find it: packages with an
    __init__.py, names that are identifiers; site directories and the
    test suites left out."""
    import sysconfig
    root = os.path.realpath(sysconfig.get_paths()["stdlib"])
    skip_dirs = {"site-packages", "dist-packages", "__pycache__",
                 "test", "tests", "idle_test"}
    found = {}

    def walk(d, prefix):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            return
        for n in names:
            p = os.path.join(d, n)
            if n.endswith(".py") and os.path.isfile(p):
                mod = n[:-3]
                if mod == "__init__" or not mod.isidentifier():
                    continue
                found.setdefault(prefix + mod, p)
            elif (n.isidentifier() and n not in skip_dirs
                  and os.path.isfile(os.path.join(p, "__init__.py"))):
                found.setdefault(prefix + n, os.path.join(p, "__init__.py"))
                walk(p, prefix + n + ".")

    walk(root, "")
    # Where the path finder looks first: sys.path's entry for the
    # standard library may be a symbolic link to root.
    for entry in sys.path:
        if entry and os.path.realpath(entry) == root and entry != root:
            found = {n: entry + o[len(root):] for n, o in found.items()}
            break
    return found


def lower_layer(path):
    """What the layer at @path serves, for a layer built on it."""
    import _pycds
    try:
        d = _pycds.describe(path)
    except (OSError, ValueError) as e:
        fail(f"--on {path}: {e}")
    d["held"] = {(n, o, mt, sz) for n, o, _, mt, sz in d["modules"]}
    return d


def code_names(codes):
    """Every str a code object tree refers to: its names, and its str
    constants at any depth."""
    out, todo = set(), list(codes)

    def consts(v):
        if isinstance(v, str):
            out.add(v)
        elif isinstance(v, (tuple, frozenset)):
            for x in v:
                consts(x)
        elif isinstance(v, types.CodeType):
            todo.append(v)

    while todo:
        co = todo.pop()
        out.update(co.co_names, co.co_varnames, co.co_cellvars,
                   co.co_freevars, (co.co_name, co.co_qualname))
        for c in co.co_consts:
            consts(c)
    return out


# Replays the imports on stdin (NUL-separated tokens, UTF-8 with
# surrogates): "\1name" imports a module with no Python code, "\2name"
# interns a name (the script's), any other token is a name the next
# archived module uses.  Writes back the names
# that were interned already when first used: interning a fresh copy of
# one gives the older object.  Only builtins and sys: importing anything
# else would intern its names here first.  So no module with Python code
# is imported here, not even by a native one or an alias: a module the
# recorded process found as collections.abc (an alias of
# _collections_abc, made by the archived collections package) imported
# here would load collections, keyword and operator from their .pyc and
# make every name of theirs look interned before the archive's (on
# 3.13.5, 1758 of stdlib6's 2611 "found" names were not).
PREINTERNED = r"""
import sys
_be = sys.modules["_frozen_importlib_external"]
class _NoPythonCode:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        spec = _be.PathFinder.find_spec(name, path, target)
        if spec is not None and isinstance(spec.loader, (
                _be.SourceFileLoader, _be.SourcelessFileLoader)):
            raise ImportError(name, name=name)
        return None
sys.meta_path.insert(0, _NoPythonCode)
old, seen = [], set()
for s in sys.stdin.buffer.read().decode("utf-8", "surrogatepass").split("\0"):
    if s[:1] == "\1":
        try:
            __import__(s[1:])
        except BaseException:
            pass
        continue
    if s[:1] == "\2":
        sys.intern(s[1:])
        continue
    if s in seen:
        continue
    seen.add(s)
    fresh = s.encode("utf-8", "surrogatepass").decode("utf-8",
                                                      "surrogatepass")
    if len(s) > 1 and sys.intern(fresh) is not fresh:
        old.append(s)
sys.stdout.buffer.write("\0".join(old).encode("utf-8", "surrogatepass"))
"""


def preinterned(modules, native, scripts=()):
    """The names a process of this interpreter finds interned already when
    it first imports an archived module using them: those interned before
    the runtime starts (early in site, from the first .pth file) and by
    the modules with no Python code imported before (@native: name -> how
    many of @modules come before it), and the names of the @scripts run
    as __main__.  Asked of a fresh process without site that imports those
    in the recorded order; None if it fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYCDS_")}
    env.pop("PYTHONHASHSEED", None)
    before = {}
    for name, i in native.items():
        before.setdefault(i, []).append("\1" + name)
    tokens = []
    for path in scripts:
        try:
            with open(path, "rb") as f:
                code = compile(f.read(), path, "exec", dont_inherit=True)
        except (OSError, SyntaxError, ValueError):
            continue
        tokens += ["\2" + n for n in sorted(code_names([code]))]
    for i, m in enumerate(modules):
        tokens += before.pop(i, [])
        tokens += sorted(code_names([m[5]]))
    data = "\0".join(tokens).encode("utf-8", "surrogatepass")
    try:
        r = subprocess.run([sys.executable, "-S", "-c", PREINTERNED], input=data,
                           capture_output=True, env=env, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode:
        return None
    out = r.stdout.decode("utf-8", "surrogatepass")
    return set(out.split("\0")) if out else set()


def read_layout(path, ran):
    """(names found interned already, names that became canonical, how
    many processes made each canonical) in a layout run: its '~<TAB>name'
    and '=<TAB>name' lines.  Its '@' lines,
    archived code the processes ran, go to the set @ran."""
    old, new = set(), set()
    uses = {}
    try:
        with open(path, encoding="utf-8", errors="surrogatepass") as f:
            for line in f.read().split("\n"):
                if line[:2] == "~\t":
                    old.add(line[2:])
                elif line[:2] == "=\t":
                    new.add(line[2:])
                    uses[line[2:]] = uses.get(line[2:], 0) + 1
                elif line[:2] == "@\t":
                    v = line.split("\t")
                    if len(v) == 4 and v[2].isdigit():
                        ran.add((v[1], int(v[2]), v[3]))
    except (OSError, UnicodeDecodeError):
        pass
    return old, new - old, uses


def main(argv):
    import argparse

    p = argparse.ArgumentParser(prog="pycds build")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--base", type=lambda s: int(s, 0), default=None)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--layout", help="record of a layout run")
    p.add_argument("--hash-seed", type=int, default=None,
                   help="store hashes; PYTHONHASHSEED must be this seed")
    p.add_argument("--startup",
                   help="record of a bare start: its modules go first")
    p.add_argument("--unrecorded", type=int, default=0,
                   help="processes that could not write the record")
    p.add_argument("--stdlib", action="store_true",
                   help="every pure-Python module of the standard library")
    p.add_argument("--on", metavar="LOWER",
                   help="a layer on LOWER: what LOWER serves is left out")
    p.add_argument("--recipe", metavar="FILE",
                   help="how the archive is made, stored in it as it is")
    p.add_argument("records", nargs="*")
    a = p.parse_args(argv)
    if not a.records and not a.stdlib:
        p.error("give a record or --stdlib")

    try:
        import _pycds
    except ImportError:
        fail(f"_pycds is not installed for {sys.executable} "
             f"(run: make install PYTHON={sys.executable})")

    ran, native, scripts, pids = set(), {}, [], set()
    found, conflicts = read_records(a.records, ran, native, scripts, pids)
    if a.stdlib:
        # What the command imported of the standard library first, in
        # its order (and laid out from its runs); nothing else of it.
        std = stdlib_modules()
        found = {n: o for n, o in found.items() if std.get(n) == o}
        conflicts &= set(found)
        recorded = len(found)
        for name, origin in std.items():
            found.setdefault(name, origin)
    lower = lower_layer(a.on) if a.on else None
    if not found:
        fail("no modules were recorded: did the command import anything "
             "from source, and is the pycds hook installed for its "
             "interpreter?")
    modules, left_out, on_lower = [], [], 0
    # Import order, not name order: a process importing the same modules
    # then touches the archive's pages, and its names pool, front to back.
    for name in found:
        if name in conflicts:
            left_out.append((name, "imported from different files"))
            continue
        entry, why = compile_module(name, found[name])
        if entry and lower and entry[:2] + entry[3:5] in lower["held"]:
            # Served by the lower layer, from this very source.
            on_lower += 1
        elif entry:
            modules.append(entry)
        else:
            left_out.append((name, why))
    # The modules a bare start imports (every process of the interpreter
    # does, before its program) go first: their names, at the front of
    # the pool, share pages, and a small program copies a few of them
    # instead of a page for each name.
    layout_order = modules
    if a.startup:
        first = read_records([a.startup])[0]
        rank = {n: i for i, n in enumerate(first)}
        layout_order = sorted(modules, key=lambda m: rank.get(m[0], len(rank)))
    kw = {} if a.base is None else {"base": a.base}
    if a.stdlib:
        kw["stdlib"] = True
    if lower:
        # Above the lower layer, at the next 2 MiB boundary, so that both
        # map at their preferred bases; function versions after its own.
        lo, hi = lower["preferred_base"], lower["preferred_base"] + lower["size"]
        if a.base is None:
            kw["base"] = (hi + (2 << 20) - 1) & ~((2 << 20) - 1)
        elif lo <= a.base < hi:
            fail(f"--base 0x{a.base:x} overlaps {a.on} "
                 f"(0x{lo:x}-0x{hi:x})")
        elif a.base < lo:
            # Below the lower layer: the writer refuses, before it
            # replaces anything, an archive that would reach it.
            kw["end"] = lo
        if lower["versions_first"]:
            kw["versions_first"] = (lower["versions_first"]
                                    + lower["versions_count"])
        kw["on"] = (lower["checksum"], lo, lower["size"])
    if a.hash_seed is not None:
        # Hashes are stored as this process computes them: it must run
        # under the seed the header will name.
        if os.environ.get("PYTHONHASHSEED") != str(a.hash_seed):
            fail(f"--hash-seed {a.hash_seed} needs PYTHONHASHSEED="
                 f"{a.hash_seed} in the environment")
        kw["hash_seed"] = a.hash_seed
    # Slots a process rewrites (names interned before the archive's) are
    # laid out with what it writes; without the list, the layout is only
    # less shared, never wrong.
    kept, names = {m[0] for m in modules}, list(found)
    kw["preinterned"] = preinterned(modules, {
        n: sum(1 for x in names[:k] if x in kept) for n, k in native.items()},
        scripts)
    if a.layout:
        old, new, uses = read_layout(a.layout, ran)
        # How many of the layout run's processes interned each name: the
        # pool puts the names most processes use first (a layer shared
        # by several programs keeps what each uses in fewer pages).
        kw["name_uses"] = uses
        if kw["preinterned"] is not None:
            # What a process of the command did is known for the names
            # it used; the prediction stands for the others.
            kw["preinterned"] = (kw["preinterned"] - new) | old
    # Archived code the layout run ran: laid out, with its constants, with
    # what a process writes.
    kw["ran"] = ran
    if a.recipe:
        with open(a.recipe, "rb") as f:
            kw["recipe"] = f.read()
    try:
        summary, skipped = _pycds.write(a.output, layout_order, **kw)
    except ValueError as e:
        if "end" not in kw:
            raise
        fail(f"--base 0x{a.base:x}: {e} (where {a.on} begins)")
    left_out += skipped
    if not a.quiet:
        print(f"pycds: wrote {a.output}: {summary['modules']} modules, "
              f"{summary['size']} bytes (code {summary['code']}, "
              f"data {summary['data']}, idle {summary['idle']}, "
              f"cold {summary['cold']}), "
              f"base 0x{summary['base']:x}"
              + (f", hashes for PYTHONHASHSEED={a.hash_seed}"
                 if a.hash_seed is not None else ""))
        if lower:
            print(f"pycds: {on_lower} modules left to {a.on}, which "
                  f"serves them")
        n, u = len(pids), a.unrecorded
        what = (f"{len(found)} modules of the standard library, "
                f"{recorded} of them recorded from {n} "
                f"process{'es' if n != 1 else ''}" if a.stdlib else
                f"recorded {len(found)} modules from {n} "
                f"process{'es' if n != 1 else ''}")
        print(f"pycds: {what}"
              + (f"; {u} process{'es' if u != 1 else ''} could not write "
                 f"the record (run as another user?) and "
                 f"{'are' if u != 1 else 'is'} not recorded" if u else "")
              + (f"; the layout run saw {len(ran)} archived functions run"
                 if a.layout else "; no layout run"))
        for name, why in sorted(left_out):
            print(f"pycds: left out {name}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
