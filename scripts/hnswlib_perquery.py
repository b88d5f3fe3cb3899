#!/usr/bin/env python3
"""hnswlib in-process, one query per call from Python threads (the way a
client asks a server): recall@10, QPS and p99 per ef with 1 and 2 threads.

    scripts/hnswlib_perquery.py DATA_DIR NAME [--efs 24,32,48] [--seconds 4]

DATA_DIR holds base.fvecs, queries.fvecs and gt.ivecs (cosine). The index
(M 16, ef_construction 100) is built with 2 threads; hnswlib releases the
GIL inside a query, so two Python threads can both search.
"""
import argparse
import threading
import time

import hnswlib
import numpy as np

from hnswlib_bench import xvecs


def recall_at_10(index, queries, truth):
    labels, _ = index.knn_query(queries, k=10)
    return np.mean([len(set(labels[i]) & set(truth[i])) / 10 for i in range(len(queries))])


def per_query_run(index, queries, threads, seconds):
    """(QPS, p99 seconds) of `threads` threads each asking one query per call."""
    stop = time.time() + seconds
    counts = [0] * threads
    latencies = []

    def worker(t):
        i = t
        while time.time() < stop:
            t0 = time.perf_counter()
            index.knn_query(queries[i % len(queries)], k=10)
            latencies.append(time.perf_counter() - t0)
            counts[t] += 1
            i += threads

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    latencies.sort()
    return sum(counts) / seconds, latencies[int(len(latencies) * 0.99)]


def load_and_build(data):
    """(index, queries, truth) for DATA_DIR: the base built into an hnswlib
    index (M 16, ef_construction 100, 2 threads), queries, top-10 truth."""
    base = xvecs(f"{data}/base.fvecs", np.float32)
    queries = xvecs(f"{data}/queries.fvecs", np.float32)
    truth = xvecs(f"{data}/gt.ivecs", np.int32)[:, :10]
    index = hnswlib.Index(space="cosine", dim=base.shape[1])
    index.init_index(max_elements=len(base), M=16, ef_construction=100)
    index.set_num_threads(2)
    index.add_items(base, np.arange(len(base)))
    index.set_num_threads(1)
    return index, queries, truth


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("name")
    ap.add_argument("--efs", default="24,32,48")
    ap.add_argument("--seconds", type=float, default=4)
    a = ap.parse_args()
    index, queries, truth = load_and_build(a.data)
    for ef in (int(e) for e in a.efs.split(",")):
        index.set_ef(ef)
        recall = recall_at_10(index, queries, truth)
        for threads in (1, 2):
            qps, p99 = per_query_run(index, queries, threads, a.seconds)
            print(
                f"{a.name} hnswlib per-query python ef={ef} recall={recall:.4f} "
                f"threads={threads} qps={qps:.0f} p99_us={p99 * 1e6:.0f}"
            )


if __name__ == "__main__":
    main()
