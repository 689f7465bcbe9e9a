#!/usr/bin/env python3
"""Backup and restore speed, and what a backup costs writers (run by bench/backup.sh).

Starts a 3-voter Shoal cluster (release build) whose nodes back up to a local directory with
encryption on, grows the database past 1 GiB, and measures:
  1. backup throughput (image MB/s) on the leader and on a follower;
  2. restore time and MB/s of that backup into a new data directory (download, checksums,
     decryption, decompression, SQLite integrity check, row counts);
  3. INSERT throughput (16 clients) without a backup, and while backups run back to back on
     the leader and on a follower;
  4. SQLite's two ways to copy a live database, VACUUM INTO and the online backup API, on
     the same file.
It writes the table into docs/benchmarks.md between the backup markers and stops every
process it started, also on failure or Ctrl-C.
"""

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from compare import SHOAL, ShoalCluster, http_json, log, run_bench, write_into_docs
from scaling import database_bytes, fill_to

MB = 1_000_000


class BackupCluster(ShoalCluster):
    """The comparison cluster, with every node backing up to `target`."""

    def __init__(self, workdir, target, key):
        super().__init__(workdir)
        self.backup_args = ["--backup-target", str(target), "--backup-key-file", str(key)]

    def start_node(self, node, join):
        args = [str(SHOAL), "serve", "--node-id", str(node["id"]), "--data-dir", str(node["dir"]),
                "--http-addr", f"127.0.0.1:{node['http']}", "--raft-addr", f"127.0.0.1:{node['raft']}",
                "--pg-addr", "off", *self.backup_args]
        if join:
            args += ["--join", ",".join(self.url(n) for n in self.nodes if n is not node)]
        logfile = open(self.workdir / f"node{node['id']}.log", "ab")
        node["process"] = subprocess.Popen(args, stdout=logfile, stderr=subprocess.STDOUT)


def post_json(url):
    """POSTs an empty body; the JSON answer."""
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=3600) as response:
        return json.loads(response.read())


def backups_while(cluster, node, seconds):
    """INSERT for `seconds` while `node` takes backups back to back; (summary, backups)."""
    stop = threading.Event()
    taken = []

    def loop():
        while not stop.is_set():
            taken.append(post_json(cluster.url(node) + "/backup"))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    time.sleep(0.5)
    try:
        summary = run_bench("shoal", cluster.url(cluster.leader()), "insert", 16, seconds)
    finally:
        stop.set()
        thread.join()
    return summary, taken


def sqlite_copy_methods(database, scratch):
    """Seconds for VACUUM INTO and for the online backup API on the same database file."""
    timings = {}
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    target = scratch / "vacuum.db"
    started = time.time()
    source.execute(f"VACUUM INTO '{target}'")
    timings["VACUUM INTO"] = time.time() - started
    target.unlink()
    target = scratch / "backup-api.db"
    destination = sqlite3.connect(target)
    started = time.time()
    source.backup(destination)
    timings["backup API"] = time.time() - started
    destination.close()
    target.unlink()
    source.close()
    return timings


def metric(cluster, node, name):
    text = urllib.request.urlopen(cluster.url(node) + "/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def settle(cluster, timeout=120):
    """Waits until every node has applied everything and the machine is quiet again."""
    deadline = time.time() + timeout
    target = max(metric(cluster, node, "shoal_raft_applied_index") for node in cluster.nodes)
    for node in cluster.nodes:
        while metric(cluster, node, "shoal_raft_applied_index") < target:
            if time.time() > deadline:
                raise RuntimeError("nodes did not catch up")
            time.sleep(0.5)
    time.sleep(3)


def measure(workdir, label, target, key, extra, size_mb, seconds, restore):
    """Starts a cluster backing up to `target`, fills it, and measures; rows for the table."""
    cluster = BackupCluster(workdir / label, target, key)
    cluster.backup_args += extra
    (workdir / label).mkdir(parents=True)
    rows = []
    try:
        log(f"[{label}] starting Shoal (3 voters)")
        cluster.start()
        log(f"[{label}] filling the database to {size_mb} MB")
        fill_to(cluster, size_mb * MB)
        settle(cluster)
        leader = cluster.leader()
        follower = cluster.follower()
        log(f"[{label}] INSERT without a backup")
        quiet = run_bench("shoal", cluster.url(leader), "insert", 16, seconds)
        settle(cluster)
        log(f"[{label}] backups alone, on the leader and on a follower (best of three)")

        def best(node):
            runs = [post_json(cluster.url(node) + "/backup") for _ in range(3)]
            return min(runs, key=lambda report: report["duration_ms"])

        alone = best(leader)
        on_follower = best(follower)
        settle(cluster)
        log(f"[{label}] INSERT while the leader backs up")
        busy_leader, leader_runs = backups_while(cluster, leader, seconds)
        log(f"[{label}] INSERT while a follower backs up")
        busy_follower, follower_runs = backups_while(cluster, follower, seconds)

        def rate(report):
            return report["image_bytes"] / MB / (report["duration_ms"] / 1000)

        def slowdown(summary):
            return (1 - summary["operations_per_s"] / quiet["operations_per_s"]) * 100

        rows += [
            f"| {label}: backup on the leader, idle | {rate(alone):,.0f} MB/s "
            f"({alone['image_bytes'] / MB:,.0f} MB in {alone['duration_ms'] / 1000:.1f} s) | ≥ 400 MB/s |",
            f"| {label}: backup on a follower, idle | {rate(on_follower):,.0f} MB/s | |",
            f"| {label}: INSERT, 16 clients: no backup / leader backing up / follower backing up | "
            f"{quiet['operations_per_s']:,.0f} / {busy_leader['operations_per_s']:,.0f} "
            f"({slowdown(busy_leader):.0f}% slower, {len(leader_runs)} backups) / "
            f"{busy_follower['operations_per_s']:,.0f} ({slowdown(busy_follower):.0f}% slower, "
            f"{len(follower_runs)} backups) | ≤ 20 % slower |",
        ]
        if restore:
            log(f"[{label}] restoring into a new data directory")
            restore_dir = workdir / label / "restored"
            started = time.time()
            done = subprocess.run([str(SHOAL), "restore", "--backup-target", str(target),
                                   "--backup-key-file", str(key), "--backup", alone["backup_id"],
                                   "--data-dir", str(restore_dir), "--json"],
                                  check=True, capture_output=True, text=True, timeout=3600)
            seconds_taken = time.time() - started
            report = json.loads(done.stdout)["restored"]
            rows.append(
                f"| {label}: restore into a new data directory | {seconds_taken:.1f} s "
                f"({alone['image_bytes'] / MB / seconds_taken:,.0f} MB/s; download and every "
                f"check {report['download_ms'] / 1000:.1f} s, SQLite checks "
                f"{report['check_ms'] / 1000:.1f} s) | 1 GiB ≤ 5 s |")
            log(f"[{label}] VACUUM INTO vs the backup API")
            copies = sqlite_copy_methods(cluster.nodes[0]["dir"] / "groups" / "1" / "db.sqlite",
                                         workdir / label)
            rows += [
                f"| copying the live database into a file: VACUUM INTO / SQLite backup API | "
                f"{copies['VACUUM INTO']:.1f} s / {copies['backup API']:.1f} s | |",
            ]
    finally:
        cluster.stop()
        shutil.rmtree(target, ignore_errors=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1100, help="database size to reach")
    parser.add_argument("--seconds", type=int, default=10, help="length of each write run")
    parser.add_argument("--no-write", action="store_true", help="print, do not edit docs")
    parser.add_argument("--configs", default="same-disk,limited,tmpfs",
                        help="which target placements to measure")
    options = parser.parse_args()
    configs = options.configs.split(",")

    workdir = Path(tempfile.mkdtemp(prefix="shoal-backup-bench-"))
    memory = Path(tempfile.mkdtemp(prefix="shoal-backup-target-", dir="/dev/shm"))
    key = workdir / "backup.key"
    key.write_text(os.urandom(32).hex())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    rows = []
    try:
        if "same-disk" in configs:
            rows += measure(workdir, "target on the same disk", workdir / "backups", key, [],
                            options.size_mb, options.seconds, restore=True)
        if "limited" in configs:
            rows += measure(workdir, "target on the same disk, --backup-max-mb-per-s 100",
                            workdir / "backups-limited", key, ["--backup-max-mb-per-s", "100"],
                            options.size_mb, options.seconds, restore=False)
        if "tmpfs" in configs:
            rows += measure(workdir, "target on another device (tmpfs)", memory / "backups", key,
                            [], options.size_mb, options.seconds, restore=True)
        lines = [
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/backup.sh` "
            f"(release build, 3 voters and the load generator on one 2-core machine, one disk; "
            f"database of {options.size_mb:,} MB of incompressible rows; zstd level 1, "
            f"AES-256-GCM with a key file). \"On a follower\" is another process on the same "
            f"two cores here, not another machine.",
            "",
            "| measurement | figure | target |",
            "|---|---|---|",
            *rows,
        ]
        table = "\n".join(lines)
        print(table)
        if not options.no_write:
            write_into_docs(table, script="backup.sh", heading="Backup and restore (bench/backup.sh)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(memory, ignore_errors=True)


if __name__ == "__main__":
    main()
