#!/usr/bin/env bash
# Shard stalls while large partitions are indexed and rebuilt:
#
#   scripts/bench-rebuild-stalls.sh [DATA_DIR] [LOAD_SECONDS] [GROW_SECONDS]
#
# Starts a release server (AIONBD_BIN picks the binary; one shard per core)
# with the watchdog's stall reports at debug level, bulk-loads the rows of
# DATA_DIR/base.fvecs moved by noise (`--vary 0.5`, so every point is new)
# in batches of 256 over 2 connections for LOAD_SECONDS (default 40: about
# 500,000 points on a 2-core box), waits until every partition has its IVF
# lists and its graph, grows the collection for GROW_SECONDS (default 12:
# about a quarter more, past the fifth that rebuilds a graph), waits for
# the rebuilds, then prints every stall of 50 ms or more (a shard that long
# without a turn: its requests waited) with the step it was seen in.
# Without DATA_DIR it generates 384-dimension clustered vectors.
# shellcheck source=scripts/load-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/load-common.sh"
export RUST_LOG="${RUST_LOG:-info,aionbd::watchdog=debug,aionbd::reclaim=debug}"
DIM="${DIM:-384}"
use_server ""
data_args_without_truth "${1:-}"
LOAD_SECONDS="${2:-40}"
GROW_SECONDS="${3:-12}"
COMMON=(--url "$URL" --collection rebuild "${ARGS[@]}" --workload batch-upsert --batch 256 --connections 2
    --vary 0.5 --quiet)

# built: "yes" once no partition builds and every one has its graph.
built() {
    curl -s "$URL/collections/rebuild" | python3 -c 'import json, sys
parts = (json.load(sys.stdin).get("index") or {}).get("partitions", [])
busy = any(p.get("building") or "hnsw" not in p or p["hnsw"]["building"] for p in parts)
print("no" if busy or not parts else "yes")'
}

# settle: wait for two looks 5 s apart with nothing building and the
# same number of finished builds.
settle() {
    local last="" same=0 builds
    while [ "$same" -lt 2 ]; do
        sleep 5
        builds=$(curl -s "$URL/metrics" | python3 -c 'import json, sys; print(json.load(sys.stdin)["l2_index_build_successes"])')
        if [ "$(built)" = yes ] && [ "$builds" = "$last" ]; then same=$((same + 1)); else same=0; fi
        last=$builds
    done
    curl -s "$URL/collections/rebuild" | python3 -c 'import json, sys
d = json.load(sys.stdin)
graphs = [(p["hnsw"]["nodes"], p["hnsw"]["build_ms"]) for p in d["index"]["partitions"]]
print("  %d points; graphs (nodes, build ms): %s" % (d["point_count"], graphs))'
}

echo "== bulk load, ${LOAD_SECONDS} s"
"$LOAD" run "${COMMON[@]}" --create --duration "$LOAD_SECONDS"
echo "== waiting for the indexes"
settle
echo "== growing, ${GROW_SECONDS} s"
FIRST=$(wc -l <"$WORK/server.err")
"$LOAD" run "${COMMON[@]}" --id-start 1000000000 --duration "$GROW_SECONDS"
echo "== waiting for the rebuilds"
settle
curl -s "$URL/metrics" | python3 -c 'import json, sys
m = json.load(sys.stdin)
print("stalls: " + ", ".join(f"{k} {m[k]}" for k in sorted(m) if k.startswith("shard_stall")))'
# stalls FROM TO: the stall reports among lines FROM..TO of the log.
stalls() {
    sed -n "$1,$2p" "$WORK/server.err" | grep "no turn for" |
        sed -E 's/.*(shard [0-9]+): no turn for ([0-9]+) ms.*seen in: ([^(;]*).*/  \2 ms, \1, in: \3/' | sort -n || true
}
echo "== stalls of 50 ms or more: load and first builds"
stalls 1 "$FIRST"
echo "== stalls of 50 ms or more: growth and rebuilds"
stalls "$((FIRST + 1))" '$'
