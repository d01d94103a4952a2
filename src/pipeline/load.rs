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
//! restart may have lost acknowledged writes ([`crate::cassandra::restarts`]), the loader goes
//! back to where it stood before the unsynced window ([`crate::cassandra::rewind`]) and writes
//! that stretch again.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::backoff::backoff;
use crate::cassandra::restarts::Restarts;
use crate::cassandra::rewind::{self, History};
use crate::cassandra::write::Writer;
use crate::codec::Codecs;
use crate::dead_letter::{DeadLetter, Origin, Stage};
use crate::kafka::consume::{Consumer, Message};
use crate::kafka::offsets::Offsets;
use crate::kafka::produce::Producer;
use crate::metrics::{Metrics, add};
use crate::record;
use crate::spec::OnInvalid;
use crate::spec::{Kafka, Spec};

use super::Mode;
use super::replay::{self, Original, Replay};

/// What the loader reads, and so how it treats each message.
#[derive(Debug, Clone, Copy)]
pub enum Input {
    /// The pipeline's topic, in the pipeline's group: records as the ingest produced them.
    Topic,
    /// The dead-letter topic, in the group `<group_id>-replay`: each envelope's original
    /// record is checked again and written.
    DeadLetters(Replay),
}

impl Input {
    pub fn of(mode: Mode) -> Input {
        match mode {
            Mode::Replay(replay) => Input::DeadLetters(replay),
            _ => Input::Topic,
        }
    }

    pub fn topic(self, k: &Kafka) -> &str {
        match self {
            Input::Topic => &k.topic,
            Input::DeadLetters(_) => &k.dead_letter_topic,
        }
    }

    pub fn group(self, k: &Kafka) -> String {
        match self {
            Input::Topic => k.group_id.clone(),
            Input::DeadLetters(_) => format!("{}-replay", k.group_id),
        }
    }
}

/// What every write shares.
pub struct Context {
    pub spec: Arc<Spec>,
    pub writer: Writer,
    pub producer: Producer,
    pub codecs: Arc<Codecs>,
    pub metrics: Arc<Metrics>,
    pub input: Input,
}

impl Context {
    fn dry_run(&self) -> bool {
        matches!(self.input, Input::DeadLetters(r) if r.dry_run)
    }

    /// The topic the messages come from, for dead letters' origins.
    fn topic(&self) -> &str {
        self.input.topic(&self.spec.kafka)
    }
}

/// How often finished positions are stored for the periodic commit.
const STORE_EVERY: Duration = Duration::from_millis(100);

/// How long after its partitions were revoked a loader waits for the group to assign it any
/// (even none) before it joins the group again: far beyond a rebalance among members that
/// poll all the time, short enough for a run that ends to finish.
const REJOIN_STALLED: Duration = Duration::from_secs(90);

/// The first and the longest wait before a failed write is tried again.
const WRITE_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(10));

/// How often a run that ends checks whether it has drained its topic.
const DRAIN_CHECK_EVERY: Duration = Duration::from_millis(50);

/// Messages queued behind busy lanes, over all lanes, before the consumer waits: enough to keep
/// every lane busy, few enough to keep memory small.
const QUEUED: usize = 1024;

/// The drain target: per partition, the offset a run that ends must read up to (`None` until
/// known).
type Drain = watch::Receiver<Option<HashMap<i32, i64>>>;

/// A message's write, done: its lane, the message, and whether its dead letter (if it needed
/// one) could be produced.
type Done = (usize, Message, anyhow::Result<()>);

/// Consumes until `stop` (then finishes in-flight writes within the spec's shutdown timeout and
/// commits), or, when `ends`, until the drain target is reached. Each event goes to one method
/// of [`Loader`]; this loop only waits for the next one.
pub async fn run(
    ctx: Context,
    consumer: Consumer,
    stop: CancellationToken,
    mut drain: Drain,
    restarts: Restarts,
    ends: bool,
) -> anyhow::Result<()> {
    let mut loader = Loader::new(&ctx, consumer, restarts);
    let mut writes = FuturesUnordered::new();
    let mut drain_check = tokio::time::interval(DRAIN_CHECK_EVERY);
    // Positions are handed to librdkafka (which commits them every `kafka.commit_interval`) a
    // few times a second, not per message: storing costs a lock and an allocation.
    let mut store = tokio::time::interval(STORE_EVERY.min(ctx.spec.kafka.commit_interval));
    loop {
        tokio::select! {
            biased;
            Some(done) = writes.next() => match loader.write_done(done) {
                Ok(Some((lane, next))) => writes.push(handle(&ctx, lane, next)),
                Ok(None) => {}
                Err(e) => {
                    loader.commit().await;
                    return Err(e);
                }
            },
            _ = stop.cancelled() => break,
            // With every lane's queue full, the consumer waits (backpressure) while writes
            // finish and a stop is still seen.
            message = loader.consumer.recv(), if loader.takes_messages() => {
                if let Some((lane, m)) = loader.message(message, &drain) {
                    writes.push(handle(&ctx, lane, m));
                }
            }
            _ = store.tick() => loader.store_tick(&drain).await,
            _ = drain_check.tick(), if ends => {
                if loader.drained(&mut drain).await {
                    break;
                }
            }
        }
    }
    loader.stop(writes, |lane, m| handle(&ctx, lane, m)).await
}

/// The loader's state between events.
struct Loader<'a> {
    ctx: &'a Context,
    /// Shared with the blocking threads that commit, seek and ask the broker.
    consumer: Arc<Consumer>,
    lanes: Lanes,
    offsets: Offsets,
    /// Where the partitions stood, kept back to the horizon: as far as a node's restart could
    /// reach back.
    history: History,
    restarts: Restarts,
    /// After a node restart: write again what it may have lost since this moment, once every
    /// message in hand is done (meanwhile nothing new is taken).
    rewind_to: Option<Instant>,
}

impl<'a> Loader<'a> {
    fn new(ctx: &'a Context, consumer: Consumer, restarts: Restarts) -> Loader<'a> {
        Loader {
            ctx,
            consumer: Arc::new(consumer),
            lanes: Lanes::new(ctx.spec.cassandra.concurrency),
            offsets: Offsets::default(),
            history: History::default(),
            restarts,
            rewind_to: None,
        }
    }

    /// Whether the next message may be taken: a lane has room and no rewind waits.
    fn takes_messages(&self) -> bool {
        self.lanes.has_room() && self.rewind_to.is_none()
    }

    /// A message (or a consumer error, carried on past): returned with its lane when it is to
    /// be written now, else queued behind its lane's write.
    fn message(
        &mut self,
        message: Result<Message, crate::kafka::Error>,
        drain: &Drain,
    ) -> Option<(usize, Message)> {
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                self.ctx.metrics.kafka_retries.inc();
                warn!(error = %e, "consumer error; continuing");
                return None;
            }
        };
        // A replay reads up to the end as of its start and no further: past it are the records
        // it dead-letters again. Left unread and uncommitted.
        if matches!(self.ctx.input, Input::DeadLetters(_)) && beyond(drain, &message) {
            return None;
        }
        self.ctx.metrics.consumed.inc();
        self.offsets.start(message.partition, message.offset);
        let lane = lane_of(&message, self.lanes.len());
        self.lanes.arrived(lane, message).map(|m| (lane, m))
    }

    /// A write is done: its offset is finished and its lane's next message, if any, is returned
    /// to be written. A write only ends in error when its dead letter could not be produced.
    fn write_done(&mut self, (lane, m, outcome): Done) -> anyhow::Result<Option<(usize, Message)>> {
        outcome?;
        self.offsets.finish(m.partition, m.offset);
        Ok(self.lanes.finished(lane).map(|next| (lane, next)))
    }

    /// A Cassandra node restarted and may have lost what it acknowledged after `lost_after`.
    fn restart_seen(&mut self, lost_after: Instant) {
        self.rewind_to = Some(self.rewind_to.map_or(lost_after, |r| r.min(lost_after)));
    }

    /// Stores the finished positions, takes the restarts the node watcher reported, goes back
    /// after one once nothing is in hand, and updates the gauges.
    async fn store_tick(&mut self, drain: &Drain) {
        let positions = self.offsets.committable();
        if !self.ctx.dry_run() {
            self.consumer.store(&positions);
        }
        // Restarts are taken here, in the one place that prunes the history, and after reading
        // the horizon: the watcher reports a restart before it moves the horizon past the
        // moment the restart names.
        let horizon = *self.restarts.horizon.borrow();
        while let Ok(lost_after) = self.restarts.lost_after.try_recv() {
            self.restart_seen(lost_after);
        }
        let keep_from = match (horizon, self.rewind_to) {
            (Some(h), Some(r)) => Some(h.min(r)),
            (h, r) => h.or(r),
        };
        self.history.record(Instant::now(), &positions, keep_from);
        if let Some(moment) = self.rewind_to.filter(|_| self.offsets.in_flight() == 0) {
            self.rewind(moment).await;
            self.rewind_to = None;
        }
        let metrics = &self.ctx.metrics;
        metrics
            .writes_in_flight
            .set(self.offsets.in_flight() as i64);
        if let Some(targets) = drain.borrow().as_ref() {
            let left = i64::try_from(self.consumer.left(targets)).unwrap_or(i64::MAX);
            metrics.drain_left.store(left, Ordering::Relaxed);
        }
        if self.consumer.rejoin_stalled(REJOIN_STALLED) {
            warn!(after = ?REJOIN_STALLED, "the consumer group has not assigned this loader partitions since it revoked them; joining it again");
            if let Err(e) = self.consumer.resubscribe() {
                warn!(error = %e, "joining the consumer group again failed");
            }
        }
    }

    /// Whether a run that ends is done: the drain target read, nothing in hand, no rewind due.
    async fn drained(&mut self, drain: &mut Drain) -> bool {
        let Some(targets) = drain.borrow_and_update().clone() else {
            return false;
        };
        if self.offsets.in_flight() > 0 || self.rewind_to.is_some() {
            return false;
        }
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.reached(&targets))
            .await
            .unwrap_or(false)
    }

    /// Goes back to where each partition stood at `moment`, so what was written since is
    /// written again; commits those positions first, so a crash before they are written again
    /// still re-reads them.
    async fn rewind(&mut self, moment: Instant) {
        let committable = self.offsets.committable();
        let back = rewind::targets(&self.history, moment, &committable);
        let now: HashMap<i32, i64> = committable.into_iter().collect();
        if back.is_empty() {
            info!("nothing was written in the restarted node's unsynced window");
            return;
        }
        let messages: i64 = back.iter().map(|(p, position)| now[p] - position).sum();
        warn!(messages, positions = ?back, "writing again what the restarted node acknowledged in its unsynced window");
        let consumer = self.consumer.clone();
        let dry_run = self.ctx.dry_run();
        let moved = tokio::task::spawn_blocking(move || {
            if !dry_run {
                // Stored too: else librdkafka's next periodic commit would commit the old
                // positions stored before, and a crash then would skip what is to be written
                // again.
                consumer.store(&back);
                if let Err(e) = consumer.commit(&back) {
                    warn!(error = %e, "committing the positions gone back to failed");
                }
            }
            back.into_iter()
                .filter(|&(partition, position)| match consumer.seek(partition, position) {
                    Ok(()) => true,
                    Err(e) => {
                        warn!(partition, error = %e, "cannot go back in this partition (no longer assigned?)");
                        false
                    }
                })
                .map(|(partition, _)| partition)
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for partition in moved {
            self.offsets.forget(partition);
            self.history.rewind(partition, moment);
        }
    }

    /// Commits the finished positions now, off the runtime's workers (a broker round trip);
    /// stored first, so librdkafka's own commit when the consumer closes commits the same. A
    /// refused commit (the group rebalancing, its coordinator moving) is tried twice more.
    async fn commit(&self) {
        if self.ctx.dry_run() {
            return;
        }
        let positions = self.offsets.committable();
        let consumer = self.consumer.clone();
        let committed = tokio::task::spawn_blocking(move || {
            consumer.store(&positions);
            let mut attempt = 1;
            loop {
                match consumer.commit(&positions) {
                    Err(e) if attempt < 3 => {
                        warn!(error = %e, attempt, "final offset commit failed; trying again");
                        std::thread::sleep(Duration::from_millis(200 * attempt));
                        attempt += 1;
                    }
                    done => return done.map(|()| positions),
                }
            }
        })
        .await;
        match committed {
            Ok(Ok(positions)) => info!(positions = ?positions, "offsets committed"),
            Ok(Err(e)) => {
                error!(error = %e, "final offset commit failed; messages since the last commit will be consumed again")
            }
            Err(e) => error!(error = %e, "the final offset commit panicked"),
        }
    }

    /// Finishes every message handed out, within the shutdown timeout, and commits; whatever is
    /// not written by then is dropped unwritten and uncommitted, to be consumed again.
    async fn stop<F>(
        mut self,
        mut writes: FuturesUnordered<F>,
        write: impl Fn(usize, Message) -> F,
    ) -> anyhow::Result<()>
    where
        F: std::future::Future<Output = Done>,
    {
        if self.offsets.in_flight() > 0 {
            info!(
                in_flight = self.offsets.in_flight(),
                "stopping: finishing in-flight writes"
            );
        }
        let ctx = self.ctx;
        let finish = async {
            while let Some(done) = writes.next().await {
                if let Some((lane, next)) = self.write_done(done)? {
                    writes.push(write(lane, next));
                }
            }
            Ok(())
        };
        let in_time = tokio::time::timeout(ctx.spec.shutdown_timeout, finish).await;
        self.commit().await;
        in_time.unwrap_or_else(|_| {
            bail!(
                "shutdown timeout ({:?}) ran out with {} message(s) not written; they were not committed and will be consumed again",
                ctx.spec.shutdown_timeout,
                self.offsets.in_flight()
            )
        })
    }
}

/// Whether `m` lies at or past the drain target of its partition.
fn beyond(drain: &Drain, m: &Message) -> bool {
    drain
        .borrow()
        .as_ref()
        .is_some_and(|t| m.offset >= t.get(&m.partition).copied().unwrap_or(0))
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
    let origin = || origin_of(ctx, m);
    let replayed;
    let decoded;
    let payload: &[u8] = match (ctx.input, &m.payload) {
        (Input::Topic, Some(payload)) => match decode(ctx, m, payload).await {
            Ok(text) => {
                decoded = text;
                &decoded
            }
            Err(e) => {
                let reason = e.to_string();
                let codec = ctx.codecs.value.name();
                let dl = record::undecodable(spec, codec, payload, reason, origin());
                return dead_letter(ctx, m, dl).await;
            }
        },
        (Input::Topic, None) => {
            let key = match &m.key {
                None => None,
                Some(key) => match patiently(m, || ctx.codecs.key.decode_key(key)).await {
                    Ok(key) => Some(key),
                    Err(e) => {
                        let reason = format!("the tombstone's key cannot be read: {e}");
                        let codec = ctx.codecs.key.name();
                        let dl = record::undecodable(spec, codec, key, reason, origin());
                        return dead_letter(ctx, m, dl).await;
                    }
                },
            };
            let rows = record::tombstone(spec, key.as_ref(), m.timestamp_ms, origin);
            return write_rows(ctx, m, &[], rows).await;
        }
        (Input::DeadLetters(replay), _) => match original(ctx, replay, m, &origin()).await? {
            Some(text) => {
                replayed = text;
                replayed.as_bytes()
            }
            None => return Ok(()),
        },
    };
    // A topic others produce is checked against [validate]'s schema here, as the ingest
    // checks what aqueduct produces.
    if spec.source.is_none()
        && let Err(dl) = record::validate_loaded(spec, payload, origin)
    {
        ctx.metrics.invalid.inc();
        return match spec.validate.on_invalid {
            OnInvalid::DeadLetter => dead_letter(ctx, m, *dl).await,
            OnInvalid::Drop => {
                warn!(partition = m.partition, offset = m.offset, reason = %dl.reason, "invalid record dropped");
                ctx.metrics.dropped.inc();
                Ok(())
            }
            OnInvalid::Fail => bail!(
                "the record at offset {} of partition {} is invalid and validate.on_invalid = \"fail\": {}",
                m.offset,
                m.partition,
                dl.reason
            ),
        };
    }
    // Every table's row, mapped before any is written: the record made ready for jq is not
    // `Send`, so it must not live across a write.
    let rows = match record::to_rows(spec, payload, origin) {
        Ok(rows) => rows,
        Err(dl) => return dead_letter(ctx, m, *dl).await,
    };
    write_rows(ctx, m, payload, rows).await
}

/// The JSON text of message `m`'s `payload`, waiting out a registry that is away.
async fn decode<'p>(
    ctx: &Context,
    m: &Message,
    payload: &'p [u8],
) -> Result<std::borrow::Cow<'p, [u8]>, crate::codec::Error> {
    patiently(m, || ctx.codecs.value.decode(payload)).await
}

/// `decoded`'s answer for message `m`, asked again while the registry is away (the schema of
/// a message it has not seen before cannot be fetched until it is back).
async fn patiently<T, F>(
    m: &Message,
    mut decoded: impl FnMut() -> F,
) -> Result<T, crate::codec::Error>
where
    F: std::future::Future<Output = Result<T, crate::codec::Error>>,
{
    let mut attempt = 0u32;
    loop {
        match decoded().await {
            Err(e) if e.is_transient() => {
                attempt += 1;
                let delay = backoff(WRITE_BACKOFF.0, WRITE_BACKOFF.1, attempt + 1);
                warn!(partition = m.partition, offset = m.offset, error = %e, retry_in = ?delay, "the message's schema cannot be fetched; retrying (offset not committed)");
                tokio::time::sleep(delay).await;
            }
            decoded => return decoded,
        }
    }
}

/// Makes each table's change of message `m` (or dead-letters it), tables in parallel.
async fn write_rows(
    ctx: &Context,
    m: &Message,
    payload: &[u8],
    rows: Vec<record::TableRow>,
) -> anyhow::Result<()> {
    let mut written = true;
    if rows.len() == 1 {
        for row in rows {
            written = write_table(ctx, m, payload, 0, row).await?;
        }
    } else {
        let writes = rows
            .into_iter()
            .enumerate()
            .map(|(table, row)| write_table(ctx, m, payload, table, row));
        for outcome in futures::future::join_all(writes).await {
            written &= outcome?;
        }
    }
    if written && ctx.dry_run() {
        add(&ctx.metrics.replay.would_write, 1);
    } else if written {
        ctx.metrics.record_written(m.received_at_ms);
    }
    Ok(())
}

/// Writes the record's row of the spec's `table`-th table, retrying until it is written, or
/// dead-letters it naming the table. `Ok(true)`: written (in a dry run: would be).
async fn write_table(
    ctx: &Context,
    m: &Message,
    payload: &[u8],
    table: usize,
    row: record::TableRow,
) -> anyhow::Result<bool> {
    let spec = &ctx.spec;
    let row = match row {
        Ok(row) => row,
        Err(dl) => return dead_letter(ctx, m, *dl).await.map(|()| false),
    };
    if ctx.dry_run() {
        return Ok(true);
    }
    let mut attempt = 0u32;
    loop {
        let started = Instant::now();
        let error = match ctx.writer.write(table, &row).await {
            Ok(()) => {
                ctx.metrics.row_written(table, started.elapsed());
                return Ok(true);
            }
            Err(e) => e,
        };
        if crate::cassandra::is_data_error(&error) {
            let reason = error.to_string();
            // Decoded again: a rare path, and the hot one keeps no copy.
            let record = serde_json::from_slice(payload).unwrap_or(Value::Null);
            let mut dl =
                DeadLetter::new(&spec.name, Stage::Write, reason, record, origin_of(ctx, m));
            dl.table = Some(spec.cassandra.tables[table].name.clone());
            return dead_letter(ctx, m, dl).await.map(|()| false);
        }
        attempt += 1;
        ctx.metrics.cql_retries.inc();
        let delay = backoff(WRITE_BACKOFF.0, WRITE_BACKOFF.1, attempt + 1);
        let table = &spec.cassandra.tables[table].name;
        warn!(partition = m.partition, offset = m.offset, table, attempt, error = %error, retry_in = ?delay, "write failed; retrying (offset not committed)");
        tokio::time::sleep(delay).await;
    }
}

/// Where message `m` came from, for its dead letter.
fn origin_of(ctx: &Context, m: &Message) -> Origin {
    Origin::Kafka {
        topic: ctx.topic().to_owned(),
        partition: m.partition,
        offset: m.offset,
    }
}

/// For a replay: the original record of the dead letter `m`, once it has passed the ingest's
/// checks again (the schema or the key may be what was fixed). `None` when it goes no further:
/// dead-lettered again, passed over (`--since`), or left alone; an error only when its new dead
/// letter could not be produced.
async fn original(
    ctx: &Context,
    replay: Replay,
    m: &Message,
    origin: &Origin,
) -> anyhow::Result<Option<String>> {
    let counts = &ctx.metrics.replay;
    add(&counts.read, 1);
    let text = match replay::original(m.payload.as_deref().unwrap_or_default(), replay.since) {
        Original::Record(text) => text,
        // A payload the codec could not read before: read again (its schema may be back).
        Original::Payload(payload) => match decode(ctx, m, &payload).await {
            Ok(text) => String::from_utf8_lossy(&text).into_owned(),
            Err(e) => {
                let (spec, codec) = (&ctx.spec, ctx.codecs.value.name());
                let dl = record::undecodable(spec, codec, &payload, e.to_string(), origin.clone());
                return dead_letter(ctx, m, dl).await.map(|()| None);
            }
        },
        Original::Skip => {
            add(&counts.skipped, 1);
            return Ok(None);
        }
        Original::Unreadable(reason) => {
            add(&counts.unreadable, 1);
            warn!(partition = m.partition, offset = m.offset, %reason, "message of the dead-letter topic left alone");
            return Ok(None);
        }
    };
    match record::admit(&ctx.spec, &text, origin) {
        Ok(_) => Ok(Some(text)),
        Err(rejected) => dead_letter(ctx, m, *rejected.dead_letter)
            .await
            .map(|()| None),
    }
}

async fn dead_letter(ctx: &Context, m: &Message, dl: DeadLetter) -> anyhow::Result<()> {
    let topic = &ctx.spec.kafka.dead_letter_topic;
    if ctx.dry_run() {
        info!(partition = m.partition, offset = m.offset, stage = dl.stage.name(), reason = %dl.reason, "would be dead-lettered again");
        add(&ctx.metrics.replay.would_dead_letter, 1);
        return Ok(());
    }
    warn!(partition = m.partition, offset = m.offset, dead_letter_topic = %topic, reason = %dl.reason, "record dead-lettered");
    let stage = dl.stage;
    ctx.producer
        .dead_letter(topic, m.key.as_deref(), dl, m.received_at_ms)
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
            payload: None,
            timestamp_ms: None,
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
