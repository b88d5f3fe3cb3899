#!/usr/bin/env bash
# Search latency while ingesting, with the bundled load generator:
#
#   scripts/load-mixed.sh [URL] [DATA_DIR] [SECONDS] [SEARCH_RATE] [INGEST_RATE]
#
# The collection "load_mixed" is filled and its indexes awaited. Then one
# open-loop search run at SEARCH_RATE/s (default 200, Poisson; auto at target
# recall 0.95) for SECONDS (default 20) alone, and the same run again while
# a second generator upserts single new points at INGEST_RATE/s (default
# 400, open loop). The summary compares search p50/p99 and recall idle vs
# under ingest (in one run, same machine state).
#
# For long runs: IDLE_SECONDS sets the idle phase's length (default
# SECONDS), and WINDOW=N splits the searches under ingest into consecutive
# runs of N seconds, each with its own report (mixed-ingest-01.json, ...)
# and line, so a drift over an hour of ingest shows; the summary then gives
# the worst window's p99.
#
# After the writes, the indexes are awaited and the searches run alone
# again (IDLE_SECONDS): the collection then has the size of the last
# window's, so the summary also gives the last window's p99 against that
# idle p99 (ingest cost at equal size; the first ratio includes the
# growth, which over a long run makes each search walk a far bigger
# graph).
# shellcheck source=scripts/load-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/load-common.sh"
SECONDS_EACH="${3:-20}"
SEARCH_RATE="${4:-200}"
INGEST_RATE="${5:-400}"
# The writer adds SECONDS x INGEST_RATE points to the preloaded ones: a
# server started here gets a point limit with room for them (an hour at
# 400/s is 1.44 million, over the default 1,000,000 per collection, past
# which upserts are refused and the ingest stops); a given server's limit
# is checked below (not counting the preload: keep room for it).
NEED_POINTS=$(( SECONDS_EACH * INGEST_RATE * 11 / 10 + 1000000 ))
export AIONBD_MAX_POINTS_PER_COLLECTION="${AIONBD_MAX_POINTS_PER_COLLECTION:-$NEED_POINTS}"
use_server "${1:-}"
data_args_without_truth "${2:-}"
LIMIT=$(python3 - "$URL" <<'PY' || true
import json, sys, urllib.request
try:
    print(json.load(urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=5))["max_points_per_collection"])
except Exception:
    pass
PY
)
if [ -n "$LIMIT" ] && [ "$LIMIT" -gt 0 ] && [ "$LIMIT" -lt $(( SECONDS_EACH * INGEST_RATE )) ]; then
    echo "load-mixed: the server refuses points past $LIMIT per collection (limits.max_points_per_collection), \
fewer than the ${SECONDS_EACH} s x ${INGEST_RATE}/s the writer adds: raise it (AIONBD_MAX_POINTS_PER_COLLECTION) or shorten the run" >&2
    exit 2
fi
OUT="${OUT:-load-reports}"
mkdir -p "$OUT"
# New points change the true neighbours, so recall is measured against the
# server's exact mode on a sample, never against a ground-truth file. Each
# new point is a data vector moved by noise (VARY, default 0.5: cosine ~0.9
# to it, a paraphrase rather than a copy); VARY=0 writes exact copies under
# new ids, which over a long run stores each vector many times over.
VARY="${VARY:-0.5}"
COMMON=(--url "$URL" --collection load_mixed "${ARGS[@]}")
IDLE_SECONDS="${IDLE_SECONDS:-$SECONDS_EACH}"
WINDOW="${WINDOW:-$SECONDS_EACH}"
WINDOWS=$(( (SECONDS_EACH + WINDOW - 1) / WINDOW ))
SEARCH=(--mode auto --target-recall 0.95 --limit 10 --rate "$SEARCH_RATE" --arrival poisson --warmup 2 --recall-sample 100)
echo "== preloading and waiting for the indexes"
preload_and_wait
echo "== searches at $SEARCH_RATE/s, no writes, ${IDLE_SECONDS} s"
"$LOAD" run "${COMMON[@]}" "${SEARCH[@]}" --duration "$IDLE_SECONDS" --json "$OUT/mixed-idle.json" --quiet
echo "== searches at $SEARCH_RATE/s while upserting $INGEST_RATE points/s, ${SECONDS_EACH} s in $WINDOWS window(s)"
# Each search run adds its warm-up and start (~3 s) to its window.
"$LOAD" run "${COMMON[@]}" --workload upsert --id-start 500000000 --vary "$VARY" --rate "$INGEST_RATE" \
    --duration "$((SECONDS_EACH + 4 * WINDOWS + 4))" --json "$OUT/mixed-ingest-writes.json" --quiet &
WRITER=$!
sleep 1
REPORTS=()
for w in $(seq "$WINDOWS"); do
    LEN=$(( w < WINDOWS ? WINDOW : SECONDS_EACH - WINDOW * (WINDOWS - 1) ))
    REPORT="$OUT/mixed-ingest.json"
    [ "$WINDOWS" -gt 1 ] && REPORT="$OUT/mixed-ingest-$(printf %02d "$w").json"
    "$LOAD" run "${COMMON[@]}" "${SEARCH[@]}" --duration "$LEN" --json "$REPORT" --quiet
    REPORTS+=("$REPORT")
    if [ "$WINDOWS" -gt 1 ]; then
        echo "window $w/$WINDOWS (${LEN} s): search p50 $(ms "$(field "$REPORT" latency.p50_us)") ms, p99 $(ms "$(field "$REPORT" latency.p99_us)") ms, recall $(field "$REPORT" recall)"
    fi
done
wait "$WRITER"
W_OK=$(field "$OUT/mixed-ingest-writes.json" ok)
W_ALL=$(field "$OUT/mixed-ingest-writes.json" requests)
if [ "$W_OK" != "$W_ALL" ]; then
    echo "load-mixed: warning: only $W_OK of $W_ALL upserts were acknowledged (statuses in $OUT/mixed-ingest-writes.json)" >&2
fi
LAST="${REPORTS[${#REPORTS[@]}-1]}"
echo "== waiting for the indexes after the writes"
# A graph grown under ingest is rebuilt once the shard has seen no write
# for 2 s (indexer::WRITES_PAUSED): let that start before looking.
sleep 5
"$LOAD" run "${COMMON[@]}" --wait-index --duration 1 --quiet >/dev/null
echo "== searches at $SEARCH_RATE/s after the writes, no writes, ${IDLE_SECONDS} s"
"$LOAD" run "${COMMON[@]}" "${SEARCH[@]}" --duration "$IDLE_SECONDS" --json "$OUT/mixed-idle-after.json" --quiet
# The window with the highest p99 stands for the ingest phase.
WORST="${REPORTS[0]}"
for r in "${REPORTS[@]}"; do
    if [ "$(field "$r" latency.p99_us)" -gt "$(field "$WORST" latency.p99_us)" ]; then WORST="$r"; fi
done
"$LOAD" plot "$OUT/mixed-idle.json" "$WORST" --out "$OUT/mixed.svg"
IDLE=$(field "$OUT/mixed-idle.json" latency.p99_us)
BUSY=$(field "$WORST" latency.p99_us)
WHICH=""
[ "$WINDOWS" -gt 1 ] && WHICH=" (worst of $WINDOWS windows: $(basename "$WORST"))"
echo "load-mixed: search p99 idle $(ms "$IDLE") ms, while ingesting $(field "$OUT/mixed-ingest-writes.json" throughput_per_s) points/s $(ms "$BUSY") ms \
(x$(python3 -c "print(round($BUSY / max(1, $IDLE), 2))"))$WHICH; p50 $(ms "$(field "$OUT/mixed-idle.json" latency.p50_us)") -> $(ms "$(field "$WORST" latency.p50_us)") ms; \
recall $(field "$OUT/mixed-idle.json" recall) -> $(field "$WORST" recall) (reports in $OUT)"
AFTER=$(field "$OUT/mixed-idle-after.json" latency.p99_us)
LAST_P99=$(field "$LAST" latency.p99_us)
echo "load-mixed: at the final size, search p99 idle after the writes $(ms "$AFTER") ms, last window under ingest $(ms "$LAST_P99") ms \
(x$(python3 -c "print(round($LAST_P99 / max(1, $AFTER), 2))")); recall $(field "$OUT/mixed-idle-after.json" recall) -> $(field "$LAST" recall)"
