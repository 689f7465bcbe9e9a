//! Reading PostgreSQL query text for SQLite: `$N` parameters as `?N`, `::` casts as CAST,
//! `SERIAL` as `INTEGER`; only text outside string literals, quoted identifiers and comments
//! is rewritten. (Splitting into statements is `crate::sqltext`, shared with the shell.)

use crate::sqltext::for_each_code_char;

/// `sql` with every `$N` parameter written as `?N`, which SQLite binds by position as
/// PostgreSQL does (SQLite reads `$1` as a named parameter numbered by first appearance).
pub fn rewrite_parameters(sql: &str) -> String {
    let mut dollars = Vec::new();
    let bytes = sql.as_bytes();
    for_each_code_char(sql, |at, c| {
        if c == '$' && bytes.get(at + 1).is_some_and(u8::is_ascii_digit) {
            dollars.push(at);
        }
    });
    if dollars.is_empty() {
        return sql.to_string();
    }
    let mut rewritten = sql.to_string();
    for at in dollars.into_iter().rev() {
        rewritten.replace_range(at..at + 1, "?");
    }
    rewritten
}

/// A user statement in PostgreSQL's spelling made acceptable to SQLite: `::` casts become
/// `CAST`, and `SERIAL` columns in `CREATE TABLE` become `INTEGER` (with PRIMARY KEY, SQLite's
/// auto-assigned rowid: what SERIAL is used for).
pub fn to_sqlite(sql: &str) -> String {
    let cast = rewrite_casts(sql);
    let is_create_table = {
        let mut words = cast.split_whitespace().map(str::to_ascii_lowercase);
        words.next().as_deref() == Some("create") && words.any(|w| w == "table")
    };
    if !is_create_table {
        return cast;
    }
    let mut serials = Vec::new();
    let lower = cast.to_ascii_lowercase();
    for_each_code_char(&cast, |at, c| {
        if !(c == 's' || c == 'S' || c == 'b' || c == 'B') {
            return;
        }
        let before_ok =
            at == 0 || !lower[..at].ends_with(|p: char| p.is_alphanumeric() || p == '_');
        for word in ["smallserial", "bigserial", "serial"] {
            let end = at + word.len();
            if before_ok
                && lower.get(at..end) == Some(word)
                && !lower[end..].starts_with(|n: char| n.is_alphanumeric() || n == '_')
            {
                serials.push((at, end));
                break;
            }
        }
    });
    let mut rewritten = cast.clone();
    for (start, end) in serials.into_iter().rev() {
        rewritten.replace_range(start..end, "INTEGER");
    }
    rewritten
}

/// `sql` with PostgreSQL's `expr::type` casts written as `CAST(expr AS type)`, the type mapped
/// to one whose SQLite affinity matches PostgreSQL's meaning (`bytea` → BLOB; dates, times,
/// `json` and `uuid` stay text).
pub fn rewrite_casts(sql: &str) -> String {
    if !sql.contains("::") {
        return sql.to_string();
    }
    let chars: Vec<char> = sql.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(chars.len() + 16);
    // Where in `out` the operand that ends at the current end of `out` starts, when it is a
    // literal, a parenthesized group or an earlier cast (identifiers are found by scanning).
    let mut operand_start: Option<usize> = None;
    let mut open_groups: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' | '`' => {
                let start = out.len();
                let end = closing_quote(&chars, i);
                out.extend(&chars[i..end]);
                i = end;
                operand_start = Some(start);
                continue;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                let end = chars[i..]
                    .iter()
                    .position(|c| *c == '\n')
                    .map_or(chars.len(), |p| i + p);
                out.extend(&chars[i..end]);
                i = end;
                operand_start = None;
                continue;
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                let end = (i + 2..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                    .map_or(chars.len(), |j| j + 2);
                out.extend(&chars[i..end]);
                i = end;
                operand_start = None;
                continue;
            }
            ':' if chars.get(i + 1) == Some(&':') => {
                let (type_name, after) = read_type_name(&chars, i + 2);
                let start = operand_start.unwrap_or_else(|| identifier_start(&out));
                if type_name.is_empty() || start == out.len() {
                    out.push(':');
                    out.push(':');
                    i += 2;
                    continue;
                }
                let operand: String = out.drain(start..).collect();
                let cast = format!("CAST({} AS {})", operand.trim(), sqlite_type(&type_name));
                out.extend(cast.chars());
                operand_start = Some(start);
                i = after;
                continue;
            }
            '(' => {
                // A function call's group starts at the function's name.
                let called = out.last().is_some_and(|p| p.is_alphanumeric() || *p == '_');
                open_groups.push(if called {
                    identifier_start(&out)
                } else {
                    out.len()
                });
                operand_start = None;
            }
            ')' => {
                out.push(c);
                i += 1;
                operand_start = open_groups.pop();
                continue;
            }
            c if c.is_whitespace() => {}
            _ => operand_start = None,
        }
        out.push(c);
        i += 1;
    }
    out.into_iter().collect()
}

/// The index just past the quote closing the one at `start` (doubled quotes escape).
fn closing_quote(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == quote {
            if chars.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    chars.len()
}

/// Where the identifier, number or parameter that ends `out` starts (after whitespace).
fn identifier_start(out: &[char]) -> usize {
    let mut end = out.len();
    while end > 0 && out[end - 1].is_whitespace() {
        end -= 1;
    }
    let mut start = end;
    while start > 0 && {
        let c = out[start - 1];
        c.is_alphanumeric() || matches!(c, '_' | '.' | '?' | '$')
    } {
        start -= 1;
    }
    start
}

/// A PostgreSQL type name starting at `from` (after `::`): words such as `double precision`
/// or `timestamp with time zone`, a `(n[, m])` modifier and `[]`. Returns it and where it ends.
fn read_type_name(chars: &[char], from: usize) -> (String, usize) {
    const CONTINUATIONS: &[&str] = &["precision", "varying", "with", "without", "time", "zone"];
    let word_at = |at: usize| -> (String, usize) {
        let mut end = at;
        while end < chars.len()
            && (chars[end].is_alphanumeric() || chars[end] == '_' || chars[end] == '.')
        {
            end += 1;
        }
        (chars[at..end].iter().collect(), end)
    };
    let mut i = from;
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    let (first, mut end) = word_at(i);
    if first.is_empty() {
        return (String::new(), from);
    }
    let mut words = vec![first];
    loop {
        let mut next = end;
        while next < chars.len() && chars[next] == ' ' {
            next += 1;
        }
        let (word, word_end) = word_at(next);
        if word.is_empty() || !CONTINUATIONS.contains(&word.to_ascii_lowercase().as_str()) {
            break;
        }
        words.push(word);
        end = word_end;
    }
    let mut name = words.join(" ");
    let mut i = end;
    if chars.get(i) == Some(&'(') {
        let close = chars[i..]
            .iter()
            .position(|c| *c == ')')
            .map_or(chars.len(), |p| i + p + 1);
        name.extend(&chars[i..close]);
        i = close;
    }
    if chars.get(i) == Some(&'[') && chars.get(i + 1) == Some(&']') {
        i += 2;
    }
    (name, i)
}

/// The type name to CAST to in SQLite for a PostgreSQL type.
fn sqlite_type(pg_type: &str) -> String {
    let lower = pg_type.to_ascii_lowercase();
    let base = lower.trim_start_matches("pg_catalog.");
    let bare = base.split('(').next().unwrap_or("").trim();
    match bare {
        "bytea" => "BLOB".to_string(),
        "bool" | "boolean" => "INTEGER".to_string(),
        "date"
        | "time"
        | "timestamp"
        | "timestamptz"
        | "interval"
        | "uuid"
        | "json"
        | "jsonb"
        | "timestamp with time zone"
        | "timestamp without time zone"
        | "time with time zone"
        | "time without time zone"
        | "name"
        | "regclass"
        | "regtype"
        | "oid" => "TEXT".to_string(),
        _ => pg_type.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_columns_become_rowid_integers() {
        assert_eq!(
            to_sqlite(
                "CREATE TABLE u (id SERIAL NOT NULL, n BIGSERIAL, serial_no TEXT DEFAULT 'serial', PRIMARY KEY (id))"
            ),
            "CREATE TABLE u (id INTEGER NOT NULL, n INTEGER, serial_no TEXT DEFAULT 'serial', PRIMARY KEY (id))"
        );
        assert_eq!(to_sqlite("SELECT serial FROM t"), "SELECT serial FROM t");
    }

    #[test]
    fn casts_become_sqlite_casts() {
        assert_eq!(
            rewrite_casts("INSERT INTO t VALUES (?1::VARCHAR, ?2, '{}'::jsonb)"),
            "INSERT INTO t VALUES (CAST(?1 AS VARCHAR), ?2, CAST('{}' AS TEXT))"
        );
        assert_eq!(
            rewrite_casts("SELECT count(*)::int, (a + 1)::double precision, x::int::text FROM t"),
            "SELECT CAST(count(*) AS int), CAST((a + 1) AS double precision), CAST(CAST(x AS int) AS text) FROM t"
        );
        assert_eq!(
            rewrite_casts("SELECT '::' || b::bytea"),
            "SELECT '::' || CAST(b AS BLOB)"
        );
        assert_eq!(rewrite_casts("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn dollar_parameters_become_positional_outside_literals() {
        assert_eq!(
            rewrite_parameters("SELECT $2, '$1', $1 -- $3"),
            "SELECT ?2, '$1', ?1 -- $3"
        );
        assert_eq!(rewrite_parameters("SELECT $name"), "SELECT $name");
    }
}
