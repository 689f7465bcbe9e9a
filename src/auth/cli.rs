//! `shoal user add|remove|passwd|grant|revoke|list`, on a node's `/users` API. A new password
//! comes from `--password-file`, the SHOAL_NEW_PASSWORD environment variable, or the first
//! line of standard input — never from a flag (command lines are visible to every user).

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

/// The environment variable a new password may come from.
pub const NEW_PASSWORD_ENV: &str = "SHOAL_NEW_PASSWORD";

/// The environment variable holding the password of `--user` (the caller's own).
pub const PASSWORD_ENV: &str = "SHOAL_PASSWORD";

/// The caller's credentials for a cluster running `--auth`: `user` with the password in
/// SHOAL_PASSWORD (never a flag).
pub fn credentials(user: Option<&str>) -> Option<(String, String)> {
    let user = user.filter(|u| !u.is_empty())?;
    Some((
        user.to_string(),
        std::env::var(PASSWORD_ENV).unwrap_or_default(),
    ))
}

/// The `Authorization` header for `credentials`, to install as a client default.
pub fn authorization_header(credentials: Option<&(String, String)>) -> reqwest::header::HeaderMap {
    use base64::Engine;
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some((user, password)) = credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        if let Ok(mut value) = reqwest::header::HeaderValue::from_str(&format!("Basic {token}")) {
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
    }
    headers
}

#[derive(clap::Args, Debug, Clone)]
pub struct UserArgs {
    /// The node whose API to use.
    #[arg(long, global = true, default_value = "http://127.0.0.1:4001")]
    pub host: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Authenticate as this user (password from SHOAL_PASSWORD) when the cluster runs --auth.
    #[arg(long, global = true, env = "SHOAL_USER")]
    pub user: Option<String>,
    #[command(subcommand)]
    pub operation: UserOperation,
}

#[derive(clap::Args, Debug, Clone)]
pub struct GrantArgs {
    /// Role(s) to grant or revoke: admin, writer, reader, operator, node.
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// Permission(s) to grant or revoke: read, write, ddl, admin, backup, restore, status,
    /// join, join-replica.
    #[arg(long = "permission")]
    pub permissions: Vec<String>,
    /// Read or write on one table, for a user without the permission cluster-wide:
    /// `--table orders=read,write` (repeatable).
    #[arg(long = "table", value_parser = parse_table_grant)]
    pub tables: Vec<(String, Vec<String>)>,
    /// Permissions in one database only (read, write, ddl, backup, restore):
    /// `--database orders=read,write` (repeatable).
    #[arg(long = "database", value_parser = parse_database_grant)]
    pub databases: Vec<(String, Vec<String>)>,
}

impl GrantArgs {
    /// The request body's fields for these grants.
    fn body(&self) -> Value {
        let grouped = |grants: &[(String, Vec<String>)]| {
            let mut by_name = serde_json::Map::new();
            for (name, permissions) in grants {
                let entry = by_name
                    .entry(name.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(held) = entry {
                    held.extend(permissions.iter().cloned().map(Value::String));
                }
            }
            by_name
        };
        json!({
            "roles": self.roles,
            "permissions": self.permissions,
            "tables": grouped(&self.tables),
            "databases": grouped(&self.databases),
        })
    }
}

/// `orders=read,write` → ("orders", ["read", "write"]).
fn parse_database_grant(text: &str) -> Result<(String, Vec<String>), String> {
    parse_table_grant(text)
        .map_err(|_| format!("--database {text:?}: expected DATABASE=read[,write,ddl,…]"))
}

/// `orders=read,write` → ("orders", ["read", "write"]).
fn parse_table_grant(text: &str) -> Result<(String, Vec<String>), String> {
    let (table, permissions) = text
        .split_once('=')
        .ok_or_else(|| format!("--table {text:?}: expected TABLE=read[,write]"))?;
    let permissions: Vec<String> = permissions
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if table.is_empty() || permissions.is_empty() {
        return Err(format!("--table {text:?}: expected TABLE=read[,write]"));
    }
    Ok((table.to_string(), permissions))
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum UserOperation {
    /// Every user, with roles and permissions.
    List,
    /// Add a user (password from --password-file, SHOAL_NEW_PASSWORD or standard input).
    Add {
        name: String,
        #[command(flatten)]
        grants: GrantArgs,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Remove a user.
    Remove { name: String },
    /// Change a user's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Give a user roles, permissions or table grants.
    Grant {
        name: String,
        #[command(flatten)]
        grants: GrantArgs,
    },
    /// Take roles, permissions or table grants from a user.
    Revoke {
        name: String,
        #[command(flatten)]
        grants: GrantArgs,
    },
    /// Create the users of an rqlite `-auth` file (checked whole first: one bad entry and
    /// nothing is created; users that exist already are refused).
    ImportRqlite { file: PathBuf },
}

/// Runs one operation; returns the exit status.
pub fn run(args: UserArgs) -> i32 {
    match execute(&args) {
        Ok(output) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&output).unwrap_or_default()
                );
            } else if let UserOperation::List = args.operation {
                for user in output["users"].as_array().into_iter().flatten() {
                    let names = |field: &str| {
                        user[field]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .unwrap_or_default()
                    };
                    let grants = |field: &str| {
                        let listed: Vec<String> = user[field]
                            .as_object()
                            .into_iter()
                            .flatten()
                            .map(|(name, held)| {
                                let held: Vec<&str> = held
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .filter_map(Value::as_str)
                                    .collect();
                                format!("{name}={}", held.join(","))
                            })
                            .collect();
                        if listed.is_empty() {
                            String::new()
                        } else {
                            format!(" {field}: {}", listed.join(" "))
                        }
                    };
                    let (tables, databases) = (grants("tables"), grants("databases"));
                    println!(
                        "{:<24} roles: {:<24} permissions: {}{tables}{databases}",
                        user["name"].as_str().unwrap_or_default(),
                        names("roles"),
                        names("effective")
                    );
                }
            } else {
                println!("ok");
            }
            0
        }
        Err(message) => {
            eprintln!("shoal: {message}");
            1
        }
    }
}

/// The largest password file read (a password is at most `PASSWORD_BYTES_MAX`; the file may
/// hold a trailing newline or comments after the first line).
const PASSWORD_FILE_BYTES_MAX: u64 = 64 * 1024;

/// The first line of a password file.
fn read_password_file(path: &std::path::Path) -> Result<String, String> {
    let shown = path.display();
    let length = std::fs::metadata(path)
        .map_err(|e| format!("{shown}: {e}"))?
        .len();
    if length > PASSWORD_FILE_BYTES_MAX {
        return Err(format!(
            "{shown}: {length} bytes is too large for a password file"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

fn new_password(file: &Option<PathBuf>) -> Result<String, String> {
    if let Some(path) = file {
        return read_password_file(path);
    }
    if let Ok(password) = std::env::var(NEW_PASSWORD_ENV)
        && !password.is_empty()
    {
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password from standard input: {e}"))?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err(format!(
            "no password: give --password-file, {NEW_PASSWORD_ENV}, or a line on standard input"
        ));
    }
    Ok(password)
}

fn client() -> Result<reqwest::blocking::Client, String> {
    let mut client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60));
    if let Some(tls) = crate::net::tls::client_config_from_env()? {
        client = client.use_preconfigured_tls(tls);
    }
    client.build().map_err(|e| e.to_string())
}

/// `shoal user import-rqlite FILE`: every entry checked, existing names refused, then one
/// `POST /users` per user.
fn import_rqlite(args: &UserArgs, file: &std::path::Path) -> Result<Value, String> {
    let host = args.host.trim_end_matches('/');
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let (users, skipped) =
        crate::auth::rqlite::parse(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    let client = client()?;
    let existing = send(args, client.get(format!("{host}/users")))?;
    let taken: Vec<&str> = existing["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["name"].as_str())
        .filter(|name| users.iter().any(|u| u.name == *name))
        .collect();
    if !taken.is_empty() {
        return Err(format!(
            "{}: these users exist already, nothing imported: {}",
            file.display(),
            taken.join(", ")
        ));
    }
    for user in &users {
        for note in &user.notes {
            eprintln!("{}: {note}", user.name);
        }
    }
    let mut imported = Vec::new();
    for user in &users {
        let request = client.post(format!("{host}/users")).json(&json!({
            "name": user.name,
            "password": user.password,
            "roles": user.roles,
            "permissions": user.permissions,
        }));
        send(args, request).map_err(|e| {
            format!(
                "creating {:?} failed after {} of {} users were created: {e}",
                user.name,
                imported.len(),
                users.len()
            )
        })?;
        imported.push(user.name.clone());
    }
    for note in &skipped {
        eprintln!("{note}");
    }
    Ok(json!({"imported": imported, "skipped": skipped}))
}

fn execute(args: &UserArgs) -> Result<Value, String> {
    if let UserOperation::ImportRqlite { file } = &args.operation {
        return import_rqlite(args, file);
    }
    let host = args.host.trim_end_matches('/');
    let client = client()?;
    let request = match &args.operation {
        UserOperation::List => client.get(format!("{host}/users")),
        UserOperation::Add {
            name,
            grants,
            password_file,
        } => {
            let mut body = grants.body();
            body["name"] = json!(name);
            body["password"] = json!(new_password(password_file)?);
            client.post(format!("{host}/users")).json(&body)
        }
        UserOperation::Remove { name } => client.delete(format!("{host}/users/{name}")),
        UserOperation::Passwd {
            name,
            password_file,
        } => client
            .put(format!("{host}/users/{name}/password"))
            .json(&json!({"password": new_password(password_file)?})),
        UserOperation::Grant { name, grants } => client
            .post(format!("{host}/users/{name}/grant"))
            .json(&grants.body()),
        UserOperation::Revoke { name, grants } => client
            .post(format!("{host}/users/{name}/revoke"))
            .json(&grants.body()),
        UserOperation::ImportRqlite { .. } => unreachable!("handled above"),
    };
    send(args, request)
}

/// How long a request answered "503 unavailable" is sent again.
const UNAVAILABLE_RETRY_FOR: Duration = Duration::from_secs(15);

/// Sends one request with the caller's credentials; the answer's JSON, or its error.
fn send(args: &UserArgs, request: reqwest::blocking::RequestBuilder) -> Result<Value, String> {
    let host = args.host.trim_end_matches('/');
    let mut request = match &args.user {
        Some(user) => request.basic_auth(user, std::env::var(PASSWORD_ENV).ok()),
        None => request,
    };
    // A node answers 503 for a moment after it starts (the users moving into the cluster
    // catalog, a leader being elected): nothing was applied, so the request is sent again,
    // for a bounded time, as rqlite's clients do.
    let deadline = std::time::Instant::now() + UNAVAILABLE_RETRY_FOR;
    let mut backoff = Duration::from_millis(100);
    let response = loop {
        let retry = request.try_clone();
        let response = request.send().map_err(|e| format!("{host}: {e}"))?;
        match retry {
            Some(again)
                if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE
                    && std::time::Instant::now() + backoff < deadline =>
            {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
                request = again;
            }
            _ => break response,
        }
    };
    let status = response.status();
    let body: Value = response
        .json()
        .map_err(|e| format!("{host}: unreadable answer: {e}"))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!(
            "{status}: {}",
            body["error"]
                .as_str()
                .map_or_else(|| body.to_string(), str::to_string)
        ))
    }
}
