# SPDX-License-Identifier: MIT
"""CPython's own test suite: stock, under pycds build, and from an archive.

Runs the selected test modules (by default a subset covering the import
system, strings, codecs, subprocess, pydoc, inspect, traceback, pickle
and threading; --all for the whole suite) three times with regrtest's
--junit-xml, and compares the outcome of every test case:

  stock     the interpreter as installed, no pycds;
  recorded  the same command under `pycds build --once` (the recorder must not
            change what the suite does), which builds the archive of
            every module the suite imported;
  archive   the same command with PYCDS_ARCHIVE set to that archive.

A test case whose outcome differs is run again, alone in its module,
stock and from the archive; a difference that does not repeat is
reported as flaky and not counted.  Cases listed in EXCLUDE (by name,
with the reason; see Documentation/runtime.rst) are left out of the
comparison.  Exit status 0 when every compared outcome is stock's.

Environment: PYCDS (the pycds binary), PYCDS_PYTHON (the interpreter).
Debian's interpreter needs libpython3.X-testsuite.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

SUBSET = ["test_importlib", "test_import", "test_codecs", "test_unicode",
          "test_str", "test_string", "test_subprocess", "test_pydoc",
          "test_inspect", "test_traceback", "test_pickle", "test_threading",
          "test_runpy", "test_pkgutil", "test_zipimport", "test_linecache",
          "test_sys_settrace", "test_code", "test_marshal"]

# Test cases whose outcome cannot be stock's from an archive, by id, with
# why.  Keep Documentation/runtime.rst ("What a program can still tell")
# in step.
EXCLUDE = {
    # 3.14+: LOAD_CONST specializes by immortality, and archived
    # constants are immortal (runtime.rst).
    "test.test_opcache.TestSpecializer.test_load_const":
        "archived constants are immortal: LOAD_CONST_IMMORTAL",
    "test.test_dis.DisTests.test_loop_quicken":
        "archived constants are immortal: LOAD_CONST_IMMORTAL",
    "test.test_dis.DisWithFileTests.test_loop_quicken":
        "archived constants are immortal: LOAD_CONST_IMMORTAL",
}

# regrtest in the main process, reporting at exit what pycds served it
# (worker processes are served too, and not counted here).
RUNNER = r"""
import atexit, json, runpy, sys
def report():
    try:
        import _pycds
        st = _pycds.stats()
    except ImportError:
        st = {}
    src = {m.__name__ for m in list(sys.modules.values())
           if str(getattr(getattr(m, "__spec__", None), "origin", "")
                  ).endswith((".py", ".pyc"))}
    st["source_modules"] = len(src)
    st["served_loaded"] = len(src & set(st.get("served", ())))
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


ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def outcomes(xml_path):
    """{test case id: outcome} from regrtest's JUnit XML."""
    res = {}
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError):
        return res
    for tc in root.iter("testcase"):
        # regrtest names a case by its full id; other writers split it.
        key = ".".join(x for x in (tc.get("classname"), tc.get("name"))
                       if x)
        # A subtest's parameters may print an object's address
        # (test_urlparse's lru_cache wrappers): one case, whatever the
        # address in this process.
        key = ADDRESS.sub(" at 0x", key)
        out = "ok"
        for child in tc:
            if child.tag in ("failure", "error", "skipped"):
                out = child.tag
        res[key] = out
    return res


def stats_of(stderr):
    for line in stderr.splitlines():
        if line.startswith("PYCDS-STATS "):
            return json.loads(line[len("PYCDS-STATS "):])
    return None


def summary_of(stdout):
    return [l.strip() for l in stdout.splitlines()
            if l.startswith("== Tests result") or
            re.match(r"^\d+ tests? (OK|failed|skipped|altered)", l) or
            l.startswith("Total duration")]


def suite_argv(python, tests, xml, jobs, extra=()):
    # A test that hangs is killed after 20 minutes, not the whole run.
    argv = [python, "-c", RUNNER, "--junit-xml", xml, "--timeout", "1200",
            *extra]
    if jobs > 1:
        argv += ["-j", str(jobs)]
    return argv + list(tests)


def run_suite(label, argv, log, **e):
    print(f"conformance: {label} run ...", flush=True)
    t0 = time.monotonic()
    p = subprocess.run(argv, env=env(**e), capture_output=True, text=True,
                       errors="backslashreplace", stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    with open(log, "w") as f:
        f.write(p.stdout)
        f.write("\n---- stderr ----\n")
        f.write(p.stderr)
    print(f"conformance: {label}: exit {p.returncode}, {took:.0f} s; " +
          " | ".join(summary_of(p.stdout)), flush=True)
    return p, took


def counts(res):
    return ", ".join(f"{v} {sum(1 for x in res.values() if x == v)}"
                     for v in ("ok", "failure", "error", "skipped"))


def differing(a, b):
    return sorted(k for k in set(a) | set(b)
                  if a.get(k) != b.get(k) and k not in EXCLUDE)


def module_of(case, tests):
    """The test module (as given to regrtest) a case id belongs to."""
    for t in sorted(tests, key=len, reverse=True):
        if case.startswith("test." + t + ".") or case.startswith(t + "."):
            return t
    parts = case.split(".")
    return parts[1] if parts[0] == "test" and len(parts) > 2 else parts[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tests", nargs="*", help="test modules (default: the "
                    "subset named in this file)")
    ap.add_argument("--all", action="store_true",
                    help="CPython's whole test suite")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                    help="regrtest worker processes (default: one per CPU)")
    ap.add_argument("--out", default="build/conformance")
    ap.add_argument("--summary", help="also write the results as JSON here")
    a = ap.parse_args()
    # The suite's own signal tests (threading's interrupt_main, the
    # signal module's) need SIGINT as a terminal gives it: a background
    # job or a CI runner may have it ignored, which children inherit, and
    # then a child waiting for its KeyboardInterrupt spins until the
    # timeout.  A Python handler here means SIG_DFL in every child.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    pycds = os.environ.get("PYCDS", "pycds")
    python = os.environ.get("PYCDS_PYTHON", "/usr/bin/python3")
    os.makedirs(a.out, exist_ok=True)
    out = os.path.abspath(a.out)
    probe = subprocess.run(
        [python, "-c", "import os, test.libregrtest, test; "
         "print(os.path.dirname(test.__file__))"],
        capture_output=True, text=True, env=env())
    if probe.returncode:
        print("conformance: CPython's test suite is not installed for "
              f"{python} (Debian: libpython3.X-testsuite)")
        return 1
    testdir = probe.stdout.strip()
    if a.all:
        tests = []
    elif a.tests:
        tests = a.tests
    else:
        tests = [t for t in SUBSET
                 if os.path.exists(os.path.join(testdir, t + ".py")) or
                 os.path.isdir(os.path.join(testdir, t))]
    what = "the whole suite" if a.all else f"{len(tests)} test modules"
    print(f"conformance: {what} for {python}, -j{a.jobs}", flush=True)

    # The recorded run: the suite under pycds build, which writes the
    # archive; its results must be stock's too.
    archive = os.path.join(out, "suite.pycds")
    rec_xml = os.path.join(out, "recorded.xml")
    for f in (archive, rec_xml):
        if os.path.exists(f):
            os.unlink(f)
    stock_p, stock_t = run_suite(
        "stock", suite_argv(python, tests, os.path.join(out, "stock.xml"),
                            a.jobs), os.path.join(out, "stock.log"))
    rec_p, rec_t = run_suite(
        "recorded", [pycds, "build", "--once", "-o", archive, "--python",
                     python, "--",
                     *suite_argv(python, tests, rec_xml, a.jobs)],
        os.path.join(out, "recorded.log"))
    for line in rec_p.stderr.splitlines():
        if line.startswith("pycds: wrote") or line.startswith(
                "pycds: recorded") or "layout run" in line:
            print("  " + line)
    if not os.path.exists(archive):
        print("conformance: pycds build wrote no archive:")
        print(rec_p.stderr[-3000:])
        return 1
    arc_p, arc_t = run_suite(
        "archive", suite_argv(python, tests, os.path.join(out, "archive.xml"),
                              a.jobs), os.path.join(out, "archive.log"),
        PYCDS_ARCHIVE=archive)

    stock = outcomes(os.path.join(out, "stock.xml"))
    rec = outcomes(rec_xml)
    arc = outcomes(os.path.join(out, "archive.xml"))
    for label, res in (("stock", stock), ("recorded", rec),
                       ("archive", arc)):
        print(f"{label}: {len(res)} test cases: {counts(res)}")
    st = stats_of(arc_p.stderr)
    if st:
        print(f"archive: {st.get('modules')} modules in the archive; the "
              f"main process was served {len(st.get('served', []))} "
              f"({st.get('hits')} hits, {st.get('misses')} misses, "
              f"{st.get('stale')} stale), {st.get('served_loaded')} of the "
              f"{st.get('source_modules')} source modules it had loaded at "
              f"exit; error {st.get('error')}")
    if EXCLUDE:
        print(f"excluded by name: {len(EXCLUDE)}")
        for k, why in sorted(EXCLUDE.items()):
            print(f"  {k}: {why}")

    bad = 0
    summary = {"tests": tests or "all", "python": python,
               "cases": {"stock": len(stock), "recorded": len(rec),
                         "archive": len(arc)},
               "stats": st, "excluded": sorted(EXCLUDE),
               "times": {"stock": stock_t, "recorded": rec_t,
                         "archive": arc_t}}
    for label, res, p in (("recorded", rec, rec_p), ("archive", arc, arc_p)):
        diff = differing(stock, res)
        flaky = []
        if diff:
            # Once more, module by module: stock and this way.
            mods = sorted({module_of(k, tests) for k in diff})
            print(f"{label}: {len(diff)} outcomes differ in "
                  f"{', '.join(mods)}; running those again", flush=True)
            extra = {"PYCDS_ARCHIVE": archive} if label == "archive" else {}
            s2, _ = run_suite(
                "stock again", suite_argv(
                    python, mods, os.path.join(out, f"stock-{label}.xml"),
                    a.jobs), os.path.join(out, f"stock-{label}.log"))
            if label == "recorded":
                tmp = os.path.join(out, "again.pycds")
                r2, _ = run_suite(
                    "recorded again",
                    [pycds, "build", "--once", "-o", tmp, "--python", python,
                     "--", *suite_argv(python, mods,
                                       os.path.join(out, "again.xml"),
                                       a.jobs)],
                    os.path.join(out, "again.log"))
            else:
                r2, _ = run_suite(
                    "archive again", suite_argv(
                        python, mods, os.path.join(out, "again.xml"), a.jobs),
                    os.path.join(out, "again.log"), **extra)
            s2r = outcomes(os.path.join(out, f"stock-{label}.xml"))
            a2r = outcomes(os.path.join(out, "again.xml"))
            still = [k for k in diff if s2r.get(k, stock.get(k)) !=
                     a2r.get(k, res.get(k))]
            flaky = [k for k in diff if k not in still]
            diff = still
        for k in flaky:
            print(f"  flaky ({label}): {k}: stock {stock.get(k)}, "
                  f"{label} {res.get(k)} the first time, the same on a rerun")
        summary[label] = {"different": diff, "flaky": flaky}
        if diff:
            bad = 1
            print(f"DIFFERENT outcomes ({label} against stock): {len(diff)}")
            for k in diff[:50]:
                print(f"  {k}: stock {stock.get(k)}, {label} {res.get(k)}")
        else:
            print(f"{label}: every test case's outcome is stock's")
    print(f"times: stock {stock_t:.0f} s, recorded {rec_t:.0f} s "
          f"(pycds build, archive included), archive {arc_t:.0f} s")
    if a.summary:
        with open(a.summary, "w") as f:
            json.dump(summary, f, indent=1)
    if not stock:
        print("no results")
        return 1
    return bad


if __name__ == "__main__":
    sys.exit(main())
