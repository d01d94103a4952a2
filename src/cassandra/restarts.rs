//! Node restarts, and what they may have lost. Cassandra acknowledges a write before its
//! commit log reaches the disk (`commitlog_sync: periodic`, its default, syncs every 10 s), so
//! a node that crashes loses what it acknowledged in that unsynced window, rows whose offsets
//! the loader may already have committed. [`watch`] asks the nodes every second who they are
//! and since when (`system.local`: `host_id`, and `gossip_generation`, which each start of a
//! node changes); when a node comes back with a new generation it reports the moment after
//! which that node's acknowledgements may be lost, and the loader writes those messages again
//! (they are still in Kafka; rows are upserts).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scylla::client::session::Session;
use tokio::sync::mpsc;
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

/// Asks the nodes every second until `stop`; sends, for each node that came back with a new
/// generation, the moment after which its acknowledged writes may be lost: when it was last
/// seen before the restart, less `depth`.
pub async fn watch(
    session: Arc<Session>,
    depth: Duration,
    restarts: mpsc::UnboundedSender<Instant>,
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
    }
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
}
