//! Runs one statement on a SQLite connection and turns the outcome into a [`StatementResult`].

use std::time::Instant;

use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::{Batch, Connection};

use crate::db::guard::StatementGuard;
use crate::db::reader::is_own_statement_text;
use crate::types::value::SqlValue;
use crate::types::{Params, RowSet, Statement, StatementResult};

/// Upper bound on the values (rows × columns) one statement may return, so one query cannot
/// exhaust the node's memory. Clients page with LIMIT/OFFSET beyond it.
pub const RESULT_VALUES_MAX: usize = 20_000_000;

/// Executes `statement`; an error is reported in the result, never raised: a failed statement
/// changes nothing (SQLite's statement-level atomicity) and the caller decides what else to undo.
pub fn execute_statement(
    connection: &Connection,
    guard: &StatementGuard,
    statement: &Statement,
) -> StatementResult {
    execute(connection, guard, statement, Compile::Fresh)
}

/// [`execute_statement`] on a reader connection, reusing the statement compiled for an earlier
/// request of the same text. Only for readers: their guard judges every user statement the
/// same way, and Shoal's own cached statements there are marked
/// ([`crate::db::reader::OWN_STATEMENT_MARK`]), so a reused entry is always one compiled
/// under the guard for a user.
pub fn execute_read(
    connection: &Connection,
    guard: &StatementGuard,
    statement: &Statement,
) -> StatementResult {
    execute(connection, guard, statement, Compile::Reuse)
}

/// Whether a statement is compiled for this execution alone or taken from the cache.
#[derive(Clone, Copy)]
enum Compile {
    /// Compiled each time: the writer's cache holds Shoal's own statements (BEGIN, SAVEPOINT,
    /// the state upsert) compiled with the guard lifted, and its guard's verdict depends on the
    /// surrounding batch (user savepoints) and records what each compile touches.
    Fresh,
    Reuse,
}

/// A compiled statement, owned or borrowed from the connection's cache.
enum Compiled<'c> {
    Fresh(rusqlite::Statement<'c>),
    Cached(rusqlite::CachedStatement<'c>),
}

impl<'c> std::ops::Deref for Compiled<'c> {
    type Target = rusqlite::Statement<'c>;

    fn deref(&self) -> &Self::Target {
        match self {
            Compiled::Fresh(statement) => statement,
            Compiled::Cached(statement) => statement,
        }
    }
}

impl std::ops::DerefMut for Compiled<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Compiled::Fresh(statement) => statement,
            Compiled::Cached(statement) => statement,
        }
    }
}

fn compile<'c>(
    connection: &'c Connection,
    sql: &str,
    how: Compile,
) -> rusqlite::Result<Compiled<'c>> {
    match how {
        Compile::Reuse if !is_own_statement_text(sql) => {
            connection.prepare_cached(sql).map(Compiled::Cached)
        }
        _ => connection.prepare(sql).map(Compiled::Fresh),
    }
}

fn execute(
    connection: &Connection,
    guard: &StatementGuard,
    statement: &Statement,
    how: Compile,
) -> StatementResult {
    let started = Instant::now();
    // A reason left over from an earlier refused prepare must not explain this statement.
    let _ = guard.take_refusal();
    let mut result = match run(connection, guard, statement, how) {
        Ok(result) => result,
        Err(error) => StatementResult::failed(describe_error(guard, error)),
    };
    result.time_s = started.elapsed().as_secs_f64();
    result
}

/// Whether `sql` only reads (SQLite's own judgement, `sqlite3_stmt_readonly`). `None` when the
/// statement does not compile here, e.g. it names a table an earlier statement creates.
pub fn is_read_only(connection: &Connection, sql: &str) -> Option<bool> {
    compile(connection, sql, Compile::Fresh)
        .ok()
        .map(|statement| statement.readonly())
}

/// [`is_read_only`] on a reader connection, through its cache of compiled user statements
/// (see [`execute_read`]): the read that follows reuses the compilation.
pub fn is_read_only_reusing(connection: &Connection, sql: &str) -> Option<bool> {
    compile(connection, sql, Compile::Reuse)
        .ok()
        .map(|statement| statement.readonly())
}

/// What a statement needs and returns, learned by compiling it without running it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StatementShape {
    /// The highest parameter number the statement uses.
    pub parameter_count: usize,
    /// Result columns: name and declared type (`None` for expressions).
    pub columns: Vec<(String, Option<String>)>,
    pub read_only: bool,
    /// The columns (name, declared type) of every table or view whose name appears in the
    /// statement, so a client API can infer what its parameters and expressions hold.
    pub tables: TableColumns,
}

/// Tables with their columns: (table, [(column, declared type)]).
pub type TableColumns = Vec<(String, Vec<(String, Option<String>)>)>;

/// Tables and views described for one statement at most (bounds the work on huge schemas).
const SHAPE_TABLES_MAX: usize = 64;

/// Compiles `sql` (one statement) on `connection` and reports its shape, or SQLite's error.
pub fn statement_shape(
    connection: &Connection,
    guard: &StatementGuard,
    sql: &str,
) -> Result<StatementShape, String> {
    let prepared = connection.prepare(sql).map_err(|error| match error {
        rusqlite::Error::MultipleStatement => {
            "cannot insert multiple commands into a prepared statement".to_string()
        }
        rusqlite::Error::SqliteFailure(_, Some(message)) => message,
        other => other.to_string(),
    })?;
    Ok(StatementShape {
        parameter_count: prepared.parameter_count(),
        columns: prepared
            .columns()
            .iter()
            .map(|column| {
                (
                    column.name().to_string(),
                    column.decl_type().map(str::to_string),
                )
            })
            .collect(),
        read_only: prepared.readonly(),
        // Reading the schema runs as Shoal's own statement: the guard refuses PRAGMA calls
        // with arguments from users, `table_info` included.
        tables: guard
            .internal(|| tables_named_in(connection, sql))
            .unwrap_or_default(),
    })
}

/// The declared columns of the tables and views whose names occur as words in `sql`.
fn tables_named_in(connection: &Connection, sql: &str) -> rusqlite::Result<TableColumns> {
    let words: std::collections::BTreeSet<String> = sql
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let mut names =
        connection.prepare("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view')")?;
    let tables: Vec<String> = names
        .query_map([], |row| row.get::<_, String>(0))?
        .filter_map(Result::ok)
        .filter(|name| words.contains(&name.to_lowercase()))
        .take(SHAPE_TABLES_MAX)
        .collect();
    let mut columns = connection.prepare("SELECT name, type FROM pragma_table_info(?1)")?;
    tables
        .into_iter()
        .map(|table| {
            let declared = columns
                .query_map([&table], |row| {
                    let declared: String = row.get(1)?;
                    Ok((
                        row.get::<_, String>(0)?,
                        Some(declared).filter(|d| !d.is_empty()),
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((table, declared))
        })
        .collect()
}

fn run(
    connection: &Connection,
    guard: &StatementGuard,
    statement: &Statement,
    how: Compile,
) -> rusqlite::Result<StatementResult> {
    let mut prepared = match compile(connection, &statement.sql, how) {
        Ok(prepared) => prepared,
        Err(rusqlite::Error::MultipleStatement) => {
            return run_script(connection, guard, statement);
        }
        // rusqlite compiles the text after the first statement to learn whether there is
        // more, so a script whose later statements depend on earlier ones (`DROP TABLE t;
        // CREATE TABLE t(…)`) fails here. When the first statement compiles on its own, the
        // error came from the rest: it is a script.
        Err(error) => match Batch::new(connection, &statement.sql).next() {
            Ok(Some(_)) => return run_script(connection, guard, statement),
            _ => return Err(error),
        },
    };
    bind(&mut prepared, &statement.params)?;
    let changes_before = connection.total_changes();
    // sqlite3_changes() keeps the count of the last INSERT/UPDATE/DELETE, so a statement that
    // changed nothing (DDL, a no-op) must not report it.
    let changed = |connection: &Connection| connection.total_changes() != changes_before;
    let column_count = prepared.column_count();
    if column_count == 0 {
        prepared.raw_execute()?;
        let rows_affected = if changed(connection) {
            connection.changes()
        } else {
            0
        };
        return Ok(StatementResult {
            rows_affected,
            last_insert_id: connection.last_insert_rowid(),
            ..StatementResult::default()
        });
    }
    let mut values: Vec<Vec<SqlValue>> = Vec::new();
    let mut rows = prepared.raw_query();
    let mut total_values = 0usize;
    while let Some(row) = rows.next()? {
        // The width comes from the running statement: when this connection's cached schema was
        // stale, SQLite re-prepared the statement on its first step and `SELECT *` may now have
        // a different number of columns than at prepare time.
        let width = row.as_ref().column_count();
        total_values += width;
        if total_values > RESULT_VALUES_MAX {
            return Err(rusqlite::Error::UserFunctionError(
                format!("result exceeds {RESULT_VALUES_MAX} values; add a LIMIT").into(),
            ));
        }
        let mut record = Vec::with_capacity(width);
        for index in 0..width {
            record.push(SqlValue::from(row.get_ref(index)?));
        }
        values.push(record);
    }
    drop(rows);
    // Names and declared types are read after stepping for the same reason; a re-prepared
    // statement keeps its handle, so `prepared` now describes what actually ran.
    let columns: Vec<String> = prepared
        .column_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let declared: Vec<Option<String>> = prepared
        .columns()
        .iter()
        .map(|c| c.decl_type().map(|t| t.to_ascii_lowercase()))
        .collect();
    let types = declared
        .into_iter()
        .enumerate()
        .map(|(index, declared)| declared.unwrap_or_else(|| inferred_type(&values, index)))
        .collect();
    let rows_affected = if changed(connection) {
        connection.changes()
    } else {
        0
    };
    Ok(StatementResult {
        rows: Some(RowSet {
            columns,
            types,
            values,
        }),
        rows_affected,
        last_insert_id: if rows_affected > 0 {
            connection.last_insert_rowid()
        } else {
            0
        },
        ..StatementResult::default()
    })
}

/// Several statements in one string without parameters run as a script, like `sqlite3` does,
/// but all or nothing: when one fails, the ones before it are undone.
fn run_script(
    connection: &Connection,
    guard: &StatementGuard,
    statement: &Statement,
) -> rusqlite::Result<StatementResult> {
    if statement.params != Params::None {
        return Err(rusqlite::Error::UserFunctionError(
            "parameters cannot be bound to a string holding several statements; send them separately".into(),
        ));
    }
    let before = connection.total_changes();
    guard.internal(|| connection.execute_batch("SAVEPOINT shoal_script"))?;
    if let Err(error) = connection.execute_batch(&statement.sql) {
        guard.internal(|| {
            connection.execute_batch("ROLLBACK TO shoal_script; RELEASE shoal_script")
        })?;
        return Err(error);
    }
    guard.internal(|| connection.execute_batch("RELEASE shoal_script"))?;
    Ok(StatementResult {
        rows_affected: connection.total_changes().saturating_sub(before),
        last_insert_id: connection.last_insert_rowid(),
        ..StatementResult::default()
    })
}

/// A column without a declared type (an expression) takes the storage class of its first
/// non-NULL value, or "" when there is none.
fn inferred_type(values: &[Vec<SqlValue>], column: usize) -> String {
    values
        .iter()
        .map(|row| &row[column])
        .find(|value| !matches!(value, SqlValue::Null))
        .map(|value| value.type_name().to_string())
        .unwrap_or_default()
}

fn bind(prepared: &mut rusqlite::Statement<'_>, params: &Params) -> rusqlite::Result<()> {
    let expected = prepared.parameter_count();
    match params {
        Params::None if expected == 0 => Ok(()),
        Params::None => Err(parameter_error(format!(
            "statement expects {expected} parameters but none were given"
        ))),
        Params::Positional(values) => {
            if values.len() != expected {
                return Err(parameter_error(format!(
                    "statement expects {expected} parameters but {} were given",
                    values.len()
                )));
            }
            for (index, value) in values.iter().enumerate() {
                prepared.raw_bind_parameter(index + 1, value)?;
            }
            Ok(())
        }
        Params::Named(pairs) => {
            for (name, value) in pairs {
                let index = ([':', '@', '$'].iter())
                    .find_map(|prefix| {
                        prepared
                            .parameter_index(&format!("{prefix}{name}"))
                            .transpose()
                    })
                    .transpose()?
                    .ok_or_else(|| {
                        parameter_error(format!("statement has no parameter named {name:?}"))
                    })?;
                prepared.raw_bind_parameter(index, value)?;
            }
            if pairs.len() != expected {
                return Err(parameter_error(format!(
                    "statement expects {expected} parameters but {} were given",
                    pairs.len()
                )));
            }
            Ok(())
        }
    }
}

fn parameter_error(message: String) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(message.into())
}

/// Turns an SQLite error into the message a client sees: the guard's reason when the
/// authorizer refused the statement, otherwise SQLite's own text.
fn describe_error(guard: &StatementGuard, error: rusqlite::Error) -> String {
    let refusal = guard.take_refusal();
    match error {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == rusqlite::ErrorCode::AuthorizationForStatementDenied =>
        {
            refusal.unwrap_or_else(|| "statement not authorized".to_string())
        }
        rusqlite::Error::SqliteFailure(_, Some(message)) => message,
        rusqlite::Error::UserFunctionError(message) => message.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::guard::GuardMode;

    fn setup() -> (Connection, std::sync::Arc<StatementGuard>) {
        let connection = Connection::open_in_memory().unwrap();
        let guard = StatementGuard::install(&connection, GuardMode::Writer);
        (connection, guard)
    }

    fn exec(c: &Connection, g: &StatementGuard, sql: &str, params: Params) -> StatementResult {
        execute_statement(
            c,
            g,
            &Statement {
                sql: sql.to_string(),
                params,
            },
        )
    }

    #[test]
    fn insert_reports_rows_affected_and_last_insert_id() {
        let (c, g) = setup();
        exec(
            &c,
            &g,
            "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)",
            Params::None,
        );
        let r = exec(
            &c,
            &g,
            "INSERT INTO t(name) VALUES (?)",
            Params::Positional(vec![SqlValue::Text("a".into())]),
        );
        assert_eq!((r.error, r.rows_affected, r.last_insert_id), (None, 1, 1));
    }

    #[test]
    fn select_reports_declared_and_inferred_types() {
        let (c, g) = setup();
        exec(
            &c,
            &g,
            "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)",
            Params::None,
        );
        exec(&c, &g, "INSERT INTO t(name) VALUES ('x')", Params::None);
        let r = exec(&c, &g, "SELECT id, name, 1.5 AS f FROM t", Params::None);
        let rows = r.rows.unwrap();
        assert_eq!(rows.columns, ["id", "name", "f"]);
        assert_eq!(rows.types, ["integer", "text", "real"]);
        assert_eq!(
            rows.values,
            vec![vec![
                SqlValue::Integer(1),
                SqlValue::Text("x".into()),
                SqlValue::Real(1.5)
            ]]
        );
    }

    #[test]
    fn named_parameters_accept_any_prefix() {
        let (c, g) = setup();
        let named = Params::Named(vec![
            ("a".into(), SqlValue::Integer(2)),
            ("b".into(), SqlValue::Integer(3)),
        ]);
        let r = exec(&c, &g, "SELECT :a + @b", named);
        assert_eq!(r.rows.unwrap().values, vec![vec![SqlValue::Integer(5)]]);
    }

    #[test]
    fn wrong_parameter_count_is_a_clear_error() {
        let (c, g) = setup();
        let r = exec(
            &c,
            &g,
            "SELECT ?, ?",
            Params::Positional(vec![SqlValue::Integer(1)]),
        );
        assert!(
            r.error
                .unwrap()
                .contains("expects 2 parameters but 1 were given")
        );
    }

    #[test]
    fn refused_statement_names_the_reason() {
        let (c, g) = setup();
        let r = exec(&c, &g, "ATTACH 'other.db' AS other", Params::None);
        assert!(r.error.unwrap().contains("ATTACH"), "guard reason expected");
    }

    /// A second connection's cached schema goes stale when another connection drops and
    /// recreates a table; SQLite re-prepares on the first step, so the result must describe
    /// the table as it is now, not as this connection last saw it.
    #[test]
    fn select_star_sees_a_table_recreated_by_another_connection() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("db.sqlite");
        let writer = Connection::open(&path).unwrap();
        let writer_guard = StatementGuard::install(&writer, GuardMode::Writer);
        let reader = Connection::open(&path).unwrap();
        let reader_guard = StatementGuard::install(&reader, GuardMode::Reader);
        exec(
            &writer,
            &writer_guard,
            "CREATE TABLE t1(a, b)",
            Params::None,
        );
        exec(
            &writer,
            &writer_guard,
            "INSERT INTO t1 VALUES (1, 2)",
            Params::None,
        );
        let before = exec(&reader, &reader_guard, "SELECT * FROM t1", Params::None);
        assert_eq!(before.rows.unwrap().columns, ["a", "b"]);

        exec(&writer, &writer_guard, "DROP TABLE t1", Params::None);
        exec(
            &writer,
            &writer_guard,
            "CREATE TABLE t1(x, y, z)",
            Params::None,
        );
        exec(
            &writer,
            &writer_guard,
            "INSERT INTO t1 VALUES (1, 2, 3)",
            Params::None,
        );

        let after = exec(&reader, &reader_guard, "SELECT * FROM t1", Params::None);
        assert_eq!(after.error, None);
        let rows = after.rows.unwrap();
        assert_eq!(rows.columns, ["x", "y", "z"]);
        assert_eq!(
            rows.values,
            vec![vec![
                SqlValue::Integer(1),
                SqlValue::Integer(2),
                SqlValue::Integer(3)
            ]]
        );
        let empty = exec(&writer, &writer_guard, "DELETE FROM t1", Params::None);
        assert_eq!(empty.error, None);
        exec(&writer, &writer_guard, "DROP TABLE t1", Params::None);
        exec(
            &writer,
            &writer_guard,
            "CREATE TABLE t1(p INTEGER, q TEXT)",
            Params::None,
        );
        let no_rows = exec(&reader, &reader_guard, "SELECT * FROM t1", Params::None);
        let rows = no_rows.rows.unwrap();
        assert_eq!(
            (rows.columns, rows.types),
            (
                vec!["p".to_string(), "q".to_string()],
                vec!["integer".to_string(), "text".to_string()]
            )
        );
    }

    #[test]
    fn a_script_may_recreate_the_table_it_drops() {
        let (c, g) = setup();
        exec(&c, &g, "CREATE TABLE t(a, b)", Params::None);
        let r = exec(&c, &g, "DROP TABLE t; CREATE TABLE t(x)", Params::None);
        assert_eq!(r.error, None);
        let r = exec(&c, &g, "SELECT * FROM t", Params::None);
        assert_eq!(r.rows.unwrap().columns, ["x"]);
    }

    #[test]
    fn a_failing_script_changes_nothing() {
        let (c, g) = setup();
        exec(&c, &g, "CREATE TABLE t(a UNIQUE)", Params::None);
        let r = exec(
            &c,
            &g,
            "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); INSERT INTO t VALUES (1)",
            Params::None,
        );
        assert!(r.error.unwrap().contains("UNIQUE constraint failed"));
        let r = exec(&c, &g, "SELECT count(*) FROM t", Params::None);
        assert_eq!(r.rows.unwrap().values, vec![vec![SqlValue::Integer(0)]]);
    }

    #[test]
    fn an_error_in_the_first_statement_of_a_script_is_reported_as_is() {
        let (c, g) = setup();
        let r = exec(&c, &g, "SELECT * FROM missing; SELECT 1", Params::None);
        assert_eq!(r.error.as_deref(), Some("no such table: missing"));
    }

    #[test]
    fn syntax_error_keeps_sqlite_message() {
        let (c, g) = setup();
        let r = exec(&c, &g, "SELEC 1", Params::None);
        assert!(r.error.unwrap().contains("syntax error"));
    }
}

#[cfg(test)]
mod shape_tests {
    use super::*;
    use crate::db::guard::GuardMode;

    #[test]
    fn a_shape_names_the_columns_of_the_tables_in_the_statement() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch(
                "CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, x); CREATE TABLE other(y)",
            )
            .unwrap();
        let guard = StatementGuard::install(&connection, GuardMode::Reader);
        let shape =
            statement_shape(&connection, &guard, "SELECT name FROM item WHERE id = ?1").unwrap();
        assert_eq!(shape.parameter_count, 1);
        assert!(shape.read_only);
        assert_eq!(
            shape.tables,
            vec![(
                "item".to_string(),
                vec![
                    ("id".to_string(), Some("INTEGER".to_string())),
                    ("name".to_string(), Some("TEXT".to_string())),
                    ("x".to_string(), None),
                ]
            )]
        );
    }
}
