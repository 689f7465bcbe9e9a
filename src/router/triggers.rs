//! Which triggers a sharded database accepts. A trigger runs in the group where the row that
//! fires it is written, so rows it writes land in that group with that group's rowids: right
//! for a reference table writing reference tables (every group runs the same statement on the
//! same rows), wrong for a distributed table (the rows it writes belong to other groups, and
//! their rowids would repeat across groups). Triggers that only read, or RAISE, are fine
//! anywhere; a trigger on a local table writing another kind is refused when it fires (the
//! statement then writes two kinds of table).

use crate::catalog::view::{DatabaseEntry, TableKind};
use crate::router::tokens::{Token, tokenize};

/// `Err` with the reason when `sql` creates a trigger `database` cannot run as written.
pub fn check_trigger(database: &DatabaseEntry, sql: &str) -> Result<(), String> {
    let Some(tokens) = tokenize(sql) else {
        return Ok(());
    };
    let Some((table, written)) = trigger_parts(&tokens) else {
        return Ok(());
    };
    let Some(kind) = database.tables.get(&table) else {
        return Ok(());
    };
    let Some(first) = written.first() else {
        return Ok(());
    };
    match kind {
        TableKind::Distributed { .. } => Err(format!(
            "a trigger on distributed table {table} that writes rows ({first}) is not \
             supported: it would write them in the group of the row that fires it, with that \
             group's rowids; write them with a statement of their own"
        )),
        TableKind::Reference => match written
            .iter()
            .find(|w| !matches!(database.tables.get(*w), Some(TableKind::Reference)))
        {
            Some(other) => Err(format!(
                "a trigger on reference table {table} may write only reference tables: every \
                 group runs it, so its rows in {other} would be written once per group"
            )),
            None => Ok(()),
        },
    }
}

/// The table a CREATE TRIGGER statement is on, and the tables its body writes (lower-case);
/// `None` for any other statement.
fn trigger_parts(tokens: &[Token]) -> Option<(String, Vec<String>)> {
    let trigger_at = tokens.iter().position(|t| t.is("trigger"))?;
    if !tokens.first()?.is("create") || trigger_at > 3 {
        return None;
    }
    let begin_at = tokens.iter().position(|t| t.is("begin"))?;
    let on_at = tokens[..begin_at].iter().rposition(|t| t.is("on"))?;
    let table = qualified_name(&tokens[on_at + 1..begin_at])?;
    let mut written = Vec::new();
    let body = &tokens[begin_at + 1..];
    let mut statement_start = true;
    for (at, token) in body.iter().enumerate() {
        if statement_start && let Some(target) = written_table(&body[at..]) {
            written.push(target);
        }
        statement_start = token.is_symbol(";");
    }
    Some((table, written))
}

/// The table a body statement starting at `tokens[0]` writes, if it writes one.
fn written_table(tokens: &[Token]) -> Option<String> {
    let first = tokens.first()?;
    let after = if first.is("insert") || first.is("replace") {
        tokens.iter().position(|t| t.is("into"))? + 1
    } else if first.is("update") {
        match tokens.get(1) {
            Some(or) if or.is("or") => 3,
            _ => 1,
        }
    } else if first.is("delete") {
        tokens.iter().position(|t| t.is("from"))? + 1
    } else {
        return None;
    };
    qualified_name(tokens.get(after..)?)
}

/// `name` or `schema.name` at the start of `tokens`: the name, lower-case.
fn qualified_name(tokens: &[Token]) -> Option<String> {
    match tokens {
        [_, dot, name, ..] if dot.is_symbol(".") => name.name(),
        [name, ..] => name.name(),
        [] => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> DatabaseEntry {
        let mut entry = DatabaseEntry::sharded_for_tests();
        entry.tables.insert(
            "orders".into(),
            TableKind::Distributed {
                key: Some("customer".into()),
            },
        );
        entry
            .tables
            .insert("countries".into(), TableKind::Reference);
        entry.tables.insert("rates".into(), TableKind::Reference);
        entry
    }

    #[test]
    fn a_trigger_writing_rows_from_a_distributed_table_is_refused() {
        let refused = check_trigger(
            &database(),
            "CREATE TRIGGER t AFTER INSERT ON orders BEGIN \
             INSERT OR IGNORE INTO orders(customer) VALUES (NEW.customer + 1); END",
        )
        .unwrap_err();
        assert!(refused.contains("distributed table orders"), "{refused}");
        assert!(
            check_trigger(
                &database(),
                "CREATE TRIGGER t AFTER UPDATE OF customer ON main.orders BEGIN \
                 SELECT RAISE(ABORT, 'no'); END"
            )
            .is_ok(),
            "a trigger that only reads or raises runs anywhere"
        );
    }

    #[test]
    fn a_trigger_on_a_reference_table_may_write_reference_tables_only() {
        assert!(
            check_trigger(
                &database(),
                "CREATE TRIGGER t AFTER DELETE ON countries BEGIN \
                 DELETE FROM rates WHERE country = OLD.code; END"
            )
            .is_ok()
        );
        let refused = check_trigger(
            &database(),
            "CREATE TRIGGER t AFTER DELETE ON countries BEGIN \
             UPDATE OR IGNORE orders SET country = NULL WHERE country = OLD.code; END",
        )
        .unwrap_err();
        assert!(refused.contains("orders"), "{refused}");
    }

    #[test]
    fn other_statements_and_local_tables_are_left_alone() {
        assert!(check_trigger(&database(), "CREATE TABLE trigger_log (x)").is_ok());
        assert!(
            check_trigger(
                &database(),
                "CREATE TRIGGER t AFTER INSERT ON local_table BEGIN \
                 INSERT INTO orders VALUES (1); END"
            )
            .is_ok()
        );
    }
}
