#!/usr/bin/env bash
# Soak run of the fault-injection suite (tests/faults): every seed runs the register, bank,
# set, append and PostgreSQL-bank workloads under the full nemesis for the given time, then
# checks them.
#   scripts/soak.sh [SECONDS_PER_SEED=600] [SEEDS=101,102,103]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
seeds="${2:-101,102,103}"
SHOAL_SOAK_SECONDS="$seconds" SHOAL_SOAK_SEEDS="$seeds" \
  exec cargo test --test faults soak -- --ignored --nocapture
