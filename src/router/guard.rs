//! The guard on every request the router sends to a group of a sharded database: the owner
//! version the slot map it routed by expects there (`db::ownership`), so a group whose slots
//! moved since refuses the request whole. A refusal becomes a "slot map moved" error that the
//! router answers by reading the catalog again and routing the statement anew
//! ([`retry_moved`]); nothing of a refused request was applied, so routing again is safe.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::catalog::view::DatabaseEntry;
use crate::db::ownership;
use crate::raft::types::{Statement, StatementResult};
use crate::router::Router;
use crate::router::commit::{Outcome, Participant};
use crate::service::ServiceError;

/// How long a statement keeps routing again while slots move (a move's critical section
/// lasts milliseconds; a catalog that stays behind its groups longer is an outage).
const MOVED_RETRY_FOR: Duration = Duration::from_secs(10);
/// The first pause between two routings; doubled up to [`MOVED_BACKOFF_MAX`].
const MOVED_BACKOFF: Duration = Duration::from_millis(2);
const MOVED_BACKOFF_MAX: Duration = Duration::from_millis(100);

/// `statements` with the guard expecting `version` first.
pub fn guarded(statements: Vec<Statement>, version: u64) -> Vec<Statement> {
    let mut all = Vec::with_capacity(statements.len() + 1);
    all.push(ownership::guard(version));
    all.extend(statements);
    all
}

/// Takes the guard's result out of a guarded batch's `results`; a refusal becomes the
/// "slot map moved" error.
pub fn unguard(results: &mut Vec<StatementResult>) -> Result<(), ServiceError> {
    ownership::unguard(results).map_err(moved)
}

/// `participants` of a cross-group transaction with each batch guarded.
pub fn participants(database: &DatabaseEntry, participants: Vec<Participant>) -> Vec<Participant> {
    participants
        .into_iter()
        .map(|mut participant| {
            let version = database.slots.owner_version(participant.group);
            participant.batch.statements =
                guarded(std::mem::take(&mut participant.batch.statements), version);
            participant
        })
        .collect()
}

/// Takes the guards' results out of a cross-group transaction's outcome (of participants
/// made by [`participants`]); a refusal becomes the "slot map moved" error (the transaction
/// was then aborted everywhere).
pub fn unguard_outcome(outcome: &mut Outcome) -> Result<(), ServiceError> {
    for results in &mut outcome.results {
        unguard(results)?;
    }
    Ok(())
}

/// The error of a request refused by a group whose slots moved.
pub fn moved(message: String) -> ServiceError {
    ServiceError::Unavailable(message)
}

/// `error`, no longer to be routed again: a part of something larger that may have applied
/// other parts (a statement of a script that changes the schema).
pub fn as_final(error: ServiceError) -> ServiceError {
    match error {
        ServiceError::Unavailable(message) if message.starts_with(ownership::MOVED) => {
            ServiceError::Unavailable(format!(
                "the script stopped, its statements before this one applied: {message} (the \
                 slots kept moving for {MOVED_RETRY_FOR:?})"
            ))
        }
        other => other,
    }
}

/// Whether `error` is a group's refusal of a request routed by an older slot map.
pub fn is_moved(error: &ServiceError) -> bool {
    matches!(error, ServiceError::Unavailable(message) if message.starts_with(ownership::MOVED))
}

/// Runs `work` with the database's catalog entry, again with a fresher one (the catalog
/// caught up with its leader) each time a group refuses it as routed by an older slot map,
/// for up to [`MOVED_RETRY_FOR`]. `work` must apply nothing when it fails so.
pub async fn retry_moved<T, F, Fut>(
    router: &Router,
    database: &std::sync::Arc<DatabaseEntry>,
    mut work: F,
) -> Result<T, ServiceError>
where
    F: FnMut(std::sync::Arc<DatabaseEntry>) -> Fut,
    Fut: Future<Output = Result<T, ServiceError>>,
{
    let until = Instant::now() + MOVED_RETRY_FOR;
    let mut backoff = MOVED_BACKOFF;
    let mut entry = database.clone();
    loop {
        match work(entry.clone()).await {
            Err(error) if is_moved(&error) && Instant::now() < until => {
                crate::metrics::metrics().router_moved_retries.inc();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MOVED_BACKOFF_MAX);
                let view = router.databases().catch_up().await?;
                if let Some(fresh) = view.by_group(entry.group) {
                    entry = std::sync::Arc::new(fresh.clone());
                }
            }
            outcome => return outcome,
        }
    }
}
