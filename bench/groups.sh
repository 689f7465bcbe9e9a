#!/usr/bin/env bash
# What many Raft groups cost: idle CPU, memory, file descriptors and peer messages per group
# replica at 1, 10 and 100 databases on a 3-node cluster, and aggregate INSERT throughput of
# 1, 2 and 4 databases written at once. Builds Shoal in release mode and writes the tables
# into docs/benchmarks.md. About 5 minutes.
#   bench/groups.sh [--idle-seconds 20] [--insert-seconds 10] [--no-write]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 bench/groups.py "$@"
