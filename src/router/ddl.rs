//! Schema changes of a sharded database: applied to every group atomically (one cross-group
//! transaction), with the catalog's table kinds kept in step — a table created in a database
//! that distributes every table is recorded as distributed (or, when no shard key keeps its
//! constraints, as a reference table) before it exists, so no router ever sees it as local;
//! a dropped or renamed table's kind follows it — and the schema epoch moved, so every router
//! reloads the schema it plans with.

use crate::catalog::view::{DatabaseEntry, TableKind, positional};
use crate::raft::types::{Statement, StatementBatch, StatementResult};
use crate::router::batch::ConcernMisses;
use crate::router::commit::{Participant, commit_across};
use crate::router::functions::{check_distributable, default_key, shape_in};
use crate::router::schema::{Analysis, Schema};
use crate::router::tokens::tokenize;
use crate::router::triggers::check_trigger;
use crate::router::{Router, guard};
use crate::service::{ServiceError, ServiceRequest};
use crate::types::value::SqlValue;

/// Runs schema change `statement` on every group of `database`.
pub async fn run(
    router: &Router,
    database: &DatabaseEntry,
    schema: &Schema,
    request: &ServiceRequest,
    statement: &Statement,
    analysis: &Analysis,
    misses: &ConcernMisses,
) -> Result<StatementResult, ServiceError> {
    let group = SqlValue::Integer(database.group as i64);
    let epoch = || {
        positional(
            "UPDATE database_options SET schema_epoch = schema_epoch + 1 WHERE database_group = ?1",
            vec![SqlValue::Integer(database.group as i64)],
        )
    };
    if let Err(refusal) = check_trigger(database, &statement.sql) {
        return Ok(StatementResult::failed(refusal));
    }
    if let Some(refusal) = unenforceable_unique_index(database, schema, &statement.sql)? {
        return Ok(StatementResult::failed(refusal));
    }
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut recorded = None;
    if let Some(created) = &analysis.created_table
        && database.distribute_all
        && !database.tables.contains_key(created)
        && schema
            .table(created)
            .map_err(ServiceError::Internal)?
            .is_none()
    {
        let scratch = schema.scratch().map_err(ServiceError::Internal)?;
        if let Err(error) = scratch.execute_batch(&statement.sql) {
            return Ok(StatementResult::failed(error.to_string()));
        }
        if let Some(shape) = shape_in(&scratch, created).map_err(ServiceError::Internal)? {
            let key = default_key(&scratch, &shape)
                .map_err(|e| ServiceError::Internal(format!("choosing a shard key: {e}")))?;
            // A table whose constraints no shard key keeps (two UNIQUE constraints without a
            // column in common, AUTOINCREMENT, a foreign key that cannot be co-located)
            // becomes a reference table: a full copy in every group keeps them all.
            let kind = match check_distributable(
                &scratch,
                database,
                &statement.sql,
                &shape,
                key.as_deref(),
            ) {
                Ok(()) => "distributed",
                Err(why) => {
                    tracing::info!(database = %database.name, table = %shape.name, %why, "made a reference table");
                    "reference"
                }
            };
            let key = match kind {
                "distributed" => key.map_or(SqlValue::Null, SqlValue::Text),
                _ => SqlValue::Null,
            };
            before.push(positional(
                "INSERT OR REPLACE INTO table_kinds (database_group, table_name, kind, key_column)
                 VALUES (?1, ?2, ?3, ?4)",
                vec![
                    group.clone(),
                    SqlValue::Text(created.clone()),
                    SqlValue::Text(kind.into()),
                    key,
                ],
            ));
            recorded = Some(created.clone());
        }
    }
    if let Some(dropped) = &analysis.dropped_table
        && database.tables.contains_key(dropped)
    {
        after.push(positional(
            "DELETE FROM table_kinds WHERE database_group = ?1 AND table_name = ?2",
            vec![group.clone(), SqlValue::Text(dropped.clone())],
        ));
    }
    if let Some(altered) = &analysis.altered_table
        && let Some(kind) = database.tables.get(altered)
    {
        match alteration(&statement.sql) {
            Some(Alteration::RenameTable(to)) => after.push(positional(
                "UPDATE table_kinds SET table_name = ?3 WHERE database_group = ?1 AND table_name = ?2",
                vec![group.clone(), SqlValue::Text(altered.clone()), SqlValue::Text(to)],
            )),
            Some(Alteration::RenameColumn(from, to)) => {
                if matches!(kind, TableKind::Distributed { key: Some(k) } if k.eq_ignore_ascii_case(&from)) {
                    after.push(positional(
                        "UPDATE table_kinds SET key_column = ?3 WHERE database_group = ?1 AND table_name = ?2",
                        vec![group.clone(), SqlValue::Text(altered.clone()), SqlValue::Text(to)],
                    ));
                }
            }
            Some(Alteration::DropColumn(column)) => {
                if matches!(kind, TableKind::Distributed { key: Some(k) } if k.eq_ignore_ascii_case(&column)) {
                    return Ok(StatementResult::failed(format!(
                        "column {altered}.{column} is the table's shard key and cannot be dropped"
                    )));
                }
            }
            Some(Alteration::Other) | None => {}
        }
    }
    if !before.is_empty() {
        before.push(epoch());
        write(router, before).await?;
    }
    let participants = database
        .groups
        .iter()
        .map(|group| Participant {
            group: *group,
            batch: StatementBatch::new(vec![statement.clone()], true),
        })
        .collect();
    let outcome = commit_across(
        router.databases(),
        guard::participants(database, participants),
        request.write_concern,
        request.timeout,
    )
    .await
    .and_then(|mut outcome| guard::unguard_outcome(&mut outcome).map(|()| outcome));
    let undo = |recorded: Option<String>| {
        recorded.map(|table| {
            vec![
                positional(
                    "DELETE FROM table_kinds WHERE database_group = ?1 AND table_name = ?2",
                    vec![
                        SqlValue::Integer(database.group as i64),
                        SqlValue::Text(table),
                    ],
                ),
                epoch(),
            ]
        })
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            if let Some(statements) = undo(recorded) {
                let _ = write(router, statements).await;
            }
            router.forget_schema(database.group);
            return Err(error);
        }
    };
    if !outcome.committed {
        if let Some(statements) = undo(recorded) {
            write(router, statements).await?;
        }
        let failed = outcome
            .results
            .into_iter()
            .flatten()
            .find(|r| r.error.is_some())
            .unwrap_or_else(|| StatementResult::failed("the schema change was not applied"));
        return Ok(failed);
    }
    misses.note_error(outcome.write_concern_error);
    after.push(epoch());
    write(router, after).await?;
    router.forget_schema(database.group);
    Ok(outcome
        .results
        .into_iter()
        .next()
        .and_then(|results| results.into_iter().next())
        .unwrap_or_default())
}

/// Why `sql`, when it creates a UNIQUE index on a distributed table, cannot be enforced
/// across groups (the index does not hold the shard key): the table checked with the index
/// added, as `shoal_distribute` checks it.
fn unenforceable_unique_index(
    database: &DatabaseEntry,
    schema: &Schema,
    sql: &str,
) -> Result<Option<String>, ServiceError> {
    let Some(tokens) = tokenize(sql) else {
        return Ok(None);
    };
    let creates_unique_index = tokens.first().is_some_and(|t| t.is("create"))
        && tokens.get(1).is_some_and(|t| t.is("unique"))
        && tokens.get(2).is_some_and(|t| t.is("index"));
    let on = tokens.iter().position(|t| t.is("on"));
    let (true, Some(on)) = (creates_unique_index, on) else {
        return Ok(None);
    };
    let table = match &tokens[on + 1..] {
        [_, dot, name, ..] if dot.is_symbol(".") => name.name(),
        [name, ..] => name.name(),
        [] => None,
    };
    let Some(table) = table else {
        return Ok(None);
    };
    let Some(TableKind::Distributed { key }) = database.tables.get(&table) else {
        return Ok(None);
    };
    let scratch = schema.scratch().map_err(ServiceError::Internal)?;
    if scratch.execute_batch(sql).is_err() {
        // SQLite's own error comes from the groups.
        return Ok(None);
    }
    let Some(shape) = shape_in(&scratch, &table).map_err(ServiceError::Internal)? else {
        return Ok(None);
    };
    Ok(check_distributable(&scratch, database, sql, &shape, key.as_deref()).err())
}

async fn write(router: &Router, statements: Vec<Statement>) -> Result<(), ServiceError> {
    router
        .databases()
        .write_catalog(statements)
        .await
        .map_err(ServiceError::from)?;
    router.databases().refresh().await?;
    Ok(())
}

/// What an ALTER TABLE does, as far as table kinds care.
#[derive(Debug, PartialEq)]
enum Alteration {
    RenameTable(String),
    RenameColumn(String, String),
    DropColumn(String),
    Other,
}

fn alteration(sql: &str) -> Option<Alteration> {
    let tokens = tokenize(sql)?;
    let at = tokens
        .iter()
        .position(|t| t.is("rename") || t.is("drop") || t.is("add"))?;
    let rest = &tokens[at..];
    Some(match rest {
        [rename, to, name, ..] if rename.is("rename") && to.is("to") => {
            Alteration::RenameTable(name.name()?)
        }
        [rename, column, from, to, name, ..]
            if rename.is("rename") && column.is("column") && to.is("to") =>
        {
            Alteration::RenameColumn(from.name()?, name.name()?)
        }
        [rename, from, to, name, ..] if rename.is("rename") && to.is("to") => {
            Alteration::RenameColumn(from.name()?, name.name()?)
        }
        [drop, column, name, ..] if drop.is("drop") && column.is("column") => {
            Alteration::DropColumn(name.name()?)
        }
        [drop, name, ..] if drop.is("drop") => Alteration::DropColumn(name.name()?),
        _ => Alteration::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alterations_are_read_from_the_statement() {
        assert_eq!(
            alteration("ALTER TABLE t RENAME TO \"U\""),
            Some(Alteration::RenameTable("u".into()))
        );
        assert_eq!(
            alteration("alter table t rename column a to b"),
            Some(Alteration::RenameColumn("a".into(), "b".into()))
        );
        assert_eq!(
            alteration("ALTER TABLE t DROP COLUMN k"),
            Some(Alteration::DropColumn("k".into()))
        );
        assert_eq!(
            alteration("ALTER TABLE t ADD COLUMN x"),
            Some(Alteration::Other)
        );
    }
}
