//! Going back after a Cassandra node restart ([`super::restarts`] says when, and how far back
//! the node may have lost what it acknowledged): where each partition's committable position
//! stood over time, and which positions the loader goes back to.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

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

/// Where to go back to after a restart that may have lost what was acknowledged after
/// `moment`: where each partition stood then, for the partitions that have moved on since
/// (`now`: the committable positions now).
pub fn targets(history: &History, moment: Instant, now: &[(i32, i64)]) -> Vec<(i32, i64)> {
    let now: HashMap<i32, i64> = now.iter().copied().collect();
    history
        .at(moment)
        .into_iter()
        .filter(|(partition, position)| now.get(partition).is_some_and(|at| position < at))
        .collect()
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
    fn targets_are_the_partitions_that_moved_on_since() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut h = History::default();
        h.record(at(0), &[(0, 10), (1, 5)], Some(start));
        h.record(at(10), &[(0, 20), (1, 5)], Some(start));
        let mut back = targets(&h, at(5), &[(0, 20), (1, 5), (2, 7)]);
        back.sort();
        assert_eq!(back, vec![(0, 10)], "partition 1 stood still, 2 is new");
    }
}
