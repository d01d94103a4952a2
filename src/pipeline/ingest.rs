//! Ingest: on each tick, fetch every page of a poll, select its records, validate each, and
//! produce it (or its dead letter). A page's records are all acknowledged by Kafka before the
//! next page is fetched, so a poll never moves on past records that are not safely stored.
//!
//! A page stays the body the API sent; each record is its JSON text cut out of it, decoded
//! once for the schema and the key, and produced as that text (nothing is re-serialized). At
//! most [`IN_FLIGHT`] records of a page await Kafka at once, so memory stays bounded by the
//! body, whatever the page size.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

use anyhow::bail;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::codec::Codecs;
use crate::dead_letter::{self, DeadLetter, Origin, Stage};
use crate::incremental;
use crate::incremental::lease::Lease;
use crate::incremental::store::{self, Found, Store};
use crate::kafka::produce::Producer;
use crate::metrics::Metrics;
use crate::record::{self, Rejected};
use crate::source::http::poll::Interrupted;
use crate::source::http::request::TimeWindow;
use crate::source::http::{self, Bindings, Client, FetchError};
use crate::source::schedule::Ticker;
use crate::spec::{Cursor, Incremental, OnInvalid, Parent, Source, Spec, Window};

/// Records of a page produced and not yet acknowledged, at most.
const IN_FLIGHT: usize = 1024;

/// What a run of the ingest half does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Poll on schedule until stopped.
    Live,
    /// Poll once and return (an error if that poll failed).
    Once,
    /// `aqueduct backfill`: fetch the time windows of this range once, without the live
    /// cursor.
    Backfill {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

/// Runs the ingest half in `mode` until `stop`.
pub async fn run(
    spec: &Spec,
    producer: &Producer,
    codecs: &Codecs,
    metrics: &Metrics,
    stop: &CancellationToken,
    mode: Mode,
) -> anyhow::Result<()> {
    let Some(source) = &spec.source else {
        bail!(
            "{} has no [source]: it loads topic {} as others produce it",
            spec.path.display(),
            spec.kafka.topic
        );
    };
    let client = Client::new(source, Some(metrics))?;
    let ingest = Ingest {
        spec,
        source,
        client,
        producer,
        codecs,
        metrics,
        stop,
    };
    if let Mode::Backfill { from, to } = mode {
        return ingest.backfill(from, to).await;
    }
    // An incremental source polls only while this process holds the pipeline's lease, from
    // the cursor in its store.
    let (mut lease, mut store) = match source.incremental {
        Some(_) => {
            store::ensure_topic(&spec.kafka).await?;
            let lease = Lease::join(&spec.kafka)?;
            (Some(lease), Some(Store::open(&spec.kafka, &spec.name)?))
        }
        None => (None, None),
    };
    let writer = store::writer_name();
    let mut ticker = Ticker::new(&source.schedule);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return Ok(()),
        }
        if let Some(lease) = lease.as_mut()
            && !lease.held()
        {
            info!("waiting for the pipeline's ingest lease (another ingest process may hold it)");
            tokio::select! {
                _ = lease.acquired() => {}
                _ = stop.cancelled() => return Ok(()),
            }
        }
        // While the poll runs, the lease stays here: a revocation waits for it.
        let polling = lease.as_ref().map(Lease::begin);
        if matches!(polling, Some(None)) {
            continue;
        }
        let started = Instant::now();
        let polled = match (&source.incremental, &lease, &mut store) {
            (Some(incremental), Some(lease), Some(store)) if let Some(parent) = &source.parent => {
                let cursors = Cursors {
                    incremental,
                    lease,
                    store,
                    writer: &writer,
                };
                ingest.poll_parents(parent, Some(cursors)).await
            }
            _ if let Some(parent) = &source.parent => ingest.poll_parents(parent, None).await,
            (Some(Incremental::Cursor(cursor)), Some(lease), Some(store)) => {
                ingest.poll_cursor(cursor, lease, store, &writer).await
            }
            (Some(Incremental::Window(window)), Some(lease), Some(store)) => {
                ingest.poll_windows(window, lease, store, &writer).await
            }
            _ => ingest
                .poll(Bindings::default(), |_, _| Ok(()))
                .await
                .map(|_| ()),
        };
        match polled {
            Ok(()) => metrics.poll_succeeded(started.elapsed()),
            Err(PollError::Stopped) => return Ok(()),
            Err(PollError::Fetch(e)) if e.is_fatal() => {
                metrics.failed_polls.inc();
                return Err(e.into());
            }
            Err(PollError::Fetch(e)) => {
                metrics.failed_polls.inc();
                if mode == Mode::Once {
                    return Err(e.into());
                }
                error!(error = %e, "poll failed; the next poll is on schedule");
            }
            Err(PollError::Fatal(e)) => return Err(e),
        }
        drop(polling);
        if mode == Mode::Once {
            return Ok(());
        }
    }
}

enum PollError {
    /// A stop came during a request or the wait before a retry: the poll ends, unfinished
    /// and not failed (its cursor is not saved, so the next run asks for it again).
    Stopped,
    /// The API failed; the pipeline can go on at the next tick.
    Fetch(FetchError),
    /// Kafka failed or a record hit `on_invalid = "fail"`: the pipeline stops.
    Fatal(anyhow::Error),
}

impl From<Interrupted> for PollError {
    fn from(e: Interrupted) -> Self {
        match e {
            Interrupted::Stopped => PollError::Stopped,
            Interrupted::Failed(e) => PollError::Fetch(e),
        }
    }
}

impl From<crate::kafka::Error> for PollError {
    fn from(e: crate::kafka::Error) -> Self {
        PollError::Fatal(e.into())
    }
}

/// What every poll needs.
struct Ingest<'a> {
    spec: &'a Spec,
    source: &'a Source,
    client: Client<'a>,
    producer: &'a Producer,
    codecs: &'a Codecs,
    metrics: &'a Metrics,
    stop: &'a CancellationToken,
}

impl Ingest<'_> {
    /// A `[source.cursor]` poll: from the saved cursor (or the initial one), each page moving
    /// it on; saved once every record of the poll is acknowledged.
    async fn poll_cursor(
        &self,
        cursor: &Cursor,
        lease: &Lease,
        store: &mut Store,
        writer: &str,
    ) -> Result<(), PollError> {
        let found = store.latest().await?;
        let start = match &found {
            Some(found) => found.saved.cursor.clone(),
            None => cursor.initial.clone().unwrap_or(Value::Null),
        };
        let mut value = start.clone();
        let records = self
            .poll(Bindings::cursor(start.clone()), |page, count| {
                self.advance_cursor(cursor, &mut value, page, count)
            })
            .await?;
        if value == start {
            debug!(records, cursor = %value, "the cursor stays");
            return Ok(());
        }
        if self
            .save(lease, store, found.as_ref(), value.clone(), writer)
            .await?
            .is_some()
        {
            info!(records, from = %start, to = %value, "cursor moved");
        }
        Ok(())
    }

    /// Moves `value` on after a page of `count` records; a full page that leaves it where it
    /// was is a stalled keyset walk, said and counted.
    fn advance_cursor(
        &self,
        cursor: &Cursor,
        value: &mut Value,
        page: &[u8],
        count: usize,
    ) -> Result<(), String> {
        let next = incremental::advance(cursor, value, page).map_err(|e| e.to_string())?;
        let page_size = (self.source.endpoint.pagination.as_ref()).and_then(|p| p.page_size);
        if page_size.is_some_and(|size| count >= size as usize) && next == *value {
            self.metrics.cursor_stalls.inc();
            warn!(
                cursor = %next,
                records = count,
                "a full page did not move the cursor: more records share this cursor value than a page holds, so the next poll asks for the same page again; make the cursor compound, e.g. [updated_at, id]"
            );
        }
        *value = next;
        Ok(())
    }

    /// A `[source.parent]` poll: the parents listed, then the source's request for each (at
    /// most `concurrency` at once) with `$parent` bound, and with `[source.cursor]` or
    /// `[source.window]` from that parent's saved cursor. The cursors are one map on the
    /// cursor topic, keyed by parent, saved as each parent's records are acknowledged; a new
    /// parent starts at `source.cursor.initial` (or `source.window.start`), and one no longer
    /// listed keeps its cursor. A parent whose requests fail is said, counted, and asked again
    /// next poll (from its last window done); the others go on, and the poll fails at the end
    /// naming it.
    async fn poll_parents(
        &self,
        parent: &Parent,
        mut cursors: Option<Cursors<'_>>,
    ) -> Result<(), PollError> {
        let parents = http::parents::list(&self.client, parent, self.stop).await?;
        let mut found = None;
        let mut map = serde_json::Map::new();
        if let Some(c) = cursors.as_mut() {
            found = c.store.latest().await?;
            match found.as_ref().map(|f| &f.saved.cursor) {
                None | Some(Value::Null) => {}
                Some(Value::Object(saved)) => map = saved.clone(),
                Some(other) => {
                    return Err(PollError::Fatal(anyhow::anyhow!(
                        "the saved cursor of pipeline {} on topic {} is {other}, not a map of parents' cursors; start the parents over with `aqueduct cursor {} --set '{{}}'`",
                        self.spec.name,
                        self.spec.kafka.cursor_topic,
                        self.spec.path.display()
                    )));
                }
            }
        }
        let incremental = cursors.as_ref().map(|c| c.incremental);
        let initial = match incremental {
            Some(Incremental::Cursor(c)) => c.initial.clone().unwrap_or_default(),
            _ => Value::Null,
        };
        let now = Utc::now();
        let of = parents.len();
        let jobs: Vec<(String, Value, Value)> = parents
            .into_iter()
            .map(|(key, value)| {
                let start = map.get(&key).cloned().unwrap_or_else(|| initial.clone());
                (key, value, start)
            })
            .collect();
        let mut runs = futures::stream::iter(jobs)
            .map(|(key, value, start)| async move {
                let (moved, polled) = self
                    .poll_parent(incremental, &key, value, &start, now)
                    .await;
                (key, start, moved, polled)
            })
            .buffer_unordered(parent.concurrency);
        let mut failed = Vec::new();
        while let Some((key, start, moved, polled)) = runs.next().await {
            match polled {
                Ok(records) => debug!(parent = %key, records, "parent done"),
                Err(PollError::Fetch(e)) if !e.is_fatal() => {
                    self.metrics.failed_parents.inc();
                    warn!(parent = %key, error = %e, "the parent's requests failed; it is asked again next poll, the others go on");
                    failed.push((key.clone(), e));
                }
                Err(e) => return Err(e),
            }
            let Some(c) = cursors.as_mut() else {
                continue;
            };
            if moved == start {
                continue;
            }
            map.insert(key.clone(), moved.clone());
            let saved = self
                .save(
                    c.lease,
                    c.store,
                    found.as_ref(),
                    Value::Object(map.clone()),
                    c.writer,
                )
                .await?;
            match saved {
                Some(saved) => found = Some(saved),
                None => return Ok(()),
            }
            info!(parent = %key, from = %start, to = %moved, "cursor moved");
        }
        if let Some(Incremental::Window(window)) = incremental {
            // As far behind as the parent furthest behind.
            let until = incremental::live_until(window, now);
            let oldest = map
                .values()
                .filter_map(incremental::parse_window_cursor)
                .min();
            let behind = oldest.map_or(Default::default(), |at| {
                (until - at).to_std().unwrap_or_default()
            });
            self.metrics.source_behind.set(behind.as_secs_f64());
        }
        parents_failed(failed, of)
    }

    /// One parent's part of a `[source.parent]` poll, from its cursor `start`: gives where
    /// its cursor moved and how the poll went. A cursor moves only when the parent's poll
    /// succeeded; windows move one by one, so the windows done before a failure stay done.
    async fn poll_parent(
        &self,
        incremental: Option<&Incremental>,
        key: &str,
        parent: Value,
        start: &Value,
        now: DateTime<Utc>,
    ) -> (Value, Result<usize, PollError>) {
        let noop = |_: &[u8], _: usize| Ok(());
        match incremental {
            None => {
                let bindings = Bindings {
                    parent,
                    ..Bindings::default()
                };
                (start.clone(), self.poll(bindings, noop).await)
            }
            Some(Incremental::Cursor(cursor)) => {
                let mut moved = start.clone();
                let bindings = Bindings {
                    cursor: start.clone(),
                    parent,
                    ..Bindings::default()
                };
                let polled = self
                    .poll(bindings, |page, count| {
                        self.advance_cursor(cursor, &mut moved, page, count)
                    })
                    .await;
                match polled {
                    Ok(_) => (moved, polled),
                    Err(_) => (start.clone(), polled),
                }
            }
            Some(Incremental::Window(window)) => {
                let from = match start {
                    Value::Null => window.first_start(now),
                    saved => match incremental::parse_window_cursor(saved) {
                        Some(from) => from,
                        None => {
                            let e = FetchError::Parents(format!(
                                "its saved cursor is {saved}, not an RFC 3339 time; set the map's entry with `aqueduct cursor {} --set`",
                                self.spec.path.display()
                            ));
                            return (start.clone(), Err(PollError::Fetch(e)));
                        }
                    },
                };
                let until = incremental::live_until(window, now);
                let mut moved = start.clone();
                let mut records = 0;
                for w in incremental::windows(window, from, until, Some(window.max_windows)) {
                    let bindings = Bindings {
                        window: Some(w),
                        parent: parent.clone(),
                        ..Bindings::default()
                    };
                    match self.poll(bindings, noop).await {
                        Ok(n) => records += n,
                        Err(e) => return (moved, Err(e)),
                    }
                    moved = incremental::window_cursor(w.end);
                    debug!(parent = %key, start = %w.start, end = %w.end, "window done");
                }
                (moved, Ok(records))
            }
        }
    }

    /// A `[source.window]` poll: the windows after the saved cursor up to now (at most
    /// `max_windows`), oldest first, the cursor saved after each.
    async fn poll_windows(
        &self,
        window: &Window,
        lease: &Lease,
        store: &mut Store,
        writer: &str,
    ) -> Result<(), PollError> {
        let (spec, k) = (self.spec, &self.spec.kafka);
        let mut found = store.latest().await?;
        let now = Utc::now();
        let from = match &found {
            None => window.first_start(now),
            Some(found) => incremental::parse_window_cursor(&found.saved.cursor).ok_or_else(|| {
                PollError::Fatal(anyhow::anyhow!(
                    "the saved cursor of pipeline {} on topic {} is {}, not an RFC 3339 time; set one with `aqueduct cursor {} --set 2026-11-01T00:00:00Z`",
                    spec.name,
                    k.cursor_topic,
                    found.saved.cursor,
                    spec.path.display()
                ))
            })?,
        };
        let until = incremental::live_until(window, now);
        let due = incremental::windows(window, from, until, Some(window.max_windows));
        if due.is_empty() {
            debug!(cursor = %from, "no window is due");
            self.metrics.source_behind.set(0.0);
        }
        for w in due {
            let records = self.poll(Bindings::window(w), |_, _| Ok(())).await?;
            let cursor = incremental::window_cursor(w.end);
            match self
                .save(lease, store, found.as_ref(), cursor, writer)
                .await?
            {
                // What was just saved is the base of the next save.
                Some(saved) => found = Some(saved),
                None => return Ok(()),
            }
            let behind = (until - w.end).to_std().unwrap_or_default();
            self.metrics.source_behind.set(behind.as_secs_f64());
            info!(
                start = %w.start,
                end = %w.end,
                records,
                behind = %humantime::format_duration(Duration::from_secs(behind.as_secs())),
                "window done"
            );
            if lease.asked() {
                info!("handing the ingest lease over after this window");
                return Ok(());
            }
        }
        Ok(())
    }

    /// Saves the cursor unless this process lost the lease or someone else saved one since
    /// `base` (`aqueduct cursor --set`, or a process that held the lease before): the poll's
    /// records are in Kafka either way, and the next poll starts from the newer cursor.
    /// Gives what was saved, if it was.
    async fn save(
        &self,
        lease: &Lease,
        store: &mut Store,
        base: Option<&Found>,
        cursor: Value,
        writer: &str,
    ) -> Result<Option<Found>, PollError> {
        if !lease.held() {
            warn!(
                "the ingest lease passed to another process during the poll; it keeps the cursor it had"
            );
            return Ok(None);
        }
        let size = cursor.to_string().len();
        let saved = match store
            .save_if_unchanged(self.producer, base, cursor, writer)
            .await
        {
            Err(e) if e.is_too_large() => {
                return Err(PollError::Fatal(anyhow::anyhow!(
                    "the cursor ({size} bytes) is more than the cursor topic {} takes in a message: split the parents among pipelines, or raise the topic's max.message.bytes",
                    self.spec.kafka.cursor_topic
                )));
            }
            saved => saved?,
        };
        if saved.is_none() {
            warn!(
                cursor = %store.seen().map_or(serde_json::Value::Null, |found| found.saved.cursor.clone()),
                "the cursor was set by another writer during the poll; keeping theirs"
            );
        }
        Ok(saved)
    }

    /// `aqueduct backfill`: every window from `from` to `to`, once, the live cursor untouched.
    async fn backfill(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> anyhow::Result<()> {
        let Some(Incremental::Window(window)) = &self.source.incremental else {
            bail!("backfill needs a [source.window] in the spec: it fetches time windows");
        };
        let parents = match &self.source.parent {
            None => None,
            Some(parent) => {
                let listed = http::parents::list(&self.client, parent, self.stop)
                    .await
                    .map_err(|e| match e {
                        Interrupted::Stopped => {
                            anyhow::anyhow!("stopped while listing the parents")
                        }
                        Interrupted::Failed(e) => e.into(),
                    })?;
                Some((parent, listed))
            }
        };
        let due = incremental::windows(window, from, to, None);
        let count = due.len();
        for (i, w) in due.into_iter().enumerate() {
            let again = || {
                format!(
                    "the window from {} to {}; run the backfill again from {}",
                    w.start,
                    w.end,
                    w.start.to_rfc3339()
                )
            };
            let polled = match &parents {
                None => self.poll(Bindings::window(w), |_, _| Ok(())).await,
                Some(parents) => self.backfill_parents(parents, w).await,
            };
            let records = match polled {
                Ok(records) => records,
                Err(PollError::Fetch(e)) => return Err(anyhow::Error::new(e).context(again())),
                Err(PollError::Stopped) => return Err(anyhow::anyhow!("stopped").context(again())),
                Err(PollError::Fatal(e)) => return Err(e),
            };
            info!(start = %w.start, end = %w.end, records, window = i + 1, of = count, "backfill window done");
        }
        Ok(())
    }

    /// One window of `aqueduct backfill` for every parent (at most `concurrency` at once);
    /// fails when any parent failed, naming the first.
    async fn backfill_parents(
        &self,
        (parent, listed): &(&Parent, Vec<(String, Value)>),
        w: TimeWindow,
    ) -> Result<usize, PollError> {
        let mut runs = futures::stream::iter(listed.iter().cloned())
            .map(|(key, value)| async move {
                let bindings = Bindings {
                    window: Some(w),
                    parent: value,
                    ..Bindings::default()
                };
                (key, self.poll(bindings, |_, _| Ok(())).await)
            })
            .buffer_unordered(parent.concurrency);
        let (mut records, mut failed) = (0, Vec::new());
        while let Some((key, polled)) = runs.next().await {
            match polled {
                Ok(n) => records += n,
                Err(PollError::Fetch(e)) if !e.is_fatal() => {
                    self.metrics.failed_parents.inc();
                    warn!(parent = %key, error = %e, "the parent's requests failed; the others go on");
                    failed.push((key, e));
                }
                Err(e) => return Err(e),
            }
        }
        parents_failed(failed, listed.len()).map(|()| records)
    }

    /// Fetches every page of one poll from `bindings`, producing each page's records (all
    /// acknowledged before the next page) and calling `on_page` with each page's body and
    /// record count.
    /// Returns how many records the poll received.
    async fn poll(
        &self,
        bindings: Bindings,
        mut on_page: impl FnMut(&[u8], usize) -> Result<(), String>,
    ) -> Result<usize, PollError> {
        let Ingest {
            spec,
            source,
            client,
            producer,
            codecs,
            metrics,
            stop,
        } = self;
        // A request the spec cannot build (a value that cannot go where it says) would fail
        // every poll alike; for a parent, it is that parent's failure, and the others go on.
        let for_parent = !bindings.parent.is_null();
        let mut poll = client
            .poll(&source.endpoint, bindings)
            .map_err(|e| match for_parent {
                true => PollError::Fetch(FetchError::Parents(format!(
                    "the request for this parent cannot be built: {e}"
                ))),
                false => PollError::Fatal(e.into()),
            })?;
        let mut received = 0;
        while let Some(page) = poll.next_page(stop).await? {
            let url = &page.request.url;
            let records = poll.records(&page).map_err(PollError::Fetch)?;
            // A page a rule ignored says nothing about the cursor.
            if page.response.ignored.is_none() {
                on_page(&page.response.body, records.len()).map_err(|message| {
                    PollError::Fetch(FetchError::Cursor {
                        url: url.to_string(),
                        message,
                    })
                })?;
            }
            metrics.polled.inc_by(records.len() as u64);
            received += records.len();
            let origin = Received {
                origin: Origin::Api {
                    url: url.to_string(),
                },
                at_ms: chrono::Utc::now().timestamp_millis(),
            };
            let produce = async {
                let mut sends = FuturesUnordered::new();
                for record in &records {
                    if sends.len() >= IN_FLIGHT {
                        sends.next().await.unwrap_or(Ok(()))?;
                    }
                    sends.push(handle(spec, producer, codecs, metrics, record, &origin));
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
            poll.advance(&page, records.len())
                .map_err(PollError::Fetch)?;
        }
        info!(records = received, "poll done");
        Ok(received)
    }
}

/// A parents' poll's end: failed when any of its `of` parents failed, naming the first.
fn parents_failed(mut failed: Vec<(String, FetchError)>, of: usize) -> Result<(), PollError> {
    if failed.is_empty() {
        return Ok(());
    }
    let n = failed.len();
    let (key, first) = failed.swap_remove(0);
    Err(PollError::Fetch(FetchError::ParentsFailed {
        failed: n,
        of,
        key,
        first: Box::new(first),
    }))
}

/// What a `[source.parent]` poll keeps its parents' cursors with.
struct Cursors<'x> {
    incremental: &'x Incremental,
    lease: &'x Lease,
    store: &'x mut Store,
    writer: &'x str,
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
    codecs: &Codecs,
    metrics: &Metrics,
    text: &str,
    received: &Received,
) -> anyhow::Result<()> {
    match record::admit(spec, text, &received.origin) {
        Ok((key, record)) => {
            metrics.valid.inc();
            let sent = Instant::now();
            let topic = &spec.kafka.topic;
            let key = match key.map(|k| codecs.key.encode_key(&k)).transpose() {
                Ok(key) => key,
                // A key the keys' schema cannot hold.
                Err(e) => {
                    let reason = format!("kafka.key's value: {e}");
                    let origin = received.origin.clone();
                    let dl = DeadLetter::new(&spec.name, Stage::Key, reason, record, origin);
                    return dispose(spec, producer, metrics, dl, None, received).await;
                }
            };
            let payload = match codecs.value.encode(text, &record) {
                Ok(payload) => payload,
                // A record the topic's schema cannot hold: poison, not a broken pipeline.
                Err(e) => {
                    let origin = received.origin.clone();
                    let dl =
                        DeadLetter::new(&spec.name, Stage::Produce, e.to_string(), record, origin);
                    return dispose(spec, producer, metrics, dl, key, received).await;
                }
            };
            match producer
                .send(topic, key.as_deref(), &payload, Some(received.at_ms))
                .await
            {
                Ok(_) => {
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
            // Keyed as its message would have been, when its key fits the keys' schema.
            let key = key.and_then(|k| codecs.key.encode_key(&k).ok());
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
    key: Option<Vec<u8>>,
    received: &Received,
) -> anyhow::Result<()> {
    let k = &spec.kafka;
    match spec.validate.on_invalid {
        OnInvalid::DeadLetter => {
            warn!(topic = %k.dead_letter_topic, reason = %dead_letter.reason, "record dead-lettered");
            let stage = dead_letter.stage;
            producer
                .dead_letter(
                    &k.dead_letter_topic,
                    key.as_deref(),
                    dead_letter,
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
