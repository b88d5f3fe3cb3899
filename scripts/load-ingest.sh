#!/usr/bin/env bash
# Durable ingest with the bundled load generator:
#
#   scripts/load-ingest.sh [URL] [DATA_DIR] [SECONDS]
#
# Single-point upserts over 8 connections, then batch upserts of 64 points
# over 4 connections, into the collection "load_ingest" (created), each for
# SECONDS (default 15). Every upsert is acknowledged after its fdatasync at
# the server's default sync mode. Reports go to $OUT (default ./load-reports).
# shellcheck source=scripts/load-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/load-common.sh"
use_server "${1:-}"
data_args "${2:-}"
SECONDS_EACH="${3:-15}"
OUT="${OUT:-load-reports}"
mkdir -p "$OUT"
COMMON=(--url "$URL" --collection load_ingest "${DATA_ARGS[@]}" --create)
echo "== single-point upserts, 8 connections, ${SECONDS_EACH} s"
"$LOAD" run "${COMMON[@]}" --workload upsert --connections 8 --duration "$SECONDS_EACH" \
    --json "$OUT/ingest-single.json" --quiet
echo "== batch upserts of 64 points, 4 connections, ${SECONDS_EACH} s"
"$LOAD" run "${COMMON[@]}" --workload batch-upsert --batch 64 --id-start 100000000 --connections 4 \
    --duration "$SECONDS_EACH" --json "$OUT/ingest-batch.json" --quiet
BATCH_POINTS=$(python3 -c "print(round($(field "$OUT/ingest-batch.json" throughput_per_s) * 64))")
echo "load-ingest: single upserts $(field "$OUT/ingest-single.json" throughput_per_s)/s (p99 $(ms "$(field "$OUT/ingest-single.json" latency.p99_us)") ms), \
batches of 64: $BATCH_POINTS points/s (p99 $(ms "$(field "$OUT/ingest-batch.json" latency.p99_us)") ms) (reports in $OUT)"
