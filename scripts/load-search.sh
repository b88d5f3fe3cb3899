#!/usr/bin/env bash
# Search latency and throughput with the bundled load generator:
#
#   scripts/load-search.sh [URL] [DATA_DIR] [SECONDS]
#
# URL: a running server ("" or absent: a release server is started here).
# DATA_DIR: base.fvecs [+ queries.fvecs, gt.ivecs] (e.g. ../shared/data/debian-minilm);
# absent: generated vectors. The collection "load_search" is created and
# filled, the indexes are awaited, then: closed loop with 1 and 8
# connections (auto at target recall 0.95), and an open loop at half the
# 8-connection throughput (Poisson arrivals; latency from intended start).
# Reports (JSON, SVG) go to $OUT (default ./load-reports).
# shellcheck source=scripts/load-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/load-common.sh"
use_server "${1:-}"
data_args "${2:-}"
SECONDS_EACH="${3:-15}"
OUT="${OUT:-load-reports}"
mkdir -p "$OUT"
COMMON=(--url "$URL" --collection load_search "${DATA_ARGS[@]}" --mode auto --target-recall 0.95 --limit 10)
echo "== preloading and waiting for the indexes"
preload_and_wait
for c in 1 8; do
    echo "== closed loop, $c connection(s), ${SECONDS_EACH} s"
    "$LOAD" run "${COMMON[@]}" --connections "$c" --duration "$SECONDS_EACH" --warmup 2 --recall-sample 100 \
        --json "$OUT/search-closed-$c.json" --quiet
done
RATE=$(python3 -c "print(max(10, int($(field "$OUT/search-closed-8.json" throughput_per_s) / 2)))")
echo "== open loop at $RATE/s (half the 8-connection throughput), Poisson arrivals"
"$LOAD" run "${COMMON[@]}" --rate "$RATE" --arrival poisson --duration "$SECONDS_EACH" --warmup 2 \
    --json "$OUT/search-open.json" --svg "$OUT/search-open.svg" --quiet
"$LOAD" plot "$OUT/search-closed-1.json" "$OUT/search-closed-8.json" "$OUT/search-open.json" --out "$OUT/search.svg"
echo "load-search: 1 conn $(field "$OUT/search-closed-1.json" throughput_per_s)/s p99 $(ms "$(field "$OUT/search-closed-1.json" latency.p99_us)") ms; \
8 conn $(field "$OUT/search-closed-8.json" throughput_per_s)/s p99 $(ms "$(field "$OUT/search-closed-8.json" latency.p99_us)") ms; \
open $RATE/s p99 $(ms "$(field "$OUT/search-open.json" latency.p99_us)") ms; \
recall $(field "$OUT/search-closed-8.json" recall) (reports in $OUT)"
