//! `scripts/bench`: aqueduct's two halves beside the ceiling of this machine, measured in one run
//! against the local Kafka and Cassandra (`scripts/stack up`), on `pipelines/users.toml`.
//!
//! The machines this runs on are shared and noisy, so no figure stands alone: the load half is
//! reported as a ratio of a plain prepared-insert loop (the scylla driver, rows built beforehand)
//! writing the same rows into a table of the same shape in the same run, and every process is
//! reported with its CPU per record and peak memory, read from the kernel (`wait4` rusage,
//! `/proc/<cassandra pid>/stat`), not from a clock alone.
//!
//! 1. preload: N stand-in users into a fresh 3-partition topic with a plain Rust producer;
//! 2. ceiling: the prepared-insert loop at a few concurrencies, the best taken;
//! 3. load: `aqueduct run --only load --once` draining the topic;
//! 4. ingest: `aqueduct run --only ingest --once` from the stand-in API, large and small pages.
//!
//! With `--codecs`, the load half reading Avro through the Schema Registry beside JSON: the
//! same N records preloaded into two topics (JSON text, and Avro by
//! `pipelines/schemas/randomuser-user.avsc`), then rounds alternating the two, medians
//! compared: records/s, CPU per record, peak memory, and bytes per message.
//!
//! With `--cluster`, on the cluster of `scripts/stack up --cluster` instead (topic and keyspace
//! replicated 3 times, rows at `local_quorum`, as `scripts/stack env --cluster` says): the
//! ceiling, then the load half with 1, 2 and 3 loaders in one group, Cassandra's CPU summed over
//! its three nodes.
//!
//! Prints one table and writes the figures as JSON. Only runs under `cargo bench` (which passes
//! `--bench`); `cargo test --all-targets` builds it and returns at once.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use serde_json::json;

use aqueduct::{cassandra, cql, kafka, map, spec};
use randomuser_standin as standin;

const USAGE: &str = "usage: scripts/bench [--records N] [--rounds R] [--large N] [--ingest-records N] [--ceiling C,C,..] [--json FILE] [--baseline AQUEDUCT_BINARY] [--steady-seconds S] [--pin] [--cluster | --codecs]";

struct Args {
    records: usize,
    /// The records of the one large run (the ceiling, then aqueduct); none when not above
    /// `records`.
    large: usize,
    ingest_records: usize,
    ceiling: Vec<usize>,
    json: PathBuf,
    /// Another build of aqueduct, measured beside this one in the same run.
    baseline: Option<PathBuf>,
    /// How long the steady run (a page of 1,000 records each second) lasts.
    steady_seconds: u64,
    /// On the cluster stack: the ceiling and the load half with 1, 2 and 3 loaders.
    cluster: bool,
    /// The load half reading Avro beside JSON: the same records, alternating rounds.
    codecs: bool,
    /// Rounds alternating the ceiling and the load half (with `--codecs`: JSON and Avro).
    rounds: usize,
    /// The measured clients (this process and its children) on the first core, the stack's
    /// servers on the others, so neither side's CPU slows the other.
    pin: bool,
}

fn parse_args() -> anyhow::Result<Option<Args>> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if !argv.iter().any(|a| a == "--bench") {
        return Ok(None);
    }
    let mut args = Args {
        records: 200_000,
        large: 1_000_000,
        ingest_records: 200_000,
        ceiling: vec![256, 1024],
        json: target_dir().join("bench/pipeline.json"),
        baseline: None,
        steady_seconds: 20,
        cluster: false,
        codecs: false,
        rounds: 3,
        pin: false,
    };
    let mut it = argv.into_iter().filter(|a| a != "--bench");
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--records" => args.records = value()?.parse()?,
            "--large" => args.large = value()?.parse()?,
            "--ingest-records" => args.ingest_records = value()?.parse()?,
            "--ceiling" => {
                args.ceiling = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--json" => args.json = value()?.into(),
            "--baseline" => args.baseline = Some(value()?.into()),
            "--steady-seconds" => args.steady_seconds = value()?.parse()?,
            "--cluster" => args.cluster = true,
            "--codecs" => args.codecs = true,
            "--rounds" => args.rounds = value()?.parse()?,
            "--pin" => args.pin = true,
            _ => bail!("unknown argument {flag}\n{USAGE}"),
        }
    }
    if args.records < 5000 || args.ingest_records < 5000 {
        bail!("--records and --ingest-records must be at least 5000");
    }
    if args.cluster && (args.codecs || args.pin) || args.rounds == 0 {
        bail!("--codecs and --pin run on the local stack; at least one round\n{USAGE}");
    }
    Ok(Some(args))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), PathBuf::from)
}

/// One measured run.
#[derive(Debug, Clone, serde::Serialize)]
struct Figure {
    what: String,
    records: usize,
    seconds: f64,
    per_second: f64,
    /// CPU of the measured client (user + system), per record.
    client_cpu_us: f64,
    /// Peak resident memory of the measured process, if it is a process of its own.
    peak_rss_mib: Option<f64>,
    /// Cassandra's CPU over the run, per row written.
    cassandra_cpu_us: Option<f64>,
    /// End to end (API response received to row acknowledged), for runs that load.
    latency_p50_ms: Option<u64>,
    latency_p99_ms: Option<u64>,
    /// From the start of the process (of the ceiling's loop) to the first row acknowledged.
    first_row_seconds: Option<f64>,
    /// From the start to the last row acknowledged.
    last_row_seconds: Option<f64>,
    /// A ceiling's writes in flight.
    concurrency: Option<usize>,
}

impl Figure {
    fn new(what: String, records: usize, secs: f64, cpu: Duration) -> Figure {
        Figure {
            what,
            records,
            seconds: secs,
            per_second: records as f64 / secs,
            client_cpu_us: cpu.as_secs_f64() * 1e6 / records as f64,
            peak_rss_mib: None,
            cassandra_cpu_us: None,
            latency_p50_ms: None,
            latency_p99_ms: None,
            first_row_seconds: None,
            last_row_seconds: None,
            concurrency: None,
        }
    }
}

fn main() -> std::process::ExitCode {
    match parse_args() {
        Ok(None) => std::process::ExitCode::SUCCESS,
        Ok(Some(args)) => {
            let rt = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
            match rt.block_on(bench(args)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bench: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("bench: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

struct Env {
    run: String,
    kafka: String,
    cassandra: Vec<String>,
    /// The Cassandra processes whose CPU is billed to the rows.
    cassandra_pids: Vec<u32>,
    bin: PathBuf,
    /// Spec keys every aqueduct process of the run gets (the cluster's replication).
    overrides: Vec<(String, String)>,
}

impl Env {
    /// The local stack (`scripts/stack up`), or the cluster (`scripts/stack up --cluster`).
    fn new(cluster: bool) -> Env {
        let run = format!("bench{}", chrono::Utc::now().format("%m%d%H%M%S"));
        let bin = target_dir().join("release");
        if !cluster {
            return Env {
                run,
                kafka: std::env::var("AQUEDUCT_TEST_KAFKA")
                    .unwrap_or_else(|_| "127.0.0.1:9092".into()),
                cassandra: vec![
                    std::env::var("AQUEDUCT_TEST_CASSANDRA")
                        .unwrap_or_else(|_| "127.0.0.1:9042".into()),
                ],
                cassandra_pids: stack_pids("AQUEDUCT_STACK_DIR", ".stack", &["cassandra"]),
                bin,
                overrides: Vec::new(),
            };
        }
        let hosts = (1..=3).map(|n| format!("127.0.0.{}", 10 + n));
        Env {
            run,
            kafka: hosts
                .clone()
                .map(|h| format!("{h}:9092"))
                .collect::<Vec<_>>()
                .join(","),
            cassandra: hosts.map(|h| format!("{h}:9042")).collect(),
            cassandra_pids: stack_pids(
                "AQUEDUCT_CLUSTER_STACK_DIR",
                ".stack-cluster",
                &["cassandra1", "cassandra2", "cassandra3"],
            ),
            bin,
            // As `scripts/stack env --cluster` says.
            overrides: [
                ("AQUEDUCT_KAFKA__REPLICATION_FACTOR", "3"),
                ("AQUEDUCT_KAFKA__TOPIC_PROPERTIES__MIN_INSYNC_REPLICAS", "2"),
                (
                    "AQUEDUCT_CASSANDRA__REPLICATION",
                    "{class=\"SimpleStrategy\", replication_factor=3}",
                ),
                ("AQUEDUCT_CASSANDRA__CONSISTENCY", "local_quorum"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        }
    }

    /// users.toml (or `file`) for this run: its servers, topics and keyspace, and the
    /// overrides.
    fn spec(&self, file: &Path) -> anyhow::Result<spec::Spec> {
        // The replication of the cluster, through the spec's own reading of the environment.
        for (k, v) in &self.overrides {
            // SAFETY: set before any other thread of this process reads the environment.
            unsafe { std::env::set_var(k, v) };
        }
        let mut spec = spec::load(file).map_err(|e| anyhow::anyhow!("{e}"))?;
        spec.kafka.bootstrap_servers = self.kafka.clone();
        spec.kafka.topic = self.run.clone();
        spec.kafka.dead_letter_topic = format!("{}_dlq", self.run);
        spec.cassandra.contact_points = self.cassandra.clone();
        for t in &mut spec.cassandra.tables {
            t.keyspace = self.run.clone();
        }
        Ok(spec)
    }
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let env = Env::new(args.cluster);
    if args.cluster {
        return bench_cluster(args, env).await;
    }
    let servers = if args.pin { pin(&env)? } else { Vec::new() };
    let outcome = if args.codecs {
        bench_codecs(args, env).await
    } else {
        bench_local(args, env).await
    };
    let cores = online_cores();
    for pid in servers {
        taskset(pid, &format!("0-{}", cores - 1))?;
    }
    outcome
}

/// Pins this process (and so the aqueduct processes it starts) to the first core and the
/// stack's Kafka, Cassandra and registry to the others; gives the servers' pids.
fn pin(env: &Env) -> anyhow::Result<Vec<u32>> {
    let cores = online_cores();
    if cores < 2 {
        bail!("--pin needs at least 2 cores, this machine has {cores}");
    }
    let mut servers = env.cassandra_pids.clone();
    servers.extend(stack_pids(
        "AQUEDUCT_STACK_DIR",
        ".stack",
        &["kafka", "registry"],
    ));
    for &pid in &servers {
        taskset(pid, &format!("1-{}", cores - 1))?;
    }
    taskset(std::process::id(), "0")?;
    println!(
        "pinned: the clients to core 0, the stack's servers ({servers:?}) to 1-{}",
        cores - 1
    );
    Ok(servers)
}

/// Sets every thread of `pid` to run on `cpus` (a `taskset -c` list).
fn taskset(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    if !status.success() {
        bail!("taskset -a -p -c {cpus} {pid} failed: {status}");
    }
    Ok(())
}

/// The default run: the ceiling and the load half in rounds, the large run, the ingest half,
/// and both halves at a steady rate.
async fn bench_local(args: Args, env: Env) -> anyhow::Result<()> {
    let mut spec = env.spec(Path::new(USERS))?;
    let machine = machine();
    println!(
        "aqueduct bench {}: pipelines/users.toml, {} records ({} rounds) and {}, {machine}{}",
        env.run,
        args.records,
        args.rounds,
        args.large,
        if args.pin { ", pinned" } else { "" }
    );

    // The same users into two topics: the first `records` of them into the run's topic, all
    // `large` (when more) into a topic of their own.
    let large_topic = format!("{}_large", env.run);
    let mut topics = vec![(env.run.clone(), args.records)];
    if args.large > args.records {
        topics.push((large_topic.clone(), args.large));
    }
    for (topic, _) in &topics {
        spec.kafka.topic = topic.clone();
        kafka::ensure_topics(&spec.kafka, true).await?;
    }
    spec.kafka.topic = env.run.clone();
    let (rows, preload) = preload(&spec, &topics)?;
    println!(
        "preloaded {} messages into {} topic(s) in {preload:.1} s",
        topics.iter().map(|(_, n)| n).sum::<usize>(),
        topics.len()
    );

    let session = SessionBuilder::new()
        .known_nodes(&env.cassandra)
        .build()
        .await?;
    let session = Arc::new(session);
    let small = &rows[..args.records];
    // users.toml's `[cassandra]` with its first `n` tables.
    let tables = |n: usize| {
        env.spec(Path::new(USERS)).map(|s| {
            let mut c = s.cassandra;
            c.tables.truncate(n);
            c
        })
    };
    let (mut figures, best) =
        ceilings(&session, &mut spec.cassandra, small, &args.ceiling, &env).await?;
    let concurrency = best.concurrency.unwrap_or(256);

    let mut builds = vec![("aqueduct", env.bin.join("aqueduct"))];
    if let Some(baseline) = &args.baseline {
        builds.push(("baseline", baseline.clone()));
    }
    let one_table = one_table_spec()?;
    // The load half drains `topic` into a fresh table (users.toml cut after its first table, in
    // the one-table form a baseline from before several tables reads too).
    // `prefix` names its table and group.
    let load = |prefix: String, bin: &Path, topic: &str, records: usize, what: String| {
        let c = tables(1);
        let session = session.clone();
        let (bin, one_table) = (bin.to_owned(), one_table.clone());
        let (env, topic) = (&env, topic.to_owned());
        async move {
            let mut c = c?;
            let mut vars = table_names(&mut c, &prefix, true);
            vars.extend([
                ("AQUEDUCT_KAFKA__TOPIC".into(), topic),
                (
                    "AQUEDUCT_KAFKA__GROUP_ID".into(),
                    format!("{}_{prefix}", env.run),
                ),
            ]);
            fresh_table(&session, &c).await?;
            let f = run_aqueduct(
                env,
                &bin,
                &one_table,
                &what,
                Until::Done(records),
                &["--only", "load", "--once"],
                &vars,
                1,
            )?;
            drop_table(&session, &c).await?;
            Ok::<_, anyhow::Error>(f)
        }
    };

    // Rounds alternating the ceiling and each build, so neither always runs on a warmer (or a
    // busier) machine; medians compared.
    let mut rounds: Vec<Vec<(&str, Figure)>> = Vec::new();
    for round in 0..args.rounds {
        let mut order: Vec<&str> = std::iter::once("ceiling")
            .chain(builds.iter().map(|(label, _)| *label))
            .collect();
        if round % 2 == 1 {
            order.reverse();
        }
        let mut measured = Vec::new();
        for label in order {
            let what = format!("{label} load half, round {}", round + 1);
            let f = match builds.iter().find(|(l, _)| *l == label) {
                Some((_, bin)) => {
                    let prefix = format!("{label}_r{}", round + 1);
                    load(prefix, bin, &env.run, args.records, what).await?
                }
                None => {
                    let mut c = tables(1)?;
                    c.tables[0].table = format!("ceiling_round{}", round + 1);
                    let mut f = ceiling(&session, &c, small, concurrency, &env).await?;
                    f.what = format!("ceiling, {concurrency} in flight, round {}", round + 1);
                    f
                }
            };
            println!("  {}: {:.0} records/s", f.what, f.per_second);
            measured.push((label, f));
        }
        figures.extend(measured.iter().map(|(_, f)| f.clone()));
        rounds.push(measured);
    }
    let medians = |label: &str| {
        let of = |m: Measure| {
            median(
                rounds
                    .iter()
                    .flatten()
                    .filter(|(l, _)| *l == label)
                    .map(|(_, f)| m(f)),
            )
        };
        Split::of_medians(&of)
    };
    let ceiling_split = medians("ceiling");

    // What the second table costs: users.toml whole, once.
    {
        let mut c = tables(2)?;
        let mut vars = table_names(&mut c, "aqueduct_load2", false);
        vars.push((
            "AQUEDUCT_KAFKA__GROUP_ID".into(),
            format!("{}_load2", env.run),
        ));
        fresh_table(&session, &c).await?;
        let f = run_aqueduct(
            &env,
            &builds[0].1,
            Path::new(USERS),
            "aqueduct load half, 2 tables",
            Until::Done(args.records),
            &["--only", "load", "--once"],
            &vars,
            1,
        )?;
        drop_table(&session, &c).await?;
        println!("  {}: {:.0} records/s", f.what, f.per_second);
        figures.push(f);
    }

    // The large run, the ceiling then aqueduct: start-up and drain weigh less in it.
    let mut large = Vec::new();
    if args.large > args.records {
        let mut c = tables(1)?;
        c.tables[0].table = "ceiling_large".into();
        let mut f = ceiling(&session, &c, &rows, concurrency, &env).await?;
        f.what = format!("ceiling, {concurrency} in flight, {} records", args.large);
        println!("  {}: {:.0} records/s", f.what, f.per_second);
        large.push(f);
        let what = format!("aqueduct load half, {} records", args.large);
        let prefix = "aqueduct_large".to_owned();
        let f = load(prefix, &builds[0].1, &large_topic, args.large, what).await?;
        println!("  {}: {:.0} records/s", f.what, f.per_second);
        large.push(f);
    }
    figures.extend(large.iter().cloned());
    drop(rows);

    let (api, mut standin) = start_standin(&env)?;
    for (label, bin) in &builds {
        for (size, page) in [("large", 5000usize), ("small", 100)] {
            let topic = format!("{}_{label}_ingest_{size}", env.run);
            let f = run_aqueduct(
                &env,
                bin,
                &one_table,
                &format!("{label} ingest half, pages of {page}"),
                Until::Done(args.ingest_records / page * page),
                &["--only", "ingest", "--once"],
                &[
                    (
                        "AQUEDUCT_SOURCE__URL",
                        format!("http://{api}/api/?seed={topic}"),
                    ),
                    ("AQUEDUCT_SOURCE__QUERY__RESULTS", page.to_string()),
                    ("AQUEDUCT_SOURCE__PAGINATION__MODE", "page".into()),
                    ("AQUEDUCT_SOURCE__PAGINATION__PARAM", "page".into()),
                    (
                        "AQUEDUCT_SOURCE__PAGINATION__MAX_PAGES",
                        (args.ingest_records / page).to_string(),
                    ),
                    ("AQUEDUCT_KAFKA__TOPIC", topic.clone()),
                    ("AQUEDUCT_KAFKA__DEAD_LETTER_TOPIC", format!("{topic}_dlq")),
                ],
                1,
            )?;
            println!("  {}: {:.0} records/s", f.what, f.per_second);
            figures.push(f);
        }
    }
    // Both halves in one process, users.toml whole: a page of 1,000 records each second.
    let mut steady = Vec::new();
    for (label, bin) in &builds {
        let topic = format!("{}_{label}_steady", env.run);
        let (mut c, file, one_table_form) = if *label == "aqueduct" {
            (tables(2)?, Path::new(USERS), false)
        } else {
            (tables(1)?, one_table.as_path(), true)
        };
        let tables = c.tables.len();
        let f = run_aqueduct(
            &env,
            bin,
            file,
            &format!("{label} both halves, {tables} table(s), 1,000 records/s"),
            Until::Stopped(Duration::from_secs(args.steady_seconds)),
            &[],
            &[
                (
                    "AQUEDUCT_SOURCE__URL",
                    format!("http://{api}/api/?seed={topic}"),
                ),
                ("AQUEDUCT_SOURCE__QUERY__RESULTS", "1000".into()),
                ("AQUEDUCT_SOURCE__SCHEDULE__EVERY", "1s".into()),
                ("AQUEDUCT_KAFKA__TOPIC", topic.clone()),
                ("AQUEDUCT_KAFKA__DEAD_LETTER_TOPIC", format!("{topic}_dlq")),
                ("AQUEDUCT_KAFKA__GROUP_ID", topic.clone()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain(table_names(
                &mut c,
                &format!("{label}_steady"),
                one_table_form,
            ))
            .collect::<Vec<_>>(),
            1,
        )?;
        println!(
            "  {}: latency p50 {:?} ms, p99 {:?} ms, first row after {:?} s",
            f.what, f.latency_p50_ms, f.latency_p99_ms, f.first_row_seconds
        );
        steady.push((tables, f));
    }
    let _ = standin.kill();
    let _ = standin.wait();

    figures.extend(steady.iter().map(|(_, f)| f.clone()));
    report(&figures, ceiling_split.per_second);
    println!();
    let aqueduct_split = medians("aqueduct");
    println!(
        "{} rounds of {} records, medians:",
        args.rounds, args.records
    );
    ceiling_split.print("ceiling", None);
    aqueduct_split.print("aqueduct", Some(&ceiling_split));
    if builds.len() > 1 {
        medians("baseline").print("baseline", Some(&ceiling_split));
    }
    if let [ceil, aq] = &large[..] {
        println!("{} records:", args.large);
        let (ceil, aq) = (Split::of(ceil), Split::of(aq));
        ceil.print("ceiling", None);
        aq.print("aqueduct", Some(&ceil));
    }
    let two = figures
        .iter()
        .find(|f| f.what == "aqueduct load half, 2 tables");
    if let Some(two) = two {
        println!(
            "two tables / one table: CPU per record x{:.2} (aim <= 2), records/s x{:.2}",
            two.client_cpu_us / aqueduct_split.cpu_us,
            two.per_second / aqueduct_split.per_second
        );
    }
    for (tables, f) in &steady {
        // A page's rows, written at the ceiling's steady rate: the last is this long after the
        // first, and no pipeline can deliver the page's last row sooner after its response.
        let floor_ms = 1000.0 * (*tables * 1000) as f64 / ceiling_split.steady_per_second;
        let ms = |v: Option<u64>| v.map_or_else(|| "-".into(), |v| v.to_string());
        println!(
            "{}: end-to-end latency p50 {} ms, p99 {} ms; floor {floor_ms:.0} ms (a page's {} rows at the ceiling's rate; aim p99 <= floor + 15); first row {} s after start (aim < 1)",
            f.what,
            ms(f.latency_p50_ms),
            ms(f.latency_p99_ms),
            tables * 1000,
            f.first_row_seconds
                .map_or_else(|| "-".into(), |s| format!("{s:.2}")),
        );
    }
    clean_up(&session, &env).await?;
    let json = json!({
        "run": env.run,
        "machine": machine,
        "pinned": args.pin,
        "records": args.records,
        "rounds": args.rounds,
        "medians": {"ceiling": ceiling_split, "aqueduct": aqueduct_split},
        "load_to_ceiling": aqueduct_split.per_second / ceiling_split.per_second,
        "figures": figures,
    });
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&json)?)?;
    println!("figures written to {}", args.json.display());
    Ok(())
}

/// The median of `values` (0 for none).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// A load run split in time: start-up to the first row acknowledged, the writing between the
/// first and the last, and the last row to the exit; with the rate, CPU and memory.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Split {
    per_second: f64,
    first_row_seconds: f64,
    writing_seconds: f64,
    /// Records over the writing time alone.
    steady_per_second: f64,
    after_last_seconds: f64,
    cpu_us: f64,
    peak_rss_mib: f64,
}

impl Split {
    fn of(f: &Figure) -> Split {
        Split::of_medians(&|m| m(f))
    }

    /// Each measure through `of` (a figure's own, or the median over rounds).
    fn of_medians(of: &dyn Fn(Measure) -> f64) -> Split {
        Split {
            per_second: of(|f| f.per_second),
            first_row_seconds: of(|f| f.first_row_seconds.unwrap_or(0.0)),
            writing_seconds: of(writing_seconds),
            steady_per_second: of(|f| f.records as f64 / writing_seconds(f)),
            after_last_seconds: of(|f| f.seconds - f.last_row_seconds.unwrap_or(f.seconds)),
            cpu_us: of(|f| f.client_cpu_us),
            peak_rss_mib: of(|f| f.peak_rss_mib.unwrap_or(0.0)),
        }
    }

    fn print(&self, what: &str, ceiling: Option<&Split>) {
        let ratio = |a: f64, b: Option<f64>| {
            b.map_or_else(String::new, |b| {
                format!(" ({:.0} % of the ceiling's)", 100.0 * a / b)
            })
        };
        println!(
            "  {what:<9} {:>7.0} records/s{}; first row after {:.2} s, writing {:.2} s at {:.0} rows/s{}, last row to exit {:.2} s; CPU {:.1} µs/record{}",
            self.per_second,
            ratio(self.per_second, ceiling.map(|c| c.per_second)),
            self.first_row_seconds,
            self.writing_seconds,
            self.steady_per_second,
            ratio(self.steady_per_second, ceiling.map(|c| c.steady_per_second)),
            self.after_last_seconds,
            self.cpu_us,
            if self.peak_rss_mib > 0.0 {
                format!(", peak {:.0} MiB", self.peak_rss_mib)
            } else {
                String::new()
            },
        );
    }
}

/// Seconds between a run's first and last row acknowledged (its whole time without them).
fn writing_seconds(f: &Figure) -> f64 {
    match (f.first_row_seconds, f.last_row_seconds) {
        (Some(first), Some(last)) if last > first => last - first,
        _ => f.seconds,
    }
}

/// One figure of a run, read from its [`Figure`].
type Measure = fn(&Figure) -> f64;

/// `--codecs`: the load half on the same records as JSON and as Avro, in alternating rounds.
async fn bench_codecs(args: Args, env: Env) -> anyhow::Result<()> {
    let machine = machine();
    println!(
        "aqueduct bench {} --codecs: users.toml's first table, {} records, {} rounds, {machine}",
        env.run, args.records, args.rounds
    );
    let registry = std::env::var("AQUEDUCT_TEST_REGISTRY")
        .map(|addr| format!("http://{addr}"))
        .unwrap_or_else(|_| "http://127.0.0.1:8081".into());
    let one_table = one_table_spec()?;
    let avro_file = avro_spec(&one_table, &registry)?;
    let json = env.spec(&one_table)?;
    let mut avro = env.spec(&avro_file)?;
    avro.kafka.topic = format!("{}_avro", env.run);
    avro.kafka.dead_letter_topic = format!("{}_avro_dlq", env.run);
    kafka::ensure_topics(&json.kafka, true).await?;
    kafka::ensure_topics(&avro.kafka, true).await?;
    let codecs = aqueduct::codec::Codecs::connect(&avro.kafka, true)
        .await
        .context("registering users.avsc")?;
    let started = Instant::now();
    let bytes = preload_codecs(&json, &avro, &codecs.value, args.records)?;
    println!(
        "preloaded {} messages into topics {} (JSON) and {} (Avro) in {:.1} s",
        args.records,
        json.kafka.topic,
        avro.kafka.topic,
        started.elapsed().as_secs_f64()
    );

    let session = SessionBuilder::new()
        .known_nodes(&env.cassandra)
        .build()
        .await?;
    let mut figures: Vec<(&str, Figure)> = Vec::new();
    let runs = [("json", &one_table, json), ("avro", &avro_file, avro)];
    let mut runs = runs.map(|(codec, file, spec)| (codec, file.clone(), spec));
    for round in 0..args.rounds {
        // Alternating which goes first, so neither always runs on a warmer machine.
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (codec, file, spec) = &mut runs[i];
            let prefix = format!("{codec}_load_{round}");
            let mut vars = table_names(&mut spec.cassandra, &prefix, true);
            fresh_table(&session, &spec.cassandra).await?;
            vars.extend([
                ("AQUEDUCT_KAFKA__TOPIC".into(), spec.kafka.topic.clone()),
                (
                    "AQUEDUCT_KAFKA__DEAD_LETTER_TOPIC".into(),
                    spec.kafka.dead_letter_topic.clone(),
                ),
                (
                    "AQUEDUCT_KAFKA__GROUP_ID".into(),
                    format!("{}_{prefix}", env.run),
                ),
            ]);
            let f = run_aqueduct(
                &env,
                &env.bin.join("aqueduct"),
                file,
                &format!("load half, {codec}, round {}", round + 1),
                Until::Done(args.records),
                &["--only", "load", "--once"],
                &vars,
                1,
            )?;
            drop_table(&session, &spec.cassandra).await?;
            println!(
                "  {}: {:.0} records/s, {:.1} µs CPU/record",
                f.what, f.per_second, f.client_cpu_us
            );
            figures.push((codec, f));
        }
    }
    let median = |codec: &str, value: Measure| {
        let mut v: Vec<f64> = figures
            .iter()
            .filter(|(c, _)| *c == codec)
            .map(|(_, f)| value(f))
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let per_message =
        |codec: &str| bytes[usize::from(codec == "avro")] as f64 / args.records as f64;
    println!();
    println!(
        "{:<10} {:>10} {:>12} {:>10} {:>14}",
        "medians", "records/s", "CPU µs/rec", "peak MiB", "bytes/message"
    );
    let metrics: [(&str, Measure); 3] = [
        ("per_second", |f| f.per_second),
        ("client_cpu_us", |f| f.client_cpu_us),
        ("peak_rss_mib", |f| f.peak_rss_mib.unwrap_or(0.0)),
    ];
    let mut medians = serde_json::Map::new();
    for codec in ["json", "avro"] {
        let [rate, cpu, peak] = metrics.map(|(_, m)| median(codec, m));
        println!(
            "{codec:<10} {rate:>10.0} {cpu:>12.1} {peak:>10.0} {:>14.0}",
            per_message(codec)
        );
        let mut m: serde_json::Map<String, serde_json::Value> = metrics
            .iter()
            .map(|(name, f)| (name.to_string(), json!(median(codec, *f))))
            .collect();
        m.insert("bytes_per_message".into(), json!(per_message(codec)));
        medians.insert(codec.into(), m.into());
    }
    println!(
        "avro / json: records/s x{:.2}, CPU per record x{:.2}, peak memory x{:.2}, bytes per message x{:.2}",
        median("avro", metrics[0].1) / median("json", metrics[0].1),
        median("avro", metrics[1].1) / median("json", metrics[1].1),
        median("avro", metrics[2].1) / median("json", metrics[2].1),
        per_message("avro") / per_message("json"),
    );
    clean_up(&session, &env).await?;
    let json = json!({
        "run": env.run,
        "machine": machine,
        "records": args.records,
        "rounds": args.rounds,
        "medians": medians,
        "figures": figures.iter().map(|(c, f)| json!({"codec": c, "figure": f})).collect::<Vec<_>>(),
    });
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&json)?)?;
    println!("figures written to {}", args.json.display());
    Ok(())
}

/// The one-table spec reading Avro through the registry at `registry`, by users.avsc.
fn avro_spec(one_table: &Path, registry: &str) -> anyhow::Result<PathBuf> {
    let avsc = std::fs::canonicalize("pipelines/schemas/randomuser-user.avsc")?;
    let text = std::fs::read_to_string(one_table)?;
    let text = text
        .replacen("[kafka]\n", "[kafka]\ncodec = \"avro\"\n", 1)
        .replacen(
            "[cassandra]\n",
            &format!(
                "[kafka.schema_registry]\nurl = {registry:?}\nschema_file = {:?}\n\n[cassandra]\n",
                avsc.display().to_string()
            ),
            1,
        );
    let path = one_table.with_file_name("users-one-table-avro.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The same `n` stand-in users into `json`'s topic as JSON text and into `avro`'s through
/// `codec`, keyed alike; the payload bytes of each.
fn preload_codecs(
    json: &spec::Spec,
    avro: &spec::Spec,
    codec: &aqueduct::codec::Codec,
    n: usize,
) -> anyhow::Result<[usize; 2]> {
    let producer: ThreadedProducer<DefaultProducerContext> = kafka::producer_config(&json.kafka)
        .set("linger.ms", "20")
        .create()?;
    let mut bytes = [0; 2];
    for i in 0..n {
        let user = standin::user(&json.kafka.topic, (i / 5000) as u64 + 1, i % 5000, false);
        let text = serde_json::to_string(&user)?;
        let encoded = codec
            .encode(&text, &user)
            .map_err(|e| anyhow::anyhow!("user {i} as Avro: {e}"))?;
        let key = user["login"]["uuid"].as_str().unwrap_or_default();
        for (slot, topic, payload) in [
            (0, &json.kafka.topic, text.as_bytes()),
            (1, &avro.kafka.topic, &encoded[..]),
        ] {
            bytes[slot] += payload.len();
            let record = BaseRecord::<str, [u8]>::to(topic).key(key).payload(payload);
            send_waiting(&producer, record).context("preloading the topics")?;
        }
    }
    producer.flush(Duration::from_secs(120))?;
    for spec in [json, avro] {
        let held: i64 = kafka::consume::high_watermarks(&spec.kafka, &spec.kafka.topic)?
            .values()
            .sum();
        if held != n as i64 {
            bail!(
                "topic {} holds {held} messages after the preload, not {n}",
                spec.kafka.topic
            );
        }
    }
    Ok(bytes)
}

/// The machine's cores (all of them, whatever this process is pinned to).
fn online_cores() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize
}

/// The cores and load of this machine, to print beside the figures.
fn machine() -> String {
    format!(
        "{} cores, {}",
        online_cores(),
        std::fs::read_to_string("/proc/loadavg").map_or_else(
            |_| String::new(),
            |l| format!(
                "load {}",
                l.split(' ').take(3).collect::<Vec<_>>().join(" ")
            )
        )
    )
}

/// `--cluster`: the ceiling on the cluster, then the load half (one table) with 1, 2 and 3
/// loaders in one group, each draining the preloaded topic into a fresh table, then the
/// ceiling again.
async fn bench_cluster(args: Args, env: Env) -> anyhow::Result<()> {
    let one_table = one_table_spec()?;
    let mut spec = env.spec(&one_table)?;
    let machine = machine();
    println!(
        "aqueduct bench {} on the cluster (3 brokers, 3 Cassandra nodes, RF 3, local_quorum): {} records, {machine}",
        env.run, args.records
    );
    if env.cassandra_pids.len() != 3 {
        bail!("the cluster's three Cassandra pids were not found (scripts/stack up --cluster)");
    }
    kafka::ensure_topics(&spec.kafka, true).await?;
    let (rows, preload) = preload(&spec, &[(env.run.clone(), args.records)])?;
    println!(
        "preloaded {} messages into topic {} in {:.1} s",
        args.records, env.run, preload
    );
    let session = SessionBuilder::new()
        .known_nodes(&env.cassandra)
        .build()
        .await?;
    let (mut figures, mut best) =
        ceilings(&session, &mut spec.cassandra, &rows, &args.ceiling, &env).await?;
    let mut load = None;
    for loaders in 1..=3 {
        let prefix = format!("load_x{loaders}");
        let mut vars = table_names(&mut spec.cassandra, &prefix, true);
        fresh_table(&session, &spec.cassandra).await?;
        vars.push((
            "AQUEDUCT_KAFKA__GROUP_ID".into(),
            format!("{}_{prefix}", env.run),
        ));
        let f = run_aqueduct(
            &env,
            &env.bin.join("aqueduct"),
            &one_table,
            &format!("aqueduct load half, {loaders} loader(s)"),
            Until::Done(args.records),
            &["--only", "load", "--once"],
            &vars,
            loaders,
        )?;
        let rows_written = count_rows(&session, &spec.cassandra).await?;
        if rows_written != args.records as i64 {
            bail!("{}: {rows_written} rows, not {}", f.what, args.records);
        }
        drop_table(&session, &spec.cassandra).await?;
        println!("  {}: {:.0} records/s", f.what, f.per_second);
        load.get_or_insert_with(|| f.clone());
        figures.push(f);
    }
    ceiling_again(
        &session,
        &mut spec.cassandra,
        &rows,
        &mut best,
        &mut figures,
        &env,
    )
    .await?;
    let load = load.context("the load half was measured")?;
    report(&figures, best.per_second);
    println!();
    println!(
        "1 loader / best ceiling: {:.0} %; CPU {:.1} µs/record; peak {} MiB",
        100.0 * load.per_second / best.per_second,
        load.client_cpu_us,
        load.peak_rss_mib.map_or(0.0, |m| m.round())
    );
    let loaders = |n: usize| {
        figures
            .iter()
            .find(|f| f.what == format!("aqueduct load half, {n} loader(s)"))
    };
    if let (Some(one), Some(three)) = (loaders(1), loaders(3)) {
        println!(
            "3 loaders / 1 loader: records/s x{:.2}, client CPU per record x{:.2}, Cassandra CPU per row x{:.2}",
            three.per_second / one.per_second,
            three.client_cpu_us / one.client_cpu_us,
            three.cassandra_cpu_us.unwrap_or(0.0) / one.cassandra_cpu_us.unwrap_or(1.0),
        );
    }
    clean_up(&session, &env).await?;
    let json = json!({
        "run": env.run,
        "machine": machine,
        "cluster": true,
        "records": args.records,
        "ceiling_best": best,
        "figures": figures,
    });
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&json)?)?;
    println!("figures written to {}", args.json.display());
    Ok(())
}

/// Rows in the spec's (first) table.
async fn count_rows(session: &Session, c: &spec::Cassandra) -> anyhow::Result<i64> {
    let cql = format!(
        "SELECT count(*) FROM {}",
        cassandra::ddl::table_name(&c.tables[0])
    );
    let mut statement = scylla::statement::unprepared::Statement::new(cql);
    statement.set_request_timeout(Some(Duration::from_secs(120)));
    let rows = session
        .query_unpaged(statement, &[])
        .await?
        .into_rows_result()?;
    Ok(rows.single_row::<(i64,)>()?.0)
}

/// Produces stand-in users (keyed like the pipeline) into each topic, the first `n` of the same
/// users into a topic of `n`, and returns the most asked for as rows for the ceiling, with
/// the seconds the preload took.
fn preload(spec: &spec::Spec, topics: &[(String, usize)]) -> anyhow::Result<(Vec<cql::Row>, f64)> {
    let started = Instant::now();
    let producer: ThreadedProducer<DefaultProducerContext> = kafka::producer_config(&spec.kafka)
        .set("linger.ms", "20")
        .create()?;
    let most = topics.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let mut rows = Vec::with_capacity(most);
    for i in 0..most {
        let user = standin::user(&spec.kafka.topic, (i / 5000) as u64 + 1, i % 5000, false);
        let payload = serde_json::to_vec(&user)?;
        let key = user["login"]["uuid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        rows.push(map::row(
            &spec.cassandra.tables[0],
            &aqueduct::jq::Json::from(&user),
        )?);
        for (topic, _) in topics.iter().filter(|(_, n)| i < *n) {
            let record = BaseRecord::<str, [u8]>::to(topic)
                .key(&key)
                .payload(&payload);
            send_waiting(&producer, record).context("preloading the topic")?;
        }
    }
    producer.flush(Duration::from_secs(120))?;
    for (topic, n) in topics {
        let held: i64 = kafka::consume::high_watermarks(&spec.kafka, topic)?
            .values()
            .sum();
        if held != *n as i64 {
            bail!("topic {topic} holds {held} messages after the preload, not {n}");
        }
    }
    Ok((rows, started.elapsed().as_secs_f64()))
}

/// Queues `record`, waiting while the producer's queue is full.
fn send_waiting(
    producer: &ThreadedProducer<DefaultProducerContext>,
    mut record: BaseRecord<'_, str, [u8]>,
) -> rdkafka::error::KafkaResult<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e, r))
                if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
            {
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// A plain loop of prepared inserts, `concurrency` in flight, into a fresh table of the spec's
/// shape: the most this client library and this Cassandra can write here.
async fn ceiling(
    session: &Session,
    c: &spec::Cassandra,
    rows: &[cql::Row],
    concurrency: usize,
    env: &Env,
) -> anyhow::Result<Figure> {
    fresh_table(session, c).await?;
    let t = &c.tables[0];
    let mut insert = session.prepare(cassandra::ddl::insert(t)).await?;
    insert.set_consistency(t.consistency);
    insert.set_is_idempotent(true);
    let cpu = self_cpu();
    let cass = cassandra_cpu(env);
    let started = Instant::now();
    let mut first = None;
    let mut in_flight = FuturesUnordered::new();
    for row in rows {
        if in_flight.len() >= concurrency {
            in_flight.next().await.expect("not empty")?;
            first.get_or_insert_with(|| started.elapsed());
        }
        in_flight.push(write_retrying(session, &insert, row));
    }
    while let Some(done) = in_flight.next().await {
        done?;
        first.get_or_insert_with(|| started.elapsed());
    }
    let secs = started.elapsed().as_secs_f64();
    let mut f = Figure::new(
        format!("ceiling: prepared-insert loop, {concurrency} in flight"),
        rows.len(),
        secs,
        self_cpu().saturating_sub(cpu),
    );
    f.first_row_seconds = first.map(|d| d.as_secs_f64());
    f.last_row_seconds = Some(secs);
    f.concurrency = Some(concurrency);
    f.cassandra_cpu_us = cassandra_cpu_per_row(env, cass, rows.len());
    drop_table(session, c).await?;
    Ok(f)
}

/// A first pass over every row (not reported), then the ceiling at each of `concurrencies`:
/// their figures and the best. Cassandra's JIT-compiled write path keeps getting faster for a
/// while (ceilings drifted 31k -> 35k rows/s over a run that had only a 100,000-row warm-up),
/// and the first measured run must not pay for that; the warm-up runs at the highest
/// concurrency asked for (the cluster on 2 cores times out at the single node's 1024). The
/// ceilings write the first table's rows (aqueduct writes every table of the spec).
async fn ceilings(
    session: &Session,
    c: &mut spec::Cassandra,
    rows: &[cql::Row],
    concurrencies: &[usize],
    env: &Env,
) -> anyhow::Result<(Vec<Figure>, Figure)> {
    let others = c.tables.split_off(1);
    let warm_up = concurrencies.iter().copied().max().unwrap_or(256);
    c.tables[0].table = "warm_up".into();
    ceiling(session, c, rows, warm_up, env).await?;
    let mut figures = Vec::new();
    let mut best: Option<Figure> = None;
    for &concurrency in concurrencies {
        c.tables[0].table = format!("ceiling_c{concurrency}");
        let f = ceiling(session, c, rows, concurrency, env).await?;
        println!("  ceiling c={concurrency}: {:.0} rows/s", f.per_second);
        if best.as_ref().is_none_or(|b| f.per_second > b.per_second) {
            best = Some(f.clone());
        }
        figures.push(f);
    }
    c.tables.extend(others);
    Ok((figures, best.context("--ceiling names no concurrency")?))
}

/// The best ceiling once more, after the loaders (a drift of the machine over the run shows as
/// a gap between the two), added to `figures`, and `best` if it beat it.
async fn ceiling_again(
    session: &Session,
    c: &mut spec::Cassandra,
    rows: &[cql::Row],
    best: &mut Figure,
    figures: &mut Vec<Figure>,
    env: &Env,
) -> anyhow::Result<()> {
    let concurrency = best
        .what
        .split_whitespace()
        .find_map(|w| w.parse::<usize>().ok())
        .unwrap_or(256);
    let others = c.tables.split_off(1);
    c.tables[0].table = format!("ceiling_c{concurrency}_again");
    let mut again = ceiling(session, c, rows, concurrency, env).await?;
    c.tables.extend(others);
    again.what.push_str(", again");
    println!(
        "  ceiling c={concurrency} again: {:.0} rows/s",
        again.per_second
    );
    if again.per_second > best.per_second {
        *best = again.clone();
    }
    figures.push(again);
    Ok(())
}

/// One prepared insert, retried after a timeout or an unavailable replica (as aqueduct
/// retries), up to 20 times, 100 ms apart.
async fn write_retrying(
    session: &Session,
    insert: &scylla::statement::prepared::PreparedStatement,
    row: &cql::Row,
) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        match session.execute_unpaged(insert, row).await {
            Ok(_) => return Ok(()),
            Err(_) if attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Drops the run's keyspace and deletes its topics: a later run starts from the same state.
async fn clean_up(session: &Session, env: &Env) -> anyhow::Result<()> {
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", env.run), &[])
        .await?;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &env.kafka)
        .create()?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))?;
    let topics: Vec<&str> = metadata
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|name| name.starts_with(&env.run))
        .collect();
    admin
        .delete_topics(&topics, &AdminOptions::new())
        .await
        .context("deleting the run's topics")?;
    Ok(())
}

/// Creates the run's table once Cassandra is idle: no compaction or other sstable task left
/// from an earlier run to be billed to this one.
async fn fresh_table(session: &Session, c: &spec::Cassandra) -> anyhow::Result<()> {
    cassandra::ddl::ensure(session, c).await?;
    for _ in 0..600 {
        let tasks = session
            .query_unpaged("SELECT task_id FROM system_views.sstable_tasks", &[])
            .await?
            .into_rows_result()?
            .rows_num();
        if tasks == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("Cassandra still compacts after 2 minutes")
}

/// Drops a measured table, memtable and all (the stack runs with `auto_snapshot: false`), so
/// the next run does not pay for flushing this one's rows.
async fn drop_table(session: &Session, c: &spec::Cassandra) -> anyhow::Result<()> {
    for t in &c.tables {
        let cql = format!("DROP TABLE IF EXISTS {}", cassandra::ddl::table_name(t));
        session.query_unpaged(cql, &[]).await?;
    }
    Ok(())
}

/// Names every table of the spec `<prefix>_<its name in the spec>`; the variables that tell
/// an aqueduct process the same, for a spec file in the one-table form or with
/// `[cassandra.tables]`.
fn table_names(
    c: &mut spec::Cassandra,
    prefix: &str,
    one_table_form: bool,
) -> Vec<(String, String)> {
    c.tables
        .iter_mut()
        .map(|t| {
            t.table = format!("{prefix}_{}", t.name);
            let var = if one_table_form {
                "AQUEDUCT_CASSANDRA__TABLE".to_owned()
            } else {
                format!(
                    "AQUEDUCT_CASSANDRA__TABLES__{}__TABLE",
                    t.name.to_uppercase()
                )
            };
            (var, t.table.clone())
        })
        .collect()
}

/// The spec every measured run reads.
const USERS: &str = "pipelines/users.toml";

/// users.toml with its first table only (cut where `[cassandra.tables.users_by_country]`
/// starts), in the one-table form (which a build from before several tables reads too),
/// written beside the build output; its schema file is named by an absolute path.
fn one_table_spec() -> anyhow::Result<std::path::PathBuf> {
    let text = std::fs::read_to_string(USERS)?;
    let cut = text
        .find("[cassandra.tables.users_by_country]")
        .context("users.toml has a users_by_country table")?;
    let schema = std::fs::canonicalize("pipelines/schemas/randomuser-user.json")?;
    let text = text[..cut]
        .replace(
            "schema_file = \"schemas/randomuser-user.json\"",
            &format!("schema_file = {:?}", schema.display().to_string()),
        )
        .replace(
            "[cassandra.tables.created_users]\n",
            "table = \"created_users\"\n",
        )
        .replace(
            "[cassandra.tables.created_users.columns]",
            "[cassandra.columns]",
        );
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("users-one-table.toml");
    std::fs::write(&path, text)?;
    let tables = spec::load(&path)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .cassandra
        .tables
        .len();
    if tables != 1 {
        bail!("{} has {tables} tables, not 1", path.display());
    }
    Ok(path)
}

/// How a measured run ends.
enum Until {
    /// By itself (`--once`), having handled exactly this many records.
    Done(usize),
    /// By a SIGTERM after this long (a steady run); records are what it wrote.
    Stopped(Duration),
}

/// Runs the release `aqueduct` on `spec` with this run's overrides and measures it: `processes`
/// of them at once (loaders in one group), their CPU summed and the highest peak memory.
#[allow(clippy::too_many_arguments)]
fn run_aqueduct<K: AsRef<std::ffi::OsStr>>(
    env: &Env,
    bin: &Path,
    spec: &Path,
    what: &str,
    until: Until,
    args: &[&str],
    overrides: &[(K, String)],
    processes: usize,
) -> anyhow::Result<Figure> {
    let command = || {
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .args(args)
            .arg(spec)
            .env("AQUEDUCT_LOG", "warn,aqueduct::cli=info")
            .env("AQUEDUCT_KAFKA__BOOTSTRAP_SERVERS", &env.kafka)
            .env("AQUEDUCT_KAFKA__TOPIC", &env.run)
            .env(
                "AQUEDUCT_KAFKA__DEAD_LETTER_TOPIC",
                format!("{}_dlq", env.run),
            )
            .env(
                "AQUEDUCT_CASSANDRA__CONTACT_POINTS",
                serde_json::to_string(&env.cassandra).unwrap_or_default(),
            )
            .env("AQUEDUCT_CASSANDRA__KEYSPACE", &env.run)
            .envs(env.overrides.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in overrides {
            cmd.env(k, v);
        }
        cmd
    };
    let cass = cassandra_cpu(env);
    let started = Instant::now();
    let mut running = Vec::new();
    for _ in 0..processes {
        let mut child = command()
            .spawn()
            .with_context(|| format!("starting {} (cargo build --release)", bin.display()))?;
        let pid = child.id();
        let stderr = child.stderr.take().context("piped")?;
        let reader =
            std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
        // The child's rusage peak would include the pages of this process before its exec, so
        // the peak is read from its own high-water mark while it runs.
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let watcher = {
            let peak = peak.clone();
            std::thread::spawn(move || {
                while let Some(kb) = high_water_kb(pid) {
                    peak.fetch_max(kb, std::sync::atomic::Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        if let Until::Stopped(after) = until {
            std::thread::spawn(move || {
                std::thread::sleep(after);
                // SAFETY: kill has no memory effects; the pid is our unreaped child.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            });
        }
        running.push((pid, reader, watcher, peak));
    }
    let (mut cpu, mut peak_kb, mut counted) = (Duration::ZERO, 0, Some(0));
    let loads = !args.contains(&"ingest");
    let mut logs = Vec::new();
    for (pid, reader, watcher, peak) in running {
        let (status, usage) = wait4(pid)?;
        let _ = watcher.join();
        let log = reader.join().unwrap_or_default();
        if status != 0 {
            bail!("{what} failed (wait status {status}):\n{log}");
        }
        cpu += timeval(usage.ru_utime) + timeval(usage.ru_stime);
        peak_kb = peak_kb.max(peak.load(std::sync::atomic::Ordering::Relaxed));
        let n = summary_count(&log, if loads { "written" } else { "produced" });
        counted = counted.zip(n).map(|(a, b)| a + b);
        logs.push(log);
    }
    let secs = started.elapsed().as_secs_f64();
    let log = logs.join("\n");
    // Several loaders write a little twice where partitions moved between them.
    let records = match until {
        Until::Done(n) if counted == Some(n as u64) => n,
        Until::Done(n) if processes > 1 && counted.is_some_and(|c| c >= n as u64) => n,
        Until::Stopped(_) if counted.is_some_and(|n| n > 0) => counted.unwrap_or(0) as usize,
        _ => bail!("{what} reports {counted:?} records:\n{log}"),
    };
    let mut f = Figure::new(what.into(), records, secs, cpu);
    f.peak_rss_mib = Some(peak_kb as f64 / 1024.0);
    if loads {
        f.cassandra_cpu_us = cassandra_cpu_per_row(env, cass, records);
        f.latency_p50_ms = summary_count(&log, "latency_p50_ms");
        f.latency_p99_ms = summary_count(&log, "latency_p99_ms");
        f.first_row_seconds = summary_value(&log, "first_row_seconds");
        f.last_row_seconds = summary_value(&log, "last_row_seconds");
    }
    Ok(f)
}

/// The count `name=` in aqueduct's exit summary.
fn summary_count(log: &str, name: &str) -> Option<u64> {
    summary_value(log, name).map(|v| v as u64)
}

/// The number `name=` in aqueduct's exit summary.
fn summary_value(log: &str, name: &str) -> Option<f64> {
    let line = log.lines().rev().find(|l| l.contains("summary"))?;
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    line[at..]
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?
        .parse()
        .ok()
}

fn start_standin(env: &Env) -> anyhow::Result<(String, std::process::Child)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env.bin.join("randomuser-standin"))
        .arg(&addr)
        .stderr(Stdio::null())
        .spawn()
        .context("starting randomuser-standin")?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return Ok((addr, child));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("randomuser-standin did not listen on {addr}")
}

/// Every figure in one table, rates as a share of `ceiling` (records/s).
fn report(figures: &[Figure], ceiling: f64) {
    println!();
    println!(
        "{:<54} {:>8} {:>8} {:>8} {:>9} {:>7} {:>9} {:>9}",
        "", "records", "seconds", "per s", "of ceil.", "CPU µs", "peak MiB", "Cass. µs"
    );
    for f in figures {
        let ratio = if f.what.starts_with("ceiling") || f.what.contains("load half") {
            format!("{:.0} %", 100.0 * f.per_second / ceiling)
        } else {
            "-".into()
        };
        let opt = |v: Option<f64>, p: usize| v.map_or_else(|| "-".into(), |v| format!("{v:.p$}"));
        println!(
            "{:<54} {:>8} {:>8.1} {:>8.0} {:>9} {:>7.1} {:>9} {:>9}",
            f.what,
            f.records,
            f.seconds,
            f.per_second,
            ratio,
            f.client_cpu_us,
            opt(f.peak_rss_mib, 0),
            opt(f.cassandra_cpu_us, 1),
        );
    }
}

// --- CPU and memory from the kernel ---

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

fn self_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

/// Waits for a child and returns its wait status and resource usage.
fn wait4(pid: u32) -> anyhow::Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: wait4 only writes the status and the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    if r < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    Ok((status, usage))
}

/// `VmHWM` of a live process, in KiB; `None` once it has exited. Until the child has exec'd
/// aqueduct it still shares this process's memory, so that reads as 0.
fn high_water_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1).map(str::to_owned)
    };
    if !field("Name:")?.starts_with("aqueduct") {
        return Some(0);
    }
    field("VmHWM:")?.parse().ok()
}

/// user + system CPU of a process so far, from `/proc/<pid>/stat`.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after "pid (comm) ": utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split(' ')
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(fields.iter().sum::<u64>() as f64 / ticks)
}

/// CPU of the stack's Cassandra processes so far, summed; None without any.
fn cassandra_cpu(env: &Env) -> Option<Duration> {
    (!env.cassandra_pids.is_empty())
        .then(|| env.cassandra_pids.iter().map(|&p| process_cpu(p)).sum())
}

fn cassandra_cpu_per_row(env: &Env, before: Option<Duration>, rows: usize) -> Option<f64> {
    let after = cassandra_cpu(env)?;
    Some(after.saturating_sub(before?).as_secs_f64() * 1e6 / rows as f64)
}

/// The stack's processes (`nodes`), from their pid files in the state folder (`var`,
/// else `default`).
fn stack_pids(var: &str, default: &str, nodes: &[&str]) -> Vec<u32> {
    let dir = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    nodes
        .iter()
        .filter_map(|node| {
            std::fs::read_to_string(dir.join(node).join(format!("{node}.pid")))
                .ok()?
                .trim()
                .parse()
                .ok()
        })
        .collect()
}
