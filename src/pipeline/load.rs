//! Load: consume, map, write, and store offsets only behind acknowledged writes.
//!
//! One task does it all. Messages are spread over `cassandra.concurrency` lanes by message key:
//! a lane writes its messages one after another (rows of one key stay in order) while lanes
//! write in parallel. A lane is a queue and at most one write future in a `FuturesUnordered`,
//! polled by the same loop that consumes, so a message costs no task and no channel hop.
//! [`Offsets`] turns finished messages into a position that never passes an unfinished one, and
//! only that position is stored; librdkafka commits what is stored every
//! `kafka.commit_interval`, and the loader commits once more when it stops (at-least-once; rows
//! are upserts, so a re-delivered message rewrites the same row). When a Cassandra node
//! restarts ([`crate::cassandra::restarts`]), the loader goes back to where it stood before the
//! node's unsynced window and writes that stretch again.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cassandra::write::Writer;
use crate::dead_letter::{DeadLetter, Origin, Stage};
use crate::kafka::consume::{Consumer, Message};
use crate::kafka::offsets::{History, Offsets};
use crate::kafka::produce::Producer;
use crate::metrics::{Metrics, add};
use crate::record;
use crate::spec::Spec;

use super::replay::{self, Original, Replay};

/// What every write shares.
pub struct Context {
    pub spec: Arc<Spec>,
    pub writer: Writer,
    pub producer: Producer,
    pub metrics: Arc<Metrics>,
    /// Set when the topic read is the dead-letter topic (`aqueduct replay`).
    pub replay: Option<Replay>,
    /// How far back a node's restart may have lost acknowledged writes (zero: not watched).
    pub unsynced: Duration,
}

impl Context {
    fn dry_run(&self) -> bool {
        self.replay.is_some_and(|r| r.dry_run)
    }
}

/// How often finished positions are stored for the periodic commit.
const STORE_EVERY: Duration = Duration::from_millis(100);

/// Messages queued behind busy lanes, over all lanes, before the consumer waits: enough to keep
/// every lane busy, few enough to keep memory small.
const QUEUED: usize = 1024;

/// Consumes until `stop` (then finishes in-flight writes within the spec's shutdown timeout and
/// commits), or with `once` until the drain target is reached.
pub async fn run(
    ctx: Context,
    consumer: Consumer,
    stop: CancellationToken,
    mut drain: watch::Receiver<Option<HashMap<i32, i64>>>,
    mut restarts: mpsc::UnboundedReceiver<Instant>,
    once: bool,
) -> anyhow::Result<()> {
    let mut lanes = Lanes::new(ctx.spec.cassandra.concurrency);
    // Where the partitions stood, kept long enough to go back past a node's unsynced window.
    let mut history = History::new(ctx.unsynced + Duration::from_secs(30));
    // After a node restart: write again what it may have lost since this moment, once every
    // message in hand is done (meanwhile nothing new is taken).
    let mut rewind_to: Option<Instant> = None;
    let mut writes = FuturesUnordered::new();
    let mut offsets = Offsets::default();
    let mut check = tokio::time::interval(Duration::from_millis(200));
    // Positions are handed to librdkafka (which commits them every `kafka.commit_interval`) a
    // few times a second, not per message: storing costs a lock and an allocation.
    let mut store = tokio::time::interval(STORE_EVERY.min(ctx.spec.kafka.commit_interval));

    // Consume and write until told to stop or, with `once`, until drained.
    loop {
        tokio::select! {
            biased;
            Some(done) = writes.next() => match finished(done, &mut lanes, &mut offsets) {
                Ok(Some((lane, next))) => writes.push(handle(&ctx, lane, next)),
                Ok(None) => {}
                Err(e) => {
                    commit(&ctx, &consumer, &offsets);
                    return Err(e);
                }
            },
            _ = stop.cancelled() => break,
            Some(lost_after) = restarts.recv() => {
                rewind_to = Some(rewind_to.map_or(lost_after, |r| r.min(lost_after)));
            }
            // With every lane's queue full, the consumer waits (backpressure) while writes
            // finish and a stop is still seen.
            message = consumer.recv(), if lanes.has_room() && rewind_to.is_none() => {
                let message = match message {
                    Ok(m) => m,
                    Err(e) => {
                        ctx.metrics.kafka_retries.inc();
                        warn!(error = %e, "consumer error; continuing");
                        continue;
                    }
                };
                // A replay reads up to the end as of its start and no further: past it are
                // the records it dead-letters again. Left unread and uncommitted.
                if ctx.replay.is_some() && beyond(&drain, &message) {
                    continue;
                }
                ctx.metrics.consumed.inc();
                offsets.start(message.partition, message.offset);
                let lane = lane_of(&message, lanes.len());
                if let Some(m) = lanes.arrived(lane, message) {
                    writes.push(handle(&ctx, lane, m));
                }
            }
            _ = store.tick() => {
                let positions = offsets.committable();
                if !ctx.dry_run() {
                    consumer.store(&positions);
                }
                history.record(Instant::now(), &positions);
                if let Some(moment) = rewind_to.filter(|_| offsets.in_flight() == 0) {
                    rewind(&ctx, &consumer, &mut offsets, &mut history, moment);
                    rewind_to = None;
                }
                ctx.metrics.writes_in_flight.set(offsets.in_flight() as i64);
                if let Some(targets) = drain.borrow().as_ref() {
                    let left = i64::try_from(consumer.left(targets)).unwrap_or(i64::MAX);
                    ctx.metrics.drain_left.store(left, Ordering::Relaxed);
                }
                if !ctx.metrics.ready.load(Ordering::Relaxed) && consumer.has_assignment() {
                    ctx.metrics.ready.store(true, Ordering::Relaxed);
                }
            }

            _ = check.tick(), if once => {
                let reached = drain.borrow_and_update().as_ref().is_some_and(|t| consumer.reached(t));
                if reached && offsets.in_flight() == 0 && rewind_to.is_none() {
                    break;
                }
            }
        }
    }

    // Finish every message handed out, within the shutdown timeout; whatever is not written
    // by then is dropped unwritten and uncommitted, to be consumed again.
    if offsets.in_flight() > 0 {
        info!(
            in_flight = offsets.in_flight(),
            "stopping: finishing in-flight writes"
        );
    }
    let finish = async {
        while let Some(done) = writes.next().await {
            if let Some((lane, next)) = finished(done, &mut lanes, &mut offsets)? {
                writes.push(handle(&ctx, lane, next));
            }
        }
        Ok(())
    };
    let in_time = tokio::time::timeout(ctx.spec.shutdown_timeout, finish).await;
    commit(&ctx, &consumer, &offsets);
    in_time.unwrap_or_else(|_| {
        bail!(
            "shutdown timeout ({:?}) ran out with {} message(s) not written; they were not committed and will be consumed again",
            ctx.spec.shutdown_timeout,
            offsets.in_flight()
        )
    })
}

/// Whether `m` lies at or past the drain target of its partition.
fn beyond(drain: &watch::Receiver<Option<HashMap<i32, i64>>>, m: &Message) -> bool {
    drain
        .borrow()
        .as_ref()
        .is_some_and(|t| m.offset >= t.get(&m.partition).copied().unwrap_or(0))
}

/// A write is done: its offset is finished and its lane's next message, if any, is returned
/// to be written. A write only ends in error when its dead letter could not be produced.
fn finished(
    (lane, m, outcome): (usize, Message, anyhow::Result<()>),
    lanes: &mut Lanes,
    offsets: &mut Offsets,
) -> anyhow::Result<Option<(usize, Message)>> {
    outcome?;
    offsets.finish(m.partition, m.offset);
    Ok(lanes.finished(lane).map(|next| (lane, next)))
}

/// Per lane, whether a write is in flight and what waits behind it.
struct Lanes {
    busy: Vec<bool>,
    queues: Vec<VecDeque<Message>>,
    queued: usize,
}

impl Lanes {
    fn new(n: usize) -> Lanes {
        Lanes {
            busy: vec![false; n],
            queues: (0..n).map(|_| VecDeque::new()).collect(),
            queued: 0,
        }
    }

    fn len(&self) -> usize {
        self.busy.len()
    }

    fn has_room(&self) -> bool {
        self.queued < QUEUED
    }

    /// A message for `lane`: returned to be written now if the lane is idle, else queued.
    fn arrived(&mut self, lane: usize, m: Message) -> Option<Message> {
        if self.busy[lane] {
            self.queues[lane].push_back(m);
            self.queued += 1;
            None
        } else {
            self.busy[lane] = true;
            Some(m)
        }
    }

    /// `lane`'s write finished: its next message, if one waits.
    fn finished(&mut self, lane: usize) -> Option<Message> {
        let next = self.queues[lane].pop_front();
        match next {
            Some(_) => self.queued -= 1,
            None => self.busy[lane] = false,
        }
        next
    }
}

/// Goes back to where each partition stood at `moment`, so what was written since is written
/// again; commits those positions first, so a crash before they are written again still
/// re-reads them.
fn rewind(
    ctx: &Context,
    consumer: &Consumer,
    offsets: &mut Offsets,
    history: &mut History,
    moment: Instant,
) {
    let now: HashMap<i32, i64> = offsets.committable().into_iter().collect();
    let back: Vec<(i32, i64)> = history
        .at(moment)
        .into_iter()
        .filter(|(partition, position)| now.get(partition).is_some_and(|at| position < at))
        .collect();
    if back.is_empty() {
        info!("nothing was written in the restarted node's unsynced window");
        return;
    }
    let messages: i64 = back.iter().map(|(p, position)| now[p] - position).sum();
    warn!(messages, positions = ?back, "writing again what the restarted node acknowledged in its unsynced window");
    if !ctx.dry_run() {
        // Stored too: else librdkafka's next periodic commit would commit the old positions
        // stored before, and a crash then would skip what is to be written again.
        consumer.store(&back);
        if let Err(e) = tokio::task::block_in_place(|| consumer.commit(&back)) {
            warn!(error = %e, "committing the positions gone back to failed");
        }
    }
    for (partition, position) in back {
        if let Err(e) = consumer.seek(partition, position) {
            warn!(partition, error = %e, "cannot go back in this partition (no longer assigned?)");
            continue;
        }
        offsets.forget(partition);
        history.rewind(partition, moment);
    }
}

/// Commits the positions now (a broker round trip, so off the runtime's worker).
fn commit(ctx: &Context, consumer: &Consumer, offsets: &Offsets) {
    if ctx.dry_run() {
        return;
    }
    let positions = offsets.committable();
    match tokio::task::block_in_place(|| consumer.commit(&positions)) {
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

/// One lane's write of one message; gives the lane and the message back when done.
async fn handle(ctx: &Context, lane: usize, m: Message) -> (usize, Message, anyhow::Result<()>) {
    let outcome = write(ctx, &m).await;
    add(&ctx.metrics.loaded, 1);
    (lane, m, outcome)
}

/// Decodes, maps and writes one message (retrying until it is written), or dead-letters it.
async fn write(ctx: &Context, m: &Message) -> anyhow::Result<()> {
    let spec = &ctx.spec;
    let origin = || Origin::Kafka {
        topic: spec.kafka.topic.clone(),
        partition: m.partition,
        offset: m.offset,
    };
    let replayed;
    let payload: &[u8] = match &ctx.replay {
        None => &m.payload,
        Some(replay) => match original(ctx, replay, m, &origin()).await {
            Ok(text) => {
                replayed = text;
                replayed.as_bytes()
            }
            Err(done) => return done,
        },
    };
    let row = match record::to_row(spec, payload, origin) {
        Ok(row) => row,
        Err(dl) => return dead_letter(ctx, m, *dl).await,
    };
    if ctx.dry_run() {
        add(&ctx.metrics.replay.would_write, 1);
        return Ok(());
    }
    let mut attempt = 0u32;
    loop {
        let started = Instant::now();
        let error = match ctx.writer.write(&row).await {
            Ok(()) => {
                ctx.metrics.row_written(started.elapsed(), m.received_at_ms);
                return Ok(());
            }
            Err(e) => e,
        };
        if crate::cassandra::is_data_error(&error) {
            let reason = error.to_string();
            // Decoded again: a rare path, and the hot one keeps no copy.
            let record = serde_json::from_slice(payload).unwrap_or(Value::Null);
            let dl = DeadLetter::new(&spec.name, Stage::Write, reason, record, origin());
            return dead_letter(ctx, m, dl).await;
        }
        attempt += 1;
        ctx.metrics.cql_retries.inc();
        let delay = write_backoff(attempt);
        warn!(partition = m.partition, offset = m.offset, attempt, error = %error, retry_in = ?delay, "write failed; retrying (offset not committed)");
        tokio::time::sleep(delay).await;
    }
}

/// For a replay: the original record of the dead letter `m`, once it has passed the ingest's
/// checks again (the schema or the key may be what was fixed). `Err` holds the outcome when
/// it goes no further: dead-lettered again, passed over (`--since`), or left alone.
async fn original(
    ctx: &Context,
    replay: &Replay,
    m: &Message,
    origin: &Origin,
) -> Result<String, anyhow::Result<()>> {
    let counts = &ctx.metrics.replay;
    add(&counts.read, 1);
    match replay::original(&m.payload, replay.since) {
        Original::Record(text) => match record::admit(&ctx.spec, &text, origin) {
            Ok(_) => Ok(text),
            Err(rejected) => Err(dead_letter(ctx, m, *rejected.dead_letter).await),
        },
        Original::Skip => {
            add(&counts.skipped, 1);
            Err(Ok(()))
        }
        Original::Unreadable(reason) => {
            add(&counts.unreadable, 1);
            warn!(partition = m.partition, offset = m.offset, %reason, "message of the dead-letter topic left alone");
            Err(Ok(()))
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
    if ctx.dry_run() {
        info!(partition = m.partition, offset = m.offset, stage = dl.stage.name(), reason = %dl.reason, "would be dead-lettered again");
        add(&ctx.metrics.replay.would_dead_letter, 1);
        return Ok(());
    }
    warn!(partition = m.partition, offset = m.offset, dead_letter_topic = %topic, reason = %dl.reason, "record dead-lettered");
    let key = m.key.as_deref().map(String::from_utf8_lossy);
    let stage = dl.stage;
    dl.produce(&ctx.producer, topic, key.as_deref(), m.received_at_ms)
        .await
        .with_context(|| {
            format!(
                "dead-lettering offset {} of partition {}",
                m.offset, m.partition
            )
        })?;
    ctx.metrics.dead_lettered(stage);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(offset: i64) -> Message {
        Message {
            partition: 0,
            offset,
            key: None,
            payload: Vec::new(),
            received_at_ms: None,
        }
    }

    #[test]
    fn a_lane_writes_its_messages_one_after_another_in_order() {
        let mut lanes = Lanes::new(2);
        assert_eq!(lanes.arrived(0, message(1)).map(|m| m.offset), Some(1));
        assert!(lanes.arrived(0, message(2)).is_none(), "lane 0 is busy");
        assert!(lanes.arrived(0, message(3)).is_none());
        assert_eq!(lanes.arrived(1, message(4)).map(|m| m.offset), Some(4));
        assert_eq!(lanes.queued, 2);
        assert_eq!(lanes.finished(0).map(|m| m.offset), Some(2));
        assert_eq!(lanes.finished(0).map(|m| m.offset), Some(3));
        assert!(lanes.finished(0).is_none());
        assert_eq!(lanes.queued, 0);
        // Idle again: the next message is written at once.
        assert_eq!(lanes.arrived(0, message(5)).map(|m| m.offset), Some(5));
    }

    #[test]
    fn queued_messages_are_bounded() {
        let mut lanes = Lanes::new(1);
        lanes.arrived(0, message(0));
        for offset in 1..=QUEUED as i64 {
            assert!(lanes.has_room());
            lanes.arrived(0, message(offset));
        }
        assert!(!lanes.has_room(), "the consumer waits");
        lanes.finished(0);
        assert!(lanes.has_room());
    }
}
