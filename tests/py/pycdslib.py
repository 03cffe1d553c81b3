# SPDX-License-Identifier: MIT
"""Shared helpers for pycds's Python-level tests: the environment, running
the interpreter stock and with an archive, building archives, and reading
archives as include/pycds/archive.h lays them out.

Environment (set by `make check`):
  PYCDS           the pycds tool
  PYCDS_PYTHON    an interpreter with _pycds and its .pth hook installed
  PYCDS_WORKLOADS directory of workload scripts
  PYCDS_TMPDIR    scratch directory
"""
import difflib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import taplib
from taplib import at_end  # noqa: F401 (re-exported)

PYCDS = os.environ.get("PYCDS")
PYTHON = os.environ.get("PYCDS_PYTHON")
WORKLOADS = os.environ.get("PYCDS_WORKLOADS", "")
TMPDIR = os.environ.get("PYCDS_TMPDIR") or tempfile.gettempdir()

# The seed archives are built under; consumers use others.
BUILD_SEED = "0"


def require():
    """Skip the whole file unless the tool and the staged interpreter are
    there."""
    if not PYCDS or not os.access(PYCDS, os.X_OK):
        taplib.Tap.skip_all("PYCDS must name the built pycds tool "
                            "(run make check)")
    if not PYTHON or not os.access(PYTHON, os.X_OK):
        taplib.Tap.skip_all("PYCDS_PYTHON must name an interpreter with "
                            "_pycds staged (run make check)")


class Tap(taplib.Tap):
    """taplib.Tap that first skips the file if the environment is absent."""

    def __init__(self, plan):
        require()
        super().__init__(plan)


def scratch():
    """A fresh directory under PYCDS_TMPDIR, removed at exit."""
    os.makedirs(TMPDIR, exist_ok=True)
    d = tempfile.mkdtemp(prefix="pycds-test-", dir=TMPDIR)
    at_end(shutil.rmtree, d, True)
    return d


def clean_env(**extra):
    """The caller's environment without anything that steers Python or
    pycds (PYTHON*, PYCDS*), plus @extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYCDS", "PYTHON"))}
    env.update({k: str(v) for k, v in extra.items() if v is not None})
    return env


def run(argv, cwd=None, timeout=120, input=None, **env):
    """Run @argv with a clean environment plus @env; never raises on a
    timeout (returncode is then None and stderr says so)."""
    try:
        return subprocess.run(argv, cwd=cwd, env=clean_env(**env),
                              input=input, capture_output=True, text=True,
                              timeout=timeout, errors="backslashreplace")
    except subprocess.TimeoutExpired as e:
        def s(x):
            return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
        return subprocess.CompletedProcess(
            argv, None, s(e.stdout),
            s(e.stderr) + f"\nTIMEOUT after {timeout}s (killed)")


def build(out, argv, cwd=None, python=None, seed=BUILD_SEED, timeout=300):
    """pycds build -o OUT --python PYTHON ARGV... under hash seed @seed."""
    return run([PYCDS, "build", "-o", out, "--python", python or PYTHON,
                *argv], cwd=cwd, timeout=timeout, PYTHONHASHSEED=seed)


def pycds_lines(stderr):
    return [line for line in (stderr or "").splitlines()
            if line.startswith("pycds:")]


def describe(p, limit=4000):
    """A process's status and output, for diagnostics."""
    def cut(s):
        s = s or ""
        return s if len(s) <= limit else s[:limit] + f"... ({len(s)} chars)"
    args = [a if len(a) <= 80 else a[:40] + "..." + a[-20:]
            for a in map(str, p.args)]
    return (f"argv: {args}\nexit: {p.returncode}\n"
            f"stdout: {cut(p.stdout)!r}\nstderr: {cut(p.stderr)}")


def diff(a, b, a_name="stock", b_name="pycds"):
    return "\n".join(difflib.unified_diff(
        (a or "").splitlines(), (b or "").splitlines(), a_name, b_name,
        lineterm="", n=1))


# Runs a script as __main__, then prints on stderr one line
# "PYCDS-STATS {json}": _pycds.stats() (when _pycds is loaded) and
# "source_modules", the modules loaded from a .py file after start-up.
# Those the interpreter imports before site runs (the encodings package)
# are out of any archive's reach and not counted.  Aliases (one module
# object under two names) count once.  Build archives with the same runner
# so that its own imports are recorded too.
STATS_RUNNER = r"""
import runpy, sys
script = sys.argv[1]
sys.argv = sys.argv[1:]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    mods = {}
    for m in list(sys.modules.values()):
        spec = getattr(m, "__spec__", None)
        origin = getattr(spec, "origin", None)
        if isinstance(origin, str) and origin.endswith(".py"):
            mods[id(m)] = m.__name__
    _pc = sys.modules.get("_pycds")
    st = dict(_pc.stats()) if _pc else {}
    import json, subprocess
    early = subprocess.run([sys.executable, "-S", "-c",
                            "import sys; print(*sys.modules)"],
                           capture_output=True, text=True).stdout.split()
    st["source_modules"] = sorted(set(mods.values()) - set(early))
    st["module_names"] = sorted(sys.modules)
    sys.stdout.flush()
    print("PYCDS-STATS " + json.dumps(st), file=sys.stderr)
"""


def parse_stats(stderr):
    for line in (stderr or "").splitlines():
        if line.startswith("PYCDS-STATS "):
            return json.loads(line[len("PYCDS-STATS "):])
    return None


def strip_stats(stderr):
    return "".join(line for line in (stderr or "").splitlines(True)
                   if not line.startswith("PYCDS-STATS "))


def run_with_stats(script, archive=None, cwd=None, args=(), **env):
    """Run @script under the staged interpreter (with @archive if given)
    through STATS_RUNNER; returns (proc, stats or None).  proc.stderr has
    the stats line removed."""
    if archive is not None:
        env["PYCDS_ARCHIVE"] = archive
    p = run([PYTHON, "-c", STATS_RUNNER, script, *args], cwd=cwd, **env)
    st = parse_stats(p.stderr)
    p.stderr = strip_stats(p.stderr)
    return p, st


# ---- the archive format, as include/pycds/archive.h defines it ----
# Read from build/.../format-layout (tests/format_layout.c), so that the
# tests hold no copy of the format of their own.

def _format_layout():
    exe = os.path.join(os.path.dirname(PYCDS or ""), "format-layout")
    try:
        return json.loads(subprocess.run([exe], capture_output=True,
                                         check=True, timeout=30).stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


FORMAT = _format_layout() if PYCDS else None
if FORMAT:
    HEADER_SIZE = FORMAT["header_size"]
    OFF = {k.removeprefix("interp."): v[0]
           for k, v in FORMAT["header"].items()}
    _R = FORMAT["regions"]
    REGION_CODE, REGION_DATA, REGION_COLD, REGION_IDLE, REGION_NAMES = (
        _R["code"], _R["data"], _R["cold"], _R["idle"], _R["names"])
else:
    # Without a build (require() then skips the file): placeholders.
    HEADER_SIZE, OFF = 0, {k: 0 for k in ("build_id", "header_checksum",
                                          "regions")}
    REGION_CODE, REGION_DATA, REGION_COLD, REGION_IDLE, REGION_NAMES = \
        range(5)
BUILD_ID_OFF = OFF["build_id"]
CHECKSUM_OFF = OFF["header_checksum"]
REGIONS_OFF = OFF["regions"]


def _fields(d, off, layout):
    """The fields of a struct at @off of @d: ints, lists of u32 for arrays."""
    out = {}
    for k, (o, n) in layout["fields"].items():
        if n in (4, 8) and k not in ("span_off", "span_size"):
            out[k] = int.from_bytes(d[off + o:off + o + n], "little",
                                    signed=(k == "src_mtime"))
        else:
            out[k] = list(struct.unpack_from(f"<{n // 4}I", d, off + o))
    return out


def _u32(d, o):
    return struct.unpack_from("<I", d, o)[0]


def _u64(d, o):
    return struct.unpack_from("<Q", d, o)[0]


class Archive:
    """An archive file read as archive.h describes it (no checking)."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = d = f.read()
        self.path = path
        if not FORMAT:
            raise RuntimeError("no format-layout next to $PYCDS: make tests")
        hd = FORMAT["header"]
        h = self.h = {}
        for k, (o, n) in hd.items():
            k = k.removeprefix("interp.")
            if n in (4, 8):
                h[k] = int.from_bytes(d[o:o + n], "little")
        h["magic"] = d[0:8]
        o, n = hd["interp.cache_tag"]
        h["cache_tag"] = d[o:o + n].rstrip(b"\0").decode()
        o, n = hd["interp.abiflags"]
        h["abiflags"] = d[o:o + n].rstrip(b"\0").decode()
        o, n = hd["interp.build_id"]
        h["build_id"] = d[o:o + min(n, h["build_id_len"])].hex()
        h["regions"] = [struct.unpack_from("<QQ", d, REGIONS_OFF + 16 * i)
                        for i in range(FORMAT["regions"]["nr_all"])]
        h["names"] = struct.unpack_from("<QQ", d, OFF["names"])
        self.modules = []
        noff = h["names"][0]
        msize = FORMAT["module"]["size"]
        for i in range(h["nr_modules"]):
            off = h["modules_off"] + msize * i
            f = _fields(d, off, FORMAT["module"])
            m = {"index": i, "entry_off": off,
                 "name": d[noff + f["name_off"]:
                           noff + f["name_off"] + f["name_len"]].decode(),
                 "origin": d[noff + f["origin_off"]:
                             noff + f["origin_off"] + f["origin_len"]
                             ].decode(),
                 "flags": f["flags"], "src_mtime": f["src_mtime"],
                 "src_size": f["src_size"], "root": f["root"],
                 "span_off": f["span_off"], "span_size": f["span_size"],
                 "relocs": (f["reloc_first"], f["reloc_count"]),
                 "images": (f["image_first"], f["image_count"]),
                 "interns": (f["intern_first"], f["intern_count"]),
                 "fsets": (f["fset_first"], f["fset_count"]),
                 "checksum": f["checksum"]}
            self.modules.append(m)
        self.by_name = {m["name"]: m for m in self.modules}

    @property
    def base(self):
        return self.h["preferred_base"]

    def name_entry(self, i):
        """(off, size, hash) of names pool entry @i."""
        n = _fields(self.data, self.h["names_index_off"] +
                    FORMAT["name"]["size"] * i, FORMAT["name"])
        return n["off"], n["size"], n["hash"]

    def intern_fixup(self, i):
        f = _fields(self.data, self.h["interns_off"] +
                    FORMAT["fixup"]["size"] * i, FORMAT["fixup"])
        return f["slot"], f["arg"]


def header(path):
    """The main header fields of @path as a dict ("base" is the preferred
    base)."""
    a = Archive(path)
    h = dict(a.h)
    h["base"] = a.base
    return h


def header_checksum(data):
    """XXH3-64 of the header with its checksum field zeroed, or None."""
    hdr = bytearray(data[:HEADER_SIZE])
    struct.pack_into("<Q", hdr, CHECKSUM_OFF, 0)
    return xxh3_64(bytes(hdr))


def xxh3_64(data):
    """XXH3-64 through the xxhsum tool (Debian package xxhash), or None."""
    exe = shutil.which("xxhsum")
    if not exe:
        return None
    try:
        p = subprocess.run([exe, "-H3", "-"], input=data,
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode:
        return None
    # "XXH3 (stdin) = 78af5f94892f3950" or "78af5f94892f3950  stdin"
    for tok in p.stdout.decode(errors="replace").split():
        tok = tok.removeprefix("XXH3_")
        if len(tok) == 16:
            try:
                return int(tok, 16)
            except ValueError:
                pass
    return None


def site_dir():
    """The staged interpreter's site-packages (where _pycds lives)."""
    return run([PYTHON, "-c", "import sysconfig; "
                "print(sysconfig.get_paths()['purelib'])"]).stdout.strip()


def write_tree(root, files):
    """Create @files ({relative path: text}) under @root."""
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    # A helper, not a test: say so when prove runs tests/py/*.py.
    print("1..0 # SKIP helper module, not a test")


def require_bpf(top):
    """Skip the whole file (TAP plan 0) unless pycds-top can load and
    attach its BPF programs for PYTHON: root, BTF, USDT probes."""
    import subprocess as sp
    if os.geteuid() != 0 or not top:
        print("1..0 # SKIP needs root and PYCDS_TOP (loads BPF programs)")
        raise SystemExit(0)
    p = sp.run([top, "-b", "-n", "1", "-d", "0.1", "--python", PYTHON],
               capture_output=True, text=True, timeout=60)
    if p.returncode:
        print("1..0 # SKIP pycds-top cannot attach here (no BPF, or no "
              "USDT probes in this interpreter): " +
              p.stderr.strip()[-200:].replace("\n", " "))
        raise SystemExit(0)
