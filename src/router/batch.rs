//! Runs one client batch on a sharded database: each statement planned and run in its tier;
//! a transaction batch's writes gathered per group and committed together (one group: an
//! ordinary transaction; several: a cross-group transaction).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::catalog::view::DatabaseEntry;
use crate::raft::types::{GroupId, RowSet, Statement, StatementBatch, StatementResult};
use crate::router::commit::{Participant, commit_across};
use crate::router::plan::{Plan, plan};
use crate::router::reads::{Direct, GroupReads};
use crate::router::schema::{Analysis, AnalyzeError, Schema};
use crate::router::tokens::{split_statements, tokenize};
use crate::router::{
    Router, ddl, functions, gather, group_request, guard, insert, merge, results_of,
};
use crate::service::{
    RequestKind, ServiceError, ServiceRequest, ServiceResponse, WriteConcernError,
};
use crate::types::Params;
use crate::types::value::SqlValue;

/// The first write-concern miss a group reported while a client batch ran (a write that
/// committed but was not applied on as many members as asked): said back to the client as an
/// unsharded database says it.
#[derive(Debug, Default)]
pub struct ConcernMisses(std::sync::Mutex<Option<WriteConcernError>>);

impl ConcernMisses {
    fn note(&self, response: &ServiceResponse) {
        self.note_error(response.write_concern_error.clone());
    }

    pub(crate) fn note_error(&self, error: Option<WriteConcernError>) {
        if let (Some(error), Ok(mut first)) = (error, self.0.lock()) {
            first.get_or_insert(error);
        }
    }

    /// The first miss noted, if any.
    pub fn into_first(self) -> Option<WriteConcernError> {
        self.0.into_inner().ok().flatten()
    }
}

/// A statement ready to run: its plan, and what it was planned against.
pub(crate) struct Planned {
    pub plan: Plan,
    pub schema: Arc<Schema>,
    pub analysis: Arc<Analysis>,
}

/// Runs `batch` on `database`.
pub async fn run(
    router: &Router,
    database: &Arc<DatabaseEntry>,
    request: &ServiceRequest,
    batch: &StatementBatch,
    misses: &ConcernMisses,
) -> Result<Vec<StatementResult>, ServiceError> {
    if batch.transaction && batch.statements.len() > 1 {
        return guard::retry_moved(router, database, |database| async move {
            transaction(router, &database, request, batch, misses).await
        })
        .await;
    }
    let mut database = database.clone();
    let mut results = Vec::with_capacity(batch.statements.len());
    for statement in &batch.statements {
        let (result, changed) = one(router, &database, request, statement, misses).await?;
        results.push(result);
        if changed && let Some(fresh) = router.fresh_entry(database.group) {
            database = Arc::new(fresh);
        }
    }
    Ok(results)
}

/// Runs one statement in its own transaction; says whether it changed the schema or kinds.
/// Routed again when a group refuses it as routed by an older slot map (nothing applied).
async fn one(
    router: &Router,
    database: &Arc<DatabaseEntry>,
    request: &ServiceRequest,
    statement: &Statement,
    misses: &ConcernMisses,
) -> Result<(StatementResult, bool), ServiceError> {
    guard::retry_moved(router, database, |database| async move {
        one_routed(router, &database, request, statement, misses).await
    })
    .await
}

/// [`one`], routed by `database`'s slot map.
async fn one_routed(
    router: &Router,
    database: &DatabaseEntry,
    request: &ServiceRequest,
    statement: &Statement,
    misses: &ConcernMisses,
) -> Result<(StatementResult, bool), ServiceError> {
    if statement.sql.contains(';')
        && let Some(pieces) = split_statements(&statement.sql)
        && pieces.len() > 1
    {
        return Box::pin(script(router, database, request, statement, pieces, misses)).await;
    }
    match functions::recognize(statement) {
        Ok(Some((call, column))) => {
            let result = functions::run(router, database, request, call, column).await?;
            return Ok((result, true));
        }
        Ok(None) => {}
        Err(message) => return Ok((StatementResult::failed(message), false)),
    }
    let planned = planned(router, database, statement).await?;
    count(&planned.plan, database);
    let changed = matches!(planned.plan, Plan::Schema);
    let result = match &planned.plan {
        Plan::Refused(message) => StatementResult::failed(message.clone()),
        Plan::Single { group, write } => {
            let kind = if *write {
                RequestKind::Execute
            } else {
                RequestKind::Query
            };
            let response = router
                .send(
                    database,
                    *group,
                    group_request(request, kind, vec![statement.clone()], false),
                )
                .await?;
            misses.note(&response);
            results_of(response, 1).remove(0)
        }
        Plan::Scatter { .. } | Plan::Gather { .. } => {
            read_across(
                router,
                database,
                &planned,
                &Direct {
                    router,
                    database,
                    request,
                },
                statement,
            )
            .await?
        }
        Plan::Schema => {
            ddl::run(
                router,
                database,
                &planned.schema,
                request,
                statement,
                &planned.analysis,
                misses,
            )
            .await?
        }
        Plan::Insert { table } => {
            let routed = match route_insert(
                router,
                database,
                &Direct {
                    router,
                    database,
                    request,
                },
                statement,
                &planned,
                table,
            )
            .await?
            {
                Ok(routed) => routed,
                Err(message) => return Ok((StatementResult::failed(message), false)),
            };
            let last_rowid = routed.last_rowid;
            let parts: Vec<(GroupId, Vec<Statement>)> = routed.parts.into_iter().collect();
            let mut result = write_parts(router, database, request, parts, misses).await?;
            if result.error.is_none() {
                result.last_insert_id = last_rowid;
            }
            result
        }
        Plan::Broadcast { groups } => {
            let parts = groups
                .iter()
                .map(|group| (*group, vec![statement.clone()]))
                .collect();
            write_parts(router, database, request, parts, misses).await?
        }
    };
    Ok((result, changed))
}

/// A text holding several statements (a script): as one transaction, as SQLite runs it,
/// unless it changes the schema — then statement by statement, stopping at the first error.
/// Its result sums theirs.
async fn script(
    router: &Router,
    database: &DatabaseEntry,
    request: &ServiceRequest,
    statement: &Statement,
    pieces: Vec<String>,
    misses: &ConcernMisses,
) -> Result<(StatementResult, bool), ServiceError> {
    if statement.params != Params::None {
        return Ok((
            StatementResult::failed(
                "parameters cannot be bound to a string holding several statements; send them \
                 separately",
            ),
            false,
        ));
    }
    let statements: Vec<Statement> = pieces.into_iter().map(Statement::plain).collect();
    let changes_schema = statements.iter().any(|s| {
        tokenize(&s.sql)
            .and_then(|tokens| tokens.into_iter().next())
            .is_some_and(|first| first.is("create") || first.is("drop") || first.is("alter"))
    });
    if !changes_schema {
        let batch = StatementBatch::new(statements, true);
        let results = transaction(router, database, request, &batch, misses).await?;
        return Ok((sum(results.into_iter()), false));
    }
    let mut database = std::sync::Arc::new(database.clone());
    let mut results = Vec::new();
    for statement in &statements {
        let (result, changed) = one(router, &database, request, statement, misses)
            .await
            .map_err(guard::as_final)?;
        let failed = result.error.is_some();
        results.push(result);
        if failed {
            break;
        }
        if changed && let Some(fresh) = router.fresh_entry(database.group) {
            database = std::sync::Arc::new(fresh);
        }
    }
    Ok((sum(results.into_iter()), true))
}

/// Plans `statement`, reloading the schema once when it does not compile against the one
/// held (a table created through another node a moment ago).
pub(crate) async fn planned(
    router: &Router,
    database: &DatabaseEntry,
    statement: &Statement,
) -> Result<Planned, ServiceError> {
    let schema = router.schema(database, false).await?;
    let (schema, analysis) = match schema.analyze(&statement.sql) {
        Ok(analysis) => (schema, analysis),
        Err(AnalyzeError::Internal(message)) => return Err(ServiceError::Internal(message)),
        Err(AnalyzeError::Compile(_)) => {
            let fresh = router.schema(database, true).await?;
            match fresh.analyze(&statement.sql) {
                Ok(analysis) => (fresh, analysis),
                Err(AnalyzeError::Internal(message)) => {
                    return Err(ServiceError::Internal(message));
                }
                // It does not compile: the first group says why, in SQLite's words.
                Err(AnalyzeError::Compile(_)) => {
                    return Ok(Planned {
                        plan: Plan::Single {
                            group: database.group,
                            write: true,
                        },
                        schema: fresh,
                        analysis: Arc::default(),
                    });
                }
            }
        }
    };
    let plan = plan(database, &schema, statement, &analysis);
    Ok(Planned {
        plan,
        schema,
        analysis,
    })
}

/// A read of several groups: scattered and merged, or gathered.
pub(crate) async fn read_across(
    router: &Router,
    database: &DatabaseEntry,
    planned: &Planned,
    reads: &dyn GroupReads,
    statement: &Statement,
) -> Result<StatementResult, ServiceError> {
    let schema = &planned.schema;
    match &planned.plan {
        Plan::Scatter { scatter, tables } => {
            merge::run(router, database, schema, reads, scatter, tables, statement).await
        }
        Plan::Gather { tables } => {
            gather::run(router, database, schema, reads, tables, statement).await
        }
        _ => Err(ServiceError::Internal(
            "a read across groups was planned otherwise".into(),
        )),
    }
}

/// The rows of INSERT `statement` into distributed `table`, routed to their groups.
pub(crate) async fn route_insert(
    router: &Router,
    database: &DatabaseEntry,
    group_reads: &dyn GroupReads,
    statement: &Statement,
    planned: &Planned,
    table: &str,
) -> Result<Result<insert::RoutedRows, String>, ServiceError> {
    let reads = &planned.analysis.read;
    insert::route(
        router,
        database,
        &planned.schema,
        group_reads,
        table,
        statement,
        reads,
    )
    .await
}

/// Writes `parts` (statements per group) atomically: one group as an ordinary transaction,
/// several as a cross-group one. Their results summed into the statement's one result.
async fn write_parts(
    router: &Router,
    database: &DatabaseEntry,
    request: &ServiceRequest,
    parts: Vec<(GroupId, Vec<Statement>)>,
    misses: &ConcernMisses,
) -> Result<StatementResult, ServiceError> {
    let results = write_groups(router, database, request, parts, misses).await?;
    Ok(sum(results.into_iter().flatten()))
}

/// Writes statements per group atomically; each group's results in its statements' order.
async fn write_groups(
    router: &Router,
    database: &DatabaseEntry,
    request: &ServiceRequest,
    parts: Vec<(GroupId, Vec<Statement>)>,
    misses: &ConcernMisses,
) -> Result<Vec<Vec<StatementResult>>, ServiceError> {
    if parts.is_empty() {
        // Nothing to write (an INSERT … SELECT that selected no rows).
        return Ok(Vec::new());
    }
    crate::metrics::metrics()
        .router_groups_touched
        .inc_by(parts.len() as u64);
    if let [(group, statements)] = parts.as_slice() {
        let expected = statements.len();
        let response = router
            .send(
                database,
                *group,
                group_request(request, RequestKind::Execute, statements.clone(), true),
            )
            .await?;
        misses.note(&response);
        return Ok(vec![results_of(response, expected)]);
    }
    let participants = parts
        .into_iter()
        .map(|(group, statements)| Participant {
            group,
            batch: StatementBatch::new(statements, true),
        })
        .collect();
    let mut outcome = commit_across(
        router.databases(),
        guard::participants(database, participants),
        request.write_concern,
        request.timeout,
    )
    .await?;
    guard::unguard_outcome(&mut outcome)?;
    misses.note_error(outcome.write_concern_error);
    Ok(outcome.results)
}

/// Counts a statement sent unchanged to one group.
pub(crate) fn count_one_group() {
    let metrics = crate::metrics::metrics();
    metrics.router_single.inc();
    metrics.router_groups_touched.inc();
}

/// One result for several: counts summed, the last rowid, the first error (then no counts).
pub(crate) fn sum(results: impl Iterator<Item = StatementResult>) -> StatementResult {
    let mut total = StatementResult::default();
    for result in results {
        if total.error.is_none() && result.error.is_some() {
            total.error = result.error;
        }
        total.rows_affected += result.rows_affected;
        if result.last_insert_id != 0 {
            total.last_insert_id = result.last_insert_id;
        }
        total.time_s = total.time_s.max(result.time_s);
        if result.rows.is_some() {
            total.rows = result.rows;
        }
    }
    if total.error.is_some() {
        total.rows_affected = 0;
        total.last_insert_id = 0;
    }
    total
}

/// A transaction batch: reads run as they come (on the data before the batch's writes),
/// writes are collected per group and committed together at the end.
async fn transaction(
    router: &Router,
    database: &DatabaseEntry,
    request: &ServiceRequest,
    batch: &StatementBatch,
    misses: &ConcernMisses,
) -> Result<Vec<StatementResult>, ServiceError> {
    let mut results: Vec<Option<StatementResult>> = vec![None; batch.statements.len()];
    // Group → its statements; statement index → (group, position) of each of its parts.
    let mut per_group: BTreeMap<GroupId, Vec<Statement>> = BTreeMap::new();
    let mut placed: BTreeMap<usize, Vec<(GroupId, usize)>> = BTreeMap::new();
    let mut last_rowids: BTreeMap<usize, i64> = BTreeMap::new();
    let mut place = |index: usize, group: GroupId, statement: Statement| {
        let statements = per_group.entry(group).or_default();
        placed
            .entry(index)
            .or_default()
            .push((group, statements.len()));
        statements.push(statement);
    };
    for (index, statement) in batch.statements.iter().enumerate() {
        if split_statements(&statement.sql).is_some_and(|pieces| pieces.len() > 1) {
            results[index] = Some(StatementResult::failed(
                "a text holding several statements cannot be one statement of a transaction \
                 batch on a sharded database: send them as statements of the batch",
            ));
            return Ok(finish_failed(results, index));
        }
        if functions::recognize(statement).ok().flatten().is_some() {
            results[index] = Some(StatementResult::failed(
                "Shoal's functions run on their own, not inside a transaction batch",
            ));
            return Ok(finish_failed(results, index));
        }
        let planned = planned(router, database, statement).await?;
        count(&planned.plan, database);
        match &planned.plan {
            Plan::Refused(message) => {
                results[index] = Some(StatementResult::failed(message.clone()));
                return Ok(finish_failed(results, index));
            }
            Plan::Schema => {
                results[index] = Some(StatementResult::failed(
                    "a schema change on a sharded database runs on its own, not inside a \
                     transaction batch",
                ));
                return Ok(finish_failed(results, index));
            }
            Plan::Single { group, write: true } => place(index, *group, statement.clone()),
            Plan::Single {
                group,
                write: false,
            } => {
                let response = router
                    .send(
                        database,
                        *group,
                        group_request(request, RequestKind::Query, vec![statement.clone()], false),
                    )
                    .await?;
                results[index] = Some(results_of(response, 1).remove(0));
            }
            Plan::Scatter { .. } | Plan::Gather { .. } => {
                let result = read_across(
                    router,
                    database,
                    &planned,
                    &Direct {
                        router,
                        database,
                        request,
                    },
                    statement,
                )
                .await?;
                results[index] = Some(result);
            }
            Plan::Broadcast { groups } => {
                for group in groups {
                    place(index, *group, statement.clone());
                }
            }
            Plan::Insert { table } => {
                match route_insert(
                    router,
                    database,
                    &Direct {
                        router,
                        database,
                        request,
                    },
                    statement,
                    &planned,
                    table,
                )
                .await?
                {
                    Ok(routed) => {
                        last_rowids.insert(index, routed.last_rowid);
                        for (group, statements) in routed.parts {
                            for part in statements {
                                place(index, group, part);
                            }
                        }
                    }
                    Err(message) => {
                        results[index] = Some(StatementResult::failed(message));
                        return Ok(finish_failed(results, index));
                    }
                }
            }
        }
    }
    let groups: Vec<GroupId> = per_group.keys().copied().collect();
    let written = write_groups(
        router,
        database,
        request,
        per_group.into_iter().collect(),
        misses,
    )
    .await?;
    let by_group: BTreeMap<GroupId, Vec<StatementResult>> =
        groups.into_iter().zip(written).collect();
    let mut failed_at = None;
    for (index, parts) in placed {
        let part_results = parts.iter().map(|(group, at)| {
            by_group
                .get(group)
                .and_then(|results| results.get(*at))
                .cloned()
                .unwrap_or_default()
        });
        let mut result = sum(part_results);
        if let Some(rowid) = last_rowids.get(&index)
            && result.error.is_none()
        {
            result.last_insert_id = *rowid;
        }
        if result.error.is_some() && failed_at.is_none_or(|at| index < at) {
            failed_at = Some(index);
        }
        results[index] = Some(result);
    }
    match failed_at {
        Some(at) => Ok(finish_failed(results, at)),
        None => Ok(results.into_iter().map(Option::unwrap_or_default).collect()),
    }
}

/// The results of a transaction batch that failed at statement `at`: those up to it, with
/// no counts (nothing was applied).
fn finish_failed(results: Vec<Option<StatementResult>>, at: usize) -> Vec<StatementResult> {
    results
        .into_iter()
        .take(at + 1)
        .map(|result| {
            let mut result = result.unwrap_or_default();
            result.rows_affected = 0;
            result.last_insert_id = 0;
            result
        })
        .collect()
}

pub(crate) fn count(plan: &Plan, database: &DatabaseEntry) {
    let metrics = crate::metrics::metrics();
    match plan {
        Plan::Single { .. } => count_one_group(),
        Plan::Scatter { .. } => {
            metrics.router_scatter.inc();
            metrics
                .router_groups_touched
                .inc_by(database.groups.len() as u64);
        }
        Plan::Gather { .. } => {
            metrics.router_gather.inc();
            metrics
                .router_groups_touched
                .inc_by(database.groups.len() as u64);
        }
        Plan::Insert { .. } | Plan::Broadcast { .. } | Plan::Schema => {
            metrics.router_scatter.inc();
        }
        Plan::Refused(_) => {}
    }
}

/// `shoal_plan(sql)`: one row per step — `step`, `tier`, `groups` (how many groups it
/// touches) and `sql` (what each of them runs).
pub async fn explain(
    router: &Router,
    database: &DatabaseEntry,
    sql: &str,
) -> Result<StatementResult, ServiceError> {
    let statement = Statement::plain(sql);
    let planned = planned(router, database, &statement).await?;
    let row = |step: usize, tier: &str, groups: usize, sql: String| {
        vec![
            SqlValue::Integer(step as i64),
            SqlValue::Text(tier.into()),
            SqlValue::Integer(groups as i64),
            SqlValue::Text(sql),
        ]
    };
    let tier = planned.plan.tier();
    let values = match &planned.plan {
        Plan::Single { .. } => vec![row(1, tier, 1, sql.to_string())],
        Plan::Scatter { scatter, .. } => vec![
            row(1, tier, database.groups.len(), scatter.shard_sql.clone()),
            row(2, tier, 0, scatter.merge_sql.clone()),
        ],
        Plan::Gather { tables } => {
            let mut rows: Vec<Vec<SqlValue>> = gather::steps(database, &planned.schema, tables)
                .into_iter()
                .enumerate()
                .map(|(at, (groups, fetch))| row(at + 1, tier, groups, fetch))
                .collect();
            rows.push(row(rows.len() + 1, tier, 0, sql.to_string()));
            rows
        }
        Plan::Insert { .. } | Plan::Schema => {
            vec![row(1, tier, database.groups.len(), sql.to_string())]
        }
        Plan::Broadcast { groups } => {
            let tier = if groups.len() == 1 { "single" } else { tier };
            vec![row(1, tier, groups.len(), sql.to_string())]
        }
        Plan::Refused(message) => vec![row(1, tier, 0, message.clone())],
    };
    Ok(StatementResult {
        rows: Some(RowSet {
            columns: ["step", "tier", "groups", "sql"].map(String::from).to_vec(),
            types: ["integer", "text", "integer", "text"]
                .map(String::from)
                .to_vec(),
            values,
        }),
        ..Default::default()
    })
}
