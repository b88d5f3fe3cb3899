#!/usr/bin/env python3
"""How often `auto`'s choice from a reservoir of real queries misses its target,
with the margin as binomial over a query's 10 answers ("old") and as the
measured spread of single queries' recall ("new", calib::design_effect).

    scripts/margin_bootstrap.py DATA_DIR --url URL [--collection c]
        [--queries queries.fvecs] [--ground-truth gt.ivecs] [--target 0.95]
        [--reservoirs 4000] [--sizes 128,256]

The server at URL must hold the collection on ONE shard (so the walk's
recall@10 is what a partition calibrates), loaded with DATA_DIR/base.fvecs
as ids 0..n and its graph built (`aionbd --shards 1`, then `aionbd-load run
--create --preload --wait-index ...`). Every query is answered at every ef
from 10 to 128 (`mode: hnsw`); each random reservoir of `--sizes` queries
(each size in turn) then chooses an ef as `Calibration::choose` does
(ladder steps 10, 16, 24, 32, 48, 64, 96, 128, read on the line between
steps, the smallest setting clearing the target by one standard error),
and delivers the recall of all queries at that ef. Reservoirs are drawn
with replacement, as from a stream much longer than the query file. A
reservoir no step up to 128 satisfies is left out (counted in the
table). numpy needed.
"""
import argparse
import json
import urllib.request

import numpy as np

LADDER = [10, 16, 24, 32, 48, 64, 96, 128]
EFS = list(range(10, 129))


def vecs(path, dtype):
    a = np.fromfile(path, dtype=np.int32)
    return a.reshape(-1, a[0] + 1)[:, 1:].view(dtype)


def per_query_recall(url, collection, queries, gt):
    """recall@10 of every query at every ef in EFS."""
    out = np.zeros((len(EFS), len(queries)))
    for e, ef in enumerate(EFS):
        for i in range(0, len(queries), 100):
            body = {"queries": queries[i:i + 100].tolist(), "metric": "cosine", "limit": 10, "mode": "hnsw", "ef": ef}
            req = urllib.request.Request(f"{url}/collections/{collection}/search/topk/batch",
                                         data=json.dumps(body).encode(), headers={"content-type": "application/json"})
            for j, res in enumerate(json.load(urllib.request.urlopen(req))["results"]):
                hits = res if isinstance(res, list) else res["hits"]
                out[e, i + j] = len({h["id"] for h in hits} & set(gt[i + j][:10].tolist())) / 10
    return out


def choose(mean, deff, target, answers):
    """The ef `auto` picks from a reservoir's step means and design effects; None if no step meets."""
    def meets(r, d):
        return r >= 1 or r - np.sqrt(d * r * (1 - r) / answers) >= target
    i = next((i for i in range(len(LADDER)) if meets(mean[i], deff[i])), None)
    if i is None:
        return None
    if i == 0:
        return LADDER[0]
    d = max(deff[i], deff[i - 1])
    lo, hi = LADDER[i - 1] + 1, LADDER[i]
    def at(ef):
        t = (ef - LADDER[i - 1]) / (LADDER[i] - LADDER[i - 1])
        return mean[i - 1] + (mean[i] - mean[i - 1]) * t
    while lo < hi:
        mid = (lo + hi) // 2
        if meets(at(mid), d):
            hi = mid
        else:
            lo = mid + 1
    return hi


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--url", required=True)
    ap.add_argument("--collection", default="c")
    ap.add_argument("--queries", default="queries.fvecs")
    ap.add_argument("--ground-truth", default="gt.ivecs")
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--reservoirs", type=int, default=4000)
    ap.add_argument("--sizes", default="128", help="reservoir sizes to compare, comma-separated")
    a = ap.parse_args()
    queries = vecs(f"{a.data}/{a.queries}", np.float32)
    gt = vecs(f"{a.data}/{a.ground_truth}", np.int32)
    recall = per_query_recall(a.url.rstrip("/"), a.collection, queries, gt)
    population = recall.mean(axis=1)
    steps = recall[[EFS.index(x) for x in LADDER]]
    at = " / ".join(f"{population[EFS.index(x)]:.4f}" for x in (16, 24, 32, 48, 64, 96))
    print(f"# {a.queries}: recall@10 of all queries at ef 16 / 24 / 32 / 48 / 64 / 96: {at}; "
          f"per-query std at ef 32: {recall[EFS.index(32)].std():.3f}; target {a.target}")
    print("| reservoir | margin | reservoirs choosing | mean ef | delivered mean | 5th percentile "
          "| below target - 0.01 | below target |")
    print("|---|---|---|---|---|---|---|---|")
    for size in (int(x) for x in a.sizes.split(",")):
        rng = np.random.default_rng(1)
        picked = {"old": [], "new": []}
        for _ in range(a.reservoirs):
            sample = steps[:, rng.choice(len(queries), size, replace=True)]
            mean, var = sample.mean(axis=1), sample.var(axis=1)
            binomial = np.maximum(mean * (1 - mean) / 10, 1e-12)
            for rule, deff in (("old", np.ones(len(LADDER))), ("new", np.clip(var / binomial, 1, 10))):
                ef = choose(mean, deff, a.target, size * 10)
                if ef is not None:
                    picked[rule].append((ef, population[EFS.index(ef)]))
        for rule, v in picked.items():
            if not v:
                print(f"| {size} | {rule} | 0 | | | | | |")
                continue
            ef = np.array([x[0] for x in v])
            d = np.array([x[1] for x in v])
            print(f"| {size} | {rule} | {len(v)} | {ef.mean():.1f} | {d.mean():.4f} | {np.percentile(d, 5):.4f} | "
                  f"{(d < a.target - 0.01).mean() * 100:.1f} % | {(d < a.target).mean() * 100:.1f} % |")

if __name__ == "__main__":
    main()
