//! Several tables from one read of the topic (`[cassandra.tables.<name>]`), on the real Kafka
//! and Cassandra: every table gets its row, a row one table refuses is dead-lettered naming
//! that table while the others still get theirs, and the message is committed once.

use scylla::value::CqlTimestamp;
use serde_json::Value;
use uuid::Uuid;

use crate::support::{
    Api, Pipeline, aqueduct, cassandra_addr, count_rows, kafka_addr, run, services_up, session,
    spec_file, topic_messages, unique,
};

fn millis(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

type CountryRow = (String, CqlTimestamp, Uuid, String, String, String);

#[tokio::test(flavor = "multi_thread")]
async fn users_toml_writes_both_query_tables_from_one_read() {
    if !services_up("users_toml_writes_both_query_tables") {
        return;
    }
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=tables"), 30);
    let out = run(&mut p.command(&["run", "--once"])).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("written=30"), "{out:?}");
    let s = session().await;
    assert_eq!(p.row_count().await, 30);
    let rows = s
        .query_unpaged(
            format!(
                "SELECT country, registered_date, id, first_name, last_name, email FROM {}.users_by_country",
                p.keyspace
            ),
            &[],
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let mut got: Vec<CountryRow> = rows
        .rows::<CountryRow>()
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let str_of = |v: &Value| v.as_str().unwrap().to_owned();
    let mut want: Vec<CountryRow> = (0..30)
        .map(|i| {
            let u = randomuser_standin::user("tables", 1, i, false);
            (
                str_of(&u["location"]["country"]),
                CqlTimestamp(millis(u["registered"]["date"].as_str().unwrap())),
                Uuid::parse_str(u["login"]["uuid"].as_str().unwrap()).unwrap(),
                str_of(&u["name"]["first"]),
                str_of(&u["name"]["last"]),
                str_of(&u["email"]),
            )
        })
        .collect();
    let key = |r: &CountryRow| (r.0.clone(), r.2);
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got, want);
    // Newest sign-ups first within a country, as the clustering order says.
    let country = &want[0].0;
    let rows = s
        .query_unpaged(
            format!(
                "SELECT registered_date FROM {}.users_by_country WHERE country = ?",
                p.keyspace
            ),
            (country,),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let times: Vec<i64> = rows
        .rows::<(CqlTimestamp,)>()
        .unwrap()
        .map(|r| r.unwrap().0.0)
        .collect();
    assert!(
        !times.is_empty() && times.windows(2).all(|w| w[0] >= w[1]),
        "{times:?}"
    );
    assert!(topic_messages(&p.dead_letter_topic).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_one_table_refuses_is_dead_lettered_naming_it_and_the_others_are_written() {
    if !services_up("a_row_one_table_refuses") {
        return;
    }
    let api = Api::start().await;
    let topic = unique("tables");
    let keyspace = unique("ks");
    // Table `by_code` takes the postcode as an int: numeric postcodes map, string ones (GB,
    // NO, CA) cannot; table `by_id` takes every user.
    let (_dir, spec) = spec_file(&format!(
        r#"
        name = "twotables"
        [source]
        url = "{}"
        schedule = {{ every = "1h" }}
        records = ".results[]"
        [kafka]
        bootstrap_servers = "{}"
        topic = "{topic}"
        key = ".login.uuid"
        group_id = "{topic}"
        [cassandra]
        contact_points = ["{}"]
        keyspace = "{keyspace}"
        [cassandra.tables.by_id]
        partition_key = ["id"]
        columns.id = {{ type = "uuid", jq = ".login.uuid" }}
        columns.email = {{ type = "text", jq = ".email" }}
        [cassandra.tables.by_code]
        table = "users_by_post_code"
        partition_key = ["post_code"]
        clustering_key = ["id"]
        columns.post_code = {{ type = "int", jq = ".location.postcode" }}
        columns.id = {{ type = "uuid", jq = ".login.uuid" }}
        "#,
        api.url("seed=twotables&results=40"),
        kafka_addr(),
        cassandra_addr()
    ));
    let mut cmd = aqueduct();
    cmd.args(["run", "--once"]).arg(&spec);
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let users: Vec<Value> = (0..40)
        .map(|i| randomuser_standin::user("twotables", 1, i, false))
        .collect();
    let numeric = users
        .iter()
        .filter(|u| u["location"]["postcode"].is_number())
        .count();
    assert!(
        numeric > 0 && numeric < 40,
        "the sample must hold both kinds"
    );
    let s = session().await;
    assert_eq!(count_rows(&s, &format!("{keyspace}.by_id")).await, 40);
    assert_eq!(
        count_rows(&s, &format!("{keyspace}.users_by_post_code")).await,
        numeric as i64
    );
    let dead = topic_messages(&format!("{topic}_dlq"));
    assert_eq!(dead.len(), 40 - numeric);
    for (key, letter) in &dead {
        assert_eq!(letter["stage"], "map", "{letter}");
        assert_eq!(letter["table"], "by_code", "{letter}");
        assert_eq!(letter["column"], "post_code", "{letter}");
        assert_eq!(key.as_deref(), letter["record"]["login"]["uuid"].as_str());
        assert!(!letter["record"]["location"]["postcode"].is_number());
    }
    // Every message was committed: a second loader in the group has nothing left to do.
    let mut cmd = aqueduct();
    cmd.args(["run", "--only", "load", "--once"]).arg(&spec);
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("written=0"), "{out:?}");
    assert_eq!(topic_messages(&format!("{topic}_dlq")).len(), 40 - numeric);
}

/// A pipeline of the given `[cassandra]` lines, run load-only (`run --only load --once`) over
/// a topic the test produces to; its own topic, group and keyspace.
struct LoadOnly {
    topic: String,
    keyspace: String,
    spec: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl LoadOnly {
    /// Writes the spec and runs it once, which creates the topics (the broker does not
    /// auto-create them).
    async fn new(name: &str, cassandra: &str) -> LoadOnly {
        let topic = unique(name);
        let keyspace = unique("ks");
        let (dir, spec) = spec_file(&format!(
            r#"
            name = "{name}"
            [source]
            url = "http://127.0.0.1:1/"
            schedule = {{ every = "1h" }}
            [kafka]
            bootstrap_servers = "{}"
            topic = "{topic}"
            group_id = "{topic}"
            [cassandra]
            contact_points = ["{}"]
            keyspace = "{keyspace}"
            {cassandra}
            "#,
            kafka_addr(),
            cassandra_addr()
        ));
        let p = LoadOnly {
            topic,
            keyspace,
            spec,
            _dir: dir,
        };
        p.load().await;
        p
    }

    /// Loads what the topic holds; the run must succeed.
    async fn load(&self) {
        let mut cmd = aqueduct();
        cmd.args(["run", "--only", "load", "--once"])
            .arg(&self.spec);
        let out = run(&mut cmd).await;
        assert_eq!(out.code, Some(0), "{out:?}");
    }

    async fn produce(&self, records: &[Value]) {
        produce(&self.topic, records).await;
    }

    /// Every message of the dead-letter topic.
    fn dead_letters(&self) -> Vec<(Option<String>, Value)> {
        topic_messages(&format!("{}_dlq", self.topic))
    }
}

/// Produces `records` to `topic`, keyed by their `id`.
async fn produce(topic: &str, records: &[Value]) {
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_addr())
        .create()
        .unwrap();
    for r in records {
        let key = r["id"].as_str().unwrap_or_default().to_owned();
        let payload = r.to_string();
        producer
            .send(
                rdkafka::producer::FutureRecord::to(topic)
                    .key(&key)
                    .payload(&payload),
                std::time::Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn write_time_and_ttl_from_the_record_an_older_version_never_overwrites_a_newer_one() {
    if !services_up("a_write_time_from_the_record") {
        return;
    }
    // `versions` writes with the record's `updated` as its write time; `arrivals` (no
    // writetime) keeps whatever was written last.
    let p = LoadOnly::new(
        "writetime",
        r#"
        [cassandra.tables.versions]
        writetime = ".updated"
        partition_key = ["id"]
        columns.id = { type = "text", jq = ".id" }
        columns.name = { type = "text", jq = ".name" }
        [cassandra.tables.arrivals]
        ttl = { jq = ".keep_for" }
        partition_key = ["id"]
        columns.id = { type = "text", jq = ".id" }
        columns.name = { type = "text", jq = ".name" }
        "#,
    )
    .await;
    let (topic, keyspace) = (&p.topic, &p.keyspace);
    let newer = "2026-12-01T10:00:00.123Z";
    p.produce(&[serde_json::json!({"id": "u1", "name": "new", "updated": newer})])
        .await;
    p.load().await;
    // The older version arrives later (a replay, a backfill): it must not win in `versions`.
    p.produce(
        &[
            serde_json::json!({"id": "u1", "name": "old", "updated": "2026-11-01T00:00:00Z", "keep_for": 3600}),
            serde_json::json!({"id": "u2", "name": "no time"}),
        ],
    )
    .await;
    p.load().await;
    let s = session().await;
    let read =
        |table: &str| format!("SELECT name, WRITETIME(name) FROM {keyspace}.{table} WHERE id = ?");
    let row = |rows: scylla::response::query_result::QueryRowsResult| {
        rows.single_row::<(String, i64)>().unwrap()
    };
    let versions = s
        .query_unpaged(read("versions"), ("u1",))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let (name, writetime) = row(versions);
    assert_eq!(name, "new");
    assert_eq!(
        writetime,
        millis(newer) * 1000,
        "WRITETIME() is the record's"
    );
    let arrivals = s
        .query_unpaged(read("arrivals"), ("u1",))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(
        row(arrivals).0,
        "old",
        "without a write time the last write wins"
    );
    // `arrivals` takes each row's time to live from the record (none without one).
    let ttl = |id: &'static str| {
        let s = &s;
        let keyspace = &keyspace;
        async move {
            s.query_unpaged(
                format!("SELECT TTL(name) FROM {keyspace}.arrivals WHERE id = ?"),
                (id,),
            )
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .single_row::<(Option<i32>,)>()
            .unwrap()
            .0
        }
    };
    let u1 = ttl("u1").await;
    assert!(u1.is_some_and(|t| t > 3000 && t <= 3600), "{u1:?}");
    assert_eq!(ttl("u2").await, None);
    // A record without its time is dead-lettered for `versions` only.
    assert_eq!(count_rows(&s, &format!("{keyspace}.versions")).await, 1);
    assert_eq!(count_rows(&s, &format!("{keyspace}.arrivals")).await, 2);
    let dead = p.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter = &dead[0].1;
    assert_eq!(letter["table"], "versions", "{letter}");
    assert_eq!(letter["column"], "writetime", "{letter}");
    assert_eq!(letter["record"]["id"], "u2", "{letter}");

    // `aqueduct replay` of a still older version of u1, dead-lettered long ago: it lands in
    // `arrivals` (written last), never over the newer row of `versions`.
    let older =
        serde_json::json!({"id": "u1", "name": "older still", "updated": "2026-10-01T00:00:00Z"});
    produce(
        &format!("{topic}_dlq"),
        &[serde_json::json!({
            "pipeline": "writetime", "stage": "map", "reason": "fixed since", "table": "versions",
            "record": older, "origin": {"topic": topic, "partition": 0, "offset": 0},
            "time": "2026-10-01T00:00:01.000Z"
        })],
    )
    .await;
    let mut replay = aqueduct();
    replay.arg("replay").arg(&p.spec);
    let out = run(&mut replay).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let versions = s
        .query_unpaged(read("versions"), ("u1",))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(row(versions), ("new".to_owned(), millis(newer) * 1000));
    let arrivals = s
        .query_unpaged(read("arrivals"), ("u1",))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(row(arrivals).0, "older still", "the replay ran");
}

#[tokio::test(flavor = "multi_thread")]
async fn unset_nulls_tuples_vectors_and_a_vector_index_on_cassandra_5() {
    if !services_up("unset_nulls_tuples_vectors") {
        return;
    }
    // `docs` leaves nulls unset and indexes its embeddings (SAI); `docs_nulls` writes nulls.
    let p = LoadOnly::new(
        "vectors",
        r#"
        [cassandra.tables.docs]
        nulls = "unset"
        partition_key = ["id"]
        columns.id = { type = "text", jq = ".id" }
        columns.note = { type = "text", jq = ".note" }
        columns.point = { type = "tuple<int, text>", jq = ".point" }
        columns.embedding = { type = "vector<float, 3>", jq = ".embedding" }
        indexes.docs_by_embedding = { column = "embedding", options = { similarity_function = "cosine" } }
        [cassandra.tables.docs_nulls]
        partition_key = ["id"]
        columns.id = { type = "text", jq = ".id" }
        columns.note = { type = "text", jq = ".note" }
        "#,
    )
    .await;
    let keyspace = &p.keyspace;
    p.produce(
        &[
            serde_json::json!({"id": "a", "note": "keep", "point": [1, "x"], "embedding": [1.0, 0.0, 0.0]}),
            serde_json::json!({"id": "b", "note": "b", "point": [2, null], "embedding": [0.0, 1.0, 0.0]}),
        ],
    )
    .await;
    p.load().await;
    // A later version of `a` without its note, and a vector one value short.
    p.produce(
        &[
            serde_json::json!({"id": "a", "note": null, "point": [3, "y"], "embedding": [0.9, 0.1, 0.0]}),
            serde_json::json!({"id": "c", "note": "c", "point": [4, "z"], "embedding": [0.5, 0.5]}),
        ],
    )
    .await;
    p.load().await;

    let s = session().await;
    let rows = s
        .query_unpaged(
            format!("SELECT note, point, embedding FROM {keyspace}.docs WHERE id = 'a'"),
            &[],
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let (note, point, embedding) = rows
        .single_row::<(Option<String>, (i32, Option<String>), Vec<f32>)>()
        .unwrap();
    assert_eq!(
        note.as_deref(),
        Some("keep"),
        "an unset null keeps the column"
    );
    assert_eq!(point, (3, Some("y".to_owned())), "tuple members");
    assert_eq!(embedding, [0.9, 0.1, 0.0], "vector values");
    let rows = s
        .query_unpaged(
            format!("SELECT point FROM {keyspace}.docs WHERE id = 'b'"),
            &[],
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(
        rows.single_row::<((i32, Option<String>),)>().unwrap().0,
        (2, None),
        "a tuple holds a null member"
    );
    let rows = s
        .query_unpaged(
            format!("SELECT note FROM {keyspace}.docs_nulls WHERE id = 'a'"),
            &[],
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(
        rows.single_row::<(Option<String>,)>().unwrap().0,
        None,
        "nulls = \"null\" writes the null"
    );
    // The vector one value short: dead-lettered for `docs`, written to `docs_nulls`.
    assert_eq!(count_rows(&s, &format!("{keyspace}.docs")).await, 2);
    assert_eq!(count_rows(&s, &format!("{keyspace}.docs_nulls")).await, 3);
    let dead = p.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter = &dead[0].1;
    assert_eq!(
        (&letter["stage"], &letter["table"], &letter["column"]),
        (&"map".into(), &"docs".into(), &"embedding".into()),
        "{letter}"
    );
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .contains("expected an array of 3 values for vector<float, 3>, got 2"),
        "{letter}"
    );
    // The index answers nearest-neighbour queries: [0.1, 0.9, 0] is nearest to `b`.
    let nearest = |v: [f32; 3]| {
        let s = &s;
        let keyspace = &keyspace;
        async move {
            let rows = s
                .query_unpaged(
                    format!("SELECT id FROM {keyspace}.docs ORDER BY embedding ANN OF ? LIMIT 1"),
                    (v.to_vec(),),
                )
                .await
                .unwrap()
                .into_rows_result()
                .unwrap();
            rows.single_row::<(String,)>().unwrap().0
        }
    };
    assert_eq!(nearest([0.1, 0.9, 0.0]).await, "b");
    assert_eq!(nearest([1.0, 0.05, 0.0]).await, "a");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_condition_and_a_kafka_tombstone_delete_rows_by_primary_key() {
    if !services_up("a_delete_condition_and_a_kafka_tombstone") {
        return;
    }
    let p = LoadOnly::new(
        "deletes",
        r#"
        delete = ".deleted == true"
        [cassandra.tables.by_id]
        partition_key = ["id"]
        columns.id = { type = "text", jq = ".id" }
        columns.code = { type = "int", jq = ".code" }
        [cassandra.tables.by_code]
        partition_key = ["code"]
        clustering_key = ["id"]
        columns.code = { type = "int", jq = ".code" }
        columns.id = { type = "text", jq = ".id" }
        "#,
    )
    .await;
    let (topic, keyspace) = (&p.topic, &p.keyspace);
    p.produce(&[
        serde_json::json!({"id": "a", "code": 1}),
        serde_json::json!({"id": "b", "code": 2}),
        serde_json::json!({"id": "c", "code": 3}),
    ])
    .await;
    p.load().await;
    let s = session().await;
    assert_eq!(count_rows(&s, &format!("{keyspace}.by_id")).await, 3);
    // `a` is deleted by its record, in both tables; `b` by a tombstone of its key: in `by_id`
    // (one-column key), while `by_code` cannot be found by the key and says so.
    p.produce(&[serde_json::json!({"id": "a", "code": 1, "deleted": true})])
        .await;
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_addr())
        .create()
        .unwrap();
    producer
        .send(
            rdkafka::producer::FutureRecord::<str, [u8]>::to(topic).key("b"),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
    p.load().await;
    let ids = |table: &'static str| {
        let s = &s;
        let keyspace = &keyspace;
        async move {
            let rows = s
                .query_unpaged(format!("SELECT id FROM {keyspace}.{table}"), &[])
                .await
                .unwrap()
                .into_rows_result()
                .unwrap();
            let mut ids: Vec<String> = rows
                .rows::<(String,)>()
                .unwrap()
                .map(|r| r.unwrap().0)
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(ids("by_id").await, ["c"]);
    assert_eq!(ids("by_code").await, ["b", "c"]);
    let dead = p.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter = &dead[0].1;
    assert_eq!(letter["table"], "by_code", "{letter}");
    assert_eq!(letter["record"], "b", "{letter}");
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .contains("one-column primary key or a JSON object naming each key column; this table's has 2 (code, id)"),
        "{letter}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_defined_types_frozen_and_not_nested_and_in_collections() {
    if !services_up("user_defined_types") {
        return;
    }
    use scylla::value::CqlValue;
    let p = LoadOnly::new(
        "udts",
        r#"
        [cassandra.types.street]
        number = "int"
        name = "text"
        [cassandra.types.address]
        street = "street"
        city = "text"
        [cassandra.tables.people]
        partition_key = ["id"]
        columns.id = { type = "text", jq = ".id" }
        columns.home = { type = "address", jq = ".home" }
        columns.past = { type = "list<frozen<address>>", jq = ".past" }
        "#,
    )
    .await;
    let keyspace = &p.keyspace;
    p.produce(
        &[
            serde_json::json!({"id": "p1", "home": {"street": {"number": 8, "name": "Main"}, "city": "Jena"}, "past": [{"city": "Bonn"}]}),
            serde_json::json!({"id": "p2", "home": {"city": 7}, "past": []}),
            serde_json::json!({"id": "p3", "home": {"town": "Ulm"}, "past": []}),
        ],
    )
    .await;
    p.load().await;
    let s = session().await;
    let rows = s
        .query_unpaged(
            format!("SELECT home.city, home.street, past FROM {keyspace}.people WHERE id = 'p1'"),
            &[],
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let (city, street, past) = rows
        .single_row::<(Option<String>, Option<CqlValue>, Option<CqlValue>)>()
        .unwrap();
    assert_eq!(city.as_deref(), Some("Jena"), "a field of a non-frozen UDT");
    let udt = |name: &str, fields: Vec<(&str, Option<CqlValue>)>| CqlValue::UserDefinedType {
        keyspace: keyspace.clone(),
        name: name.to_owned(),
        fields: fields.into_iter().map(|(f, v)| (f.to_owned(), v)).collect(),
    };
    assert_eq!(
        street,
        Some(udt(
            "street",
            vec![
                ("number", Some(CqlValue::Int(8))),
                ("name", Some(CqlValue::Text("Main".into())))
            ]
        )),
        "a UDT nested in a UDT"
    );
    assert_eq!(
        past,
        Some(CqlValue::List(vec![udt(
            "address",
            vec![
                ("street", None),
                ("city", Some(CqlValue::Text("Bonn".into())))
            ]
        )])),
        "frozen UDTs in a list, a missing field null"
    );
    assert_eq!(count_rows(&s, &format!("{keyspace}.people")).await, 1);
    let dead = p.dead_letters();
    let reasons: Vec<&str> = dead
        .iter()
        .map(|(_, l)| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(dead.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("field city: expected a string")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("address has no field `town`")),
        "{reasons:?}"
    );
}
