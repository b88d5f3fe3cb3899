#!/usr/bin/env python3
"""Small workload against a running aionbd: collection, 3000 points (index
builds), searches of every mode, count, payload ops, metrics. Loopback only."""
import json, random, sys, urllib.request
base = sys.argv[1]
def req(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(base + path, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(r, timeout=30) as resp:
        return resp.status, resp.read()
random.seed(1)
req("POST", "/collections", {"name": "w", "dimension": 16})
for b in range(12):
    pts = [{"id": b * 256 + i, "values": [random.random() for _ in range(16)], "payload": {"g": (b * 256 + i) % 7}} for i in range(256)]
    req("POST", "/collections/w/points", {"points": pts})
q = [random.random() for _ in range(16)]
for mode in ["exact", "auto", "ivf", "hnsw"]:
    req("POST", "/collections/w/search/topk", {"query": q, "metric": "l2", "limit": 5, "mode": mode})
req("POST", "/collections/w/search/topk", {"query": q, "metric": "cosine", "limit": 5, "filter": {"must": [{"field": "g", "value": 3}]}})
req("POST", "/collections/w/points/count", {})
req("PUT", "/collections/w/points/99999", {"values": q, "payload": {"x": 1}})
req("DELETE", "/collections/w/points/99999")
for p in ["/metrics", "/metrics/prometheus", "/collections/w", "/ready", "/live"]:
    req("GET", p)
print("workload ok")
