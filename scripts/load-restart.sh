#!/usr/bin/env bash
# Searches and writes right after a restart, with the bundled load generator:
#
#   scripts/load-restart.sh DATA_DIR DATA [SEARCH_RATE] [INGEST_RATE]
#
# Starts the release server (AIONBD_BIN to choose another binary; 2 shards)
# on an existing data directory DATA_DIR holding the collection "load_mixed"
# (as scripts/load-mixed.sh leaves it with a given server, e.g. after an
# hour of ingest), waits until it is ready and its indexes are rebuilt, and
# prints what each partition's calibration rests on then. Then, at once:
# writes of new points at INGEST_RATE/s (default 400) for 90 s in 10 s runs,
# and beside them two 15 s open-loop search runs at SEARCH_RATE/s (default
# 200, Poisson, auto at target recall 0.95, recall checked on 100 queries
# against exact). The summary gives search p50/p99/max and recall per run
# and the writes' worst p99 and max, and the server is stopped (SIGTERM).
# DATA: a directory with base.fvecs and queries.fvecs. Reports in
# OUT (default load-reports/restart). The server runs with the shard and
# partition counts DATA_DIR's LAYOUT names (another count would re-place
# the data first). The run changes DATA_DIR: it adds 90 s x INGEST_RATE
# points to the collection (the same ids on every run) and the real
# queries the server saves at its stop.
# shellcheck source=scripts/load-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/load-common.sh"
DIR="${1:?usage: load-restart.sh DATA_DIR DATA [SEARCH_RATE] [INGEST_RATE]}"
data_args_without_truth "${2:?usage: load-restart.sh DATA_DIR DATA [SEARCH_RATE] [INGEST_RATE]}"
SEARCH_RATE="${3:-200}"
INGEST_RATE="${4:-400}"
OUT="${OUT:-load-reports/restart}"
mkdir -p "$OUT"
rm -f "$OUT"/restart-*.json
T0=$(date +%s.%N)
since() { python3 -c "import sys; print(round($(date +%s.%N) - $T0, 1))"; }
[ -f "$DIR/LAYOUT" ] || { echo "$DIR has no LAYOUT: not an aionbd data directory" >&2; exit 2; }
layout() { sed -n "s/^$1=//p" "$DIR/LAYOUT"; }
export AIONBD_SHARDS; AIONBD_SHARDS="$(layout shards)"
export AIONBD_PARTITIONS_PER_COLLECTION; AIONBD_PARTITIONS_PER_COLLECTION="$(layout partitions_per_collection)"
export AIONBD_MAX_POINTS_PER_COLLECTION="${AIONBD_MAX_POINTS_PER_COLLECTION:-3000000}"
# Recovery of a large directory takes a while (8-17 s for 1.9M points).
start_server "$DIR" "$OUT/server.log" 600
echo "server: $("$SERVER_BIN" --version) on $DIR at $URL, ready after $(since) s"
COMMON=(--url "$URL" --collection load_mixed "${ARGS[@]}" --quiet)
"$LOAD" run "${COMMON[@]}" --wait-index --duration 1 >/dev/null
echo "indexes rebuilt after $(since) s"
python3 - "$URL" <<'PY'
import json, sys, urllib.request
v = json.load(urllib.request.urlopen(sys.argv[1] + "/collections/load_mixed", timeout=30))
for i, p in enumerate(v["index"]["partitions"]):
    basis = lambda b: b["cosine"]["basis"] + (f" ({b['cosine']['real_queries']})" if "real_queries" in b["cosine"] else "")
    ivf = "dropped" if p.get("dropped") else basis(p["calibration_basis"])
    print(f"partition {i}: graph calibrated on {basis(p['hnsw']['calibration_basis'])}, IVF lists {ivf}")
PY
(
    for i in $(seq 9); do
        "$LOAD" run "${COMMON[@]}" --workload upsert --vary 0.5 --rate "$INGEST_RATE" --duration 10 \
            --id-start $((900000000 + i * 10000)) --json "$OUT/restart-write-$i.json" >/dev/null ||
            echo "write run $i: aionbd-load failed (its report, if any, still counts)" >&2
    done
) &
WRITER=$!
sleep 3
for r in 1 2; do
    "$LOAD" run "${COMMON[@]}" --mode auto --target-recall 0.95 --limit 10 --rate "$SEARCH_RATE" --arrival poisson \
        --warmup 2 --recall-sample 100 --duration 15 --json "$OUT/restart-search-$r.json" >/dev/null ||
        echo "search run $r: aionbd-load failed (its report, if any, still counts)" >&2
    sleep 5
done
wait "$WRITER"
python3 - "$OUT" <<'PY'
import glob, json, sys
def lat(f):
    r = json.load(open(f)); l = r["latency"]
    return r, l["p50_us"] / 1e3, l["p99_us"] / 1e3, l["max_us"] / 1e3
for f in sorted(glob.glob(sys.argv[1] + "/restart-search-*.json")):
    r, p50, p99, mx = lat(f)
    print(f"search run {f[-6]}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {mx:.1f} ms, recall {r.get('recall')}, status {r['status']}")
w = [lat(f) for f in sorted(glob.glob(sys.argv[1] + "/restart-write-*.json"))]
bad = [r["status"] for r, *_ in w if set(r["status"]) != {"200"}]
print(f"writes: worst p50 {max(x[1] for x in w):.2f} ms, worst p99 {max(x[2] for x in w):.2f} ms, "
      f"max {max(x[3] for x in w):.1f} ms, other statuses: {bad or 'none'}")
PY
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || true
SERVER_PID=""
