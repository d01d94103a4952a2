//! Against the secure stack (`scripts/stack up --secure`): Kafka over SASL_SSL with
//! SCRAM-SHA-512, Cassandra over TLS with a password. Rows end to end, each refusal named with
//! the server and the reason, and no secret in any output.

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::ClientConfig;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::support::{
    Api, Background, Pipeline, count_rows, free_port, repo, run, topic_messages_with, wait_until,
};

/// Where the secure stack is and what a client needs to reach it.
struct SecureStack {
    secrets: PathBuf,
    kafka: String,
    cassandra: String,
}

impl SecureStack {
    /// The running secure stack; a missing one fails the test (see
    /// [`crate::support::skip_or_fail`]).
    fn find(test: &str) -> Option<SecureStack> {
        let dir = std::env::var("AQUEDUCT_SECURE_STACK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo().join(".stack-secure"));
        let stack = SecureStack {
            secrets: dir.join("secrets"),
            kafka: std::env::var("AQUEDUCT_TEST_SECURE_KAFKA")
                .unwrap_or_else(|_| "127.0.0.1:9094".into()),
            cassandra: std::env::var("AQUEDUCT_TEST_SECURE_CASSANDRA")
                .unwrap_or_else(|_| "127.0.0.1:9142".into()),
        };
        let serving = std::process::Command::new(repo().join("scripts/stack"))
            .args(["status", "--secure"])
            .output()
            .is_ok_and(|out| out.status.success());
        if serving && stack.secrets.join("made").exists() {
            return Some(stack);
        }
        crate::support::skip_or_fail(&format!(
            "{test}: the secure stack is not serving (secrets in {}); start it with `scripts/stack up --secure`",
            stack.secrets.display()
        ));
        None
    }

    fn file(&self, name: &str) -> String {
        self.secrets.join(name).to_string_lossy().into_owned()
    }

    fn secret(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.secrets.join(name)).unwrap();
        text.trim_end().to_owned()
    }

    /// `aqueduct ARGS users.toml` on this stack: every setting from the environment, as an
    /// operator would give it; the Kafka password in a variable, Cassandra's in a file.
    fn command(&self, p: &Pipeline, args: &[&str]) -> tokio::process::Command {
        let mut cmd = p.command(args);
        for (key, value) in [
            ("KAFKA__BOOTSTRAP_SERVERS", self.kafka.clone()),
            ("KAFKA__TLS__CA_FILE", self.file("ca.pem")),
            ("KAFKA__TLS__CERT_FILE", self.file("client.pem")),
            ("KAFKA__TLS__KEY_FILE", self.file("client.key")),
            ("KAFKA__SASL__MECHANISM", "SCRAM-SHA-512".into()),
            ("KAFKA__SASL__USERNAME", "aqueduct".into()),
            ("KAFKA__SASL__PASSWORD", self.secret("kafka-password")),
            (
                "CASSANDRA__CONTACT_POINTS",
                format!("[\"{}\"]", self.cassandra),
            ),
            ("CASSANDRA__TLS__CA_FILE", self.file("ca.pem")),
            ("CASSANDRA__USERNAME", "aqueduct".into()),
            ("CASSANDRA__PASSWORD_FILE", self.file("cassandra-password")),
        ] {
            cmd.env(format!("AQUEDUCT_{key}"), value);
        }
        cmd
    }

    async fn session(&self) -> Session {
        let mut tls = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
        tls.set_ca_file(self.secrets.join("ca.pem")).unwrap();
        SessionBuilder::new()
            .known_node(&self.cassandra)
            .user("aqueduct", self.secret("cassandra-password"))
            .tls_context(Some(tls))
            .build()
            .await
            .expect("connecting to the secure Cassandra")
    }

    fn kafka_client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.kafka)
            .set("security.protocol", "sasl_ssl")
            .set("ssl.ca.location", self.file("ca.pem"))
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", "aqueduct")
            .set("sasl.password", self.secret("kafka-password"));
        config
    }
}

/// Rows go from an API that takes OAuth2 (client credentials) through Kafka over SASL_SSL
/// (with a client certificate) into Cassandra over TLS with a login; at trace level, with
/// librdkafka's own security and configuration debugging on, no password, no client secret
/// and no access token the token endpoint issued shows up in the log, in `/metrics`, in the
/// dead letters, or in what `check` and `ddl` print.
#[tokio::test(flavor = "multi_thread")]
async fn rows_flow_over_tls_and_logins_and_no_secret_is_printed() {
    let Some(stack) = SecureStack::find("rows_flow_over_tls_and_logins") else {
        return;
    };
    let api = Api::start().await;
    let passwords = [
        stack.secret("kafka-password"),
        stack.secret("cassandra-password"),
        randomuser_standin::apis::CLIENT_SECRET.to_owned(),
    ];
    let leaks = |what: &str, text: &str| {
        let issued = api.stats.apis.issued.lock().unwrap().clone();
        for secret in passwords.iter().chain(&issued) {
            assert!(
                !text.contains(secret.as_str()),
                "{what} shows a password:\n{text}"
            );
        }
    };
    let p = Pipeline::users(
        format!("http://{}/oauth/api/?seed=secure&invalid=2", api.addr),
        12,
    );
    let port = free_port();
    let command = |args: &[&str]| {
        let mut cmd = stack.command(&p, args);
        for (key, value) in [
            ("TYPE", "oauth2".to_owned()),
            ("GRANT", "client_credentials".to_owned()),
            ("TOKEN_URL", format!("http://{}/oauth/token", api.addr)),
            ("CLIENT_ID", randomuser_standin::apis::CLIENT_ID.to_owned()),
            (
                "CLIENT_SECRET",
                randomuser_standin::apis::CLIENT_SECRET.to_owned(),
            ),
        ] {
            cmd.env(format!("AQUEDUCT_SOURCE__AUTH__{key}"), value);
        }
        cmd
    };
    let mut cmd = command(&["run"]);
    cmd.env("AQUEDUCT_LOG", "trace")
        .env("AQUEDUCT_KAFKA__PROPERTIES__DEBUG", "security,broker,conf")
        .env("AQUEDUCT_METRICS__ADDRESS", format!("127.0.0.1:{port}"));
    let mut running = Background::spawn(&mut cmd);
    running.wait_for("pipeline started", 60).await;
    let session = stack.session().await;
    wait_until("the 10 valid users are written", 90, || async {
        count_rows(&session, &p.table()).await == 10
    })
    .await;
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("aqueduct_records_total{pipeline=\"users\",stage=\"written\"} 10"),
        "{metrics}"
    );
    leaks("/metrics", &metrics);
    assert_eq!(running.terminate().await, Some(0), "{}", running.log());
    let log = running.log();
    assert!(
        log.contains("librdkafka") && log.contains("SASL"),
        "librdkafka's debugging should be in the log:\n{log}"
    );
    leaks("the trace-level log", &log);
    assert!(
        !api.stats.apis.issued.lock().unwrap().is_empty(),
        "the run should have asked the token endpoint"
    );

    let dead_letters = topic_messages_with(stack.kafka_client(), &p.dead_letter_topic);
    assert_eq!(dead_letters.len(), 2, "{dead_letters:?}");
    leaks("the dead letters", &format!("{dead_letters:?}"));
    for args in [["check"], ["ddl"]] {
        let out = run(&mut command(&args)).await;
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
        leaks(args[0], &format!("{out:?}"));
    }
}

/// A wrong password or a certificate from an untrusted CA stops the run at start with exit 1
/// and a message naming the server that refused and why (never the password).
#[tokio::test(flavor = "multi_thread")]
async fn refusals_name_the_server_and_the_reason() {
    let Some(stack) = SecureStack::find("refusals_name_the_server_and_the_reason") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let untrusted = dir.path().join("untrusted-ca.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=not the stack's CA", "-keyout"])
        .arg(dir.path().join("untrusted-ca.key"))
        .arg("-out")
        .arg(&untrusted)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let kafka_refused = format!("Kafka at {} refused aqueduct", stack.kafka);
    let cassandra_refused = format!("cannot connect to Cassandra at {}", stack.cassandra);
    let cases = [
        (
            "AQUEDUCT_KAFKA__SASL__PASSWORD",
            "not-the-password".to_owned(),
            kafka_refused.as_str(),
            "SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
        ),
        (
            "AQUEDUCT_KAFKA__TLS__CA_FILE",
            untrusted.to_string_lossy().into_owned(),
            &kafka_refused,
            "certificate verify failed",
        ),
        (
            "AQUEDUCT_CASSANDRA__PASSWORD_FILE",
            wrong.to_string_lossy().into_owned(),
            &cassandra_refused,
            "Authentication failed - bad credentials",
        ),
        (
            "AQUEDUCT_CASSANDRA__TLS__CA_FILE",
            untrusted.to_string_lossy().into_owned(),
            &cassandra_refused,
            "certificate verify failed",
        ),
    ];
    let api = Api::start().await;
    for (variable, value, server, reason) in cases {
        let p = Pipeline::users(api.url("seed=refused"), 3);
        let started = std::time::Instant::now();
        let out = run(stack.command(&p, &["run", "--once"]).env(variable, &value)).await;
        assert_eq!(out.code, Some(1), "{variable}: {out:?}");
        assert!(
            out.stderr.contains(server) && out.stderr.contains(reason),
            "{variable} should give `{server}` and `{reason}`: {out:?}"
        );
        assert!(!out.stderr.contains("not-the-password"), "{out:?}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{variable}: a refusal should stop the run at once, took {:?}",
            started.elapsed()
        );
    }
}

/// The secure stack's registry serves HTTPS signed by the stack's CA and wants a login:
/// records go through it as JSON Schema (the user and password file, the CA file), every
/// valid user lands, and the password shows nowhere at trace level; a wrong password stops
/// the run at start with exit 1 and the registry's refusal.
#[tokio::test(flavor = "multi_thread")]
async fn the_registry_over_https_with_a_login() {
    let Some(stack) = SecureStack::find("registry_over_https") else {
        return;
    };
    let api = Api::start().await;
    let p = Pipeline::users(api.url("seed=secure-registry&invalid=2"), 12);
    let registry =
        std::env::var("AQUEDUCT_TEST_SECURE_REGISTRY").unwrap_or_else(|_| "127.0.0.1:8091".into());
    let command = |password_file: &str| {
        let mut cmd = stack.command(&p, &["run", "--once"]);
        for (key, value) in [
            ("CODEC", "json_schema".to_owned()),
            ("SCHEMA_REGISTRY__URL", format!("https://{registry}")),
            ("SCHEMA_REGISTRY__USERNAME", "aqueduct".into()),
            ("SCHEMA_REGISTRY__PASSWORD_FILE", password_file.to_owned()),
            ("SCHEMA_REGISTRY__CA_FILE", stack.file("ca.pem")),
        ] {
            cmd.env(format!("AQUEDUCT_KAFKA__{key}"), value);
        }
        cmd.env("AQUEDUCT_LOG", "trace");
        cmd
    };
    let password = stack.secret("registry-password");
    let out = run(&mut command(&stack.file("registry-password"))).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!format!("{out:?}").contains(&password), "{out:?}");
    let session = stack.session().await;
    assert_eq!(count_rows(&session, &p.table()).await, 10);

    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password").unwrap();
    let out = run(&mut command(&wrong.to_string_lossy())).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("401"), "{out:?}");
}
