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
//!
//! A write is lost only when every replica that acknowledged it lost its window: at RF 3 and
//! `local_quorum` two replicas acknowledge each write, so one node restarting loses nothing the
//! others do not hold. So a restart is reported only when as many nodes as acknowledge each
//! write ([`acks_per_write`]) lost overlapping windows: the node that restarted, others that
//! restarted, and nodes down now (each may come back having lost its window). Each node is
//! asked on its own every second (within 2 s), so a node down is known as such within 3 s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scylla::client::session::Session;
use scylla::cluster::Node;
use scylla::policies::load_balancing::{NodeIdentifier, SingleTargetLoadBalancingPolicy};
use scylla::statement::Consistency;
use scylla::statement::unprepared::Statement;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
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

/// How many replicas acknowledge each write, for the table of the spec that has the fewest:
/// as many nodes must lose their unsynced windows together for an acknowledged write to be
/// lost. From each table's consistency level and its keyspace's replication as the cluster
/// holds it; 1 (every restart counts, as at RF 1) when the replication cannot be read.
pub async fn acks_per_write(session: &Session, c: &spec::Cassandra) -> usize {
    let mut fewest = usize::MAX;
    for table in &c.tables {
        let replication = match keyspace_replication(session, &table.keyspace).await {
            Ok(replication) => replication,
            Err(e) => {
                warn!(keyspace = %table.keyspace, error = %e, "cannot read the keyspace's replication; taking every node restart as a loss");
                return 1;
            }
        };
        fewest = fewest.min(acks(table.consistency, &replication));
    }
    fewest.max(1)
}

/// `system_schema.keyspaces`' replication map of `keyspace`.
async fn keyspace_replication(
    session: &Session,
    keyspace: &str,
) -> Result<HashMap<String, String>, String> {
    let rows = session
        .query_unpaged(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .map_err(|e| e.to_string())?
        .into_rows_result()
        .map_err(|e| e.to_string())?;
    rows.single_row::<(HashMap<String, String>,)>()
        .map(|(replication,)| replication)
        .map_err(|e| e.to_string())
}

/// The replicas that acknowledge a write at `consistency` under `replication` (a keyspace's
/// map: `class` and `replication_factor`, or a factor per data centre). `local_quorum` and
/// `each_quorum` take the data centre with the fewest replicas, as the one this loader writes
/// to is not known here; a factor like `3/1` (transient replicas) counts its full replicas.
fn acks(consistency: Consistency, replication: &HashMap<String, String>) -> usize {
    let factor = |text: &str| {
        let full = text.split('/').next().unwrap_or(text).trim();
        full.parse::<usize>().unwrap_or(1)
    };
    let per_dc: Vec<usize> = match replication.get("class").map(String::as_str) {
        Some(class) if class.ends_with("SimpleStrategy") => {
            vec![
                replication
                    .get("replication_factor")
                    .map_or(1, |f| factor(f)),
            ]
        }
        Some(class) if class.ends_with("NetworkTopologyStrategy") => replication
            .iter()
            .filter(|(key, _)| *key != "class")
            .map(|(_, f)| factor(f))
            .collect(),
        _ => vec![1],
    };
    let total: usize = per_dc.iter().sum::<usize>().max(1);
    let local = per_dc.iter().copied().min().unwrap_or(1).max(1);
    let quorum = |n: usize| n / 2 + 1;
    let needed = match consistency {
        Consistency::Any | Consistency::One | Consistency::LocalOne => 1,
        Consistency::Two => 2,
        Consistency::Three => 3,
        Consistency::Quorum | Consistency::Serial => quorum(total),
        Consistency::LocalQuorum | Consistency::EachQuorum | Consistency::LocalSerial => {
            quorum(local)
        }
        Consistency::All => total,
    };
    needed.clamp(1, total)
}

/// What a node may have lost: the writes it acknowledged from `from`, its last answer less
/// the depth, to `to`. A node that stops answering may still be acknowledging writes (a busy
/// node's checks time out too), so its window runs until it is seen back, or for a node still
/// down, until now.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Exposure {
    from: Instant,
    to: Instant,
}

impl Exposure {
    fn of(last_seen: Instant, depth: Duration, until: Instant) -> Exposure {
        Exposure {
            from: last_seen.checked_sub(depth).unwrap_or(last_seen),
            to: until,
        }
    }

    fn overlaps(&self, other: &Exposure) -> bool {
        self.from <= other.to && other.from <= self.to
    }
}

/// Whether `host`'s restart with `exposure` can have lost acknowledged writes, given the
/// exposures of the nodes that restarted or are down (`others`; `host`'s own earlier ones are
/// passed over, each node counts once): `Ok(moment)`, the earliest moment such a write can
/// have been made, when `acks` nodes' windows overlap `exposure` (pairwise, which counts
/// more than overlap all at once where `acks` is 3 or more: a rewind too many, never one too
/// few); else `Err(n)`, how many nodes do.
fn lost_after(
    host: uuid::Uuid,
    exposure: Exposure,
    others: &[(uuid::Uuid, Exposure)],
    acks: usize,
) -> Result<Instant, usize> {
    if acks <= 1 {
        return Ok(exposure.from);
    }
    let mut hosts = Vec::new();
    let mut moment: Option<Instant> = None;
    for (other, o) in others
        .iter()
        .filter(|(h, o)| *h != host && o.overlaps(&exposure))
    {
        if !hosts.contains(other) {
            hosts.push(*other);
        }
        // A write both lost was made where both windows run.
        let start = exposure.from.max(o.from);
        moment = Some(moment.map_or(start, |m| m.min(start)));
    }
    let nodes = 1 + hosts.len();
    match moment {
        Some(moment) if nodes >= acks => Ok(moment),
        _ => Err(nodes),
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

/// Asks each node every second until `stop`, reporting through the returned [`Restarts`]: for
/// each node that came back with a new generation and, with the nodes that restarted or are
/// down in overlapping windows, makes `acks` nodes that may have lost a write, the earliest
/// moment of those windows; and, after each round, the horizon. Every restart is counted in
/// `aqueduct_node_restarts_total` by what was decided.
pub fn watch(
    session: Arc<Session>,
    depth: Duration,
    acks: usize,
    metrics: Arc<Metrics>,
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
    let watcher = Watcher {
        depth,
        acks,
        metrics,
        nodes: HashMap::new(),
        restarted: Vec::new(),
        lost_after: lost_after_tx,
    };
    (restarts, watcher.run(session, horizon_tx, stop))
}

/// A node as the watcher last saw it.
struct Seen {
    generation: i32,
    last_seen: Instant,
    /// Whether it answered the last round.
    up: bool,
}

struct Watcher {
    depth: Duration,
    acks: usize,
    metrics: Arc<Metrics>,
    nodes: HashMap<uuid::Uuid, Seen>,
    /// The windows of the restarts seen within [`MAX_OUTAGE`], by node.
    restarted: Vec<(uuid::Uuid, Exposure)>,
    lost_after: mpsc::UnboundedSender<Instant>,
}

impl Watcher {
    async fn run(
        mut self,
        session: Arc<Session>,
        horizon: watch::Sender<Option<Instant>>,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
            let cluster = session.get_cluster_state();
            let asked = cluster.get_nodes_info().iter().map(|node| {
                let session = session.clone();
                let node = node.clone();
                async move { (node.host_id, ask(&session, node).await) }
            });
            let answers = futures::future::join_all(asked).await;
            let now = Instant::now();
            for (host_id, answer) in answers {
                match answer {
                    Ok((host, generation)) => self.seen(host, generation, now),
                    Err(e) => {
                        debug!(host = %host_id, error = %e, "node check failed");
                        self.missed(host_id);
                    }
                }
            }
            self.restarted
                .retain(|(_, e)| now.duration_since(e.to) <= MAX_OUTAGE);
            // Sent after the restart, so the loader has the moment before it may forget it.
            horizon.send_replace(horizon_of(&self.nodes, now, self.depth));
        }
    }

    /// A node answered with `generation` at `now`.
    fn seen(&mut self, host: uuid::Uuid, generation: i32, now: Instant) {
        let before = self.nodes.insert(
            host,
            Seen {
                generation,
                last_seen: now,
                up: true,
            },
        );
        let Some(before) = before.filter(|b| b.generation != generation) else {
            return;
        };
        let exposure = Exposure::of(before.last_seen, self.depth, now);
        let down = self
            .nodes
            .iter()
            .filter(|(_, node)| !node.up)
            .map(|(other, node)| (*other, Exposure::of(node.last_seen, self.depth, now)));
        let others: Vec<(uuid::Uuid, Exposure)> =
            self.restarted.iter().copied().chain(down).collect();
        self.restarted.push((host, exposure));
        let acks = self.acks;
        match lost_after(host, exposure, &others, acks) {
            Ok(moment) => {
                self.metrics.node_restart(true);
                info!(%host, depth = ?self.depth, acks, "a Cassandra node restarted: with the others that restarted or are down, as many nodes as acknowledge each write may have lost their unsynced windows; what was acknowledged in them is written again");
                let _ = self.lost_after.send(moment);
            }
            Err(nodes) => {
                self.metrics.node_restart(false);
                info!(%host, nodes, acks, "a Cassandra node restarted: nothing to write again, as {nodes} of the {acks} replicas that acknowledge each write restarted or are down within one unsynced window");
            }
        }
    }

    /// A node did not answer this round.
    fn missed(&mut self, host: uuid::Uuid) {
        if let Some(node) = self.nodes.get_mut(&host) {
            node.up = false;
        }
    }
}

/// The earliest moment a later restart could name: the oldest last sighting (of the nodes
/// seen within [`MAX_OUTAGE`]) less `depth`.
fn horizon_of(nodes: &HashMap<uuid::Uuid, Seen>, now: Instant, depth: Duration) -> Option<Instant> {
    nodes
        .values()
        .map(|node| node.last_seen)
        .filter(|last_seen| now.duration_since(*last_seen) <= MAX_OUTAGE)
        .min()
        .map(|oldest| oldest.checked_sub(depth).unwrap_or(oldest))
}

/// A node's host id and gossip generation, asked of that node alone (within 2 s).
async fn ask(session: &Session, node: Arc<Node>) -> Result<(uuid::Uuid, i32), String> {
    let mut statement = Statement::new("SELECT host_id, gossip_generation FROM system.local");
    statement.set_load_balancing_policy(Some(SingleTargetLoadBalancingPolicy::new(
        NodeIdentifier::Node(node),
        None,
    )));
    statement.set_request_timeout(Some(Duration::from_secs(2)));
    let rows = session
        .query_unpaged(statement, &[])
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
        let seen = |last_seen| Seen {
            generation: 1,
            last_seen,
            up: true,
        };
        let mut nodes = HashMap::new();
        assert_eq!(horizon_of(&nodes, at(100), depth), None, "nothing seen");
        nodes.insert(a, seen(at(100)));
        nodes.insert(b, seen(at(40)));
        assert_eq!(
            horizon_of(&nodes, at(100), depth),
            Some(at(15)),
            "b is down"
        );
        assert_eq!(
            horizon_of(&nodes, at(40 + 3601), depth),
            Some(at(75)),
            "b gone for more than an hour"
        );
    }

    #[test]
    fn acknowledgements_follow_the_consistency_and_the_replication() {
        let simple = |rf| {
            settings(&[
                ("class", "org.apache.cassandra.locator.SimpleStrategy"),
                ("replication_factor", rf),
            ])
        };
        assert_eq!(acks(Consistency::LocalQuorum, &simple("1")), 1, "RF 1");
        assert_eq!(acks(Consistency::One, &simple("3")), 1, "one");
        assert_eq!(
            acks(Consistency::LocalQuorum, &simple("3")),
            2,
            "quorum of 3"
        );
        assert_eq!(acks(Consistency::Quorum, &simple("5")), 3, "quorum of 5");
        assert_eq!(acks(Consistency::All, &simple("3")), 3, "all");
        assert_eq!(
            acks(Consistency::Three, &simple("2")),
            2,
            "no more than the replicas"
        );
        assert_eq!(
            acks(Consistency::LocalQuorum, &simple("3/1")),
            2,
            "transient"
        );
        let nts = settings(&[
            (
                "class",
                "org.apache.cassandra.locator.NetworkTopologyStrategy",
            ),
            ("dc1", "3"),
            ("dc2", "2"),
        ]);
        assert_eq!(
            acks(Consistency::LocalQuorum, &nts),
            2,
            "the smaller data centre"
        );
        assert_eq!(acks(Consistency::Quorum, &nts), 3, "quorum of 5 in all");
        assert_eq!(acks(Consistency::One, &settings(&[])), 1, "unknown class");
    }

    #[test]
    fn a_restart_loses_writes_only_with_as_many_overlapping_windows_as_acknowledgements() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let depth = Duration::from_secs(25);
        let (a, b, c) = (
            uuid::Uuid::from_u128(1),
            uuid::Uuid::from_u128(2),
            uuid::Uuid::from_u128(3),
        );
        // Last answered at `seen`, back (or still down) at `until`.
        let window = |seen, until| Exposure::of(at(seen), depth, at(until));
        let back = window(100, 130);
        // RF 1 or `one`: every restart, from its window's start.
        assert_eq!(lost_after(a, back, &[], 1), Ok(at(75)));
        // RF 3 at quorum: one node alone, or with another whose window ended long before, no.
        assert_eq!(lost_after(a, back, &[], 2), Err(1));
        assert_eq!(lost_after(a, back, &[(b, window(30, 45))], 2), Err(1));
        // The same node's earlier restart is the same node.
        assert_eq!(lost_after(a, back, &[(a, window(90, 95))], 2), Err(1));
        // Another down or back within the window: yes, from where both windows run.
        assert_eq!(lost_after(a, back, &[(b, window(90, 130))], 2), Ok(at(75)));
        assert_eq!(lost_after(a, back, &[(b, window(110, 130))], 2), Ok(at(85)));
        // A node counted once, however many windows it has.
        assert_eq!(
            lost_after(a, back, &[(b, window(90, 95)), (b, window(120, 130))], 3),
            Err(2)
        );
        assert_eq!(
            lost_after(a, back, &[(b, window(90, 95)), (c, window(120, 130))], 3),
            Ok(at(75))
        );
    }

    fn watcher(acks: usize) -> (Watcher, mpsc::UnboundedReceiver<Instant>, Arc<Metrics>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let metrics = Arc::new(Metrics::new("test", &["t"]));
        let watcher = Watcher {
            depth: Duration::from_secs(25),
            acks,
            metrics: metrics.clone(),
            nodes: HashMap::new(),
            restarted: Vec::new(),
            lost_after: tx,
        };
        (watcher, rx, metrics)
    }

    #[test]
    fn the_watcher_rewinds_for_two_of_three_nodes_down_together_and_not_for_one() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let (a, b, c) = (
            uuid::Uuid::from_u128(1),
            uuid::Uuid::from_u128(2),
            uuid::Uuid::from_u128(3),
        );
        let (mut w, mut lost, metrics) = watcher(2);
        for node in [a, b, c] {
            w.seen(node, 1, at(1));
        }
        // c killed at 2 and back at 40 with a new generation: the others held every write.
        w.missed(c);
        w.seen(c, 2, at(40));
        assert!(lost.try_recv().is_err(), "one node of three rewound");
        // Killed again at once and back: still one node, its own earlier window not another.
        w.missed(c);
        w.seen(c, 3, at(45));
        assert!(lost.try_recv().is_err(), "a node counted twice");
        // b and c killed together; b back while c is still down: rewound from b's window.
        w.seen(a, 1, at(100));
        w.seen(b, 1, at(100));
        w.seen(c, 3, at(100));
        w.missed(b);
        w.missed(c);
        w.seen(b, 2, at(130));
        assert_eq!(lost.try_recv().ok(), Some(at(75)));
        let text = metrics.render();
        assert!(
            text.contains(r#"aqueduct_node_restarts_total{pipeline="test",decision="rewound"} 1"#)
                && text.contains(
                    r#"aqueduct_node_restarts_total{pipeline="test",decision="not_needed"} 2"#
                ),
            "{text}"
        );
    }

    #[test]
    fn a_single_node_restart_is_always_rewound() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let node = uuid::Uuid::from_u128(1);
        let (mut w, mut lost, _) = watcher(1);
        w.seen(node, 1, at(100));
        w.missed(node);
        w.seen(node, 2, at(130));
        assert_eq!(lost.try_recv().ok(), Some(at(75)));
    }
}
