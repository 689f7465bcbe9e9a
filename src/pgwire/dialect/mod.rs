//! PostgreSQL's SQL dialect in front of SQLite: what a PostgreSQL client sends is parsed with
//! sqlparser's PostgreSQL dialect, the constructs SQLite lacks are rewritten to ones SQLite
//! evaluates the same way (`rewrite.rs`), and what cannot be is refused naming the construct.
//!
//! How the two dialects share the endpoint:
//! - text that parses as PostgreSQL and holds nothing to rewrite runs exactly as written (with
//!   `$n` parameters as `?n`), so SQLite's own spelling keeps working and its error messages
//!   point into the text the client wrote;
//! - text that parses as PostgreSQL and holds PostgreSQL-only constructs runs as the rewritten
//!   statement, printed from the tree;
//! - text that does not parse as PostgreSQL (SQLite-only syntax: `INSERT OR REPLACE`, `?`
//!   parameters, `PRAGMA`, backquoted names) runs as written, through the older textual
//!   rewrites of `split.rs`.

mod alter;
pub mod comments;
mod defaults;
pub mod enums;
mod functions;
mod hints;
mod intervals;
mod like;
pub mod rebuild;
mod rewrite;
pub mod sequences;
pub mod truncate;
mod types;
mod unnest;

pub use alter::AlterPlan;
pub use functions::postgresql_spelling;
pub use intervals::IntervalParameter;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use sqlparser::ast::VisitMut;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::pgwire::split::{rewrite_parameters, to_sqlite};
use crate::pgwire::types::PgType;

/// Statements longer than this are not parsed (bulk loads): they run through the textual path.
const PARSED_TEXT_BYTES_MAX: usize = 256 * 1024;
/// Parser nesting depth; deeper text is taken as SQLite's (and SQLite bounds it again).
const PARSER_RECURSION_LIMIT: usize = 64;
/// Translations kept per process, by statement text (cleared when full: clients send few
/// distinct texts, and prepared statements are translated once anyway).
const TRANSLATIONS_KEPT_MAX: usize = 4096;
/// Texts longer than this are translated every time rather than kept.
const KEPT_TEXT_BYTES_MAX: usize = 16 * 1024;

/// A construct of PostgreSQL's dialect that Shoal does not serve (SQLSTATE 0A000).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl Unsupported {
    /// A literal the translator read and found invalid (`INTERVAL 'banana'`): PostgreSQL's
    /// error for it, not a refusal.
    fn is_invalid_input(&self) -> bool {
        self.0.starts_with("invalid input syntax for type")
    }

    /// The SQLSTATE of the refusal: `0A000`, or `22007` for an invalid date/time literal.
    pub fn sqlstate(&self) -> &'static str {
        if self.is_invalid_input() {
            "22007"
        } else {
            "0A000"
        }
    }
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_invalid_input() {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{} is not supported by Shoal", self.0)
        }
    }
}

/// A statement as SQLite runs it, and what the statement says of its result columns' types.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Translation {
    pub sql: String,
    /// The PostgreSQL types of leading result columns where the statement names them
    /// (`now()`, `x::date`); `None` or absent: from declared types and values.
    pub column_types: Vec<Option<PgType>>,
    /// A schema change run as several statements in one transaction, some of them made from
    /// the schema when it runs: ALTER TABLE forms SQLite lacks, COMMENT ON (`sql` is then the
    /// statement as written).
    pub alter: Option<Arc<AlterPlan>>,
    /// Sequence functions (`nextval('s')`, …) the statement calls, evaluated before it runs;
    /// `sql` holds `sequences::placeholder(k)` where the `k`th one's value goes.
    pub sequences: Vec<sequences::SequenceCall>,
    /// Times plus or minus a bound parameter (`now() - $1`), decided when the statement runs:
    /// `sql` has them as plain arithmetic, `interval_template` holds
    /// `IntervalParameter::placeholder(k)` for the `k`th (empty when there are none).
    pub interval_parameters: Vec<IntervalParameter>,
    pub interval_template: String,
    /// An INSERT whose VALUES rows leave different columns to their defaults, as the INSERTs
    /// it runs as — together and atomically, their results joined (`defaults.rs`); `sql` is
    /// then the first. Empty for other statements.
    pub split: Vec<String>,
    /// Parameters bound as arrays (`x = ANY($n)`), with the operand each is compared with: the
    /// endpoint describes them as arrays of that operand's type.
    pub array_parameters: Vec<(usize, String)>,
    /// A TRUNCATE: the tables it empties, run as deletions ordered by the schema when it runs
    /// (`sql` is then as written).
    pub truncate: Option<truncate::Truncation>,
}

impl Translation {
    /// The statement for parameters bound as they are: each time-plus-parameter whose
    /// parameter `interval_of` reads as an interval shifts the time, the others stay plain
    /// arithmetic (`sql`).
    pub fn with_interval_parameters(
        &self,
        interval_of: impl Fn(usize) -> Option<crate::pgwire::interval::Interval>,
    ) -> String {
        let shifts: Vec<Option<crate::pgwire::interval::Interval>> = self
            .interval_parameters
            .iter()
            .map(|parameter| interval_of(parameter.parameter))
            .collect();
        if shifts.iter().all(Option::is_none) {
            return self.sql.clone();
        }
        render_interval_parameters(
            &self.interval_template,
            &self.interval_parameters,
            |index| shifts[index],
        )
    }
}

/// `template` with the `k`th placeholder of `parameters` as its shift by `shift(k)` or, for
/// `None`, as plain arithmetic.
fn render_interval_parameters(
    template: &str,
    parameters: &[IntervalParameter],
    shift: impl Fn(usize) -> Option<crate::pgwire::interval::Interval>,
) -> String {
    // From the last, so `…_1` is not taken for the start of `…_10`.
    let mut text = template.to_string();
    for (index, parameter) in parameters.iter().enumerate().rev() {
        let rendered = match shift(index) {
            Some(interval) => parameter.shifted(&interval),
            None => parameter.plain(),
        };
        text = text.replace(&IntervalParameter::placeholder(index), &rendered);
    }
    text
}

type Translated = Result<Arc<Translation>, Unsupported>;

static TRANSLATIONS: LazyLock<RwLock<HashMap<String, Translated>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// One statement (no `;` between statements) as SQLite should run it.
pub fn translate(sql: &str) -> Translated {
    if let Some(known) = TRANSLATIONS
        .read()
        .ok()
        .and_then(|kept| kept.get(sql).cloned())
    {
        return known;
    }
    let translated = translate_uncached(sql);
    if sql.len() <= KEPT_TEXT_BYTES_MAX
        && let Ok(mut kept) = TRANSLATIONS.write()
    {
        if kept.len() >= TRANSLATIONS_KEPT_MAX {
            kept.clear();
        }
        kept.insert(sql.to_string(), translated.clone());
    }
    translated
}

/// The result column types `sql` names (see `Translation::column_types`), also for a
/// statement Shoal does not translate (a catalog query).
pub fn column_types(sql: &str) -> Vec<Option<PgType>> {
    if let Ok(translation) = translate(sql) {
        return translation.column_types.clone();
    }
    parse(sql)
        .and_then(|statements| statements.first().map(hints::result_types))
        .unwrap_or_default()
}

/// `sql` parsed as PostgreSQL (bounded nesting); `None` when it is not PostgreSQL's.
pub fn parse(sql: &str) -> Option<Vec<sqlparser::ast::Statement>> {
    Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_statements())
        .ok()
}

/// The translation of an INSERT split into `parts` by their defaults.
fn split_translation(parts: Vec<String>) -> Translated {
    let mut translated = parts
        .iter()
        .map(|part| translate_uncached(part))
        .collect::<Result<Vec<_>, _>>()?;
    if translated.len() == 1 {
        return Ok(translated.remove(0));
    }
    if translated.iter().any(|part| {
        part.alter.is_some()
            || !part.sequences.is_empty()
            || !part.interval_parameters.is_empty()
            || !part.split.is_empty()
    }) {
        return Err(Unsupported(
            "nextval() or interval arithmetic in a VALUES list whose rows take different \
             defaults"
                .into(),
        ));
    }
    Ok(Arc::new(Translation {
        sql: translated[0].sql.clone(),
        column_types: translated[0].column_types.clone(),
        split: translated.iter().map(|part| part.sql.clone()).collect(),
        ..Translation::default()
    }))
}

fn translate_uncached(sql: &str) -> Translated {
    let as_written = |column_types| {
        Ok(Arc::new(Translation {
            sql: to_sqlite(&rewrite_parameters(sql)),
            column_types,
            ..Translation::default()
        }))
    };
    if sql.len() > PARSED_TEXT_BYTES_MAX {
        return as_written(Vec::new());
    }
    let mut statements = match parse(sql) {
        Some(statements) if statements.len() == 1 => statements,
        // Not PostgreSQL (or several statements, which the caller splits first).
        _ => return as_written(Vec::new()),
    };
    if matches!(
        statements[0],
        sqlparser::ast::Statement::Declare { .. }
            | sqlparser::ast::Statement::Fetch { .. }
            | sqlparser::ast::Statement::Close { .. }
    ) {
        // (The endpoint serves DECLARE … CURSOR FOR, FETCH [FORWARD] n|ALL|NEXT and CLOSE
        // before translating: see `pgwire::cursors`.)
        return Err(Unsupported(
            "this cursor statement (SCROLL, BACKWARD, ABSOLUTE or RELATIVE fetches, MOVE)".into(),
        ));
    }
    if let Some(truncation) = truncate::truncate_statement(&statements[0]) {
        return Ok(Arc::new(Translation {
            sql: sql.to_string(),
            truncate: Some(truncation),
            ..Translation::default()
        }));
    }
    if let Some(parts) = defaults::split_by_defaults(&statements[0]) {
        return split_translation(parts.map_err(Unsupported)?);
    }
    if let Some(plan) = sequences::sequence_statement(&statements[0]) {
        return plan.map(|plan| {
            Arc::new(Translation {
                sql: sql.to_string(),
                alter: Some(Arc::new(plan)),
                ..Translation::default()
            })
        });
    }
    if let Some(plan) = comments::comment_statement(&statements[0]) {
        return plan.map(|plan| {
            Arc::new(Translation {
                sql: sql.to_string(),
                alter: Some(Arc::new(plan)),
                ..Translation::default()
            })
        });
    }
    if let Some(statement) = enums::type_statement(&statements[0]) {
        return statement.map(|sql| {
            Arc::new(Translation {
                sql,
                ..Translation::default()
            })
        });
    }
    let column_types = hints::result_types(&statements[0]);
    let mut rewriter = rewrite::Rewriter::default();
    let _ = statements.visit(&mut rewriter);
    if let Some(unsupported) = rewriter.unsupported {
        return Err(unsupported);
    }
    let calls = std::mem::take(&mut rewriter.sequence_calls);
    if calls
        .iter()
        .any(|call| matches!(call, sequences::SequenceCall::Next(_)))
        && !sequences::evaluates_once(&statements[0])
    {
        return Err(Unsupported(
            "nextval() in a statement that reads rows or updates them (PostgreSQL takes a \
             value per row; take it in INSERT … VALUES or SELECT nextval(…))"
                .into(),
        ));
    }
    // (After the rewriting pass: a new default or check is SQLite's expression by now.)
    match alter::alter_statement(&statements[0]) {
        Some(Ok(alter::Alter::Sql(sql))) => {
            return Ok(Arc::new(Translation {
                sql,
                ..Translation::default()
            }));
        }
        Some(Ok(alter::Alter::Plan(plan))) => {
            return Ok(Arc::new(Translation {
                sql: sql.to_string(),
                alter: Some(Arc::new(plan)),
                ..Translation::default()
            }));
        }
        Some(Err(unsupported)) => return Err(unsupported),
        None => {}
    }
    // A table with columns of (possibly) enum types: made with CHECKs of the labels, read when
    // it runs.
    let enum_columns = enums::possible_enum_columns(&statements[0]);
    if !enum_columns.is_empty() {
        let create = if rewriter.changed {
            statements[0].to_string()
        } else {
            to_sqlite(&rewrite_parameters(sql))
        };
        let table_name = match &statements[0] {
            sqlparser::ast::Statement::CreateTable(table) => table.name.to_string(),
            _ => String::new(),
        };
        return Ok(Arc::new(Translation {
            sql: sql.to_string(),
            alter: Some(Arc::new(AlterPlan {
                table: table_name.clone(),
                table_name,
                if_exists: false,
                native: Vec::new(),
                rebuild: Vec::new(),
                create: Some(create),
                enum_columns,
            })),
            ..Translation::default()
        }));
    }
    if !rewriter.changed {
        return as_written(column_types);
    }
    let interval_parameters = std::mem::take(&mut rewriter.interval_parameters);
    let printed = statements[0].to_string();
    let (sql, interval_template) = if interval_parameters.is_empty() {
        (printed, String::new())
    } else {
        let plain = render_interval_parameters(&printed, &interval_parameters, |_| None);
        (plain, printed)
    };
    Ok(Arc::new(Translation {
        sql,
        column_types,
        sequences: calls,
        interval_parameters,
        interval_template,
        array_parameters: std::mem::take(&mut rewriter.array_parameters),
        ..Translation::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(sql: &str) -> String {
        translate(sql)
            .map(|t| t.sql.clone())
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    #[test]
    fn sqlite_spellings_run_as_written() {
        for sql in [
            "INSERT OR REPLACE INTO t VALUES (?, ?)",
            "PRAGMA table_info(t)",
            "SELECT * FROM t WHERE a = ?1 AND b LIKE 'x%'",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT) WITHOUT ROWID",
            "select `a` from t",
        ] {
            assert_eq!(sqlite(sql), sql);
        }
        assert_eq!(
            sqlite("SELECT a FROM t WHERE b = $1"),
            "SELECT a FROM t WHERE b = ?1"
        );
    }

    #[test]
    fn casts_take_the_sqlite_type_that_keeps_the_meaning() {
        assert_eq!(
            sqlite("SELECT $1::VARCHAR, $2::INTEGER, $3::TIMESTAMP WITHOUT TIME ZONE"),
            "SELECT CAST(?1 AS TEXT) AS \"varchar\", CAST(?2 AS INTEGER) AS \"int4\", \
             CAST(?3 AS TEXT) AS \"timestamp\""
        );
        assert_eq!(
            sqlite("SELECT 'a'::bytea, 2.5::float8, x::numeric(10, 2) FROM t"),
            "SELECT X'61' AS \"bytea\", CAST(2.5 AS REAL) AS \"float8\", \
             CAST(x AS NUMERIC) AS \"x\" FROM t"
        );
        assert_eq!(
            sqlite("SELECT 't'::boolean, 'off'::bool"),
            "SELECT 1 AS \"bool\", 0 AS \"bool\""
        );
        // A bytea literal is its bytes (psycopg2 inlines binary values as `'\x…'::bytea`).
        assert_eq!(
            sqlite("INSERT INTO t VALUES ('\\x00ff'::bytea)"),
            "INSERT INTO t VALUES (X'00FF')"
        );
        assert_eq!(
            sqlite("SELECT CAST(x AS uuid) FROM t"),
            "SELECT CAST(x AS TEXT) AS \"x\" FROM t"
        );
    }

    #[test]
    fn translated_defaults_read_back_as_the_function_the_client_wrote() {
        for function in ["now()", "gen_random_uuid()", "uuid_generate_v4()"] {
            let create = sqlite(&format!("CREATE TABLE t (a TEXT DEFAULT {function})"));
            let connection = rusqlite::Connection::open_in_memory().unwrap();
            connection.execute_batch(&create).unwrap();
            let default: String = connection
                .query_row("SELECT dflt_value FROM pragma_table_info('t')", [], |row| {
                    row.get(0)
                })
                .unwrap();
            assert_eq!(postgresql_spelling(&default), Some(function), "{create}");
            connection
                .execute("INSERT INTO t DEFAULT VALUES", [])
                .unwrap();
        }
        assert_eq!(postgresql_spelling("'abc'"), None);
    }

    #[test]
    fn postgresql_operators_and_functions_become_sqlite_ones() {
        assert_eq!(
            sqlite("SELECT * FROM t WHERE name ILIKE $1 AND NOT name NOT ILIKE 'b%'"),
            "SELECT * FROM t WHERE name LIKE ?1 AND NOT name NOT LIKE 'b%'"
        );
        assert_eq!(
            sqlite("SELECT * FROM t WHERE name LIKE 'Du_e%' AND name !~~ 'x*'"),
            "SELECT * FROM t WHERE name GLOB 'Du?e*' AND name NOT GLOB 'x[*]'"
        );
        assert_eq!(
            sqlite("SELECT * FROM t WHERE name NOT LIKE $1"),
            "SELECT * FROM t WHERE (CASE WHEN instr(?1, '\\') > 0 THEN name NOT LIKE ?1 \
             ESCAPE '\\' ELSE name NOT GLOB replace(replace(replace(replace(replace(?1, '[', \
             '[[]'), '*', '[*]'), '?', '[?]'), '%', '*'), '_', '?') END)"
        );
        assert_eq!(
            sqlite("SELECT substring(name FROM 2 FOR 3), position('b' IN name) FROM t"),
            "SELECT substr(name, 2, 3) AS \"substring\", instr(name, 'b') AS \"position\" FROM t"
        );
        assert_eq!(
            sqlite("SELECT extract(year FROM d), EXTRACT(epoch FROM d) FROM t"),
            "SELECT CAST(strftime('%Y', (CASE WHEN (d) LIKE '%+00' THEN substr((d), 1, \
             length((d)) - 3) ELSE (d) END)) AS INTEGER) AS \"extract\", unixepoch((CASE WHEN \
             (d) LIKE '%+00' THEN substr((d), 1, length((d)) - 3) ELSE (d) END), 'subsec') AS \
             \"extract\" FROM t"
        );
        assert_eq!(
            sqlite("SELECT now()"),
            "SELECT (strftime('%Y-%m-%d %H:%M:%f+00', 'now')) AS \"now\""
        );
        // PostgreSQL's CURRENT_TIMESTAMP is now(), to the microsecond (SQLite's: whole seconds).
        assert_eq!(
            sqlite("UPDATE t SET at = CURRENT_TIMESTAMP"),
            "UPDATE t SET at = (strftime('%Y-%m-%d %H:%M:%f+00', 'now'))"
        );
        assert_eq!(
            sqlite("SELECT greatest(a, b, NULL), least(a, 1) FROM t"),
            "SELECT (SELECT max(shoal_argument) FROM (SELECT a AS shoal_argument UNION ALL \
             SELECT b UNION ALL SELECT NULL)) AS \"greatest\", (SELECT min(shoal_argument) FROM \
             (SELECT a AS shoal_argument UNION ALL SELECT 1)) AS \"least\" FROM t"
        );
        assert_eq!(sqlite("SELECT * FROM t FOR UPDATE"), "SELECT * FROM t");
        assert_eq!(sqlite("SELECT E'a\\nb'"), "SELECT 'a\nb'");
    }

    #[test]
    fn values_with_column_aliases_become_a_select_sqlite_accepts() {
        assert_eq!(
            sqlite(
                "INSERT INTO a (name, n) SELECT p0::VARCHAR, p1 FROM (VALUES ($1::VARCHAR, $2, 0), \
                 ($3::VARCHAR, $4, 1)) AS imp_sen(p0, p1, sen_counter) ORDER BY sen_counter \
                 RETURNING a.id"
            ),
            "INSERT INTO a (name, n) SELECT CAST(p0 AS TEXT) AS \"p0\", p1 FROM (SELECT column1 AS p0, \
             column2 AS p1, column3 AS sen_counter FROM (VALUES (CAST(?1 AS TEXT), ?2, 0), \
             (CAST(?3 AS TEXT), ?4, 1))) AS imp_sen ORDER BY sen_counter RETURNING a.id"
        );
    }

    #[test]
    fn tables_with_serial_identity_and_now_defaults_are_created_as_sqlite_tables() {
        assert_eq!(
            sqlite(
                "CREATE TABLE a (id BIGINT GENERATED BY DEFAULT AS IDENTITY, n BIGSERIAL, \
                 at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, PRIMARY KEY (id))"
            ),
            "CREATE TABLE a (id INTEGER, n INTEGER, at TIMESTAMP WITH TIME ZONE DEFAULT \
             (strftime('%Y-%m-%d %H:%M:%f+00', 'now')) NOT NULL, PRIMARY KEY (id))"
        );
        assert_eq!(
            sqlite("CREATE INDEX CONCURRENTLY i ON a USING btree (n)"),
            "CREATE INDEX i ON a(n)"
        );
    }

    #[test]
    fn result_columns_typed_by_the_statement_carry_that_type() {
        let types = |sql: &str| translate(sql).unwrap().column_types.clone();
        assert_eq!(
            types("SELECT now() AS now_1, x::date, CAST(y AS NUMERIC(10, 2)), z FROM t"),
            [
                Some(PgType::TimestampTz),
                Some(PgType::Date),
                Some(PgType::Numeric(Some(2))),
                None
            ]
        );
        assert_eq!(types("SELECT gen_random_uuid()"), [Some(PgType::Uuid)]);
        assert!(types("SELECT a, b FROM t").is_empty());
        assert!(types("SELECT *, now() FROM t").is_empty());
    }

    #[test]
    fn enum_types_are_kept_as_views_of_their_labels() {
        assert_eq!(
            sqlite("CREATE TYPE Mood AS ENUM ('sad', 'o''k')"),
            "CREATE VIEW \"shoal_enum_mood\" AS SELECT 'sad' AS label, 1 AS sort_order \
             UNION ALL SELECT 'o''k', 2"
        );
        assert_eq!(
            sqlite("DROP TYPE IF EXISTS public.\"Mood\" CASCADE"),
            "DROP VIEW IF EXISTS \"shoal_enum_Mood\""
        );
        assert!(translate("CREATE TYPE pair AS (a int, b text)").is_err());
    }

    #[test]
    fn insert_select_with_on_conflict_keeps_its_meaning_in_sqlite() {
        let sql = sqlite(
            "INSERT INTO t (a, b) SELECT a, b FROM s ON CONFLICT (a) DO UPDATE SET b = excluded.b",
        );
        assert_eq!(
            sql,
            "INSERT INTO t (a, b) SELECT a, b FROM s WHERE true ON CONFLICT(a) DO UPDATE SET b = \
             excluded.b"
        );
        let sqlite = rusqlite::Connection::open_in_memory().unwrap();
        sqlite
            .execute_batch(
                "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT); CREATE TABLE s (a, b);
                 INSERT INTO t VALUES (1, 'old'); INSERT INTO s VALUES (1, 'new'), (2, 'two');",
            )
            .unwrap();
        sqlite.execute(&sql, []).unwrap();
        let rows: Vec<(i64, String)> = sqlite
            .prepare("SELECT a, b FROM t ORDER BY a")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(rows, [(1, "new".to_string()), (2, "two".to_string())]);
    }

    #[test]
    fn alter_table_adds_uniqueness_as_an_index_and_plans_rebuilds() {
        assert_eq!(
            sqlite(
                "alter table \"users\" add constraint \"users_email_unique\" unique (\"email\")"
            ),
            "CREATE UNIQUE INDEX \"users_email_unique\" ON \"users\" (\"email\")"
        );
        assert_eq!(
            sqlite("ALTER TABLE users ADD UNIQUE (a, b)"),
            "CREATE UNIQUE INDEX \"users_a_b_key\" ON users (a, b)"
        );
        let plan = |sql: &str| translate(sql).unwrap().alter.clone().expect(sql);
        let foreign = plan("alter table p add constraint f foreign key (u) references u (id)");
        assert_eq!(
            (foreign.table_name.as_str(), foreign.rebuild.len()),
            ("p", 1)
        );
        let several = plan("ALTER TABLE \"T\" ADD COLUMN b TEXT, ALTER COLUMN a TYPE bigint");
        assert_eq!(several.native, ["ALTER TABLE \"T\" ADD COLUMN b TEXT"]);
        assert_eq!(
            (several.table_name.as_str(), several.rebuild.len()),
            ("T", 1)
        );
        let refused = |sql: &str| translate(sql).unwrap_err().0;
        assert!(
            refused("ALTER TABLE t ALTER COLUMN a ADD GENERATED ALWAYS AS IDENTITY")
                .contains("GENERATED")
        );
        assert_eq!(
            sqlite("ALTER TABLE t ADD COLUMN b TEXT"),
            "ALTER TABLE t ADD COLUMN b TEXT"
        );
    }

    #[test]
    fn unnest_of_array_literals_becomes_rows_as_django_bulk_inserts_them() {
        let sql = sqlite(
            "INSERT INTO t (a, b, c) SELECT * FROM UNNEST(('{1,2,3}'::int2[])::integer[], \
             ('{x,\"y z\",NULL}')::varchar[], ('{t,f}'::bool[])::boolean[])",
        );
        let sqlite = rusqlite::Connection::open_in_memory().unwrap();
        sqlite
            .execute_batch("CREATE TABLE t (a INTEGER, b TEXT, c BOOLEAN)")
            .unwrap();
        sqlite.execute(&sql, []).unwrap();
        let rows: Vec<(i64, Option<String>, Option<i64>)> = sqlite
            .prepare("SELECT a, b, c FROM t ORDER BY a")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (1, Some("x".into()), Some(1)),
                (2, Some("y z".into()), Some(0)),
                (3, None, None)
            ]
        );
        let refused = translate("SELECT * FROM UNNEST($1::integer[])")
            .unwrap_err()
            .0;
        assert!(refused.contains("parameters"), "{refused}");
    }

    #[test]
    fn comments_are_kept_as_one_row_views_and_other_objects_refused() {
        let plan = |sql: &str| translate(sql).unwrap().alter.clone().expect(sql);
        let set = plan("COMMENT ON COLUMN public.books.title IS 'it''s the title'");
        assert_eq!(
            set.native,
            [
                "SELECT \"books\".\"title\" FROM \"books\" LIMIT 0",
                "DROP VIEW IF EXISTS \"shoal_comment_books.title\"",
                "CREATE VIEW \"shoal_comment_books.title\" AS SELECT 'books' AS relation, \
                 'title' AS column_name, 'it''s the title' AS comment"
            ]
        );
        let removed = plan("COMMENT ON TABLE books IS NULL");
        assert_eq!(removed.native.len(), 2);
        let refused = translate("COMMENT ON INDEX i IS 'x'").unwrap_err().0;
        assert!(refused.contains("COMMENT ON INDEX"), "{refused}");
    }

    #[test]
    fn values_left_to_their_default_become_columns_left_out() {
        assert_eq!(
            sqlite(
                "INSERT INTO t (a, b, c) VALUES ($1, DEFAULT, $2), ($3, DEFAULT, $4) RETURNING a"
            ),
            "INSERT INTO t (a, c) VALUES (?1, ?2), (?3, ?4) RETURNING a"
        );
        // Rows that leave different columns to their defaults: one INSERT per run of rows.
        let split = translate("INSERT INTO t (a, b) VALUES (1, DEFAULT), (DEFAULT, 2)").unwrap();
        assert_eq!(
            split.split,
            [
                "INSERT INTO t (a) VALUES (1)",
                "INSERT INTO t (b) VALUES (2)"
            ]
        );
        let refused = |sql: &str| translate(sql).unwrap_err().0;
        assert!(refused("INSERT INTO t VALUES (1, DEFAULT)").contains("column list"));
    }

    #[test]
    fn what_sqlite_cannot_do_is_refused_by_name() {
        let refused = |sql: &str| translate(sql).unwrap_err().0;
        assert!(refused("SELECT * FROM t WHERE a ~ 'x'").contains("~"));
        assert!(refused("SELECT DISTINCT ON (a) a, b FROM t").contains("DISTINCT ON"));
        // (The cursor statements the endpoint serves never reach the translator; the rest
        // are refused by name.)
        assert!(refused("FETCH BACKWARD 10 FROM c").contains("cursor statement"));
        assert!(refused("CLOSE c").contains("cursor statement"));
    }
}
