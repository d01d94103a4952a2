//! Which offsets may be committed. Messages of a partition are handed out in offset order but
//! finish in any order (rows are written concurrently); an offset may only be stored once it
//! and every offset before it is done, or a crash would skip the gap.

use std::collections::{BTreeMap, HashMap};

/// Per-partition tracking of messages in flight.
#[derive(Debug, Default)]
pub struct Offsets {
    partitions: HashMap<i32, Partition>,
}

#[derive(Debug, Default)]
struct Partition {
    /// Offsets handed out and not yet done (a count, should one be re-delivered while in flight).
    in_flight: BTreeMap<i64, u32>,
    /// The highest offset handed out.
    highest: Option<i64>,
    /// The last "next offset" returned as committable.
    committable: Option<i64>,
}

impl Partition {
    fn next(&self) -> Option<i64> {
        match self.in_flight.keys().next() {
            Some(first) => Some(*first),
            None => self.highest.map(|h| h + 1),
        }
    }
}

impl Offsets {
    /// Notes that `offset` of `partition` was handed out for processing.
    pub fn start(&mut self, partition: i32, offset: i64) {
        let p = self.partitions.entry(partition).or_default();
        // Nothing is done yet: the position is the first offset handed out.
        p.committable.get_or_insert(offset);
        *p.in_flight.entry(offset).or_default() += 1;
        p.highest = Some(p.highest.map_or(offset, |h| h.max(offset)));
    }

    /// Notes that `offset` is done. Returns the new committable position (the next offset to
    /// consume) when it moved forward.
    pub fn finish(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let p = self.partitions.get_mut(&partition)?;
        match p.in_flight.get_mut(&offset) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                p.in_flight.remove(&offset);
            }
            None => return None,
        }
        let next = p.next()?;
        if p.committable.is_none_or(|c| next > c) {
            p.committable = Some(next);
            Some(next)
        } else {
            None
        }
    }

    /// The committable position of every partition seen: `(partition, next offset)`.
    pub fn committable(&self) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .filter_map(|(partition, p)| p.committable.map(|c| (*partition, c)))
            .collect()
    }

    /// Drops what is known of `partition`: the next message handed out starts it afresh.
    pub fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Messages handed out and not yet done, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions
            .values()
            .map(|p| p.in_flight.values().map(|n| *n as usize).sum::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_completion_advances() {
        let mut o = Offsets::default();
        o.start(0, 10);
        o.start(0, 11);
        assert_eq!(o.finish(0, 10), Some(11));
        assert_eq!(o.finish(0, 11), Some(12));
        assert_eq!(o.committable(), vec![(0, 12)]);
    }

    #[test]
    fn a_gap_holds_the_position_back() {
        let mut o = Offsets::default();
        for off in 0..4 {
            o.start(0, off);
        }
        assert_eq!(o.finish(0, 2), None);
        assert_eq!(o.finish(0, 3), None);
        assert_eq!(o.finish(0, 1), None);
        assert_eq!(o.in_flight(), 1);
        assert_eq!(o.finish(0, 0), Some(4));
        assert_eq!(o.in_flight(), 0);
    }

    #[test]
    fn partitions_are_independent() {
        let mut o = Offsets::default();
        o.start(0, 5);
        o.start(1, 7);
        assert_eq!(o.finish(1, 7), Some(8));
        let mut positions = o.committable();
        positions.sort();
        assert_eq!(positions, vec![(0, 5), (1, 8)]);
        assert_eq!(o.finish(0, 5), Some(6));
        assert_eq!(o.finish(2, 1), None, "unknown partition");
    }

    #[test]
    fn random_completion_orders_never_pass_a_gap() {
        // A small deterministic shuffle: every order must end at 100 and never get ahead.
        for seed in 0..200u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut o = Offsets::default();
            let mut order: Vec<i64> = (0..100).collect();
            for off in &order {
                o.start(0, *off);
            }
            rng.shuffle(&mut order);
            let mut done = std::collections::BTreeSet::new();
            for off in order {
                done.insert(off);
                if let Some(next) = o.finish(0, off) {
                    assert!(
                        (0..next).all(|x| done.contains(&x)),
                        "seed {seed}: {next} passes a gap"
                    );
                }
            }
            assert_eq!(o.committable(), vec![(0, 100)]);
        }
    }
}
