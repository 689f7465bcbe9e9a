//! How one statement of a sharded database runs: the tier it takes and the groups it
//! touches, decided from what compiling it against the schema shows (`schema::Analysis`), the
//! catalog's table kinds, and — for shard-key pinning — its text.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::catalog::slots::SlotMap;
use crate::catalog::view::{DatabaseEntry, TableKind};
use crate::raft::types::{GroupId, Statement};
use crate::router::pinning::{KeySource, pinned_key_sources};
use crate::router::scatter::{Context, Scatter, rewrite};
use crate::router::schema::{Analysis, Schema, ShardKey};
use crate::router::tokens::Token;
use crate::shard::slot::{Affinity, Slotter};
use crate::shard::write_load::{self, SlotWrites};
use crate::types::Params;

/// What running a statement takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Sent unchanged to one group.
    Single { group: GroupId, write: bool },
    /// Each group answers its part (`scatter.shard_sql`); the parts are combined here
    /// (`scatter.merge_sql`). `tables` are what it reads, gathered instead when combining
    /// the answers would not be exact.
    Scatter {
        scatter: Arc<Scatter>,
        tables: BTreeSet<String>,
    },
    /// The rows of `tables` gathered from their groups into an in-memory copy of the schema,
    /// where the statement runs unchanged.
    Gather { tables: BTreeSet<String> },
    /// An INSERT into a distributed table: its rows computed here and sent to the groups
    /// owning their keys.
    Insert { table: String },
    /// Sent unchanged to each of `groups`, atomically.
    Broadcast { groups: Vec<GroupId> },
    /// A schema change: to every group, atomically, with the catalog's table kinds.
    Schema,
    /// Not runnable on a sharded database; the message says why and what to do instead.
    Refused(String),
}

impl Plan {
    /// The tier's name as `shoal_plan` reports it.
    pub fn tier(&self) -> &'static str {
        match self {
            Plan::Single { .. } => "single",
            Plan::Gather { .. } => "gather",
            Plan::Scatter { .. } | Plan::Insert { .. } | Plan::Broadcast { .. } | Plan::Schema => {
                "scatter"
            }
            Plan::Refused(_) => "refused",
        }
    }
}

/// The kind of `table` in `database` (local when the catalog names none).
pub fn kind_of<'d>(database: &'d DatabaseEntry, table: &str) -> Option<&'d TableKind> {
    database.tables.get(table)
}

fn is_distributed(database: &DatabaseEntry, table: &str) -> bool {
    matches!(
        kind_of(database, table),
        Some(TableKind::Distributed { .. })
    )
}

/// Plans `statement`, analysed as `analysis` against `schema`: from the template kept with
/// the analysis when it was planned at `database`'s catalog epoch, else planned now (and kept).
pub fn plan(
    database: &DatabaseEntry,
    schema: &Schema,
    statement: &Statement,
    analysis: &Analysis,
) -> Plan {
    if let Some(kept) = analysis.template.get()
        && kept.epoch == database.schema_epoch
    {
        return kept.plan(&statement.params);
    }
    let fresh = template(database, schema, statement, analysis);
    let plan = fresh.plan(&statement.params);
    // The first plan made for the analysis is kept; an entry of another epoch (a moment
    // behind or ahead of the schema) plans without keeping.
    let _ = analysis.template.set(fresh);
    plan
}

/// What planning a statement's text decided, kept with its analysis (`Analysis::template`) so
/// that the same text sent again is not looked at again: the plan, and — when the text pins a
/// distributed table's shard key — the route that picks the one group from each call's bound
/// values. Valid for the catalog epoch it was made at: table kinds and groups change only with
/// the epoch.
#[derive(Debug)]
pub struct Template {
    epoch: u64,
    pin: Option<Pin>,
    /// The plan when the text pins no key, or its keys are not all in one group.
    otherwise: Plan,
}

impl Template {
    fn fixed(database: &DatabaseEntry, plan: Plan) -> Template {
        Template {
            epoch: database.schema_epoch,
            pin: None,
            otherwise: plan,
        }
    }

    /// The catalog epoch it was planned at.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The plan for a call with `params` bound.
    pub fn plan(&self, params: &Params) -> Plan {
        if let Some(pin) = &self.pin
            && let Some(group) = pin.group(params)
        {
            return match pin.statement {
                Pinned::Read { write } => Plan::Single { group, write },
                Pinned::Write => Plan::Broadcast {
                    groups: vec![group],
                },
            };
        }
        self.otherwise.clone()
    }
}

/// A shard key pinned by a statement's text: where its values come from, and what owns them.
#[derive(Debug)]
struct Pin {
    sources: Vec<KeySource>,
    affinity: Affinity,
    map: std::sync::Arc<SlotMap>,
    /// Where a NULL key goes: no group holds a match; the first answers "none".
    first: GroupId,
    statement: Pinned,
    /// Where a pinned write is counted (`shard::write_load`), for balancing by writes.
    writes: Option<Arc<SlotWrites>>,
}

#[derive(Debug, Clone, Copy)]
enum Pinned {
    /// A read of one distributed table, sent unchanged to the group (`write`: SQLite does not
    /// judge it read-only).
    Read { write: bool },
    /// An UPDATE or DELETE of one distributed table, written in the group.
    Write,
}

impl Pin {
    /// The one group owning every pinned key of a call, if one does.
    fn group(&self, params: &Params) -> Option<GroupId> {
        let mut owner = None;
        let mut first_slot = None;
        for source in &self.sources {
            let slot = slot_of(source.value(params)?, self.affinity);
            first_slot = first_slot.or(slot);
            let group = match slot {
                Some(slot) => self.map.group_of(slot),
                None => self.first,
            };
            if owner.is_some_and(|owner| owner != group) {
                return None;
            }
            owner = Some(group);
        }
        if let (Some(writes), Some(slot)) = (&self.writes, first_slot) {
            writes.record(slot);
        }
        owner
    }
}

/// Plans the text of `statement`.
fn template(
    database: &DatabaseEntry,
    schema: &Schema,
    statement: &Statement,
    analysis: &Analysis,
) -> Template {
    let fixed = |plan: Plan| Template::fixed(database, plan);
    let first = database.group;
    let all: Vec<GroupId> = database.groups.clone();
    if analysis.transaction_control {
        return fixed(Plan::Single {
            group: first,
            write: true,
        });
    }
    if analysis.changes_schema {
        return fixed(Plan::Schema);
    }
    let distributed_read: BTreeSet<String> = analysis
        .read
        .iter()
        .filter(|t| is_distributed(database, t))
        .cloned()
        .collect();
    let written = analysis.written();
    let tokens = analysis.tokens.as_deref();
    if written.is_empty() {
        if distributed_read.is_empty() {
            return fixed(Plan::Single {
                group: first,
                write: !analysis.read_only,
            });
        }
        let pin = match distributed_read.iter().next() {
            Some(table) if analysis.read.len() == 1 => pin(
                database,
                schema,
                table,
                tokens,
                Pinned::Read {
                    write: !analysis.read_only,
                },
            ),
            _ => None,
        };
        let otherwise = if !analysis.read_only {
            Plan::Refused(
                "this statement reads distributed tables and is not read-only (a PRAGMA that \
                 changes something?): it cannot be gathered"
                    .into(),
            )
        } else if let Some(scatter) =
            scatter_plan(database, schema, statement, analysis, &distributed_read)
        {
            Plan::Scatter {
                scatter: Arc::new(scatter),
                tables: analysis.read.clone(),
            }
        } else {
            Plan::Gather {
                tables: analysis.read.clone(),
            }
        };
        return Template {
            epoch: database.schema_epoch,
            pin,
            otherwise,
        };
    }
    let kinds: Vec<Option<&TableKind>> = written.iter().map(|t| kind_of(database, t)).collect();
    if kinds.iter().all(Option::is_none) {
        if !distributed_read.is_empty() {
            return fixed(Plan::Refused(format!(
                "writing local table {} from distributed table {} is not supported: a local \
                 table lives in one group, which holds only its share of the distributed rows",
                names(&written),
                names(&distributed_read)
            )));
        }
        return fixed(Plan::Single {
            group: first,
            write: true,
        });
    }
    if written.len() > 1 {
        return fixed(Plan::Refused(format!(
            "this statement writes several tables ({}), some distributed or reference (through \
             a trigger?): write each with its own statement",
            names(&written)
        )));
    }
    let Some(table) = written.iter().next().cloned() else {
        return fixed(Plan::Refused(
            "this statement writes no table it names".into(),
        ));
    };
    match kind_of(database, &table) {
        Some(TableKind::Reference) => {
            if !distributed_read.is_empty() {
                return fixed(Plan::Refused(format!(
                    "writing reference table {table} from distributed table {} is not \
                     supported: every group would write its own share",
                    names(&distributed_read)
                )));
            }
            fixed(Plan::Broadcast { groups: all })
        }
        Some(TableKind::Distributed { key }) => {
            if analysis.inserted.contains(&table) {
                if analysis.deleted.contains(&table) || analysis.updated.contains_key(&table) {
                    return fixed(Plan::Refused(format!(
                        "INSERT … ON CONFLICT DO UPDATE into distributed table {table} is not \
                         supported yet: use INSERT OR REPLACE, or UPDATE"
                    )));
                }
                return fixed(Plan::Insert { table });
            }
            if let Some(columns) = analysis.updated.get(&table) {
                let key_names = key_names(schema, &table, key.as_deref());
                if let Some(changed) = columns.iter().find(|c| key_names.contains(c)) {
                    return fixed(Plan::Refused(format!(
                        "changing a row's shard key ({table}.{changed}) is not supported: it \
                         would move the row to another group; delete the row and insert it \
                         with the new key"
                    )));
                }
            }
            let subquery = tokens.is_none_or(|t| t.iter().any(|t| t.is("select")));
            let others: BTreeSet<&String> =
                distributed_read.iter().filter(|t| **t != table).collect();
            if !others.is_empty() || (subquery && !distributed_read.is_empty()) {
                return fixed(Plan::Refused(format!(
                    "this {} of distributed table {table} reads distributed rows through a \
                     subquery or a join: each group would see only its own share; compute the \
                     values first (a SELECT), then write them",
                    if analysis.deleted.contains(&table) {
                        "DELETE"
                    } else {
                        "UPDATE"
                    }
                )));
            }
            Template {
                epoch: database.schema_epoch,
                pin: pin(database, schema, &table, tokens, Pinned::Write),
                otherwise: Plan::Broadcast { groups: all },
            }
        }
        None => fixed(Plan::Refused(format!(
            "this statement writes local table {table} and a distributed or reference table: \
             write each with its own statement"
        ))),
    }
}

/// The scatter plan of a read of one distributed table (joined, if at all, with reference
/// tables), when the shards can answer their parts exactly.
fn scatter_plan(
    database: &DatabaseEntry,
    schema: &Schema,
    statement: &Statement,
    analysis: &Analysis,
    distributed_read: &BTreeSet<String>,
) -> Option<Scatter> {
    let read: Vec<&String> = distributed_read.iter().collect();
    let [table] = read.as_slice() else {
        return None;
    };
    let references: BTreeSet<String> = database
        .tables
        .iter()
        .filter(|(_, kind)| matches!(kind, TableKind::Reference))
        .map(|(name, _)| name.clone())
        .collect();
    for read in &analysis.read {
        let other_kind = read != *table && !references.contains(read);
        if other_kind || schema.declares_collation(read).ok()? {
            return None;
        }
    }
    let shape = schema.table(table).ok()??;
    let views = schema.views().ok()?;
    let (columns, declared) = schema.describe(&statement.sql).ok()?;
    let context = Context {
        distributed: table,
        references: &references,
        views: &views,
        rowid_order: analysis.read.len() == 1 && !shape.without_rowid,
        columns,
        declared,
    };
    rewrite(&statement.sql, &context)
}

/// The ways a table's shard key can be written in a statement (lower-case).
pub fn key_names(schema: &Schema, table: &str, key: Option<&str>) -> Vec<String> {
    let rowid = || {
        let mut names: Vec<String> = ["rowid", "_rowid_", "oid"].map(String::from).to_vec();
        if let Ok(Some(shape)) = schema.table(table)
            && let Some(alias) = &shape.rowid_alias
        {
            names.push(alias.to_ascii_lowercase());
        }
        names
    };
    match key {
        None => rowid(),
        Some(column) => {
            let column = column.to_ascii_lowercase();
            let is_alias = schema.table(table).ok().flatten().is_some_and(|shape| {
                shape
                    .rowid_alias
                    .as_ref()
                    .is_some_and(|alias| alias.eq_ignore_ascii_case(&column))
            });
            if is_alias { rowid() } else { vec![column] }
        }
    }
}

/// The affinity of `table`'s shard key.
pub fn key_affinity(schema: &Schema, table: &str, key: Option<&str>) -> Affinity {
    let Some(key) = key else {
        return Affinity::Integer;
    };
    schema
        .table(table)
        .ok()
        .flatten()
        .and_then(|shape| {
            shape
                .columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(key))
                .map(|column| Affinity::of_declared_type(&column.declared_type))
        })
        .unwrap_or(Affinity::Blob)
}

/// The route of the shard key of `table` the text pins, if it pins keys of `table`.
fn pin(
    database: &DatabaseEntry,
    schema: &Schema,
    table: &str,
    tokens: Option<&[Token]>,
    statement: Pinned,
) -> Option<Pin> {
    let Some(TableKind::Distributed { key }) = kind_of(database, table) else {
        return None;
    };
    let shard_key = schema.shard_key(table, key.as_deref(), || ShardKey {
        names: key_names(schema, table, key.as_deref()),
        affinity: key_affinity(schema, table, key.as_deref()),
    });
    Some(Pin {
        sources: pinned_key_sources(tokens?, &shard_key.names)?,
        affinity: shard_key.affinity,
        map: database.slots.clone(),
        first: database.group,
        statement,
        writes: match statement {
            Pinned::Write => write_load::of_database(database.group),
            Pinned::Read { .. } => None,
        },
    })
}

thread_local! {
    /// One slotter per thread: it holds a small in-memory database, costly to open per query.
    static SLOTTER: std::cell::RefCell<Option<Slotter>> = const { std::cell::RefCell::new(None) };
}

/// The slot of `value` as a key of `affinity` (`None` for NULL, or if SQLite fails).
pub fn slot_of(value: &crate::types::value::SqlValue, affinity: Affinity) -> Option<u32> {
    SLOTTER.with(|cell| {
        let mut slotter = cell.borrow_mut();
        if slotter.is_none() {
            *slotter = Slotter::new().ok();
        }
        slotter.as_ref()?.slot(value, affinity).ok()
    })
}

fn names(tables: &BTreeSet<String>) -> String {
    tables.iter().cloned().collect::<Vec<_>>().join(", ")
}
