//! One PostgreSQL session's settings (`SET`/`SHOW`/`RESET`), including how its reads and
//! writes are replicated (`shoal.read_consistency`, `shoal.write_concern`,
//! `statement_timeout`), and the statements the endpoint answers itself instead of SQLite.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::pgwire::sqlstate;
use crate::pgwire::transaction::OpenTransaction;
use crate::raft::types::StatementBatch;
use crate::service::request::{
    ReadConsistency, ReadLevel, RequestKind, ServiceRequest, WriteConcern,
};

/// The PostgreSQL version Shoal presents to clients (drivers switch features on it).
pub const SERVER_VERSION: &str = "16.6";
/// Longest `statement_timeout` honoured; also the default when none is set.
const STATEMENT_TIMEOUT_MAX: Duration = Duration::from_secs(300);
const STATEMENT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// An error for the client: SQLSTATE and message.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionError {
    pub code: &'static str,
    pub message: String,
}

impl SessionError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Settings reported by `SHOW` with their defaults; `SET` accepts these (and any name with a
/// dot, as PostgreSQL accepts custom settings).
pub const DEFAULTS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("bytea_output", "hex"),
    ("client_encoding", "UTF8"),
    ("client_min_messages", "notice"),
    ("datestyle", "ISO, MDY"),
    ("default_table_access_method", "heap"),
    ("default_transaction_isolation", "serializable"),
    ("default_transaction_read_only", "off"),
    ("extra_float_digits", "1"),
    ("idle_in_transaction_session_timeout", "0"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("is_superuser", "off"),
    // Shoal compiles no query to machine code: asyncpg turns it off around its introspection.
    ("jit", "off"),
    ("lock_timeout", "0"),
    ("max_identifier_length", "63"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", SERVER_VERSION),
    ("server_version_num", "160006"),
    ("shoal.freshness", ""),
    ("shoal.read_consistency", "weak"),
    ("shoal.write_concern", "majority"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("timezone", "UTC"),
    ("transaction_isolation", "serializable"),
    ("transaction_read_only", "off"),
];

/// Settings a client may read but not change.
const READ_ONLY: &[&str] = &[
    "integer_datetimes",
    "is_superuser",
    "max_identifier_length",
    "server_encoding",
    "server_version",
    "server_version_num",
    "transaction_isolation",
];

/// How this session's requests are served.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestOptions {
    pub read: ReadConsistency,
    pub write_concern: WriteConcern,
    pub timeout: Duration,
}

/// How long a write concern beyond majority may take to be confirmed.
const WRITE_CONCERN_TIMEOUT: Duration = Duration::from_secs(5);

impl RequestOptions {
    /// A request of `kind` for `batches` with this session's options, forwarded to the leader
    /// when it must run there.
    pub fn request(&self, kind: RequestKind, batches: Vec<StatementBatch>) -> ServiceRequest {
        ServiceRequest {
            kind,
            batches,
            read: self.read,
            write_concern: self.write_concern,
            write_concern_timeout: WRITE_CONCERN_TIMEOUT,
            timeout: self.timeout,
            forward_to_leader: true,
        }
    }
}

/// A session's settings and what Shoal derives from them for each statement.
#[derive(Debug, Default)]
struct Settings {
    /// Values set in this session, by lower-case name.
    values: BTreeMap<String, String>,
    /// [`Session::request_options`] as derived from `values`, until they change.
    options: Option<RequestOptions>,
}

impl Settings {
    /// The values, to change them (what was derived from them is dropped).
    fn change(&mut self) -> &mut BTreeMap<String, String> {
        self.options = None;
        &mut self.values
    }
}

#[derive(Debug, Default)]
pub struct Session {
    settings: Mutex<Settings>,
    /// Log index of this session's latest write (0: none yet).
    last_write: AtomicU64,
    /// The open transaction block, if any.
    pub(crate) transaction: Mutex<Option<OpenTransaction>>,
    /// The user the client logged in as (proven by SCRAM when `--auth` is on).
    pub user: String,
    /// The database the session is connected to (resolved at login).
    pub database: String,
    /// The group that database lived in at the session's first statement: a rename or a drop
    /// and re-create under the same name never moves an open session to another group.
    pub database_group: std::sync::OnceLock<u64>,
    /// What `nextval` last gave this session, per sequence and of any (`currval`, `lastval`).
    sequence_values: Mutex<SequenceValues>,
    /// The session's open server-side cursors (`DECLARE … CURSOR`).
    pub cursors: crate::pgwire::cursors::Cursors,
}

/// The values `nextval` gave a session.
#[derive(Debug, Default)]
struct SequenceValues {
    by_sequence: std::collections::HashMap<String, i64>,
    last: Option<i64>,
}

/// Sequences a session remembers values of (PostgreSQL keeps one per sequence used; a session
/// touching more than this many forgets none but records no new ones, and their `currval`
/// then fails as if `nextval` had not been called).
const SEQUENCES_REMEMBERED_MAX: usize = 10_000;

impl Session {
    /// Records that `nextval` of `sequence` gave this session `value`.
    pub fn took_sequence_value(&self, sequence: &str, value: i64) {
        let mut values = self
            .sequence_values
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        values.last = Some(value);
        if values.by_sequence.len() < SEQUENCES_REMEMBERED_MAX
            || values.by_sequence.contains_key(sequence)
        {
            values.by_sequence.insert(sequence.to_string(), value);
        }
    }

    /// The value `nextval` of `sequence` last gave this session (`None` for a sequence it
    /// has not called `nextval` of), or of any sequence with `None`.
    pub fn sequence_value(&self, sequence: Option<&str>) -> Option<i64> {
        let values = self
            .sequence_values
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match sequence {
            Some(sequence) => values.by_sequence.get(sequence).copied(),
            None => values.last,
        }
    }

    /// A new session of `user`, with every setting at its default.
    pub fn for_user(user: String, database: String) -> Session {
        Session {
            user,
            database,
            ..Session::default()
        }
    }

    /// Records that this session's write was committed at `index`.
    pub fn wrote_at(&self, index: u64) {
        self.last_write.fetch_max(index, Ordering::Relaxed);
    }

    /// The log index of this session's latest write, if it wrote.
    pub fn last_write_index(&self) -> Option<u64> {
        Some(self.last_write.load(Ordering::Relaxed)).filter(|index| *index > 0)
    }

    /// Whether a transaction block is open (BEGIN without COMMIT or ROLLBACK yet).
    pub fn in_transaction(&self) -> bool {
        self.transaction
            .lock()
            .map(|t| t.is_some())
            .unwrap_or(false)
    }

    fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        // A panic while holding this lock leaves plain strings behind: still usable.
        self.settings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `SET name = value` (`None`: `SET name TO DEFAULT`).
    pub fn set(&self, name: &str, value: Option<&str>) -> Result<(), SessionError> {
        let name = name.to_ascii_lowercase();
        let known = DEFAULTS.iter().any(|(n, _)| *n == name);
        if READ_ONLY.contains(&name.as_str()) {
            return Err(SessionError::new(
                sqlstate::CANT_CHANGE_RUNTIME_PARAM,
                format!("parameter \"{name}\" cannot be changed"),
            ));
        }
        if !known && (!name.contains('.') || name.starts_with("shoal.")) {
            return Err(SessionError::new(
                sqlstate::UNDEFINED_OBJECT,
                format!("unrecognized configuration parameter \"{name}\""),
            ));
        }
        let Some(value) = value else {
            self.settings().change().remove(&name);
            return Ok(());
        };
        validate(&name, value)?;
        self.settings().change().insert(name, value.to_string());
        Ok(())
    }

    /// `RESET name`, or `RESET ALL` / `DISCARD ALL` with `None`.
    pub fn reset(&self, name: Option<&str>) {
        match name {
            Some(name) => self.settings().change().remove(&name.to_ascii_lowercase()),
            None => {
                self.settings().change().clear();
                None
            }
        };
    }

    /// The value `SHOW name` reports.
    pub fn show(&self, name: &str) -> Result<String, SessionError> {
        let name = name.to_ascii_lowercase();
        if let Some(value) = self.settings().values.get(&name) {
            return Ok(value.clone());
        }
        DEFAULTS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value.to_string())
            .ok_or_else(|| {
                SessionError::new(
                    sqlstate::UNDEFINED_OBJECT,
                    format!("unrecognized configuration parameter \"{name}\""),
                )
            })
    }

    /// Every setting and its value, for `SHOW ALL`.
    pub fn show_all(&self) -> Vec<(String, String)> {
        let settings = self.settings();
        let mut all: BTreeMap<String, String> = DEFAULTS
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        all.extend(settings.values.iter().map(|(n, v)| (n.clone(), v.clone())));
        all.into_iter().collect()
    }

    /// The read consistency, write concern and timeout this session's statements run with.
    pub fn request_options(&self) -> RequestOptions {
        let mut settings = self.settings();
        if let Some(options) = settings.options {
            return options;
        }
        let options = Self::options_from(&settings.values);
        settings.options = Some(options);
        options
    }

    fn options_from(settings: &BTreeMap<String, String>) -> RequestOptions {
        let mut read = ReadConsistency::default();
        if let Some(level) = settings.get("shoal.read_consistency") {
            read.level = ReadLevel::parse(level).unwrap_or(read.level);
        }
        if let Some(freshness) = settings.get("shoal.freshness").filter(|f| !f.is_empty()) {
            read.freshness = humantime::parse_duration(freshness).ok();
        }
        let write_concern = settings
            .get("shoal.write_concern")
            .and_then(|w| WriteConcern::parse(w).ok())
            .unwrap_or(WriteConcern::Majority);
        let timeout = settings
            .get("statement_timeout")
            .and_then(|t| parse_timeout(t).ok())
            .filter(|t| !t.is_zero())
            .map_or(STATEMENT_TIMEOUT_DEFAULT, |t| t.min(STATEMENT_TIMEOUT_MAX));
        RequestOptions {
            read,
            write_concern,
            timeout,
        }
    }
}

/// Checks values that Shoal acts on, so a typo fails at `SET` rather than later.
fn validate(name: &str, value: &str) -> Result<(), SessionError> {
    let invalid = |why: String| {
        SessionError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("invalid value for parameter \"{name}\": \"{value}\": {why}"),
        )
    };
    match name {
        "shoal.read_consistency" => ReadLevel::parse(value).map(|_| ()).map_err(invalid),
        "shoal.write_concern" => WriteConcern::parse(value).map(|_| ()).map_err(invalid),
        "shoal.freshness" if !value.is_empty() => humantime::parse_duration(value)
            .map(|_| ())
            .map_err(|e| invalid(e.to_string())),
        "statement_timeout" => parse_timeout(value).map(|_| ()).map_err(invalid),
        "client_encoding" => match value.to_ascii_uppercase().replace('-', "").as_str() {
            "UTF8" | "UNICODE" => Ok(()),
            _ => Err(invalid("Shoal speaks UTF8 only".to_string())),
        },
        _ => Ok(()),
    }
}

/// A `statement_timeout` value: milliseconds, or a number with a unit (`5s`, `100ms`).
fn parse_timeout(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    if let Ok(ms) = value.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    humantime::parse_duration(value).map_err(|e| e.to_string())
}

/// A statement the endpoint answers without SQLite.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalStatement {
    Set {
        name: String,
        value: Option<String>,
    },
    Reset(Option<String>),
    Show(String),
    /// `BEGIN`, `COMMIT`, `ROLLBACK` and their synonyms, by the canonical command tag.
    Transaction(&'static str),
    /// A query for session information (`SELECT version()`), with its column and value.
    Info {
        column: String,
        value: String,
    },
    /// `SELECT set_config('name', 'value', is_local)`: a SET that answers the value (Django
    /// sets its time zone so). A transaction-local setting is kept for the session.
    SetConfig {
        name: String,
        value: String,
        column: String,
    },
    /// `SET CONSTRAINTS … IMMEDIATE | DEFERRED`: nothing to do (see `parse_set`).
    SetConstraints,
    /// `DEALLOCATE [PREPARE] name | ALL`: drivers send it to drop their prepared statements;
    /// preparing a name again replaces the statement, so it has nothing left to do.
    Deallocate {
        all: bool,
    },
    /// `CREATE DATABASE`, `DROP DATABASE`, `ALTER DATABASE … RENAME TO`, `SHOW DATABASES`
    /// (or what is wrong with one).
    Database(Result<crate::catalog::sql::DatabaseStatement, String>),
}

/// Recognizes statements answered locally; `None` for everything SQLite should run.
pub fn recognize(sql: &str, session: &Session) -> Option<LocalStatement> {
    if let Some(parsed) = crate::catalog::sql::parse(sql) {
        return Some(LocalStatement::Database(parsed));
    }
    let normalized = normalize(sql);
    let words: Vec<&str> = normalized.split(' ').collect();
    match words.first().copied()? {
        "set" => parse_set(&words[1..]),
        "reset" => match words.get(1).copied() {
            Some("all") => Some(LocalStatement::Reset(None)),
            Some(name) => Some(LocalStatement::Reset(Some(name.to_string()))),
            None => None,
        },
        "discard" if words.get(1) == Some(&"all") => Some(LocalStatement::Reset(None)),
        "deallocate" => Some(LocalStatement::Deallocate {
            all: words.last() == Some(&"all"),
        }),
        "show" => {
            let name = words[1..].join(" ");
            // SQL-standard spellings of two settings.
            Some(LocalStatement::Show(match name.as_str() {
                "transaction isolation level" => "transaction_isolation".to_string(),
                "time zone" => "timezone".to_string(),
                _ => name,
            }))
        }
        "begin" | "start" => Some(LocalStatement::Transaction("BEGIN")),
        "commit" | "end" => Some(LocalStatement::Transaction("COMMIT")),
        // `ROLLBACK TO [SAVEPOINT] name` belongs to SQLite, inside the transaction.
        "rollback" if words.get(1) == Some(&"to") => None,
        "rollback" | "abort" => Some(LocalStatement::Transaction("ROLLBACK")),
        "select" => set_config_query(&normalized).or_else(|| info_query(&normalized, session)),
        _ => None,
    }
}

/// Lower-cased outside literals is not needed for the shapes recognized here: they are
/// matched whole, and a literal only matters in `SET` values, which keep their case below.
fn normalize(sql: &str) -> String {
    let trimmed = sql.trim().trim_end_matches(';').trim();
    let mut out = String::with_capacity(trimmed.len());
    let mut in_literal = false;
    let mut last_space = false;
    for c in trimmed.chars() {
        if c == '\'' {
            in_literal = !in_literal;
        }
        if !in_literal && c.is_whitespace() {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
            continue;
        }
        last_space = false;
        out.push(if in_literal {
            c
        } else {
            c.to_ascii_lowercase()
        });
    }
    out
}

/// `SET [SESSION|LOCAL] name {TO|=} value`, `SET TIME ZONE value`, `SET name=value`.
fn parse_set(words: &[&str]) -> Option<LocalStatement> {
    // `SET CONSTRAINTS ALL|names IMMEDIATE|DEFERRED` (Django around loaddata): accepted; a
    // deferred foreign key is checked at COMMIT either way (SQLite cannot check it earlier
    // on demand), and a violation then fails the whole transaction.
    if words.first() == Some(&"constraints")
        && matches!(words.last(), Some(&"immediate") | Some(&"deferred"))
        && words.len() >= 3
    {
        return Some(LocalStatement::SetConstraints);
    }
    let rest = words.join(" ");
    let rest = rest
        .strip_prefix("session ")
        .or_else(|| rest.strip_prefix("local "))
        .unwrap_or(&rest);
    let (name, value) = if let Some(value) = rest.strip_prefix("time zone ") {
        ("timezone", value)
    } else if let Some((name, value)) = rest.split_once('=') {
        (name.trim(), value.trim())
    } else if let Some((name, value)) = rest.split_once(" to ") {
        (name.trim(), value.trim())
    } else {
        return None;
    };
    if name.is_empty() || name.contains(' ') {
        return None;
    }
    let value = if value == "default" {
        None
    } else {
        Some(
            value
                .split(',')
                .map(|part| unquote(part.trim()))
                .collect::<Vec<_>>()
                .join(", "),
        )
    };
    Some(LocalStatement::Set {
        name: name.to_string(),
        value,
    })
}

fn unquote(value: &str) -> String {
    value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .map(|v| v.replace("''", "'"))
        .unwrap_or_else(|| value.to_string())
}

/// `SELECT set_config('name', 'value', is_local) [AS alias]`.
fn set_config_query(normalized: &str) -> Option<LocalStatement> {
    let inner = normalized
        .strip_prefix("select ")?
        .trim_start_matches("pg_catalog.")
        .strip_prefix("set_config(")?;
    let (arguments, rest) = inner.rsplit_once(')')?;
    let column = match rest.trim() {
        "" => "set_config".to_string(),
        alias => alias
            .strip_prefix("as ")?
            .trim()
            .trim_matches('"')
            .to_string(),
    };
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut in_literal = false;
    for c in arguments.chars() {
        match c {
            '\'' => {
                in_literal = !in_literal;
                current.push(c);
            }
            ',' if !in_literal => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    let [name, value, _local] = parts.as_slice() else {
        return None;
    };
    let (name, value) = (name.trim(), value.trim());
    if !(name.starts_with('\'') && value.starts_with('\'')) {
        return None;
    }
    Some(LocalStatement::SetConfig {
        name: unquote(name).to_ascii_lowercase(),
        value: unquote(value),
        column,
    })
}

/// `SELECT version()` and the other session-information functions drivers call on connect.
fn info_query(normalized: &str, session: &Session) -> Option<LocalStatement> {
    let expression = normalized
        .strip_prefix("select ")?
        .replace("pg_catalog.", "");
    // `SELECT * FROM current_schema()` (TypeORM): a function in FROM is a one-row table
    // whose column is named after it.
    let expression = match expression.strip_prefix("* from ") {
        Some(function) if function.ends_with("()") && !function.contains(' ') => {
            function.to_string()
        }
        _ => expression,
    };
    let (expression, alias) = match expression.split_once(" as ") {
        Some((expression, alias)) => (expression.to_string(), Some(alias.trim_matches('"'))),
        None => (expression, None),
    };
    // One item only: `SELECT current_setting('jit') AS cur, set_config(…) AS new` is the
    // catalog's.
    if alias.is_some_and(|alias| !alias.chars().all(|c| c.is_alphanumeric() || c == '_'))
        || expression.contains(',')
    {
        return None;
    }
    let (column, value) = match expression.as_str() {
        "version()" => (
            "version",
            format!(
                "PostgreSQL {SERVER_VERSION} (Shoal {}, SQLite {})",
                env!("CARGO_PKG_VERSION"),
                rusqlite::version()
            ),
        ),
        "current_database()" => ("current_database", session.database.clone()),
        "current_schema()" | "current_schema" => ("current_schema", "public".to_string()),
        "current_user" | "session_user" | "user" => (expression.as_str(), "shoal".to_string()),
        _ => {
            let name = expression
                .strip_prefix("current_setting('")?
                .split_once('\'')?
                .0;
            ("current_setting", session.show(name).ok()?)
        }
    };
    Some(LocalStatement::Info {
        column: alias.unwrap_or(column).to_string(),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_constraints_is_accepted() {
        let session = Session::default();
        for sql in [
            "SET CONSTRAINTS ALL IMMEDIATE",
            "set constraints a, b deferred",
        ] {
            assert_eq!(
                recognize(sql, &session),
                Some(LocalStatement::SetConstraints),
                "{sql}"
            );
        }
    }

    #[test]
    fn set_show_and_reset_round_trip() {
        let session = Session::default();
        let set = recognize("SET shoal.read_consistency = 'linearizable';", &session);
        assert_eq!(
            set,
            Some(LocalStatement::Set {
                name: "shoal.read_consistency".into(),
                value: Some("linearizable".into())
            })
        );
        session
            .set("shoal.read_consistency", Some("linearizable"))
            .unwrap();
        assert_eq!(
            session.request_options().read.level,
            ReadLevel::Linearizable
        );
        assert_eq!(
            session.show("SHOAL.READ_CONSISTENCY").unwrap(),
            "linearizable"
        );
        session.reset(None);
        assert_eq!(session.show("shoal.read_consistency").unwrap(), "weak");
        assert_eq!(session.request_options().read.level, ReadLevel::Weak);
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        let session = Session::default();
        let error = session
            .set("shoal.write_concern", Some("most"))
            .unwrap_err();
        assert_eq!(error.code, sqlstate::INVALID_PARAMETER_VALUE);
        assert!(error.message.contains("most"), "{}", error.message);
        let error = session.set("no_such_setting", Some("1")).unwrap_err();
        assert_eq!(error.code, sqlstate::UNDEFINED_OBJECT);
        assert!(session.set("server_version", Some("9")).is_err());
        assert!(session.set("myapp.tenant", Some("7")).is_ok());
    }

    #[test]
    fn statement_timeout_bounds_requests() {
        let session = Session::default();
        session.set("statement_timeout", Some("2500")).unwrap();
        assert_eq!(
            session.request_options().timeout,
            Duration::from_millis(2500)
        );
        session.set("statement_timeout", Some("1h")).unwrap();
        assert_eq!(session.request_options().timeout, STATEMENT_TIMEOUT_MAX);
    }

    #[test]
    fn session_information_queries_are_answered_locally() {
        let session = Session::default();
        let Some(LocalStatement::Info { column, value }) =
            recognize("select pg_catalog.version()", &session)
        else {
            panic!("version() not recognized");
        };
        assert_eq!(column, "version");
        assert!(value.starts_with("PostgreSQL 16"), "{value}");
        assert_eq!(
            recognize("SELECT current_setting('server_version_num')", &session),
            Some(LocalStatement::Info {
                column: "current_setting".into(),
                value: "160006".into()
            })
        );
        assert_eq!(recognize("SELECT * FROM t", &session), None);
        assert_eq!(
            recognize(
                "SELECT set_config('TimeZone', 'Europe/Paris', false)",
                &session
            ),
            Some(LocalStatement::SetConfig {
                name: "timezone".into(),
                value: "Europe/Paris".into(),
                column: "set_config".into()
            })
        );
        assert_eq!(
            recognize("SET TIME ZONE 'UTC'", &session),
            Some(LocalStatement::Set {
                name: "timezone".into(),
                value: Some("UTC".into())
            })
        );
    }
}
