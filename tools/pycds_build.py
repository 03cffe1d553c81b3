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
import sys
import types


def fail(msg):
    print(f"pycds: {msg}", file=sys.stderr)
    sys.exit(1)


def read_records(paths):
    """name -> origin from the recorder's 'name<TAB>origin' lines, in the
    order the modules were first imported."""
    found, conflicts = {}, set()
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            name, sep, origin = line.partition("\t")
            if not sep or not name or name == "__main__":
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
    try:
        code = compile(data, origin, "exec", dont_inherit=True, optimize=-1)
    except (SyntaxError, ValueError) as e:
        return None, f"does not compile: {e}"
    return (name, origin, is_package, int(st.st_mtime), st.st_size, code), None


def main(argv):
    import argparse

    p = argparse.ArgumentParser(prog="pycds build")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--base", type=lambda s: int(s, 0), default=None)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("records", nargs="+")
    a = p.parse_args(argv)

    try:
        import _pycds
    except ImportError:
        fail(f"_pycds is not installed for {sys.executable} "
             f"(run: make install PYTHON={sys.executable})")

    found, conflicts = read_records(a.records)
    if not found:
        fail("no modules were recorded: did the command import anything "
             "from source, and is the pycds hook installed for its "
             "interpreter?")
    modules, left_out = [], []
    # Import order, not name order: a process importing the same modules
    # then touches the archive's pages, and its names pool, front to back.
    for name in found:
        if name in conflicts:
            left_out.append((name, "imported from different files"))
            continue
        entry, why = compile_module(name, found[name])
        if entry:
            modules.append(entry)
        else:
            left_out.append((name, why))
    kw = {} if a.base is None else {"base": a.base}
    summary, skipped = _pycds.write(a.output, modules, **kw)
    left_out += skipped
    if not a.quiet:
        print(f"pycds: wrote {a.output}: {summary['modules']} modules, "
              f"{summary['size']} bytes (code {summary['code']}, "
              f"data {summary['data']}, cold {summary['cold']}), "
              f"base 0x{summary['base']:x}")
        for name, why in sorted(left_out):
            print(f"pycds: left out {name}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
