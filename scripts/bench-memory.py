#!/usr/bin/env python3
"""What a loaded server's memory is against its raw vectors, settled and
at its peak, with both indexes built; and again after real queries.

Starts BIN (2 shards, persistence off, a temporary data directory, port
--port), creates a cosine collection, upserts the first --points rows of
--base in batches of 256, waits until every partition's HNSW graph is built
(and its IVF lists built, or dropped as not worth their memory) with no
point pending, then prints:

  load:     seconds, RSS, peak RSS (VmHWM) so far
  built:    seconds from the last upsert to every index built, the builds'
            own work (build_ms per partition), RSS / raw f32 vectors
            (points x dim x 4 B), peak / settled RSS, what the server
            accounts for (memory_used_bytes: vectors, ids, payloads,
            indexes) and the index bytes it reports
  queries:  (with --queries N) N cosine searches at auto 0.95 over stored
            points, a wait past the first recalibration (70 s), a second
            round: RSS again and which partitions dropped their IVF lists

With --restart, the server runs with persistence on (sync on write) and,
once measured, is stopped and started again on its data directory:

  restart:  seconds to ready (log and snapshot replayed) and to every
            index rebuilt, the peak RSS of the new process (VmHWM) against
            the raw vectors and against its settled RSS

and one summary line starting with "memory:". With --trace FILE, a
thread also writes a line about every 50 ms from the first upsert to the
measurement: seconds, RSS MiB, and per partition its IVF lists (indexed
points, building, dropped) and graph (nodes, building, points pending):
what the server was doing when RSS peaked. Standard library only.

  scripts/bench-memory.py target/release/aionbd \\
      --base ../shared/data/debian-minilm/base.fvecs --points 50000
"""
import argparse
import array
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request


def fvecs(path, n):
    """The first n rows of an fvecs file, and its dimension."""
    with open(path, "rb") as f:
        dim = array.array("i", f.read(4))[0]
        f.seek(0)
        raw = array.array("f", f.read(n * (dim + 1) * 4))
    rows = [raw[i * (dim + 1) + 1:(i + 1) * (dim + 1)].tolist() for i in range(len(raw) // (dim + 1))]
    return rows, dim


def status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def trace(path, pid, t0, partitions, stop):
    """About every 50 ms until `stop`: time, RSS, each partition's state."""
    with open(path, "w") as out:
        out.write("# s rss_mib | per partition: IVF indexed points (b: building, d: dropped), graph nodes "
                  "(b: building), points pending for the graph, rows in memory (light mode)\n")
        while not stop.is_set():
            rss = status(pid, "VmRSS")
            try:
                ps = partitions()
            except (OSError, ValueError):
                ps = []
            cells = []
            for p in ps:
                h = p.get("hnsw") or {}
                cells.append("ivf %s%s%s graph %s%s pending %s%s" % (
                    p.get("indexed_points", 0), "b" if p.get("building") else "", "d" if p.get("dropped") else "",
                    h.get("nodes", 0), "b" if h.get("building") else "", h.get("exact_points", 0),
                    " in_memory %s" % p["rows"]["in_memory"] if "rows" in p else ""))
            out.write("%.2f %.1f | %s\n" % (time.time() - t0, rss, " | ".join(cells)))
            out.flush()
            time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bin")
    ap.add_argument("--base", required=True, help="fvecs file of the vectors")
    ap.add_argument("--points", type=int, default=50000)
    ap.add_argument("--port", type=int, default=8190)
    ap.add_argument("--queries", type=int, default=0, help="searches after the build (0: none)")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds to wait after every index is built before measuring")
    ap.add_argument("--trace", help="write RSS and index states about every 50 ms to this file")
    ap.add_argument("--memory-mode", default="full", choices=["full", "light"],
                    help="index.memory_mode (light: rows the graph holds live on disk)")
    ap.add_argument("--server-set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting passed to the server as --set KEY=VALUE (repeatable)")
    ap.add_argument("--restart", action="store_true",
                    help="persistence on; then restart the server and measure its restore and rebuild")
    args = ap.parse_args()

    rows, dim = fvecs(args.base, args.points)
    n = len(rows)
    raw_mib = n * dim * 4 / 2**20
    data = tempfile.mkdtemp(prefix="bench-memory.")
    log = open(os.path.join(data, "server.log"), "wb")

    def start():
        return subprocess.Popen([args.bin, "--data-dir", os.path.join(data, "d"), "--bind",
                                 "127.0.0.1:%d" % args.port, "--shards", "2",
                                 "--set", "persistence.enabled=%s" % ("true" if args.restart else "false"),
                                 "--set", "index.memory_mode=" + args.memory_mode]
                                + [a for kv in args.server_set for a in ("--set", kv)], stdout=log, stderr=log)

    srv = start()
    url = "http://127.0.0.1:%d" % args.port

    def call(path, body=None):
        # Upserts and searches are idempotent: a 408 (the server's 2 s
        # request timeout, on a box whose CPUs something else holds) is
        # retried.
        for attempt in range(6):
            req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode())
            req.add_header("content-type", "application/json")
            try:
                with urllib.request.urlopen(req, timeout=120) as r:
                    return r.read()
            except urllib.error.HTTPError as e:
                if e.code != 408 or attempt == 5:
                    raise
                print("(408 on %s, retried)" % path, file=sys.stderr)
                time.sleep(0.5)

    def partitions():
        return json.loads(call("/collections/m")).get("index", {}).get("partitions", [])

    def built():
        ps = partitions()
        return ps and all(p.get("kind") == "ivf" and not p.get("building") and p.get("exact_points", 1) == 0
                          and p.get("hnsw") and not p["hnsw"].get("building")
                          and p["hnsw"].get("exact_points", 1) == 0
                          # light: every row the graph holds written out
                          and p.get("rows", {}).get("in_memory", 0) == 0 for p in ps)

    def accounted():
        return json.loads(call("/metrics"))["memory_used_bytes"] / 2**20

    def wait_ready():
        for _ in range(12000):
            try:
                call("/ready")
                return
            except (OSError, urllib.error.HTTPError):
                time.sleep(0.05)
        raise SystemExit("the server did not get ready")

    try:
        wait_ready()
        call("/collections", {"name": "m", "dimension": dim})
        t0 = time.time()
        tracing = threading.Event()
        if args.trace:
            tracer = threading.Thread(target=trace, args=(args.trace, srv.pid, t0, partitions, tracing), daemon=True)
            tracer.start()
        for i in range(0, n, 256):
            batch = [{"id": i + j, "values": rows[i + j]} for j in range(min(256, n - i))]
            call("/collections/m/points", {"points": batch})
        t_load = time.time()
        print("load: %d x %d in %.1f s, rss %.0f MiB, peak %.0f MiB" % (
            n, dim, t_load - t0, status(srv.pid, "VmRSS"), status(srv.pid, "VmHWM")), flush=True)
        while not built():
            time.sleep(0.25)
        t_built = time.time()
        time.sleep(args.settle)
        tracing.set()
        ps = partitions()
        rss, peak = status(srv.pid, "VmRSS"), status(srv.pid, "VmHWM")
        print("built: %.1f s after the load; build_ms ivf %s hnsw %s" % (
            t_built - t_load, [p["build_ms"] for p in ps], [p["hnsw"]["build_ms"] for p in ps]))
        print("built: rss %.0f MiB = %.2fx raw %.1f MiB; peak %.0f MiB = %.2fx settled; accounted %.0f MiB "
              "(ivf %.1f, graph %.1f)" % (rss, rss / raw_mib, raw_mib, peak, peak / rss, accounted(),
                                          sum(p["bytes"] for p in ps) / 2**20,
                                          sum(p["hnsw"]["bytes"] for p in ps) / 2**20), flush=True)
        summary = "memory: %d x %d settled %.2fx raw, peak %.2fx settled" % (n, dim, rss / raw_mib, peak / rss)
        if args.queries:
            rng = random.Random(1)

            def search_round(count):
                for _ in range(count):
                    q = rows[rng.randrange(n)]
                    call("/collections/m/search/topk",
                         {"query": q, "metric": "cosine", "limit": 10, "mode": "auto", "target_recall": 0.95})

            search_round(args.queries)
            time.sleep(70)
            search_round(max(args.queries // 4, 64))
            time.sleep(5)
            rss = status(srv.pid, "VmRSS")
            dropped = [p.get("dropped") for p in partitions()]
            print("queries: rss %.0f MiB = %.2fx raw; accounted %.0f MiB; IVF lists dropped %s" % (
                rss, rss / raw_mib, accounted(), dropped), flush=True)
            summary += ", after queries %.2fx raw" % (rss / raw_mib)
        if args.restart:
            srv.terminate()
            srv.wait(timeout=120)
            t_stop = time.time()
            srv = start()
            if args.trace:
                tracer.join()
                tracing = threading.Event()
                tracer = threading.Thread(target=trace, args=(args.trace + ".restart", srv.pid, t_stop, partitions,
                                                              tracing), daemon=True)
                tracer.start()
            log_at = os.path.getsize(os.path.join(data, "server.log"))
            wait_ready()
            t_ready = time.time()
            # What the restart replayed, from the server's log.
            with open(os.path.join(data, "server.log"), "rb") as f:
                f.seek(log_at)
                for line in f.read().decode(errors="replace").splitlines():
                    if "WAL:" in line and "replayed" in line:
                        print("restart: " + line[line.find("shard "):].strip(), flush=True)
            while not built():
                time.sleep(0.25)
            t_rebuilt = time.time()
            time.sleep(args.settle)
            tracing.set()
            rss, peak = status(srv.pid, "VmRSS"), status(srv.pid, "VmHWM")
            print("restart: ready %.1f s, indexes rebuilt %.1f s after start; rss %.0f MiB = %.2fx raw "
                  "(accounted %.0f MiB); peak %.0f MiB = %.2fx raw, %.2fx settled" % (
                      t_ready - t_stop, t_rebuilt - t_stop, rss, rss / raw_mib, accounted(), peak, peak / raw_mib,
                      peak / rss), flush=True)
            summary += "; restart peak %.2fx raw, %.2fx settled" % (peak / raw_mib, peak / rss)
        print(summary)
    finally:
        srv.terminate()
        try:
            srv.wait(timeout=60)
        except subprocess.TimeoutExpired:
            srv.kill()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
