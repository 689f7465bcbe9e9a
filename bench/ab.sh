#!/usr/bin/env bash
# A/B of two shoal binaries on the same workload: for each round, a fresh 3-voter loopback
# cluster of one binary, then of the other, and `shoal bench --workload insert` with 1 and 16
# clients against its leader. Prints one line per run; compare the medians of the rounds.
# The cluster uses ports BASE+11 … BASE+33 (default base 20000, below the kernel's ephemeral range).
#   bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [BASE_PORT]
# Example (before/after a change): build the older commit in a worktree with its own
# CARGO_TARGET_DIR, `cargo build --release`, then bench/ab.sh old/shoal target/release/shoal 3
set -uo pipefail
old=$1 new=$2 rounds=${3:-3} base=${4:-20000}
work=$(mktemp -d)
pids=()
stop_cluster() {
  ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null
  sleep 2
  ((${#pids[@]})) && kill -9 "${pids[@]}" 2>/dev/null
  pids=()
}
trap 'stop_cluster; rm -rf "$work"' EXIT
start_cluster() { # binary directory
  local bin=$1 dir=$2
  rm -rf "$dir" && mkdir -p "$dir"
  for n in 1 2 3; do
    local join=()
    ((n > 1)) && join=(--join "http://127.0.0.1:$((base + 11))")
    "$bin" serve --node-id "$n" --http-addr "127.0.0.1:$((base + n * 10 + 1))" \
      --raft-addr "127.0.0.1:$((base + n * 10 + 2))" --pg-addr "127.0.0.1:$((base + n * 10 + 3))" \
      --data-dir "$dir/n$n" "${join[@]}" >"$dir/n$n.log" 2>&1 &
    pids+=($!)
    disown
    sleep 1.5
  done
  sleep 2
}
for round in $(seq 1 "$rounds"); do
  for which in old new; do
    bin=$old
    [[ $which == new ]] && bin=$new
    start_cluster "$bin" "$work/$which"
    for clients in 1 16; do
      "$new" bench --host "http://127.0.0.1:$((base + 11))" --workload insert \
        --clients "$clients" --duration 8s --json --no-progress 2>/dev/null |
        python3 -c 'import json, sys
d = json.load(sys.stdin)
print("%s %s insert clients=%s ops/s=%.0f p50_ms=%.3f p99_ms=%.3f" % (sys.argv[1], sys.argv[2], sys.argv[3],
      d["operations_per_s"], d["latency_ms"]["p50"], d["latency_ms"]["p99"]))' "$round" "$which" "$clients"
    done
    stop_cluster
  done
done
