//! Quiescence of idle groups. Once a group has had nothing to replicate for a while, its leader
//! asks every member to stop its Raft timers, then stops its own: the group then costs no
//! wakeups and sends no heartbeats. Instead, each quiesced follower sends one liveness call per
//! heartbeat interval to each node that leads groups it follows — one message for all the
//! groups between two nodes, however many — and the leader answers which of them it still
//! leads, quiesced, in the same term. A follower whose leader stops answering wakes its group
//! (timers on; its election timer has long run out, so an election follows at once), and so does
//! a leader that stops hearing from a member. Any activity wakes a group: a new log entry, an
//! append from the leader, a change of leader or term, a leader transfer, a read that needs the
//! leader's quorum.
//!
//! Quiescence only stops timers. Raft's safety never depends on them, so a wrong decision here
//! costs an election or some heartbeats, never a write.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;

use crate::raft::group::{RaftGroup, RaftInstant, RaftSettings};
use crate::raft::peer_stream::client::{PeerLinks, Route};
use crate::raft::peer_stream::frame::{Call, LivenessRequest, QuiesceRequest, Reply};
use crate::raft::registry::GroupRegistry;
use crate::raft::types::{GroupId, NodeId};

/// How long a group's log must stay unchanged (and the group unwoken) before it quiesces.
pub const QUIESCE_AFTER: Duration = Duration::from_secs(2);
/// Longest wait for a member to answer a request to quiesce.
const QUIESCE_CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait, before a write on a quiesced leader, for a quorum to acknowledge it again.
const WAKE_FOR_WRITE_MAX: Duration = Duration::from_secs(1);
/// Longest wait for a leader to answer a liveness call. Longer than the election timeout: a
/// slow answer is not a lost leader (the silence check decides that from the last answer),
/// and a call that times out closes the whole peer link, every group's streams with it.
const LIVENESS_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Quiesce attempts in flight at once on one node.
const ATTEMPTS_MAX: usize = 64;

/// A group's quiescence as one member sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Quiesced {
    pub term: u64,
    pub leader: NodeId,
    /// The last log index, replicated and applied everywhere when the group quiesced.
    pub index: Option<u64>,
    /// On the leader: when each other member last called to check on it. On a follower: when
    /// the leader last confirmed it still leads, quiesced.
    pub heard: BTreeMap<NodeId, Instant>,
}

/// One group replica's quiescence: whether its timers are stopped, and since when it heard
/// from whom.
#[derive(Debug)]
pub struct Quiet {
    /// Mirrors `state.is_some()`, for the lock-free checks on every request and append.
    flag: AtomicBool,
    state: Mutex<Option<Quiesced>>,
    woken_at: Mutex<Option<Instant>>,
    /// When this replica last served a leader read (ms since `base`, coarse): a group read
    /// through its leader is not idle, though its log stays put.
    read_at_ms: AtomicU64,
    base: Instant,
}

impl Default for Quiet {
    fn default() -> Self {
        Quiet {
            flag: AtomicBool::new(false),
            state: Mutex::new(None),
            woken_at: Mutex::new(None),
            read_at_ms: AtomicU64::new(0),
            base: Instant::now(),
        }
    }
}

/// Leader reads closer together than this record their time once (one atomic load per read
/// otherwise).
const READ_NOTE_GRANULARITY_MS: u64 = 100;

impl Quiet {
    pub fn is_quiesced(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Quiesced>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enters quiescence; false when already quiesced.
    fn enter(&self, quiesced: Quiesced) -> bool {
        let mut state = self.lock();
        if state.is_some() {
            return false;
        }
        *state = Some(quiesced);
        self.flag.store(true, Ordering::Release);
        true
    }

    /// Leaves quiescence; true when it was quiesced.
    fn leave(&self) -> bool {
        let mut state = self.lock();
        if state.take().is_none() {
            return false;
        }
        self.flag.store(false, Ordering::Release);
        *self.woken_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        true
    }

    pub fn current(&self) -> Option<Quiesced> {
        if !self.is_quiesced() {
            return None;
        }
        self.lock().clone()
    }

    /// Records a leader read now (coarsely).
    fn note_read(&self) {
        let now = self.base.elapsed().as_millis() as u64 + 1;
        let last = self.read_at_ms.load(Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) >= READ_NOTE_GRANULARITY_MS {
            self.read_at_ms.store(now, Ordering::Relaxed);
        }
    }

    /// Whether a leader read was served within `span`.
    fn read_within(&self, span: Duration) -> bool {
        match self.read_at_ms.load(Ordering::Relaxed) {
            0 => false,
            at => {
                (self.base.elapsed().as_millis() as u64 + 1).saturating_sub(at)
                    < span.as_millis() as u64
            }
        }
    }

    fn woken_within(&self, span: Duration) -> bool {
        self.woken_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < span)
    }

    /// On the leader: member `from` checked on the group in `term`. True (and recorded) when
    /// this node leads the group, quiesced, in that term with `from` a member.
    fn checked_by(&self, me: NodeId, from: NodeId, term: u64, now: Instant) -> bool {
        let mut state = self.lock();
        match state.as_mut() {
            Some(q) if q.leader == me && q.term == term => match q.heard.get_mut(&from) {
                Some(at) => {
                    *at = now;
                    true
                }
                None => false,
            },
            _ => false,
        }
    }

    /// On a follower: the leader confirmed it still leads, quiesced, in `term`.
    fn confirmed(&self, leader: NodeId, term: u64, now: Instant) -> bool {
        let mut state = self.lock();
        match state.as_mut() {
            Some(q) if q.leader == leader && q.term == term => {
                q.heard.insert(leader, now);
                true
            }
            _ => false,
        }
    }

    /// Why the group has to wake at `now`, if it does: on the leader, a member not heard from
    /// within `lost_after`; on a follower, the leader not heard from within it.
    fn lost(&self, me: NodeId, now: Instant, lost_after: Duration) -> Option<String> {
        let state = self.lock();
        let q = state.as_ref()?;
        let silent = |node: &NodeId| {
            q.heard
                .get(node)
                .is_none_or(|at| now.saturating_duration_since(*at) > lost_after)
        };
        if q.leader == me {
            q.heard
                .keys()
                .find(|node| silent(node))
                .map(|node| format!("member {node} stopped checking on this leader"))
        } else if silent(&q.leader) {
            Some(format!("leader {} stopped answering", q.leader))
        } else {
            None
        }
    }

    /// On the leader: the longest time since a member checked on it.
    fn longest_silence(&self, now: Instant) -> Option<Duration> {
        let state = self.lock();
        let q = state.as_ref()?;
        Some(
            q.heard
                .values()
                .map(|at| now.saturating_duration_since(*at))
                .max()
                .unwrap_or(Duration::ZERO),
        )
    }
}

impl RaftGroup {
    /// Wakes the group if it is quiesced: its Raft timers run again. Cheap when it is not.
    pub fn wake(&self, why: &str) {
        if !self.quiet.is_quiesced() || !self.quiet.leave() {
            return;
        }
        self.raft.runtime_config().tick(true);
        let metrics = crate::metrics::metrics();
        metrics.groups_quiesced.dec();
        metrics.group_wakes.inc();
        tracing::debug!(group = self.id, why, "group woke");
    }

    pub fn is_quiesced(&self) -> bool {
        self.quiet.is_quiesced()
    }

    /// A read served by this leader: a quiesced group wakes (its lease needs heartbeats), an
    /// awake one counts as in use and is not quiesced meanwhile.
    pub fn note_leader_read(&self) {
        if self.quiet.is_quiesced() {
            self.wake("a read needs the leader's quorum");
        } else {
            self.quiet.note_read();
        }
    }

    /// Before a write or a membership change on this leader. openraft takes writes only under a
    /// leader lease (a quorum acknowledged it within the election timeout), which a quiesced
    /// leader, sending no heartbeats, has let lapse: wake, heartbeat at once, and wait (at most
    /// a second) until a quorum answered. Nothing to do when the group is awake.
    pub async fn wake_for_write(&self) {
        let Some(quiesced) = self.quiet.current() else {
            return;
        };
        self.wake("a write needs the leader's lease");
        if quiesced.leader != self.node_id || quiesced.heard.is_empty() {
            return; // a follower forwards; a lone voter is its own quorum
        }
        let asked_at = <RaftInstant as openraft::Instant>::now();
        if self.raft.trigger().heartbeat().await.is_err() {
            return;
        }
        let _ = self
            .raft
            .wait(Some(WAKE_FOR_WRITE_MAX))
            .metrics(
                |m| {
                    !m.state.is_leader()
                        || m.last_quorum_acked
                            .as_ref()
                            .is_some_and(|acked| **acked >= asked_at)
                },
                "a quorum acknowledged the woken leader",
            )
            .await;
    }

    /// Whether this replica's view still matches the quiescence it entered: same term, same
    /// leader, same last log index, everything applied and committed.
    fn settled_at(&self, request: &QuiesceRequest) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        m.running_state.is_ok()
            && m.current_term == request.term
            && m.current_leader == Some(request.leader)
            && m.state.is_leader() == (request.leader == self.node_id)
            && m.last_log_index == request.index
            && m.last_applied.as_ref().map(|l| l.index) == request.index
            && m.local_committed.as_ref().map(|l| l.index) == request.index
            && m.membership_config.membership().get_joint_config().len() == 1
    }

    /// A member's answer to its leader's request to quiesce: true when it has everything up
    /// to the leader's last entry applied and follows that leader in that term; it then stops
    /// its timers.
    pub fn quiesce_as_follower(&self, request: &QuiesceRequest) -> bool {
        if request.leader == self.node_id || !self.settled_at(request) {
            return false;
        }
        let now = Instant::now();
        self.enter_quiescence(request, BTreeMap::from([(request.leader, now)]))
    }

    /// The leader quiesces itself once every member agreed.
    fn quiesce_as_leader(&self, request: &QuiesceRequest, members: &[NodeId]) -> bool {
        if request.leader != self.node_id || !self.settled_at(request) {
            return false;
        }
        let now = Instant::now();
        let heard = members.iter().map(|&node| (node, now)).collect();
        self.enter_quiescence(request, heard)
    }

    fn enter_quiescence(&self, request: &QuiesceRequest, heard: BTreeMap<NodeId, Instant>) -> bool {
        let entered = self.quiet.enter(Quiesced {
            term: request.term,
            leader: request.leader,
            index: request.index,
            heard,
        });
        if !entered {
            return true;
        }
        self.raft.runtime_config().tick(false);
        crate::metrics::metrics().groups_quiesced.inc();
        // An entry or a new term that arrived since the check above may have been seen by the
        // leader watch before the flag was up: look again now that it is.
        if !self.settled_at(request) {
            self.wake("the group changed while it quiesced");
            return false;
        }
        tracing::debug!(group = self.id, term = request.term, "group quiesced");
        true
    }

    /// Called by the leader watch on every metrics change: a quiesced group wakes when its
    /// term, leader or log moved.
    pub(crate) fn wake_if_moved(&self, term: u64, leader: Option<NodeId>, last: Option<u64>) {
        if !self.quiet.is_quiesced() {
            return;
        }
        let moved = self
            .quiet
            .current()
            .is_some_and(|q| q.term != term || Some(q.leader) != leader || q.index != last);
        if moved {
            self.wake("the log, the term or the leader changed");
        }
    }

    /// On a quiesced leader: the longest time since a member checked on it.
    pub(crate) fn quiesced_silence(&self) -> Option<Duration> {
        if !self.quiet.is_quiesced() {
            return None;
        }
        self.quiet.longest_silence(Instant::now())
    }
}

/// Answers a follower's liveness call: the groups among those asked that this node leads,
/// quiesced, in the term named (each recorded as checked on by the caller).
pub fn answer_liveness(groups: &GroupRegistry, asked: &LivenessRequest) -> Vec<GroupId> {
    let me = groups.node_id();
    let now = Instant::now();
    asked
        .groups
        .iter()
        .filter(|(id, term)| {
            groups.get(*id).is_some_and(|group| {
                group.leads() && group.quiet.checked_by(me, asked.from, *term, now)
            })
        })
        .map(|(id, _)| *id)
        .collect()
}

/// The group's members other than this node, with their Raft addresses.
fn other_members(group: &RaftGroup) -> Vec<(NodeId, String)> {
    group
        .members()
        .into_iter()
        .filter(|(id, _)| *id != group.node_id)
        .map(|(id, node)| (id, node.raft_addr))
        .collect()
}

/// The request to quiesce `group` now, if its leader (this node) finds it settled: nothing to
/// replicate, commit or apply anywhere, and no membership change under way.
fn ready_to_quiesce(group: &RaftGroup) -> Option<QuiesceRequest> {
    let metrics = group.raft.metrics();
    let m = metrics.borrow_watched();
    if !m.state.is_leader() || m.running_state.is_err() {
        return None;
    }
    let index = m.last_log_index;
    let everywhere = m.replication.as_ref().is_some_and(|replication| {
        replication
            .values()
            .all(|matched| matched.as_ref().map(|l| l.index) == index)
    });
    let settled = everywhere
        && m.last_applied.as_ref().map(|l| l.index) == index
        && m.local_committed.as_ref().map(|l| l.index) == index
        && m.membership_config.membership().get_joint_config().len() == 1;
    settled.then(|| QuiesceRequest {
        term: m.current_term,
        leader: group.node_id,
        index,
    })
}

/// Asks every other member of `group` to quiesce, then quiesces the leader if all agreed. No
/// member is asked unless every one can take part (a member of an earlier version, or one
/// unreachable, keeps the group awake without stopping anyone's timers for a moment); a
/// member that agreed while another refused wakes on the leader's next heartbeat.
async fn attempt(group: Arc<RaftGroup>, links: Arc<PeerLinks>, request: QuiesceRequest) {
    let members = other_members(&group);
    let mut streams = Vec::with_capacity(members.len());
    for (node, raft_addr) in &members {
        match links.route(*node, raft_addr).await {
            Ok(Route::Stream(link)) if link.quiesces() => streams.push(link),
            _ => return,
        }
    }
    for link in &streams {
        let call = Call::Quiesce(request.clone());
        match link.call(group.id, call, QUIESCE_CALL_TIMEOUT).await {
            Ok(Reply::Quiesce(true)) => {}
            _ => return,
        }
    }
    let ids: Vec<NodeId> = members.iter().map(|(id, _)| *id).collect();
    group.quiesce_as_leader(&request, &ids);
}

/// Sends one liveness call to `leader` for `asked` groups and records the answers: a group the
/// leader confirmed counts as contact with it; any other wakes.
async fn check_leader(
    groups: Arc<GroupRegistry>,
    links: Arc<PeerLinks>,
    leader: NodeId,
    raft_addr: String,
    asked: Vec<(GroupId, u64)>,
) {
    let link = match links.route(leader, &raft_addr).await {
        Ok(Route::Stream(link)) if link.quiesces() => link,
        // Not reachable over a stream that knows liveness calls: the silence check wakes the
        // groups once the leader has gone unheard for long enough.
        _ => return,
    };
    let request = LivenessRequest {
        from: groups.node_id(),
        groups: asked.clone(),
    };
    let Ok(Reply::Liveness(confirmed)) = link
        .call(
            crate::raft::types::CATALOG_GROUP,
            Call::Liveness(request),
            LIVENESS_CALL_TIMEOUT,
        )
        .await
    else {
        return;
    };
    let confirmed: HashSet<GroupId> = confirmed.into_iter().collect();
    let now = Instant::now();
    for (id, term) in asked {
        let Some(group) = groups.get(id) else {
            continue;
        };
        if confirmed.contains(&id) && group.quiet.confirmed(leader, term, now) {
            group.note_leader_contact_while_quiesced();
        } else {
            group.wake("the leader no longer leads the group quiesced");
        }
    }
}

/// How long a group's log has been unchanged, per group this node leads.
#[derive(Default)]
struct Idleness {
    since: HashMap<GroupId, (Option<u64>, Instant)>,
}

impl Idleness {
    /// Whether `group`'s log has stayed at `last` for `QUIESCE_AFTER`.
    fn idle(&mut self, group: GroupId, last: Option<u64>, now: Instant) -> bool {
        let entry = self.since.entry(group).or_insert((last, now));
        if entry.0 != last {
            *entry = (last, now);
        }
        now.saturating_duration_since(entry.1) >= QUIESCE_AFTER
    }

    fn restart(&mut self, group: GroupId, now: Instant) {
        if let Some(entry) = self.since.get_mut(&group) {
            entry.1 = now;
        }
    }

    fn retain(&mut self, running: &HashSet<GroupId>) {
        self.since.retain(|id, _| running.contains(id));
    }
}

/// Runs quiescence for every group on this node: every heartbeat interval it wakes groups whose
/// leader or members went silent, sends the liveness calls of quiesced followers (one per
/// leader node), and starts quiescing groups this node leads that have been idle long enough.
/// The loop ends when the registry is dropped (the node stopped).
pub fn spawn(groups: &Arc<GroupRegistry>, links: Arc<PeerLinks>, settings: &RaftSettings) {
    let interval = Duration::from_millis(settings.heartbeat_interval_ms.max(1));
    // As long as a follower waits for a heartbeat before it may campaign: failover after a
    // quiesced leader dies takes about what it takes after an active one dies.
    let lost_after = Duration::from_millis(settings.election_timeout_max_ms);
    let me = groups.node_id();
    let registry = Arc::downgrade(groups);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut idleness = Idleness::default();
        let attempts: Arc<Mutex<HashSet<GroupId>>> = Arc::default();
        let checking: Arc<Mutex<HashSet<NodeId>>> = Arc::default();
        loop {
            ticker.tick().await;
            let Some(groups) = registry.upgrade() else {
                return;
            };
            let now = Instant::now();
            let running = groups.all();
            let mut asks: BTreeMap<NodeId, (String, Vec<(GroupId, u64)>)> = BTreeMap::new();
            for group in &running {
                if let Some(quiesced) = group.quiet.current() {
                    if let Some(why) = group.quiet.lost(me, now, lost_after) {
                        group.wake(&why);
                    } else if quiesced.leader != me {
                        let entry = match asks.entry(quiesced.leader) {
                            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                            std::collections::btree_map::Entry::Vacant(entry) => {
                                let Some(raft_addr) = group.raft_addr_of(quiesced.leader) else {
                                    continue;
                                };
                                entry.insert((raft_addr, Vec::new()))
                            }
                        };
                        entry.1.push((group.id, quiesced.term));
                    }
                    continue;
                }
                if !group.leads() {
                    continue;
                }
                let last = group.raft.metrics().borrow_watched().last_log_index;
                if !idleness.idle(group.id, last, now)
                    || group.quiet.woken_within(QUIESCE_AFTER)
                    || group.quiet.read_within(QUIESCE_AFTER)
                {
                    continue;
                }
                let Some(request) = ready_to_quiesce(group) else {
                    continue;
                };
                let mut in_flight = attempts.lock().unwrap_or_else(|p| p.into_inner());
                if in_flight.len() >= ATTEMPTS_MAX || !in_flight.insert(group.id) {
                    continue;
                }
                drop(in_flight);
                // Whatever comes of it, the next attempt waits for another idle spell.
                idleness.restart(group.id, now);
                let (group, links, attempts) = (group.clone(), links.clone(), attempts.clone());
                tokio::spawn(async move {
                    let id = group.id;
                    attempt(group, links, request).await;
                    attempts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                });
            }
            idleness.retain(&running.iter().map(|g| g.id).collect());
            for (leader, (raft_addr, asked)) in asks {
                if !checking
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(leader)
                {
                    continue; // the previous call to this leader is still out
                }
                let (groups, links, checking) = (groups.clone(), links.clone(), checking.clone());
                tokio::spawn(async move {
                    check_leader(groups, links, leader, raft_addr, asked).await;
                    checking
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&leader);
                });
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiesced(leader: NodeId, members: &[NodeId], at: Instant) -> Quiesced {
        Quiesced {
            term: 3,
            leader,
            index: Some(10),
            heard: members.iter().map(|&m| (m, at)).collect(),
        }
    }

    #[test]
    fn a_follower_wakes_when_its_leader_goes_unheard_for_the_election_timeout() {
        let start = Instant::now();
        let quiet = Quiet::default();
        assert!(quiet.enter(quiesced(1, &[1], start)));
        let timeout = Duration::from_millis(180);
        assert_eq!(
            quiet.lost(2, start + Duration::from_millis(100), timeout),
            None
        );
        assert!(quiet.confirmed(1, 3, start + Duration::from_millis(100)));
        assert_eq!(
            quiet.lost(2, start + Duration::from_millis(250), timeout),
            None
        );
        let why = quiet.lost(2, start + Duration::from_millis(300), timeout);
        assert!(why.is_some_and(|w| w.contains("leader 1")));
        // A confirmation for another term or from another leader does not count.
        assert!(!quiet.confirmed(1, 4, start));
        assert!(!quiet.confirmed(5, 3, start));
    }

    #[test]
    fn a_leader_wakes_when_any_member_stops_checking_on_it() {
        let start = Instant::now();
        let quiet = Quiet::default();
        assert!(quiet.enter(quiesced(1, &[2, 3], start)));
        let timeout = Duration::from_millis(180);
        let later = start + Duration::from_millis(150);
        assert!(quiet.checked_by(1, 2, 3, later));
        assert!(!quiet.checked_by(1, 4, 3, later), "not a member");
        assert!(!quiet.checked_by(1, 2, 2, later), "an older term");
        assert_eq!(
            quiet.longest_silence(later),
            Some(Duration::from_millis(150))
        );
        let why = quiet.lost(1, start + Duration::from_millis(200), timeout);
        assert!(why.is_some_and(|w| w.contains("member 3")));
    }

    #[test]
    fn leaving_quiescence_is_reported_once_and_remembered() {
        let quiet = Quiet::default();
        assert!(!quiet.leave(), "not quiesced");
        assert!(quiet.enter(quiesced(1, &[2], Instant::now())));
        assert!(!quiet.enter(quiesced(1, &[2], Instant::now())), "already");
        assert!(quiet.is_quiesced());
        assert!(quiet.leave());
        assert!(!quiet.is_quiesced());
        assert!(quiet.current().is_none());
        assert!(quiet.woken_within(Duration::from_secs(1)));
        assert!(!quiet.leave());
    }

    #[test]
    fn leader_reads_keep_a_group_in_use() {
        let quiet = Quiet::default();
        assert!(!quiet.read_within(Duration::from_secs(2)), "never read");
        quiet.note_read();
        assert!(quiet.read_within(Duration::from_secs(2)));
        assert!(!quiet.read_within(Duration::ZERO));
    }

    #[test]
    fn a_group_is_idle_once_its_log_stayed_put_long_enough() {
        let start = Instant::now();
        let mut idleness = Idleness::default();
        assert!(!idleness.idle(7, Some(5), start));
        assert!(!idleness.idle(7, Some(5), start + QUIESCE_AFTER / 2));
        assert!(
            !idleness.idle(7, Some(6), start + QUIESCE_AFTER),
            "the log moved"
        );
        assert!(idleness.idle(7, Some(6), start + QUIESCE_AFTER * 2));
        idleness.restart(7, start + QUIESCE_AFTER * 2);
        assert!(!idleness.idle(7, Some(6), start + QUIESCE_AFTER * 2));
        idleness.retain(&HashSet::new());
        assert!(idleness.since.is_empty());
    }
}
