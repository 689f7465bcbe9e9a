//! `INSERT … VALUES` whose rows leave different columns to their defaults (`(1, DEFAULT),
//! (DEFAULT, 2)`, as TypeORM and Knex write a batch of objects with different keys). SQLite has
//! no DEFAULT in VALUES: a column every row leaves to its default is left out of the column list
//! (`rewrite.rs`); rows that differ are split here into one INSERT per run of consecutive rows
//! with the same defaults, in order, which the endpoint runs together — atomically, as one
//! statement, with their RETURNING rows in the order of the VALUES list and their counts added.

use sqlparser::ast::{Expr, Insert, SetExpr, Statement};

/// Rows one statement may be split into per run of defaults (a VALUES list that alternates
/// more than this is refused).
const PARTS_MAX: usize = 1_000;

/// Whether `expr` is the DEFAULT keyword in a VALUES list.
pub fn is_default(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(ident)
        if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default"))
}

/// The INSERTs `statement` splits into, when its VALUES rows leave different columns to their
/// defaults or leave every column to it; `None` when it needs no split (the single-statement
/// rewrite handles it); `Err` names what cannot be split.
pub fn split_by_defaults(statement: &Statement) -> Option<Result<Vec<String>, String>> {
    let Statement::Insert(insert) = statement else {
        return None;
    };
    let source = insert.source.as_ref()?;
    let SetExpr::Values(values) = source.body.as_ref() else {
        return None;
    };
    let patterns: Vec<Vec<bool>> = values
        .rows
        .iter()
        .map(|row| row.content.iter().map(is_default).collect())
        .collect();
    let first = patterns.first()?;
    let all_default = |pattern: &Vec<bool>| pattern.iter().all(|d| *d);
    let differ = patterns.iter().any(|pattern| pattern != first);
    if !differ && !all_default(first) {
        return None;
    }
    if insert.columns.len() != first.len() {
        return Some(Err(
            "DEFAULT in VALUES without a column list naming every value".into(),
        ));
    }
    if source.order_by.is_some() || source.limit_clause.is_some() || source.with.is_some() {
        return Some(Err("DEFAULT in VALUES with ORDER BY, LIMIT or WITH".into()));
    }
    // Runs of consecutive rows with the same defaults, in order.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (index, pattern) in patterns.iter().enumerate() {
        match runs.last_mut() {
            Some((start, end)) if patterns[*start] == *pattern && !all_default(pattern) => {
                *end = index + 1;
            }
            _ => runs.push((index, index + 1)),
        }
    }
    if runs.len() > PARTS_MAX {
        return Some(Err(format!(
            "a VALUES list whose rows change which columns take their defaults more than \
             {PARTS_MAX} times"
        )));
    }
    Some(Ok(runs
        .into_iter()
        .map(|(start, end)| {
            if all_default(&patterns[start]) {
                default_values(insert)
            } else {
                let mut part = insert.clone();
                if let Some(source) = part.source.as_mut()
                    && let SetExpr::Values(values) = source.body.as_mut()
                {
                    values.rows = values.rows[start..end].to_vec();
                }
                Statement::Insert(part).to_string()
            }
        })
        .collect()))
}

/// A row leaving every column to its default: `INSERT INTO t DEFAULT VALUES [RETURNING …]`.
fn default_values(insert: &Insert) -> String {
    let returning = insert.returning.as_ref().map_or_else(String::new, |items| {
        let items: Vec<String> = items.iter().map(ToString::to_string).collect();
        format!(" RETURNING {}", items.join(", "))
    });
    format!("INSERT INTO {} DEFAULT VALUES{returning}", insert.table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(sql: &str) -> Option<Result<Vec<String>, String>> {
        let statement = crate::pgwire::dialect::parse(sql)
            .and_then(|mut statements| statements.pop())
            .expect("parsed");
        split_by_defaults(&statement)
    }

    #[test]
    fn rows_with_different_defaults_become_one_insert_per_run_in_order() {
        assert_eq!(
            split(
                "INSERT INTO t (a, b) VALUES ($1, DEFAULT), ($2, DEFAULT), (DEFAULT, $3), \
                 ($4, $5) RETURNING id"
            ),
            Some(Ok(vec![
                "INSERT INTO t (a, b) VALUES ($1, DEFAULT), ($2, DEFAULT) RETURNING id".into(),
                "INSERT INTO t (a, b) VALUES (DEFAULT, $3) RETURNING id".into(),
                "INSERT INTO t (a, b) VALUES ($4, $5) RETURNING id".into(),
            ]))
        );
        assert_eq!(
            split("INSERT INTO t (a) VALUES (DEFAULT), (DEFAULT) RETURNING id, a"),
            Some(Ok(vec![
                "INSERT INTO t DEFAULT VALUES RETURNING id, a".into(),
                "INSERT INTO t DEFAULT VALUES RETURNING id, a".into(),
            ]))
        );
    }

    #[test]
    fn rows_alike_need_no_split() {
        assert_eq!(
            split("INSERT INTO t (a, b) VALUES (1, DEFAULT), (2, DEFAULT)"),
            None
        );
        assert_eq!(split("INSERT INTO t (a, b) VALUES (1, 2)"), None);
        assert_eq!(split("UPDATE t SET a = DEFAULT"), None);
        assert!(matches!(
            split("INSERT INTO t VALUES (1, DEFAULT), (DEFAULT, 2)"),
            Some(Err(_))
        ));
    }
}
