//! End to end: the stand-in API -> aqueduct -> the real Kafka and Cassandra, asserting what
//! lands in the table and on the topics.

use std::collections::HashMap;
use std::time::Duration;

use scylla::value::CqlTimestamp;
use serde_json::Value;
use uuid::Uuid;

use crate::support::{
    Api, Background, Pipeline, PrivateServer, Proxy, Server, aqueduct, cassandra_addr, count_rows,
    free_port, kafka_addr, run, services_up, session, spec_file, topic_messages, unique,
    wait_until,
};

fn millis(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

type UserRow = (
    Uuid,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    CqlTimestamp,
    CqlTimestamp,
    String,
    String,
);

async fn user_rows(table: &str) -> HashMap<Uuid, UserRow> {
    let s = session().await;
    let rows = s
        .query_unpaged(
            format!("SELECT id, first_name, last_name, gender, address, post_code, email, username, dob, registered_date, phone, picture FROM {table}"),
            &[],
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    rows.rows::<UserRow>()
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.0, r)
        })
        .collect()
}

/// The row users.toml must make of a stand-in user.
fn expected_row(u: &Value) -> UserRow {
    let s = |v: &Value| v.as_str().unwrap().to_owned();
    let loc = &u["location"];
    let post_code = match &loc["postcode"] {
        Value::String(p) => p.clone(),
        other => other.to_string(),
    };
    (
        Uuid::parse_str(u["login"]["uuid"].as_str().unwrap()).unwrap(),
        s(&u["name"]["first"]),
        s(&u["name"]["last"]),
        s(&u["gender"]),
        format!(
            "{} {}, {}, {}, {}",
            loc["street"]["number"],
            s(&loc["street"]["name"]),
            s(&loc["city"]),
            s(&loc["state"]),
            s(&loc["country"])
        ),
        post_code,
        s(&u["email"]),
        s(&u["login"]["username"]),
        CqlTimestamp(millis(u["dob"]["date"].as_str().unwrap())),
        CqlTimestamp(millis(u["registered"]["date"].as_str().unwrap())),
        s(&u["phone"]),
        s(&u["picture"]["medium"]),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn users_land_in_cassandra_with_typed_values_and_repolls_add_no_rows() {
    if !services_up("users_land_in_cassandra") {
        return;
    }
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=e2e"), 25);
    let out = run(&mut p.command(&["run", "--once"])).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("polled=25") && out.stderr.contains("written=25"),
        "{out:?}"
    );

    let rows = user_rows(&p.table()).await;
    assert_eq!(rows.len(), 25);
    for i in 0..25 {
        let want = expected_row(&randomuser_standin::user("e2e", 1, i, false));
        assert_eq!(rows.get(&want.0), Some(&want), "user {i}");
    }
    let messages = topic_messages(&p.topic);
    assert_eq!(messages.len(), 25);
    for (key, record) in &messages {
        assert_eq!(
            key.as_deref(),
            record["login"]["uuid"].as_str(),
            "messages are keyed by login.uuid"
        );
    }

    // The same users again: 25 more messages, still 25 rows.
    let out = run(&mut p.command(&["run", "--once"])).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(topic_messages(&p.topic).len(), 50);
    assert_eq!(p.row_count().await, 25);
    assert!(topic_messages(&p.dead_letter_topic).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_records_are_dead_lettered_with_their_reasons() {
    if !services_up("invalid_records_are_dead_lettered") {
        return;
    }
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=dlq&invalid=3"), 10);
    let out = run(&mut p.command(&["run", "--once"])).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("invalid=3") && out.stderr.contains("dead_lettered=3"),
        "{out:?}"
    );
    assert_eq!(p.row_count().await, 7);

    let dead = topic_messages(&p.dead_letter_topic);
    assert_eq!(dead.len(), 3);
    for (i, (_, letter)) in dead.iter().enumerate() {
        assert_eq!(letter["pipeline"], "users");
        assert_eq!(letter["stage"], "validate");
        let violations = letter["violations"].as_array().unwrap();
        let has = |pointer: &str, keyword: &str| {
            violations
                .iter()
                .any(|v| v["pointer"] == pointer && v["keyword"] == keyword)
        };
        assert!(has("", "required") && has("/email", "type"), "{letter}");
        assert!(
            letter["reason"]
                .as_str()
                .unwrap()
                .contains("\"login\" is a required property"),
            "{letter}"
        );
        assert!(
            letter["origin"]["url"]
                .as_str()
                .unwrap()
                .contains("invalid=3"),
            "{letter}"
        );
        assert!(chrono::DateTime::parse_from_rfc3339(letter["time"].as_str().unwrap()).is_ok());
        assert!(
            dead.iter()
                .any(|(_, l)| l["record"] == randomuser_standin::user("dlq", 1, i, true)),
            "original record kept"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn records_that_cannot_be_decoded_are_dead_lettered_as_text() {
    if !services_up("records_that_cannot_be_decoded") {
        return;
    }
    // Well-formed JSON, so the page is accepted, but 1e400 fits no double.
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=huge&huge=2"), 6);
    let out = run(&mut p.command(&["run", "--once"])).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("invalid=2") && out.stderr.contains("dead_lettered=2"),
        "{out:?}"
    );
    assert_eq!(p.row_count().await, 4);
    let dead = topic_messages(&p.dead_letter_topic);
    assert_eq!(dead.len(), 2);
    for (_, letter) in &dead {
        assert_eq!(letter["stage"], "validate", "{letter}");
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason.contains("cannot be decoded") && reason.contains("out of range"),
            "{letter}"
        );
        let text = letter["record"].as_str().unwrap();
        assert!(
            text.starts_with("{\"huge\":1e400,"),
            "the record is kept as sent: {letter}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn api_errors_are_retried_then_succeed() {
    if !services_up("api_errors_are_retried") {
        return;
    }
    for fault in ["500", "429", "truncate"] {
        let api = Api::start().await;
        let p = Pipeline::users(
            api.url(&format!("seed=retry&fault={fault}&fault_times=2")),
            5,
        );
        let out = run(p
            .command(&["run", "--once"])
            .env("AQUEDUCT_SOURCE__RETRY__INITIAL_BACKOFF", "10ms"))
        .await;
        assert_eq!(out.code, Some(0), "fault {fault}: {out:?}");
        assert_eq!(
            api.requests(),
            3,
            "fault {fault}: two failures, then success"
        );
        assert!(out.stderr.contains("retries=2"), "fault {fault}: {out:?}");
        if fault == "429" {
            // The stand-in's `Retry-After: 1` replaces the 10 ms backoff.
            assert!(out.stderr.contains("retry_in=1s"), "{out:?}");
        }
        assert_eq!(p.row_count().await, 5);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_returning_garbage_fails_the_run_naming_the_url() {
    if !services_up("an_api_returning_garbage") {
        return;
    }
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=bad&fault=garbage&fault_times=99"), 5);
    let out = run(p
        .command(&["run", "--once"])
        .env("AQUEDUCT_SOURCE__RETRY__ATTEMPTS", "3")
        .env("AQUEDUCT_SOURCE__RETRY__INITIAL_BACKOFF", "10ms"))
    .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("the response is not JSON"), "{out:?}");
    assert!(
        out.stderr.contains(&format!("http://{}/api/", api.addr)),
        "{out:?}"
    );
    assert!(out.stderr.contains("after 3 attempt(s)"), "{out:?}");
    assert_eq!(api.requests(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn mapping_failures_are_dead_lettered_and_the_rest_written() {
    if !services_up("mapping_failures_are_dead_lettered") {
        return;
    }
    let api = Api::start().await;
    let topic = unique("map");
    let keyspace = unique("ks");
    // post_code as int: numeric postcodes map, string ones (GB, NO, CA) cannot.
    let (_dir, spec) = spec_file(&format!(
        r#"
        name = "mapfail"
        [source]
        url = "{}"
        schedule = {{ every = "1h" }}
        records = ".results[]"
        [kafka]
        bootstrap_servers = "{}"
        topic = "{topic}"
        key = ".login.uuid"
        [cassandra]
        contact_points = ["{}"]
        keyspace = "{keyspace}"
        table = "t"
        partition_key = ["id"]
        columns.id = {{ type = "uuid", jq = ".login.uuid" }}
        columns.post_code = {{ type = "int", jq = ".location.postcode" }}
        "#,
        api.url("seed=map&results=40"),
        kafka_addr(),
        cassandra_addr()
    ));
    let mut cmd = aqueduct();
    cmd.args(["run", "--once"]).arg(&spec);
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let users: Vec<Value> = (0..40)
        .map(|i| randomuser_standin::user("map", 1, i, false))
        .collect();
    let numeric = users
        .iter()
        .filter(|u| u["location"]["postcode"].is_number())
        .count();
    assert!(
        numeric > 0 && numeric < 40,
        "the sample must hold both kinds"
    );
    assert_eq!(
        count_rows(&session().await, &format!("{keyspace}.t")).await,
        numeric as i64
    );
    let dead = topic_messages(&format!("{topic}_dlq"));
    assert_eq!(dead.len(), 40 - numeric);
    for (key, letter) in dead {
        assert_eq!(letter["stage"], "map");
        assert_eq!(letter["column"], "post_code");
        assert!(
            letter["reason"]
                .as_str()
                .unwrap()
                .starts_with("column post_code: expected an integer"),
            "{letter}"
        );
        assert_eq!(letter["origin"]["topic"], topic.as_str());
        assert!(letter["origin"]["offset"].is_i64());
        assert_eq!(key.as_deref(), letter["record"]["login"]["uuid"].as_str());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn split_ingest_and_load_processes_share_the_work() {
    if !services_up("split_ingest_and_load") {
        return;
    }
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=split"), 12);
    let out = run(&mut p.command(&["run", "--only", "ingest", "--once"])).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("produced=12") && out.stderr.contains("written=0"),
        "{out:?}"
    );
    assert_eq!(topic_messages(&p.topic).len(), 12);
    let out = run(&mut p.command(&["run", "--only", "load", "--once"])).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("polled=0") && out.stderr.contains("written=12"),
        "{out:?}"
    );
    assert_eq!(api.requests(), 1, "the loader does not poll");
    assert_eq!(p.row_count().await, 12);
    // Its offsets were committed: a second loader of the group finds nothing new.
    let out = run(&mut p.command(&["run", "--only", "load", "--once"])).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("written=0"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_gracefully_and_commits() {
    if !services_up("sigterm_stops_gracefully") {
        return;
    }
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=term"), 30);
    let child = p
        .command(&["run"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let s = session().await;
    let table = p.table();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = s
            .query_unpaged(format!("SELECT count(*) FROM {table}"), &[])
            .await
            .is_ok()
            && count_rows(&s, &table).await == 30;
        if ready {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rows did not land within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("aqueduct did not stop within 30 s of SIGTERM")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("signal received") && stderr.contains("summary"),
        "{stderr}"
    );
    // Everything written was committed: a loader of the same group has nothing to do.
    let again = run(&mut p.command(&["run", "--only", "load", "--once"])).await;
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(
        again.stderr.contains("written=0"),
        "{again:?}\n--- the stopped run's stderr:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_cassandra_fails_with_a_clear_message() {
    if !services_up("unreachable_cassandra") {
        return;
    }
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=down"), 1);
    let out = run(p
        .command(&["run", "--once"])
        .env("AQUEDUCT_CASSANDRA__CONTACT_POINTS", "[\"127.0.0.1:1\"]"))
    .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("cannot connect to Cassandra at 127.0.0.1:1"),
        "{out:?}"
    );
    assert_eq!(
        api.requests(),
        0,
        "nothing is polled before every client is built"
    );
}

/// A loader behind a proxy to Cassandra, started while Cassandra is there; then Cassandra
/// goes away and `results` records arrive; returns once the loader is retrying.
async fn loader_in_an_outage(
    seed: &str,
    results: u32,
    shutdown_timeout: &str,
    concurrency: u32,
) -> (Api, Proxy, Pipeline, Background) {
    let api = Api::start().await;
    let proxy = Proxy::start(cassandra_addr()).await;
    let p = Pipeline::users(api.url(&format!("seed={seed}")), results);
    let loader = Background::spawn(
        p.command(&["run", "--only", "load"])
            .env(
                "AQUEDUCT_CASSANDRA__CONTACT_POINTS",
                format!("[\"{}\"]", proxy.addr),
            )
            .env("AQUEDUCT_SHUTDOWN_TIMEOUT", shutdown_timeout)
            .env("AQUEDUCT_CASSANDRA__CONCURRENCY", concurrency.to_string()),
    );
    loader.wait_for("pipeline started", 60).await;
    proxy.set_up(false);
    let out = run(&mut p.command(&["run", "--only", "ingest", "--once"])).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    loader
        .wait_for("write failed; retrying (offset not committed)", 30)
        .await;
    assert_eq!(p.row_count().await, 0);
    (api, proxy, p, loader)
}

/// Cassandra goes away while `results` messages wait to be written; a stop then runs out of
/// its shutdown timeout: exit 1, nothing unwritten committed. With Cassandra back, a new
/// loader of the group writes every row.
async fn stop_in_an_outage_then_recover(seed: &str, results: u32, concurrency: u32) {
    let (_api, proxy, p, mut loader) = loader_in_an_outage(seed, results, "2s", concurrency).await;
    assert_eq!(loader.terminate().await, Some(1), "{}", loader.log());
    let log = loader.log();
    assert!(log.contains("shutdown timeout"), "{log}");
    assert!(
        log.contains("not written; they were not committed and will be consumed again"),
        "{log}"
    );
    proxy.set_up(true);
    let through_proxy = format!("[\"{}\"]", proxy.addr);
    let mut cmd = p.command(&["run", "--only", "load", "--once"]);
    let out = run(cmd.env("AQUEDUCT_CASSANDRA__CONTACT_POINTS", through_proxy)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains(&format!("written={results}")),
        "{out:?}"
    );
    assert_eq!(
        p.row_count().await,
        i64::from(results),
        "nothing lost: {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cassandra_outage_loses_nothing() {
    if !services_up("a_cassandra_outage_loses_nothing") {
        return;
    }
    stop_in_an_outage_then_recover("outage", 20, 32).await;
}

/// A shorter outage: the loader retries until Cassandra is back, and every row lands.
#[tokio::test(flavor = "multi_thread")]
async fn writes_are_retried_until_cassandra_is_back() {
    if !services_up("writes_are_retried_until_cassandra_is_back") {
        return;
    }
    let (_api, proxy, p, mut loader) = loader_in_an_outage("blip", 15, "30s", 32).await;
    proxy.set_up(true);
    wait_until("all 15 rows are written", 60, || async {
        p.row_count().await == 15
    })
    .await;
    assert_eq!(loader.terminate().await, Some(0), "{}", loader.log());
    assert!(loader.log().contains("written=15"), "{}", loader.log());
}

/// A second signal does not wait for writes that cannot finish: exit 130 at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_at_once() {
    if !services_up("a_second_signal_exits_at_once") {
        return;
    }
    let (_api, _proxy, _p, mut loader) = loader_in_an_outage("twice", 5, "60s", 32).await;
    let pid = loader.child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    loader.wait_for("signal received: stopping", 10).await;
    assert_eq!(loader.terminate().await, Some(130), "{}", loader.log());
    assert!(
        loader.log().contains("second signal: exiting at once"),
        "{}",
        loader.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_kafka_fails_with_a_clear_message_and_json_logs() {
    if !services_up("unreachable_kafka") {
        return;
    }
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=nokafka"), 1);
    let mut cmd = p.command(&["--log-format", "json", "run", "--once"]);
    let out = run(cmd.env("AQUEDUCT_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let lines: Vec<Value> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let error = lines
        .iter()
        .find(|l| l["level"] == "ERROR")
        .expect("an error line");
    let message = error["fields"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot reach Kafka at 127.0.0.1:1") && message.contains("is it running?"),
        "{message}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "summary" && l["fields"]["polled"] == 0)
    );
    assert_eq!(api.requests(), 0);
}

/// A message on the topic that is not JSON (another producer's mistake) is dead-lettered by
/// the loader with stage `decode`; the others are written.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_that_is_not_json_is_dead_lettered_by_the_loader() {
    if !services_up("a_message_that_is_not_json") {
        return;
    }
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=decode"), 3);
    let out = run(&mut p.command(&["run", "--only", "ingest", "--once"])).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_addr())
        .create()
        .unwrap();
    producer
        .send(
            rdkafka::producer::FutureRecord::to(&p.topic)
                .key("k")
                .payload("{not json"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let out = run(&mut p.command(&["run", "--only", "load", "--once"])).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("written=3") && out.stderr.contains("dead_lettered=1"),
        "{out:?}"
    );
    let dead = topic_messages(&p.dead_letter_topic);
    assert_eq!(dead.len(), 1);
    let (key, letter) = &dead[0];
    assert_eq!(key.as_deref(), Some("k"));
    assert_eq!(letter["stage"], "decode");
    assert_eq!(letter["record"], "{not json");
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .starts_with("the message is not JSON"),
        "{letter}"
    );
    assert_eq!(p.row_count().await, 3);
}

/// A slow API runs into `source.timeout`; each attempt is cut off and retried.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_api_times_out_and_is_retried() {
    if !services_up("a_slow_api_times_out") {
        return;
    }
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=slow&delay_ms=3000"), 1);
    let mut cmd = p.command(&["run", "--once"]);
    cmd.env("AQUEDUCT_SOURCE__TIMEOUT", "300ms")
        .env("AQUEDUCT_SOURCE__RETRY__ATTEMPTS", "2")
        .env("AQUEDUCT_SOURCE__RETRY__INITIAL_BACKOFF", "10ms");
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("after 2 attempt(s)"), "{out:?}");
    assert!(out.stderr.to_lowercase().contains("timed out"), "{out:?}");
    assert_eq!(api.requests(), 2);
}

/// Page pagination: one poll walks `max_pages` pages of the API.
#[tokio::test(flavor = "multi_thread")]
async fn pagination_walks_the_pages_of_one_poll() {
    if !services_up("pagination_walks_the_pages") {
        return;
    }
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=pages"), 4);
    let mut cmd = p.command(&["run", "--once"]);
    cmd.env("AQUEDUCT_SOURCE__PAGINATION__MODE", "page")
        .env("AQUEDUCT_SOURCE__PAGINATION__PARAM", "page")
        .env("AQUEDUCT_SOURCE__PAGINATION__MAX_PAGES", "3");
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(api.requests(), 3);
    let rows = user_rows(&p.table()).await;
    assert_eq!(rows.len(), 12);
    for page in 1..=3 {
        for i in 0..4 {
            let want = expected_row(&randomuser_standin::user("pages", page, i, false));
            assert_eq!(rows.get(&want.0), Some(&want), "page {page} user {i}");
        }
    }
}

/// `on_invalid = "fail"`: the run stops with exit 1 naming the record's problem.
#[tokio::test(flavor = "multi_thread")]
async fn on_invalid_fail_stops_the_run() {
    if !services_up("on_invalid_fail_stops_the_run") {
        return;
    }
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=strict&invalid=1"), 3);
    let mut cmd = p.command(&["run", "--once"]);
    let out = run(cmd.env("AQUEDUCT_VALIDATE__ON_INVALID", "fail")).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("is invalid and validate.on_invalid = \"fail\""),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("\"login\" is a required property"),
        "{out:?}"
    );
    assert!(topic_messages(&p.dead_letter_topic).is_empty());
}

/// Two loaders in one consumer group share the partitions; every record lands once.
#[tokio::test(flavor = "multi_thread")]
async fn two_loaders_in_one_group_share_the_work() {
    if !services_up("two_loaders_in_one_group") {
        return;
    }
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=group"), 60);
    let mut a = Background::spawn(&mut p.command(&["run", "--only", "load"]));
    let mut b = Background::spawn(&mut p.command(&["run", "--only", "load"]));
    a.wait_for("partitions assigned", 60).await;
    b.wait_for("partitions assigned", 60).await;
    // Let the group settle on both members before records arrive.
    wait_until("both loaders own partitions", 60, || async {
        // The last rebalance event of each member assigned it at least one partition.
        let owns = |log: String| {
            log.lines()
                .rfind(|l| l.contains("partitions assigned") || l.contains("partitions revoked"))
                .is_some_and(|l| l.contains("partitions assigned") && l.contains('/'))
        };
        owns(a.log()) && owns(b.log())
    })
    .await;
    let out = run(&mut p.command(&["run", "--only", "ingest", "--once"])).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    wait_until("all 60 rows are written", 60, || async {
        p.row_count().await == 60
    })
    .await;
    assert_eq!(a.terminate().await, Some(0), "{}", a.log());
    assert_eq!(b.terminate().await, Some(0), "{}", b.log());
    let written = |log: String| -> u64 {
        let tail = log.rsplit("written=").next().unwrap();
        tail.split_whitespace().next().unwrap().parse().unwrap()
    };
    let (wa, wb) = (written(a.log()), written(b.log()));
    assert!(wa > 0 && wb > 0, "both loaders wrote: {wa} and {wb}");
    // At-least-once: a rebalance during the run could re-deliver (and rewrite) a few; the
    // table still holds each user once.
    assert!(wa + wb >= 60, "{wa} + {wb}");
    assert_eq!(p.row_count().await, 60);
}

/// `[metrics] address` serves the run's counters in Prometheus' text format.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_served_for_prometheus() {
    if !services_up("metrics_are_served") {
        return;
    }
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=metrics&invalid=1"), 8);
    let port = free_port();
    let mut cmd = p.command(&["run"]);
    let mut running =
        Background::spawn(cmd.env("AQUEDUCT_METRICS__ADDRESS", format!("127.0.0.1:{port}")));
    wait_until("all 7 valid rows are written", 60, || async {
        running.log().contains("poll done") && p.row_count().await == 7
    })
    .await;
    // Probes: live, and ready once the loader has partitions.
    for (path, body) in [("health", "ok\n"), ("ready", "ready\n")] {
        let answer = reqwest::get(format!("http://127.0.0.1:{port}/{path}"))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "/{path}");
        assert_eq!(answer.text().await.unwrap(), body, "/{path}");
    }
    let url = format!("http://127.0.0.1:{port}/metrics");
    // The lag gauges follow the loader's commits within seconds of the drain.
    let all_caught_up = |text: &str| {
        let lags: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("aqueduct_consumer_lag{"))
            .collect();
        lags.len() == 3 && lags.iter().all(|l| l.ends_with(" 0"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        if all_caught_up(&text) {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "every partition's lag should be 0 after the drain:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let p = "pipeline=\"users\"";
    for line in [
        format!("aqueduct_records_total{{{p},stage=\"polled\"}} 8"),
        format!("aqueduct_records_total{{{p},stage=\"valid\"}} 7"),
        format!("aqueduct_records_total{{{p},stage=\"invalid\"}} 1"),
        format!("aqueduct_records_total{{{p},stage=\"produced\"}} 7"),
        format!("aqueduct_records_total{{{p},stage=\"consumed\"}} 7"),
        format!("aqueduct_records_total{{{p},stage=\"written\"}} 7"),
        format!("aqueduct_dead_letters_total{{{p},stage=\"validate\"}} 1"),
        format!("aqueduct_dead_letters_total{{{p},stage=\"map\"}} 0"),
        format!("aqueduct_retries_total{{{p},kind=\"http\"}} 0"),
        format!("aqueduct_failed_polls_total{{{p}}} 0"),
        format!("aqueduct_writes_in_flight{{{p}}} 0"),
        // Every row written is timed end to end, from the header the ingest set, and its write.
        format!("aqueduct_end_to_end_latency_seconds_count{{{p}}} 7"),
        format!("aqueduct_end_to_end_latency_seconds_bucket{{{p},le=\"+Inf\"}} 7"),
        // A record is a row in each of users.toml's two tables.
        format!("aqueduct_write_latency_seconds_count{{{p}}} 14"),
        format!("aqueduct_rows_written_total{{{p},table=\"created_users\"}} 7"),
        format!("aqueduct_rows_written_total{{{p},table=\"users_by_country\"}} 7"),
        format!("aqueduct_produce_latency_seconds_count{{{p}}} 7"),
        "# TYPE aqueduct_poll_duration_seconds histogram".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    let polls = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("aqueduct_poll_duration_seconds_count{{{p}}} ")))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(polls.is_some_and(|n| n >= 1), "{text}");
    let last_poll = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "aqueduct_last_poll_success_timestamp_seconds{{{p}}} "
            ))
        })
        .and_then(|t| t.parse::<f64>().ok());
    assert!(last_poll.is_some_and(|t| t > 1.7e9), "{text}");
    check_dashboard(&text);
    assert_eq!(running.terminate().await, Some(0), "{}", running.log());
    let log = running.log();
    assert!(
        log.contains("latency_p50_ms=")
            && log.contains("first_row_seconds=")
            && log.contains("last_row_seconds="),
        "the summary times the rows: {log}"
    );
    // The first poll waits for the loader's partitions, so its records are not left waiting
    // in the topic while the group forms.
    let assigned = log.find("partitions assigned");
    let polled = log.find("poll done");
    assert!(
        assigned.is_some() && assigned < polled,
        "the loader was assigned its partitions before the first poll: {log}"
    );
}

/// The Grafana dashboard (`grafana/dashboards/aqueduct.json`) is well-formed and every
/// metric its queries name is one a run serves, as `scrape` shows.
fn check_dashboard(scrape: &str) {
    let served: std::collections::HashSet<&str> = scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let path = crate::support::repo().join("grafana/dashboards/aqueduct.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut exprs = Vec::new();
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(
                target["expr"]
                    .as_str()
                    .expect("every target has an expr")
                    .to_owned(),
            );
        }
    }
    assert!(exprs.len() >= 6, "{exprs:?}");
    let names = metric_names(&exprs);
    assert!(!names.is_empty());
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| !served.contains(n.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries {unknown:?}, which no run serves:\n{scrape}"
    );
}

/// The `aqueduct_*` metric names in PromQL expressions.
fn metric_names(exprs: &[String]) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for expr in exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("aqueduct_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            names.insert(name);
        }
    }
    names
}

/// A stop while the loader waits for room in a full lane (one lane, Cassandra gone, more
/// messages than the lane holds) is still a graceful stop: exit 1 after the shutdown timeout,
/// not a hang until a second signal. Regression: the dispatch did not watch for the stop.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_is_seen_while_a_full_lane_blocks_the_consumer() {
    if !services_up("a_stop_is_seen_while_a_full_lane_blocks") {
        return;
    }
    stop_in_an_outage_then_recover("full", 100, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_loader_redoes_at_most_the_commit_window() {
    if !services_up("a_killed_loader_redoes_at_most_the_commit_window") {
        return;
    }
    const USERS: i64 = 20_000;
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=killed"), 5000);
    let out = run(p
        .command(&["run", "--only", "ingest", "--once"])
        .env("AQUEDUCT_SOURCE__PAGINATION__MODE", "page")
        .env("AQUEDUCT_SOURCE__PAGINATION__PARAM", "page")
        .env("AQUEDUCT_SOURCE__PAGINATION__MAX_PAGES", "4"))
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    // One write at a time, so the drain takes seconds and the kill lands in the middle of it.
    let mut loader = Background::spawn(
        p.command(&["run", "--only", "load"])
            .env("AQUEDUCT_CASSANDRA__CONCURRENCY", "1"),
    );
    let s = session().await;
    let table = p.table();
    let count = || async { count_rows(&s, &table).await };
    wait_until("the first row lands", 60, || async {
        s.query_unpaged(format!("SELECT count(*) FROM {table}"), &[])
            .await
            .is_ok()
            && count().await > 0
    })
    .await;
    let first_row = std::time::Instant::now();
    // Three commit intervals in: with commits only every 5 s (librdkafka's default) or only at
    // shutdown, nothing would be committed yet and the restart would write everything again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    loader.child.start_kill().unwrap();
    loader.child.wait().await.unwrap();
    let written_before = count().await;
    let rate = written_before as f64 / first_row.elapsed().as_secs_f64();
    assert!(written_before < USERS, "the kill came after the drain");

    let out = run(&mut p.command(&["run", "--only", "load", "--once"])).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(count().await, USERS, "nothing is lost");
    let redone: i64 = out
        .stderr
        .split("written=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no written= in {out:?}"));
    // The restart writes what was left plus what was written since the last commit: at most
    // one commit interval (1 s by default) and one store tick of the first run's writes.
    let window = (rate * 1.5).ceil() as i64 + 20;
    assert!(
        redone >= USERS - written_before && redone <= USERS - written_before + window,
        "the restart wrote {redone} rows; {written_before} of {USERS} were written before the kill at {rate:.0} rows/s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_sent_scrape_does_not_keep_the_run_from_ending() {
    if !services_up("a_half_sent_scrape") {
        return;
    }
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=halfscrape"), 5);
    let port = free_port();
    let mut cmd = p.command(&["run", "--once"]);
    let mut running =
        Background::spawn(cmd.env("AQUEDUCT_METRICS__ADDRESS", format!("127.0.0.1:{port}")));
    running.wait_for("serving metrics", 60).await;
    // A client that starts a request and never finishes it.
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stalled, b"GET /metrics HTTP/1.1\r\n")
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), running.child.wait())
        .await
        .unwrap_or_else(|_| panic!("the run did not end; log:\n{}", running.log()))
        .unwrap();
    assert_eq!(status.code(), Some(0), "{}", running.log());
    assert_eq!(p.row_count().await, 5);
    drop(stalled);
}

/// A spec mistake dead-letters records; once the spec is fixed, `replay` writes them: the dry
/// run writes and commits nothing, the replay writes every one (nothing lost), a record that
/// still fails goes to the dead-letter topic again with its reason, and a second replay finds
/// nothing new (its group committed).
#[tokio::test]
async fn replay_writes_dead_letters_once_the_spec_is_fixed() {
    if !services_up("replay_writes_dead_letters_once_the_spec_is_fixed") {
        return;
    }
    let api = Api::start().await;
    let topic = unique("replay");
    let keyspace = unique("ks");
    let spec_with = |post_code: &str| {
        format!(
            r#"
            name = "replay"
            [source]
            url = "{}"
            schedule = {{ every = "1h" }}
            records = ".results[]"
            [validate.schema]
            type = "object"
            required = ["login"]
            [kafka]
            bootstrap_servers = "{}"
            topic = "{topic}"
            key = ".login.uuid"
            [cassandra]
            contact_points = ["{}"]
            keyspace = "{keyspace}"
            table = "t"
            partition_key = ["id"]
            columns.id = {{ type = "uuid", jq = ".login.uuid" }}
            columns.post_code = {{ {post_code} }}
            "#,
            api.url("seed=replay&results=30&invalid=2"),
            kafka_addr(),
            cassandra_addr()
        )
    };
    // The mistake: a text column fed the postcode as is, so numeric postcodes cannot map.
    let (dir, spec) = spec_file(&spec_with(r#"type = "text", jq = ".location.postcode""#));
    let mut cmd = aqueduct();
    cmd.args(["run", "--once"]).arg(&spec);
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let table = format!("{keyspace}.t");
    let written = count_rows(&session().await, &table).await;
    let dlq = format!("{topic}_dlq");
    let first = topic_messages(&dlq);
    let mapped: Vec<_> = first.iter().filter(|(_, l)| l["stage"] == "map").collect();
    assert!(!mapped.is_empty() && written > 0, "both kinds: {out:?}");
    assert_eq!(first.len(), mapped.len() + 2, "and the 2 invalid users");
    assert_eq!(written as usize + mapped.len(), 28);

    // The fix, in the same file.
    std::fs::write(
        &spec,
        spec_with(r#"type = "text", jq = ".location.postcode | tostring""#),
    )
    .unwrap();
    let mut cmd = aqueduct();
    cmd.args(["replay", "--dry-run"]).arg(&spec);
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "read={} would_write={} would_dead_letter=2",
            first.len(),
            mapped.len()
        )),
        "{out:?}"
    );
    assert_eq!(
        count_rows(&session().await, &table).await,
        written,
        "a dry run writes nothing"
    );
    assert_eq!(topic_messages(&dlq).len(), first.len(), "nor dead-letters");

    // Beside the live pipeline, which holds the metrics address: the replay serves none.
    let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = aqueduct();
    cmd.arg("replay").arg(&spec).env(
        "AQUEDUCT_METRICS__ADDRESS",
        live.local_addr().unwrap().to_string(),
    );
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "read={} written={} dead_lettered_again=2",
            first.len(),
            mapped.len()
        )),
        "the dry run committed nothing, so the replay reads them all: {out:?}"
    );
    assert_eq!(
        count_rows(&session().await, &table).await,
        28,
        "every valid user, none lost"
    );
    let after = topic_messages(&dlq);
    assert_eq!(
        after.len(),
        first.len() + 2,
        "the invalid ones again, nothing else"
    );
    // Told apart by their origin: the dead-letter topic itself (the topics interleave).
    let again: Vec<&Value> = after
        .iter()
        .map(|(_, letter)| letter)
        .filter(|letter| letter["origin"]["topic"] == dlq.as_str())
        .collect();
    assert_eq!(again.len(), 2, "{after:?}");
    for letter in again {
        assert_eq!(letter["stage"], "validate", "{letter}");
        assert!(
            letter["reason"]
                .as_str()
                .unwrap()
                .contains("\"login\" is a required property"),
            "{letter}"
        );
    }

    // The group committed: a second replay reads only the two re-dead-lettered records.
    let mut cmd = aqueduct();
    cmd.arg("replay").arg(&spec);
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr
            .contains("read=2 written=0 dead_lettered_again=2"),
        "{out:?}"
    );
    drop(dir);
}

/// `run --once` shows its progress: a log line at `AQUEDUCT_PROGRESS_EVERY` when stderr is
/// not a terminal, a bar (records, rate, records left, ETA) with the log lines above it on a
/// terminal;
/// a bad interval is a usage error.
#[tokio::test]
async fn a_once_run_shows_its_progress() {
    if !services_up("a_once_run_shows_its_progress") {
        return;
    }
    let api = Api::start().await;
    // 3,000 users at one write at a time: a few seconds of loading.
    let p = Pipeline::users(api.url("seed=progress"), 3000);
    let mut cmd = p.command(&["run", "--once"]);
    cmd.env("AQUEDUCT_CASSANDRA__CONCURRENCY", "1")
        .env("AQUEDUCT_PROGRESS_EVERY", "200ms");
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let done: Vec<u64> = out
        .stderr
        .lines()
        .filter(|l| l.contains(" progress ") && l.contains("left="))
        .filter_map(|l| l.split("done=").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    assert!(done.len() >= 2, "progress lines: {out:?}");
    assert!(
        done.windows(2).all(|w| w[0] <= w[1]) && done.iter().all(|d| *d <= 3000),
        "{done:?}"
    );

    // On a terminal (a pty from `script`): the bar, and the log lines intact above it.
    let p = Pipeline::users(api.url("seed=progress_tty"), 3000);
    let inner = p.command(&["run", "--once"]);
    let command = inner.as_std();
    let mut line = format!("{:?}", command.get_program());
    for arg in command.get_args() {
        line.push_str(&format!(" {arg:?}"));
    }
    let mut cmd = tokio::process::Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("AQUEDUCT_CASSANDRA__CONCURRENCY", "1")
        .current_dir(crate::support::repo());
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains(" records  ")
            && out.stdout.contains("  left ")
            && out.stdout.contains("  eta "),
        "no bar: {out:?}"
    );
    assert!(out.stdout.contains("summary"), "{out:?}");

    let mut cmd = p.command(&["run", "--once"]);
    cmd.env("AQUEDUCT_PROGRESS_EVERY", "often");
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("AQUEDUCT_PROGRESS_EVERY=\"often\" is not a duration"),
        "{out:?}"
    );
}

/// librdkafka properties set from the environment, where operators keep them, reach the
/// clients under their dotted names for every map (`properties`, `producer_properties`,
/// `consumer_properties`): the run works (before, `linger_ms` was refused as unknown). The
/// topic configs of `topic_properties` are on both topics aqueduct created.
#[tokio::test]
async fn kafka_properties_from_the_environment_keep_their_dotted_names() {
    if !services_up("kafka_properties_from_the_environment_keep_their_dotted_names") {
        return;
    }
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=props"), 5);
    let mut cmd = p.command(&["run", "--once"]);
    cmd.env(
        "AQUEDUCT_KAFKA__PROPERTIES__CLIENT_ID",
        "aqueduct-props-test",
    )
    .env("AQUEDUCT_KAFKA__PRODUCER_PROPERTIES__LINGER_MS", "5")
    .env(
        "AQUEDUCT_KAFKA__CONSUMER_PROPERTIES__SESSION_TIMEOUT_MS",
        "45000",
    )
    .env("AQUEDUCT_KAFKA__TOPIC_PROPERTIES__RETENTION_MS", "86400000")
    .env(
        "AQUEDUCT_KAFKA__TOPIC_PROPERTIES__MAX_MESSAGE_BYTES",
        "2000000",
    );
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(p.row_count().await, 5);
    for topic in [&p.topic, &p.dead_letter_topic] {
        let configs = topic_configs(topic).await;
        assert_eq!(configs["retention.ms"], "86400000", "{topic}: {configs:?}");
        assert_eq!(
            configs["max.message.bytes"], "2000000",
            "{topic}: {configs:?}"
        );
    }
}

/// The configs of `topic` on the shared stack's broker.
async fn topic_configs(topic: &str) -> HashMap<String, String> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_addr())
        .create()
        .unwrap();
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .unwrap();
    let resource = described.into_iter().next().unwrap().unwrap();
    resource
        .entries
        .into_iter()
        .filter_map(|e| Some((e.name, e.value?)))
        .collect()
}

/// Kafka stopped under a running ingest: a SIGTERM still exits within `shutdown_timeout`
/// (exit 1, saying the page was not acknowledged), not after librdkafka's 300 s message
/// timeout, and the next run produces the page again.
#[tokio::test]
async fn a_stop_while_kafka_is_down_exits_within_the_shutdown_timeout() {
    if !services_up("a_stop_while_kafka_is_down_exits_within_the_shutdown_timeout") {
        return;
    }
    let kafka = PrivateServer::start(Server::Kafka);
    let api = Api::start().await;
    let topic = unique("kafka_down");
    let ingest = |args: &[&str]| {
        let mut cmd = aqueduct();
        cmd.args(args)
            .arg("pipelines/users.toml")
            .env("AQUEDUCT_SOURCE__URL", api.url("seed=kafka_down"))
            .env("AQUEDUCT_SOURCE__QUERY__RESULTS", "20")
            .env("AQUEDUCT_SOURCE__SCHEDULE__EVERY", "1s")
            .env("AQUEDUCT_SHUTDOWN_TIMEOUT", "3s")
            .env("AQUEDUCT_KAFKA__BOOTSTRAP_SERVERS", kafka.addr())
            .env("AQUEDUCT_KAFKA__TOPIC", &topic)
            .env("AQUEDUCT_KAFKA__DEAD_LETTER_TOPIC", format!("{topic}_dlq"));
        cmd
    };
    let mut running = Background::spawn(&mut ingest(&["run", "--only", "ingest"]));
    running.wait_for("poll done", 60).await;
    kafka.stop();
    // Polls go on; their records wait for a broker that is gone.
    let requests = api.requests();
    wait_until("a poll after Kafka went down", 30, || async {
        api.requests() > requests
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = std::time::Instant::now();
    let code = running.terminate().await;
    let took = asked.elapsed();
    let log = running.log();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        took < Duration::from_secs(15),
        "exit {took:?} after SIGTERM, shutdown_timeout is 3 s:\n{log}"
    );
    assert!(
        log.contains("shutdown timeout (3s) ran out before Kafka acknowledged the page from"),
        "{log}"
    );

    // Back up: the next run produces the page (the stand-in's seed gives the same 20 users).
    kafka.resume();
    let out = run(&mut ingest(&["run", "--once", "--only", "ingest"])).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let keys: std::collections::HashSet<Option<String>> =
        crate::support::topic_messages_at(&kafka.addr(), &topic)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
    let expected: std::collections::HashSet<Option<String>> = (0..20)
        .map(|i| {
            let user = randomuser_standin::user("kafka_down", 1, i, false);
            Some(user["login"]["uuid"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(keys, expected);
}

/// A response over `source.max_body_size` is refused as it arrives, retried, then fails the
/// run naming the limit, and none of its records reaches the topic.
#[tokio::test]
async fn a_body_over_the_size_limit_fails_and_produces_nothing() {
    if !services_up("a_body_over_the_size_limit_fails_and_produces_nothing") {
        return;
    }
    let api = Api::start().await;
    // 500 users are some 500 KB.
    let p = Pipeline::users(api.url("seed=big"), 500);
    let mut cmd = p.command(&["run", "--once"]);
    cmd.env("AQUEDUCT_SOURCE__MAX_BODY_SIZE", "100 KiB")
        .env("AQUEDUCT_SOURCE__RETRY__ATTEMPTS", "2")
        .env("AQUEDUCT_SOURCE__RETRY__INITIAL_BACKOFF", "10ms");
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(
            "the response is larger than source.max_body_size (100.0 KiB); raise it if that is expected (after 2 attempt(s))"
        ),
        "{out:?}"
    );
    assert_eq!(api.requests(), 2);
    assert!(
        topic_messages(&p.topic).is_empty(),
        "half a page was produced"
    );
}

/// A record larger than a Kafka message may be is dead-lettered at stage `produce` with the
/// start of its text and the reason, and the pipeline goes on with the others.
#[tokio::test]
async fn a_record_too_large_for_kafka_is_dead_lettered_and_the_rest_written() {
    if !services_up("a_record_too_large_for_kafka_is_dead_lettered") {
        return;
    }
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=toolarge&big=1"), 5);
    let out = run(&mut p.command(&["run", "--once"])).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(p.row_count().await, 4);
    let dead = topic_messages(&p.dead_letter_topic);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter = &dead[0].1;
    assert_eq!(letter["stage"], "produce");
    let reason = letter["reason"].as_str().unwrap();
    assert!(
        reason.contains("more than topic") && reason.contains("message.max.bytes"),
        "{reason}"
    );
    let kept = letter["record"].as_str().unwrap();
    assert_eq!(kept.len(), 64 * 1024);
    assert!(kept.starts_with('{'), "the start of the record's text");
}
