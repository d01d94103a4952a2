//! Codecs through the local stack's real Schema Registry (Karapace): Avro and JSON Schema
//! records in Confluent's wire format, the schema registered under the topic's subject, rows in
//! Cassandra as with JSON; an incompatible schema change refused at start with the registry's
//! reason; a payload the codec cannot read dead-lettered whole.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::*;

fn registry_addr() -> String {
    std::env::var("AQUEDUCT_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:8081".into())
}

/// Whether Kafka, Cassandra and the registry are up; a missing one fails the test.
fn registry_up(test: &str) -> bool {
    if !services_up(test) {
        return false;
    }
    let addr = registry_addr();
    let up = std::net::TcpStream::connect(&addr).is_ok();
    if !up {
        skip_or_fail(&format!(
            "{test}: the schema registry at {addr} is not reachable; start the local stack with `scripts/stack up`"
        ));
    }
    up
}

/// The subject's latest version as the registry has it.
async fn latest(subject: &str) -> serde_json::Value {
    let url = format!(
        "http://{}/subjects/{subject}/versions/latest",
        registry_addr()
    );
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

const USER_AVSC: &str = r#"{
  "type": "record", "name": "User", "namespace": "randomuser",
  "fields": [
    {"name": "login", "type": {"type": "record", "name": "Login", "fields": [{"name": "uuid", "type": "string"}]}},
    {"name": "email", "type": "string"},
    {"name": "phone", "type": ["null", "string"], "default": null}
  ]
}"#;

/// A spec loading the stand-in's users of `seed` through `codec`, written into `dir`.
fn spec(dir: &Path, api: &Api, seed: &str, names: &(String, String), codec: &str) -> PathBuf {
    let (topic, keyspace) = names;
    let text = format!(
        r#"
name = "{topic}"
[source]
url = "{url}"
schedule = {{ every = "1h" }}
records = ".results[]"
[validate]
schema = {{ title = "User", type = "object", required = ["login", "email"], properties = {{ login = {{ type = "object", required = ["uuid"] }} }} }}
[kafka]
bootstrap_servers = "{kafka}"
topic = "{topic}"
key = ".login.uuid"
{codec}
[cassandra]
contact_points = ["{cassandra}"]
keyspace = "{keyspace}"
table = "t"
partition_key = ["id"]
columns.id = {{ type = "uuid", jq = ".login.uuid" }}
columns.email = {{ type = "text", jq = ".email" }}
"#,
        url = api.url(&format!("seed={seed}&results=5")),
        kafka = kafka_addr(),
        cassandra = cassandra_addr(),
    );
    let path = dir.join("spec.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The users of `seed` on the stand-in's first page of 5, as (id, email).
fn users(seed: &str) -> BTreeSet<(String, String)> {
    (0..5)
        .map(|i| {
            let u = randomuser_standin::user(seed, 1, i, false);
            let id = u["login"]["uuid"].as_str().unwrap().to_owned();
            (id, u["email"].as_str().unwrap().to_owned())
        })
        .collect()
}

async fn rows(keyspace: &str) -> BTreeSet<(String, String)> {
    let rows = session()
        .await
        .query_unpaged(format!("SELECT id, email FROM {keyspace}.t"), ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    rows.rows::<(uuid::Uuid, String)>()
        .unwrap()
        .map(|r| {
            let (id, email) = r.unwrap();
            (id.to_string(), email)
        })
        .collect()
}

/// Avro: the schema registered under `<topic>-value`, every message a zero byte, its id and
/// the Avro record, every user in Cassandra; the keys Avro strings under `<topic>-key`. A schema change the subject's compatibility
/// refuses (a new field without a default) fails `check --registry` (exit 2) and stops the
/// next run before any poll, each naming the subject, the level and the registry's reason. A message that is not in the wire format is
/// dead-lettered whole (base64), its codec named.
#[tokio::test(flavor = "multi_thread")]
async fn avro_records_go_through_the_registry_into_cassandra() {
    if !registry_up("avro_codec") {
        return;
    }
    let api = Api::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("user.avsc"), USER_AVSC).unwrap();
    // Confluent's schema of string keys: Avro's primitive `string`.
    std::fs::write(dir.path().join("key.avsc"), r#""string""#).unwrap();
    let names = (unique("avro"), unique("ks"));
    let codec = format!(
        "codec = \"avro\"\nkey_codec = \"avro\"\n[kafka.schema_registry]\nurl = \"http://{}\"\nschema_file = \"user.avsc\"\nkey_schema_file = \"key.avsc\"",
        registry_addr()
    );
    let path = spec(dir.path(), &api, "avro", &names, &codec);
    let out = run(aqueduct().args(["run", "--once"]).arg(&path)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(rows(&names.1).await, users("avro"));

    let registered = latest(&format!("{}-value", names.0)).await;
    let id = registered["id"].as_u64().unwrap() as u32;
    let key_registered = latest(&format!("{}-key", names.0)).await;
    assert_eq!(key_registered["schema"], r#""string""#, "{key_registered}");
    let key_id = key_registered["id"].as_u64().unwrap() as u32;
    let messages = topic_bytes(&names.0);
    assert_eq!(messages.len(), 5);
    let ids: BTreeSet<String> = users("avro").into_iter().map(|(id, _)| id).collect();
    for (key, payload) in &messages {
        assert_eq!(payload[0], 0, "{payload:?}");
        assert_eq!(u32::from_be_bytes(payload[1..5].try_into().unwrap()), id);
        assert_ne!(payload[5], b'{', "Avro's binary encoding, not JSON text");
        // The wire format's header, then Avro's string: its length (36, zigzag: 72), its bytes.
        let key = key.as_deref().unwrap();
        assert_eq!(
            key[..6],
            [[0].as_slice(), &key_id.to_be_bytes(), &[72]].concat()
        );
        assert!(
            ids.contains(std::str::from_utf8(&key[6..]).unwrap()),
            "{key:?}"
        );
    }

    // A new required field: BACKWARD (the registry's default) refuses it.
    let changed = USER_AVSC.replace(
        r#"{"name": "email", "type": "string"},"#,
        r#"{"name": "email", "type": "string"}, {"name": "nickname", "type": "string"},"#,
    );
    std::fs::write(dir.path().join("user.avsc"), changed).unwrap();
    let out = run(aqueduct().args(["check", "--registry"]).arg(&path)).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    let subject = format!("subject {}-value (compatibility BACKWARD)", names.0);
    assert!(out.stderr.contains(&subject), "{out:?}");
    assert!(out.stderr.contains("nickname"), "{out:?}");
    let out = run(aqueduct().args(["run", "--once"]).arg(&path)).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "refused the schema for subject {}-value: compatibility BACKWARD",
            names.0
        )),
        "{out:?}"
    );
    // With auto_register = false the schema is looked up: the registered one is found (its
    // id on the new messages), a changed one is not, and the run says to register it.
    let lookup = |avsc: &str| {
        std::fs::write(dir.path().join("user.avsc"), avsc).unwrap();
        let mut cmd = aqueduct();
        cmd.args(["run", "--once"])
            .arg(&path)
            .env("AQUEDUCT_KAFKA__SCHEMA_REGISTRY__AUTO_REGISTER", "false");
        cmd
    };
    let out = run(&mut lookup(&USER_AVSC.replace(
        r#""default": null}"#,
        r#""default": null}, {"name": "cell", "type": ["null", "string"], "default": null}"#,
    )))
    .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "subject {}-value has no version of the spec's schema and auto_register is false",
            names.0
        )),
        "{out:?}"
    );
    let out = run(&mut lookup(USER_AVSC)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let payloads = topic_payloads(&names.0);
    assert_eq!(
        payloads.len(),
        10,
        "the second run's users again, same schema"
    );
    assert!(payloads.iter().all(|(_, p)| p[1..5] == id.to_be_bytes()));

    // Someone else's JSON on the topic: dead-lettered whole, the others' rows untouched.
    produce(&names.0, br#"{"login": {"uuid": "x"}}"#).await;
    let out = run(aqueduct()
        .args(["run", "--only", "load", "--once"])
        .arg(&path))
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let dead = topic_messages(&format!("{}_dlq", names.0));
    assert_eq!(dead.len(), 1, "{dead:?}");
    let dl = &dead[0].1;
    assert_eq!(dl["stage"], "decode", "{dl}");
    assert_eq!(dl["codec"], "avro", "{dl}");
    assert_eq!(
        dl["payload_base64"], "eyJsb2dpbiI6IHsidXVpZCI6ICJ4In19",
        "{dl}"
    );
    assert!(
        dl["reason"]
            .as_str()
            .unwrap()
            .contains("not in Confluent's wire format"),
        "{dl}"
    );
    assert_eq!(rows(&names.1).await, users("avro"));

    // tap: the topic's messages decoded (the last 2 of 11: a user and the stranger's JSON,
    // which the Avro codec cannot read), and the dead letter on its topic.
    let out = run(aqueduct()
        .args(["tap", "--last", "2", "--format", "json"])
        .arg(&path))
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let shown: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(shown.len(), 2, "{out:?}");
    assert!(
        ids.contains(shown[0]["record"]["login"]["uuid"].as_str().unwrap()),
        "{shown:?}"
    );
    assert_eq!(
        shown[0]["key"], shown[0]["record"]["login"]["uuid"],
        "{shown:?}"
    );
    assert!(shown[0]["record"]["email"].is_string(), "{shown:?}");
    assert!(
        shown[1]["error"]
            .as_str()
            .unwrap()
            .contains("not in Confluent's wire format"),
        "{shown:?}"
    );
    let out = run(aqueduct()
        .args([
            "tap",
            "--dead-letters",
            "--from-beginning",
            "--format",
            "json",
        ])
        .arg(&path))
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let shown: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(shown["record"]["stage"], "decode", "{shown}");
}

/// JSON Schema: `[validate]`'s schema registered under `<topic>-value` as a JSON schema,
/// every message the wire format's header then the record's JSON text as the API sent it;
/// the keys JSON strings under `<topic>-key`'s schema.
#[tokio::test(flavor = "multi_thread")]
async fn json_schema_records_carry_the_registered_schema_id() {
    if !registry_up("json_schema_codec") {
        return;
    }
    let api = Api::start().await;
    let dir = tempfile::tempdir().unwrap();
    let names = (unique("jsonschema"), unique("ks"));
    let key_schema = r#"{"type": "string", "format": "uuid"}"#;
    std::fs::write(dir.path().join("key.json"), key_schema).unwrap();
    let codec = format!(
        "codec = \"json_schema\"\nkey_codec = \"json_schema\"\n[kafka.schema_registry]\nurl = \"http://{}\"\nkey_schema_file = \"key.json\"",
        registry_addr()
    );
    let path = spec(dir.path(), &api, "jsonschema", &names, &codec);
    let out = run(aqueduct().args(["run", "--once"]).arg(&path)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(rows(&names.1).await, users("jsonschema"));
    let registered = latest(&format!("{}-value", names.0)).await;
    assert_eq!(registered["schemaType"], "JSON", "{registered}");
    let id = registered["id"].as_u64().unwrap() as u32;
    let key_registered = latest(&format!("{}-key", names.0)).await;
    assert_eq!(key_registered["schemaType"], "JSON", "{key_registered}");
    let key_id = key_registered["id"].as_u64().unwrap() as u32;
    for (key, payload) in topic_bytes(&names.0) {
        assert_eq!(payload[..5], [[0].as_slice(), &id.to_be_bytes()].concat());
        let record: serde_json::Value = serde_json::from_slice(&payload[5..]).unwrap();
        assert!(record["login"]["uuid"].is_string(), "{record}");
        let key = key.unwrap();
        assert_eq!(key[..5], [[0].as_slice(), &key_id.to_be_bytes()].concat());
        let key: serde_json::Value = serde_json::from_slice(&key[5..]).unwrap();
        assert_eq!(key, record["login"]["uuid"]);
    }
}

/// Produces `payload` to `topic` unkeyed, as another producer would.
async fn produce(topic: &str, payload: &[u8]) {
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_addr())
        .create()
        .unwrap();
    producer
        .send(
            rdkafka::producer::FutureRecord::<(), _>::to(topic).payload(payload),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
}

/// A Python with Confluent's serializer (scripts/install-test-python), or `None` after
/// failing (in CI) or skipping.
fn confluent_python(test: &str) -> Option<String> {
    let python = std::env::var("AQUEDUCT_TEST_PYTHON").unwrap_or_else(|_| {
        let cache = std::env::var("XDG_CACHE_HOME")
            .unwrap_or_else(|_| format!("{}/.cache", std::env::var("HOME").unwrap_or_default()));
        format!("{cache}/aqueduct/python/bin/python")
    });
    if Path::new(&python).exists() {
        return Some(python);
    }
    skip_or_fail(&format!(
        "{test}: no Python with confluent-kafka at {python}; run scripts/install-test-python"
    ));
    None
}

/// A pipeline without [source] loads a topic others produce: Debezium-shaped change events
/// written by Confluent's own AvroSerializer (snapshot reads, updates, deletes; Avro keys)
/// land in Cassandra as the table's current state: deleted rows gone (by the delete event and
/// by the tombstone after it, its Avro key read), updated ones with their new
/// email, Avro's decimal and date as CQL decimal and date, each row written at its event's
/// `ts_ms`. A topic that is not there is an error, never created.
#[tokio::test(flavor = "multi_thread")]
async fn change_events_from_confluents_avro_serializer_land_in_cassandra() {
    if !registry_up("debezium_events") {
        return;
    }
    let Some(python) = confluent_python("debezium_events") else {
        return;
    };
    let (topic, keyspace) = (unique("dbserver1"), unique("ks"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("customers.toml");
    let text = format!(
        r#"
name = "{topic}"
[validate]
schema = {{ type = "object", required = ["op"], properties = {{ op = {{ enum = ["c", "r", "u", "d"] }} }} }}
[kafka]
bootstrap_servers = "{kafka}"
topic = "{topic}"
codec = "avro"
key_codec = "avro"
[kafka.schema_registry]
url = "http://{registry}"
[cassandra]
contact_points = ["{cassandra}"]
keyspace = "{keyspace}"
table = "customers"
partition_key = ["id"]
delete = '.op == "d"'
writetime = ".ts_ms"
columns.id = {{ type = "int", jq = "(.after // .before).id" }}
columns.email = {{ type = "text", jq = "(.after // .before).email" }}
columns.balance = {{ type = "decimal", jq = "(.after // .before).balance" }}
columns.born = {{ type = "date", jq = "(.after // .before).born" }}
"#,
        kafka = kafka_addr(),
        registry = registry_addr(),
        cassandra = cassandra_addr(),
    );
    std::fs::write(&path, text).unwrap();

    let out = run(aqueduct().args(["run", "--once"]).arg(&path)).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&format!("topic {topic} is not at")),
        "{out:?}"
    );

    // Debezium's Kafka Connect creates its topics; here the test does.
    create_topic(&topic).await;
    let produced = tokio::process::Command::new(&python)
        .arg(repo().join("tests/debezium/produce.py"))
        .args([
            kafka_addr(),
            format!("http://{}", registry_addr()),
            topic.clone(),
            "12".into(),
        ])
        .output()
        .await
        .unwrap();
    assert!(produced.status.success(), "{produced:?}");
    assert_eq!(
        String::from_utf8_lossy(&produced.stdout),
        "r 12\nu 6\nd 4\ntombstones 4\n"
    );

    let out = run(aqueduct().args(["run", "--once"]).arg(&path)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let rows = session()
        .await
        .query_unpaged(
            format!("SELECT id, email, balance, born, writetime(email) FROM {keyspace}.customers"),
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    type Row = (i32, String, bigdecimal::BigDecimal, chrono::NaiveDate, i64);
    let got: BTreeSet<(i32, String, String, String, i64)> = rows
        .rows::<Row>()
        .unwrap()
        .map(|r| {
            let (id, email, balance, born, written) = r.unwrap();
            (id, email, balance.to_string(), born.to_string(), written)
        })
        .collect();
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    // produce.py's ts_ms: customer i's read at T + i, the even ones' updates after all reads.
    let t = 1_767_225_600_000_i64;
    let want: BTreeSet<(i32, String, String, String, i64)> = (1..=12)
        .filter(|i| i % 3 != 0)
        .map(|i| {
            let (email, ts) = match i % 2 {
                0 => (format!("new{i}@example.com"), t + 12 + i as i64 / 2),
                _ => (format!("c{i}@example.com"), t + i as i64),
            };
            let born = epoch + chrono::Duration::days(7000 + i as i64);
            (i, email, format!("{i}.25"), born.to_string(), ts * 1000)
        })
        .collect();
    assert_eq!(got, want);
    // Every tombstone's key read and its row deleted: nothing dead-lettered.
    let dead = topic_messages(&format!("{topic}_dlq"));
    assert!(dead.is_empty(), "{dead:?}");
    // The topic was Confluent's: aqueduct registered nothing of its own under it.
    let registered = latest(&format!("{topic}-value")).await;
    assert!(
        registered["schema"].as_str().unwrap().contains("Envelope"),
        "{registered}"
    );
}

/// Creates `topic` (3 partitions), as Kafka Connect creates a connector's topics.
async fn create_topic(topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_addr())
        .create()
        .unwrap();
    let topic = NewTopic::new(topic, 3, TopicReplication::Fixed(1));
    let created = admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

/// Registers `schema` under `subject` at the registry itself; its id.
async fn register(subject: &str, schema: &str) -> u32 {
    let url = format!("http://{}/subjects/{subject}/versions", registry_addr());
    let answer: serde_json::Value = reqwest::Client::new()
        .post(url)
        .json(&serde_json::json!({ "schema": schema }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["id"].as_u64().unwrap_or_else(|| panic!("{answer}")) as u32
}

/// The stand-in user `i` of `seed` as `schema` (USER_AVSC's fields), in the wire format with `id`.
fn avro_user(schema: &str, id: u32, seed: &str, i: usize) -> (String, Vec<u8>) {
    use apache_avro::types::Value as Avro;
    let parsed = apache_avro::Schema::parse_str(schema).unwrap();
    let u = randomuser_standin::user(seed, 1, i, false);
    let text = |v: &serde_json::Value| Avro::String(v.as_str().unwrap().to_owned());
    let mut fields = vec![
        (
            "login".to_owned(),
            Avro::Record(vec![("uuid".to_owned(), text(&u["login"]["uuid"]))]),
        ),
        ("email".to_owned(), text(&u["email"])),
        (
            "phone".to_owned(),
            Avro::Union(1, Box::new(text(&u["phone"]))),
        ),
    ];
    if schema.contains("\"cell\"") {
        fields.push(("cell".to_owned(), Avro::Union(0, Box::new(Avro::Null))));
    }
    let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&parsed)
        .build()
        .unwrap()
        .write_value_to_vec(Avro::Record(fields))
        .unwrap();
    let payload = [[0].as_slice(), &id.to_be_bytes(), &datum].concat();
    (u["email"].as_str().unwrap().to_owned(), payload)
}

/// Rows of `keyspace.t`, 0 while the table is not there yet.
async fn row_count(keyspace: &str) -> usize {
    let counted = session()
        .await
        .query_unpaged(format!("SELECT id FROM {keyspace}.t"), ())
        .await;
    counted
        .ok()
        .and_then(|r| r.into_rows_result().ok())
        .map_or(0, |r| r.rows_num())
}

/// A registry that is down when a loader starts stops it (exit 1, naming it). One that goes
/// away later does not stop a loader holding the schemas it needs: messages of a schema it
/// has fetched are still loaded; a message of a schema it has not seen waits (offset not
/// committed, nothing dead-lettered) until the registry is back. `tap --follow` shows
/// messages as they come, and `--format table` a table.
#[tokio::test(flavor = "multi_thread")]
async fn a_loader_outlives_its_registry_with_the_schemas_it_has() {
    if !registry_up("registry_away") {
        return;
    }
    let (topic, keyspace) = (unique("away"), unique("ks"));
    create_topic(&topic).await;
    let proxy = Proxy::start(registry_addr()).await;
    let text = format!(
        r#"
name = "{topic}"
[kafka]
bootstrap_servers = "{kafka}"
topic = "{topic}"
codec = "avro"
[kafka.schema_registry]
url = "http://{proxy}"
timeout = "2s"
[cassandra]
contact_points = ["{cassandra}"]
keyspace = "{keyspace}"
table = "t"
partition_key = ["id"]
columns.id = {{ type = "uuid", jq = ".login.uuid" }}
columns.email = {{ type = "text", jq = ".email" }}
"#,
        kafka = kafka_addr(),
        proxy = proxy.addr,
        cassandra = cassandra_addr(),
    );
    let (_dir, path) = spec_file(&text);

    proxy.set_up(false);
    let out = run(aqueduct().args(["run", "--once"]).arg(&path)).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "the schema registry cannot be reached: http://{}",
            proxy.addr
        )),
        "{out:?}"
    );
    proxy.set_up(true);

    let v1 = register(&format!("{topic}-value"), USER_AVSC).await;
    for i in 0..5 {
        produce(&topic, &avro_user(USER_AVSC, v1, "away", i).1).await;
    }
    let mut loader = Background::spawn(aqueduct().arg("run").arg(&path));
    wait_until("5 rows", 60, || async { row_count(&keyspace).await == 5 }).await;

    // Away: the schema it has is enough.
    proxy.set_up(false);
    for i in 5..10 {
        produce(&topic, &avro_user(USER_AVSC, v1, "away", i).1).await;
    }
    wait_until("10 rows", 60, || async { row_count(&keyspace).await == 10 }).await;
    // A schema it has not seen: waited for, not dead-lettered.
    let v2_schema = USER_AVSC.replace(
        r#""default": null}"#,
        r#""default": null}, {"name": "cell", "type": ["null", "string"], "default": null}"#,
    );
    let v2 = register(&format!("{topic}-value"), &v2_schema).await;
    assert_ne!(v1, v2);
    let (email, payload) = avro_user(&v2_schema, v2, "away", 10);
    produce(&topic, &payload).await;
    loader
        .wait_for("the message's schema cannot be fetched; retrying", 30)
        .await;
    assert_eq!(row_count(&keyspace).await, 10);
    proxy.set_up(true);
    wait_until("11 rows", 60, || async { row_count(&keyspace).await == 11 }).await;
    assert_eq!(loader.terminate().await, Some(0), "{}", loader.log());
    let dead = topic_messages(&format!("{topic}_dlq"));
    assert!(dead.is_empty(), "{dead:?}");

    // tap: a table of the last two; --follow prints what comes next.
    let out = run(aqueduct()
        .args(["tap", "--last", "2", "--format", "table"])
        .arg(&path))
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    for word in ["partition", "offset", "timestamp", "record"] {
        assert!(out.stdout.contains(word), "{out:?}");
    }
    assert!(out.stdout.contains(&email), "{out:?}");
    let mut tap = aqueduct()
        .args(["tap", "--last", "0", "--follow", "--format", "json"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = {
        use tokio::io::AsyncBufReadExt;
        tokio::io::BufReader::new(tap.stdout.take().unwrap()).lines()
    };
    // The consumer takes a moment to be assigned; what comes after that is printed.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (email, payload) = avro_user(USER_AVSC, v1, "away", 11);
    produce(&topic, &payload).await;
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("tap --follow printed the new message")
        .unwrap()
        .unwrap();
    let shown: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(shown["record"]["email"], email.as_str(), "{shown}");
    tap.kill().await.unwrap();
}

/// The record-name strategies name the subject by the Avro record's full name
/// (`record_name`) or the topic and that name (`topic_record_name`); `check --registry` holds
/// a schema against every version of a subject at a TRANSITIVE level, not only the latest.
#[tokio::test(flavor = "multi_thread")]
async fn subjects_follow_the_strategy_and_transitive_levels_hold_every_version() {
    if !registry_up("subject_strategies") {
        return;
    }
    let api = Api::start().await;
    let dir = tempfile::tempdir().unwrap();
    let namespace = unique("ns");
    let avsc = USER_AVSC.replace("randomuser", &namespace);
    std::fs::write(dir.path().join("user.avsc"), &avsc).unwrap();
    let names = (unique("strategy"), unique("ks"));
    let codec = |strategy: &str| {
        format!(
            "codec = \"avro\"\n[kafka.schema_registry]\nurl = \"http://{}\"\nschema_file = \"user.avsc\"\nsubject_strategy = \"{strategy}\"",
            registry_addr()
        )
    };
    for (strategy, subject) in [
        ("record_name", format!("{namespace}.User")),
        ("topic_record_name", format!("{}-{namespace}.User", names.0)),
    ] {
        let path = spec(dir.path(), &api, "strategy", &names, &codec(strategy));
        let out = run(aqueduct().args(["run", "--once"]).arg(&path)).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let registered = latest(&subject).await;
        assert_eq!(registered["version"], 1, "{strategy}: {registered}");
    }
    assert_eq!(rows(&names.1).await, users("strategy"));

    // v1 {email}, v2 {email, nickname with a default}: a v3 {nickname without a default} reads
    // v2's records but not v1's, so BACKWARD takes it and BACKWARD_TRANSITIVE does not.
    let subject = format!("{}-value", names.0);
    let record = |fields: &str| {
        format!(
            r#"{{"type": "record", "name": "Nick", "namespace": "{namespace}", "fields": [{fields}]}}"#
        )
    };
    let email = r#"{"name": "email", "type": "string"}"#;
    register(&subject, &record(email)).await;
    let with_default = r#"{"name": "nickname", "type": "string", "default": "none"}"#;
    register(&subject, &record(&format!("{email}, {with_default}"))).await;
    let v3 = record(r#"{"name": "nickname", "type": "string"}"#);
    std::fs::write(dir.path().join("user.avsc"), &v3).unwrap();
    let path = spec(dir.path(), &api, "strategy", &names, &codec("topic_name"));
    let level = |level: &str| {
        let url = format!("http://{}/config/{subject}", registry_addr());
        let body = serde_json::json!({ "compatibility": level });
        async move {
            let answer = reqwest::Client::new()
                .put(url)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(answer.status().is_success(), "{answer:?}");
        }
    };
    level("BACKWARD").await;
    let out = run(aqueduct().args(["check", "--registry"]).arg(&path)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    level("BACKWARD_TRANSITIVE").await;
    let out = run(aqueduct().args(["check", "--registry"]).arg(&path)).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "subject {subject} (compatibility BACKWARD_TRANSITIVE)"
        )),
        "{out:?}"
    );
}

/// `preview` (and so `test`) goes through the Avro schema offline, no registry asked: a record
/// maps as the loader reads it back (a timestamp as `timestamp-millis`: the same rows as
/// JSON), and one the schema cannot hold is dead-lettered at stage `produce`, as `run` does.
#[tokio::test(flavor = "multi_thread")]
async fn preview_maps_records_as_they_come_back_from_avro() {
    let dir = tempfile::tempdir().unwrap();
    let avsc = repo().join("pipelines/schemas/randomuser-user.avsc");
    let spec = |codec: &str| {
        let text = format!(
            r#"
[source]
url = "http://127.0.0.1:1/api"
schedule = {{ every = "1h" }}
records = ".results[]"
[kafka]
bootstrap_servers = "127.0.0.1:1"
topic = "users"
key = ".login.uuid"
{codec}
[cassandra]
contact_points = ["127.0.0.1:1"]
keyspace = "ks"
table = "t"
partition_key = ["id"]
columns.id = {{ type = "uuid", jq = ".login.uuid" }}
columns.dob = {{ type = "timestamp", jq = ".dob.date" }}
columns.post_code = {{ type = "text", jq = ".location.postcode | tostring" }}
"#
        );
        let path = dir.path().join(format!("{}.toml", codec.len()));
        std::fs::write(&path, text).unwrap();
        path
    };
    let json = spec("");
    let avro = spec(&format!(
        "codec = \"avro\"\nkey_codec = \"avro\"\n[kafka.schema_registry]\nurl = \"http://127.0.0.1:1\"\nschema_file = {:?}\nkey_schema_file = \"key.avsc\"",
        avsc.display().to_string()
    ));
    std::fs::write(dir.path().join("key.avsc"), r#""string""#).unwrap();
    let users: Vec<serde_json::Value> = (0..5)
        .map(|i| randomuser_standin::user("preview-avro", 1, i, false))
        .collect();
    let mut broken = users[0].clone();
    broken.as_object_mut().unwrap().remove("nat");
    let input = dir.path().join("records.json");
    let lines: Vec<String> = users
        .iter()
        .chain([&broken])
        .map(|u| u.to_string())
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let preview = |path: PathBuf| {
        let input = input.clone();
        async move {
            let mut cmd = aqueduct();
            cmd.args(["preview", "--records", "--format", "json", "--input"])
                .arg(&input)
                .arg(&path);
            run(&mut cmd).await
        }
    };
    let (json, avro) = (preview(json).await, preview(avro).await);
    assert_eq!(json.code, Some(0), "{json:?}");
    assert_eq!(avro.code, Some(0), "{avro:?}");
    let lines = |out: &str| -> Vec<serde_json::Value> {
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (json, avro) = (lines(&json.stdout), lines(&avro.stdout));
    // The JSON spec writes the broken user's row too; Avro refuses it.
    assert_eq!(json.len(), 6, "{json:?}");
    assert_eq!(avro[..5], json[..5]);
    let dead = &avro[5]["dead_letter"];
    assert_eq!(dead["stage"], "produce", "{dead}");
    assert!(
        dead["reason"]
            .as_str()
            .unwrap()
            .contains("does not fit the Avro schema"),
        "{dead}"
    );
}
