//! The durable Raft log of one group: append-only segment files with a CRC-32C per entry, and
//! group commit: a dedicated writer thread writes every append that is waiting and makes them
//! durable with one fdatasync, then acknowledges them all.
//!
//! On-disk layout (in the group's `log/` directory):
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: entries from index N on; each record is
//!   `[payload length: u32 LE][CRC-32C of payload: u32 LE][payload: postcard-encoded entry]`.
//! - `state.json`: the vote and the last purged log id, replaced atomically (write, fsync, rename).
//!
//! Unpurged entries are also kept in memory for replication and apply; the snapshot policy
//! bounds how many there are (`--snapshot-threshold`, `--log-keep`).
//!
//! Architecture invariant: an append is acknowledged to openraft (`IOFlushed`) only after the
//! bytes are fsynced.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use openraft::OptionalSend;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::raft::types::{Entry, LogId, TypeConfig, Vote};

/// A new segment is started when the active one reaches this size.
const SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// One entry may not exceed this size on disk (bounded by the HTTP body limit long before).
const ENTRY_BYTES_MAX: u32 = 256 * 1024 * 1024;
/// Appends waiting for the writer thread; openraft waits when it is full.
const WRITER_QUEUE_MAX: usize = 4096;
const RECORD_HEADER_BYTES: u64 = 8;

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

#[derive(Default)]
struct Cache {
    entries: BTreeMap<u64, CachedEntry>,
    /// Encoded bytes of all cached entries: what the log holds in memory.
    total_bytes: usize,
    state: DurableState,
}

impl Cache {
    fn insert(&mut self, entry: Entry, size_bytes: usize) {
        self.total_bytes += size_bytes;
        if let Some(previous) = self
            .entries
            .insert(entry.index(), CachedEntry { entry, size_bytes })
        {
            self.total_bytes -= previous.size_bytes;
        }
    }

    /// Drops every entry at or after `index`.
    fn remove_from(&mut self, index: u64) {
        let removed = self.entries.split_off(&index);
        self.total_bytes -= removed.values().map(|c| c.size_bytes).sum::<usize>();
    }

    /// Drops every entry at or before `index`.
    fn remove_up_to(&mut self, index: u64) {
        let kept = self.entries.split_off(&(index + 1));
        let removed = std::mem::replace(&mut self.entries, kept);
        self.total_bytes -= removed.values().map(|c| c.size_bytes).sum::<usize>();
    }
}

enum WriterCommand {
    Append {
        first_index: u64,
        records: Vec<(u64, Vec<u8>)>,
        flushed: IOFlushed<TypeConfig>,
    },
    /// Everything else: runs after the appends before it are synced.
    Control(ControlCommand),
}

enum ControlCommand {
    TruncateFrom {
        index: u64,
        done: oneshot::Sender<io::Result<()>>,
    },
    SaveState {
        state: DurableState,
        done: oneshot::Sender<io::Result<()>>,
    },
    PurgeUpTo {
        index: u64,
        done: oneshot::Sender<io::Result<()>>,
    },
}

/// The log store handed to openraft; clones share everything.
#[derive(Clone)]
pub struct LogStore {
    cache: Arc<RwLock<Cache>>,
    writer: mpsc::Sender<WriterCommand>,
}

fn poisoned() -> io::Error {
    io::Error::other("log cache lock poisoned")
}

fn writer_gone() -> io::Error {
    io::Error::other("log writer thread has stopped")
}

impl LogStore {
    /// Opens the log in `dir`, verifying every record, and starts its writer thread.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let state = read_state(dir)?;
        let (segments, mut cache) = load_segments(dir, state.purged.as_ref().map(|p| p.index))?;
        cache.state = state;
        let writer = SegmentWriter::open(dir.to_path_buf(), segments)?;
        let (sender, receiver) = mpsc::channel(WRITER_QUEUE_MAX);
        std::thread::Builder::new()
            .name(format!("shoal-log-{}", dir.display()))
            .spawn(move || writer.run(receiver))?;
        Ok(LogStore {
            cache: Arc::new(RwLock::new(cache)),
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
    pub fn entry_count(&self) -> usize {
        self.cache.read().map(|c| c.entries.len()).unwrap_or(0)
    }

    /// Encoded bytes of the entries held in memory (all unpurged entries).
    pub fn cached_bytes(&self) -> usize {
        self.cache.read().map(|c| c.total_bytes).unwrap_or(0)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let cache = self.cache.read().map_err(|_| poisoned())?;
        Ok(cache
            .entries
            .range(range)
            .map(|(_, cached)| cached.entry.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.cache.read().map_err(|_| poisoned())?.state.vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let cache = self.cache.read().map_err(|_| poisoned())?;
        let last = cache
            .entries
            .values()
            .next_back()
            .map(|cached| cached.entry.log_id())
            .or(cache.state.purged);
        Ok(LogState {
            last_purged_log_id: cache.state.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let state = {
            let mut cache = self.cache.write().map_err(|_| poisoned())?;
            cache.state.vote = Some(*vote);
            cache.state.clone()
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
        let mut records = Vec::new();
        let mut first_index = None;
        {
            let mut cache = self.cache.write().map_err(|_| poisoned())?;
            for entry in entries {
                let payload = postcard::to_stdvec(&entry)
                    .map_err(|e| io::Error::other(format!("encode log entry: {e}")))?;
                if payload.len() > ENTRY_BYTES_MAX as usize {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("log entry of {} bytes exceeds the limit", payload.len()),
                    ));
                }
                let index = entry.index();
                first_index.get_or_insert(index);
                cache.insert(entry, payload.len());
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
            let mut cache = self.cache.write().map_err(|_| poisoned())?;
            cache.remove_from(from);
        }
        self.request(|done| ControlCommand::TruncateFrom { index: from, done })
            .await
    }

    async fn purge(&mut self, upto: LogId) -> Result<(), io::Error> {
        let state = {
            let mut cache = self.cache.write().map_err(|_| poisoned())?;
            cache.state.purged = Some(upto);
            cache.remove_up_to(upto.index);
            cache.state.clone()
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

struct Segment {
    first_index: u64,
    path: PathBuf,
    size_bytes: u64,
    /// Byte offset of each entry in this segment, by index.
    offsets: BTreeMap<u64, u64>,
}

struct SegmentWriter {
    dir: PathBuf,
    segments: Vec<Segment>,
    active: Option<File>,
    /// Set after a failed write or fsync (a full disk, an I/O error): what reached the disk is
    /// no longer known, so every later append is refused until the node restarts and
    /// recovers from what is on disk (fail-stop, as PostgreSQL does on a failed fsync).
    failed: Option<String>,
}

impl SegmentWriter {
    fn open(dir: PathBuf, segments: Vec<Segment>) -> io::Result<SegmentWriter> {
        let active = match segments.last() {
            Some(segment) => Some(OpenOptions::new().append(true).open(&segment.path)?),
            None => None,
        };
        Ok(SegmentWriter {
            dir,
            segments,
            active,
            failed: None,
        })
    }

    fn run(mut self, mut receiver: mpsc::Receiver<WriterCommand>) {
        let mut waiting: Vec<IOFlushed<TypeConfig>> = Vec::new();
        while let Some(command) = receiver.blocking_recv() {
            let mut next = Some(command);
            // Group commit: take every append already queued before syncing once.
            while let Some(command) = next.take() {
                match command {
                    WriterCommand::Append {
                        first_index,
                        records,
                        flushed,
                    } => {
                        match self.append(first_index, &records) {
                            Ok(()) => waiting.push(flushed),
                            Err(error) => flushed.io_completed(Err(error)),
                        }
                        next = receiver.try_recv().ok();
                    }
                    WriterCommand::Control(control) => {
                        self.sync_and_acknowledge(&mut waiting);
                        self.handle_control(control);
                    }
                }
            }
            self.sync_and_acknowledge(&mut waiting);
        }
        self.sync_and_acknowledge(&mut waiting);
    }

    fn sync_and_acknowledge(&mut self, waiting: &mut Vec<IOFlushed<TypeConfig>>) {
        if waiting.is_empty() {
            return;
        }
        let result = match &self.active {
            Some(file) => file.sync_data(),
            None => Ok(()),
        };
        if let Err(error) = &result {
            tracing::error!(%error, "log fsync failed; refusing further appends until restart");
            self.failed = Some(format!("log fsync failed: {error}"));
        }
        for flushed in waiting.drain(..) {
            flushed.io_completed(match &result {
                Ok(()) => Ok(()),
                Err(error) => Err(io::Error::new(
                    error.kind(),
                    format!("log fsync failed: {error}"),
                )),
            });
        }
    }

    fn handle_control(&mut self, command: ControlCommand) {
        match command {
            ControlCommand::TruncateFrom { index, done } => {
                let _ = done.send(self.truncate_from(index));
            }
            ControlCommand::SaveState { state, done } => {
                let _ = done.send(write_state(&self.dir, &state));
            }
            ControlCommand::PurgeUpTo { index, done } => {
                let _ = done.send(self.purge_up_to(index));
            }
        }
    }

    /// Appends records unless an earlier write failed; a failed write is cut back off the
    /// segment (best effort: recovery also cuts a torn tail) and stops further appends.
    fn append(&mut self, first_index: u64, records: &[(u64, Vec<u8>)]) -> io::Result<()> {
        if let Some(reason) = &self.failed {
            return Err(io::Error::other(format!(
                "log store stopped after an earlier failure ({reason}); restart the node"
            )));
        }
        let result = self.write_records(first_index, records);
        if let Err(error) = &result {
            tracing::error!(%error, "log append failed; refusing further appends until restart");
            if let (Some(file), Some(segment)) = (&self.active, self.segments.last()) {
                let _ = file.set_len(segment.size_bytes);
            }
            self.failed = Some(format!("log append failed: {error}"));
        }
        result.map_err(|error| io::Error::new(error.kind(), format!("log append failed: {error}")))
    }

    fn write_records(&mut self, first_index: u64, records: &[(u64, Vec<u8>)]) -> io::Result<()> {
        // A new segment also when the entries do not continue the active one: after a
        // snapshot is installed, the log is purged past its last entry and continues from the
        // snapshot's index, and every segment must hold consecutive indexes.
        let needs_new_segment = match self.segments.last() {
            None => true,
            Some(segment) => {
                // A segment whose entries are all purged has no offsets left but still holds
                // their bytes.
                let continues = segment.size_bytes == 0
                    || segment.offsets.keys().next_back() == Some(&(first_index.wrapping_sub(1)));
                segment.size_bytes >= SEGMENT_BYTES_MAX || !continues
            }
        };
        if needs_new_segment {
            self.start_segment(first_index)?;
        }
        let mut buffer = Vec::with_capacity(
            records
                .iter()
                .map(|(_, p)| p.len() + RECORD_HEADER_BYTES as usize)
                .sum(),
        );
        let segment = self
            .segments
            .last_mut()
            .ok_or_else(|| io::Error::other("no active segment"))?;
        let mut offset = segment.size_bytes;
        let mut offsets = Vec::with_capacity(records.len());
        for (index, payload) in records {
            offsets.push((*index, offset));
            buffer.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buffer.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
            buffer.extend_from_slice(payload);
            offset += RECORD_HEADER_BYTES + payload.len() as u64;
        }
        let file = self
            .active
            .as_mut()
            .ok_or_else(|| io::Error::other("no active segment file"))?;
        file.write_all(&buffer)?;
        segment.offsets.extend(offsets);
        segment.size_bytes = offset;
        Ok(())
    }

    fn start_segment(&mut self, first_index: u64) -> io::Result<()> {
        if let Some(file) = &self.active {
            file.sync_data()?;
        }
        let path = self.dir.join(format!("{first_index:020}.seg"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        File::open(&self.dir)?.sync_all()?;
        self.segments.push(Segment {
            first_index,
            path,
            size_bytes: 0,
            offsets: BTreeMap::new(),
        });
        self.active = Some(file);
        Ok(())
    }

    fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        while let Some(segment) = self.segments.last() {
            if segment.first_index < index
                || (segment.first_index == index && self.segments.len() == 1)
            {
                break;
            }
            let segment = self
                .segments
                .pop()
                .ok_or_else(|| io::Error::other("segment vanished"))?;
            std::fs::remove_file(&segment.path)?;
        }
        self.active = None;
        let Some(segment) = self.segments.last_mut() else {
            return File::open(&self.dir)?.sync_all();
        };
        if let Some(&offset) = segment.offsets.get(&index) {
            let file = OpenOptions::new().write(true).open(&segment.path)?;
            file.set_len(offset)?;
            file.sync_all()?;
            segment.size_bytes = offset;
            segment.offsets.split_off(&index);
        }
        self.active = Some(OpenOptions::new().append(true).open(&segment.path)?);
        File::open(&self.dir)?.sync_all()
    }

    fn purge_up_to(&mut self, index: u64) -> io::Result<()> {
        // A segment can go when every entry in it is purged and it is not the active one.
        while self.segments.len() > 1 {
            let next_first = self.segments[1].first_index;
            if next_first > index + 1 {
                break;
            }
            let segment = self.segments.remove(0);
            std::fs::remove_file(&segment.path)?;
        }
        if let Some(first) = self.segments.first_mut() {
            first.offsets = first.offsets.split_off(&(index + 1));
        }
        Ok(())
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

/// Reads every segment, verifying lengths, checksums and index continuity. A torn record at the
/// end of the last segment (a crash mid-write, never acknowledged) is cut off; damage anywhere
/// else is an error: acknowledged entries must never silently disappear.
fn load_segments(dir: &Path, purged: Option<u64>) -> io::Result<(Vec<Segment>, Cache)> {
    let mut paths: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let first = path
                .file_name()?
                .to_str()?
                .strip_suffix(".seg")?
                .parse::<u64>()
                .ok()?;
            Some((first, path))
        })
        .collect();
    paths.sort();
    let mut segments = Vec::new();
    let mut cache = Cache::default();
    let last_position = paths.len().saturating_sub(1);
    for (position, (first_index, path)) in paths.into_iter().enumerate() {
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        let mut offset = 0usize;
        let mut offsets = BTreeMap::new();
        while offset < bytes.len() {
            match decode_record(&bytes[offset..]) {
                Ok((entry, length)) => {
                    let index = entry.index();
                    // A gap is allowed only where everything before it is purged (a log
                    // that continued after a snapshot, written before segments rolled over
                    // at such a jump).
                    if let Some((&previous, _)) = offsets.iter().next_back()
                        && index != previous + 1
                        && !(purged.is_some_and(|p| previous <= p && index <= p + 1))
                    {
                        return Err(corrupt(
                            &path,
                            offset,
                            format!("index {index} follows {previous}"),
                        ));
                    }
                    offsets.insert(index, offset as u64);
                    if purged.is_none_or(|p| index > p) {
                        cache.insert(entry, length - RECORD_HEADER_BYTES as usize);
                    }
                    offset += length;
                }
                Err(reason) if position == last_position && is_torn_tail(&bytes[offset..]) => {
                    tracing::warn!(path = %path.display(), offset, dropped_bytes = bytes.len() - offset, %reason,
                        "cutting a torn record off the end of the log");
                    let file = OpenOptions::new().write(true).open(&path)?;
                    file.set_len(offset as u64)?;
                    file.sync_all()?;
                    break;
                }
                Err(reason) => return Err(corrupt(&path, offset, reason)),
            }
        }
        segments.push(Segment {
            first_index,
            path,
            size_bytes: offset as u64,
            offsets,
        });
    }
    Ok((segments, cache))
}

/// Whether an undecodable record is the unfinished last write of a crash: its header or payload
/// runs past the end of the file, or it is the final record. Anything followed by more data is
/// damage to an acknowledged record.
fn is_torn_tail(rest: &[u8]) -> bool {
    if rest.len() < RECORD_HEADER_BYTES as usize {
        return true;
    }
    let length = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    RECORD_HEADER_BYTES as usize + length >= rest.len()
}

fn corrupt(path: &Path, offset: usize, reason: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "corrupt Raft log {} at byte {offset}: {reason}",
            path.display()
        ),
    )
}

/// Decodes one record from the front of `bytes`, returning the entry and the record's length.
fn decode_record(bytes: &[u8]) -> Result<(Entry, usize), String> {
    if bytes.len() < RECORD_HEADER_BYTES as usize {
        return Err("record header is incomplete".to_string());
    }
    let length = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let checksum = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if length > ENTRY_BYTES_MAX {
        return Err(format!("record length {length} exceeds the limit"));
    }
    let end = RECORD_HEADER_BYTES as usize + length as usize;
    let payload = bytes
        .get(RECORD_HEADER_BYTES as usize..end)
        .ok_or("record payload is incomplete")?;
    if crc32c::crc32c(payload) != checksum {
        return Err("record checksum mismatch".to_string());
    }
    let entry =
        postcard::from_bytes(payload).map_err(|e| format!("record does not decode: {e}"))?;
    Ok((entry, end))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use openraft::StorageError;
    use openraft::testing::log::{StoreBuilder, Suite};

    use super::*;
    use crate::db::database::Database;
    use crate::db::snapshot_store::SnapshotStore;
    use crate::db::state_machine::StateMachine;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
            let dir = tempfile::tempdir().expect("temp dir");
            let log = LogStore::open(&dir.path().join("log")).expect("open log");
            let database = Database::open(&dir.path().join("db.sqlite"), 99, 2).expect("open db");
            let snapshots = SnapshotStore::open(&dir.path().join("snapshots")).expect("snapshots");
            Ok((dir, log, StateMachine::new(Arc::new(database), snapshots)))
        }
    }

    /// openraft's own conformance suite for log stores (and the state machine's basics).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_openraft_storage_suite() {
        Suite::test_all(Builder).await.expect("storage suite");
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
            let mut store = LogStore::open(&log_dir).unwrap();
            append_and_flush(&mut store, (1..=10).map(blank).collect()).await;
        }
        // A crash mid-write leaves half a record at the end.
        let segment = log_dir.join(format!("{:020}.seg", 1));
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(&[42, 0, 0, 0, 1, 2]).unwrap();
        drop(file);
        let mut store = LogStore::open(&log_dir).unwrap();
        let entries = store.try_get_log_entries(0..100).await.unwrap();
        assert_eq!(
            entries.iter().map(|e| e.index()).collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
        append_and_flush(&mut store, vec![blank(11)]).await;
        drop(store);
        let mut store = LogStore::open(&log_dir).unwrap();
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
            let mut store = LogStore::open(&log_dir).unwrap();
            append_and_flush(&mut store, (1..=5).map(blank).collect()).await;
            store.purge(blank(100).log_id()).await.unwrap();
            append_and_flush(&mut store, (101..=103).map(blank).collect()).await;
        }
        // The jump starts a new segment, so every segment holds consecutive indexes.
        assert!(log_dir.join(format!("{:020}.seg", 101)).is_file());
        let mut store = LogStore::open(&log_dir).unwrap();
        let entries = store.try_get_log_entries(0..200).await.unwrap();
        assert_eq!(
            entries.iter().map(|e| e.index()).collect::<Vec<_>>(),
            [101, 102, 103]
        );
        append_and_flush(&mut store, vec![blank(104)]).await;
        drop(store);
        let mut store = LogStore::open(&log_dir).unwrap();
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
        let segment = log_dir.join(format!("{:020}.seg", 1));
        let bytes: Vec<u8> = [1, 2, 3, 11, 12].into_iter().flat_map(record).collect();
        std::fs::write(&segment, &bytes).unwrap();
        let error = LogStore::open(&log_dir)
            .err()
            .expect("a gap over live entries");
        assert!(error.to_string().contains("index 11 follows 3"), "{error}");
        let purged = DurableState {
            purged: Some(blank(10).log_id()),
            ..DurableState::default()
        };
        write_state(&log_dir, &purged).unwrap();
        {
            let mut store = LogStore::open(&log_dir).unwrap();
            let entries = store.try_get_log_entries(0..20).await.unwrap();
            assert_eq!(
                entries.iter().map(|e| e.index()).collect::<Vec<_>>(),
                [11, 12]
            );
        }
    }

    #[tokio::test]
    async fn a_damaged_acknowledged_record_is_an_error_not_silence() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("log");
        {
            let mut store = LogStore::open(&log_dir).unwrap();
            append_and_flush(&mut store, (1..=5).map(blank).collect()).await;
        }
        let segment = log_dir.join(format!("{:020}.seg", 1));
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes[RECORD_HEADER_BYTES as usize + 1] ^= 0xff; // inside the first record's payload
        std::fs::write(&segment, &bytes).unwrap();
        // Records follow the damaged one, so it is not a torn write: opening must fail loudly
        // rather than drop entries 1..=5.
        let error = LogStore::open(&log_dir)
            .err()
            .expect("damaged log must not open");
        assert!(error.to_string().contains("corrupt Raft log"), "{error}");
    }
}
