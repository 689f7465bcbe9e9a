//! The shell's dot commands: schema browsing, output settings, consistency and write concern,
//! the cluster's state and operations, reading and dumping SQL.

use std::io::Write;

use serde_json::{Value, json};

use super::Shell;
use super::render::{self, Mode};

/// Extra dot commands (the demo adds `.kill N` and `.start N`).
pub trait Extension {
    /// Handles `.name args`; `None` when it is not one of its commands.
    fn handle(&mut self, name: &str, args: &[&str]) -> Option<Result<String, String>>;
    /// Lines for `.help`.
    fn help(&self) -> String;
}

const HELP: &str = "\
.help                  this list
.tables                the tables
.schema [TABLE]        CREATE statements (of one table)
.indexes [TABLE]       the indexes (of one table)
.mode MODE             table, csv, json or line
.timer on|off          print how long each statement took
.consistency LEVEL     read consistency: none, weak, linearizable, strong, auto
.databases             the databases of the cluster (SHOW DATABASES)
.open NAME             run statements in database NAME from now on
.writeconcern W        write concern: majority, all, or a number of members
.status                the cluster: leader, term, every member's role, health and lag
.nodes                 the members and whether they are reachable
.leader                who leads
.stepdown [ID]         make the leader hand over (to node ID)
.remove ID             remove node ID from the cluster
.read FILE             run the SQL in FILE
.dump [FILE]           the database as SQL (to FILE)
.output [FILE]         send results to FILE (no FILE: back to the screen)
.quit                  leave (also .exit, Ctrl-D)
";

/// `.read` files nested within each other at most.
const READ_DEPTH_MAX: usize = 16;

/// Tables of the user's schema (not SQLite's or Shoal's own).
const USER_OBJECTS: &str =
    "name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_shoal\\_%' ESCAPE '\\'";

impl Shell {
    pub(super) fn dot_command(&mut self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(name) = words.first().map(|w| w.trim_start_matches('.')) else {
            return;
        };
        let args = &words[1..];
        match (name, args) {
            ("help", _) => {
                let extra = self.extension.as_ref().map(|e| e.help()).unwrap_or_default();
                self.print(&format!("{HELP}{extra}"));
            }
            ("quit" | "exit", _) => self.quit = true,
            ("tables", _) => self.list(&format!(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND {USER_OBJECTS} ORDER BY name"
            ), &[]),
            ("schema", []) => self.list(&format!(
                "SELECT sql || ';' FROM sqlite_schema WHERE sql IS NOT NULL AND {USER_OBJECTS} ORDER BY rowid"
            ), &[]),
            ("schema", [table]) => self.list(&format!(
                "SELECT sql || ';' FROM sqlite_schema WHERE sql IS NOT NULL AND tbl_name = ?1 AND {USER_OBJECTS} ORDER BY rowid"
            ), &[json!(table)]),
            ("indexes" | "indices", []) => self.list(&format!(
                "SELECT name FROM sqlite_schema WHERE type = 'index' AND {USER_OBJECTS} ORDER BY name"
            ), &[]),
            ("indexes" | "indices", [table]) => self.list(&format!(
                "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?1 AND {USER_OBJECTS} ORDER BY name"
            ), &[json!(table)]),
            ("mode", [mode]) => match Mode::parse(mode) {
                Ok(mode) => self.mode = mode,
                Err(message) => self.error(&message),
            },
            ("timer", ["on"]) => self.timer = true,
            ("timer", ["off"]) => self.timer = false,
            ("consistency", [level]) => {
                match crate::service::request::ReadLevel::parse(level) {
                    Ok(_) => self.consistency = level.to_ascii_lowercase(),
                    Err(message) => self.error(&message),
                }
            }
            ("writeconcern", [w]) => match crate::service::request::WriteConcern::parse(w) {
                Ok(_) => self.write_concern = w.to_ascii_lowercase(),
                Err(message) => self.error(&message),
            },
            ("databases", []) => self.execute("SHOW DATABASES"),
            ("open", [name]) => self.open(name),
            ("status", _) => self.status(),
            ("nodes", _) => self.nodes(),
            ("leader", _) => match self.client.get("/leader") {
                Ok(reply) => {
                    let leader = &reply["leader"];
                    let text = if leader.is_null() {
                        "no leader\n".to_string()
                    } else {
                        format!(
                            "node {} at {} (term {})\n",
                            leader["id"], leader["http_addr"].as_str().unwrap_or("?"), reply["term"]
                        )
                    };
                    self.print(&text);
                }
                Err(failure) => self.error(&failure.to_string()),
            },
            ("stepdown", []) => self.cluster_call("/leader", json!({})),
            ("stepdown", [id]) => match id.parse::<u64>() {
                Ok(id) => self.cluster_call("/leader", json!({"id": id})),
                Err(_) => self.error(&format!("node id expected, got {id:?}")),
            },
            ("remove", [id]) => match id.parse::<u64>() {
                Ok(id) => self.cluster_call("/remove", json!({"id": id})),
                Err(_) => self.error(&format!("node id expected, got {id:?}")),
            },
            ("read", [_]) if self.reading >= READ_DEPTH_MAX => self.error(&format!(
                ".read nested more than {READ_DEPTH_MAX} deep (does a file read itself?)"
            )),
            ("read", [file]) => match std::fs::read_to_string(file) {
                Ok(text) => {
                    self.reading += 1;
                    self.feed_text(&text);
                    self.finish_pending();
                    self.reading -= 1;
                }
                Err(error) => self.error(&format!("cannot read {file}: {error}")),
            },
            ("dump", []) => self.dump(None),
            ("dump", [file]) => self.dump(Some(file)),
            ("output", []) => self.output = Box::new(std::io::stdout()),
            ("output", [file]) => match std::fs::File::create(file) {
                Ok(out) => self.output = Box::new(std::io::BufWriter::new(out)),
                Err(error) => self.error(&format!("cannot write {file}: {error}")),
            },
            (name, args) => {
                let handled = self.extension.as_mut().and_then(|e| e.handle(name, args));
                match handled {
                    Some(Ok(text)) => self.print(&text),
                    Some(Err(message)) => self.error(&message),
                    None => self.error(&format!(
                        "unknown command or wrong arguments: .{name} {} (see .help)",
                        args.join(" ")
                    )),
                }
            }
        }
        let _ = self.output.flush();
    }

    /// Prints the single column of a query, one value per line.
    fn list(&mut self, sql: &str, params: &[Value]) {
        if let Some((_, rows)) = self.query_rows(sql, params) {
            let text: String = rows
                .iter()
                .filter_map(|row| row.first()?.as_str().map(|s| format!("{s}\n")))
                .collect();
            self.print(&text);
        }
    }

    /// Switches to database `name` once the cluster confirms it exists.
    fn open(&mut self, name: &str) {
        let previous = self.database.replace(name.to_string());
        if self.query_rows("SELECT 1", &[]).is_none() {
            self.database = previous;
        }
    }

    fn cluster_call(&mut self, path: &str, body: Value) {
        match self.client.post(path, &body) {
            Ok(reply) => self.print(&format!("{reply}\n")),
            Err(failure) => self.error(&failure.to_string()),
        }
    }

    fn status(&mut self) {
        match self.client.get("/status") {
            Ok(status) => {
                let text = status_text(&status, self.client.host());
                self.print(&text);
            }
            Err(failure) => self.error(&failure.to_string()),
        }
    }

    fn nodes(&mut self) {
        match self.client.get("/nodes") {
            Ok(nodes) => self.print(&nodes_text(&nodes)),
            Err(failure) => self.error(&failure.to_string()),
        }
    }

    /// The database as SQL statements that recreate it (tables with their rows, then indexes,
    /// triggers and views), like `sqlite3`'s `.dump`.
    fn dump(&mut self, file: Option<&str>) {
        let Some((_, objects)) = self.query_rows(
            &format!("SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL AND {USER_OBJECTS} ORDER BY type = 'table' DESC, rowid"),
            &[],
        ) else {
            return;
        };
        let mut out = String::from("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n");
        for object in &objects {
            let (kind, name, sql) = (
                object[0].as_str().unwrap_or_default(),
                object[1].as_str().unwrap_or_default(),
                object[2].as_str().unwrap_or_default(),
            );
            out.push_str(sql);
            out.push_str(";\n");
            if kind != "table" {
                continue;
            }
            let quoted = quote_identifier(name);
            // SQLite's quote() writes each value as an SQL literal, blobs included.
            let Some((columns, _)) =
                self.query_rows(&format!("SELECT * FROM {quoted} LIMIT 0"), &[])
            else {
                return;
            };
            let literals: Vec<String> = columns
                .iter()
                .map(|c| format!("quote({})", quote_identifier(c)))
                .collect();
            let Some((_, rows)) = self.query_rows(
                &format!("SELECT {} FROM {quoted}", literals.join(", ")),
                &[],
            ) else {
                return;
            };
            for row in rows {
                let values: Vec<&str> = row.iter().map(|v| v.as_str().unwrap_or("NULL")).collect();
                out.push_str(&format!(
                    "INSERT INTO {quoted} VALUES({});\n",
                    values.join(",")
                ));
            }
        }
        out.push_str("COMMIT;\n");
        match file {
            None => self.print(&out),
            Some(file) => {
                let written =
                    std::fs::File::create(file).and_then(|mut f| f.write_all(out.as_bytes()));
                if let Err(error) = written {
                    self.error(&format!("cannot write {file}: {error}"));
                }
            }
        }
    }
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `/status` for people: the node, the leader, and a table of the members.
pub(crate) fn status_text(status: &Value, host: &str) -> String {
    let node = &status["node"];
    let leader = &node["leader"];
    let mut text = format!(
        "node {} ({}) at {host}, term {}; leader: {}\n",
        node["id"],
        node["role"].as_str().unwrap_or("?"),
        node["term"],
        if leader.is_null() {
            "none".to_string()
        } else {
            format!(
                "node {} at {}",
                leader["id"],
                leader["http_addr"].as_str().unwrap_or("?")
            )
        }
    );
    let columns: Vec<String> = [
        "id",
        "http",
        "voter",
        "role",
        "health",
        "applied",
        "lag",
        "last contact ms",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    let rows: Vec<Vec<Value>> = status["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .map(|m| {
                    vec![
                        m["id"].clone(),
                        m["http_addr"].clone(),
                        json!(if m["voter"].as_bool() == Some(true) {
                            "yes"
                        } else {
                            "replica"
                        }),
                        m["role"].clone(),
                        json!(if m["health"] == json!(1) {
                            "ok"
                        } else {
                            "unreachable"
                        }),
                        m["applied_index"].clone(),
                        m["lag_entries"].clone(),
                        m["last_contact_ms"].clone(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    text.push_str(&render::render(Mode::Table, &columns, &rows));
    if let Some(groups) = status["groups"].as_array().filter(|g| !g.is_empty()) {
        text.push_str("\ngroups on this node:\n");
        let columns: Vec<String> = [
            "group",
            "database",
            "role",
            "leader",
            "term",
            "applied",
            "voters",
            "read replicas",
            "lag",
        ]
        .iter()
        .map(|c| c.to_string())
        .collect();
        let ids = |list: &Value| {
            json!(
                list.as_array()
                    .map(|ids| ids
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_default()
            )
        };
        let rows: Vec<Vec<Value>> = groups
            .iter()
            .map(|g| {
                let database = if g["catalog"] == json!(true) {
                    json!("(catalog)")
                } else if let Some(shard) = g["shard"].as_object() {
                    // A sharded database's group: its place and the slots it owns.
                    json!(format!(
                        "{} shard {}/{} slots {}-{}",
                        g["database"].as_str().unwrap_or("?"),
                        shard.get("shard").unwrap_or(&Value::Null),
                        shard.get("of").unwrap_or(&Value::Null),
                        shard["slots"][0],
                        shard["slots"][1]
                    ))
                } else {
                    g["database"].clone()
                };
                // On a leader: the entries the furthest member is behind.
                let lag = g["lag_entries"]
                    .as_object()
                    .and_then(|lags| lags.values().filter_map(Value::as_u64).max())
                    .map_or(Value::Null, |lag| json!(lag));
                vec![
                    g["group"].clone(),
                    database,
                    g["role"].clone(),
                    g["leader"].clone(),
                    g["term"].clone(),
                    g["applied_index"].clone(),
                    ids(&g["voters"]),
                    ids(&g["read_replicas"]),
                    lag,
                ]
            })
            .collect();
        text.push_str(&render::render(Mode::Table, &columns, &rows));
    }
    text
}

/// `/nodes` for people: one row per member.
pub(crate) fn nodes_text(nodes: &Value) -> String {
    let columns: Vec<String> = ["id", "api", "voter", "reachable", "leader"]
        .iter()
        .map(|c| c.to_string())
        .collect();
    let rows: Vec<Vec<Value>> = nodes
        .as_object()
        .map(|nodes| {
            nodes
                .values()
                .map(|n| {
                    vec![
                        n["id"].clone(),
                        n["api_addr"].clone(),
                        n["voter"].clone(),
                        n["reachable"].clone(),
                        n["leader"].clone(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    render::render(Mode::Table, &columns, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_a_shard_groups_place_slots_and_lag() {
        let status = json!({
            "node": {"id": 1, "role": "leader", "term": 2, "leader": null},
            "members": [],
            "groups": [{
                "group": 3, "catalog": false, "database": "shop",
                "shard": {"shard": 1, "of": 4, "slots": [4096, 8191]},
                "role": "leader", "leader": 1, "term": 2, "applied_index": 9,
                "voters": [1, 2, 3], "read_replicas": [],
                "lag_entries": {"2": 0, "3": 17}
            }]
        });
        let text = status_text(&status, "127.0.0.1:4001");
        assert!(text.contains("shop shard 1/4 slots 4096-8191"), "{text}");
        assert!(text.contains("17"), "the furthest member's lag: {text}");
    }
}
