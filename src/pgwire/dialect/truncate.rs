//! `TRUNCATE [TABLE] a, b [RESTART IDENTITY | CONTINUE IDENTITY] [CASCADE | RESTRICT]`: SQLite
//! has no TRUNCATE, so the tables' rows are deleted, all in one transaction, each table after
//! the tables whose foreign keys point at it (so no constraint sees a row whose parent has
//! gone). With CASCADE the tables referencing the named ones are emptied too, as in
//! PostgreSQL. The order is worked out when it runs, from the schema read in the transaction
//! (`pgwire::schema_change`).
//!
//! A SERIAL column is SQLite's rowid, which numbers an empty table's rows from 1 again: the
//! identities restart whether or not RESTART IDENTITY is written.

use sqlparser::ast::{CascadeOption, ObjectNamePart, Statement};

/// The tables a TRUNCATE empties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    pub tables: Vec<String>,
    pub cascade: bool,
}

/// The truncation `statement` asks for; `None` for other statements.
pub fn truncate_statement(statement: &Statement) -> Option<Truncation> {
    let Statement::Truncate(truncate) = statement else {
        return None;
    };
    let tables = truncate
        .table_names
        .iter()
        .filter_map(|target| {
            target
                .name
                .0
                .iter()
                .filter_map(ObjectNamePart::as_ident)
                .next_back()
                .map(|ident| ident.value.clone())
        })
        .collect();
    Some(Truncation {
        tables,
        cascade: matches!(truncate.cascade, Some(CascadeOption::Cascade)),
    })
}

/// The tables to empty, in an order that deletes every referencing table's rows before its
/// parent's: `named` (and with `cascade` every table that references one of them, directly or
/// not), given the schema's foreign keys as (referencing, referenced) pairs. A cycle is
/// broken where it is met (SQLite then reports the violated key, and nothing is deleted).
pub fn deletion_order(
    named: &[String],
    references: &[(String, String)],
    cascade: bool,
) -> Vec<String> {
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let mut tables: Vec<String> = Vec::new();
    for table in named {
        if !tables.iter().any(|t| same(t, table)) {
            tables.push(table.clone());
        }
    }
    if cascade {
        let mut grew = true;
        while grew {
            grew = false;
            for (child, parent) in references {
                if tables.iter().any(|t| same(t, parent)) && !tables.iter().any(|t| same(t, child))
                {
                    tables.push(child.clone());
                    grew = true;
                }
            }
        }
    }
    let mut ordered = Vec::with_capacity(tables.len());
    let mut remaining = tables;
    while !remaining.is_empty() {
        // A table no remaining table (other than itself) references goes next.
        let next = remaining
            .iter()
            .position(|table| {
                !references.iter().any(|(child, parent)| {
                    same(parent, table)
                        && !same(child, table)
                        && remaining.iter().any(|t| same(t, child))
                })
            })
            .unwrap_or(0);
        ordered.push(remaining.remove(next));
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn referencing_tables_are_emptied_before_the_tables_they_reference() {
        let references = pairs(&[("book", "author"), ("review", "book"), ("author", "author")]);
        assert_eq!(
            deletion_order(&names(&["author", "book", "review"]), &references, false),
            ["review", "book", "author"]
        );
        // CASCADE brings in the tables referencing a named one.
        assert_eq!(
            deletion_order(&names(&["author"]), &references, true),
            ["review", "book", "author"]
        );
        assert_eq!(
            deletion_order(&names(&["author"]), &references, false),
            ["author"]
        );
    }

    #[test]
    fn truncate_statements_name_their_tables() {
        let statement = crate::pgwire::dialect::parse(
            "TRUNCATE TABLE public.a, \"B\" RESTART IDENTITY CASCADE",
        )
        .and_then(|mut statements| statements.pop())
        .unwrap();
        assert_eq!(
            truncate_statement(&statement),
            Some(Truncation {
                tables: names(&["a", "B"]),
                cascade: true
            })
        );
    }
}
