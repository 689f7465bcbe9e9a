#!/usr/bin/env python3
"""Side-by-side benchmark of Shoal against its peers on one machine (run by bench/compare.sh).

Starts a 3-voter Shoal cluster (release build) on loopback, PostgreSQL with two
quorum-synchronous standbys and a 3-member etcd (the scripts in ../shared/peers), runs the same
`shoal bench` workloads against each system in alternation, measures failover (SIGKILL of the
Shoal leader to the first acknowledged write) and idle memory, and writes a table of absolute
figures and Shoal/peer ratios into docs/benchmarks.md. Every process it starts is stopped on
exit, also on failure or Ctrl-C.

Standard library only, so it runs on a fresh machine.
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT.parent / "shared" / "peers"
SHOAL = ROOT / "target" / "release" / "shoal"
PG_PRIMARY = "postgres://postgres@127.0.0.1:15432/postgres"
PG_STANDBY = "postgres://postgres@127.0.0.1:15433/postgres"
ETCD = "http://127.0.0.1:12379"


def log(message):
    print(f"[compare {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


_handed_out = set()


def free_port():
    """A free loopback port below the kernel's ephemeral range (where port 0 would come from):
    a killed node is restarted on its ports, and an outgoing connection may take an ephemeral
    one meanwhile. Never the same port twice in one run."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(2000):
        port = random.randrange(10000, max(low, 10001))
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def http_json(url, body=None, timeout=2.0):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


class ShoalCluster:
    """Voters (three unless told) as child processes; nodes can be killed and restarted with
    their data."""

    def __init__(self, workdir, size=3):
        self.workdir = Path(workdir)
        self.size = size
        self.nodes = []
        for node_id in range(1, size + 1):
            self.nodes.append({
                "id": node_id,
                "http": free_port(),
                "raft": free_port(),
                "pg": free_port(),
                "dir": self.workdir / f"node{node_id}",
                "process": None,
            })

    def url(self, node):
        return f"http://127.0.0.1:{node['http']}"

    def pg_url(self, node, read_consistency=None):
        url = f"postgres://shoal@127.0.0.1:{node['pg']}/shoal"
        if read_consistency:
            url += f"?options=-c%20shoal.read_consistency%3D{read_consistency}"
        return url

    def start_node(self, node, join):
        args = [str(SHOAL), "serve", "--node-id", str(node["id"]), "--data-dir", str(node["dir"]),
                "--http-addr", f"127.0.0.1:{node['http']}", "--raft-addr", f"127.0.0.1:{node['raft']}",
                "--pg-addr", f"127.0.0.1:{node['pg']}"]
        if join:
            args += ["--join", ",".join(self.url(n) for n in self.nodes if n is not node)]
        logfile = open(self.workdir / f"node{node['id']}.log", "ab")
        node["process"] = subprocess.Popen(args, stdout=logfile, stderr=subprocess.STDOUT)

    def start(self):
        self.start_node(self.nodes[0], join=False)
        self.wait_ready(self.nodes[0])
        for node in self.nodes[1:]:
            self.start_node(node, join=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                status = http_json(self.url(self.nodes[0]) + "/status")
                voters = [m for m in status["members"] if m.get("voter")]
                if (len(voters) == self.size
                        and all(m.get("health") == 1 for m in status["members"])):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("Shoal cluster did not form within 60 s; see " + str(self.workdir))

    def wait_ready(self, node, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url(node) + "/readyz", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"Shoal node {node['id']} not ready within {timeout} s")

    def leader(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for node in self.nodes:
                if node["process"] is None or node["process"].poll() is not None:
                    continue
                try:
                    status = http_json(self.url(node) + "/status", timeout=1)
                    if status["node"]["role"] == "leader":
                        return node
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("no Shoal leader")

    def follower(self):
        leader = self.leader()
        return next(n for n in self.nodes if n is not leader)

    def rss_mib(self):
        sizes = []
        for node in self.nodes:
            with open(f"/proc/{node['process'].pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        sizes.append(int(line.split()[1]) / 1024)
        return sizes

    def stop(self):
        for node in self.nodes:
            process = node["process"]
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def run_bench(target, host, workload, clients, seconds, extra=()):
    args = [str(SHOAL), "bench", "--target", target, "--host", host, "--workload", workload,
            "--clients", str(clients), "--duration", f"{seconds}s", "--json", *extra]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"shoal bench {' '.join(args[2:])} failed: {done.stderr.strip()}")
    summary = json.loads(done.stdout)
    if summary["errors"]:
        log(f"  {summary['errors']} errors: {summary['error_samples']}")
    return summary


def fsync_latency_ms(directory, count=200):
    path = Path(directory) / "fsync-probe"
    samples = []
    with open(path, "wb") as probe:
        for _ in range(count):
            probe.write(b"x" * 4096)
            started = time.perf_counter()
            probe.flush()
            os.fsync(probe.fileno())
            samples.append((time.perf_counter() - started) * 1e3)
    path.unlink()
    return statistics.median(samples)


def measure_failover(cluster, kills):
    """SIGKILL the leader, then write through the survivors until one write is acknowledged."""
    times = []
    for attempt in range(kills):
        leader = cluster.leader(timeout=30)
        survivors = [n for n in cluster.nodes if n is not leader]
        body = [["INSERT INTO shoal_bench(value) VALUES (?)", f"failover-{attempt}"]]
        leader["process"].send_signal(signal.SIGKILL)
        killed_at = time.perf_counter()
        leader["process"].wait()
        acknowledged = None
        turn = 0
        while acknowledged is None and time.perf_counter() - killed_at < 30:
            node = survivors[turn % 2]
            turn += 1
            try:
                reply = http_json(cluster.url(node) + "/db/execute", body, timeout=0.5)
                if not reply.get("error") and not any("error" in r for r in reply.get("results", [])):
                    acknowledged = time.perf_counter()
            except OSError:
                pass
        if acknowledged is None:
            raise RuntimeError(f"no write acknowledged within 30 s of kill {attempt + 1}")
        times.append((acknowledged - killed_at) * 1e3)
        log(f"  failover {attempt + 1}/{kills}: {times[-1]:.0f} ms")
        cluster.start_node(leader, join=False)
        cluster.wait_ready(leader)
        time.sleep(1.0)  # let the restarted node catch up before the next kill
    return times


def median_of(rounds, key):
    return statistics.median(r[key] for r in rounds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per workload")
    parser.add_argument("--kills", type=int, default=20, help="leader kills for failover")
    parser.add_argument("--no-write", action="store_true", help="print, do not edit docs")
    parser.add_argument("--quick", action="store_true",
                        help="the regression guard: the target rows against PostgreSQL only, "
                             "short runs, 5 kills; one line appended to the history table")
    options = parser.parse_args()
    if options.quick:
        options.seconds, options.rounds, options.kills = 3, 1, 5

    workdir = Path(tempfile.mkdtemp(prefix="shoal-compare-"))
    cluster = ShoalCluster(workdir)
    peers_started = []

    def cleanup(*_):
        cluster.stop()
        for script in reversed(peers_started):
            subprocess.run([str(PEERS / script), "stop"], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        log(f"fsync latency on {workdir}")
        fsync_ms = fsync_latency_ms(workdir)
        log(f"  median {fsync_ms:.3f} ms")
        log("starting Shoal (3 voters)")
        cluster.start()
        log("starting PostgreSQL primary + 2 quorum-synchronous standbys")
        subprocess.run([str(PEERS / "postgres-sync.sh"), "stop"], capture_output=True)
        peers_started.append("postgres-sync.sh")
        subprocess.run([str(PEERS / "postgres-sync.sh"), "start"], check=True)
        if not options.quick:
            log("starting etcd (3 members)")
            subprocess.run([str(PEERS / "etcd-3node.sh"), "stop"], capture_output=True)
            peers_started.append("etcd-3node.sh")
            subprocess.run([str(PEERS / "etcd-3node.sh"), "start"], check=True)
        time.sleep(2)
        idle_rss = cluster.rss_mib()

        leader = cluster.url(cluster.leader())
        follower = cluster.url(cluster.follower())
        leader_pg = cluster.pg_url(cluster.leader())
        follower_pg = cluster.pg_url(cluster.follower(), read_consistency="none")
        # (label, workload, clients, [(system, target, host, extra args)])
        plan = [
            ("INSERT, 64 clients", "insert", 64, [
                ("Shoal (w=majority)", "shoal", leader, ()),
                ("PostgreSQL sync", "postgres", PG_PRIMARY, ()),
                ("etcd", "etcd", ETCD, ()),
            ]),
            ("INSERT, 1 client", "insert", 1, [
                ("Shoal (w=majority)", "shoal", leader, ()),
                ("PostgreSQL sync", "postgres", PG_PRIMARY, ()),
                ("etcd", "etcd", ETCD, ()),
            ]),
            ("point SELECT, 16 clients, replica", "point-select", 16, [
                ("Shoal follower, level=none", "shoal", follower, ("--consistency", "none")),
                ("PostgreSQL standby", "postgres", PG_STANDBY, ()),
                ("etcd serializable", "etcd", ETCD, ("--consistency", "none")),
            ]),
            ("point SELECT, 16 clients, leader", "point-select", 16, [
                ("Shoal leader, level=weak (lease)", "shoal", leader, ("--consistency", "weak")),
                ("PostgreSQL primary", "postgres", PG_PRIMARY, ()),
                ("etcd linearizable", "etcd", ETCD, ("--consistency", "linearizable")),
            ]),
            ("mixed 90% reads, 16 clients, leader", "mixed", 16, [
                ("Shoal leader, level=weak", "shoal", leader, ("--consistency", "weak")),
                ("PostgreSQL primary", "postgres", PG_PRIMARY, ()),
            ]),
            # The same client (tokio-postgres, prepared statements) against both servers.
            ("INSERT, 64 clients, PostgreSQL protocol", "insert", 64, [
                ("Shoal over pg wire (w=majority)", "postgres", leader_pg, ()),
                ("PostgreSQL sync", "postgres", PG_PRIMARY, ()),
            ]),
            ("INSERT, 1 client, PostgreSQL protocol", "insert", 1, [
                ("Shoal over pg wire (w=majority)", "postgres", leader_pg, ()),
                ("PostgreSQL sync", "postgres", PG_PRIMARY, ()),
            ]),
            ("point SELECT, 16 clients, replica, PostgreSQL protocol", "point-select", 16, [
                ("Shoal follower over pg wire, level=none", "postgres", follower_pg, ()),
                ("PostgreSQL standby", "postgres", PG_STANDBY, ()),
            ]),
            ("batch INSERT of 100 rows, 16 clients", "batch-insert", 16, [
                ("Shoal (w=majority)", "shoal", leader, ("--batch-size", "100")),
                ("PostgreSQL sync", "postgres", PG_PRIMARY, ("--batch-size", "100")),
            ]),
        ]
        if options.quick:
            plan = quick_plan(plan)
        results = []
        for label, workload, clients, systems in plan:
            rounds = {system: [] for system, *_ in systems}
            for round_number in range(options.rounds):
                for system, target, host, extra in systems:
                    log(f"{label}: {system}, round {round_number + 1}/{options.rounds}")
                    rounds[system].append(run_bench(target, host, workload, clients, options.seconds, extra))
            results.append((label, systems, rounds))
        loaded_rss = cluster.rss_mib()
        log(f"failover: {options.kills} SIGKILLs of the Shoal leader")
        failovers = measure_failover(cluster, options.kills)
    finally:
        cleanup()

    if options.quick:
        line = quick_line(results, failovers, idle_rss)
        print(line)
        if not options.no_write:
            append_history(line)
        return
    table = render(results, failovers, idle_rss, loaded_rss, fsync_ms, options)
    print(table)
    if not options.no_write:
        write_into_docs(table)


# The rows the regression guard runs, against PostgreSQL only: (label in the full plan, short name).
QUICK_ROWS = [
    ("INSERT, 1 client", "ins1 http"),
    ("INSERT, 1 client, PostgreSQL protocol", "ins1 pg"),
    ("INSERT, 64 clients", "ins64 http"),
    ("INSERT, 64 clients, PostgreSQL protocol", "ins64 pg"),
    ("point SELECT, 16 clients, replica", "sel follower http"),
    ("point SELECT, 16 clients, replica, PostgreSQL protocol", "sel follower pg"),
    ("point SELECT, 16 clients, leader", "sel leader http"),
    ("mixed 90% reads, 16 clients, leader", "mixed"),
]


def quick_plan(plan):
    by_label = {label: (label, workload, clients, systems) for label, workload, clients, systems in plan}
    quick = []
    for label, _ in QUICK_ROWS:
        label, workload, clients, systems = by_label[label]
        quick.append((label, workload, clients, [s for s in systems if s[1] != "etcd"]))
    return quick


def quick_line(results, failovers, idle_rss):
    """One line of ratios against PostgreSQL: p50 latency ratios for one client (lower is
    better), throughput ratios for the rest (higher is better)."""
    by_label = {label: (systems, rounds) for label, systems, rounds in results}
    cells = []
    for label, short in QUICK_ROWS:
        systems, rounds = by_label[label]
        shoal, peer = systems[0][0], systems[1][0]
        for system in (shoal, peer):
            log(f"  {short}: {system}: {median_of(rounds[system], 'operations_per_s'):,.0f} ops/s, "
                f"p50 {median_of_p50(rounds[system]):.2f} ms")
        if label.startswith("INSERT, 1 client"):
            ratio = median_of_p50(rounds[shoal]) / median_of_p50(rounds[peer])
            cells.append(f"{short} p50 {ratio:.2f}× PG")
        else:
            ratio = median_of(rounds[shoal], "operations_per_s") / median_of(rounds[peer], "operations_per_s")
            cells.append(f"{short} {ratio:.2f}×")
    cells.append(f"failover median {statistics.median(failovers):.0f} ms, max {max(failovers):.0f} ms")
    cells.append("idle RSS " + "/".join(f"{r:.0f}" for r in idle_rss) + " MiB")
    return "; ".join(cells)


def median_of_p50(runs):
    return statistics.median(r["latency_ms"]["p50"] for r in runs)


def append_history(line):
    """Appends `line` with the date and commit to the history table in docs/benchmarks.md."""
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip() or "?"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, cwd=ROOT).stdout.strip()
    row = f"| {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} | {commit}{'+' if dirty else ''} | {line} |"
    marker = "<!-- quick.sh:history -->"
    if marker not in text:
        text = text.rstrip("\n") + (
            "\n\n## Regression guard history (bench/quick.sh)\n\n"
            "Each row: one `bench/quick.sh` run (3 s per system and workload, 5 leader kills), "
            "Shoal ÷ PostgreSQL with two quorum-synchronous standbys on this machine. Single-client "
            "INSERT rows compare p50 latency (lower is better); the others throughput (higher is "
            "better). A `+` after the commit: uncommitted changes were measured.\n\n"
            "| when (UTC) | commit | ratios |\n|---|---|---|\n" + marker + "\n")
    text = text.replace(marker, row + "\n" + marker)
    path.write_text(text)
    log(f"appended to the history in {path}")


def render(results, failovers, idle_rss, loaded_rss, fsync_ms, options):
    cores = os.cpu_count()
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/compare.sh` "
        f"(release build): {cores} cores, one disk, fsync of 4 KiB median {fsync_ms:.3f} ms; "
        f"every system on loopback on this machine, the load generator (`shoal bench`, one "
        f"connection per client) too. Each figure is the median of {options.rounds} runs of "
        f"{options.seconds} s, systems alternating.",
        "",
        "| workload | system | ops/s | rows/s | p50 ms | p99 ms | Shoal ÷ peer (ops/s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, systems, rounds in results:
        shoal_system = systems[0][0]
        shoal_rate = median_of(rounds[shoal_system], "operations_per_s")
        for system, *_ in systems:
            runs = rounds[system]
            rate = median_of(runs, "operations_per_s")
            rows = median_of(runs, "rows_written_per_s")
            p50 = statistics.median(r["latency_ms"]["p50"] for r in runs)
            p99 = statistics.median(r["latency_ms"]["p99"] for r in runs)
            errors = sum(r["errors"] for r in runs)
            ratio = "" if system == shoal_system else f"{shoal_rate / rate:.2f}×" if rate else "n/a"
            note = f" ({errors} errors)" if errors else ""
            lines.append(f"| {label} | {system}{note} | {rate:,.0f} | {rows:,.0f} | {p50:.2f} | {p99:.2f} | {ratio} |")
    lines += [
        "",
        f"Failover (SIGKILL of the Shoal leader → first acknowledged write through a survivor), "
        f"{len(failovers)} kills: median {statistics.median(failovers):.0f} ms, "
        f"min {min(failovers):.0f} ms, max {max(failovers):.0f} ms.",
        "",
        "Resident memory per Shoal node: idle " + ", ".join(f"{r:.1f}" for r in idle_rss)
        + " MiB; after the runs above " + ", ".join(f"{r:.1f}" for r in loaded_rss) + " MiB.",
    ]
    return "\n".join(lines)


def write_into_docs(table, script="compare.sh", heading="Side by side (bench/compare.sh)"):
    """Replaces the text between `script`'s markers in docs/benchmarks.md (or appends it)."""
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text()
    begin, end = f"<!-- {script}:begin -->", f"<!-- {script}:end -->"
    block = f"{begin}\n{table}\n{end}"
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip("\n") + f"\n\n## {heading}\n\n" + block + "\n"
    path.write_text(text)
    log(f"wrote the table into {path}")


if __name__ == "__main__":
    main()
