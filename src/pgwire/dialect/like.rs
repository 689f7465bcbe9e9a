//! PostgreSQL's `LIKE` is case-sensitive; SQLite's ignores the case of ASCII letters. A
//! PostgreSQL LIKE becomes SQLite's GLOB (case-sensitive) with the pattern converted: `%` →
//! `*`, `_` → `?`, and GLOB's own wildcards in the pattern bracketed so they match themselves.
//! A literal pattern is converted here (so an index can still serve a fixed prefix); a
//! parameter or expression is converted by SQL at run time, and one holding PostgreSQL's
//! escape character `\` keeps SQLite's LIKE with that escape (case-insensitive then).

/// The GLOB pattern for LIKE pattern `pattern` with escape character `escape`; `None` when
/// the pattern ends in a lone escape (PostgreSQL refuses it).
pub fn glob_pattern(pattern: &str, escape: Option<char>) -> Option<String> {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let literal = if Some(c) == escape {
            Some(chars.next()?)
        } else {
            match c {
                '%' => {
                    out.push('*');
                    None
                }
                '_' => {
                    out.push('?');
                    None
                }
                other => Some(other),
            }
        };
        match literal {
            Some(c @ ('*' | '?' | '[')) => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            Some(c) => out.push(c),
            None => {}
        }
    }
    Some(out)
}

/// SQL computing the GLOB pattern of the LIKE pattern `pattern` (an SQL expression) at run
/// time, for patterns without escapes.
pub fn glob_pattern_sql(pattern: &str) -> String {
    format!(
        "replace(replace(replace(replace(replace({pattern}, '[', '[[]'), '*', '[*]'), \
         '?', '[?]'), '%', '*'), '_', '?')"
    )
}

/// `operand [NOT] LIKE pattern` with PostgreSQL's meaning, as SQLite text. `literal` is the
/// pattern's value when it is a string literal.
pub fn case_sensitive(
    operand: &str,
    pattern: &str,
    literal: Option<&str>,
    escape: Option<char>,
    negated: bool,
) -> Option<String> {
    let not = if negated { "NOT " } else { "" };
    if let Some(literal) = literal {
        let glob = glob_pattern(literal, escape)?;
        return Some(format!(
            "{operand} {not}GLOB '{}'",
            glob.replace('\'', "''")
        ));
    }
    // PostgreSQL's default escape is the backslash.
    let escape = escape.unwrap_or('\\');
    let escape_literal = escape.to_string().replace('\'', "''");
    Some(format!(
        "(CASE WHEN instr({pattern}, '{escape_literal}') > 0 \
         THEN {operand} {not}LIKE {pattern} ESCAPE '{escape_literal}' \
         ELSE {operand} {not}GLOB {} END)",
        glob_pattern_sql(pattern)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_become_glob_patterns() {
        assert_eq!(glob_pattern("dune%", Some('\\')).as_deref(), Some("dune*"));
        assert_eq!(glob_pattern("a_c", None).as_deref(), Some("a?c"));
        assert_eq!(
            glob_pattern("5\\% off*", Some('\\')).as_deref(),
            Some("5% off[*]")
        );
        assert_eq!(glob_pattern("[x]?", None).as_deref(), Some("[[]x][?]"));
        assert_eq!(glob_pattern("ends\\", Some('\\')), None);
    }

    /// The conversions match as PostgreSQL's LIKE would, checked on SQLite itself.
    #[test]
    fn glob_matches_case_sensitively_what_like_matches() {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        let matches = |text: &str, pattern: &str| -> bool {
            let sql = case_sensitive("?1", "?2", None, None, false).unwrap();
            connection
                .query_row(&format!("SELECT {sql}"), (text, pattern), |row| row.get(0))
                .unwrap()
        };
        assert!(matches("Dune", "Dune%"));
        assert!(!matches("Dune", "dune%"));
        assert!(matches("a*b", "a*b"));
        assert!(!matches("axb", "a*b"));
        assert!(matches("a[1]", "a[1]"));
        assert!(matches("50% off", "50\\% off"));
        assert!(!matches("50 off", "50\\% off"));
        assert!(matches("abc", "a_c"));
        assert!(!matches("abbc", "a_c"));
    }
}
