#!/usr/bin/env bash
# HNSW over HTTP against hnswlib in-process, side by side in one run:
# hnswlib (2 query threads), then the server with 8 HTTP clients
# (`ivf_http --hnsw-only`), then hnswlib again, so machine drift during the
# run shows. Compare QPS at the same recall@10 (e.g. the cheapest setting of
# each reaching 0.95).
#   scripts/hnsw_http_compare.sh DATA_DIR [SECONDS]
# Installs hnswlib and numpy with pip when missing.
set -euo pipefail
data=${1:?usage: hnsw_http_compare.sh DATA_DIR [SECONDS]}
seconds=${2:-5}
cd "$(dirname "$0")/.."
python3 -c 'import hnswlib, numpy' 2>/dev/null || python3 -m pip install --quiet hnswlib numpy
cargo build --quiet --release --benches
echo "# hnswlib, before"
python3 scripts/hnswlib_bench.py "$data" --efs 16,20,24,32,48,64 --no-single-thread-build
echo "# aionbd over HTTP (2 shards x 2 partitions, 8 clients)"
cargo bench --quiet --bench ivf_http -- --data "$data" --queries 1000 --seconds "$seconds" --hnsw-only
echo "# hnswlib, after"
python3 scripts/hnswlib_bench.py "$data" --efs 16,20,24,32,48,64 --no-single-thread-build
