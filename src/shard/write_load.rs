//! Writes per bucket of slots, counted by this node's router as it routes them — pinned
//! UPDATEs and DELETEs by their key, INSERTs row by row — so slots can be balanced by load
//! (`catalog::slot_balance`, `BY WRITES`): every node counts what it routed, and a balancing
//! sums every node's counts (`/internal/v1/{database}/write-load`). A count covers the minute
//! under way and the one before it, so it follows the workload within two minutes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::shard::slot::SLOTS;
use crate::types::GroupId;

/// Slots per bucket writes are counted in (the buckets balancing plans in).
pub const BUCKET_SLOTS: u32 = 64;
/// Buckets per database.
pub const BUCKETS: usize = (SLOTS / BUCKET_SLOTS) as usize;
/// Databases counted at most on one node; past it the counts start again (a bound on memory
/// for clusters that create and drop many databases).
const DATABASES_MAX: usize = 4096;

/// One database's writes per bucket: the minute under way and the one before.
pub struct SlotWrites {
    /// The minute (since the Unix epoch) `current` counts.
    minute: AtomicU64,
    current: Box<[AtomicU64]>,
    previous: Box<[AtomicU64]>,
    /// Held while the minutes turn over.
    turning: Mutex<()>,
}

impl std::fmt::Debug for SlotWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotWrites")
            .field("minute", &self.minute.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SlotWrites {
    fn new(minute: u64) -> SlotWrites {
        let zeros = || (0..BUCKETS).map(|_| AtomicU64::new(0)).collect();
        SlotWrites {
            minute: AtomicU64::new(minute),
            current: zeros(),
            previous: zeros(),
            turning: Mutex::new(()),
        }
    }

    /// Counts one write of a row in `slot`.
    pub fn record(&self, slot: u32) {
        self.record_at(slot, now_minute());
    }

    fn record_at(&self, slot: u32, minute: u64) {
        self.turn_to(minute);
        if let Some(bucket) = self.current.get((slot / BUCKET_SLOTS) as usize) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes per bucket in the minute under way and the one before it.
    pub fn recent(&self) -> Vec<u64> {
        self.recent_at(now_minute())
    }

    fn recent_at(&self, minute: u64) -> Vec<u64> {
        self.turn_to(minute);
        self.current
            .iter()
            .zip(self.previous.iter())
            .map(|(now, before)| now.load(Ordering::Relaxed) + before.load(Ordering::Relaxed))
            .collect()
    }

    /// Moves the counts on to `minute`: the minute under way becomes the one before (or,
    /// after a silent minute, both start again). A write counted while the minutes turn may
    /// land in either: the counts are estimates.
    fn turn_to(&self, minute: u64) {
        if self.minute.load(Ordering::Acquire) >= minute {
            return;
        }
        let Ok(_turning) = self.turning.lock() else {
            return;
        };
        let was = self.minute.load(Ordering::Acquire);
        if was >= minute {
            return;
        }
        for (now, before) in self.current.iter().zip(self.previous.iter()) {
            let counted = now.swap(0, Ordering::Relaxed);
            before.store(
                if minute == was + 1 { counted } else { 0 },
                Ordering::Relaxed,
            );
        }
        self.minute.store(minute, Ordering::Release);
    }
}

fn now_minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() / 60)
}

fn registry() -> &'static Mutex<HashMap<GroupId, Arc<SlotWrites>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<GroupId, Arc<SlotWrites>>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The write counts of the database whose first group is `database` on this node.
pub fn of_database(database: GroupId) -> Option<Arc<SlotWrites>> {
    let mut databases = registry().lock().ok()?;
    if !databases.contains_key(&database) && databases.len() >= DATABASES_MAX {
        databases.clear();
    }
    Some(
        databases
            .entry(database)
            .or_insert_with(|| Arc::new(SlotWrites::new(now_minute())))
            .clone(),
    )
}

/// What this node counted for `database`: writes per bucket, recently (zeros when it routed
/// none).
pub fn recent_of(database: GroupId) -> Vec<u64> {
    let counted = registry()
        .lock()
        .ok()
        .and_then(|databases| databases.get(&database).cloned());
    counted.map_or_else(|| vec![0; BUCKETS], |writes| writes.recent())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_counted_per_bucket_over_this_minute_and_the_last() {
        let writes = SlotWrites::new(100);
        writes.record_at(0, 100);
        writes.record_at(63, 100);
        writes.record_at(64, 100);
        writes.record_at(SLOTS - 1, 100);
        let counts = writes.recent_at(100);
        assert_eq!(counts.len(), BUCKETS);
        assert_eq!((counts[0], counts[1], counts[BUCKETS - 1]), (2, 1, 1));
        // The next minute still counts the last one's writes...
        writes.record_at(0, 101);
        assert_eq!(writes.recent_at(101)[0], 3);
        // ...the one after forgets them; a silent minute forgets everything.
        assert_eq!(writes.recent_at(102)[0], 1);
        assert_eq!(writes.recent_at(104)[0], 0);
    }
}
