//! The durable Raft log of one group: append-only segment files with a CRC-32C per entry
//! (`segment`), written by one thread with group commit (`writer`).
//!
//! On-disk layout (in the group's `log/` directory):
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: entries from index N on (format in `segment`).
//! - `state.json`: the vote and the last purged log id, replaced atomically (write, fsync, rename).
//!
//! Memory: the newest entries stay in memory for replication and apply, up to a byte budget
//! (`--log-cache-bytes`); older ones are read back from their segment. Only a sparse index of
//! the segments (8 bytes per 32 entries) is held for them, so a long log costs disk, not memory.
//!
//! Architecture invariant: an append is acknowledged to openraft (`IOFlushed`) only after the
//! bytes are fsynced.

mod segment;
mod writer;

/// Log record decoding, reachable from the fuzz targets (`crate::fuzzing`). Not an API.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes one record (length, CRC, entry) from bytes read back from a segment.
    pub fn decode_record(bytes: &[u8]) {
        let _ = super::segment::decode_record(bytes);
    }
}

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::File;
use std::io::{self, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use openraft::OptionalSend;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::raft::types::{Entry, LogId, TypeConfig, Vote};
use segment::{ENTRY_BYTES_MAX, Segment, load_segments};
use writer::{ControlCommand, SegmentWriter, WriterCommand};

/// Appends waiting for the writer thread; openraft waits when it is full.
const WRITER_QUEUE_MAX: usize = 4096;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct DurableState {
    vote: Option<Vote>,
    purged: Option<LogId>,
}

/// An entry held in memory, with its encoded size.
struct CachedEntry {
    entry: Entry,
    size_bytes: usize,
}

/// What the store's handles and its writer thread share, behind one lock.
struct Shared {
    state: DurableState,
    /// An entry known committed at start (the last one the state machine had applied before
    /// an unclean stop discarded its database): reported as committed, so openraft re-applies
    /// the log up to it before the node serves. Not persisted.
    committed_floor: Option<LogId>,
    /// The last entry appended and not truncated (`None`: nothing beyond the purge point).
    last_log_id: Option<LogId>,
    /// The newest entries, a contiguous run ending at `last_log_id`: every entry not yet
    /// written to a segment, and as many written ones as fit in `memory_budget`.
    memory: BTreeMap<u64, CachedEntry>,
    memory_bytes: usize,
    memory_budget: usize,
    /// Where every written, unpurged entry lies on disk, oldest segment first.
    segments: Vec<Segment>,
    /// Truncations requested but not yet carried out by the writer: until they are, segments
    /// may still hold entries that memory has replaced, so nothing is evicted.
    truncations_pending: usize,
}

impl Shared {
    fn remember(&mut self, entry: Entry, size_bytes: usize) {
        self.last_log_id = Some(entry.log_id());
        self.memory_bytes += size_bytes;
        if let Some(previous) = self
            .memory
            .insert(entry.index(), CachedEntry { entry, size_bytes })
        {
            self.memory_bytes -= previous.size_bytes;
        }
    }

    /// Drops the oldest entries held in memory that are already in a segment, until the
    /// budget is kept (the newest entry always stays).
    fn evict_written(&mut self) {
        if self.truncations_pending > 0 {
            return;
        }
        let Some(written) = self.segments.last().and_then(Segment::last_index) else {
            return;
        };
        while self.memory_bytes > self.memory_budget && self.memory.len() > 1 {
            let Some(oldest) = self.memory.first_entry() else {
                break;
            };
            if *oldest.key() > written {
                break;
            }
            self.memory_bytes -= oldest.remove().size_bytes;
        }
    }

    fn forget_from(&mut self, index: u64) {
        let removed = self.memory.split_off(&index);
        self.memory_bytes -= removed.values().map(|c| c.size_bytes).sum::<usize>();
    }

    fn forget_up_to(&mut self, index: u64) {
        let kept = self.memory.split_off(&(index + 1));
        let removed = std::mem::replace(&mut self.memory, kept);
        self.memory_bytes -= removed.values().map(|c| c.size_bytes).sum::<usize>();
    }

    fn purged_index(&self) -> Option<u64> {
        self.state.purged.map(|p| p.index)
    }

    /// The oldest entry the log holds (or would hold next, when empty).
    fn first_index(&self) -> u64 {
        let after_purge = self.purged_index().map_or(0, |p| p + 1);
        let on_disk = self
            .segments
            .iter()
            .find(|s| s.last_index().is_some_and(|last| last >= after_purge))
            .map(|s| s.first_known().max(after_purge));
        on_disk
            .or_else(|| self.memory.keys().next().copied())
            .unwrap_or(after_purge)
    }

    /// Entries `start..end` that the log holds: older ones from their segments, newer ones
    /// from memory. A hole in between is an error.
    fn read(&self, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        let start = start.max(self.first_index());
        let end = end.min(self.last_log_id.map_or(0, |l| l.index + 1));
        if start >= end {
            return Ok(Vec::new());
        }
        let mut entries = Vec::with_capacity(end.saturating_sub(start).min(4096) as usize);
        let in_memory_from = self.memory.keys().next().copied().unwrap_or(end).max(start);
        let mut index = start;
        for segment in &self.segments {
            if index >= in_memory_from.min(end) {
                break;
            }
            if segment.contains(index) {
                let until = in_memory_from
                    .min(end)
                    .min(segment.last_index().map_or(index, |l| l + 1));
                segment.read(index, until, &mut entries)?;
                index = until;
            }
        }
        if index < in_memory_from.min(end) {
            return Err(io::Error::other(format!(
                "log entry {index} is neither in memory nor in any segment"
            )));
        }
        entries.extend(
            self.memory
                .range(index..end)
                .map(|(_, cached)| cached.entry.clone()),
        );
        if entries.len() as u64 != end.saturating_sub(start) {
            return Err(io::Error::other(format!(
                "log entries {start}..{end} are incomplete: found {}",
                entries.len()
            )));
        }
        Ok(entries)
    }

    /// Bytes the unpurged log takes on disk (within a few records).
    fn disk_bytes(&self) -> u64 {
        let purged = self.purged_index();
        self.segments.iter().map(|s| s.live_bytes(purged)).sum()
    }
}

/// The log store handed to openraft; clones share everything.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<RwLock<Shared>>,
    writer: mpsc::Sender<WriterCommand>,
}

fn poisoned() -> io::Error {
    io::Error::other("log lock poisoned")
}

fn writer_gone() -> io::Error {
    io::Error::other("log writer thread has stopped")
}

impl LogStore {
    /// Tells openraft at start that the log is committed at least up to `log_id` (see
    /// `Shared::committed_floor`); call before the Raft instance starts.
    pub fn set_committed_floor(&self, log_id: Option<LogId>) -> io::Result<()> {
        let mut shared = self.shared.write().map_err(|_| poisoned())?;
        shared.committed_floor = log_id;
        Ok(())
    }

    /// Opens the log in `dir`, verifying every record, and starts its writer thread. At most
    /// `memory_budget` bytes of encoded entries are kept in memory.
    pub fn open(dir: &Path, memory_budget: usize) -> io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let state = read_state(dir)?;
        let mut memory = BTreeMap::new();
        let mut memory_bytes = 0usize;
        let loaded = load_segments(dir, state.purged.map(|p| p.index), |entry, size_bytes| {
            memory_bytes += size_bytes;
            memory.insert(entry.index(), CachedEntry { entry, size_bytes });
            while memory_bytes > memory_budget && memory.len() > 1 {
                if let Some((_, oldest)) = memory.pop_first() {
                    memory_bytes -= oldest.size_bytes;
                }
            }
        })?;
        let shared = Arc::new(RwLock::new(Shared {
            state,
            committed_floor: None,
            last_log_id: loaded.last_log_id,
            memory,
            memory_bytes,
            memory_budget,
            segments: loaded.segments,
            truncations_pending: 0,
        }));
        let writer = SegmentWriter::open(dir.to_path_buf(), shared.clone())?;
        let (sender, receiver) = mpsc::channel(WRITER_QUEUE_MAX);
        std::thread::Builder::new()
            .name(format!("shoal-log-{}", dir.display()))
            .spawn(move || writer.run(receiver))?;
        Ok(LogStore {
            shared,
            writer: sender,
        })
    }

    async fn request(
        &self,
        make: impl FnOnce(oneshot::Sender<io::Result<()>>) -> ControlCommand,
    ) -> io::Result<()> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send(WriterCommand::Control(make(done)))
            .await
            .map_err(|_| writer_gone())?;
        wait.await.map_err(|_| writer_gone())?
    }

    /// Number of entries held (unpurged), for status and metrics.
    pub fn entry_count(&self) -> u64 {
        self.shared
            .read()
            .map(|s| {
                let last = s.last_log_id.map_or(0, |l| l.index + 1);
                last.saturating_sub(s.purged_index().map_or(0, |p| p + 1))
            })
            .unwrap_or(0)
    }

    /// Bytes the unpurged log takes on disk, for the snapshot policy and status.
    pub fn disk_bytes(&self) -> u64 {
        self.shared.read().map(|s| s.disk_bytes()).unwrap_or(0)
    }

    /// Encoded bytes of the entries held in memory.
    pub fn memory_bytes(&self) -> usize {
        self.shared.read().map(|s| s.memory_bytes).unwrap_or(0)
    }
}

/// `range` as `start..end`.
fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&i) => i.saturating_add(1),
        Bound::Excluded(&i) => i,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = bounds(&range);
        // Under the read lock the whole time: the read is atomic, and no segment changes
        // beneath it.
        self.shared.read().map_err(|_| poisoned())?.read(start, end)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.shared.read().map_err(|_| poisoned())?.state.vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        let shared = self.shared.read().map_err(|_| poisoned())?;
        Ok(shared.committed_floor)
    }

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let shared = self.shared.read().map_err(|_| poisoned())?;
        Ok(LogState {
            last_purged_log_id: shared.state.purged,
            last_log_id: shared.last_log_id.or(shared.state.purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let state = {
            let mut shared = self.shared.write().map_err(|_| poisoned())?;
            shared.state.vote = Some(*vote);
            shared.state.clone()
        };
        self.request(|done| ControlCommand::SaveState { state, done })
            .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        flushed: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Encode and check every entry before any is remembered: a refused batch leaves
        // nothing behind.
        let mut encoded = Vec::new();
        for entry in entries {
            let payload = postcard::to_stdvec(&entry)
                .map_err(|e| io::Error::other(format!("encode log entry: {e}")))?;
            if payload.len() > ENTRY_BYTES_MAX as usize {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("log entry of {} bytes exceeds the limit", payload.len()),
                ));
            }
            encoded.push((entry, payload));
        }
        let first_index = encoded.first().map(|(entry, _)| entry.index());
        let mut records = Vec::with_capacity(encoded.len());
        {
            let mut shared = self.shared.write().map_err(|_| poisoned())?;
            for (entry, payload) in encoded {
                let index = entry.index();
                shared.remember(entry, payload.len());
                records.push((index, payload));
            }
        }
        match first_index {
            Some(first_index) => self
                .writer
                .send(WriterCommand::Append {
                    first_index,
                    records,
                    flushed,
                })
                .await
                .map_err(|_| writer_gone()),
            None => {
                flushed.io_completed(Ok(()));
                Ok(())
            }
        }
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let from = last.map(|log_id| log_id.index + 1).unwrap_or(0);
        {
            let mut shared = self.shared.write().map_err(|_| poisoned())?;
            shared.forget_from(from);
            // Truncating after an entry beyond the end changes nothing.
            if shared
                .last_log_id
                .is_some_and(|current| current.index >= from)
            {
                shared.last_log_id = last;
            }
            shared.truncations_pending += 1;
        }
        self.request(|done| ControlCommand::TruncateFrom { index: from, done })
            .await
    }

    async fn purge(&mut self, upto: LogId) -> Result<(), io::Error> {
        let state = {
            let mut shared = self.shared.write().map_err(|_| poisoned())?;
            shared.state.purged = Some(upto);
            shared.forget_up_to(upto.index);
            if shared
                .last_log_id
                .is_some_and(|last| last.index <= upto.index)
            {
                shared.last_log_id = None;
            }
            shared.state.clone()
        };
        // The purge point is durable before any segment disappears.
        self.request(|done| ControlCommand::SaveState { state, done })
            .await?;
        self.request(|done| ControlCommand::PurgeUpTo {
            index: upto.index,
            done,
        })
        .await
    }
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

fn read_state(dir: &Path) -> io::Result<DurableState> {
    match std::fs::read(state_path(dir)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", state_path(dir).display()),
            )
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(DurableState::default()),
        Err(error) => Err(error),
    }
}

fn write_state(dir: &Path, state: &DurableState) -> io::Result<()> {
    let temporary = dir.join("state.json.tmp");
    let bytes = serde_json::to_vec(state).map_err(io::Error::other)?;
    let mut file = File::create(&temporary)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, state_path(dir))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use openraft::StorageError;
    use openraft::testing::log::{StoreBuilder, Suite};

    use std::fs::OpenOptions;

    use super::segment::RECORD_HEADER_BYTES;
    use super::*;
    use crate::db::database::Database;
    use crate::db::snapshot_store::SnapshotStore;
    use crate::db::state_machine::StateMachine;

    /// Builds stores that keep `memory_budget` bytes of entries in memory.
    struct Builder {
        memory_budget: usize,
    }

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
            let dir = tempfile::tempdir().expect("temp dir");
            let log =
                LogStore::open(&dir.path().join("log"), self.memory_budget).expect("open log");
            let database = Database::open(&dir.path().join("db.sqlite"), 99, 2).expect("open db");
            let snapshots = SnapshotStore::open(&dir.path().join("snapshots")).expect("snapshots");
            Ok((dir, log, StateMachine::new(Arc::new(database), snapshots)))
        }
    }

    /// openraft's own conformance suite for log stores (and the state machine's basics).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_openraft_storage_suite() {
        let builder = Builder {
            memory_budget: MEMORY,
        };
        Suite::test_all(builder).await.expect("storage suite");
    }

    /// The same suite with no memory to spare: every written entry is read back from disk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_openraft_storage_suite_reading_from_disk() {
        let builder = Builder { memory_budget: 0 };
        Suite::test_all(builder).await.expect("storage suite");
    }

    const MEMORY: usize = 1 << 20;

    fn open(dir: &Path) -> LogStore {
        LogStore::open(dir, MEMORY).unwrap()
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.index()).collect()
    }

    #[tokio::test]
    async fn entries_beyond_the_memory_budget_are_read_back_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("log");
        let mut store = LogStore::open(&log_dir, 1000).unwrap();
        append_and_flush(&mut store, (1..=300).map(blank).collect()).await;
        assert!(store.memory_bytes() <= 1000, "{}", store.memory_bytes());
        let entries = store.try_get_log_entries(1..=300).await.unwrap();
        assert_eq!(entries, (1..=300).map(blank).collect::<Vec<_>>());
        // Ranges that start and end inside a stride of the sparse index, or span memory and disk.
        for (start, end) in [(5, 7), (31, 34), (33, 97), (250, 301), (64, 65)] {
            let entries = store.try_get_log_entries(start..end).await.unwrap();
            assert_eq!(indexes(&entries), (start..end).collect::<Vec<_>>());
        }
        drop(store);
        let mut store = LogStore::open(&log_dir, 1000).unwrap();
        assert_eq!(store.try_get_log_entries(..).await.unwrap().len(), 300);
    }

    #[tokio::test]
    async fn truncating_entries_held_only_on_disk_then_appending_reads_the_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("log");
        let mut store = LogStore::open(&log_dir, 0).unwrap();
        append_and_flush(&mut store, (1..=100).map(blank).collect()).await;
        store
            .truncate_after(Some(blank(70).log_id()))
            .await
            .unwrap();
        let replacement: Vec<Entry> = (71..=80)
            .map(|i| openraft::testing::blank_ent::<TypeConfig>(2, 1, i))
            .collect();
        append_and_flush(&mut store, replacement.clone()).await;
        let read = store.try_get_log_entries(71..=80).await.unwrap();
        assert_eq!(read, replacement);
        assert_eq!(
            store.get_log_state().await.unwrap().last_log_id,
            Some(replacement[9].log_id())
        );
        drop(store);
        let mut store = LogStore::open(&log_dir, 0).unwrap();
        let all = store.try_get_log_entries(..).await.unwrap();
        assert_eq!(indexes(&all), (1..=80).collect::<Vec<_>>());
        assert_eq!(all[70..], replacement[..]);
    }

    #[tokio::test]
    async fn purged_entries_are_gone_and_the_rest_still_read_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("log");
        let mut store = LogStore::open(&log_dir, 0).unwrap();
        append_and_flush(&mut store, (1..=200).map(blank).collect()).await;
        let before = store.disk_bytes();
        store.purge(blank(150).log_id()).await.unwrap();
        assert!(
            store.disk_bytes() < before / 2,
            "{} of {before}",
            store.disk_bytes()
        );
        assert_eq!(store.entry_count(), 50);
        let entries = store.try_get_log_entries(..).await.unwrap();
        assert_eq!(indexes(&entries), (151..=200).collect::<Vec<_>>());
        drop(store);
        let mut store = LogStore::open(&log_dir, 0).unwrap();
        let entries = store.try_get_log_entries(100..).await.unwrap();
        assert_eq!(indexes(&entries), (151..=200).collect::<Vec<_>>());
    }

    fn blank(index: u64) -> Entry {
        openraft::testing::blank_ent::<TypeConfig>(1, 1, index)
    }

    async fn append_and_flush(store: &mut LogStore, entries: Vec<Entry>) {
        use openraft::type_config::TypeConfigExt;
        let (sender, done) = TypeConfig::oneshot();
        let flushed = IOFlushed::<TypeConfig>::signal(sender);
        store.append(entries, flushed).await.expect("append");
        done.await.expect("flush notified").expect("flushed");
    }

    #[tokio::test]
    async fn reopens_with_every_acknowledged_entry_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("log");
        {
            let mut store = open(&log_dir);
            append_and_flush(&mut store, (1..=10).map(blank).collect()).await;
        }
        // A crash mid-write leaves half a record at the end.
        let segment = Segment::path_for(&log_dir, 1);
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(&[42, 0, 0, 0, 1, 2]).unwrap();
        drop(file);
        let mut store = open(&log_dir);
        let entries = store.try_get_log_entries(0..100).await.unwrap();
        assert_eq!(
            entries.iter().map(|e| e.index()).collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
        append_and_flush(&mut store, vec![blank(11)]).await;
        drop(store);
        let mut store = open(&log_dir);
        assert_eq!(store.try_get_log_entries(11..12).await.unwrap().len(), 1);
    }

    /// After a snapshot is installed the log is purged past its last entry and continues at
    /// the snapshot's index; the node must reopen with those entries (a soak run once found a
    /// node that could not restart: "index 49199 follows 48112").
    #[tokio::test]
    async fn a_log_continued_after_a_snapshot_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("log");
        {
            let mut store = open(&log_dir);
            append_and_flush(&mut store, (1..=5).map(blank).collect()).await;
            store.purge(blank(100).log_id()).await.unwrap();
            append_and_flush(&mut store, (101..=103).map(blank).collect()).await;
        }
        // The jump starts a new segment, so every segment holds consecutive indexes.
        assert!(Segment::path_for(&log_dir, 101).is_file());
        let mut store = open(&log_dir);
        let entries = store.try_get_log_entries(0..200).await.unwrap();
        assert_eq!(
            entries.iter().map(|e| e.index()).collect::<Vec<_>>(),
            [101, 102, 103]
        );
        append_and_flush(&mut store, vec![blank(104)]).await;
        drop(store);
        let mut store = open(&log_dir);
        assert_eq!(store.try_get_log_entries(104..105).await.unwrap().len(), 1);
    }

    /// A segment written by an earlier version, with the jump inside it, opens too; a jump
    /// over entries that are not purged is still corruption.
    #[tokio::test]
    async fn a_gap_is_accepted_only_at_the_purge_point() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("log");
        let record = |index: u64| {
            let payload = postcard::to_stdvec(&blank(index)).unwrap();
            let mut bytes = (payload.len() as u32).to_le_bytes().to_vec();
            bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
            bytes.extend_from_slice(&payload);
            bytes
        };
        std::fs::create_dir_all(&log_dir).unwrap();
        let segment = Segment::path_for(&log_dir, 1);
        let bytes: Vec<u8> = [1, 2, 3, 11, 12].into_iter().flat_map(record).collect();
        std::fs::write(&segment, &bytes).unwrap();
        let error = LogStore::open(&log_dir, MEMORY)
            .err()
            .expect("a gap over live entries");
        assert!(error.to_string().contains("index 11 follows 3"), "{error}");
        let purged = DurableState {
            purged: Some(blank(10).log_id()),
            ..DurableState::default()
        };
        write_state(&log_dir, &purged).unwrap();
        {
            let mut store = open(&log_dir);
            let entries = store.try_get_log_entries(0..20).await.unwrap();
            assert_eq!(
                entries.iter().map(|e| e.index()).collect::<Vec<_>>(),
                [11, 12]
            );
        }
    }

    /// A segment that does not continue the one before it (one whose removal was lost in a
    /// power failure, say) is corruption, not entries to believe.
    #[tokio::test]
    async fn segments_that_do_not_continue_each_other_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("log");
        std::fs::create_dir_all(&log_dir).unwrap();
        let segment_of = |indexes: std::ops::RangeInclusive<u64>| {
            let mut bytes = Vec::new();
            for index in indexes {
                let payload = postcard::to_stdvec(&blank(index)).unwrap();
                segment::encode_record(&payload, &mut bytes);
            }
            bytes
        };
        std::fs::write(Segment::path_for(&log_dir, 1), segment_of(1..=5)).unwrap();
        std::fs::write(Segment::path_for(&log_dir, 9), segment_of(9..=12)).unwrap();
        let error = LogStore::open(&log_dir, MEMORY)
            .err()
            .expect("a gap between segments over live entries");
        assert!(error.to_string().contains("starts at index 9"), "{error}");
        // The same jump is fine where everything before it is purged.
        write_state(
            &log_dir,
            &DurableState {
                purged: Some(blank(8).log_id()),
                ..DurableState::default()
            },
        )
        .unwrap();
        let mut store = LogStore::open(&log_dir, MEMORY).unwrap();
        let entries = store.try_get_log_entries(..).await.unwrap();
        assert_eq!(indexes(&entries), [9, 10, 11, 12]);
    }

    #[tokio::test]
    async fn a_damaged_acknowledged_record_is_an_error_not_silence() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("log");
        {
            let mut store = open(&log_dir);
            append_and_flush(&mut store, (1..=5).map(blank).collect()).await;
        }
        let segment = Segment::path_for(&log_dir, 1);
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes[RECORD_HEADER_BYTES as usize + 1] ^= 0xff; // inside the first record's payload
        std::fs::write(&segment, &bytes).unwrap();
        // Records follow the damaged one, so it is not a torn write: opening must fail loudly
        // rather than drop entries 1..=5.
        let error = LogStore::open(&log_dir, MEMORY)
            .err()
            .expect("damaged log must not open");
        assert!(error.to_string().contains("corrupt Raft log"), "{error}");
    }
}
