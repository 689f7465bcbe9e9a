#!/usr/bin/env bash
# Backup and restore MB/s of a database over 1 GiB, and INSERT throughput while backups run on
# the leader or a follower vs without: builds Shoal in release mode, runs a 3-voter cluster on
# loopback, and writes the table into docs/benchmarks.md. About 5 minutes.
#   bench/backup.sh [--size-mb 1100] [--seconds 10] [--no-write]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 bench/backup.py "$@"
