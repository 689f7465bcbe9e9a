#!/usr/bin/env bash
# What sharding costs and gives on one machine: point reads and writes in a 4-group sharded
# database against an unsharded one, INSERT throughput with 1, 2 and 4 groups, and an
# aggregate over a distributed table (the scatter tier) against the same table unsharded. Builds
# Shoal in release mode and writes the table into docs/benchmarks.md. About 5 minutes.
#   bench/sharding.sh [--seconds 10] [--rows 1000000] [--no-write]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 bench/sharding.py "$@"
