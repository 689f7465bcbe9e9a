//! PostgreSQL's system catalogs (`pg_class`, `pg_attribute`, `pg_index`, …), emulated from
//! SQLite's schema so psql's `\d`, `\dt`, `\l` and drivers' table lookups (SQLAlchemy's
//! `has_table`) get sensible answers. A catalog query is rewritten into SQLite's dialect
//! (`rewrite`) and run on a small in-memory database filled from the real schema (`Catalog`);
//! it never touches the replicated database.

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, params};

use crate::db::execute::{StatementShape, execute_statement, statement_shape};
use crate::db::guard::{GuardMode, StatementGuard};
use crate::raft::types::{Statement, StatementResult};

/// First object id given to user tables, views and indexes (PostgreSQL's FirstNormalObjectId).
const FIRST_OID: i64 = 16384;
const PUBLIC_NAMESPACE: i64 = 2200;
const OWNER: i64 = 10;
const HEAP_AM: i64 = 2;

/// Whether `sql` reads PostgreSQL's catalogs rather than user tables.
pub fn is_catalog_query(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    [
        "pg_catalog.",
        "pg_class",
        "pg_namespace",
        "pg_attribute",
        "pg_type",
        "pg_database",
        "pg_index",
        "pg_constraint",
        "pg_roles",
        "information_schema.",
        "to_regtype(",
        "to_regclass(",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// Rewrites a PostgreSQL catalog query into SQLite's dialect: schema prefixes dropped, `~`
/// operators as REGEXP, `::type` casts removed, `= ANY (ARRAY[…])` as `IN (…)`, `E'…'` strings
/// unescaped, `COLLATE pg_catalog.default` dropped, `information_schema.x` as
/// `information_schema_x`.
pub fn rewrite(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    let mut code = String::new();
    let flush = |code: &mut String, out: &mut String| {
        out.push_str(&rewrite_code(code));
        code.clear();
    };
    while i < chars.len() {
        let c = chars[i];
        let escaped_string = (c == 'E' || c == 'e')
            && chars.get(i + 1) == Some(&'\'')
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_');
        if c == '\'' || escaped_string {
            flush(&mut code, &mut out);
            let start = if escaped_string { i + 2 } else { i + 1 };
            let mut j = start;
            let mut text = String::new();
            while j < chars.len() {
                if chars[j] == '\'' && chars.get(j + 1) == Some(&'\'') {
                    text.push_str("''");
                    j += 2;
                } else if chars[j] == '\'' {
                    break;
                } else if escaped_string && chars[j] == '\\' && j + 1 < chars.len() {
                    text.push(match chars[j + 1] {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                    j += 2;
                } else {
                    text.push(chars[j]);
                    j += 1;
                }
            }
            out.push('\'');
            out.push_str(&text);
            out.push('\'');
            i = j + 1;
        } else if c == '"' {
            flush(&mut code, &mut out);
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += 1;
            }
            out.extend(&chars[i..(j + 1).min(chars.len())]);
            i = j + 1;
        } else {
            code.push(c);
            i += 1;
        }
    }
    flush(&mut code, &mut out);
    rewrite_arrays(&out)
}

/// The rewrites of `rewrite` that apply to code (outside literals and quoted names).
fn rewrite_code(code: &str) -> String {
    let replacements: &[(&str, &str)] = &[
        // An oid cast to regclass shows the relation's name.
        (
            r"(?i)\b([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*::\s*(?:pg_catalog\s*\.\s*)?regclass\b",
            "shoal_regclass($1)",
        ),
        (
            r"(?i)OPERATOR\s*\(\s*pg_catalog\s*\.\s*!~\*?\s*\)",
            " NOT REGEXP ",
        ),
        (
            r"(?i)OPERATOR\s*\(\s*pg_catalog\s*\.\s*~\*?\s*\)",
            " REGEXP ",
        ),
        (r"(?i)\s+COLLATE\s+pg_catalog\s*\.\s*default", ""),
        (r"(?i)\bpg_catalog\s*\.\s*", ""),
        (r"(?i)\binformation_schema\s*\.\s*", "information_schema_"),
        // A relation is its own only partition ancestor.
        (
            r"(?i)\bpg_partition_ancestors\s*\(([^()]*)\)\s+WITH\s+ORDINALITY\s+AS\s+(\w+)\s*\(\s*(\w+)\s*,\s*(\w+)\s*\)",
            "(SELECT $1 AS $3, 1 AS $4) AS $2",
        ),
        // array(SELECT …) as a scalar subquery: the catalogs it reads here are empty or
        // single-valued.
        (r"(?i)\barray\s*\(\s*select\b", "(SELECT"),
        (r"::\s*[A-Za-z_][A-Za-z0-9_]*(\s*\[\s*\])?", ""),
        (r"!~\*?", " NOT REGEXP "),
        (r"~\*?", " REGEXP "),
    ];
    let mut text = code.to_string();
    for (pattern, replacement) in replacements {
        if let Ok(regex) = regex::Regex::new(pattern) {
            text = regex.replace_all(&text, *replacement).into_owned();
        }
    }
    text
}

/// `x = ANY (ARRAY[a, b])` → `x IN (a, b)`; a remaining `ARRAY[a, b]` → `(a, b)`.
fn rewrite_arrays(sql: &str) -> String {
    let any = regex::Regex::new(r"(?i)(=|<>|!=)\s*ANY\s*\(\s*ARRAY\s*\[").ok();
    let mut text = sql.to_string();
    while let Some(found) = any.as_ref().and_then(|r| r.find(&text)) {
        let negated = !found.as_str().starts_with('=');
        let Some(close) = matching_bracket(&text, found.end()) else {
            break;
        };
        // `]` then optional spaces then `)`.
        let after = text[close + 1..].trim_start();
        let rest = after.strip_prefix(')').unwrap_or(after).to_string();
        let inside = text[found.end()..close].to_string();
        let operator = if negated { "NOT IN" } else { "IN" };
        text = format!("{}{operator} ({inside}){rest}", &text[..found.start()]);
    }
    // `x = ANY (list_column)`: membership in a one-element list.
    if let Ok(any_list) = regex::Regex::new(r"(?i)=\s*ANY\s*\(") {
        text = any_list.replace_all(&text, " IN (").into_owned();
    }
    let array = regex::Regex::new(r"(?i)\bARRAY\s*\[").ok();
    while let Some(found) = array.as_ref().and_then(|r| r.find(&text)) {
        let Some(close) = matching_bracket(&text, found.end()) else {
            break;
        };
        let inside = text[found.end()..close].to_string();
        text = format!("{}({inside}){}", &text[..found.start()], &text[close + 1..]);
    }
    // Array subscripts (`prattrs[s]`): the arrays here are single values or empty.
    if let Ok(subscript) = regex::Regex::new(r"([A-Za-z_][A-Za-z0-9_.]*)\s*\[[^\]']*\]") {
        text = subscript.replace_all(&text, "$1").into_owned();
    }
    text
}

/// The index of the `]` closing a `[` that ends at `start`, skipping string literals.
fn matching_bracket(text: &str, start: usize) -> Option<usize> {
    let mut depth = 1;
    let mut in_literal = false;
    for (offset, c) in text[start..].char_indices() {
        match c {
            '\'' => in_literal = !in_literal,
            '[' if !in_literal => depth += 1,
            ']' if !in_literal => {
                depth -= 1;
                if depth == 0 {
                    return Some(start + offset);
                }
            }
            _ => {}
        }
    }
    None
}

const CATALOG_SCHEMA: &str = r#"
CREATE TABLE pg_namespace(oid INTEGER PRIMARY KEY, nspname TEXT, nspowner INTEGER, nspacl TEXT);
CREATE TABLE pg_class(oid INTEGER PRIMARY KEY, relname TEXT, relnamespace INTEGER, reltype INTEGER,
  reloftype INTEGER, relowner INTEGER, relam INTEGER, relfilenode INTEGER, reltablespace INTEGER,
  relpages INTEGER, reltuples REAL, relallvisible INTEGER, reltoastrelid INTEGER,
  relhasindex BOOLEAN, relisshared BOOLEAN, relpersistence TEXT, relkind TEXT, relnatts INTEGER,
  relchecks INTEGER, relhasrules BOOLEAN, relhastriggers BOOLEAN, relhassubclass BOOLEAN,
  relrowsecurity BOOLEAN, relforcerowsecurity BOOLEAN, relispopulated BOOLEAN, relreplident TEXT,
  relispartition BOOLEAN, relrewrite INTEGER, relfrozenxid INTEGER, relminmxid INTEGER,
  relacl TEXT, reloptions TEXT, relpartbound TEXT, relhasoids BOOLEAN);
CREATE TABLE pg_attribute(attrelid INTEGER, attname TEXT, atttypid INTEGER, attstattarget INTEGER,
  attlen INTEGER, attnum INTEGER, attndims INTEGER, attcacheoff INTEGER, atttypmod INTEGER,
  attbyval BOOLEAN, attalign TEXT, attstorage TEXT, attcompression TEXT, attnotnull BOOLEAN,
  atthasdef BOOLEAN, atthasmissing BOOLEAN, attidentity TEXT, attgenerated TEXT,
  attisdropped BOOLEAN, attislocal BOOLEAN, attinhcount INTEGER, attcollation INTEGER,
  attacl TEXT, attoptions TEXT, attfdwoptions TEXT, attmissingval TEXT);
CREATE TABLE pg_attrdef(oid INTEGER PRIMARY KEY, adrelid INTEGER, adnum INTEGER, adbin TEXT);
CREATE TABLE pg_index(indexrelid INTEGER, indrelid INTEGER, indnatts INTEGER, indnkeyatts INTEGER,
  indisunique BOOLEAN, indnullsnotdistinct BOOLEAN, indisprimary BOOLEAN, indisexclusion BOOLEAN,
  indimmediate BOOLEAN, indisclustered BOOLEAN, indisvalid BOOLEAN, indcheckxmin BOOLEAN,
  indisready BOOLEAN, indislive BOOLEAN, indisreplident BOOLEAN, indkey TEXT, indcollation TEXT,
  indclass TEXT, indoption TEXT, indexprs TEXT, indpred TEXT);
CREATE TABLE pg_constraint(oid INTEGER PRIMARY KEY, conname TEXT, connamespace INTEGER,
  contype TEXT, condeferrable BOOLEAN, condeferred BOOLEAN, convalidated BOOLEAN,
  conrelid INTEGER, contypid INTEGER, conindid INTEGER, conparentid INTEGER, confrelid INTEGER,
  confupdtype TEXT, confdeltype TEXT, confmatchtype TEXT, conislocal BOOLEAN,
  coninhcount INTEGER, connoinherit BOOLEAN, conkey TEXT, confkey TEXT, conbin TEXT,
  shoal_definition TEXT);
CREATE TABLE pg_type(oid INTEGER PRIMARY KEY, typname TEXT, typnamespace INTEGER, typowner INTEGER,
  typlen INTEGER, typbyval BOOLEAN, typtype TEXT, typcategory TEXT, typispreferred BOOLEAN,
  typisdefined BOOLEAN, typdelim TEXT, typrelid INTEGER, typelem INTEGER, typarray INTEGER,
  typinput TEXT, typoutput TEXT, typnotnull BOOLEAN, typbasetype INTEGER, typtypmod INTEGER,
  typndims INTEGER, typcollation INTEGER, typdefault TEXT, typacl TEXT);
CREATE TABLE pg_am(oid INTEGER PRIMARY KEY, amname TEXT, amhandler TEXT, amtype TEXT);
CREATE TABLE pg_database(oid INTEGER PRIMARY KEY, datname TEXT, datdba INTEGER, encoding INTEGER,
  datlocprovider TEXT, datistemplate BOOLEAN, datallowconn BOOLEAN, datconnlimit INTEGER,
  datcollate TEXT, datctype TEXT, daticulocale TEXT, datcollversion TEXT, datacl TEXT,
  dattablespace INTEGER);
CREATE TABLE pg_roles(oid INTEGER PRIMARY KEY, rolname TEXT, rolsuper BOOLEAN, rolinherit BOOLEAN,
  rolcreaterole BOOLEAN, rolcreatedb BOOLEAN, rolcanlogin BOOLEAN, rolreplication BOOLEAN,
  rolconnlimit INTEGER, rolpassword TEXT, rolvaliduntil TEXT, rolbypassrls BOOLEAN,
  rolconfig TEXT);
CREATE VIEW pg_user AS SELECT rolname AS usename, oid AS usesysid, rolcreatedb AS usecreatedb,
  rolsuper AS usesuper FROM pg_roles;
CREATE VIEW pg_authid AS SELECT * FROM pg_roles;
CREATE TABLE pg_description(objoid INTEGER, classoid INTEGER, objsubid INTEGER, description TEXT);
CREATE TABLE pg_inherits(inhrelid INTEGER, inhparent INTEGER, inhseqno INTEGER,
  inhdetachpending BOOLEAN);
CREATE TABLE pg_trigger(oid INTEGER PRIMARY KEY, tgrelid INTEGER, tgparentid INTEGER, tgname TEXT,
  tgenabled TEXT, tgisinternal BOOLEAN, shoal_definition TEXT);
CREATE TABLE pg_policy(oid INTEGER PRIMARY KEY, polname TEXT, polrelid INTEGER, polcmd TEXT,
  polpermissive BOOLEAN, polroles TEXT, polqual TEXT, polwithcheck TEXT);
CREATE TABLE pg_statistic_ext(oid INTEGER PRIMARY KEY, stxrelid INTEGER, stxname TEXT,
  stxnamespace INTEGER, stxowner INTEGER, stxstattarget INTEGER, stxkeys TEXT, stxkind TEXT);
CREATE TABLE pg_publication(oid INTEGER PRIMARY KEY, pubname TEXT, puballtables BOOLEAN);
CREATE TABLE pg_publication_rel(oid INTEGER PRIMARY KEY, prpubid INTEGER, prrelid INTEGER,
  prqual TEXT, prattrs TEXT);
CREATE TABLE pg_publication_namespace(oid INTEGER PRIMARY KEY, pnpubid INTEGER, pnnspid INTEGER);
CREATE TABLE pg_foreign_table(ftrelid INTEGER, ftserver INTEGER, ftoptions TEXT);
CREATE TABLE pg_partitioned_table(partrelid INTEGER, partstrat TEXT);
CREATE TABLE pg_tablespace(oid INTEGER PRIMARY KEY, spcname TEXT);
CREATE TABLE pg_collation(oid INTEGER PRIMARY KEY, collname TEXT, collnamespace INTEGER);
CREATE TABLE pg_sequence(seqrelid INTEGER);
CREATE TABLE pg_rewrite(oid INTEGER PRIMARY KEY, rulename TEXT, ev_class INTEGER);
CREATE TABLE pg_extension(oid INTEGER PRIMARY KEY, extname TEXT, extversion TEXT);
CREATE TABLE pg_settings(name TEXT, setting TEXT);
CREATE TABLE pg_proc(oid INTEGER PRIMARY KEY, proname TEXT, pronamespace INTEGER);
CREATE TABLE pg_enum(oid INTEGER PRIMARY KEY, enumtypid INTEGER, enumsortorder REAL, enumlabel TEXT);
CREATE TABLE pg_range(rngtypid INTEGER, rngsubtype INTEGER);
CREATE TABLE shoal_declared_type(id INTEGER PRIMARY KEY, declared TEXT);
CREATE VIEW pg_tables AS SELECT n.nspname AS schemaname, c.relname AS tablename,
  'shoal' AS tableowner, NULL AS tablespace, c.relhasindex AS hasindexes, 0 AS hasrules,
  c.relhastriggers AS hastriggers, 0 AS rowsecurity
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r';
CREATE VIEW pg_views AS SELECT n.nspname AS schemaname, c.relname AS viewname,
  'shoal' AS viewowner, NULL AS definition
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'v';
CREATE VIEW pg_indexes AS SELECT n.nspname AS schemaname, t.relname AS tablename,
  c.relname AS indexname, NULL AS tablespace, NULL AS indexdef
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace;
CREATE VIEW information_schema_tables AS SELECT 'shoal' AS table_catalog,
  n.nspname AS table_schema, c.relname AS table_name,
  CASE c.relkind WHEN 'v' THEN 'VIEW' ELSE 'BASE TABLE' END AS table_type
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'v');
CREATE VIEW information_schema_columns AS SELECT 'shoal' AS table_catalog,
  n.nspname AS table_schema, c.relname AS table_name, a.attname AS column_name,
  a.attnum AS ordinal_position, d.adbin AS column_default,
  CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable,
  t.typname AS data_type, t.typname AS udt_name
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE c.relkind IN ('r', 'v') AND a.attnum > 0;
CREATE VIEW information_schema_schemata AS SELECT 'shoal' AS catalog_name,
  nspname AS schema_name, 'shoal' AS schema_owner FROM pg_namespace;
INSERT INTO pg_namespace VALUES (11, 'pg_catalog', 10, NULL), (2200, 'public', 10, NULL),
  (13000, 'information_schema', 10, NULL);
INSERT INTO pg_am VALUES (2, 'heap', 'heap_tableam_handler', 't'),
  (403, 'btree', 'bthandler', 'i');
INSERT INTO pg_roles VALUES (10, 'shoal', 1, 1, 1, 1, 1, 0, -1, NULL, NULL, 0, NULL);
INSERT INTO pg_database VALUES (16000, 'shoal', 10, 6, 'c', 0, 1, -1, 'C', 'C', NULL, NULL, NULL, 1663);
INSERT INTO pg_tablespace VALUES (1663, 'pg_default');
INSERT INTO pg_collation VALUES (100, 'default', 11);
INSERT INTO pg_type(oid, typname, typnamespace, typowner, typlen, typbyval, typtype, typcategory,
  typispreferred, typisdefined, typdelim, typrelid, typelem, typarray, typnotnull, typbasetype,
  typtypmod, typndims, typcollation) VALUES
  (16, 'bool', 11, 10, 1, 1, 'b', 'B', 1, 1, ',', 0, 0, 1000, 0, 0, -1, 0, 0),
  (17, 'bytea', 11, 10, -1, 0, 'b', 'U', 0, 1, ',', 0, 0, 1001, 0, 0, -1, 0, 0),
  (20, 'int8', 11, 10, 8, 1, 'b', 'N', 0, 1, ',', 0, 0, 1016, 0, 0, -1, 0, 0),
  (21, 'int2', 11, 10, 2, 1, 'b', 'N', 0, 1, ',', 0, 0, 1005, 0, 0, -1, 0, 0),
  (23, 'int4', 11, 10, 4, 1, 'b', 'N', 0, 1, ',', 0, 0, 1007, 0, 0, -1, 0, 0),
  (25, 'text', 11, 10, -1, 0, 'b', 'S', 1, 1, ',', 0, 0, 1009, 0, 0, -1, 0, 100),
  (700, 'float4', 11, 10, 4, 1, 'b', 'N', 0, 1, ',', 0, 0, 1021, 0, 0, -1, 0, 0),
  (701, 'float8', 11, 10, 8, 1, 'b', 'N', 1, 1, ',', 0, 0, 1022, 0, 0, -1, 0, 0),
  (1043, 'varchar', 11, 10, -1, 0, 'b', 'S', 0, 1, ',', 0, 0, 1015, 0, 0, -1, 0, 100),
  (1082, 'date', 11, 10, 4, 1, 'b', 'D', 0, 1, ',', 0, 0, 1182, 0, 0, -1, 0, 0),
  (1114, 'timestamp', 11, 10, 8, 1, 'b', 'D', 0, 1, ',', 0, 0, 1115, 0, 0, -1, 0, 0),
  (1700, 'numeric', 11, 10, -1, 0, 'b', 'N', 0, 1, ',', 0, 0, 1231, 0, 0, -1, 0, 0);
"#;

/// One object of the user's schema, as SQLite describes it.
struct SchemaObject {
    kind: String,
    name: String,
    table: String,
    sql: Option<String>,
}

/// An emulated catalog: an in-memory database filled from the real one's schema.
pub struct Catalog {
    connection: Connection,
    guard: Arc<StatementGuard>,
}

impl Catalog {
    /// Builds the catalog from the schema of `source` (a read connection, guard lifted).
    pub fn build(source: &Connection) -> rusqlite::Result<Catalog> {
        let connection = Connection::open_in_memory()?;
        rusqlite::vtab::series::load_module(&connection)?;
        connection.execute_batch(CATALOG_SCHEMA)?;
        let objects = read_schema(source)?;
        let definitions = fill(&connection, source, &objects)?;
        register_functions(&connection, definitions)?;
        let guard = StatementGuard::install(&connection, GuardMode::Reader);
        Ok(Catalog { connection, guard })
    }

    /// The shape of a (rewritten) catalog query.
    pub fn shape(&self, sql: &str) -> Result<StatementShape, String> {
        statement_shape(&self.connection, &self.guard, sql)
    }

    /// Runs a (rewritten) catalog query.
    pub fn run(&self, statement: &Statement) -> StatementResult {
        execute_statement(&self.connection, &self.guard, statement)
    }
}

fn read_schema(source: &Connection) -> rusqlite::Result<Vec<SchemaObject>> {
    let mut statement = source.prepare(
        "SELECT type, name, tbl_name, sql FROM sqlite_schema \
         WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_shoal\\_%' ESCAPE '\\' \
         ORDER BY rowid",
    )?;
    statement
        .query_map([], |row| {
            Ok(SchemaObject {
                kind: row.get(0)?,
                name: row.get(1)?,
                table: row.get(2)?,
                sql: row.get(3)?,
            })
        })?
        .collect()
}

struct Column {
    name: String,
    declared: String,
    not_null: bool,
    default: Option<String>,
    primary_key: i64,
}

fn table_columns(source: &Connection, table: &str) -> rusqlite::Result<Vec<Column>> {
    let mut statement = source.prepare(
        "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_xinfo(?1) WHERE hidden = 0",
    )?;
    statement
        .query_map([table], |row| {
            Ok(Column {
                name: row.get(0)?,
                declared: row.get(1)?,
                not_null: row.get(2)?,
                default: row.get(3)?,
                primary_key: row.get(4)?,
            })
        })?
        .collect()
}

fn is_table_kind(kind: &str) -> bool {
    kind == "table"
}

/// The PostgreSQL type oid for a SQLite declared type (as `types::PgType` presents values).
fn type_oid(declared: &str) -> i64 {
    use crate::pgwire::types::PgType;
    PgType::for_declared(declared).map_or(25, |t| i64::from(t.oid()))
}

/// Fills the catalog tables; returns the declared type of each column, indexed by the
/// `atttypmod` given to it (so `format_type` shows SQLite's declaration).
fn fill(
    catalog: &Connection,
    source: &Connection,
    objects: &[SchemaObject],
) -> rusqlite::Result<Definitions> {
    let mut oids: BTreeMap<String, i64> = BTreeMap::new();
    let mut definitions = Definitions::default();
    let mut next_oid = FIRST_OID;
    for object in objects {
        oids.insert(object.name.to_lowercase(), next_oid);
        definitions.relations.insert(next_oid, object.name.clone());
        next_oid += 1;
    }
    let mut constraint_oid = 1_000_000;
    for object in objects {
        let oid = oids[&object.name.to_lowercase()];
        match object.kind.as_str() {
            "table" | "view" => {
                let columns = table_columns(source, &object.name)?;
                let indexes: Vec<(String, bool, String)> = source
                    .prepare("SELECT name, \"unique\", origin FROM pragma_index_list(?1)")?
                    .query_map([&object.name], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                // PostgreSQL implements foreign keys with triggers, and psql only looks for
                // either when this is set: set it for every table.
                let has_triggers = is_table_kind(&object.kind);
                let is_table = object.kind == "table";
                let rowid_key: Vec<&Column> =
                    columns.iter().filter(|c| c.primary_key > 0).collect();
                let integer_key = is_table
                    && rowid_key.len() == 1
                    && rowid_key[0].declared.eq_ignore_ascii_case("INTEGER");
                catalog.execute(
                    "INSERT INTO pg_class(oid, relname, relnamespace, reltype, reloftype, relowner,
                       relam, relfilenode, reltablespace, relpages, reltuples, relhasindex,
                       relisshared, relpersistence, relkind, relnatts, relchecks, relhasrules,
                       relhastriggers, relhassubclass, relrowsecurity, relforcerowsecurity,
                       relispopulated, relreplident, relispartition, relhasoids)
                     VALUES (?1, ?2, ?3, 0, 0, ?4, ?5, ?1, 0, 0, -1, ?6, 0, 'p', ?7, ?8, 0, 0, ?9,
                       0, 0, 0, 1, 'd', 0, 0)",
                    params![
                        oid,
                        object.name,
                        PUBLIC_NAMESPACE,
                        OWNER,
                        if is_table { HEAP_AM } else { 0 },
                        !indexes.is_empty() || integer_key,
                        if is_table { "r" } else { "v" },
                        columns.len() as i64,
                        has_triggers,
                    ],
                )?;
                for (position, column) in columns.iter().enumerate() {
                    let attnum = position as i64 + 1;
                    definitions.declared.push(column.declared.to_lowercase());
                    let typmod = definitions.declared.len() as i64 - 1;
                    catalog.execute(
                        "INSERT INTO pg_attribute(attrelid, attname, atttypid, attstattarget,
                           attlen, attnum, attndims, atttypmod, attnotnull, atthasdef,
                           atthasmissing, attidentity, attgenerated, attisdropped, attislocal,
                           attinhcount, attcollation, attstorage, attcompression)
                         VALUES (?1, ?2, ?3, -1, -1, ?4, 0, ?5, ?6, ?7, 0, '', '', 0, 1, 0, 0,
                           'x', '')",
                        params![
                            oid,
                            column.name,
                            type_oid(&column.declared),
                            attnum,
                            typmod,
                            column.not_null || column.primary_key > 0 && integer_key,
                            column.default.is_some(),
                        ],
                    )?;
                    if let Some(default) = &column.default {
                        catalog.execute(
                            "INSERT INTO pg_attrdef(adrelid, adnum, adbin) VALUES (?1, ?2, ?3)",
                            params![oid, attnum, default],
                        )?;
                    }
                }
                let attnum_of = |name: &str| {
                    columns
                        .iter()
                        .position(|c| c.name.eq_ignore_ascii_case(name))
                        .map_or(0, |p| p as i64 + 1)
                };
                if integer_key {
                    // An INTEGER PRIMARY KEY is the rowid: SQLite keeps no index for it, but
                    // PostgreSQL clients expect the primary key's index.
                    let index_oid = next_oid;
                    next_oid += 1;
                    let name = format!("{}_pkey", object.name);
                    definitions.relations.insert(index_oid, name.clone());
                    let key = attnum_of(&rowid_key[0].name);
                    insert_index(
                        catalog,
                        index_oid,
                        &name,
                        oid,
                        true,
                        true,
                        &key.to_string(),
                        1,
                    )?;
                    definitions.indexes.insert(
                        index_oid,
                        (
                            format!(
                                "CREATE UNIQUE INDEX {name} ON public.{} USING btree ({})",
                                object.name, rowid_key[0].name
                            ),
                            vec![rowid_key[0].name.clone()],
                        ),
                    );
                    insert_index_column(
                        catalog,
                        index_oid,
                        &rowid_key[0].name,
                        1,
                        &rowid_key[0].declared,
                    )?;
                    constraint_oid += 1;
                    definitions.constraints.insert(
                        constraint_oid,
                        format!("PRIMARY KEY ({})", rowid_key[0].name),
                    );
                    catalog.execute(
                        "INSERT INTO pg_constraint(oid, conname, connamespace, contype, condeferrable,
                           condeferred, convalidated, conrelid, contypid, conindid, conparentid,
                           confrelid, conislocal, coninhcount, connoinherit, conkey,
                           shoal_definition)
                         VALUES (?1, ?2, 2200, 'p', 0, 0, 1, ?3, 0, ?4, 0, 0, 1, 0, 1, ?5, ?6)",
                        params![
                            constraint_oid,
                            name,
                            oid,
                            index_oid,
                            format!("{{{key}}}"),
                            format!("PRIMARY KEY ({})", rowid_key[0].name)
                        ],
                    )?;
                }
                for (name, unique, origin) in &indexes {
                    let index_oid = oids.get(&name.to_lowercase()).copied().unwrap_or_else(|| {
                        next_oid += 1;
                        next_oid - 1
                    });
                    let key_columns: Vec<String> = source
                        .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")?
                        .query_map([name], |row| row.get::<_, Option<String>>(0))?
                        .filter_map(|c| c.ok().flatten())
                        .collect();
                    let key = key_columns
                        .iter()
                        .map(|c| attnum_of(c).to_string())
                        .collect::<Vec<_>>()
                        .join(" ");
                    let primary = origin == "pk";
                    insert_index(
                        catalog,
                        index_oid,
                        name,
                        oid,
                        *unique,
                        primary,
                        &key,
                        key_columns.len(),
                    )?;
                    definitions.indexes.insert(
                        index_oid,
                        (
                            format!(
                                "CREATE {}INDEX {name} ON public.{} USING btree ({})",
                                if *unique { "UNIQUE " } else { "" },
                                object.name,
                                key_columns.join(", ")
                            ),
                            key_columns.clone(),
                        ),
                    );
                    for (position, column) in key_columns.iter().enumerate() {
                        let declared = columns
                            .iter()
                            .find(|c| c.name.eq_ignore_ascii_case(column))
                            .map_or("", |c| c.declared.as_str());
                        insert_index_column(
                            catalog,
                            index_oid,
                            column,
                            position as i64 + 1,
                            declared,
                        )?;
                    }
                    if primary || origin == "u" {
                        constraint_oid += 1;
                        let kind = if primary { "PRIMARY KEY" } else { "UNIQUE" };
                        definitions.constraints.insert(
                            constraint_oid,
                            format!("{kind} ({})", key_columns.join(", ")),
                        );
                        catalog.execute(
                            "INSERT INTO pg_constraint(oid, conname, connamespace, contype,
                               condeferrable, condeferred, convalidated, conrelid, contypid,
                               conindid, conparentid, confrelid, conislocal, coninhcount,
                               connoinherit, conkey, shoal_definition)
                             VALUES (?1, ?2, 2200, ?3, 0, 0, 1, ?4, 0, ?5, 0, 0, 1, 0, 1, ?6, ?7)",
                            params![
                                constraint_oid,
                                name,
                                if primary { "p" } else { "u" },
                                oid,
                                index_oid,
                                format!("{{{}}}", key.replace(' ', ",")),
                                format!("{kind} ({})", key_columns.join(", "))
                            ],
                        )?;
                    }
                }
                let foreign_keys: Vec<(i64, String, String, Option<String>)> = source
                    .prepare(
                        "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1) \
                         ORDER BY id, seq",
                    )?
                    .query_map([&object.name], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                let mut by_id: BTreeMap<i64, (String, Vec<String>, Vec<String>)> = BTreeMap::new();
                for (id, target, from, to) in foreign_keys {
                    let entry = by_id
                        .entry(id)
                        .or_insert_with(|| (target, Vec::new(), Vec::new()));
                    entry.1.push(from);
                    entry.2.push(to.unwrap_or_default());
                }
                for (id, (target, from, to)) in by_id {
                    constraint_oid += 1;
                    definitions.constraints.insert(
                        constraint_oid,
                        format!(
                            "FOREIGN KEY ({}) REFERENCES {target}({})",
                            from.join(", "),
                            to.join(", ")
                        ),
                    );
                    let target_oid = oids.get(&target.to_lowercase()).copied().unwrap_or(0);
                    catalog.execute(
                        "INSERT INTO pg_constraint(oid, conname, connamespace, contype,
                           condeferrable, condeferred, convalidated, conrelid, contypid, conindid,
                           conparentid, confrelid, confupdtype, confdeltype, confmatchtype,
                           conislocal, coninhcount, connoinherit, conkey, confkey,
                           shoal_definition)
                         VALUES (?1, ?2, 2200, 'f', 0, 0, 1, ?3, 0, 0, 0, ?4, 'a', 'a', 's', 1, 0,
                           1, ?5, ?6, ?7)",
                        params![
                            constraint_oid,
                            format!(
                                "{}_fkey{}",
                                object.name,
                                if id == 0 {
                                    String::new()
                                } else {
                                    id.to_string()
                                }
                            ),
                            oid,
                            target_oid,
                            format!(
                                "{{{}}}",
                                from.iter()
                                    .map(|c| attnum_of(c).to_string())
                                    .collect::<Vec<_>>()
                                    .join(",")
                            ),
                            "{}",
                            format!(
                                "FOREIGN KEY ({}) REFERENCES {target}({})",
                                from.join(", "),
                                to.join(", ")
                            )
                        ],
                    )?;
                }
            }
            "trigger" => {
                let table_oid = oids.get(&object.table.to_lowercase()).copied().unwrap_or(0);
                if let Some(sql) = &object.sql {
                    definitions.triggers.insert(oid, sql.clone());
                }
                catalog.execute(
                    "INSERT INTO pg_trigger(oid, tgrelid, tgparentid, tgname, tgenabled,
                       tgisinternal, shoal_definition) VALUES (?1, ?2, 0, ?3, 'O', 0, ?4)",
                    params![oid, table_oid, object.name, object.sql],
                )?;
            }
            _ => {}
        }
    }
    for (i, declared) in definitions.declared.iter().enumerate() {
        catalog.execute(
            "INSERT INTO shoal_declared_type(id, declared) VALUES (?1, ?2)",
            params![i as i64, declared],
        )?;
    }
    Ok(definitions)
}

/// A column of an index relation (psql lists them for `\d index`).
fn insert_index_column(
    catalog: &Connection,
    index_oid: i64,
    name: &str,
    attnum: i64,
    declared: &str,
) -> rusqlite::Result<()> {
    catalog.execute(
        "INSERT INTO pg_attribute(attrelid, attname, atttypid, attstattarget, attlen, attnum,
           attndims, atttypmod, attnotnull, atthasdef, atthasmissing, attidentity, attgenerated,
           attisdropped, attislocal, attinhcount, attcollation, attstorage, attcompression)
         VALUES (?1, ?2, ?3, -1, -1, ?4, 0, -1, 0, 0, 0, '', '', 0, 1, 0, 0, 'x', '')",
        params![index_oid, name, type_oid(declared), attnum],
    )?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn insert_index(
    catalog: &Connection,
    index_oid: i64,
    name: &str,
    table_oid: i64,
    unique: bool,
    primary: bool,
    key: &str,
    key_count: usize,
) -> rusqlite::Result<()> {
    catalog.execute(
        "INSERT OR IGNORE INTO pg_class(oid, relname, relnamespace, reltype, reloftype, relowner,
           relam, relfilenode, reltablespace, relpages, reltuples, relhasindex, relisshared,
           relpersistence, relkind, relnatts, relchecks, relhasrules, relhastriggers,
           relhassubclass, relrowsecurity, relforcerowsecurity, relispopulated, relreplident,
           relispartition, relhasoids)
         VALUES (?1, ?2, 2200, 0, 0, 10, 403, ?1, 0, 0, -1, 0, 0, 'p', 'i', ?3, 0, 0, 0, 0, 0, 0,
           1, 'n', 0, 0)",
        params![index_oid, name, key_count as i64],
    )?;
    catalog.execute(
        "INSERT INTO pg_index(indexrelid, indrelid, indnatts, indnkeyatts, indisunique,
           indnullsnotdistinct, indisprimary, indisexclusion, indimmediate, indisclustered,
           indisvalid, indcheckxmin, indisready, indislive, indisreplident, indkey)
         VALUES (?1, ?2, ?3, ?3, ?4, 0, ?5, 0, 1, 0, 1, 0, 1, 1, 0, ?6)",
        params![index_oid, table_oid, key_count as i64, unique, primary, key],
    )?;
    Ok(())
}

/// Texts the catalog functions return, computed while filling the catalog.
#[derive(Default)]
struct Definitions {
    /// Declared column types, indexed by the `atttypmod` given to each column.
    declared: Vec<String>,
    /// `pg_get_indexdef` by index oid, with the index's column names (`pg_get_indexdef(oid, n)`).
    indexes: BTreeMap<i64, (String, Vec<String>)>,
    /// `pg_get_constraintdef` by constraint oid.
    constraints: BTreeMap<i64, String>,
    /// Relation names by oid (`x::regclass`).
    relations: BTreeMap<i64, String>,
    /// `pg_get_triggerdef` by trigger oid.
    triggers: BTreeMap<i64, String>,
}

/// The catalog functions psql and drivers call (any argument count, as PostgreSQL's have
/// optional ones).
fn register_functions(catalog: &Connection, definitions: Definitions) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    let any = -1;
    catalog.create_scalar_function("regexp", 2, flags, |context| {
        let pattern: Option<String> = context.get(0)?;
        let text: Option<String> = context.get(1)?;
        let (Some(pattern), Some(text)) = (pattern, text) else {
            return Ok(None);
        };
        let regex = regex::Regex::new(&pattern).map_err(|e| {
            rusqlite::Error::UserFunctionError(format!("invalid regular expression: {e}").into())
        })?;
        Ok(Some(regex.is_match(&text)))
    })?;
    let texts: &[(&str, &str)] = &[
        ("pg_get_userbyid", "shoal"),
        ("pg_encoding_to_char", "UTF8"),
        ("current_schema", "public"),
        ("current_database", "shoal"),
        ("current_schemas", "{public}"),
        ("pg_size_pretty", "0 bytes"),
    ];
    for &(name, value) in texts {
        catalog.create_scalar_function(name, any, flags, move |_| Ok(value.to_string()))?;
    }
    let truths: &[(&str, bool)] = &[
        ("pg_table_is_visible", true),
        ("pg_type_is_visible", true),
        ("has_table_privilege", true),
        ("has_schema_privilege", true),
        ("pg_has_role", true),
        ("pg_relation_is_publishable", false),
    ];
    for &(name, value) in truths {
        catalog.create_scalar_function(name, any, flags, move |_| Ok(value))?;
    }
    for name in ["obj_description", "col_description", "shobj_description"] {
        catalog.create_scalar_function(name, any, flags, |_| Ok(None::<String>))?;
    }
    for name in ["array_upper", "array_length", "array_lower"] {
        catalog.create_scalar_function(name, any, flags, |_| Ok(None::<i64>))?;
    }
    for name in [
        "pg_relation_size",
        "pg_total_relation_size",
        "pg_table_size",
    ] {
        catalog.create_scalar_function(name, any, flags, |_| Ok(0i64))?;
    }
    // The first argument as is: expressions are stored as text, arrays as '{…}' strings.
    for name in ["pg_get_expr", "array_to_string"] {
        catalog
            .create_scalar_function(name, any, flags, |context| context.get::<Option<String>>(0))?;
    }
    catalog.create_scalar_function("to_regtype", any, flags, |context| {
        let name: Option<String> = context.get(0)?;
        Ok(name.and_then(|n| builtin_type_oid(&n)))
    })?;
    catalog.create_scalar_function("quote_ident", 1, flags, |context| {
        let name: String = context.get(0)?;
        Ok(format!("\"{}\"", name.replace('"', "\"\"")))
    })?;
    catalog.create_scalar_function("version", 0, flags, |_| {
        Ok(format!(
            "PostgreSQL {} (Shoal)",
            crate::pgwire::session::SERVER_VERSION
        ))
    })?;
    let Definitions {
        declared,
        indexes,
        constraints,
        relations,
        triggers,
    } = definitions;
    catalog.create_scalar_function("pg_get_triggerdef", any, flags, move |context| {
        let oid = oid_argument(context, 0)?;
        Ok(oid.and_then(|oid| triggers.get(&oid).cloned()))
    })?;
    catalog.create_scalar_function("shoal_regclass", 1, flags, move |context| {
        let oid = oid_argument(context, 0)?;
        Ok(oid.map(|oid| {
            relations
                .get(&oid)
                .cloned()
                .unwrap_or_else(|| oid.to_string())
        }))
    })?;
    // Partitioning does not exist here: a relation is its own only ancestor.
    for name in ["pg_partition_ancestors", "pg_partition_root"] {
        catalog.create_scalar_function(name, any, flags, |context| oid_argument(context, 0))?;
    }
    catalog.create_scalar_function("format_type", any, flags, move |context| {
        let oid = oid_argument(context, 0)?;
        let typmod = if context.len() > 1 {
            oid_argument(context, 1)?
        } else {
            None
        };
        let declared = typmod
            .and_then(|m| usize::try_from(m).ok())
            .and_then(|m| declared.get(m).cloned())
            .filter(|d| !d.is_empty());
        Ok(declared.or_else(|| oid.and_then(builtin_type_name)))
    })?;
    catalog.create_scalar_function("pg_get_indexdef", any, flags, move |context| {
        let oid = oid_argument(context, 0)?;
        let column = if context.len() > 1 {
            oid_argument(context, 1)?.unwrap_or(0)
        } else {
            0
        };
        let Some((definition, columns)) = oid.and_then(|oid| indexes.get(&oid)) else {
            return Ok(None);
        };
        Ok(match usize::try_from(column) {
            Ok(0) | Err(_) => Some(definition.clone()),
            Ok(n) => columns.get(n - 1).cloned(),
        })
    })?;
    catalog.create_scalar_function("pg_get_statisticsobjdef_columns", any, flags, |_| {
        Ok(None::<String>)
    })?;
    catalog.create_scalar_function("pg_get_constraintdef", any, flags, move |context| {
        let oid = oid_argument(context, 0)?;
        Ok(oid.and_then(|oid| constraints.get(&oid).cloned()))
    })?;
    Ok(())
}

/// An oid argument, given as a number or as text (psql quotes oids: `'16384'`).
fn oid_argument(
    context: &rusqlite::functions::Context<'_>,
    index: usize,
) -> rusqlite::Result<Option<i64>> {
    use rusqlite::types::ValueRef;
    Ok(match context.get_raw(index) {
        ValueRef::Integer(i) => Some(i),
        ValueRef::Real(f) => Some(f as i64),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|t| t.trim().parse().ok()),
        ValueRef::Null | ValueRef::Blob(_) => None,
    })
}

fn builtin_type_name(oid: i64) -> Option<String> {
    let name = match oid {
        16 => "boolean",
        17 => "bytea",
        20 => "bigint",
        21 => "smallint",
        23 => "integer",
        25 => "text",
        700 => "real",
        701 => "double precision",
        1043 => "character varying",
        1082 => "date",
        1114 => "timestamp without time zone",
        1700 => "numeric",
        _ => return None,
    };
    Some(name.to_string())
}

fn builtin_type_oid(name: &str) -> Option<i64> {
    let oid = match name.to_ascii_lowercase().as_str() {
        "bool" | "boolean" => 16,
        "bytea" => 17,
        "int8" | "bigint" => 20,
        "int2" | "smallint" => 21,
        "int4" | "integer" | "int" => 23,
        "text" => 25,
        "float4" | "real" => 700,
        "float8" | "double precision" => 701,
        "varchar" | "character varying" => 1043,
        "date" => 1082,
        "timestamp" => 1114,
        "numeric" => 1700,
        _ => return None,
    };
    Some(oid)
}
