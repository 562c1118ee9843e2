"""The CDN-facing part of the benchmark (bench/EDGE.md), run by run.py:

  E1 cache hit    GET ?url= of W1 from a local origin that gives its answer
                  a lifetime: after the first request, every one is served
                  from the result cache without a fetch or a worker
  E2 revalidate   the same request with a matching If-None-Match: 304
  E3 first fetch  W1 by URL with the result cache off, from a plain HTTP
                  origin and from an HTTPS one (connections kept alive by
                  pixfork's client, as in production): the cost of TLS

Origins are bench/origin.py on loopback (the HTTPS one with an ECDSA
certificate made now by openssl and given to pixfork by --source-ca).
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request

import run

W1 = "valid/jpeg/photo_ladybird_2560x1600_baseline.jpg"
QUERY = "width=400&quality=80"


class Origin:
    def __init__(self, file, tls=None, max_age=None):
        cmd = [sys.executable, os.path.join(run.ROOT, "bench", "origin.py"), "--file", file]
        if tls:
            cmd += ["--cert", tls[0], "--key", tls[1]]
        if max_age is not None:
            cmd += ["--max-age", str(max_age)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "ready":
            self.stop()
            raise RuntimeError("the bench origin did not start")
        scheme = "https" if tls else "http"
        self.base = f"{scheme}://127.0.0.1:{line[1]}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def certificate(dir):
    """A CA and a certificate for 127.0.0.1 it signed (ECDSA P-256): the
    CA goes to --source-ca, the pair to the origin."""
    p = lambda name: os.path.join(dir, name)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for cmd in (
        ["req", "-x509", *ec, "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "1",
         "-subj", "/CN=pixfork bench CA"],
        ["req", *ec, "-keyout", p("origin.key"), "-out", p("origin.csr"),
         "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", p("origin.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
         "-CAcreateserial", "-out", p("origin.pem"), "-days", "1",
         "-extfile", p("ext")],
    ):
        if cmd[0] == "x509":
            with open(p("ext"), "w") as f:
                f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        subprocess.run(["openssl", *cmd], check=True, capture_output=True)
    return p("ca.pem"), p("origin.pem"), p("origin.key")


def cpu_ms(pids):
    """CPU time (user + system) of `pids`, in ms."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) * 1000.0 / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def url_path(origin):
    return f"/v1/resize?{QUERY}&url=" + urllib.parse.quote(f"{origin.base}/w1.jpg", safe="")


def main(args):
    secs, warm = args.seconds, args.warmup
    file = os.path.join(run.CORPUS, W1)
    tmp = tempfile.mkdtemp(prefix="pixfork-bench-edge-")
    ca, cert, key = certificate(tmp)
    private = ("--allow-url-source", "--allowed-private-networks", "127.0.0.1/32")
    rows = {}

    # E1, E2: the result cache with an origin that gives a lifetime.
    origin = Origin(file, max_age=3600)
    server = run.Server(args.workers, (*private, "--cache-size", "256MiB"))
    try:
        path = url_path(origin)
        with urllib.request.urlopen(f"http://{server.addr}{path}", timeout=30) as r:
            etag = r.headers["ETag"]
        run.log("E1: cache hits")
        run.wrk(server.addr, path, None, 16, warm)
        rows["hit"] = run.wrk(server.addr, path, None, 16, secs)
        run.log("E2: 304 revalidation")
        rows["304"] = run.wrk(server.addr, path, None, 16, secs,
                              headers=[f"If-None-Match: {etag}"])
        with urllib.request.urlopen(f"http://{server.addr}/metrics", timeout=10) as r:
            text = r.read().decode()
        hits = re.search(r"^pixfork_cache_hits_total (\S+)", text, re.M)
        rows["hits_counted"] = float(hits.group(1)) if hits else float("nan")
        with urllib.request.urlopen(f"http://{server.addr}/readyz", timeout=10) as r:
            slots = json.load(r).get("slots", [])
        rows["worker_runs"] = sum(s.get("requests", 0) for s in slots)
        rows["master_rss"] = run.rss_mib(server.proc.pid)
    finally:
        server.stop()
        origin.stop()

    # E3: the first fetch, plain and TLS, cache off.
    for scheme, tls in (("http", None), ("https", (cert, key))):
        origin = Origin(file, tls=tls)
        extra = (*private, "--source-ca", ca) if tls else private
        server = run.Server(args.workers, extra)
        try:
            path = url_path(origin)
            run.log(f"E3: W1 by URL over {scheme}")
            run.wrk(server.addr, path, None, 16, warm)
            ours = [server.proc.pid, *server.worker_pids()]
            before = (cpu_ms(ours), cpu_ms([origin.proc.pid]))
            r = run.wrk(server.addr, path, None, 16, secs)
            n = r["rps"] * secs
            r["cpu_ours"] = (cpu_ms(ours) - before[0]) / n
            r["cpu_origin"] = (cpu_ms([origin.proc.pid]) - before[1]) / n
            rows[scheme] = r
        finally:
            server.stop()
            origin.stop()

    fmt = run.fmt
    L = ["# pixfork benchmark: behind a CDN", ""]
    L.append(f"{os.cpu_count()} cores, {args.workers} workers, release build, loopback; wrk "
             f"(1 thread, keep-alive, c=16), {secs} s per measurement after a {warm} s "
             f"warm-up. Made by `bench/run.sh` (`--only edge` for this part alone). The "
             f"origin is bench/origin.py (Python) on the same cores.")
    L.append("")
    L.append("| measurement | req/s | p50 ms | p99 ms | non-2xx/3xx / errors |")
    L.append("|---|---:|---:|---:|---:|")
    names = {
        "hit": "E1 result cache hit: W1 (GET ?url=, origin max-age=3600)",
        "304": "E2 revalidation: the same with a matching If-None-Match (304)",
        "http": "E3 first fetch, cache off: W1 from an HTTP origin",
        "https": "E3 first fetch, cache off: W1 from an HTTPS origin (ECDSA P-256, kept alive)",
    }
    for k, label in names.items():
        r = rows[k]
        L.append(f"| {label} | {fmt(r['rps'])} | {fmt(r['p50'], 2)} | {fmt(r['p99'], 2)} | "
                 f"{r['non2xx'] + r['errors']} |")
    L.append("")
    L.append(f"During E1 and E2 the workers ran {rows['worker_runs']} request(s) in all (the "
             f"first miss) and `/metrics` counted {fmt(rows['hits_counted'], 0)} cache hits; "
             f"master RSS after them: {fmt(rows['master_rss'])} MiB.")
    L.append("")
    L.append("CPU per E3 request (ms, user + system, over the measured run):")
    L.append("")
    L.append("| origin | pixfork (master + workers) | the origin (Python) |")
    L.append("|---|---:|---:|")
    for k in ("http", "https"):
        L.append(f"| {k} | {fmt(rows[k]['cpu_ours'], 2)} | {fmt(rows[k]['cpu_origin'], 2)} |")
    L.append("")
    L.append("The origin shares the two cores, so its own TLS work (the encryption of "
             "every fetch, in Python) lowers the HTTPS throughput too; the "
             "CPU row shows what TLS costs pixfork itself.")
    L.append("")
    overhead = rows["http"]["rps"] / rows["https"]["rps"] - 1.0
    own = rows["https"]["cpu_ours"] / rows["http"]["cpu_ours"] - 1.0
    L.append("| target | measured | goal | met |")
    L.append("|---|---:|---:|:---:|")

    def target(label, measured, goal, higher=True, unit=""):
        met = measured >= goal if higher else measured <= goal
        L.append(f"| {label} | {fmt(measured, 2)}{unit} | {fmt(goal, 2)}{unit} | "
                 f"{'yes' if met else '**no**'} |")

    target("E1 cache hits req/s at c=16 ≥ 10,000", rows["hit"]["rps"], 10000)
    target("E1 cache hit p99 ms ≤ 5", rows["hit"]["p99"], 5.0, higher=False)
    target("E3 TLS overhead (HTTP req/s ÷ HTTPS req/s − 1) ≤ 10 %", overhead * 100, 10.0,
           higher=False, unit=" %")
    target("E3 TLS cost to pixfork itself (its CPU per request, HTTPS ÷ HTTP − 1) ≤ 10 %",
           own * 100, 10.0, higher=False, unit=" %")
    L.append("")
    text = "\n".join(L)
    with open(os.path.join(run.ROOT, "bench", "EDGE.md"), "w") as f:
        f.write(text)
    print(text)
