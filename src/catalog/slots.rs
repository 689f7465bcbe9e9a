//! Which group of a sharded database owns each slot (`shard::slot`), and the owner version
//! each group must answer for (`db::ownership`). A database created sharded owns its slots
//! evenly in shard order, group `i` of `n` owning `[i·S/n, (i+1)·S/n)`, all at version 0; the
//! catalog stores a map only once resharding changed it (docs/sharding.md). Every distributed
//! table of a database shares the map, so rows of equal keys are co-located whatever their
//! table.

use std::collections::BTreeMap;

use crate::raft::types::GroupId;
use crate::shard::slot::SLOTS;

/// Slots `[first, end)` owned by `group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRange {
    pub first: u32,
    pub end: u32,
    pub group: GroupId,
}

/// The slot-to-group map of one database.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlotMap {
    /// In slot order, adjacent, covering `[0, SLOTS)`; adjacent ranges of one group merged.
    ranges: Vec<SlotRange>,
    /// The owner version each group must be at; absent: 0.
    versions: BTreeMap<GroupId, u64>,
}

impl SlotMap {
    /// The even map over `groups` (in shard order), every group at version 0.
    pub fn even(groups: &[GroupId]) -> SlotMap {
        let n = groups.len().max(1) as u64;
        let bound = |i: u64| (i * SLOTS as u64).div_ceil(n) as u32;
        let ranges = groups
            .iter()
            .enumerate()
            .map(|(i, group)| SlotRange {
                first: bound(i as u64),
                end: bound(i as u64 + 1),
                group: *group,
            })
            .filter(|range| range.first < range.end)
            .collect();
        SlotMap {
            ranges,
            versions: BTreeMap::new(),
        }
    }

    /// A stored map: `ranges` must cover every slot once.
    pub fn stored(
        mut ranges: Vec<SlotRange>,
        versions: BTreeMap<GroupId, u64>,
    ) -> Result<SlotMap, String> {
        ranges.sort_by_key(|range| range.first);
        let mut next = 0;
        for range in &ranges {
            if range.first != next || range.end <= range.first {
                return Err(format!(
                    "the stored slot map does not cover slot {next} exactly once"
                ));
            }
            next = range.end;
        }
        if next != SLOTS {
            return Err(format!(
                "the stored slot map ends at slot {next}, not {SLOTS}"
            ));
        }
        Ok(SlotMap { ranges, versions }.merged())
    }

    /// The group owning `slot`.
    pub fn group_of(&self, slot: u32) -> GroupId {
        let slot = slot % SLOTS;
        let at = self.ranges.partition_point(|range| range.end <= slot);
        self.ranges.get(at).map_or(0, |range| range.group)
    }

    /// Every range, in slot order.
    pub fn ranges(&self) -> &[SlotRange] {
        &self.ranges
    }

    /// The ranges `group` owns.
    pub fn ranges_of(&self, group: GroupId) -> Vec<(u32, u32)> {
        self.ranges
            .iter()
            .filter(|range| range.group == group)
            .map(|range| (range.first, range.end))
            .collect()
    }

    /// Slots `group` owns.
    pub fn slots_of(&self, group: GroupId) -> u32 {
        self.ranges_of(group).iter().map(|(a, b)| b - a).sum()
    }

    /// The owner version `group` must be at for a request routed by this map.
    pub fn owner_version(&self, group: GroupId) -> u64 {
        self.versions.get(&group).copied().unwrap_or(0)
    }

    /// The owner versions recorded (groups at 0 may be absent).
    pub fn versions(&self) -> &BTreeMap<GroupId, u64> {
        &self.versions
    }

    /// The map after slots `[first, end)` moved to `to`, `from` and `to` both at `version`.
    pub fn with_move(&self, first: u32, end: u32, to: GroupId, version: u64) -> SlotMap {
        let mut ranges = Vec::with_capacity(self.ranges.len() + 2);
        let mut from = Vec::new();
        for range in &self.ranges {
            if range.end <= first || range.first >= end {
                ranges.push(*range);
                continue;
            }
            from.push(range.group);
            if range.first < first {
                ranges.push(SlotRange {
                    end: first,
                    ..*range
                });
            }
            ranges.push(SlotRange {
                first: range.first.max(first),
                end: range.end.min(end),
                group: to,
            });
            if range.end > end {
                ranges.push(SlotRange {
                    first: end,
                    ..*range
                });
            }
        }
        let mut versions = self.versions.clone();
        for group in from.into_iter().chain([to]) {
            versions.insert(group, version);
        }
        SlotMap { ranges, versions }.merged()
    }

    /// The same map with adjacent ranges of one group joined.
    fn merged(mut self) -> SlotMap {
        let mut joined: Vec<SlotRange> = Vec::with_capacity(self.ranges.len());
        for range in self.ranges {
            match joined.last_mut() {
                Some(last) if last.group == range.group && last.end == range.first => {
                    last.end = range.end;
                }
                _ => joined.push(range),
            }
        }
        self.ranges = joined;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The even map as the router computed it before maps were stored: `slot·n / S`.
    fn by_arithmetic(groups: &[GroupId], slot: u32) -> GroupId {
        let n = groups.len() as u64;
        groups[(slot as u64 * n / SLOTS as u64) as usize]
    }

    #[test]
    fn the_even_map_owns_each_slot_as_it_always_did() {
        for n in [1usize, 2, 3, 4, 7, 64] {
            let groups: Vec<GroupId> = (10..10 + n as u64).collect();
            let map = SlotMap::even(&groups);
            let covered: u32 = groups.iter().map(|g| map.slots_of(*g)).sum();
            assert_eq!(covered, SLOTS, "n={n}: the ranges cover every slot once");
            for slot in (0..SLOTS).step_by(7).chain([SLOTS - 1]) {
                assert_eq!(
                    map.group_of(slot),
                    by_arithmetic(&groups, slot),
                    "n={n} {slot}"
                );
            }
        }
    }

    #[test]
    fn a_move_changes_the_owner_of_its_slots_only_and_versions_both_groups() {
        let map = SlotMap::even(&[2, 3]);
        let moved = map.with_move(100, 300, 5, 1);
        assert_eq!(moved.group_of(99), 2);
        assert_eq!(moved.group_of(100), 5);
        assert_eq!(moved.group_of(299), 5);
        assert_eq!(moved.group_of(300), 2);
        assert_eq!(moved.group_of(SLOTS - 1), 3);
        assert_eq!(
            (
                moved.owner_version(2),
                moved.owner_version(5),
                moved.owner_version(3)
            ),
            (1, 1, 0)
        );
        let back = moved.with_move(100, 300, 2, 2);
        assert_eq!(
            back.ranges_of(2),
            vec![(0, SLOTS / 2)],
            "adjacent ranges join again"
        );
        let stored = SlotMap::stored(back.ranges().to_vec(), back.versions().clone()).unwrap();
        assert_eq!(stored, back);
    }

    #[test]
    fn a_stored_map_must_cover_every_slot_once() {
        let gap = vec![
            SlotRange {
                first: 0,
                end: 10,
                group: 2,
            },
            SlotRange {
                first: 11,
                end: SLOTS,
                group: 3,
            },
        ];
        assert!(
            SlotMap::stored(gap, BTreeMap::new())
                .unwrap_err()
                .contains("slot 10")
        );
        let short = vec![SlotRange {
            first: 0,
            end: 10,
            group: 2,
        }];
        assert!(SlotMap::stored(short, BTreeMap::new()).is_err());
    }
}
