#!/usr/bin/env python3
"""PostgreSQL's own client against Shoal's PostgreSQL endpoint and PostgreSQL, side by side.

Run by bench/pgbench.sh. `pgbench -M prepared` with custom scripts (a single-row INSERT; a
point SELECT of `\\set id random(1, 1000)`) against a 3-voter Shoal cluster (release build,
loopback) and PostgreSQL with two quorum-synchronous standbys (../shared/peers), in
alternation, and writes the table with Shoal/PostgreSQL ratios into docs/benchmarks.md. pgbench
is a fast client: it exposes the per-query cost on the server that `shoal bench` hides.
Every process it starts is stopped on exit, also on failure.
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (the cluster, peers and docs helpers of bench/compare.py)

PG_PRIMARY_PORT, PG_STANDBY_PORT = 15432, 15433
ROWS = 1000
INSERT_SCRIPT = "INSERT INTO pgbench_writes(v) VALUES ('x');\n"
SELECT_SCRIPT = f"\\set id random(1, {ROWS})\nSELECT v FROM pgbench_reads WHERE id = :id;\n"


def pgbench(port, user, database, script, clients, seconds, workdir, options=""):
    """Runs pgbench; returns (transactions per second, p50 latency in ms, failed count)."""
    script_path = workdir / "script.sql"
    script_path.write_text(script)
    log_dir = workdir / "pgbench-log"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir()
    env = dict(os.environ, PGOPTIONS=options)
    args = ["pgbench", "-n", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-M", "prepared",
            "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds),
            "-f", str(script_path), "-l", "--log-prefix", str(log_dir / "tx"), database]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench on port {port} failed: {done.stderr.strip()[-2000:]}")
    tps = next(float(line.split("=")[1].split()[0]) for line in done.stdout.splitlines()
               if line.startswith("tps ="))
    failed = next((int(line.split(":")[1].split()[0]) for line in done.stdout.splitlines()
                   if line.startswith("number of failed transactions")), 0)
    latencies = []
    for path in log_dir.iterdir():
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3:
                latencies.append(int(fields[2]) / 1000.0)
    p50 = statistics.median(latencies) if latencies else float("nan")
    return tps, p50, failed


def psql(port, sql):
    subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-q",
                    "-v", "ON_ERROR_STOP=1", "-c", sql, "postgres"], check=True,
                   capture_output=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per workload")
    parser.add_argument("--no-write", action="store_true", help="print, do not edit docs")
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="shoal-pgbench-"))
    cluster = compare.ShoalCluster(workdir)
    peer = compare.PEERS / "postgres-sync.sh"

    def cleanup(*_):
        cluster.stop()
        subprocess.run([str(peer), "stop"], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        compare.log("starting Shoal (3 voters)")
        cluster.start()
        compare.log("starting PostgreSQL primary + 2 quorum-synchronous standbys")
        subprocess.run([str(peer), "stop"], capture_output=True)
        subprocess.run([str(peer), "start"], check=True)
        leader, follower = cluster.leader(), cluster.follower()
        schema = [
            "CREATE TABLE pgbench_reads(id INTEGER PRIMARY KEY, v TEXT)",
            "CREATE TABLE pgbench_writes(id INTEGER PRIMARY KEY, v TEXT)",
            f"WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < {ROWS}) "
            "INSERT INTO pgbench_reads SELECT x, hex(randomblob(8)) FROM s",
        ]
        reply = compare.http_json(cluster.url(leader) + "/db/execute", schema, timeout=10)
        if any("error" in result for result in reply.get("results", [])):
            raise RuntimeError(f"creating Shoal's tables failed: {reply}")
        psql(PG_PRIMARY_PORT,
             "DROP TABLE IF EXISTS pgbench_reads, pgbench_writes; "
             "CREATE TABLE pgbench_reads(id INTEGER PRIMARY KEY, v TEXT); "
             "CREATE TABLE pgbench_writes(id SERIAL PRIMARY KEY, v TEXT); "
             f"INSERT INTO pgbench_reads SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g;")
        time.sleep(2)  # the standbys replay the tables

        # (label, script, clients, compare by, Shoal (port, options), PostgreSQL port)
        plan = [
            ("INSERT, 1 client", INSERT_SCRIPT, 1, "p50",
             (leader["pg"], ""), PG_PRIMARY_PORT),
            ("INSERT, 64 clients", INSERT_SCRIPT, 64, "tps",
             (leader["pg"], ""), PG_PRIMARY_PORT),
            ("point SELECT, 16 clients: follower `none` / hot standby", SELECT_SCRIPT, 16, "tps",
             (follower["pg"], "-c shoal.read_consistency=none"), PG_STANDBY_PORT),
            ("point SELECT, 16 clients: leader `weak` (lease) / primary", SELECT_SCRIPT, 16, "tps",
             (leader["pg"], "-c shoal.read_consistency=weak"), PG_PRIMARY_PORT),
        ]
        rows = []
        for label, script, clients, by, (shoal_port, shoal_options), pg_port in plan:
            runs = {"Shoal": [], "PostgreSQL": []}
            for round_number in range(options.rounds):
                for system in ("Shoal", "PostgreSQL"):
                    compare.log(f"{label}: {system}, round {round_number + 1}")
                    if system == "Shoal":
                        result = pgbench(shoal_port, "shoal", "shoal", script, clients,
                                         options.seconds, workdir, shoal_options)
                    else:
                        result = pgbench(pg_port, "postgres", "postgres", script, clients,
                                         options.seconds, workdir)
                    compare.log(f"  {result[0]:,.0f} tps, p50 {result[1]:.3f} ms, "
                                f"{result[2]} failed")
                    runs[system].append(result)
            shoal_tps = statistics.median(r[0] for r in runs["Shoal"])
            pg_tps = statistics.median(r[0] for r in runs["PostgreSQL"])
            shoal_p50 = statistics.median(r[1] for r in runs["Shoal"])
            pg_p50 = statistics.median(r[1] for r in runs["PostgreSQL"])
            failed = sum(r[2] for r in runs["Shoal"])
            if by == "p50":
                ratio = f"p50 {shoal_p50 / pg_p50:.2f}× PostgreSQL's (lower is better)"
            else:
                ratio = f"{shoal_tps / pg_tps:.2f}×"
            rows.append(f"| {label} | {shoal_tps:,.0f} tps, p50 {shoal_p50:.3f} ms | "
                        f"{pg_tps:,.0f} tps, p50 {pg_p50:.3f} ms | {ratio} | {failed} |")

        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        table = "\n".join([
            f"Measured {when} by `bench/pgbench.sh` (`pgbench -M prepared`, custom scripts, "
            f"{options.seconds} s per run, median of {options.rounds} alternating rounds; Shoal: "
            "3 voters, release build; PostgreSQL: primary with two quorum-synchronous standbys; "
            "everything and pgbench on this machine's cores).",
            "",
            "| workload | Shoal (PostgreSQL endpoint) | PostgreSQL | Shoal ÷ PostgreSQL | "
            "Shoal failed transactions |",
            "|---|---|---|---|---|",
            *rows,
        ])
        print(table)
        if not options.no_write:
            compare.write_into_docs(table, script="pgbench.sh",
                                    heading="PostgreSQL's own client (bench/pgbench.sh)")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
