#!/usr/bin/env bash
# Exact-search load benchmark over HTTP against the release server.
# Usage: scripts/bench-exact.sh [DATA_DIR] [extra args for benches/exact_http.rs]
# DATA_DIR holds base.fvecs|base.npy, queries.fvecs|queries.npy and
# optionally gt.ivecs (default: ../shared/data/debian-minilm).
# Figures and method: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/debian-minilm}"
shift || true
exec cargo bench --bench exact_http -- --data "$data" "$@"
