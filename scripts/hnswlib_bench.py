#!/usr/bin/env python3
"""hnswlib in-process on an fvecs data set: build time (1 and 2 threads),
bytes per vector, and recall@10 / QPS per ef with 1 and 2 query threads.
Prints one JSON object per line, like `hnsw_engine --json`.

Usage: hnswlib_bench.py DATA_DIR [--m 16] [--ef-construction 100] [--queries 1000]
                        [--efs 16,24,32] [--no-single-thread-build] [--seconds 3]
                        [--index PATH]

`--index PATH`: load the index from PATH when it exists (no build figures),
else build it and save it there (repeated runs skip the build).

QPS per setting repeats the whole query set until `--seconds` have passed
(one pass of 1,000 queries takes about 0.1 s, too short to measure on a
shared machine).
"""
import argparse
import json
import os
import time

import hnswlib
import numpy as np

EFS = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256]


def xvecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    return raw.reshape(-1, dim + 1)[:, 1:].view(dtype).copy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--efs", default=",".join(map(str, EFS)))
    ap.add_argument("--no-single-thread-build", action="store_true")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--index")
    a = ap.parse_args()
    base = xvecs(os.path.join(a.data, "base.fvecs"), np.float32)
    queries = xvecs(os.path.join(a.data, "queries.fvecs"), np.float32)[: a.queries]
    gt = xvecs(os.path.join(a.data, "gt.ivecs"), np.int32)[: a.queries, :10]
    n, dim = base.shape

    def build(threads):
        index = hnswlib.Index(space="ip", dim=dim)
        index.init_index(max_elements=n, M=a.m, ef_construction=a.ef_construction, random_seed=42)
        t = time.perf_counter()
        index.add_items(base, np.arange(n), num_threads=threads)
        return index, time.perf_counter() - t

    if a.index and os.path.exists(a.index):
        index = hnswlib.Index(space="ip", dim=dim)
        index.load_index(a.index, max_elements=n)
    else:
        build1 = None if a.no_single_thread_build else build(1)[1]
        index, build2 = build(2)
        if a.index:
            index.save_index(a.index)
        # Level-0 links and data per element, plus the upper levels' share.
        size_per = index.index_file_size() / n if hasattr(index, "index_file_size") else None
        print(json.dumps({"engine": "hnswlib", "m": a.m, "ef_construction": a.ef_construction,
                          "build_s_1_thread": build1 and round(build1, 3), "build_s_2_threads": round(build2, 3),
                          "bytes_per_vector": round(size_per) if size_per else None}), flush=True)
    for ef in [int(e) for e in a.efs.split(",")]:
        index.set_ef(ef)
        row = {"engine": "hnswlib", "ef": ef}
        for threads in (1, 2):
            t, done = time.perf_counter(), 0
            while done == 0 or time.perf_counter() - t < a.seconds:
                labels, _ = index.knn_query(queries, k=10, num_threads=threads)
                done += len(queries)
            qps = done / (time.perf_counter() - t)
            row["qps" if threads == 1 else "qps_2_threads"] = round(qps)
        hits = sum(len(set(l.tolist()) & set(g.tolist())) for l, g in zip(labels, gt))
        row["recall"] = round(hits / (len(queries) * 10), 4)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
