# SPDX-License-Identifier: MIT
"""Shared helpers for pycds's Python-level tests: TAP output, running the
interpreter stock and with an archive, building archives, reading headers.

Environment (set by `make check`):
  PYCDS           the pycds tool
  PYCDS_PYTHON    an interpreter with _pycds and pycds.pth installed
  PYCDS_WORKLOADS directory of workload scripts
  PYCDS_TMPDIR    scratch directory
"""
import atexit
import os
import shutil
import struct
import subprocess
import sys
import tempfile

PYCDS = os.environ.get("PYCDS")
PYTHON = os.environ.get("PYCDS_PYTHON")
WORKLOADS = os.environ.get("PYCDS_WORKLOADS", "")
TMPDIR = os.environ.get("PYCDS_TMPDIR") or tempfile.gettempdir()


class Tap:
    """A TAP producer: plan up front, one line per check, exit status."""

    def __init__(self, plan):
        if not (PYCDS and PYTHON and os.access(PYTHON, os.X_OK)):
            print("1..0 # SKIP PYCDS and PYCDS_PYTHON must name the built "
                  "tool and a staged interpreter (run make check)")
            sys.exit(0)
        self.n = 0
        self.failed = 0
        print(f"1..{plan}", flush=True)
        self.plan = plan
        atexit.register(self._end)

    def ok(self, cond, desc, diag=None):
        self.n += 1
        print(f"{'ok' if cond else 'not ok'} {self.n} - {desc}", flush=True)
        if not cond:
            self.failed += 1
            if diag:
                self.diag(diag)
        return cond

    def eq(self, got, want, desc):
        return self.ok(got == want, desc,
                       f"got:  {got!r}\nwant: {want!r}")

    def skip(self, desc, reason):
        self.n += 1
        print(f"ok {self.n} - {desc} # SKIP {reason}", flush=True)

    def diag(self, text):
        for line in str(text).splitlines():
            print(f"# {line}")
        sys.stdout.flush()

    def _end(self):
        if self.n != self.plan:
            self.diag(f"planned {self.plan} checks, ran {self.n}")
            os._exit(1)
        if self.failed:
            os._exit(1)


def scratch():
    os.makedirs(TMPDIR, exist_ok=True)
    d = tempfile.mkdtemp(prefix="pycds-test-", dir=TMPDIR)
    atexit.register(shutil.rmtree, d, True)
    return d


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYCDS_") and k != "PYTHONHASHSEED"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(argv, cwd=None, timeout=120, **env):
    return subprocess.run(argv, cwd=cwd, env=clean_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def build(out, argv, cwd=None, python=None):
    """pycds build -o out --python PYTHON <argv>; returns CompletedProcess."""
    return run([PYCDS, "build", "-o", out, "--python", python or PYTHON,
                *argv], cwd=cwd, timeout=300)


def pycds_lines(stderr):
    return [l for l in stderr.splitlines() if l.startswith("pycds:")]


# Python snippet that runs a script as __main__ and then prints, on stderr,
# _pycds.stats() and the number of modules the process loaded from source
# after start-up (those the interpreter imports before site runs, such as
# the encodings package, are out of any archive's reach).  Build archives
# with the same runner so that its own imports are recorded too.
STATS_RUNNER = r"""
import runpy, sys
script = sys.argv[1]
sys.argv = sys.argv[1:]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    import json, subprocess
    from importlib.machinery import SourceFileLoader
    def source(mods):
        # Unique module objects: some packages alias modules under
        # several names (requests.packages.urllib3 is urllib3).
        return {m.__name__ for m in {id(m): m for m in mods}.values()
                if isinstance(getattr(getattr(m, "__spec__", None),
                                      "loader", None), SourceFileLoader)}
    early = subprocess.run([sys.executable, "-S", "-c",
                            "import sys; print(*sys.modules)"],
                           capture_output=True, text=True).stdout.split()
    mods = source(list(sys.modules.values())) - set(early)
    try:
        import _pycds
        st = _pycds.stats()
    except ImportError:
        st = {}
    st["source_modules"] = len(mods)
    print("PYCDS-STATS " + json.dumps(st), file=sys.stderr)
"""


def run_with_stats(script, archive=None, cwd=None, **env):
    """Run @script under the staged interpreter; returns (proc, stats)."""
    import json
    if archive:
        env["PYCDS_ARCHIVE"] = archive
    p = run([PYTHON, "-c", STATS_RUNNER, script], cwd=cwd, **env)
    stats = None
    for line in p.stderr.splitlines():
        if line.startswith("PYCDS-STATS "):
            stats = json.loads(line[len("PYCDS-STATS "):])
    return p, stats


# The header layout of include/pycds/archive.h (format 1).
HEADER = struct.Struct("<8sIIQQ")          # magic, version, size, file, base
INTERP_OFF = 32
BUILD_ID_OFF = INTERP_OFF + 4 + 4 + 16 + 8
HEADER_SIZE = 360
CHECKSUM_OFF = HEADER_SIZE - 32 - 8        # header_checksum
REGIONS_OFF = 120


def header(path):
    with open(path, "rb") as f:
        data = f.read(HEADER_SIZE)
    magic, version, size, file_size, base = HEADER.unpack_from(data)
    regions = [struct.unpack_from("<QQ", data, REGIONS_OFF + 16 * i)
               for i in range(4)]
    return {"magic": magic, "version": version, "file_size": file_size,
            "base": base, "regions": regions}


def xxh3_64(data):
    """XXH3-64 through the xxhsum tool (Debian package xxhash), or None."""
    exe = shutil.which("xxhsum")
    if not exe:
        return None
    p = subprocess.run([exe, "-H3", "-"], input=data, capture_output=True)
    if p.returncode:
        return None
    # "XXH3 (stdin) = 78af5f94892f3950"
    return int(p.stdout.split()[-1].decode(), 16)
