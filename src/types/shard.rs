//! What a cross-group (two-phase) commit writes into each group's log: the transaction's id,
//! the three steps a group applies, and the outcome each step reports.

use serde::{Deserialize, Serialize};

use crate::types::{GroupId, StatementBatch};

/// Identifies one cross-group transaction. The coordinator group is the transaction's first
/// participant: its log holds the decision (its own commit, or an abort), so exactly one
/// outcome is ever recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Xid {
    pub coordinator: GroupId,
    pub id: u64,
}

impl std::fmt::Display for Xid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{:016x}", self.coordinator, self.id)
    }
}

impl std::str::FromStr for Xid {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (coordinator, id) = text
            .split_once('-')
            .ok_or_else(|| format!("transaction id {text:?} is not <group>-<hex>"))?;
        Ok(Xid {
            coordinator: coordinator
                .parse()
                .map_err(|_| format!("transaction id {text:?}: bad group"))?,
            id: u64::from_str_radix(id, 16)
                .map_err(|_| format!("transaction id {text:?}: bad number"))?,
        })
    }
}

/// One step of a cross-group transaction, applied by one participant group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShardStep {
    /// Runs `batch` and undoes it, reporting its results; if it succeeded the group holds
    /// it, prepared, and applies no other write until the transaction is decided.
    Prepare { xid: Xid, batch: StatementBatch },
    /// Applies the held batch. On the coordinator group this is the decision, unless an
    /// abort was recorded first.
    Commit { xid: Xid },
    /// Drops the held batch. On the coordinator group it records the abort, unless the
    /// commit was recorded first (then it reports that, changing nothing).
    Abort { xid: Xid },
    /// Starts fence `cut` (a consistent backup across a sharded database's groups, see
    /// `backup::cut`): until `Unfence { cut }`, or until the entries' clock passes
    /// `until_ms`, prepares of new transactions answer [`StepOutcome::Fenced`] and hold
    /// nothing; transactions already prepared finish as usual. (Added after the three above:
    /// postcard numbers variants in order, so entries written before it read the same.)
    Fence { cut: u64, until_ms: i64 },
    /// Ends fence `cut`: [`StepOutcome::Unfenced`] when it was still in force, else
    /// [`StepOutcome::Unknown`] (it lapsed, or never was).
    Unfence { cut: u64 },
    /// Changes the slots this group answers for (resharding, `db::ownership`): when the
    /// group's owner version is `expect`, applies `batch` (rows moved in or out, the schema
    /// of a joining group) and sets the version to `version`, atomically — answering
    /// [`StepOutcome::Reowned`]; otherwise changes nothing and answers
    /// [`StepOutcome::VersionDiffers`]. Refused ([`StepOutcome::Busy`]) while a transaction is
    /// prepared here. (Appended after `Unfence`, so earlier entries read the same.)
    Reown {
        expect: u64,
        version: u64,
        batch: StatementBatch,
    },
}

impl ShardStep {
    /// The transaction the step belongs to (`None` for fences).
    pub fn xid(&self) -> Option<Xid> {
        match self {
            ShardStep::Prepare { xid, .. }
            | ShardStep::Commit { xid }
            | ShardStep::Abort { xid } => Some(*xid),
            ShardStep::Fence { .. } | ShardStep::Unfence { .. } | ShardStep::Reown { .. } => None,
        }
    }
}

/// What applying a step found; the first result of every step's response carries it (a
/// one-row result set with the column [`OUTCOME_COLUMN`]), the batch's results follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Prepare: the batch succeeded and is held.
    Prepared,
    /// Prepare: a statement of the batch failed (its error is in the results); nothing held.
    Refused,
    /// Prepare: another transaction is prepared in the group; try again shortly.
    Busy,
    /// The transaction committed (now, or earlier: the step changed nothing).
    Committed,
    /// The transaction aborted (now, or earlier).
    Aborted,
    /// The group holds nothing of the transaction and (not being its coordinator) knows no
    /// decision: it was finished here already, or never prepared. For `Unfence`: no such
    /// fence was in force.
    Unknown,
    /// Prepare: a fence is in force (a consistent backup is being taken); nothing held, the
    /// transaction should start again shortly. Fence: the fence is in force.
    Fenced,
    /// Unfence: the fence was in force until this step.
    Unfenced,
    /// Reown: the batch applied and the owner version changed.
    Reowned,
    /// Reown: the group's owner version was not the one expected; nothing changed.
    VersionDiffers,
}

/// The column naming a step's outcome.
pub const OUTCOME_COLUMN: &str = "shoal_step_outcome";

impl StepOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Prepared => "prepared",
            StepOutcome::Refused => "refused",
            StepOutcome::Busy => "busy",
            StepOutcome::Committed => "committed",
            StepOutcome::Aborted => "aborted",
            StepOutcome::Unknown => "unknown",
            StepOutcome::Fenced => "fenced",
            StepOutcome::Unfenced => "unfenced",
            StepOutcome::Reowned => "reowned",
            StepOutcome::VersionDiffers => "version differs",
        }
    }

    pub fn parse(text: &str) -> Option<StepOutcome> {
        [
            StepOutcome::Prepared,
            StepOutcome::Refused,
            StepOutcome::Busy,
            StepOutcome::Committed,
            StepOutcome::Aborted,
            StepOutcome::Unknown,
            StepOutcome::Fenced,
            StepOutcome::Unfenced,
            StepOutcome::Reowned,
            StepOutcome::VersionDiffers,
        ]
        .into_iter()
        .find(|outcome| outcome.as_str() == text)
    }

    /// The result carrying this outcome.
    pub fn result(self) -> crate::types::StatementResult {
        crate::types::StatementResult {
            rows: Some(crate::types::RowSet {
                columns: vec![OUTCOME_COLUMN.into()],
                types: vec!["text".into()],
                values: vec![vec![crate::types::value::SqlValue::Text(
                    self.as_str().into(),
                )]],
            }),
            ..Default::default()
        }
    }

    /// The outcome a step's first result carries, if it is one.
    pub fn of(result: &crate::types::StatementResult) -> Option<StepOutcome> {
        let rows = result.rows.as_ref()?;
        if rows.columns.first().map(String::as_str) != Some(OUTCOME_COLUMN) {
            return None;
        }
        match rows.values.first()?.first()? {
            crate::types::value::SqlValue::Text(text) => StepOutcome::parse(text),
            _ => None,
        }
    }
}

/// The column of the result a `Fence` step adds after its outcome: the log index it was
/// applied at (an image at or after it was taken under the fence).
pub const FENCE_INDEX_COLUMN: &str = "shoal_fence_index";

/// The result naming the log index a fence was applied at.
pub fn fence_index_result(index: u64) -> crate::types::StatementResult {
    crate::types::StatementResult {
        rows: Some(crate::types::RowSet {
            columns: vec![FENCE_INDEX_COLUMN.into()],
            types: vec!["integer".into()],
            values: vec![vec![crate::types::value::SqlValue::Integer(
                i64::try_from(index).unwrap_or(i64::MAX),
            )]],
        }),
        ..Default::default()
    }
}

/// The log index a `Fence` step's results name, if they name one.
pub fn fence_index_of(results: &[crate::types::StatementResult]) -> Option<u64> {
    results.iter().find_map(|result| {
        let rows = result.rows.as_ref()?;
        if rows.columns.first().map(String::as_str) != Some(FENCE_INDEX_COLUMN) {
            return None;
        }
        match rows.values.first()?.first()? {
            crate::types::value::SqlValue::Integer(index) => u64::try_from(*index).ok(),
            _ => None,
        }
    })
}

/// The error an ordinary write gets when it reaches a group that holds a prepared
/// transaction: nothing of it was applied. The service waits for the decision and proposes
/// it again, so clients see it only when the transaction stays undecided for long.
pub const GROUP_HELD_BY_PREPARED: &str =
    "the group holds a prepared cross-shard transaction; nothing was applied, retry";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_print_and_parse_back() {
        let xid = Xid {
            coordinator: 7,
            id: 0xdead_beef,
        };
        assert_eq!(xid.to_string(), "7-00000000deadbeef");
        assert_eq!(xid.to_string().parse::<Xid>(), Ok(xid));
        assert!("7".parse::<Xid>().is_err());
    }

    #[test]
    fn steps_written_before_fences_existed_read_the_same() {
        // The encodings of the three first steps, as entries before fences hold them.
        let xid = Xid {
            coordinator: 3,
            id: 9,
        };
        for (step, bytes) in [
            (ShardStep::Commit { xid }, vec![1u8, 3, 9]),
            (ShardStep::Abort { xid }, vec![2u8, 3, 9]),
        ] {
            assert_eq!(postcard::to_stdvec(&step).unwrap(), bytes);
            assert_eq!(postcard::from_bytes::<ShardStep>(&bytes).unwrap(), step);
        }
        let fence = ShardStep::Fence {
            cut: 5,
            until_ms: 7,
        };
        let encoded = postcard::to_stdvec(&fence).unwrap();
        assert_eq!(encoded[0], 3, "fences come after the transaction steps");
        assert_eq!(postcard::from_bytes::<ShardStep>(&encoded).unwrap(), fence);
        // Ownership changes come after them all: entries written before read the same.
        assert_eq!(
            postcard::to_stdvec(&ShardStep::Unfence { cut: 5 }).unwrap(),
            vec![4u8, 5]
        );
        let reown = ShardStep::Reown {
            expect: 1,
            version: 2,
            batch: StatementBatch::new(Vec::new(), true),
        };
        let encoded = postcard::to_stdvec(&reown).unwrap();
        assert_eq!(&encoded[..3], &[5u8, 1, 2]);
        assert_eq!(postcard::from_bytes::<ShardStep>(&encoded).unwrap(), reown);
    }

    #[test]
    fn a_fence_names_its_log_index() {
        let results = vec![StepOutcome::Fenced.result(), fence_index_result(42)];
        assert_eq!(StepOutcome::of(&results[0]), Some(StepOutcome::Fenced));
        assert_eq!(fence_index_of(&results), Some(42));
        assert_eq!(fence_index_of(&results[..1]), None);
    }

    #[test]
    fn an_outcome_survives_its_result_row() {
        for outcome in [
            StepOutcome::Prepared,
            StepOutcome::Aborted,
            StepOutcome::Unknown,
            StepOutcome::Fenced,
            StepOutcome::Unfenced,
        ] {
            assert_eq!(StepOutcome::of(&outcome.result()), Some(outcome));
        }
        assert_eq!(StepOutcome::of(&Default::default()), None);
    }
}
