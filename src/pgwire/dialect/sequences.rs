//! PostgreSQL sequences over SQLite. A sequence is a one-row table `shoal_sequence_<name>`
//! (replicated, backed up and restored with the database; shown by the catalogs as the
//! sequence, relkind 'S'): CREATE/DROP SEQUENCE make and drop it, and `nextval`, `currval`,
//! `setval` and `lastval` in a statement are evaluated before the statement runs (see
//! `pgwire::sequences`), each call standing in the statement's text as a placeholder
//! `shoal_sequence_call(k)` the value replaces.
//!
//! A `SERIAL` column is SQLite's rowid, which needs no sequence: `pg_get_serial_sequence`
//! names `<table>_<column>_seq` for it as PostgreSQL does, and `setval` of that sequence
//! (Django's and Rails' sequence resets, always to the table's largest id or 1) answers its
//! value and changes nothing — the rowid already continues after the largest id.

use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, ObjectNamePart,
    ObjectType, SequenceOptions, SetExpr, Statement, UnaryOperator, Value, ValueWithSpan,
};

use super::Unsupported;
use super::alter::AlterPlan;
use crate::db::dump::quote_identifier;

/// The tables holding sequences are named this, then the sequence's name.
pub const SEQUENCE_TABLE_PREFIX: &str = "shoal_sequence_";

/// The function standing for a sequence call in a translated statement.
pub const PLACEHOLDER_FUNCTION: &str = "shoal_sequence_call";

/// A sequence function called by a statement, evaluated before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceCall {
    /// `nextval('s')`: advances the sequence (a write of its own, never rolled back).
    Next(String),
    /// `currval('s')`: the value `nextval` last gave this session.
    Current(String),
    /// `lastval()`: the value `nextval` last gave this session, of any sequence.
    Last,
    /// `setval('s', value[, is_called])`.
    Set {
        sequence: String,
        value: i64,
        is_called: bool,
    },
}

/// The table a sequence is kept in.
pub fn sequence_table(sequence: &str) -> String {
    format!("{SEQUENCE_TABLE_PREFIX}{sequence}")
}

/// The placeholder text of the `index`th call of a statement.
pub fn placeholder(index: usize) -> String {
    format!("{PLACEHOLDER_FUNCTION}({index})")
}

/// A sequence's bounds and step, as CREATE SEQUENCE gives them (PostgreSQL's defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Definition {
    increment: i64,
    min: i64,
    max: i64,
    start: i64,
    cycle: bool,
}

/// CREATE SEQUENCE and DROP SEQUENCE as statements run in one transaction; `None` for other
/// statements.
pub fn sequence_statement(statement: &Statement) -> Option<Result<AlterPlan, Unsupported>> {
    match statement {
        Statement::CreateSequence {
            temporary,
            if_not_exists,
            name,
            sequence_options,
        } => Some(if *temporary {
            Err(Unsupported("CREATE TEMPORARY SEQUENCE".into()))
        } else {
            create(name, *if_not_exists, sequence_options)
        }),
        Statement::Drop {
            object_type: ObjectType::Sequence,
            if_exists,
            names,
            ..
        } => Some(drop(names, *if_exists)),
        _ => None,
    }
}

fn create(
    name: &ObjectName,
    if_not_exists: bool,
    options: &[SequenceOptions],
) -> Result<AlterPlan, Unsupported> {
    let sequence = object_name(name)?;
    let definition = definition(options)?;
    let table = quote_identifier(&sequence_table(&sequence));
    let Definition {
        increment,
        min,
        max,
        start,
        cycle,
    } = definition;
    let native = vec![
        format!(
            "CREATE TABLE {exists}{table} (last_value INTEGER NOT NULL, is_called INTEGER NOT NULL, \
             increment_by INTEGER NOT NULL, min_value INTEGER NOT NULL, \
             max_value INTEGER NOT NULL, start_value INTEGER NOT NULL, cycle INTEGER NOT NULL, \
             CONSTRAINT shoal_sequence_bounds CHECK (last_value BETWEEN min_value AND max_value))",
            exists = if if_not_exists { "IF NOT EXISTS " } else { "" },
        ),
        format!(
            "INSERT INTO {table} SELECT {start}, 0, {increment}, {min}, {max}, {start}, {} \
             WHERE NOT EXISTS (SELECT 1 FROM {table})",
            i64::from(cycle)
        ),
    ];
    Ok(plan(&sequence, native))
}

fn drop(names: &[ObjectName], if_exists: bool) -> Result<AlterPlan, Unsupported> {
    let mut native = Vec::with_capacity(names.len());
    let mut first = None;
    for name in names {
        let sequence = object_name(name)?;
        native.push(format!(
            "DROP TABLE {}{}",
            if if_exists { "IF EXISTS " } else { "" },
            quote_identifier(&sequence_table(&sequence))
        ));
        first.get_or_insert(sequence);
    }
    Ok(plan(&first.unwrap_or_default(), native))
}

fn plan(sequence: &str, native: Vec<String>) -> AlterPlan {
    AlterPlan::statements(sequence_table(sequence), native)
}

fn definition(options: &[SequenceOptions]) -> Result<Definition, Unsupported> {
    let mut increment = 1;
    let mut type_max = i64::MAX;
    let (mut min, mut max, mut start, mut cycle) = (None, None, None, false);
    for option in options {
        match option {
            SequenceOptions::IncrementBy(expr, _) => increment = integer(expr)?,
            SequenceOptions::MinValue(value) => min = value.as_ref().map(integer).transpose()?,
            SequenceOptions::MaxValue(value) => max = value.as_ref().map(integer).transpose()?,
            SequenceOptions::StartWith(expr, _) => start = Some(integer(expr)?),
            // The cache is per session in PostgreSQL; values here come from the log.
            SequenceOptions::Cache(_) => {}
            // Ownership makes DROP TABLE drop the sequence in PostgreSQL; the sequence here
            // stays until DROP SEQUENCE.
            SequenceOptions::OwnedBy(_) => {}
            SequenceOptions::Cycle(no) => cycle = !*no,
            SequenceOptions::DataType(data_type) => {
                type_max = match data_type.to_string().to_ascii_lowercase().as_str() {
                    "smallint" | "int2" => i64::from(i16::MAX),
                    "integer" | "int" | "int4" => i64::from(i32::MAX),
                    "bigint" | "int8" => i64::MAX,
                    other => return Err(Unsupported(format!("a sequence of type {other}"))),
                }
            }
        }
    }
    if increment == 0 {
        return Err(Unsupported("INCREMENT 0 (a sequence must move)".into()));
    }
    let ascending = increment > 0;
    let min = min.unwrap_or(if ascending { 1 } else { -type_max - 1 });
    let max = max.unwrap_or(if ascending { type_max } else { -1 });
    let start = start.unwrap_or(if ascending { min } else { max });
    if min >= max || start < min || start > max {
        return Err(Unsupported(format!(
            "a sequence starting at {start} within MINVALUE {min} and MAXVALUE {max}"
        )));
    }
    Ok(Definition {
        increment,
        min,
        max,
        start,
        cycle,
    })
}

/// An integer literal (possibly negative).
fn integer(expr: &Expr) -> Result<i64, Unsupported> {
    match expr {
        Expr::Value(ValueWithSpan {
            value: Value::Number(text, _),
            ..
        }) => text
            .parse()
            .map_err(|_| Unsupported(format!("the sequence value {text}"))),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => integer(expr).map(|value| -value),
        other => Err(Unsupported(format!("the sequence option value {other}"))),
    }
}

/// A sequence's name as PostgreSQL resolves it: the last part, folded to lower case unless
/// quoted.
fn object_name(name: &ObjectName) -> Result<String, Unsupported> {
    name.0
        .iter()
        .filter_map(ObjectNamePart::as_ident)
        .next_back()
        .map(|ident| {
            if ident.quote_style.is_some() {
                ident.value.clone()
            } else {
                ident.value.to_lowercase()
            }
        })
        .ok_or_else(|| Unsupported(format!("the sequence name {name}")))
}

/// An object named in text (`'s'`, `'public.s'`, `'"S"'`, as `nextval` takes a sequence and
/// `::regclass` a relation): its last part, folded to lower case unless quoted.
pub fn sequence_name_in_text(text: &str) -> String {
    let mut last = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                last.push('"');
                chars.next();
            }
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => {
                last.clear();
                was_quoted = false;
            }
            c => last.push(c),
        }
    }
    if was_quoted {
        last
    } else {
        last.to_lowercase()
    }
}

/// What a sequence function call in a statement becomes: a call to evaluate before the
/// statement runs, an expression that replaces it (`setval` of a SERIAL column's sequence),
/// or `None` for other functions.
pub enum Rewritten {
    Call(SequenceCall),
    Expression(Box<Expr>),
}

pub fn sequence_function(function: &Function) -> Option<Result<Rewritten, Unsupported>> {
    let name = function.name.to_string().to_ascii_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    if !matches!(name, "nextval" | "currval" | "setval" | "lastval") {
        return None;
    }
    let arguments: Vec<&Expr> = match &function.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|argument| match argument {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(expr),
                _ => None,
            })
            .collect(),
        FunctionArguments::None => Vec::new(),
        FunctionArguments::Subquery(_) => return Some(Err(Unsupported(format!("{name}()")))),
    };
    Some(match (name, arguments.as_slice()) {
        ("lastval", []) => Ok(Rewritten::Call(SequenceCall::Last)),
        ("nextval", [sequence]) => {
            named(sequence, name).map(|s| Rewritten::Call(SequenceCall::Next(s)))
        }
        ("currval", [sequence]) => {
            named(sequence, name).map(|s| Rewritten::Call(SequenceCall::Current(s)))
        }
        ("setval", [sequence, value, rest @ ..]) if rest.len() <= 1 => {
            if is_serial_sequence(sequence) {
                // A SERIAL column's sequence is the rowid: nothing to set.
                return Some(Ok(Rewritten::Expression(Box::new((*value).clone()))));
            }
            let is_called = match rest.first() {
                None => Ok(true),
                Some(expr) => boolean(expr),
            };
            named(sequence, name).and_then(|sequence| {
                Ok(Rewritten::Call(SequenceCall::Set {
                    sequence,
                    value: integer(value).map_err(|_| {
                        Unsupported("setval() with a value other than an integer literal".into())
                    })?,
                    is_called: is_called?,
                }))
            })
        }
        _ => Err(Unsupported(format!("{name}() with these arguments"))),
    })
}

/// `pg_get_serial_sequence(…)` as a sequence argument.
fn is_serial_sequence(expr: &Expr) -> bool {
    match expr {
        Expr::Function(function) => function
            .name
            .to_string()
            .to_ascii_lowercase()
            .ends_with("pg_get_serial_sequence"),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => is_serial_sequence(expr),
        _ => false,
    }
}

/// The sequence a literal argument names (`'s'`, `'s'::regclass`).
fn named(expr: &Expr, function: &str) -> Result<String, Unsupported> {
    match expr {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(text),
            ..
        }) => Ok(sequence_name_in_text(text)),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => named(expr, function),
        _ => Err(Unsupported(format!(
            "{function}() of a sequence named by anything but a literal"
        ))),
    }
}

fn boolean(expr: &Expr) -> Result<bool, Unsupported> {
    match expr {
        Expr::Value(ValueWithSpan {
            value: Value::Boolean(value),
            ..
        }) => Ok(*value),
        _ => Err(Unsupported(
            "setval()'s is_called other than true or false".into(),
        )),
    }
}

/// Whether `statement` evaluates its expressions once (INSERT … VALUES, SELECT without FROM):
/// the only places `nextval` may be taken before the statement runs without changing what it
/// means (elsewhere PostgreSQL evaluates it once per row).
pub fn evaluates_once(statement: &Statement) -> bool {
    match statement {
        Statement::Insert(insert) => insert
            .source
            .as_ref()
            .is_some_and(|query| matches!(query.body.as_ref(), SetExpr::Values(_))),
        Statement::Query(query) => match query.body.as_ref() {
            SetExpr::Select(select) => select.from.is_empty(),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> Statement {
        crate::pgwire::dialect::parse(sql)
            .and_then(|mut statements| statements.pop())
            .expect("parsed")
    }

    #[test]
    fn create_sequence_makes_its_table_with_postgresql_defaults() {
        let plan = sequence_statement(&parsed("CREATE SEQUENCE Orders_Seq"))
            .unwrap()
            .unwrap();
        assert_eq!(plan.table_name, "shoal_sequence_orders_seq");
        assert!(plan.native[0].starts_with("CREATE TABLE \"shoal_sequence_orders_seq\""));
        assert!(
            plan.native[1].contains(&format!("SELECT 1, 0, 1, 1, {}, 1, 0", i64::MAX)),
            "{}",
            plan.native[1]
        );
        let plan = sequence_statement(&parsed(
            "CREATE SEQUENCE IF NOT EXISTS s AS integer INCREMENT BY -2 MAXVALUE 10 CYCLE",
        ))
        .unwrap()
        .unwrap();
        assert!(plan.native[0].starts_with("CREATE TABLE IF NOT EXISTS"));
        assert!(
            plan.native[1].contains("SELECT 10, 0, -2, -2147483648, 10, 10, 1"),
            "{}",
            plan.native[1]
        );
        for refused in [
            "CREATE SEQUENCE s INCREMENT 0",
            "CREATE SEQUENCE s START 0",
            "CREATE TEMPORARY SEQUENCE s",
        ] {
            assert!(
                sequence_statement(&parsed(refused)).unwrap().is_err(),
                "{refused}"
            );
        }
    }

    #[test]
    fn drop_sequence_drops_each_table() {
        let plan = sequence_statement(&parsed("DROP SEQUENCE IF EXISTS a, public.b CASCADE"))
            .unwrap()
            .unwrap();
        assert_eq!(
            plan.native,
            [
                "DROP TABLE IF EXISTS \"shoal_sequence_a\"",
                "DROP TABLE IF EXISTS \"shoal_sequence_b\""
            ]
        );
    }

    #[test]
    fn sequence_names_in_text_resolve_as_postgresql_does() {
        assert_eq!(sequence_name_in_text("Orders_Seq"), "orders_seq");
        assert_eq!(sequence_name_in_text("public.s"), "s");
        assert_eq!(sequence_name_in_text("\"public\".\"My.Seq\""), "My.Seq");
    }

    #[test]
    fn nextval_is_taken_only_where_the_statement_evaluates_once() {
        assert!(evaluates_once(&parsed("SELECT nextval('s')")));
        assert!(evaluates_once(&parsed(
            "INSERT INTO t (id, x) VALUES (nextval('s'), 1)"
        )));
        assert!(!evaluates_once(&parsed("SELECT nextval('s') FROM t")));
        assert!(!evaluates_once(&parsed("UPDATE t SET id = nextval('s')")));
        assert!(!evaluates_once(&parsed(
            "INSERT INTO t (id) SELECT nextval('s') FROM u"
        )));
    }
}
