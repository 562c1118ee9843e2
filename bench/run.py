#!/usr/bin/env python3
"""The pixfork benchmark: one run, one Markdown table.

Started by bench/run.sh (which installs wrk and djpeg and builds the release
binaries). Everything runs on loopback, every load is bounded in time, and
every process it starts is stopped by its pid before it exits.

Workloads (real photos from ../shared/corpus):
  W1 thumbnail  4 MP baseline JPEG -> fit within 400 px wide, Lanczos3, JPEG q80
  W2 blur       1.3 MP JPEG -> gaussian sigma 3 -> JPEG q80
  W3 GIF        20-frame animated GIF -> every frame 160 px wide -> animated GIF
  W4 /healthz   at a fixed 20 req/s, latency from the scheduled send time,
                while W1 saturates the workers (bench/peers.py)
  peers         sharp and FastAPI + Pillow, measured in the same run on the
                same cores (bench/peers.py)

For W1-W3: requests/s at concurrency 1, 4, 16 (wrk, HTTP/1.1 keep-alive),
p50/p99 at 16, the in-process throughput of the same request on one core
(bench/inproc.rs: the worker's parser and engine in a loop, no HTTP, no
IPC), and efficiency = server req/s / (workers x in-process req/s).
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "..", "shared", "corpus")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.path.join(TARGET, "release", "pixfork")
INPROC = os.path.join(TARGET, "release", "examples", "inproc")
PROBE = os.path.join(TARGET, "release", "examples", "probe")
POST_LUA = os.path.join(ROOT, "bench", "post.lua")

WORKLOADS = [
    # name, file, op, query, description
    ("W1 thumbnail", "valid/jpeg/photo_ladybird_2560x1600_baseline.jpg", "resize",
     "width=400&quality=80", "2560x1600 JPEG (1.2 MB) -> 400 wide, Lanczos3, q80"),
    ("W2 blur", "valid/jpeg/photo_meadow_1280x1024_progressive.jpg", "blur",
     "sigma=3&quality=80", "1280x1024 progressive JPEG -> blur sigma 3, q80"),
    ("W3 GIF", "valid/gif/anim_210x210_20frames_varied_delays.gif", "resize",
     "width=160", "210x210 GIF, 20 frames -> 160 wide, animated GIF"),
]

# Each fast path against the code it replaced, in-process on one core:
# (label, workload, bench/inproc.rs flags for "off", flags for "on").
FAST_PATHS = [
    ("JPEG shrink-on-load (libjpeg DCT scaling)", "W1 thumbnail", ["--no-shrink"], []),
    ("libjpeg-turbo instead of zune-jpeg, full-size decode", "W1 thumbnail",
     ["--no-libjpeg"], ["--no-shrink"]),
    ("libjpeg-turbo instead of zune-jpeg (progressive), full-size decode", "W2 blur",
     ["--no-libjpeg"], ["--no-shrink"]),
    ("gaussian blur: exact 13-tap gaussian on a shrunk copy instead of image's box blur",
     "W2 blur", ["--old-blur"], ["--no-shrink"]),
    ("blur on a 1/2 JPEG decode (shrink-on-load for blur)", "W2 blur", ["--no-shrink"], []),
    ("JPEG encoding: libjpeg-turbo instead of jpeg-encoder", "W2 blur", ["--old-jpeg-encoder"], []),
    ("GIF: one Wu palette + table lookup instead of NeuQuant per frame", "W3 GIF",
     ["--neuquant"], []),
]

# Options that trade speed for something else, in-process on one core:
# (label, workload, what the option adds to the workload's query).
OPTIONS = [
    ("linear=true: Lanczos3 in linear light (16-bit, no shrink-on-load)", "W1 thumbnail",
     "&linear=true"),
]

def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


class Server:
    """A pixfork started for one part of the bench, stopped by its pid."""

    def __init__(self, workers, extra=()):
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.state = tempfile.mkdtemp(prefix="pixfork-bench-")
        self.logf = open(os.path.join(self.state, "log"), "w")
        started = time.time_ns()
        self.proc = subprocess.Popen(
            [BIN, "--listen", self.addr, "--workers", str(workers),
             "--state-dir", os.path.join(self.state, "jobs"),
             # The workloads repeat one request: measure the work, not the
             # result cache (it has rows of its own).
             *(extra if "--cache-size" in extra else ("--cache-size", "0", *extra))],
            stdout=subprocess.DEVNULL, stderr=self.logf)
        out = subprocess.run([PROBE, "ready", self.addr, str(workers), "30"],
                             capture_output=True, text=True)
        m = re.search(r"ready_unix_ns=(\d+)", out.stdout)
        if out.returncode != 0 or not m:
            self.stop()
            raise RuntimeError(f"pixfork did not become ready: {out.stderr}")
        self.ready_ms = (int(m.group(1)) - started) / 1e6
        self.workers = workers

    def worker_pids(self):
        with urllib.request.urlopen(f"http://{self.addr}/readyz", timeout=5) as r:
            body = json.load(r)
        return [s["pid"] for s in body.get("slots", []) if s.get("pid")]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        shutil.rmtree(self.state, ignore_errors=True)


def to_ms(value):
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    if not m:
        return float("nan")
    v = float(m.group(1))
    return {"us": v / 1000.0, "ms": v, "s": v * 1000.0}[m.group(2)]


def wrk(addr, path, body, conns, seconds, headers=()):
    """wrk against http://addr/path: a POST of the file `body`, or a GET
    when `body` is None; `headers` are extra "Name: value" strings."""
    env = dict(os.environ, BENCH_BODY=body or "")
    script = ["-s", POST_LUA] if body else []
    extra = [a for h in headers for a in ("-H", h)]
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(conns), "-d", f"{seconds}s", "--latency",
         "--timeout", "30s", *script, *extra, f"http://{addr}{path}"],
        capture_output=True, text=True, env=env, timeout=seconds + 60)
    text = out.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    res = {
        "rps": float(rps.group(1)) if rps else float("nan"),
        "p50": float("nan"), "p99": float("nan"),
        "non2xx": 0, "errors": 0,
    }
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        if m:
            res[key] = to_ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        res["errors"] = sum(int(g) for g in m.groups())
    if rps is None:
        log(text, out.stderr)
    return res


def inproc(file, op, query, seconds, flags=(), cpu=0):
    """The engine alone, in a loop on one core (pinned: the cores of a
    shared machine are not equally fast, so comparisons stay on one)."""
    out = subprocess.run(["taskset", "-c", str(cpu), INPROC, file, op, query, str(seconds), *flags],
                         capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(f"inproc failed: {out.stderr}")
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", out.stdout)}


def inproc_all_cores(file, op, query, seconds, n):
    """`n` engine loops at once, one pinned to each core: the most the
    engine can do on this machine with no HTTP and no IPC around it, under
    the same conditions as the server (every core busy). Returns the summed
    req/s and each loop's result."""
    procs = [subprocess.Popen(["taskset", "-c", str(i % (os.cpu_count() or 1)), INPROC, file, op,
                               query, str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(n)]
    each = []
    for p in procs:
        out, err = p.communicate(timeout=seconds + 120)
        if p.returncode != 0:
            raise RuntimeError(f"inproc failed: {err}")
        each.append({k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", out)})
    return sum(e["req_per_s"] for e in each), each


def child_cpu_ms(cmd, runs):
    """Median CPU time (user + sys) of `cmd`, in ms, over `runs` runs."""
    times = []
    for _ in range(runs):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # wait4's rusage is exact to the microsecond (os.times counts ticks).
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            raise RuntimeError(f"{cmd} failed")
        times.append((usage.ru_utime + usage.ru_stime) * 1000.0)
    return statistics.median(times)


def decode_floor(file):
    """djpeg's 1/4-scale and full decode CPU time, minus its start-up cost
    (measured on a 1x1 JPEG), in ms."""
    if shutil.which("djpeg") is None:
        return None
    tiny = os.path.join(CORPUS, "valid/jpeg/edge_broken_exif_tag_1x1.jpg")
    base = child_cpu_ms(["taskset", "-c", "0", "djpeg", "-outfile", "/dev/null", tiny], 40)
    quarter = child_cpu_ms(["taskset", "-c", "0", "djpeg", "-scale", "1/4", "-outfile", "/dev/null", file], 40)
    full = child_cpu_ms(["taskset", "-c", "0", "djpeg", "-outfile", "/dev/null", file], 20)
    return {"quarter_ms": quarter - base, "full_ms": full - base, "startup_ms": base}


def fmt(v, digits=1):
    if v is None or v != v:
        return "—"
    return f"{v:.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=15, help="length of each measured load run")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2,
                    help="rounds of the comparison with the peers (each system once per round)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--inproc-seconds", type=float, default=8.0)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "RESULTS.md"))
    ap.add_argument("--only", choices=["all", "edge", "peers"], default="all",
                    help="edge: only the CDN-facing part (bench/EDGE.md); peers: only the "
                         "comparison with sharp and FastAPI (printed, nothing written)")
    args = ap.parse_args()
    import edge  # bench/edge.py: the cache, 304 and HTTPS rows
    import peers  # bench/peers.py: sharp and FastAPI, and the W4 probe
    if args.only in ("all", "edge"):
        edge.main(args)
    if args.only == "edge":
        return
    peer_results = peers.measure(args)
    if args.only == "peers":
        print("\n".join(peers.section(peer_results, args.workers)))
        return
    n = args.workers
    secs = args.seconds
    log(f"bench: {n} workers, {secs} s per run")

    rows = {}
    server = Server(n)
    ready_ms = server.ready_ms
    idle_master = rss_mib(server.proc.pid)
    idle_workers = [rss_mib(p) for p in server.worker_pids()]
    try:
        for name, rel, op, query, _ in WORKLOADS:
            body = os.path.join(CORPUS, rel)
            path = f"/v1/{op}?{query}"
            log(f"{name}: warm-up")
            wrk(server.addr, path, body, 4, args.warmup)
            r = {}
            for c in (1, 4, 16):
                log(f"{name}: concurrency {c}")
                r[c] = wrk(server.addr, path, body, c, secs)
            rows[name] = r

        busy_master = rss_mib(server.proc.pid)
        busy_workers = [rss_mib(p) for p in server.worker_pids()]
    finally:
        server.stop()

    # Scaling: the same W1 load on one worker.
    log("scaling: W1 on 1 worker")
    one = Server(1)
    try:
        name, rel, op, query, _ = WORKLOADS[0]
        wrk(one.addr, f"/v1/{op}?{query}", os.path.join(CORPUS, rel), 4, args.warmup)
        w1_one = wrk(one.addr, f"/v1/{op}?{query}", os.path.join(CORPUS, rel), 16, secs)
    finally:
        one.stop()

    log("in-process throughput")
    inp = {}
    for name, rel, op, query, _ in WORKLOADS:
        total, each = inproc_all_cores(os.path.join(CORPUS, rel), op, query, args.inproc_seconds, n)
        inp[name] = {"total": total, "each": each, **each[0]}

    fast = []
    for label, wl, off, on in FAST_PATHS:
        _, rel, op, query, _ = next(w for w in WORKLOADS if w[0] == wl)
        log(f"fast path: {label}")
        before = inproc(os.path.join(CORPUS, rel), op, query, args.inproc_seconds, off)
        after = inproc(os.path.join(CORPUS, rel), op, query, args.inproc_seconds, on)
        fast.append((label, wl, before, after))

    options = []
    for label, wl, extra in OPTIONS:
        _, rel, op, query, _ = next(w for w in WORKLOADS if w[0] == wl)
        log(f"option: {label}")
        before = inproc(os.path.join(CORPUS, rel), op, query, args.inproc_seconds)
        after = inproc(os.path.join(CORPUS, rel), op, query + extra, args.inproc_seconds)
        options.append((label, wl, before, after))

    log("decode floor (djpeg)")
    floor = decode_floor(os.path.join(CORPUS, WORKLOADS[0][1]))

    # ---- the table ----
    today = datetime.date.today().isoformat()
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = os.cpu_count()
    L = []
    L.append(f"# pixfork benchmark — {today}")
    L.append("")
    L.append(f"{cores} cores ({cpu}), {n} workers, release build, loopback; "
             f"wrk (1 thread, HTTP/1.1 keep-alive), {secs} s per measurement after a "
             f"{args.warmup} s warm-up. Made by `bench/run.sh`; single runs, so expect "
             f"±10 % noise.")
    L.append("")
    L.append("## Throughput")
    L.append("")
    L.append(f"| workload | c=1 req/s | c=4 req/s | c=16 req/s | p50 ms (c=16) | p99 ms (c=16) "
             f"| in-process req/s, {n} loops (per core) | efficiency (c=16) | non-2xx / errors |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, rel, op, query, desc in WORKLOADS:
        r = rows[name]
        ip = inp[name]["total"]
        per = " + ".join(fmt(e["req_per_s"]) for e in inp[name]["each"])
        eff = r[16]["rps"] / ip if ip else float("nan")
        bad = sum(r[c]["non2xx"] + r[c]["errors"] for c in r)
        L.append(f"| {name}: {desc} | {fmt(r[1]['rps'])} | {fmt(r[4]['rps'])} | "
                 f"{fmt(r[16]['rps'])} | {fmt(r[16]['p50'])} | {fmt(r[16]['p99'])} | "
                 f"{fmt(ip)} ({per}) | {fmt(eff, 3)} | {bad} |")
    L.append("")
    L.append(f"Efficiency = server req/s at c=16 ÷ the summed req/s of {n} in-process engine "
             f"loops (bench/inproc.rs) running at once, one pinned to each core: the work "
             f"itself with no HTTP, no queue and no IPC, under the same all-cores-busy "
             f"conditions. (The cores of this shared machine are not equally fast, so one "
             f"loop times {n} would misstate it.)")
    L.append("")
    L.append("In-process stage times (mean ms per request, the loop on core 0):")
    L.append("")
    L.append("| workload | decode | ops | encode | output bytes |")
    L.append("|---|---:|---:|---:|---:|")
    for name, *_ in WORKLOADS:
        ip = inp[name]
        L.append(f"| {name} | {fmt(ip.get('decode_ms'), 2)} | {fmt(ip.get('ops_ms'), 2)} | "
                 f"{fmt(ip.get('encode_ms'), 2)} | {int(ip.get('out_bytes', 0))} |")
    L.append("")
    L.extend(peers.section(peer_results, n))
    L.append("## Scaling (W1, c=16)")
    L.append("")
    w1n = rows[WORKLOADS[0][0]][16]["rps"]
    L.append(f"| 1 worker req/s | {n} workers req/s | ratio |")
    L.append("|---:|---:|---:|")
    L.append(f"| {fmt(w1_one['rps'])} | {fmt(w1n)} | {fmt(w1n / w1_one['rps'], 2)} |")
    L.append("")
    L.append("## Memory and start-up")
    L.append("")
    L.append("| | master RSS MiB | worker RSS MiB (each) |")
    L.append("|---|---:|---:|")
    L.append(f"| idle, after start | {fmt(idle_master)} | {', '.join(fmt(w) for w in idle_workers)} |")
    L.append(f"| after the load runs | {fmt(busy_master)} | {', '.join(fmt(w) for w in busy_workers)} |")
    L.append("")
    L.append(f"Start to ready (every one of {n} workers said hello): **{fmt(ready_ms)} ms**.")
    L.append("")
    def stage_table(title, head, rows, ratio):
        """An in-process before/after table: req/s, their ratio, stage times."""
        st = lambda d: f"{fmt(d.get('decode_ms'), 2)} / {fmt(d.get('ops_ms'), 2)} / {fmt(d.get('encode_ms'), 2)}"
        L.append(title)
        L.append("")
        L.append(head)
        L.append("|---|---|---:|---:|---:|---|---|")
        for label, wl, b, a in rows:
            L.append(f"| {label} | {wl} | {fmt(b['req_per_s'])} | {fmt(a['req_per_s'])} | "
                     f"{ratio(b['req_per_s'], a['req_per_s'])} | {st(b)} | {st(a)} |")
        L.append("")

    if fast:
        stage_table("## Fast paths (in-process, pinned to core 0: the path off → on)",
                    "| fast path | workload | off req/s | on req/s | speed-up | off decode / ops / encode ms | on decode / ops / encode ms |",
                    fast, lambda b, a: f"{fmt(a / b, 2)}×")
    if options:
        stage_table("## Options (in-process, pinned to core 0: the default → with the option)",
                    "| option | workload | default req/s | with it req/s | cost | default decode / ops / encode ms | with it decode / ops / encode ms |",
                    options, lambda b, a: f"{fmt(b / a, 2)}× slower")
    L.append("## Targets")
    L.append("")
    L.append("Peer figures are from this run (the section above).")
    L.append("")
    L.append("| target | measured | goal | ratio | met |")
    L.append("|---|---:|---:|---:|:---:|")

    def target(label, measured, goal, higher=True):
        ratio = measured / goal if higher else goal / measured
        met = "yes" if (measured >= goal if higher else measured <= goal) else "**no**"
        L.append(f"| {label} | {fmt(measured, 2)} | {fmt(goal, 2)} | {fmt(ratio, 2)} | {met} |")

    w1 = rows["W1 thumbnail"][16]["rps"]
    peer = lambda system, wl: peer_results[system]["rows"][wl]["rps"]
    mine = lambda wl: peer_results["pixfork"]["rows"][wl]["rps"]
    target(f"W1 req/s ≥ 1.5 × sharp ({fmt(peer('sharp', 'W1 thumbnail'))}), same run",
           mine("W1 thumbnail"), 1.5 * peer("sharp", "W1 thumbnail"))
    if floor:
        cap = n / (floor["quarter_ms"] / 1000.0)
        target(f"W1 req/s ≥ 0.9 × decode floor ({n} cores ÷ djpeg 1/4 {floor['quarter_ms']:.1f} ms = {cap:.0f} req/s)",
               w1, 0.9 * cap)
    target(f"W2 req/s ≥ 2.5 × sharp ({fmt(peer('sharp', 'W2 blur'))}), same run",
           mine("W2 blur"), 2.5 * peer("sharp", "W2 blur"))
    best_w3 = max(peer("sharp", "W3 GIF"), peer("FastAPI", "W3 GIF"))
    target(f"W3 req/s ≥ 3 × the best peer ({fmt(best_w3)}), same run", mine("W3 GIF"), 3 * best_w3)
    for name, *_ in WORKLOADS:
        eff = rows[name][16]["rps"] / inp[name]["total"]
        target(f"{name.split()[0]} efficiency at c=16 ≥ 0.95", eff, 0.95)
    for name, *_ in WORKLOADS:
        ss = {k: v["ssim"][name] for k, v in peer_results.items()}
        floor_ss = min(ss["sharp"], ss["FastAPI"]) - 0.01
        target(f"{name.split()[0]} SSIM ≥ the lower peer's − 0.01 (same class)", ss["pixfork"], floor_ss)
    for system in ("pixfork", peers.IDLE):
        worst = max(x.get("p99_ms", float("nan")) for x in peer_results[system]["probe"])
        target(f"W4 /healthz p99 ms ≤ 2 (scheduled time, 20 req/s, worst of 3 runs) under W1 "
               f"saturation: {system}", worst, 2.0, higher=False)
    target("master RSS MiB idle ≤ 30", idle_master, 30.0, higher=False)
    target(f"ready ms ≤ 250 with {n} workers", ready_ms, 250.0, higher=False)
    L.append("")
    if floor:
        L.append(f"Decode floor of the W1 photo, libjpeg-turbo `djpeg` CPU time minus its "
                 f"{floor['startup_ms']:.1f} ms start-up: 1/4 scale {floor['quarter_ms']:.1f} ms, "
                 f"full scale {floor['full_ms']:.1f} ms.")
        L.append("")
    text = "\n".join(L)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
