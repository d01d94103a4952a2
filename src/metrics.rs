//! Counters of one run, shared by every stage, reported as the summary at exit and (with
//! `[metrics] address`) served in Prometheus' text format.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// End-to-end latency of written rows: API response received to row acknowledged.
    pub latency: Latency,
    /// Connected and at work: the loader has been assigned partitions, or (ingest only) every
    /// client is built. `/ready` answers from it.
    pub ready: AtomicBool,
    /// What `aqueduct replay` did, beside the counters above.
    pub replay: ReplayCounts,
    /// Milliseconds from the start of the run to the first row acknowledged (0: none yet).
    first_row_ms: AtomicU64,
}

/// A histogram of latencies in whole milliseconds, exact up to [`Latency::MAX_MS`].
#[derive(Debug)]
pub struct Latency {
    /// `counts[ms]`; the last bucket holds everything at or above `MAX_MS`.
    counts: Box<[AtomicU64]>,
    /// The sum of every latency recorded, uncapped.
    sum_ms: AtomicU64,
}

impl Latency {
    pub const MAX_MS: usize = 10_000;

    fn new() -> Latency {
        Latency {
            counts: (0..=Self::MAX_MS).map(|_| AtomicU64::new(0)).collect(),
            sum_ms: AtomicU64::new(0),
        }
    }

    /// Records one latency.
    pub fn record(&self, latency: std::time::Duration) {
        let ms = latency.as_millis() as u64;
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
        self.counts[(ms as usize).min(Self::MAX_MS)].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// The `q` quantile (0..=1) in milliseconds, `None` before any row.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        quantile(&self.snapshot(), q)
    }

    /// A Prometheus histogram in seconds.
    fn render(&self, pipeline: &str) -> String {
        const NAME: &str = "aqueduct_end_to_end_latency_seconds";
        const BOUNDS_MS: [usize; 11] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];
        let counts = self.snapshot();
        let mut out = format!(
            "# HELP {NAME} API response received to row acknowledged by Cassandra.\n# TYPE {NAME} histogram\n"
        );
        for le in BOUNDS_MS {
            // Bucket `ms` holds latencies truncated to `ms` whole milliseconds.
            let n: u64 = counts[..=le].iter().sum();
            out.push_str(&format!(
                "{NAME}_bucket{{pipeline=\"{pipeline}\",le=\"{}\"}} {n}\n",
                le as f64 / 1000.0
            ));
        }
        let total: u64 = counts.iter().sum();
        let sum = self.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        out.push_str(&format!(
            "{NAME}_bucket{{pipeline=\"{pipeline}\",le=\"+Inf\"}} {total}\n"
        ));
        out.push_str(&format!("{NAME}_sum{{pipeline=\"{pipeline}\"}} {sum}\n"));
        out.push_str(&format!(
            "{NAME}_count{{pipeline=\"{pipeline}\"}} {total}\n"
        ));
        out
    }
}

fn quantile(counts: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    counts
        .iter()
        .position(|c| {
            seen += c;
            seen >= rank
        })
        .map(|ms| ms as u64)
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
            latency: Latency::new(),
            ready: AtomicBool::new(false),
            replay: ReplayCounts::default(),
            first_row_ms: AtomicU64::new(0),
        }
    }
}

/// What a replay did, beside the run's own counters (written, dead-lettered).
#[derive(Debug, Default)]
pub struct ReplayCounts {
    /// Messages read from the dead-letter topic.
    pub read: AtomicU64,
    /// Passed over: older than `--since`.
    pub skipped: AtomicU64,
    /// Messages of the topic that are no dead-letter envelope (left alone).
    pub unreadable: AtomicU64,
    /// With `--dry-run`: rows that would be written, records that would be dead-lettered again.
    pub would_write: AtomicU64,
    pub would_dead_letter: AtomicU64,
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A counter's value.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
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
    /// Median and 99th percentile end-to-end latency of written rows, in ms.
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
    /// Seconds from the start to the first row written, to the thousandth.
    pub first_row_seconds: Option<f64>,
    /// Wall-clock seconds since the run started, to the tenth.
    pub seconds: f64,
}

impl Metrics {
    /// Notes a row acknowledged by Cassandra, with when its API response arrived (epoch ms).
    pub fn row_written(&self, received_at_ms: Option<i64>) {
        add(&self.written, 1);
        if let Some(at) = received_at_ms {
            let now = chrono::Utc::now().timestamp_millis();
            self.latency.record(std::time::Duration::from_millis(
                now.saturating_sub(at).max(0) as u64,
            ));
        }
        if self.first_row_ms.load(Ordering::Relaxed) == 0 {
            let ms = (self.started.elapsed().as_millis() as u64).max(1);
            let _ = self
                .first_row_ms
                .compare_exchange(0, ms, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

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
        out.push_str(&self.latency.render(pipeline));
        out.push_str(&format!(
            "# HELP aqueduct_uptime_seconds Seconds since the run started.\n# TYPE aqueduct_uptime_seconds gauge\naqueduct_uptime_seconds{{pipeline=\"{pipeline}\"}} {}\n",
            s.seconds
        ));
        out
    }

    pub fn summary(&self) -> Summary {
        Summary {
            polled: get(&self.polled),
            invalid: get(&self.invalid),
            dropped: get(&self.dropped),
            produced: get(&self.produced),
            written: get(&self.written),
            dead_lettered: get(&self.dead_lettered),
            retries: get(&self.retries),
            failed_polls: get(&self.failed_polls),
            latency_p50_ms: self.latency.quantile(0.5),
            latency_p99_ms: self.latency.quantile(0.99),
            first_row_seconds: match get(&self.first_row_ms) {
                0 => None,
                ms => Some(ms as f64 / 1000.0),
            },
            seconds: (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_and_histogram() {
        let m = Metrics::default();
        assert_eq!(m.latency.quantile(0.5), None);
        for ms in 1..=100 {
            m.latency.record(std::time::Duration::from_millis(ms));
        }
        m.latency.record(std::time::Duration::from_secs(60));
        assert_eq!(m.latency.quantile(0.5), Some(51));
        assert_eq!(m.latency.quantile(0.99), Some(100));
        assert_eq!(m.latency.quantile(1.0), Some(Latency::MAX_MS as u64));
        let text = m.render("p");
        assert!(
            text.contains(
                "aqueduct_end_to_end_latency_seconds_bucket{pipeline=\"p\",le=\"0.01\"} 10\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "aqueduct_end_to_end_latency_seconds_bucket{pipeline=\"p\",le=\"+Inf\"} 101\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("aqueduct_end_to_end_latency_seconds_count{pipeline=\"p\"} 101\n"),
            "{text}"
        );
        // 1 + 2 + ... + 100 ms and the 60 s one: the sum is not capped like the buckets.
        assert!(
            text.contains("aqueduct_end_to_end_latency_seconds_sum{pipeline=\"p\"} 65.05\n"),
            "{text}"
        );
    }

    #[test]
    fn the_first_row_is_timed_once() {
        let m = Metrics::default();
        assert_eq!(m.summary().first_row_seconds, None);
        m.row_written(None);
        let first = m.summary().first_row_seconds.unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        m.row_written(Some(chrono::Utc::now().timestamp_millis() - 30));
        assert_eq!(m.summary().first_row_seconds, Some(first));
        assert_eq!(m.summary().written, 2);
        assert!(m.summary().latency_p50_ms.is_some_and(|ms| ms >= 30));
    }

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
