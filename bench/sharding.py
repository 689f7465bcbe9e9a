#!/usr/bin/env python3
"""What sharding costs and gives (run by bench/sharding.sh).

First the router's own cost: a one-node Shoal (every group led where the clients connect)
with `plain` (one group) and `s4` (4 groups, `distribute = all`: every table distributed by
its rowid); point SELECTs (weak and `none`) and point UPDATEs whose keys all lie in shard 0,
so each statement reaches one group on both sides. Then a 3-voter cluster on loopback with
`plain`, `s2` and `s4`, measured with `shoal bench` through node 1:
  1. point SELECTs and UPDATEs over every key in `s4` against `plain`;
  2. INSERT throughput with 1, 2 and 4 groups;
  3. `SELECT k, count(*), sum(x), avg(x) FROM facts GROUP BY k` over `--rows` rows, in `plain`
     and `s4` (scattered: partial aggregates from each group, merged).
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
# The keys shard 0 of 4 holds: every point statement of the router-cost rows reaches one
# group in `s4` (and one in `plain`), so both run one group's work under the same load.
ONE_GROUP = ["--keys-of-shard", "0/4"]


def execute(url, statements, timeout=300):
    reply = http_json(url, statements, timeout=timeout)
    errors = [r["error"] for r in reply.get("results", []) if "error" in r]
    if errors or "error" in reply:
        raise RuntimeError(f"{statements}: {errors or reply}")
    return reply


def create(cluster, databases=DATABASES):
    url = cluster.url(cluster.nodes[0]) + "/db/execute?timeout=120s"
    for name, options in databases:
        if cluster.size == 1:
            options = options.replace("replicas = 3", "replicas = 1")
        for attempt in range(150):
            try:
                execute(url, [f"CREATE DATABASE {name} {options}"])
                break
            except (urllib.error.HTTPError, RuntimeError) as error:
                if attempt == 149:
                    raise
                time.sleep(0.2)
    time.sleep(3)  # the new groups elect and settle


def bench(cluster, database, workload, seconds, consistency=None, extra=()):
    extra = ["--database", database, *extra]
    if consistency:
        extra += ["--consistency", consistency]
    summary = run_bench("shoal", cluster.url(cluster.nodes[0]), workload, CLIENTS, seconds, extra)
    log(f"  {database} {workload} {consistency or ''} {' '.join(extra[2:])}: "
        f"{summary['operations_per_s']:,.0f} ops/s, p50 {summary['latency_ms']['p50']:.2f} ms")
    return summary


def router_cost(workdir, seconds):
    """The router's own cost on single-group statements: one node, so every group is led
    where the clients connect and nothing is forwarded on either side; keys of one shard."""
    cluster = ShoalCluster(workdir, size=1)
    try:
        cluster.start()
        create(cluster, (DATABASES[0], DATABASES[2]))
        results = {}
        for workload, consistency in (("point-select", None), ("point-select", "none"),
                                      ("point-update", None)):
            label = workload + ("-none" if consistency else "")
            # Alternated twice, the better of each kept: this machine's run-to-run spread is
            # about the size of what is measured.
            for _ in range(2):
                for database in ("plain", "s4"):
                    summary = bench(cluster, database, workload, seconds, consistency,
                                    ONE_GROUP)
                    kept = results.get((database, label))
                    if kept is None or summary["operations_per_s"] > kept["operations_per_s"]:
                        results[(database, label)] = summary
        return results
    finally:
        cluster.stop()


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
    parser.add_argument("--rows", type=int, default=1_000_000)
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
        log("router cost: one node, keys of one shard")
        single = router_cost(tempfile.mkdtemp(prefix="single-", dir=workdir), options.seconds)
        cluster.start()
        create(cluster)
        results = {}
        plain_led_here = leads(cluster, "plain")
        for database in ("plain", "s4"):
            results[(database, "point-select")] = bench(cluster, database, "point-select",
                                                        options.seconds)
            results[(database, "point-select-none")] = bench(
                cluster, database, "point-select", options.seconds, consistency="none")
            results[(database, "point-update")] = bench(cluster, database, "point-update",
                                                        options.seconds)
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
    table = render(results, single, aggregates, options, plain_led_here)
    print(table)
    if not options.no_write:
        write_into_docs(table, script="sharding.sh", heading="Sharded databases (bench/sharding.sh)")


def leads(cluster, database):
    """Whether node 1 leads `database`'s (first) group."""
    status = http_json(cluster.url(cluster.nodes[0]) + "/status", timeout=5)
    return any(g.get("database") == database and g.get("role") == "leader"
               for g in status.get("groups", []))


def render(results, single, aggregates, options, plain_led_here):
    def row(label, table, database, workload, base=None):
        s = table[(database, workload)]
        ratio = ""
        if base:
            b = table[(base, workload)]
            ratio = f"{s['operations_per_s'] / b['operations_per_s']:.2f}"
        return (f"| {label} | {s['operations_per_s']:,.0f} | {s['latency_ms']['p50']:.2f} "
                f"| {s['latency_ms']['p99']:.2f} | {ratio} |")

    header = ["| statement (database) | ops/s | p50 ms | p99 ms | throughput vs 1 group |",
              "|---|---|---|---|---|"]
    lines = [
        f"**The router's cost on single-group statements.** One node (every group led where "
        f"the {CLIENTS} clients connect, nothing forwarded on either side), keys of one shard "
        f"(`--keys-of-shard 0/4`: each statement reaches shard 0's group in `s4`, the one group "
        f"in `plain`), {options.seconds} s each, the better of two alternated runs:",
        "",
        *header,
        row("point SELECT (plain)", single, "plain", "point-select"),
        row("point SELECT, key pinned (s4)", single, "s4", "point-select", "plain"),
        row("point SELECT level=none (plain)", single, "plain", "point-select-none"),
        row("point SELECT level=none, key pinned (s4)", single, "s4", "point-select-none",
            "plain"),
        row("point UPDATE (plain)", single, "plain", "point-update"),
        row("point UPDATE, key pinned (s4)", single, "s4", "point-update", "plain"),
        "",
        f"**Three voters**, {CLIENTS} clients through node 1, keys over every shard, "
        f"{options.seconds} s each; node 1 {'led' if plain_led_here else 'did not lead'} "
        "`plain`'s group (a statement for a group led elsewhere is forwarded: one more hop). "
        "`level=none` reads are answered by node 1's own replicas in both databases.",
        "",
        *header,
        row("point SELECT, 1 group (plain)", results, "plain", "point-select"),
        row("point SELECT, key pinned, 4 groups (s4)", results, "s4", "point-select", "plain"),
        row("point SELECT level=none, 1 group (plain)", results, "plain", "point-select-none"),
        row("point SELECT level=none, key pinned, 4 groups (s4)", results, "s4",
            "point-select-none", "plain"),
        row("point UPDATE, 1 group (plain)", results, "plain", "point-update"),
        row("point UPDATE, key pinned, 4 groups (s4)", results, "s4", "point-update", "plain"),
        row("INSERT, 1 group (plain)", results, "plain", "insert"),
        row("INSERT, 2 groups (s2)", results, "s2", "insert", "plain"),
        row("INSERT, 4 groups (s4)", results, "s4", "insert", "plain"),
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
