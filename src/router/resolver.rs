//! Finishes the prepared cross-group transactions whose coordinator went quiet (it crashed,
//! or lost touch between prepare and decision). On each group this node leads, a transaction
//! prepared longer than [`RESOLVE_AFTER`] is settled by asking its coordinator group to abort
//! it: that group's log answers with the one decision it holds — the commit, if it came
//! first, or the abort it records now — and the same step follows here.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::catalog::databases::Databases;
use crate::raft::types::StatementResult;
use crate::service::{Service, ServiceError, WriteConcern};
use crate::types::shard::{ShardStep, StepOutcome, Xid};

/// How long a transaction may stay prepared before a resolver settles it. A coordinator
/// decides within a few round trips; this is far longer, so a resolver rarely races a
/// coordinator that is merely slow (and if it does, the coordinator group's log still picks
/// one outcome for both).
pub const RESOLVE_AFTER: Duration = Duration::from_secs(3);
/// How often the groups this node leads are looked at.
const ROUND: Duration = Duration::from_millis(500);
/// How long one resolution may wait for the coordinator group.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

pub fn spawn(databases: Arc<Databases>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                () = tokio::time::sleep(ROUND) => {}
            }
            round(&databases).await;
        }
    })
}

/// Settles every overdue prepared transaction of the groups this node leads.
async fn round(databases: &Databases) {
    let now_ms = crate::service::unix_now_ms();
    for group in databases.host().groups.all() {
        if !group.database.holds_prepared() || !group.leads() {
            continue;
        }
        let Some(service) = databases.host().service(group.id) else {
            continue;
        };
        let prepared = match group.database.prepared_transactions() {
            Ok(prepared) => prepared,
            Err(error) => {
                tracing::warn!(group = group.id, %error, "reading the prepared transactions");
                continue;
            }
        };
        for (xid, prepared_ms) in prepared {
            if now_ms.saturating_sub(prepared_ms) < RESOLVE_AFTER.as_millis() as i64 {
                continue;
            }
            match resolve(databases, &service, xid).await {
                Ok(outcome) => {
                    crate::metrics::metrics().shard_transactions_resolved.inc();
                    tracing::info!(group = group.id, %xid, outcome = outcome.as_str(), "resolved a prepared cross-shard transaction its coordinator left");
                }
                Err(error) => {
                    tracing::warn!(group = group.id, %xid, %error, "cannot resolve a prepared cross-shard transaction yet");
                }
            }
        }
    }
}

/// Learns `xid`'s decision from its coordinator group (deciding abort if none was made) and
/// applies it in `service`'s group.
async fn resolve(
    databases: &Databases,
    service: &Arc<Service>,
    xid: Xid,
) -> Result<StepOutcome, ServiceError> {
    let abort = ShardStep::Abort { xid };
    let decided = if xid.coordinator == service.group.id {
        service
            .apply_step_here(&abort, WriteConcern::Majority, STEP_TIMEOUT)
            .await?
    } else {
        databases
            .resolve_group(xid.coordinator)?
            .apply_step(&abort, WriteConcern::Majority, STEP_TIMEOUT)
            .await?
    };
    let decision = outcome(&decided)?;
    if xid.coordinator == service.group.id {
        return Ok(decision);
    }
    let local = match decision {
        StepOutcome::Committed => ShardStep::Commit { xid },
        StepOutcome::Aborted => abort,
        other => {
            return Err(ServiceError::Internal(format!(
                "coordinator group {} answered {} for an abort",
                xid.coordinator,
                other.as_str()
            )));
        }
    };
    outcome(
        &service
            .apply_step_here(&local, WriteConcern::Majority, STEP_TIMEOUT)
            .await?,
    )
}

fn outcome(results: &[StatementResult]) -> Result<StepOutcome, ServiceError> {
    results
        .first()
        .and_then(StepOutcome::of)
        .ok_or_else(|| ServiceError::Internal("a transaction step answered no outcome".into()))
}
