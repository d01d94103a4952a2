//! Faults on the real servers, mid-drain: processes killed at random moments, Cassandra and
//! Kafka stopped and started again, loaders killed and added. Each scenario checks that every
//! record became its row (none missing, none unexpected; rows are upserts, so a message
//! written twice is still one row) and reports one line of the fault table:
//! `FAULT|scenario|records|rows|missing|extra writes|dead letters|seconds to recover`.
//! Extra writes: on one node, the table's writes Cassandra counted beyond its rows; on the
//! cluster, the records the loaders' summaries say they wrote beyond one each ([`Writes`]).
//! The scenarios of [`cluster`] run on a cluster of their own: three Kafka brokers and three
//! Cassandra nodes, replication 3.
//! A test binary of their own (`test = false` in Cargo.toml), minutes per scenario, so a plain
//! `cargo test` stays quick and they never share the cores with the other tests:
//! `scripts/faults` runs them one at a time at full size and prints the table; `scripts/test`
//! (and so CI) runs them the same way, reduced (AQUEDUCT_FAULTS_RECORDS, AQUEDUCT_FAULTS_KILLS,
//! AQUEDUCT_FAULTS_OUTAGE_SECONDS).

use std::collections::HashSet;
use std::io::Write as _;
use std::time::{Duration, Instant};

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::host_filter::AllowListHostFilter;
use uuid::Uuid;

mod cluster;
#[path = "../it/support.rs"]
mod support;

use crate::support::{
    Api, Background, Pipeline, PrivateCluster, PrivateServer, Server, cassandra_addr, kafka_addr,
    run, services_up, topic_messages_at, unique, wait_until,
};

/// Users per page of the stand-in.
const PAGE: u32 = 1000;

struct Scale {
    records: u32,
    kills: u32,
    outage: Duration,
}

fn scale() -> Scale {
    let num = |name: &str, default: u32| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Scale {
        records: num("AQUEDUCT_FAULTS_RECORDS", 20_000).div_ceil(PAGE) * PAGE,
        kills: num("AQUEDUCT_FAULTS_KILLS", 10),
        outage: Duration::from_secs(num("AQUEDUCT_FAULTS_OUTAGE_SECONDS", 10).into()),
    }
}

/// A drain of stand-in users through `pipelines/users.toml`, in pages of [`PAGE`].
/// Where a scenario's extra writes (beyond one per record) are counted.
enum Writes<'l> {
    /// The table's writes on the first Cassandra node, which kept counting (it did not
    /// restart) and holds every row: the loaders' writes, and any Cassandra makes itself.
    Table,
    /// The records these loaders' exit summaries say they wrote: aqueduct's own writes only.
    Loaders(&'l [String]),
    /// Neither: Cassandra restarted and lost its count, and a loader was killed.
    Uncounted,
}

/// The records written that a run's exit summary (in its `log`) gives.
fn summary_written(log: &str) -> Option<i64> {
    let line = log.lines().rev().find(|l| l.contains("summary"))?;
    let at = line.find(" written=")? + " written=".len();
    line[at..].split(' ').next()?.parse().ok()
}

struct Drain {
    _api: Api,
    p: Pipeline,
    seed: String,
    pages: u32,
    kafka: String,
    /// Cassandra's contact points; the first one's count of writes is [`Drain::writes`].
    cassandra: Vec<String>,
    /// On a cluster: topics and keyspace replicated 3 times, a write acknowledged by 2.
    replicated: bool,
    /// The first users of each page that are poison (the stand-in's `invalid=1&big=2`: one
    /// fails the schema, one is larger than a Kafka message).
    poisoned: usize,
}

impl Drain {
    async fn new(records: u32) -> Drain {
        Drain::with(records, "", 0).await
    }

    /// A drain whose stand-in also gets `extra` (`&`-joined query parameters).
    async fn with(records: u32, extra: &str, poisoned: usize) -> Drain {
        let api = Api::start().await;
        let seed = unique("faults");
        let mut query = format!("seed={seed}{extra}");
        if poisoned > 0 {
            assert_eq!(poisoned, 2, "one invalid, one too large");
            query.push_str("&invalid=1&big=2");
        }
        let p = Pipeline::users(api.url(&query), PAGE);
        Drain {
            _api: api,
            p,
            seed,
            pages: records / PAGE,
            kafka: kafka_addr(),
            cassandra: vec![cassandra_addr()],
            replicated: false,
            poisoned,
        }
    }

    /// This drain on `cluster`, replicated there.
    fn on(mut self, cluster: &PrivateCluster) -> Drain {
        self.kafka = cluster.kafka();
        self.cassandra = (1..=3).map(|n| cluster.cassandra(n)).collect();
        self.replicated = true;
        self
    }

    fn records(&self) -> u32 {
        self.pages * PAGE
    }

    /// `aqueduct ARGS` on this drain. A killed loader's group membership lapses after the
    /// broker's shortest session timeout (6 s), not the default 45 s. Few writes in flight, so
    /// a drain lasts long enough to be hit mid-way.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = self.p.command(args);
        cmd.env("AQUEDUCT_SOURCE__PAGINATION__MODE", "page")
            .env("AQUEDUCT_SOURCE__PAGINATION__PARAM", "page")
            .env(
                "AQUEDUCT_SOURCE__PAGINATION__MAX_PAGES",
                self.pages.to_string(),
            )
            .env("AQUEDUCT_KAFKA__BOOTSTRAP_SERVERS", &self.kafka)
            .env(
                "AQUEDUCT_CASSANDRA__CONTACT_POINTS",
                serde_json::to_string(&self.cassandra).unwrap(),
            )
            .env(
                "AQUEDUCT_KAFKA__CONSUMER_PROPERTIES__SESSION_TIMEOUT_MS",
                "6000",
            )
            .env("AQUEDUCT_CASSANDRA__CONCURRENCY", "4");
        if self.replicated {
            // As `scripts/stack env --cluster` says.
            cmd.env("AQUEDUCT_KAFKA__REPLICATION_FACTOR", "3")
                .env("AQUEDUCT_KAFKA__TOPIC_PROPERTIES__MIN_INSYNC_REPLICAS", "2")
                .env(
                    "AQUEDUCT_CASSANDRA__REPLICATION",
                    "{class=\"SimpleStrategy\", replication_factor=3}",
                )
                .env("AQUEDUCT_CASSANDRA__CONSISTENCY", "local_quorum");
        }
        cmd
    }

    /// Runs `aqueduct ARGS` to the end; it must succeed.
    async fn complete(&self, args: &[&str]) {
        let out = run(&mut self.command(args)).await;
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
    }

    /// Starts `aqueduct ARGS` `kills` times, each killed (SIGKILL) at a random moment within
    /// 3 s of its log showing `at_work`. Returns when the last kill was.
    async fn kill_repeatedly(&self, args: &[&str], at_work: &str, kills: u32) -> Instant {
        for _ in 0..kills {
            let mut running = Background::spawn(&mut self.command(args));
            running.wait_for(at_work, 60).await;
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..3000))).await;
            running.child.start_kill().unwrap();
            running.child.wait().await.unwrap();
        }
        Instant::now()
    }

    fn expected(&self) -> HashSet<Uuid> {
        (1..=u64::from(self.pages))
            .flat_map(|page| (self.poisoned..PAGE as usize).map(move |i| (page, i)))
            .map(|(page, i)| {
                let user = randomuser_standin::user(&self.seed, page, i, false);
                Uuid::parse_str(user["login"]["uuid"].as_str().unwrap()).unwrap()
            })
            .collect()
    }

    /// A session that speaks to node `addr` alone: what it counted itself.
    async fn node_session(&self, addr: &str) -> Option<Session> {
        SessionBuilder::new()
            .known_node(addr)
            .host_filter(std::sync::Arc::new(AllowListHostFilter::new([addr]).ok()?))
            .build()
            .await
            .ok()
    }

    /// The ids in the table; none while it does not exist yet or Cassandra is away.
    async fn ids(&self) -> Vec<Uuid> {
        let Ok(session) = SessionBuilder::new()
            .known_nodes(&self.cassandra)
            .build()
            .await
        else {
            return Vec::new();
        };
        let Ok(result) = session
            .query_unpaged(format!("SELECT id FROM {}", self.p.table()), &[])
            .await
        else {
            return Vec::new();
        };
        let rows = result.into_rows_result().unwrap();
        rows.rows::<(Uuid,)>()
            .unwrap()
            .map(|r| r.unwrap().0)
            .collect()
    }

    async fn wait_for_rows(&self, at_least: usize, secs: u64) {
        let what = format!("{at_least} rows");
        wait_until(&what, secs, || async { self.ids().await.len() >= at_least }).await;
    }

    /// Writes of the table that the first Cassandra node counted since it started
    /// (`local_write_latency`): all of them while every node holds every row.
    async fn writes(&self) -> Option<i64> {
        let session = self.node_session(&self.cassandra[0]).await?;
        let result = session
            .query_unpaged(
                "SELECT count FROM system_views.local_write_latency WHERE keyspace_name = ? AND table_name = ?",
                (&self.p.keyspace, "created_users"),
            )
            .await
            .ok()?;
        let rows = result.into_rows_result().ok()?;
        rows.maybe_first_row::<(i64,)>().ok()?.map(|r| r.0)
    }

    /// Checks the table against the records and reports the scenario's line of the table.
    /// `writes_counted`: Cassandra kept counting through the scenario (it did not restart).
    async fn check(&self, scenario: &str, recovered_in: Duration, writes_counted: bool) {
        let writes = match writes_counted {
            true => Writes::Table,
            false => Writes::Uncounted,
        };
        self.check_with(scenario, recovered_in, writes, 0).await
    }

    /// [`Drain::check`], expecting `dead_lettered` dead letters.
    async fn check_with(
        &self,
        scenario: &str,
        recovered_in: Duration,
        writes: Writes<'_>,
        dead_lettered: usize,
    ) {
        let ids = self.ids().await;
        let distinct: HashSet<Uuid> = ids.iter().copied().collect();
        let expected = self.expected();
        let missing = expected.difference(&distinct).count();
        let unexpected = distinct.difference(&expected).count();
        let extra_writes = match writes {
            Writes::Table => self.writes().await.map(|w| w - distinct.len() as i64),
            Writes::Loaders(logs) => logs
                .iter()
                .map(|log| summary_written(log))
                .sum::<Option<i64>>()
                .map(|w| w - i64::from(self.records())),
            Writes::Uncounted => None,
        }
        .map(|n| n.to_string());
        let dead_letters = topic_messages_at(&self.kafka, &self.p.dead_letter_topic).len();
        let line = format!(
            "FAULT|{scenario}|{}|{}|{missing}|{}|{dead_letters}|{:.1}",
            self.records(),
            distinct.len(),
            extra_writes.as_deref().unwrap_or("-"),
            recovered_in.as_secs_f64()
        );
        println!("{line}");
        if let Ok(file) = std::env::var("AQUEDUCT_FAULTS_TABLE") {
            let mut table = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .unwrap();
            writeln!(table, "{line}").unwrap();
        }
        assert_eq!(missing, 0, "{scenario}: rows missing");
        assert_eq!(unexpected, 0, "{scenario}: rows nobody sent");
        assert_eq!(ids.len(), distinct.len(), "{scenario}: a key twice");
        assert_eq!(dead_letters, dead_lettered, "{scenario}: dead letters");
    }
}

/// `run --once` (both halves) killed at random moments, restarted each time.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_run_at_random_moments() {
    if !services_up("sigkill_of_run") {
        return;
    }
    let s = scale();
    let d = Drain::new(s.records).await;
    let last = d
        .kill_repeatedly(&["run", "--once"], "pipeline started", s.kills)
        .await;
    d.complete(&["run", "--once"]).await;
    let scenario = format!("SIGKILL run x{}", s.kills);
    d.check(&scenario, last.elapsed(), true).await;
}

/// `run --only ingest --once` killed at random moments, then one that completes; a loader
/// then drains it all.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_ingest_at_random_moments() {
    if !services_up("sigkill_of_ingest") {
        return;
    }
    let s = scale();
    let d = Drain::new(s.records).await;
    let ingest = ["run", "--only", "ingest", "--once"];
    let last = d
        .kill_repeatedly(&ingest, "pipeline started", s.kills)
        .await;
    d.complete(&ingest).await;
    d.complete(&["run", "--only", "load", "--once"]).await;
    let scenario = format!("SIGKILL --only ingest x{}", s.kills);
    d.check(&scenario, last.elapsed(), true).await;
}

/// Everything ingested, then `run --only load --once` killed at random moments.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_load_at_random_moments() {
    if !services_up("sigkill_of_load") {
        return;
    }
    let s = scale();
    let d = Drain::new(s.records).await;
    d.complete(&["run", "--only", "ingest", "--once"]).await;
    let load = ["run", "--only", "load", "--once"];
    let last = d
        .kill_repeatedly(&load, "partitions assigned", s.kills)
        .await;
    d.complete(&load).await;
    let scenario = format!("SIGKILL --only load x{}", s.kills);
    d.check(&scenario, last.elapsed(), true).await;
}

/// Cassandra stopped (SIGTERM or SIGKILL) for the outage under a running loader, then started
/// again: the loader retries, carries on without a restart, and after a SIGKILL writes again
/// what the node acknowledged but had not synced (`commitlog_sync: periodic`, 10 s).
async fn cassandra_outage(kill: bool) {
    let s = scale();
    let cassandra = PrivateServer::start(Server::Cassandra);
    let mut d = Drain::new(s.records).await;
    d.cassandra = vec![cassandra.addr()];
    d.complete(&["run", "--only", "ingest", "--once"]).await;
    let mut loader = Background::spawn(&mut d.command(&["run", "--only", "load"]));
    loader.wait_for("pipeline started", 60).await;
    d.wait_for_rows(d.records() as usize / 4, 120).await;
    if kill {
        cassandra.kill();
    } else {
        cassandra.stop();
    }
    tokio::time::sleep(s.outage).await;
    cassandra.resume();
    let back = Instant::now();
    let all = d.records() as usize;
    while d.ids().await.len() < all {
        if back.elapsed() > Duration::from_secs(180) {
            let log = loader.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            panic!(
                "{} of {all} rows 180 s after Cassandra was back; the loader's log ends:\n{}",
                d.ids().await.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let recovered_in = back.elapsed();
    assert_eq!(loader.terminate().await, Some(0), "{}", loader.log());
    if kill {
        assert!(
            loader.log().contains("a Cassandra node restarted")
                && loader.log().contains("is written again"),
            "the one node's restart was not rewound:\n{}",
            loader.log()
        );
    }
    let signal = if kill { "SIGKILL" } else { "SIGTERM" };
    let scenario = format!("Cassandra {signal}, down {} s", s.outage.as_secs());
    d.check(&scenario, recovered_in, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cassandra_sigterm_mid_drain() {
    if services_up("cassandra_sigterm_mid_drain") {
        cassandra_outage(false).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cassandra_sigkill_mid_drain() {
    if services_up("cassandra_sigkill_mid_drain") {
        cassandra_outage(true).await;
    }
}

/// The Kafka broker stopped for the outage and started again, under a running ingest or a
/// running loader: both wait for it and finish.
async fn kafka_outage(side: &str) {
    let s = scale();
    let kafka = PrivateServer::start(Server::Kafka);
    let mut d = Drain::new(s.records).await;
    d.kafka = kafka.addr();
    if side == "load" {
        d.complete(&["run", "--only", "ingest", "--once"]).await;
    }
    let mut running = Background::spawn(&mut d.command(&["run", "--only", side, "--once"]));
    running.wait_for("pipeline started", 60).await;
    tokio::time::sleep(Duration::from_millis(fastrand::u64(500..2000))).await;
    kafka.stop();
    tokio::time::sleep(s.outage).await;
    kafka.resume();
    let back = Instant::now();
    let Ok(code) = tokio::time::timeout(Duration::from_secs(180), running.child.wait()).await
    else {
        panic!(
            "the {side} run did not end within 180 s of Kafka's return; its log:\n{}",
            running.log()
        );
    };
    let code = code.unwrap();
    assert_eq!(code.code(), Some(0), "{}", running.log());
    if side == "ingest" {
        d.complete(&["run", "--only", "load", "--once"]).await;
    }
    let scenario = format!("Kafka stopped {} s, {side} side", s.outage.as_secs());
    d.check(&scenario, back.elapsed(), true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_stopped_on_the_ingest_side() {
    if services_up("kafka_stopped_on_the_ingest_side") {
        kafka_outage("ingest").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_stopped_on_the_load_side() {
    if services_up("kafka_stopped_on_the_load_side") {
        kafka_outage("load").await;
    }
}

/// `n` loaders in one group; one is killed and another added mid-drain.
async fn loaders_in_a_group(n: usize) {
    let s = scale();
    let d = Drain::new(s.records).await;
    d.complete(&["run", "--only", "ingest", "--once"]).await;
    let load = ["run", "--only", "load"];
    let mut loaders: Vec<Background> = (0..n)
        .map(|_| Background::spawn(&mut d.command(&load)))
        .collect();
    d.wait_for_rows(d.records() as usize / 4, 120).await;
    loaders[0].child.start_kill().unwrap();
    loaders[0].child.wait().await.unwrap();
    let fault = Instant::now();
    loaders.push(Background::spawn(&mut d.command(&load)));
    d.wait_for_rows(d.records() as usize, 180).await;
    let recovered_in = fault.elapsed();
    for loader in &mut loaders[1..] {
        assert_eq!(loader.terminate().await, Some(0), "{}", loader.log());
    }
    let scenario = format!("{n} loaders, 1 killed, 1 added");
    d.check(&scenario, recovered_in, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_loaders_one_killed_one_added() {
    if services_up("two_loaders") {
        loaders_in_a_group(2).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_loaders_one_killed_one_added() {
    if services_up("three_loaders") {
        loaders_in_a_group(3).await;
    }
}

/// Poison amid a drain: per page a record that fails the schema and one larger than a Kafka
/// message (ingest), and on the topic a message that is not JSON, one that is not UTF-8, a
/// user whose mapping fails (a jq error) and one whose id is no UUID (CQL conversion) (load).
/// Each is dead-lettered; the pipeline goes on and every other record is written.
#[tokio::test(flavor = "multi_thread")]
async fn poison_records_are_dead_lettered_and_the_rest_written() {
    if !services_up("poison_records") {
        return;
    }
    let s = scale();
    let d = Drain::with(s.records, "", 2).await;
    d.complete(&["run", "--only", "ingest", "--once"]).await;
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &d.kafka)
        .create()
        .unwrap();
    let mut unmappable = randomuser_standin::user("poison", 1, 0, false);
    unmappable["location"] = serde_json::json!("a string, not an object");
    let mut not_a_uuid = randomuser_standin::user("poison", 1, 1, false);
    not_a_uuid["login"]["uuid"] = serde_json::json!("not-a-uuid");
    let (unmappable, not_a_uuid) = (unmappable.to_string(), not_a_uuid.to_string());
    for payload in [
        &b"{not json"[..],
        &[0xff, 0xfe, b'{', b'}'][..],
        unmappable.as_bytes(),
        not_a_uuid.as_bytes(),
    ] {
        producer
            .send(
                rdkafka::producer::FutureRecord::<str, [u8]>::to(&d.p.topic)
                    .key("poison")
                    .payload(payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let started = Instant::now();
    d.complete(&["run", "--only", "load", "--once"]).await;
    // The two payloads that are not JSON are one dead letter each; the two that do not map
    // fail in both of users.toml's tables, a dead letter for each table.
    let dead_lettered = d.pages as usize * d.poisoned + 2 + 2 * 2;
    d.check_with(
        "poison records",
        started.elapsed(),
        Writes::Table,
        dead_lettered,
    )
    .await;
}

/// The API failing at the start of a drain (HTTP 500, 429 with `Retry-After`, a truncated
/// body, a body that is not JSON; twice each, then served): retried, and every record lands.
#[tokio::test(flavor = "multi_thread")]
async fn api_faults_are_retried_and_every_record_lands() {
    if !services_up("api_faults") {
        return;
    }
    let s = scale();
    for fault in ["500", "429", "truncate", "garbage"] {
        let d = Drain::with(s.records, &format!("&fault={fault}&fault_times=2"), 0).await;
        let started = Instant::now();
        d.complete(&["run", "--once"]).await;
        let scenario = format!("API {fault} x2, then served");
        d.check(&scenario, started.elapsed(), true).await;
    }
}
