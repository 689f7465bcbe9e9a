//! `shoal shell`: an SQL shell over the HTTP API. Interactive (line editing, history,
//! multi-line statements ending in `;`, dot commands) or for scripts (`-c SQL`, SQL on stdin).

pub(crate) mod client;
pub(crate) mod commands;
pub mod render;

use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

use serde_json::{Value, json};

use crate::sqltext::{is_complete, split_statements};
use client::{Client, Failure};
use render::Mode;

/// Lines one statement may span before the shell gives up on it (a missing `;` in a script).
const STATEMENT_BYTES_MAX: usize = 64 * 1024 * 1024;

#[derive(clap::Args, Debug, Clone)]
pub struct ShellArgs {
    /// Shoal node(s) to talk to, comma-separated; the next is used when one is unreachable.
    #[arg(
        long,
        env = "SHOAL_HOST",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:4001"
    )]
    pub host: Vec<String>,
    /// Run this SQL (or dot command) and exit; may be repeated.
    #[arg(short = 'c', long = "command")]
    pub command: Vec<String>,
    /// Read consistency for queries: none, weak, linearizable, strong or auto.
    #[arg(long, default_value = "weak")]
    pub consistency: String,
    /// The database statements run in (the default database when not given; `.open` changes it).
    #[arg(short = 'd', long)]
    pub database: Option<String>,
    /// Write concern for writes: majority, all or a number of members.
    #[arg(long, default_value = "majority")]
    pub write_concern: String,
    /// How results are printed.
    #[arg(long, value_enum, default_value_t = Mode::Table)]
    pub mode: Mode,
    /// Stop at the first error (scripts; the exit status is 1 after an error either way).
    #[arg(long)]
    pub bail: bool,
    /// Authenticate as this user (password from SHOAL_PASSWORD) on a cluster running --auth.
    #[arg(long, env = "SHOAL_USER")]
    pub user: Option<String>,
}

/// A shell session.
pub struct Shell {
    client: Client,
    mode: Mode,
    timer: bool,
    consistency: String,
    write_concern: String,
    /// `db=` of every statement: the database `.open` chose (the default one when `None`).
    database: Option<String>,
    output: Box<dyn Write>,
    /// Statement text typed so far (a statement may span lines).
    pending: String,
    errors: usize,
    bail: bool,
    quit: bool,
    /// Extra dot commands of the demo (`.kill N`, `.start N`).
    extension: Option<Box<dyn commands::Extension>>,
    /// `.read` files being read, innermost last (a file that reads itself stops at a bound).
    reading: usize,
}

/// Runs the shell; returns the process exit status.
pub fn run(args: ShellArgs) -> i32 {
    run_with(args, None)
}

/// Runs the shell with extra dot commands (the demo's).
pub fn run_with(args: ShellArgs, extension: Option<Box<dyn commands::Extension>>) -> i32 {
    let credentials = crate::auth::cli::credentials(args.user.as_deref());
    let client = match Client::new(args.host.clone(), credentials) {
        Ok(client) => client,
        Err(message) => {
            eprintln!("shoal shell: {message}");
            return 2;
        }
    };
    let mut shell = Shell {
        client,
        mode: args.mode,
        timer: false,
        consistency: args.consistency.clone(),
        write_concern: args.write_concern.clone(),
        database: args.database.clone(),
        output: Box::new(std::io::stdout()),
        pending: String::new(),
        errors: 0,
        bail: args.bail,
        quit: false,
        extension,
        reading: 0,
    };
    if !args.command.is_empty() {
        for command in &args.command {
            shell.feed_text(command);
            shell.finish_pending();
            if shell.quit || (shell.bail && shell.errors > 0) {
                break;
            }
        }
    } else if std::io::stdin().is_terminal() {
        shell.interactive();
    } else {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            shell.feed_line(&line);
            if shell.quit || (shell.bail && shell.errors > 0) {
                break;
            }
        }
        shell.finish_pending();
    }
    let _ = shell.output.flush();
    i32::from(shell.errors > 0)
}

pub use commands::Extension;

impl Shell {
    fn interactive(&mut self) {
        let mut editor = match rustyline::DefaultEditor::new() {
            Ok(editor) => editor,
            Err(error) => {
                eprintln!("shoal shell: no line editor ({error}); reading plain lines");
                let stdin = std::io::stdin();
                for line in stdin.lock().lines().map_while(Result::ok) {
                    self.feed_line(&line);
                }
                return;
            }
        };
        let history = std::env::var_os("HOME")
            .map(|home| std::path::PathBuf::from(home).join(".shoal_history"));
        if let Some(path) = &history {
            let _ = editor.load_history(path);
        }
        println!(
            "Shoal shell on {} (.help for commands, Ctrl-D to leave)",
            self.client.host()
        );
        while !self.quit {
            let prompt = if self.pending.is_empty() {
                "shoal> "
            } else {
                "   ...> "
            };
            match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    self.feed_line(&line);
                }
                // Ctrl-C abandons the statement being typed, or leaves at an empty prompt.
                Err(rustyline::error::ReadlineError::Interrupted) if self.pending.is_empty() => {
                    break;
                }
                Err(rustyline::error::ReadlineError::Interrupted) => self.pending.clear(),
                Err(_) => break,
            }
        }
        if let Some(path) = &history {
            let _ = editor.save_history(path);
        }
    }

    /// Feeds several lines (a `-c` argument, a `.read` file).
    fn feed_text(&mut self, text: &str) {
        for line in text.lines() {
            self.feed_line(line);
            if self.quit || (self.bail && self.errors > 0) {
                return;
            }
        }
    }

    /// One line of input: a dot command, or part of an SQL statement that runs once complete.
    fn feed_line(&mut self, line: &str) {
        if self.pending.is_empty() && line.trim_start().starts_with('.') {
            self.dot_command(line.trim());
            return;
        }
        if self.pending.len() + line.len() > STATEMENT_BYTES_MAX {
            self.error(&format!(
                "statement longer than {STATEMENT_BYTES_MAX} bytes without its terminating `;`"
            ));
            self.pending.clear();
            return;
        }
        self.pending.push_str(line);
        self.pending.push('\n');
        if is_complete(&self.pending) {
            let text = std::mem::take(&mut self.pending);
            for statement in split_statements(&text) {
                self.execute(statement);
                if self.bail && self.errors > 0 {
                    return;
                }
            }
        }
    }

    /// Runs what is left without its `;` (the end of a script or `-c` string).
    fn finish_pending(&mut self) {
        let text = std::mem::take(&mut self.pending);
        for statement in split_statements(&text) {
            self.execute(statement);
        }
    }

    fn error(&mut self, message: &str) {
        self.errors += 1;
        eprintln!("Error: {message}");
    }

    fn print(&mut self, text: &str) {
        if let Err(error) = self.output.write_all(text.as_bytes()) {
            eprintln!("Error: writing output: {error}");
        }
    }

    /// Runs one SQL statement and prints its rows (or its error).
    fn execute(&mut self, sql: &str) {
        let started = Instant::now();
        let path = format!(
            "/db/request?level={}&w={}{}",
            self.consistency,
            self.write_concern,
            self.database_option()
        );
        let outcome = self.client.post(&path, &json!([sql]));
        let elapsed = started.elapsed();
        match outcome {
            Ok(reply) => self.show_result(&reply["results"][0]),
            Err(Failure::Unreachable(message) | Failure::Refused(message)) => self.error(&message),
        }
        if self.timer {
            self.print(&format!("Run Time: {:.3} s\n", elapsed.as_secs_f64()));
        }
    }

    /// `&db=NAME` for the database `.open` chose; nothing for the default one.
    fn database_option(&self) -> String {
        self.database
            .as_deref()
            .map(|name| {
                let encoded: String =
                    serde_urlencoded::to_string([("db", name)]).unwrap_or_default();
                format!("&{encoded}")
            })
            .unwrap_or_default()
    }

    fn show_result(&mut self, result: &Value) {
        if let Some(message) = result["error"].as_str() {
            self.error(message);
            return;
        }
        let Some((columns, rows)) = render::result_rows(result) else {
            return;
        };
        let text = render::render(self.mode, &columns, &rows);
        self.print(&text);
    }

    /// Runs a query for a dot command; its rows, or `None` after printing the error.
    fn query_rows(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Option<(Vec<String>, Vec<Vec<Value>>)> {
        let mut statement = vec![json!(sql)];
        statement.extend(params.iter().cloned());
        let path = format!(
            "/db/query?level={}{}",
            self.consistency,
            self.database_option()
        );
        match self.client.post(&path, &json!([statement])) {
            Ok(reply) => {
                let result = &reply["results"][0];
                if let Some(message) = result["error"].as_str() {
                    self.error(message);
                    return None;
                }
                let columns = result["columns"]
                    .as_array()
                    .map(|c| {
                        c.iter()
                            .map(|n| n.as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                let rows = result["values"]
                    .as_array()
                    .map(|rows| {
                        rows.iter()
                            .map(|r| r.as_array().cloned().unwrap_or_default())
                            .collect()
                    })
                    .unwrap_or_default();
                Some((columns, rows))
            }
            Err(failure) => {
                self.error(&failure.to_string());
                None
            }
        }
    }
}
