#!/usr/bin/env bash
# HNSW side by side in one run: AIONBD's engine in-process (no HTTP) and
# hnswlib in-process, same data, same M and ef_construction.
#   scripts/hnsw_compare.sh DATA_DIR [M] [EF_CONSTRUCTION]
# Installs hnswlib and numpy with pip when missing. Prints both JSON streams.
set -euo pipefail
data=${1:?usage: hnsw_compare.sh DATA_DIR [M] [EF_CONSTRUCTION]}
m=${2:-16}
efc=${3:-100}
cd "$(dirname "$0")/.."
python3 -c 'import hnswlib, numpy' 2>/dev/null || python3 -m pip install --quiet hnswlib numpy
echo "# hnswlib (M=$m, ef_construction=$efc)"
python3 scripts/hnswlib_bench.py "$data" --m "$m" --ef-construction "$efc"
echo "# aionbd engine (M=$m, ef_construction=$efc)"
cargo bench --quiet --bench hnsw_engine -- --data "$data" --m "$m" --ef-construction "$efc" --json
