//! The statements that manage databases — `CREATE DATABASE`, `DROP DATABASE`,
//! `ALTER DATABASE … RENAME TO`, `ALTER DATABASE … SET (shards = N)`,
//! `ALTER DATABASE … CANCEL RESHARDING`, `ALTER DATABASE … BALANCE [BY …] [DRY RUN]`,
//! `ALTER DATABASE … SET (balance = …)`, `SHOW DATABASES` — recognized in what clients send over any
//! protocol and parsed here. SQLite has no such statements, so no SQL parser knows them;
//! the grammar is a handful of words, tokenized by hand.

/// Most replicas (voters or read replicas) a database may ask for.
pub const REPLICAS_MAX: u32 = 9;
/// Most shard groups a database may have.
pub const SHARDS_MAX: u32 = 64;
/// Longest database name, as PostgreSQL's (NAMEDATALEN - 1).
pub const NAME_BYTES_MAX: usize = 63;

/// A database statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseStatement {
    Create {
        name: String,
        if_not_exists: bool,
        replicas: Option<u32>,
        read_replicas: u32,
        /// Shard groups (1: not sharded).
        shards: u32,
        /// Every table created in it is distributed by its rowid or primary key
        /// (`distribute = all`), unless made a reference table.
        distribute_all: bool,
    },
    Drop {
        name: String,
        if_exists: bool,
    },
    Rename {
        from: String,
        to: String,
    },
    /// Moves the database's slots over `shards` groups (adding or removing groups), online.
    Reshard {
        name: String,
        shards: u32,
    },
    /// Drops the resharding steps not started yet (the one running finishes).
    CancelResharding {
        name: String,
    },
    /// Moves slots from the groups weighing most `by` to those weighing least; with
    /// `dry_run`, only answers the moves it would make.
    Balance {
        name: String,
        by: BalanceMeasure,
        dry_run: bool,
    },
    /// Turns automatic balancing on (by a measure) or off (`None`).
    SetAutoBalance {
        name: String,
        by: Option<BalanceMeasure>,
    },
    Show,
}

/// What slot balancing weighs a bucket of slots by (`catalog::slot_balance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceMeasure {
    /// Rows of its distributed tables.
    Rows,
    /// Bytes of their rows' values.
    Bytes,
    /// Writes routed to it in the last minute or two, counted by every node's router.
    Writes,
}

impl BalanceMeasure {
    pub fn as_str(self) -> &'static str {
        match self {
            BalanceMeasure::Rows => "rows",
            BalanceMeasure::Bytes => "bytes",
            BalanceMeasure::Writes => "writes",
        }
    }

    pub fn parse(word: &str) -> Option<BalanceMeasure> {
        match word {
            "rows" => Some(BalanceMeasure::Rows),
            "bytes" => Some(BalanceMeasure::Bytes),
            "writes" => Some(BalanceMeasure::Writes),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An unquoted word, lower-cased (PostgreSQL folds unquoted names).
    Word(String),
    /// A double-quoted name, as written.
    Quoted(String),
    Number(String),
    Symbol(char),
}

/// The database statement `sql` is, if it is one: `None` for any other statement (SQLite's
/// to run), `Some(Err)` for a database statement that is malformed, naming what is wrong.
pub fn parse(sql: &str) -> Option<Result<DatabaseStatement, String>> {
    // Every statement a client sends passes here: look at two words before reading more.
    let opening = tokenize(sql, 2).ok()?;
    let ours = matches!(
        &opening[..],
        [Token::Word(a), Token::Word(b)]
            if matches!((a.as_str(), b.as_str()),
                ("create" | "drop" | "alter", "database") | ("show", "databases"))
    );
    if !ours {
        return None;
    }
    let tokens = match tokenize(sql, usize::MAX) {
        Ok(tokens) => tokens,
        Err(message) => return Some(Err(message)),
    };
    let mut words = Parser { tokens, at: 0 };
    let first = words.word()?;
    let second = words.word();
    let statement = match (first.as_str(), second.as_deref()) {
        ("create", Some("database")) => words.create(),
        ("drop", Some("database")) => words.drop(),
        ("alter", Some("database")) => words.alter(),
        ("show", Some("databases")) => Ok(DatabaseStatement::Show),
        _ => return None,
    };
    Some(statement.and_then(|statement| {
        words.eat_symbol(';');
        match words.peek() {
            None => Ok(statement),
            Some(token) => Err(format!(
                "unexpected {} after the database statement",
                describe(token)
            )),
        }
    }))
}

fn describe(token: &Token) -> String {
    match token {
        Token::Word(word) => format!("`{word}`"),
        Token::Quoted(name) => format!("\"{name}\""),
        Token::Number(number) => format!("`{number}`"),
        Token::Symbol(symbol) => format!("`{symbol}`"),
    }
}

/// The first `limit` tokens of `sql`.
fn tokenize(sql: &str, limit: usize) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while tokens.len() < limit
        && let Some((at, c)) = chars.next()
    {
        match c {
            c if c.is_whitespace() => {}
            '-' if chars.peek().is_some_and(|(_, n)| *n == '-') => {
                for (_, n) in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek().is_some_and(|(_, n)| *n == '*') => {
                chars.next();
                let mut previous = ' ';
                let mut closed = false;
                for (_, n) in chars.by_ref() {
                    if previous == '*' && n == '/' {
                        closed = true;
                        break;
                    }
                    previous = n;
                }
                if !closed {
                    return Err("unterminated /* comment".into());
                }
            }
            '"' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some((_, '"')) if chars.peek().is_some_and(|(_, n)| *n == '"') => {
                            chars.next();
                            name.push('"');
                        }
                        Some((_, '"')) => break,
                        Some((_, n)) => name.push(n),
                        None => return Err(format!("unterminated quoted name at byte {at}")),
                    }
                }
                tokens.push(Token::Quoted(name));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut word = String::from(c);
                while let Some((_, n)) = chars.peek().copied() {
                    if n.is_ascii_alphanumeric() || n == '_' || n == '$' {
                        word.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Word(word.to_ascii_lowercase()));
            }
            c if c.is_ascii_digit() => {
                let mut number = String::from(c);
                while let Some((_, n)) = chars.peek().copied() {
                    if n.is_ascii_digit() {
                        number.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Number(number));
            }
            '(' | ')' | '=' | ',' | ';' => tokens.push(Token::Symbol(c)),
            other => return Err(format!("unexpected character {other:?} at byte {at}")),
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn word(&mut self) -> Option<String> {
        match self.peek() {
            Some(Token::Word(word)) => {
                let word = word.clone();
                self.at += 1;
                Some(word)
            }
            _ => None,
        }
    }

    fn eat_word(&mut self, wanted: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(word)) if word == wanted) {
            self.at += 1;
            return true;
        }
        false
    }

    fn eat_symbol(&mut self, wanted: char) -> bool {
        if self.peek() == Some(&Token::Symbol(wanted)) {
            self.at += 1;
            return true;
        }
        false
    }

    fn expect_word(&mut self, wanted: &str) -> Result<(), String> {
        if self.eat_word(wanted) {
            return Ok(());
        }
        Err(match self.peek() {
            Some(token) => format!(
                "expected {}, found {}",
                wanted.to_uppercase(),
                describe(token)
            ),
            None => format!("expected {} at the end", wanted.to_uppercase()),
        })
    }

    /// A database name: a word or a quoted name, checked.
    fn name(&mut self) -> Result<String, String> {
        let name = match self.peek() {
            Some(Token::Word(word)) | Some(Token::Quoted(word)) => word.clone(),
            Some(token) => {
                return Err(format!(
                    "expected a database name, found {}",
                    describe(token)
                ));
            }
            None => return Err("expected a database name".into()),
        };
        self.at += 1;
        check_name(&name)?;
        Ok(name)
    }

    fn create(&mut self) -> Result<DatabaseStatement, String> {
        let if_not_exists = if self.eat_word("if") {
            self.expect_word("not")?;
            self.expect_word("exists")?;
            true
        } else {
            false
        };
        let name = self.name()?;
        let (mut replicas, mut read_replicas, mut shards, mut distribute_all) = (None, 0, 1, false);
        self.eat_word("with");
        let parenthesized = self.eat_symbol('(');
        while let Some(option) = self.word() {
            self.eat_symbol('=');
            if option == "distribute" {
                distribute_all = match self.word().as_deref() {
                    Some("all") => true,
                    Some("none") => false,
                    _ => return Err("distribute takes all or none".into()),
                };
                if !self.eat_symbol(',') && parenthesized {
                    break;
                }
                continue;
            }
            if option == "shards" {
                shards = match self.peek() {
                    Some(Token::Number(number)) => number.parse::<u32>().ok(),
                    _ => None,
                }
                .filter(|n| (1..=SHARDS_MAX).contains(n))
                .ok_or_else(|| format!("shards takes a whole number from 1 to {SHARDS_MAX}"))?;
                self.at += 1;
                if !self.eat_symbol(',') && parenthesized {
                    break;
                }
                continue;
            }
            let value = match self.peek() {
                Some(Token::Number(number)) => number.parse::<u32>().ok(),
                _ => None,
            };
            let value = value
                .filter(|v| *v <= REPLICAS_MAX)
                .ok_or_else(|| format!("{option} takes a whole number from 0 to {REPLICAS_MAX}"))?;
            self.at += 1;
            match option.as_str() {
                "replicas" if value == 0 => {
                    return Err("replicas must be at least 1".into());
                }
                "replicas" => replicas = Some(value),
                "read_replicas" => read_replicas = value,
                other => {
                    return Err(format!(
                        "unknown database option {other:?}: Shoal takes replicas, \
                         read_replicas, shards and distribute"
                    ));
                }
            }
            if !self.eat_symbol(',') && parenthesized {
                break;
            }
        }
        if parenthesized && !self.eat_symbol(')') {
            return Err("the option list is missing its closing parenthesis".into());
        }
        if distribute_all && shards == 1 {
            return Err("distribute = all needs shards of 2 or more".into());
        }
        Ok(DatabaseStatement::Create {
            name,
            if_not_exists,
            replicas,
            read_replicas,
            shards,
            distribute_all,
        })
    }

    fn drop(&mut self) -> Result<DatabaseStatement, String> {
        let if_exists = if self.eat_word("if") {
            self.expect_word("exists")?;
            true
        } else {
            false
        };
        let name = self.name()?;
        // PostgreSQL's `WITH (FORCE)` is accepted: sessions connected to a dropped database
        // are not ended, but every statement they send afterwards is refused.
        if self.eat_word("with") || self.peek() == Some(&Token::Symbol('(')) {
            let parenthesized = self.eat_symbol('(');
            self.expect_word("force")?;
            if parenthesized && !self.eat_symbol(')') {
                return Err("WITH (FORCE is missing its closing parenthesis".into());
            }
        }
        Ok(DatabaseStatement::Drop { name, if_exists })
    }

    fn alter(&mut self) -> Result<DatabaseStatement, String> {
        let name = self.name()?;
        if self.eat_word("set") {
            let parenthesized = self.eat_symbol('(');
            if self.eat_word("balance") {
                self.eat_symbol('=');
                let by = match self.peek() {
                    Some(Token::Word(word)) if word == "off" => None,
                    Some(Token::Word(word)) if BalanceMeasure::parse(word).is_some() => {
                        BalanceMeasure::parse(word)
                    }
                    _ => return Err("balance takes off, rows, bytes or writes".into()),
                };
                self.at += 1;
                if parenthesized && !self.eat_symbol(')') {
                    return Err("the option list is missing its closing parenthesis".into());
                }
                return Ok(DatabaseStatement::SetAutoBalance { name, by });
            }
            if !matches!(self.peek(), Some(Token::Word(word)) if word == "shards") {
                return Err(
                    "ALTER DATABASE … SET takes (shards = <n>) or (balance = off, rows, \
                            bytes or writes)"
                        .into(),
                );
            }
            self.expect_word("shards")?;
            self.eat_symbol('=');
            let shards = match self.peek() {
                Some(Token::Number(number)) => number.parse::<u32>().ok(),
                _ => None,
            }
            .filter(|n| (1..=SHARDS_MAX).contains(n))
            .ok_or_else(|| format!("shards takes a whole number from 1 to {SHARDS_MAX}"))?;
            self.at += 1;
            if parenthesized && !self.eat_symbol(')') {
                return Err("the option list is missing its closing parenthesis".into());
            }
            return Ok(DatabaseStatement::Reshard { name, shards });
        }
        if self.eat_word("cancel") {
            self.expect_word("resharding")?;
            return Ok(DatabaseStatement::CancelResharding { name });
        }
        if self.eat_word("balance") {
            let by = if self.eat_word("by") {
                let by = match self.peek() {
                    Some(Token::Word(word)) => BalanceMeasure::parse(word),
                    _ => None,
                }
                .ok_or("BALANCE BY takes ROWS, BYTES or WRITES")?;
                self.at += 1;
                by
            } else {
                BalanceMeasure::Rows
            };
            let dry_run = self.eat_word("dry");
            if dry_run {
                self.expect_word("run")?;
            }
            return Ok(DatabaseStatement::Balance { name, by, dry_run });
        }
        if !self.eat_word("rename") {
            return Err(
                "ALTER DATABASE takes RENAME TO <name>, SET (shards = <n>), SET (balance = \
                 off|rows|bytes|writes), BALANCE [BY ROWS|BYTES|WRITES] [DRY RUN] or CANCEL \
                 RESHARDING"
                    .into(),
            );
        }
        self.expect_word("to")?;
        let to = self.name()?;
        Ok(DatabaseStatement::Rename { from: name, to })
    }
}

/// A database name: 1 to 63 bytes of letters, digits, `_` and `-`, not starting with a digit
/// or `-`, and not `_shoal…` (Shoal's own).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(format!(
            "database name {name:?} must be 1 to {NAME_BYTES_MAX} bytes long"
        ));
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!(
            "database name {name:?} may hold letters, digits, _ and - and must start with a \
             letter or _"
        ));
    }
    if name.to_ascii_lowercase().starts_with("_shoal") {
        return Err(format!(
            "database name {name:?}: names starting with _shoal are Shoal's own"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(sql: &str) -> DatabaseStatement {
        parse(sql).expect("a database statement").expect("valid")
    }

    fn err(sql: &str) -> String {
        parse(sql)
            .expect("a database statement")
            .expect_err("invalid")
    }

    #[test]
    fn other_statements_are_sqlites() {
        for sql in [
            "SELECT 1",
            "CREATE TABLE database (x)",
            "create view databases as select 1",
            "ATTACH DATABASE 'x' AS y",
            "DROP TABLE database",
            "INSERT INTO t VALUES ('create database x')",
        ] {
            assert_eq!(parse(sql), None, "{sql}");
        }
    }

    #[test]
    fn create_takes_the_issue_and_postgresql_spellings() {
        let expected = DatabaseStatement::Create {
            name: "orders".into(),
            if_not_exists: false,
            replicas: Some(3),
            read_replicas: 1,
            shards: 1,
            distribute_all: false,
        };
        assert_eq!(
            ok("CREATE DATABASE orders WITH (replicas = 3, read_replicas = 1);"),
            expected
        );
        assert_eq!(
            ok("create database Orders with replicas 3 read_replicas=1"),
            expected
        );
        assert_eq!(
            ok("/* c */ CREATE DATABASE IF NOT EXISTS \"Mixed\" -- x\n"),
            DatabaseStatement::Create {
                name: "Mixed".into(),
                if_not_exists: true,
                replicas: None,
                read_replicas: 0,
                shards: 1,
                distribute_all: false,
            }
        );
        assert_eq!(
            ok("CREATE DATABASE shop WITH (shards = 4, distribute = all)"),
            DatabaseStatement::Create {
                name: "shop".into(),
                if_not_exists: false,
                replicas: None,
                read_replicas: 0,
                shards: 4,
                distribute_all: true,
            }
        );
    }

    #[test]
    fn drop_rename_and_show() {
        assert_eq!(
            ok("DROP DATABASE IF EXISTS a WITH (FORCE)"),
            DatabaseStatement::Drop {
                name: "a".into(),
                if_exists: true
            }
        );
        assert_eq!(
            ok("ALTER DATABASE a RENAME TO b"),
            DatabaseStatement::Rename {
                from: "a".into(),
                to: "b".into()
            }
        );
        assert_eq!(ok("show databases;"), DatabaseStatement::Show);
        for text in [
            "ALTER DATABASE shop SET (shards = 8)",
            "alter database shop set shards = 8;",
            "ALTER DATABASE shop SET (SHARDS 8)",
        ] {
            assert_eq!(
                ok(text),
                DatabaseStatement::Reshard {
                    name: "shop".into(),
                    shards: 8
                },
                "{text}"
            );
        }
        assert_eq!(
            ok("ALTER DATABASE shop BALANCE DRY RUN"),
            DatabaseStatement::Balance {
                name: "shop".into(),
                by: BalanceMeasure::Rows,
                dry_run: true
            }
        );
        assert_eq!(
            ok("alter database shop balance"),
            DatabaseStatement::Balance {
                name: "shop".into(),
                by: BalanceMeasure::Rows,
                dry_run: false
            }
        );
        assert_eq!(
            ok("ALTER DATABASE shop BALANCE BY WRITES DRY RUN"),
            DatabaseStatement::Balance {
                name: "shop".into(),
                by: BalanceMeasure::Writes,
                dry_run: true
            }
        );
        assert_eq!(
            ok("ALTER DATABASE shop BALANCE BY bytes"),
            DatabaseStatement::Balance {
                name: "shop".into(),
                by: BalanceMeasure::Bytes,
                dry_run: false
            }
        );
        assert_eq!(
            ok("ALTER DATABASE shop SET (balance = writes)"),
            DatabaseStatement::SetAutoBalance {
                name: "shop".into(),
                by: Some(BalanceMeasure::Writes)
            }
        );
        assert_eq!(
            ok("alter database shop set balance off"),
            DatabaseStatement::SetAutoBalance {
                name: "shop".into(),
                by: None
            }
        );
        assert_eq!(
            ok("ALTER DATABASE shop CANCEL RESHARDING"),
            DatabaseStatement::CancelResharding {
                name: "shop".into()
            }
        );
    }

    #[test]
    fn malformed_statements_say_what_is_wrong() {
        assert!(err("CREATE DATABASE").contains("expected a database name"));
        assert!(err("CREATE DATABASE x WITH (replicas = 0)").contains("at least 1"));
        assert!(err("CREATE DATABASE x WITH (replicas = 99)").contains("0 to 9"));
        assert!(err("CREATE DATABASE x WITH (owner = 1)").contains("unknown database option"));
        assert!(err("CREATE DATABASE x WITH (shards = 0)").contains("1 to 64"));
        assert!(err("CREATE DATABASE x WITH (shards = 65)").contains("1 to 64"));
        assert!(err("CREATE DATABASE x WITH (distribute = some)").contains("all or none"));
        assert!(err("CREATE DATABASE x WITH (distribute = all)").contains("shards of 2"));
        assert!(err("CREATE DATABASE x WITH (replicas = 3").contains("closing parenthesis"));
        assert!(err("CREATE DATABASE \"1x\"").contains("must start with a letter"));
        assert!(err("CREATE DATABASE _shoal_x").contains("Shoal's own"));
        assert!(err("ALTER DATABASE x BALANCE BY size").contains("ROWS, BYTES or WRITES"));
        assert!(err("ALTER DATABASE x SET (balance = on)").contains("off, rows, bytes or writes"));
        assert!(err("ALTER DATABASE x SET (owner = 1)").contains("(shards = <n>)"));
        assert!(err("ALTER DATABASE a OWNER TO b").contains("RENAME TO <name>"));
        assert!(err("ALTER DATABASE a SET (shards = 0)").contains("1 to 64"));
        assert!(err("ALTER DATABASE a SET (replicas = 2)").contains("(shards = <n>)"));
        assert!(err("ALTER DATABASE a SET (shards = 3").contains("closing parenthesis"));
        assert!(err("ALTER DATABASE a CANCEL").contains("expected RESHARDING"));
        assert!(err("ALTER DATABASE a BALANCE DRY").contains("expected RUN"));
        assert!(err("DROP DATABASE a; SELECT 1").contains("unexpected `select`"));
        assert!(err("CREATE DATABASE x ~").contains("unexpected character"));
    }
}
