#!/usr/bin/env bash
# What growing a sharded database online costs the clients writing to it: point UPDATEs on a
# 4-group database over a 3-node cluster, first undisturbed, then while
# ALTER DATABASE … SET (shards = 8) moves half its slots; the latency each side sees, their
# ratio, and every move's critical section (its pause) from the nodes' logs. Builds Shoal in
# release mode and writes the table into docs/benchmarks.md. About 3 minutes.
#   bench/reshard.sh [--rows 200000] [--no-write]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 bench/reshard.py "$@"
