#!/usr/bin/env bash
# Backup, export and import figures on a real corpus (docs/backup.md):
#
#   scripts/bench-backup.sh DATA_DIR [POINTS]
#
# DATA_DIR holds base.fvecs and queries.fvecs (e.g. ../shared/data/debian-minilm).
# With the release binary and default server settings (2 shards):
#   1. import:  `aionbd import --create --retries 1` of base.fvecs (points/s;
#               --retries 1 = no retry, so any 413/429/503 fails the run)
#   2. export:  `aionbd export` of that collection (MB/s of NDJSON)
#   3. backup:  the base imported again with shifted ids until the collection
#               holds POINTS (default 1,000,000) points; then one search client
#               (top-10 cosine, exact) for 15 s without a backup, then the same
#               client while `curl -o /backup` runs: backup time, size, and
#               search p50/p99 during vs without, in the same run; then the
#               backup again with nothing else running.
# Ends with one summary line. Needs python3 (standard library only) and curl.
set -euo pipefail

DATA="${1:?usage: scripts/bench-backup.sh DATA_DIR [POINTS]}"
POINTS="${2:-1000000}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${AIONBD_BIN:-$ROOT/target/release/aionbd}"
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release)
WORK="$(mktemp -d /tmp/aionbd-bench-backup.XXXXXX)"
PORT="${PORT:-18555}"
URL="http://127.0.0.1:$PORT"
cleanup() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN" --bind "127.0.0.1:$PORT" --data-dir "$WORK/data" --shards 2 >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "$URL/ready" >/dev/null && break; sleep 0.1; done
echo "server: $("$BIN" --version), 2 shards, data in $WORK/data"

seconds() { python3 -c 'import time; print(time.time())'; }

echo "== import of $DATA/base.fvecs (default settings, no retries)"
t0=$(seconds)
"$BIN" import --url "$URL" --collection base --create --retries 1 "$DATA/base.fvecs" 2>&1 | tail -1
t1=$(seconds)
BASE_N=$(curl -sf "$URL/collections/base" | python3 -c 'import json,sys; print(json.load(sys.stdin)["point_count"])')
IMPORT_RATE=$(python3 -c "print(round($BASE_N / ($t1 - $t0)))")
echo "import: $BASE_N points in $(python3 -c "print(round($t1 - $t0, 2))") s = $IMPORT_RATE points/s"

echo "== export"
t0=$(seconds)
"$BIN" export --url "$URL" --collection base --out "$WORK/base.ndjson" 2>&1 | tail -1
t1=$(seconds)
EXPORT_MB=$(python3 -c "import os; print(os.path.getsize('$WORK/base.ndjson') / 1e6)")
EXPORT_RATE=$(python3 -c "print(round($EXPORT_MB / ($t1 - $t0), 1))")
echo "export: $(python3 -c "print(round($EXPORT_MB, 1))") MB in $(python3 -c "print(round($t1 - $t0, 2))") s = $EXPORT_RATE MB/s"
rm -f "$WORK/base.ndjson"

echo "== growing 'base' to $POINTS points"
start=$BASE_N
while [ "$start" -lt "$POINTS" ]; do
    "$BIN" import --url "$URL" --collection base --id-start "$start" "$DATA/base.fvecs" >/dev/null 2>&1
    start=$((start + BASE_N))
    echo "  $(curl -sf "$URL/collections/base" | python3 -c 'import json,sys; print(json.load(sys.stdin)["point_count"])') points"
done
# Index builds run in the background after loading, and the first real
# queries start a recalibrating rebuild: warm up with searches, then measure
# once no build runs (each wait at most 30 minutes), so the figures compare
# the backup, not a build.
wait_builds() {
    for _ in $(seq 360); do
        building=$(curl -sf "$URL/collections/base" | python3 -c 'import json,sys
parts = json.load(sys.stdin)["index"]["partitions"]
print(any(p.get("building") or (p.get("hnsw") or {}).get("building") for p in parts))')
        [ "$building" = False ] && return
        sleep 5
    done
}
echo "== waiting for the background index builds"
wait_builds
python3 - "$URL" "$DATA/queries.fvecs" <<'EOF'
import http.client, json, struct, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1]); raw = open(sys.argv[2], "rb").read()
dim = struct.unpack_from("<i", raw)[0]
c = http.client.HTTPConnection(u.hostname, u.port)
for i in range(200):
    q = list(struct.unpack_from(f"<{dim}f", raw, i * (4 + 4 * dim) + 4))
    c.request("POST", "/collections/base/search/topk", json.dumps({"query": q, "limit": 10, "metric": "cosine", "mode": "exact"}),
              {"content-type": "application/json"})
    c.getresponse().read()
EOF
sleep 2
wait_builds
sleep 10
python3 - "$URL" "$DATA/queries.fvecs" "$WORK" <<'EOF'
import http.client, json, os, struct, subprocess, sys, threading, time, urllib.parse
url, qpath, work = sys.argv[1], sys.argv[2], sys.argv[3]
u = urllib.parse.urlparse(url)
raw = open(qpath, "rb").read()
dim = struct.unpack_from("<i", raw)[0]
rows = len(raw) // (4 + 4 * dim)
queries = [list(struct.unpack_from(f"<{dim}f", raw, i * (4 + 4 * dim) + 4)) for i in range(rows)]
bodies = [json.dumps({"query": q, "limit": 10, "metric": "cosine", "mode": "exact"}) for q in queries]

def search(seconds, stop=None):
    c = http.client.HTTPConnection(u.hostname, u.port)
    lat, i, t_end = [], 0, time.time() + seconds
    while time.time() < t_end and not (stop and stop.is_set()):
        t0 = time.perf_counter()
        c.request("POST", "/collections/base/search/topk", bodies[i % len(bodies)], {"content-type": "application/json"})
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
        lat.append(time.perf_counter() - t0); i += 1
    lat.sort()
    return lat

def pct(lat, p):
    return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

idle = search(15)
done = threading.Event()
result = {}
def backup():
    t0 = time.time()
    subprocess.run(["curl", "-sS", "-o", os.path.join(work, "b.aionbd"), url + "/backup"], check=True)
    result["secs"] = time.time() - t0
    result["bytes"] = os.path.getsize(os.path.join(work, "b.aionbd"))
    done.set()
t = threading.Thread(target=backup); t.start()
busy = search(3600, stop=done)
t.join()
loaded = dict(result)
backup()  # again, with nothing else running
print(f"backup: {result['bytes'] / 1e6:.1f} MB in {result['secs']:.1f} s = {result['bytes'] / 1e6 / result['secs']:.0f} MB/s alone; "
      f"{loaded['secs']:.1f} s = {loaded['bytes'] / 1e6 / loaded['secs']:.0f} MB/s beside the search client")
print(f"search (exact top-10, 1 client): without backup p50 {pct(idle, .5):.2f} ms p99 {pct(idle, .99):.2f} ms ({len(idle)} queries); "
      f"during backup p50 {pct(busy, .5):.2f} ms p99 {pct(busy, .99):.2f} ms ({len(busy)} queries); p99 ratio {pct(busy, .99) / pct(idle, .99):.2f}")
open(os.path.join(work, "summary"), "w").write(
    f"backup {result['bytes'] / 1e6:.0f} MB in {result['secs']:.1f} s alone, {loaded['secs']:.1f} s beside searches, "
    f"search p99 x{pct(busy, .99) / pct(idle, .99):.2f} during it")
EOF
"$BIN" check --backup "$WORK/b.aionbd"
echo "bench-backup: import $IMPORT_RATE points/s, export $EXPORT_RATE MB/s, $(cat "$WORK/summary") ($POINTS points)"
