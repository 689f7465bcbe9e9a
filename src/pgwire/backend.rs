//! The PostgreSQL protocol handlers: simple and extended queries become service requests
//! (reads at the session's consistency, writes through the log at its write concern, on the
//! leader wherever the client is connected), and results become row descriptions, data rows
//! and command tags; errors carry a SQLSTATE.

use std::sync::Arc;

use async_trait::async_trait;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::{ClientInfo, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

use crate::auth::Permission;
use crate::auth::access::is_ddl;
use crate::auth::gate::Gate;
use crate::catalog::databases::Databases;
use crate::catalog::handle::DatabaseHandle;
use crate::catalog::sql::DatabaseStatement;
use crate::catalog::statements::SHOW_COLUMNS as SHOW_DATABASES_COLUMNS;
use crate::pgwire::catalog::{self, Catalog, is_catalog_query};
use crate::pgwire::cursors::{CursorStatement, cursor_statement};
use crate::pgwire::dialect;
use crate::pgwire::dialect::sequences::SequenceCall;
use crate::pgwire::infer::{expression_declarations, parameter_declarations};
use crate::pgwire::params::decode_parameter;
use crate::pgwire::privileges::{Privileges, needed};
use crate::pgwire::results::{
    column_format, command_tag, in_transaction_response, rows_response, simple_response, text_rows,
    wire_type,
};
use crate::pgwire::schema_change;
use crate::pgwire::sequences::{self, SequenceWrites};
use crate::pgwire::session::{LocalStatement, Session, recognize};
use crate::pgwire::sqlstate::{
    self, error_info, service_error, session_error, statement_error, user_error,
};
use crate::pgwire::transaction::{Transactions, is_rollback_to_savepoint};
use crate::pgwire::types::PgType;
use crate::raft::types::{Params, RowSet, Statement, StatementBatch, StatementResult};
use crate::service::request::{RequestKind, ServiceError};
use crate::sqltext::split_statements;
use crate::types::value::SqlValue;

/// A statement prepared through the extended protocol.
#[derive(Debug, Clone)]
pub struct PreparedStatement {
    /// The text SQLite runs (`$N` rewritten to `?N`).
    sql: String,
    /// Set when the endpoint answers the statement itself.
    local: Option<LocalStatement>,
    /// A query of PostgreSQL's catalogs, answered from the emulated catalog.
    catalog: bool,
    /// Parameter types reported by Describe: the client's where it gave them, else text.
    parameter_types: Vec<Type>,
    /// Result columns as described: their values are sent in exactly these types.
    columns: Vec<(String, PgType)>,
    read_only: bool,
    /// An `ALTER TABLE` made from the schema when it runs (`sql` is then as written).
    alter: Option<Arc<dialect::AlterPlan>>,
    /// Sequence functions evaluated before each run (their placeholders are in `sql`).
    sequences: Vec<SequenceCall>,
    /// The translation, when it adds parameters to times: which are intervals is decided by
    /// how each run binds them (`Translation::with_interval_parameters`).
    intervals: Option<Arc<dialect::Translation>>,
    /// The INSERTs a statement runs as, together (see `Translation::split`); empty for one.
    split: Vec<String>,
    /// A TRUNCATE's tables (`sql` is then as written).
    truncate: Option<dialect::truncate::Truncation>,
    /// A cursor statement (for DECLARE, `sql` is its query as SQLite runs it).
    cursor: Option<CursorStatement>,
}

impl PreparedStatement {
    /// `sql` with nothing described yet: no parameters, no result columns, not read-only, run
    /// as plain SQL; the caller sets what applies (a plan, a local statement, the columns).
    fn bare(sql: &str) -> PreparedStatement {
        PreparedStatement {
            sql: sql.to_string(),
            local: None,
            catalog: false,
            parameter_types: Vec::new(),
            columns: Vec::new(),
            read_only: false,
            alter: None,
            sequences: Vec::new(),
            intervals: None,
            split: Vec::new(),
            truncate: None,
            cursor: None,
        }
    }
}

/// The handlers of every connection; per-session state lives in the connection's session
/// extensions.
pub struct Backend {
    databases: Arc<Databases>,
    parser: Arc<StatementParser>,
    transactions: Transactions,
    privileges: Arc<Privileges>,
}

impl Backend {
    pub fn new(databases: Arc<Databases>, gate: Arc<Gate>) -> Backend {
        let privileges = Arc::new(Privileges::new(gate, databases.clone()));
        Backend {
            privileges: privileges.clone(),
            parser: Arc::new(StatementParser {
                databases: databases.clone(),
                privileges,
            }),
            transactions: Transactions::new(databases.clone()),
            databases,
        }
    }

    /// Runs statements SQLite answers, one request; `transaction` makes them all or nothing.
    async fn run(
        &self,
        session: &Session,
        kind: RequestKind,
        statements: Vec<Statement>,
        transaction: bool,
    ) -> Result<Vec<StatementResult>, ServiceError> {
        let request = session
            .request_options()
            .request(kind, vec![StatementBatch::new(statements, transaction)]);
        let response = session_database(&self.databases, session)
            .await?
            .handle(request)
            .await?;
        if let Some(index) = response.raft_index {
            session.wrote_at(index);
        }
        if let Some(error) = response.write_concern_error {
            return Err(ServiceError::Unavailable(format!(
                "the write is committed, but its write concern was not confirmed: {}",
                error.message
            )));
        }
        Ok(response.results)
    }

    /// Runs a (rewritten) catalog query on a catalog built from this node's schema.
    /// Answers a catalog query (psql's \d, drivers' introspection) from this node's schema,
    /// once the session's own earlier writes are applied here (DDL run on a follower's
    /// session is then visible to that session's next \d).
    async fn run_catalog(
        &self,
        session: &Session,
        statement: Statement,
    ) -> Result<StatementResult, Box<ErrorInfo>> {
        let database = session_database(&self.databases, session)
            .await
            .map_err(|error| service_error(&error))?;
        wait_for_own_writes(&database, session).await;
        with_catalog(&self.databases, &database, session, move |catalog| {
            catalog.run(&statement)
        })
        .await
    }

    /// Answers a statement the endpoint handles itself.
    async fn run_local(&self, session: &Session, local: &LocalStatement) -> Response {
        let outcome = match local {
            LocalStatement::Set { name, value } => session
                .set(name, value.as_deref())
                .map(|()| Response::Execution(Tag::new("SET"))),
            LocalStatement::Reset(name) => {
                session.reset(name.as_deref());
                Ok(Response::Execution(Tag::new(if name.is_some() {
                    "RESET"
                } else {
                    "DISCARD ALL"
                })))
            }
            LocalStatement::Show(name) if name == "all" => {
                let rows = session
                    .show_all()
                    .into_iter()
                    .map(|(name, value)| vec![SqlValue::Text(name), SqlValue::Text(value)])
                    .collect();
                Ok(text_rows(&["name", "setting"], rows))
            }
            LocalStatement::Show(name) => session
                .show(name)
                .map(|value| text_rows(&[name.as_str()], vec![vec![SqlValue::Text(value)]])),
            LocalStatement::SetConfig {
                name,
                value,
                column,
            } => session.set(name, Some(value)).map(|()| {
                text_rows(
                    &[column.as_str()],
                    vec![vec![SqlValue::Text(value.clone())]],
                )
            }),
            LocalStatement::Info { column, value } => Ok(text_rows(
                &[column.as_str()],
                vec![vec![SqlValue::Text(value.clone())]],
            )),
            LocalStatement::SetConstraints => Ok(Response::Execution(Tag::new("SET CONSTRAINTS"))),
            LocalStatement::Deallocate { all } => Ok(Response::Execution(Tag::new(if *all {
                "DEALLOCATE ALL"
            } else {
                "DEALLOCATE"
            }))),
            LocalStatement::Transaction(verb) => {
                if matches!(*verb, "COMMIT" | "ROLLBACK") {
                    session.cursors.end_of_transaction();
                }
                return self.transactions.control(session, verb).await;
            }
            LocalStatement::Database(statement) => {
                return self
                    .run_database_statement(session, statement.clone())
                    .await
                    .unwrap_or_else(Response::Error);
            }
        };
        outcome.unwrap_or_else(|error| Response::Error(session_error(&error)))
    }

    /// Runs an `ALTER TABLE` made from the schema (see `schema_change`).
    async fn run_alter(&self, session: &Session, sql: &str, plan: &dialect::AlterPlan) -> Response {
        // On a sharded database a CREATE TABLE goes to the router as written (enum values are
        // not checked there).
        if let Some(create) = &plan.create {
            let sharded = session_database(&self.databases, session)
                .await
                .is_ok_and(|database| database.sharded().is_some());
            if sharded {
                return self.run_as_written(session, sql, create).await;
            }
        }
        match schema_change::run_alter(&self.transactions, &self.databases, session, plan).await {
            Ok(()) => Response::Execution(command_tag(sql, 0)),
            Err(info) => Response::Error(info),
        }
    }

    /// Runs one statement outside any transaction block: its result, or the service's error.
    async fn run_one(
        &self,
        session: &Session,
        kind: RequestKind,
        statement: Statement,
    ) -> Result<StatementResult, Box<ErrorInfo>> {
        match self.run(session, kind, vec![statement], false).await {
            Ok(mut results) if results.len() == 1 => Ok(results.remove(0)),
            Ok(results) => Err(error_info(
                sqlstate::INTERNAL_ERROR,
                format!("expected one result, got {}", results.len()),
            )),
            Err(error) => Err(service_error(&error)),
        }
    }

    /// Runs a cursor statement (see `cursors`): DECLARE reads its query's rows now (`declared`,
    /// SQLite's text of it, with `params`), FETCH hands out the next ones in `format`, CLOSE
    /// forgets them.
    async fn run_cursor(
        &self,
        session: &Session,
        statement: &CursorStatement,
        declared: Option<String>,
        params: Params,
        format: &Format,
    ) -> Response {
        let missing = |name: &str| {
            Response::Error(error_info(
                sqlstate::INVALID_CURSOR_NAME,
                format!("cursor \"{name}\" does not exist"),
            ))
        };
        match statement {
            CursorStatement::Declare { name, query, hold } => {
                let Some(sql) = declared else {
                    return Response::Error(error_info(
                        sqlstate::INTERNAL_ERROR,
                        "a DECLARE without its query",
                    ));
                };
                let statement = Statement { sql, params };
                let outcome = if session.in_transaction() {
                    self.transactions.execute(session, statement).await
                } else {
                    self.run_one(session, RequestKind::Query, statement).await
                };
                let result = match outcome {
                    Ok(result) => result,
                    Err(info) => return Response::Error(info),
                };
                if let Some(message) = &result.error {
                    return Response::Error(statement_error(message));
                }
                let Some(set) = result.rows else {
                    return Response::Error(error_info(
                        sqlstate::INVALID_CURSOR_DEFINITION,
                        "a cursor's query must return rows (SELECT, VALUES or … RETURNING)",
                    ));
                };
                let cursor = crate::pgwire::cursors::Cursor {
                    columns: crate::pgwire::results::described_columns(query, &set),
                    rows: set.values.into(),
                    // Outside a transaction block a cursor lives on, as WITH HOLD.
                    hold: *hold || !session.in_transaction(),
                };
                match session.cursors.declare(name, cursor) {
                    Ok(()) => Response::Execution(Tag::new("DECLARE CURSOR")),
                    Err(message) => {
                        Response::Error(error_info(sqlstate::DUPLICATE_CURSOR, message))
                    }
                }
            }
            CursorStatement::Fetch { name, count } => {
                let Some((columns, values)) = session.cursors.fetch(name, *count) else {
                    return missing(name);
                };
                let set = RowSet {
                    columns: columns.iter().map(|(name, _)| name.clone()).collect(),
                    types: Vec::new(),
                    values,
                };
                rows_response("FETCH", &set, &columns, format)
            }
            CursorStatement::Close { name } => {
                if session.cursors.close(name.as_deref()) {
                    Response::Execution(Tag::new("CLOSE CURSOR"))
                } else {
                    missing(name.as_deref().unwrap_or_default())
                }
            }
        }
    }

    /// Runs a TRUNCATE (see `schema_change::run_truncate`); on a sharded database the tables'
    /// rows are deleted through the router in the order written, together.
    async fn run_truncate(
        &self,
        session: &Session,
        truncation: &dialect::truncate::Truncation,
    ) -> Response {
        let sharded = session_database(&self.databases, session)
            .await
            .is_ok_and(|database| database.sharded().is_some());
        let outcome = if sharded {
            let deletes: Vec<String> = truncation
                .tables
                .iter()
                .map(|table| format!("DELETE FROM {}", crate::db::dump::quote_identifier(table)))
                .collect();
            match self.run_split(session, &deletes, Params::None).await {
                Ok(result) => match result.error {
                    Some(message) => Err(statement_error(&message)),
                    None => Ok(()),
                },
                Err(info) => Err(info),
            }
        } else {
            schema_change::run_truncate(&self.transactions, session, truncation).await
        };
        match outcome {
            Ok(()) => Response::Execution(Tag::new("TRUNCATE TABLE")),
            Err(info) => Response::Error(info),
        }
    }

    /// Runs the INSERTs a statement was split into (`Translation::split`) as that one
    /// statement: in one request, all or nothing (or in the session's transaction block, where
    /// a failure fails the block), their RETURNING rows joined in order and counts added.
    async fn run_split(
        &self,
        session: &Session,
        parts: &[String],
        params: Params,
    ) -> Result<StatementResult, Box<ErrorInfo>> {
        // Each part takes the parameters up to the highest it names (SQLite counts `?4` as
        // four parameters, and a statement must be given exactly its count).
        let statements: Vec<Statement> = parts
            .iter()
            .map(|sql| Statement {
                sql: sql.clone(),
                params: match &params {
                    Params::Positional(values) => {
                        let count = highest_parameter(sql).min(values.len());
                        if count == 0 {
                            Params::None
                        } else {
                            Params::Positional(values[..count].to_vec())
                        }
                    }
                    other => other.clone(),
                },
            })
            .collect();
        let results = if session.in_transaction() {
            let mut results = Vec::with_capacity(statements.len());
            for statement in statements {
                let result = self.transactions.execute(session, statement).await?;
                let failed = result.error.is_some();
                results.push(result);
                if failed {
                    break;
                }
            }
            results
        } else {
            self.run(session, RequestKind::Execute, statements, true)
                .await
                .map_err(|error| service_error(&error))?
        };
        Ok(joined_results(results))
    }

    /// Runs `text` (SQLite's form of `sql`) as one statement, in the session's transaction
    /// if one is open.
    async fn run_as_written(&self, session: &Session, sql: &str, text: &str) -> Response {
        let statement = Statement::plain(text.to_string());
        if session.in_transaction() {
            return match self.transactions.execute(session, statement).await {
                Ok(result) => in_transaction_response(sql, result),
                Err(info) => Response::Error(info),
            };
        }
        match self.run_one(session, RequestKind::Unified, statement).await {
            Ok(result) => simple_response(sql, result),
            Err(info) => Response::Error(info),
        }
    }

    /// Creates, drops, renames or lists databases (through the cluster catalog).
    async fn run_database_statement(
        &self,
        session: &Session,
        statement: Result<DatabaseStatement, String>,
    ) -> Result<Response, Box<ErrorInfo>> {
        let statement = statement.map_err(|message| error_info(sqlstate::SYNTAX_ERROR, message))?;
        let (tag, changes) = match &statement {
            DatabaseStatement::Show => ("SHOW", false),
            DatabaseStatement::Create { .. } => ("CREATE DATABASE", true),
            DatabaseStatement::Drop { .. } => ("DROP DATABASE", true),
            DatabaseStatement::Balance { dry_run: true, .. } => ("ALTER DATABASE", false),
            DatabaseStatement::Rename { .. }
            | DatabaseStatement::Reshard { .. }
            | DatabaseStatement::Balance { .. }
            | DatabaseStatement::SetAutoBalance { .. }
            | DatabaseStatement::CancelResharding { .. } => ("ALTER DATABASE", true),
        };
        if changes && session.in_transaction() {
            return Err(error_info(
                sqlstate::ACTIVE_SQL_TRANSACTION,
                format!("{tag} cannot run inside a transaction block"),
            ));
        }
        if changes {
            // Databases are managed cluster-wide: a grant in one database does not do.
            self.privileges
                .require_cluster_wide(session, Permission::Ddl)
                .await?;
        } else {
            self.privileges
                .require_one_of(session, &[Permission::Read])
                .await?;
        }
        let result = self
            .databases
            .run(statement)
            .await
            .map_err(|error| service_error(&error))?;
        let Some(set) = result.rows else {
            return Ok(Response::Execution(Tag::new(tag)));
        };
        // Every column as text: the extended protocol described them so.
        let rows = set
            .values
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|value| match value {
                        SqlValue::Integer(number) => SqlValue::Text(number.to_string()),
                        other => other,
                    })
                    .collect()
            })
            .collect();
        Ok(text_rows(SHOW_DATABASES_COLUMNS, rows))
    }
}

/// The connection's session, created on first use with the settings the client sent at
/// startup (`options=-c name=value …`, as libpq's PGOPTIONS, and `application_name`).
pub fn session_of<C: ClientInfo>(client: &C) -> Arc<Session> {
    client.session_extensions().get_or_insert_with(|| {
        let metadata = client.metadata();
        let session = Session::for_user(
            metadata
                .get(pgwire::api::METADATA_USER)
                .cloned()
                .unwrap_or_default(),
            metadata
                .get(crate::pgwire::login::SESSION_DATABASE)
                .cloned()
                .unwrap_or_else(|| crate::catalog::view::DEFAULT_DATABASE.to_string()),
        );
        if let Some(name) = metadata.get("application_name") {
            let _ = session.set("application_name", Some(name));
        }
        if let Some(options) = metadata.get("options") {
            for (name, value) in startup_options(options) {
                if let Err(error) = session.set(&name, Some(&value)) {
                    tracing::debug!(%name, message = %error.message, "startup option ignored");
                }
            }
        }
        session
    })
}

/// `-c name=value` pairs (also `--name=value`) from a startup `options` string.
fn startup_options(options: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut words = options.split_whitespace();
    while let Some(word) = words.next() {
        let setting = match word {
            "-c" => words.next(),
            other => other
                .strip_prefix("-c")
                .or_else(|| other.strip_prefix("--")),
        };
        if let Some((name, value)) = setting.and_then(|s| s.split_once('=')) {
            pairs.push((name.replace('-', "_"), value.to_string()));
        }
    }
    pairs
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let started = std::time::Instant::now();
        let session = session_of(client);
        let responses = self.simple_query(&session, query).await;
        let ok = responses.iter().all(|r| !matches!(r, Response::Error(_)));
        crate::metrics::metrics().record_pg("simple", ok, started.elapsed());
        Ok(responses)
    }
}

impl Backend {
    /// Checks the user may run every statement of a simple query (with `--auth`).
    async fn authorize_simple(
        &self,
        session: &Session,
        statements: &[&str],
    ) -> Result<(), Box<ErrorInfo>> {
        let mut sqlite = Vec::new();
        for sql in statements {
            if recognize(sql, session).is_some() {
                continue;
            }
            match cursor_statement(sql) {
                Some(CursorStatement::Declare { query, .. }) => {
                    sqlite.push(sqlite_text(&query)?);
                    continue;
                }
                Some(_) => continue,
                None => {}
            }
            if is_catalog_query(sql) {
                // The schema, not rows: read, or a grant on some table.
                self.privileges
                    .require_one_of(session, &[Permission::Read])
                    .await?;
            } else {
                sqlite.push(sqlite_text(sql)?);
            }
        }
        self.privileges.require_for(session, &sqlite).await
    }

    /// The responses to a simple-protocol query string, one per statement run.
    async fn simple_query(&self, session: &Session, query: &str) -> Vec<Response> {
        let statements = split_statements(query);
        let mut responses = Vec::with_capacity(statements.len());
        if let Some(refusal) = self.transactions.refuse_if_failed(session, &statements) {
            return vec![refusal];
        }
        if let Err(info) = self.authorize_simple(session, &statements).await {
            self.transactions.fail(session);
            return vec![Response::Error(info)];
        }
        // Several statements without a transaction block run as one implicit transaction, as
        // in PostgreSQL: one log entry, all or nothing.
        let implicit = statements.len() > 1
            && !session.in_transaction()
            && statements.iter().all(|s| {
                recognize(s, session).is_none()
                    && cursor_statement(s).is_none()
                    && !is_catalog_query(s)
                    && translation(s).is_ok_and(|t| {
                        t.alter.is_none()
                            && t.sequences.is_empty()
                            && t.split.is_empty()
                            && t.truncate.is_none()
                    })
            });
        if implicit {
            let batch = match statements
                .iter()
                .map(|s| sqlite_text(s).map(Statement::plain))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(batch) => batch,
                Err(info) => return vec![Response::Error(info)],
            };
            match self.run(session, RequestKind::Unified, batch, true).await {
                Ok(results) => {
                    for (sql, result) in statements.iter().zip(results) {
                        let response = simple_response(sql, result);
                        let failed = matches!(response, Response::Error(_));
                        responses.push(response);
                        if failed {
                            break;
                        }
                    }
                }
                Err(error) => responses.push(Response::Error(service_error(&error))),
            }
            return responses;
        }
        for sql in statements {
            let response = match (recognize(sql, session), alter_plan(sql)) {
                (None, _) if let Some(statement) = cursor_statement(sql) => {
                    let declared = match &statement {
                        CursorStatement::Declare { query, .. } => sqlite_text(query).map(Some),
                        _ => Ok(None),
                    };
                    match declared {
                        Ok(declared) => {
                            self.run_cursor(
                                session,
                                &statement,
                                declared,
                                Params::None,
                                &Format::UnifiedText,
                            )
                            .await
                        }
                        Err(info) => Response::Error(info),
                    }
                }
                (Some(local), _) => self.run_local(session, &local).await,
                (None, _) if let Some(truncation) = truncation_of(sql) => {
                    self.run_truncate(session, &truncation).await
                }
                (None, Some(plan)) => self.run_alter(session, sql, &plan).await,
                (None, None) if is_catalog_query(sql) => {
                    match self
                        .run_catalog(session, Statement::plain(catalog::rewrite(sql)))
                        .await
                    {
                        Ok(result) => simple_response(sql, result),
                        Err(info) => Response::Error(info),
                    }
                }
                (None, None) => match translation(sql) {
                    Ok(translated) if !translated.split.is_empty() => {
                        match self
                            .run_split(session, &translated.split, Params::None)
                            .await
                        {
                            Ok(result) if session.in_transaction() => {
                                in_transaction_response(sql, result)
                            }
                            Ok(result) => simple_response(sql, result),
                            Err(info) => Response::Error(info),
                        }
                    }
                    Ok(translated) if translated.sequences.is_empty() => {
                        self.run_as_written(session, sql, &translated.sql).await
                    }
                    Ok(translated) => {
                        match sequences::with_values(
                            self,
                            session,
                            &translated.sql,
                            &translated.sequences,
                        )
                        .await
                        {
                            Ok(text) => self.run_as_written(session, sql, &text).await,
                            Err(info) => Response::Error(info),
                        }
                    }
                    Err(info) => Response::Error(info),
                },
            };
            let failed = matches!(response, Response::Error(_));
            if failed {
                self.transactions.fail(session);
            }
            responses.push(response);
            if failed {
                break;
            }
        }
        responses
    }
}

/// The highest `?N` parameter `sql` names (0 for none).
fn highest_parameter(sql: &str) -> usize {
    let mut highest = 0;
    let mut number: Option<usize> = None;
    crate::sqltext::for_each_code_char(sql, |_, c| {
        match (number, c.to_digit(10)) {
            (Some(n), Some(digit)) => {
                number = Some(n.saturating_mul(10).saturating_add(digit as usize));
            }
            (Some(n), None) => {
                highest = highest.max(n);
                number = None;
            }
            _ => {}
        }
        if c == '?' {
            number = Some(0);
        }
    });
    highest.max(number.unwrap_or(0))
}

/// The results of the parts of one statement as its result: the first error, else the rows
/// in order and the counts added.
fn joined_results(results: Vec<StatementResult>) -> StatementResult {
    let mut joined = StatementResult::default();
    for result in results {
        if result.error.is_some() {
            return StatementResult {
                error: result.error,
                ..StatementResult::default()
            };
        }
        joined.rows_affected += result.rows_affected;
        joined.last_insert_id = result.last_insert_id;
        joined.time_s += result.time_s;
        match (&mut joined.rows, result.rows) {
            (Some(rows), Some(more)) => rows.values.extend(more.values),
            (rows @ None, more) => *rows = more,
            (Some(_), None) => {}
        }
    }
    joined
}

/// The array type a catalog query casts parameter `number` to (`$1::oid[]`, `$2::int[]`).
fn catalog_parameter_array(sql: &str, number: usize) -> Option<Type> {
    let placeholder = format!("${number}");
    let at = sql
        .match_indices(&placeholder)
        .map(|(at, _)| at + placeholder.len())
        .find(|end| !sql[*end..].starts_with(|c: char| c.is_ascii_digit()))?;
    let cast = sql[at..].trim_start().strip_prefix("::")?.trim_start();
    let name: String = cast
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '[' || *c == ']')
        .collect();
    match name.to_ascii_lowercase().as_str() {
        "oid[]" | "regtype[]" | "regclass[]" => Some(Type::OID_ARRAY),
        "int[]" | "int4[]" | "integer[]" => Some(Type::INT4_ARRAY),
        "int8[]" | "bigint[]" => Some(Type::INT8_ARRAY),
        "text[]" | "name[]" | "varchar[]" => Some(Type::TEXT_ARRAY),
        _ => None,
    }
}

/// The array type a parameter compared with `operand` by `= ANY(…)` is described as: an array
/// of the operand column's type (`int4[]` for an INTEGER column), else `text[]`.
fn array_type_of(operand: &str, tables: &crate::db::execute::TableColumns) -> Type {
    let column = operand
        .rsplit('.')
        .next()
        .unwrap_or(operand)
        .trim_matches('"');
    let element = tables
        .iter()
        .flat_map(|(_, columns)| columns)
        .find(|(name, _)| name.eq_ignore_ascii_case(column))
        .and_then(|(_, declared)| declared.as_deref().and_then(PgType::for_declared));
    match element {
        Some(PgType::Int2) => Type::INT2_ARRAY,
        Some(PgType::Int4) => Type::INT4_ARRAY,
        Some(PgType::Int8) => Type::INT8_ARRAY,
        Some(PgType::Float8) => Type::FLOAT8_ARRAY,
        Some(PgType::Numeric(_)) => Type::NUMERIC_ARRAY,
        Some(PgType::Bool) => Type::BOOL_ARRAY,
        Some(PgType::Uuid) => Type::UUID_ARRAY,
        Some(PgType::Date) => Type::DATE_ARRAY,
        Some(PgType::Timestamp) => Type::TIMESTAMP_ARRAY,
        Some(PgType::TimestampTz) => Type::TIMESTAMPTZ_ARRAY,
        Some(PgType::Varchar(_)) => Type::VARCHAR_ARRAY,
        Some(PgType::Bytea) => Type::BYTEA_ARRAY,
        _ => Type::TEXT_ARRAY,
    }
}

/// Whether `time` (SQLite text of an operand) is a time: a column declared as a date or
/// timestamp in `tables`, or a time Shoal's translation computes (`now()`, a cast to a date).
fn is_time_operand(time: &str, tables: &crate::db::execute::TableColumns) -> bool {
    if time.contains("strftime('%Y-%m-%d") || time.starts_with("coalesce(date(") {
        return true;
    }
    let column = time.rsplit('.').next().unwrap_or(time).trim_matches('"');
    tables
        .iter()
        .flat_map(|(_, columns)| columns)
        .filter(|(name, _)| name.eq_ignore_ascii_case(column))
        .any(|(_, declared)| {
            matches!(
                declared.as_deref().and_then(PgType::for_declared),
                Some(PgType::Date | PgType::Timestamp | PgType::TimestampTz)
            )
        })
}

impl SequenceWrites for Backend {
    /// A sequence's write: its own log entry, outside any transaction block (as PostgreSQL's
    /// nextval/setval are never rolled back), allowed to users who may write the sequence.
    async fn write(
        &self,
        session: &Session,
        sql: String,
    ) -> Result<crate::raft::types::StatementResult, Box<ErrorInfo>> {
        self.privileges
            .require_for(session, std::slice::from_ref(&sql))
            .await?;
        self.run_one(session, RequestKind::Execute, Statement::plain(sql))
            .await
    }
}

/// The tables `sql` truncates, if it is a TRUNCATE.
fn truncation_of(sql: &str) -> Option<dialect::truncate::Truncation> {
    dialect::translate(sql)
        .ok()
        .and_then(|t| t.truncate.clone())
}

/// The `ALTER TABLE` plan `sql` translates to, if it is one.
fn alter_plan(sql: &str) -> Option<Arc<dialect::AlterPlan>> {
    dialect::translate(sql).ok().and_then(|t| t.alter.clone())
}

/// `sql` (one statement, as a PostgreSQL client sent it) as SQLite runs it; a PostgreSQL
/// construct Shoal cannot serve is refused with 0A000 naming it.
fn sqlite_text(sql: &str) -> Result<String, Box<ErrorInfo>> {
    translation(sql).map(|translation| translation.sql.clone())
}

/// `sql` translated (see `sqlite_text`), with the result types the statement names.
fn translation(sql: &str) -> Result<Arc<dialect::Translation>, Box<ErrorInfo>> {
    dialect::translate(sql)
        .map_err(|unsupported| error_info(unsupported.sqlstate(), unsupported.to_string()))
}

/// Prepares statements for the extended protocol: compiles them in SQLite (on this node) to
/// learn their parameters and result columns.
pub struct StatementParser {
    databases: Arc<Databases>,
    privileges: Arc<Privileges>,
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = PreparedStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<PreparedStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let session = session_of(client);
        let statements = split_statements(sql);
        let sql = match statements.as_slice() {
            [] => return Ok(None),
            [one] => *one,
            _ => {
                return Err(user_error(error_info(
                    sqlstate::SYNTAX_ERROR,
                    "cannot insert multiple commands into a prepared statement",
                )));
            }
        };
        if let Some(statement) = cursor_statement(sql) {
            return match &statement {
                // DECLARE takes its query's parameters; it returns no rows itself.
                CursorStatement::Declare { query, .. } => {
                    let query = Box::pin(self.parse_sql(client, query, types))
                        .await?
                        .ok_or_else(|| {
                            user_error(error_info(
                                sqlstate::SYNTAX_ERROR,
                                "DECLARE … CURSOR FOR needs a query",
                            ))
                        })?;
                    Ok(Some(PreparedStatement {
                        parameter_types: query.parameter_types,
                        read_only: true,
                        cursor: Some(statement.clone()),
                        ..PreparedStatement::bare(&query.sql)
                    }))
                }
                CursorStatement::Fetch { name, .. } => Ok(Some(PreparedStatement {
                    columns: session.cursors.columns(name).unwrap_or_default(),
                    read_only: true,
                    cursor: Some(statement.clone()),
                    ..PreparedStatement::bare(sql)
                })),
                CursorStatement::Close { .. } => Ok(Some(PreparedStatement {
                    cursor: Some(statement.clone()),
                    ..PreparedStatement::bare(sql)
                })),
            };
        }
        if let Some(local) = recognize(sql, &session) {
            let columns = match &local {
                LocalStatement::Show(name) if name == "all" => vec![
                    ("name".to_string(), PgType::Text),
                    ("setting".to_string(), PgType::Text),
                ],
                LocalStatement::Show(name) => vec![(name.clone(), PgType::Text)],
                LocalStatement::Info { column, .. } | LocalStatement::SetConfig { column, .. } => {
                    vec![(column.clone(), PgType::Text)]
                }
                LocalStatement::Database(Ok(DatabaseStatement::Show)) => SHOW_DATABASES_COLUMNS
                    .iter()
                    .map(|name| (name.to_string(), PgType::Text))
                    .collect(),
                _ => Vec::new(),
            };
            return Ok(Some(PreparedStatement {
                local: Some(local),
                columns,
                read_only: true,
                ..PreparedStatement::bare(sql)
            }));
        }
        // Describing a statement shows its columns: not for a user who may neither read nor
        // write (running it is checked again with the exact permission).
        self.privileges
            .require_one_of(&session, &[Permission::Read, Permission::Write])
            .await
            .map_err(user_error)?;
        if is_catalog_query(sql) {
            let rewritten = catalog::rewrite(sql);
            let query = rewritten.clone();
            let database = session_database(&self.databases, &session)
                .await
                .map_err(|error| user_error(service_error(&error)))?;
            let shape = with_catalog(&self.databases, &database, &session, move |catalog| {
                catalog.shape(&query)
            })
            .await
            .map_err(user_error)?
            .map_err(|message| user_error(statement_error(&message)))?;
            // `$1::oid[]` (asyncpg's type introspection) is an array of oids; others text.
            let parameter_types = (0..shape.parameter_count.max(types.len()))
                .map(|i| {
                    types.get(i).cloned().flatten().unwrap_or_else(|| {
                        catalog_parameter_array(sql, i + 1).unwrap_or(Type::TEXT)
                    })
                })
                .collect();
            // Types the query names (`array_agg(…)` is text[]) before declared ones.
            let named = dialect::column_types(sql);
            let columns = shape
                .columns
                .into_iter()
                .enumerate()
                .map(|(index, (name, declared))| {
                    let pg_type = named.get(index).copied().flatten().unwrap_or_else(|| {
                        declared
                            .as_deref()
                            .and_then(PgType::for_declared)
                            .unwrap_or(PgType::Text)
                    });
                    (name, pg_type)
                })
                .collect();
            return Ok(Some(PreparedStatement {
                catalog: true,
                parameter_types,
                columns,
                read_only: true,
                ..PreparedStatement::bare(&rewritten)
            }));
        }
        let translation = translation(sql).map_err(user_error)?;
        if translation.truncate.is_some() {
            return Ok(Some(PreparedStatement {
                truncate: translation.truncate.clone(),
                cursor: None,
                ..PreparedStatement::bare(sql)
            }));
        }
        if let Some(plan) = &translation.alter {
            return Ok(Some(PreparedStatement {
                alter: Some(plan.clone()),
                ..PreparedStatement::bare(sql)
            }));
        }
        let rewritten = translation.sql.clone();
        let shaped = sequences::with_shape_values(&rewritten, translation.sequences.len());
        // The session's own earlier writes are applied here first, so a statement naming a
        // table it just created compiles on a follower too.
        let database = session_database(&self.databases, &session)
            .await
            .map_err(|error| user_error(service_error(&error)))?;
        wait_for_own_writes(&database, &session).await;
        let transaction = Transactions::statements_so_far(&session);
        let timeout = session.request_options().timeout;
        let shape = database
            .describe(shaped, transaction.clone(), timeout)
            .await
            .map_err(|error| user_error(service_error(&error)))?
            .map_err(|message| user_error(statement_error(&message)))?;
        // A statement split by its defaults takes the parameters of every part.
        let mut parameter_count = shape.parameter_count;
        for part in translation.split.iter().skip(1) {
            let part_shape = database
                .describe(part.clone(), transaction.clone(), timeout)
                .await
                .map_err(|error| user_error(service_error(&error)))?
                .map_err(|message| user_error(statement_error(&message)))?;
            parameter_count = parameter_count.max(part_shape.parameter_count);
        }
        let count = parameter_count.max(types.len());
        let mut inferred = parameter_declarations(&rewritten, &shape.tables, count);
        for part in translation.split.iter().skip(1) {
            for (slot, declared) in
                inferred
                    .iter_mut()
                    .zip(parameter_declarations(part, &shape.tables, count))
            {
                if slot.is_none() {
                    *slot = declared;
                }
            }
        }
        // A parameter added to or subtracted from a time is an interval (`now() - $1`).
        let intervals: Vec<usize> = translation
            .interval_parameters
            .iter()
            .filter(|parameter| is_time_operand(&parameter.time, &shape.tables))
            .map(|parameter| parameter.parameter)
            .collect();
        let parameter_types = (0..count)
            .map(|i| {
                types.get(i).cloned().flatten().unwrap_or_else(|| {
                    if intervals.contains(&(i + 1)) {
                        return Type::INTERVAL;
                    }
                    if let Some((_, operand)) = translation
                        .array_parameters
                        .iter()
                        .find(|(parameter, _)| *parameter == i + 1)
                    {
                        return array_type_of(operand, &shape.tables);
                    }
                    let declared = inferred.get(i).cloned().flatten();
                    declared
                        .as_deref()
                        .and_then(PgType::for_declared)
                        .map_or(Type::TEXT, wire_type)
                })
            })
            .collect();
        // Read from the statement as written first (`date_trunc('day', at)` keeps `at`'s
        // type; its translation is SQLite text), then as translated.
        let count = shape.columns.len();
        let written = if rewritten == sql {
            vec![None; count]
        } else {
            expression_declarations(sql, &shape.tables, count)
        };
        let expressions: Vec<Option<String>> = written
            .into_iter()
            .zip(expression_declarations(&rewritten, &shape.tables, count))
            .map(|(written, translated)| written.or(translated))
            .collect();
        let columns = shape
            .columns
            .into_iter()
            .zip(expressions)
            .enumerate()
            .map(|(index, ((name, declared), expression))| {
                // The type the statement names (`now()`, `x::date`) first.
                let named = translation.column_types.get(index).copied().flatten();
                let pg_type = named.unwrap_or_else(|| {
                    declared
                        .or(expression)
                        .as_deref()
                        .and_then(PgType::for_declared)
                        .unwrap_or(PgType::Text)
                });
                (name, pg_type)
            })
            .collect();
        Ok(Some(PreparedStatement {
            parameter_types,
            columns,
            read_only: shape.read_only,
            sequences: translation.sequences.clone(),
            intervals: (!translation.interval_parameters.is_empty()).then(|| translation.clone()),
            split: translation.split.clone(),
            ..PreparedStatement::bare(&rewritten)
        }))
    }

    fn get_parameter_types(&self, statement: &PreparedStatement) -> PgWireResult<Vec<Type>> {
        Ok(statement.parameter_types.clone())
    }

    fn get_result_schema(
        &self,
        statement: &PreparedStatement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.cloned().unwrap_or(Format::UnifiedText);
        statement
            .columns
            .iter()
            .enumerate()
            .map(|(index, (name, pg_type))| {
                let field_format = column_format(&format, index).map_err(user_error)?;
                Ok(
                    FieldInfo::new(name.clone(), None, None, wire_type(*pg_type), field_format)
                        .with_type_modifier(pg_type.type_modifier()),
                )
            })
            .collect()
    }
}

/// The bound parameters of `portal` as SQLite values.
fn bound_parameters(portal: &Portal<PreparedStatement>) -> Result<Vec<SqlValue>, Box<ErrorInfo>> {
    let statement = &portal.statement;
    let described = &statement.statement.parameter_types;
    if let Format::Individual(formats) = &portal.parameter_format
        && formats.len() != portal.parameters.len()
    {
        return Err(error_info(
            sqlstate::PROTOCOL_VIOLATION,
            format!(
                "bind message has {} parameter formats but {} parameters",
                formats.len(),
                portal.parameters.len()
            ),
        ));
    }
    portal
        .parameters
        .iter()
        .enumerate()
        .map(|(index, bytes)| {
            let pg_type = statement
                .parameter_types
                .get(index)
                .cloned()
                .flatten()
                .or_else(|| described.get(index).cloned())
                .unwrap_or(Type::TEXT);
            decode_parameter(
                bytes.as_deref(),
                &pg_type,
                portal.parameter_format.is_binary(index),
            )
            .map_err(|message| error_info(sqlstate::INVALID_TEXT_REPRESENTATION, message))
        })
        .collect()
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = PreparedStatement;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<StatementParser> {
        self.parser.clone()
    }

    /// A Describe of a portal named like an open server-side cursor (psycopg describes its
    /// cursors so, after DECLARE) answers the cursor's columns; other describes are pgwire's.
    async fn on_describe<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::extendedquery::Describe,
    ) -> PgWireResult<()>
    where
        C: ClientInfo
            + pgwire::api::ClientPortalStore
            + futures_util::Sink<pgwire::messages::PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: pgwire::api::store::PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures_util::Sink<pgwire::messages::PgWireBackendMessage>>::Error>,
    {
        use pgwire::api::store::PortalStore;
        if message.target_type == pgwire::messages::extendedquery::TARGET_TYPE_BYTE_PORTAL
            && let Some(name) = message.name.as_deref()
            && client.portal_store().get_portal(name).is_none()
            && let Some(columns) = session_of(client).cursors.columns(name)
        {
            let fields = columns
                .iter()
                .map(|(column, pg_type)| {
                    FieldInfo::new(
                        column.clone(),
                        None,
                        None,
                        wire_type(*pg_type),
                        pgwire::api::results::FieldFormat::Text,
                    )
                    .with_type_modifier(pg_type.type_modifier())
                })
                .collect();
            let response = pgwire::api::results::DescribePortalResponse::new(fields);
            return pgwire::api::query::send_describe_response(client, &response).await;
        }
        self._on_describe(client, message).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<PreparedStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let started = std::time::Instant::now();
        let session = session_of(client);
        let prepared = &portal.statement.statement;
        let refusal = self
            .transactions
            .refuse_if_failed(&session, &[prepared.sql.as_str()]);
        let response = match (refusal, &prepared.local) {
            (Some(refusal), _) => refusal,
            (None, Some(local)) => self.run_local(&session, local).await,
            (None, None) => {
                let allowed = if prepared.catalog {
                    self.privileges
                        .require_one_of(&session, &[Permission::Read])
                        .await
                } else {
                    let needs = needed(prepared.read_only, is_ddl(&prepared.sql));
                    let statement = [Statement::plain(prepared.sql.clone())];
                    self.privileges
                        .require_with_tables(&session, &needs, &statement)
                        .await
                };
                match allowed {
                    Ok(()) => self.execute_prepared(&session, portal).await,
                    Err(info) => Response::Error(info),
                }
            }
        };
        let ok = !matches!(response, Response::Error(_));
        crate::metrics::metrics().record_pg("extended", ok, started.elapsed());
        if let Response::Error(info) = response {
            self.transactions.fail(&session);
            return Err(PgWireError::UserError(info));
        }
        Ok(response)
    }
}

impl Backend {
    async fn execute_prepared(
        &self,
        session: &Session,
        portal: &Portal<PreparedStatement>,
    ) -> Response {
        let prepared = &portal.statement.statement;
        if let Some(plan) = &prepared.alter {
            return self.run_alter(session, &prepared.sql, plan).await;
        }
        if let Some(truncation) = &prepared.truncate {
            return self.run_truncate(session, truncation).await;
        }
        if let Some(statement) = &prepared.cursor {
            let params = match bound_parameters(portal) {
                Ok(params) if params.is_empty() => Params::None,
                Ok(params) => Params::Positional(params),
                Err(info) => return Response::Error(info),
            };
            let declared =
                matches!(statement, CursorStatement::Declare { .. }).then(|| prepared.sql.clone());
            return self
                .run_cursor(
                    session,
                    statement,
                    declared,
                    params,
                    &portal.result_column_format,
                )
                .await;
        }
        let params = match bound_parameters(portal) {
            Ok(params) => params,
            Err(info) => return Response::Error(info),
        };
        // A parameter bound as an interval shifts the time it is added to.
        let sql = match &prepared.intervals {
            Some(translation) => translation.with_interval_parameters(|parameter| {
                let index = parameter.checked_sub(1)?;
                if prepared.parameter_types.get(index) != Some(&Type::INTERVAL) {
                    return None;
                }
                match params.get(index) {
                    Some(SqlValue::Text(text)) => {
                        crate::pgwire::interval::Interval::parse(text).ok()
                    }
                    _ => None,
                }
            }),
            None => prepared.sql.clone(),
        };
        let sql = if prepared.sequences.is_empty() {
            sql
        } else {
            match sequences::with_values(self, session, &sql, &prepared.sequences).await {
                Ok(sql) => sql,
                Err(info) => return Response::Error(info),
            }
        };
        let statement = Statement {
            sql,
            params: if params.is_empty() {
                Params::None
            } else {
                Params::Positional(params)
            },
        };
        let outcome = if !prepared.split.is_empty() {
            self.run_split(session, &prepared.split, statement.params)
                .await
        } else if prepared.catalog {
            self.run_catalog(session, statement).await
        } else if session.in_transaction() {
            self.transactions.execute(session, statement).await
        } else {
            let kind = if prepared.read_only {
                RequestKind::Query
            } else {
                RequestKind::Execute
            };
            self.run_one(session, kind, statement).await
        };
        let result = match outcome {
            Ok(result) => result,
            Err(info) => return Response::Error(info),
        };
        if let Some(message) = &result.error {
            return Response::Error(statement_error(message));
        }
        if session.in_transaction() && is_rollback_to_savepoint(&prepared.sql) {
            return in_transaction_response(&prepared.sql, result);
        }
        match &result.rows {
            Some(set) => rows_response(
                &prepared.sql,
                set,
                &prepared.columns,
                &portal.result_column_format,
            ),
            None if !prepared.columns.is_empty() => rows_response(
                &prepared.sql,
                &RowSet::default(),
                &prepared.columns,
                &portal.result_column_format,
            ),
            None => Response::Execution(command_tag(&prepared.sql, result.rows_affected as usize)),
        }
    }
}

/// Waits (up to the session's timeout) until this node has applied the session's last write
/// (when the session's database has a replica here; otherwise its requests go to a replica
/// elsewhere, read at the session's consistency).
async fn wait_for_own_writes(database: &DatabaseHandle, session: &Session) {
    if let (Some(index), Some(service)) = (session.last_write_index(), database.local()) {
        service
            .wait_applied(index, session.request_options().timeout)
            .await;
    }
}

/// The database `session` is connected to.
pub async fn session_database(
    databases: &Databases,
    session: &Session,
) -> Result<DatabaseHandle, ServiceError> {
    let database = databases.resolve_fresh(Some(&session.database)).await?;
    let bound = *session.database_group.get_or_init(|| database.group);
    if bound != database.group {
        return Err(ServiceError::UnknownDatabase(format!(
            "{} (the database this session connected to was dropped or renamed; reconnect)",
            session.database
        )));
    }
    Ok(database)
}

/// Runs `work` on the emulated PostgreSQL catalog of the session's database: built from the
/// local replica's schema, or, where no replica runs here, from the schema read from one.
async fn with_catalog<T: Send + 'static>(
    databases: &Databases,
    database: &DatabaseHandle,
    session: &Session,
    work: impl FnOnce(&Catalog) -> T + Send + 'static,
) -> Result<T, Box<ErrorInfo>> {
    let mut names = crate::pgwire::catalog::DatabaseNames {
        current: database.name.clone(),
        all: databases.view().databases.keys().cloned().collect(),
    };
    if !names.all.contains(&names.current) {
        names.all.push(names.current.clone());
    }
    let internal = |message: String| error_info(sqlstate::INTERNAL_ERROR, message);
    if let Some(service) = database.local() {
        return service
            .group
            .database
            .inspect(move |connection| {
                Catalog::build(connection, &names)
                    .map(|catalog| work(&catalog))
                    .map_err(|e| format!("building the catalog: {e}"))
            })
            .await
            .map_err(|e| internal(e.to_string()))?
            .map_err(internal);
    }
    let options = session.request_options();
    let schema = database
        .schema(options.read, options.timeout)
        .await
        .map_err(|error| service_error(&error))?;
    tokio::task::spawn_blocking(move || {
        let source =
            rusqlite::Connection::open_in_memory().map_err(|e| format!("a schema copy: {e}"))?;
        for sql in &schema {
            source
                .execute_batch(sql)
                .map_err(|e| format!("copying the schema ({sql}): {e}"))?;
        }
        Catalog::build(&source, &names)
            .map(|catalog| work(&catalog))
            .map_err(|e| format!("building the catalog: {e}"))
    })
    .await
    .map_err(|e| internal(e.to_string()))?
    .map_err(internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_parameter_a_statement_names_is_found_outside_literals() {
        assert_eq!(highest_parameter("INSERT INTO t VALUES (?3, ?12)"), 12);
        assert_eq!(highest_parameter("SELECT '?9', ?2"), 2);
        assert_eq!(highest_parameter("SELECT 1"), 0);
    }

    #[test]
    fn startup_options_are_read_like_pgoptions() {
        assert_eq!(
            startup_options("-c shoal.read_consistency=none --statement-timeout=5s"),
            vec![
                ("shoal.read_consistency".to_string(), "none".to_string()),
                ("statement_timeout".to_string(), "5s".to_string()),
            ]
        );
    }
}
