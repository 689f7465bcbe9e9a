//! The log's on-disk format: segment files of checksummed records, the sparse index that
//! finds an entry inside them, and the verification that runs when a log is opened.
//!
//! A record is `[payload length: u32 LE][CRC-32C of payload: u32 LE][payload]`, the payload a
//! postcard-encoded entry. The length's top bit says the entry's command layout
//! (`types::layout`): clear in records written before layout 2 (lengths never reach it), set
//! in every record written since; an older node reading one refuses it as over-long instead
//! of misreading it. A segment holds consecutive indexes; its file is named after the
//! first index it was started for (`NNNNNNNNNNNNNNNNNNNN.seg`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use openraft::entry::RaftEntry;

use crate::raft::types::{Entry, LogId};
use crate::types::layout::{CommandLayout, with_layout};

/// One entry may not exceed this size on disk (bounded by the HTTP body limit long before).
pub(super) const ENTRY_BYTES_MAX: u32 = 256 * 1024 * 1024;
pub(super) const RECORD_HEADER_BYTES: u64 = 8;
/// Set in a record's length field when its entry uses command layout 2.
const LAYOUT_2_FLAG: u32 = 1 << 31;

/// A record's payload length and its entry's command layout, from its length field.
fn length_and_layout(field: u32) -> (u32, CommandLayout) {
    if field & LAYOUT_2_FLAG != 0 {
        (field & !LAYOUT_2_FLAG, CommandLayout::V2)
    } else {
        (field, CommandLayout::V1)
    }
}
/// The index keeps the byte offset of every `INDEX_STRIDE`-th entry only: finding an entry
/// reads at most this many records, and the index costs 8 bytes per stride instead of 8 bytes
/// per entry (a log of millions of small entries stays cheap to hold).
const INDEX_STRIDE: u64 = 32;

/// Where the entries of one segment file lie.
pub(super) struct Segment {
    pub path: PathBuf,
    /// Index of the entry at `checkpoints[0]`; a multiple of `INDEX_STRIDE` entries after the
    /// segment's first record, as purging drops whole strides only.
    base: u64,
    /// The index the next record appended to this segment must have.
    pub next_index: u64,
    pub size_bytes: u64,
    /// Byte offset of entry `base + k * INDEX_STRIDE`, for each k.
    checkpoints: Vec<u64>,
}

impl Segment {
    /// An empty segment whose first record will be entry `first_index`.
    pub fn new(path: PathBuf, first_index: u64) -> Segment {
        Segment {
            path,
            base: first_index,
            next_index: first_index,
            size_bytes: 0,
            checkpoints: Vec::new(),
        }
    }

    pub fn path_for(dir: &Path, first_index: u64) -> PathBuf {
        dir.join(format!("{first_index:020}.seg"))
    }

    /// The first entry this segment still indexes (those before it are purged).
    pub fn first_known(&self) -> u64 {
        self.base
    }

    /// The last entry held, if any.
    pub fn last_index(&self) -> Option<u64> {
        (self.next_index > self.base).then(|| self.next_index - 1)
    }

    pub fn contains(&self, index: u64) -> bool {
        self.base <= index && index < self.next_index
    }

    /// Records that entry `index` was written at byte `offset` (the segment's end).
    pub fn push(&mut self, index: u64, offset: u64, record_bytes: u64) {
        debug_assert_eq!(index, self.next_index);
        debug_assert_eq!(offset, self.size_bytes);
        if (index - self.base).is_multiple_of(INDEX_STRIDE) {
            self.checkpoints.push(offset);
        }
        self.next_index = index + 1;
        self.size_bytes = offset + record_bytes;
    }

    /// Forgets the index of whole strides at or before `purged` (their bytes stay in the file
    /// until the whole segment is removed).
    pub fn forget_up_to(&mut self, purged: u64) {
        if purged < self.base {
            return;
        }
        let strides = ((purged - self.base + 1) / INDEX_STRIDE) as usize;
        let strides = strides.min(self.checkpoints.len());
        self.checkpoints.drain(..strides);
        self.base += strides as u64 * INDEX_STRIDE;
    }

    /// Drops entries from `index` on: returns the byte offset the file must be cut to.
    pub fn cut_from(&mut self, index: u64) -> io::Result<u64> {
        if index >= self.next_index {
            return Ok(self.size_bytes);
        }
        let offset = if index <= self.base {
            self.checkpoints.first().copied().unwrap_or(self.size_bytes)
        } else {
            // Walk the record headers from the checkpoint before `index`.
            let stride_first = self.stride_first(index);
            let (from, bytes) = self.read_stride_of(index)?;
            let mut at = 0usize;
            for _ in stride_first..index {
                at += record_length(&bytes[at..]).map_err(|e| self.corrupt(from + at as u64, e))?;
            }
            from + at as u64
        };
        let kept_strides = index.saturating_sub(self.base).div_ceil(INDEX_STRIDE) as usize;
        self.checkpoints.truncate(kept_strides);
        self.next_index = index.max(self.base);
        self.size_bytes = offset;
        Ok(offset)
    }

    /// Reads entries `start..end` (all inside this segment), verifying each record.
    pub fn read(&self, start: u64, end: u64, out: &mut Vec<Entry>) -> io::Result<()> {
        if start >= end {
            return Ok(());
        }
        if !self.contains(start) || !self.contains(end - 1) {
            return Err(io::Error::other(format!(
                "entries {start}..{end} are not in log segment {}",
                self.path.display()
            )));
        }
        let first = self.stride_first(start);
        let from = self.checkpoint(first);
        let to = self.end_of_stride(end - 1);
        let mut bytes = vec![0u8; (to - from) as usize];
        File::open(&self.path)?.read_exact_at(&mut bytes, from)?;
        let mut at = 0usize;
        for index in first..end {
            let (entry, length) =
                decode_record(&bytes[at..]).map_err(|e| self.corrupt(from + at as u64, e))?;
            if entry.index() != index {
                return Err(self.corrupt(
                    from + at as u64,
                    format!("found entry {} where {index} belongs", entry.index()),
                ));
            }
            if index >= start {
                out.push(entry);
            }
            at += length;
        }
        Ok(())
    }

    /// Bytes of the records after `purged` (the live part of this segment).
    pub fn live_bytes(&self, purged: Option<u64>) -> u64 {
        match purged {
            Some(purged) if purged >= self.base => {
                if purged + 1 >= self.next_index {
                    return 0;
                }
                // The stride holding the first live entry counts whole: an estimate within
                // one stride, which is all the snapshot policy needs.
                self.size_bytes - self.checkpoint(self.stride_first(purged + 1))
            }
            _ => self.size_bytes - self.checkpoints.first().copied().unwrap_or(self.size_bytes),
        }
    }

    fn stride_first(&self, index: u64) -> u64 {
        self.base + (index - self.base) / INDEX_STRIDE * INDEX_STRIDE
    }

    fn checkpoint(&self, stride_first: u64) -> u64 {
        let k = ((stride_first - self.base) / INDEX_STRIDE) as usize;
        self.checkpoints.get(k).copied().unwrap_or(self.size_bytes)
    }

    /// The offset where the stride after the one holding `index` starts (or the segment end).
    fn end_of_stride(&self, index: u64) -> u64 {
        self.checkpoint(self.stride_first(index) + INDEX_STRIDE)
    }

    /// The bytes of the stride holding `index`, with the offset they start at.
    fn read_stride_of(&self, index: u64) -> io::Result<(u64, Vec<u8>)> {
        let from = self.checkpoint(self.stride_first(index));
        let to = self.end_of_stride(index);
        let mut bytes = vec![0u8; (to - from) as usize];
        File::open(&self.path)?.read_exact_at(&mut bytes, from)?;
        Ok((from, bytes))
    }

    fn corrupt(&self, offset: u64, reason: String) -> io::Error {
        corrupt(&self.path, offset, reason)
    }
}

/// Appends the record for `payload` to `buffer`; returns the record's length.
///
/// `payload` is an entry encoded in the current command layout (2), as everything this node
/// writes.
pub(super) fn encode_record(payload: &[u8], buffer: &mut Vec<u8>) -> u64 {
    buffer.extend_from_slice(&(payload.len() as u32 | LAYOUT_2_FLAG).to_le_bytes());
    buffer.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    buffer.extend_from_slice(payload);
    RECORD_HEADER_BYTES + payload.len() as u64
}

/// What opening a log directory found.
pub(super) struct Loaded {
    pub segments: Vec<Segment>,
    /// The last unpurged entry, if any.
    pub last_log_id: Option<LogId>,
}

/// Reads every segment, verifying lengths, checksums and index continuity, and hands each
/// unpurged entry to `visit`, oldest first (the caller keeps what fits in memory, so the whole
/// log is never held at once). A torn record at the end of the last segment (a crash mid-write,
/// never acknowledged) is cut off; damage anywhere else is an error: acknowledged entries must
/// never silently disappear.
pub(super) fn load_segments(
    dir: &Path,
    purged: Option<u64>,
    mut visit: impl FnMut(Entry, usize),
) -> io::Result<Loaded> {
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
    let mut last_log_id = None;
    // The index the next segment must start at (`None` before the first entry).
    let mut previous_next: Option<u64> = None;
    let last_position = paths.len().saturating_sub(1);
    for (position, (first_index, path)) in paths.into_iter().enumerate() {
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        let mut segment = Segment::new(path, first_index);
        let mut offset = 0usize;
        while offset < bytes.len() {
            match decode_record(&bytes[offset..]) {
                Ok((entry, length)) => {
                    let index = entry.index();
                    if segment.last_index().is_none() {
                        // Segments continue each other, except where everything before the
                        // jump is purged (a log that continued after a snapshot).
                        if let Some(expected) = previous_next
                            && index != expected
                            && !purged.is_some_and(|p| expected <= p + 1 && index <= p + 1)
                        {
                            return Err(corrupt(
                                &segment.path,
                                offset as u64,
                                format!(
                                    "segment starts at index {index}, but the previous one ends before {expected}"
                                ),
                            ));
                        }
                        segment.base = index;
                        segment.next_index = index;
                    } else if index != segment.next_index {
                        // A gap is allowed only where everything before it is purged (a log
                        // that continued after a snapshot, written before segments rolled
                        // over at such a jump): the index restarts at the jump.
                        let previous = segment.next_index - 1;
                        if !purged.is_some_and(|p| previous <= p && index <= p + 1) {
                            return Err(corrupt(
                                &segment.path,
                                offset as u64,
                                format!("index {index} follows {previous}"),
                            ));
                        }
                        segment.base = index;
                        segment.next_index = index;
                        segment.checkpoints.clear();
                    }
                    segment.size_bytes = offset as u64;
                    segment.push(index, offset as u64, length as u64);
                    if purged.is_none_or(|p| index > p) {
                        last_log_id = Some(entry.log_id());
                        visit(entry, length - RECORD_HEADER_BYTES as usize);
                    }
                    offset += length;
                }
                Err(reason) if position == last_position && is_torn_tail(&bytes[offset..]) => {
                    tracing::warn!(path = %segment.path.display(), offset, dropped_bytes = bytes.len() - offset, %reason,
                        "cutting a torn record off the end of the log");
                    let file = OpenOptions::new().write(true).open(&segment.path)?;
                    file.set_len(offset as u64)?;
                    file.sync_all()?;
                    break;
                }
                Err(reason) => return Err(corrupt(&segment.path, offset as u64, reason)),
            }
        }
        segment.size_bytes = offset as u64;
        if segment.last_index().is_some() {
            previous_next = Some(segment.next_index);
        }
        if let Some(purged) = purged {
            segment.forget_up_to(purged);
        }
        segments.push(segment);
    }
    Ok(Loaded {
        segments,
        last_log_id,
    })
}

/// Whether an undecodable record is the unfinished last write of a crash: its header or payload
/// runs past the end of the file, or it is the final record. Anything followed by more data is
/// damage to an acknowledged record.
fn is_torn_tail(rest: &[u8]) -> bool {
    if rest.len() < RECORD_HEADER_BYTES as usize {
        return true;
    }
    let (length, _) = length_and_layout(u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]));
    RECORD_HEADER_BYTES as usize + length as usize >= rest.len()
}

pub(super) fn corrupt(path: &Path, offset: u64, reason: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "corrupt Raft log {} at byte {offset}: {reason}",
            path.display()
        ),
    )
}

/// The length of the record at the front of `bytes`, from its header alone.
fn record_length(bytes: &[u8]) -> Result<usize, String> {
    let header = bytes
        .get(..RECORD_HEADER_BYTES as usize)
        .ok_or("record header is incomplete")?;
    let (length, _) = length_and_layout(u32::from_le_bytes([
        header[0], header[1], header[2], header[3],
    ]));
    if length > ENTRY_BYTES_MAX {
        return Err(format!("record length {length} exceeds the limit"));
    }
    let end = RECORD_HEADER_BYTES as usize + length as usize;
    if end > bytes.len() {
        return Err("record payload is incomplete".to_string());
    }
    Ok(end)
}

/// Decodes one record from the front of `bytes`, returning the entry and the record's length.
pub(super) fn decode_record(bytes: &[u8]) -> Result<(Entry, usize), String> {
    let end = record_length(bytes)?;
    let checksum = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let payload = &bytes[RECORD_HEADER_BYTES as usize..end];
    if crc32c::crc32c(payload) != checksum {
        return Err("record checksum mismatch".to_string());
    }
    let (_, layout) =
        length_and_layout(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
    let entry = with_layout(layout, || postcard::from_bytes(payload))
        .map_err(|e| format!("record does not decode: {e}"))?;
    Ok((entry, end))
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;

    use super::*;
    use crate::types::{Command, Statement, StatementBatch, TypeConfig};

    fn entry(index: u64, shard: Option<crate::types::shard::ShardStep>) -> Entry {
        let mut entry: Entry = openraft::testing::blank_ent::<TypeConfig>(1, 1, index);
        entry.payload = EntryPayload::Normal(Command {
            timestamp_ms: 7,
            batches: vec![StatementBatch::new(
                vec![Statement::plain("SELECT 1")],
                false,
            )],
            load: None,
            users: None,
            shard,
        });
        entry
    }

    #[test]
    fn records_written_before_layout_2_still_decode() {
        // An older node wrote layout-1 payloads with a plain length.
        let old = entry(3, None);
        let payload = with_layout(CommandLayout::V1, || postcard::to_stdvec(&old)).unwrap();
        let mut record = Vec::new();
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        let (decoded, length) = decode_record(&record).unwrap();
        assert_eq!(decoded, old);
        assert_eq!(length, record.len());
    }

    #[test]
    fn records_written_now_carry_their_layout() {
        let new = entry(
            4,
            Some(crate::types::shard::ShardStep::Abort {
                xid: crate::types::shard::Xid {
                    coordinator: 2,
                    id: 1,
                },
            }),
        );
        let payload = postcard::to_stdvec(&new).unwrap();
        let mut record = Vec::new();
        encode_record(&payload, &mut record);
        assert_ne!(record[3] & 0x80, 0, "the layout flag is set");
        assert_eq!(decode_record(&record).unwrap().0, new);
        // The flag is not read as length: a cut record is the torn tail of a crash.
        assert!(is_torn_tail(&record[..record.len() - 1]));
    }
}
