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
}

impl ShardStep {
    pub fn xid(&self) -> Xid {
        match self {
            ShardStep::Prepare { xid, .. }
            | ShardStep::Commit { xid }
            | ShardStep::Abort { xid } => *xid,
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
    /// decision: it was finished here already, or never prepared.
    Unknown,
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
    fn an_outcome_survives_its_result_row() {
        for outcome in [
            StepOutcome::Prepared,
            StepOutcome::Aborted,
            StepOutcome::Unknown,
        ] {
            assert_eq!(StepOutcome::of(&outcome.result()), Some(outcome));
        }
        assert_eq!(StepOutcome::of(&Default::default()), None);
    }
}
