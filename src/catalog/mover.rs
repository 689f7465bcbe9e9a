//! The mover: runs the resharding steps the catalog records (`catalog::reshard`), one at a
//! time, on the catalog's leader. Each step is written to be run again from its start after
//! any crash — of the mover's node, a source or target group's leader — and end the same:
//! every change to a group is a `Reown` step through its log that applies only at the owner
//! version it expects (`db::ownership`), and the catalog records the step done, with the new
//! map, in one transaction.
//!
//! A move of slots `[first, end)` from S to T at version v:
//! 1. *freeze* S: its owner version becomes v, so every request routed by the catalog's
//!    current map is refused there (routers wait and route again) — the critical section
//!    starts, S's rows can no longer change;
//! 2. copy: read the range's rows of every distributed table from S, and apply them in T
//!    with T's owner version moving to v (skipped when T is at v already);
//! 3. delete the range's rows from S (at v: idempotent);
//! 4. record the new map (S and T at v) in the catalog: routers route by it from then on —
//!    the critical section ends.
//!
//! No reader sees a row twice or misses one: a request routed by the old map is refused by
//! S from step 1 and by T from step 2, one routed by the new map cannot exist before step 4,
//! and each group's guard compares with the version its own snapshot shows.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::catalog::databases::Databases;
use crate::catalog::reshard::{StepKind, map_statements};
use crate::catalog::view::{DatabaseEntry, SlotMoveRow, TableKind, positional};
use crate::db::ownership::{self, STORED_SLOT_FUNCTION};
use crate::raft::types::{GroupId, Params, RowSet, Statement, StatementBatch, StatementResult};
use crate::service::{
    ReadConsistency, ReadLevel, RequestKind, ServiceError, ServiceRequest, WriteConcern,
};
use crate::shard::slot::SLOTS;
use crate::types::shard::{ShardStep, StepOutcome};
use crate::types::value::SqlValue;

/// How often the mover looks for work.
const TICK: Duration = Duration::from_millis(200);
/// The pause between two steps (resharding yields to the workload).
const STEP_GAP: Duration = Duration::from_millis(20);
/// The pause after a step failed before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long one request of a step may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a freeze waits for a prepared cross-shard transaction to be decided.
const BUSY_WAIT_MAX: Duration = Duration::from_secs(30);
/// The most row bytes one move copies; a range holding more is split in two (a check inside
/// the critical section, in case the range grew after it was sized).
const MOVE_BYTES_MAX: usize = 32 * 1024 * 1024;
/// The rows and bytes a move is sized to before its critical section: a range holding more
/// is split first, so the pause it causes stays about the same however large the database
/// (one slot holding more still moves whole).
const PAUSE_ROWS: u64 = 2_048;
const PAUSE_BYTES: u64 = 2 * 1024 * 1024;
/// Values bound by one INSERT of copied rows (SQLite allows 32766).
const VALUES_PER_INSERT_MAX: usize = 30_000;

/// Runs the mover until shutdown. Each database's steps run in order; a database whose step
/// failed waits [`RETRY_AFTER`] before it is tried again, while other databases' steps go on.
pub async fn mover_loop(databases: Arc<Databases>, mut shutdown: watch::Receiver<bool>) {
    // Databases (first groups) whose step failed, and when to try them again.
    let mut backing_off: HashMap<GroupId, Instant> = HashMap::new();
    loop {
        let stopping = async {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        tokio::select! {
            () = stopping => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        while databases.catalog().is_ok_and(|c| c.group.leads()) {
            let view = databases.view();
            let now = Instant::now();
            backing_off.retain(|_, until| *until > now);
            // The steps are in order: the first of a database not backing off is its next.
            let Some(step) = view
                .slot_moves
                .iter()
                .find(|step| !backing_off.contains_key(&step.database))
                .cloned()
            else {
                break;
            };
            let started = Instant::now();
            match run_step(&databases, &step).await {
                Ok(()) => {
                    crate::metrics::metrics().reshard_steps.inc();
                    tracing::info!(step = step.id, kind = %step.kind, from = step.from,
                        to = step.to, slots = step.end - step.first,
                        took_ms = started.elapsed().as_millis() as u64, "resharding step done");
                    let _ = databases.refresh().await;
                    tokio::time::sleep(STEP_GAP).await;
                }
                Err(message) => {
                    tracing::warn!(step = step.id, kind = %step.kind, %message,
                        "resharding step failed; it runs again shortly");
                    backing_off.insert(step.database, Instant::now() + RETRY_AFTER);
                    let _ = databases.catch_up().await;
                }
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }
}

/// Runs `step` from its start.
async fn run_step(databases: &Databases, step: &SlotMoveRow) -> Result<(), String> {
    let view = databases.catch_up().await.map_err(|e| e.to_string())?;
    let Some(entry) = view.by_group(step.database).cloned() else {
        // The database was dropped: its steps go with it.
        return record(
            databases,
            vec![positional(
                "DELETE FROM slot_moves WHERE database_group = ?1",
                vec![SqlValue::Integer(step.database as i64)],
            )],
        )
        .await;
    };
    let version = match step.version {
        Some(version) => version,
        None => start(databases, &entry, step).await?,
    };
    match StepKind::parse(&step.kind) {
        Some(StepKind::Join) => join(databases, &entry, step, version).await,
        Some(StepKind::Move) => move_slots(databases, &entry, step, version).await,
        Some(StepKind::Leave) => leave(databases, &entry, step, version).await,
        None => Err(format!("unknown resharding step kind {:?}", step.kind)),
    }
}

/// Chooses the step's owner version (above every version the database's groups were given)
/// and records it, so a run after a crash uses the same.
async fn start(
    databases: &Databases,
    entry: &DatabaseEntry,
    step: &SlotMoveRow,
) -> Result<u64, String> {
    let version = entry.slots.versions().values().max().copied().unwrap_or(0) + 1;
    record(
        databases,
        vec![positional(
            "UPDATE slot_moves SET version = ?2 WHERE move_id = ?1 AND version IS NULL",
            vec![
                SqlValue::Integer(step.id as i64),
                SqlValue::Integer(version as i64),
            ],
        )],
    )
    .await?;
    let view = databases.catch_up().await.map_err(|e| e.to_string())?;
    view.slot_moves
        .iter()
        .find(|s| s.id == step.id)
        .and_then(|s| s.version)
        .ok_or_else(|| format!("step {} has no version after starting it", step.id))
}

/// A group added by resharding gets the first group's schema and reference rows.
async fn join(
    databases: &Databases,
    entry: &DatabaseEntry,
    step: &SlotMoveRow,
    version: u64,
) -> Result<(), String> {
    let (source, joining) = (step.from, step.to);
    // Frozen, the first group takes no schema change nor reference write meanwhile.
    freeze(
        databases,
        source,
        entry.slots.owner_version(source),
        version,
    )
    .await?;
    if !at_version(databases, joining, version).await? {
        let mut batch = schema_of(databases, source, version).await?;
        // (As the catalog lists them now: the first group is frozen, so none is added.)
        let view = databases.catch_up().await.map_err(|e| e.to_string())?;
        let now = view
            .by_group(entry.group)
            .ok_or_else(|| format!("database {:?} was dropped", entry.name))?;
        let references: Vec<(String, Option<String>)> = now
            .tables
            .iter()
            .filter(|(_, kind)| matches!(kind, TableKind::Reference))
            .map(|(table, _)| (table.clone(), None))
            .collect();
        let shapes = shapes_of(databases, source, Some(version), references).await?;
        let (rows, _) = copied_rows(databases, source, version, &shapes, |_| String::new()).await?;
        batch.extend(rows);
        reown(databases, joining, 0, version, batch).await?;
    }
    let database = SqlValue::Integer(entry.group as i64);
    let mut statements = versions_statements(&[source, joining], version);
    statements.push(positional(
        "DELETE FROM joining_groups WHERE group_id = ?1",
        vec![SqlValue::Integer(joining as i64)],
    ));
    statements.extend(finish_statements(&database, step.id, version));
    record(databases, statements).await
}

/// Slots `[first, end)` move from `from` to `to` (see the module's description).
async fn move_slots(
    databases: &Databases,
    entry: &DatabaseEntry,
    step: &SlotMoveRow,
    version: u64,
) -> Result<(), String> {
    let (from, to) = (step.from, step.to);
    // The tables' columns are read before the critical section (a schema change meanwhile
    // makes the copy fail, and the step run again).
    let mut shapes = table_shapes(databases, entry, from).await?;
    let sized = sized_end(databases, &shapes, from, step.first, step.end).await?;
    if sized < step.end {
        split(databases, step, version, sized, step.end).await?;
    }
    let paused = Instant::now();
    freeze(databases, from, entry.slots.owner_version(from), version).await?;
    // Frozen, the source takes no rows of a table made distributed from now on; one made so
    // since the step started (its kind is recorded before it exists) moves too.
    let tables = distributed_now(databases, entry).await?;
    let names = |shapes: &[TableShape]| shapes.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    if names(&shapes) != tables.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>() {
        let keyed = tables
            .iter()
            .map(|(t, k)| (t.clone(), Some(k.clone())))
            .collect();
        shapes = shapes_of(databases, from, Some(version), keyed).await?;
    }
    let mut end = sized;
    let batch = loop {
        let (batch, bytes) = range_rows(databases, &shapes, from, version, step.first, end).await?;
        if bytes <= MOVE_BYTES_MAX || end - step.first <= 1 {
            break batch;
        }
        // Too much for one critical section: the rest moves in a step of its own.
        let middle = step.first + (end - step.first) / 2;
        split(databases, step, version, middle, end).await?;
        end = middle;
    };
    // (A target at `version` already took the rows in a run before a crash: `reown` says so.)
    reown(databases, to, entry.slots.owner_version(to), version, batch).await?;
    let deletes = tables
        .iter()
        .map(|(table, key)| {
            Statement::plain(format!(
                "DELETE FROM {} WHERE {STORED_SLOT_FUNCTION}({key}) >= {} \
                 AND {STORED_SLOT_FUNCTION}({key}) < {end}",
                quote(table),
                step.first
            ))
        })
        .collect();
    reown(databases, from, version, version, deletes).await?;
    let map = entry.slots.with_move(step.first, end, to, version);
    let database = SqlValue::Integer(entry.group as i64);
    let mut statements = map_statements(entry.group, &map);
    statements.extend(versions_statements(&[from, to], version));
    statements.extend(finish_statements(&database, step.id, version));
    record(databases, statements).await?;
    let pause = paused.elapsed();
    crate::metrics::metrics()
        .reshard_pause
        .observe(pause.as_secs_f64());
    tracing::info!(
        from,
        to,
        first = step.first,
        end,
        pause_ms = pause.as_millis() as u64,
        "slots moved"
    );
    Ok(())
}

/// Where a move of slots from `first` (up to `end`) out of `group` ends so that it copies
/// about [`PAUSE_ROWS`] rows or [`PAUSE_BYTES`] bytes at most: the range's rows counted per
/// slot (outside the critical section, so the count is an estimate), at least one slot.
async fn sized_end(
    databases: &Databases,
    shapes: &[TableShape],
    group: GroupId,
    first: u32,
    end: u32,
) -> Result<u32, String> {
    if end - first <= 1 {
        return Ok(end);
    }
    let per_slot = weights(databases, group, shapes, 1, first..end, true).await?;
    Ok(end_within_pause(&per_slot, end))
}

/// The rows (and, with `bytes`, the bytes by [`row_bytes`]) of the distributed tables of
/// `shapes` in `group` whose key's slot is in `slots`, per part of `unit` slots (a slot's
/// part is the slot divided by `unit`): counted by the group, as it stands (unguarded).
pub(crate) async fn weights(
    databases: &Databases,
    group: GroupId,
    shapes: &[TableShape],
    unit: u32,
    slots: std::ops::Range<u32>,
    bytes: bool,
) -> Result<BTreeMap<u32, (u64, u64)>, String> {
    let keyed: Vec<(&TableShape, &String)> = shapes
        .iter()
        .filter_map(|shape| Some((shape, shape.key.as_ref()?)))
        .collect();
    let mut parts: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    if keyed.is_empty() {
        return Ok(parts);
    }
    let statements = keyed
        .iter()
        .map(|(shape, key)| {
            let slot = format!("{STORED_SLOT_FUNCTION}({key})");
            // Every slot: no filter to evaluate the key's slot for again.
            let within = if slots == (0..SLOTS) {
                String::new()
            } else {
                format!("WHERE {slot} >= {} AND {slot} < {}", slots.start, slots.end)
            };
            let size = if bytes {
                row_bytes(&shape.columns)
            } else {
                "0".into()
            };
            Statement::plain(format!(
                "SELECT {slot} / {unit}, count(*), sum({size}) FROM {} {within} GROUP BY 1",
                quote(&shape.name)
            ))
        })
        .collect();
    let results = read_unguarded(databases, group, statements).await?;
    for at in 0..keyed.len() {
        for row in rows_of(&results, at) {
            if let [
                SqlValue::Integer(part),
                SqlValue::Integer(rows),
                SqlValue::Integer(size),
            ] = row.as_slice()
            {
                let counted = parts.entry(*part as u32).or_default();
                counted.0 += (*rows).max(0) as u64;
                counted.1 += (*size).max(0) as u64;
            }
        }
    }
    Ok(parts)
}

/// The end of the run of slots from the first of `per_slot` (rows and bytes by slot) that
/// holds at most [`PAUSE_ROWS`] rows and [`PAUSE_BYTES`] bytes — or its first slot holding
/// any, alone — else `end`.
fn end_within_pause(per_slot: &BTreeMap<u32, (u64, u64)>, end: u32) -> u32 {
    let (mut rows, mut bytes) = (0u64, 0u64);
    for (&slot, &(slot_rows, slot_bytes)) in per_slot {
        if rows + slot_rows > PAUSE_ROWS || bytes + slot_bytes > PAUSE_BYTES {
            // The slots before this one; or this one alone when they hold nothing.
            return if rows == 0 && bytes == 0 {
                slot + 1
            } else {
                slot
            };
        }
        rows += slot_rows;
        bytes += slot_bytes;
    }
    end
}

/// The bytes of a row's values, as an SQL expression over its (quoted) columns: each value's
/// length as a blob (numbers by their text), and 8 for the rowid and the row's header.
fn row_bytes(columns: &[String]) -> String {
    let values: Vec<String> = columns
        .iter()
        .filter(|column| column.as_str() != "_rowid_")
        .map(|column| format!("coalesce(length(CAST({column} AS BLOB)), 0)"))
        .collect();
    format!("8 + {}", values.join(" + "))
}

/// A group that owns no slot any more leaves the database.
async fn leave(
    databases: &Databases,
    entry: &DatabaseEntry,
    step: &SlotMoveRow,
    version: u64,
) -> Result<(), String> {
    let group = step.from;
    if entry.slots.slots_of(group) > 0 {
        return Err(format!(
            "group {group} still owns {} slots: it leaves once they moved",
            entry.slots.slots_of(group)
        ));
    }
    // Routers still holding the older map are sent to the new one.
    freeze(databases, group, entry.slots.owner_version(group), version).await?;
    let database = SqlValue::Integer(entry.group as i64);
    let id = SqlValue::Integer(group as i64);
    let mut statements = vec![
        positional(
            "INSERT INTO dropped_groups (group_id, name, dropped_ms)
             SELECT group_id, ?2 || '#' || shard, ?3 FROM shard_groups WHERE group_id = ?1",
            vec![
                id.clone(),
                SqlValue::Text(entry.name.clone()),
                SqlValue::Integer(crate::service::unix_now_ms()),
            ],
        ),
        positional(
            "DELETE FROM placements WHERE group_id = ?1",
            vec![id.clone()],
        ),
        positional(
            "DELETE FROM shard_groups WHERE group_id = ?1",
            vec![id.clone()],
        ),
        positional("DELETE FROM owner_versions WHERE group_id = ?1", vec![id]),
    ];
    statements.extend(finish_statements(&database, step.id, version));
    record(databases, statements).await
}

/// Sets `group`'s owner version from `expect` to `version` with nothing else changed; done
/// already (the group at `version`) counts as done.
async fn freeze(
    databases: &Databases,
    group: GroupId,
    expect: u64,
    version: u64,
) -> Result<(), String> {
    if expect == version {
        return Ok(());
    }
    reown(databases, group, expect, version, Vec::new()).await
}

/// Applies `statements` in `group` as one `Reown` step from `expect` to `version`, waiting
/// while a cross-shard transaction is prepared there. A group at `version` already took it
/// (a run before a crash).
async fn reown(
    databases: &Databases,
    group: GroupId,
    expect: u64,
    version: u64,
    statements: Vec<Statement>,
) -> Result<(), String> {
    let step = ShardStep::Reown {
        expect,
        version,
        batch: StatementBatch::new(statements, true),
    };
    let deadline = Instant::now() + BUSY_WAIT_MAX;
    let mut backoff = Duration::from_millis(2);
    loop {
        let results = databases
            .resolve_group(group)
            .map_err(|e| e.to_string())?
            .apply_step(&step, WriteConcern::Majority, REQUEST_TIMEOUT)
            .await
            .map_err(|e| format!("group {group}: {e}"))?;
        match results.first().and_then(StepOutcome::of) {
            Some(StepOutcome::Reowned) => return Ok(()),
            Some(StepOutcome::Busy) if Instant::now() < deadline => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            Some(StepOutcome::VersionDiffers) if expect != version => {
                return if at_version(databases, group, version).await? {
                    Ok(())
                } else {
                    Err(format!(
                        "group {group} is not at owner version {expect} as the catalog says, \
                         nor at {version}"
                    ))
                };
            }
            Some(StepOutcome::Refused) => {
                let why = results
                    .iter()
                    .find_map(|r| r.error.clone())
                    .unwrap_or_default();
                return Err(format!("group {group} refused the rows moving: {why}"));
            }
            other => {
                return Err(format!(
                    "group {group} answered the ownership change with {}",
                    other.map_or("nothing", StepOutcome::as_str)
                ));
            }
        }
    }
}

/// Whether `group` answers for owner version `version` (a guarded read on its leader).
async fn at_version(databases: &Databases, group: GroupId, version: u64) -> Result<bool, String> {
    match read(
        databases,
        group,
        version,
        vec![Statement::plain("SELECT 1")],
    )
    .await
    {
        Ok(_) => Ok(true),
        Err(message) if message.contains(ownership::MOVED) => Ok(false),
        Err(message) => Err(message),
    }
}

/// Runs read-only `statements` on `group`'s leader, guarded at `version`; their results.
async fn read(
    databases: &Databases,
    group: GroupId,
    version: u64,
    statements: Vec<Statement>,
) -> Result<Vec<StatementResult>, String> {
    let mut all = vec![ownership::guard(version)];
    all.extend(statements);
    let mut results = read_unguarded(databases, group, all).await?;
    results.remove(0);
    Ok(results)
}

/// Runs read-only `statements` on `group`'s leader; their results.
async fn read_unguarded(
    databases: &Databases,
    group: GroupId,
    all: Vec<Statement>,
) -> Result<Vec<StatementResult>, String> {
    let count = all.len();
    let request = ServiceRequest {
        kind: RequestKind::Query,
        batches: vec![StatementBatch::new(all, false)],
        read: ReadConsistency {
            level: ReadLevel::Linearizable,
            ..Default::default()
        },
        write_concern: WriteConcern::Majority,
        write_concern_timeout: REQUEST_TIMEOUT,
        timeout: REQUEST_TIMEOUT,
        forward_to_leader: true,
    };
    let response = databases
        .resolve_group(group)
        .map_err(|e| e.to_string())?
        .handle(request)
        .await
        .map_err(|e| format!("reading group {group}: {e}"))?;
    let results = response.results;
    if let Some(error) = results.iter().find_map(|r| r.error.clone()) {
        return Err(format!("reading group {group}: {error}"));
    }
    if results.len() != count {
        return Err(format!(
            "reading group {group}: {} results for {count} statements",
            results.len()
        ));
    }
    Ok(results)
}

/// The statements recreating `group`'s schema (tables, indexes, views, triggers; not
/// SQLite's own nor a virtual table's shadow tables).
async fn schema_of(
    databases: &Databases,
    group: GroupId,
    version: u64,
) -> Result<Vec<Statement>, String> {
    let results = read(
        databases,
        group,
        version,
        vec![Statement::plain(
            "SELECT s.sql FROM sqlite_schema AS s
             WHERE s.sql IS NOT NULL AND s.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
               AND s.name NOT IN (SELECT name FROM pragma_table_list WHERE type = 'shadow')
             ORDER BY CASE s.type WHEN 'table' THEN 0 WHEN 'index' THEN 1 WHEN 'view' THEN 2
                      ELSE 3 END, s.rowid",
        )],
    )
    .await?;
    Ok(rows_of(&results, 0)
        .iter()
        .filter_map(|row| match row.first() {
            Some(SqlValue::Text(sql)) => Some(Statement::plain(sql.clone())),
            _ => None,
        })
        .collect())
}

/// The distributed tables of `entry`'s database as the catalog lists them now.
async fn distributed_now(
    databases: &Databases,
    entry: &DatabaseEntry,
) -> Result<Vec<(String, String)>, String> {
    let view = databases.catch_up().await.map_err(|e| e.to_string())?;
    let now = view
        .by_group(entry.group)
        .ok_or_else(|| format!("database {:?} was dropped", entry.name))?;
    Ok(distributed(now)
        .map(|(table, key)| (table.clone(), key))
        .collect())
}

/// The distributed tables of `entry` with the expression of each one's shard key.
fn distributed(entry: &DatabaseEntry) -> impl Iterator<Item = (&String, String)> {
    entry.tables.iter().filter_map(|(table, kind)| match kind {
        TableKind::Distributed { key: Some(key) } => Some((table, quote(key))),
        TableKind::Distributed { key: None } => Some((table, "_rowid_".to_string())),
        TableKind::Reference => None,
    })
}

/// A table's columns as its rows are copied: the rowid first unless it has none.
pub(crate) struct TableShape {
    pub(crate) name: String,
    /// Quoted, the rowid (`_rowid_`) first when the table has one.
    pub(crate) columns: Vec<String>,
    /// The shard key's expression (distributed tables).
    key: Option<String>,
}

/// The shapes of `entry`'s distributed tables, read from `group`.
pub(crate) async fn table_shapes(
    databases: &Databases,
    entry: &DatabaseEntry,
    group: GroupId,
) -> Result<Vec<TableShape>, String> {
    let tables: Vec<(String, Option<String>)> = distributed(entry)
        .map(|(table, key)| (table.clone(), Some(key)))
        .collect();
    shapes_of(databases, group, None, tables).await
}

/// The shapes of `tables` (each with its key expression, if any) in `group`, read at its
/// current owner version, or at `version` when given.
async fn shapes_of(
    databases: &Databases,
    group: GroupId,
    version: Option<u64>,
    tables: Vec<(String, Option<String>)>,
) -> Result<Vec<TableShape>, String> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let mut statements = Vec::with_capacity(tables.len() * 2);
    for (table, _) in &tables {
        let name = SqlValue::Text(table.clone());
        statements.push(Statement {
            sql: "SELECT name FROM pragma_table_xinfo(?1) WHERE hidden = 0 ORDER BY cid".into(),
            params: Params::Positional(vec![name.clone()]),
        });
        statements.push(Statement {
            sql: "SELECT wr FROM pragma_table_list(?1) WHERE schema = 'main'".into(),
            params: Params::Positional(vec![name]),
        });
    }
    let results = match version {
        Some(version) => read(databases, group, version, statements).await?,
        None => read_unguarded(databases, group, statements).await?,
    };
    tables
        .into_iter()
        .enumerate()
        .map(|(at, (name, key))| {
            let mut columns: Vec<String> = rows_of(&results, 2 * at)
                .iter()
                .filter_map(|row| match row.first() {
                    Some(SqlValue::Text(column)) => Some(quote(column)),
                    _ => None,
                })
                .collect();
            if columns.is_empty() {
                return Err(format!("table {name} has no columns in group {group}"));
            }
            let without_rowid = matches!(
                rows_of(&results, 2 * at + 1)
                    .first()
                    .and_then(|row| row.first()),
                Some(SqlValue::Integer(1))
            );
            if !without_rowid {
                columns.insert(0, "_rowid_".into());
            }
            Ok(TableShape { name, columns, key })
        })
        .collect()
}

/// The INSERTs copying the rows of every table of `shapes` whose key's slot is in
/// `[first, end)` from `group` (read at `version`), and their size in bytes.
async fn range_rows(
    databases: &Databases,
    shapes: &[TableShape],
    group: GroupId,
    version: u64,
    first: u32,
    end: u32,
) -> Result<(Vec<Statement>, usize), String> {
    let filter = |key: &str| {
        format!(
            " WHERE {STORED_SLOT_FUNCTION}({key}) >= {first} \
             AND {STORED_SLOT_FUNCTION}({key}) < {end}"
        )
    };
    copied_rows(databases, group, version, shapes, filter).await
}

/// The INSERTs copying the rows of the tables of `shapes` (those `filter` of their key
/// keeps; all of a table without a key) from `group`, keeping each row's rowid (a
/// distributed table's rowids are unique across its groups), and their size in bytes.
async fn copied_rows(
    databases: &Databases,
    group: GroupId,
    version: u64,
    shapes: &[TableShape],
    filter: impl Fn(&str) -> String,
) -> Result<(Vec<Statement>, usize), String> {
    if shapes.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let selects = shapes
        .iter()
        .map(|shape| {
            Statement::plain(format!(
                "SELECT {} FROM {}{}",
                shape.columns.join(", "),
                quote(&shape.name),
                shape.key.as_deref().map(&filter).unwrap_or_default()
            ))
        })
        .collect();
    let results = read(databases, group, version, selects).await?;
    let mut inserts = Vec::new();
    let mut bytes = 0;
    for (at, shape) in shapes.iter().enumerate() {
        let per_insert = (VALUES_PER_INSERT_MAX / shape.columns.len()).clamp(1, 500);
        let placeholders = format!("({})", vec!["?"; shape.columns.len()].join(", "));
        for chunk in rows_of(&results, at).chunks(per_insert) {
            let values: Vec<SqlValue> = chunk.iter().flatten().cloned().collect();
            bytes += values.iter().map(value_bytes).sum::<usize>();
            inserts.push(Statement {
                sql: format!(
                    "INSERT INTO {} ({}) VALUES {}",
                    quote(&shape.name),
                    shape.columns.join(", "),
                    vec![placeholders.as_str(); chunk.len()].join(", ")
                ),
                params: Params::Positional(values),
            });
        }
    }
    Ok((inserts, bytes))
}

/// The rows of result `at`.
fn rows_of(results: &[StatementResult], at: usize) -> &[Vec<SqlValue>] {
    results
        .get(at)
        .and_then(|r| r.rows.as_ref())
        .map_or(&[], |rows: &RowSet| rows.values.as_slice())
}

fn value_bytes(value: &SqlValue) -> usize {
    match value {
        SqlValue::Text(text) => text.len(),
        SqlValue::Blob(blob) => blob.len(),
        _ => 8,
    }
}

/// `name` as an SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Records `groups` at owner `version`.
fn versions_statements(groups: &[GroupId], version: u64) -> Vec<Statement> {
    groups
        .iter()
        .map(|group| {
            positional(
                "INSERT INTO owner_versions (group_id, version) VALUES (?1, ?2)
                 ON CONFLICT(group_id) DO UPDATE SET version = excluded.version",
                vec![
                    SqlValue::Integer(*group as i64),
                    SqlValue::Integer(version as i64),
                ],
            )
        })
        .collect()
}

/// A statement that fails the catalog transaction it is in unless step `step` is still
/// recorded at `version`: a mover that lost the catalog's leadership mid-step (paused, cut
/// off) must not record what it saw before the next leader's mover went on — its map would
/// undo the steps recorded since.
fn still_open(step: u64, version: u64) -> Statement {
    positional(
        "INSERT INTO catalog_meta (key, value)
         SELECT 'resharding step ' || ?1 || ' was finished by another mover', NULL
         WHERE NOT EXISTS (SELECT 1 FROM slot_moves WHERE move_id = ?1 AND version = ?2)",
        vec![
            SqlValue::Integer(step as i64),
            SqlValue::Integer(version as i64),
        ],
    )
}

/// The step recorded done (if no other mover did), and the database's plans dropped
/// (routers analyse statements again with the new map).
fn finish_statements(database: &SqlValue, step: u64, version: u64) -> Vec<Statement> {
    vec![
        still_open(step, version),
        positional(
            "UPDATE database_options SET schema_epoch = schema_epoch + 1 WHERE database_group = ?1",
            vec![database.clone()],
        ),
        positional(
            "DELETE FROM slot_moves WHERE move_id = ?1",
            vec![SqlValue::Integer(step as i64)],
        ),
    ]
}

/// Splits `step` (started at `version`) at `middle`: `[middle, end)` becomes a step of its
/// own, run later.
async fn split(
    databases: &Databases,
    step: &SlotMoveRow,
    version: u64,
    middle: u32,
    end: u32,
) -> Result<(), String> {
    record(
        databases,
        vec![
            still_open(step.id, version),
            positional(
                "UPDATE slot_moves SET end_slot = ?2 WHERE move_id = ?1",
                vec![
                    SqlValue::Integer(step.id as i64),
                    SqlValue::Integer(middle as i64),
                ],
            ),
            positional(
                "INSERT INTO slot_moves
                     (database_group, kind, first_slot, end_slot, from_group, to_group)
                 VALUES (?1, 'move', ?2, ?3, ?4, ?5)",
                vec![
                    SqlValue::Integer(step.database as i64),
                    SqlValue::Integer(middle as i64),
                    SqlValue::Integer(end as i64),
                    SqlValue::Integer(step.from as i64),
                    SqlValue::Integer(step.to as i64),
                ],
            ),
        ],
    )
    .await
}

/// Commits `statements` to the catalog as one transaction.
async fn record(databases: &Databases, statements: Vec<Statement>) -> Result<(), String> {
    databases
        .write_catalog(statements)
        .await
        .map(|_| ())
        .map_err(|error| ServiceError::from(error).to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_move_is_sized_to_a_bounded_pause_before_it_starts() {
        let small = |rows| (rows, rows * 20);
        // Everything fits: the whole range.
        let fits: BTreeMap<u32, (u64, u64)> = [(3, small(100)), (200, small(100))].into();
        assert_eq!(end_within_pause(&fits, 256), 256);
        // Slot 9 would take the rows over the bound: the move ends before it.
        let over: BTreeMap<u32, (u64, u64)> = [(5, small(1_000)), (9, small(2_000))].into();
        assert_eq!(end_within_pause(&over, 256), 9);
        // A slot over the bound by itself moves alone.
        let heavy: BTreeMap<u32, (u64, u64)> = [(3, small(5_000)), (4, small(1))].into();
        assert_eq!(end_within_pause(&heavy, 256), 4);
        // Bytes bound it too: three rows of 1 MiB.
        let wide: BTreeMap<u32, (u64, u64)> =
            [(0, (1, 1 << 20)), (1, (1, 1 << 20)), (2, (1, 1 << 20))].into();
        assert_eq!(end_within_pause(&wide, 256), 2);
    }

    #[test]
    fn a_rows_bytes_are_its_values_lengths_without_the_rowid() {
        assert_eq!(
            row_bytes(&["_rowid_".into(), "\"a\"".into(), "\"b\"".into()]),
            "8 + coalesce(length(CAST(\"a\" AS BLOB)), 0) + \
             coalesce(length(CAST(\"b\" AS BLOB)), 0)"
        );
    }
}
