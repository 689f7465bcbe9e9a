//! Scratch copies of a schema kept ready for INSERTs into one distributed table
//! (`insert::InsertScratch`), so a single-row INSERT does not copy the schema and set up the
//! capture each time. At most a few per table; those of an older schema are dropped.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::raft::types::GroupId;
use crate::router::insert::InsertScratch;

/// Scratches kept per table at most (one per INSERT running at once beyond it is made and
/// dropped).
const PER_TABLE_MAX: usize = 4;
/// Tables with scratches kept at most, over every database.
const TABLES_MAX: usize = 256;

/// (database, schema epoch, table).
pub type ScratchKey = (GroupId, u64, String);

#[derive(Default)]
pub struct ScratchPool {
    kept: Mutex<HashMap<ScratchKey, Vec<InsertScratch>>>,
}

impl ScratchPool {
    /// A kept scratch for `key`, if one is free.
    pub fn take(&self, key: &ScratchKey) -> Option<InsertScratch> {
        self.kept.lock().ok()?.get_mut(key)?.pop()
    }

    /// Keeps `scratch` for the next INSERT into `key`'s table.
    pub fn put(&self, key: ScratchKey, scratch: InsertScratch) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        // Those of the table's older schemas are of no more use.
        kept.retain(|(database, epoch, table), _| {
            !(*database == key.0 && *table == key.2 && *epoch != key.1)
        });
        if kept.len() >= TABLES_MAX && !kept.contains_key(&key) {
            kept.clear();
        }
        let list = kept.entry(key).or_default();
        if list.len() < PER_TABLE_MAX {
            list.push(scratch);
        }
    }
}
