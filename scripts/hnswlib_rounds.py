#!/usr/bin/env python3
"""aionbd over HTTP against hnswlib in-process, 1 / 2 / 8 clients, rounds
alternated in one run, so both are measured minute by minute on the same
(shared, noisy) machine.

    scripts/hnswlib_rounds.py DATA_DIR [--url URL ...] [--collection NAME]
        [--ef 32] [--target 0.95] [--rounds 3] [--seconds 8] [--clients 1,2,8]

DATA_DIR holds base.fvecs, queries.fvecs and gt.ivecs (cosine, top 10).
The server at URL must already hold the collection, loaded with the same
base vectors as ids 0..n and its indexes built, e.g.

    aionbd --bind 127.0.0.1:8090 --data-dir /tmp/cmp --shards 2 \\
        --set persistence.enabled=false &
    aionbd-load run --url http://127.0.0.1:8090 --collection c --create \\
        --preload --wait-index --data DATA_DIR/base.fvecs --duration 30 \\
        --queries DATA_DIR/queries.fvecs --metric cosine --mode auto \\
        --target-recall 0.95

(the 30 s of queries let `auto` calibrate on real queries first).

hnswlib (M 16, ef_construction 100, built with 2 threads) answers one query
per call from C Python threads (it releases the GIL inside a query), at the
`--ef` that reaches the target on this corpus (ef 32 on debian-minilm,
0.960). aionbd answers `aionbd-load run --mode auto --target-recall TARGET`
with C keep-alive connections; its client runs on the same CPUs as the
server. Each round prints one line per client count and server: QPS and
p99 of both, recall@10 of aionbd, and aionbd / hnswlib. Several `--url`
(servers of two builds, each loaded as above) are measured in turn after
the same hnswlib run, so builds compare side by side too.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hnswlib_perquery import load_and_build, per_query_run, recall_at_10  # noqa: E402


def aionbd_run(a, url, clients):
    """(QPS, p99 us, recall) of one aionbd-load run."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [
            a.load, "run", "--url", url, "--collection", a.collection,
            "--data", f"{a.data}/base.fvecs", "--queries", f"{a.data}/queries.fvecs",
            "--ground-truth", f"{a.data}/gt.ivecs", "--metric", "cosine",
            "--mode", "auto", "--target-recall", str(a.target), "--limit", "10",
            "--connections", str(clients), "--duration", str(a.seconds), "--warmup", "2",
            "--quiet", "--json", out.name,
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        r = json.load(open(out.name))
    return r["throughput_per_s"], r["latency"]["p99_us"], r["recall"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--url", action="append", help="server(s); default http://127.0.0.1:8090")
    ap.add_argument("--collection", default="c")
    ap.add_argument("--load", default=os.path.join(os.path.dirname(__file__), "../target/release/aionbd-load"))
    ap.add_argument("--ef", type=int, default=32)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--clients", default="1,2,8")
    a = ap.parse_args()
    index, queries, truth = load_and_build(a.data)
    index.set_ef(a.ef)
    h_recall = recall_at_10(index, queries, truth)
    clients = [int(c) for c in a.clients.split(",")]
    print(f"# {a.data}: {index.get_current_count()} points; hnswlib ef {a.ef} recall@10 {h_recall:.4f}; aionbd auto {a.target}")
    urls = a.url or ["http://127.0.0.1:8090"]
    print("| round | clients | server | aionbd QPS | p99 ms | recall | hnswlib QPS | p99 ms | aionbd / hnswlib |")
    print("|---|---|---|---|---|---|---|---|---|")
    ratios = {(u, c): [] for u in urls for c in clients}
    for rnd in range(1, a.rounds + 1):
        for c in clients:
            h_qps, h_p99 = per_query_run(index, queries, c, a.seconds)
            for u in urls:
                qps, p99_us, recall = aionbd_run(a, u, c)
                ratios[(u, c)].append(qps / h_qps)
                print(
                    f"| {rnd} | {c} | {u} | {qps:.0f} | {p99_us / 1000:.2f} | {recall:.4f} | {h_qps:.0f} | "
                    f"{h_p99 * 1000:.2f} | {qps / h_qps:.2f} |",
                    flush=True,
                )
    for (u, c), r in ratios.items():
        r = sorted(r)
        print(f"# {u}, {c} clients: aionbd / hnswlib median {r[len(r) // 2]:.2f} (min {r[0]:.2f}, max {r[-1]:.2f})")


if __name__ == "__main__":
    main()
