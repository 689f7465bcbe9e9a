#!/usr/bin/env bash
# A/B of two shoal binaries on the same workloads: for each round, a fresh 3-voter loopback
# cluster of one binary, then of the other; `shoal bench` INSERTs with 1, 16 and 64 clients on
# the leader, point SELECTs with 16 clients on a follower (level=none) and on the leader
# (level=weak), AB_SECONDS (default 5) each. Prints one line per run; compare the medians.
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
    # workload clients node consistency
    for run in "insert 1 1 weak" "insert 16 1 weak" "insert 64 1 weak" \
      "point-select 16 2 none" "point-select 16 1 weak"; do
      read -r workload clients node consistency <<<"$run"
      "$new" bench --host "http://127.0.0.1:$((base + node * 10 + 1))" --workload "$workload" \
        --clients "$clients" --consistency "$consistency" --duration "${AB_SECONDS:-5}s" --json \
        --no-progress 2>/dev/null |
        python3 -c 'import json, sys
d = json.load(sys.stdin)
print("%s %s %s clients=%s node=%s level=%s ops/s=%.0f p50_ms=%.3f p99_ms=%.3f" % (*sys.argv[1:7],
      d["operations_per_s"], d["latency_ms"]["p50"], d["latency_ms"]["p99"]))' \
        "$round" "$which" "$workload" "$clients" "$node" "$consistency"
    done
    stop_cluster
  done
done
