//! Shoal's own functions on a sharded database, recognized by the router before SQLite sees
//! the statement: `SELECT shoal_distribute('t', 'column')`, `SELECT shoal_reference('t')`
//! and `SELECT * FROM shoal_plan('statement')`; and the checks a table passes before it is
//! distributed (constraints a group cannot enforce alone are refused by name).

use futures_util::future::join_all;
use rusqlite::Connection;

use crate::catalog::view::{DatabaseEntry, TableKind, positional};
use crate::db::dump::quote_identifier;
use crate::raft::types::{RowSet, Statement, StatementResult};
use crate::router::pinning::{number_parameters, param_value};
use crate::router::schema::{Schema, TableShape, table_shape};
use crate::router::tokens::{Token, tokenize};
use crate::router::{Router, group_request};
use crate::service::{RequestKind, ServiceError, ServiceRequest};
use crate::types::value::SqlValue;

/// A call of one of Shoal's functions.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Distribute {
        table: String,
        column: String,
    },
    Reference {
        table: String,
    },
    /// `shoal_plan(sql)` read by `query`, a SELECT over a table named `shoal_plan` (`None`:
    /// every row and column as they are).
    Plan {
        sql: String,
        query: Option<String>,
    },
}

/// The call `statement` makes, if it is one: `Ok(None)` for any other statement.
pub fn recognize(statement: &Statement) -> Result<Option<(Call, String)>, String> {
    if !mentions_shoal_function(&statement.sql) {
        return Ok(None);
    }
    if let Some(plan) = plan_call(statement)? {
        return Ok(Some((plan, String::new())));
    }
    let Some(tokens) = tokenize(&statement.sql) else {
        return Ok(None);
    };
    let tokens = number_parameters(&tokens);
    let mut tokens: &[Token] = &tokens;
    while let [rest @ .., last] = tokens
        && last.is_symbol(";")
    {
        tokens = rest;
    }
    let argument = |token: &Token| -> Option<String> {
        match token {
            Token::Text(text) => Some(text.clone()),
            Token::Param(param) => match param_value(param, &statement.params) {
                Some(SqlValue::Text(text)) => Some(text),
                _ => None,
            },
            _ => None,
        }
    };
    let (name, args) = match tokens {
        [select, Token::Word(name), open, args @ .., close]
            if select.is("select") && open.is_symbol("(") && close.is_symbol(")") =>
        {
            (name.as_str(), args)
        }
        _ => return Ok(None),
    };
    let args: Vec<Option<String>> = args
        .split(|t| t.is_symbol(","))
        .map(|arg| match arg {
            [one] => argument(one),
            _ => None,
        })
        .collect();
    let text_args = || -> Result<Vec<String>, String> {
        args.iter()
            .map(|a| {
                a.clone()
                    .ok_or_else(|| format!("{name} takes text arguments"))
            })
            .collect()
    };
    let column_name = statement.sql.trim().trim_end_matches(';').trim();
    let column_name = column_name
        .get(6..)
        .map(str::trim)
        .unwrap_or(name)
        .to_string();
    let call = match name {
        "shoal_distribute" => match text_args()?.as_slice() {
            [table, column] => Call::Distribute {
                table: table.clone(),
                column: column.clone(),
            },
            _ => return Err("shoal_distribute(table, column) takes two arguments".into()),
        },
        "shoal_reference" => match text_args()?.as_slice() {
            [table] => Call::Reference {
                table: table.clone(),
            },
            _ => return Err("shoal_reference(table) takes one argument".into()),
        },
        _ => return Ok(None),
    };
    Ok(Some((call, column_name)))
}

/// Whether `sql` could call one of Shoal's functions (it names one): a scan of its
/// bytes, so that every other statement skips tokenizing here.
/// Whether `sql` names one of Shoal's functions (any case): one pass over the text looking
/// for `shoal_`, then the names after it.
pub(crate) fn mentions_shoal_function(sql: &str) -> bool {
    const PREFIX: &[u8] = b"shoal_";
    let bytes = sql.as_bytes();
    (0..bytes.len().saturating_sub(PREFIX.len() - 1)).any(|at| {
        bytes[at].eq_ignore_ascii_case(&b's')
            && bytes[at..at + PREFIX.len()].eq_ignore_ascii_case(PREFIX)
            && FUNCTION_NAMES.iter().any(|name| {
                bytes
                    .get(at..at + name.len())
                    .is_some_and(|window| window.eq_ignore_ascii_case(name))
            })
    })
}

const FUNCTION_NAMES: [&[u8]; 3] = [b"shoal_distribute", b"shoal_reference", b"shoal_plan"];

/// A SELECT reading `shoal_plan('statement')` as a table: the call, and the SELECT with the
/// call replaced by the table's name.
fn plan_call(statement: &Statement) -> Result<Option<Call>, String> {
    let sql = &statement.sql;
    let Some(lexemes) = crate::router::tokens::lex(sql) else {
        return Ok(None);
    };
    let tokens: Vec<Token> = lexemes.iter().map(|l| l.token.clone()).collect();
    let numbered = number_parameters(&tokens);
    let Some(at) = tokens
        .windows(2)
        .position(|pair| pair[0].is("shoal_plan") && pair[1].is_symbol("("))
    else {
        return Ok(None);
    };
    if !tokens.first().is_some_and(|t| t.is("select"))
        || !at
            .checked_sub(1)
            .and_then(|before| tokens.get(before))
            .is_some_and(|t| t.is("from") || t.is("join") || t.is_symbol(","))
    {
        return Ok(None);
    }
    let argument = match numbered.get(at + 2) {
        Some(Token::Text(text)) => Some(text.clone()),
        Some(Token::Param(param)) => match param_value(param, &statement.params) {
            Some(SqlValue::Text(text)) => Some(text),
            _ => None,
        },
        _ => None,
    };
    let (Some(argument), Some(close)) = (argument, lexemes.get(at + 3)) else {
        return Err("shoal_plan(statement) takes one argument: the statement's text".into());
    };
    if !close.token.is_symbol(")") {
        return Err("shoal_plan(statement) takes one argument: the statement's text".into());
    }
    let mut rest: &[Token] = &tokens[at + 4..];
    while let [before @ .., last] = rest
        && last.is_symbol(";")
    {
        rest = before;
    }
    let everything = at == 3 && tokens[1].is_symbol("*") && rest.is_empty();
    let query = (!everything).then(|| {
        format!(
            "{}shoal_plan{}",
            &sql[..lexemes[at].start],
            &sql[close.end..]
        )
    });
    Ok(Some(Call::Plan {
        sql: argument,
        query,
    }))
}

/// The shard key a table gets in a database that distributes every table: its INTEGER
/// PRIMARY KEY or rowid (`None`) when no UNIQUE or PRIMARY KEY constraint binds other
/// columns; else the first column every such constraint includes (so each stays enforceable
/// in one group); else the rowid, which the constraints then refuse.
pub fn default_key(
    connection: &Connection,
    shape: &TableShape,
) -> rusqlite::Result<Option<String>> {
    let indexes: Vec<String> = connection
        .prepare("SELECT name FROM pragma_index_list(?1) WHERE \"unique\"")?
        .query_map([&shape.name], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut common: Option<Vec<String>> = None;
    for index in indexes {
        let columns: Vec<String> = connection
            .prepare("SELECT coalesce(name, '') FROM pragma_index_info(?1)")?
            .query_map([&index], |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?
            .into_iter()
            .map(|c| c.to_ascii_lowercase())
            .collect();
        common = Some(match common {
            None => columns,
            Some(kept) => kept.into_iter().filter(|c| columns.contains(c)).collect(),
        });
    }
    if let Some(alias) = &shape.rowid_alias {
        // An INTEGER PRIMARY KEY is unique too, though SQLite keeps no index for it.
        let alias = alias.to_ascii_lowercase();
        common = Some(match common {
            None => vec![alias],
            Some(kept) => kept.into_iter().filter(|c| *c == alias).collect(),
        });
    }
    let Some(common) = common else {
        return Ok(None);
    };
    Ok(shape
        .columns
        .iter()
        .find(|c| common.contains(&c.name.to_ascii_lowercase()))
        .map(|c| c.name.clone()))
}

/// Whether `shape` can be distributed by `key` (`None`: its rowid): every UNIQUE and
/// PRIMARY KEY constraint includes the key, no AUTOINCREMENT, a text key compares with
/// BINARY, and each foreign key is to a reference table or co-located on the key.
pub fn check_distributable(
    connection: &Connection,
    database: &DatabaseEntry,
    create_sql: &str,
    shape: &TableShape,
    key: Option<&str>,
) -> Result<(), String> {
    let table = &shape.name;
    let sqlite = |e: rusqlite::Error| format!("checking table {table}: {e}");
    if tokenize(create_sql).is_some_and(|t| t.iter().any(|t| t.is("autoincrement"))) {
        return Err(format!(
            "AUTOINCREMENT on {table} cannot be kept across shards (each group would count on \
             its own): drop AUTOINCREMENT; Shoal gives the new rows of a distributed table \
             rowids from one sequence for the whole database"
        ));
    }
    let key_name = key.map(str::to_string);
    if let Some(column) = &key_name {
        if !shape
            .columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(column))
        {
            return Err(format!(
                "table {table} has no column {column:?} to distribute by"
            ));
        }
        let (_, collation, ..) = connection
            .column_metadata(None::<&str>, table.as_str(), column.as_str())
            .map_err(sqlite)?;
        let collation = collation
            .map(|c| c.to_string_lossy().to_string())
            .unwrap_or_else(|| "BINARY".into());
        if !collation.eq_ignore_ascii_case("binary") {
            return Err(format!(
                "shard key {table}.{column} compares with COLLATE {collation}: keys equal under \
                 it can hash apart; distribute by a column with the default BINARY collation"
            ));
        }
    }
    let key_label = key_name.clone().unwrap_or_else(|| "rowid".into());
    // The rowid itself, whatever names it: the key when none is named, or its alias.
    let key_is_rowid = key_name.as_ref().is_none_or(|k| {
        shape
            .rowid_alias
            .as_ref()
            .is_some_and(|alias| alias.eq_ignore_ascii_case(k))
    });

    let indexes: Vec<(String, String)> = connection
        .prepare("SELECT name, origin FROM pragma_index_list(?1) WHERE \"unique\"")
        .and_then(|mut s| {
            s.query_map([table], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
        .map_err(sqlite)?;
    for (index, origin) in indexes {
        let columns: Vec<String> = connection
            .prepare("SELECT coalesce(name, '<expression>') FROM pragma_index_info(?1)")
            .and_then(|mut s| s.query_map([&index], |row| row.get(0))?.collect())
            .map_err(sqlite)?;
        let holds_key = columns.iter().any(|c| {
            key_name.as_ref().is_some_and(|k| c.eq_ignore_ascii_case(k))
                || (key_is_rowid
                    && shape
                        .rowid_alias
                        .as_ref()
                        .is_some_and(|alias| c.eq_ignore_ascii_case(alias)))
        });
        if !holds_key {
            let what = if origin == "pk" {
                "PRIMARY KEY"
            } else {
                "UNIQUE"
            };
            return Err(format!(
                "{what} ({}) on {table} cannot be enforced across shards: it does not include \
                 the shard key {key_label}; include the shard key in it, distribute by one of \
                 its columns, or make {table} a reference table",
                columns.join(", ")
            ));
        }
    }
    let foreign: Vec<(String, String, Option<String>)> = connection
        .prepare("SELECT \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1)")
        .and_then(|mut s| {
            s.query_map([table], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect()
        })
        .map_err(sqlite)?;
    for (parent, from, to) in foreign {
        let parent_lower = parent.to_ascii_lowercase();
        let self_reference = parent_lower == table.to_ascii_lowercase();
        let parent_key = if self_reference {
            Some(TableKind::Distributed {
                key: key_name.clone(),
            })
        } else {
            database.tables.get(&parent_lower).cloned()
        };
        let co_located = match &parent_key {
            Some(TableKind::Reference) => true,
            Some(TableKind::Distributed {
                key: Some(parent_column),
            }) => {
                key_name
                    .as_ref()
                    .is_some_and(|k| k.eq_ignore_ascii_case(&from))
                    && to
                        .as_ref()
                        .is_some_and(|t| t.eq_ignore_ascii_case(parent_column))
            }
            _ => false,
        };
        if !co_located {
            return Err(format!(
                "FOREIGN KEY ({from}) REFERENCES {parent} on {table} cannot be enforced across \
                 shards: {parent} must be a reference table, or be distributed by the \
                 referenced column while {table} is distributed by {from}"
            ));
        }
    }
    Ok(())
}

/// Runs `query` over `plan`'s rows, loaded into an in-memory table named `shoal_plan`.
fn select_from_plan(plan: StatementResult, query: &str) -> StatementResult {
    let load = || -> rusqlite::Result<Connection> {
        let connection = Connection::open_in_memory()?;
        connection.execute_batch(
            "CREATE TABLE shoal_plan (step INTEGER, tier TEXT, groups INTEGER, sql TEXT)",
        )?;
        let mut insert = connection.prepare("INSERT INTO shoal_plan VALUES (?1, ?2, ?3, ?4)")?;
        for row in plan.rows.iter().flat_map(|rows| rows.values.iter()) {
            insert.execute(rusqlite::params_from_iter(row.iter()))?;
        }
        drop(insert);
        Ok(connection)
    };
    match load() {
        Ok(connection) => {
            let guard = crate::db::guard::StatementGuard::install(
                &connection,
                crate::db::guard::GuardMode::Reader,
            );
            crate::db::execute::execute_statement(&connection, &guard, &Statement::plain(query))
        }
        Err(e) => StatementResult::failed(format!("reading a plan: {e}")),
    }
}

/// Runs a call; its one result.
pub async fn run(
    router: &Router,
    database: &DatabaseEntry,
    request: &ServiceRequest,
    call: Call,
    column_name: String,
) -> Result<StatementResult, ServiceError> {
    match call {
        Call::Plan { sql, query } => {
            let plan = crate::router::batch::explain(router, database, &sql).await?;
            match query {
                None => Ok(plan),
                Some(query) => tokio::task::spawn_blocking(move || select_from_plan(plan, &query))
                    .await
                    .map_err(|e| ServiceError::Internal(format!("reading a plan: {e}"))),
            }
        }
        Call::Distribute { table, column } => {
            let key = if ["rowid", "_rowid_", "oid"].contains(&column.to_ascii_lowercase().as_str())
            {
                None
            } else {
                Some(column)
            };
            set_kind(
                router,
                database,
                request,
                &table,
                TableKind::Distributed { key },
                column_name,
            )
            .await
        }
        Call::Reference { table } => {
            set_kind(
                router,
                database,
                request,
                &table,
                TableKind::Reference,
                column_name,
            )
            .await
        }
    }
}

async fn set_kind(
    router: &Router,
    database: &DatabaseEntry,
    request: &ServiceRequest,
    table: &str,
    kind: TableKind,
    column_name: String,
) -> Result<StatementResult, ServiceError> {
    let schema: std::sync::Arc<Schema> = router.schema(database, true).await?;
    let Some(shape) = schema.table(table).map_err(ServiceError::Internal)? else {
        return Ok(StatementResult::failed(format!("no such table: {table}")));
    };
    let lower = shape.name.to_ascii_lowercase();
    if let Some(existing) = database.tables.get(&lower) {
        if *existing == kind {
            return Ok(done(column_name));
        }
        return Ok(StatementResult::failed(format!(
            "table {} is already {}; a table's kind is set once, while it is empty",
            shape.name,
            describe(existing)
        )));
    }
    if let TableKind::Distributed { key } = &kind {
        let create_sql = schema
            .statements
            .iter()
            .find(|sql| {
                table_shape_name(sql).is_some_and(|name| name.eq_ignore_ascii_case(&shape.name))
            })
            .cloned()
            .unwrap_or_default();
        let checked = schema
            .with_connection(|connection| {
                let key = match key.as_deref() {
                    Some(column)
                        if shape
                            .rowid_alias
                            .as_deref()
                            .is_some_and(|a| a.eq_ignore_ascii_case(column)) =>
                    {
                        None
                    }
                    other => other,
                };
                check_distributable(connection, database, &create_sql, &shape, key)
            })
            .map_err(ServiceError::Internal)?;
        if let Err(refusal) = checked {
            return Ok(StatementResult::failed(refusal));
        }
    }
    // Only an empty table changes kind: rows already written stay where they are.
    let count_sql = format!("SELECT count(*) FROM {}", quote_identifier(&shape.name));
    let counts = join_all(database.groups.iter().map(|group| {
        let query = group_request(
            request,
            RequestKind::Query,
            vec![Statement::plain(count_sql.clone())],
            false,
        );
        async move { router.send(database, *group, query).await }
    }))
    .await;
    for response in counts {
        let result = response?.results.into_iter().next().unwrap_or_default();
        let rows = match result
            .rows
            .as_ref()
            .and_then(|r| r.values.first())
            .and_then(|r| r.first())
        {
            Some(SqlValue::Integer(n)) => *n,
            _ => -1,
        };
        if rows != 0 {
            return Ok(StatementResult::failed(format!(
                "table {} holds rows: a table becomes {} while it is empty (create it, set its \
                 kind, then fill it)",
                shape.name,
                describe(&kind)
            )));
        }
    }
    let (kind_text, key_column) = match &kind {
        TableKind::Reference => ("reference", SqlValue::Null),
        TableKind::Distributed { key } => (
            "distributed",
            key.clone().map_or(SqlValue::Null, SqlValue::Text),
        ),
    };
    let group = SqlValue::Integer(database.group as i64);
    router
        .databases()
        .write_catalog(vec![
            positional(
                "INSERT INTO table_kinds (database_group, table_name, kind, key_column)
                 VALUES (?1, ?2, ?3, ?4)",
                vec![group.clone(), SqlValue::Text(lower), SqlValue::Text(kind_text.into()), key_column],
            ),
            positional(
                "UPDATE database_options SET schema_epoch = schema_epoch + 1 WHERE database_group = ?1",
                vec![group],
            ),
        ])
        .await
        .map_err(ServiceError::from)?;
    router.databases().refresh().await?;
    router.forget_schema(database.group);
    tracing::info!(target: "audit", event = "table_kind_set", database = %database.name, table = %shape.name, kind = kind_text, "table kind set");
    Ok(done(column_name))
}

fn describe(kind: &TableKind) -> String {
    match kind {
        TableKind::Reference => "a reference table".into(),
        TableKind::Distributed { key } => {
            format!("distributed by {}", key.as_deref().unwrap_or("rowid"))
        }
    }
}

/// The name a CREATE TABLE statement creates.
fn table_shape_name(sql: &str) -> Option<String> {
    let tokens = tokenize(sql)?;
    let at = tokens.iter().position(|t| t.is("table"))?;
    let mut rest = &tokens[at + 1..];
    if rest.len() >= 3 && rest[0].is("if") && rest[1].is("not") && rest[2].is("exists") {
        rest = &rest[3..];
    }
    match rest {
        [_, dot, name, ..] if dot.is_symbol(".") => name.name(),
        [name, ..] => name.name(),
        _ => None,
    }
}

/// The result of a call that set a table's kind: one row, one NULL, named as written.
fn done(column_name: String) -> StatementResult {
    StatementResult {
        rows: Some(RowSet {
            columns: vec![column_name],
            types: vec![String::new()],
            values: vec![vec![SqlValue::Null]],
        }),
        ..Default::default()
    }
}

/// The shape of a table in a scratch connection, for checks before it exists anywhere.
pub fn shape_in(connection: &Connection, table: &str) -> Result<Option<TableShape>, String> {
    table_shape(connection, table).map_err(|e| format!("reading table {table}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(sql: &str) -> Statement {
        Statement::plain(sql)
    }

    #[test]
    fn a_plan_is_read_as_a_table() {
        assert_eq!(
            recognize(&statement("select * from shoal_plan('SELECT 1');")).unwrap(),
            Some((
                Call::Plan {
                    sql: "SELECT 1".into(),
                    query: None
                },
                String::new()
            ))
        );
        let Some((Call::Plan { sql, query }, _)) = recognize(&statement(
            "SELECT tier, groups FROM shoal_plan('SELECT ''a''') WHERE step = 1",
        ))
        .unwrap() else {
            panic!("not a plan call");
        };
        assert_eq!(sql, "SELECT 'a'");
        assert_eq!(
            query.as_deref(),
            Some("SELECT tier, groups FROM shoal_plan WHERE step = 1")
        );
        let plan = StatementResult {
            rows: Some(RowSet {
                columns: vec![],
                types: vec![],
                values: vec![vec![
                    SqlValue::Integer(1),
                    SqlValue::Text("scatter".into()),
                    SqlValue::Integer(4),
                    SqlValue::Text("SELECT 1".into()),
                ]],
            }),
            ..Default::default()
        };
        let read = select_from_plan(plan, "SELECT tier, groups FROM shoal_plan WHERE step = 1");
        assert_eq!(
            read.rows.unwrap().values,
            vec![vec![SqlValue::Text("scatter".into()), SqlValue::Integer(4)]]
        );
        assert!(recognize(&statement("SELECT * FROM shoal_plan(1)")).is_err());
    }

    #[test]
    fn calls_are_recognized_with_their_arguments() {
        assert_eq!(
            recognize(&statement(
                "SELECT shoal_distribute('orders', 'customer_id');"
            ))
            .unwrap(),
            Some((
                Call::Distribute {
                    table: "orders".into(),
                    column: "customer_id".into()
                },
                "shoal_distribute('orders', 'customer_id')".into()
            ))
        );
        assert!(matches!(
            recognize(&statement("select * from shoal_plan('SELECT 1')")).unwrap(),
            Some((Call::Plan { .. }, _))
        ));
        let bound = Statement {
            sql: "SELECT shoal_distribute(?, ?)".into(),
            params: crate::types::Params::Positional(vec![
                SqlValue::Text("orders".into()),
                SqlValue::Text("customer_id".into()),
            ]),
        };
        assert!(matches!(
            recognize(&bound).unwrap(),
            Some((Call::Distribute { table, column }, _)) if table == "orders" && column == "customer_id"
        ));
        assert_eq!(recognize(&statement("SELECT shoal_x(1)")).unwrap(), None);
        assert_eq!(recognize(&statement("SELECT 1")).unwrap(), None);
        assert!(recognize(&statement("SELECT shoal_reference(1)")).is_err());
    }

    fn refusal(create: &str, key: Option<&str>, database: &DatabaseEntry) -> Option<String> {
        let schema = Schema::build(0, vec![create.into()]).unwrap();
        let shape = schema.table("t").unwrap().unwrap();
        schema
            .with_connection(|c| check_distributable(c, database, create, &shape, key))
            .unwrap()
            .err()
    }

    fn database() -> DatabaseEntry {
        DatabaseEntry::sharded_for_tests()
    }

    #[test]
    fn unenforceable_constraints_are_refused_by_name() {
        let db = database();
        assert_eq!(
            refusal(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, c INTEGER)",
                None,
                &db
            ),
            None
        );
        assert_eq!(
            refusal(
                "CREATE TABLE t (c INTEGER, e TEXT, UNIQUE (c, e))",
                Some("c"),
                &db
            ),
            None
        );
        let unique = refusal("CREATE TABLE t (c INTEGER, e TEXT UNIQUE)", Some("c"), &db).unwrap();
        assert!(
            unique.contains("UNIQUE (e)") && unique.contains("shard key c"),
            "{unique}"
        );
        let pk = refusal(
            "CREATE TABLE t (c INTEGER, e TEXT PRIMARY KEY)",
            Some("c"),
            &db,
        )
        .unwrap();
        assert!(pk.contains("PRIMARY KEY (e)"), "{pk}");
        // An INTEGER PRIMARY KEY is the rowid: a UNIQUE constraint holding it holds the key
        // of a table distributed by its rowid.
        assert_eq!(
            refusal(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, c TEXT, UNIQUE (c, id))",
                Some("id"),
                &db
            ),
            None
        );
        let auto = refusal(
            "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT)",
            None,
            &db,
        )
        .unwrap();
        assert!(auto.contains("AUTOINCREMENT"), "{auto}");
        let nocase = refusal("CREATE TABLE t (c TEXT COLLATE NOCASE)", Some("c"), &db).unwrap();
        assert!(nocase.contains("COLLATE NOCASE"), "{nocase}");
        let fk = refusal(
            "CREATE TABLE t (c INTEGER REFERENCES other(id))",
            Some("c"),
            &db,
        )
        .unwrap();
        assert!(fk.contains("FOREIGN KEY (c) REFERENCES other"), "{fk}");
    }
}
