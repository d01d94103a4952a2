//! Ingest: on each tick, fetch every page of a poll, select its records, validate each, and
//! produce it (or its dead letter). A page's records are all acknowledged by Kafka before the
//! next page is fetched, so a poll never moves on past records that are not safely stored.
//!
//! A page stays the body the API sent; each record is its JSON text cut out of it, decoded
//! once for the schema and the key, and produced as that text (nothing is re-serialized). At
//! most [`IN_FLIGHT`] records of a page await Kafka at once, so memory stays bounded by the
//! body, whatever the page size.

use std::time::Instant;

use anyhow::{Context, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::dead_letter::{self, DeadLetter, Origin, Stage};
use crate::kafka::produce::Producer;
use crate::metrics::Metrics;
use crate::record::{self, Rejected};
use crate::source::http::{self, FetchError, Pages};
use crate::source::schedule::Ticker;
use crate::spec::{OnInvalid, Spec};

/// Records of a page produced and not yet acknowledged, at most.
const IN_FLIGHT: usize = 1024;

/// Polls on schedule until `stop`; with `once`, polls once and returns (an error if that poll
/// failed).
pub async fn run(
    spec: &Spec,
    producer: &Producer,
    metrics: &Metrics,
    stop: &CancellationToken,
    once: bool,
) -> anyhow::Result<()> {
    let client = http::client(&spec.source).context("building the HTTP client")?;
    let mut ticker = Ticker::new(&spec.source.schedule);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return Ok(()),
        }
        let started = Instant::now();
        match poll(spec, &client, producer, metrics, stop).await {
            Ok(()) => metrics.poll_succeeded(started.elapsed()),
            Err(PollError::Fetch(FetchError::Cancelled)) => return Ok(()),
            Err(PollError::Fetch(e)) => {
                metrics.failed_polls.inc();
                if once {
                    return Err(e.into());
                }
                error!(error = %e, "poll failed; the next poll is on schedule");
            }
            Err(PollError::Fatal(e)) => return Err(e),
        }
        if once {
            return Ok(());
        }
    }
}

enum PollError {
    /// The API failed; the pipeline can go on at the next tick.
    Fetch(FetchError),
    /// Kafka failed or a record hit `on_invalid = "fail"`: the pipeline stops.
    Fatal(anyhow::Error),
}

async fn poll(
    spec: &Spec,
    client: &reqwest::Client,
    producer: &Producer,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Result<(), PollError> {
    let source = &spec.source;
    let mut pages = Pages::new(source);
    let mut records_in_poll = 0;
    while let Some(url) = pages.next_url().cloned() {
        let body = http::fetch(client, source, &url, stop, || {
            metrics.http_retries.inc();
        })
        .await
        .map_err(PollError::Fetch)?;
        let received = Received {
            origin: Origin::Api {
                url: url.to_string(),
            },
            at_ms: chrono::Utc::now().timestamp_millis(),
        };
        let records = http::records(source, &url, &body).map_err(PollError::Fetch)?;
        metrics.polled.inc_by(records.len() as u64);
        records_in_poll += records.len();
        debug!(url = %url, records = records.len(), "page fetched");
        let produce = async {
            let mut sends = FuturesUnordered::new();
            for record in &records {
                if sends.len() >= IN_FLIGHT {
                    sends.next().await.unwrap_or(Ok(()))?;
                }
                sends.push(handle(spec, producer, metrics, record, &received));
            }
            while let Some(sent) = sends.next().await {
                sent?;
            }
            Ok::<_, anyhow::Error>(())
        };
        // A stop lets the page in hand finish within the shutdown timeout, not within
        // librdkafka's message timeout (300 s) when Kafka is away.
        let deadline = async {
            stop.cancelled().await;
            tokio::time::sleep(spec.shutdown_timeout).await;
        };
        tokio::select! {
            produced = produce => produced.map_err(PollError::Fatal)?,
            _ = deadline => {
                return Err(PollError::Fatal(anyhow::anyhow!(
                    "shutdown timeout ({:?}) ran out before Kafka acknowledged the page from {url}; the next run polls it again",
                    spec.shutdown_timeout
                )));
            }
        }
        pages
            .advance(&body, records.len())
            .map_err(PollError::Fetch)?;
    }
    info!(records = records_in_poll, "poll done");
    Ok(())
}

/// Where and when a page's records were received.
struct Received {
    origin: Origin,
    at_ms: i64,
}

/// Validates one record (its JSON text) and produces it, or handles it per `on_invalid`.
async fn handle(
    spec: &Spec,
    producer: &Producer,
    metrics: &Metrics,
    text: &str,
    received: &Received,
) -> anyhow::Result<()> {
    match record::admit(spec, text, &received.origin) {
        Ok(key) => {
            metrics.valid.inc();
            let sent = Instant::now();
            let topic = &spec.kafka.topic;
            match producer
                .send(topic, key.as_deref(), text.as_bytes(), Some(received.at_ms))
                .await
            {
                Ok(()) => {
                    metrics
                        .produce_latency
                        .observe(sent.elapsed().as_secs_f64());
                    metrics.produced.inc();
                    Ok(())
                }
                // A poison record, not a broken pipeline: it goes on without it.
                Err(e) if e.is_too_large() => {
                    let dead_letter = too_large(spec, text, &received.origin);
                    dispose(spec, producer, metrics, dead_letter, key, received).await
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(Rejected { dead_letter, key }) => {
            if dead_letter.stage == Stage::Validate {
                metrics.invalid.inc();
            }
            dispose(spec, producer, metrics, *dead_letter, key, received).await
        }
    }
}

/// The dead letter of a record Kafka refused as too large: its reason, and the start of its
/// text (the envelope must fit where the record did not).
fn too_large(spec: &Spec, text: &str, origin: &Origin) -> DeadLetter {
    let kept = dead_letter::head(text);
    let reason = format!(
        "the record is {} bytes, more than topic {} takes in a message (message.max.bytes); `record` holds its first {} bytes",
        text.len(),
        spec.kafka.topic,
        kept.len()
    );
    DeadLetter::new(
        &spec.name,
        Stage::Produce,
        reason,
        kept.into(),
        origin.clone(),
    )
}

/// Handles a record that cannot go on, per `on_invalid`.
async fn dispose(
    spec: &Spec,
    producer: &Producer,
    metrics: &Metrics,
    dead_letter: DeadLetter,
    key: Option<String>,
    received: &Received,
) -> anyhow::Result<()> {
    let k = &spec.kafka;
    match spec.validate.on_invalid {
        OnInvalid::DeadLetter => {
            warn!(topic = %k.dead_letter_topic, reason = %dead_letter.reason, "record dead-lettered");
            let stage = dead_letter.stage;
            dead_letter
                .produce(
                    producer,
                    &k.dead_letter_topic,
                    key.as_deref(),
                    Some(received.at_ms),
                )
                .await?;
            metrics.dead_lettered(stage);
        }
        OnInvalid::Drop => {
            warn!(reason = %dead_letter.reason, "invalid record dropped");
            metrics.dropped.inc();
        }
        OnInvalid::Fail => bail!(
            "a record from {:?} is invalid and validate.on_invalid = \"fail\": {}; record: {}",
            dead_letter.origin,
            dead_letter.reason,
            http::snippet(&dead_letter.record.to_string())
        ),
    }
    Ok(())
}
