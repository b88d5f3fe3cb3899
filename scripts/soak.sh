#!/usr/bin/env bash
# A long mixed load, watching that the server stays flat:
#
#   scripts/soak.sh [DURATION_S] [DATA_DIR] [SEARCH_RATE] [WRITE_RATE]
#
# A release server on a temp data directory (default settings); an open-loop
# search load (auto, target recall 0.95) and an open-loop upsert load run for
# DURATION_S seconds (default 3600) in rounds of 60 s, the writes logged.
# After each round: the server's RSS, open file descriptors and data
# directory size. At the end: every acknowledged write is read back
# (aionbd-load verify), and RSS, descriptors and disk of the last third of
# the rounds are compared with the first third (RSS and disk may grow with
# the data written; descriptors must not).
# shellcheck source=scripts/load-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/load-common.sh"
DURATION="${1:-3600}"
data_args "${2:-}"
SEARCH_RATE="${3:-100}"
WRITE_RATE="${4:-100}"
use_server ""
ACK="$WORK/acked.log"
COMMON=(--url "$URL" --collection soak "${DATA_ARGS[@]}")
"$LOAD" run "${COMMON[@]}" --create --preload --duration 0.5 --quiet >/dev/null
ROUND=60
[ "$DURATION" -lt "$ROUND" ] && ROUND="$DURATION"
rounds=$(( (DURATION + ROUND - 1) / ROUND ))
echo "soak: $rounds rounds of $ROUND s; searches $SEARCH_RATE/s, upserts $WRITE_RATE/s"
printf '%6s %10s %8s %12s %10s %10s\n' round rss_kib fds disk_kib search_p99 errors
: >"$WORK/samples"
for r in $(seq "$rounds"); do
    "$LOAD" run "${COMMON[@]}" --workload upsert --rate "$WRITE_RATE" --duration "$ROUND" \
        --id-start $((r * 100000000)) --acked-log "$ACK" --json "$WORK/w-$r.json" --quiet >/dev/null 2>&1 &
    W=$!
    "$LOAD" run "${COMMON[@]}" --mode auto --target-recall 0.95 --rate "$SEARCH_RATE" --duration "$ROUND" \
        --json "$WORK/s-$r.json" --quiet >/dev/null 2>&1 || true
    wait "$W" || true
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
    fds=$(find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
    disk=$(du -sk "$WORK/data" | cut -f1)
    p99=$(ms "$(field "$WORK/s-$r.json" latency.p99_us)")
    errs=$(python3 -c "
import json
n = 0
for f in ('$WORK/s-$r.json', '$WORK/w-$r.json'):
    r = json.load(open(f)); n += r['requests'] - r['ok']
print(n)")
    echo "$r $rss $fds $disk $p99 $errs" >>"$WORK/samples"
    printf '%6s %10s %8s %12s %10s %10s\n' "$r" "$rss" "$fds" "$disk" "$p99 ms" "$errs"
done
verify_line=$("$LOAD" verify "${COMMON[@]}" --acked "$ACK") || { echo "$verify_line"; echo "soak: FAILED: acknowledged writes missing"; exit 1; }
echo "$verify_line"
python3 - "$WORK/samples" "$(wc -l <"$ACK")" <<'PY'
import sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
third = max(1, len(rows) // 3)
first, last = rows[:third], rows[-third:]
avg = lambda rs, i: sum(r[i] for r in rs) / len(rs)
fds_growth = avg(last, 2) - avg(first, 2)
rss_growth = avg(last, 1) / max(1, avg(first, 1))
disk_growth = avg(last, 3) / max(1, avg(first, 3))
errors = sum(r[5] for r in rows)
ok = fds_growth <= 2 and errors == 0
print(f"soak: {len(rows)} rounds, {sys.argv[2]} acknowledged writes all back; open files {avg(first, 2):.0f} -> {avg(last, 2):.0f}, "
      f"RSS x{rss_growth:.2f}, disk x{disk_growth:.2f} (first third -> last third), {errors:.0f} failed requests: "
      + ("flat" if ok else "NOT FLAT"))
sys.exit(0 if ok else 1)
PY
