#!/usr/bin/env python3
"""Probe latency of /healthz while loader processes saturate the workers.

Usage: bench/probe.py HOST:PORT IMAGE [--seconds N] [--loaders N] [--query Q]

Loaders are separate processes (no GIL sharing with the prober); each keeps
one HTTP/1.1 keep-alive connection and posts IMAGE in a loop. The prober
samples GET /healthz every 5 ms on its own connection and prints
p50/p99/max in milliseconds, plus the loaders' throughput. Loopback only,
bounded in time.
"""
import argparse
import http.client
import multiprocessing as mp
import statistics
import time


def loader(addr, body, query, seconds, out):
    host, port = addr.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    end = time.monotonic() + seconds
    n = errors = 0
    while time.monotonic() < end:
        conn.request("POST", "/v1/" + query, body=body)
        r = conn.getresponse()
        r.read()
        if r.status == 200:
            n += 1
        else:
            errors += 1
    out.put((n, errors))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("addr")
    ap.add_argument("image")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--loaders", type=int, default=8)
    ap.add_argument("--query", default="resize?width=400&quality=80")
    a = ap.parse_args()
    body = open(a.image, "rb").read()
    out = mp.Queue()
    procs = [mp.Process(target=loader, args=(a.addr, body, a.query, a.seconds + 1, out))
             for _ in range(a.loaders)]
    for p in procs:
        p.start()
    time.sleep(1)  # let the load build up
    host, port = a.addr.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    samples = []
    end = time.monotonic() + a.seconds - 0.5
    while time.monotonic() < end:
        t = time.perf_counter()
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        r.read()
        samples.append((time.perf_counter() - t) * 1000)
        time.sleep(0.005)
    done = [out.get() for _ in procs]
    for p in procs:
        p.join()
    samples.sort()
    q = lambda f: samples[min(len(samples) - 1, int(len(samples) * f))]
    ok = sum(d[0] for d in done)
    err = sum(d[1] for d in done)
    print(f"healthz n={len(samples)} p50={q(0.5):.2f}ms p99={q(0.99):.2f}ms "
          f"max={samples[-1]:.2f}ms mean={statistics.mean(samples):.2f}ms; "
          f"load: {ok / (a.seconds + 1):.1f} req/s, {err} errors")


if __name__ == "__main__":
    main()
