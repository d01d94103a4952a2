//! Faults on a cluster (`scripts/stack up --cluster`, one of each scenario's own): three Kafka
//! brokers and three Cassandra nodes, topics replicated 3 times with `min.insync.replicas` 2,
//! the keyspace 3 times, rows written at `local_quorum`. Also, apart from faults, where the
//! driver sends each write.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::support::{Background, PrivateCluster, services_up, wait_until};
use crate::{Drain, Writes, scale};

/// How long a Cassandra node stays down (AQUEDUCT_FAULTS_NODE_OUTAGE_SECONDS, default 30).
fn node_outage() -> Duration {
    let secs = std::env::var("AQUEDUCT_FAULTS_NODE_OUTAGE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

impl Drain {
    /// A client of the drain's Kafka in the loaders' group that never joins it: it only reads
    /// what the group committed.
    fn group_reader(&self) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.kafka)
            .set("group.id", &self.p.group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap()
    }

    /// The broker leading partition 0 of the topic.
    fn leader(&self) -> i32 {
        let metadata = self
            .group_reader()
            .fetch_metadata(Some(&self.p.topic), Duration::from_secs(10))
            .unwrap();
        let topic = &metadata.topics()[0];
        topic.partitions()[0].leader()
    }

    /// Offsets the loaders' group committed, per partition (-1 where none yet); None while the
    /// group's coordinator does not answer.
    fn committed(&self) -> Option<Vec<i64>> {
        let mut tpl = TopicPartitionList::new();
        for partition in 0..3 {
            tpl.add_partition(&self.p.topic, partition);
        }
        let committed = self
            .group_reader()
            .committed_offsets(tpl, Duration::from_secs(10))
            .ok()?;
        Some(
            committed
                .elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => o,
                    _ => -1,
                })
                .collect(),
        )
    }

    /// Waits until the group committed every message of the topic.
    async fn wait_drained(&self, secs: u64) {
        let consumer = self.group_reader();
        let ends: Vec<i64> = (0..3)
            .map(|p| {
                consumer
                    .fetch_watermarks(&self.p.topic, p, Duration::from_secs(10))
                    .unwrap()
                    .1
            })
            .collect();
        wait_until("the group's offsets at the topic's end", secs, || async {
            self.committed().is_some_and(|c| c == ends)
        })
        .await;
    }

    /// A drain of `records` on `cluster`: every record ingested (`run --only ingest --once`),
    /// then a loader started; returns once a quarter of the rows are there.
    async fn loading_on(cluster: &PrivateCluster, records: u32) -> (Drain, Background) {
        let d = Drain::new(records).await.on(cluster);
        d.complete(&["run", "--only", "ingest", "--once"]).await;
        let loader = Background::spawn(&mut d.command(&["run", "--only", "load"]));
        loader.wait_for("pipeline started", 60).await;
        d.wait_for_rows(d.records() as usize / 4, 120).await;
        (d, loader)
    }

    /// Waits until every row is there and the group committed every message, then stops the
    /// `loaders` (each must exit 0). Returns the time from `since` to the last commit.
    async fn finish(&self, loaders: &mut [Background], since: Instant) -> Duration {
        self.wait_for_rows(self.records() as usize, 180).await;
        self.wait_drained(120).await;
        let recovered_in = since.elapsed();
        for loader in loaders {
            assert_eq!(loader.terminate().await, Some(0), "{}", loader.log());
        }
        recovered_in
    }
}

/// The broker leading a partition SIGKILLed mid-drain (ingest and load running: `run --once`)
/// and started again after the outage: leadership moves to a replica in sync, the producer
/// and the group's coordinator follow, and the run ends with every row. Recovery is counted
/// from the kill.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_partition_leader_sigkill_mid_drain() {
    if !services_up("cluster_partition_leader_sigkill_mid_drain") {
        return;
    }
    let s = scale();
    let cluster = PrivateCluster::start();
    let d = Drain::new(s.records).await.on(&cluster);
    let mut running = Background::spawn(&mut d.command(&["run", "--once"]));
    d.wait_for_rows(d.records() as usize / 10, 120).await;
    let leader = format!("kafka{}", d.leader());
    cluster.kill(&leader);
    let killed = Instant::now();
    tokio::time::sleep(s.outage).await;
    cluster.up(&[&leader]);
    let Ok(code) = tokio::time::timeout(Duration::from_secs(180), running.child.wait()).await
    else {
        panic!(
            "the run did not end within 180 s of {leader}'s return; its log:\n{}",
            running.log()
        );
    };
    assert_eq!(code.unwrap().code(), Some(0), "{}", running.log());
    let scenario = format!(
        "cluster: partition leader SIGKILL, down {} s",
        s.outage.as_secs()
    );
    let logs = [running.log()];
    d.check_with(&scenario, killed.elapsed(), Writes::Loaders(&logs), 0)
        .await;
}

/// One of three Cassandra nodes SIGKILLed mid-drain and started after the node outage: at
/// RF 3 and `local_quorum` the two others take every write meanwhile (rows keep coming).
/// When the node is back the loader sees it restarted and writes nothing again: two replicas
/// acknowledged each write, and the other one did not restart.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_one_cassandra_node_sigkill_mid_drain() {
    if !services_up("cluster_one_cassandra_node_sigkill_mid_drain") {
        return;
    }
    let cluster = PrivateCluster::start();
    let (d, loader) = Drain::loading_on(&cluster, scale().records).await;
    cluster.kill("cassandra3");
    let at_kill = d.ids().await.len();
    tokio::time::sleep(node_outage()).await;
    let at_return = d.ids().await.len();
    assert!(
        at_return > at_kill || at_return == d.records() as usize,
        "no rows written while one node of three was down ({at_kill} then {at_return}):\n{}",
        loader.log()
    );
    cluster.up(&["cassandra3"]);
    let back = Instant::now();
    loader.wait_for("a Cassandra node restarted", 60).await;
    let mut loaders = [loader];
    let recovered_in = d.finish(&mut loaders, back).await;
    let log = loaders[0].log();
    assert!(
        log.contains("nothing to write again") && !log.contains("is written again"),
        "one node of three restarting was rewound:\n{log}"
    );
    // Each row written once by the loader (the table's own count on a node would also hold
    // writes Cassandra makes itself while the node catches up).
    assert!(
        log.contains(&format!(" written={} ", d.records())),
        "the loader wrote rows again:\n{log}"
    );
    let scenario = format!(
        "cluster: 1 of 3 nodes SIGKILL, down {} s",
        node_outage().as_secs()
    );
    d.check_with(&scenario, recovered_in, Writes::Loaders(&[log]), 0)
        .await;
}

/// Two of three Cassandra nodes SIGKILLed mid-drain: no write reaches `local_quorum`, so the
/// loader retries and commits nothing meanwhile; one node back, it carries on and finishes
/// with the third still down. Both may have lost their unsynced windows, which together hold
/// writes both acknowledged, so the restart of the first is rewound.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_two_cassandra_nodes_down_mid_drain() {
    if !services_up("cluster_two_cassandra_nodes_down_mid_drain") {
        return;
    }
    let s = scale();
    let cluster = PrivateCluster::start();
    let (d, mut loader) = Drain::loading_on(&cluster, s.records).await;
    cluster.kill("cassandra2");
    cluster.kill("cassandra3");
    // The writes in flight when the nodes went fail within the driver's request timeout; the
    // commit after them is the last one.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = d.committed().expect("the group's offsets");
    tokio::time::sleep(s.outage).await;
    let after = d.committed().expect("the group's offsets");
    assert_eq!(
        before,
        after,
        "offsets committed while two nodes of three were down:\n{}",
        loader.log()
    );
    assert!(
        loader.child.try_wait().unwrap().is_none(),
        "the loader exited:\n{}",
        loader.log()
    );
    cluster.up(&["cassandra2"]);
    let back = Instant::now();
    loader.wait_for("a Cassandra node restarted", 60).await;
    let mut loaders = [loader];
    let recovered_in = d.finish(&mut loaders, back).await;
    let log = loaders[0].log();
    assert!(
        log.contains("is written again"),
        "two nodes of three restarting within one window were not rewound:\n{log}"
    );
    let scenario = format!(
        "cluster: 2 of 3 nodes SIGKILL {} s, 1 back",
        s.outage.as_secs()
    );
    d.check_with(&scenario, recovered_in, Writes::Loaders(&[log]), 0)
        .await;
}

/// A fourth Cassandra node added mid-drain (it bootstraps: streams its ranges while the loader
/// writes, the writes for its ranges going to it as well). Every row is there, and the ring
/// has four nodes.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_cassandra_node_added_mid_drain() {
    if !services_up("cluster_cassandra_node_added_mid_drain") {
        return;
    }
    let cluster = PrivateCluster::start();
    let (d, loader) = Drain::loading_on(&cluster, scale().records).await;
    let added = Instant::now();
    cluster.up(&["cassandra4"]);
    let mut loaders = [loader];
    let recovered_in = d.finish(&mut loaders, added).await;
    let session = d.node_session(&d.cassandra[0]).await.unwrap();
    let peers = session
        .query_unpaged("SELECT peer FROM system.peers", &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows_num();
    assert_eq!(peers, 3, "the first node's peers");
    let logs = [loaders[0].log()];
    let writes = Writes::Loaders(&logs);
    d.check_with("cluster: node added mid-drain", recovered_in, writes, 0)
        .await;
}

/// One loader, then two more in its group mid-drain: the partitions spread over three.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_loaders_one_to_three() {
    if !services_up("cluster_loaders_one_to_three") {
        return;
    }
    let cluster = PrivateCluster::start();
    let (d, first) = Drain::loading_on(&cluster, scale().records).await;
    let added = Instant::now();
    let mut loaders = vec![first];
    for _ in 0..2 {
        let loader = Background::spawn(&mut d.command(&["run", "--only", "load"]));
        loader.wait_for("partitions assigned", 60).await;
        loaders.push(loader);
    }
    let recovered_in = d.finish(&mut loaders, added).await;
    let logs: Vec<String> = loaders.iter().map(Background::log).collect();
    d.check_with(
        "cluster: loaders 1 -> 3",
        recovered_in,
        Writes::Loaders(&logs),
        0,
    )
    .await;
}

/// Token-aware routing: on a keyspace with one replica per row, every write the pipeline
/// makes is coordinated by the node that holds the row (each node's coordinator writes equal
/// its own writes: none forwarded), and all three nodes take a share.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_writes_go_to_their_replica() {
    if !services_up("cluster_writes_go_to_their_replica") {
        return;
    }
    let cluster = PrivateCluster::start();
    let d = Drain::new(5000).await.on(&cluster);
    let mut cmd = d.command(&["run", "--once"]);
    cmd.env(
        "AQUEDUCT_CASSANDRA__REPLICATION",
        "{class=\"SimpleStrategy\", replication_factor=1}",
    );
    let out = crate::support::run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let mut shares = Vec::new();
    for node in &d.cassandra {
        let session = d.node_session(node).await.unwrap();
        let count = |view: &'static str| {
            let session = &session;
            let keyspace = &d.p.keyspace;
            async move {
                session
                    .query_unpaged(
                        format!(
                            "SELECT count FROM system_views.{view} WHERE keyspace_name = ? AND table_name = ?"
                        ),
                        (keyspace, "created_users"),
                    )
                    .await
                    .unwrap()
                    .into_rows_result()
                    .unwrap()
                    .maybe_first_row::<(i64,)>()
                    .unwrap()
                    .map_or(0, |r| r.0)
            }
        };
        let (coordinated, local) = (
            count("coordinator_write_latency").await,
            count("local_write_latency").await,
        );
        println!("ROUTING|{node}|coordinated {coordinated}|replica writes {local}");
        assert_eq!(
            coordinated, local,
            "{node}: writes forwarded to another node"
        );
        shares.push(local);
    }
    assert!(
        shares.iter().all(|&n| n > 0),
        "a node took no writes: {shares:?}"
    );
    assert!(shares.iter().sum::<i64>() >= 5000, "{shares:?}");
}
