//! The ingest lease: one ingest process of a pipeline polls at a time.
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
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::kafka::{self, Error};
use crate::spec;

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
        let consumer: BaseConsumer<LeaseContext> = kafka::lease_config(k)
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
        // are read by the [`super::store::Store`].
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
