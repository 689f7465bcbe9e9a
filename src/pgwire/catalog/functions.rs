//! The catalog functions psql and drivers call (`format_type`, `pg_get_indexdef`,
//! `pg_table_is_visible`, …), registered on the in-memory catalog database.

use std::collections::BTreeMap;

use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;

/// Texts the catalog functions return, computed while filling the catalog.
#[derive(Default)]
pub struct Definitions {
    /// Declared column types, indexed by the `atttypmod` given to each column.
    pub declared: Vec<String>,
    /// `pg_get_indexdef` by index oid, with the index's column names (`pg_get_indexdef(oid, n)`).
    pub indexes: BTreeMap<i64, (String, Vec<String>)>,
    /// `pg_get_constraintdef` by constraint oid.
    pub constraints: BTreeMap<i64, String>,
    /// Relation names by oid (`x::regclass`).
    pub relations: BTreeMap<i64, String>,
    /// `pg_get_triggerdef` by trigger oid.
    pub triggers: BTreeMap<i64, String>,
    /// Comments by relation oid and column number (0: the relation's own).
    pub comments: BTreeMap<(i64, i64), String>,
    /// (table, column), lower-cased, of the columns that are SQLite's rowid: SERIAL columns.
    pub serial_columns: std::collections::BTreeSet<(String, String)>,
}

/// The catalog functions psql and drivers call (any argument count, as PostgreSQL's have
/// optional ones).
pub fn register_functions(
    catalog: &Connection,
    definitions: Definitions,
    current_database: &str,
) -> rusqlite::Result<()> {
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
        ("current_schemas", "{public}"),
        ("pg_size_pretty", "0 bytes"),
    ];
    for &(name, value) in texts {
        catalog.create_scalar_function(name, any, flags, move |_| Ok(value.to_string()))?;
    }
    // A setting's server default (the catalog does not see the session's own SETs); unknown
    // names are NULL with missing_ok, else an error as in PostgreSQL.
    catalog.create_scalar_function("current_setting", any, flags, |context| {
        let name: String = context.get::<String>(0)?.to_ascii_lowercase();
        let missing_ok = context.len() > 1 && context.get::<bool>(1).unwrap_or(false);
        match crate::pgwire::session::DEFAULTS
            .iter()
            .find(|(n, _)| *n == name)
        {
            Some((_, value)) => Ok(Some(value.to_string())),
            None if missing_ok => Ok(None),
            None => Err(rusqlite::Error::UserFunctionError(
                format!("unrecognized configuration parameter \"{name}\"").into(),
            )),
        }
    })?;
    // set_config(name, value, is_local) answers the value (the session's own SET is not seen
    // here: a lone `SELECT set_config(…)` is the session's, see `session.rs`).
    catalog.create_scalar_function("set_config", 3, flags, |context| {
        context.get::<Option<String>>(1)
    })?;
    let current = current_database.to_string();
    catalog.create_scalar_function("current_database", any, flags, move |_| Ok(current.clone()))?;
    let truths: &[(&str, bool)] = &[
        ("pg_table_is_visible", true),
        ("pg_type_is_visible", true),
        ("pg_collation_is_visible", true),
        ("pg_function_is_visible", true),
        ("has_table_privilege", true),
        ("has_schema_privilege", true),
        ("pg_has_role", true),
        ("pg_relation_is_publishable", false),
    ];
    for &(name, value) in truths {
        catalog.create_scalar_function(name, any, flags, move |_| Ok(value))?;
    }
    for name in [
        "shobj_description",
        // No column is backed by a sequence (SERIAL columns are SQLite rowids).
        "pg_get_serial_sequence",
        // pg_proc lists no functions (SQLite's are built in).
        "pg_get_function_result",
        "pg_get_function_arguments",
        "pg_get_function_identity_arguments",
    ] {
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
    // `'"pg_catalog"."int4"'::regtype` prints as the type's SQL name (`integer`).
    catalog.create_scalar_function("shoal_regtype", 1, flags, |context| {
        let name: Option<String> = context.get(0)?;
        Ok(name.map(|name| {
            let name = unqualified_relation_name(&name);
            builtin_type_oid(&name)
                .and_then(builtin_type_name)
                .unwrap_or(name)
        }))
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
        comments,
        serial_columns,
    } = definitions;
    // pg_get_serial_sequence(table, column): `public.<table>_<column>_seq` for a SERIAL column
    // (SQLite's rowid, which numbers rows as that sequence would), else NULL.
    catalog.create_scalar_function("pg_get_serial_sequence", 2, flags, move |context| {
        let table: Option<String> = context.get(0)?;
        let column: Option<String> = context.get(1)?;
        let (Some(table), Some(column)) = (table, column) else {
            return Ok(None);
        };
        let table = unqualified_relation_name(&table);
        let column = column.trim_matches('"').to_lowercase();
        Ok(serial_columns
            .contains(&(table.clone(), column.clone()))
            .then(|| format!("public.{table}_{column}_seq")))
    })?;
    // obj_description(oid[, catalog]) and col_description(oid, column): comments kept by
    // `COMMENT ON` (relations only: other objects have none).
    // (A relation named by text, `'books'::regclass`, is looked up by name.)
    let by_name: BTreeMap<String, i64> = relations
        .iter()
        .map(|(oid, name)| (name.to_lowercase(), *oid))
        .collect();
    let relation_oid = std::sync::Arc::new(
        move |context: &rusqlite::functions::Context<'_>| -> rusqlite::Result<Option<i64>> {
            if let Some(oid) = oid_argument(context, 0)? {
                return Ok(Some(oid));
            }
            Ok(match context.get_raw(0) {
                rusqlite::types::ValueRef::Text(name) => std::str::from_utf8(name)
                    .ok()
                    .and_then(|name| by_name.get(&unqualified_relation_name(name)))
                    .copied(),
                _ => None,
            })
        },
    );
    let regclass = relation_oid.clone();
    catalog.create_scalar_function("shoal_regclass_oid", 1, flags, move |context| {
        if let rusqlite::types::ValueRef::Text(name) = context.get_raw(0)
            && let Some(oid) = std::str::from_utf8(name).ok().and_then(system_catalog_oid)
        {
            return Ok(Some(oid));
        }
        regclass(context)
    })?;
    let comments = std::sync::Arc::new(comments);
    let relation_comments = comments.clone();
    let oid_of_relation = relation_oid.clone();
    catalog.create_scalar_function("obj_description", any, flags, move |context| {
        let oid = oid_of_relation(context)?;
        Ok(oid.and_then(|oid| relation_comments.get(&(oid, 0)).cloned()))
    })?;
    catalog.create_scalar_function("col_description", any, flags, move |context| {
        let oid = relation_oid(context)?;
        let column = if context.len() > 1 {
            oid_argument(context, 1)?
        } else {
            None
        };
        Ok(oid.zip(column).and_then(|key| comments.get(&key).cloned()))
    })?;
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
            .and_then(|m| declared.get(m).map(|d| canonical_type_name(d)))
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
/// A relation's or type's name as text names it (`users`, `"Users"`, `public.users`,
/// `"shoal"."public"."users"`): its last part, lower-cased for lookup (catalog names here are
/// matched without regard to case).
fn unqualified_relation_name(name: &str) -> String {
    crate::pgwire::dialect::sequences::sequence_name_in_text(name).to_lowercase()
}

/// The oid of a system catalog named as `'pg_catalog.pg_class'::regclass` names it.
fn system_catalog_oid(name: &str) -> Option<i64> {
    let name = name.trim().trim_start_matches("pg_catalog.");
    Some(match name {
        "pg_class" => 1259,
        "pg_type" => 1247,
        "pg_attribute" => 1249,
        "pg_proc" => 1255,
        "pg_namespace" => 2615,
        "pg_constraint" => 2606,
        "pg_index" => 2610,
        "pg_description" => 2609,
        _ => return None,
    })
}

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

/// A declared type as PostgreSQL's `format_type` prints it (`VARCHAR(20)` → `character
/// varying(20)`, `int4` → `integer`), so clients that parse it (SQLAlchemy's reflection) know
/// it; names PostgreSQL does not have are kept, lower-case.
pub fn canonical_type_name(declared: &str) -> String {
    let declared = declared.trim().to_ascii_lowercase();
    let (base, modifier) = match declared.split_once('(') {
        Some((base, rest)) => (
            base.trim().to_string(),
            format!("({}", rest.replace(' ', "")),
        ),
        None => (declared.clone(), String::new()),
    };
    let canonical = match base.as_str() {
        "varchar" | "character varying" => "character varying",
        "char" | "character" | "bpchar" => "character",
        "int" | "integer" | "int4" => "integer",
        "bigint" | "int8" => "bigint",
        "smallint" | "int2" => "smallint",
        "bool" | "boolean" => "boolean",
        "float" | "float8" | "double" | "double precision" => "double precision",
        "float4" | "real" => "real",
        "decimal" | "numeric" => "numeric",
        "timestamp" | "timestamp without time zone" => "timestamp without time zone",
        "timestamptz" | "timestamp with time zone" => "timestamp with time zone",
        "time" | "time without time zone" => "time without time zone",
        _ => return declared,
    };
    format!("{canonical}{modifier}")
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
        114 => "json",
        1082 => "date",
        1083 => "time without time zone",
        1114 => "timestamp without time zone",
        1184 => "timestamp with time zone",
        1700 => "numeric",
        2950 => "uuid",
        3802 => "jsonb",
        _ => return None,
    };
    Some(name.to_string())
}

pub fn builtin_type_oid(name: &str) -> Option<i64> {
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
        "json" => 114,
        "date" => 1082,
        "time" => 1083,
        "timestamp" => 1114,
        "timestamptz" => 1184,
        "numeric" => 1700,
        "uuid" => 2950,
        "jsonb" => 3802,
        _ => return None,
    };
    Some(oid)
}
