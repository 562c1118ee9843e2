"""pixfork next to its peers, measured in the same run on the same cores
(part of bench/RESULTS.md, made by run.py):

  sharp    Node's cluster of N processes running sharp (libvips), one
           libvips thread per image (bench/peers/sharp_server.js)
  FastAPI  uvicorn + a ProcessPoolExecutor of N Pillow processes
           (bench/peers/fastapi_server.py), the usual Python design

For each system: W1-W3 throughput and p99 at c=16 (wrk), the output's SSIM
against an exact reference, and the front's own latency under load: GET
/healthz at a fixed 20 req/s on one connection, each latency counted from
its scheduled send time, while wrk drives W1 at c=16, three runs.
"""
import io
import os
import re
import subprocess
import sys
import time
import urllib.request

import run

PEERS_DIR = os.path.join(run.ROOT, "bench", "peers")
PROBE_RATE = 20


class Peer:
    """A peer server started for the bench and stopped by its pid."""

    def __init__(self, name, cmd, port):
        self.name = name
        self.addr = f"127.0.0.1:{port}"
        self.proc = subprocess.Popen(cmd, cwd=PEERS_DIR, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://{self.addr}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{name} did not start")

    def stop(self):
        if self.proc.poll() is None:
            # The peer's own children (cluster workers, pool processes) are
            # in its session: end the group it leads.
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


# The systems measured: pixfork as shipped, pixfork with its workers under
# SCHED_IDLE (every normal task, the front included, preempts them), and
# the two peers.
IDLE = "pixfork, idle workers"
SYSTEMS = ("pixfork", IDLE, "sharp", "FastAPI")


def start(system, n):
    if system == "pixfork":
        return run.Server(n)
    if system == IDLE:
        return run.Server(n, ("--worker-sched", "idle"))
    port = run.free_port()
    if system == "sharp":
        return Peer(system, ["node", "sharp_server.js", str(port), str(n)], port)
    return Peer(system, [sys.executable, "fastapi_server.py", str(port), str(n)], port)


def stop(server):
    server.stop()


def post(addr, path, file):
    with open(file, "rb") as f:
        body = f.read()
    req = urllib.request.Request(f"http://{addr}{path}", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()


def probe_under_load(addr, secs):
    """One run: scheduled /healthz probe while W1 saturates the workers."""
    name, rel, op, query, _ = run.WORKLOADS[0]
    load = subprocess.Popen(
        ["wrk", "-t", "1", "-c", "16", "-d", f"{secs + 4}s", "--timeout", "30s",
         "-s", run.POST_LUA, f"http://{addr}/v1/{op}?{query}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, BENCH_BODY=os.path.join(run.CORPUS, rel)))
    time.sleep(2)  # the load reaches every worker before sampling starts
    out = subprocess.run([run.PROBE, "sched", addr, "/healthz", str(secs), str(PROBE_RATE)],
                         capture_output=True, text=True, timeout=secs + 30)
    load.communicate(timeout=secs + 60)
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", out.stdout)}


# ---- fidelity: SSIM against an exact reference ----

def _gray(img):
    import numpy as np
    a = np.asarray(img.convert("RGB"), dtype=np.float64)
    return a @ np.array([0.299, 0.587, 0.114])


def _box(a, r):
    import numpy as np
    k = 2 * r + 1
    c = np.cumsum(np.cumsum(np.pad(a, ((r + 1, r), (r + 1, r)), mode="edge"), 0), 1)
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def ssim(a, b):
    """Mean SSIM of two greyscale float images (8x8-ish box windows)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = _box(a, 4), _box(b, 4)
    va = _box(a * a, 4) - mu_a ** 2
    vb = _box(b * b, 4) - mu_b ** 2
    cov = _box(a * b, 4) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return float(s.mean())


def _gauss_exact(gray, sigma):
    import numpy as np
    r = int(3 * sigma + 0.5)
    x = np.arange(-r, r + 1)
    k = np.exp(-(x * x) / (2 * sigma * sigma))
    k /= k.sum()
    p = np.pad(gray, r, mode="edge")
    rows = sum(k[i] * p[:, i:i + gray.shape[1]] for i in range(2 * r + 1))
    return sum(k[i] * rows[i:i + gray.shape[0], :] for i in range(2 * r + 1))


def reference(name, file):
    """The exact result of a workload, as greyscale floats: the source
    resized by Pillow's Lanczos in float, or an exact gaussian."""
    from PIL import Image
    import numpy as np
    src = Image.open(file)
    if name.startswith("W2"):
        sigma = float(re.search(r"sigma=([\d.]+)", run.WORKLOADS[1][3]).group(1))
        return _gauss_exact(_gray(src), sigma)
    src.seek(0)
    width = int(re.search(r"width=(\d+)", next(w for w in run.WORKLOADS if w[0] == name)[3]).group(1))
    f = np.asarray(src.convert("RGB"), dtype=np.float32)
    height = max(1, round(src.height * width / src.width))
    chans = [Image.fromarray(f[:, :, c], mode="F").resize((width, height), Image.LANCZOS)
             for c in range(3)]
    return sum(w * np.asarray(ch, dtype=np.float64) for w, ch in zip((0.299, 0.587, 0.114), chans))


def fidelity(name, file, output):
    from PIL import Image
    ref = reference(name, file)
    out = _gray(Image.open(io.BytesIO(output)))  # the first frame of a GIF
    if out.shape != ref.shape:
        return float("nan")
    return ssim(ref, out)


def measure(args):
    """Every system on W1-W3 and the probe; returns {system: {...}}.

    The throughput runs go in `args.rounds` rounds, each system in turn in
    every round, so that a slow stretch of this shared machine lands on
    every system rather than on whichever ran then; a row reports the mean
    of its rounds (each round is in the table too). The probe runs come
    in the last round."""
    n, secs, warm = args.workers, args.seconds, args.warmup
    results = {s: {"rows": {}, "rounds": {}, "ssim": {}, "probe": []} for s in SYSTEMS}
    for rnd in range(args.rounds):
        for system in SYSTEMS:
            run.log(f"peers: {system}, round {rnd + 1} of {args.rounds}")
            server = start(system, n)
            r = results[system]
            try:
                for name, rel, op, query, _ in run.WORKLOADS:
                    file = os.path.join(run.CORPUS, rel)
                    path = f"/v1/{op}?{query}"
                    if rnd == 0:
                        r["ssim"][name] = fidelity(name, file, post(server.addr, path, file))
                    run.wrk(server.addr, path, file, 16, warm)
                    row = run.wrk(server.addr, path, file, 16, secs)
                    r["rounds"].setdefault(name, []).append(row)
                    run.log(f"  {name}: {row['rps']:.1f} req/s")
                if rnd == args.rounds - 1:
                    for i in range(3):
                        r["probe"].append(probe_under_load(server.addr, secs))
                        run.log(f"  probe run {i + 1}: p99 {r['probe'][-1].get('p99_ms')} ms")
            finally:
                stop(server)
    for r in results.values():
        for name, rows in r["rounds"].items():
            r["rows"][name] = {
                "rps": sum(x["rps"] for x in rows) / len(rows),
                "p99": max(x["p99"] for x in rows),
            }
    return results


def section(results, n):
    """The Markdown of the comparison, and the peer figures the targets use."""
    fmt = run.fmt
    L = [f"## Next to sharp and FastAPI (same run, same cores, {n} workers each, c=16)", ""]
    L.append("`pixfork, idle workers` is the same binary with `--worker-sched idle`.")
    L.append("")
    names = list(results)
    L.append("| workload | " + " | ".join(f"{s} req/s" for s in names)
             + " | pixfork ÷ best peer | p99 ms (" + " / ".join(names) + ") | SSIM ("
             + " / ".join(names) + ") |")
    L.append("|---|" + "---:|" * len(names) + "---:|---|---|")
    for name, *_ in run.WORKLOADS:
        rps = {s: results[s]["rows"][name]["rps"] for s in names}
        p99 = " / ".join(fmt(results[s]["rows"][name]["p99"]) for s in names)
        ss = " / ".join(fmt(results[s]["ssim"][name], 4) for s in names)
        best = max(rps["sharp"], rps["FastAPI"])
        L.append(f"| {name} | " + " | ".join(fmt(rps[s]) for s in names)
                 + f" | {fmt(rps['pixfork'] / best, 2)}× | {p99} | {ss} |")
    L.append("")
    rounds = len(next(iter(results.values()))["rounds"][run.WORKLOADS[0][0]])
    L.append(f"req/s: the mean of {rounds} rounds, every system once per round in turn "
             "(a slow stretch of the machine lands on all of them); p99: the worse round. "
             "Each round's req/s:")
    L.append("")
    L.append("| workload | " + " | ".join(names) + " |")
    L.append("|---|" + "---|" * len(names))
    for name, *_ in run.WORKLOADS:
        L.append(f"| {name} | " + " | ".join(
            " / ".join(fmt(x["rps"]) for x in results[s]["rounds"][name]) for s in names) + " |")
    L.append("")
    L.append("SSIM: each system's output (the first frame for W3), decoded by Pillow, "
             "against the exact result in float: the source resized by Pillow's Lanczos "
             "on float channels (W1, W3), an exact separable gaussian (W2); luminance, "
             "9x9 windows. The same quality setting (q80) for every JPEG.")
    L.append("")
    L.append(f"/healthz at a fixed {PROBE_RATE} req/s on one connection, latency from each "
             "request's scheduled send time (bench/probe.rs `sched`), while wrk drives W1 "
             "at c=16, three runs:")
    L.append("")
    L.append("| system | p99 ms, runs 1 / 2 / 3 | p50 ms (run 1) | max ms (worst run) | errors |")
    L.append("|---|---|---:|---:|---:|")
    for s, r in results.items():
        p = r["probe"]
        L.append(f"| {s} | {' / '.join(fmt(x.get('p99_ms'), 2) for x in p)} | "
                 f"{fmt(p[0].get('p50_ms'), 2)} | {fmt(max(x.get('max_ms', 0) for x in p), 2)} | "
                 f"{int(sum(x.get('errors', 0) for x in p))} |")
    L.append("")
    return L
