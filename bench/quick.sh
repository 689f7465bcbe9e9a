#!/usr/bin/env bash
# The regression guard (about 2 minutes after the release build): the target rows of
# bench/compare.sh at short durations against PostgreSQL with two quorum-synchronous standbys,
# and failover over 5 leader kills; prints the ratios in one line and appends it with the
# commit to the history table in docs/benchmarks.md. Run it before every stop that touches a
# request path.   bench/quick.sh [--no-write]
set -euo pipefail
cd "$(dirname "$0")/.."
peers=../shared/peers
[[ -x $peers/postgres-sync.sh ]] || { echo "quick.sh: the peer scripts are expected in $peers" >&2; exit 2; }
if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
  echo "quick.sh: installing postgresql" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
cargo build --release --quiet
exec python3 bench/compare.py --quick "$@"
