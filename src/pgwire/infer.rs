//! Types SQLite cannot report but PostgreSQL clients need before they bind or read: the type of
//! each parameter, from the column it is compared with, assigned to or inserted into, and the
//! type of result columns that are expressions (`count(*)`, `CAST(x AS REAL)`, `max(price)`).
//! Both come back as SQLite declared-type names (`"INTEGER"`), or `None` where the statement
//! does not say; callers then fall back to text. A light tokenizer is enough: nothing here
//! decides what runs, only how values are labelled.

use std::collections::BTreeMap;

use crate::pgwire::types::PgType;

/// The columns (name, declared type) of the tables a statement names.
pub type Tables = [(String, Vec<(String, Option<String>)>)];

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// An identifier or keyword, lower-cased (quotes removed).
    Word(String),
    /// `?N` (1-based; a bare `?` takes the next number).
    Param(usize),
    Number {
        real: bool,
    },
    Text,
    Symbol(&'static str),
}

const SYMBOLS: &[&str] = &[
    "<=", ">=", "<>", "!=", "==", "||", "(", ")", ",", ".", ";", "=", "<", ">", "+", "-", "*", "/",
    "%", "&", "|", "~",
];

fn tokenize(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut highest_param = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        if c.is_whitespace() {
            i += 1;
        } else if rest == "--" {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if rest == "/*" {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '\'' {
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' && chars.get(i + 1) == Some(&'\'') {
                    i += 2;
                } else if chars[i] == '\'' {
                    break;
                } else {
                    i += 1;
                }
            }
            i += 1;
            tokens.push(Token::Text);
        } else if matches!(c, '"' | '`' | '[') {
            let close = if c == '[' { ']' } else { c };
            let start = i + 1;
            i = start;
            while i < chars.len() && chars[i] != close {
                i += 1;
            }
            let word: String = chars[start..i.min(chars.len())].iter().collect();
            tokens.push(Token::Word(word.to_lowercase()));
            i += 1;
        } else if c == '?' {
            let start = i + 1;
            i = start;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let digits: String = chars[start..i].iter().collect();
            let number = digits.parse().unwrap_or(highest_param + 1);
            highest_param = highest_param.max(number);
            tokens.push(Token::Param(number));
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let mut real = false;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                real |= chars[i] == '.' || chars[i] == 'e' || chars[i] == 'E';
                i += 1;
            }
            tokens.push(Token::Number { real });
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            tokens.push(Token::Word(word.to_lowercase()));
        } else if let Some(symbol) = SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
            tokens.push(Token::Symbol(symbol));
            i += symbol.chars().count();
        } else {
            i += 1;
        }
    }
    tokens
}

/// Declared types by column name (unambiguous ones only) and by `table.column`.
struct Columns {
    by_name: BTreeMap<String, Option<String>>,
    by_table: BTreeMap<(String, String), Option<String>>,
}

impl Columns {
    fn new(tables: &Tables) -> Columns {
        let mut by_name: BTreeMap<String, Option<Option<String>>> = BTreeMap::new();
        let mut by_table = BTreeMap::new();
        for (table, columns) in tables {
            for (column, declared) in columns {
                let (table, column) = (table.to_lowercase(), column.to_lowercase());
                by_table.insert((table, column.clone()), declared.clone());
                by_name
                    .entry(column)
                    .and_modify(|seen| {
                        if seen.as_ref() != Some(declared) {
                            *seen = None; // ambiguous across tables
                        }
                    })
                    .or_insert_with(|| Some(declared.clone()));
            }
        }
        Columns {
            by_name: by_name
                .into_iter()
                .filter_map(|(name, declared)| Some((name, declared?)))
                .collect(),
            by_table,
        }
    }

    /// The declared type of the column reference that ends at `tokens[end]` (`col` or
    /// `table.col`).
    fn ending_at(&self, tokens: &[Token], end: usize) -> Option<String> {
        let Token::Word(column) = tokens.get(end)? else {
            return None;
        };
        if end >= 2
            && tokens[end - 1] == Token::Symbol(".")
            && let Token::Word(table) = &tokens[end - 2]
            && let Some(declared) = self.by_table.get(&(table.clone(), column.clone()))
        {
            return declared.clone();
        }
        self.by_name.get(column).cloned().flatten()
    }

    /// The declared type of the column reference that starts at `tokens[start]`.
    fn starting_at(&self, tokens: &[Token], start: usize) -> Option<String> {
        if tokens.get(start + 1) == Some(&Token::Symbol(".")) {
            return self.ending_at(tokens, start + 2);
        }
        self.ending_at(tokens, start)
    }
}

fn is_comparison(token: &Token) -> bool {
    match token {
        Token::Symbol(s) => matches!(*s, "=" | "==" | "!=" | "<>" | "<" | ">" | "<=" | ">="),
        Token::Word(w) => matches!(w.as_str(), "like" | "glob" | "is" | "regexp" | "match"),
        _ => false,
    }
}

fn is_arithmetic(token: &Token) -> bool {
    matches!(token, Token::Symbol("+" | "-" | "*" | "/" | "%"))
}

fn word(token: Option<&Token>, expected: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w == expected)
}

/// The declared type each of `count` parameters is used as (index 0 is `?1`).
pub fn parameter_declarations(sql: &str, tables: &Tables, count: usize) -> Vec<Option<String>> {
    let tokens = tokenize(sql);
    let columns = Columns::new(tables);
    let mut found: Vec<Option<String>> = vec![None; count];
    let mut set = |number: usize, declared: Option<String>| {
        if let Some(slot) = number.checked_sub(1).and_then(|i| found.get_mut(i))
            && slot.is_none()
        {
            *slot = declared;
        }
    };
    for (number, declared) in insert_values(&tokens, tables) {
        set(number, declared);
    }
    for (i, token) in tokens.iter().enumerate() {
        let Token::Param(number) = token else {
            continue;
        };
        let previous = i.checked_sub(1).map(|p| &tokens[p]);
        let declared = if word(previous, "limit") || word(previous, "offset") {
            Some("INTEGER".to_string())
        } else if previous.is_some_and(is_comparison) && i >= 2 {
            columns.ending_at(&tokens, i - 2)
        } else if tokens.get(i + 1).is_some_and(is_comparison) {
            columns.starting_at(&tokens, i + 2)
        } else if previous.is_some_and(is_arithmetic) && i >= 2 {
            // `col + ?1`: a value of the column's kind.
            columns.ending_at(&tokens, i - 2)
        } else if tokens.get(i + 1).is_some_and(is_arithmetic) {
            columns.starting_at(&tokens, i + 2)
        } else if word(previous, "between") && i >= 2 {
            columns.ending_at(&tokens, i - 2)
        } else if word(previous, "and") && i >= 4 && word(tokens.get(i - 3), "between") {
            columns.ending_at(&tokens, i - 4)
        } else {
            in_list_column(&tokens, i, &columns)
        };
        set(*number, declared);
    }
    found
}

/// `col IN (?1, ?2, …)`: the column of the list holding the parameter at `at`.
fn in_list_column(tokens: &[Token], at: usize, columns: &Columns) -> Option<String> {
    let mut i = at;
    while i > 0 {
        i -= 1;
        match &tokens[i] {
            Token::Param(_) | Token::Number { .. } | Token::Text | Token::Symbol(",") => {}
            Token::Symbol("(") => {
                return (i >= 2 && word(tokens.get(i - 1), "in"))
                    .then(|| columns.ending_at(tokens, i - 2))
                    .flatten();
            }
            _ => return None,
        }
    }
    None
}

/// `INSERT INTO t [(cols)] VALUES (…), (…)`: each parameter that is a whole value, with the
/// declared type of its column.
fn insert_values(tokens: &[Token], tables: &Tables) -> Vec<(usize, Option<String>)> {
    let Some(into) = tokens.iter().position(|t| word(Some(t), "into")) else {
        return Vec::new();
    };
    if !tokens[..into]
        .iter()
        .any(|t| word(Some(t), "insert") || word(Some(t), "replace"))
    {
        return Vec::new();
    }
    let Some(Token::Word(table)) = tokens.get(into + 1) else {
        return Vec::new();
    };
    let Some(declared) = tables
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(table))
        .map(|(_, columns)| columns)
    else {
        return Vec::new();
    };
    let mut i = into + 2;
    let mut target: Vec<Option<String>> = declared.iter().map(|(_, d)| d.clone()).collect();
    if tokens.get(i) == Some(&Token::Symbol("(")) {
        target.clear();
        i += 1;
        while let Some(token) = tokens.get(i) {
            i += 1;
            match token {
                Token::Word(column) => target.push(
                    declared
                        .iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case(column))
                        .and_then(|(_, d)| d.clone()),
                ),
                Token::Symbol(")") => break,
                _ => {}
            }
        }
    }
    if !word(tokens.get(i), "values") {
        return Vec::new();
    }
    let mut found = Vec::new();
    let (mut depth, mut position, mut element) = (0usize, 0usize, Vec::new());
    for token in &tokens[i + 1..] {
        match token {
            Token::Symbol("(") => {
                depth += 1;
                if depth == 1 {
                    position = 0;
                    element.clear();
                    continue;
                }
            }
            Token::Symbol(")") | Token::Symbol(",") if depth == 1 => {
                if let [Token::Param(number)] = element.as_slice() {
                    found.push((*number, target.get(position).cloned().flatten()));
                }
                element.clear();
                position += 1;
                if *token == Token::Symbol(")") {
                    depth = 0;
                }
                continue;
            }
            Token::Symbol(")") => depth = depth.saturating_sub(1),
            Token::Word(w) if depth == 0 && w != "values" => break,
            _ => {}
        }
        if depth >= 1 {
            element.push(token.clone());
        }
    }
    found
}

/// The declared type each of `count` result columns holds, where the select list says so
/// (`None` where it does not, or when the list cannot be matched to the columns).
pub fn expression_declarations(sql: &str, tables: &Tables, count: usize) -> Vec<Option<String>> {
    let tokens = tokenize(sql);
    let columns = Columns::new(tables);
    let items = select_list(&tokens);
    if items.len() != count {
        return vec![None; count];
    }
    items
        .iter()
        .map(|item| expression_type(strip_alias(item), &columns))
        .collect()
}

/// The top-level items of the first SELECT's result list.
fn select_list(tokens: &[Token]) -> Vec<&[Token]> {
    let Some(Token::Word(first)) = tokens.first() else {
        return Vec::new();
    };
    if first != "select" {
        return Vec::new();
    }
    let mut start = 1;
    while word(tokens.get(start), "distinct") || word(tokens.get(start), "all") {
        start += 1;
    }
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut item_start = start;
    let mut i = start;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Symbol("(") => depth += 1,
            Token::Symbol(")") => depth = depth.saturating_sub(1),
            Token::Symbol(",") if depth == 0 => {
                items.push(&tokens[item_start..i]);
                item_start = i + 1;
            }
            Token::Symbol(";") if depth == 0 => break,
            Token::Word(w)
                if depth == 0
                    && matches!(
                        w.as_str(),
                        "from"
                            | "where"
                            | "group"
                            | "order"
                            | "limit"
                            | "union"
                            | "except"
                            | "intersect"
                            | "window"
                            | "having"
                    ) =>
            {
                break;
            }
            _ => {}
        }
        i += 1;
    }
    if item_start < i {
        items.push(&tokens[item_start..i]);
    }
    items
}

fn strip_alias(item: &[Token]) -> &[Token] {
    let n = item.len();
    if n >= 3 && word(item.get(n - 2), "as") {
        return &item[..n - 2];
    }
    if n >= 2
        && matches!(item[n - 1], Token::Word(_))
        && matches!(
            item[n - 2],
            Token::Symbol(")") | Token::Word(_) | Token::Number { .. } | Token::Text
        )
        && !word(item.last(), "end")
    {
        return &item[..n - 1];
    }
    item
}

const INTEGER_FUNCTIONS: &[&str] = &[
    "count",
    "length",
    "octet_length",
    "instr",
    "unicode",
    "random",
    "changes",
    "total_changes",
    "last_insert_rowid",
    "row_number",
    "rank",
    "dense_rank",
    "ntile",
    "sign",
    "unixepoch",
];
const REAL_FUNCTIONS: &[&str] = &[
    "avg",
    "total",
    "julianday",
    "round",
    "percent_rank",
    "cume_dist",
];
const TEXT_FUNCTIONS: &[&str] = &[
    "upper",
    "lower",
    "substr",
    "substring",
    "trim",
    "ltrim",
    "rtrim",
    "replace",
    "group_concat",
    "string_agg",
    "typeof",
    "printf",
    "format",
    "date",
    "time",
    "datetime",
    "strftime",
    "hex",
    "quote",
    "char",
    "concat",
    "concat_ws",
    "sqlite_version",
];
/// Functions whose result has the type of their first argument.
const FIRST_ARGUMENT_FUNCTIONS: &[&str] =
    &["sum", "min", "max", "abs", "coalesce", "ifnull", "nullif"];

fn expression_type(expression: &[Token], columns: &Columns) -> Option<String> {
    let named = |name: &str| Some(name.to_string());
    match expression {
        [Token::Number { real }] | [Token::Symbol("-"), Token::Number { real }] => {
            named(if *real { "REAL" } else { "INTEGER" })
        }
        [Token::Text] => named("TEXT"),
        [Token::Word(_)] | [Token::Word(_), Token::Symbol("."), Token::Word(_)] => {
            columns.ending_at(expression, expression.len() - 1)
        }
        [
            Token::Word(function),
            Token::Symbol("("),
            arguments @ ..,
            Token::Symbol(")"),
        ] if balanced(arguments) => {
            let function = function.as_str();
            if function == "cast" {
                let as_at = arguments.iter().rposition(|t| word(Some(t), "as"))?;
                let type_name: Vec<&str> = arguments[as_at + 1..]
                    .iter()
                    .filter_map(|t| match t {
                        Token::Word(w) => Some(w.as_str()),
                        _ => None,
                    })
                    .collect();
                named(&type_name.join(" ").to_uppercase())
            } else if INTEGER_FUNCTIONS.contains(&function) {
                // count() and length() are bigint in PostgreSQL.
                named("BIGINT")
            } else if function == "sum"
                && matches!(
                    expression_type(first_argument(arguments), columns)
                        .as_deref()
                        .and_then(crate::pgwire::types::PgType::for_declared),
                    Some(
                        crate::pgwire::types::PgType::Int2
                            | crate::pgwire::types::PgType::Int4
                            | crate::pgwire::types::PgType::Int8
                    )
                )
            {
                // PostgreSQL's sum of integers is a bigint.
                named("BIGINT")
            } else if function == "avg"
                && is_numeric(expression_type(first_argument(arguments), columns))
            {
                // PostgreSQL's avg of a numeric is a numeric (of any scale).
                named("DECIMAL")
            } else if function == "date_trunc" {
                // A time cut to a field keeps its type: the second argument's.
                let first = first_argument(arguments).len();
                expression_type(arguments.get(first + 1..).unwrap_or_default(), columns)
            } else if REAL_FUNCTIONS.contains(&function) {
                named("REAL")
            } else if TEXT_FUNCTIONS.contains(&function) {
                named("TEXT")
            } else if FIRST_ARGUMENT_FUNCTIONS.contains(&function) {
                let first = first_argument(arguments);
                let first = match first {
                    [Token::Word(w), rest @ ..] if w == "distinct" => rest,
                    other => other,
                };
                expression_type(first, columns)
            } else {
                None
            }
        }
        // `time ± interval '…'`: a time of the same kind (a date's is a timestamp).
        [
            time @ ..,
            Token::Symbol("+" | "-"),
            Token::Word(interval),
            Token::Text,
        ] if interval == "interval" && !time.is_empty() => {
            let declared = expression_type(time, columns)?;
            match crate::pgwire::types::PgType::for_declared(&declared)? {
                crate::pgwire::types::PgType::Date => named("TIMESTAMP"),
                crate::pgwire::types::PgType::Timestamp
                | crate::pgwire::types::PgType::TimestampTz => Some(declared),
                _ => None,
            }
        }
        // A scalar subquery: its one column's type.
        [Token::Symbol("("), inner @ .., Token::Symbol(")")]
            if balanced(inner) && word(inner.first(), "select") =>
        {
            match select_list(inner).as_slice() {
                [item] => expression_type(strip_alias(item), columns),
                _ => None,
            }
        }
        tokens if tokens.contains(&Token::Symbol("||")) => named("TEXT"),
        tokens => arithmetic_type(tokens, columns),
    }
}

/// The type of `a + b` (or `-`, `*`, `/`, `%`) from its operands', as PostgreSQL widens them:
/// integers stay integers (int4 unless one is int8), a float makes a float, a numeric a
/// numeric; a parameter takes the other operand's type. `None` when an operand's type is not
/// known or is not a number.
fn arithmetic_type(tokens: &[Token], columns: &Columns) -> Option<String> {
    // Split at the last top-level operator of the lowest precedence present.
    let mut depth = 0usize;
    let (mut additive, mut multiplicative) = (None, None);
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Symbol("(") => depth += 1,
            Token::Symbol(")") => depth = depth.saturating_sub(1),
            // (A sign at the start, or after another operator, is not a binary operator.)
            Token::Symbol("+" | "-")
                if depth == 0
                    && i > 0
                    && !matches!(tokens[i - 1], Token::Symbol(s) if s != ")") =>
            {
                additive = Some(i);
            }
            Token::Symbol("*" | "/" | "%") if depth == 0 && i > 0 => multiplicative = Some(i),
            _ => {}
        }
    }
    let at = additive.or(multiplicative)?;
    let (left, right) = (&tokens[..at], &tokens[at + 1..]);
    let operand = |side: &[Token]| -> Result<Option<PgType>, ()> {
        let side = match side {
            [Token::Symbol("("), inner @ .., Token::Symbol(")")] if balanced(inner) => inner,
            side => side,
        };
        match side {
            [Token::Param(_)] => Ok(None),
            _ => expression_type(side, columns)
                .and_then(|declared| PgType::for_declared(&declared))
                .map(Some)
                .ok_or(()),
        }
    };
    let (left, right) = (operand(left).ok()?, operand(right).ok()?);
    let widened = match (left, right) {
        (Some(a), None) | (None, Some(a)) => a,
        (Some(a), Some(b)) => match (a, b) {
            (PgType::Float8, _) | (_, PgType::Float8) => PgType::Float8,
            (PgType::Numeric(_), _) | (_, PgType::Numeric(_)) => PgType::Numeric(None),
            (PgType::Int8, _) | (_, PgType::Int8) => PgType::Int8,
            (PgType::Int2 | PgType::Int4, PgType::Int2 | PgType::Int4) => PgType::Int4,
            _ => return None,
        },
        (None, None) => return None,
    };
    Some(
        match widened {
            PgType::Int2 | PgType::Int4 => "INTEGER",
            PgType::Int8 => "BIGINT",
            PgType::Float8 => "DOUBLE PRECISION",
            PgType::Numeric(_) => "DECIMAL",
            _ => return None,
        }
        .to_string(),
    )
}

/// Whether `declared` is PostgreSQL's numeric type (`NUMERIC(10,2)`, `DECIMAL`).
fn is_numeric(declared: Option<String>) -> bool {
    matches!(
        declared
            .as_deref()
            .and_then(crate::pgwire::types::PgType::for_declared),
        Some(crate::pgwire::types::PgType::Numeric(_))
    )
}

/// Whether parentheses in `tokens` balance (so `f(a) + g(b)` is not read as one call).
fn balanced(tokens: &[Token]) -> bool {
    let mut depth = 0i32;
    for token in tokens {
        match token {
            Token::Symbol("(") => depth += 1,
            Token::Symbol(")") => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

fn first_argument(arguments: &[Token]) -> &[Token] {
    let mut depth = 0usize;
    for (i, token) in arguments.iter().enumerate() {
        match token {
            Token::Symbol("(") => depth += 1,
            Token::Symbol(")") => depth = depth.saturating_sub(1),
            Token::Symbol(",") if depth == 0 => return &arguments[..i],
            _ => {}
        }
    }
    arguments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> crate::db::execute::TableColumns {
        let column = |name: &str, declared: &str| (name.to_string(), Some(declared.to_string()));
        vec![(
            "item".to_string(),
            vec![
                column("id", "INTEGER"),
                column("name", "TEXT"),
                column("price", "REAL"),
                ("note".to_string(), None),
                column("added", "TIMESTAMPTZ"),
            ],
        )]
    }

    fn declared(values: &[Option<&str>]) -> Vec<Option<String>> {
        values.iter().map(|v| v.map(str::to_string)).collect()
    }

    #[test]
    fn parameters_take_the_type_of_their_column() {
        let tables = tables();
        assert_eq!(
            parameter_declarations(
                "SELECT * FROM item WHERE id = ?1 AND ?2 < price",
                &tables,
                2
            ),
            declared(&[Some("INTEGER"), Some("REAL")])
        );
        assert_eq!(
            parameter_declarations("UPDATE item SET name = ?2 WHERE item.id = ?1", &tables, 2),
            declared(&[Some("INTEGER"), Some("TEXT")])
        );
        // In arithmetic with a column: a value of the column's kind.
        assert_eq!(
            parameter_declarations(
                "UPDATE item SET price = price * ?1 WHERE id = ?2 - 1",
                &tables,
                2
            ),
            declared(&[Some("REAL"), Some("INTEGER")])
        );
        assert_eq!(
            parameter_declarations(
                "INSERT INTO item(price, name) VALUES (?1, ?2), (?3, upper(?4))",
                &tables,
                4
            ),
            declared(&[Some("REAL"), Some("TEXT"), Some("REAL"), None])
        );
        assert_eq!(
            parameter_declarations(
                "SELECT name FROM item WHERE id IN (?1, ?2) LIMIT ?3",
                &tables,
                3
            ),
            declared(&[Some("INTEGER"), Some("INTEGER"), Some("INTEGER")])
        );
        assert_eq!(
            parameter_declarations("SELECT ?1 || 'x' FROM item WHERE note = ?2", &tables, 2),
            declared(&[None, None])
        );
    }

    #[test]
    fn expression_columns_are_typed_where_the_expression_says() {
        let tables = tables();
        assert_eq!(
            expression_declarations(
                "SELECT count(*), max(price) AS top, CAST(id AS TEXT) t, 'x' || name, 1.5, id + 1 FROM item",
                &tables,
                6
            ),
            declared(&[
                Some("BIGINT"),
                Some("REAL"),
                Some("TEXT"),
                Some("TEXT"),
                Some("REAL"),
                Some("INTEGER")
            ])
        );
        // Arithmetic widens as PostgreSQL does; a parameter takes the other operand's type.
        assert_eq!(
            expression_declarations(
                "SELECT id * 2, price + id, id + ?1, (id + 1) * 2, -id, name + 1 FROM item",
                &tables,
                6
            ),
            declared(&[
                Some("INTEGER"),
                Some("DOUBLE PRECISION"),
                Some("INTEGER"),
                Some("INTEGER"),
                None,
                None
            ])
        );
        // A scalar subquery has its column's type.
        assert_eq!(
            expression_declarations(
                "SELECT (SELECT count(*) FROM item), (SELECT max(price) FROM item) AS top",
                &tables,
                2
            ),
            declared(&[Some("BIGINT"), Some("REAL")])
        );
        // A time plus an interval is a time of its kind.
        assert_eq!(
            expression_declarations(
                "SELECT added + interval '1 day', added - INTERVAL '2 hours' AS earlier FROM item",
                &tables,
                2
            ),
            declared(&[Some("TIMESTAMPTZ"), Some("TIMESTAMPTZ")])
        );
        // A list that does not match the columns (SELECT *) says nothing.
        assert_eq!(
            expression_declarations("SELECT * FROM item", &tables, 5),
            vec![None; 5]
        );
    }
}
