//! The PostgreSQL endpoint's text rewrites and parameter decoding, reachable from the fuzz
//! targets (`crate::fuzzing`). Not an API.

use pgwire::api::Type;

use crate::pgwire::catalog::{is_catalog_query, rewrite as rewrite_catalog_query};
use crate::pgwire::params::decode_parameter;
use crate::pgwire::split::{rewrite_casts, rewrite_parameters, to_sqlite};

/// A schema an `ALTER TABLE` plan is worked out against: tables that reference each other, an
/// index, a trigger and a view.
const FUZZ_SCHEMA: &[(&str, &str, &str, &str)] = &[
    (
        "table",
        "t",
        "t",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT NOT NULL, b NUMERIC(8,2))",
    ),
    (
        "table",
        "c",
        "c",
        "CREATE TABLE c (x INTEGER REFERENCES t (id) DEFERRABLE INITIALLY DEFERRED, y TEXT)",
    ),
    ("index", "t_a", "t", "CREATE INDEX t_a ON t (a)"),
    (
        "trigger",
        "t_noted",
        "t",
        "CREATE TRIGGER t_noted AFTER INSERT ON t BEGIN SELECT 1; END",
    ),
    ("view", "v", "v", "CREATE VIEW v AS SELECT a FROM t"),
];

/// Every rewrite a statement may go through on its way to SQLite (an `ALTER TABLE` plan is
/// also worked out against a fixed schema).
pub fn rewrite(statement: &str) {
    if let Ok(translation) = crate::pgwire::dialect::translate(statement)
        && let Some(plan) = &translation.alter
    {
        use crate::pgwire::dialect::rebuild::SchemaObject;
        let schema: Vec<SchemaObject> = FUZZ_SCHEMA
            .iter()
            .map(|(kind, name, table, sql)| SchemaObject {
                kind: kind.to_string(),
                name: name.to_string(),
                table: table.to_string(),
                sql: sql.to_string(),
            })
            .collect();
        let _ = plan.rebuild_statements(&schema, &["c".to_string()]);
    }
    let _ = to_sqlite(statement);
    let _ = rewrite_parameters(statement);
    let _ = rewrite_casts(statement);
    if is_catalog_query(statement) {
        let _ = rewrite_catalog_query(statement);
    }
}

/// A password message as the login handler takes it: checked by Shoal, then coerced by
/// pgwire into a SASL initial response only when the check passed.
pub fn password_message(body: bytes::BytesMut) {
    use pgwire::messages::startup::PasswordMessageFamily;
    if crate::pgwire::login::is_sasl_initial_response(&body) {
        let _ = PasswordMessageFamily::Raw(body.clone()).into_sasl_initial_response();
    }
    let _ = PasswordMessageFamily::Raw(body).into_sasl_response();
}

/// Types whose parameter values the endpoint decodes.
const TYPES: [Type; 12] = [
    Type::BOOL,
    Type::INT2,
    Type::INT4,
    Type::INT8,
    Type::FLOAT4,
    Type::FLOAT8,
    Type::NUMERIC,
    Type::TEXT,
    Type::VARCHAR,
    Type::BYTEA,
    Type::TIMESTAMP,
    Type::UNKNOWN,
];

/// Decodes `bytes` as a parameter of the type `selector` picks, in text and binary format.
pub fn decode_parameters(bytes: &[u8], selector: u8) {
    let pg_type = &TYPES[usize::from(selector) % TYPES.len()];
    let _ = decode_parameter(Some(bytes), pg_type, false);
    let _ = decode_parameter(Some(bytes), pg_type, true);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statements stitched from PostgreSQL fragments (ALTER TABLE forms, UNNEST, DEFAULT,
    /// casts, unbalanced pieces) go through every rewrite, and the ALTER plans through the
    /// rebuild planner, without a panic — a deterministic stand-in for the fuzz target.
    #[test]
    fn stitched_statements_never_panic_the_rewrites() {
        const FRAGMENTS: &[&str] = &[
            "ALTER TABLE t ",
            "ALTER TABLE IF EXISTS c ",
            "ADD CONSTRAINT k FOREIGN KEY (a) REFERENCES t (id) ",
            "ADD CHECK (b > 0) ",
            "ADD PRIMARY KEY (a) ",
            "ALTER COLUMN a TYPE varchar(9) USING a::text ",
            "ALTER COLUMN b SET DEFAULT now() ",
            "ALTER COLUMN zz DROP NOT NULL ",
            "DROP CONSTRAINT IF EXISTS t_pkey ",
            "DROP COLUMN y CASCADE ",
            "ADD COLUMN q int UNIQUE ",
            ", ",
            "SELECT * FROM UNNEST('{1,\"2\",NULL}'::int[], ('{a}')::text[]) ",
            "INSERT INTO t (a, b) VALUES (DEFAULT, 1), (2, DEFAULT) ",
            "'{{1},2}'::int[] ",
            "( ",
            ") ",
            "$1 ",
            "WITH ORDINALITY x(a, b) ",
        ];
        let mut state: u64 = 0x5eed;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize
        };
        for _ in 0..2_000 {
            let pieces = 1 + next() % 6;
            let statement: String = (0..pieces)
                .map(|_| FRAGMENTS[next() % FRAGMENTS.len()])
                .collect();
            rewrite(&statement);
        }
    }
}
