#!/usr/bin/env bash
# Fuzzes Shoal's decoders with cargo-fuzz (libFuzzer, nightly toolchain): every target, or the
# ones named, for SECONDS each (default 600). Not part of CI. Inputs that grow coverage are
# kept in fuzz/corpus/<target> (commit them); crashes land in fuzz/artifacts/<target> and
# stop the run with the reproducing command. Prints executions per target at the end.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(http_request sql_text pg_messages raft_rpc)
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
summary=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  log=$(mktemp)
  echo "fuzzing $target for ${seconds}s"
  # -max_len bounds one input; -rss_limit_mb and -timeout turn a runaway into a finding.
  if ! (cd fuzz && cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1) >"$log" 2>&1; then
    tail -40 "$log"
    echo "scripts/fuzz.sh: $target found a crash (see fuzz/artifacts/$target)" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  echo "$target: $runs executions in ${seconds}s, no crash"
  # Keep only inputs that add coverage, so the committed corpus stays small.
  (cd fuzz && cargo +nightly fuzz cmin "$target" "corpus/$target" -- -max_len=8192) >"$log" 2>&1 ||
    { tail -20 "$log"; echo "scripts/fuzz.sh: minimising the $target corpus failed" >&2; exit 1; }
  files=$(find "fuzz/corpus/$target" -type f | wc -l)
  summary+=("$target: $runs executions in ${seconds}s, no crash, corpus $files inputs")
  rm -f "$log"
done
printf '%s\n' "${summary[@]}"
