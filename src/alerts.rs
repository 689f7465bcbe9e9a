//! Alerts: rules evaluated every second on this node's view of the cluster. An alert fires once
//! when its condition has held for its delay and resolves once when it stops; both go to the
//! log and to the configured webhooks (HTTP POST of a JSON body, retried, through a bounded
//! queue). `GET /alerts` lists what is firing now.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::service::Service;

/// Events waiting for the webhook sender; an event arriving when the queue is full is dropped
/// (with a warning in the log, which has every event anyway).
const WEBHOOK_QUEUE_MAX: usize = 1_000;
const WEBHOOK_ATTEMPTS: u32 = 4;
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Member probes are network calls: evaluate member rules this often, not every second.
const MEMBER_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Thresholds of the built-in rules (all on by default) and where alerts go.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub webhooks: Vec<String>,
    /// No leader this node can reach (or, on the leader, no quorum acknowledging it) for this
    /// long.
    pub no_leader_after: Duration,
    /// A member unreachable for this long.
    pub member_unreachable_after: Duration,
    /// A member this many entries behind the most up-to-date one.
    pub lag_entries_max: u64,
    /// The data directory's file system with less free space than this, in percent.
    pub disk_free_percent_min: f64,
    pub data_dir: PathBuf,
    /// More failed logins than this within a minute (someone guessing passwords).
    pub auth_failures_per_minute_max: u64,
}

/// One alert event, as sent to webhooks.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertEvent {
    pub alert: String,
    /// `firing` or `resolved`.
    pub state: &'static str,
    pub severity: &'static str,
    pub node: u64,
    pub value: String,
    pub summary: String,
    /// When the condition began, seconds since the Unix epoch.
    pub since: f64,
}

#[derive(Debug, Clone)]
struct Firing {
    event: AlertEvent,
}

/// `group_no_leader:<database>` for every other group on this node (the catalog, created
/// databases) that has not heard from a leader — or, leading, from a quorum — for a second:
/// that database's writes cannot be committed.
fn group_conditions(databases: &crate::catalog::databases::Databases) -> Conditions {
    let view = databases.view();
    let mut conditions = Conditions::new();
    for service in databases.host().services.all() {
        let group = &service.group;
        if group.id == crate::raft::types::DEFAULT_DATA_GROUP {
            continue;
        }
        let name = if group.id == crate::catalog::CATALOG_GROUP {
            "catalog".to_string()
        } else {
            match view.by_group(group.id) {
                Some(entry) => entry.name.clone(),
                None => continue,
            }
        };
        let quiet = group.leader_quiet();
        if group.current_leader().is_none() || quiet > Duration::from_secs(1) {
            let value = if quiet == Duration::MAX {
                "never".to_string()
            } else {
                format!("{} ms", quiet.as_millis())
            };
            conditions.insert(
                format!("group_no_leader:{name}"),
                (
                    "critical",
                    value,
                    format!(
                        "database {name} (group {}): no leader reachable from this node, its \
                         writes cannot be committed",
                        group.id
                    ),
                ),
            );
        }
    }
    conditions
}

/// What the rules found in one evaluation: alert key → (severity, value, summary).
type Conditions = BTreeMap<String, (&'static str, String, String)>;

/// The alert state of this node.
pub struct Alerts {
    node: u64,
    settings: AlertSettings,
    /// Conditions seen but not yet firing (waiting for their delay), with when they began.
    pending: Mutex<BTreeMap<String, (Instant, SystemTime)>>,
    firing: Mutex<BTreeMap<String, Firing>>,
    outbox: mpsc::Sender<AlertEvent>,
    /// Failed-login counter readings of the last minute (one per evaluation).
    auth_failure_readings: Mutex<std::collections::VecDeque<(Instant, u64)>>,
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Alerts {
    /// Starts evaluating `service`'s state (the default database's group) and every other
    /// group running here (through `databases`) every second, sending events to the webhooks.
    pub fn start(
        service: Arc<Service>,
        databases: Arc<crate::catalog::databases::Databases>,
        settings: AlertSettings,
    ) -> Arc<Alerts> {
        let (outbox, inbox) = mpsc::channel(WEBHOOK_QUEUE_MAX);
        let alerts = Arc::new(Alerts {
            node: service.node_id(),
            settings: settings.clone(),
            pending: Mutex::new(BTreeMap::new()),
            firing: Mutex::new(BTreeMap::new()),
            outbox,
            auth_failure_readings: Mutex::new(std::collections::VecDeque::new()),
        });
        tokio::spawn(send_webhooks(settings.webhooks.clone(), inbox));
        let weak = Arc::downgrade(&alerts);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            let mut members = Conditions::new();
            let mut probed_at: Option<Instant> = None;
            loop {
                ticker.tick().await;
                let Some(alerts) = weak.upgrade() else { return };
                if probed_at.is_none_or(|at| at.elapsed() >= MEMBER_PROBE_INTERVAL) {
                    members = alerts.member_conditions(&service).await;
                    probed_at = Some(Instant::now());
                }
                let mut conditions = alerts.local_conditions(&service);
                conditions.extend(group_conditions(&databases));
                conditions.extend(members.clone());
                alerts.update(conditions);
            }
        });
        alerts
    }

    /// What is firing now.
    pub fn firing(&self) -> Vec<AlertEvent> {
        self.firing
            .lock()
            .map(|f| f.values().map(|f| f.event.clone()).collect())
            .unwrap_or_default()
    }

    /// Conditions from this node alone: leader contact, disk space.
    fn local_conditions(&self, service: &Service) -> Conditions {
        let mut conditions = Conditions::new();
        let group = &service.group;
        let metrics = group.metrics();
        let quiet = group.leader_quiet();
        // A leader is "there" when this node hears from it (or, leading, from a quorum)
        // within a second.
        if metrics.current_leader.is_none() || quiet > Duration::from_secs(1) {
            let value = if quiet == Duration::MAX {
                "never".to_string()
            } else {
                format!("{} ms", quiet.as_millis())
            };
            conditions.insert(
                "no_leader".to_string(),
                (
                    "critical",
                    value,
                    "no leader reachable: writes cannot be committed".to_string(),
                ),
            );
        }
        if let Some(free) = free_disk_percent(&self.settings.data_dir)
            && free < self.settings.disk_free_percent_min
        {
            conditions.insert(
                "disk_free_low".to_string(),
                (
                    "warning",
                    format!("{free:.1}%"),
                    format!(
                        "the data directory's file system has {free:.1}% free, below {}%",
                        self.settings.disk_free_percent_min
                    ),
                ),
            );
        }
        let metrics = crate::metrics::metrics();
        let failed_logins = self.failed_logins_last_minute(metrics.auth_failures.get());
        if failed_logins > self.settings.auth_failures_per_minute_max {
            conditions.insert(
                "auth_failures".to_string(),
                (
                    "warning",
                    failed_logins.to_string(),
                    format!(
                        "{failed_logins} failed logins in the last minute (more than {}): \
                         someone may be guessing passwords",
                        self.settings.auth_failures_per_minute_max
                    ),
                ),
            );
        }
        if metrics.backup_last_ok.get() == 0 {
            conditions.insert(
                "backup_failed".to_string(),
                (
                    "critical",
                    metrics.backup_failures.get().to_string(),
                    "the last backup this node attempted failed".into(),
                ),
            );
        }
        if metrics.backup_last_verification_ok.get() == 0 {
            conditions.insert(
                "backup_verification_failed".to_string(),
                (
                    "critical",
                    metrics.backup_verification_failures.get().to_string(),
                    "the last backup verification failed: that backup would not restore".into(),
                ),
            );
        }
        conditions
    }

    /// Failed logins counted in the last minute, from the counter's readings (kept bounded:
    /// one per evaluation, a minute's worth).
    fn failed_logins_last_minute(&self, total: u64) -> u64 {
        let Ok(mut readings) = self.auth_failure_readings.lock() else {
            return 0;
        };
        let now = Instant::now();
        readings.push_back((now, total));
        while readings
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > Duration::from_secs(60))
        {
            readings.pop_front();
        }
        readings
            .front()
            .map_or(0, |(_, oldest)| total.saturating_sub(*oldest))
    }

    /// Conditions from probing the members: unreachable, lagging.
    async fn member_conditions(&self, service: &Service) -> Conditions {
        let mut conditions = Conditions::new();
        let members = service.member_states(std::time::Instant::now()).await;
        let newest = members
            .values()
            .filter_map(|(_, _, s)| s.as_ref().and_then(|s| s.applied_index))
            .max()
            .unwrap_or(0);
        for (id, (node, _, state)) in &members {
            match state {
                None => {
                    conditions.insert(
                        format!("member_unreachable:{id}"),
                        (
                            "warning",
                            node.http_addr.clone(),
                            format!("member {id} ({}) does not answer", node.http_addr),
                        ),
                    );
                }
                Some(state) => {
                    let behind = newest.saturating_sub(state.applied_index.unwrap_or(0));
                    if behind > self.settings.lag_entries_max {
                        conditions.insert(
                            format!("replication_lag:{id}"),
                            (
                                "warning",
                                behind.to_string(),
                                format!("member {id} is {behind} entries behind"),
                            ),
                        );
                    }
                }
            }
        }
        conditions
    }

    /// The delay before a condition fires.
    fn delay(&self, key: &str) -> Duration {
        match key.split(':').next().unwrap_or_default() {
            "no_leader" | "group_no_leader" => self.settings.no_leader_after,
            "member_unreachable" => self.settings.member_unreachable_after,
            _ => Duration::ZERO,
        }
    }

    /// Fires conditions that held long enough; resolves firing alerts whose condition ended.
    fn update(&self, conditions: Conditions) {
        let (Ok(mut pending), Ok(mut firing)) = (self.pending.lock(), self.firing.lock()) else {
            return;
        };
        pending.retain(|key, _| conditions.contains_key(key));
        for (key, (severity, value, summary)) in &conditions {
            if firing.contains_key(key) {
                continue;
            }
            let (began, began_wall) = *pending
                .entry(key.clone())
                .or_insert((Instant::now(), SystemTime::now()));
            if began.elapsed() < self.delay(key) {
                continue;
            }
            pending.remove(key);
            let event = AlertEvent {
                alert: key.clone(),
                state: "firing",
                severity,
                node: self.node,
                value: value.clone(),
                summary: summary.clone(),
                since: unix_seconds(began_wall),
            };
            tracing::warn!(alert = %key, %severity, %value, "{summary}");
            self.send(event.clone());
            firing.insert(key.clone(), Firing { event });
        }
        let ended: Vec<String> = firing
            .keys()
            .filter(|key| !conditions.contains_key(*key))
            .cloned()
            .collect();
        for key in ended {
            if let Some(Firing { mut event }) = firing.remove(&key) {
                tracing::info!(alert = %key, "resolved: {}", event.summary);
                event.state = "resolved";
                self.send(event);
            }
        }
    }

    fn send(&self, event: AlertEvent) {
        if self.settings.webhooks.is_empty() {
            return;
        }
        if self.outbox.try_send(event).is_err() {
            tracing::warn!("alert webhook queue full: an alert event was dropped");
        }
    }
}

/// Posts every event to every webhook, retrying failures with backoff.
async fn send_webhooks(webhooks: Vec<String>, mut inbox: mpsc::Receiver<AlertEvent>) {
    let Ok(http) = reqwest::Client::builder().timeout(WEBHOOK_TIMEOUT).build() else {
        tracing::error!("alert webhooks disabled: no HTTP client");
        return;
    };
    while let Some(event) = inbox.recv().await {
        for url in &webhooks {
            let mut delay = Duration::from_millis(250);
            for attempt in 1..=WEBHOOK_ATTEMPTS {
                match http.post(url).json(&event).send().await {
                    Ok(response) if response.status().is_success() => break,
                    outcome => {
                        let why = match outcome {
                            Ok(response) => response.status().to_string(),
                            Err(error) => error.to_string(),
                        };
                        if attempt == WEBHOOK_ATTEMPTS {
                            tracing::warn!(%url, alert = %event.alert, %why, "alert webhook failed; giving up");
                        } else {
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                        }
                    }
                }
            }
        }
    }
}

/// Free space of the file system holding `dir`, in percent.
fn free_disk_percent(dir: &std::path::Path) -> Option<f64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data, for which all zeroes is a valid value.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs fills `stats` for a NUL-terminated path; both outlive the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 || stats.f_blocks == 0 {
        return None;
    }
    Some(stats.f_bavail as f64 * 100.0 / stats.f_blocks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerts(delay: Duration) -> (Alerts, mpsc::Receiver<AlertEvent>) {
        let (outbox, inbox) = mpsc::channel(16);
        let settings = AlertSettings {
            webhooks: vec!["http://127.0.0.1:9/hook".into()],
            no_leader_after: delay,
            member_unreachable_after: delay,
            lag_entries_max: 10,
            disk_free_percent_min: 10.0,
            data_dir: PathBuf::from("."),
            auth_failures_per_minute_max: 20,
        };
        let alerts = Alerts {
            node: 7,
            settings,
            pending: Mutex::new(BTreeMap::new()),
            firing: Mutex::new(BTreeMap::new()),
            outbox,
            auth_failure_readings: Mutex::new(std::collections::VecDeque::new()),
        };
        (alerts, inbox)
    }

    fn no_leader() -> Conditions {
        [(
            "no_leader".to_string(),
            ("critical", "1500 ms".to_string(), "no leader".to_string()),
        )]
        .into_iter()
        .collect()
    }

    #[test]
    fn an_alert_fires_once_while_its_condition_holds_and_resolves_once() {
        let (alerts, mut events) = alerts(Duration::ZERO);
        alerts.update(no_leader());
        alerts.update(no_leader());
        let fired = events.try_recv().unwrap();
        assert_eq!(
            (fired.alert.as_str(), fired.state, fired.node),
            ("no_leader", "firing", 7)
        );
        assert!(events.try_recv().is_err(), "fired once");
        assert_eq!(alerts.firing().len(), 1);
        alerts.update(Conditions::new());
        alerts.update(Conditions::new());
        let resolved = events.try_recv().unwrap();
        assert_eq!(resolved.state, "resolved");
        assert!(events.try_recv().is_err(), "resolved once");
        assert!(alerts.firing().is_empty());
    }

    #[test]
    fn a_condition_shorter_than_its_delay_never_fires() {
        let (alerts, mut events) = alerts(Duration::from_secs(60));
        alerts.update(no_leader());
        alerts.update(Conditions::new());
        assert!(events.try_recv().is_err());
        assert!(alerts.firing().is_empty());
    }
}
