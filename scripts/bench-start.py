#!/usr/bin/env python3
"""Start the server many times on empty data directories and report how long
each took from exec to `GET /ready` 200, optionally beside CPU hogs.

    scripts/bench-start.py [--bin target/release/aionbd] [--starts 100]
                           [--hogs 0] [--shards 2] [BIN ...]

Several binaries (positional, or --bin repeated) are run in alternating
rounds of --starts / 2, so a comparison shares the machine's state. --hogs N
runs N busy loops (processes) for the whole run: a start then competes for
the CPUs as it would on a loaded box. Reports per binary: the median and p90
start time and the starts that took over 1 s (a start that hangs is stopped
after 30 s and counted). Standard library only; stops everything it starts.
"""
import argparse
import multiprocessing
import shutil
import socket
import subprocess
import tempfile
import time


def hog():
    while True:
        pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ready(port):
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=1)
        c.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = c.recv(64)
        c.close()
        return head.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def one_start(binary, shards, limit=30.0):
    """Milliseconds from exec to /ready 200 (None: not ready within limit)."""
    d = tempfile.mkdtemp(prefix="aionbd-start.")
    port = free_port()
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [binary, "--data-dir", d + "/data", "--bind", f"127.0.0.1:{port}", "--shards", str(shards)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    took = None
    try:
        while time.perf_counter() - t0 < limit:
            if ready(port):
                took = (time.perf_counter() - t0) * 1000
                break
            time.sleep(0.0005)
    finally:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)
    return took


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bins", nargs="*")
    ap.add_argument("--bin", action="append", default=[])
    ap.add_argument("--starts", type=int, default=100, help="starts per binary")
    ap.add_argument("--hogs", type=int, default=0, help="busy loops beside the starts")
    ap.add_argument("--shards", type=int, default=2)
    a = ap.parse_args()
    bins = a.bins + a.bin or ["target/release/aionbd"]
    hogs = [multiprocessing.Process(target=hog, daemon=True) for _ in range(a.hogs)]
    for h in hogs:
        h.start()
    times = {b: [] for b in bins}
    try:
        half = max(1, a.starts // 2)
        while any(len(t) < a.starts for t in times.values()):
            for b in bins:
                for _ in range(min(half, a.starts - len(times[b]))):
                    times[b].append(one_start(b, a.shards))
    finally:
        for h in hogs:
            h.terminate()
    print(f"exec -> /ready 200, empty data directory, {a.shards} shards, {a.hogs} busy loops beside")
    for b, ts in times.items():
        done = sorted(t for t in ts if t is not None)
        hung = len(ts) - len(done)
        slow = sum(1 for t in done if t > 1000) + hung
        med = done[len(done) // 2] if done else float("nan")
        p90 = done[int(len(done) * 0.9)] if done else float("nan")
        print(f"{b}: {len(ts)} starts, median {med:.1f} ms, p90 {p90:.1f} ms, over 1 s: {slow} (never ready: {hung})")


if __name__ == "__main__":
    main()
