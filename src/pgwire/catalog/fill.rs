//! Filling the emulated catalog from SQLite's schema: a `pg_class` row per table, view and
//! index, `pg_attribute` and `pg_attrdef` per column, `pg_index` and `pg_constraint` for keys,
//! `pg_trigger` for triggers. Object ids follow `sqlite_schema` order, so they stay the same
//! between queries while the schema does (psql looks a table up, then asks by its oid).

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use super::functions::Definitions;
use crate::pgwire::dialect::comments::COMMENT_VIEW_PREFIX;
use crate::pgwire::dialect::enums::ENUM_VIEW_PREFIX;
use crate::pgwire::dialect::rebuild::{DeclaredForeignKey, declared_foreign_keys};
use crate::pgwire::dialect::sequences::SEQUENCE_TABLE_PREFIX;
use crate::pgwire::types::PgType;

/// First object id given to user tables, views and indexes (PostgreSQL's FirstNormalObjectId).
const FIRST_OID: i64 = 16384;
/// First object id given to constraints (kept apart from relations).
const FIRST_CONSTRAINT_OID: i64 = 1_000_000;
const PUBLIC_NAMESPACE: i64 = 2200;
const OWNER: i64 = 10;
const HEAP_AM: i64 = 2;

/// One object of the user's schema, as SQLite describes it.
pub struct SchemaObject {
    pub kind: String,
    pub name: String,
    pub table: String,
    pub sql: Option<String>,
}

/// A foreign key as SQLite reports it, with what its declaration adds.
struct Reference {
    table: String,
    from: Vec<String>,
    to: Vec<String>,
    /// PostgreSQL's action codes: `a` no action, `r` restrict, `c` cascade, `n` set null,
    /// `d` set default.
    on_update: char,
    on_delete: char,
    deferred: bool,
}

fn action_code(action: &str) -> char {
    match action.to_ascii_uppercase().as_str() {
        "RESTRICT" => 'r',
        "CASCADE" => 'c',
        "SET NULL" => 'n',
        "SET DEFAULT" => 'd',
        _ => 'a',
    }
}

fn action_clause(event: &str, code: char) -> String {
    let action = match code {
        'r' => "RESTRICT",
        'c' => "CASCADE",
        'n' => "SET NULL",
        'd' => "SET DEFAULT",
        _ => return String::new(),
    };
    format!(" ON {event} {action}")
}

/// The user's tables, views, indexes and triggers (Shoal's own and SQLite's left out).
pub fn read_schema(source: &Connection) -> rusqlite::Result<Vec<SchemaObject>> {
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

/// A table or view as entered into the catalog.
struct Relation<'a> {
    object: &'a SchemaObject,
    oid: i64,
    columns: Vec<Column>,
}

impl Relation<'_> {
    /// The column number (`attnum`, 1-based) of `name`; 0 when unknown.
    fn attnum(&self, name: &str) -> i64 {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
            .map_or(0, |p| p as i64 + 1)
    }

    /// The name of the PRIMARY KEY (`primary`) or UNIQUE constraint on `columns`: as declared,
    /// else PostgreSQL's default.
    fn key_name(&self, primary: bool, columns: &[String]) -> String {
        let table = &self.object.name;
        crate::pgwire::dialect::rebuild::declared_keys(
            table,
            self.object.sql.as_deref().unwrap_or(""),
        )
        .into_iter()
        .find(|key| {
            key.primary == primary
                && key.columns.len() == columns.len()
                && key
                    .columns
                    .iter()
                    .zip(columns)
                    .all(|(a, b)| a.eq_ignore_ascii_case(b))
        })
        .map(|key| key.name)
        .unwrap_or_else(|| {
            if primary {
                format!("{table}_pkey")
            } else {
                format!("{table}_{}_key", columns.join("_"))
            }
        })
    }

    fn declared(&self, name: &str) -> &str {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .map_or("", |c| c.declared.as_str())
    }

    /// The column that is the rowid, for a table whose primary key is `INTEGER PRIMARY KEY`.
    fn rowid_key(&self) -> Option<&Column> {
        let keys: Vec<&Column> = self.columns.iter().filter(|c| c.primary_key > 0).collect();
        match keys.as_slice() {
            [key]
                if self.object.kind == "table" && key.declared.eq_ignore_ascii_case("INTEGER") =>
            {
                Some(key)
            }
            _ => None,
        }
    }
}

/// Writes catalog rows and keeps the texts the catalog functions return.
pub struct Filler<'a> {
    catalog: &'a Connection,
    source: &'a Connection,
    oids: BTreeMap<String, i64>,
    next_oid: i64,
    next_constraint_oid: i64,
    definitions: Definitions,
}

impl<'a> Filler<'a> {
    pub fn new(catalog: &'a Connection, source: &'a Connection, objects: &[SchemaObject]) -> Self {
        let mut filler = Filler {
            catalog,
            source,
            oids: BTreeMap::new(),
            next_oid: FIRST_OID,
            next_constraint_oid: FIRST_CONSTRAINT_OID,
            definitions: Definitions::default(),
        };
        for object in objects {
            let oid = filler.new_oid(&object.name);
            filler.oids.insert(object.name.to_lowercase(), oid);
        }
        filler
    }

    fn new_oid(&mut self, name: &str) -> i64 {
        let oid = self.next_oid;
        self.next_oid += 1;
        self.definitions.relations.insert(oid, name.to_string());
        oid
    }

    fn oid_of(&self, name: &str) -> i64 {
        self.oids.get(&name.to_lowercase()).copied().unwrap_or(0)
    }

    /// Enters every object; returns what the catalog functions need.
    pub fn fill(mut self, objects: &[SchemaObject]) -> rusqlite::Result<Definitions> {
        let mut comments = Vec::new();
        for object in objects {
            match object.kind.as_str() {
                "view" if object.name.starts_with(ENUM_VIEW_PREFIX) => self.enum_type(object)?,
                "view" if object.name.starts_with(COMMENT_VIEW_PREFIX) => comments.push(object),
                "table" if object.name.starts_with(SEQUENCE_TABLE_PREFIX) => {
                    self.sequence(object)?
                }
                "table" | "view" => {
                    let relation = self.relation(object)?;
                    if let Some(key) = relation.rowid_key() {
                        self.rowid_primary_key(&relation, &key.name, &key.declared)?;
                    }
                    self.indexes(&relation)?;
                    self.foreign_keys(&relation)?;
                }
                "trigger" => self.trigger(object)?,
                _ => {}
            }
        }
        for object in comments {
            self.comment(object)?;
        }
        for (i, declared) in self.definitions.declared.iter().enumerate() {
            self.catalog.execute(
                "INSERT INTO shoal_declared_type(id, declared) VALUES (?1, ?2)",
                params![i as i64, declared],
            )?;
        }
        Ok(self.definitions)
    }

    /// `pg_class`, `pg_attribute` and `pg_attrdef` rows of a table or view.
    fn relation<'o>(&mut self, object: &'o SchemaObject) -> rusqlite::Result<Relation<'o>> {
        let columns: Vec<Column> = self
            .source
            .prepare(
                "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_xinfo(?1) \
                 WHERE hidden = 0",
            )?
            .query_map([&object.name], |row| {
                Ok(Column {
                    name: row.get(0)?,
                    declared: row.get(1)?,
                    not_null: row.get(2)?,
                    default: row.get(3)?,
                    primary_key: row.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let relation = Relation {
            object,
            oid: self.oid_of(&object.name),
            columns,
        };
        let is_table = object.kind == "table";
        let has_index: bool = self.source.query_row(
            "SELECT count(*) > 0 FROM pragma_index_list(?1)",
            [&object.name],
            |row| row.get(0),
        )?;
        self.catalog.execute(
            "INSERT INTO pg_class(oid, relname, relnamespace, reltype, reloftype, relowner, relam,
               relfilenode, reltablespace, relpages, reltuples, relhasindex, relisshared,
               relpersistence, relkind, relnatts, relchecks, relhasrules, relhastriggers,
               relhassubclass, relrowsecurity, relforcerowsecurity, relispopulated, relreplident,
               relispartition, relhasoids)
             VALUES (?1, ?2, ?3, 0, 0, ?4, ?5, ?1, 0, 0, -1, ?6, 0, 'p', ?7, ?8, 0, 0, ?9, 0, 0,
               0, 1, 'd', 0, 0)",
            params![
                relation.oid,
                object.name,
                PUBLIC_NAMESPACE,
                OWNER,
                if is_table { HEAP_AM } else { 0 },
                has_index || relation.rowid_key().is_some(),
                if is_table { "r" } else { "v" },
                relation.columns.len() as i64,
                // PostgreSQL implements foreign keys with triggers, and psql only looks for
                // either when this is set.
                is_table,
            ],
        )?;
        let rowid = relation.rowid_key().map(|c| c.name.clone());
        for (position, column) in relation.columns.iter().enumerate() {
            let attnum = position as i64 + 1;
            self.definitions
                .declared
                .push(column.declared.to_lowercase());
            let typmod = self.definitions.declared.len() as i64 - 1;
            let is_rowid = rowid.as_deref() == Some(column.name.as_str());
            if is_rowid {
                self.definitions.serial_columns.insert((
                    relation.object.name.to_lowercase(),
                    column.name.to_lowercase(),
                ));
            }
            // The rowid numbers rows as a serial column's sequence does in PostgreSQL.
            let default = if is_rowid && column.default.is_none() {
                Some(format!(
                    "nextval('{}_{}_seq'::regclass)",
                    relation.object.name.replace('\'', "''"),
                    column.name.replace('\'', "''")
                ))
            } else {
                column.default.as_deref().map(postgresql_default)
            };
            self.catalog.execute(
                "INSERT INTO pg_attribute(attrelid, attname, atttypid, attstattarget, attlen,
                   attnum, attndims, atttypmod, attnotnull, atthasdef, atthasmissing,
                   attidentity, attgenerated, attisdropped, attislocal, attinhcount,
                   attcollation, attstorage, attcompression)
                 VALUES (?1, ?2, ?3, -1, -1, ?4, 0, ?5, ?6, ?7, 0, '', '', 0, 1, 0, 0, 'x', '')",
                params![
                    relation.oid,
                    column.name,
                    // A column of an enum type names it (see dialect::enums).
                    self.oids
                        .get(&format!(
                            "{ENUM_VIEW_PREFIX}{}",
                            column.declared.to_lowercase()
                        ))
                        .copied()
                        .unwrap_or_else(|| type_oid(&column.declared)),
                    attnum,
                    typmod,
                    column.not_null || is_rowid,
                    default.is_some(),
                ],
            )?;
            if let Some(default) = &default {
                self.catalog.execute(
                    "INSERT INTO pg_attrdef(adrelid, adnum, adbin) VALUES (?1, ?2, ?3)",
                    params![relation.oid, attnum, default],
                )?;
            }
        }
        Ok(relation)
    }

    /// An INTEGER PRIMARY KEY is the rowid: SQLite keeps no index for it, but PostgreSQL
    /// clients expect the primary key's index (`<table>_pkey`).
    fn rowid_primary_key(
        &mut self,
        relation: &Relation<'_>,
        column: &str,
        declared: &str,
    ) -> rusqlite::Result<()> {
        let name = relation.key_name(true, &[column.to_string()]);
        let index_oid = self.new_oid(&name);
        self.index(
            relation,
            index_oid,
            &name,
            true,
            true,
            &[column.to_string()],
        )?;
        self.index_column(index_oid, column, 1, declared)?;
        self.constraint(
            relation,
            'p',
            &name,
            index_oid,
            0,
            &[column.to_string()],
            None,
        )
    }

    /// SQLite's indexes, with the constraints behind UNIQUE and PRIMARY KEY ones.
    fn indexes(&mut self, relation: &Relation<'_>) -> rusqlite::Result<()> {
        let indexes: Vec<(String, bool, String)> = self
            .source
            .prepare("SELECT name, \"unique\", origin FROM pragma_index_list(?1)")?
            .query_map([&relation.object.name], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        for (name, unique, origin) in indexes {
            let index_oid = match self.oids.get(&name.to_lowercase()) {
                Some(oid) => *oid,
                None => self.new_oid(&name), // automatic indexes are not in sqlite_schema
            };
            let columns: Vec<String> = self
                .source
                .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")?
                .query_map([&name], |row| row.get::<_, Option<String>>(0))?
                .filter_map(|c| c.ok().flatten())
                .collect();
            let primary = origin == "pk";
            // An index SQLite made for a PRIMARY KEY or UNIQUE constraint is named after the
            // constraint, as PostgreSQL names both.
            let name = if name.starts_with("sqlite_autoindex_") {
                let name = relation.key_name(primary, &columns);
                self.definitions.relations.insert(index_oid, name.clone());
                name
            } else {
                name
            };
            self.index(relation, index_oid, &name, unique, primary, &columns)?;
            for (position, column) in columns.iter().enumerate() {
                let declared = relation.declared(column).to_string();
                self.index_column(index_oid, column, position as i64 + 1, &declared)?;
            }
            if primary || origin == "u" {
                let kind = if primary { 'p' } else { 'u' };
                self.constraint(relation, kind, &name, index_oid, 0, &columns, None)?;
            }
        }
        Ok(())
    }

    /// `pg_class` and `pg_index` rows of one index.
    fn index(
        &mut self,
        relation: &Relation<'_>,
        index_oid: i64,
        name: &str,
        unique: bool,
        primary: bool,
        columns: &[String],
    ) -> rusqlite::Result<()> {
        let key = columns
            .iter()
            .map(|c| relation.attnum(c).to_string())
            .collect::<Vec<_>>()
            .join(" ");
        self.catalog.execute(
            "INSERT OR IGNORE INTO pg_class(oid, relname, relnamespace, reltype, reloftype,
               relowner, relam, relfilenode, reltablespace, relpages, reltuples, relhasindex,
               relisshared, relpersistence, relkind, relnatts, relchecks, relhasrules,
               relhastriggers, relhassubclass, relrowsecurity, relforcerowsecurity,
               relispopulated, relreplident, relispartition, relhasoids)
             VALUES (?1, ?2, 2200, 0, 0, 10, 403, ?1, 0, 0, -1, 0, 0, 'p', 'i', ?3, 0, 0, 0, 0, 0,
               0, 1, 'n', 0, 0)",
            params![index_oid, name, columns.len() as i64],
        )?;
        self.catalog.execute(
            "INSERT INTO pg_index(indexrelid, indrelid, indnatts, indnkeyatts, indisunique,
               indnullsnotdistinct, indisprimary, indisexclusion, indimmediate, indisclustered,
               indisvalid, indcheckxmin, indisready, indislive, indisreplident, indkey,
               indclass, indoption)
             VALUES (?1, ?2, ?3, ?3, ?4, 0, ?5, 0, 1, 0, 1, 0, 1, 1, 0, ?6, ?7, ?7)",
            params![
                index_oid,
                relation.oid,
                columns.len() as i64,
                unique,
                primary,
                key,
                // Default operator classes and options (ascending, nulls last) per column.
                vec!["0"; columns.len()].join(" ")
            ],
        )?;
        let definition = format!(
            "CREATE {}INDEX {name} ON public.{} USING btree ({})",
            if unique { "UNIQUE " } else { "" },
            relation.object.name,
            columns.join(", ")
        );
        self.definitions
            .indexes
            .insert(index_oid, (definition, columns.to_vec()));
        Ok(())
    }

    /// A column of an index relation (psql lists them for `\d index`).
    fn index_column(
        &self,
        index_oid: i64,
        name: &str,
        attnum: i64,
        declared: &str,
    ) -> rusqlite::Result<()> {
        self.catalog.execute(
            "INSERT INTO pg_attribute(attrelid, attname, atttypid, attstattarget, attlen, attnum,
               attndims, atttypmod, attnotnull, atthasdef, atthasmissing, attidentity,
               attgenerated, attisdropped, attislocal, attinhcount, attcollation, attstorage,
               attcompression)
             VALUES (?1, ?2, ?3, -1, -1, ?4, 0, -1, 0, 0, 0, '', '', 0, 1, 0, 0, 'x', '')",
            params![index_oid, name, type_oid(declared), attnum],
        )?;
        Ok(())
    }

    /// A `pg_constraint` row: primary key (`p`), unique (`u`) or foreign key (`f`, with the
    /// referenced table and columns).
    #[allow(clippy::too_many_arguments)]
    fn constraint(
        &mut self,
        relation: &Relation<'_>,
        kind: char,
        name: &str,
        index_oid: i64,
        referenced_oid: i64,
        columns: &[String],
        references: Option<&Reference>,
    ) -> rusqlite::Result<()> {
        let oid = self.next_constraint_oid;
        self.next_constraint_oid += 1;
        let definition = match (kind, references) {
            ('f', Some(reference)) => format!(
                "FOREIGN KEY ({}) REFERENCES {}({}){}{}{}",
                columns.join(", "),
                reference.table,
                reference.to.join(", "),
                action_clause("UPDATE", reference.on_update),
                action_clause("DELETE", reference.on_delete),
                if reference.deferred {
                    " DEFERRABLE INITIALLY DEFERRED"
                } else {
                    ""
                }
            ),
            ('p', _) => format!("PRIMARY KEY ({})", columns.join(", ")),
            _ => format!("UNIQUE ({})", columns.join(", ")),
        };
        let key = format!(
            "{{{}}}",
            columns
                .iter()
                .map(|c| relation.attnum(c).to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        // The referenced columns' numbers in their table (its primary key when unnamed).
        let referenced_key = match references {
            Some(Reference {
                table,
                to: referenced,
                ..
            }) => {
                let mut numbers = Vec::new();
                for column in referenced {
                    let number: Option<i64> = self
                        .source
                        .query_row(
                            "SELECT cid + 1 FROM pragma_table_info(?1) \
                             WHERE name = ?2 COLLATE NOCASE OR (?2 = '' AND pk = 1)",
                            params![table, column],
                            |row| row.get(0),
                        )
                        .ok();
                    numbers.push(number.unwrap_or(0).to_string());
                }
                format!("{{{}}}", numbers.join(","))
            }
            None => "{}".to_string(),
        };
        self.catalog.execute(
            "INSERT INTO pg_constraint(oid, conname, connamespace, contype, condeferrable,
               condeferred, convalidated, conrelid, contypid, conindid, conparentid, confrelid,
               confupdtype, confdeltype, confmatchtype, conislocal, coninhcount, connoinherit,
               conkey, confkey, shoal_definition)
             VALUES (?1, ?2, 2200, ?3, ?10, ?10, 1, ?4, 0, ?5, 0, ?6, ?11, ?12, 's', 1, 0, 1, ?7,
               ?8, ?9)",
            params![
                oid,
                name,
                kind.to_string(),
                relation.oid,
                index_oid,
                referenced_oid,
                key,
                referenced_key,
                definition,
                references.is_some_and(|r| r.deferred),
                references.map_or('a', |r| r.on_update).to_string(),
                references.map_or('a', |r| r.on_delete).to_string(),
            ],
        )?;
        self.definitions.constraints.insert(oid, definition);
        Ok(())
    }

    fn foreign_keys(&mut self, relation: &Relation<'_>) -> rusqlite::Result<()> {
        type Row = (i64, String, String, Option<String>, String, String);
        let rows: Vec<Row> = self
            .source
            .prepare(
                "SELECT id, \"table\", \"from\", \"to\", on_update, on_delete \
                 FROM pragma_foreign_key_list(?1) ORDER BY id, seq",
            )?
            .query_map([&relation.object.name], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut keys: BTreeMap<i64, Reference> = BTreeMap::new();
        for (id, table, from, to, on_update, on_delete) in rows {
            let key = keys.entry(id).or_insert_with(|| Reference {
                table,
                from: Vec::new(),
                to: Vec::new(),
                on_update: action_code(&on_update),
                on_delete: action_code(&on_delete),
                deferred: false,
            });
            key.from.push(from);
            key.to.push(to.unwrap_or_default());
        }
        // Named as declared, else as PostgreSQL names them (`t_a_fkey`), told apart by their
        // columns (SQLite numbers them, not in declaration order).
        let mut declared =
            declared_foreign_keys(relation.object.sql.as_deref().unwrap_or_default());
        let mut names_used: Vec<String> = Vec::new();
        for mut reference in keys.into_values() {
            let same_columns = |key: &DeclaredForeignKey| {
                key.columns.len() == reference.from.len()
                    && key
                        .columns
                        .iter()
                        .zip(&reference.from)
                        .all(|(a, b)| a.eq_ignore_ascii_case(b))
            };
            let given = declared
                .iter()
                .position(same_columns)
                .map(|at| declared.remove(at));
            reference.deferred = given.as_ref().is_some_and(|key| key.deferred);
            let base = given.and_then(|key| key.name).unwrap_or_else(|| {
                format!("{}_{}_fkey", relation.object.name, reference.from.join("_"))
            });
            let mut name = base.clone();
            let mut next = 1;
            while names_used.contains(&name) {
                name = format!("{base}{next}");
                next += 1;
            }
            names_used.push(name.clone());
            let referenced_oid = self.oid_of(&reference.table);
            let from = reference.from.clone();
            self.constraint(
                relation,
                'f',
                &name,
                0,
                referenced_oid,
                &from,
                Some(&reference),
            )?;
        }
        Ok(())
    }

    /// The `pg_description` row of a comment (kept as a one-row view: see `dialect::comments`).
    /// A sequence (`dialect::sequences`): its `pg_class` row (relkind 'S') and `pg_sequence`
    /// row, read from its table.
    fn sequence(&mut self, object: &SchemaObject) -> rusqlite::Result<()> {
        let name = &object.name[SEQUENCE_TABLE_PREFIX.len()..];
        let definition: Option<(i64, i64, i64, i64, bool)> = self
            .source
            .query_row(
                &format!(
                    "SELECT start_value, increment_by, max_value, min_value, cycle FROM \"{}\"",
                    object.name.replace('"', "\"\"")
                ),
                [],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                },
            )
            .ok();
        let Some((start, increment, max, min, cycle)) = definition else {
            return Ok(());
        };
        let oid = self.new_oid(name);
        self.catalog.execute(
            "INSERT INTO pg_class(oid, relname, relnamespace, reltype, reloftype, relowner, relam,
               relfilenode, reltablespace, relpages, reltuples, relhasindex, relisshared,
               relpersistence, relkind, relnatts, relchecks, relhasrules, relhastriggers,
               relhassubclass, relrowsecurity, relforcerowsecurity, relispopulated, relreplident,
               relispartition, relhasoids)
             VALUES (?1, ?2, ?3, 0, 0, ?4, 0, ?1, 0, 1, 1, 0, 0, 'p', 'S', 3, 0, 0, 0, 0, 0,
               0, 1, 'n', 0, 0)",
            params![oid, name, PUBLIC_NAMESPACE, OWNER],
        )?;
        self.catalog.execute(
            "INSERT INTO pg_sequence(seqrelid, seqtypid, seqstart, seqincrement, seqmax, seqmin,
               seqcache, seqcycle) VALUES (?1, 20, ?2, ?3, ?4, ?5, 1, ?6)",
            params![oid, start, increment, max, min, cycle],
        )?;
        Ok(())
    }

    fn comment(&mut self, object: &SchemaObject) -> rusqlite::Result<()> {
        let (relation, column, text): (String, Option<String>, String) = self.source.query_row(
            &format!(
                "SELECT relation, column_name, comment FROM \"{}\"",
                object.name.replace('"', "\"\"")
            ),
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        let oid = self.oid_of(&relation);
        if oid == 0 {
            // The table was dropped since.
            return Ok(());
        }
        let subid: i64 = match &column {
            Some(column) => self
                .source
                .query_row(
                    "SELECT cid + 1 FROM pragma_table_info(?1) WHERE name = ?2 COLLATE NOCASE",
                    params![relation, column],
                    |row| row.get(0),
                )
                .unwrap_or(0),
            None => 0,
        };
        if column.is_some() && subid == 0 {
            return Ok(());
        }
        self.catalog.execute(
            "INSERT INTO pg_description(objoid, classoid, objsubid, description)
             VALUES (?1, 1259, ?2, ?3)",
            params![oid, subid, text],
        )?;
        self.definitions.comments.insert((oid, subid), text);
        Ok(())
    }

    /// `pg_type` and `pg_enum` rows of an enum type (kept as a view of its labels: see
    /// `dialect::enums`).
    fn enum_type(&mut self, object: &SchemaObject) -> rusqlite::Result<()> {
        let type_oid = self.oid_of(&object.name);
        let name = &object.name[ENUM_VIEW_PREFIX.len()..];
        self.catalog.execute(
            "INSERT INTO pg_type(oid, typname, typnamespace, typowner, typlen, typbyval, typtype,
               typcategory, typispreferred, typisdefined, typdelim, typrelid, typelem, typarray,
               typnotnull, typbasetype, typtypmod, typndims, typcollation)
             VALUES (?1, ?2, ?3, ?4, 4, 1, 'e', 'E', 0, 1, ',', 0, 0, 0, 0, 0, -1, 0, 0)",
            params![type_oid, name, PUBLIC_NAMESPACE, OWNER],
        )?;
        let labels: Vec<(String, f64)> = self
            .source
            .prepare(&format!(
                "SELECT label, sort_order FROM \"{}\" ORDER BY sort_order",
                object.name.replace('"', "\"\"")
            ))?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (label, sort_order) in labels {
            let label_oid = self.next_constraint_oid;
            self.next_constraint_oid += 1;
            self.catalog.execute(
                "INSERT INTO pg_enum(oid, enumtypid, enumsortorder, enumlabel)
                 VALUES (?1, ?2, ?3, ?4)",
                params![label_oid, type_oid, sort_order, label],
            )?;
        }
        Ok(())
    }

    fn trigger(&mut self, object: &SchemaObject) -> rusqlite::Result<()> {
        let oid = self.oid_of(&object.name);
        if let Some(sql) = &object.sql {
            self.definitions.triggers.insert(oid, sql.clone());
        }
        self.catalog.execute(
            "INSERT INTO pg_trigger(oid, tgrelid, tgparentid, tgname, tgenabled, tgisinternal,
               shoal_definition) VALUES (?1, ?2, 0, ?3, 'O', 0, ?4)",
            params![oid, self.oid_of(&object.table), object.name, object.sql],
        )?;
        Ok(())
    }
}

/// A column default as PostgreSQL shows it: the SQLite text Shoal's translation of `now()`,
/// `gen_random_uuid()`, … wrote (see `dialect::functions`) reads as that call again.
fn postgresql_default(default: &str) -> String {
    crate::pgwire::dialect::postgresql_spelling(default)
        .map_or_else(|| default.trim().to_string(), str::to_string)
}

/// The PostgreSQL type oid for a SQLite declared type (as `types::PgType` presents values).
fn type_oid(declared: &str) -> i64 {
    PgType::for_declared(declared).map_or(25, |t| i64::from(t.oid()))
}
