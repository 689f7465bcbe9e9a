//! PostgreSQL's system catalogs (`pg_class`, `pg_attribute`, `pg_index`, …), emulated from
//! SQLite's schema so psql's `\d`, `\dt`, `\l` and drivers' table lookups (SQLAlchemy's
//! `has_table`) get sensible answers. A catalog query is rewritten into SQLite's dialect
//! (`rewrite`) and run on a small in-memory database (`schema.sql`) filled from the real
//! schema (`fill`) with the catalog functions registered (`functions`); it never touches the
//! replicated database.

mod arrays;
mod fill;
mod functions;
mod rewrite;
mod srf;

use std::sync::Arc;

use rusqlite::Connection;

use crate::db::execute::{StatementShape, execute_statement, statement_shape};
use crate::db::guard::{GuardMode, StatementGuard};
use crate::raft::types::{Statement, StatementResult};
/// A PostgreSQL catalog query as the emulated catalog runs it: set-returning functions in
/// select lists joined as `json_each`, `$n` as `?n`, then the textual rewrites of `rewrite`.
pub fn rewrite(sql: &str) -> String {
    rewrite::rewrite(&crate::pgwire::split::rewrite_parameters(&srf::expand(sql)))
}

/// Whether `sql` reads PostgreSQL's catalogs rather than user tables: a catalog relation
/// (`schema.sql`'s) or catalog function name as a whole word in its code (not in a literal,
/// quoted name or comment; a quoted `"pg_views"` counts).
pub fn is_catalog_query(sql: &str) -> bool {
    const CATALOG_WORDS: &[&str] = &[
        "pg_catalog",
        "pg_roles",
        "information_schema",
        "to_regtype",
        "to_regclass",
        "obj_description",
        "col_description",
        // `SELECT current_setting('jit') AS cur, set_config('jit', 'off', false) AS new`
        // (asyncpg, around its type introspection; a lone call is the session's).
        "current_setting",
    ];
    let mut code = String::with_capacity(sql.len());
    crate::sqltext::for_each_code_char(sql, |_, c| code.push(c.to_ascii_lowercase()));
    let quoted = quoted_names(sql);
    let mut serial_sequence = false;
    let mut setval = false;
    let catalog = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .chain(quoted.iter().map(String::as_str))
        .any(|word| {
            serial_sequence |= word == "pg_get_serial_sequence";
            setval |= word == "setval";
            CATALOG_WORDS.contains(&word) || CATALOG_RELATIONS.contains(word)
        });
    // `SELECT pg_get_serial_sequence('t', 'id')` asks the catalog; a `setval` of it (Django's
    // sequence reset, over the user's table) is the dialect's (`dialect::sequences`).
    // (`any` read every word when it found no catalog word.)
    catalog || (serial_sequence && !setval)
}

/// The relations `schema.sql` defines whose names are PostgreSQL's (`pg_*`).
static CATALOG_RELATIONS: std::sync::LazyLock<std::collections::HashSet<String>> =
    std::sync::LazyLock::new(|| {
        include_str!("schema.sql")
            .lines()
            .filter_map(|line| {
                let rest = line
                    .strip_prefix("CREATE TABLE ")
                    .or_else(|| line.strip_prefix("CREATE VIEW "))?;
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                name.starts_with("pg_").then_some(name)
            })
            .collect()
    });

/// The double-quoted catalog-like names in `sql`, lower-cased (`FROM "pg_views"`).
fn quoted_names(sql: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = sql;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        let name = &after[..end];
        if (name.starts_with("pg_") || name == "information_schema") && name.len() <= 64 {
            names.push(name.to_ascii_lowercase());
        }
        rest = &after[end + 1..];
    }
    names
}

/// An emulated catalog: an in-memory database filled from the real one's schema.
pub struct Catalog {
    connection: Connection,
    guard: Arc<StatementGuard>,
}

/// The databases `pg_database` lists, and the one the session is connected to.
#[derive(Debug, Clone)]
pub struct DatabaseNames {
    pub current: String,
    pub all: Vec<String>,
}

impl Default for DatabaseNames {
    fn default() -> Self {
        let name = crate::catalog::view::DEFAULT_DATABASE.to_string();
        DatabaseNames {
            current: name.clone(),
            all: vec![name],
        }
    }
}

impl Catalog {
    /// Builds the catalog from the schema of `source` (a read connection, guard lifted).
    pub fn build(source: &Connection, names: &DatabaseNames) -> rusqlite::Result<Catalog> {
        let connection = Connection::open_in_memory()?;
        rusqlite::vtab::series::load_module(&connection)?;
        connection.execute_batch(include_str!("schema.sql"))?;
        connection.execute("DELETE FROM pg_database", [])?;
        for (offset, name) in names.all.iter().enumerate() {
            connection.execute(
                "INSERT INTO pg_database VALUES (?1, ?2, 10, 6, 'c', 0, 1, -1, 'C', 'C', NULL, \
                 NULL, NULL, 1663)",
                rusqlite::params![16000 + offset as i64, name],
            )?;
        }
        let objects = fill::read_schema(source)?;
        let definitions = fill::Filler::new(&connection, source, &objects).fill(&objects)?;
        functions::register_functions(&connection, definitions, &names.current)?;
        arrays::register(&connection)?;
        let guard = StatementGuard::install(&connection, GuardMode::Reader);
        Ok(Catalog { connection, guard })
    }

    /// The shape of a (rewritten) catalog query.
    pub fn shape(&self, sql: &str) -> Result<StatementShape, String> {
        let mut shape = statement_shape(&self.connection, &self.guard, sql)?;
        // An expression column (`min(attr.indnkeyatts) AS indnkeyatts`) has no declared type:
        // a catalog column of the same name gives it (catalog column names are distinct).
        for (name, declared) in &mut shape.columns {
            if declared.is_none() {
                *declared = self.catalog_column_type(name);
            }
        }
        Ok(shape)
    }

    /// The declared type of the catalog columns named `name`, when they all have one.
    fn catalog_column_type(&self, name: &str) -> Option<String> {
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT DISTINCT upper(p.type) FROM sqlite_schema AS s, pragma_table_info(s.name) AS p \
                 WHERE s.type = 'table' AND p.name = ?1 COLLATE NOCASE",
            )
            .ok()?;
        let types: Vec<String> = statement
            .query_map([name], |row| row.get(0))
            .ok()?
            .collect::<rusqlite::Result<_>>()
            .ok()?;
        match types.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    }

    /// Runs a (rewritten) catalog query.
    pub fn run(&self, statement: &Statement) -> StatementResult {
        execute_statement(&self.connection, &self.guard, statement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let source = Connection::open_in_memory().unwrap();
        source
            .execute_batch(
                "CREATE TABLE parent(id INTEGER PRIMARY KEY, code TEXT UNIQUE);
                 CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id),
                   name VARCHAR(20) NOT NULL DEFAULT 'x');
                 CREATE INDEX child_name ON child(name);",
            )
            .unwrap();
        Catalog::build(&source, &DatabaseNames::default()).unwrap()
    }

    fn rows(catalog: &Catalog, sql: &str) -> Vec<Vec<crate::types::value::SqlValue>> {
        let result = catalog.run(&Statement::plain(rewrite(sql)));
        assert_eq!(result.error, None, "{sql}");
        result.rows.unwrap().values
    }

    #[test]
    fn only_catalog_names_in_code_make_a_catalog_query() {
        assert!(is_catalog_query("SELECT relname FROM pg_catalog.pg_class"));
        assert!(is_catalog_query("select * from PG_TYPE"));
        assert!(!is_catalog_query(
            "INSERT INTO notes VALUES ('see pg_type')"
        ));
        assert!(!is_catalog_query("SELECT * FROM app_pg_index -- pg_class"));
        // Every catalog relation counts, quoted as ORMs write them too (TypeORM).
        assert!(is_catalog_query("SELECT viewname FROM \"pg_views\""));
        assert!(is_catalog_query("SELECT matviewname FROM pg_matviews"));
        assert!(is_catalog_query(
            "SELECT * FROM \"information_schema\".\"tables\""
        ));
        assert!(is_catalog_query("SELECT enumlabel FROM pg_enum"));
        assert!(!is_catalog_query(
            "SELECT * FROM \"app\" WHERE x = 'pg_views'"
        ));
    }

    #[test]
    fn generate_subscripts_in_from_numbers_a_vector_from_zero() {
        use crate::types::value::SqlValue::Text;
        let catalog = catalog();
        // Peewee's get_indexes: each index's columns by position.
        let sql = "SELECT i.relname, ARRAY(SELECT pg_get_indexdef(idx.indexrelid, k + 1, TRUE) \
                   FROM generate_subscripts(idx.indkey, 1) AS k ORDER BY k) \
                   FROM pg_catalog.pg_class AS t \
                   INNER JOIN pg_catalog.pg_index AS idx ON t.oid = idx.indrelid \
                   INNER JOIN pg_catalog.pg_class AS i ON idx.indexrelid = i.oid \
                   WHERE t.relname = 'child' ORDER BY i.relname";
        assert_eq!(
            rows(&catalog, sql),
            vec![
                vec![Text("child_name".into()), Text("{name}".into())],
                vec![Text("child_pkey".into()), Text("{id}".into())],
            ]
        );
    }

    #[test]
    fn key_constraints_and_their_indexes_carry_declared_or_postgresql_default_names() {
        use crate::types::value::SqlValue::Text;
        let source = Connection::open_in_memory().unwrap();
        source
            .execute_batch(
                "CREATE TABLE users (id INTEGER NOT NULL, name TEXT, email TEXT UNIQUE, \
                   code TEXT, CONSTRAINT \"UQ_name\" UNIQUE (name), \
                   CONSTRAINT \"PK_users\" PRIMARY KEY (id));
                 CREATE TABLE posts (id TEXT CONSTRAINT \"PK_posts\" PRIMARY KEY, a INT, b INT, \
                   UNIQUE (a, b));",
            )
            .unwrap();
        let catalog = Catalog::build(&source, &DatabaseNames::default()).unwrap();
        assert_eq!(
            rows(
                &catalog,
                "SELECT conname, contype FROM pg_catalog.pg_constraint ORDER BY conname"
            ),
            vec![
                vec![Text("PK_posts".into()), Text("p".into())],
                vec![Text("PK_users".into()), Text("p".into())],
                vec![Text("UQ_name".into()), Text("u".into())],
                vec![Text("posts_a_b_key".into()), Text("u".into())],
                vec![Text("users_email_key".into()), Text("u".into())],
            ]
        );
        assert_eq!(
            rows(
                &catalog,
                "SELECT c.relname FROM pg_catalog.pg_index i \
                 JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid ORDER BY c.relname"
            ),
            vec![
                vec![Text("PK_posts".into())],
                vec![Text("PK_users".into())],
                vec![Text("UQ_name".into())],
                vec![Text("posts_a_b_key".into())],
                vec![Text("users_email_key".into())],
            ]
        );
    }

    #[test]
    fn tables_columns_and_keys_appear_as_postgresql_describes_them() {
        use crate::types::value::SqlValue::{Integer, Text};
        let catalog = catalog();
        assert_eq!(
            rows(
                &catalog,
                "SELECT relname, relkind FROM pg_catalog.pg_class ORDER BY oid"
            ),
            vec![
                vec![Text("parent".into()), Text("r".into())],
                vec![Text("child".into()), Text("r".into())],
                vec![Text("child_name".into()), Text("i".into())],
                vec![Text("parent_pkey".into()), Text("i".into())],
                vec![Text("parent_code_key".into()), Text("i".into())],
                vec![Text("child_pkey".into()), Text("i".into())],
            ]
        );
        assert_eq!(
            rows(
                &catalog,
                "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull \
                 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 WHERE c.relname = 'child' ORDER BY a.attnum"
            ),
            vec![
                vec![Text("id".into()), Text("integer".into()), Integer(1)],
                vec![Text("parent_id".into()), Text("integer".into()), Integer(0)],
                vec![
                    Text("name".into()),
                    Text("character varying(20)".into()),
                    Integer(1)
                ],
            ]
        );
        assert_eq!(
            rows(
                &catalog,
                "SELECT pg_catalog.pg_get_constraintdef(oid, true) FROM pg_catalog.pg_constraint \
                 WHERE contype = 'f'"
            ),
            vec![vec![Text(
                "FOREIGN KEY (parent_id) REFERENCES parent(id)".into()
            )]]
        );
    }
}
