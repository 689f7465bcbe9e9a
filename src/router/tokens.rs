//! A tokenizer for the few decisions the router makes from a statement's text rather than
//! from SQLite's compilation of it: whether it calls a Shoal function, its INSERT conflict
//! clause, whether it pins one shard key (`WHERE key = …`), whether it has subqueries.
//! SQLite's own tokenizer is not exposed; this one follows its rules for what matters here
//! (strings, quoted names, comments, parameters) and never decides anything SQLite would
//! judge differently: where unsure, the router takes the general path.

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A keyword or unquoted name, lower-cased.
    Word(String),
    /// A quoted name ("x", [x], `x`), as written inside the quotes.
    Quoted(String),
    /// A string literal's text.
    Text(String),
    /// A numeric literal as written.
    Number(String),
    /// A blob literal (X'…'), as written.
    Blob(String),
    /// A parameter: `?`, `?N`, `:name`, `@name`, `$name`, as written.
    Param(String),
    /// Any other character or operator (`=`, `==`, `<>`, `(`, `,`, `.`, `;` …).
    Symbol(String),
}

impl Token {
    /// Whether this is the keyword (or unquoted name) `word`, lower-case.
    pub fn is(&self, word: &str) -> bool {
        matches!(self, Token::Word(w) if w == word)
    }

    /// A name: an unquoted word or a quoted name (lower-cased, as SQLite compares names).
    pub fn name(&self) -> Option<String> {
        match self {
            Token::Word(word) => Some(word.clone()),
            Token::Quoted(name) => Some(name.to_ascii_lowercase()),
            _ => None,
        }
    }

    pub fn is_symbol(&self, symbol: &str) -> bool {
        matches!(self, Token::Symbol(s) if s == symbol)
    }
}

/// The tokens of `sql`; `None` when it does not tokenize (an unterminated string, say), in
/// which case the router decides nothing from its text.
pub fn tokenize(sql: &str) -> Option<Vec<Token>> {
    Some(spans(sql)?.into_iter().map(|(token, _)| token).collect())
}

/// The statements of a text holding several (`a; b;`), each as written; `None` when a
/// text holding `;` does not tokenize. A trigger's body (`BEGIN … ; … END`) stays in its statement.
pub fn split_statements(sql: &str) -> Option<Vec<String>> {
    if !sql.contains(';') {
        // No separator anywhere: one statement.
        return Some(vec![sql.trim().to_string()]);
    }
    let tokens = spans(sql)?;
    let mut statements = Vec::new();
    let mut start: Option<usize> = None;
    let mut trigger = false;
    let mut in_body = false;
    // CASE expressions open inside the body: their END closes them, not the body.
    let mut open_cases = 0usize;
    let mut ended_body = false;
    for (at, (token, offset)) in tokens.iter().enumerate() {
        if token.is_symbol(";") {
            if !in_body || ended_body {
                if let Some(from) = start.take() {
                    statements.push(sql[from..*offset].trim().to_string());
                }
                trigger = false;
                in_body = false;
            }
            ended_body = false;
            continue;
        }
        ended_body = false;
        if in_body {
            if token.is("case") {
                open_cases += 1;
            } else if token.is("end") {
                match open_cases.checked_sub(1) {
                    Some(left) => open_cases = left,
                    None => ended_body = true,
                }
            }
        }
        if start.is_none() {
            start = Some(*offset);
            trigger = token.is("create")
                && tokens[at + 1..]
                    .iter()
                    .take(3)
                    .any(|(t, _)| t.is("trigger"));
        }
        if trigger && token.is("begin") {
            in_body = true;
            open_cases = 0;
        }
    }
    if let Some(from) = start {
        statements.push(sql[from..].trim().to_string());
    }
    Some(statements)
}

/// One token and where it is in the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Lexeme {
    pub token: Token,
    /// Byte offsets of its first character and of the one after its last.
    pub start: usize,
    pub end: usize,
}

/// The tokens of `sql` with where each is; `None` when it does not tokenize.
pub fn lex(sql: &str) -> Option<Vec<Lexeme>> {
    let mut ends = Vec::new();
    let tokens = scan(sql, &mut ends)?;
    Some(
        tokens
            .into_iter()
            .zip(ends)
            .map(|((token, start), end)| Lexeme { token, start, end })
            .collect(),
    )
}

/// The tokens of `sql` with the byte offset each starts at.
fn spans(sql: &str) -> Option<Vec<(Token, usize)>> {
    scan(sql, &mut Vec::new())
}

/// The tokens of `sql` with the byte offset each starts at; `ends` receives where each ends.
fn scan(sql: &str, ends: &mut Vec<usize>) -> Option<Vec<(Token, usize)>> {
    let bytes = sql.as_bytes();
    let mut tokens: Vec<(Token, usize)> = Vec::new();
    let mut at = 0;
    let text = |from: usize, to: usize| sql.get(from..to).map(str::to_string);
    while at < bytes.len() {
        if ends.len() < tokens.len() {
            ends.push(at);
        }
        let c = bytes[at];
        let begin = at;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => at += 1,
            b'-' if bytes.get(at + 1) == Some(&b'-') => {
                while at < bytes.len() && bytes[at] != b'\n' {
                    at += 1;
                }
            }
            b'/' if bytes.get(at + 1) == Some(&b'*') => {
                let end = sql.get(at + 2..)?.find("*/").map(|i| at + 2 + i + 2);
                at = end.unwrap_or(bytes.len());
            }
            b'\'' => {
                let (value, next) = quoted(sql, at, b'\'')?;
                tokens.push((Token::Text(value), begin));
                at = next;
            }
            b'"' | b'`' => {
                let (value, next) = quoted(sql, at, c)?;
                tokens.push((Token::Quoted(value), begin));
                at = next;
            }
            b'[' => {
                let end = sql.get(at + 1..)?.find(']')? + at + 1;
                tokens.push((Token::Quoted(text(at + 1, end)?), begin));
                at = end + 1;
            }
            b'x' | b'X' if bytes.get(at + 1) == Some(&b'\'') => {
                let (value, next) = quoted(sql, at + 1, b'\'')?;
                tokens.push((Token::Blob(value), begin));
                at = next;
            }
            b'0'..=b'9' | b'.'
                if c != b'.' || bytes.get(at + 1).is_some_and(u8::is_ascii_digit) =>
            {
                let start = at;
                while at < bytes.len()
                    && (bytes[at].is_ascii_alphanumeric()
                        || bytes[at] == b'.'
                        || bytes[at] == b'_'
                        || ((bytes[at] == b'+' || bytes[at] == b'-')
                            && matches!(bytes[at - 1], b'e' | b'E')
                            && !sql[start..at].starts_with("0x")))
                {
                    at += 1;
                }
                tokens.push((Token::Number(text(start, at)?), begin));
            }
            b'?' | b':' | b'@' | b'$' => {
                let start = at;
                at += 1;
                while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
                    at += 1;
                }
                tokens.push((Token::Param(text(start, at)?), begin));
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = at;
                while at < bytes.len()
                    && (bytes[at].is_ascii_alphanumeric()
                        || bytes[at] == b'_'
                        || bytes[at] == b'$'
                        || bytes[at] >= 0x80)
                {
                    at += 1;
                }
                tokens.push((Token::Word(text(start, at)?.to_ascii_lowercase()), begin));
            }
            _ => {
                let two = sql.get(at..at + 2);
                let symbol = match two {
                    Some("==" | "!=" | "<>" | "<=" | ">=" | "||" | "<<" | ">>" | "->") => {
                        two?.to_string()
                    }
                    _ => text(at, at + 1)?,
                };
                at += symbol.len();
                tokens.push((Token::Symbol(symbol), begin));
            }
        }
    }
    if ends.len() < tokens.len() {
        ends.push(at);
    }
    Some(tokens)
}

/// The text of the quoted token starting at `at` (doubled quotes folded) and where it ends.
fn quoted(sql: &str, at: usize, quote: u8) -> Option<(String, usize)> {
    let bytes = sql.as_bytes();
    let mut value = Vec::new();
    let mut i = at + 1;
    loop {
        let c = *bytes.get(i)?;
        if c == quote {
            if bytes.get(i + 1) == Some(&quote) {
                value.push(quote);
                i += 2;
                continue;
            }
            return Some((String::from_utf8(value).ok()?, i + 1));
        }
        value.push(c);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_names_comments_and_parameters_are_single_tokens() {
        let tokens = tokenize(
            "SELECT 'it''s', \"Col\" -- a comment\n FROM [t] /* x */ WHERE k = ?1 AND v >= 1.5e-3",
        )
        .unwrap();
        assert_eq!(
            tokens,
            vec![
                Token::Word("select".into()),
                Token::Text("it's".into()),
                Token::Symbol(",".into()),
                Token::Quoted("Col".into()),
                Token::Word("from".into()),
                Token::Quoted("t".into()),
                Token::Word("where".into()),
                Token::Word("k".into()),
                Token::Symbol("=".into()),
                Token::Param("?1".into()),
                Token::Word("and".into()),
                Token::Word("v".into()),
                Token::Symbol(">=".into()),
                Token::Number("1.5e-3".into()),
            ]
        );
    }

    #[test]
    fn scripts_split_into_statements_and_trigger_bodies_stay_whole() {
        assert_eq!(
            split_statements("INSERT INTO t VALUES(';'); DROP INDEX i;").unwrap(),
            vec!["INSERT INTO t VALUES(';')", "DROP INDEX i"]
        );
        assert_eq!(
            split_statements(
                "CREATE TRIGGER r AFTER INSERT ON t BEGIN DELETE FROM u; SELECT 1; END; SELECT 2"
            )
            .unwrap(),
            vec![
                "CREATE TRIGGER r AFTER INSERT ON t BEGIN DELETE FROM u; SELECT 1; END",
                "SELECT 2"
            ]
        );
        assert_eq!(
            split_statements(
                "CREATE TRIGGER r AFTER INSERT ON t BEGIN SELECT CASE WHEN 1 THEN 2 END; \
                 SELECT CASE 1 WHEN 1 THEN CASE WHEN 0 THEN 1 END END; END; SELECT 2"
            )
            .unwrap(),
            vec![
                "CREATE TRIGGER r AFTER INSERT ON t BEGIN SELECT CASE WHEN 1 THEN 2 END; \
                 SELECT CASE 1 WHEN 1 THEN CASE WHEN 0 THEN 1 END END; END",
                "SELECT 2"
            ],
            "a CASE … END inside the body does not end it"
        );
        assert_eq!(split_statements("SELECT 1").unwrap(), vec!["SELECT 1"]);
    }

    #[test]
    fn lexemes_say_where_each_token_is() {
        let sql = "SELECT a,  'it''s' -- note\n FROM t";
        let spans: Vec<&str> = lex(sql)
            .unwrap()
            .iter()
            .map(|l| &sql[l.start..l.end])
            .collect();
        assert_eq!(spans, ["SELECT", "a", ",", "'it''s'", "FROM", "t"]);
    }

    #[test]
    fn an_unterminated_string_does_not_tokenize() {
        assert_eq!(tokenize("SELECT 'abc"), None);
    }
}
