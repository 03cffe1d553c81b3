# SPDX-License-Identifier: MIT
"""CPython's own test suite with and without an archive.

Builds an archive of everything the selected test modules import (the
standard library and the tests themselves), then runs them stock and with
PYCDS_ARCHIVE, each with --junit-xml, and compares the outcome of every
test case.  Also reports how many of the source modules the archived run
loaded came from the archive.

Environment: PYCDS, PYCDS_PYTHON.  Needs Debian's libpython3.11-testsuite.
"""
import argparse
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

TESTS = ["test_importlib", "test_import", "test_inspect", "test_traceback",
         "test_dis", "test_code", "test_compile", "test_sys", "test_types",
         "test_frozen", "test_pkgutil", "test_runpy", "test_zipimport",
         "test_linecache", "test_warnings", "test_unittest"]

# regrtest run through runpy, printing _pycds.stats() and the number of
# unique source modules loaded after start-up when it exits.
RUNNER = r"""
import atexit, json, runpy, sys, subprocess
def report():
    from importlib.machinery import SourceFileLoader
    early = subprocess.run([sys.executable, "-S", "-c",
                            "import sys; print(*sys.modules)"],
                           capture_output=True, text=True).stdout.split()
    import sysconfig
    stdlib = sysconfig.get_paths()["stdlib"] + "/"
    src = {m.__name__: m.__spec__.origin
           for m in {id(m): m for m in list(sys.modules.values())}.values()
           if isinstance(getattr(getattr(m, "__spec__", None), "loader", None),
                         SourceFileLoader) and m.__name__ not in early}
    # The standard library (the tests included): not modules the tests
    # write to temporary directories at run time.
    mods = {n for n, o in src.items() if str(o).startswith(stdlib)}
    served = {m.__name__ for m in list(sys.modules.values())
              if type(getattr(getattr(m, "__spec__", None), "loader", None)).__name__
              == "ArchiveLoader"}
    try:
        import _pycds
        st = _pycds.stats()
    except ImportError:
        st = {}
    st["source_modules"] = len(mods)
    st["served_modules"] = len(served & mods)
    st["not_served"] = sorted(f"{n} ({src[n]})" for n in mods - served)
    st["outside_stdlib"] = len(src) - len(mods)
    print("PYCDS-STATS " + json.dumps(st), file=sys.__stderr__)
atexit.register(report)
sys.argv = ["-m test"] + sys.argv[1:]
runpy.run_module("test", run_name="__main__", alter_sys=True)
"""


def env(**extra):
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("PYCDS_") and k != "PYTHONHASHSEED"}
    e.update(extra)
    return e


def outcomes(xml_path):
    """{test case id: outcome} from regrtest's JUnit XML."""
    res = {}
    root = ET.parse(xml_path).getroot()
    for tc in root.iter("testcase"):
        key = f"{tc.get('classname')}.{tc.get('name')}"
        out = "ok"
        for child in tc:
            if child.tag in ("failure", "error", "skipped"):
                out = child.tag
        res[key] = out
    return res


def run(python, tests, out, **e):
    xml = out + ".xml"
    p = subprocess.run([python, "-c", RUNNER, "--junit-xml", xml, *tests],
                       env=env(**e), capture_output=True, text=True)
    stats = None
    for line in p.stderr.splitlines():
        if line.startswith("PYCDS-STATS "):
            stats = json.loads(line[len("PYCDS-STATS "):])
    summary = [l for l in p.stdout.splitlines()
               if l.startswith("== Tests result") or " tests OK" in l or
               "test failed" in l or "tests failed" in l]
    return outcomes(xml) if os.path.exists(xml) else {}, stats, summary, p


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tests", nargs="*", default=TESTS)
    ap.add_argument("--out", default="build/conformance")
    a = ap.parse_args()
    pycds = os.environ.get("PYCDS", "pycds")
    python = os.environ.get("PYCDS_PYTHON", "/usr/bin/python3")
    os.makedirs(a.out, exist_ok=True)
    if subprocess.run([python, "-c", "import test.libregrtest"],
                      capture_output=True).returncode:
        print("conformance: CPython's test suite is not installed "
              "(Debian: libpython3.11-testsuite)")
        return 1
    archive = os.path.abspath(os.path.join(a.out, "stdlib-tests.pycds"))
    print(f"conformance: recording {len(a.tests)} test modules", flush=True)
    b = subprocess.run([pycds, "build", "-o", archive, "--python", python,
                        "--", python, "-c", RUNNER, *a.tests], env=env(),
                       capture_output=True, text=True)
    print("\n".join(l for l in b.stdout.splitlines() if "wrote" in l))
    if not os.path.exists(archive):
        print(b.stderr[-2000:])
        return 1
    stock, _, ssum, sp = run(python, a.tests,
                             os.path.join(a.out, "stock"))
    fast, st, fsum, fp = run(python, a.tests, os.path.join(a.out, "pycds"),
                             PYCDS_ARCHIVE=archive)
    diff = sorted(k for k in set(stock) | set(fast)
                  if stock.get(k) != fast.get(k))
    print(f"stock: {len(stock)} test cases: " +
          ", ".join(f"{v} {sum(1 for x in stock.values() if x == v)}"
                    for v in ("ok", "failure", "error", "skipped")))
    print(f"pycds: {len(fast)} test cases: " +
          ", ".join(f"{v} {sum(1 for x in fast.values() if x == v)}"
                    for v in ("ok", "failure", "error", "skipped")))
    print("stock summary: " + " | ".join(ssum))
    print("pycds summary: " + " | ".join(fsum))
    if st:
        share = st["served_modules"] / max(1, st["source_modules"])
        print(f"archive: {st.get('hits')} hits, {st['served_modules']} of "
              f"{st['source_modules']} standard-library modules served "
              f"({share:.1%}); {st['outside_stdlib']} modules from outside "
              f"the standard library (written by the tests); "
              f"error {st.get('error')}")
        for m in st["not_served"][:40]:
            print(f"  not served: {m}")
    if diff:
        print(f"DIFFERENT outcomes: {len(diff)}")
        for k in diff[:30]:
            print(f"  {k}: stock {stock.get(k)}, pycds {fast.get(k)}")
        return 1
    if not stock:
        print("no results")
        return 1
    print("identical outcomes for every test case")
    return 0


if __name__ == "__main__":
    sys.exit(main())
