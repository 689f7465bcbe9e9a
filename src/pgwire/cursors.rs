//! Server-side cursors (`DECLARE name CURSOR FOR query`, `FETCH n FROM name`, `CLOSE name`), as
//! Django's `.iterator()`/`dumpdata` and SQLAlchemy's `stream_results` use them through psycopg:
//! the query runs once when the cursor is declared (one consistent read at the session's
//! consistency level, or inside its transaction block) and its rows are kept in the session,
//! handed out by FETCH; a Describe of the cursor's name (psycopg asks for it) answers its
//! columns. A cursor lives until CLOSE, the end of the session, or — without WITH HOLD — the
//! end of the transaction block it was declared in. Backward and absolute fetches and MOVE are
//! not served.

use std::collections::{HashMap, VecDeque};
use std::sync::{LazyLock, Mutex};

use crate::pgwire::types::PgType;
use crate::types::value::SqlValue;

/// Cursors one session may hold open.
pub const CURSORS_MAX: usize = 64;

/// Result columns as described: name and type.
pub type Columns = Vec<(String, PgType)>;

/// One declared cursor: its columns as described, and the rows not fetched yet.
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    pub columns: Columns,
    pub rows: VecDeque<Vec<SqlValue>>,
    /// Declared WITH HOLD (or outside a transaction block): it outlives the block's end.
    pub hold: bool,
}

/// A session's open cursors, by name.
#[derive(Debug, Default)]
pub struct Cursors {
    open: Mutex<HashMap<String, Cursor>>,
}

impl Cursors {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cursor>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `cursor` under `name`; an error naming why when the name is taken or the
    /// session holds too many.
    pub fn declare(&self, name: &str, cursor: Cursor) -> Result<(), String> {
        let mut open = self.open();
        if open.contains_key(name) {
            return Err(format!("cursor \"{name}\" already exists"));
        }
        if open.len() >= CURSORS_MAX {
            return Err(format!(
                "a session holds at most {CURSORS_MAX} open cursors; close one first"
            ));
        }
        open.insert(name.to_string(), cursor);
        Ok(())
    }

    /// The next `count` rows of `name` (all that are left with `None`), with its columns.
    pub fn fetch(&self, name: &str, count: Option<usize>) -> Option<(Columns, Vec<Vec<SqlValue>>)> {
        let mut open = self.open();
        let cursor = open.get_mut(name)?;
        let take = count.unwrap_or(cursor.rows.len()).min(cursor.rows.len());
        let rows = cursor.rows.drain(..take).collect();
        Some((cursor.columns.clone(), rows))
    }

    /// The columns `name` describes, if it is open.
    pub fn columns(&self, name: &str) -> Option<Columns> {
        self.open().get(name).map(|cursor| cursor.columns.clone())
    }

    /// Closes the cursors a transaction block's end closes (those without WITH HOLD).
    pub fn end_of_transaction(&self) {
        self.open().retain(|_, cursor| cursor.hold);
    }

    /// Closes `name` (every cursor with `None`); whether it was open.
    pub fn close(&self, name: Option<&str>) -> bool {
        let mut open = self.open();
        match name {
            Some(name) => open.remove(name).is_some(),
            None => {
                open.clear();
                true
            }
        }
    }
}

/// A cursor statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorStatement {
    /// `DECLARE name … CURSOR [WITH HOLD] … FOR query`, with the query as written.
    Declare {
        name: String,
        query: String,
        hold: bool,
    },
    /// `FETCH [FORWARD | NEXT] [n | ALL] [FROM | IN] name`; `count` is `None` for ALL.
    Fetch { name: String, count: Option<usize> },
    /// `CLOSE name | ALL`.
    Close { name: Option<String> },
}

static DECLARE: LazyLock<Option<regex::Regex>> = LazyLock::new(|| {
    regex::Regex::new(
        r#"(?is)^\s*declare\s+("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)\s+(?:binary\s+)?(?:(?:a|in)?sensitive\s+)?(?:no\s+)?(?:scroll\s+)?cursor\s+(?:(with|without)\s+hold\s+)?for\s+(.+?)\s*;?\s*$"#,
    )
    .ok()
});

/// The cursor statement `sql` is, if it is one Shoal serves.
pub fn cursor_statement(sql: &str) -> Option<CursorStatement> {
    let first = sql.split_whitespace().next()?.to_ascii_lowercase();
    let words = || -> Vec<&str> {
        sql.trim()
            .trim_end_matches(';')
            .split_whitespace()
            .collect()
    };
    match first.as_str() {
        "declare" => {
            let found = DECLARE.as_ref()?.captures(sql)?;
            Some(CursorStatement::Declare {
                name: identifier(found.get(1)?.as_str()),
                hold: found
                    .get(2)
                    .is_some_and(|hold| hold.as_str().eq_ignore_ascii_case("with")),
                query: found.get(3)?.as_str().to_string(),
            })
        }
        "fetch" => {
            let words = words();
            let name = identifier(words.last()?);
            let middle: Vec<String> = words
                .get(1..words.len().saturating_sub(1))?
                .iter()
                .map(|w| w.to_ascii_lowercase())
                .filter(|w| !matches!(w.as_str(), "forward" | "from" | "in"))
                .collect();
            let count = match middle.as_slice() {
                [] => Some(1),
                [word] if word == "next" => Some(1),
                [word] if word == "all" => None,
                [word] => Some(word.parse().ok()?),
                _ => return None,
            };
            Some(CursorStatement::Fetch { name, count })
        }
        "close" => match words().as_slice() {
            [_, all] if all.eq_ignore_ascii_case("all") => {
                Some(CursorStatement::Close { name: None })
            }
            [_, name] => Some(CursorStatement::Close {
                name: Some(identifier(name)),
            }),
            _ => None,
        },
        _ => None,
    }
}

/// A name as PostgreSQL resolves it: quoted kept as written, else lower-cased.
fn identifier(text: &str) -> String {
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => text.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_statements_are_read_as_psycopg_writes_them() {
        assert_eq!(
            cursor_statement(
                "DECLARE \"_django_curs_1_sync_1\" NO SCROLL CURSOR WITH HOLD FOR SELECT \"a\".\"id\" FROM \"a\" WHERE x = $1"
            ),
            Some(CursorStatement::Declare {
                name: "_django_curs_1_sync_1".into(),
                query: "SELECT \"a\".\"id\" FROM \"a\" WHERE x = $1".into(),
                hold: true
            })
        );
        assert_eq!(
            cursor_statement("FETCH FORWARD 2000 FROM \"c\""),
            Some(CursorStatement::Fetch {
                name: "c".into(),
                count: Some(2000)
            })
        );
        assert_eq!(
            cursor_statement("fetch all in C"),
            Some(CursorStatement::Fetch {
                name: "c".into(),
                count: None
            })
        );
        assert_eq!(
            cursor_statement("FETCH NEXT FROM c"),
            Some(CursorStatement::Fetch {
                name: "c".into(),
                count: Some(1)
            })
        );
        assert_eq!(
            cursor_statement("CLOSE \"c\""),
            Some(CursorStatement::Close {
                name: Some("c".into())
            })
        );
        assert_eq!(cursor_statement("SELECT 1"), None);
        assert_eq!(cursor_statement("FETCH BACKWARD 2 FROM c"), None);
    }

    #[test]
    fn a_cursor_hands_out_its_rows_in_order_until_closed() {
        let cursors = Cursors::default();
        let rows = (1..=5).map(|i| vec![SqlValue::Integer(i)]).collect();
        cursors
            .declare(
                "c",
                Cursor {
                    columns: vec![("id".into(), PgType::Int8)],
                    rows,
                    hold: false,
                },
            )
            .unwrap();
        assert!(cursors.declare("c", Cursor::default()).is_err());
        let (_, first) = cursors.fetch("c", Some(2)).unwrap();
        assert_eq!(
            first,
            [vec![SqlValue::Integer(1)], vec![SqlValue::Integer(2)]]
        );
        let (_, rest) = cursors.fetch("c", None).unwrap();
        assert_eq!(rest.len(), 3);
        assert_eq!(cursors.fetch("c", Some(10)).unwrap().1.len(), 0);
        assert!(cursors.close(Some("c")));
        assert!(cursors.fetch("c", Some(1)).is_none());
        // The end of a transaction block closes the cursors declared without WITH HOLD.
        let kept = Cursor {
            hold: true,
            ..Cursor::default()
        };
        cursors.declare("held", kept).unwrap();
        cursors.declare("gone", Cursor::default()).unwrap();
        cursors.end_of_transaction();
        assert!(cursors.columns("held").is_some() && cursors.columns("gone").is_none());
    }
}
