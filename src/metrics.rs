//! Counters of one run, shared by every stage, reported as the summary at exit and (with
//! `[metrics] address`) served in Prometheus' text format.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

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
#[derive(Debug, Clone, Copy, PartialEq)]
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
    /// The counters in Prometheus' text format, labelled with the pipeline's name.
    pub fn render(&self, pipeline: &str) -> String {
        let s = self.summary();
        // Names are letters, digits, '-', '_' and '.' (spec::check): nothing to escape.
        let counters = [
            (
                "aqueduct_ingest_polled_records_total",
                "Records taken from API responses.",
                s.polled,
            ),
            (
                "aqueduct_ingest_invalid_records_total",
                "Records that failed the JSON Schema.",
                s.invalid,
            ),
            (
                "aqueduct_ingest_dropped_records_total",
                "Invalid records dropped (on_invalid = drop).",
                s.dropped,
            ),
            (
                "aqueduct_ingest_produced_records_total",
                "Records acknowledged by Kafka on the pipeline's topic.",
                s.produced,
            ),
            (
                "aqueduct_ingest_failed_polls_total",
                "Polls that failed after their retries.",
                s.failed_polls,
            ),
            (
                "aqueduct_load_written_rows_total",
                "Rows acknowledged by Cassandra.",
                s.written,
            ),
            (
                "aqueduct_dead_lettered_records_total",
                "Records acknowledged on the dead-letter topic.",
                s.dead_lettered,
            ),
            (
                "aqueduct_retries_total",
                "Retried HTTP requests and Cassandra writes.",
                s.retries,
            ),
        ];
        let mut out = String::new();
        for (name, help, value) in counters {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name}{{pipeline=\"{pipeline}\"}} {value}\n"));
        }
        out.push_str(&format!(
            "# HELP aqueduct_uptime_seconds Seconds since the run started.\n# TYPE aqueduct_uptime_seconds gauge\naqueduct_uptime_seconds{{pipeline=\"{pipeline}\"}} {}\n",
            s.seconds
        ));
        out
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        add(&m.written, 3);
        let text = m.render("users");
        assert!(text.contains("# TYPE aqueduct_load_written_rows_total counter\naqueduct_load_written_rows_total{pipeline=\"users\"} 3\n"), "{text}");
        assert!(
            text.contains("aqueduct_ingest_polled_records_total{pipeline=\"users\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE aqueduct_uptime_seconds gauge"),
            "{text}"
        );
    }
}
