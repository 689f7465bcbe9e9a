//! Scanning SQL text the way SQLite reads it: what is code (not a literal, quoted name or
//! comment), where statements end (a `;` inside a trigger body does not end one), whether a
//! statement is complete. Shared by the shell and the PostgreSQL endpoint.

use std::ffi::CString;

/// Where the scanner is in the text.
#[derive(Clone, Copy, PartialEq)]
enum State {
    Code,
    /// Inside a literal or quoted identifier that ends with this character.
    Quoted(char),
    LineComment,
    BlockComment,
}

/// Calls `visit(byte_offset, char)` for every character that is SQL code (not in a literal,
/// quoted identifier or comment).
pub fn for_each_code_char(sql: &str, mut visit: impl FnMut(usize, char)) {
    let mut state = State::Code;
    let mut chars = sql.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match state {
            State::Code => match c {
                '\'' | '"' | '`' => state = State::Quoted(c),
                '[' => state = State::Quoted(']'),
                '-' if chars.peek().is_some_and(|(_, next)| *next == '-') => {
                    chars.next();
                    state = State::LineComment;
                }
                '/' if chars.peek().is_some_and(|(_, next)| *next == '*') => {
                    chars.next();
                    state = State::BlockComment;
                }
                _ => visit(at, c),
            },
            // A doubled quote inside a literal is an escaped quote: leaving and re-entering
            // the quoted state at once has the same effect.
            State::Quoted(end) if c == end => state = State::Code,
            State::Quoted(_) => {}
            State::LineComment if c == '\n' => state = State::Code,
            State::LineComment => {}
            State::BlockComment if c == '*' && chars.peek().is_some_and(|(_, n)| *n == '/') => {
                chars.next();
                state = State::Code;
            }
            State::BlockComment => {}
        }
    }
}

/// Whether SQLite considers `sql` one or more complete statements (a `;` inside a trigger
/// body does not end the statement).
pub fn is_complete(sql: &str) -> bool {
    let Ok(text) = CString::new(sql) else {
        return false;
    };
    // SAFETY: sqlite3_complete only reads the NUL-terminated string it is given.
    unsafe { rusqlite::ffi::sqlite3_complete(text.as_ptr()) != 0 }
}

/// The statements in `sql`, trimmed, without their terminating `;`, empty ones dropped.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let mut statements = Vec::new();
    let mut start = 0;
    let mut boundaries = Vec::new();
    for_each_code_char(sql, |at, c| {
        if c == ';' {
            boundaries.push(at);
        }
    });
    for at in boundaries {
        if at < start || !is_complete(&sql[start..=at]) {
            continue;
        }
        statements.push(&sql[start..at]);
        start = at + 1;
    }
    statements.push(&sql[start..]);
    statements
        .into_iter()
        .map(str::trim)
        .filter(|statement| !is_blank(statement))
        .collect()
}

/// Whether `sql` holds nothing but whitespace and comments.
fn is_blank(sql: &str) -> bool {
    let mut blank = true;
    for_each_code_char(sql, |_, c| blank &= c.is_whitespace());
    blank
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_on_semicolons_in_code_only() {
        assert_eq!(
            split_statements("SELECT 1; SELECT 'a;b' ; -- c;d\n SELECT \"x;\" ;"),
            ["SELECT 1", "SELECT 'a;b'", "-- c;d\n SELECT \"x;\""]
        );
        assert_eq!(split_statements(" ; ;"), Vec::<&str>::new());
        assert_eq!(split_statements("SELECT 1 /* ; */"), ["SELECT 1 /* ; */"]);
        assert_eq!(split_statements("SELECT 'it''s;'"), ["SELECT 'it''s;'"]);
    }

    #[test]
    fn a_trigger_body_stays_one_statement() {
        let sql = "CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES(1); \
                   UPDATE c SET n = n + 1; END; SELECT 2";
        let statements = split_statements(sql);
        assert_eq!(statements.len(), 2, "{statements:?}");
        assert!(statements[0].ends_with("END"));
    }
}
