//! The nemesis: injects one fault at a time — SIGKILL and restart, SIGSTOP/SIGCONT, network
//! partitions (majority/minority, an isolated leader, a bridge), slow links, leader transfers,
//! membership changes and a full disk — each held for a while and then repaired. Which faults, on which
//! nodes and for how long follows from the seed; what was actually done is logged with
//! timestamps so a failure can be replayed and understood.

use std::time::{Duration, Instant};

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::client::Targets;
use crate::support::Cluster;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    Kill,
    Pause,
    Partition,
    IsolateLeader,
    Bridge,
    SlowNetwork,
    TransferLeader,
    Membership,
    DiskFull,
}

pub const ALL_FAULTS: [FaultKind; 9] = [
    FaultKind::Kill,
    FaultKind::Pause,
    FaultKind::Partition,
    FaultKind::IsolateLeader,
    FaultKind::Bridge,
    FaultKind::SlowNetwork,
    FaultKind::TransferLeader,
    FaultKind::Membership,
    FaultKind::DiskFull,
];

pub struct Nemesis {
    rng: ChaCha8Rng,
    kinds: Vec<FaultKind>,
    /// What is left of the current round of faults.
    round: Vec<FaultKind>,
    /// Positions of the founding voters, the nodes faults are aimed at.
    voters: Vec<usize>,
    started: Instant,
    pub log: Vec<String>,
    pub faults_injected: usize,
}

impl Nemesis {
    pub fn new(seed: u64, kinds: &[FaultKind], voters: usize, started: Instant) -> Nemesis {
        Nemesis {
            rng: ChaCha8Rng::seed_from_u64(seed),
            kinds: kinds.to_vec(),
            round: Vec::new(),
            voters: (0..voters).collect(),
            started,
            log: Vec::new(),
            faults_injected: 0,
        }
    }

    /// Faults come in rounds: every kind once per round, in a seeded order, so even a short
    /// run covers them all.
    fn next_kind(&mut self) -> FaultKind {
        if self.round.is_empty() {
            self.round = self.kinds.clone();
            self.round.shuffle(&mut self.rng);
        }
        self.round.pop().expect("fault kinds")
    }

    fn note(&mut self, what: String) {
        self.log.push(format!(
            "{:>8.3}s {what}",
            self.started.elapsed().as_secs_f64()
        ));
    }

    /// Injects faults one after another until `deadline`, leaving the cluster whole.
    pub async fn run(&mut self, cluster: &mut Cluster, targets: &Targets, deadline: Instant) {
        while Instant::now() < deadline {
            let quiet = Duration::from_millis(self.rng.random_range(300..1500));
            tokio::time::sleep(quiet).await;
            if Instant::now() >= deadline {
                break;
            }
            let kind = self.next_kind();
            let hold = Duration::from_millis(self.rng.random_range(500..3000));
            self.faults_injected += 1;
            self.inject(kind, hold, cluster, targets).await;
        }
    }

    async fn inject(
        &mut self,
        kind: FaultKind,
        hold: Duration,
        cluster: &mut Cluster,
        targets: &Targets,
    ) {
        let target = *self.voters.choose(&mut self.rng).expect("voters");
        let id = cluster.nodes[target].id;
        match kind {
            FaultKind::Kill => {
                self.note(format!("SIGKILL node {id} for {hold:?}"));
                cluster.kill(target);
                tokio::time::sleep(hold).await;
                cluster.restart(target).await;
                self.note(format!("restarted node {id}"));
            }
            FaultKind::Pause => {
                self.note(format!("SIGSTOP node {id} for {hold:?}"));
                cluster.nodes[target].signal(libc::SIGSTOP);
                tokio::time::sleep(hold).await;
                cluster.nodes[target].signal(libc::SIGCONT);
                self.note(format!("SIGCONT node {id}"));
            }
            FaultKind::Partition => {
                let minority = [id];
                let majority: Vec<u64> = cluster.ids().into_iter().filter(|&n| n != id).collect();
                self.note(format!(
                    "partition {minority:?} | {majority:?} for {hold:?}"
                ));
                cluster.network().partition(&minority, &majority);
                self.hold_and_heal(cluster, hold).await;
            }
            FaultKind::IsolateLeader => {
                let Some(leader) = self.current_leader(cluster).await else {
                    return;
                };
                let leader_id = cluster.nodes[leader].id;
                self.note(format!("isolate leader {leader_id} for {hold:?}"));
                cluster.network().isolate(leader_id, &cluster.ids());
                self.hold_and_heal(cluster, hold).await;
            }
            FaultKind::Bridge => {
                // Every node but `id` is cut from every other such node; `id` sees them all.
                let sides: Vec<u64> = cluster.ids().into_iter().filter(|&n| n != id).collect();
                self.note(format!("bridge through node {id} for {hold:?}"));
                for (i, &a) in sides.iter().enumerate() {
                    cluster.network().partition(&[a], &sides[i + 1..]);
                }
                self.hold_and_heal(cluster, hold).await;
            }
            FaultKind::SlowNetwork => {
                let delay = Duration::from_millis(self.rng.random_range(5..60));
                self.note(format!("delay every link by {delay:?} for {hold:?}"));
                let ids = cluster.ids();
                cluster.network().slow(&ids, &ids, delay);
                self.hold_and_heal(cluster, hold).await;
            }
            FaultKind::TransferLeader => {
                let Some(leader) = self.current_leader(cluster).await else {
                    return;
                };
                let leader_id = cluster.nodes[leader].id;
                let to = if id == leader_id {
                    cluster.nodes[(target + 1) % self.voters.len()].id
                } else {
                    id
                };
                let (status, body) = cluster.post(leader, "/leader", json!({ "id": to })).await;
                self.note(format!(
                    "transfer leadership {leader_id} -> {to}: HTTP {status} {body}"
                ));
                tokio::time::sleep(hold).await;
            }
            FaultKind::DiskFull => {
                // No file may grow: log appends, vote saves and WAL growth fail. The node must
                // stop taking part rather than corrupt anything; once space is back, the
                // operator restarts it and it recovers from what reached the disk.
                self.note(format!("disk full on node {id} for {hold:?}"));
                cluster.nodes[target].limit_file_size(Some(0));
                tokio::time::sleep(hold).await;
                cluster.nodes[target].limit_file_size(None);
                cluster.restart(target).await;
                self.note(format!("freed the disk of node {id} and restarted it"));
            }
            FaultKind::Membership => {
                self.note("add a voter".to_string());
                let added = cluster.add_node(true).await;
                let (added_id, added_url) = (cluster.nodes[added].id, cluster.url(added));
                targets.add(added_url.clone());
                self.note(format!("node {added_id} joined; holding {hold:?}"));
                tokio::time::sleep(hold).await;
                targets.remove(&added_url);
                self.remove_member(cluster, added_id).await;
                cluster.kill(added);
            }
        }
    }

    /// The leader's position; `None` (noted as a liveness problem) when there has been none
    /// for 10 s although no fault is active.
    async fn current_leader(&mut self, cluster: &Cluster) -> Option<usize> {
        let leader = cluster.find_leader(Duration::from_secs(10)).await;
        if leader.is_none() {
            self.note("LIVENESS: no leader for 10 s with every node up and linked".to_string());
        }
        leader
    }

    async fn hold_and_heal(&mut self, cluster: &Cluster, hold: Duration) {
        tokio::time::sleep(hold).await;
        cluster.network().heal();
        self.note("healed the network".to_string());
    }

    /// Removes node `id` from the membership through the leader, retrying through elections.
    async fn remove_member(&mut self, cluster: &Cluster, id: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = match cluster.find_leader(Duration::from_secs(5)).await {
                Some(leader) => cluster.post(leader, "/remove", json!({ "id": id })).await,
                None => (0, json!("no leader")),
            };
            if status == 200 {
                self.note(format!("removed node {id}"));
                return;
            }
            self.note(format!("removing node {id} failed: HTTP {status} {body}"));
            assert!(
                Instant::now() < deadline,
                "could not remove node {id} within 30 s:\n{}",
                self.log.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
