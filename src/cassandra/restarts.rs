//! Node restarts, and what they may have lost. Cassandra acknowledges a write before its
//! commit log reaches the disk (`commitlog_sync: periodic`, its default, syncs every 10 s), so
//! a node that crashes loses what it acknowledged in that unsynced window, rows whose offsets
//! the loader may already have committed. [`watch`] asks the nodes every second who they are
//! and since when (`system.local`: `host_id`, and `gossip_generation`, which each start of a
//! node changes); when a node comes back with a new generation it reports the moment after
//! which that node's acknowledgements may be lost, and the loader writes those messages again
//! (they are still in Kafka; rows are upserts). It also says how far back such a moment could
//! lie, so the loader keeps its history of positions exactly that long, however long a node
//! stays down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scylla::client::session::Session;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::spec;

/// How often the nodes are asked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Cassandra's default when a node does not say (`commitlog_sync_period`).
const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// How far back to write again after a restart: twice the node's unsynced window (a periodic
/// sync that falls behind blocks writes only at 1.5 windows, and a sync itself takes time on a
/// busy disk) and 5 s. Zero when the spec turns it off.
pub async fn depth(session: &Session, c: &spec::Cassandra) -> Duration {
    let window = match c.unsynced_window {
        Some(window) => window,
        None => match read_window(session).await {
            Ok(window) => window,
            Err(e) => {
                warn!(error = %e, default = ?DEFAULT_WINDOW, "cannot read the node's commit log sync settings; assuming Cassandra's default");
                DEFAULT_WINDOW
            }
        },
    };
    if window.is_zero() {
        return Duration::ZERO;
    }
    window * 2 + Duration::from_secs(5)
}

/// The unsynced window a node declares in `system_views.settings`.
async fn read_window(session: &Session) -> Result<Duration, String> {
    let rows = session
        .query_unpaged("SELECT name, value FROM system_views.settings", &[])
        .await
        .map_err(|e| e.to_string())?
        .into_rows_result()
        .map_err(|e| e.to_string())?;
    let mut settings = HashMap::new();
    for row in rows
        .rows::<(String, Option<String>)>()
        .map_err(|e| e.to_string())?
    {
        let (name, value) = row.map_err(|e| e.to_string())?;
        if name.starts_with("commitlog_sync") {
            settings.insert(name, value.unwrap_or_default());
        }
    }
    window_of(&settings)
}

/// The window from a node's `commitlog_sync*` settings (5.0 names, or 4.0's `_in_ms` ones).
fn window_of(settings: &HashMap<String, String>) -> Result<Duration, String> {
    let duration = |name: &str| {
        if let Some(text) = settings.get(name) {
            return humantime::parse_duration(text).map_err(|e| format!("{name} = {text}: {e}"));
        }
        let legacy = format!("{name}_in_ms");
        match settings.get(&legacy).map(|ms| ms.parse::<u64>()) {
            Some(Ok(ms)) => Ok(Duration::from_millis(ms)),
            _ => Err(format!("the node does not say its {name}")),
        }
    };
    match settings.get("commitlog_sync").map(String::as_str) {
        Some("batch") => Ok(Duration::ZERO),
        Some("group") => duration("commitlog_sync_group_window"),
        Some("periodic") => duration("commitlog_sync_period"),
        other => Err(format!("unknown commitlog_sync {other:?}")),
    }
}

/// A node not seen for this long no longer holds the horizon back (a node removed for good
/// would keep the loader's history growing); if it does come back, what it lost before the
/// oldest position kept is not written again, and the loader says so.
const MAX_OUTAGE: Duration = Duration::from_secs(3600);

/// What the loader hears from [`watch`].
pub struct Restarts {
    /// For each node that came back with a new generation, the moment after which its
    /// acknowledged writes may be lost.
    pub lost_after: mpsc::UnboundedReceiver<Instant>,
    /// The earliest moment a restart reported from now on could name: every node's last
    /// sighting less the depth, a node down holding it where it was. `None` while no node has
    /// been seen (no restart can be reported, so no history is needed).
    pub horizon: watch::Receiver<Option<Instant>>,
}

impl Restarts {
    /// For a loader that watches no node: no restart is ever reported.
    pub fn none() -> Restarts {
        let (_, lost_after) = mpsc::unbounded_channel();
        let (_, horizon) = watch::channel(None);
        Restarts {
            lost_after,
            horizon,
        }
    }
}

/// Asks the nodes every second until `stop`, reporting through the returned [`Restarts`]: for
/// each node that came back with a new generation, when it was last seen before the restart,
/// less `depth`; and, after each sighting, the horizon.
pub fn watch(
    session: Arc<Session>,
    depth: Duration,
    stop: CancellationToken,
) -> (
    Restarts,
    impl std::future::Future<Output = anyhow::Result<()>>,
) {
    let (lost_after_tx, lost_after) = mpsc::unbounded_channel();
    let (horizon_tx, horizon) = watch::channel(None);
    let restarts = Restarts {
        lost_after,
        horizon,
    };
    (
        restarts,
        watch_nodes(session, depth, lost_after_tx, horizon_tx, stop),
    )
}

async fn watch_nodes(
    session: Arc<Session>,
    depth: Duration,
    restarts: mpsc::UnboundedSender<Instant>,
    horizon: watch::Sender<Option<Instant>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    // host_id -> (gossip generation, when last seen with it)
    let mut seen: HashMap<uuid::Uuid, (i32, Instant)> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let (host, generation) = match node(&session).await {
            Ok(node) => node,
            Err(e) => {
                debug!(error = %e, "node check failed");
                continue;
            }
        };
        let now = Instant::now();
        if let Some((before, last_seen)) = seen.insert(host, (generation, now)) {
            if before != generation {
                let lost_after = last_seen.checked_sub(depth).unwrap_or(last_seen);
                info!(%host, ?depth, "a Cassandra node restarted: what it acknowledged in its unsynced window is written again");
                let _ = restarts.send(lost_after);
            }
        }
        // Sent after the restart, so the loader has the moment before it may forget it.
        horizon.send_replace(horizon_of(&seen, now, depth));
    }
}

/// The earliest moment a later restart could name: the oldest last sighting (of the nodes
/// seen within [`MAX_OUTAGE`]) less `depth`.
fn horizon_of(
    seen: &HashMap<uuid::Uuid, (i32, Instant)>,
    now: Instant,
    depth: Duration,
) -> Option<Instant> {
    seen.values()
        .map(|(_, last_seen)| *last_seen)
        .filter(|last_seen| now.duration_since(*last_seen) <= MAX_OUTAGE)
        .min()
        .map(|oldest| oldest.checked_sub(depth).unwrap_or(oldest))
}

/// The coordinator's host id and gossip generation.
async fn node(session: &Session) -> Result<(uuid::Uuid, i32), String> {
    let rows = session
        .query_unpaged("SELECT host_id, gossip_generation FROM system.local", &[])
        .await
        .map_err(|e| e.to_string())?
        .into_rows_result()
        .map_err(|e| e.to_string())?;
    rows.single_row::<(uuid::Uuid, i32)>()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_window_follows_the_sync_mode() {
        let periodic = settings(&[
            ("commitlog_sync", "periodic"),
            ("commitlog_sync_period", "10000ms"),
        ]);
        assert_eq!(window_of(&periodic), Ok(Duration::from_secs(10)));
        let legacy = settings(&[
            ("commitlog_sync", "periodic"),
            ("commitlog_sync_period_in_ms", "2000"),
        ]);
        assert_eq!(window_of(&legacy), Ok(Duration::from_secs(2)));
        let group = settings(&[
            ("commitlog_sync", "group"),
            ("commitlog_sync_group_window", "15ms"),
        ]);
        assert_eq!(window_of(&group), Ok(Duration::from_millis(15)));
        let batch = settings(&[("commitlog_sync", "batch")]);
        assert_eq!(window_of(&batch), Ok(Duration::ZERO));
        assert!(window_of(&settings(&[])).is_err());
    }

    #[test]
    fn a_node_down_holds_the_horizon_until_it_is_gone_too_long() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let depth = Duration::from_secs(25);
        let (a, b) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let mut seen = HashMap::new();
        assert_eq!(horizon_of(&seen, at(100), depth), None, "nothing seen");
        seen.insert(a, (1, at(100)));
        seen.insert(b, (1, at(40)));
        assert_eq!(horizon_of(&seen, at(100), depth), Some(at(15)), "b is down");
        assert_eq!(
            horizon_of(&seen, at(40 + 3601), depth),
            Some(at(75)),
            "b gone for more than an hour"
        );
    }
}
