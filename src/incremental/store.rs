//! The cursors of incremental sources, kept on one compacted topic keyed by pipeline name, the
//! way Kafka Connect keeps source offsets. A [`Store`] reads the topic with one client for the
//! whole run, each read taking only what was written since the last, and saves by
//! compare-and-save: a cursor is written only if no one else wrote this pipeline's cursor
//! since the one the poll started from.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Message as _;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::warn;

use crate::kafka::produce::Producer;
use crate::kafka::{self, Error};
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
    kafka::create_missing(k, &[topic]).await
}

/// How long one read may take to reach the end of the topic.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// One pipeline's cursor on the cursor topic: a reader outside any group that keeps its place,
/// and the latest cursor it has seen.
pub struct Store {
    pipeline: String,
    topic: String,
    reader: Arc<BaseConsumer>,
    /// Where the reader stands: the next offset to read (`None` until the first read).
    next: Option<i64>,
    latest: Option<Found>,
}

impl Store {
    /// A store for `pipeline`'s cursor. Reads nothing yet.
    pub fn open(k: &spec::Kafka, pipeline: &str) -> Result<Store, Error> {
        let reader = kafka::cursor_reader_config(k)
            .create()
            .map_err(|source| Error::client("cursor reader", &k.bootstrap_servers, source))?;
        Ok(Store {
            pipeline: pipeline.to_owned(),
            topic: k.cursor_topic.clone(),
            reader: Arc::new(reader),
            next: None,
            latest: None,
        })
    }

    /// The latest cursor saved for the pipeline: what was written since the last read is
    /// read, up to the end of the topic as it is now (a broker round trip, off the runtime's
    /// workers).
    pub async fn latest(&mut self) -> Result<Option<Found>, Error> {
        let reader = self.reader.clone();
        let (topic, pipeline) = (self.topic.clone(), self.pipeline.clone());
        let (next, latest) = (self.next, self.latest.take());
        let read = tokio::task::spawn_blocking(move || {
            read_to_end(&reader, &topic, &pipeline, next, latest)
        })
        .await
        .unwrap_or_else(|e| {
            Err(Error::CursorTopic {
                message: format!("reading the cursor panicked: {e}"),
            })
        });
        let (next, latest) = read?;
        self.next = next;
        self.latest = latest.clone();
        Ok(latest)
    }

    /// The latest cursor as of the last read.
    pub fn seen(&self) -> Option<&Found> {
        self.latest.as_ref()
    }

    /// Saves `cursor` if the pipeline's latest cursor is still `base` (what the poll started
    /// from): gives what was saved, acknowledged by the brokers; `None` when someone else
    /// wrote one since (`aqueduct cursor --set`, or a process that held the lease before).
    pub async fn save_if_unchanged(
        &mut self,
        producer: &Producer,
        base: Option<&Found>,
        cursor: Value,
        writer: &str,
    ) -> Result<Option<Found>, Error> {
        if self.latest().await?.as_ref() != base {
            return Ok(None);
        }
        self.save(producer, cursor, writer).await.map(Some)
    }

    /// Saves `cursor` with `producer`, whatever was saved before.
    pub async fn save(
        &self,
        producer: &Producer,
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
            .send(&self.topic, Some(self.pipeline.as_bytes()), &payload, None)
            .await?;
        Ok(Found { offset, saved })
    }
}

/// Reads `topic` from `next` (its start when `None`) to its end as it is now, keeping the
/// latest cursor of `pipeline`; gives where it stopped and that cursor.
fn read_to_end(
    reader: &BaseConsumer,
    topic: &str,
    pipeline: &str,
    next: Option<i64>,
    mut latest: Option<Found>,
) -> Result<(Option<i64>, Option<Found>), Error> {
    let consume_error = |source| Error::Consume {
        topic: topic.to_owned(),
        source,
    };
    let timeout = Duration::from_secs(10);
    // No cursor topic yet (nothing ever saved): no cursor.
    let metadata = reader
        .fetch_metadata(Some(topic), timeout)
        .map_err(consume_error)?;
    if metadata
        .topics()
        .iter()
        .all(|t| t.error().is_some() || t.partitions().is_empty())
    {
        return Ok((next, latest));
    }
    let (low, high) = reader
        .fetch_watermarks(topic, 0, timeout)
        .map_err(consume_error)?;
    // Compaction may have removed what lay before `low`: nothing of it is the latest.
    let from = next.unwrap_or(low).max(low);
    if from >= high {
        return Ok((Some(from), latest));
    }
    if next != Some(from) || reader.assignment().map_or(0, |a| a.count()) == 0 {
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, Offset::Offset(from))
            .map_err(consume_error)?;
        reader.assign(&assignment).map_err(consume_error)?;
    }
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut next = from;
    while next < high {
        if Instant::now() >= deadline {
            return Err(Error::CursorTopic {
                message: format!(
                    "reading topic {topic} to its end (offset {high}) took over {} s; at offset {next}",
                    READ_TIMEOUT.as_secs()
                ),
            });
        }
        let Some(message) = reader.poll(Duration::from_millis(500)) else {
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
    Ok((Some(next), latest))
}
