//! The layouts of a log entry's [`Command`], and which one encoding and decoding use.
//!
//! Entries are postcard-encoded, which has no field names: a field added to `Command` changes
//! how every entry encodes. So each layout is kept, and the caller names the one the bytes at
//! hand use: the log's records say theirs (`raft::log_store::segment`), a peer stream uses its
//! protocol version's. Layout 1 is every entry written before cross-group transactions;
//! layout 2 adds [`Command::shard`]. A command with a shard step cannot be written in layout
//! 1: the encoding fails rather than dropping the step (postcard drops the message, so
//! callers name the layout in their errors).

use std::cell::Cell;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::types::shard::ShardStep;
use crate::types::users::UserChange;
use crate::types::{Command, ImageLoad, StatementBatch};

/// A layout of [`Command`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandLayout {
    /// Timestamp, batches, load, users.
    V1,
    /// Layout 1 and the shard step.
    V2,
}

impl CommandLayout {
    pub const CURRENT: CommandLayout = CommandLayout::V2;
}

thread_local! {
    static LAYOUT: Cell<CommandLayout> = const { Cell::new(CommandLayout::CURRENT) };
}

/// Runs `work` (which encodes or decodes commands, synchronously) with `layout` in effect on
/// this thread, then restores the one before, also when `work` panics.
pub fn with_layout<T>(layout: CommandLayout, work: impl FnOnce() -> T) -> T {
    struct Restore(CommandLayout);
    impl Drop for Restore {
        fn drop(&mut self) {
            LAYOUT.with(|cell| cell.set(self.0));
        }
    }
    let _restore = Restore(LAYOUT.with(|cell| cell.replace(layout)));
    work()
}

fn current() -> CommandLayout {
    LAYOUT.with(Cell::get)
}

#[derive(Serialize)]
#[serde(rename = "Command")]
struct Layout1Ref<'a> {
    timestamp_ms: i64,
    batches: &'a Vec<StatementBatch>,
    load: &'a Option<ImageLoad>,
    users: &'a Option<UserChange>,
}

#[derive(Serialize)]
#[serde(rename = "Command")]
struct Layout2Ref<'a> {
    timestamp_ms: i64,
    batches: &'a Vec<StatementBatch>,
    load: &'a Option<ImageLoad>,
    users: &'a Option<UserChange>,
    shard: &'a Option<ShardStep>,
}

#[derive(Deserialize)]
#[serde(rename = "Command")]
struct Layout1 {
    timestamp_ms: i64,
    batches: Vec<StatementBatch>,
    load: Option<ImageLoad>,
    users: Option<UserChange>,
}

#[derive(Deserialize)]
#[serde(rename = "Command")]
struct Layout2 {
    timestamp_ms: i64,
    batches: Vec<StatementBatch>,
    load: Option<ImageLoad>,
    users: Option<UserChange>,
    // (Only self-describing formats can omit it; postcard always carries it in layout 2.)
    #[serde(default)]
    shard: Option<ShardStep>,
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match current() {
            CommandLayout::V1 => {
                if self.shard.is_some() {
                    return Err(serde::ser::Error::custom(
                        "a cross-group transaction step needs command layout 2; the receiver \
                         (an older node or log) knows only layout 1",
                    ));
                }
                Layout1Ref {
                    timestamp_ms: self.timestamp_ms,
                    batches: &self.batches,
                    load: &self.load,
                    users: &self.users,
                }
                .serialize(serializer)
            }
            CommandLayout::V2 => Layout2Ref {
                timestamp_ms: self.timestamp_ms,
                batches: &self.batches,
                load: &self.load,
                users: &self.users,
                shard: &self.shard,
            }
            .serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match current() {
            CommandLayout::V1 => {
                let old = Layout1::deserialize(deserializer)?;
                Command {
                    timestamp_ms: old.timestamp_ms,
                    batches: old.batches,
                    load: old.load,
                    users: old.users,
                    shard: None,
                }
            }
            CommandLayout::V2 => {
                let new = Layout2::deserialize(deserializer)?;
                Command {
                    timestamp_ms: new.timestamp_ms,
                    batches: new.batches,
                    load: new.load,
                    users: new.users,
                    shard: new.shard,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Statement;
    use crate::types::shard::Xid;

    fn plain() -> Command {
        Command {
            timestamp_ms: 42,
            batches: vec![StatementBatch::new(
                vec![Statement::plain("INSERT INTO t VALUES (1)")],
                false,
            )],
            load: None,
            users: None,
            shard: None,
        }
    }

    /// The bytes layout 1 wrote before layout 2 existed: the same four fields, in order.
    #[derive(Serialize)]
    struct WrittenByLayout1 {
        timestamp_ms: i64,
        batches: Vec<StatementBatch>,
        load: Option<ImageLoad>,
        users: Option<UserChange>,
    }

    #[test]
    fn layout_1_bytes_decode_as_a_command_without_a_step() {
        let command = plain();
        let old_bytes = postcard::to_stdvec(&WrittenByLayout1 {
            timestamp_ms: command.timestamp_ms,
            batches: command.batches.clone(),
            load: None,
            users: None,
        })
        .unwrap();
        let encoded_v1 = with_layout(CommandLayout::V1, || postcard::to_stdvec(&command)).unwrap();
        assert_eq!(encoded_v1, old_bytes);
        let decoded: Command =
            with_layout(CommandLayout::V1, || postcard::from_bytes(&old_bytes)).unwrap();
        assert_eq!(decoded, command);
    }

    #[test]
    fn layout_2_carries_the_step_and_layout_1_refuses_it() {
        let mut command = plain();
        command.shard = Some(ShardStep::Commit {
            xid: Xid {
                coordinator: 2,
                id: 9,
            },
        });
        let bytes = postcard::to_stdvec(&command).unwrap();
        let decoded: Command = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, command);
        // (postcard keeps no custom message: callers name the layout in their errors.)
        let refused = with_layout(CommandLayout::V1, || postcard::to_stdvec(&command));
        assert!(refused.is_err());
        // The layout in effect is restored afterwards.
        assert_eq!(current(), CommandLayout::CURRENT);
    }
}
