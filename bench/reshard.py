#!/usr/bin/env python3
"""What growing a sharded database online costs its clients (run by bench/reshard.sh).

A 3-voter Shoal cluster on loopback holds `s4` (4 groups, `distribute = all`) with the
`shoal bench` table and `--rows` rows of `facts`. Sixteen clients run point UPDATEs through
node 1, first for as long as the resharding will take with nothing else happening (the
peer: the same cluster undisturbed), then while `ALTER DATABASE s4 SET (shards = 8)` joins
four groups and moves half the slots with their rows. The table gives both sides' latency
and their ratio, how long the resharding took, and the pause of every move (freeze of the
source to the catalog's new map: the time requests to the two groups wait), read from the
nodes' logs. It writes the table into docs/benchmarks.md between the reshard.sh markers and
stops every process it started, also on failure or Ctrl-C.

Standard library only; shares its cluster helpers with compare.py.
"""

import argparse
import re
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time

from compare import ShoalCluster, http_json, log, run_bench, write_into_docs
from sharding import create, execute, load_facts

CLIENTS = 16
DATABASE = ("s4", "WITH (replicas = 3, shards = 4, distribute = all)")


def shards_and_steps(cluster):
    reply = http_json(cluster.url(cluster.nodes[0]) + "/db/query", ["SHOW DATABASES"], timeout=10)
    result = reply["results"][0]
    columns = result["columns"]
    for row in result.get("values", []):
        if row[0] == "s4":
            return row[columns.index("shards")], row[columns.index("resharding_steps")]
    raise RuntimeError("s4 is not listed")


def pauses(cluster):
    found = []
    for node in cluster.nodes:
        text = (cluster.workdir / f"node{node['id']}.log").read_text(errors="replace")
        found += [int(ms) for ms in re.findall(r"slots moved.*?pause_ms=(\d+)", text)]
    return sorted(found)


def percentile(values, share):
    return values[min(len(values) - 1, int(len(values) * share))] if values else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--no-write", action="store_true")
    options = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="shoal-reshard-")
    cluster = ShoalCluster(workdir)

    def cleanup(*_):
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        sys.exit(1)

    signal.signal(signal.SIGINT, cleanup)
    signal.signal(signal.SIGTERM, cleanup)
    try:
        cluster.start()
        create(cluster, (DATABASE,))
        log(f"loading {options.rows:,} rows into s4.facts")
        load_facts(cluster, "s4", options.rows)
        url = cluster.url(cluster.nodes[0])
        # A short run seeds the bench table; the measured runs follow.
        run_bench("shoal", url, "point-update", CLIENTS, 3, ["--database", "s4"])
        seconds = 20
        log(f"undisturbed: point UPDATEs for {seconds} s")
        quiet = run_bench("shoal", url, "point-update", CLIENTS, seconds, ["--database", "s4"])
        log("resharding 4 → 8 under the same load")
        during = {}
        worker = threading.Thread(target=lambda: during.update(run_bench(
            "shoal", url, "point-update", CLIENTS, seconds, ["--database", "s4"])))
        worker.start()
        time.sleep(2)
        started = time.perf_counter()
        execute(url + "/db/execute?timeout=60s", ["ALTER DATABASE s4 SET (shards = 8)"])
        while shards_and_steps(cluster) != (8, 0):
            if time.perf_counter() - started > 300:
                raise RuntimeError("the resharding did not finish within 5 minutes")
            time.sleep(0.1)
        took = time.perf_counter() - started
        worker.join()
        counted = http_json(url + "/db/query?db=s4", ["SELECT count(*) FROM facts"], timeout=60)
        if counted["results"][0]["values"] != [[options.rows]]:
            raise RuntimeError(f"facts after resharding: {counted['results'][0]}")
        moved = pauses(cluster)
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    q, d = quiet["latency_ms"], during["latency_ms"]
    lines = [
        f"**Growing a database online (4 → 8 groups).** 3 voters on loopback, `s4` holding the "
        f"bench table and {options.rows:,} rows of `facts`; {CLIENTS} clients run point UPDATEs "
        f"through node 1 for {seconds} s undisturbed, then for {seconds} s while "
        f"`ALTER DATABASE s4 SET (shards = 8)` runs (it took {took:.1f} s: 4 joins, "
        f"{len(moved)} moves of up to 256 slots):",
        "",
        "| point UPDATE | ops/s | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
        f"| undisturbed | {quiet['operations_per_s']:,.0f} | {q['p50']:.2f} | {q['p99']:.2f} "
        f"| {q['max']:.2f} |",
        f"| while resharding | {during['operations_per_s']:,.0f} | {d['p50']:.2f} "
        f"| {d['p99']:.2f} | {d['max']:.2f} |",
        f"| ratio | {during['operations_per_s'] / quiet['operations_per_s']:.2f} "
        f"| {d['p50'] / q['p50']:.2f} | {d['p99'] / q['p99']:.2f} | {d['max'] / q['max']:.2f} |",
        "",
        f"Each move's pause (source frozen → catalog's new map; requests to its two groups "
        f"wait meanwhile): p50 {percentile(moved, 0.5)} ms, p99 {percentile(moved, 0.99)} ms, "
        f"max {moved[-1] if moved else 'n/a'} ms over {len(moved)} moves "
        f"(mean {statistics.mean(moved) if moved else float('nan'):.0f} ms).",
    ]
    table = "\n".join(lines)
    print(table)
    if not options.no_write:
        write_into_docs(table, script="reshard.sh", heading="Resharding (bench/reshard.sh)")


if __name__ == "__main__":
    main()
