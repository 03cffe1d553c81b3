# SPDX-License-Identifier: MIT
"""The alerting rules operators get (contrib/pycds-alerts.yml): Prometheus's
promtool accepts them and its unit tests (tests/promtool/) pass; every
metric they use is one pycds-top exports; Documentation/fleet.rst shows
the file as it is."""
import os
import re
import shutil
import subprocess

from taplib import Tap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
RULES = os.path.join(ROOT, "contrib", "pycds-alerts.yml")
TESTS = os.path.join(ROOT, "tests", "promtool", "pycds-alerts.test.yml")
PROMTOOL = shutil.which("promtool")
if not PROMTOOL:
    Tap.skip_all("needs promtool (Debian's prometheus)")
t = Tap(4)


def promtool(*args, cwd=None):
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


p = promtool("check", "rules", RULES)
t.ok(p.returncode == 0 and "SUCCESS: 3 rules found" in p.stdout,
     "promtool check rules: 3 rules", p.stdout + p.stderr)
p = promtool("test", "rules", os.path.basename(TESTS),
             cwd=os.path.dirname(TESTS))
t.ok(p.returncode == 0 and "SUCCESS" in p.stdout,
     "promtool test rules: each alert fires when and where it should",
     p.stdout + p.stderr)

rules = open(RULES).read()
with open(os.path.join(ROOT, "tools", "top", "metrics.c")) as f:
    exported = set(re.findall(r"# TYPE (pycds_\w+) (\w+)", f.read()))
names = set()
for kind_name, kind in exported:
    names.add(kind_name)
    if kind == "histogram":
        names |= {kind_name + s for s in ("_bucket", "_sum", "_count")}
used = set(re.findall(r"\b(pycds_\w+)", rules))
t.ok(used and used <= names, "every metric the rules use is exported",
     f"used {sorted(used)}, unknown {sorted(used - names)}")

with open(os.path.join(ROOT, "Documentation", "fleet.rst")) as f:
    doc = f.read()
block = "\n".join("    " + ln if ln else "" for ln in rules.rstrip("\n")
                  .split("\n"))
t.ok("::\n\n" + block + "\n\n" in doc,
     "fleet.rst shows contrib/pycds-alerts.yml as it is")
