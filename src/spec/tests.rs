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

/// An RFC 3339 time.
pub(crate) fn time(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// A `[source.window]` spec of hourly windows from 2026-11-01, plus `extra` window keys.
pub(crate) fn window_spec(extra: &str) -> crate::spec::Spec {
    spec_with(
        &format!(
            "records = \".features[]\"\n[source.window]\nstart_param = \"starttime\"\nend_param = \"endtime\"\nsize = \"1h\"\nstart = \"2026-11-01T00:00:00Z\"\n{extra}"
        ),
        "table = \"t\"\npartition_key = [\"id\"]\ncolumns.id = { type = \"text\", jq = \".id\" }",
    )
}

/// A `[source.cursor]` spec with the given cursor keys.
pub(crate) fn cursor_spec(cursor: &str) -> crate::spec::Spec {
    spec_with(
        &format!("records = \".items[]\"\n[source.cursor]\n{cursor}"),
        "table = \"t\"\npartition_key = [\"id\"]\ncolumns.id = { type = \"text\", jq = \".id\" }",
    )
}

/// The spec's `[source.window]`.
pub(crate) fn the_window(spec: &crate::spec::Spec) -> &Window {
    match &spec.source.as_ref().unwrap().incremental {
        Some(Incremental::Window(w)) => w,
        other => panic!("not a window source: {other:?}"),
    }
}

/// The spec's `[source.cursor]`.
pub(crate) fn the_cursor(spec: &crate::spec::Spec) -> &Cursor {
    match &spec.source.as_ref().unwrap().incremental {
        Some(Incremental::Cursor(c)) => c,
        other => panic!("not a cursor source: {other:?}"),
    }
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
    assert_eq!(spec.source.as_ref().unwrap().endpoint.records.code(), ".[]");
    assert_eq!(spec.source.as_ref().unwrap().retry.attempts, 5);
    assert!(
        matches!(spec.source.as_ref().unwrap().schedule, Schedule::Every(d) if d == Duration::from_secs(10))
    );
}

#[test]
fn query_parameters_are_merged_into_the_url() {
    let spec = spec_from(&MINIMAL.replace(
        "schedule =",
        "query = { results = 50, nat = \"us,gb\" }\nschedule =",
    ))
    .unwrap();
    assert_eq!(
        spec.source.as_ref().unwrap().endpoint.url.as_str(),
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

/// PEM files for TLS tests, in `dir`: `ca.pem` (a self-signed certificate), `client.pem` and
/// `client.key` (a certificate and its key), `other.key` (an unrelated key) and `locked.key`
/// (the client key encrypted with `pw`).
fn tls_files(dir: &std::path::Path) {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::symm::Cipher;
    use openssl::x509::{X509, X509NameBuilder};

    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "test").unwrap();
    let name = name.build();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = cert.build().to_pem().unwrap();
    let other = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let write = |file: &str, bytes: &[u8]| std::fs::write(dir.join(file), bytes).unwrap();
    write("ca.pem", &cert);
    write("client.pem", &cert);
    write("client.key", &key.private_key_to_pem_pkcs8().unwrap());
    write("other.key", &other.private_key_to_pem_pkcs8().unwrap());
    write(
        "locked.key",
        &key.private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), b"pw")
            .unwrap(),
    );
    write("kafka.secret", b"kafka-s3cret\n");
}

/// Loads MINIMAL with `kafka` and `cassandra` lines added to those sections, in `dir`.
fn spec_in(dir: &std::path::Path, kafka: &str, cassandra: &str) -> Result<Spec, String> {
    let path = dir.join("spec.toml");
    let text = MINIMAL
        .replace("topic = \"t\"", &format!("topic = \"t\"\n{kafka}"))
        .replace(
            "columns.id = { type = \"text\", jq = \".id\" }",
            &format!("columns.id = {{ type = \"text\", jq = \".id\" }}\n{cassandra}"),
        );
    std::fs::write(&path, text).unwrap();
    load(&path).map_err(|e| e.to_string())
}

#[test]
fn kafka_tls_and_sasl_become_librdkafka_settings() {
    let dir = tempfile::tempdir().unwrap();
    tls_files(dir.path());
    let spec = spec_in(
        dir.path(),
        "tls = { ca_file = \"ca.pem\", cert_file = \"client.pem\", key_file = \"locked.key\", key_password = \"pw\" }\n\
         sasl = { mechanism = \"scram-sha-512\", username = \"app\", password_file = \"kafka.secret\" }",
        "",
    )
    .unwrap();
    let config = crate::kafka::producer_config(&spec.kafka);
    let ca = dir.path().join("ca.pem");
    let key = dir.path().join("locked.key");
    for (property, value) in [
        ("security.protocol", "sasl_ssl"),
        ("ssl.ca.location", ca.to_str().unwrap()),
        ("ssl.key.location", key.to_str().unwrap()),
        ("ssl.key.password", "pw"),
        ("ssl.endpoint.identification.algorithm", "https"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "app"),
        ("sasl.password", "kafka-s3cret"),
    ] {
        assert_eq!(config.get(property), Some(value), "{property}");
    }
    assert!(!format!("{spec:?}").contains("s3cret"));

    let spec = spec_in(
        dir.path(),
        "tls = { verify_hostname = false }",
        "tls = { ca_file = \"ca.pem\" }",
    )
    .unwrap();
    let config = crate::kafka::consumer_config(&spec.kafka, &spec.kafka.group_id);
    assert_eq!(config.get("security.protocol"), Some("ssl"));
    assert_eq!(config.get("ssl.ca.location"), None, "the system's CAs");
    assert_eq!(
        config.get("ssl.endpoint.identification.algorithm"),
        Some("none")
    );
    assert!(spec.cassandra.tls.unwrap().verify_hostname);
}

#[test]
fn tls_and_sasl_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    tls_files(dir.path());
    let cases = [
        (
            "tls = { ca_file = \"missing.pem\" }",
            "",
            "kafka.tls.ca_file: cannot read",
        ),
        (
            "",
            "tls = { ca_file = \"client.key\" }",
            "cassandra.tls.ca_file: ",
        ),
        (
            "tls = { cert_file = \"client.pem\" }",
            "",
            "set both `cert_file` and `key_file`",
        ),
        (
            "tls = { cert_file = \"client.pem\", key_file = \"other.key\" }",
            "",
            "other.key is not the key of the certificate in",
        ),
        (
            "tls = { cert_file = \"client.pem\", key_file = \"ca.pem\" }",
            "",
            "ca.pem holds no PEM private key",
        ),
        (
            "",
            "tls = { cert_file = \"client.pem\", key_file = \"locked.key\" }",
            "cassandra.tls.key_password: ",
        ),
        (
            "tls = { cert_file = \"client.pem\", key_file = \"locked.key\", key_password = \"wrong\" }",
            "",
            "kafka.tls.key_password: does not decrypt",
        ),
        (
            "tls = { key_password = \"pw\" }",
            "",
            "is the password of `key_file`, which is not set",
        ),
        (
            "sasl = { mechanism = \"GSSAPI\", username = \"u\", password = \"p\" }",
            "",
            "`GSSAPI` is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512",
        ),
        (
            "sasl = { mechanism = \"PLAIN\", username = \"u\" }",
            "",
            "set `password` (or `password_file`, or AQUEDUCT_KAFKA__SASL__PASSWORD)",
        ),
        (
            "sasl = { mechanism = \"PLAIN\", username = \"u\", password = \"p\", password_file = \"kafka.secret\" }",
            "",
            "kafka.sasl.password_file: set one of `password` and `password_file`, not both",
        ),
        (
            "sasl = { mechanism = \"PLAIN\", username = \"u\", password = \"p\" }\nproperties = { \"sasl.password\" = \"q\" }",
            "",
            "`sasl.password` is set by [kafka.sasl]; remove it here",
        ),
        (
            "tls = {}\nproperties = { \"security.protocol\" = \"ssl\" }",
            "",
            "`security.protocol` is set by [kafka.tls]; remove it here",
        ),
    ];
    for (kafka, cassandra, expected) in cases {
        let errs = spec_in(dir.path(), kafka, cassandra).unwrap_err();
        assert!(errs.contains(expected), "{kafka} {cassandra}:\n{errs}");
        assert!(!errs.contains("s3cret"), "{errs}");
    }
    // Without [kafka.tls] the pass-through stays open to every librdkafka setting.
    let spec = spec_in(
        dir.path(),
        "properties = { \"security.protocol\" = \"ssl\" }",
        "",
    )
    .unwrap();
    assert_eq!(
        crate::kafka::producer_config(&spec.kafka).get("security.protocol"),
        Some("ssl")
    );
}

#[test]
fn incremental_keys_are_checked() {
    let with = |section: &str| MINIMAL.replace("\n[kafka]", &format!("{section}\n[kafka]"));
    let window = "[source.window]\nstart_param = \"starttime\"\nend_param = \"endtime\"\nsize = \"1h\"\nstart = \"2026-11-01T00:00:00Z\"\n";
    let spec = spec_from(&with(window)).unwrap();
    assert_eq!(spec.kafka.cursor_topic, "aqueduct-cursors");
    let Some(Incremental::Window(w)) = &spec.source.as_ref().unwrap().incremental else {
        panic!("no window")
    };
    assert_eq!(
        (w.max_windows, w.lag, &w.format),
        (24, Duration::ZERO, &TimeFormat::Rfc3339)
    );
    // A relative start is rounded down to a whole window.
    let spec = spec_from(&with(&window.replace("2026-11-01T00:00:00Z", "1d"))).unwrap();
    let Some(Incremental::Window(w)) = &spec.source.as_ref().unwrap().incremental else {
        panic!("no window")
    };
    let now = "2026-11-30T10:42:17Z".parse().unwrap();
    assert_eq!(
        w.first_start(now),
        "2026-11-29T10:00:00Z"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    );

    for (section, key, says) in [
        (
            window.replace("2026-11-01T00:00:00Z", "last week"),
            "source.window.start",
            "neither an RFC 3339 time",
        ),
        (
            format!("{window}format = \"iso\""),
            "source.window.format",
            "not `rfc3339`",
        ),
        (
            format!("{window}max_windows = 0"),
            "source.window.max_windows",
            "at least 1",
        ),
        (
            window.replace("\"endtime\"", "\"starttime\""),
            "source.window.end_param",
            "must differ",
        ),
        (
            window.replace("1h", "0s"),
            "source.window.size",
            "at least 1s",
        ),
        (
            format!("{window}[source.cursor]\nvalue = \".next\"\nquery = \"c\""),
            "source.cursor",
            "not both",
        ),
        (
            "[source.cursor]\nvalue = \".next\"".into(),
            "source.cursor",
            "$cursor goes nowhere",
        ),
        (
            "[source.cursor]\nvalue = \".next\"\nquery = \"c\"\nheader = \"X-C\"".into(),
            "source.cursor",
            "set one of `query`",
        ),
        (
            "[source.cursor]\nvalue = \".next\"\nformat = \"todate\"\n[source.headers]\nx-since = \"{{ $cursor }}\"".into(),
            "source.cursor.format",
            "in the placeholder",
        ),
        (
            "[source.query]\nsince = \"{{ $cursor }}\"".into(),
            "source.query.since",
            "reads $cursor, which nothing fills",
        ),
        (
            "[source.headers]\nx-range = \"{{ $start }}/{{ $end }}\"".into(),
            "source.headers.x-range",
            "[source.window]",
        ),
        (
            "[source.query]\nq = \"{{ $tokn }}\"".into(),
            "source.query.q",
            "$tokn",
        ),
        (
            "[source.query]\nq = \"{{ $cursor \"".into(),
            "source.query.q",
            "no }} closes",
        ),
        (
            "[source.window]\nsize = \"1h\"\nstart = \"7d\"\n[source.query]\nq = \"{{ $start }}\"".into(),
            "source.window.end_param",
            "$end goes nowhere",
        ),
        (
            "[source.cursor]\nvalue = \".next\"\nbody = \"/since\"".into(),
            "source.cursor.body",
            "POST",
        ),
        (
            "[source.cursor]\nvalue = \".next\"\nbody = \"since\"".into(),
            "source.cursor.body",
            "not a JSON pointer",
        ),
        (
            "[source.cursor]\nvalue = \"[$cursor, $other] | max\"\nquery = \"c\"".into(),
            "source.cursor.value",
            "$other",
        ),
        (
            "[source.cursor]\nvalue = \".next\"\nquery = \"c\"\nformat = \"todate(\"".into(),
            "source.cursor.format",
            "",
        ),
    ] {
        let errs = errors(&with(&section));
        assert!(
            errs.iter()
                .any(|e| e.key == key && e.message.contains(says)),
            "{key} {says:?}: {errs:?}"
        );
    }
    let errs = errors(&MINIMAL.replace("topic = \"t\"", "topic = \"t\"\ncursor_topic = \"t\""));
    assert!(
        errs.iter().any(|e| e.key == "kafka.cursor_topic"),
        "{errs:?}"
    );
}

#[test]
fn several_tables_inherit_from_cassandra_and_keep_the_file_order() {
    let spec = spec_with(
        "",
        r#"
        ttl = "1d"
        consistency = "quorum"
        [cassandra.tables.zeta]
        partition_key = ["id"]
        columns.id = { type = "uuid", jq = ".id" }
        [cassandra.tables.alpha]
        keyspace = "other"
        table = "alpha_by_email"
        consistency = "one"
        ttl = "1h"
        create = false
        partition_key = ["email"]
        clustering_key = ["id desc"]
        columns.email = { type = "text", jq = ".email" }
        columns.id = { type = "uuid", jq = ".id" }
        "#,
    );
    let tables = &spec.cassandra.tables;
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha"], "the file's order, not the names'");
    let (zeta, alpha) = (&tables[0], &tables[1]);
    assert_eq!(
        (zeta.keyspace.as_str(), zeta.table.as_str()),
        ("ks", "zeta")
    );
    assert_eq!(zeta.consistency, scylla::statement::Consistency::Quorum);
    assert!(matches!(zeta.ttl, Some(Ttl::Fixed(d)) if d == Duration::from_secs(86_400)));
    assert!(zeta.create);
    assert_eq!(
        (alpha.keyspace.as_str(), alpha.table.as_str()),
        ("other", "alpha_by_email")
    );
    assert_eq!(alpha.consistency, scylla::statement::Consistency::One);
    assert!(matches!(alpha.ttl, Some(Ttl::Fixed(d)) if d == Duration::from_secs(3600)));
    assert!(!alpha.create);
    assert_eq!(alpha.clustering_key, [("id".to_owned(), true)]);
    let script = crate::cassandra::ddl::script(&spec.cassandra);
    for statement in [
        "CREATE KEYSPACE IF NOT EXISTS \"ks\"",
        "CREATE KEYSPACE IF NOT EXISTS \"other\"",
        "CREATE TABLE IF NOT EXISTS \"ks\".\"zeta\"",
        "CREATE TABLE IF NOT EXISTS \"other\".\"alpha_by_email\"",
    ] {
        assert!(script.contains(statement), "{statement} in\n{script}");
    }
}

#[test]
fn table_mistakes_are_named_by_the_tables_key_path() {
    let base = MINIMAL.replace(
        "table = \"t\"\npartition_key = [\"id\"]\ncolumns.id = { type = \"text\", jq = \".id\" }\n",
        "",
    );
    let cases = [
        (
            // Both forms at once.
            format!(
                "{MINIMAL}[cassandra.tables.b]\npartition_key = [\"id\"]\ncolumns.id = {{ type = \"text\", jq = \".id\" }}\n"
            ),
            "cassandra.tables: set either [cassandra.tables.<name>] or table",
        ),
        (base.clone(), "cassandra.table: name the table"),
        (
            format!(
                "{base}[cassandra.tables.b]\npartition_key = [\"uid\"]\nconsistency = \"most\"\ncolumns.id = {{ type = \"int\", jq = \".id | tostring\" }}\n"
            ),
            "cassandra.tables.b.partition_key: column `uid` is not in cassandra.tables.b.columns",
        ),
        (
            format!(
                "{base}[cassandra.tables.b]\npartition_key = [\"id\"]\nconsistency = \"most\"\ncolumns.id = {{ type = \"int\", jq = \".id\" }}\n"
            ),
            "cassandra.tables.b.consistency: `most` is not one of",
        ),
        (
            format!(
                "{base}[cassandra.tables.b]\npartition_key = [\"id\"]\ncolumns.id = {{ type = \"int\", jq = \".id | tostring\" }}\n"
            ),
            "cassandra.tables.b.columns.id.jq: type mismatch",
        ),
        (
            format!(
                "{base}[cassandra.tables.a]\ntable = \"b\"\npartition_key = [\"id\"]\ncolumns.id = {{ type = \"int\", jq = \".id\" }}\n[cassandra.tables.b]\npartition_key = [\"id\"]\ncolumns.id = {{ type = \"int\", jq = \".id\" }}\n"
            ),
            "cassandra.tables.b: writes ks.b as [cassandra.tables.a] does",
        ),
        (
            format!("{base}[cassandra.tables.b]\npartition_key = [\"id\"]\n"),
            "cassandra.tables.b.columns: no columns",
        ),
        (
            format!(
                "{base}[cassandra.tables.b]\nwritetime = \".id == 1\"\npartition_key = [\"id\"]\ncolumns.id = {{ type = \"int\", jq = \".id\" }}\n"
            ),
            "cassandra.tables.b.writetime: a write time is a timestamp",
        ),
        (
            format!(
                "{base}[cassandra.tables.b]\nttl = {{ jq = \".ttl | tostring\" }}\npartition_key = [\"id\"]\ncolumns.id = {{ type = \"int\", jq = \".id\" }}\n"
            ),
            "cassandra.tables.b.ttl.jq: a time to live is a number of seconds",
        ),
        (
            format!(
                "{base}[cassandra.tables.b]\nnulls = \"skip\"\npartition_key = [\"id\"]\ncolumns.id = {{ type = \"int\", jq = \".id\" }}\nindexes.i = {{ column = \"nope\" }}\n"
            ),
            "cassandra.tables.b.indexes.i.column: column `nope` is not in cassandra.tables.b.columns",
        ),
        (
            format!(
                "{base}[cassandra.tables.b]\nnulls = \"skip\"\npartition_key = [\"id\"]\ncolumns.id = {{ type = \"int\", jq = \".id\" }}\n"
            ),
            "cassandra.tables.b.nulls: `skip` is not null or unset",
        ),
    ];
    for (text, expected) in cases {
        let messages: Vec<String> = errors(&text).iter().map(|e| e.to_string()).collect();
        assert!(
            messages.iter().any(|m| m.contains(expected)),
            "{expected:?} not in {messages:?}"
        );
    }
}

/// Each static kind of `[source.auth]`, and header and query values marked secret or read
/// from a file, become secret parameters (kept out of every shown request); plain ones stay.
#[test]
fn static_credentials_and_secret_values_become_secret_parameters() {
    use crate::source::http::Request;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "from-a-file\n").unwrap();
    let load_with = |source: &str| {
        let text = MINIMAL.replace(
            "schedule = { every = \"10s\" }",
            &format!("schedule = {{ every = \"10s\" }}\n{source}"),
        );
        let path = dir.path().join("spec.toml");
        std::fs::write(&path, text).unwrap();
        load(&path).unwrap_or_else(|e| panic!("{e}"))
    };
    let secrets = |spec: &Spec| -> Vec<(String, String)> {
        spec.source
            .as_ref()
            .unwrap()
            .secrets
            .iter()
            .map(|s| {
                let place = match &s.place {
                    ParamPlace::Header(h) => format!("header {h}"),
                    ParamPlace::Query(q) => format!("query {q}"),
                };
                (place, s.value.0.clone())
            })
            .collect()
    };
    let spec = load_with("auth = { type = \"bearer\", token = \"t0k\" }");
    assert_eq!(
        secrets(&spec),
        [("header authorization".into(), "Bearer t0k".into())]
    );
    let spec = load_with("auth = { type = \"basic\", username = \"ann\", password = \"pw\" }");
    assert_eq!(
        secrets(&spec),
        [("header authorization".into(), "Basic YW5uOnB3".into())]
    );
    let spec = load_with(
        "auth = { type = \"api_key\", query = \"api_key\", key_file = \"key\" }\nquery = { results = 5, token = { value = \"q\", secret = true } }\nheaders = { Accept = \"application/json\", X-Key = { file = \"key\", prefix = \"Token \" } }",
    );
    assert_eq!(
        secrets(&spec),
        [
            ("header x-key".into(), "Token from-a-file".into()),
            ("query token".into(), "q".into()),
            ("query api_key".into(), "from-a-file".into()),
        ]
    );
    assert_eq!(
        spec.source.as_ref().unwrap().headers["accept"],
        "application/json"
    );
    assert!(spec.source.as_ref().unwrap().headers.get("x-key").is_none());
    assert_eq!(
        Request::build(
            spec.source.as_ref().unwrap(),
            &spec.source.as_ref().unwrap().endpoint,
            &Default::default()
        )
        .unwrap()
        .url
        .as_str(),
        "http://127.0.0.1:8080/api/?results=5&token=REDACTED&api_key=REDACTED"
    );
    assert!(format!("{:?}", spec.source).contains("***"));
    assert!(!format!("{:?}", spec.source).contains("from-a-file"));
}
