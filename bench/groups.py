#!/usr/bin/env python3
"""What many Raft groups cost (run by bench/groups.sh).

Starts a 3-voter Shoal cluster (release build) on loopback and measures:
  1. idle cost per group replica: with 1, 10 and 100 databases of 3 replicas (so as many
     group replicas on every node, besides the catalog and the default database), each node's
     resident memory, CPU, open file descriptors and peer-stream frames sent per second over
     an idle interval, and the growth per added group replica against the cluster with no
     created database;
  2. aggregate INSERT throughput of 1, 2 and 4 databases written at once (`shoal bench
     --workload insert`, 16 clients each, sent to each database's leader).
It writes both tables into docs/benchmarks.md between the groups.sh markers and stops every
process it started, also on failure or Ctrl-C.

Standard library only; shares its cluster helpers with compare.py.
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import urllib.error
import threading
import time
import urllib.request

from compare import ShoalCluster, http_json, log, run_bench, write_into_docs

DATABASE_COUNTS = (1, 10, 100)
WRITERS = (1, 2, 4)
CLIENTS_PER_DATABASE = 16
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of the whole line (12 and 13 after the name).
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def frames_sent(cluster, node):
    text = urllib.request.urlopen(cluster.url(node) + "/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith("shoal_peer_frames_sent_total"):
            return float(line.split()[-1])
    return 0.0


def idle_sample(cluster, seconds):
    """Per node: RSS (MiB), CPU (% of one core), fds, frames sent per second, over `seconds`."""
    time.sleep(5)  # elections and catch-up of the databases just created settle first
    pids = [node["process"].pid for node in cluster.nodes]
    cpu0 = [cpu_seconds(pid) for pid in pids]
    frames0 = [frames_sent(cluster, node) for node in cluster.nodes]
    started = time.time()
    time.sleep(seconds)
    elapsed = time.time() - started
    samples = []
    for node, pid, cpu, frames in zip(cluster.nodes, pids, cpu0, frames0):
        samples.append({
            "rss": rss_mib(pid),
            "cpu": (cpu_seconds(pid) - cpu) / elapsed * 100,
            "fds": open_fds(pid),
            "frames": (frames_sent(cluster, node) - frames) / elapsed,
        })
    return samples


def mean(samples, key):
    return sum(s[key] for s in samples) / len(samples)


def create_databases(cluster, first, last):
    url = cluster.url(cluster.nodes[0]) + "/db/execute?timeout=60s"
    for n in range(first, last + 1):
        reply = create_database(url, f"idle{n:03}")
        if any("error" in r for r in reply.get("results", [])) or "error" in reply:
            raise RuntimeError(f"CREATE DATABASE idle{n:03}: {reply}")


def idle_table(cluster, seconds):
    baseline = idle_sample(cluster, seconds)
    rows = [("0 (catalog + default only)", baseline, None)]
    created = 0
    for count in DATABASE_COUNTS:
        create_databases(cluster, created + 1, count)
        created = count
        log(f"{count} databases created; sampling {seconds} s idle")
        rows.append((str(count), idle_sample(cluster, seconds), count))
    lines = [
        "| databases (replicas per node) | RSS MiB/node | CPU %/node | fds/node | frames sent/s/node "
        "| per added replica: RSS KiB | CPU % of a core | frames/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, samples, count in rows:
        per = "| | | |"
        if count:
            per = (f"| {(mean(samples, 'rss') - mean(baseline, 'rss')) * 1024 / count:,.0f} "
                   f"| {(mean(samples, 'cpu') - mean(baseline, 'cpu')) / count:.3f} "
                   f"| {(mean(samples, 'frames') - mean(baseline, 'frames')) / count:.1f} |")
        lines.append(f"| {label} | {mean(samples, 'rss'):.1f} | {mean(samples, 'cpu'):.1f} "
                     f"| {mean(samples, 'fds'):.0f} | {mean(samples, 'frames'):,.0f} {per}")
    return "\n".join(lines)


def leader_url(cluster, database):
    """The HTTP URL of the node leading `database`'s group (as node 1's status says)."""
    deadline = time.time() + 30
    while time.time() < deadline:
        status = http_json(cluster.url(cluster.nodes[0]) + "/status", timeout=5)
        for group in status.get("groups", []):
            if group.get("database") == database and group.get("leader"):
                leader = group["leader"]
                return cluster.url(next(n for n in cluster.nodes if n["id"] == leader))
        time.sleep(0.2)
    raise RuntimeError(f"{database} has no leader")


def create_database(url, name, attempts=150):
    """CREATE DATABASE, retried while the answer is 503 (a cluster started a moment ago has
    not founded its catalog yet)."""
    for _ in range(attempts):
        try:
            return http_json(url, [f"CREATE DATABASE {name} WITH (replicas = 3)"], timeout=90)
        except urllib.error.HTTPError as error:
            if error.code != 503:
                raise
            time.sleep(0.2)
    raise RuntimeError(f"CREATE DATABASE {name}: still unavailable")


def insert_table(cluster, seconds):
    url = cluster.url(cluster.nodes[0]) + "/db/execute?timeout=60s"
    for n in range(1, max(WRITERS) + 1):
        create_database(url, f"load{n}")
    # The placement loop spreads the new groups' leaders over the nodes (one move a second).
    time.sleep(8)
    lines = [
        f"| databases written at once | INSERT/s, all databases ({CLIENTS_PER_DATABASE} clients each) "
        "| INSERT/s per database | p50 ms | p99 ms | leaders on nodes |",
        "|---|---|---|---|---|---|",
    ]
    for writers in WRITERS:
        names = [f"load{n}" for n in range(1, writers + 1)]
        hosts = [leader_url(cluster, name) for name in names]
        results = [None] * writers

        def run(index):
            results[index] = run_bench("shoal", hosts[index], "insert", CLIENTS_PER_DATABASE, seconds,
                                       ("--database", names[index]))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        total = sum(r["operations_per_s"] for r in results)
        p50 = max(r["latency_ms"]["p50"] for r in results)
        p99 = max(r["latency_ms"]["p99"] for r in results)
        leaders = ",".join(h.rsplit(":", 1)[1] for h in hosts)
        nodes = ",".join(str(next(n["id"] for n in cluster.nodes if cluster.url(n).endswith(port)))
                         for port in leaders.split(","))
        lines.append(f"| {writers} | {total:,.0f} | {total / writers:,.0f} | {p50:.2f} | {p99:.2f} | {nodes} |")
        log(lines[-1])
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=int, default=20)
    parser.add_argument("--insert-seconds", type=int, default=10)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="shoal-groups-")
    cluster = ShoalCluster(workdir)

    def stop(*_):
        cluster.stop()
        sys.exit(1)

    signal.signal(signal.SIGTERM, stop)
    try:
        cluster.start()
        idle = idle_table(cluster, args.idle_seconds)
        print(idle)
        cluster.stop()
        # A fresh cluster for the writes: a hundred idle groups would take CPU from them.
        cluster = ShoalCluster(tempfile.mkdtemp(prefix="shoal-groups-", dir=workdir))
        cluster.start()
        inserts = insert_table(cluster, args.insert_seconds)
        print(inserts)
    finally:
        cluster.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    table = (f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores, release build, "
             f"3 voters on loopback.\n\nIdle cost ({args.idle_seconds} s idle after each step):\n\n{idle}"
             f"\n\nAggregate INSERT throughput ({args.insert_seconds} s per row):\n\n{inserts}")
    if not args.no_write:
        write_into_docs(table, script="groups.sh", heading="Many groups (bench/groups.sh)")


if __name__ == "__main__":
    main()
