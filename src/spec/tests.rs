use super::*;

/// Loads a spec from text, through a temporary file (as a user's spec is loaded).
pub(crate) fn spec_from(text: &str) -> Result<Spec, SpecErrors> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.toml");
    std::fs::write(&path, text).unwrap();
    load(&path)
}

/// A spec with fixed `[kafka]` and the given lines at the end of `[source]` and `[cassandra]`.
pub(crate) fn spec_with(source: &str, cassandra: &str) -> Spec {
    let text = format!(
        "[source]\nurl = \"http://example.test/api/?results=10&page=9\"\nschedule = {{ every = \"10s\" }}\n{source}\n\
         [kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\ntopic = \"t\"\n\
         [cassandra]\ncontact_points = [\"127.0.0.1\"]\nkeyspace = \"ks\"\n{cassandra}\n"
    );
    spec_from(&text).unwrap_or_else(|e| panic!("{e}"))
}

const MINIMAL: &str = r#"
[source]
url = "http://127.0.0.1:8080/api/"
schedule = { every = "10s" }

[kafka]
bootstrap_servers = "127.0.0.1:9092"
topic = "t"

[cassandra]
contact_points = ["127.0.0.1:9042"]
keyspace = "ks"
table = "t"
partition_key = ["id"]
columns.id = { type = "text", jq = ".id" }
"#;

fn errors(text: &str) -> Vec<SpecError> {
    spec_from(text).unwrap_err().0
}

#[test]
fn minimal_spec_gets_defaults() {
    let spec = spec_from(MINIMAL).unwrap();
    assert_eq!(spec.name, "test");
    assert_eq!(spec.kafka.group_id, "aqueduct-test");
    assert_eq!(spec.kafka.dead_letter_topic, "t_dlq");
    assert_eq!(spec.kafka.partitions, 3);
    assert_eq!(spec.validate.on_invalid, OnInvalid::DeadLetter);
    assert_eq!(spec.cassandra.concurrency, 256);
    assert_eq!(spec.kafka.commit_interval, Duration::from_secs(1));
    assert_eq!(spec.source.records.code(), ".[]");
    assert_eq!(spec.source.retry.attempts, 5);
    assert!(matches!(spec.source.schedule, Schedule::Every(d) if d == Duration::from_secs(10)));
}

#[test]
fn query_parameters_are_merged_into_the_url() {
    let spec = spec_from(&MINIMAL.replace(
        "schedule =",
        "query = { results = 50, nat = \"us,gb\" }\nschedule =",
    ))
    .unwrap();
    assert_eq!(
        spec.source.url.as_str(),
        "http://127.0.0.1:8080/api/?nat=us%2Cgb&results=50"
    );
}

#[test]
fn unknown_key_names_key_and_line() {
    let text = MINIMAL.replace("topic = \"t\"", "topic = \"t\"\ntopik = \"x\"");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = &errs[0];
    assert!(
        e.message.contains("unknown field") && e.message.contains("topik"),
        "{e}"
    );
    assert_eq!(e.key, "kafka.topik");
    assert_eq!(e.position, Some((9, 1)), "{e}");
}

#[test]
fn many_errors_are_reported_at_once() {
    let text = MINIMAL
        .replace("\"10s\"", "\"0s\"")
        .replace("keyspace = \"ks\"", "keyspace = \"bad-name\"")
        .replace(
            "columns.id = { type = \"text\", jq = \".id\" }",
            "columns.id = { type = \"text\", jq = \".id |\" }",
        );
    let errs = errors(&text);
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "source.schedule.every",
            "cassandra.keyspace",
            "cassandra.columns.id.jq"
        ],
        "{errs:?}"
    );
}

#[test]
fn type_mismatch_is_reported() {
    let text = MINIMAL.replace("partition_key = [\"id\"]", "partition_key = [\"id\"]\ncolumns.age = { type = \"int\", jq = \".name.first | ascii_downcase\" }");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].key, "cassandra.columns.age.jq");
    assert!(
        errs[0].message.contains(
            "column `age` is int, but `.name.first | ascii_downcase` can only yield a string"
        ),
        "{}",
        errs[0]
    );
}

#[test]
fn primary_key_must_name_columns() {
    let errs = errors(&MINIMAL.replace(
        "partition_key = [\"id\"]",
        "partition_key = [\"uid\"]\nclustering_key = [\"id sideways\"]",
    ));
    let messages: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        messages.iter().any(
            |m| m.contains("cassandra.partition_key: column `uid` is not in cassandra.columns")
        ),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("`sideways` in `id sideways` is not asc or desc")),
        "{messages:?}"
    );
}

#[test]
fn toml_syntax_error_has_line_and_column() {
    let errs = errors("[source\nurl = 1");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].position, Some((1, 8)));
    assert_eq!(
        errs[0].message,
        "TOML parse error: invalid table header, expected `.`, `]`"
    );
}

#[test]
fn missing_file_is_named() {
    let err = load(Path::new("/nonexistent/spec.toml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/spec.toml: cannot read spec"),
        "{err}"
    );
}

#[test]
fn reserved_kafka_property_names_both_keys() {
    let errs = errors(&MINIMAL.replace("topic = \"t\"", "topic = \"t\"\nproperties = { \"enable.idempotence\" = false, \"compression.type\" = \"zstd\" }"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].key, "kafka.properties.enable.idempotence");
    assert!(
        errs[0].message.contains("idempotent producer"),
        "{}",
        errs[0]
    );
}

#[test]
fn schema_file_is_relative_to_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("schemas")).unwrap();
    std::fs::write(
        dir.path().join("schemas/s.json"),
        r#"{"type": "object", "required": ["id"]}"#,
    )
    .unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        format!("{MINIMAL}\n[validate]\nschema_file = \"schemas/s.json\"\non_invalid = \"drop\"\n"),
    )
    .unwrap();
    let spec = load(&path).unwrap();
    assert_eq!(spec.validate.on_invalid, OnInvalid::Drop);
    let schema = spec.validate.schema.unwrap();
    assert!(!schema.is_valid(&serde_json::json!({})));
    assert!(schema.is_valid(&serde_json::json!({"id": "x"})));
}

#[test]
fn inline_schema_as_json_text_or_table() {
    let spec = spec_from(&format!(
        "{MINIMAL}\n[validate]\nschema = '{{\"type\": \"object\"}}'\n"
    ))
    .unwrap();
    assert!(
        !spec
            .validate
            .schema
            .unwrap()
            .is_valid(&serde_json::json!(1))
    );
    let spec = spec_from(&format!(
        "{MINIMAL}\n[validate.schema]\ntype = \"object\"\nrequired = [\"id\"]\n"
    ))
    .unwrap();
    assert!(
        !spec
            .validate
            .schema
            .unwrap()
            .is_valid(&serde_json::json!({}))
    );
    let errs = errors(&format!(
        "{MINIMAL}\n[validate.schema]\ntype = \"objekt\"\n"
    ));
    assert_eq!(errs[0].key, "validate.schema");
    assert!(
        errs[0].message.contains("invalid JSON Schema"),
        "{}",
        errs[0]
    );
}

#[test]
fn secrets_do_not_print() {
    let spec = spec_from(&MINIMAL.replace(
        "keyspace = \"ks\"",
        "keyspace = \"ks\"\nusername = \"u\"\npassword = \"hunter2\"",
    ))
    .unwrap();
    assert!(!format!("{spec:?}").contains("hunter2"));
}

/// `password_file`, relative to the spec's folder, without its trailing newline; errors name
/// the file, never its text.
#[test]
fn the_cassandra_password_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cassandra.secret"), "s3cret-from-file\n").unwrap();
    let spec_at = |cassandra: &str| {
        let path = dir.path().join("spec.toml");
        let text = MINIMAL.replace(
            "keyspace = \"ks\"",
            &format!("keyspace = \"ks\"\n{cassandra}"),
        );
        std::fs::write(&path, text).unwrap();
        load(&path)
    };
    let spec = spec_at("username = \"u\"\npassword_file = \"cassandra.secret\"").unwrap();
    let (user, password) = spec.cassandra.credentials.unwrap();
    assert_eq!(
        (user.as_str(), password.0.as_str()),
        ("u", "s3cret-from-file")
    );

    let errs = spec_at("username = \"u\"\npassword = \"p\"\npassword_file = \"cassandra.secret\"")
        .unwrap_err()
        .to_string();
    assert!(
        errs.contains("set one of `password` and `password_file`, not both"),
        "{errs}"
    );
    let errs = spec_at("username = \"u\"\npassword_file = \"missing.secret\"")
        .unwrap_err()
        .to_string();
    assert!(
        errs.contains("cassandra.password_file: cannot read") && errs.contains("missing.secret"),
        "{errs}"
    );
    std::fs::write(dir.path().join("empty.secret"), "\n").unwrap();
    let errs = spec_at("username = \"u\"\npassword_file = \"empty.secret\"")
        .unwrap_err()
        .to_string();
    assert!(errs.contains("empty.secret is empty"), "{errs}");
    assert!(!errs.contains("s3cret"), "{errs}");
}
