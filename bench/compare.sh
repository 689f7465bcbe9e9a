#!/usr/bin/env bash
# Shoal side by side with PostgreSQL (primary + 2 quorum-synchronous standbys) and a 3-member
# etcd on this machine: builds Shoal in release mode, installs the peers if missing, runs the
# same workloads against each in alternation, measures failover and memory, and writes the
# table into docs/benchmarks.md. Takes about 15 minutes with the defaults.
#   bench/compare.sh [--seconds 10] [--rounds 3] [--kills 20] [--no-write]
set -euo pipefail
cd "$(dirname "$0")/.."
peers=../shared/peers
[[ -x $peers/postgres-sync.sh && -x $peers/etcd-3node.sh ]] || {
  echo "compare.sh: the peer scripts are expected in $peers" >&2; exit 2; }
missing=()
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=(postgresql)
command -v etcd >/dev/null || missing+=(etcd-server etcd-client)
if ((${#missing[@]})); then
  echo "compare.sh: installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --quiet
exec python3 bench/compare.py "$@"
