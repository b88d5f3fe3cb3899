#!/usr/bin/env bash
# What exact queries cost the searches beside them, with the bundled load
# generator:
#
#   scripts/load-exact-beside.sh [URL] [DATA_DIR] [SECONDS] [SEARCH_RATE] [EXACT_RATE] [GROW]
#
# The collection "load_exact" is filled with the data set's vectors and
# about GROW more (default 150000, rounded up to a whole second of 40
# batches of 256: 153,600; each a data vector moved by noise, VARY=0.3),
# and its indexes awaited. Then one open-loop
# search run at SEARCH_RATE/s (default 200, Poisson; auto at target recall
# 0.95) for SECONDS (default 60) alone, and the same run again while a
# second generator sends exact top-10 queries at EXACT_RATE/s (default 2),
# each a scan of every point. The summary compares the searches' p50/p99
# alone and beside the exact queries, and gives the exact queries' own
# latency. An exact query scans each partition in pieces of rows, the
# shard's other requests running between them (docs/benchmarks.md, "Exact
# queries beside searches").
# shellcheck source=scripts/load-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/load-common.sh"
SECONDS_EACH="${3:-60}"
SEARCH_RATE="${4:-200}"
EXACT_RATE="${5:-2}"
GROW="${6:-150000}"
use_server "${1:-}"
data_args_without_truth "${2:-}"
OUT="${OUT:-load-reports}"
mkdir -p "$OUT"
COMMON=(--url "$URL" --collection load_exact "${ARGS[@]}")
echo "== preloading, growing by $GROW points and waiting for the indexes"
preload_and_wait
if [ "$GROW" -gt 0 ]; then
    # 40 batches of 256 a second: GROW / 10240 seconds.
    "$LOAD" run "${COMMON[@]}" --workload batch-upsert --batch 256 --id-start 100000000 --vary "${VARY:-0.3}" \
        --rate 40 --duration $(( (GROW + 10239) / 10240 )) --quiet >/dev/null
    sleep 5
    "$LOAD" run "${COMMON[@]}" --wait-index --duration 1 --quiet >/dev/null
fi
POINTS=$(python3 -c 'import json,sys,urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1] + "/collections/load_exact"))["point_count"])' "$URL")
SEARCH=(--mode auto --target-recall 0.95 --limit 10 --rate "$SEARCH_RATE" --arrival poisson --warmup 2)
echo "== searches at $SEARCH_RATE/s alone, ${SECONDS_EACH} s ($POINTS points)"
"$LOAD" run "${COMMON[@]}" "${SEARCH[@]}" --duration "$SECONDS_EACH" --json "$OUT/exact-beside-alone.json" --quiet
echo "== the same beside exact queries at $EXACT_RATE/s"
"$LOAD" run "${COMMON[@]}" --mode exact --limit 10 --rate "$EXACT_RATE" --arrival poisson --connections 4 \
    --duration "$(( SECONDS_EACH + 6 ))" --json "$OUT/exact-beside-exact.json" --quiet &
EXACT=$!
sleep 1
"$LOAD" run "${COMMON[@]}" "${SEARCH[@]}" --duration "$SECONDS_EACH" --json "$OUT/exact-beside-busy.json" --quiet
wait "$EXACT"
A_P50=$(field "$OUT/exact-beside-alone.json" latency.p50_us)
A_P99=$(field "$OUT/exact-beside-alone.json" latency.p99_us)
B_P50=$(field "$OUT/exact-beside-busy.json" latency.p50_us)
B_P99=$(field "$OUT/exact-beside-busy.json" latency.p99_us)
echo "load-exact-beside: $POINTS points; search p99 alone $(ms "$A_P99") ms, beside exact queries $(ms "$B_P99") ms \
(x$(python3 -c "print(round($B_P99 / max(1, $A_P99), 2))")); p50 $(ms "$A_P50") -> $(ms "$B_P50") ms; \
exact queries p50 $(ms "$(field "$OUT/exact-beside-exact.json" latency.p50_us)") ms, p99 $(ms "$(field "$OUT/exact-beside-exact.json" latency.p99_us)") ms (reports in $OUT)"
