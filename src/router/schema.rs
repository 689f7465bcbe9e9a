//! A sharded database's schema as the router holds it: an in-memory SQLite database with
//! the same objects and no rows. Statements are compiled against it to learn what they read
//! and write (SQLite's authorizer reports every table, through views and triggers too), and
//! copies of it receive gathered rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::{Connection, OptionalExtension};

use crate::db::dump::quote_identifier;
use crate::router::pinning::number_parameters;
use crate::router::plan::Template;
use crate::router::tokens::{Token, tokenize};

/// What compiling a statement showed it touches.
#[derive(Debug, Default)]
pub struct Analysis {
    /// Tables read (lower-case), including those read through views.
    pub read: BTreeSet<String>,
    pub inserted: BTreeSet<String>,
    pub deleted: BTreeSet<String>,
    /// Tables updated, with the columns set (lower-case).
    pub updated: BTreeMap<String, BTreeSet<String>>,
    /// The statement creates, drops or alters a schema object.
    pub changes_schema: bool,
    /// A table it creates or drops (the one named by CREATE/DROP TABLE).
    pub created_table: Option<String>,
    pub dropped_table: Option<String>,
    /// The table ALTER TABLE changes.
    pub altered_table: Option<String>,
    /// BEGIN, COMMIT, ROLLBACK or SAVEPOINT.
    pub transaction_control: bool,
    /// SQLite judges it read-only.
    pub read_only: bool,
    /// Its tokens, bare `?` numbered as SQLite numbers them (`None` when it does not
    /// tokenize): kept with the analysis so a statement sent again is not tokenized again.
    pub tokens: Option<Arc<[Token]>>,
    /// How the router plans it, kept from its first planning (`plan::plan`).
    pub template: OnceLock<Template>,
}

impl Analysis {
    /// The tables it writes rows of.
    pub fn written(&self) -> BTreeSet<String> {
        let mut written: BTreeSet<String> = self.inserted.union(&self.deleted).cloned().collect();
        written.extend(self.updated.keys().cloned());
        written
    }

    fn note(&mut self, action: &AuthAction<'_>) {
        let lower = |name: &str| name.to_ascii_lowercase();
        match action {
            AuthAction::Read { table_name, .. } => {
                self.read.insert(lower(table_name));
            }
            AuthAction::Insert { table_name } => {
                self.inserted.insert(lower(table_name));
            }
            AuthAction::Delete { table_name } => {
                self.deleted.insert(lower(table_name));
            }
            AuthAction::Update {
                table_name,
                column_name,
            } => {
                self.updated
                    .entry(lower(table_name))
                    .or_default()
                    .insert(lower(column_name));
            }
            AuthAction::CreateTable { table_name } => {
                self.changes_schema = true;
                self.created_table = Some(lower(table_name));
            }
            AuthAction::DropTable { table_name } => {
                self.changes_schema = true;
                self.dropped_table = Some(lower(table_name));
            }
            AuthAction::AlterTable { table_name, .. } => {
                self.changes_schema = true;
                self.altered_table = Some(lower(table_name));
            }
            AuthAction::CreateIndex { .. }
            | AuthAction::CreateTrigger { .. }
            | AuthAction::CreateView { .. }
            | AuthAction::CreateVtable { .. }
            | AuthAction::DropIndex { .. }
            | AuthAction::DropTrigger { .. }
            | AuthAction::DropView { .. }
            | AuthAction::DropVtable { .. }
            | AuthAction::CreateTempTable { .. }
            | AuthAction::CreateTempIndex { .. }
            | AuthAction::CreateTempTrigger { .. }
            | AuthAction::CreateTempView { .. }
            | AuthAction::DropTempTable { .. }
            | AuthAction::DropTempIndex { .. }
            | AuthAction::DropTempTrigger { .. }
            | AuthAction::DropTempView { .. } => self.changes_schema = true,
            AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => {
                self.transaction_control = true;
            }
            _ => {}
        }
    }
}

/// Why a statement could not be analysed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnalyzeError {
    /// It does not compile against the schema (SQLite's message): a group would refuse it
    /// the same way.
    Compile(String),
    /// The router failed (its own error); the statement must not run.
    Internal(String),
}

/// A column of a table, as `PRAGMA table_xinfo` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub declared_type: String,
    /// Generated columns are computed, never inserted.
    pub generated: bool,
}

/// What the router needs to know of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    /// The name as created.
    pub name: String,
    pub columns: Vec<Column>,
    /// The column that is an alias of the rowid (`INTEGER PRIMARY KEY`), if any.
    pub rowid_alias: Option<String>,
    pub without_rowid: bool,
}

impl TableShape {
    /// The columns an INSERT gives values to.
    pub fn stored_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| !c.generated)
    }
}

/// The schema of one sharded database.
pub struct Schema {
    /// The catalog's schema epoch it was loaded at.
    pub epoch: u64,
    /// The statements that create it, in creation order.
    pub statements: Vec<String>,
    connection: Mutex<Connection>,
    noted: Arc<Mutex<Analysis>>,
    /// Table shapes already read, by lower-case name.
    shapes: RwLock<HashMap<String, Option<Arc<TableShape>>>>,
    /// Analyses already made, by statement text (the same text compiles the same way
    /// against one schema; a statement sent again with other parameters is not recompiled).
    analyses: RwLock<HashMap<String, Arc<Analysis>>>,
    /// Distributed tables' shard keys, by lower-case table name and key column.
    shard_keys: RwLock<HashMap<ShardKeyId, Arc<ShardKey>>>,
}

/// A distributed table (lower-case) and its key column (lower-case; `None`: its rowid).
type ShardKeyId = (String, Option<String>);

/// How statements can write a distributed table's shard key, and the key's affinity.
#[derive(Debug)]
pub struct ShardKey {
    /// The key column's name, or `rowid` and its aliases (lower-case).
    pub names: Vec<String>,
    pub affinity: crate::shard::slot::Affinity,
}

/// Statement texts whose analysis a schema keeps (all are forgotten when it is full).
const ANALYSES_KEPT_MAX: usize = 4096;
/// Longest statement text whose analysis is kept.
const ANALYSED_TEXT_BYTES_MAX: usize = 4096;

impl Schema {
    /// Builds the schema from the statements that create it.
    pub fn build(epoch: u64, statements: Vec<String>) -> Result<Schema, String> {
        let connection = Connection::open_in_memory()
            .map_err(|e| format!("opening the router's schema copy: {e}"))?;
        for sql in &statements {
            connection
                .execute_batch(sql)
                .map_err(|e| format!("rebuilding the schema ({sql}): {e}"))?;
        }
        let noted = Arc::new(Mutex::new(Analysis::default()));
        let hook = noted.clone();
        connection.authorizer(Some(move |context: AuthContext<'_>| {
            if let Ok(mut analysis) = hook.lock() {
                analysis.note(&context.action);
            }
            Authorization::Allow
        }));
        Ok(Schema {
            epoch,
            statements,
            connection: Mutex::new(connection),
            noted,
            shapes: RwLock::new(HashMap::new()),
            analyses: RwLock::new(HashMap::new()),
            shard_keys: RwLock::new(HashMap::new()),
        })
    }

    /// What `sql` was found to touch, if it was analysed before.
    pub fn analyzed(&self, sql: &str) -> Option<Arc<Analysis>> {
        self.analyses.read().ok()?.get(sql).cloned()
    }

    /// What `sql` touches, from compiling it here; `Err` with SQLite's message when it does
    /// not compile (a table that does not exist, a syntax error).
    pub fn analyze(&self, sql: &str) -> Result<Arc<Analysis>, AnalyzeError> {
        if let Some(analysis) = self.analyzed(sql) {
            return Ok(analysis);
        }
        let mut analysis = self.compile(sql).map_err(AnalyzeError::Compile)?;
        analysis.tokens = tokenize(sql).map(|tokens| number_parameters(&tokens).into());
        if !analysis.inserted.is_empty() {
            // What an INSERT … SELECT reads, even where SQLite copies rows wholesale.
            analysis
                .read
                .extend(self.tables_opened(sql).map_err(AnalyzeError::Internal)?);
        }
        let analysis = Arc::new(analysis);
        if sql.len() <= ANALYSED_TEXT_BYTES_MAX
            && let Ok(mut analyses) = self.analyses.write()
        {
            if analyses.len() >= ANALYSES_KEPT_MAX {
                analyses.clear();
            }
            analyses.insert(sql.to_string(), analysis.clone());
        }
        Ok(analysis)
    }

    /// The shard key of `table` keyed by `key` (its rowid when `None`), as `compute` finds
    /// it the first time it is asked of this schema.
    pub fn shard_key(
        &self,
        table: &str,
        key: Option<&str>,
        compute: impl FnOnce() -> ShardKey,
    ) -> Arc<ShardKey> {
        let id = (table.to_ascii_lowercase(), key.map(str::to_ascii_lowercase));
        if let Some(known) = self
            .shard_keys
            .read()
            .ok()
            .and_then(|k| k.get(&id).cloned())
        {
            return known;
        }
        let computed = Arc::new(compute());
        if let Ok(mut keys) = self.shard_keys.write() {
            keys.insert(id, computed.clone());
        }
        computed
    }

    fn compile(&self, sql: &str) -> Result<Analysis, String> {
        let connection = self.lock()?;
        if let Ok(mut noted) = self.noted.lock() {
            *noted = Analysis::default();
        }
        let read_only = connection
            .prepare(sql)
            .map(|statement| statement.readonly())
            .map_err(|e| e.to_string())?;
        let mut analysis = self
            .noted
            .lock()
            .map(|mut noted| std::mem::take(&mut *noted))
            .map_err(|_| "the router's schema lock is poisoned".to_string())?;
        analysis.read_only = read_only;
        Ok(analysis)
    }

    /// The tables `sql` opens for reading, from its compiled program (`EXPLAIN`): what the
    /// authorizer misses when SQLite copies rows wholesale (`INSERT INTO a SELECT * FROM b`
    /// reads no column of `b` one by one).
    pub fn tables_opened(&self, sql: &str) -> Result<BTreeSet<String>, String> {
        let connection = self.lock()?;
        let fail = |e: rusqlite::Error| format!("reading the program of {sql:?}: {e}");
        let mut roots = BTreeSet::new();
        {
            let mut explain = connection
                .prepare(&format!("EXPLAIN {sql}"))
                .map_err(fail)?;
            // (Unbound: EXPLAIN lists the program without running it.)
            let mut steps = explain.raw_query();
            while let Some(step) = steps.next().map_err(fail)? {
                let opcode: String = step.get(1).map_err(fail)?;
                let database: i64 = step.get(4).map_err(fail)?;
                if opcode == "OpenRead" && database == 0 {
                    roots.insert(step.get::<_, i64>(3).map_err(fail)?);
                }
            }
        }
        let mut tables = BTreeSet::new();
        let mut lookup = connection
            .prepare("SELECT tbl_name FROM sqlite_schema WHERE rootpage = ?1")
            .map_err(fail)?;
        for root in roots {
            let names = lookup
                .query_map([root], |row| row.get::<_, String>(0))
                .map_err(fail)?;
            for name in names {
                tables.insert(name.map_err(fail)?.to_ascii_lowercase());
            }
        }
        Ok(tables)
    }

    /// The shape of table `name` (any case), if it exists.
    pub fn table(&self, name: &str) -> Result<Option<Arc<TableShape>>, String> {
        let key = name.to_ascii_lowercase();
        if let Some(shape) = self.shapes.read().ok().and_then(|s| s.get(&key).cloned()) {
            return Ok(shape);
        }
        let connection = self.lock()?;
        let shape = table_shape(&connection, name)
            .map_err(|e| format!("reading table {name}: {e}"))?
            .map(Arc::new);
        if let Ok(mut shapes) = self.shapes.write() {
            shapes.insert(key, shape.clone());
        }
        Ok(shape)
    }

    /// A new in-memory database holding this schema and no rows (gathered rows go there).
    pub fn scratch(&self) -> Result<Connection, String> {
        let connection = self.lock()?;
        let mut copy =
            Connection::open_in_memory().map_err(|e| format!("opening a scratch database: {e}"))?;
        {
            let backup = rusqlite::backup::Backup::new(&connection, &mut copy)
                .map_err(|e| format!("copying the schema: {e}"))?;
            backup
                .step(-1)
                .map_err(|e| format!("copying the schema: {e}"))?;
        }
        Ok(copy)
    }

    /// The names (lower-case) of the database's views.
    pub fn views(&self) -> Result<BTreeSet<String>, String> {
        let connection = self.lock()?;
        let fail = |e: rusqlite::Error| format!("listing the schema's views: {e}");
        let mut statement = connection
            .prepare("SELECT lower(name) FROM sqlite_schema WHERE type = 'view'")
            .map_err(fail)?;
        let names = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(fail)?;
        names.collect::<rusqlite::Result<_>>().map_err(fail)
    }

    /// Whether table `name`'s definition names a collation (a column compared otherwise than
    /// byte by byte).
    pub fn declares_collation(&self, name: &str) -> Result<bool, String> {
        let connection = self.lock()?;
        let sql: Option<String> = connection
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
                [name],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| format!("reading table {name}: {e}"))?
            .flatten();
        Ok(sql.is_some_and(|sql| {
            crate::router::tokens::tokenize(&sql)
                .is_none_or(|tokens| tokens.iter().any(|t| t.is("collate")))
        }))
    }

    /// The result column names of `sql` and their declared types, as SQLite gives them.
    pub fn describe(&self, sql: &str) -> Result<(Vec<String>, Vec<Option<String>>), String> {
        let connection = self.lock()?;
        let statement = connection
            .prepare(sql)
            .map_err(|e| format!("describing {sql:?}: {e}"))?;
        let names = statement
            .column_names()
            .into_iter()
            .map(str::to_string)
            .collect();
        let declared = statement
            .columns()
            .iter()
            .map(|c| c.decl_type().map(|t| t.to_ascii_lowercase()))
            .collect();
        Ok((names, declared))
    }

    /// Runs `work` on the schema connection (no authorizer effects are read).
    pub fn with_connection<T>(&self, work: impl FnOnce(&Connection) -> T) -> Result<T, String> {
        let connection = self.lock()?;
        Ok(work(&connection))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, String> {
        self.connection
            .lock()
            .map_err(|_| "the router's schema lock is poisoned".to_string())
    }
}

/// The shape of table `name` in `connection`'s main database.
pub fn table_shape(connection: &Connection, name: &str) -> rusqlite::Result<Option<TableShape>> {
    let found: Option<(String, String)> = connection
        .query_row(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
            [name],
            |row| {
                Ok((
                    row.get(0)?,
                    row.get::<_, Option<String>>(1)?.unwrap_or_default(),
                ))
            },
        )
        .optional()?;
    let Some((name, sql)) = found else {
        return Ok(None);
    };
    let mut columns = Vec::new();
    let mut primary_key = Vec::new();
    let mut statement =
        connection.prepare("SELECT name, type, pk, hidden FROM pragma_table_xinfo(?1)")?;
    let mut rows = statement.query([&name])?;
    while let Some(row) = rows.next()? {
        let column = Column {
            name: row.get(0)?,
            declared_type: row.get(1)?,
            generated: row.get::<_, i64>(3)? >= 2,
        };
        if row.get::<_, i64>(2)? > 0 {
            primary_key.push(column.clone());
        }
        columns.push(column);
    }
    let without_rowid = crate::router::tokens::tokenize(&sql).is_some_and(|tokens| {
        tokens
            .windows(2)
            .any(|pair| pair[0].is("without") && pair[1].is("rowid"))
    });
    // An INTEGER PRIMARY KEY of a rowid table is the rowid, except in SQLite's corner cases
    // (`INTEGER PRIMARY KEY DESC`): asked of SQLite itself, which reads an alias with the
    // `Rowid` instruction (from the table itself: an index on the column would be read
    // instead, with other instructions).
    let rowid_alias = match primary_key.as_slice() {
        [only] if !without_rowid && only.declared_type.eq_ignore_ascii_case("integer") => {
            let mut explain = connection.prepare(&format!(
                "EXPLAIN SELECT {} FROM {} NOT INDEXED",
                quote_identifier(&only.name),
                quote_identifier(&name)
            ))?;
            let mut steps = explain.query([])?;
            let mut reads_rowid = false;
            while let Some(step) = steps.next()? {
                reads_rowid |= step.get::<_, String>(1)? == "Rowid";
            }
            reads_rowid.then(|| only.name.clone())
        }
        _ => None,
    };
    Ok(Some(TableShape {
        name,
        columns,
        rowid_alias,
        without_rowid,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_integer_primary_key_is_the_rowid_even_with_an_index_on_it() {
        let schema = Schema::build(
            0,
            vec![
                "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)".into(),
                "CREATE INDEX t_id ON t (id)".into(),
                "CREATE TABLE d (id INTEGER PRIMARY KEY DESC, v TEXT)".into(),
            ],
        )
        .unwrap();
        let alias = |table: &str| schema.table(table).unwrap().unwrap().rowid_alias.clone();
        assert_eq!(alias("t").as_deref(), Some("id"));
        assert_eq!(
            alias("d"),
            None,
            "INTEGER PRIMARY KEY DESC is not the rowid"
        );
    }

    #[test]
    fn an_insert_with_parameters_is_analysed() {
        let schema = Schema::build(
            0,
            vec!["CREATE TABLE items (id INTEGER PRIMARY KEY, owner INTEGER, label TEXT)".into()],
        )
        .unwrap();
        let analysis = schema
            .analyze("INSERT INTO items (owner, label) VALUES (?, ?)")
            .unwrap();
        assert!(analysis.inserted.contains("items"), "{analysis:?}");
        let copied = schema
            .analyze("INSERT INTO items SELECT * FROM items")
            .unwrap();
        assert!(copied.read.contains("items"), "{copied:?}");
    }
}
