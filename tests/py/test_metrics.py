# SPDX-License-Identifier: MIT
"""pycds-top --listen scraped by a real Prometheus server: the hit counter
and the import-latency histogram match what the processes did, counts
survive the processes' exit, and hostile HTTP (huge headers, unknown
paths, methods, a slowloris connection) gets an error or a timeout
without disturbing collection."""
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

from pycdslib import PYTHON, WORKLOADS, Tap, build, require_bpf, scratch

TOP = os.environ.get("PYCDS_TOP")
PROM = shutil.which("prometheus")
if not PROM:
    print("1..0 # SKIP needs Debian's prometheus")
    raise SystemExit(0)
require_bpf(TOP)

t = Tap(12)
tmp = scratch()
script = os.path.join(WORKLOADS, "stdlib6.py")
archive = os.path.join(tmp, "s6.pycds")
build(archive, ["--", PYTHON, script])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


mport, pport = free_port(), free_port()
procs = []
top = subprocess.Popen([TOP, "--listen", f"127.0.0.1:{mport}", "-d", "0.5",
                        "--python", PYTHON], stderr=subprocess.PIPE,
                       text=True)
procs.append(top)
top.stderr.readline()
t.ok("serving" in top.stderr.readline(), "pycds-top serves metrics")
with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
    f.write(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: pycds
    static_configs:
      - targets: ['127.0.0.1:{mport}']
""")
prom = subprocess.Popen([PROM, f"--config.file={tmp}/prometheus.yml",
                         f"--storage.tsdb.path={tmp}/tsdb",
                         f"--web.listen-address=127.0.0.1:{pport}"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
procs.append(prom)


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def query(q):
    url = (f"http://127.0.0.1:{pport}/api/v1/query?" +
           urllib.parse.urlencode({"query": q}))
    res = json.loads(get(url)[1])["data"]["result"]
    return float(res[0]["value"][1]) if res else None


try:
    ready = False
    for _ in range(100):
        try:
            ready = get(f"http://127.0.0.1:{pport}/-/ready")[0] == 200
            break
        except OSError:
            time.sleep(0.2)
    t.ok(ready, "Prometheus is up")

    RUN = ("import runpy, sys, json, contextlib, io\n"
           "sys.argv = [sys.argv[1]]\n"
           "with contextlib.redirect_stdout(io.StringIO()):\n"
           "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
           "import _pycds\n"
           "print(_pycds.stats()['hits'])\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYCDS_")}
    hits, imports = 0, 0
    for _ in range(3):
        p = subprocess.run([PYTHON, "-X", "importtime", "-c", RUN, script],
                           env=dict(env, PYCDS_ARCHIVE=archive),
                           capture_output=True, text=True)
        hits += int(p.stdout.strip())
        imports += sum(1 for l in p.stderr.splitlines()
                       if l.startswith("import time:") and
                       "imported package" not in l)
    for _ in range(2):
        subprocess.run([PYTHON, script], env=env, capture_output=True)
    sel = f'archive="{archive}"'
    got = None
    for _ in range(60):
        got = query(f"sum(pycds_process_exits_total{{{sel}}})")
        if got == 3:
            break
        time.sleep(0.5)
    t.eq(got, 3.0, "three archive processes exited and were counted")
    t.eq(query(f'sum(pycds_imports_total{{{sel},result="hit"}})'),
         float(hits), f"hit counter equals the processes' hits ({hits})")
    t.eq(query(f"sum(pycds_import_duration_seconds_count{{{sel}}})"),
         float(imports), f"histogram count equals their imports ({imports})")
    t.eq(query(f'sum(pycds_import_duration_seconds_bucket{{{sel},le="+Inf"}})'),
         float(imports), "+Inf bucket equals the count")
    none = query('sum(pycds_process_exits_total{archive="none"})') or 0
    t.ok(none >= 2, f"stock processes counted under archive=\"none\" ({none})")

    # Hostile HTTP.
    base = f"http://127.0.0.1:{mport}"
    try:
        status = get(base + "/nope")[0]
    except urllib.error.HTTPError as e:
        status = e.code
    t.eq(status, 404, "unknown path: 404")
    try:
        req = urllib.request.Request(base + "/metrics", data=b"x",
                                     method="POST")
        status = urllib.request.urlopen(req, timeout=5).status
    except urllib.error.HTTPError as e:
        status = e.code
    t.eq(status, 405, "POST: 405")
    s = socket.create_connection(("127.0.0.1", mport), timeout=10)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " +
              b"a" * 200000 + b"\r\n\r\n")
    try:
        answer = s.recv(100)
    except (ConnectionResetError, socket.timeout):
        answer = b""
    s.close()
    t.ok(answer == b"" or answer.split(b" ")[1] in (b"413", b"431", b"400"),
         "a 200 kB header is refused", answer)
    slow = socket.create_connection(("127.0.0.1", mport))
    slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")   # and stop
    t0 = time.time()
    ok_meanwhile = get(base + "/metrics")[0] == 200
    slow.settimeout(30)
    try:
        closed = slow.recv(100) == b""
    except (ConnectionResetError, socket.timeout):
        closed = False
    t.ok(ok_meanwhile and closed and time.time() - t0 < 30,
         f"a slowloris connection is dropped after "
         f"{time.time() - t0:.0f} s while others are served")
    slow.close()
    t.eq(query(f'sum(pycds_imports_total{{{sel},result="hit"}})'),
         float(hits), "collection undisturbed by hostile requests")
finally:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
