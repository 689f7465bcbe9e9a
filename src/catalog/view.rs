//! The catalog's tables (in the SQLite database of group 0) and this node's view of them:
//! which databases exist, the group each lives in, and where that group's replicas are placed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::catalog::slots::{SlotMap, SlotRange};
use crate::catalog::sql::BalanceMeasure;
use crate::raft::types::{GroupId, NodeId, Statement};
use crate::types::value::SqlValue;

/// The layout of the catalog's tables. A node refuses (and says so) a catalog written by a
/// newer layout; an older one is brought up to this one by the catalog leader.
///
/// Layout 2 adds sharding (`shard_groups`, `table_kinds`, `database_options`,
/// `table_sequences`). Their tables exist in every catalog, but the layout is raised to 2 only
/// when the first sharded database is created: until then nodes of layout 1 keep reading the
/// catalog, and afterwards they refuse it rather than route a sharded database's requests to
/// one of its groups.
///
/// Layout 3 adds resharding (`slot_ranges`, `owner_versions`, `joining_groups`,
/// `slot_moves`, and later `balance_settings`, which older layout-3 nodes ignore); it is raised to 3 by the first `ALTER DATABASE … SET (shards = N)`, after
/// which nodes of layout 2 — which would route by the even map — refuse the catalog.
pub const CATALOG_LAYOUT: i64 = 3;
/// The layout a catalog needs once it records a sharded database.
pub const SHARDED_LAYOUT: i64 = 2;
/// The layout a catalog needs once a database was resharded.
pub const RESHARDED_LAYOUT: i64 = 3;

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
        // A sharded database's groups after its first (shard 0 is `databases.group_id`).
        "CREATE TABLE IF NOT EXISTS shard_groups (
             database_group INTEGER NOT NULL,
             shard INTEGER NOT NULL CHECK (shard >= 1),
             group_id INTEGER NOT NULL UNIQUE,
             PRIMARY KEY (database_group, shard))",
        // A sharded database's options, and the count of its schema changes (routers
        // reload the schema they analyse statements with when it moves).
        "CREATE TABLE IF NOT EXISTS database_options (
             database_group INTEGER PRIMARY KEY,
             distribute_all INTEGER NOT NULL,
             schema_epoch INTEGER NOT NULL DEFAULT 0)",
        // Distributed and reference tables (every other table is local), by lower-cased name.
        "CREATE TABLE IF NOT EXISTS table_kinds (
             database_group INTEGER NOT NULL,
             table_name TEXT NOT NULL,
             kind TEXT NOT NULL CHECK (kind IN ('distributed', 'reference')),
             key_column TEXT,
             PRIMARY KEY (database_group, table_name))",
        // The next rowid handed out for a distributed table's new rows.
        "CREATE TABLE IF NOT EXISTS table_sequences (
             database_group INTEGER NOT NULL,
             table_name TEXT NOT NULL,
             next INTEGER NOT NULL,
             PRIMARY KEY (database_group, table_name))",
        // A resharded database's slot map (absent: the even map over its groups).
        "CREATE TABLE IF NOT EXISTS slot_ranges (
             database_group INTEGER NOT NULL,
             first_slot INTEGER NOT NULL,
             end_slot INTEGER NOT NULL,
             group_id INTEGER NOT NULL,
             PRIMARY KEY (database_group, first_slot))",
        // The owner version each group answers for (`db::ownership`; absent: 0).
        "CREATE TABLE IF NOT EXISTS owner_versions (
             group_id INTEGER PRIMARY KEY,
             version INTEGER NOT NULL)",
        // Groups added by resharding that do not hold the schema yet: hosted, not routed.
        "CREATE TABLE IF NOT EXISTS joining_groups (
             group_id INTEGER PRIMARY KEY,
             database_group INTEGER NOT NULL)",
        // Resharding's steps not finished yet, run in order (`catalog::reshard`): a group
        // joining (`join`: schema and reference rows copied from `from_group`), slots moving
        // (`move`), an emptied group leaving (`leave`). `version` is the owner version the
        // step gives its groups, chosen when it starts.
        "CREATE TABLE IF NOT EXISTS slot_moves (
             move_id INTEGER PRIMARY KEY,
             database_group INTEGER NOT NULL,
             kind TEXT NOT NULL CHECK (kind IN ('join', 'move', 'leave')),
             first_slot INTEGER NOT NULL,
             end_slot INTEGER NOT NULL,
             from_group INTEGER NOT NULL,
             to_group INTEGER NOT NULL,
             version INTEGER)",
        // Databases whose slots are balanced automatically, and by what (`slot_balance`);
        // absent: off. Older nodes of layout 3 ignore it (they do not balance by themselves).
        "CREATE TABLE IF NOT EXISTS balance_settings (
             database_group INTEGER PRIMARY KEY,
             measure TEXT NOT NULL CHECK (measure IN ('rows', 'bytes', 'writes')))",
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

/// How a table's rows are spread over a sharded database's groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableKind {
    /// Each row in the group owning the slot of its shard key: the column `key`, or the
    /// rowid when `None`.
    Distributed { key: Option<String> },
    /// A full copy in every group.
    Reference,
}

/// One group of a database as the catalog records it (a database that is not sharded has
/// one; `databases` lists each database's first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseEntry {
    pub name: String,
    pub group: GroupId,
    /// This group's place among the database's groups (0: the first, which holds its local
    /// tables).
    pub shard: u32,
    /// The database's groups in shard order (one when it is not sharded).
    pub groups: Vec<GroupId>,
    /// Its distributed and reference tables by lower-cased name.
    pub tables: BTreeMap<String, TableKind>,
    /// New tables are distributed by their rowid or primary key (`distribute = all`).
    pub distribute_all: bool,
    /// Bumped by every schema change made through a router (sharded databases), and by
    /// every change of the slot map (plans made by an older map are dropped with it).
    pub schema_epoch: u64,
    /// Which group owns each slot, and the owner version each must be at (sharded databases).
    pub slots: Arc<SlotMap>,
    /// Groups being added by resharding: hosted, not routed yet (not in `groups`).
    pub joining: Vec<GroupId>,
    /// Resharding steps not finished yet.
    pub moves_pending: usize,
    /// What the catalog leader balances its slots by on its own (`None`: it does not).
    pub auto_balance: Option<BalanceMeasure>,
    /// Voters wanted; 0 for the default database, which every node holds.
    pub replicas: u32,
    pub read_replicas: u32,
    pub placements: Vec<Placement>,
}

impl DatabaseEntry {
    /// A sharded database `shop` over groups 2 and 3 with no table kinds yet (unit tests).
    #[cfg(test)]
    pub fn sharded_for_tests() -> DatabaseEntry {
        DatabaseEntry {
            name: "shop".into(),
            group: 2,
            shard: 0,
            groups: vec![2, 3],
            tables: Default::default(),
            distribute_all: false,
            schema_epoch: 0,
            slots: Arc::new(SlotMap::even(&[2, 3])),
            joining: Vec::new(),
            moves_pending: 0,
            auto_balance: None,
            replicas: 3,
            read_replicas: 0,
            placements: Vec::new(),
        }
    }

    /// Whether `node` is placed to hold a replica.
    pub fn placed_on(&self, node: NodeId) -> Option<&Placement> {
        self.placements.iter().find(|p| p.node == node)
    }

    /// Whether every node holds it (the default database).
    pub fn everywhere(&self) -> bool {
        self.replicas == 0
    }

    /// Whether the database has more than one group.
    pub fn sharded(&self) -> bool {
        self.groups.len() > 1
    }
}

/// What this node's replica of the catalog says, as of `applied`.
#[derive(Debug, Clone, Default)]
pub struct CatalogView {
    /// False until the catalog's tables exist here (a new node still catching up).
    pub ready: bool,
    /// The catalog log index this view was read at.
    pub applied: u64,
    pub databases: BTreeMap<String, Arc<DatabaseEntry>>,
    /// Every group of every database (a sharded database's first group is also in
    /// `databases`).
    pub groups: BTreeMap<GroupId, DatabaseEntry>,
    /// The sharding tables exist (created by a catalog leader of this version).
    pub has_shard_tables: bool,
    /// The resharding tables exist.
    pub has_reshard_tables: bool,
    /// Resharding steps not finished yet, in the order they run (`catalog::mover`).
    pub slot_moves: Vec<SlotMoveRow>,
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
        self.groups.get(&group)
    }

    /// Replicas placed per node (voters and read replicas), for choosing where a new group goes.
    pub fn load_per_node(&self) -> BTreeMap<NodeId, usize> {
        let mut load = BTreeMap::new();
        for placement in self.groups.values().flat_map(|d| &d.placements) {
            *load.entry(placement.node).or_default() += 1;
        }
        load
    }
}

/// Reads the catalog from its SQLite database (`connection`, one read snapshot).
pub fn read(connection: &rusqlite::Connection, applied: u64) -> Result<CatalogView, String> {
    let fail = |e: rusqlite::Error| format!("reading the catalog: {e}");
    let exists = has_table(connection, "catalog_meta").map_err(fail)?;
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
    let has_shard_tables = has_table(connection, "table_sequences").map_err(fail)?;
    let has_slot_moves = has_table(connection, "slot_moves").map_err(fail)?;
    let has_balance_settings = has_table(connection, "balance_settings").map_err(fail)?;
    // (The leader creates whichever is missing.)
    let has_reshard_tables = has_slot_moves && has_balance_settings;
    let mut sharding = if has_shard_tables {
        read_sharding(connection).map_err(fail)?
    } else {
        Sharding::default()
    };
    if has_slot_moves {
        read_resharding(connection, &mut sharding).map_err(fail)?;
    }
    if has_balance_settings {
        read_balance_settings(connection, &mut sharding).map_err(fail)?;
    }
    let firsts = rows(
        connection,
        "SELECT name, group_id, replicas, read_replicas FROM databases",
        |row| {
            let group = row.get::<_, i64>(1)? as GroupId;
            Ok(DatabaseEntry {
                name: row.get(0)?,
                group,
                shard: 0,
                groups: vec![group],
                tables: BTreeMap::new(),
                distribute_all: false,
                schema_epoch: 0,
                slots: Arc::default(),
                joining: Vec::new(),
                moves_pending: 0,
                auto_balance: None,
                replicas: row.get::<_, i64>(2)? as u32,
                read_replicas: row.get::<_, i64>(3)? as u32,
                placements: placements.remove(&group).unwrap_or_default(),
            })
        },
    )
    .map_err(fail)?;
    let mut databases = BTreeMap::new();
    let mut groups = BTreeMap::new();
    for mut entry in firsts {
        let first = entry.group;
        let (routed, joining): (Vec<GroupId>, Vec<GroupId>) = sharding
            .groups
            .get(&first)
            .into_iter()
            .flatten()
            .partition(|group| !sharding.joining.contains(group));
        entry.groups.extend(routed);
        entry.joining = joining;
        entry.tables = sharding.tables.get(&first).cloned().unwrap_or_default();
        if let Some((distribute_all, epoch)) = sharding.options.get(&first) {
            entry.distribute_all = *distribute_all;
            entry.schema_epoch = *epoch;
        }
        let versions: BTreeMap<GroupId, u64> = entry
            .groups
            .iter()
            .filter_map(|group| Some((*group, *sharding.versions.get(group)?)))
            .collect();
        entry.slots = Arc::new(match sharding.ranges.remove(&first) {
            Some(ranges) => SlotMap::stored(ranges, versions)
                .map_err(|e| format!("database {:?}: {e}", entry.name))?,
            None => SlotMap::even(&entry.groups),
        });
        entry.moves_pending = sharding.moves.get(&first).copied().unwrap_or(0);
        entry.auto_balance = sharding.balance.get(&first).copied();
        let members: Vec<GroupId> = entry.groups.iter().chain(&entry.joining).copied().collect();
        for (shard, group) in members.iter().enumerate().skip(1) {
            let mut member = entry.clone();
            member.group = *group;
            member.shard = shard as u32;
            member.placements = placements.remove(group).unwrap_or_default();
            groups.insert(*group, member);
        }
        groups.insert(first, entry.clone());
        databases.insert(entry.name.clone(), Arc::new(entry));
    }
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
    let copied_table = has_table(connection, "users_copied").map_err(fail)?;
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
        groups,
        has_shard_tables,
        has_reshard_tables,
        slot_moves: sharding.steps,
        dropped,
        draining,
        zones,
        users_in_catalog,
        users_copied,
    })
}

/// What the sharding tables say, per database (by its first group).
#[derive(Default)]
struct Sharding {
    /// Groups after the first, in shard order.
    groups: BTreeMap<GroupId, Vec<GroupId>>,
    tables: BTreeMap<GroupId, BTreeMap<String, TableKind>>,
    /// `distribute_all` and `schema_epoch`.
    options: BTreeMap<GroupId, (bool, u64)>,
    /// Stored slot maps.
    ranges: BTreeMap<GroupId, Vec<SlotRange>>,
    /// Owner versions by group.
    versions: BTreeMap<GroupId, u64>,
    joining: BTreeSet<GroupId>,
    /// Resharding steps not finished, per database.
    moves: BTreeMap<GroupId, usize>,
    steps: Vec<SlotMoveRow>,
    /// Automatic balancing, per database.
    balance: BTreeMap<GroupId, BalanceMeasure>,
}

/// One resharding step as the catalog's `slot_moves` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMoveRow {
    pub id: u64,
    /// The database's first group.
    pub database: GroupId,
    /// `join`, `move` or `leave` (`catalog::reshard::StepKind`).
    pub kind: String,
    pub first: u32,
    pub end: u32,
    pub from: GroupId,
    pub to: GroupId,
    /// The owner version the step gives its groups, once it started.
    pub version: Option<u64>,
}

fn read_resharding(
    connection: &rusqlite::Connection,
    sharding: &mut Sharding,
) -> rusqlite::Result<()> {
    let id = |row: &rusqlite::Row, at: usize| row.get::<_, i64>(at).map(|n| n as u64);
    for (database, range) in rows(
        connection,
        "SELECT database_group, first_slot, end_slot, group_id FROM slot_ranges
         ORDER BY database_group, first_slot",
        |row| {
            Ok((
                id(row, 0)?,
                SlotRange {
                    first: id(row, 1)? as u32,
                    end: id(row, 2)? as u32,
                    group: id(row, 3)?,
                },
            ))
        },
    )? {
        sharding.ranges.entry(database).or_default().push(range);
    }
    sharding.versions = rows(
        connection,
        "SELECT group_id, version FROM owner_versions",
        |row| Ok((id(row, 0)?, id(row, 1)?)),
    )?
    .into_iter()
    .collect();
    sharding.joining = rows(connection, "SELECT group_id FROM joining_groups", |row| {
        id(row, 0)
    })?
    .into_iter()
    .collect();
    sharding.steps = rows(
        connection,
        "SELECT move_id, database_group, kind, first_slot, end_slot, from_group, to_group,
                version
         FROM slot_moves ORDER BY move_id",
        |row| {
            Ok(SlotMoveRow {
                id: id(row, 0)?,
                database: id(row, 1)?,
                kind: row.get(2)?,
                first: id(row, 3)? as u32,
                end: id(row, 4)? as u32,
                from: id(row, 5)?,
                to: id(row, 6)?,
                version: row.get::<_, Option<i64>>(7)?.map(|v| v as u64),
            })
        },
    )?;
    for step in &sharding.steps {
        *sharding.moves.entry(step.database).or_default() += 1;
    }
    Ok(())
}

fn read_balance_settings(
    connection: &rusqlite::Connection,
    sharding: &mut Sharding,
) -> rusqlite::Result<()> {
    sharding.balance = rows(
        connection,
        "SELECT database_group, measure FROM balance_settings",
        |row| Ok((row.get::<_, i64>(0)? as GroupId, row.get::<_, String>(1)?)),
    )?
    .into_iter()
    .filter_map(|(database, measure)| Some((database, BalanceMeasure::parse(&measure)?)))
    .collect();
    Ok(())
}

fn read_sharding(connection: &rusqlite::Connection) -> rusqlite::Result<Sharding> {
    let mut sharding = Sharding::default();
    for (database, group) in rows(
        connection,
        "SELECT database_group, group_id FROM shard_groups ORDER BY database_group, shard",
        |row| {
            Ok((
                row.get::<_, i64>(0)? as GroupId,
                row.get::<_, i64>(1)? as GroupId,
            ))
        },
    )? {
        sharding.groups.entry(database).or_default().push(group);
    }
    for (database, table, kind, key) in rows(
        connection,
        "SELECT database_group, table_name, kind, key_column FROM table_kinds",
        |row| {
            Ok((
                row.get::<_, i64>(0)? as GroupId,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
            ))
        },
    )? {
        let kind = match kind.as_str() {
            "reference" => TableKind::Reference,
            _ => TableKind::Distributed { key },
        };
        sharding
            .tables
            .entry(database)
            .or_default()
            .insert(table, kind);
    }
    sharding.options = rows(
        connection,
        "SELECT database_group, distribute_all, schema_epoch FROM database_options",
        |row| {
            Ok((
                row.get::<_, i64>(0)? as GroupId,
                (row.get::<_, i64>(1)? != 0, row.get::<_, i64>(2)? as u64),
            ))
        },
    )?
    .into_iter()
    .collect();
    Ok(sharding)
}

fn has_table(connection: &rusqlite::Connection, name: &str) -> rusqlite::Result<bool> {
    connection.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |row| row.get::<_, i64>(0).map(|n| n > 0),
    )
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

    #[test]
    fn a_catalog_written_before_resharding_routes_by_the_even_map() {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        // The layout-2 catalog: every table but resharding's.
        let before: Vec<Statement> = layout_statements(1)
            .into_iter()
            .filter(|s| {
                ![
                    "slot_ranges",
                    "owner_versions",
                    "joining_groups",
                    "slot_moves",
                ]
                .iter()
                .any(|table| s.sql.contains(&format!("TABLE IF NOT EXISTS {table}")))
            })
            .collect();
        apply(&connection, &before);
        apply(
            &connection,
            &[
                Statement::plain("INSERT INTO databases VALUES ('shop', 2, 3, 0, 1)"),
                Statement::plain("INSERT INTO shard_groups VALUES (2, 1, 3), (2, 2, 4)"),
                Statement::plain("INSERT INTO database_options VALUES (2, 0, 0)"),
            ],
        );
        let view = read(&connection, 1).unwrap();
        assert!(!view.has_reshard_tables);
        let shop = &view.databases["shop"];
        assert_eq!(shop.groups, vec![2, 3, 4]);
        assert_eq!(*shop.slots, SlotMap::even(&[2, 3, 4]));
        assert_eq!((shop.moves_pending, shop.joining.len()), (0, 0));
        // The leader adds the tables (idempotent statements); nothing changes for shop.
        apply(&connection, &layout_statements(2));
        let view = read(&connection, 2).unwrap();
        assert!(view.has_reshard_tables);
        assert_eq!(*view.databases["shop"].slots, SlotMap::even(&[2, 3, 4]));
    }
}
