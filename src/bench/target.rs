//! The systems `shoal bench` can load, each behind one client type with the same operations:
//! Shoal over its HTTP API, any PostgreSQL-protocol server (PostgreSQL itself, or Shoal's pg
//! wire listener), and etcd over its v3 JSON gateway. One client is one connection.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

/// The table (or etcd key prefix) the benchmark uses.
pub const TABLE: &str = "shoal_bench";
/// Rows created before a run so point selects always find one: ids 1..=SEED_ROWS.
pub const SEED_ROWS: u64 = 1_000;

/// Which kind of server to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Shoal,
    Postgres,
    Etcd,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Shoal => "shoal",
            TargetKind::Postgres => "postgres",
            TargetKind::Etcd => "etcd",
        }
    }
}

/// Where and how to connect, already validated.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub kind: TargetKind,
    /// `http://…` for Shoal and etcd, `postgres://…` for PostgreSQL.
    pub url: String,
    /// Shoal: the `level=` of reads (none, weak, linearizable, strong, auto). etcd: `none`
    /// makes reads serializable (local), anything else linearizable.
    pub consistency: Option<String>,
    /// Shoal: the `w=` of writes.
    pub write_concern: Option<String>,
    /// Shoal: the `db=` of every request.
    pub database: Option<String>,
}

/// One connection to the target.
pub enum Client {
    Shoal(ShoalClient),
    Postgres(PostgresClient),
    Etcd(EtcdClient),
}

impl Client {
    pub async fn connect(config: &TargetConfig) -> Result<Client, String> {
        Ok(match config.kind {
            TargetKind::Shoal => Client::Shoal(ShoalClient::new(config)?),
            TargetKind::Postgres => Client::Postgres(PostgresClient::connect(&config.url).await?),
            TargetKind::Etcd => Client::Etcd(EtcdClient::new(config)?),
        })
    }

    /// Creates the table (or nothing, for etcd's keys) and the seed rows, once per run.
    pub async fn prepare(&mut self) -> Result<(), String> {
        match self {
            Client::Shoal(c) => c.prepare().await,
            Client::Postgres(c) => c.prepare().await,
            Client::Etcd(c) => c.prepare().await,
        }
    }

    /// Writes `rows` new rows (one statement, or one etcd transaction) tagged with `tag`.
    pub async fn insert(&mut self, tag: &str, rows: usize) -> Result<(), String> {
        match self {
            Client::Shoal(c) => c.insert(tag, rows).await,
            Client::Postgres(c) => c.insert(tag, rows).await,
            Client::Etcd(c) => c.insert(tag, rows).await,
        }
    }

    /// Reads the row with primary key `id` (1..=SEED_ROWS, always present).
    pub async fn point_select(&mut self, id: u64) -> Result<(), String> {
        match self {
            Client::Shoal(c) => c.point_select(id).await,
            Client::Postgres(c) => c.point_select(id).await,
            Client::Etcd(c) => c.point_select(id).await,
        }
    }
    /// Sets the value of the row with primary key `id` (1..=SEED_ROWS) to `tag`.
    pub async fn point_update(&mut self, id: u64, tag: &str) -> Result<(), String> {
        match self {
            Client::Shoal(c) => c.point_update(id, tag).await,
            Client::Postgres(c) => c.point_update(id, tag).await,
            Client::Etcd(c) => c.put(&id.to_string(), tag).await,
        }
    }
}

/// An HTTP client keeping one connection, as one database client would, sending
/// `credentials` with every request.
fn http_client(credentials: Option<&(String, String)>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .default_headers(crate::auth::cli::authorization_header(credentials))
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1);
    if let Some(tls) = crate::net::tls::client_config_from_env()? {
        builder = builder.use_preconfigured_tls(tls);
    }
    builder.build().map_err(|e| format!("HTTP client: {e}"))
}

/// Shoal's HTTP API (rqlite-compatible).
pub struct ShoalClient {
    http: reqwest::Client,
    execute_url: String,
    query_url: String,
}

/// The parts of a Shoal response a benchmark must check: a request-level error, or one per
/// statement.
#[derive(Deserialize)]
struct ShoalResponse {
    #[serde(default)]
    results: Vec<ShoalResult>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct ShoalResult {
    error: Option<String>,
}

impl ShoalClient {
    fn new(config: &TargetConfig) -> Result<ShoalClient, String> {
        // A cluster running --auth: SHOAL_USER with SHOAL_PASSWORD, as the other commands.
        let user = std::env::var("SHOAL_USER").ok();
        let http = http_client(crate::auth::cli::credentials(user.as_deref()).as_ref())?;
        let base = config.url.trim_end_matches('/');
        let database = config.database.as_ref().map(|name| ("db", name.as_str()));
        let query_string = |pairs: Vec<(&str, &str)>| {
            if pairs.is_empty() {
                return String::new();
            }
            format!(
                "?{}",
                serde_urlencoded::to_string(pairs).unwrap_or_default()
            )
        };
        let query_options = query_string(
            config
                .consistency
                .as_ref()
                .map(|level| ("level", level.as_str()))
                .into_iter()
                .chain(database)
                .collect(),
        );
        let execute_options = query_string(
            config
                .write_concern
                .as_ref()
                .map(|w| ("w", w.as_str()))
                .into_iter()
                .chain(database)
                .collect(),
        );
        Ok(ShoalClient {
            http,
            execute_url: format!("{base}/db/execute{execute_options}"),
            query_url: format!("{base}/db/query{query_options}"),
        })
    }

    async fn post(&self, url: &str, body: &Value) -> Result<(), String> {
        let response = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("reading the response failed: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ));
        }
        let parsed: ShoalResponse =
            serde_json::from_slice(&bytes).map_err(|e| format!("unreadable response: {e}"))?;
        if let Some(error) = parsed.error {
            return Err(error);
        }
        match parsed.results.into_iter().find_map(|r| r.error) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    async fn prepare(&mut self) -> Result<(), String> {
        let statements = json!([
            format!("CREATE TABLE IF NOT EXISTS {TABLE}(id INTEGER PRIMARY KEY, value TEXT)"),
            format!(
                "INSERT OR IGNORE INTO {TABLE}(id, value) WITH RECURSIVE seed(id) AS \
                 (SELECT 1 UNION ALL SELECT id + 1 FROM seed WHERE id < {SEED_ROWS}) \
                 SELECT id, 'seed' FROM seed"
            ),
        ]);
        self.post(&self.execute_url, &statements).await
    }

    async fn insert(&mut self, tag: &str, rows: usize) -> Result<(), String> {
        let placeholders = vec!["(?)"; rows].join(", ");
        let mut statement = vec![json!(format!(
            "INSERT INTO {TABLE}(value) VALUES {placeholders}"
        ))];
        statement.extend((0..rows).map(|row| json!(format!("{tag}-{row}"))));
        self.post(&self.execute_url, &json!([statement])).await
    }

    async fn point_select(&mut self, id: u64) -> Result<(), String> {
        self.post(
            &self.query_url,
            &json!([[format!("SELECT value FROM {TABLE} WHERE id = ?"), id]]),
        )
        .await
    }
    async fn point_update(&mut self, id: u64, tag: &str) -> Result<(), String> {
        self.post(
            &self.execute_url,
            &json!([[
                format!("UPDATE {TABLE} SET value = ? WHERE id = ?"),
                tag,
                id
            ]]),
        )
        .await
    }
}

/// A PostgreSQL-protocol connection with prepared statements, as drivers use them.
pub struct PostgresClient {
    client: tokio_postgres::Client,
    select: Option<tokio_postgres::Statement>,
    update: Option<tokio_postgres::Statement>,
    /// Prepared multi-row INSERTs, by row count.
    inserts: Vec<(usize, tokio_postgres::Statement)>,
}

impl PostgresClient {
    async fn connect(url: &str) -> Result<PostgresClient, String> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("connect to {url}: {e}"))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "benchmark connection closed");
            }
        });
        Ok(PostgresClient {
            client,
            select: None,
            update: None,
            inserts: Vec::new(),
        })
    }

    async fn prepare(&mut self) -> Result<(), String> {
        // Already seeded (a standby is read-only and can only be used once the primary was
        // prepared): nothing to do.
        let seeded = self
            .client
            .query_one(
                &format!("SELECT count(*) FROM {TABLE} WHERE id BETWEEN 1 AND {SEED_ROWS}"),
                &[],
            )
            .await
            .ok()
            .and_then(|row| row.try_get::<_, i64>(0).ok());
        if seeded == i64::try_from(SEED_ROWS).ok() {
            return Ok(());
        }
        // Shoal speaks the protocol with SQLite's SQL; PostgreSQL needs its own.
        let shoal = self
            .client
            .query_one("SELECT version()", &[])
            .await
            .ok()
            .and_then(|row| row.try_get::<_, String>(0).ok())
            .is_some_and(|version| version.contains("Shoal"));
        let seed = if shoal {
            format!(
                "CREATE TABLE IF NOT EXISTS {TABLE}(id INTEGER PRIMARY KEY, value TEXT);
                 INSERT OR IGNORE INTO {TABLE}(id, value) WITH RECURSIVE seed(id) AS
                   (SELECT 1 UNION ALL SELECT id + 1 FROM seed WHERE id < {SEED_ROWS})
                   SELECT id, 'seed' FROM seed"
            )
        } else {
            // Seeds ids 1..=SEED_ROWS and moves the id sequence past them, so generated ids
            // never collide with the seed.
            format!(
                "CREATE TABLE IF NOT EXISTS {TABLE}(id BIGSERIAL PRIMARY KEY, value TEXT);
                 INSERT INTO {TABLE}(id, value) SELECT g, 'seed' FROM generate_series(1, {SEED_ROWS}) g
                   ON CONFLICT DO NOTHING;
                 SELECT setval(pg_get_serial_sequence('{TABLE}', 'id'),
                   GREATEST({SEED_ROWS}, (SELECT max(id) FROM {TABLE})));"
            )
        };
        self.client
            .batch_execute(&seed)
            .await
            .map_err(|e| format!("preparing {TABLE}: {}", pg_error(e)))
    }

    async fn insert(&mut self, tag: &str, rows: usize) -> Result<(), String> {
        let statement = match self.inserts.iter().find(|(n, _)| *n == rows) {
            Some((_, statement)) => statement.clone(),
            None => {
                let placeholders: Vec<String> = (1..=rows).map(|i| format!("(${i})")).collect();
                let statement = self
                    .client
                    .prepare(&format!(
                        "INSERT INTO {TABLE}(value) VALUES {}",
                        placeholders.join(", ")
                    ))
                    .await
                    .map_err(pg_error)?;
                self.inserts.push((rows, statement.clone()));
                statement
            }
        };
        let values: Vec<String> = (0..rows).map(|row| format!("{tag}-{row}")).collect();
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        self.client
            .execute(&statement, &params)
            .await
            .map(|_| ())
            .map_err(pg_error)
    }

    async fn point_select(&mut self, id: u64) -> Result<(), String> {
        let statement = match &self.select {
            Some(statement) => statement.clone(),
            None => {
                let statement = self
                    .client
                    .prepare(&format!("SELECT value FROM {TABLE} WHERE id = $1"))
                    .await
                    .map_err(pg_error)?;
                self.select = Some(statement.clone());
                statement
            }
        };
        // The key is bound as the type the server describes: Shoal's INTEGER PRIMARY KEY is
        // PostgreSQL's integer (int4), the peer's BIGSERIAL a bigint.
        let row = if statement.params().first() == Some(&tokio_postgres::types::Type::INT4) {
            let id = i32::try_from(id).map_err(|_| format!("id {id} out of range"))?;
            self.client.query_opt(&statement, &[&id]).await
        } else {
            let id = i64::try_from(id).map_err(|_| format!("id {id} out of range"))?;
            self.client.query_opt(&statement, &[&id]).await
        };
        row.map_err(pg_error)?
            .map(|_| ())
            .ok_or_else(|| format!("row {id} not found"))
    }
    async fn point_update(&mut self, id: u64, tag: &str) -> Result<(), String> {
        let statement = match &self.update {
            Some(statement) => statement.clone(),
            None => {
                let statement = self
                    .client
                    .prepare(&format!("UPDATE {TABLE} SET value = $1 WHERE id = $2"))
                    .await
                    .map_err(pg_error)?;
                self.update = Some(statement.clone());
                statement
            }
        };
        // The key bound as the server describes it (as in `point_select`).
        let updated = if statement.params().get(1) == Some(&tokio_postgres::types::Type::INT4) {
            let id = i32::try_from(id).map_err(|_| format!("id {id} out of range"))?;
            self.client.execute(&statement, &[&tag, &id]).await
        } else {
            let id = i64::try_from(id).map_err(|_| format!("id {id} out of range"))?;
            self.client.execute(&statement, &[&tag, &id]).await
        };
        match updated.map_err(pg_error)? {
            1 => Ok(()),
            n => Err(format!("updating row {id} changed {n} rows")),
        }
    }
}

/// The server's own message and SQLSTATE where there is one (tokio-postgres displays a server
/// error as just "db error").
fn pg_error(error: tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

/// etcd through its v3 JSON gateway (`/v3/kv/…`, keys and values in base64).
pub struct EtcdClient {
    http: reqwest::Client,
    base: String,
    serializable: bool,
}

impl EtcdClient {
    fn new(config: &TargetConfig) -> Result<EtcdClient, String> {
        let http = http_client(None)?;
        Ok(EtcdClient {
            http,
            base: config.url.trim_end_matches('/').to_string(),
            serializable: config.consistency.as_deref() == Some("none"),
        })
    }

    fn key(id: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{TABLE}/{id}"))
    }

    async fn call(&self, path: &str, body: &Value) -> Result<Value, String> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        let value: Value = response
            .json()
            .await
            .map_err(|e| format!("unreadable response: {e}"))?;
        if !status.is_success() {
            return Err(format!("HTTP {status}: {value}"));
        }
        Ok(value)
    }

    async fn prepare(&mut self) -> Result<(), String> {
        // One transaction per 100 keys: etcd refuses transactions of more than 128 operations.
        let ids: Vec<u64> = (1..=SEED_ROWS).collect();
        for chunk in ids.chunks(100) {
            let puts: Vec<Value> = chunk
                .iter()
                .map(|id| json!({"requestPut": {"key": Self::key(&id.to_string()), "value": "c2VlZA=="}}))
                .collect();
            self.call("/v3/kv/txn", &json!({ "success": puts })).await?;
        }
        Ok(())
    }

    /// Sets key `id` to `value`.
    async fn put(&mut self, id: &str, value: &str) -> Result<(), String> {
        let value = base64::engine::general_purpose::STANDARD.encode(value);
        self.call("/v3/kv/put", &json!({"key": Self::key(id), "value": value}))
            .await
            .map(|_| ())
    }

    async fn insert(&mut self, tag: &str, rows: usize) -> Result<(), String> {
        if rows == 1 {
            return self.put(tag, tag).await;
        }
        let value = base64::engine::general_purpose::STANDARD.encode(tag);
        let puts: Vec<Value> = (0..rows)
            .map(|row| json!({"requestPut": {"key": Self::key(&format!("{tag}-{row}")), "value": value}}))
            .collect();
        self.call("/v3/kv/txn", &json!({ "success": puts }))
            .await
            .map(|_| ())
    }

    async fn point_select(&mut self, id: u64) -> Result<(), String> {
        let found = self
            .call(
                "/v3/kv/range",
                &json!({"key": Self::key(&id.to_string()), "serializable": self.serializable}),
            )
            .await?;
        if found.get("kvs").is_some_and(|kvs| kvs.is_array()) {
            Ok(())
        } else {
            Err(format!("key {id} not found"))
        }
    }
}
