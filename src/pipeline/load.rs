//! Load: consume, map, write, and store offsets only behind acknowledged writes.
//!
//! Messages are spread over `cassandra.concurrency` lanes by message key, so rows of one key
//! are written in order while different keys are written in parallel. Each lane reports the
//! offsets it finished; [`Offsets`] turns those into a position that never passes an
//! unfinished message, and only that position is stored and committed (at-least-once; rows
//! are upserts, so a re-delivered message rewrites the same row).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cassandra::write::Writer;
use crate::dead_letter::{DeadLetter, Origin, Stage};
use crate::kafka::consume::{Consumer, Message};
use crate::kafka::offsets::Offsets;
use crate::kafka::produce::Producer;
use crate::map;
use crate::metrics::{Metrics, add};
use crate::spec::Spec;

/// What every lane shares.
pub struct Context {
    pub spec: Arc<Spec>,
    pub writer: Writer,
    pub producer: Producer,
    pub metrics: Arc<Metrics>,
}

/// Messages queued per lane before the consumer waits.
const LANE_QUEUE: usize = 64;

/// Consumes until `stop` (then finishes in-flight writes within the spec's shutdown timeout and
/// commits), or with `once` until the drain target is reached.
pub async fn run(
    ctx: Context,
    consumer: Consumer,
    stop: CancellationToken,
    mut drain: watch::Receiver<Option<HashMap<i32, i64>>>,
    once: bool,
) -> anyhow::Result<()> {
    let ctx = Arc::new(ctx);
    let lanes_n = ctx.spec.cassandra.concurrency;
    // Cancelled when the shutdown timeout runs out: lanes stop retrying and give up.
    let abandon = CancellationToken::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(i32, i64)>();
    let mut lanes = Vec::with_capacity(lanes_n);
    let mut workers = JoinSet::new();
    for _ in 0..lanes_n {
        let (tx, rx) = mpsc::channel::<Message>(LANE_QUEUE);
        lanes.push(tx);
        workers.spawn(lane(ctx.clone(), rx, done_tx.clone(), abandon.clone()));
    }
    drop(done_tx);

    let mut offsets = Offsets::default();
    let mut stopping = false;
    let mut deadline = None;
    let mut check = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            biased;
            Some(joined) = workers.join_next() => {
                // A lane only ends early on a fatal error (dead-letter produce failed).
                let result = joined.context("a load lane panicked").and_then(|r| r);
                abandon.cancel();
                commit(&consumer, &offsets);
                return result.and_then(|()| bail!("a load lane stopped unexpectedly"));
            }
            Some((partition, offset)) = done_rx.recv() => {
                if let Some(next) = offsets.finish(partition, offset) {
                    consumer.store(partition, next);
                }
            }
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                deadline = Some(tokio::time::Instant::now() + ctx.spec.shutdown_timeout);
                info!(in_flight = offsets.in_flight(), "stopping: finishing in-flight writes");
            }
            _ = sleep_until(deadline) => {
                abandon.cancel();
                commit(&consumer, &offsets);
                bail!(
                    "shutdown timeout ({:?}) ran out with {} message(s) not written; they were not committed and will be consumed again",
                    ctx.spec.shutdown_timeout,
                    offsets.in_flight()
                );
            }
            message = consumer.recv(), if !stopping => {
                let message = match message {
                    Ok(m) => m,
                    Err(e) => {
                        warn!(error = %e, "consumer error; continuing");
                        continue;
                    }
                };
                let lane = lane_of(&message, lanes.len());
                let (partition, offset) = (message.partition, message.offset);
                // A full lane waits here (backpressure on the consumer), but a stop must still be
                // seen: a message not handed out is neither done nor committed.
                tokio::select! {
                    sent = lanes[lane].send(message) => {
                        if sent.is_err() {
                            bail!("load lane {lane} is gone");
                        }
                        // Before its completion can be read: that is read by this loop too.
                        offsets.start(partition, offset);
                    }
                    _ = stop.cancelled() => {}
                }
            }
            _ = check.tick(), if once && !stopping => {
                let reached = drain.borrow_and_update().as_ref().is_some_and(|t| consumer.reached(t));
                if reached && offsets.in_flight() == 0 {
                    stopping = true;
                }
            }
        }
        if stopping && offsets.in_flight() == 0 {
            break;
        }
    }
    drop(lanes);
    commit(&consumer, &offsets);
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn commit(consumer: &Consumer, offsets: &Offsets) {
    let positions = offsets.committable();
    match consumer.commit(&positions) {
        Ok(()) => info!(positions = ?positions, "offsets committed"),
        Err(e) => {
            error!(error = %e, "final offset commit failed; messages since the last commit will be consumed again")
        }
    }
}

/// Messages with the same key go to the same lane; unkeyed ones spread by offset.
fn lane_of(m: &Message, lanes: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match &m.key {
        Some(key) => key.hash(&mut h),
        None => (m.partition, m.offset).hash(&mut h),
    }
    (h.finish() % lanes as u64) as usize
}

/// One lane: handles its messages in order and reports each as done.
async fn lane(
    ctx: Arc<Context>,
    mut rx: mpsc::Receiver<Message>,
    done: mpsc::UnboundedSender<(i32, i64)>,
    abandon: CancellationToken,
) -> anyhow::Result<()> {
    while let Some(m) = rx.recv().await {
        if !handle(&ctx, &m, &abandon).await? {
            return Ok(()); // abandoned at shutdown: not reported done, so not committed
        }
        let _ = done.send((m.partition, m.offset));
    }
    Ok(())
}

/// Decodes, maps and writes one message, or dead-letters it. Returns false if abandoned.
async fn handle(ctx: &Context, m: &Message, abandon: &CancellationToken) -> anyhow::Result<bool> {
    let spec = &ctx.spec;
    let origin = Origin::Kafka {
        topic: spec.kafka.topic.clone(),
        partition: m.partition,
        offset: m.offset,
    };
    let record: Value = match serde_json::from_slice(&m.payload) {
        Ok(v) => v,
        Err(e) => {
            let text = Value::String(String::from_utf8_lossy(&m.payload).into_owned());
            let dl = DeadLetter::new(
                &spec.name,
                Stage::Decode,
                format!("the message is not JSON: {e}"),
                text,
                origin,
            );
            dead_letter(ctx, m, dl).await?;
            return Ok(true);
        }
    };
    let row = match map::row(&spec.cassandra, &record) {
        Ok(row) => row,
        Err(e) => {
            let mut dl = DeadLetter::new(&spec.name, Stage::Map, e.to_string(), record, origin);
            dl.column = Some(e.column);
            dead_letter(ctx, m, dl).await?;
            return Ok(true);
        }
    };
    let mut attempt = 0u32;
    loop {
        let error = match ctx.writer.write(&row).await {
            Ok(()) => {
                add(&ctx.metrics.written, 1);
                return Ok(true);
            }
            Err(e) => e,
        };
        if crate::cassandra::is_data_error(&error) {
            let dl = DeadLetter::new(&spec.name, Stage::Write, error.to_string(), record, origin);
            dead_letter(ctx, m, dl).await?;
            return Ok(true);
        }
        attempt += 1;
        add(&ctx.metrics.retries, 1);
        let delay = write_backoff(attempt);
        warn!(partition = m.partition, offset = m.offset, attempt, error = %error, retry_in = ?delay, "write failed; retrying (offset not committed)");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = abandon.cancelled() => return Ok(false),
        }
    }
}

/// 100 ms doubling to 10 s, with full jitter.
fn write_backoff(attempt: u32) -> Duration {
    let ceiling = Duration::from_millis(100)
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(Duration::from_secs(10));
    ceiling.mul_f64(fastrand::f64())
}

async fn dead_letter(ctx: &Context, m: &Message, dl: DeadLetter) -> anyhow::Result<()> {
    let topic = &ctx.spec.kafka.dead_letter_topic;
    warn!(partition = m.partition, offset = m.offset, dead_letter_topic = %topic, reason = %dl.reason, "record dead-lettered");
    let key = m.key.as_deref().map(String::from_utf8_lossy);
    ctx.producer
        .send(topic, key.as_deref(), &dl.to_json())
        .await
        .with_context(|| {
            format!(
                "dead-lettering offset {} of partition {}",
                m.offset, m.partition
            )
        })?;
    add(&ctx.metrics.dead_lettered, 1);
    Ok(())
}
