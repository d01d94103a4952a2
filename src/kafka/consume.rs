//! The loader's consumer: a consumer-group member whose offsets are stored only by aqueduct
//! (`enable.auto.offset.store=false`), committed by librdkafka's timer and explicitly at
//! shutdown. Rebalances and commit failures are logged by [`LoadContext`], which also keeps the
//! lag gauges.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use tracing::{debug, info, warn};

use super::{Error, consumer_config};
use crate::metrics::Metrics;
use crate::spec;

/// Logs what the group coordinator does to this member, and turns librdkafka's statistics
/// (every `statistics.interval.ms`) into the lag gauges.
pub struct LoadContext {
    topic: String,
    metrics: Arc<Metrics>,
    /// Since when this member's partitions are revoked with no assignment (even an empty one)
    /// after: the group has not completed a rebalance for it.
    revoked_since: Mutex<Option<Instant>>,
}

impl LoadContext {
    fn revoked_since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // A poisoned lock only means a callback panicked; the instant inside is still sound.
        self.revoked_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ClientContext for LoadContext {
    /// Each assigned partition's `consumer_lag`: its end less the group's committed offset
    /// (librdkafka reports -1 for partitions this member does not own).
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let lags: Vec<(i32, i64)> = topic
            .partitions
            .iter()
            .filter(|(partition, p)| **partition >= 0 && p.consumer_lag >= 0)
            .map(|(partition, p)| (*partition, p.consumer_lag))
            .collect();
        self.metrics.set_lag(&lags);
    }
}

impl ConsumerContext for LoadContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                self.revoked_since().get_or_insert_with(Instant::now);
                info!(partitions = %partitions(tpl), "partitions revoked")
            }
            Rebalance::Assign(tpl) => {
                *self.revoked_since() = None;
                if tpl.count() > 0 {
                    self.metrics.ready.store(true, Ordering::Relaxed);
                }
                info!(partitions = %partitions(tpl), "partitions assigned")
            }
            Rebalance::Error(e) => warn!(error = %e, "rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => debug!(offsets = %positions(offsets), "offsets committed"),
            Err(e) => {
                warn!(error = %e, offsets = %positions(offsets), "offset commit failed; it is retried with the next commit")
            }
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> String {
    let list: Vec<String> = tpl
        .elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect();
    list.join(",")
}

fn positions(tpl: &TopicPartitionList) -> String {
    let list: Vec<String> = tpl
        .elements()
        .iter()
        .map(|e| format!("{}/{}@{:?}", e.topic(), e.partition(), e.offset()))
        .collect();
    list.join(",")
}

/// A message taken off the topic, detached from the consumer.
pub struct Message {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// `None`: a tombstone (a key without a value), which deletes the key's rows.
    pub payload: Option<Vec<u8>>,
    /// The message's Kafka timestamp (epoch ms), when it has one.
    pub timestamp_ms: Option<i64>,
    /// When the record's API response arrived (epoch ms), from the ingest's header.
    pub received_at_ms: Option<i64>,
}

impl From<&BorrowedMessage<'_>> for Message {
    fn from(m: &BorrowedMessage<'_>) -> Self {
        Message {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis(),
            received_at_ms: m.headers().and_then(|headers| {
                let header = headers
                    .iter()
                    .find(|h| h.key == super::produce::RECEIVED_AT)?;
                std::str::from_utf8(header.value?).ok()?.parse().ok()
            }),
        }
    }
}

/// The group member consuming the pipeline's topic.
pub struct Consumer {
    inner: StreamConsumer<LoadContext>,
    topic: String,
}

impl Consumer {
    /// Creates a member of `group` and subscribes it to `topic`.
    pub fn new(
        k: &spec::Kafka,
        topic: &str,
        group: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Consumer, Error> {
        let context = LoadContext {
            topic: topic.to_owned(),
            metrics,
            revoked_since: Mutex::new(None),
        };
        let inner: StreamConsumer<LoadContext> = consumer_config(k, group)
            .create_with_context(context)
            .map_err(|source| Error::client("consumer", &k.bootstrap_servers, source))?;
        inner.subscribe(&[topic]).map_err(|source| Error::Consume {
            topic: topic.to_owned(),
            source,
        })?;
        Ok(Consumer {
            inner,
            topic: topic.to_owned(),
        })
    }

    /// The next message.
    pub async fn recv(&self) -> Result<Message, Error> {
        self.inner
            .recv()
            .await
            .map(|m| Message::from(&m))
            .map_err(|source| Error::Consume {
                topic: self.topic.clone(),
                source,
            })
    }

    fn list(&self, positions: &[(i32, i64)]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (partition, next) in positions {
            // Infallible for a partition just added with a valid offset.
            let _ = tpl.add_partition_offset(&self.topic, *partition, Offset::Offset(*next));
        }
        tpl
    }

    /// Stores these positions (the next offset to consume, per partition) for the periodic
    /// commit. A partition no longer assigned after a rebalance is skipped: its new owner
    /// re-reads from the last commit.
    pub fn store(&self, positions: &[(i32, i64)]) {
        if positions.is_empty() {
            return;
        }
        if let Err(e) = self.inner.store_offsets(&self.list(positions)) {
            debug!(?positions, error = %e, "offsets not stored (partitions no longer assigned?)");
        }
    }

    /// Commits these positions now and waits for the broker's answer (blocking: call it from
    /// `spawn_blocking`).
    pub fn commit(&self, positions: &[(i32, i64)]) -> Result<(), Error> {
        if positions.is_empty() {
            return Ok(());
        }
        self.inner
            .commit(&self.list(positions), CommitMode::Sync)
            .map_err(|source| Error::Consume {
                topic: self.topic.clone(),
                source,
            })
    }

    /// Moves this member's position in `partition` to `offset` (the next message read is the
    /// one there). Fails for a partition not assigned to it. Blocking (up to 5 s): call it from
    /// `spawn_blocking`.
    pub fn seek(&self, partition: i32, offset: i64) -> Result<(), Error> {
        self.inner
            .seek(
                &self.topic,
                partition,
                Offset::Offset(offset),
                Duration::from_secs(5),
            )
            .map_err(|source| Error::Consume {
                topic: self.topic.clone(),
                source,
            })
    }

    /// Whether this member's partitions were revoked longer than `after` ago and the group has
    /// not assigned it any (not even none) since. Seen in CI once the only broker came back
    /// after its member's session had timed out: librdkafka never completed the rejoin.
    pub fn rejoin_stalled(&self, after: Duration) -> bool {
        self.inner
            .context()
            .revoked_since()
            .is_some_and(|at| at.elapsed() > after)
    }

    /// Leaves the group and joins it again, so a stalled rejoin starts over.
    pub fn resubscribe(&self) -> Result<(), Error> {
        *self.inner.context().revoked_since() = Some(Instant::now());
        self.inner.unsubscribe();
        self.inner
            .subscribe(&[&self.topic])
            .map_err(|source| Error::Consume {
                topic: self.topic.clone(),
                source,
            })
    }

    /// Messages left before every assigned partition is read up to `targets` (partition ->
    /// offset), from this member's positions (local: no broker round trip). A partition it has
    /// read nothing from yet counts as none left until it has.
    pub fn left(&self, targets: &HashMap<i32, i64>) -> u64 {
        let Ok(position) = self.inner.position() else {
            return 0;
        };
        position
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(at) => {
                    let target = targets.get(&e.partition()).copied().unwrap_or(0);
                    u64::try_from(target - at).ok()
                }
                _ => None,
            })
            .sum()
    }

    /// Whether every assigned partition has been read up to `targets` (partition -> offset).
    /// False until the group has assigned partitions to this member. A partition this member
    /// has consumed nothing from counts by its committed offset, which takes a broker round
    /// trip: call it from `spawn_blocking`.
    pub fn reached(&self, targets: &HashMap<i32, i64>) -> bool {
        let Ok(assignment) = self.inner.assignment() else {
            return false;
        };
        if assignment.count() == 0 {
            return false;
        }
        let Ok(position) = self.inner.position() else {
            return false;
        };
        let mut committed = None;
        position.elements().iter().all(|e| {
            let target = targets.get(&e.partition()).copied().unwrap_or(0);
            let at = match e.offset() {
                Offset::Offset(at) => Some(at),
                _ => {
                    // Rare: only for partitions read nothing from yet.
                    let list = committed
                        .get_or_insert_with(|| self.inner.committed(Duration::from_secs(5)).ok());
                    list.as_ref()
                        .and_then(|l| l.find_partition(&self.topic, e.partition()))
                        .and_then(|p| match p.offset() {
                            Offset::Offset(at) => Some(at),
                            _ => None,
                        })
                }
            };
            target == 0 || at.is_some_and(|at| at >= target)
        })
    }
}

/// The high watermark (offset after the last message) of every partition of `topic`, read
/// with a short-lived client outside the group. Blocking: call it from `spawn_blocking`.
pub fn high_watermarks(k: &spec::Kafka, topic: &str) -> Result<HashMap<i32, i64>, Error> {
    let client_error = |source| Error::client("metadata client", &k.bootstrap_servers, source);
    let consume_error = |source| Error::Consume {
        topic: topic.to_owned(),
        source,
    };
    let client: BaseConsumer = super::base_config(k).create().map_err(client_error)?;
    let timeout = Duration::from_secs(10);
    let metadata = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(consume_error)?;
    let mut out = HashMap::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            let (_, high) = client
                .fetch_watermarks(topic, p.id(), timeout)
                .map_err(consume_error)?;
            out.insert(p.id(), high);
        }
    }
    Ok(out)
}
