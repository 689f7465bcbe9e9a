//! The statement guard: an SQLite authorizer that refuses what cannot be replicated
//! deterministically or would touch Shoal's own bookkeeping, and remembers why, so the client
//! gets a sentence instead of SQLite's bare "not authorized".

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

use crate::db::state_file::USERS_TABLE;

/// Savepoints Shoal uses itself start with this prefix; users may not name theirs so.
pub const RESERVED_SAVEPOINT_PREFIX: &str = "shoal_";

/// Tables whose name starts with this prefix belong to Shoal, not to users.
pub const INTERNAL_TABLE_PREFIX: &str = "_shoal_";

/// Pragmas that change what is stored in the database file itself, so they replicate like data.
const REPLICATED_PRAGMAS: &[&str] = &["user_version", "application_id"];

/// Read-only pragmas whose argument names what to report on (a table, an index, a row limit),
/// not a setting: `PRAGMA table_info(t)` and `pragma_table_info('t')` only read the schema.
/// SQLite hands the argument to the authorizer exactly as it hands a new setting's value, so
/// these are told apart by name.
const ARGUMENT_QUERY_PRAGMAS: &[&str] = &[
    "foreign_key_check",
    "foreign_key_list",
    "index_info",
    "index_list",
    "index_xinfo",
    "integrity_check",
    "quick_check",
    "table_info",
    "table_list",
    "table_xinfo",
];

/// Whether `PRAGMA name(argument)` only reads: its argument is a question, not a new value.
fn pragma_argument_is_a_query(pragma_name: &str) -> bool {
    ARGUMENT_QUERY_PRAGMAS
        .iter()
        .any(|p| p.eq_ignore_ascii_case(pragma_name))
}

/// Which connection the guard protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardMode {
    /// The state machine's writer: applies the replicated log.
    Writer,
    /// A read-only connection serving queries.
    Reader,
}

/// Shared state of one connection's authorizer.
#[derive(Debug, Default)]
pub struct StatementGuard {
    /// While set, Shoal's own statements run unchecked (savepoints, state table updates).
    internal: AtomicBool,
    /// Why the last statement was refused, if it was.
    refusal: Mutex<Option<String>>,
    /// While set, user SAVEPOINT, RELEASE and ROLLBACK TO run: inside an interactive
    /// transaction they nest within the transaction's own savepoint.
    user_savepoints: AtomicBool,
    /// While set, the tables statements compiled read and write are noted here.
    recording: Mutex<Option<TableAccess>>,
    /// Set when a statement was allowed to create, rename or alter a schema object: the
    /// authorizer sees the old name of `ALTER TABLE … RENAME TO`, never the new one, so the
    /// caller checks the schema afterwards ([`StatementGuard::take_schema_touched`]).
    schema_touched: AtomicBool,
}

/// The tables statements read and write, as SQLite reports them while compiling them (views
/// and triggers included: what they read and write is reported too). Names are lower-case,
/// as SQLite compares them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableAccess {
    pub read: BTreeSet<String>,
    pub written: BTreeSet<String>,
}

impl TableAccess {
    fn note(&mut self, action: &AuthAction<'_>) {
        match action {
            AuthAction::Read { table_name, .. } => {
                self.read.insert(table_name.to_ascii_lowercase());
            }
            AuthAction::Insert { table_name }
            | AuthAction::Delete { table_name }
            | AuthAction::Update { table_name, .. } => {
                self.written.insert(table_name.to_ascii_lowercase());
            }
            _ => {}
        }
    }
}

impl StatementGuard {
    /// Installs a guard on `connection` and returns the handle used to run internal statements
    /// and to read refusal reasons.
    pub fn install(connection: &Connection, mode: GuardMode) -> Arc<StatementGuard> {
        let guard = Arc::new(StatementGuard::default());
        let hook_guard = guard.clone();
        connection.authorizer(Some(move |context: AuthContext<'_>| {
            hook_guard.authorize(mode, &context)
        }));
        guard
    }

    /// Runs `f` with the guard lifted, for Shoal's own statements.
    pub fn internal<T>(&self, f: impl FnOnce() -> T) -> T {
        self.internal.store(true, Ordering::SeqCst);
        let result = f();
        self.internal.store(false, Ordering::SeqCst);
        result
    }

    /// Runs `f` with user savepoints allowed (an interactive transaction's statements).
    pub fn with_user_savepoints<T>(&self, f: impl FnOnce() -> T) -> T {
        self.user_savepoints.store(true, Ordering::SeqCst);
        let result = f();
        self.user_savepoints.store(false, Ordering::SeqCst);
        result
    }

    /// Runs `f` (which compiles statements) noting the tables they read and write; `None` when
    /// nothing could be noted (a poisoned lock), so what they touch is unknown.
    pub fn recording_tables<T>(&self, f: impl FnOnce() -> T) -> (T, Option<TableAccess>) {
        let started = match self.recording.lock() {
            Ok(mut recording) => {
                *recording = Some(TableAccess::default());
                true
            }
            Err(_) => false,
        };
        let result = f();
        let access = self
            .recording
            .lock()
            .ok()
            .and_then(|mut recording| recording.take())
            .filter(|_| started);
        (result, access)
    }

    /// Whether a statement created, renamed or altered a schema object since the last call.
    pub fn take_schema_touched(&self) -> bool {
        self.schema_touched.swap(false, Ordering::SeqCst)
    }

    /// Takes the reason the last refused statement was refused.
    pub fn take_refusal(&self) -> Option<String> {
        self.refusal
            .lock()
            .ok()
            .and_then(|mut refusal| refusal.take())
    }

    fn authorize(&self, mode: GuardMode, context: &AuthContext<'_>) -> Authorization {
        if self.internal.load(Ordering::SeqCst) {
            return Authorization::Allow;
        }
        if let Ok(mut recording) = self.recording.lock()
            && let Some(access) = recording.as_mut()
        {
            access.note(&context.action);
        }
        if matches!(
            context.action,
            AuthAction::AlterTable { .. }
                | AuthAction::CreateTable { .. }
                | AuthAction::CreateTempTable { .. }
                | AuthAction::CreateView { .. }
                | AuthAction::CreateTempView { .. }
                | AuthAction::CreateIndex { .. }
                | AuthAction::CreateTrigger { .. }
                | AuthAction::CreateVtable { .. }
        ) {
            self.schema_touched.store(true, Ordering::SeqCst);
        }
        let reason = match &context.action {
            AuthAction::Savepoint { savepoint_name, .. }
                if self.user_savepoints.load(Ordering::SeqCst) =>
            {
                savepoint_name
                    .to_ascii_lowercase()
                    .starts_with(RESERVED_SAVEPOINT_PREFIX)
                    .then(|| {
                        format!(
                            "savepoint names starting with {RESERVED_SAVEPOINT_PREFIX} are reserved for Shoal"
                        )
                    })
            }
            action => refusal_reason(mode, action),
        };
        match reason {
            None => Authorization::Allow,
            Some(reason) => {
                if let Ok(mut refusal) = self.refusal.lock() {
                    refusal.get_or_insert(reason);
                }
                Authorization::Deny
            }
        }
    }
}

/// SQLite's raw page table (compiled in for backups, which read it without the guard).
const RAW_PAGES_TABLE: &str = "sqlite_dbpage";

/// The policy itself, a pure function of the action: `Some(reason)` refuses it.
pub fn refusal_reason(mode: GuardMode, action: &AuthAction<'_>) -> Option<String> {
    let internal_table = |name: &str| name.to_ascii_lowercase().starts_with(INTERNAL_TABLE_PREFIX);
    match action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Some(
            "ATTACH and DETACH are not allowed: every replica holds exactly one database".to_string(),
        ),
        AuthAction::Function { function_name } if function_name.eq_ignore_ascii_case("load_extension") => {
            Some("load_extension() is not allowed: extensions are not replicated".to_string())
        }
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } if mode == GuardMode::Writer => Some(
            "BEGIN, COMMIT, ROLLBACK and SAVEPOINT are not allowed as statements: set the `transaction` \
             flag to apply a request atomically"
                .to_string(),
        ),
        AuthAction::Pragma { pragma_name, pragma_value: Some(_) }
            if !REPLICATED_PRAGMAS.iter().any(|p| p.eq_ignore_ascii_case(pragma_name))
                && !pragma_argument_is_a_query(pragma_name) =>
        {
            Some(format!(
                "PRAGMA {pragma_name} = … is not allowed: it changes one connection's settings, which are \
                 not replicated (only {} can be set)",
                REPLICATED_PRAGMAS.join(" and ")
            ))
        }
        // Users and their password hashes: not even readable by statements.
        AuthAction::Read { table_name, .. } if table_name.eq_ignore_ascii_case(USERS_TABLE) => {
            Some(format!("table {table_name} is internal to Shoal and cannot be read"))
        }
        AuthAction::CreateVtable { module_name, .. }
            if module_name.eq_ignore_ascii_case(RAW_PAGES_TABLE) =>
        {
            Some(format!(
                "virtual tables over {RAW_PAGES_TABLE} are not allowed: raw database pages \
                 differ per replica"
            ))
        }
        AuthAction::Read { table_name, .. }
        | AuthAction::Insert { table_name }
        | AuthAction::Delete { table_name }
        | AuthAction::Update { table_name, .. }
            if table_name.eq_ignore_ascii_case(RAW_PAGES_TABLE) =>
        {
            Some(format!(
                "{RAW_PAGES_TABLE} is not allowed: raw database pages differ per replica and \
                 writing them would corrupt the database"
            ))
        }
        AuthAction::Insert { table_name }
        | AuthAction::Delete { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::DropTable { table_name }
        | AuthAction::CreateTable { table_name }
        | AuthAction::AlterTable { table_name, .. }
        | AuthAction::CreateIndex { table_name, .. }
        | AuthAction::CreateTrigger { table_name, .. }
        | AuthAction::CreateVtable { table_name, .. }
        | AuthAction::CreateView {
            view_name: table_name,
        }
            if mode == GuardMode::Writer && internal_table(table_name) =>
        {
            Some(format!("table {table_name} is internal to Shoal and cannot be changed"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::hooks::TransactionOperation;

    #[test]
    fn raw_pages_are_refused_everywhere() {
        let read = AuthAction::Read {
            table_name: "sqlite_dbpage",
            column_name: "data",
        };
        let write = AuthAction::Update {
            table_name: "sqlite_dbpage",
            column_name: "data",
        };
        assert!(refusal_reason(GuardMode::Reader, &read).is_some());
        assert!(refusal_reason(GuardMode::Writer, &write).is_some());
        let alias = AuthAction::CreateVtable {
            table_name: "pages",
            module_name: "SQLITE_DBPAGE",
        };
        assert!(refusal_reason(GuardMode::Writer, &alias).is_some());
    }

    #[test]
    fn attach_is_refused_everywhere() {
        let attach = AuthAction::Attach {
            filename: "/etc/passwd",
        };
        assert!(refusal_reason(GuardMode::Writer, &attach).is_some());
        assert!(refusal_reason(GuardMode::Reader, &attach).is_some());
    }

    #[test]
    fn transaction_statements_are_refused_on_the_writer_only() {
        let begin = AuthAction::Transaction {
            operation: TransactionOperation::Begin,
        };
        assert!(
            refusal_reason(GuardMode::Writer, &begin)
                .unwrap()
                .contains("transaction")
        );
        assert!(refusal_reason(GuardMode::Reader, &begin).is_none());
    }

    #[test]
    fn only_replicated_pragmas_may_be_set() {
        let set_journal = AuthAction::Pragma {
            pragma_name: "journal_mode",
            pragma_value: Some("delete"),
        };
        let set_version = AuthAction::Pragma {
            pragma_name: "user_version",
            pragma_value: Some("7"),
        };
        let read_info = AuthAction::Pragma {
            pragma_name: "table_info",
            pragma_value: None,
        };
        assert!(refusal_reason(GuardMode::Writer, &set_journal).is_some());
        assert!(refusal_reason(GuardMode::Writer, &set_version).is_none());
        assert!(refusal_reason(GuardMode::Writer, &read_info).is_none());
    }

    #[test]
    fn pragmas_whose_argument_is_a_question_are_reads() {
        for (pragma_name, argument) in [
            ("table_info", "t"),
            ("TABLE_XINFO", "t"),
            ("index_list", "t"),
            ("index_info", "t_idx"),
            ("foreign_key_list", "t"),
            ("foreign_key_check", "t"),
            ("integrity_check", "5"),
            ("quick_check", "t"),
            ("table_list", "t"),
        ] {
            let read = AuthAction::Pragma {
                pragma_name,
                pragma_value: Some(argument),
            };
            for mode in [GuardMode::Reader, GuardMode::Writer] {
                assert_eq!(
                    refusal_reason(mode, &read),
                    None,
                    "PRAGMA {pragma_name}({argument})"
                );
            }
        }
        for (pragma_name, value) in [
            ("foreign_keys", "on"),
            ("wal_checkpoint", "truncate"),
            ("cache_size", "1"),
        ] {
            let setting = AuthAction::Pragma {
                pragma_name,
                pragma_value: Some(value),
            };
            assert!(
                refusal_reason(GuardMode::Reader, &setting).is_some(),
                "PRAGMA {pragma_name} = {value}"
            );
        }
    }

    #[test]
    fn compiling_statements_reports_the_tables_they_read_and_write() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch(
                "CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT);
                 CREATE TABLE Secrets(id INTEGER PRIMARY KEY, code TEXT);
                 CREATE TABLE log(note TEXT);
                 CREATE VIEW leaked AS SELECT code FROM secrets;
                 CREATE TRIGGER noted AFTER INSERT ON orders BEGIN
                   INSERT INTO log VALUES (new.item);
                 END;",
            )
            .unwrap();
        let guard = StatementGuard::install(&connection, GuardMode::Reader);
        let access_of = |sql: &str| {
            let (compiled, access) = guard.recording_tables(|| connection.prepare(sql).is_ok());
            assert!(compiled, "{sql}");
            access.expect("recorded")
        };
        let names = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>();
        // No column read still reads the table.
        let count = access_of("SELECT count(*) FROM orders");
        assert_eq!(names(&count.read), ["orders"]);
        assert!(count.written.is_empty());
        // Through a view: the table behind it.
        assert!(access_of("SELECT * FROM leaked").read.contains("secrets"));
        // A trigger's writes are the statement's writes.
        let insert = access_of("INSERT INTO orders(item) SELECT code FROM secrets");
        assert_eq!(names(&insert.written), ["log", "orders"]);
        assert!(insert.read.contains("secrets"));
        // RETURNING reads what it returns.
        let returning = access_of("UPDATE orders SET item = 'x' RETURNING id");
        assert!(returning.read.contains("orders"));
        // Each recording starts afresh.
        let (_, after) = guard.recording_tables(|| ());
        assert_eq!(after, Some(TableAccess::default()));
    }

    #[test]
    fn internal_tables_cannot_be_written() {
        let write = AuthAction::Insert {
            table_name: "_shoal_raft_state",
        };
        let user = AuthAction::Insert {
            table_name: "users",
        };
        assert!(refusal_reason(GuardMode::Writer, &write).is_some());
        assert!(refusal_reason(GuardMode::Writer, &user).is_none());
    }
}
