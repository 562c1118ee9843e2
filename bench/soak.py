#!/usr/bin/env python3
"""Soak: at least 100k mixed requests against 2 workers, on loopback.

`python3 bench/soak.py [--requests N] [--round-seconds S]` (after
`cargo build --release`; bench/run.sh's set-up also serves, since it
installs wrk). Every request picks at random among valid images, corrupt
ones, decompression bombs and bodies over --max-body (bench/soak.lua), on
16 keep-alive connections. Between rounds of S seconds it reads the
master's RSS and open descriptors (once the round's connections have
closed) and every worker's RSS from /proc, and prints one table; growth is counted from the end of the first round (the
warm-up). Workers recycle with --max-requests, which is what keeps their
memory in check over a long life.
"""
import argparse
import json
import os
import re
import urllib.request
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the bench's Server and helpers)

C = run.CORPUS
BODIES = [
    ("/v1/resize?width=100", "valid/jpeg/photo_cat_320x240_progressive.jpg"),
    ("/v1/resize?width=100", "valid/jpeg/photo_cat_320x240_progressive.jpg"),
    ("/v1/thumbnail?width=64", "valid/png/palette_trns_300x225.png"),
    ("/v1/blur?sigma=2", "valid/webp/lossy_100x100.webp"),
    ("/v1/resize?width=80", "valid/gif/anim_32x32_mixed_disposal_transparent.gif"),
    ("/v1/info", "valid/jpeg/photo_portrait_800x533_baseline.jpg"),
    ("/v1/resize?width=100", "invalid/truncated/jpeg_cut_mid_scan_50pct.jpg"),
    ("/v1/resize?width=100", "invalid/corrupt/png_bad_crc_ihdr.png"),
    ("/v1/resize?width=100", "invalid/garbage/jpeg_magic_then_random.jpg"),
    ("/v1/resize?width=100", "invalid/limits/jpeg_9643x10328_99mp.jpg"),
    # Over --max-body (1 MiB below): refused before it is read.
    ("/v1/resize?width=100", "valid/jpeg/photo_ladybird_2560x1600_baseline.jpg"),
]


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def settled_fds(pid, want, seconds=3.0):
    """The master's descriptor count once the round's connections are
    closed: polls up to `seconds` for it to come back to `want`."""
    end = time.monotonic() + seconds
    n = fds(pid)
    while n > want and time.monotonic() < end:
        time.sleep(0.05)
        n = fds(pid)
    return n


def deaths(addr):
    """Worker deaths by reason, from /metrics."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {m.group(1): int(float(m.group(2))) for m in
            re.finditer(r'pixfork_worker_deaths_total\{reason="(\w+)"\} (\S+)', text)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--round-seconds", type=int, default=20)
    args = ap.parse_args()
    spec = ";".join(f"{p}|{os.path.join(C, f)}" for p, f in BODIES)
    server = run.Server(2, ["--max-body", "1MiB", "--max-requests", "5000",
                            "--max-requests-jitter", "1000"])
    rows = []
    total = 0
    statuses = {}
    try:
        start_fds = fds(server.proc.pid)
        rows.append((0, 0, run.rss_mib(server.proc.pid), start_fds,
                     [run.rss_mib(p) for p in server.worker_pids()]))
        n = 0
        while total < args.requests:
            n += 1
            out = subprocess.run(
                ["wrk", "-t", "1", "-c", "16", "-d", f"{args.round_seconds}s", "--timeout", "30s",
                 "-s", os.path.join(run.ROOT, "bench", "soak.lua"), f"http://{server.addr}/"],
                capture_output=True, text=True, env=dict(os.environ, SOAK_BODIES=spec),
                timeout=args.round_seconds + 60)
            m = re.search(r"(\d+) requests in", out.stdout)
            total += int(m.group(1)) if m else 0
            for k, v in re.findall(r"(\d+)=(\d+)", out.stdout.split("statuses", 1)[-1]):
                statuses[k] = statuses.get(k, 0) + int(v)
            rows.append((n, total, run.rss_mib(server.proc.pid),
                         settled_fds(server.proc.pid, start_fds),
                         [run.rss_mib(p) for p in server.worker_pids()]))
            print(f"round {n}: {total} requests", file=sys.stderr, flush=True)
        with urllib.request.urlopen(f"http://{server.addr}/readyz", timeout=5) as r:
            restarts = sum(s.get("restarts", 0) for s in json.load(r)["slots"])
        by_reason = deaths(server.addr)
    finally:
        server.stop()
    print("| round | requests so far | master RSS MiB | master fds | worker RSS MiB |")
    print("|---:|---:|---:|---:|---|")
    for n, t, rss, fd, workers in rows:
        print(f"| {n} | {t} | {rss:.1f} | {fd} | {', '.join(f'{w:.1f}' for w in workers)} |")
    first, last = rows[1], rows[-1]
    print()
    print(f"statuses: {', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()))}")
    print(f"worker restarts: {restarts}; deaths by reason: "
          f"{', '.join(f'{k} {v}' for k, v in sorted(by_reason.items())) or 'none'} "
          f"(recycle = --max-requests 5000 ± 1000)")
    print(f"after warm-up (round 1 → {last[0]}): master RSS {first[2]:.1f} → {last[2]:.1f} MiB "
          f"({last[2] - first[2]:+.1f}), master fds {first[3]} → {last[3]}")


if __name__ == "__main__":
    main()
