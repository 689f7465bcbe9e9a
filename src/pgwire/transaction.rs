//! Interactive transactions (`BEGIN … COMMIT` over several round trips).
//!
//! How they stay serializable and replicate as one entry: the session records each statement
//! and the result it returned. Each new statement runs on the leader's writer together with the
//! transaction's earlier ones and is rolled back (a rehearsal), so the client reads its own
//! writes and the leader's latest data without holding SQLite's write lock between round trips.
//! If a rehearsal gives an earlier statement a different result than the client already saw,
//! another transaction got in between: this one fails with SQLSTATE 40001. COMMIT proposes
//! all statements as one log entry pinned to the transaction's clock, random seed, leader term
//! and a digest of the results the client saw; every replica applies it only if it produces
//! exactly those results (the same check everywhere, as they apply the same log), so what
//! replicas keep is what the client saw on the leader, or nothing.
//!
//! A rehearsal re-runs the transaction so far, so its cost grows with the transaction; limits
//! on statements, bytes and duration bound it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwire::api::results::{Response, Tag};
use pgwire::error::ErrorInfo;

use crate::catalog::databases::Databases;
use crate::catalog::handle::DatabaseHandle;
use crate::pgwire::backend::session_database;
use crate::pgwire::session::Session;
use crate::pgwire::sqlstate;
use crate::pgwire::sqlstate::{error_info, service_error};
use crate::raft::types::{
    Pinned, SERIALIZATION_FAILURE, Statement, StatementBatch, StatementResult, results_digest,
};
use crate::service::request::RequestKind;
use crate::service::{ServiceError, ServiceResponse};
use crate::types::routed::{Rehearsed, RoutedTransaction};

/// Statements one transaction may hold.
pub const TRANSACTION_STATEMENTS_MAX: usize = 1_000;
/// Bytes of SQL and parameters one transaction may hold.
pub const TRANSACTION_BYTES_MAX: usize = 16 * 1024 * 1024;
/// How long a transaction may stay open.
pub const TRANSACTION_DURATION_MAX: Duration = Duration::from_secs(60);

/// A transaction block in progress.
#[derive(Debug)]
pub struct OpenTransaction {
    statements: Vec<Statement>,
    /// What each statement returned to the client.
    seen: Vec<StatementResult>,
    seed: u64,
    timestamp_ms: i64,
    /// The leader term the statements ran in (set by the first rehearsal).
    term: Option<u64>,
    bytes: usize,
    started: Instant,
    /// A statement failed: only ROLLBACK (or COMMIT, which rolls back) is accepted now.
    failed: bool,
    /// On a sharded database: what each group ran for it (the router rehearses and commits).
    routed: Option<RoutedTransaction>,
}

impl OpenTransaction {
    fn new() -> Self {
        Self {
            statements: Vec::new(),
            seen: Vec::new(),
            seed: rand::random(),
            timestamp_ms: crate::service::unix_now_ms(),
            term: None,
            bytes: 0,
            started: Instant::now(),
            failed: false,
            routed: None,
        }
    }

    fn pinned(&self, with_results: bool) -> Pinned {
        Pinned {
            seed: self.seed,
            timestamp_ms: self.timestamp_ms,
            results_digest: with_results.then(|| results_digest(&self.seen)),
            term: if with_results { self.term } else { None },
        }
    }
}

/// Runs the transactions of every session of one endpoint.
pub struct Transactions {
    databases: Arc<Databases>,
}

fn statement_bytes(statement: &Statement) -> usize {
    statement.sql.len() + format!("{:?}", statement.params).len()
}

impl Transactions {
    pub fn new(databases: Arc<Databases>) -> Self {
        Self { databases }
    }

    fn with_open<T>(session: &Session, f: impl FnOnce(&mut Option<OpenTransaction>) -> T) -> T {
        let mut slot = session
            .transaction
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut slot)
    }

    /// The open transaction's statements so far (pinned as when they ran), against which a
    /// statement being prepared in it must compile; `None` outside a transaction or before
    /// its first statement.
    pub fn statements_so_far(session: &Session) -> Option<StatementBatch> {
        Self::with_open(session, |open| {
            // (A sharded database's statements ran in several groups: its schema, the same
            // in every group, is described without them.)
            let open = open
                .as_ref()
                .filter(|t| !t.statements.is_empty() && t.routed.is_none())?;
            let mut batch = StatementBatch::new(open.statements.clone(), true);
            batch.pinned = Some(open.pinned(false));
            Some(batch)
        })
    }

    /// Marks the open transaction failed (a statement in it returned an error).
    pub fn fail(&self, session: &Session) {
        Self::with_open(session, |open| {
            if let Some(open) = open {
                open.failed = true;
            }
        });
    }

    /// In a failed transaction everything but ending it is refused, as in PostgreSQL.
    pub fn refuse_if_failed(&self, session: &Session, statements: &[&str]) -> Option<Response> {
        let failed = Self::with_open(session, |open| open.as_ref().is_some_and(|t| t.failed));
        let ends_it = statements.first().is_some_and(|sql| {
            let verb = sql
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            matches!(verb.as_str(), "rollback" | "abort" | "commit" | "end")
        });
        (failed && !ends_it).then(|| {
            Response::Error(error_info(
                sqlstate::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ))
        })
    }

    /// BEGIN, COMMIT or ROLLBACK.
    pub async fn control(&self, session: &Session, verb: &str) -> Response {
        match verb {
            "BEGIN" => {
                Self::with_open(session, |open| {
                    // PostgreSQL only warns about a BEGIN inside a transaction.
                    if open.is_none() {
                        *open = Some(OpenTransaction::new());
                    }
                });
                Response::TransactionStart(Tag::new("BEGIN"))
            }
            "ROLLBACK" => {
                Self::with_open(session, |open| open.take());
                Response::TransactionEnd(Tag::new("ROLLBACK"))
            }
            _ => self.commit(session).await,
        }
    }

    async fn commit(&self, session: &Session) -> Response {
        let Some(open) = Self::with_open(session, |open| open.take()) else {
            return Response::TransactionEnd(Tag::new("COMMIT"));
        };
        if open.failed {
            return Response::TransactionEnd(Tag::new("ROLLBACK"));
        }
        if open.statements.is_empty() {
            return Response::TransactionEnd(Tag::new("COMMIT"));
        }
        let options = session.request_options();
        let database = match session_database(&self.databases, session).await {
            Ok(database) => database,
            Err(error) => return Response::Error(service_error(&error)),
        };
        if let Some(routed) = open.routed {
            let request = options.request(RequestKind::Execute, Vec::new());
            return committed(session, database.commit_routed(routed, request).await);
        }
        // Judged on a local replica; without one, the commit goes through the log.
        let all_read_only = match database.local() {
            Some(service) => service
                .group
                .database
                .all_read_only(&open.statements)
                .await
                .unwrap_or(false),
            None => false,
        };
        if all_read_only {
            // Every statement's result was checked together in the last rehearsal: the reads
            // saw one state of the database, and there is nothing to write.
            return Response::TransactionEnd(Tag::new("COMMIT"));
        }
        let mut batch = StatementBatch::new(open.statements.clone(), true);
        batch.pinned = Some(open.pinned(true));
        let request = options.request(RequestKind::Execute, vec![batch]);
        committed(session, database.handle(request).await)
    }

    /// Runs `statement` inside the open transaction: returns its result as the client sees
    /// it, or an error that ends or fails the transaction.
    pub async fn execute(
        &self,
        session: &Session,
        statement: Statement,
    ) -> Result<StatementResult, Box<ErrorInfo>> {
        let database = session_database(&self.databases, session)
            .await
            .map_err(|error| {
                self.fail(session);
                service_error(&error)
            })?;
        if database.sharded().is_some() {
            return self.execute_routed(session, &database, statement).await;
        }
        let recovers = is_rollback_to_savepoint(&statement.sql);
        let (batch, seen_before, term) = Self::with_open(session, |open| {
            let open = open.as_mut().ok_or_else(|| {
                error_info(
                    sqlstate::NO_ACTIVE_SQL_TRANSACTION,
                    "no transaction is open",
                )
            })?;
            if recovers {
                // ROLLBACK TO a savepoint undoes the failure: the failed statement was never
                // recorded, and the ones since the savepoint are undone by replaying this.
                open.failed = false;
            }
            check_limits(open, &statement)?;
            let mut statements = open.statements.clone();
            statements.push(statement.clone());
            let mut batch = StatementBatch::new(statements, true);
            batch.pinned = Some(open.pinned(false));
            Ok::<_, Box<ErrorInfo>>((batch, open.seen.clone(), open.term))
        })
        .inspect_err(|_| self.fail(session))?;
        let options = session.request_options();
        let request = options.request(RequestKind::Rehearse, vec![batch]);
        let response = database.handle(request).await.map_err(|error| {
            self.fail(session);
            service_error(&error)
        })?;
        let abort = |reason: &str| Self::abort(session, reason);
        if term.is_some() && response.term != term {
            return Err(abort("the leader changed during the transaction"));
        }
        let mut results = response.results;
        let complete = results.len() == seen_before.len() + 1;
        if complete && results.last().is_some_and(|r| r.error.is_some()) {
            // The new statement failed (a rehearsal that fails reports zero counts for the
            // statements before, so they are not compared): the transaction is now failed.
            self.fail(session);
            return Ok(results.pop().unwrap_or_default());
        }
        if !complete
            || results_digest(&results[..seen_before.len()]) != results_digest(&seen_before)
        {
            return Err(abort(
                "data the transaction read or wrote was changed by another transaction",
            ));
        }
        let result = results.pop().unwrap_or_default();
        Self::with_open(session, |open| {
            if let Some(open) = open {
                open.bytes += statement_bytes(&statement);
                open.statements.push(statement);
                open.seen.push(result.clone());
                open.term = response.term;
            }
        });
        Ok(result)
    }

    /// Ends the open transaction with a serialization failure (SQLSTATE 40001).
    fn abort(session: &Session, reason: &str) -> Box<ErrorInfo> {
        Self::with_open(session, |open| open.take());
        error_info(
            sqlstate::SERIALIZATION_FAILURE,
            format!(
                "{SERIALIZATION_FAILURE}: {reason}; the transaction was rolled back and nothing \
                 was applied, retry it"
            ),
        )
    }

    /// `execute` on a sharded database: the router runs the statement in the groups it
    /// touches, after the transaction's earlier statements there.
    async fn execute_routed(
        &self,
        session: &Session,
        database: &DatabaseHandle,
        statement: Statement,
    ) -> Result<StatementResult, Box<ErrorInfo>> {
        if is_savepoint_command(&statement.sql) {
            self.fail(session);
            return Err(error_info(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "savepoints are not supported in a transaction on a sharded database yet",
            ));
        }
        let routed = Self::with_open(session, |open| {
            let open = open.as_mut().ok_or_else(|| {
                error_info(
                    sqlstate::NO_ACTIVE_SQL_TRANSACTION,
                    "no transaction is open",
                )
            })?;
            check_limits(open, &statement)?;
            Ok::<_, Box<ErrorInfo>>(
                open.routed
                    .take()
                    .unwrap_or_else(|| RoutedTransaction::new(open.seed, open.timestamp_ms)),
            )
        })
        .inspect_err(|_| self.fail(session))?;
        let mut routed = routed;
        let request = session
            .request_options()
            .request(RequestKind::Rehearse, Vec::new());
        let outcome = database
            .rehearse_routed(&mut routed, statement.clone(), request)
            .await;
        Self::with_open(session, |open| {
            if let Some(open) = open {
                open.routed = Some(routed);
            }
        });
        match outcome {
            Err(error) => {
                self.fail(session);
                Err(service_error(&error))
            }
            Ok(Rehearsed::Conflict(reason)) => Err(Self::abort(session, &reason)),
            Ok(Rehearsed::Ran(result)) if result.error.is_some() => {
                self.fail(session);
                Ok(result)
            }
            Ok(Rehearsed::Ran(result)) => {
                Self::with_open(session, |open| {
                    if let Some(open) = open {
                        open.bytes += statement_bytes(&statement);
                        open.statements.push(statement);
                        open.seen.push(result.clone());
                    }
                });
                Ok(result)
            }
        }
    }
}

/// COMMIT's answer once the commit's request returned.
fn committed(session: &Session, outcome: Result<ServiceResponse, ServiceError>) -> Response {
    let response = match outcome {
        Ok(response) => response,
        Err(error) => return Response::Error(service_error(&error)),
    };
    if let Some(index) = response.raft_index {
        session.wrote_at(index);
    }
    if let Some(message) = response.results.iter().find_map(|r| r.error.clone()) {
        return Response::Error(sqlstate::statement_error(&message));
    }
    match response.write_concern_error {
        Some(error) => Response::Error(error_info(
            sqlstate::CANNOT_CONNECT_NOW,
            format!(
                "the transaction is committed, but its write concern was not confirmed: {}",
                error.message
            ),
        )),
        None => Response::TransactionEnd(Tag::new("COMMIT")),
    }
}

/// `SAVEPOINT`, `RELEASE [SAVEPOINT]` or `ROLLBACK TO [SAVEPOINT]`.
fn is_savepoint_command(sql: &str) -> bool {
    let mut words = sql.split_whitespace().map(str::to_ascii_lowercase);
    let first = words.next().unwrap_or_default();
    matches!(first.trim_end_matches(';'), "savepoint" | "release") || is_rollback_to_savepoint(sql)
}

/// `ROLLBACK TO [SAVEPOINT] name`.
pub fn is_rollback_to_savepoint(sql: &str) -> bool {
    let mut words = sql.split_whitespace().map(str::to_ascii_lowercase);
    words.next().as_deref() == Some("rollback") && words.next().as_deref() == Some("to")
}

fn check_limits(open: &OpenTransaction, statement: &Statement) -> Result<(), Box<ErrorInfo>> {
    if open.failed {
        return Err(error_info(
            sqlstate::IN_FAILED_TRANSACTION,
            "current transaction is aborted, commands ignored until end of transaction block",
        ));
    }
    if open.started.elapsed() > TRANSACTION_DURATION_MAX {
        return Err(error_info(
            sqlstate::IDLE_IN_TRANSACTION_TIMEOUT,
            format!(
                "the transaction has been open longer than {} s; roll it back and retry",
                TRANSACTION_DURATION_MAX.as_secs()
            ),
        ));
    }
    if open.statements.len() >= TRANSACTION_STATEMENTS_MAX {
        return Err(error_info(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!(
                "a transaction may hold at most {TRANSACTION_STATEMENTS_MAX} statements; \
                 commit in smaller transactions"
            ),
        ));
    }
    if open.bytes + statement_bytes(statement) > TRANSACTION_BYTES_MAX {
        return Err(error_info(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!(
                "a transaction may hold at most {TRANSACTION_BYTES_MAX} bytes of statements; \
                 commit in smaller transactions"
            ),
        ));
    }
    Ok(())
}
