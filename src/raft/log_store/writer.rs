//! The log's writer thread, the only code that changes segment files. Group commit: it writes
//! every append that is waiting and makes them durable with one fdatasync, then acknowledges
//! them all. Truncation, purging and vote saves run in order with the appends.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use openraft::storage::IOFlushed;
use tokio::sync::{mpsc, oneshot};

use super::segment::{RECORD_HEADER_BYTES, Segment, encode_record};
use super::{DurableState, Shared, poisoned, write_state};
use crate::raft::types::TypeConfig;

/// Appends made durable by one fsync at most.
const GROUP_COMMIT_APPENDS_MAX: usize = 1024;
/// A new segment is started when the active one reaches this size.
const SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;

pub(super) enum WriterCommand {
    Append {
        first_index: u64,
        records: Vec<(u64, Vec<u8>)>,
        flushed: IOFlushed<TypeConfig>,
    },
    /// Everything else: runs after the appends before it are synced.
    Control(ControlCommand),
}

pub(super) enum ControlCommand {
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

pub(super) struct SegmentWriter {
    dir: PathBuf,
    shared: Arc<RwLock<Shared>>,
    active: Option<File>,
    /// Set after a failed write or fsync (a full disk, an I/O error): what reached the disk is
    /// no longer known, so every later append is refused until the node restarts and
    /// recovers from what is on disk (fail-stop, as PostgreSQL does on a failed fsync).
    failed: Option<String>,
}

impl SegmentWriter {
    pub fn open(dir: PathBuf, shared: Arc<RwLock<Shared>>) -> io::Result<SegmentWriter> {
        let active = {
            let shared = shared.read().map_err(|_| poisoned())?;
            match shared.segments.last() {
                Some(segment) => Some(OpenOptions::new().append(true).open(&segment.path)?),
                None => None,
            }
        };
        Ok(SegmentWriter {
            dir,
            shared,
            active,
            failed: None,
        })
    }

    pub fn run(mut self, mut receiver: mpsc::Receiver<WriterCommand>) {
        let mut waiting: Vec<IOFlushed<TypeConfig>> = Vec::new();
        while let Some(command) = receiver.blocking_recv() {
            let mut next = Some(command);
            // Group commit: take the appends already queued (up to a bound, so acknowledgements
            // keep flowing under a steady stream) before syncing once.
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
                        if waiting.len() < GROUP_COMMIT_APPENDS_MAX {
                            next = receiver.try_recv().ok();
                        }
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
            let size = self
                .shared
                .read()
                .ok()
                .and_then(|shared| shared.segments.last().map(|s| s.size_bytes));
            if let (Some(file), Some(size)) = (&self.active, size) {
                let _ = file.set_len(size);
            }
            self.failed = Some(format!("log append failed: {error}"));
        }
        result.map_err(|error| io::Error::new(error.kind(), format!("log append failed: {error}")))
    }

    fn write_records(&mut self, first_index: u64, records: &[(u64, Vec<u8>)]) -> io::Result<()> {
        // A new segment also when the entries do not continue the active one: after a
        // snapshot is installed, the log is purged past its last entry and continues from the
        // snapshot's index, and every segment must hold consecutive indexes.
        let active_end = {
            let shared = self.shared.read().map_err(|_| poisoned())?;
            shared
                .segments
                .last()
                .filter(|s| s.next_index == first_index && s.size_bytes < SEGMENT_BYTES_MAX)
                .map(|s| s.size_bytes)
        };
        let mut offset = match active_end {
            Some(end) => end,
            None => {
                self.start_segment(first_index)?;
                0
            }
        };
        let mut buffer = Vec::with_capacity(
            records
                .iter()
                .map(|(_, payload)| payload.len() + RECORD_HEADER_BYTES as usize)
                .sum(),
        );
        let mut placed = Vec::with_capacity(records.len());
        for (index, payload) in records {
            let length = encode_record(payload, &mut buffer);
            placed.push((*index, offset, length));
            offset += length;
        }
        let file = self
            .active
            .as_mut()
            .ok_or_else(|| io::Error::other("no active segment file"))?;
        file.write_all(&buffer)?;
        let mut shared = self.shared.write().map_err(|_| poisoned())?;
        let segment = shared
            .segments
            .last_mut()
            .ok_or_else(|| io::Error::other("no active segment"))?;
        for (index, offset, length) in placed {
            segment.push(index, offset, length);
        }
        shared.evict_written();
        Ok(())
    }

    fn start_segment(&mut self, first_index: u64) -> io::Result<()> {
        if let Some(file) = &self.active {
            file.sync_data()?;
        }
        let path = Segment::path_for(&self.dir, first_index);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        File::open(&self.dir)?.sync_all()?;
        self.shared
            .write()
            .map_err(|_| poisoned())?
            .segments
            .push(Segment::new(path, first_index));
        self.active = Some(file);
        Ok(())
    }

    /// Removes entries from `index` on. The segment table changes first, so a reader never
    /// looks for an entry whose bytes are going.
    fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        let (removed, cut) = {
            let mut shared = self.shared.write().map_err(|_| poisoned())?;
            shared.truncations_pending = shared.truncations_pending.saturating_sub(1);
            let mut removed = Vec::new();
            while shared.segments.len() > 1
                && shared
                    .segments
                    .last()
                    .is_some_and(|s| s.first_known() >= index)
            {
                if let Some(segment) = shared.segments.pop() {
                    removed.push(segment.path);
                }
            }
            let cut = match shared.segments.last_mut() {
                Some(segment) => Some((segment.path.clone(), segment.cut_from(index)?)),
                None => None,
            };
            (removed, cut)
        };
        self.active = None;
        let any_removed = !removed.is_empty();
        for path in removed {
            std::fs::remove_file(&path)?;
        }
        if any_removed {
            // The removals are durable before the cut: after a power loss a removed segment
            // must not come back next to a shortened one.
            File::open(&self.dir)?.sync_all()?;
        }
        if let Some((path, offset)) = cut {
            let file = OpenOptions::new().write(true).open(&path)?;
            file.set_len(offset)?;
            file.sync_all()?;
            self.active = Some(OpenOptions::new().append(true).open(&path)?);
        }
        File::open(&self.dir)?.sync_all()
    }

    /// Forgets entries up to `index` and removes segments that hold nothing else (never the
    /// active one).
    fn purge_up_to(&mut self, index: u64) -> io::Result<()> {
        let removed = {
            let mut shared = self.shared.write().map_err(|_| poisoned())?;
            let mut removed = Vec::new();
            while shared.segments.len() > 1 && shared.segments[1].first_known() <= index + 1 {
                removed.push(shared.segments.remove(0).path);
            }
            for segment in &mut shared.segments {
                segment.forget_up_to(index);
            }
            removed
        };
        for path in removed {
            std::fs::remove_file(&path)?;
        }
        Ok(())
    }
}
