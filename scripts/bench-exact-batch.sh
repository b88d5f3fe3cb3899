#!/usr/bin/env bash
# Exact batch search throughput, server builds alternated in one run.
#
# Usage: scripts/bench-exact-batch.sh DATA_DIR ROUNDS BIN [BIN ...]
#
# For each round and each BIN in turn: a fresh server (2 shards x 2
# partitions, persistence off), DATA_DIR/base.fvecs loaded with
# aionbd-load and its index builds waited for, then one client sends
# batches of SIZE (default 64) exact top-10 dot queries from
# DATA_DIR/queries.fvecs for SECONDS_EACH (default 8), REPEAT (default 3) times;
# prints queries/s per repeat. PIECE_ROWS=N sets
# AIONBD_DEBUG_SCAN_PIECE_ROWS on the servers. LOAD=PATH names aionbd-load
# (default target/release/aionbd-load), PORT the port (default 8095).
# Figures and method: docs/benchmarks.md ("Batches and the scan in pieces").
set -euo pipefail
data=$1 rounds=$2
shift 2
cd "$(dirname "$0")/.."
load=${LOAD:-target/release/aionbd-load}
port=${PORT:-8095}
size=${SIZE:-64}
seconds=${SECONDS_EACH:-8}
repeat=${REPEAT:-3}
dir=$(mktemp -d /tmp/aionbd-exact-batch.XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

batches() {
    python3 - "$port" "$data/queries.fvecs" "$seconds" "$size" <<'PY'
import array, http.client, json, sys, time
port, path, secs, size = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
raw = open(path, "rb").read()
dim = int.from_bytes(raw[:4], "little")
rows = len(raw) // (4 * (dim + 1))
qs = []
for r in range(rows):
    a = array.array("f")
    a.frombytes(raw[r * 4 * (dim + 1) + 4:(r + 1) * 4 * (dim + 1)])
    qs.append(a.tolist())
bodies = [json.dumps({"queries": [qs[(i + j) % rows] for j in range(size)], "metric": "dot",
                      "limit": 10, "mode": "exact", "include_payload": False}).encode()
          for i in range(0, max(rows, size), size)]
c = http.client.HTTPConnection("127.0.0.1", port)
def post(b):
    c.request("POST", "/collections/load/search/topk/batch", b, {"content-type": "application/json"})
    r = c.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"batch search: {r.status} {body[:200]!r}")
post(bodies[0])
t0, n = time.perf_counter(), 0
while time.perf_counter() - t0 < secs:
    post(bodies[n % len(bodies)])
    n += 1
print(f"{n * size / (time.perf_counter() - t0):.0f}")
PY
}

for round in $(seq "$rounds"); do
    for bin in "$@"; do
        rm -rf "$dir/data"
        env -i AIONBD_BIND="127.0.0.1:$port" AIONBD_SHARDS=2 AIONBD_PARTITIONS_PER_COLLECTION=2 \
            AIONBD_DATA_DIR="$dir/data" AIONBD_PERSISTENCE_ENABLED=false AIONBD_MAX_BODY_BYTES=67108864 \
            ${PIECE_ROWS:+AIONBD_DEBUG_SCAN_PIECE_ROWS=$PIECE_ROWS} "$bin" >"$dir/server.log" 2>&1 &
        pid=$!
        for _ in $(seq 100); do
            curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break
            sleep 0.1
        done
        "$load" run --url "http://127.0.0.1:$port" --collection load --create --preload --wait-index \
            --data "$data/base.fvecs" --duration 1 >/dev/null 2>&1
        rates=()
        for _ in $(seq "$repeat"); do rates+=("$(batches)"); done
        echo "round $round  $bin  batch $size queries/s: ${rates[*]}"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        pid=
    done
done
