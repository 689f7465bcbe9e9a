//! The catalog's tables (in the SQLite database of group 0) and this node's view of them:
//! which databases exist, the group each lives in, and where that group's replicas are placed.

use std::collections::{BTreeMap, BTreeSet};

use crate::raft::types::{GroupId, NodeId, Statement};
use crate::types::value::SqlValue;

/// The layout of the catalog's tables. A node refuses (and says so) a catalog written by a
/// newer layout; an older one is brought up to this one by the catalog leader.
pub const CATALOG_LAYOUT: i64 = 1;

/// The database every node holds and clients use when they name none (`db=` absent); it is
/// the data group that existed before the catalog, so a data directory of an earlier version
/// keeps its data in it.
pub const DEFAULT_DATABASE: &str = "shoal";

/// The first group id given to a created database (0 is the catalog, 1 the default database).
const FIRST_CREATED_GROUP: GroupId = 2;

/// The statements that create the catalog's tables and record the default database. Each is
/// idempotent, so catalog leaders racing to run them agree.
pub fn layout_statements(now_ms: i64) -> Vec<Statement> {
    let mut statements: Vec<Statement> = [
        "CREATE TABLE IF NOT EXISTS catalog_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS databases (
             name TEXT PRIMARY KEY,
             group_id INTEGER NOT NULL UNIQUE,
             replicas INTEGER NOT NULL,
             read_replicas INTEGER NOT NULL,
             created_ms INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS placements (
             group_id INTEGER NOT NULL,
             node_id INTEGER NOT NULL,
             role TEXT NOT NULL CHECK (role IN ('voter', 'replica')),
             initial INTEGER NOT NULL,
             PRIMARY KEY (group_id, node_id))",
        "CREATE TABLE IF NOT EXISTS node_states (
             node_id INTEGER PRIMARY KEY,
             state TEXT NOT NULL CHECK (state IN ('draining')))",
        "CREATE TABLE IF NOT EXISTS node_zones (
             node_id INTEGER PRIMARY KEY,
             zone TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS dropped_groups (
             group_id INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             dropped_ms INTEGER NOT NULL)",
    ]
    .into_iter()
    .map(Statement::plain)
    .collect();
    statements.push(positional(
        "INSERT OR IGNORE INTO catalog_meta (key, value) VALUES ('layout', ?1), ('next_group', ?2)",
        vec![
            SqlValue::Integer(CATALOG_LAYOUT),
            SqlValue::Integer(FIRST_CREATED_GROUP as i64),
        ],
    ));
    // replicas = 0: on every node of the cluster (members join it through `/join`).
    statements.push(positional(
        "INSERT OR IGNORE INTO databases (name, group_id, replicas, read_replicas, created_ms)
         VALUES (?1, ?2, 0, 0, ?3)",
        vec![
            SqlValue::Text(DEFAULT_DATABASE.into()),
            SqlValue::Integer(crate::raft::types::DEFAULT_DATA_GROUP as i64),
            SqlValue::Integer(now_ms),
        ],
    ));
    statements
}

/// A statement with positional parameters.
pub fn positional(sql: &str, values: Vec<SqlValue>) -> Statement {
    Statement {
        sql: sql.into(),
        params: crate::raft::types::Params::Positional(values),
    }
}

/// How a placed node holds a group's replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A voting member.
    Voter,
    /// A read replica (a Raft learner).
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Voter => "voter",
            Role::Replica => "replica",
        }
    }
}

/// One node holding a replica of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub node: NodeId,
    pub role: Role,
    /// One of the voters the group was created with: these nodes initialize the group.
    pub initial: bool,
}

/// One database as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseEntry {
    pub name: String,
    pub group: GroupId,
    /// Voters wanted; 0 for the default database, which every node holds.
    pub replicas: u32,
    pub read_replicas: u32,
    pub placements: Vec<Placement>,
}

impl DatabaseEntry {
    /// Whether `node` is placed to hold a replica.
    pub fn placed_on(&self, node: NodeId) -> Option<&Placement> {
        self.placements.iter().find(|p| p.node == node)
    }

    /// Whether every node holds it (the default database).
    pub fn everywhere(&self) -> bool {
        self.replicas == 0
    }
}

/// What this node's replica of the catalog says, as of `applied`.
#[derive(Debug, Clone, Default)]
pub struct CatalogView {
    /// False until the catalog's tables exist here (a new node still catching up).
    pub ready: bool,
    /// The catalog log index this view was read at.
    pub applied: u64,
    pub databases: BTreeMap<String, DatabaseEntry>,
    /// Groups of dropped databases: never reused, removed wherever they still run.
    pub dropped: BTreeSet<GroupId>,
    /// Nodes being drained (`shoal cluster drain`): their replicas move elsewhere.
    pub draining: BTreeSet<NodeId>,
    /// Each node's `--zone`, as it registered it.
    pub zones: BTreeMap<NodeId, String>,
    /// The users are kept in the catalog (`catalog::users`); before, in the default database.
    pub users_in_catalog: bool,
    /// Users copied from the default database into the catalog (never copied again: a user
    /// removed since stays removed).
    pub users_copied: BTreeSet<String>,
}

impl CatalogView {
    pub fn by_group(&self, group: GroupId) -> Option<&DatabaseEntry> {
        self.databases.values().find(|d| d.group == group)
    }

    /// Replicas placed per node (voters and read replicas), for choosing where a new group goes.
    pub fn load_per_node(&self) -> BTreeMap<NodeId, usize> {
        let mut load = BTreeMap::new();
        for placement in self.databases.values().flat_map(|d| &d.placements) {
            *load.entry(placement.node).or_default() += 1;
        }
        load
    }
}

/// Reads the catalog from its SQLite database (`connection`, one read snapshot).
pub fn read(connection: &rusqlite::Connection, applied: u64) -> Result<CatalogView, String> {
    let fail = |e: rusqlite::Error| format!("reading the catalog: {e}");
    let exists: bool = connection
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'catalog_meta'",
            [],
            |row| row.get::<_, i64>(0).map(|n| n > 0),
        )
        .map_err(fail)?;
    if !exists {
        return Ok(CatalogView {
            applied,
            ..Default::default()
        });
    }
    let layout: i64 = connection
        .query_row(
            "SELECT value FROM catalog_meta WHERE key = 'layout'",
            [],
            |row| row.get(0),
        )
        .map_err(fail)?;
    if layout > CATALOG_LAYOUT {
        return Err(format!(
            "the catalog has layout {layout}, written by a newer Shoal; this one reads up to \
             layout {CATALOG_LAYOUT}: upgrade this node"
        ));
    }
    let mut placements: BTreeMap<GroupId, Vec<Placement>> = BTreeMap::new();
    let placed = rows(
        connection,
        "SELECT group_id, node_id, role, initial FROM placements ORDER BY group_id, node_id",
        |row| {
            let role: String = row.get(2)?;
            Ok((
                row.get::<_, i64>(0)? as GroupId,
                Placement {
                    node: row.get::<_, i64>(1)? as NodeId,
                    role: if role == "voter" {
                        Role::Voter
                    } else {
                        Role::Replica
                    },
                    initial: row.get::<_, i64>(3)? != 0,
                },
            ))
        },
    )
    .map_err(fail)?;
    for (group, placement) in placed {
        placements.entry(group).or_default().push(placement);
    }
    let databases = rows(
        connection,
        "SELECT name, group_id, replicas, read_replicas FROM databases",
        |row| {
            let group = row.get::<_, i64>(1)? as GroupId;
            Ok(DatabaseEntry {
                name: row.get(0)?,
                group,
                replicas: row.get::<_, i64>(2)? as u32,
                read_replicas: row.get::<_, i64>(3)? as u32,
                placements: placements.remove(&group).unwrap_or_default(),
            })
        },
    )
    .map_err(fail)?
    .into_iter()
    .map(|entry| (entry.name.clone(), entry))
    .collect();
    let id = |row: &rusqlite::Row| row.get::<_, i64>(0).map(|n| n as u64);
    let dropped = rows(connection, "SELECT group_id FROM dropped_groups", id)
        .map_err(fail)?
        .into_iter()
        .collect();
    let draining = rows(
        connection,
        "SELECT node_id FROM node_states WHERE state = 'draining'",
        id,
    )
    .map_err(fail)?
    .into_iter()
    .collect();
    let zones = rows(connection, "SELECT node_id, zone FROM node_zones", |row| {
        Ok((row.get::<_, i64>(0)? as NodeId, row.get::<_, String>(1)?))
    })
    .map_err(fail)?
    .into_iter()
    .collect();
    let users_in_catalog = rows(
        connection,
        "SELECT value FROM catalog_meta WHERE key = 'users_in_catalog'",
        |row| row.get::<_, i64>(0),
    )
    .map_err(fail)?
    .first()
    .is_some_and(|moved| *moved != 0);
    // (A table the move creates: absent in a catalog whose users never moved.)
    let copied_table: bool = connection
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'users_copied'",
            [],
            |row| row.get::<_, i64>(0).map(|n| n > 0),
        )
        .map_err(fail)?;
    let users_copied = if copied_table {
        rows(connection, "SELECT name FROM users_copied", |row| {
            row.get(0)
        })
        .map_err(fail)?
        .into_iter()
        .collect()
    } else {
        BTreeSet::new()
    };
    Ok(CatalogView {
        ready: true,
        applied,
        databases,
        dropped,
        draining,
        zones,
        users_in_catalog,
        users_copied,
    })
}

/// Every row of `sql`, mapped.
fn rows<T>(
    connection: &rusqlite::Connection,
    sql: &str,
    map: impl FnMut(&rusqlite::Row) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    connection.prepare(sql)?.query_map([], map)?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(connection: &rusqlite::Connection, statements: &[Statement]) {
        for statement in statements {
            let params: Vec<rusqlite::types::Value> = match &statement.params {
                crate::raft::types::Params::Positional(values) => {
                    values.iter().map(|v| v.clone().into()).collect()
                }
                _ => Vec::new(),
            };
            connection
                .execute(&statement.sql, rusqlite::params_from_iter(params))
                .unwrap();
        }
    }

    #[test]
    fn an_empty_database_is_a_catalog_not_ready_yet() {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        let view = read(&connection, 7).unwrap();
        assert!(!view.ready);
        assert_eq!(view.applied, 7);
    }

    #[test]
    fn the_layout_records_the_default_database_once() {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        apply(&connection, &layout_statements(1));
        apply(&connection, &layout_statements(2));
        let view = read(&connection, 3).unwrap();
        assert!(view.ready);
        let default = &view.databases[DEFAULT_DATABASE];
        assert_eq!(default.group, crate::raft::types::DEFAULT_DATA_GROUP);
        assert!(default.everywhere());
        assert_eq!(view.databases.len(), 1);
    }

    #[test]
    fn a_catalog_of_a_newer_layout_is_refused_by_name() {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        apply(&connection, &layout_statements(1));
        connection
            .execute(
                "UPDATE catalog_meta SET value = 99 WHERE key = 'layout'",
                [],
            )
            .unwrap();
        let error = read(&connection, 1).unwrap_err();
        assert!(error.contains("layout 99"), "{error}");
    }
}
