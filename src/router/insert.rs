//! INSERT into a distributed table: the rows it inserts are computed here — the statement
//! runs on a scratch copy of the schema (with the rows it reads gathered into it), where a
//! temporary trigger captures each new row as its table stores it — then rowids the table
//! did not get from the statement are taken from the database's sequence, and each row goes
//! to the group owning the slot of its key, as an INSERT of explicit values.

use std::collections::BTreeMap;

use rusqlite::Connection;

use crate::catalog::view::{DatabaseEntry, TableKind};
use crate::db::dump::quote_identifier;
use crate::raft::types::{GroupId, Params, Statement};
use crate::router::Router;
use crate::router::gather::{self, row_columns};
use crate::router::reads::GroupReads;
use crate::router::schema::{Schema, TableShape};
use crate::router::tokens::{Token, tokenize};
use crate::service::ServiceError;
use crate::shard::slot::slot_of_stored;
use crate::types::value::SqlValue;

/// Most values one routed INSERT statement binds (SQLite allows 32766).
const VALUES_PER_STATEMENT_MAX: usize = 30_000;

/// The statements that insert a statement's rows, per group.
#[derive(Debug, Default)]
pub struct RoutedRows {
    pub parts: BTreeMap<GroupId, Vec<Statement>>,
    pub last_rowid: i64,
}

/// Routes the rows `statement` inserts into distributed `table`. `Ok(Err(message))` when
/// the statement fails (as SQLite says) or cannot run on a sharded database.
pub async fn route(
    router: &Router,
    database: &DatabaseEntry,
    schema: &Schema,
    group_reads: &dyn GroupReads,
    table: &str,
    statement: &Statement,
    reads: &std::collections::BTreeSet<String>,
) -> Result<Result<RoutedRows, String>, ServiceError> {
    let Some(TableKind::Distributed { key }) = database.tables.get(table) else {
        return Ok(Err(format!("table {table} is not distributed")));
    };
    let Some(shape) = schema.table(table).map_err(ServiceError::Internal)? else {
        return Ok(Err(format!("no such table: {table}")));
    };
    let tokens = tokenize(&statement.sql).unwrap_or_default();
    if tokens.iter().any(|t| t.is("returning")) {
        return Ok(Err(format!(
            "INSERT … RETURNING into distributed table {table} is not supported yet: read the \
             rows back with a SELECT"
        )));
    }
    let verb = conflict_verb(&tokens);
    // The rows it reads (INSERT … SELECT) are gathered first; a VALUES list reads none.
    let evaluated = if !reads.is_empty() {
        let scratch = match gather::gather(router, database, schema, group_reads, reads).await? {
            Ok(scratch) => scratch,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let shape = shape.clone();
        let statement = statement.clone();
        tokio::task::spawn_blocking(move || evaluate(scratch, &shape, &statement))
            .await
            .map_err(|e| ServiceError::Internal(format!("evaluating an INSERT: {e}")))?
    } else {
        // A VALUES list reads nothing: a scratch kept for the table serves it.
        let key = (database.group, schema.epoch, table.to_string());
        let kept = router.insert_scratches.take(&key);
        let scratch = match kept {
            Some(scratch) => scratch,
            None => InsertScratch::new(schema.scratch().map_err(ServiceError::Internal)?, &shape)
                .map_err(ServiceError::Internal)?,
        };
        let statement = statement.clone();
        let (scratch, evaluated) = tokio::task::spawn_blocking(move || {
            let evaluated = scratch.evaluate(&statement);
            (scratch, evaluated)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("evaluating an INSERT: {e}")))?;
        router.insert_scratches.put(key, scratch);
        evaluated
    };
    let mut rows = match evaluated {
        Ok(rows) => rows,
        Err(message) => return Ok(Err(message)),
    };
    let columns = row_columns(&shape);
    let rowid_at = rowid_position(&shape);
    // Rowids SQLite chose come from the cluster-wide sequence, which first moves past the
    // rowids the statement gave (as SQLite's next rowid follows the largest).
    if let Some(at) = rowid_at {
        let given = rows
            .iter()
            .filter_map(|row| match row[at] {
                SqlValue::Integer(rowid) => Some(rowid),
                _ => None,
            })
            .max();
        if let Some(largest) = given {
            router
                .sequences
                .pass(router.databases(), database.group, table, largest)
                .await?;
        }
        let chosen = rows.iter().filter(|row| row[at] == SqlValue::Null).count();
        if chosen > 0 {
            let mut next = router
                .sequences
                .take(router.databases(), database.group, table, chosen)
                .await?;
            for row in rows.iter_mut() {
                if row[at] == SqlValue::Null {
                    row[at] = SqlValue::Integer(next);
                    next += 1;
                }
            }
        }
    }
    let key_at = match key {
        None => rowid_at,
        Some(column) => shape
            .stored_columns()
            .position(|c| c.name.eq_ignore_ascii_case(column))
            .map(|at| at + usize::from(columns.len() > shape.stored_columns().count())),
    };
    let Some(key_at) = key_at else {
        return Ok(Err(format!(
            "distributed table {table} has no column {:?} (its shard key)",
            key.as_deref().unwrap_or("rowid")
        )));
    };
    let map = database.slots.clone();
    let mut routed = RoutedRows {
        last_rowid: rowid_at
            .and_then(|at| match rows.last().map(|row| &row[at]) {
                Some(SqlValue::Integer(r)) => Some(*r),
                _ => None,
            })
            .unwrap_or_default(),
        ..Default::default()
    };
    let mut per_group: BTreeMap<GroupId, Vec<Vec<SqlValue>>> = BTreeMap::new();
    let writes = crate::shard::write_load::of_database(database.group);
    for row in rows {
        // In a database that distributes every table (made to run SQLite applications
        // unchanged), a NULL key — which a UNIQUE column allows — places the row by its
        // rowid: it equals no key, so no pinned statement looks for it in one group.
        let placed_by = match (&row[key_at], rowid_at) {
            (SqlValue::Null, Some(at)) if database.distribute_all => &row[at],
            (key, _) => key,
        };
        let slot = match slot_of_stored(placed_by) {
            Ok(slot) => slot,
            Err(error) => {
                return Ok(Err(format!(
                    "inserting into distributed table {table}: {error} (column {})",
                    key.as_deref().unwrap_or("rowid")
                )));
            }
        };
        if let Some(writes) = &writes {
            writes.record(slot);
        }
        per_group.entry(map.group_of(slot)).or_default().push(row);
    }
    let per_statement = (VALUES_PER_STATEMENT_MAX / columns.len().max(1)).clamp(1, 500);
    for (group, rows) in per_group {
        let statements = rows
            .chunks(per_statement)
            .map(|chunk| insert_statement(&verb, &shape, &columns, chunk))
            .collect();
        routed.parts.insert(group, statements);
    }
    Ok(Ok(routed))
}

/// The INSERT's conflict clause as it opens the routed statements (`INSERT OR REPLACE`…).
fn conflict_verb(tokens: &[Token]) -> String {
    match tokens {
        [first, ..] if first.is("replace") => "REPLACE".into(),
        [first, or, Token::Word(word), ..] if first.is("insert") && or.is("or") => {
            format!("INSERT OR {}", word.to_ascii_uppercase())
        }
        _ => "INSERT".into(),
    }
}

/// Where the rowid is among [`row_columns`], if the table has one.
fn rowid_position(shape: &TableShape) -> Option<usize> {
    if shape.without_rowid {
        return None;
    }
    match &shape.rowid_alias {
        None => Some(0),
        Some(alias) => shape
            .stored_columns()
            .position(|c| c.name.eq_ignore_ascii_case(alias)),
    }
}

fn insert_statement(
    verb: &str,
    shape: &TableShape,
    columns: &[String],
    rows: &[Vec<SqlValue>],
) -> Statement {
    let mut values = Vec::with_capacity(rows.len() * columns.len());
    let mut tuples = Vec::with_capacity(rows.len());
    for row in rows {
        let marks: Vec<String> = (0..row.len())
            .map(|i| format!("?{}", values.len() + i + 1))
            .collect();
        tuples.push(format!("({})", marks.join(", ")));
        values.extend(row.iter().cloned());
    }
    Statement {
        sql: format!(
            "{verb} INTO {} ({}) VALUES {}",
            quote_identifier(&shape.name),
            columns.join(", "),
            tuples.join(", ")
        ),
        params: Params::Positional(values),
    }
}

/// A scratch copy of the schema ready to evaluate INSERTs into one table: triggers dropped,
/// the placeholder row in the table, and a temporary trigger capturing every new row. Each
/// evaluation runs in a savepoint rolled back afterwards, so one scratch serves many.
pub struct InsertScratch {
    connection: Connection,
    guard: std::sync::Arc<crate::db::guard::StatementGuard>,
    columns: usize,
}

impl InsertScratch {
    /// Readies `scratch` (a copy of the schema, possibly holding gathered rows) for `shape`.
    pub fn new(scratch: Connection, shape: &TableShape) -> Result<InsertScratch, String> {
        let fail = |e: rusqlite::Error| format!("preparing to evaluate the INSERT: {e}");
        gather::drop_triggers(&scratch).map_err(fail)?;
        let columns = row_columns(shape);
        let table = quote_identifier(&shape.name);
        // Each new row as its table stores it, its rowid NULL where SQLite chose it: a BEFORE
        // INSERT trigger sees NEW.rowid as -1 until SQLite picks one (the AFTER trigger
        // then sees the one picked), and as the given value when the statement gives one.
        let rowid_at = rowid_position(shape);
        let captured: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
        let news: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(at, column)| {
                if Some(at) == rowid_at {
                    format!(
                        "CASE WHEN (SELECT r FROM temp.shoal_given ORDER BY rowid DESC LIMIT 1) \
                         = -1 AND new.{column} <> -1 THEN NULL ELSE new.{column} END"
                    )
                } else {
                    format!("new.{column}")
                }
            })
            .collect();
        let before = if rowid_at.is_some() {
            format!(
                "CREATE TEMP TRIGGER shoal_given BEFORE INSERT ON main.{table}
                 BEGIN INSERT INTO shoal_given VALUES (new.rowid); END;"
            )
        } else {
            String::new()
        };
        scratch
            .execute_batch(&format!(
                "CREATE TEMP TABLE shoal_given (r);
                 CREATE TEMP TABLE shoal_captured ({});
                 {before}
                 CREATE TEMP TRIGGER shoal_capture AFTER INSERT ON main.{table}
                 BEGIN INSERT INTO shoal_captured VALUES ({}); END;",
                captured.join(", "),
                news.join(", ")
            ))
            .map_err(fail)?;
        let guard = crate::db::guard::StatementGuard::install(
            &scratch,
            crate::db::guard::GuardMode::Writer,
        );
        Ok(InsertScratch {
            connection: scratch,
            guard,
            columns: columns.len(),
        })
    }

    /// Runs the INSERT and returns each row it inserted into the table, as stored
    /// ([`row_columns`] order); `Err` with SQLite's message when the statement fails. The
    /// scratch is left as it was.
    pub fn evaluate(&self, statement: &Statement) -> Result<Vec<Vec<SqlValue>>, String> {
        let fail = |e: rusqlite::Error| format!("evaluating the INSERT: {e}");
        let internal = |sql: &str| {
            self.guard
                .internal(|| self.connection.execute_batch(sql))
                .map_err(fail)
        };
        internal("SAVEPOINT shoal_evaluate")?;
        let outcome = self.run(statement);
        internal("ROLLBACK TO shoal_evaluate; RELEASE shoal_evaluate")?;
        outcome
    }

    fn run(&self, statement: &Statement) -> Result<Vec<Vec<SqlValue>>, String> {
        let fail = |e: rusqlite::Error| format!("evaluating the INSERT: {e}");
        let result =
            crate::db::execute::execute_statement(&self.connection, &self.guard, statement);
        if let Some(error) = result.error {
            return Err(error);
        }
        self.guard.internal(|| {
            let mut select = self
                .connection
                .prepare_cached("SELECT * FROM temp.shoal_captured ORDER BY rowid")
                .map_err(fail)?;
            select
                .query_map([], |row| {
                    (0..self.columns)
                        .map(|i| row.get_ref(i).map(SqlValue::from))
                        .collect::<rusqlite::Result<Vec<SqlValue>>>()
                })
                .map_err(fail)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(fail)
        })
    }
}

/// Evaluates `statement` on a one-off scratch (tests, and scratches holding gathered rows).
fn evaluate(
    scratch: Connection,
    shape: &TableShape,
    statement: &Statement,
) -> Result<Vec<Vec<SqlValue>>, String> {
    InsertScratch::new(scratch, shape)?.evaluate(statement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::schema::Schema;

    fn shape_and_scratch(create: &str) -> (TableShape, Connection) {
        let schema = Schema::build(0, vec![create.to_string()]).unwrap();
        (
            (*schema.table("t").unwrap().unwrap()).clone(),
            schema.scratch().unwrap(),
        )
    }

    #[test]
    fn rows_come_back_as_stored_with_the_rowids_sqlite_chose_left_null() {
        let (shape, scratch) = shape_and_scratch("CREATE TABLE t (a INTEGER, b TEXT DEFAULT 'd')");
        let rows = evaluate(
            scratch,
            &shape,
            &Statement::plain("INSERT INTO t (a) VALUES ('7'), (8.0)"),
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][0], SqlValue::Null, "a rowid SQLite chose");
        assert_eq!(
            rows[0][1..],
            [SqlValue::Integer(7), SqlValue::Text("d".into())]
        );
        assert_eq!(rows[1][1], SqlValue::Integer(8));
    }

    #[test]
    fn given_rowids_stay_whatever_their_value_and_a_table_copies_only_its_rows() {
        let (shape, scratch) = shape_and_scratch("CREATE TABLE t (id INTEGER PRIMARY KEY, v)");
        scratch
            .execute_batch("INSERT INTO t VALUES (4611686018427387904, 'big'), (3, 'three')")
            .unwrap();
        let given = |sql: &str, scratch: Connection| {
            evaluate(scratch, &shape, &Statement::plain(sql))
                .unwrap()
                .into_iter()
                .map(|row| row[0].clone())
                .collect::<Vec<_>>()
        };
        let copy = Connection::open_in_memory().unwrap();
        copy.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v)")
            .unwrap();
        assert_eq!(
            given(
                "INSERT INTO t VALUES (-1, 'a'), (9223372036854775807, 'b'), (NULL, 'c')",
                copy
            ),
            [
                SqlValue::Integer(-1),
                SqlValue::Integer(i64::MAX),
                SqlValue::Null
            ]
        );
        // Reading the table it inserts into: its own rows only, each with a new rowid.
        assert_eq!(
            given("INSERT INTO t (v) SELECT v FROM t ORDER BY id", scratch),
            [SqlValue::Null, SqlValue::Null]
        );
    }

    #[test]
    fn given_keys_stay_and_constraint_errors_are_sqlites() {
        let (shape, scratch) = shape_and_scratch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL CHECK (v != 'x'))",
        );
        assert_eq!(shape.rowid_alias.as_deref(), Some("id"));
        let rows = evaluate(
            scratch,
            &shape,
            &Statement::plain("INSERT INTO t VALUES (5, 'a')"),
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![vec![SqlValue::Integer(5), SqlValue::Text("a".into())]]
        );
        let (shape, scratch) = shape_and_scratch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL CHECK (v != 'x'))",
        );
        let error = evaluate(
            scratch,
            &shape,
            &Statement::plain("INSERT INTO t (v) VALUES ('x')"),
        )
        .unwrap_err();
        assert!(error.contains("CHECK constraint failed"), "{error}");
    }

    #[test]
    fn a_kept_scratch_evaluates_each_statement_from_the_same_start() {
        let (shape, scratch) = shape_and_scratch("CREATE TABLE t (a INTEGER UNIQUE)");
        let kept = InsertScratch::new(scratch, &shape).unwrap();
        for _ in 0..3 {
            // The same value each time: no row of an earlier evaluation is left to conflict.
            let rows = kept
                .evaluate(&Statement::plain("INSERT INTO t VALUES (1)"))
                .unwrap();
            assert_eq!(rows.len(), 1);
        }
        let error = kept
            .evaluate(&Statement::plain("INSERT INTO t VALUES (2), (2)"))
            .unwrap_err();
        assert!(error.contains("UNIQUE"), "{error}");
        assert_eq!(
            kept.evaluate(&Statement::plain("INSERT INTO t VALUES (2)"))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn the_conflict_clause_is_kept() {
        assert_eq!(
            conflict_verb(&tokenize("INSERT OR REPLACE INTO t VALUES (1)").unwrap()),
            "INSERT OR REPLACE"
        );
        assert_eq!(
            conflict_verb(&tokenize("replace into t values (1)").unwrap()),
            "REPLACE"
        );
        assert_eq!(
            conflict_verb(&tokenize("INSERT INTO t VALUES (1)").unwrap()),
            "INSERT"
        );
    }
}

#[cfg(test)]
mod select_tests {
    use super::*;
    use crate::router::schema::Schema;

    #[test]
    fn an_insert_select_captures_the_rows_it_selects() {
        let schema = Schema::build(
            0,
            vec![
                "CREATE TABLE t4(a INTEGER UNIQUE)".into(),
                "CREATE TABLE t5(b INTEGER PRIMARY KEY)".into(),
                "CREATE TABLE t6(c INTEGER)".into(),
            ],
        )
        .unwrap();
        for target in ["t5", "t6"] {
            let scratch = schema.scratch().unwrap();
            crate::router::gather::drop_triggers(&scratch).unwrap();
            scratch
                .execute_batch("INSERT INTO t4 VALUES (2), (3), (4)")
                .unwrap();
            let shape = schema.table(target).unwrap().unwrap();
            let sql = format!("INSERT INTO {target} SELECT * FROM t4");
            let rows = evaluate(scratch, &shape, &Statement::plain(sql)).unwrap();
            assert_eq!(rows.len(), 3, "{target}: {rows:?}");
        }
    }
}
