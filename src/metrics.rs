//! Counters of one run, shared by every stage and reported as the summary at exit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

/// Every counter aqueduct keeps. Named `aqueduct_<stage>_<noun>_total` in [`Summary`] order.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    /// Records taken from API responses.
    pub polled: AtomicU64,
    /// Records that failed the schema.
    pub invalid: AtomicU64,
    /// Invalid records dropped (`on_invalid = "drop"`).
    pub dropped: AtomicU64,
    /// Records acknowledged by Kafka on the pipeline's topic.
    pub produced: AtomicU64,
    /// Rows acknowledged by Cassandra.
    pub written: AtomicU64,
    /// Records acknowledged by Kafka on the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Retried HTTP requests and Cassandra writes.
    pub retries: AtomicU64,
    /// Polls that failed after their retries.
    pub failed_polls: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            polled: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            produced: AtomicU64::new(0),
            written: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            failed_polls: AtomicU64::new(0),
        }
    }
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A snapshot of the counters, for the exit summary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub polled: u64,
    pub invalid: u64,
    pub dropped: u64,
    pub produced: u64,
    pub written: u64,
    pub dead_lettered: u64,
    pub retries: u64,
    pub failed_polls: u64,
    /// Wall-clock seconds since the run started, to the tenth.
    pub seconds: f64,
}

impl Metrics {
    pub fn summary(&self) -> Summary {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Summary {
            polled: get(&self.polled),
            invalid: get(&self.invalid),
            dropped: get(&self.dropped),
            produced: get(&self.produced),
            written: get(&self.written),
            dead_lettered: get(&self.dead_lettered),
            retries: get(&self.retries),
            failed_polls: get(&self.failed_polls),
            seconds: (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        }
    }
}
