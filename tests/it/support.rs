//! Shared helpers: service addresses, unique names, the stand-in API, running the binary,
//! reading Kafka topics and Cassandra tables, private servers to stop and kill.
//!
//! Two test binaries include this file (tests/it and tests/faults), each using part of it.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

pub fn kafka_addr() -> String {
    std::env::var("AQUEDUCT_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn cassandra_addr() -> String {
    std::env::var("AQUEDUCT_TEST_CASSANDRA").unwrap_or_else(|_| "127.0.0.1:9042".into())
}

fn reachable(addr: &str) -> bool {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

/// Whether Kafka and Cassandra are reachable; a missing one fails the test (see
/// [`skip_or_fail`]).
pub fn services_up(test: &str) -> bool {
    let missing: Vec<String> = [("Kafka", kafka_addr()), ("Cassandra", cassandra_addr())]
        .into_iter()
        .filter(|(_, addr)| !reachable(addr))
        .map(|(name, addr)| format!("{name} at {addr}"))
        .collect();
    if missing.is_empty() {
        return true;
    }
    skip_or_fail(&format!(
        "{test}: {} not reachable; start the local stack with `scripts/stack up` (or run `scripts/test`)",
        missing.join(" and ")
    ));
    false
}

/// A server a test needs is missing: fails the test, unless the developer opted out with
/// `AQUEDUCT_SKIP_SERVER_TESTS=1` outside CI (then it says SKIPPED, and the test returns).
pub fn skip_or_fail(message: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let opted_out = std::env::var("AQUEDUCT_SKIP_SERVER_TESTS").is_ok_and(|v| v == "1");
    if ci || !opted_out {
        panic!("{message} (AQUEDUCT_SKIP_SERVER_TESTS=1 skips such tests outside CI)");
    }
    eprintln!("SKIPPED {message}");
}

/// A name no other test (or earlier run) uses: topics, keyspaces, groups.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}_{:04x}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        fastrand::u16(..)
    )
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The stand-in API on an ephemeral port, for the life of the test.
pub struct Api {
    pub addr: SocketAddr,
    pub stats: Arc<randomuser_standin::Stats>,
    _server: tokio::task::JoinHandle<()>,
}

impl Api {
    pub async fn start() -> Api {
        let (addr, stats, server) = randomuser_standin::spawn("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Api {
            addr,
            stats,
            _server: server,
        }
    }

    pub fn url(&self, query: &str) -> String {
        format!("http://{}/api/?{query}", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::SeqCst)
    }
}

/// What one `aqueduct` run printed and how it ended.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn aqueduct() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_aqueduct"));
    cmd.current_dir(repo())
        .env("AQUEDUCT_LOG", "info")
        .kill_on_drop(true);
    // Spec overrides from the developer's shell must not leak into tests.
    for (k, _) in std::env::vars() {
        if k.starts_with("AQUEDUCT_") && k.contains("__") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs `aqueduct` to completion (at most 120 s).
pub async fn run(cmd: &mut tokio::process::Command) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("aqueduct did not finish within 120 s")
        .expect("aqueduct could not be started");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An example spec of `pipelines/` pointed at the stand-in, a fresh topic and a fresh keyspace.
pub struct Pipeline {
    spec: &'static str,
    table: &'static str,
    pub topic: String,
    pub dead_letter_topic: String,
    pub keyspace: String,
    pub group: String,
    /// `kafka.cursor_topic`.
    pub cursor_topic: String,
    pub url: String,
    /// `source.query.results` (users.toml asks for 50).
    pub results: Option<u32>,
    /// `source.window.start`, with `source.window.lag` 0s (earthquakes.toml).
    pub window_start: Option<String>,
}

impl Pipeline {
    fn new(spec: &'static str, table: &'static str, url: String, results: Option<u32>) -> Self {
        let topic = unique("topic");
        Pipeline {
            spec,
            table,
            dead_letter_topic: format!("{topic}_dlq"),
            keyspace: unique("ks"),
            group: unique("group"),
            cursor_topic: unique("cursors"),
            topic,
            url,
            results,
            window_start: None,
        }
    }

    /// `pipelines/users.toml`, asking for `results` users per poll.
    pub fn users(url: String, results: u32) -> Self {
        Pipeline::new("pipelines/users.toml", "created_users", url, Some(results))
    }

    /// `pipelines/earthquakes.toml`.
    pub fn earthquakes(url: String) -> Self {
        Pipeline::new("pipelines/earthquakes.toml", "events_by_day", url, None)
    }

    /// `keyspace.table`.
    pub fn table(&self) -> String {
        format!("{}.{}", self.keyspace, self.table)
    }

    /// `aqueduct <args> <spec>` with this pipeline's overrides.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = aqueduct();
        cmd.args(args)
            .arg(self.spec)
            .env("AQUEDUCT_SOURCE__URL", &self.url)
            .env("AQUEDUCT_KAFKA__BOOTSTRAP_SERVERS", kafka_addr())
            .env("AQUEDUCT_KAFKA__TOPIC", &self.topic)
            .env("AQUEDUCT_KAFKA__DEAD_LETTER_TOPIC", &self.dead_letter_topic)
            .env("AQUEDUCT_KAFKA__GROUP_ID", &self.group)
            .env("AQUEDUCT_KAFKA__CURSOR_TOPIC", &self.cursor_topic)
            .env(
                "AQUEDUCT_CASSANDRA__CONTACT_POINTS",
                format!("[\"{}\"]", cassandra_addr()),
            )
            .env("AQUEDUCT_CASSANDRA__KEYSPACE", &self.keyspace);
        if let Some(results) = self.results {
            cmd.env("AQUEDUCT_SOURCE__QUERY__RESULTS", results.to_string());
        }
        if let Some(start) = &self.window_start {
            cmd.env("AQUEDUCT_SOURCE__WINDOW__START", start)
                .env("AQUEDUCT_SOURCE__WINDOW__LAG", "0s");
        }
        cmd
    }

    /// Rows in the pipeline's table.
    pub async fn row_count(&self) -> i64 {
        count_rows(&session().await, &self.table()).await
    }
}

pub async fn session() -> Session {
    SessionBuilder::new()
        .known_node(cassandra_addr())
        .build()
        .await
        .expect("connecting to Cassandra")
}

pub async fn count_rows(session: &Session, table: &str) -> i64 {
    let rows = session
        .query_unpaged(format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    rows.single_row::<(i64,)>().unwrap().0
}

/// Every message of `topic`, read from the beginning by a client outside any group.
pub fn topic_messages(topic: &str) -> Vec<(Option<String>, serde_json::Value)> {
    topic_messages_at(&kafka_addr(), topic)
}

/// [`topic_messages`] from the Kafka at `servers`.
pub fn topic_messages_at(servers: &str, topic: &str) -> Vec<(Option<String>, serde_json::Value)> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", servers);
    topic_messages_with(config, topic)
}

/// [`topic_messages`] with a client configured as `config` (servers, security).
pub fn topic_messages_with(
    config: ClientConfig,
    topic: &str,
) -> Vec<(Option<String>, serde_json::Value)> {
    topic_payloads_with(config, topic)
        .into_iter()
        .map(|(key, payload)| (key, serde_json::from_slice(&payload).unwrap()))
        .collect()
}

/// Every message of `topic` as its key and payload bytes.
pub fn topic_payloads(topic: &str) -> Vec<(Option<String>, Vec<u8>)> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka_addr());
    topic_payloads_with(config, topic)
}

fn topic_payloads_with(config: ClientConfig, topic: &str) -> Vec<(Option<String>, Vec<u8>)> {
    topic_bytes_with(config, topic)
        .into_iter()
        .map(|(key, payload)| {
            (
                key.map(|k| String::from_utf8_lossy(&k).into_owned()),
                payload,
            )
        })
        .collect()
}

/// Every message of `topic` as its key's bytes and its payload's.
pub fn topic_bytes(topic: &str) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka_addr());
    topic_bytes_with(config, topic)
}

fn topic_bytes_with(mut config: ClientConfig, topic: &str) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    let consumer: BaseConsumer = config
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0;
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout).unwrap();
        remaining += high - low;
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while remaining > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out reading {topic}"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            let m = m.unwrap();
            out.push((
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or_default().to_vec(),
            ));
            remaining -= 1;
        }
    }
    out
}

/// A spec file in a temporary folder (kept alive by the returned guard).
pub fn spec_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// A TCP proxy to Cassandra that a test can take down and bring back: down, it cuts every
/// connection and refuses new ones, as a node that went away. (The driver connects to the
/// node's rpc_address at the contact point's port, so it keeps going through the proxy.)
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    _accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, connections2) = (up.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                connections2.lock().unwrap().push(task);
            }
        });
        Proxy {
            addr,
            up,
            connections,
            _accept: accept,
        }
    }

    /// Takes the "node" down (cutting live connections) or brings it back.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for task in self.connections.lock().unwrap().drain(..) {
                task.abort();
            }
        }
    }
}

/// Polls `f` every 200 ms until it returns true, failing the test after `secs` seconds.
pub async fn wait_until<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs} s waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A long-running `aqueduct` whose stderr is collected as it comes.
pub struct Background {
    pub child: tokio::process::Child,
    log: Arc<std::sync::Mutex<String>>,
}

impl Background {
    pub fn spawn(cmd: &mut tokio::process::Command) -> Background {
        let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Background { child, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log holds `text`.
    pub async fn wait_for(&self, text: &str, secs: u64) {
        let what = format!("the log shows {text:?}");
        wait_until(&what, secs, || async { self.log().contains(text) }).await;
    }

    /// Sends SIGTERM and waits (at most 30 s) for the exit code; the log is then complete.
    pub async fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("no exit within 30 s of SIGTERM; log:\n{}", self.log()))
            .unwrap();
        // Let the reader drain the last lines.
        tokio::time::sleep(Duration::from_millis(200)).await;
        status.code()
    }
}

/// A port nobody listens on just now, on 127.0.0.1, below the kernel's ephemeral range
/// (32768 and up): a port from that range can be taken meanwhile as the local end of any
/// outgoing connection, even a client's own retries to it (TCP connects to itself when nothing
/// listens), so a server stopped and started again on it could find it taken.
pub fn free_port() -> u16 {
    loop {
        let port = fastrand::u16(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One of the stack's servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Kafka,
    Cassandra,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Kafka => "kafka",
            Server::Cassandra => "cassandra",
        }
    }
}

/// A server of this test's own, started by `scripts/stack` in a temporary folder on free
/// ports, for tests that stop or kill it (the shared stack serves every other test meanwhile).
pub struct PrivateServer {
    server: Server,
    dir: tempfile::TempDir,
    ports: Vec<(&'static str, u16)>,
}

impl PrivateServer {
    pub fn start(server: Server) -> PrivateServer {
        let names: &[&'static str] = match server {
            Server::Kafka => &["KAFKA_PORT", "KAFKA_CONTROLLER_PORT"],
            Server::Cassandra => &[
                "CASSANDRA_PORT",
                "CASSANDRA_STORAGE_PORT",
                "CASSANDRA_JMX_PORT",
            ],
        };
        let private = PrivateServer {
            server,
            dir: tempfile::tempdir().unwrap(),
            ports: names.iter().map(|name| (*name, free_port())).collect(),
        };
        private.resume();
        private
    }

    /// `127.0.0.1:<client port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.ports[0].1)
    }

    /// Starts it again (same data).
    pub fn resume(&self) {
        self.stack(&["up", self.server.name()]);
    }

    /// Stops it with SIGTERM, as `scripts/stack down` does.
    pub fn stop(&self) {
        self.stack(&["down", self.server.name()]);
    }

    /// Kills it with SIGKILL: no flush, no goodbye.
    pub fn kill(&self) {
        kill_server(self.dir.path(), self.server.name());
    }

    fn stack(&self, args: &[&str]) {
        let mut cmd = std::process::Command::new(repo().join("scripts/stack"));
        cmd.args(args)
            .env("AQUEDUCT_STACK_DIR", self.dir.path())
            .env("AQUEDUCT_KAFKA_HEAP", "256m")
            .env("AQUEDUCT_CASSANDRA_HEAP", "512m");
        for (name, port) in &self.ports {
            cmd.env(format!("AQUEDUCT_{name}"), port.to_string());
        }
        run_stack(&mut cmd, args);
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kills server `name` of the stack in `state` with SIGKILL and waits until it is gone.
fn kill_server(state: &Path, name: &str) {
    let pid_file = state.join(name).join(format!("{name}.pid"));
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Until the process is gone, `up` would take it for running.
    let proc = format!("/proc/{}", pid.trim());
    while std::fs::read_to_string(format!("{proc}/stat")).is_ok_and(|stat| !stat.contains(") Z ")) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `scripts/stack ARGS`; it must succeed.
fn run_stack(cmd: &mut std::process::Command, args: &[&str]) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "scripts/stack {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A cluster of this test's own (`scripts/stack up --cluster` in a temporary folder): three
/// Kafka nodes and three Cassandra nodes, node N of each on 127.0.X.(10+N) for an X no other
/// cluster uses, so the ports are the usual ones; JMX on free ports.
pub struct PrivateCluster {
    dir: tempfile::TempDir,
    net: String,
    jmx_base: u16,
}

impl PrivateCluster {
    pub fn start() -> PrivateCluster {
        let net = loop {
            let net = format!("127.0.{}", fastrand::u8(100..=250));
            if std::net::TcpListener::bind((format!("{net}.11").as_str(), 9042)).is_ok() {
                break net;
            }
        };
        let jmx_base = loop {
            let base = free_port();
            if (1..=4).all(|n| std::net::TcpListener::bind(("127.0.0.1", base + n)).is_ok()) {
                break base;
            }
        };
        let cluster = PrivateCluster {
            dir: tempfile::tempdir().unwrap(),
            net,
            jmx_base,
        };
        cluster.up(&[]);
        cluster
    }

    /// Node `n`'s address.
    pub fn host(&self, n: u8) -> String {
        format!("{}.{}", self.net, 10 + n)
    }

    /// The brokers, `host:port,...`.
    pub fn kafka(&self) -> String {
        (1..=3)
            .map(|n| format!("{}:9092", self.host(n)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Cassandra node `n`, `host:port`.
    pub fn cassandra(&self, n: u8) -> String {
        format!("{}:9042", self.host(n))
    }

    /// Starts the nodes named (`kafka2`, `cassandra4`), or all when none are named; a node
    /// stopped or killed starts again with its data.
    pub fn up(&self, nodes: &[&str]) {
        self.stack("up", nodes);
    }

    /// Stops the nodes named with SIGTERM, as `scripts/stack down` does.
    pub fn stop(&self, nodes: &[&str]) {
        self.stack("down", nodes);
    }

    /// Kills node `name` with SIGKILL.
    pub fn kill(&self, name: &str) {
        kill_server(self.dir.path(), name);
    }

    fn stack(&self, command: &str, nodes: &[&str]) {
        let args: Vec<&str> = [command, "--cluster"]
            .into_iter()
            .chain(nodes.iter().copied())
            .collect();
        let mut cmd = std::process::Command::new(repo().join("scripts/stack"));
        cmd.args(&args)
            .env("AQUEDUCT_CLUSTER_STACK_DIR", self.dir.path())
            .env("AQUEDUCT_CLUSTER_NET", &self.net)
            .env(
                "AQUEDUCT_CLUSTER_CASSANDRA_JMX_PORT",
                self.jmx_base.to_string(),
            )
            .env("AQUEDUCT_CLUSTER_KAFKA_HEAP", "256m")
            .env("AQUEDUCT_CLUSTER_CASSANDRA_HEAP", "512m");
        run_stack(&mut cmd, &args);
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.stop(&[]);
    }
}
