//! Wires the stages: the only module that knows them all. [`run`] builds every client first
//! (so a bad address fails before anything moves), then runs ingest and/or load until the
//! shutdown token is cancelled, or, in a [`Mode`] that ends, until the loader has drained
//! what the topic held.

mod ingest;
mod load;
pub mod replay;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info};

use crate::cassandra::{self, write::Writer};
use crate::codec::Codecs;
use crate::kafka::{self, consume::Consumer, produce::Producer};
use crate::metrics::Metrics;
use crate::spec::Spec;
use crate::{progress, shutdown};

/// Which halves of the pipeline this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Half {
    /// Poll the API, validate, produce to Kafka.
    Ingest,
    /// Consume from Kafka, map, write to Cassandra.
    Load,
}

/// What a run does and when it ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Poll on schedule and load until stopped.
    Live,
    /// One poll, then load what the topic holds, and exit.
    Once,
    /// `aqueduct backfill`: fetch the time windows of this range once (without the live
    /// cursor), then load like [`Mode::Once`].
    Backfill {
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    },
    /// `aqueduct replay`: the loader alone, over the dead-letter topic up to its end as of the
    /// start, in the group `<group_id>-replay`; serves no metrics (the live pipeline does).
    Replay(replay::Replay),
}

impl Mode {
    /// What the ingest half does in this mode (`None`: it does not run).
    fn ingest(self) -> Option<ingest::Mode> {
        match self {
            Mode::Live => Some(ingest::Mode::Live),
            Mode::Once => Some(ingest::Mode::Once),
            Mode::Backfill { from, to } => Some(ingest::Mode::Backfill { from, to }),
            Mode::Replay(_) => None,
        }
    }

    /// Whether the run ends by itself once the loader has read up to a drain target.
    fn drains(self) -> bool {
        self != Mode::Live
    }
}

/// How to run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub mode: Mode,
    /// `None`: both halves (a replay runs the loader only, whatever this says).
    pub only: Option<Half>,
    /// How a run that ends by itself shows its progress (`None`: not at all).
    pub progress: Option<progress::Display>,
}

impl Options {
    fn runs(&self, half: Half) -> bool {
        match self.mode {
            Mode::Replay(_) => half == Half::Load,
            _ => self.only.is_none_or(|only| only == half),
        }
    }
}

/// Runs the pipeline until `shutdown` is cancelled (or, in a mode that ends, until done).
pub async fn run(
    spec: Arc<Spec>,
    options: Options,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    // One JoinSet owns every task of the run: the work (ingest, load) and the services that
    // last as long as the work (the signal watcher, from the start, and the metrics server, so
    // a last scrape sees the final counts), which stop gracefully when `work_done` is cancelled.
    let work_done = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut work = HashSet::new();
    tasks.spawn(shutdown::watch_signals(shutdown.clone(), work_done.clone()).map(Ok));

    let k = &spec.kafka;
    let produces = spec.source.is_some() && options.runs(Half::Ingest);
    if spec.source.is_none() && options.only == Some(Half::Ingest) {
        anyhow::bail!(
            "--only ingest: {} has no [source]; it loads topic {} as others produce it",
            spec.path.display(),
            k.topic
        );
    }
    let input = load::Input::of(options.mode);
    // Kafka's clients and Cassandra's session are made at the same time (each takes a few
    // round trips); the loader's consumer starts joining its group as soon as it is made.
    let kafka_clients = async {
        kafka::check_connection(k).await?;
        kafka::ensure_topics(k, spec.source.is_some()).await?;
        let producer = Producer::new(k)?;
        let codecs = Codecs::connect(k, produces)
            .await
            .context("kafka.schema_registry")?;
        let consumer = if options.runs(Half::Load) {
            let group = input.group(k);
            Some(Consumer::new(k, input.topic(k), &group, metrics.clone())?)
        } else {
            None
        };
        Ok::<_, anyhow::Error>((producer, Arc::new(codecs), consumer))
    };
    let cassandra_session = async {
        if !options.runs(Half::Load) {
            return Ok(None);
        }
        let c = &spec.cassandra;
        let session = Arc::new(cassandra::connect(c).await?);
        cassandra::ddl::ensure(&session, c).await?;
        let unsynced = cassandra::restarts::depth(&session, c).await;
        let acks = cassandra::restarts::acks_per_write(&session, c).await;
        let writer = Writer::prepare(session, c).await?;
        Ok::<_, anyhow::Error>(Some((writer, (unsynced, acks))))
    };
    let ((producer, codecs, consumer), cassandra) =
        tokio::try_join!(kafka_clients, cassandra_session)?;
    let loader = consumer
        .zip(cassandra)
        .map(|(consumer, (writer, restarts))| (consumer, input, writer, restarts));
    // A replay runs beside the live pipeline, which serves the metrics address.
    let metrics_address = spec
        .metrics_address
        .filter(|_| !matches!(options.mode, Mode::Replay(_)));
    if let Some(addr) = metrics_address {
        let server = serve_metrics(addr, vec![metrics.clone()], work_done.clone()).await?;
        tasks.spawn(server);
    }
    let tables: Vec<String> = spec
        .cassandra
        .tables
        .iter()
        .map(cassandra::ddl::table_name)
        .collect();
    info!(pipeline = %spec.name, topic = %k.topic, tables = %tables.join(", "), "pipeline started");
    if !options.runs(Half::Load) {
        // Ingest only: connected once its clients are built; the loader says so itself when
        // the group assigns it partitions.
        metrics.ready.store(true, Ordering::Relaxed);
    }

    // In a mode that ends, the loader stops when it has read up to these offsets.
    let (drain_tx, drain_rx) = watch::channel::<Option<HashMap<i32, i64>>>(None);
    // A failing half stops the other.
    let stop = shutdown.child_token();
    let drain_topic = match &loader {
        Some((_, input, _, _)) => input.topic(k).to_owned(),
        None => k.topic.clone(),
    };
    let drains = options.mode.drains();
    if let Some(mode) = options.mode.ingest().filter(|_| produces) {
        let (spec, producer, codecs, metrics, stop) = (
            spec.clone(),
            producer.clone(),
            codecs.clone(),
            metrics.clone(),
            stop.clone(),
        );
        let loads = loader.is_some();
        let ingest = tasks.spawn(
            async move {
                if loads {
                    loader_ready(&metrics, &stop).await;
                }
                ingest::run(&spec, &producer, &codecs, &metrics, &stop, mode).await?;
                if drains {
                    set_drain_target(&spec, drain_topic, &drain_tx).await?;
                }
                Ok::<_, anyhow::Error>(())
            }
            .in_current_span(),
        );
        work.insert(ingest.id());
    } else if drains {
        // Before the loader takes a message: a replay must not read what it dead-letters
        // again, which lies past the end as of now.
        set_drain_target(&spec, drain_topic, &drain_tx).await?;
    }
    if let (Some(display), true, true) = (options.progress, drains, loader.is_some()) {
        let report = progress::report(metrics.clone(), display, work_done.clone());
        tasks.spawn(report.map(Ok));
    }
    if let Some((consumer, input, writer, (unsynced, acks))) = loader {
        // Node restarts, for the loader to write again what they may have lost.
        let restarts = if unsynced.is_zero() {
            cassandra::restarts::Restarts::none()
        } else {
            let session = writer.session().clone();
            let (restarts, watch) = cassandra::restarts::watch(
                session,
                unsynced,
                acks,
                metrics.clone(),
                work_done.clone(),
            );
            tasks.spawn(watch);
            restarts
        };
        let ctx = load::Context {
            spec: spec.clone(),
            writer,
            producer: producer.clone(),
            codecs,
            metrics: metrics.clone(),
            input,
        };
        let stop = stop.clone();
        let load = tasks
            .spawn(load::run(ctx, consumer, stop, drain_rx, restarts, drains).in_current_span());
        work.insert(load.id());
    }
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next_with_id().await {
        let (id, outcome) = match joined {
            Ok((id, outcome)) => (id, outcome),
            Err(e) => (
                e.id(),
                Err(anyhow::anyhow!("a pipeline task panicked: {e}")),
            ),
        };
        if let Err(e) = outcome {
            stop.cancel();
            if result.is_ok() {
                result = Err(e);
            }
        }
        if work.remove(&id) && work.is_empty() {
            // Flushed while the services still run: a second signal still exits at once.
            // After a failure (say Kafka gone and the shutdown timeout spent waiting for it),
            // waiting once more would only delay the exit.
            let timeout = if result.is_ok() {
                spec.shutdown_timeout
            } else {
                std::time::Duration::ZERO
            };
            if let Err(e) = flush(&producer, timeout).await {
                result = result.and(Err(e));
            }
            work_done.cancel();
        }
    }
    result
}

/// How long the ingest of a process that loads too waits for its loader before the first poll.
const LOADER_READY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits until the loader of this process has been assigned partitions (so the first page's
/// records are written as they arrive, not after the group has formed), at most
/// [`LOADER_READY_WAIT`]: a loader whose group gives it no partition (more members than
/// partitions) must not hold the ingest back.
async fn loader_ready(metrics: &Metrics, stop: &CancellationToken) {
    let started = tokio::time::Instant::now();
    while !metrics.ready.load(Ordering::Relaxed) && !stop.is_cancelled() {
        if started.elapsed() >= LOADER_READY_WAIT {
            info!(waited = ?LOADER_READY_WAIT, "the loader has no partitions yet; polling anyway");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Waits for every queued message to be delivered, up to `timeout`; a blocking wait for the
/// broker, so off the runtime's worker.
async fn flush(producer: &Producer, timeout: std::time::Duration) -> anyhow::Result<()> {
    let producer = producer.clone();
    tokio::task::spawn_blocking(move || producer.flush(timeout))
        .await
        .context("the producer flush panicked")?
        .context("flushing the producer at exit")
}

/// How long scrapes in hand may take once the work is done.
const METRICS_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Binds the metrics address; the returned server answers `GET /metrics` (OpenMetrics text,
/// every pipeline's), `GET /health` and `GET /ready` (every pipeline ready) until `stop`, then
/// finishes the requests in hand.
pub async fn serve_metrics(
    addr: std::net::SocketAddr,
    metrics: Vec<Arc<Metrics>>,
    stop: CancellationToken,
) -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>> + use<>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("serving metrics on {addr} (metrics.address)"))?;
    let ready = metrics.clone();
    let app = axum::Router::new()
        // Live: the process answers (systemd watchdogs, Kubernetes liveness probes).
        .route("/health", axum::routing::get(|| async { "ok\n" }))
        // Ready: connected and at work (Kubernetes readiness probes).
        .route(
            "/ready",
            axum::routing::get(move || {
                let is_ready = ready.iter().all(|m| m.ready.load(Ordering::Relaxed));
                async move {
                    if is_ready {
                        (axum::http::StatusCode::OK, "ready\n")
                    } else {
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: waiting for the consumer group to assign partitions\n",
                        )
                    }
                }
            }),
        )
        .route(
            "/metrics",
            axum::routing::get(move || {
                let text = Metrics::render_all(&metrics);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        );
    info!(%addr, "serving metrics at /metrics");
    Ok(async move {
        let serve =
            axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
        // Scrapes in hand get a moment to finish; a client that never completes its request
        // must not keep the run from ending.
        let grace = async {
            stop.cancelled().await;
            tokio::time::sleep(METRICS_GRACE).await;
        };
        tokio::select! {
            served = serve => served.with_context(|| format!("serving metrics on {addr}")),
            _ = grace => Ok(()),
        }
    })
}

/// Reads the high watermarks of the topic the loader reads: what a run that ends must load
/// before it exits.
async fn set_drain_target(
    spec: &Arc<Spec>,
    topic: String,
    tx: &watch::Sender<Option<HashMap<i32, i64>>>,
) -> anyhow::Result<()> {
    let spec = spec.clone();
    let targets =
        tokio::task::spawn_blocking(move || kafka::consume::high_watermarks(&spec.kafka, &topic))
            .await
            .context("reading the topic's end offsets")??;
    // The loader may be gone already (it failed); its error is the one reported.
    let _ = tx.send(Some(targets));
    Ok(())
}
