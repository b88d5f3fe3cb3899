#!/usr/bin/env bash
# Search latency during and right after a bulk load, with the bundled load
# generator:
#
#   scripts/load-bulk.sh [URL] [DATA_DIR] [BULK_SECONDS] [SEARCH_RATE] [AFTER_SECONDS]
#
# The collection "load_bulk" is filled and its indexes awaited. Then one
# open-loop search run at SEARCH_RATE/s (default 200, Poisson; auto at target
# recall 0.95) for AFTER_SECONDS (default 20) alone; then a bulk load of
# new points in batches of BATCH (default 256) from two connections at
# full speed for BULK_SECONDS (default 6), with the same searches running
# beside it; then the searches again for AFTER_SECONDS, started the moment
# the bulk load ends (the graphs are still taking the new points in). The
# summary gives search p50/p99 and recall in the three phases.
# shellcheck source=scripts/load-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/load-common.sh"
BULK_SECONDS="${3:-6}"
SEARCH_RATE="${4:-200}"
AFTER_SECONDS="${5:-20}"
BATCH="${BATCH:-256}"
use_server "${1:-}"
data_args_without_truth "${2:-}"
OUT="${OUT:-load-reports}"
mkdir -p "$OUT"
# New points are data vectors moved by noise (cosine ~0.9 to them), so
# recall is measured against the server's exact mode on a sample.
COMMON=(--url "$URL" --collection load_bulk "${ARGS[@]}")
SEARCH=(--mode auto --target-recall 0.95 --limit 10 --rate "$SEARCH_RATE" --arrival poisson --warmup 0 --recall-sample 100)
echo "== preloading and waiting for the indexes"
preload_and_wait
echo "== searches at $SEARCH_RATE/s, no writes, ${AFTER_SECONDS} s"
"$LOAD" run "${COMMON[@]}" "${SEARCH[@]}" --duration "$AFTER_SECONDS" --json "$OUT/bulk-idle.json" --quiet
echo "== bulk load (batches of $BATCH, 2 connections, full speed) for ${BULK_SECONDS} s, searches beside it"
"$LOAD" run "${COMMON[@]}" "${SEARCH[@]}" --duration "$BULK_SECONDS" --json "$OUT/bulk-during.json" --quiet &
SEARCHER=$!
"$LOAD" run "${COMMON[@]}" --workload batch-upsert --batch "$BATCH" --connections 2 --id-start 500000000 --vary 0.5 \
    --duration "$BULK_SECONDS" --json "$OUT/bulk-writes.json" --quiet
echo "== searches at $SEARCH_RATE/s from the end of the bulk load, ${AFTER_SECONDS} s"
"$LOAD" run "${COMMON[@]}" "${SEARCH[@]}" --duration "$AFTER_SECONDS" --json "$OUT/bulk-after.json" --quiet
wait "$SEARCHER"
W_OK=$(field "$OUT/bulk-writes.json" ok)
W_ALL=$(field "$OUT/bulk-writes.json" requests)
if [ "$W_OK" != "$W_ALL" ]; then
    echo "load-bulk: warning: only $W_OK of $W_ALL batches were acknowledged (statuses in $OUT/bulk-writes.json)" >&2
fi
phase() {
    echo "p50 $(ms "$(field "$1" latency.p50_us)") ms, p99 $(ms "$(field "$1" latency.p99_us)") ms, recall $(field "$1" recall)"
}
POINTS=$(python3 -c "print(round($(field "$OUT/bulk-writes.json" ok) * $BATCH / $BULK_SECONDS))")
echo "load-bulk: bulk load of $POINTS points/s; search idle: $(phase "$OUT/bulk-idle.json"); \
during the load: $(phase "$OUT/bulk-during.json"); after it: $(phase "$OUT/bulk-after.json") (reports in $OUT)"
