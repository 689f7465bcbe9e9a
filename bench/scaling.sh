#!/usr/bin/env bash
# How Shoal's throughput, latency and memory change with 1–256 clients, with a 10 MB and a
# 1 GB database, and through a 5-minute INSERT run: builds Shoal in release mode, runs a
# 3-voter cluster on loopback, and writes the tables into docs/benchmarks.md. About 15 minutes.
#   bench/scaling.sh [--seconds 10] [--memory-seconds 300] [--large-mb 1000] [--no-write]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 bench/scaling.py "$@"
