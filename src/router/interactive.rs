//! Interactive transactions on a sharded database (BEGIN … COMMIT over several round trips,
//! from the PostgreSQL endpoint). Each statement is planned as in autocommit, and its parts
//! run in the groups they touch, each rehearsed there after the transaction's earlier
//! statements in that group and rolled back — as `pgwire::transaction` does for one group —
//! so the transaction reads its own writes everywhere. A group whose earlier results come
//! out differently (or whose leader changed) means another transaction got in between: a
//! serialization failure. COMMIT sends each group its statements pinned to the results the
//! client saw: one group as one log entry, several through two-phase commit, where every
//! group checks its results at prepare and holds them until the decision — so all groups
//! apply exactly what the client saw, or none does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures_util::future::join_all;

use crate::catalog::view::DatabaseEntry;
use crate::raft::types::{GroupId, Statement, StatementBatch, StatementResult, results_digest};
use crate::router::batch::{count, planned, read_across, route_insert, sum};
use crate::router::commit::{PARTICIPANTS_MAX, Participant, commit_across};
use crate::router::plan::Plan;
use crate::router::reads::GroupReads;
use crate::router::tokens::split_statements;
use crate::router::{Router, functions, group_request, guard};
use crate::service::{RequestKind, ServiceError, ServiceRequest, ServiceResponse};
use crate::types::SERIALIZATION_FAILURE;
use crate::types::routed::{GroupShare, Rehearsed, RoutedTransaction};

/// Runs `statement` inside `transaction`; on success its parts join the transaction's
/// shares, on failure (or conflict) the transaction is left as it was.
pub async fn rehearse(
    router: &Router,
    database: &Arc<DatabaseEntry>,
    transaction: &mut RoutedTransaction,
    statement: Statement,
    request: &ServiceRequest,
) -> Result<Rehearsed, ServiceError> {
    if split_statements(&statement.sql).is_some_and(|pieces| pieces.len() > 1) {
        return Ok(Rehearsed::Ran(StatementResult::failed(
            "a text holding several statements cannot run inside a transaction on a sharded \
             database: send them one by one",
        )));
    }
    if functions::recognize(&statement).ok().flatten().is_some() {
        return Ok(Rehearsed::Ran(StatementResult::failed(
            "Shoal's functions (shoal_distribute, shoal_reference, shoal_plan) run on their \
             own, not inside a transaction",
        )));
    }
    let planned = planned(router, database, &statement).await?;
    count(&planned.plan, database);
    let rehearsal = Rehearsal {
        router,
        database,
        request,
        transaction,
        new: Mutex::new(BTreeMap::new()),
        conflict: Mutex::new(None),
    };
    let outcome = match &planned.plan {
        Plan::Refused(message) => Ok(StatementResult::failed(message.clone())),
        Plan::Schema => Ok(StatementResult::failed(
            "a schema change on a sharded database runs on its own, not inside a transaction: \
             commit (or roll back) first",
        )),
        Plan::Single { group, write } => rehearsal
            .parts(vec![(*group, vec![statement.clone()])], *write)
            .await
            .map(|results| sum(results.into_iter())),
        Plan::Broadcast { groups } => {
            let parts = groups
                .iter()
                .map(|group| (*group, vec![statement.clone()]))
                .collect();
            rehearsal
                .parts(parts, true)
                .await
                .map(|results| sum(results.into_iter()))
        }
        Plan::Insert { table } => {
            match route_insert(router, database, &rehearsal, &statement, &planned, table).await {
                Ok(Ok(routed)) => {
                    let parts = routed.parts.into_iter().collect();
                    rehearsal.parts(parts, true).await.map(|results| {
                        let mut result = sum(results.into_iter());
                        if result.error.is_none() {
                            result.last_insert_id = routed.last_rowid;
                        }
                        result
                    })
                }
                Ok(Err(message)) => Ok(StatementResult::failed(message)),
                Err(error) => Err(error),
            }
        }
        Plan::Scatter { .. } | Plan::Gather { .. } => {
            read_across(router, database, &planned, &rehearsal, &statement).await
        }
    };
    if let Some(reason) = rehearsal.conflict() {
        return Ok(Rehearsed::Conflict(reason));
    }
    let result = outcome?;
    if result.error.is_none() {
        let new = rehearsal.into_new();
        for (group, part) in new {
            let share = transaction.shares.entry(group).or_default();
            share.statements.extend(part.statements);
            share.seen.extend(part.seen);
            share.term = share.term.or(part.term);
            share.writes |= part.writes;
            share.owner_version = share.owner_version.or(part.owner_version);
        }
    }
    Ok(Rehearsed::Ran(result))
}

/// Commits `transaction`: nothing to do when it wrote nothing (each group's reads were
/// checked together at its last rehearsal), one group's statements as one pinned entry,
/// several groups' through two-phase commit. A group whose results would differ from what
/// the client saw refuses, and nothing is applied anywhere.
pub async fn commit(
    router: &Router,
    transaction: RoutedTransaction,
    request: &ServiceRequest,
) -> Result<ServiceResponse, ServiceError> {
    let answered = |results: Vec<StatementResult>| ServiceResponse {
        results,
        served_by: router.databases().host().node_id(),
        ..Default::default()
    };
    if !transaction.writes() {
        return Ok(answered(Vec::new()));
    }
    if transaction.shares.len() > PARTICIPANTS_MAX {
        return Err(ServiceError::BadRequest(format!(
            "a transaction may touch at most {PARTICIPANTS_MAX} groups; this one touched {}",
            transaction.shares.len()
        )));
    }
    let batch_of = |share: &GroupShare, term: bool| {
        let mut batch = StatementBatch::new(share.statements.clone(), true);
        let mut pinned = transaction.pinned(Some(share));
        if !term {
            // A prepare is not an entry of the term the client saw: its results decide.
            pinned.term = None;
        }
        batch.pinned = Some(pinned);
        batch
    };
    let moved = |group: GroupId| {
        answered(vec![StatementResult::failed(format!(
            "{SERIALIZATION_FAILURE}: slots of group {group} moved to another group during              the transaction; it was rolled back and nothing was applied, retry it"
        ))])
    };
    if let [(group, share)] = transaction.shares.iter().collect::<Vec<_>>().as_slice() {
        let mut execute = group_request(request, RequestKind::Execute, Vec::new(), true);
        execute.batches = vec![batch_of(share, true)];
        let version = share.owner_version.unwrap_or_default();
        let response = match router.send_at(**group, version, execute).await {
            Err(error) if guard::is_moved(&error) => return Ok(moved(**group)),
            outcome => outcome?,
        };
        return Ok(ServiceResponse {
            raft_index: None,
            ..response
        });
    }
    // Groups the transaction only read take part too: their prepare checks that what it read
    // still holds, and keeps it so until the decision.
    let participants = transaction
        .shares
        .iter()
        .map(|(group, share)| {
            let mut batch = batch_of(share, false);
            let version = share.owner_version.unwrap_or_default();
            batch.statements = guard::guarded(std::mem::take(&mut batch.statements), version);
            Participant {
                group: *group,
                batch,
            }
        })
        .collect();
    let mut outcome = commit_across(
        router.databases(),
        participants,
        request.write_concern,
        request.timeout,
    )
    .await?;
    if let Err(error) = guard::unguard_outcome(&mut outcome) {
        if guard::is_moved(&error) {
            let _ = router.databases().catch_up().await;
            return Ok(moved(
                transaction
                    .shares
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or_default(),
            ));
        }
        return Err(error);
    }
    let failure = outcome
        .results
        .into_iter()
        .flatten()
        .find(|result| result.error.is_some());
    match (outcome.committed, failure) {
        (true, _) => Ok(ServiceResponse {
            write_concern_error: outcome.write_concern_error,
            ..answered(Vec::new())
        }),
        (false, Some(failure)) => Ok(answered(vec![failure])),
        (false, None) => Ok(answered(vec![StatementResult::failed(
            "the transaction was refused by one of its groups; nothing was applied, retry it",
        )])),
    }
}

/// One statement's run inside a transaction: the parts it ran in each group so far.
struct Rehearsal<'a> {
    router: &'a Router,
    database: &'a DatabaseEntry,
    request: &'a ServiceRequest,
    transaction: &'a RoutedTransaction,
    new: Mutex<BTreeMap<GroupId, GroupShare>>,
    conflict: Mutex<Option<String>>,
}

impl Rehearsal<'_> {
    /// Runs `parts` (statements per group), the groups in parallel; their results in order.
    async fn parts(
        &self,
        parts: Vec<(GroupId, Vec<Statement>)>,
        write: bool,
    ) -> Result<Vec<StatementResult>, ServiceError> {
        let answers = join_all(
            parts
                .into_iter()
                .map(|(group, statements)| self.run_in(group, statements, write)),
        )
        .await;
        let mut results = Vec::new();
        for answer in answers {
            results.extend(answer?);
        }
        Ok(results)
    }

    /// Rehearses `statements` in `group` after everything the transaction (and this
    /// statement) ran there: their results, or the failing statement's error.
    async fn run_in(
        &self,
        group: GroupId,
        statements: Vec<Statement>,
        write: bool,
    ) -> Result<Vec<StatementResult>, ServiceError> {
        let empty = GroupShare::default();
        let share = self.transaction.shares.get(&group).unwrap_or(&empty);
        let (mut batch_statements, earlier_seen, term, version) = {
            let new = self.lock_new()?;
            let pending = new.get(&group).unwrap_or(&empty);
            let mut batch: Vec<Statement> = share.statements.clone();
            batch.extend(pending.statements.iter().cloned());
            let mut seen = share.seen.clone();
            seen.extend(pending.seen.iter().cloned());
            let version = share
                .owner_version
                .or(pending.owner_version)
                .unwrap_or_else(|| self.database.slots.owner_version(group));
            (batch, seen, share.term.or(pending.term), version)
        };
        let count = statements.len();
        batch_statements.extend(statements.iter().cloned());
        let mut rehearse = group_request(self.request, RequestKind::Rehearse, Vec::new(), true);
        let mut batch = StatementBatch::new(batch_statements, true);
        batch.pinned = Some(self.transaction.pinned(None));
        rehearse.batches = vec![batch];
        let response = match self.router.send_at(group, version, rehearse).await {
            Err(error) if guard::is_moved(&error) => {
                // The next statement (of the transaction started again) routes by the map
                // the catalog has now.
                let _ = self.router.databases().catch_up().await;
                return Err(self.conflicted(format!(
                    "slots of group {group} moved to another group during the transaction"
                )));
            }
            outcome => outcome?,
        };
        if term.is_some() && response.term != term {
            return Err(self.conflicted(format!(
                "the leader of group {group} changed during the transaction"
            )));
        }
        let mut results = response.results;
        let before = earlier_seen.len();
        let complete = results.len() == before + count;
        if complete && results[before..].iter().any(|r| r.error.is_some()) {
            // This statement fails here; the transaction stays as it was.
            return Ok(results.split_off(before));
        }
        if !complete || results_digest(&results[..before]) != results_digest(&earlier_seen) {
            return Err(self.conflicted(format!(
                "data the transaction read or wrote in group {group} was changed by another \
                 transaction"
            )));
        }
        let mine = results.split_off(before);
        let mut new = self.lock_new()?;
        let pending = new.entry(group).or_default();
        pending.statements.extend(statements);
        pending.seen.extend(mine.iter().cloned());
        pending.term = pending.term.or(response.term);
        pending.writes |= write;
        pending.owner_version = Some(version);
        Ok(mine)
    }

    fn lock_new(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, BTreeMap<GroupId, GroupShare>>, ServiceError> {
        self.new.lock().map_err(|_| {
            ServiceError::Internal("a transaction's rehearsal lock is poisoned".into())
        })
    }

    /// Notes why the transaction cannot commit; the error stops the statement.
    fn conflicted(&self, reason: String) -> ServiceError {
        if let Ok(mut conflict) = self.conflict.lock() {
            conflict.get_or_insert_with(|| reason.clone());
        }
        ServiceError::Unavailable(reason)
    }

    fn conflict(&self) -> Option<String> {
        self.conflict.lock().ok().and_then(|c| c.clone())
    }

    fn into_new(self) -> BTreeMap<GroupId, GroupShare> {
        self.new
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl GroupReads for Rehearsal<'_> {
    async fn read(
        &self,
        group: GroupId,
        statement: Statement,
    ) -> Result<StatementResult, ServiceError> {
        let results = self.run_in(group, vec![statement], false).await?;
        Ok(results.into_iter().next().unwrap_or_default())
    }
}
