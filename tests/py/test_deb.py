# SPDX-License-Identifier: MIT
"""The Debian packages: `make deb` builds them and lintian passes them;
installed into a clean Debian 12 chroot (tools/chroot.sh's bookworm:
minbase, python3 and man), the loader's unit is enabled, a Python
package installed afterwards fires pycds's trigger, the unit's command run
as systemd runs it publishes an archive built for a workload, which a
process is served from with stock's output; the man pages are there;
purged, they leave the interpreter as it was (sys.path and modules at
start, `-c pass`, the site directories, no pycds file left).

The packages are built for Debian 12's python3, on the host: under any
other interpreter this skips.
"""
import os
import subprocess

from pycdslib import PYTHON, WORKLOADS, Tap, describe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
if os.geteuid() != 0:
    Tap.skip_all("needs root (builds and enters a chroot)")
base = subprocess.run([PYTHON, "-c", "import sys, os; "
                       "print(os.path.realpath(sys._base_executable))"],
                      capture_output=True, text=True).stdout.strip()
debian12 = open("/etc/debian_version").read().startswith("12") \
    if os.path.exists("/etc/debian_version") else False
if base != os.path.realpath("/usr/bin/python3") or not debian12:
    Tap.skip_all(f"the packages are for Debian 12's /usr/bin/python3 on the "
                 f"host, not {base}")
t = Tap(10)

p = subprocess.run(["make", "--no-print-directory", "-s", "deb-run"],
                   cwd=ROOT, capture_output=True, text=True, timeout=1800)
debdir = os.path.join(ROOT, "build", "deb")
debs = sorted(f for f in os.listdir(debdir) if f.endswith(".deb")) \
    if os.path.isdir(debdir) else []
if not t.ok(p.returncode == 0 and "pycds_0.5.0_amd64.deb" in debs and
            "python3-pycds_0.5.0_amd64.deb" in debs and
            not any(ln.startswith(("E:", "W:")) for ln in
                    p.stdout.splitlines()),
            "make deb: pycds and python3-pycds built, lintian has no error "
            "or warning", describe(p)):
    raise SystemExit(1)

p = subprocess.run(["sh", os.path.join(ROOT, "tools", "chroot.sh"), "run",
                    "bookworm", "sh", os.path.join(ROOT, "tests",
                                                   "deb-install.sh"),
                    debdir, os.path.join(WORKLOADS, "stdlib6.py")],
                   capture_output=True, text=True, timeout=1800)
kv = {}
for ln in p.stdout.splitlines():
    k, sep, v = ln.partition("=")
    if sep and k not in kv:
        kv[k] = v
diag = describe(p)
t.ok(kv.get("installed") == "yes" and
     sum(1 for ln in p.stdout.splitlines()
         if ln.startswith("package=") and "install ok installed" in ln) == 2,
     "apt installs both into a clean Debian 12", diag)
t.ok(kv.get("unit_enabled") == "yes" and
     "--foreground" in kv.get("unit_command", ""),
     "the loader's unit is enabled; its command runs in the foreground",
     diag)
t.ok(kv.get("trigger") == "yes",
     "installing a Python package fires pycds's dpkg trigger", diag)
t.ok(kv.get("build_status") == "0" and
     "/run/pycds/app.pycds" in kv.get("status_line", "") and
     " yes " in kv.get("status_line", ""),
     "pycds build into /var/lib/pycds: the loader publishes it, "
     "--status says it fits", diag)
hits = kv.get("served_hits", "").split()[0] if kv.get("served_hits") else ""
t.ok(kv.get("served_status") == "0" and kv.get("same_output") == "yes" and
     hits.isdigit() and int(hits) >= 50 and "error=None" in
     kv.get("served_hits", ""),
     "a process is served from the published archive with stock's output",
     diag)
t.ok(all(kv.get(f"man_{m}") == "yes" for m in
         ("pycds", "pycds-loader", "pycds-top", "pycds-archive")),
     "man pycds, pycds-loader, pycds-top and 5 pycds-archive", diag)
t.ok(kv.get("purged") == "yes", "apt purges both", diag)
t.ok(kv.get("same_python") == "yes" and kv.get("same_pass") == "yes",
     "after the purge: sys.path, start-up modules and -c pass as before",
     diag)
t.ok(kv.get("same_site") == "yes" and kv.get("same_files") == "yes" and
     kv.get("files_after", "x").strip() == "",
     "after the purge: the site directories as before, no pycds file left",
     diag)
