//! Which offsets may be committed. Messages of a partition are handed out in offset order but
//! finish in any order (rows are written concurrently); an offset may only be stored once it
//! and every offset before it is done, or a crash would skip the gap.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

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

/// The committable positions of each partition back to a horizon, so the loader can go back
/// to where it stood at a given moment (a node that restarted may have lost what it
/// acknowledged since).
#[derive(Debug, Default)]
pub struct History {
    partitions: HashMap<i32, VecDeque<(Instant, i64)>>,
}

impl History {
    /// Notes the positions at `now`; forgets those older than `horizon` (the earliest moment the
    /// loader may be asked about), but for the last one before it (where a partition stood
    /// then). `None`: no moment will be asked about; only the newest is kept.
    pub fn record(&mut self, now: Instant, positions: &[(i32, i64)], horizon: Option<Instant>) {
        let horizon = horizon.unwrap_or(now);
        for (partition, position) in positions {
            let times = self.partitions.entry(*partition).or_default();
            if times.back().is_none_or(|(_, last)| last != position) {
                times.push_back((now, *position));
            }
            while times.len() > 1 && times[1].0 <= horizon {
                times.pop_front();
            }
        }
    }

    /// Where each partition stood at `moment`: the last position recorded by then, or the first
    /// one recorded when that was later (nothing before it was written here).
    pub fn at(&self, moment: Instant) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .filter_map(|(partition, times)| {
                let before = times.iter().rev().find(|(at, _)| *at <= moment);
                before
                    .or_else(|| times.front())
                    .map(|(_, position)| (*partition, *position))
            })
            .collect()
    }

    /// Forgets `partition`'s positions after `moment` (the loader went back there).
    pub fn rewind(&mut self, partition: i32, moment: Instant) {
        if let Some(times) = self.partitions.get_mut(&partition) {
            while times.len() > 1 && times.back().is_some_and(|(at, _)| *at > moment) {
                times.pop_back();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn history_gives_the_position_at_a_moment() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut h = History::default();
        let keep = Some(start);
        h.record(at(0), &[(0, 10)], keep);
        h.record(at(100), &[(0, 10), (1, 3)], keep);
        h.record(at(200), &[(0, 15), (1, 4)], keep);
        h.record(at(300), &[(0, 20), (1, 4)], keep);
        let mut positions = h.at(at(250));
        positions.sort();
        assert_eq!(positions, vec![(0, 15), (1, 4)]);
        let mut positions = h.at(at(50));
        positions.sort();
        assert_eq!(positions, vec![(0, 10), (1, 3)], "partition 1 began later");
        h.rewind(0, at(250));
        assert_eq!(
            h.at(at(5_000)).iter().find(|(p, _)| *p == 0),
            Some(&(0, 15))
        );
        // Before the horizon only the last position stays.
        h.record(at(62_000), &[(0, 30)], Some(at(1_000)));
        assert_eq!(h.at(at(0)).iter().find(|(p, _)| *p == 0), Some(&(0, 15)));
        // No horizon: only the newest.
        h.record(at(63_000), &[(0, 31)], None);
        assert_eq!(h.at(at(0)).iter().find(|(p, _)| *p == 0), Some(&(0, 31)));
    }

    /// CI lost 7 of 20,000 rows: the history was kept for a fixed time from its newest
    /// position, so a node that took long to come back had its unsynced window forgotten by
    /// the time its restart was seen. The horizon stays where the node was last seen while it
    /// is down, however long that is and however far positions move once it is back.
    #[test]
    fn a_long_outage_keeps_where_the_partition_stood_before_the_unsynced_window() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut h = History::default();
        // The node last seen at 100 s, depth 25 s: the horizon stays at 75 s.
        let horizon = Some(at(75));
        for s in 0..=100 {
            h.record(at(s), &[(0, s as i64 * 10)], horizon);
        }
        // Down until 160 s; once back, writes move on for a while before the restart is seen.
        for s in 160..=170 {
            h.record(at(s), &[(0, s as i64 * 10)], horizon);
        }
        assert_eq!(h.at(at(75)), vec![(0, 750)]);
    }

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
