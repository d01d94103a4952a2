//! The cursors of incremental sources (`[source.cursor]`, `[source.window]`), kept on one
//! compacted topic keyed by pipeline name, the way Kafka Connect keeps source offsets; and the
//! lease that lets one ingest process of a pipeline poll at a time.
//!
//! The lease is a consumer group (`<group_id>-ingest`) on the cursor topic, which has one
//! partition: Kafka gives that partition to one member, and that member polls. The others
//! stand by and take over when it leaves or stops answering (`session.timeout.ms`). A
//! revocation waits for the poll in progress to save its cursor ([`Lease`]); a member that
//! lost the lease anyway (it stopped answering) finishes its poll (its records are produced,
//! rows are upserts) but does not write its cursor.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::Message as _;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use tracing::{info, warn};

use super::produce::Producer;
use super::{Error, base_config};
use crate::spec;

/// One saved cursor: the message value on the cursor topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// The cursor: a value from `[source.cursor]`, or for `[source.window]` the end of the
    /// last window done (RFC 3339).
    pub cursor: Value,
    /// When it was written (RFC 3339).
    pub written_at: String,
    /// Who wrote it: `host:pid` of an ingest process, or `aqueduct cursor --set`.
    pub writer: String,
}

/// A saved cursor and where it is on the topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub offset: i64,
    pub saved: Saved,
}

/// This process as a writer of cursors.
pub fn writer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// Creates the cursor topic (compacted, one partition) if it is missing and the spec allows.
pub async fn ensure_topic(k: &spec::Kafka) -> Result<(), Error> {
    let topic = NewTopic::new(
        &k.cursor_topic,
        1,
        TopicReplication::Fixed(k.replication_factor),
    )
    .set("cleanup.policy", "compact");
    super::create_missing(k, &[topic]).await
}

/// The latest cursor saved for `pipeline`: the topic read from its start to its end with a
/// short-lived client outside any group.
pub async fn read(k: &spec::Kafka, pipeline: &str) -> Result<Option<Found>, Error> {
    let mut config = base_config(k);
    config
        .set("group.id", format!("{}-cursor-reader", k.group_id))
        .set("enable.auto.commit", "false");
    let topic = k.cursor_topic.clone();
    let servers = k.bootstrap_servers.clone();
    let pipeline = pipeline.to_owned();
    tokio::task::spawn_blocking(move || read_blocking(config, &servers, &topic, &pipeline))
        .await
        .unwrap_or_else(|e| {
            Err(Error::CursorTopic {
                message: format!("reading the cursor panicked: {e}"),
            })
        })
}

fn read_blocking(
    config: rdkafka::ClientConfig,
    servers: &str,
    topic: &str,
    pipeline: &str,
) -> Result<Option<Found>, Error> {
    let consume_error = |source| Error::Consume {
        topic: topic.to_owned(),
        source,
    };
    let consumer: BaseConsumer = config
        .create()
        .map_err(|source| Error::client("cursor reader", servers, source))?;
    let timeout = Duration::from_secs(10);
    // No cursor topic yet (nothing ever saved): no cursor.
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(consume_error)?;
    if metadata
        .topics()
        .iter()
        .all(|t| t.error().is_some() || t.partitions().is_empty())
    {
        return Ok(None);
    }
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, timeout)
        .map_err(consume_error)?;
    if high <= low {
        return Ok(None);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(low))
        .map_err(consume_error)?;
    consumer.assign(&assignment).map_err(consume_error)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut latest = None;
    let mut next = low;
    while next < high {
        if std::time::Instant::now() >= deadline {
            return Err(Error::CursorTopic {
                message: format!(
                    "reading topic {topic} to its end (offset {high}) took over 30 s; at offset {next}"
                ),
            });
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.map_err(consume_error)?;
        next = message.offset() + 1;
        if message.key() != Some(pipeline.as_bytes()) {
            continue;
        }
        // A compacted topic's tombstone (no value) deletes the cursor.
        latest = match message.payload() {
            None => None,
            Some(payload) => match serde_json::from_slice::<Saved>(payload) {
                Ok(saved) => Some(Found {
                    offset: message.offset(),
                    saved,
                }),
                Err(e) => {
                    warn!(topic, offset = message.offset(), error = %e, "a cursor message is not one aqueduct wrote; skipped");
                    latest
                }
            },
        };
    }
    Ok(latest)
}

/// Saves `cursor` for `pipeline`, acknowledged by the brokers when this returns.
pub async fn write(
    producer: &Producer,
    k: &spec::Kafka,
    pipeline: &str,
    cursor: Value,
    writer: &str,
) -> Result<Found, Error> {
    let saved = Saved {
        cursor,
        written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        writer: writer.to_owned(),
    };
    let payload = serde_json::to_vec(&saved).expect("a cursor serializes");
    let offset = producer
        .send(&k.cursor_topic, Some(pipeline), &payload, None)
        .await?;
    Ok(Found { offset, saved })
}

/// Membership of the pipeline's ingest group; holds the lease while Kafka assigns it the
/// cursor topic's partition. The member polls on a thread of its own, so a rebalance is served
/// whatever the runtime does; when Kafka takes the partition away (another process joined or
/// left), the revocation waits for the poll in progress to finish and save its cursor before
/// the partition goes, the way a Kafka consumer commits on revocation, so the next holder
/// starts where this one stopped and no window is fetched by both.
pub struct Lease {
    state: Arc<LeaseState>,
    acquired: watch::Receiver<bool>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long a revocation waits for the poll in progress (under the group's
/// `max.poll.interval.ms`, 300 s, past which Kafka moves on anyway).
const REVOKE_WAIT: Duration = Duration::from_secs(240);

#[derive(Default)]
struct LeaseState {
    inner: std::sync::Mutex<Holding>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct Holding {
    held: bool,
    polling: bool,
    /// Kafka asked for the partition: no new poll starts, the one in progress ends after its
    /// current window.
    asked: bool,
}

impl LeaseState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Holding> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct LeaseContext {
    state: Arc<LeaseState>,
    acquired: watch::Sender<bool>,
}

impl ClientContext for LeaseContext {}

impl ConsumerContext for LeaseContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if !matches!(rebalance, Rebalance::Revoke(_)) {
            return;
        }
        let mut holding = self.state.lock();
        holding.asked = true;
        if holding.polling {
            info!("the ingest lease is asked for; finishing the poll in progress first");
            let (h, _) = self
                .state
                .changed
                .wait_timeout_while(holding, REVOKE_WAIT, |h| h.polling)
                .unwrap_or_else(|e| e.into_inner());
            holding = h;
        }
        let was_held = std::mem::replace(&mut holding.held, false);
        holding.asked = false;
        self.acquired.send_replace(false);
        if was_held {
            info!(
                still_polling = holding.polling,
                "this process no longer holds the pipeline's ingest lease"
            );
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) if tpl.count() > 0 => {
                self.state.lock().held = true;
                self.acquired.send_replace(true);
                info!("this process polls the source now (it holds the pipeline's ingest lease)");
            }
            Rebalance::Error(e) => warn!(error = %e, "the ingest group's rebalance failed"),
            _ => {}
        }
    }
}

/// A poll under the lease: while it lives, a revocation waits.
pub struct Polling<'a> {
    lease: &'a Lease,
}

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        self.lease.state.lock().polling = false;
        self.lease.state.changed.notify_all();
    }
}

impl Lease {
    /// Joins the group `<group_id>-ingest` on the cursor topic.
    pub fn join(k: &spec::Kafka) -> Result<Lease, Error> {
        let state = Arc::new(LeaseState::default());
        let (tx, acquired) = watch::channel(false);
        let consumer: BaseConsumer<LeaseContext> = base_config(k)
            .set("group.id", format!("{}-ingest", k.group_id))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .create_with_context(LeaseContext {
                state: state.clone(),
                acquired: tx,
            })
            .map_err(|source| Error::client("ingest group member", &k.bootstrap_servers, source))?;
        consumer
            .subscribe(&[&k.cursor_topic])
            .map_err(|source| Error::Consume {
                topic: k.cursor_topic.clone(),
                source,
            })?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        // Polling keeps the membership alive and serves rebalances; the messages themselves
        // are read by `read`.
        let thread = std::thread::Builder::new()
            .name("ingest-lease".into())
            .spawn(move || {
                while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                        warn!(error = %e, "the ingest group member");
                    }
                }
                // Leaves the group, so a standby takes over at once.
                consumer.unsubscribe();
                drop(consumer);
            })
            .map_err(|e| Error::CursorTopic {
                message: format!("starting the ingest group member: {e}"),
            })?;
        Ok(Lease {
            state,
            acquired,
            stop,
            thread: Some(thread),
        })
    }

    /// Starts a poll if this process holds the lease.
    pub fn begin(&self) -> Option<Polling<'_>> {
        let mut holding = self.state.lock();
        if !holding.held || holding.asked {
            return None;
        }
        holding.polling = true;
        Some(Polling { lease: self })
    }

    /// Whether this process holds the lease now.
    pub fn held(&self) -> bool {
        self.state.lock().held
    }

    /// Whether Kafka asked for the lease: a poll stops after the window in hand.
    pub fn asked(&self) -> bool {
        self.state.lock().asked
    }

    /// Waits until this process holds the lease.
    pub async fn acquired(&mut self) {
        // The sender lives in the member, which lives as long as the lease.
        let _ = self.acquired.wait_for(|held| *held).await;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
