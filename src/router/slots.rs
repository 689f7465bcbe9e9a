//! Which group of a sharded database owns each slot (`shard::slot`): the slots split evenly
//! in shard order, group `i` of `n` owning `[i·S/n, (i+1)·S/n)`. Every distributed table of a
//! database shares the map, so rows of equal keys are co-located whatever their table.

use crate::raft::types::GroupId;
use crate::shard::slot::SLOTS;

/// The slot-to-group map of one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    groups: Vec<GroupId>,
}

impl SlotMap {
    /// The even map over `groups` (in shard order).
    pub fn even(groups: &[GroupId]) -> SlotMap {
        SlotMap {
            groups: groups.to_vec(),
        }
    }

    /// The group owning `slot`.
    pub fn group_of(&self, slot: u32) -> GroupId {
        let n = self.groups.len().max(1) as u64;
        let at = (slot as u64 % SLOTS as u64) * n / SLOTS as u64;
        self.groups.get(at as usize).copied().unwrap_or_default()
    }

    /// The slots shard `shard` owns, `[first, end)`.
    pub fn range_of(&self, shard: usize) -> (u32, u32) {
        let n = self.groups.len().max(1) as u64;
        let bound = |i: u64| (i * SLOTS as u64).div_ceil(n) as u32;
        (bound(shard as u64), bound(shard as u64 + 1))
    }

    pub fn groups(&self) -> &[GroupId] {
        &self.groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_belongs_to_the_group_whose_range_holds_it() {
        for n in [1usize, 2, 3, 4, 7, 64] {
            let groups: Vec<GroupId> = (10..10 + n as u64).collect();
            let map = SlotMap::even(&groups);
            let mut covered = 0;
            for (shard, group) in groups.iter().enumerate() {
                let (first, end) = map.range_of(shard);
                covered += end - first;
                for slot in [first, end - 1] {
                    assert_eq!(map.group_of(slot), *group, "n={n} slot={slot}");
                }
            }
            assert_eq!(covered, SLOTS, "n={n}: the ranges cover every slot once");
        }
    }
}
