//! A SQL text dump of a database (`GET /db/backup?fmt=sql`), in the shape of the sqlite3
//! shell's `.dump`: schema, then rows as INSERT statements, then indexes, triggers and views,
//! in one transaction. Shoal's own tables are left out; `POST /db/load` reads it back.

use std::io::Write;

use rusqlite::Connection;
use rusqlite::types::ValueRef;

/// Writes the dump of `connection`'s main database to `out`.
pub fn dump_sql(connection: &Connection, out: &mut impl Write) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| e.to_string();
    writeln!(out, "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;").map_err(|e| fail(&e))?;
    let objects: Vec<(String, String, String)> = connection
        .prepare(
            "SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_shoal\\_%' ESCAPE '\\' \
             ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 WHEN 'trigger' THEN 2 ELSE 3 END, rowid",
        )
        .and_then(|mut statement| {
            statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect()
        })
        .map_err(|e| fail(&e))?;
    for (kind, name, sql) in &objects {
        writeln!(out, "{sql};").map_err(|e| fail(&e))?;
        if kind != "table" || sql.to_ascii_uppercase().starts_with("CREATE VIRTUAL") {
            continue;
        }
        let quoted = quote_identifier(name);
        let mut statement = connection
            .prepare(&format!("SELECT * FROM {quoted}"))
            .map_err(|e| fail(&e))?;
        let columns = statement.column_count();
        let mut rows = statement.query([]).map_err(|e| fail(&e))?;
        while let Some(row) = rows.next().map_err(|e| fail(&e))? {
            let mut values = Vec::with_capacity(columns);
            for index in 0..columns {
                values.push(sql_literal(row.get_ref(index).map_err(|e| fail(&e))?));
            }
            writeln!(out, "INSERT INTO {quoted} VALUES({});", values.join(","))
                .map_err(|e| fail(&e))?;
        }
    }
    writeln!(out, "COMMIT;").map_err(|e| fail(&e))?;
    Ok(())
}

/// `name` as a quoted SQL identifier.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A value as a SQL literal that reads back as the same value and type.
fn sql_literal(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) if f.is_infinite() => {
            if f > 0.0 {
                "1e999".into()
            } else {
                "-1e999".into()
            }
        }
        ValueRef::Real(f) => {
            // Rust prints the shortest text that reads back as the same double; keep it a
            // real (not an integer) on the way back.
            let text = format!("{f:?}");
            if text.contains(['.', 'e', 'E']) {
                text
            } else {
                format!("{text}.0")
            }
        }
        ValueRef::Text(bytes) => {
            format!("'{}'", String::from_utf8_lossy(bytes).replace('\'', "''"))
        }
        ValueRef::Blob(bytes) => format!("X'{}'", hex::encode(bytes)),
    }
}

/// The statements of a dump (or any SQL script) to load as one transaction: the dump's own
/// transaction control and foreign-key pragma are dropped (the load is one transaction).
pub fn load_statements(script: &str) -> Vec<String> {
    crate::sqltext::split_statements(script)
        .into_iter()
        .map(|statement| statement.trim().trim_end_matches(';').trim().to_string())
        .filter(|statement| {
            let upper = statement.to_ascii_uppercase();
            let words: Vec<&str> = upper.split_whitespace().collect();
            !statement.is_empty()
                && !matches!(
                    words.as_slice(),
                    ["BEGIN", ..] | ["COMMIT", ..] | ["END", ..] | ["ROLLBACK"]
                )
                && !upper.replace(' ', "").starts_with("PRAGMAFOREIGN_KEYS")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_reloads_to_the_same_values_and_types() {
        let source = Connection::open_in_memory().unwrap();
        source
            .execute_batch(
                "CREATE TABLE t(a INTEGER PRIMARY KEY, b, c TEXT); \
                 CREATE INDEX t_c ON t(c); \
                 INSERT INTO t VALUES(1, 2.0, 'it''s'), (2, x'00ff', NULL), (3, 1e300, 'x');",
            )
            .unwrap();
        let mut text = Vec::new();
        dump_sql(&source, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("INSERT INTO \"t\" VALUES(1,2.0,'it''s');"),
            "{text}"
        );
        let target = Connection::open_in_memory().unwrap();
        target.execute_batch("BEGIN").unwrap();
        for statement in load_statements(&text) {
            target.execute_batch(&statement).unwrap();
        }
        target.execute_batch("COMMIT").unwrap();
        let rows: Vec<(i64, String, String)> = target
            .prepare("SELECT a, typeof(b), quote(b) FROM t ORDER BY a")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows[0].1, "real");
        assert_eq!(rows[1].2, "X'00FF'");
        assert_eq!(rows[2].2, "1.0e+300");
        let index: i64 = target
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 't_c'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(index, 1);
    }
}
