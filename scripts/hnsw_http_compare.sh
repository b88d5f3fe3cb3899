#!/usr/bin/env bash
# HNSW over HTTP against hnswlib in-process, side by side in one run:
# hnswlib (build with 2 threads, then QPS with 2 query threads), the server
# with 8 HTTP clients (`ivf_http --hnsw-only`: build, recall and QPS per ef),
# then ROUNDS alternations of hnswlib's QPS and the server's (ef 24 and 32),
# so both are measured minute by minute on the same (shared, noisy) machine.
# Compare QPS at the same recall@10: the cheapest setting of each reaching
# 0.95 (hnswlib: ef 32, 0.961; aionbd: ef 24, about 0.955 on debian-minilm).
#   scripts/hnsw_http_compare.sh DATA_DIR [SECONDS] [ROUNDS]
# Installs hnswlib and numpy with pip when missing.
set -euo pipefail
data=${1:?usage: hnsw_http_compare.sh DATA_DIR [SECONDS] [ROUNDS]}
seconds=${2:-5}
rounds=${3:-4}
cd "$(dirname "$0")/.."
python3 -c 'import hnswlib, numpy' 2>/dev/null || python3 -m pip install --quiet hnswlib numpy
cargo build --quiet --release --benches
index=$(mktemp -d)/hnswlib.bin
trap 'rm -rf "$(dirname "$index")"' EXIT
echo "# hnswlib: build, then QPS per ef"
python3 scripts/hnswlib_bench.py "$data" --efs 16,20,24,32,48,64 --no-single-thread-build --index "$index" --seconds "$seconds"
echo "# aionbd over HTTP (2 shards x 2 partitions, 8 clients), then $rounds rounds: hnswlib, aionbd"
cargo bench --quiet --bench ivf_http -- --data "$data" --queries 1000 --seconds "$seconds" --hnsw-only \
    --rounds "$rounds" --between "python3 scripts/hnswlib_bench.py '$data' --efs 24,32 --index '$index' --seconds $seconds"
