#!/usr/bin/env python3
"""How Shoal's cost grows with the work (run by bench/scaling.sh).

Starts a 3-voter Shoal cluster (release build) on loopback and measures, with `shoal bench`:
  1. throughput, latency and memory at 1, 4, 16, 64 and 256 clients (INSERT through the leader,
     point SELECT on a follower);
  2. the same workloads once the database holds 10 MB and then 1 GB of other data;
  3. resident memory sampled every 10 s through a long INSERT run (5 minutes by default).
It writes the tables into docs/benchmarks.md between the scaling markers and stops every
process it started, also on failure or Ctrl-C.

Standard library only; shares its cluster helpers with compare.py.
"""

import argparse
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from compare import ShoalCluster, http_json, log, run_bench, write_into_docs

MB = 1_000_000
# One statement adds this many bytes of random data; the entry itself is only the SQL text.
FILL_ROWS_PER_STATEMENT = 10_000
FILL_ROW_BYTES = 1_000


def database_bytes(cluster, node):
    return http_json(cluster.url(node) + "/status", timeout=5)["storage"]["db_size_bytes"]


def fill_to(cluster, target_bytes):
    """Grows the database with a filler table until the leader's file holds `target_bytes`."""
    leader = cluster.leader()
    url = cluster.url(leader) + "/db/execute?timeout=120s"
    http_json(url, ["CREATE TABLE IF NOT EXISTS filler(id INTEGER PRIMARY KEY, body BLOB)"], timeout=60)
    statement = (
        f"WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
        f"WHERE x < {FILL_ROWS_PER_STATEMENT}) "
        f"INSERT INTO filler(body) SELECT randomblob({FILL_ROW_BYTES}) FROM n"
    )
    while database_bytes(cluster, leader) < target_bytes:
        reply = http_json(url, [statement], timeout=180)
        if any("error" in result for result in reply.get("results", [])):
            raise RuntimeError(f"filling the database failed: {reply}")
    # Every node applies the fill before anything is measured.
    applied = http_json(cluster.url(leader) + "/status")["node"]["applied_index"]
    deadline = time.time() + 300
    for node in cluster.nodes:
        while http_json(cluster.url(node) + "/status", timeout=5)["node"]["applied_index"] < applied:
            if time.time() > deadline:
                raise RuntimeError(f"node {node['id']} did not apply the fill within 300 s")
            time.sleep(0.5)


def measure(cluster, workload, clients, seconds):
    """One run: (summary, largest RSS of any node in MiB afterwards)."""
    if workload == "insert":
        host, extra = cluster.url(cluster.leader()), ()
    elif workload == "point-select":
        host, extra = cluster.url(cluster.follower()), ("--consistency", "none")
    else:
        host, extra = cluster.url(cluster.leader()), ("--consistency", "weak")
    summary = run_bench("shoal", host, workload, clients, seconds, extra)
    return summary, max(cluster.rss_mib())


def row(label, summary, rss):
    latency = summary["latency_ms"]
    errors = f" ({summary['errors']} errors)" if summary["errors"] else ""
    return (f"| {label}{errors} | {summary['operations_per_s']:,.0f} | {latency['p50']:.2f} | "
            f"{latency['p99']:.2f} | {rss:.0f} |")


def sample_memory(cluster, seconds, interval=10):
    """INSERT with 64 clients for `seconds`, sampling every node's RSS every `interval` s."""
    samples = []
    stop = threading.Event()

    def sampler():
        started = time.time()
        while not stop.wait(interval):
            samples.append((time.time() - started, cluster.rss_mib()))

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    try:
        summary = run_bench("shoal", cluster.url(cluster.leader()), "insert", 64, seconds)
    finally:
        stop.set()
        thread.join()
    return summary, samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each run")
    parser.add_argument("--memory-seconds", type=int, default=300, help="length of the memory run")
    parser.add_argument("--large-mb", type=int, default=1000, help="size of the large database")
    parser.add_argument("--no-write", action="store_true", help="print, do not edit docs")
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="shoal-scaling-"))
    cluster = ShoalCluster(workdir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    lines = []
    try:
        log("starting Shoal (3 voters)")
        cluster.start()
        time.sleep(2)
        idle = cluster.rss_mib()
        lines += [
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/scaling.sh` "
            f"(release build, 3 voters on loopback, one disk, {options.seconds} s per run). "
            f"RSS is the largest of the three nodes after the run; idle it was "
            + ", ".join(f"{r:.1f}" for r in idle) + " MiB.",
            "",
            "| clients | workload | ops/s | p50 ms | p99 ms | RSS MiB |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for workload in ("insert", "point-select"):
            for clients in (1, 4, 16, 64, 256):
                log(f"{workload}, {clients} clients")
                summary, rss = measure(cluster, workload, clients, options.seconds)
                lines.append(row(f"{clients} | {workload}", summary, rss))

        lines += [
            "",
            "| database | workload | ops/s | p50 ms | p99 ms | RSS MiB |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for label, target in (("10 MB", 10 * MB), (f"{options.large_mb / 1000:g} GB", options.large_mb * MB)):
            log(f"filling the database to {label}")
            started = time.time()
            fill_to(cluster, target)
            log(f"  filled in {time.time() - started:.0f} s")
            for workload, clients in (("insert", 64), ("point-select", 16), ("mixed", 16)):
                log(f"{label}: {workload}, {clients} clients")
                summary, rss = measure(cluster, workload, clients, options.seconds)
                lines.append(row(f"{label} | {workload}, {clients} clients", summary, rss))
            status = http_json(cluster.url(cluster.leader()) + "/status")["storage"]
            lines.append(
                f"| {label} | leader's files after the runs: database "
                f"{status['db_size_bytes'] / MB:,.0f} MB, log {status['log_disk_bytes'] / MB:,.1f} MB, "
                f"{status['log_entries']:,} entries | | | | |")

        log(f"memory through {options.memory_seconds} s of INSERTs with 64 clients")
        summary, samples = sample_memory(cluster, options.memory_seconds)
        peaks = [max(rss) for _, rss in samples] or [0.0]
        lines += [
            "",
            f"Memory under a {options.memory_seconds} s INSERT run (64 clients, "
            f"{summary['operations_per_s']:,.0f} ops/s): largest node RSS every 10 s: "
            + ", ".join(f"{p:.0f}" for p in peaks)
            + f" MiB (first {peaks[0]:.0f}, last {peaks[-1]:.0f}, max {max(peaks):.0f}, "
            f"median {statistics.median(peaks):.0f}).",
        ]
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    table = "\n".join(lines)
    print(table)
    if not options.no_write:
        write_into_docs(table, "scaling.sh", "Cost as work grows (bench/scaling.sh)")


if __name__ == "__main__":
    main()
