//! The metrics of one run, each declared once here ([`Metrics::new`]): kept with
//! prometheus-client, served in the OpenMetrics text format at `/metrics` (`[metrics]
//! address`), and read back for the summary at exit. Every handle the stages touch is resolved
//! when the run starts, so counting costs an atomic add (a histogram, a short lock).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::dead_letter::Stage;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    decision: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabel {
    table: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    partition: i32,
}

/// Everything aqueduct measures in a run.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    registry: Registry,
    /// `aqueduct_records_total{stage}`: records taken from API responses (`polled`), that
    /// passed the schema and key (`valid`), failed the schema (`invalid`), were dropped
    /// (`dropped`, on_invalid = "drop"), acknowledged on the topic (`produced`), taken off it
    /// by the loader (`consumed`), acknowledged by Cassandra in every table (`written`).
    pub polled: Counter,
    pub valid: Counter,
    pub invalid: Counter,
    pub dropped: Counter,
    pub produced: Counter,
    pub consumed: Counter,
    pub written: Counter,
    /// `aqueduct_rows_written_total{table}`: rows acknowledged by Cassandra, per table of the
    /// spec, in its order.
    table_rows: Vec<Counter>,
    /// `aqueduct_dead_letters_total{stage}`, indexed by [`Stage::index`].
    dead_letters: [Counter; Stage::ALL.len()],
    /// `aqueduct_retries_total{kind}`: HTTP requests, Kafka consumer errors carried on past,
    /// Cassandra writes.
    pub http_retries: Counter,
    pub kafka_retries: Counter,
    pub cql_retries: Counter,
    /// `aqueduct_failed_polls_total`: polls that failed after their retries.
    pub failed_polls: Counter,
    /// `aqueduct_source_wait_seconds_total`: time requests waited for the API's limits (the
    /// rate budget, a rate-limited answer).
    pub source_wait: Counter<f64, AtomicU64>,
    /// `aqueduct_ignored_responses_total`: responses a rule with `action = "ignore"` skipped.
    pub ignored_responses: Counter,
    /// `aqueduct_cursor_stalls_total`: full pages (`pagination.page_size` records) after
    /// which `[source.cursor]` had not moved: a keyset walk stuck on ties.
    pub cursor_stalls: Counter,
    /// `aqueduct_failed_parents_total`: `[source.parent]` parents whose requests failed after
    /// their retries (asked again next poll).
    pub failed_parents: Counter,
    /// `aqueduct_node_restarts_total{decision}`: Cassandra node restarts the loader saw, by
    /// whether it wrote their unsynced windows again (`rewound`) or not (`not_needed`).
    node_restarts: [Counter; 2],
    /// `aqueduct_poll_duration_seconds`: a whole poll, every page fetched and produced.
    pub poll_duration: Histogram,
    /// `aqueduct_produce_latency_seconds`: a record sent to its acknowledgement by Kafka.
    pub produce_latency: Histogram,
    /// `aqueduct_write_latency_seconds`: a row's write acknowledged by Cassandra.
    pub write_latency: Histogram,
    /// `aqueduct_end_to_end_latency_seconds`: API response received to row acknowledged.
    end_to_end: Histogram,
    /// `aqueduct_consumer_lag{partition}`: messages between the loader and the partition's end.
    lag: Family<PartitionLabel, Gauge>,
    /// The sum of `lag` (a family cannot be summed without walking its map).
    lag_total: AtomicU64,
    /// `aqueduct_writes_in_flight`: messages taken by the loader and not yet finished.
    pub writes_in_flight: Gauge,
    /// `aqueduct_last_poll_success_timestamp_seconds`: when the last poll succeeded.
    last_poll: Gauge<f64, AtomicU64>,
    /// `aqueduct_source_behind_seconds`: for `[source.window]`, how far the saved cursor is
    /// behind now less the lag (0 when caught up).
    pub source_behind: Gauge<f64, AtomicU64>,
    /// Messages the loader has finished: written, dead-lettered or passed over (the progress
    /// counts them; not exported, `records_total` says what became of them).
    pub loaded: AtomicU64,
    /// In a `once` run, messages the loader has still to read before it is done (-1 until the
    /// drain target is known); the progress uses it rather than the committed lag, which trails.
    pub drain_left: AtomicI64,
    /// The exact end-to-end latencies behind the summary's p50 and p99 (not exported: the
    /// histogram's buckets are coarser).
    latency: Latency,
    /// Connected and at work: the loader has been assigned partitions, or (ingest only) every
    /// client is built. `/ready` answers from it.
    pub ready: AtomicBool,
    /// What `aqueduct replay` did, beside the counters above (the summary's; a replay serves
    /// no metrics).
    pub replay: ReplayCounts,
    /// Milliseconds from the start of the run to the first row acknowledged (0: none yet).
    first_row_ms: AtomicU64,
    /// Milliseconds from the start of the run to the latest row acknowledged (0: none yet).
    last_row_ms: AtomicU64,
}

/// One metric family as [`Metrics::reference`] reads it back from the served text.
#[derive(Default)]
struct Declared {
    name: String,
    kind: String,
    unit: String,
    help: String,
    /// The names its samples carry (`_total`, or `_bucket`, `_sum`, `_count`).
    samples: Vec<String>,
    /// Each label but `pipeline` and `le`, with the values it takes from the start.
    labels: Vec<(String, Vec<String>)>,
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

impl Metrics {
    /// Declares every metric, labelled `pipeline="<name>"`; `tables` are the spec's names of
    /// its tables, in its order.
    pub fn new(pipeline: &str, tables: &[&str]) -> Metrics {
        let label = ("pipeline".into(), pipeline.to_owned().into());
        let mut registry = Registry::with_prefix_and_labels("aqueduct", [label].into_iter());

        let records = Family::<StageLabel, Counter>::default();
        registry.register(
            "records",
            "Records by stage: polled from the API, valid (schema and key passed), invalid (failed the schema), dropped (on_invalid = \"drop\"), produced (acknowledged on the topic), consumed (taken off it by the loader), written (acknowledged by Cassandra in every table)",
            records.clone(),
        );
        let stage = |stage| records.get_or_create_owned(&StageLabel { stage });
        let rows = Family::<TableLabel, Counter>::default();
        registry.register(
            "rows_written",
            "Rows written or deleted, acknowledged by Cassandra, by the spec's name of their table",
            rows.clone(),
        );
        let table_rows = tables
            .iter()
            .map(|t| {
                rows.get_or_create_owned(&TableLabel {
                    table: t.to_string(),
                })
            })
            .collect();
        let dead = Family::<StageLabel, Counter>::default();
        registry.register(
            "dead_letters",
            "Records acknowledged on the dead-letter topic, by the stage that failed them",
            dead.clone(),
        );
        let retries = Family::<KindLabel, Counter>::default();
        registry.register(
            "retries",
            "Retries by kind: HTTP requests (http), Kafka consumer errors carried on past (kafka), Cassandra writes (cql)",
            retries.clone(),
        );
        let retry = |kind| retries.get_or_create_owned(&KindLabel { kind });
        let failed_polls = Counter::default();
        registry.register(
            "failed_polls",
            "Polls that failed after their retries",
            failed_polls.clone(),
        );
        let source_wait = Counter::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "source_wait",
            "Time requests to the API waited for its limits: the rate budget, rate-limited answers",
            Unit::Seconds,
            source_wait.clone(),
        );
        let ignored_responses = Counter::default();
        registry.register(
            "ignored_responses",
            "API responses skipped by a response rule with action = \"ignore\"",
            ignored_responses.clone(),
        );
        let cursor_stalls = Counter::default();
        registry.register(
            "cursor_stalls",
            "Full pages (pagination.page_size records) after which source.cursor had not moved: a keyset walk stuck on ties",
            cursor_stalls.clone(),
        );
        let failed_parents = Counter::default();
        registry.register(
            "failed_parents",
            "Parents (source.parent) whose requests failed after their retries; asked again next poll",
            failed_parents.clone(),
        );
        let restarts = Family::<DecisionLabel, Counter>::default();
        registry.register(
            "node_restarts",
            "Cassandra node restarts the loader saw, by what it decided: rewound (as many nodes as acknowledge each write may have lost their unsynced windows together, so those were written again) or not_needed (fewer did: the other replicas hold every write)",
            restarts.clone(),
        );
        let node_restarts = ["rewound", "not_needed"]
            .map(|decision| restarts.get_or_create_owned(&DecisionLabel { decision }));
        let mut seconds = |name: &str, help: &str, buckets: Histogram| {
            registry.register_with_unit(name, help, Unit::Seconds, buckets.clone());
            buckets
        };
        let poll_duration = seconds(
            "poll_duration",
            "A whole poll: every page fetched and its records produced",
            Histogram::new(exponential_buckets(0.01, 2.0, 14)),
        );
        let produce_latency = seconds(
            "produce_latency",
            "A record sent to its acknowledgement by Kafka",
            Histogram::new(exponential_buckets(0.001, 2.0, 14)),
        );
        let write_latency = seconds(
            "write_latency",
            "A row's write to its acknowledgement by Cassandra",
            Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
        );
        let end_to_end = seconds(
            "end_to_end_latency",
            "API response received to row acknowledged by Cassandra (from the aqueduct-received-at header the ingest puts on each message)",
            Histogram::new(exponential_buckets(0.005, 2.0, 14)),
        );
        let lag = Family::<PartitionLabel, Gauge>::default();
        registry.register(
            "consumer_lag",
            "Messages between the loader's position and the end of each assigned partition (updated each second from what librdkafka last fetched)",
            lag.clone(),
        );
        let writes_in_flight = Gauge::default();
        registry.register(
            "writes_in_flight",
            "Messages taken by the loader and not yet written or dead-lettered",
            writes_in_flight.clone(),
        );
        let last_poll = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "last_poll_success_timestamp",
            "When the last poll succeeded (Unix time)",
            Unit::Seconds,
            last_poll.clone(),
        );
        let source_behind = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "source_behind",
            "Time windows' catch-up: how far the saved cursor is behind now less the lag (0 when caught up)",
            Unit::Seconds,
            source_behind.clone(),
        );
        Metrics {
            started: Instant::now(),
            polled: stage("polled"),
            valid: stage("valid"),
            invalid: stage("invalid"),
            dropped: stage("dropped"),
            produced: stage("produced"),
            consumed: stage("consumed"),
            written: stage("written"),
            table_rows,
            dead_letters: Stage::ALL
                .map(|s| dead.get_or_create_owned(&StageLabel { stage: s.name() })),
            http_retries: retry("http"),
            kafka_retries: retry("kafka"),
            cql_retries: retry("cql"),
            failed_polls,
            source_wait,
            ignored_responses,
            cursor_stalls,
            failed_parents,
            node_restarts,
            poll_duration,
            produce_latency,
            write_latency,
            end_to_end,
            lag,
            lag_total: AtomicU64::new(0),
            writes_in_flight,
            last_poll,
            source_behind,
            registry,
            loaded: AtomicU64::new(0),
            drain_left: AtomicI64::new(-1),
            latency: Latency::new(),
            ready: AtomicBool::new(false),
            replay: ReplayCounts::default(),
            first_row_ms: AtomicU64::new(0),
            last_row_ms: AtomicU64::new(0),
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

/// A moment kept as milliseconds since the start (0: not yet), in seconds.
fn seconds(ms: &AtomicU64) -> Option<f64> {
    match ms.load(Ordering::Relaxed) {
        0 => None,
        ms => Some(ms as f64 / 1000.0),
    }
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
    /// Seconds requests to the API waited for its limits, to the tenth.
    pub source_wait_s: f64,
    /// Median and 99th percentile end-to-end latency of written rows, in ms.
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
    /// Seconds from the start to the first row written, to the thousandth.
    pub first_row_seconds: Option<f64>,
    /// Seconds from the start to the last row written, to the thousandth: with the first, it
    /// splits a run into start-up, writing, and what came after the last write.
    pub last_row_seconds: Option<f64>,
    /// Wall-clock seconds since the run started, to the tenth.
    pub seconds: f64,
}

impl Metrics {
    /// Notes a row acknowledged by the spec's `table`-th table: its write took `took`.
    pub fn row_written(&self, table: usize, took: Duration) {
        self.table_rows[table].inc();
        self.write_latency.observe(took.as_secs_f64());
    }

    /// Notes a record whose rows every table has acknowledged; its API response arrived at
    /// `received_at_ms` (epoch ms, from the message's header).
    pub fn record_written(&self, received_at_ms: Option<i64>) {
        self.written.inc();
        if let Some(at) = received_at_ms {
            let now = chrono::Utc::now().timestamp_millis();
            let latency = Duration::from_millis(now.saturating_sub(at).max(0) as u64);
            self.latency.record(latency);
            self.end_to_end.observe(latency.as_secs_f64());
        }
        let ms = (self.started.elapsed().as_millis() as u64).max(1);
        if self.first_row_ms.load(Ordering::Relaxed) == 0 {
            let _ = self
                .first_row_ms
                .compare_exchange(0, ms, Ordering::Relaxed, Ordering::Relaxed);
        }
        self.last_row_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Notes a record acknowledged on the dead-letter topic.
    pub fn dead_lettered(&self, stage: Stage) {
        self.dead_letters[stage.index()].inc();
    }

    /// Counts a Cassandra node restart, by whether the loader writes its window again.
    pub fn node_restart(&self, rewound: bool) {
        self.node_restarts[usize::from(!rewound)].inc();
    }

    /// Notes a poll that succeeded, and how long it took.
    pub fn poll_succeeded(&self, took: Duration) {
        self.poll_duration.observe(took.as_secs_f64());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        self.last_poll.set(now.unwrap_or_default().as_secs_f64());
    }

    /// Sets the lag of each assigned partition; partitions no longer assigned are dropped.
    pub fn set_lag(&self, lags: &[(i32, i64)]) {
        self.lag.clear();
        let total = lags
            .iter()
            .map(|(_, lag)| u64::try_from(*lag).unwrap_or(0))
            .sum();
        self.lag_total.store(total, Ordering::Relaxed);
        for (partition, lag) in lags {
            self.lag
                .get_or_create(&PartitionLabel {
                    partition: *partition,
                })
                .set(*lag);
        }
    }

    /// The lag left over every assigned partition, as last reported.
    pub fn lag_total(&self) -> u64 {
        self.lag_total.load(Ordering::Relaxed)
    }

    /// The metrics reference (the book's `reference/metrics.md`): every family declared in
    /// [`Metrics::new`], read back from what a fresh run serves, so its name, type, unit, help
    /// and labels are the declarations' own.
    pub fn reference() -> String {
        let metrics = Metrics::new("<name>", &["<table>"]);
        metrics.set_lag(&[(0, 0)]);
        let mut families: Vec<Declared> = Vec::new();
        for line in metrics.render().lines() {
            match line
                .strip_prefix("# ")
                .map(|meta| meta.splitn(3, ' ').collect::<Vec<_>>())
            {
                Some(meta) if meta.len() == 3 => {
                    if families.last().is_none_or(|f| f.name != meta[1]) {
                        families.push(Declared {
                            name: meta[1].to_owned(),
                            ..Declared::default()
                        });
                    }
                    let family = families.last_mut().expect("pushed above");
                    match meta[0] {
                        "TYPE" => family.kind = meta[2].to_owned(),
                        "HELP" => family.help = meta[2].to_owned(),
                        "UNIT" => family.unit = meta[2].to_owned(),
                        _ => {}
                    }
                }
                Some(_) => {} // `# EOF`
                None => {
                    let (sample, labels) = line
                        .split_once('{')
                        .and_then(|(name, rest)| Some((name, rest.split_once('}')?.0)))
                        .unwrap_or((line.split(' ').next().unwrap_or_default(), ""));
                    let Some(family) = families.last_mut() else {
                        continue;
                    };
                    if !family.samples.iter().any(|s| s == sample) {
                        family.samples.push(sample.to_owned());
                    }
                    for pair in labels.split(',').filter(|p| !p.is_empty()) {
                        let (label, value) = pair.split_once('=').unwrap_or((pair, ""));
                        if label == "le" || label == "pipeline" {
                            continue;
                        }
                        let value = value.trim_matches('"').to_owned();
                        match family.labels.iter_mut().find(|(l, _)| l == label) {
                            Some((_, values)) if !values.contains(&value) => values.push(value),
                            Some(_) => {}
                            None => family.labels.push((label.to_owned(), vec![value])),
                        }
                    }
                }
            }
        }
        let mut out = String::from(
            "# Metrics reference\n\n\
             Every metric a run serves at `GET /metrics` (`[metrics] address`, OpenMetrics text,\n\
             which Prometheus scrapes), generated from their declarations in `src/metrics.rs` by\n\
             `aqueduct docs` (a test fails when this file differs). Each is labelled\n\
             `pipeline=\"<name>\"` (the spec's `name`), and every series a run can know of at its\n\
             start exists from then on, at 0.\n\n\
             | metric | type | labels | meaning |\n|---|---|---|---|\n",
        );
        for mut family in families {
            let names: Vec<String> = match family.kind.as_str() {
                "histogram" => vec![format!("`{}`", family.name)],
                _ => family.samples.iter().map(|s| format!("`{s}`")).collect(),
            };
            let kind = match family.unit.as_str() {
                "" => family.kind,
                unit => format!("{} ({unit})", family.kind),
            };
            let labels: Vec<String> = family
                .labels
                .iter_mut()
                .map(|(label, values)| {
                    values.sort(); // a family's samples come in its hash map's order
                    (label, values)
                })
                .map(|(label, values)| match values.as_slice() {
                    [_] => format!("`{label}`"),
                    many => format!(
                        "`{label}`: {}",
                        many.iter()
                            .map(|v| format!("`{v}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
                .collect();
            out.push_str(&format!(
                "| {} | {kind} | {} | {} |\n",
                names.join(", "),
                labels.join("; "),
                family.help.replace('|', "\\|")
            ));
        }
        out
    }

    /// Every metric in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The metrics of several pipelines as one OpenMetrics text: each family once, with the
    /// samples of every pipeline (told apart by their `pipeline` label).
    pub fn render_all(all: &[std::sync::Arc<Metrics>]) -> String {
        let mut families: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
        for metrics in all {
            let text = metrics.render();
            // The family the lines are of, and whether this text declared it first.
            let mut current = None;
            let mut declaring = false;
            for line in text.lines().filter(|l| *l != "# EOF") {
                match line.strip_prefix("# ") {
                    Some(meta) => {
                        let name = meta.split(' ').nth(1).unwrap_or_default();
                        match families.iter().position(|(n, _, _)| n == name) {
                            Some(at) if current == Some(at) => {
                                if declaring {
                                    families[at].1.push(line.to_owned());
                                }
                            }
                            Some(at) => {
                                current = Some(at);
                                declaring = false;
                            }
                            None => {
                                families.push((name.to_owned(), vec![line.to_owned()], Vec::new()));
                                current = Some(families.len() - 1);
                                declaring = true;
                            }
                        }
                    }
                    None => {
                        if let Some(at) = current {
                            families[at].2.push(line.to_owned());
                        }
                    }
                }
            }
        }
        let mut out = String::new();
        for (_, meta, samples) in families {
            for line in meta.iter().chain(&samples) {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push_str("# EOF\n");
        out
    }

    pub fn summary(&self) -> Summary {
        Summary {
            polled: self.polled.get(),
            invalid: self.invalid.get(),
            dropped: self.dropped.get(),
            produced: self.produced.get(),
            written: self.written.get(),
            dead_lettered: self.dead_letters.iter().map(Counter::get).sum(),
            retries: [&self.http_retries, &self.kafka_retries, &self.cql_retries]
                .iter()
                .map(|c| c.get())
                .sum(),
            failed_polls: self.failed_polls.get(),
            source_wait_s: (self.source_wait.get() * 10.0).round() / 10.0,
            latency_p50_ms: self.latency.quantile(0.5),
            latency_p99_ms: self.latency.quantile(0.99),
            first_row_seconds: seconds(&self.first_row_ms),
            last_row_seconds: seconds(&self.last_row_ms),
            seconds: (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles() {
        let latency = Latency::new();
        assert_eq!(latency.quantile(0.5), None);
        for ms in 1..=100 {
            latency.record(Duration::from_millis(ms));
        }
        latency.record(Duration::from_secs(60));
        assert_eq!(latency.quantile(0.5), Some(51));
        assert_eq!(latency.quantile(0.99), Some(100));
        assert_eq!(latency.quantile(1.0), Some(Latency::MAX_MS as u64));
    }

    #[test]
    fn the_first_row_is_timed_once_and_the_last_at_each_row() {
        let m = Metrics::new("p", &["t"]);
        assert_eq!(m.summary().first_row_seconds, None);
        assert_eq!(m.summary().last_row_seconds, None);
        m.record_written(None);
        let first = m.summary().first_row_seconds.unwrap();
        assert_eq!(m.summary().last_row_seconds, Some(first));
        std::thread::sleep(Duration::from_millis(20));
        m.record_written(Some(chrono::Utc::now().timestamp_millis() - 30));
        assert_eq!(m.summary().first_row_seconds, Some(first));
        let last = m.summary().last_row_seconds.unwrap();
        assert!(last >= first + 0.02, "{last} follows {first} by the sleep");
        assert_eq!(m.summary().written, 2);
        assert!(m.summary().latency_p50_ms.is_some_and(|ms| ms >= 30));
    }

    /// Every series exists from the start (zero), labelled with the pipeline; counts add up in
    /// the summary.
    #[test]
    fn several_pipelines_render_as_one_text_each_family_once() {
        let one = std::sync::Arc::new(Metrics::new("users", &["by_id"]));
        assert_eq!(
            Metrics::render_all(std::slice::from_ref(&one)),
            one.render()
        );
        let two = std::sync::Arc::new(Metrics::new("quakes", &["by_time"]));
        two.written.inc_by(7);
        let text = Metrics::render_all(&[one, two]);
        let types = text
            .lines()
            .filter(|l| *l == "# TYPE aqueduct_records counter")
            .count();
        assert_eq!(types, 1, "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let at = |line: &str| lines.iter().position(|l| *l == line);
        let users = at("aqueduct_records_total{pipeline=\"users\",stage=\"written\"} 0").unwrap();
        let quakes = at("aqueduct_records_total{pipeline=\"quakes\",stage=\"written\"} 7").unwrap();
        // Both pipelines' samples under the family's one header.
        let header = at("# TYPE aqueduct_records counter").unwrap();
        assert!(header < users && header < quakes, "{text}");
        assert!(
            !lines[header..quakes]
                .iter()
                .any(|l| l.starts_with("# TYPE") && *l != lines[header]),
            "{text}"
        );
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn renders_openmetrics_text() {
        let m = Metrics::new("users", &["by_id", "by_email"]);
        let text = m.render();
        for line in [
            "# TYPE aqueduct_records counter",
            "aqueduct_records_total{pipeline=\"users\",stage=\"polled\"} 0",
            "aqueduct_dead_letters_total{pipeline=\"users\",stage=\"map\"} 0",
            "aqueduct_retries_total{pipeline=\"users\",kind=\"cql\"} 0",
            "aqueduct_rows_written_total{pipeline=\"users\",table=\"by_email\"} 0",
            "# TYPE aqueduct_write_latency_seconds histogram",
            "# UNIT aqueduct_write_latency_seconds seconds",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        m.written.inc_by(3);
        m.dead_lettered(Stage::Map);
        m.dead_lettered(Stage::Validate);
        m.http_retries.inc();
        m.cql_retries.inc();
        m.row_written(1, Duration::from_millis(3));
        m.record_written(Some(chrono::Utc::now().timestamp_millis()));
        m.set_lag(&[(0, 5), (2, 0)]);
        let text = m.render();
        for line in [
            "aqueduct_records_total{pipeline=\"users\",stage=\"written\"} 4",
            "aqueduct_dead_letters_total{pipeline=\"users\",stage=\"map\"} 1",
            "aqueduct_rows_written_total{pipeline=\"users\",table=\"by_id\"} 0",
            "aqueduct_rows_written_total{pipeline=\"users\",table=\"by_email\"} 1",
            "aqueduct_write_latency_seconds_count{pipeline=\"users\"} 1",
            "aqueduct_end_to_end_latency_seconds_count{pipeline=\"users\"} 1",
            "aqueduct_consumer_lag{pipeline=\"users\",partition=\"0\"} 5",
            "aqueduct_consumer_lag{pipeline=\"users\",partition=\"2\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let s = m.summary();
        assert_eq!((s.written, s.dead_lettered, s.retries), (4, 2, 2));
        // A partition no longer assigned has no lag.
        m.set_lag(&[(2, 0)]);
        assert!(!m.render().contains("partition=\"0\""));
    }
}
