#!/usr/bin/env python3
"""Does `auto` keep its recall promise from the first query, and after the
server has learnt the real queries? And does learning them slow searches?

Against a running server (--url), on a corpus in fvecs/ivecs files:
  1. load:   create a cosine collection, upsert the base vectors, wait until
             every partition's graph holds every point (no build running);
  2. fresh:  one batch request of all queries per target (0.90, 0.95, 0.99),
             answered before any query reached the calibration: recall@10
             against the ground truth, the estimated_recall the server gave,
             and the calibration basis it named;
  3. stream: one client sends single top-10 searches (target 0.95, or
             --stream-target) for --stream-seconds, cycling over the queries;
             per 10-second window: queries, p50/p99 latency, recall, the
             basis of the answers (at 0.99, how long a fresh index scans
             exactly before real queries let it answer);
  4. learnt: the batches of step 2 again;
  5. other metrics: the same batches by dot and by l2, which no query of
             the stream used: on unit-length vectors the three metrics rank
             alike, the ground truth holds for all three, and the cosine
             stream calibrates them too (the basis says so);
  6. with --await-restart: waits until the server is restarted (it must
             keep its data: persistence on), then the batches of step 2
             once its indexes are rebuilt (calibrated on the real queries
             saved at the stop).
Prints one line per measurement and a last summary line. Standard library
only. Example (server on 127.0.0.1:8080, 2 shards):

  scripts/bench-calibration.py --data ../shared/data/debian-minilm \\
      --queries queries_appstream.fvecs --ground-truth gt_appstream.ivecs
"""
import argparse
import json
import struct
import sys
import time
import urllib.error
import urllib.request

TARGETS = (0.90, 0.95, 0.99)


def read_vecs(path, kind):
    """fvecs (kind 'f') or ivecs (kind 'i') rows."""
    rows = []
    with open(path, "rb") as f:
        data = f.read()
    at = 0
    while at < len(data):
        (dim,) = struct.unpack_from("<i", data, at)
        at += 4
        rows.append(list(struct.unpack_from("<%d%s" % (dim, kind), data, at)))
        at += 4 * dim
    return rows


class Client:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def call(self, method, path, body=None, timeout=600, missing_ok=False):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            if missing_ok and e.code == 404:
                return None
            sys.exit("%s %s: %d %s" % (method, path, e.code, e.read()[:300].decode(errors="replace")))
        except OSError as e:
            sys.exit("%s: %s" % (self.url, e))


def recall10(hits, truth):
    want = set(truth[:10])
    return len(want & {h["id"] for h in hits}) / 10.0


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def basis_of(answer):
    """The calibration basis an answer (or batch item) names."""
    c = answer.get("calibration") or {}
    if c.get("basis") == "real_queries":
        return "real:%d" % c.get("real_queries", 0)
    return c.get("basis", answer.get("mode", "?"))


def load(client, name, base, batch):
    client.call("DELETE", "/collections/%s" % name, missing_ok=True)
    client.call("POST", "/collections", {"name": name, "dimension": len(base[0]), "metric": "cosine"})
    t0 = time.time()
    for start in range(0, len(base), batch):
        pts = [{"id": i, "values": base[i]} for i in range(start, min(len(base), start + batch))]
        client.call("POST", "/collections/%s/points" % name, {"points": pts})
    print("load: %d points in %.1f s" % (len(base), time.time() - t0), flush=True)
    wait_index(client, name, base)


def ready(client):
    """Whether GET /ready answers 200 (False while down or recovering)."""
    try:
        with urllib.request.urlopen(client.url + "/ready", timeout=5) as r:
            return r.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


def await_restart(client):
    """Wait until the server goes away and comes back ready."""
    print("restart the server now (same data directory); waiting", flush=True)
    while ready(client):
        time.sleep(0.2)
    t0 = time.time()
    while not ready(client):
        time.sleep(0.2)
    print("restart: ready %.1f s after it went away" % (time.time() - t0), flush=True)


def wait_index(client, name, base):
    t0 = time.time()
    while True:
        info = client.call("GET", "/collections/%s" % name)
        parts = info["index"]["partitions"]
        graphs = [p.get("hnsw") for p in parts]
        nodes = sum(g["nodes"] for g in graphs if g)
        if all(g and not g["building"] and g["exact_points"] == 0 for g in graphs) and nodes >= len(base):
            break
        if time.time() - t0 > 1800:
            sys.exit("index not ready after 30 min")
        time.sleep(1)
    print("index: ready %.1f s after the load or restart (%d graph nodes)" % (time.time() - t0, nodes), flush=True)


def batches(client, name, queries, truth, label, chunk=250, metric="cosine"):
    """Every query at each target, in batch requests of `chunk` queries."""
    out = {}
    for target in TARGETS:
        results = []
        for start in range(0, len(queries), chunk):
            body = {
                "queries": queries[start : start + chunk],
                "limit": 10,
                "metric": metric,
                "mode": "auto",
                "target_recall": target,
            }
            r = client.call("POST", "/collections/%s/search/topk/batch" % name, body)
            results += [(x, basis_of(x)) for x in r["results"]]
        rec = sum(recall10(x["hits"], t) for (x, _), t in zip(results, truth)) / len(truth)
        ests = [x.get("estimated_recall") for x, _ in results if x.get("estimated_recall") is not None]
        est = sum(ests) / len(ests) if ests else None
        basis = ",".join(sorted({b for _, b in results}))
        out[target] = (rec, est, basis)
        print(
            "%s: target %.2f recall@10 %.4f estimated %s basis %s"
            % (label, target, rec, "%.4f" % est if est is not None else "-", basis),
            flush=True,
        )
    return out


def stream(client, name, queries, truth, seconds, target):
    t_end = time.time() + seconds
    window = []
    windows = []
    i = 0
    w_start = time.time()
    while time.time() < t_end:
        q = i % len(queries)
        body = {"query": queries[q], "limit": 10, "metric": "cosine", "mode": "auto", "target_recall": target}
        t0 = time.perf_counter()
        r = client.call("POST", "/collections/%s/search/topk" % name, body)
        ms = (time.perf_counter() - t0) * 1e3
        window.append((ms, recall10(r["hits"], truth[q]), basis_of(r)))
        i += 1
        if time.time() - w_start >= 10:
            windows.append(window)
            lat = [w[0] for w in window]
            print(
                "stream: %3d s %5d queries p50 %.2f ms p99 %.2f ms recall %.4f basis %s"
                % (
                    len(windows) * 10,
                    len(window),
                    percentile(lat, 0.5),
                    percentile(lat, 0.99),
                    sum(w[1] for w in window) / len(window),
                    ",".join(sorted({w[2] for w in window})),
                ),
                flush=True,
            )
            window, w_start = [], time.time()
    return windows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--data", required=True, help="directory with base.fvecs and the query files")
    ap.add_argument("--base", default="base.fvecs")
    ap.add_argument("--queries", default="queries.fvecs")
    ap.add_argument("--ground-truth", default="gt.ivecs")
    ap.add_argument("--collection", default="calibration_bench")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--stream-seconds", type=int, default=120)
    ap.add_argument("--stream-target", type=float, default=0.95, help="target_recall of the streamed searches")
    ap.add_argument("--await-restart", action="store_true",
                    help="at the end, wait for the server to be restarted (by hand or by a supervisor), then "
                         "measure the batches again once its indexes are rebuilt")
    a = ap.parse_args()
    base = read_vecs("%s/%s" % (a.data, a.base), "f")
    queries = read_vecs("%s/%s" % (a.data, a.queries), "f")
    truth = read_vecs("%s/%s" % (a.data, a.ground_truth), "i")
    if len(truth) != len(queries):
        sys.exit("%d queries but %d ground-truth rows" % (len(queries), len(truth)))
    client = Client(a.url)
    load(client, a.collection, base, a.batch)
    fresh = batches(client, a.collection, queries, truth, "fresh")
    windows = stream(client, a.collection, queries, truth, a.stream_seconds, a.stream_target)
    learnt = batches(client, a.collection, queries, truth, "learnt")
    others = {m: batches(client, a.collection, queries, truth, "learnt, by " + m, metric=m) for m in ("dot", "l2")}
    settled = [w[0] for w in windows[-1]] if windows else []
    worst = max((percentile([x[0] for x in w], 0.99) for w in windows), default=float("nan"))
    print(
        "summary: fresh %s | learnt %s | dot %s | l2 %s | stream p99 worst window %.2f ms, last window %.2f ms (x%.2f)"
        % (
            " ".join("%.2f->%.4f" % (t, fresh[t][0]) for t in TARGETS),
            " ".join("%.2f->%.4f" % (t, learnt[t][0]) for t in TARGETS),
            " ".join("%.2f->%.4f" % (t, others["dot"][t][0]) for t in TARGETS),
            " ".join("%.2f->%.4f" % (t, others["l2"][t][0]) for t in TARGETS),
            worst,
            percentile(settled, 0.99),
            worst / percentile(settled, 0.99) if settled else float("nan"),
        )
    )
    if a.await_restart:
        await_restart(client)
        wait_index(client, a.collection, base)
        restarted = batches(client, a.collection, queries, truth, "after the restart")
        print("summary: after the restart %s" % " ".join("%.2f->%.4f" % (t, restarted[t][0]) for t in TARGETS))


if __name__ == "__main__":
    main()
