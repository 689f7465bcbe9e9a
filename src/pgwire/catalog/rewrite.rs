//! Rewriting a PostgreSQL catalog query into SQLite's dialect.

/// Rewrites a PostgreSQL catalog query into SQLite's dialect: schema prefixes dropped, `~`
/// operators as REGEXP, `::type` casts removed, `= ANY (ARRAY[…])` as `IN (…)`, `E'…'` strings
/// unescaped, `COLLATE pg_catalog.default` dropped, `information_schema.x` as
/// `information_schema_x`.
pub fn rewrite(sql: &str) -> String {
    let sql = regclass_of_expressions(sql);
    let mut out = String::with_capacity(sql.len());
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    let mut code = String::new();
    let flush = |code: &mut String, out: &mut String| {
        out.push_str(&rewrite_code(code));
        code.clear();
    };
    while i < chars.len() {
        let c = chars[i];
        let escaped_string = (c == 'E' || c == 'e')
            && chars.get(i + 1) == Some(&'\'')
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_');
        if c == '\'' || escaped_string {
            flush(&mut code, &mut out);
            let start = if escaped_string { i + 2 } else { i + 1 };
            let mut j = start;
            let mut text = String::new();
            while j < chars.len() {
                if chars[j] == '\'' && chars.get(j + 1) == Some(&'\'') {
                    text.push_str("''");
                    j += 2;
                } else if chars[j] == '\'' {
                    break;
                } else if escaped_string && chars[j] == '\\' && j + 1 < chars.len() {
                    match chars[j + 1] {
                        'n' => text.push('\n'),
                        't' => text.push('\t'),
                        'r' => text.push('\r'),
                        // A quote inside an SQL literal is written twice.
                        '\'' => text.push_str("''"),
                        other => text.push(other),
                    }
                    j += 2;
                } else {
                    text.push(chars[j]);
                    j += 1;
                }
            }
            out.push('\'');
            out.push_str(&text);
            out.push('\'');
            i = j + 1;
        } else if let Some((replacement, length)) = quoted_schema_prefix(&chars[i..]) {
            // `"information_schema"."tables"` and `"pg_catalog"."pg_class"` (TypeORM quotes
            // every name) read the emulated relations, as their unquoted spellings do.
            code.push_str(&replacement);
            i += length;
        } else if c == '"' {
            flush(&mut code, &mut out);
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += 1;
            }
            out.extend(&chars[i..(j + 1).min(chars.len())]);
            i = j + 1;
        } else {
            code.push(c);
            i += 1;
        }
    }
    flush(&mut code, &mut out);
    rewrite_arrays(&out)
}

/// A parenthesized expression cast to regclass or regtype (TypeORM's `('"' || table_schema ||
/// '"."' || table_name || '"')::regclass`, `(…)::"regtype"`) as `shoal_regclass_oid((…))` —
/// the named relation's oid, as for a bound name — or `shoal_regtype((…))`, the type's name
/// as PostgreSQL prints a regtype. (The parentheses are matched here, on the whole text,
/// because the expression holds literals and quoted names that split the code rewrites'
/// chunks.)
fn regclass_of_expressions(sql: &str) -> String {
    static CAST: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"(?i)^\s*::\s*(?:"?pg_catalog"?\s*\.\s*)?("regclass"|regclass\b|"regtype"|regtype\b)"#,
        )
        .ok()
    });
    let Some(cast) = CAST.as_ref() else {
        return sql.to_string();
    };
    let lower = sql.to_ascii_lowercase();
    if !lower.contains("regclass") && !lower.contains("regtype") {
        return sql.to_string();
    }
    // (open, close, end of the cast, function), byte offsets.
    let mut casts = Vec::new();
    let mut opens = Vec::new();
    crate::sqltext::for_each_code_char(sql, |at, c| match c {
        '(' => opens.push(at),
        ')' => {
            if let Some(open) = opens.pop()
                && let Some(found) = cast.captures(&sql[at + 1..])
                && let (Some(whole), Some(kind)) = (found.get(0), found.get(1))
            {
                let function = if kind.as_str().to_ascii_lowercase().contains("regtype") {
                    "shoal_regtype("
                } else {
                    "shoal_regclass_oid("
                };
                casts.push((open, at, at + 1 + whole.end(), function));
            }
        }
        _ => {}
    });
    if casts.is_empty() {
        return sql.to_string();
    }
    let mut edits: Vec<(usize, usize, &str)> = Vec::new();
    for (open, close, end, function) in casts {
        edits.push((open, open, function));
        edits.push((close + 1, end, ")"));
    }
    edits.sort_by_key(|edit| std::cmp::Reverse(edit.0));
    let mut text = sql.to_string();
    for (start, end, replacement) in edits {
        text.replace_range(start..end, replacement);
    }
    text
}

/// A quoted `"information_schema"."x"` at the start of `text` as the emulated relation's name
/// (`information_schema_x`), or a quoted `"pg_catalog".` as nothing; with the characters read.
fn quoted_schema_prefix(text: &[char]) -> Option<(String, usize)> {
    const INFORMATION_SCHEMA: &str = "\"information_schema\".";
    const PG_CATALOG: &str = "\"pg_catalog\".";
    let starts_with = |prefix: &str| {
        prefix.chars().count() <= text.len() && prefix.chars().zip(text).all(|(a, b)| a == *b)
    };
    if starts_with(PG_CATALOG) {
        return Some((String::new(), PG_CATALOG.len()));
    }
    if !starts_with(INFORMATION_SCHEMA) {
        return None;
    }
    let rest = &text[INFORMATION_SCHEMA.len()..];
    let name: String = if rest.first() == Some(&'"') {
        rest[1..].iter().take_while(|c| **c != '"').collect()
    } else {
        rest.iter()
            .take_while(|c| c.is_alphanumeric() || **c == '_')
            .collect()
    };
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let quotes = if rest.first() == Some(&'"') { 2 } else { 0 };
    let length = INFORMATION_SCHEMA.len() + name.chars().count() + quotes;
    // The query may qualify columns by the view's own name (`columns.*`): without an alias
    // of its own, the emulated relation gets that name as one.
    let relation = if has_alias(&text[length..]) {
        format!("information_schema_{name}")
    } else {
        format!("information_schema_{name} AS \"{name}\"")
    };
    Some((relation, length))
}

/// Whether the text after a relation in FROM starts with an alias (`AS x`, `x`, `"x"`).
fn has_alias(after: &[char]) -> bool {
    const CLAUSE_WORDS: &[&str] = &[
        "where",
        "join",
        "left",
        "right",
        "inner",
        "outer",
        "cross",
        "full",
        "natural",
        "on",
        "using",
        "group",
        "order",
        "limit",
        "offset",
        "union",
        "except",
        "intersect",
        "having",
        "window",
        "returning",
        "for",
        "fetch",
    ];
    let rest: Vec<char> = after
        .iter()
        .copied()
        .skip_while(|c| c.is_whitespace())
        .collect();
    match rest.first() {
        Some('"') => true,
        Some(c) if c.is_alphabetic() || *c == '_' => {
            let word: String = rest
                .iter()
                .take_while(|c| c.is_alphanumeric() || **c == '_')
                .collect::<String>()
                .to_ascii_lowercase();
            !CLAUSE_WORDS.contains(&word.as_str())
        }
        _ => false,
    }
}

/// Compiles `pattern` once per process (the patterns are constants, checked by the tests).
macro_rules! cached_regex {
    ($pattern:expr) => {{
        static REGEX: std::sync::LazyLock<Option<regex::Regex>> =
            std::sync::LazyLock::new(|| regex::Regex::new($pattern).ok());
        REGEX.as_ref()
    }};
}

/// The code rewrites of `rewrite_code`, compiled once.
static CODE_REWRITES: std::sync::LazyLock<Vec<(regex::Regex, &'static str)>> =
    std::sync::LazyLock::new(|| {
        CODE_REPLACEMENTS
            .iter()
            .filter_map(|(pattern, replacement)| {
                regex::Regex::new(pattern)
                    .ok()
                    .map(|regex| (regex, *replacement))
            })
            .collect()
    });

/// The rewrites of `rewrite` that apply to code (outside literals and quoted names).
fn rewrite_code(code: &str) -> String {
    let mut text = code.to_string();
    for (regex, replacement) in CODE_REWRITES.iter() {
        text = regex.replace_all(&text, *replacement).into_owned();
    }
    text
}

/// Patterns and replacements applied to code, in order.
const CODE_REPLACEMENTS: &[(&str, &str)] = &[
    // A parameter cast to regclass (SQLAlchemy's `CAST($1 AS REGCLASS)` with 'pg_class' or a
    // table's name bound): the relation's oid.
    (
        r"(?i)\bCAST\s*\(\s*([$?]\d+)\s+AS\s+(?:pg_catalog\s*\.\s*)?regclass\s*\)",
        "shoal_regclass_oid($1)",
    ),
    (
        r"(?i)([$?]\d+)\s*::\s*(?:pg_catalog\s*\.\s*)?regclass\b",
        "shoal_regclass_oid($1)",
    ),
    // An oid cast to regclass shows the relation's name.
    (
        r"(?i)\b([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*::\s*(?:pg_catalog\s*\.\s*)?regclass\b",
        "shoal_regclass($1)",
    ),
    (
        r"(?i)OPERATOR\s*\(\s*pg_catalog\s*\.\s*!~\*?\s*\)",
        " NOT REGEXP ",
    ),
    (
        r"(?i)OPERATOR\s*\(\s*pg_catalog\s*\.\s*~\*?\s*\)",
        " REGEXP ",
    ),
    (r"(?i)\s+COLLATE\s+pg_catalog\s*\.\s*default", ""),
    // PostgreSQL takes any keyword as a column label after AS (Sequelize's `AS primary`);
    // SQLite's reserved words need quotes.
    (
        r"(?i)\bAS\s+(primary|unique|default|check|references|constraint|order|group|table|index|foreign|collate|values|limit|offset|transaction|natural|escape)\b",
        "AS \"$1\"",
    ),
    (r"(?i)\bpg_catalog\s*\.\s*", ""),
    (r"(?i)\binformation_schema\s*\.\s*", "information_schema_"),
    // A relation is its own only partition ancestor.
    (
        r"(?i)\bpg_partition_ancestors\s*\(([^()]*)\)\s+WITH\s+ORDINALITY\s+AS\s+(\w+)\s*\(\s*(\w+)\s*,\s*(\w+)\s*\)",
        "(SELECT $1 AS $3, 1 AS $4) AS $2",
    ),
    // array(SELECT …) as a scalar subquery: the catalogs it reads here are empty or
    // single-valued.
    (r"(?i)\barray\s*\(\s*select\b", "(SELECT"),
    (r"::\s*[A-Za-z_][A-Za-z0-9_]*(\s*\[\s*\])?", ""),
    (r"!~\*?", " NOT REGEXP "),
    (r"~\*?", " REGEXP "),
];

/// `x = ANY (ARRAY[a, b])` → `x IN (a, b)`; a remaining `ARRAY[a, b]` → `(a, b)`.
fn rewrite_arrays(sql: &str) -> String {
    let any = cached_regex!(r"(?i)(=|<>|!=)\s*ANY\s*\(\s*ARRAY\s*\[");
    let mut text = sql.to_string();
    while let Some(found) = any.and_then(|r| r.find(&text)) {
        let negated = !found.as_str().starts_with('=');
        let Some(close) = matching_bracket(&text, found.end()) else {
            break;
        };
        // `]` then optional spaces then `)`.
        let after = text[close + 1..].trim_start();
        let rest = after.strip_prefix(')').unwrap_or(after).to_string();
        let inside = text[found.end()..close].to_string();
        let operator = if negated { "NOT IN" } else { "IN" };
        text = format!("{}{operator} ({inside}){rest}", &text[..found.start()]);
    }
    // `x = ANY (array_column)` (`attnum = ANY (conkey)`, `= ANY (indkey)`): membership in the
    // array's elements.
    let any_array = cached_regex!(r"(?i)=\s*ANY\s*\(");
    let mut searched = 0;
    while let Some(found) = any_array.and_then(|r| r.find_at(&text, searched)) {
        let Some(close) = matching_close(&text, found.end(), '(', ')') else {
            break;
        };
        let inside = text[found.end()..close].to_string();
        let membership = format!(" IN (SELECT value FROM json_each(shoal_array_json({inside})))");
        searched = found.start() + membership.len();
        text = format!(
            "{}{membership}{}",
            &text[..found.start()],
            &text[close + 1..]
        );
    }
    let array = cached_regex!(r"(?i)\bARRAY\s*\[");
    while let Some(found) = array.and_then(|r| r.find(&text)) {
        let Some(close) = matching_bracket(&text, found.end()) else {
            break;
        };
        let inside = text[found.end()..close].to_string();
        text = format!("{}({inside}){}", &text[..found.start()], &text[close + 1..]);
    }
    // Array subscripts (`confkey[1]`): the element, read from the array's JSON form. Vectors
    // (`indkey`, `indclass`, `indoption`, `proargtypes`) count from 0, arrays from 1.
    if let Some(subscript) = cached_regex!(r"([A-Za-z_][A-Za-z0-9_.]*)\s*\[([^\]':]*)\]") {
        text = subscript
            .replace_all(&text, |found: &regex::Captures<'_>| {
                let array = &found[1];
                let index = found[2].trim();
                if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                    // A computed position (psql's `prattrs[s]` over publications, which are
                    // always empty here): the array as it is.
                    return array.to_string();
                }
                let column = array
                    .rsplit('.')
                    .next()
                    .unwrap_or(array)
                    .to_ascii_lowercase();
                let vector = matches!(
                    column.as_str(),
                    "indkey" | "indclass" | "indoption" | "indcollation" | "proargtypes"
                );
                let offset = if vector { "" } else { " - 1" };
                format!("json_extract(shoal_array_json({array}), '$[' || ({index}{offset}) || ']')")
            })
            .into_owned();
    }
    text
}

/// The index of the `]` closing a `[` that ends at `start`, skipping string literals.
fn matching_bracket(text: &str, start: usize) -> Option<usize> {
    matching_close(text, start, '[', ']')
}

/// The offset of the `close` that ends a group whose `open` precedes `start` (literals skipped).
fn matching_close(text: &str, start: usize, open: char, close: char) -> Option<usize> {
    let mut depth = 1;
    let mut in_literal = false;
    for (offset, c) in text[start..].char_indices() {
        match c {
            '\'' => in_literal = !in_literal,
            c if c == open && !in_literal => depth += 1,
            c if c == close && !in_literal => {
                depth -= 1;
                if depth == 0 {
                    return Some(start + offset);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(CODE_REWRITES.len(), CODE_REPLACEMENTS.len());
    }

    #[test]
    fn array_subscripts_read_the_element_counting_vectors_from_zero() {
        assert_eq!(
            rewrite("SELECT a.attname FROM pg_attribute a WHERE a.attnum = c.confkey[1]"),
            "SELECT a.attname FROM pg_attribute a WHERE a.attnum = \
             json_extract(shoal_array_json(c.confkey), '$[' || (1 - 1) || ']')"
        );
        assert!(rewrite("SELECT i.indkey[0] FROM pg_index i").contains("'$[' || (0) || ']'"));
        // A computed position is left to the array (psql's publication columns, none here).
        assert_eq!(
            rewrite("SELECT x FROM t WHERE attnum = pr.prattrs[s]"),
            "SELECT x FROM t WHERE attnum = pr.prattrs"
        );
    }

    #[test]
    fn psql_operators_and_casts_become_sqlite() {
        let rewritten = rewrite(
            "SELECT c.oid::pg_catalog.regclass FROM pg_catalog.pg_class c \
             WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default \
             AND n.nspname !~ '^pg_toast' AND c.relkind = ANY (ARRAY['r', 'p'])",
        );
        assert_eq!(
            rewritten,
            "SELECT shoal_regclass(c.oid) FROM pg_class c WHERE c.relname  REGEXP  '^(t)$' \
             AND n.nspname  NOT REGEXP  '^pg_toast' AND c.relkind IN ('r', 'p')"
        );
    }

    #[test]
    fn escape_strings_are_unescaped_and_literals_left_alone() {
        assert_eq!(rewrite("SELECT E'it\\'s'"), "SELECT 'it''s'");
        assert_eq!(
            rewrite("SELECT E'a\\nb', 'x::int ~ y'"),
            "SELECT 'a\nb', 'x::int ~ y'"
        );
    }
}
