//! Whether a statement pins its distributed table's shard key to values all owned by one
//! group — `WHERE key = v` or `WHERE key IN (v, …)` as a top-level conjunct — so that only
//! that group can hold rows it reads or changes. Decided from the text (`tokens`), and only
//! for shapes whose meaning is plain: one SELECT (no subquery, no compound, no CTE), or an
//! UPDATE/DELETE without any; anything else is not pinned and takes the general path.

use crate::router::tokens::Token;
use crate::types::Params;
use crate::types::value::SqlValue;

/// Words that end a WHERE clause at the top level.
const CLAUSE_END: &[&str] = &["group", "order", "limit", "returning", "window", "having"];
/// Words whose presence anywhere makes the shape unplain (compounds, CTEs, ranges).
const UNPLAIN: &[&str] = &[
    "union",
    "intersect",
    "except",
    "with",
    "between",
    "or",
    "case",
    "not",
    "exists",
];

/// Where a pinned key's value comes from: the text itself, or a parameter bound to each call.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    Literal(SqlValue),
    /// `?N`, `:name`, `@name` or `$name` (a bare `?` numbered as SQLite numbers it).
    Parameter(String),
}

impl KeySource {
    /// The key's value in a call with `params` bound (`None`: the parameter is not bound).
    pub fn value<'a>(&'a self, params: &'a Params) -> Option<&'a SqlValue> {
        match self {
            KeySource::Literal(value) => Some(value),
            KeySource::Parameter(param) => param_ref(param, params),
        }
    }
}

/// Where the key values the statement pins come from, when it pins any: `names` are the ways
/// the key column can be written (its name, and `rowid` and its aliases when it is the rowid).
pub fn pinned_key_sources(tokens: &[Token], names: &[String]) -> Option<Vec<KeySource>> {
    let numbered;
    let tokens = if tokens
        .iter()
        .any(|t| matches!(t, Token::Param(p) if p == "?"))
    {
        numbered = number_parameters(tokens);
        numbered.as_slice()
    } else {
        tokens
    };
    let first = tokens.first()?;
    let selects = tokens.iter().filter(|t| t.is("select")).count();
    let plain = match first {
        Token::Word(w) if w == "select" => selects == 1,
        Token::Word(w) if w == "update" || w == "delete" => selects == 0,
        _ => false,
    };
    if !plain || tokens.iter().any(|t| UNPLAIN.iter().any(|w| t.is(w))) {
        return None;
    }
    // The top-level WHERE and its extent.
    let mut depth = 0i32;
    let mut start = None;
    let mut end = tokens.len();
    for (at, token) in tokens.iter().enumerate() {
        match token {
            t if t.is_symbol("(") => depth += 1,
            t if t.is_symbol(")") => depth -= 1,
            t if depth == 0 && start.is_none() && t.is("where") => start = Some(at + 1),
            t if depth == 0
                && start.is_some()
                && (CLAUSE_END.iter().any(|w| t.is(w)) || t.is_symbol(";")) =>
            {
                end = at;
                break;
            }
            _ => {}
        }
    }
    let clause = &tokens[start?..end];
    // Split into top-level conjuncts.
    let mut conjuncts = Vec::new();
    let mut depth = 0i32;
    let mut from = 0;
    for (at, token) in clause.iter().enumerate() {
        if token.is_symbol("(") {
            depth += 1;
        } else if token.is_symbol(")") {
            depth -= 1;
        } else if depth == 0 && token.is("and") {
            conjuncts.push(&clause[from..at]);
            from = at + 1;
        }
    }
    conjuncts.push(&clause[from..]);
    conjuncts
        .into_iter()
        .find_map(|conjunct| key_values(conjunct, names))
}

/// `tokens` with each bare `?` numbered as SQLite numbers it: one past the largest number
/// used so far.
pub fn number_parameters(tokens: &[Token]) -> Vec<Token> {
    let mut largest = 0usize;
    tokens
        .iter()
        .map(|token| match token {
            Token::Param(param) if param == "?" => {
                largest += 1;
                Token::Param(format!("?{largest}"))
            }
            Token::Param(param) => {
                if let Some(number) = param
                    .strip_prefix('?')
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    largest = largest.max(number);
                }
                token.clone()
            }
            other => other.clone(),
        })
        .collect()
}

/// The values of a conjunct `key = v`, `v = key` or `key IN (v, …)`.
fn key_values(conjunct: &[Token], names: &[String]) -> Option<Vec<KeySource>> {
    let is_key = |tokens: &[Token]| -> bool {
        let column = match tokens {
            [column] => column,
            [_qualifier, dot, column] if dot.is_symbol(".") => column,
            _ => return false,
        };
        column.name().is_some_and(|name| names.contains(&name))
    };
    let equals = conjunct
        .iter()
        .position(|t| t.is_symbol("=") || t.is_symbol("=="));
    if let Some(at) = equals {
        let (left, right) = (&conjunct[..at], &conjunct[at + 1..]);
        if is_key(left) {
            return literal(right).map(|v| vec![v]);
        }
        if is_key(right) {
            return literal(left).map(|v| vec![v]);
        }
        return None;
    }
    let at = conjunct.iter().position(|t| t.is("in"))?;
    if !is_key(&conjunct[..at]) {
        return None;
    }
    let list = &conjunct[at + 1..];
    let inner = match list {
        [open, inner @ .., close] if open.is_symbol("(") && close.is_symbol(")") => inner,
        _ => return None,
    };
    let values: Option<Vec<KeySource>> = inner.split(|t| t.is_symbol(",")).map(literal).collect();
    values.filter(|v| !v.is_empty())
}

/// A literal (a leading minus allowed on numbers) or a parameter.
fn literal(tokens: &[Token]) -> Option<KeySource> {
    let value = match tokens {
        [Token::Number(number)] => number_value(number, false)?,
        [minus, Token::Number(number)] if minus.is_symbol("-") => number_value(number, true)?,
        [Token::Text(text)] => SqlValue::Text(text.clone()),
        [Token::Param(param)] => return Some(KeySource::Parameter(param.clone())),
        _ => return None,
    };
    Some(KeySource::Literal(value))
}

fn number_value(text: &str, negative: bool) -> Option<SqlValue> {
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("0x") {
        // Hex literals wrap like SQLite's; rare as keys: not pinned.
        return None;
    }
    if let Ok(n) = lower.parse::<i64>() {
        return Some(SqlValue::Integer(if negative {
            n.checked_neg()?
        } else {
            n
        }));
    }
    let r: f64 = lower.parse().ok()?;
    Some(SqlValue::Real(if negative { -r } else { r }))
}

/// The value bound to `param` (`?`, `?N`, `:name`, `@name`, `$name`); bare `?` is not
/// resolved (its number depends on the parameters before it).
pub fn param_value(param: &str, params: &Params) -> Option<SqlValue> {
    param_ref(param, params).cloned()
}

fn param_ref<'a>(param: &str, params: &'a Params) -> Option<&'a SqlValue> {
    match params {
        Params::Positional(values) => {
            let number: usize = param.strip_prefix('?')?.parse().ok()?;
            values.get(number.checked_sub(1)?)
        }
        Params::Named(pairs) => {
            let name = param.get(1..)?;
            pairs
                .iter()
                .find(|(given, _)| given.trim_start_matches([':', '@', '$']) == name)
                .map(|(_, value)| value)
        }
        Params::None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::tokens::tokenize;

    /// The key values `tokens` pin in a call with `params` bound.
    fn pinned_keys(tokens: &[Token], names: &[String], params: &Params) -> Option<Vec<SqlValue>> {
        pinned_key_sources(tokens, names)?
            .iter()
            .map(|source| source.value(params).cloned())
            .collect()
    }

    fn pinned(sql: &str) -> Option<Vec<SqlValue>> {
        let names = vec!["k".to_string(), "rowid".to_string()];
        pinned_keys(&tokenize(sql).unwrap(), &names, &Params::None)
    }

    #[test]
    fn equality_and_in_lists_at_the_top_level_pin() {
        assert_eq!(
            pinned("SELECT * FROM t WHERE k = 5"),
            Some(vec![SqlValue::Integer(5)])
        );
        assert_eq!(
            pinned("SELECT * FROM t WHERE 'x' = t.k AND v > 2"),
            Some(vec![SqlValue::Text("x".into())])
        );
        assert_eq!(
            pinned("DELETE FROM t WHERE v > 1 AND k IN (1, -2) ORDER BY v"),
            Some(vec![SqlValue::Integer(1), SqlValue::Integer(-2)])
        );
        assert_eq!(
            pinned("UPDATE t SET v = 1 WHERE rowid = 3"),
            Some(vec![SqlValue::Integer(3)])
        );
    }

    #[test]
    fn anything_less_plain_does_not_pin() {
        for sql in [
            "SELECT * FROM t WHERE k = 5 OR v = 1",
            "SELECT * FROM t WHERE k = 5 + 1",
            "SELECT * FROM t WHERE k = 5 COLLATE nocase",
            "SELECT * FROM t WHERE NOT k = 5",
            "SELECT * FROM t WHERE v IN (SELECT v FROM t) AND k = 1",
            "SELECT * FROM t WHERE k = 1 UNION SELECT * FROM t",
            "SELECT * FROM t WHERE (k = 1 OR k = 2)",
            "SELECT * FROM t WHERE k > 5",
            "SELECT * FROM t WHERE v = 5",
            "SELECT * FROM t",
            "UPDATE t SET v = (SELECT 1) WHERE k = 1",
        ] {
            assert_eq!(pinned(sql), None, "{sql}");
        }
    }

    #[test]
    fn parameters_are_resolved_by_number_or_name() {
        let names = vec!["k".to_string()];
        let tokens = tokenize("SELECT * FROM t WHERE k = ?2").unwrap();
        let params = Params::Positional(vec![SqlValue::Integer(1), SqlValue::Text("b".into())]);
        assert_eq!(
            pinned_keys(&tokens, &names, &params),
            Some(vec![SqlValue::Text("b".into())])
        );
        let tokens = tokenize("SELECT * FROM t WHERE v = ? AND k = ?").unwrap();
        assert_eq!(
            pinned_keys(&tokens, &names, &params),
            Some(vec![SqlValue::Text("b".into())])
        );
        let tokens = tokenize("SELECT * FROM t WHERE k = :key").unwrap();
        let params = Params::Named(vec![("key".into(), SqlValue::Integer(9))]);
        assert_eq!(
            pinned_keys(&tokens, &names, &params),
            Some(vec![SqlValue::Integer(9)])
        );
    }
}
