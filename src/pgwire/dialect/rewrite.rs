//! The rewriting pass: one walk over a parsed PostgreSQL statement that replaces each
//! PostgreSQL-only construct with SQLite's equivalent, notes whether anything changed, and
//! names the first construct it cannot translate.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, CastKind, ColumnOption, CreateIndex, DataType, Distinct, Expr, Ident, Query,
    Select, SelectItem, SetExpr, Statement, TableFactor, Value, ValueWithSpan, VisitorMut,
};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;

use super::Unsupported;
use super::functions;
use super::intervals;
use super::like;
use super::sequences;
use super::types::{is_boolean, is_date, sqlite_cast_type};
use super::unnest;
use crate::pgwire::params::parse_bool;

#[derive(Default)]
pub struct Rewriter {
    /// Something was rewritten: the statement must be printed from the tree.
    pub changed: bool,
    /// The first construct that has no SQLite translation.
    pub unsupported: Option<Unsupported>,
    /// Sequence functions met, in the order of their placeholders.
    pub sequence_calls: Vec<sequences::SequenceCall>,
    /// Intervals added to or subtracted from a time (`ts - interval '1 day'`), by the index
    /// their marker (`interval_marker`) names, with whether they are subtracted.
    interval_shifts: Vec<(crate::pgwire::interval::Interval, bool)>,
    /// Times plus or minus a bound parameter, decided when the statement runs (see
    /// `intervals::IntervalParameter`), by the index their marker names.
    pub interval_parameters: Vec<intervals::IntervalParameter>,
    /// `x = ANY($n)`: the array parameters, with the operand they are compared with (as the
    /// client wrote it), by the index their marker names.
    pub array_parameters: Vec<(usize, String)>,
}

/// The identifier standing for the `index`th interval shift while the other operand is
/// rewritten (identifiers are left alone by the rewrites).
fn interval_marker(index: usize) -> String {
    format!("shoal_interval_shift_{index}")
}

impl Rewriter {
    fn refuse(&mut self, construct: impl Into<String>) -> ControlFlow<()> {
        self.unsupported = Some(Unsupported(construct.into()));
        ControlFlow::Break(())
    }

    fn replace(&mut self, target: &mut Expr, replacement: Expr) {
        *target = replacement;
        self.changed = true;
    }
}

/// An expression printed exactly as `sql` (SQLite text built by this module). sqlparser has
/// no node for raw text; an unquoted identifier prints its value unchanged, and the walk
/// never looks inside a node it already replaced (replacement happens after its children).
pub fn raw(sql: String) -> Expr {
    Expr::Identifier(Ident::new(sql))
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
        match &mut value.value {
            // `$n` is `?n` in SQLite (which numbers `$n` by first appearance instead).
            Value::Placeholder(name)
                if name.len() > 1
                    && name.starts_with('$')
                    && name[1..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                *name = format!("?{}", &name[1..]);
            }
            Value::EscapedStringLiteral(text) => {
                value.value = Value::SingleQuotedString(std::mem::take(text));
                self.changed = true;
            }
            Value::DollarQuotedString(quoted) => {
                value.value = Value::SingleQuotedString(std::mem::take(&mut quoted.value));
                self.changed = true;
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // `x = ANY (ARRAY[…])`, `x = ANY ('{…}'::int[])`: an IN list; `x op ANY ($n)`: the
        // parameter's elements, marked until `x` is rewritten.
        let all = matches!(expr, Expr::AllOp { .. });
        if let Expr::AnyOp {
            left,
            compare_op,
            right,
            ..
        }
        | Expr::AllOp {
            left,
            compare_op,
            right,
        } = expr
        {
            let membership = matches!(
                (all, &*compare_op),
                (false, BinaryOperator::Eq) | (true, BinaryOperator::NotEq)
            );
            if let Some(list) = array_literal(right) {
                if !membership {
                    return self.refuse(
                        "ANY/ALL over an array literal with an operator other than = or <>",
                    );
                }
                let replacement = Expr::In {
                    expr: left.clone(),
                    target: sqlparser::ast::InTarget::List(list),
                    negated: all,
                    global: false,
                };
                self.replace(expr, replacement);
                return ControlFlow::Continue(());
            }
            if let Some(parameter) = array_parameter(right) {
                let marker = raw(format!(
                    "shoal_array_parameter_marker_{}",
                    self.array_parameters.len()
                ));
                self.array_parameters.push((parameter, left.to_string()));
                **right = marker;
                self.changed = true;
            }
            return ControlFlow::Continue(());
        }
        // `TIMESTAMP '2024-01-02 03:04:05'`, `DATE '…'`, `INTERVAL`-typed strings: a cast of
        // the string, which the casts below translate.
        if let Expr::TypedString(typed) = expr {
            let cast = Expr::Cast {
                kind: CastKind::Cast,
                expr: Box::new(Expr::Value(typed.value.clone())),
                data_type: typed.data_type.clone(),
                format: None,
            };
            self.replace(expr, cast);
        }
        // `time ± interval` (or `interval + time`): the interval is read here, before its
        // literal is rewritten, and stands as a marker until the time operand is rewritten.
        if let Expr::BinaryOp {
            left,
            op: op @ (BinaryOperator::Plus | BinaryOperator::Minus),
            right,
        } = expr
        {
            let negate = matches!(op, BinaryOperator::Minus);
            let (interval, on_right) = match (
                intervals::interval_literal(right),
                intervals::interval_literal(left),
            ) {
                (Some(interval), _) => (interval, true),
                (None, Some(interval)) if !negate => (interval, false),
                (None, Some(_)) => return self.refuse("an INTERVAL minus a time"),
                (None, None) => {
                    // `time ± $n`: the parameter may be an interval (decided when it runs).
                    if let Some(parameter) = parameter_number(right) {
                        let marker = raw(format!(
                            "shoal_interval_parameter_marker_{}",
                            self.interval_parameters.len()
                        ));
                        self.interval_parameters.push(intervals::IntervalParameter {
                            parameter,
                            negate,
                            time: String::new(),
                        });
                        **right = marker;
                        self.changed = true;
                    }
                    return ControlFlow::Continue(());
                }
            };
            let interval = match interval {
                Ok(interval) => interval,
                Err(unsupported) => return self.refuse(unsupported.0),
            };
            let marker = raw(interval_marker(self.interval_shifts.len()));
            self.interval_shifts.push((interval, negate));
            if on_right {
                **right = marker;
            } else {
                **left = marker;
            }
            self.changed = true;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let all_op = matches!(expr, Expr::AllOp { .. });
        if let Some(interval) = intervals::interval_literal(expr) {
            // An interval on its own: PostgreSQL's text for it.
            return match interval {
                Ok(interval) => {
                    let text = interval.format();
                    self.replace(expr, raw(format!("'{text}'")));
                    ControlFlow::Continue(())
                }
                Err(unsupported) => self.refuse(unsupported.0),
            };
        }
        let shift = match &*expr {
            Expr::BinaryOp { left, right, .. } => [(&**right, &**left), (&**left, &**right)]
                .into_iter()
                .find_map(|(marker, time)| {
                    let Expr::Identifier(ident) = marker else {
                        return None;
                    };
                    let index = ident.value.strip_prefix("shoal_interval_shift_")?;
                    Some((index.parse::<usize>().ok()?, time.to_string()))
                }),
            _ => None,
        };
        if let Some((index, time)) = shift
            && let Some((interval, negate)) = self.interval_shifts.get(index).copied()
        {
            let replacement = raw(intervals::shifted(&time, &interval, negate));
            self.replace(expr, replacement);
            return ControlFlow::Continue(());
        }
        if let Expr::BinaryOp { left, right, .. } = &*expr
            && let Expr::Identifier(marker) = right.as_ref()
            && let Some(index) = marker
                .value
                .strip_prefix("shoal_interval_parameter_marker_")
                .and_then(|index| index.parse::<usize>().ok())
            && let Some(parameter) = self.interval_parameters.get_mut(index)
        {
            parameter.time = left.to_string();
            let replacement = raw(intervals::IntervalParameter::placeholder(index));
            self.replace(expr, replacement);
            return ControlFlow::Continue(());
        }
        match expr {
            Expr::Cast {
                kind: kind @ (CastKind::Cast | CastKind::DoubleColon),
                expr: operand,
                data_type,
                format: None,
            } => {
                if is_boolean(data_type)
                    && let Expr::Value(ValueWithSpan {
                        value: Value::SingleQuotedString(text),
                        ..
                    }) = operand.as_ref()
                {
                    let Some(truth) = parse_bool(text) else {
                        return self.refuse(format!("the boolean literal '{text}'"));
                    };
                    let replacement = raw(if truth { "1" } else { "0" }.to_string());
                    self.replace(expr, replacement);
                } else if let Some(bytes) = bytea_literal(operand, data_type) {
                    // `'\x0001'::bytea` (psycopg2 and pg8000 inline binary values so): the bytes,
                    // as a blob literal.
                    let Some(bytes) = bytes else {
                        return self
                            .refuse("a bytea literal that is neither hex nor escape format");
                    };
                    let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
                    self.replace(expr, raw(format!("X'{hex}'")));
                } else if is_date(data_type) {
                    // The date of a timestamp (`now()::date`), as PostgreSQL casts it; text
                    // that is not a time stays as it is.
                    let operand = operand.to_string();
                    let replacement = raw(format!(
                        "coalesce(date({}), CAST({operand} AS TEXT))",
                        intervals::time_value(&operand)
                    ));
                    self.replace(expr, replacement);
                } else {
                    *kind = CastKind::Cast;
                    *data_type = sqlite_cast_type(data_type);
                    self.changed = true;
                }
            }
            Expr::ILike {
                negated,
                any,
                expr: operand,
                pattern,
                escape_char,
            } => {
                // SQLite's LIKE ignores the case of ASCII letters: PostgreSQL's ILIKE.
                let replacement = Expr::Like {
                    negated: *negated,
                    any: *any,
                    expr: operand.clone(),
                    pattern: pattern.clone(),
                    escape_char: escape_char.clone(),
                };
                self.replace(expr, replacement);
            }
            Expr::Like {
                negated,
                any: false,
                expr: operand,
                pattern,
                escape_char,
            } => {
                // PostgreSQL's LIKE is case-sensitive: SQLite's GLOB.
                let escape = match escape_char.as_deref() {
                    None => Some('\\'),
                    Some(escape) => match string_literal(escape).map(|e| {
                        let mut chars = e.chars();
                        (chars.next(), chars.next())
                    }) {
                        Some((Some(c), None)) => Some(c),
                        Some((None, None)) => None,
                        _ => return self.refuse("a LIKE … ESCAPE other than one character"),
                    },
                };
                let literal = string_literal(pattern);
                let Some(replacement) = like::case_sensitive(
                    &operand.to_string(),
                    &pattern.to_string(),
                    literal.as_deref(),
                    escape,
                    *negated,
                ) else {
                    return self.refuse("a LIKE pattern ending in its escape character");
                };
                self.replace(expr, raw(replacement));
            }
            Expr::BinaryOp {
                left,
                op: op @ (BinaryOperator::PGLikeMatch | BinaryOperator::PGNotLikeMatch),
                right,
            } => {
                let negated = matches!(op, BinaryOperator::PGNotLikeMatch);
                let literal = string_literal(right);
                let Some(replacement) = like::case_sensitive(
                    &left.to_string(),
                    &right.to_string(),
                    literal.as_deref(),
                    Some('\\'),
                    negated,
                ) else {
                    return self.refuse("a LIKE pattern ending in its escape character");
                };
                self.replace(expr, raw(replacement));
            }
            Expr::BinaryOp { left, op, right } => {
                let negated = match op {
                    BinaryOperator::PGILikeMatch => false,
                    BinaryOperator::PGNotILikeMatch => true,
                    BinaryOperator::PGRegexMatch
                    | BinaryOperator::PGRegexIMatch
                    | BinaryOperator::PGRegexNotMatch
                    | BinaryOperator::PGRegexNotIMatch => {
                        return self.refuse(format!("the regular expression operator {op}"));
                    }
                    _ => return ControlFlow::Continue(()),
                };
                let replacement = Expr::Like {
                    negated,
                    any: false,
                    expr: left.clone(),
                    pattern: right.clone(),
                    escape_char: None,
                };
                self.replace(expr, replacement);
            }
            Expr::Substring {
                expr: operand,
                substring_from,
                substring_for,
                ..
            } => {
                let from = substring_from
                    .as_ref()
                    .map_or_else(|| "1".to_string(), |e| e.to_string());
                let replacement = match substring_for {
                    Some(length) => raw(format!("substr({operand}, {from}, {length})")),
                    None => raw(format!("substr({operand}, {from})")),
                };
                self.replace(expr, replacement);
            }
            Expr::Position {
                expr: needle,
                r#in: haystack,
            } => {
                let replacement = raw(format!("instr({haystack}, {needle})"));
                self.replace(expr, replacement);
            }
            Expr::Extract {
                field,
                expr: operand,
                ..
            } => {
                let field = field.to_string().to_ascii_lowercase();
                let Some(replacement) = functions::extract(&field, &operand.to_string()) else {
                    return self.refuse(format!("EXTRACT({} FROM …)", field.to_uppercase()));
                };
                self.replace(expr, raw(replacement));
            }
            Expr::Function(function) if let Some(call) = sequences::sequence_function(function) => {
                match call {
                    Ok(sequences::Rewritten::Call(call)) => {
                        let placeholder = sequences::placeholder(self.sequence_calls.len());
                        self.sequence_calls.push(call);
                        self.replace(expr, raw(placeholder));
                    }
                    Ok(sequences::Rewritten::Expression(value)) => {
                        *expr = *value;
                        self.changed = true;
                    }
                    Err(construct) => return self.refuse(construct.0),
                }
            }
            Expr::Function(function) => match functions::translate(function) {
                Ok(Some(replacement)) => self.replace(expr, raw(replacement)),
                Ok(None) => {}
                Err(construct) => return self.refuse(construct),
            },
            Expr::Interval(_) => return self.refuse("an INTERVAL value that is not a literal"),
            Expr::Array(_) => return self.refuse("an ARRAY constructor"),
            Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            }
            | Expr::AllOp {
                left,
                compare_op,
                right,
            } => {
                let all = all_op;
                let Some(parameter) = array_marker(right)
                    .and_then(|index| self.array_parameters.get(index))
                    .map(|(parameter, _)| *parameter)
                else {
                    return self.refuse("ANY/ALL over an array other than a literal or parameter");
                };
                // (The operand stays outside the subqueries: inside, a column named like one
                // of json_each's — `id`, `key`, `value` — would be json_each's.)
                let elements = format!("json_each(?{parameter})");
                let least = format!("(SELECT min(value) FROM {elements})");
                let greatest = format!("(SELECT max(value) FROM {elements})");
                let empty = format!("NOT EXISTS (SELECT 1 FROM {elements})");
                let replacement = match (all, &*compare_op) {
                    (false, BinaryOperator::Eq) => {
                        format!("{left} IN (SELECT value FROM {elements})")
                    }
                    (true, BinaryOperator::NotEq) => {
                        format!("{left} NOT IN (SELECT value FROM {elements})")
                    }
                    (false, op @ (BinaryOperator::Gt | BinaryOperator::GtEq)) => {
                        format!("({left}) {op} {least}")
                    }
                    (false, op @ (BinaryOperator::Lt | BinaryOperator::LtEq)) => {
                        format!("({left}) {op} {greatest}")
                    }
                    (true, op @ (BinaryOperator::Gt | BinaryOperator::GtEq)) => {
                        format!("(({left}) {op} {greatest} OR {empty})")
                    }
                    (true, op @ (BinaryOperator::Lt | BinaryOperator::LtEq)) => {
                        format!("(({left}) {op} {least} OR {empty})")
                    }
                    (_, op) => {
                        return self.refuse(format!(
                            "{} {op} {} over an array",
                            "x",
                            if all { "ALL" } else { "ANY" }
                        ));
                    }
                };
                self.replace(expr, raw(replacement));
            }
            Expr::AtTimeZone { .. } => return self.refuse("AT TIME ZONE"),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        // SQLite names a result column by its text (`count(*)`); PostgreSQL by the function,
        // or the column a cast converts (`count`, `x` for `x::int`). Clients key rows by name.
        for item in &mut select.projection {
            if let SelectItem::UnnamedExpr(expr) = item
                && let Some(name) = postgresql_column_name(expr)
            {
                *item = SelectItem::ExprWithAlias {
                    expr: std::mem::replace(expr, Expr::value(Value::Null)),
                    alias: Ident::with_quote('"', name),
                };
                self.changed = true;
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        if let Some(Distinct::On(_)) = select.distinct {
            return self.refuse("SELECT DISTINCT ON");
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        // Row locks: Shoal's transactions are serializable, so FOR UPDATE/SHARE lock nothing
        // more than the transaction already holds.
        if !query.locks.is_empty() {
            query.locks.clear();
            self.changed = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        // (Before the walk reaches the arrays inside, which it would refuse.)
        match unnest::unnest_as_values(factor) {
            Some(Ok(values)) => {
                *factor = values;
                self.changed = true;
            }
            Some(Err(construct)) => return self.refuse(construct),
            None => {}
        }
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Derived {
            subquery, alias, ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let Some(alias) = alias.as_mut().filter(|a| !a.columns.is_empty()) else {
            return ControlFlow::Continue(());
        };
        // `(VALUES …) AS t(a, b)`: SQLite names a VALUES list's columns column1, column2, …
        // and has no column aliases on a derived table, so they are given in a SELECT.
        if !matches!(subquery.body.as_ref(), SetExpr::Values(_)) {
            return self.refuse("column aliases on a derived table (other than VALUES)");
        }
        let projection: Vec<String> = alias
            .columns
            .iter()
            .enumerate()
            .map(|(i, column)| format!("column{} AS {}", i + 1, column.name))
            .collect();
        let template = format!("SELECT {} FROM (VALUES (1))", projection.join(", "));
        let Ok(mut select) = Parser::new(&SQLiteDialect {})
            .try_with_sql(&template)
            .and_then(|mut parser| parser.parse_query())
        else {
            return self.refuse("these column aliases on a VALUES list");
        };
        if let SetExpr::Select(body) = select.body.as_mut()
            && let Some(TableFactor::Derived {
                subquery: inner, ..
            }) = body.from.first_mut().map(|from| &mut from.relation)
        {
            std::mem::swap(inner, subquery);
            *subquery = select;
            alias.columns.clear();
            self.changed = true;
            return ControlFlow::Continue(());
        }
        self.refuse("these column aliases on a VALUES list")
    }

    fn post_visit_statement(&mut self, statement: &mut Statement) -> ControlFlow<()> {
        // `INSERT … SELECT … FROM x ON CONFLICT`: SQLite would read ON as a join constraint of
        // x; a WHERE clause ends the FROM (SQLite's documented remedy).
        if let Statement::Insert(insert) = statement
            && insert.on.is_some()
            && let Some(source) = insert.source.as_mut()
            && source.order_by.is_none()
            && source.limit_clause.is_none()
            && let SetExpr::Select(select) = source.body.as_mut()
            && !select.from.is_empty()
            && select.selection.is_none()
        {
            select.selection = Some(Expr::Value(Value::Boolean(true).into()));
            self.changed = true;
        }
        if let Statement::Insert(insert) = statement
            && let Some(source) = insert.source.as_mut()
            && let SetExpr::Values(values) = source.body.as_mut()
        {
            match without_default_values(&mut insert.columns, &mut values.rows) {
                Ok(true) => self.changed = true,
                Ok(false) => {}
                Err(construct) => return self.refuse(construct),
            }
        }
        // `DROP TABLE … CASCADE`: SQLite drops no dependent objects and has no such word (a
        // view naming the table stays and fails when read; other tables' foreign keys stay).
        if let Statement::Drop {
            cascade, restrict, ..
        } = statement
            && (*cascade || *restrict)
        {
            *cascade = false;
            *restrict = false;
            self.changed = true;
        }
        if let Statement::CreateTable(table) = statement {
            for column in &mut table.columns {
                // SERIAL and IDENTITY columns number rows: an INTEGER (with PRIMARY KEY,
                // SQLite's rowid, which it assigns).
                let serial = matches!(
                    column.data_type.to_string().to_ascii_lowercase().as_str(),
                    "smallserial" | "serial" | "bigserial" | "serial2" | "serial4" | "serial8"
                );
                let options = column.options.len();
                column.options.retain(|option| {
                    !matches!(
                        option.option,
                        ColumnOption::Generated {
                            generation_expr: None,
                            ..
                        }
                    )
                });
                if serial || column.options.len() != options {
                    column.data_type = DataType::Integer(None);
                    self.changed = true;
                }
            }
        }
        if let Statement::CreateIndex(CreateIndex {
            concurrently,
            using,
            columns,
            ..
        }) = statement
        {
            // Operator classes (`varchar_pattern_ops`, Django's LIKE indexes) choose how
            // PostgreSQL compares; SQLite's index compares by the column's collation.
            for column in columns.iter_mut() {
                if column.operator_class.take().is_some() {
                    self.changed = true;
                }
            }
            // SQLite builds an index in one step; btree is its only kind.
            if *concurrently {
                *concurrently = false;
                self.changed = true;
            }
            if using
                .as_ref()
                .is_some_and(|u| u.to_string().eq_ignore_ascii_case("btree"))
            {
                *using = None;
                self.changed = true;
            }
        }
        ControlFlow::Continue(())
    }
}

/// `INSERT … VALUES (…, DEFAULT, …)`: SQLite has no DEFAULT in VALUES; a column every row
/// leaves to its default is left out of the column list instead (the same rows result). Whether
/// anything was left out; `Err` names what cannot be written so.
fn without_default_values(
    columns: &mut Vec<sqlparser::ast::ObjectName>,
    rows: &mut [sqlparser::ast::Parens<Vec<Expr>>],
) -> Result<bool, &'static str> {
    let is_default = super::defaults::is_default;
    let pattern = |row: &[Expr]| row.iter().map(is_default).collect::<Vec<bool>>();
    let Some(first) = rows.first().map(|row| pattern(&row.content)) else {
        return Ok(false);
    };
    if !first.contains(&true) && rows.iter().all(|row| !row.content.iter().any(is_default)) {
        return Ok(false);
    }
    if columns.is_empty() || columns.len() != first.len() {
        return Err("DEFAULT in VALUES without a column list naming every value");
    }
    if rows.iter().any(|row| pattern(&row.content) != first) {
        return Err(
            "DEFAULT in a multi-row VALUES list whose rows leave different columns to their \
             defaults (insert those rows separately)",
        );
    }
    if first.iter().all(|default| *default) {
        return Err("VALUES of DEFAULT only (write INSERT … DEFAULT VALUES)");
    }
    let mut keep = first.iter().map(|default| !default);
    columns.retain(|_| keep.next().unwrap_or(true));
    for row in rows.iter_mut() {
        let mut keep = first.iter().map(|default| !default);
        row.content.retain(|_| keep.next().unwrap_or(true));
    }
    Ok(true)
}

/// The name PostgreSQL gives a result column computed by a function call or cast (`count(*)` is
/// "count", `now()` is "now", `x::int` is "x"); `None` for expressions named as SQLite names
/// them.
fn postgresql_column_name(expr: &Expr) -> Option<String> {
    match expr {
        // (Shoal's own functions, `shoal_distribute(…)` and the like, are recognised by their
        // text: they stay as written.)
        Expr::Function(function) => function
            .name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .map(|ident| ident.value.to_ascii_lowercase())
            .filter(|name| !name.starts_with("shoal_")),
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr: inner,
            data_type,
            ..
        } => match inner.as_ref() {
            Expr::Identifier(ident) => Some(ident.value.clone()),
            Expr::CompoundIdentifier(parts) => parts.last().map(|p| p.value.clone()),
            // `now()::date` is "now".
            Expr::Function(_) => postgresql_column_name(inner),
            // `'2024-01-02'::date` is "date": a literal is named by its type.
            Expr::Value(_) => type_column_name(data_type),
            _ => None,
        },
        Expr::TypedString(typed) => type_column_name(&typed.data_type),
        Expr::Interval(_) => Some("interval".into()),
        Expr::Substring { .. } => Some("substring".into()),
        Expr::Position { .. } => Some("position".into()),
        Expr::Extract { .. } => Some("extract".into()),
        _ => None,
    }
}

/// The bytes a string literal cast to bytea holds (`None` inside when it is not PostgreSQL's
/// bytea text); `None` for other casts.
fn bytea_literal(operand: &Expr, data_type: &DataType) -> Option<Option<Vec<u8>>> {
    if !data_type.to_string().eq_ignore_ascii_case("bytea") {
        return None;
    }
    let text = string_literal(operand)?;
    Some(crate::pgwire::params::parse_bytea(&text))
}

/// The elements of an array literal (`ARRAY[1, 2]`, `'{1,2}'::int[]`), as expressions.
fn array_literal(expr: &Expr) -> Option<Vec<Expr>> {
    match expr {
        Expr::Array(array) => Some(array.elem.clone()),
        Expr::Nested(inner) => array_literal(inner),
        Expr::Cast {
            expr: inner,
            data_type,
            ..
        } if data_type.to_string().ends_with("[]") => {
            let text = string_literal(inner)?;
            let inner_text = text.trim().strip_prefix('{')?.strip_suffix('}')?;
            if inner_text.trim_start().starts_with('{') {
                return None;
            }
            let numeric = matches!(
                sqlite_cast_type(data_type),
                DataType::Integer(_) | DataType::Real | DataType::Numeric(_)
            );
            let elements = if inner_text.trim().is_empty() {
                Vec::new()
            } else {
                crate::pgwire::types::array_elements(inner_text, 100_000)
            };
            Some(
                elements
                    .into_iter()
                    .map(|element| match element {
                        None => Expr::value(Value::Null),
                        Some(text) if numeric && text.parse::<f64>().is_ok() => {
                            Expr::value(Value::Number(text, false))
                        }
                        Some(text) => Expr::value(Value::SingleQuotedString(text)),
                    })
                    .collect(),
            )
        }
        _ => None,
    }
}

/// The parameter an array operand is (`$1`, `$1::int[]`).
fn array_parameter(expr: &Expr) -> Option<usize> {
    match expr {
        Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => array_parameter(inner),
        other => parameter_number(other),
    }
}

/// The index an array-parameter marker names.
fn array_marker(expr: &Expr) -> Option<usize> {
    match expr {
        Expr::Identifier(ident) => ident
            .value
            .strip_prefix("shoal_array_parameter_marker_")?
            .parse()
            .ok(),
        _ => None,
    }
}

/// The number of a bound parameter (`$3`, or `?3` once rewritten).
fn parameter_number(expr: &Expr) -> Option<usize> {
    match expr {
        Expr::Value(ValueWithSpan {
            value: Value::Placeholder(name),
            ..
        }) => name
            .strip_prefix('$')
            .or_else(|| name.strip_prefix('?'))?
            .parse()
            .ok(),
        _ => None,
    }
}

/// The name PostgreSQL gives a literal cast to `data_type` (its type's internal name).
fn type_column_name(data_type: &DataType) -> Option<String> {
    let name = data_type.to_string().to_ascii_lowercase();
    let base = name.split('(').next().unwrap_or_default().trim();
    Some(
        match base {
            "date" => "date",
            "time" | "time without time zone" => "time",
            "timestamp" | "timestamp without time zone" => "timestamp",
            "timestamptz" | "timestamp with time zone" => "timestamptz",
            "interval" => "interval",
            "int" | "integer" | "int4" => "int4",
            "bigint" | "int8" => "int8",
            "smallint" | "int2" => "int2",
            "text" => "text",
            "varchar" | "character varying" => "varchar",
            "numeric" | "decimal" => "numeric",
            "bool" | "boolean" => "bool",
            "uuid" => "uuid",
            "bytea" => "bytea",
            "json" => "json",
            "jsonb" => "jsonb",
            "real" | "float4" => "float4",
            "double precision" | "float8" => "float8",
            _ => return None,
        }
        .to_string(),
    )
}

/// The value of a string literal.
fn string_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(text),
            ..
        }) => Some(text.clone()),
        _ => None,
    }
}
