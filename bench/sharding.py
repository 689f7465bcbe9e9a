#!/usr/bin/env python3
"""What sharding costs and gives (run by bench/sharding.sh).

Starts a 3-voter Shoal cluster (release build) on loopback with three databases — `plain`
(one group), `s2` and `s4` (2 and 4 groups, `distribute = all`: every table distributed by
its rowid) — and measures, with `shoal bench` through node 1:
  1. point SELECTs and single-row INSERTs in `s4` against `plain` (the router's cost on
     statements that reach one group);
  2. INSERT throughput with 1, 2 and 4 groups;
  3. `SELECT k, count(*), sum(x), avg(x) FROM facts GROUP BY k` over `--rows` rows, in `plain`
     and `s4` (a gather: every row fetched from the four groups into one node's memory).
It writes the table into docs/benchmarks.md between the sharding.sh markers and stops every
process it started, also on failure or Ctrl-C.

Standard library only; shares its cluster helpers with compare.py.
"""

import argparse
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.error

from compare import ShoalCluster, http_json, log, run_bench, write_into_docs

CLIENTS = 16
DATABASES = (("plain", "WITH (replicas = 3)"),
             ("s2", "WITH (replicas = 3, shards = 2, distribute = all)"),
             ("s4", "WITH (replicas = 3, shards = 4, distribute = all)"))


def execute(url, statements, timeout=300):
    reply = http_json(url, statements, timeout=timeout)
    errors = [r["error"] for r in reply.get("results", []) if "error" in r]
    if errors or "error" in reply:
        raise RuntimeError(f"{statements}: {errors or reply}")
    return reply


def create(cluster):
    url = cluster.url(cluster.nodes[0]) + "/db/execute?timeout=120s"
    for name, options in DATABASES:
        for attempt in range(150):
            try:
                execute(url, [f"CREATE DATABASE {name} {options}"])
                break
            except (urllib.error.HTTPError, RuntimeError) as error:
                if attempt == 149:
                    raise
                time.sleep(0.2)
    time.sleep(3)  # the new groups elect and settle


def bench(cluster, database, workload, seconds, consistency=None):
    extra = ["--database", database]
    if consistency:
        extra += ["--consistency", consistency]
    summary = run_bench("shoal", cluster.url(cluster.nodes[0]), workload, CLIENTS, seconds, extra)
    log(f"  {database} {workload} {consistency or ''}: {summary['operations_per_s']:,.0f} ops/s, "
        f"p50 {summary['latency_ms']['p50']:.2f} ms")
    return summary


def load_facts(cluster, database, rows):
    url = cluster.url(cluster.nodes[0]) + f"/db/execute?db={database}&timeout=600s"
    execute(url, ["CREATE TABLE IF NOT EXISTS facts (k INTEGER, x INTEGER)"])
    chunk = 50_000
    for first in range(0, rows, chunk):
        last = min(rows, first + chunk)
        execute(url, [f"INSERT INTO facts (k, x) WITH RECURSIVE n(i) AS (SELECT {first} UNION ALL "
                      f"SELECT i + 1 FROM n WHERE i + 1 < {last}) SELECT i % 100, i FROM n"],
                timeout=600)


def time_aggregate(cluster, database, runs=5):
    url = cluster.url(cluster.nodes[0]) + f"/db/query?db={database}&timeout=300s"
    sql = "SELECT k, count(*), sum(x), avg(x) FROM facts GROUP BY k"
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        reply = http_json(url, [sql], timeout=300)
        timings.append((time.perf_counter() - started) * 1000)
        result = reply["results"][0]
        if "error" in result:
            raise RuntimeError(f"{database}: {result['error']}")
    return statistics.median(timings), sorted(result.get("values", []))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--no-write", action="store_true")
    options = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="shoal-sharding-")
    cluster = ShoalCluster(workdir)

    def cleanup(*_):
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        sys.exit(1)

    signal.signal(signal.SIGINT, cleanup)
    signal.signal(signal.SIGTERM, cleanup)
    try:
        cluster.start()
        create(cluster)
        results = {}
        plain_led_here = leads(cluster, "plain")
        for database in ("plain", "s4"):
            results[(database, "point-select")] = bench(cluster, database, "point-select",
                                                        options.seconds)
            results[(database, "point-select-none")] = bench(
                cluster, database, "point-select", options.seconds, consistency="none")
        for database in ("plain", "s2", "s4"):
            results[(database, "insert")] = bench(cluster, database, "insert", options.seconds)
        aggregates = {}
        for database in ("plain", "s4"):
            log(f"loading {options.rows:,} rows into {database}.facts")
            load_facts(cluster, database, options.rows)
            aggregates[database] = time_aggregate(cluster, database)
            log(f"  {database} GROUP BY: {aggregates[database][0]:.0f} ms")
        if aggregates["plain"][1] != aggregates["s4"][1]:
            raise RuntimeError("the sharded GROUP BY answered differently from the unsharded one")
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    table = render(results, aggregates, options, plain_led_here)
    print(table)
    if not options.no_write:
        write_into_docs(table, script="sharding.sh", heading="Sharded databases (bench/sharding.sh)")


def leads(cluster, database):
    """Whether node 1 leads `database`'s (first) group."""
    status = http_json(cluster.url(cluster.nodes[0]) + "/status", timeout=5)
    return any(g.get("database") == database and g.get("role") == "leader"
               for g in status.get("groups", []))


def render(results, aggregates, options, plain_led_here):
    def row(label, database, workload, base=None):
        s = results[(database, workload)]
        ratio = ""
        if base:
            b = results[(base, workload)]
            ratio = f"{s['operations_per_s'] / b['operations_per_s']:.2f}"
        return (f"| {label} | {s['operations_per_s']:,.0f} | {s['latency_ms']['p50']:.2f} "
                f"| {s['latency_ms']['p99']:.2f} | {ratio} |")

    lines = [
        f"{CLIENTS} clients through node 1, {options.seconds} s each, 3 voters on one 2-core "
        f"machine; node 1 {'led' if plain_led_here else 'did not lead'} `plain`'s group (a "
        "statement for a group led elsewhere is forwarded: one more hop). `level=none` reads "
        "are answered by node 1's own replicas in both databases, so their ratio is the "
        "router's own cost.",
        "",
        "| statement (database) | ops/s | p50 ms | p99 ms | throughput vs 1 group |",
        "|---|---|---|---|---|",
        row("point SELECT, 1 group (plain)", "plain", "point-select"),
        row("point SELECT, key pinned, 4 groups (s4)", "s4", "point-select", "plain"),
        row("point SELECT level=none, 1 group (plain)", "plain", "point-select-none"),
        row("point SELECT level=none, key pinned, 4 groups (s4)", "s4", "point-select-none",
            "plain"),
        row("INSERT, 1 group (plain)", "plain", "insert"),
        row("INSERT, 2 groups (s2)", "s2", "insert", "plain"),
        row("INSERT, 4 groups (s4)", "s4", "insert", "plain"),
        "",
        f"`SELECT k, count(*), sum(x), avg(x) FROM facts GROUP BY k` over {options.rows:,} rows "
        "(median of 5):",
        "",
        "| database | ms | groups |",
        "|---|---|---|",
        f"| plain (1 group) | {aggregates['plain'][0]:.0f} | 1 |",
        f"| s4 (scatter: partial aggregates from 4 groups, merged) | {aggregates['s4'][0]:.0f} "
        f"| 4 |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
