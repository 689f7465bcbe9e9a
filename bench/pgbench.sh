#!/usr/bin/env bash
# PostgreSQL's own benchmark client, `pgbench -M prepared`, against Shoal's PostgreSQL endpoint
# and PostgreSQL with two quorum-synchronous standbys, side by side on this machine; writes the
# table into docs/benchmarks.md. About 4 minutes after the release build with the defaults.
#   bench/pgbench.sh [--seconds 10] [--rounds 2] [--no-write]
set -euo pipefail
cd "$(dirname "$0")/.."
peers=../shared/peers
[[ -x $peers/postgres-sync.sh ]] || { echo "pgbench.sh: the peer scripts are expected in $peers" >&2; exit 2; }
if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || ! command -v pgbench >/dev/null; then
  echo "pgbench.sh: installing postgresql" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib >/dev/null
fi
cargo build --release --quiet
exec python3 bench/pgbench.py "$@"
