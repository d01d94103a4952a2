//! The command line without servers: `check` over the bad-spec corpus and the example specs,
//! `ddl`, the bare-spec shorthand, environment overrides and exit codes.

use std::path::PathBuf;

use crate::support::{aqueduct, repo, run};

/// Every `tests/specs/bad/*.toml` is rejected with exit 2 and a message naming the file and
/// each `# expect:` line of the file.
#[tokio::test]
async fn every_bad_spec_is_rejected_with_a_located_message() {
    let dir = repo().join("tests/specs/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 25, "the corpus holds {} specs", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let expects: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expects.is_empty(),
            "{} has no `# expect:` line",
            file.display()
        );
        let mut cmd = aqueduct();
        cmd.arg("check").arg(file);
        let out = run(&mut cmd).await;
        let name = file.strip_prefix(repo()).unwrap().display().to_string();
        let ok = out.code == Some(2)
            && out.stderr.contains(&name)
            && !out.stderr.contains("panicked")
            && expects.iter().all(|e| out.stderr.contains(e));
        if !ok {
            failures.push(format!("{name}: expected {expects:?}\n{out:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test]
async fn example_specs_pass_check() {
    let mut cmd = aqueduct();
    cmd.arg("check");
    for entry in std::fs::read_dir(repo().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            cmd.arg(path);
        }
    }
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("users.toml: ok"), "{out:?}");
}

#[tokio::test]
async fn errors_point_at_line_and_column() {
    let mut cmd = aqueduct();
    cmd.args(["check", "tests/specs/bad/unknown_key.toml"]);
    let out = run(&mut cmd).await;
    // `topik` is on line 11 (after the two `# expect:` lines).
    assert!(
        out.stderr
            .starts_with("tests/specs/bad/unknown_key.toml:11:1: kafka.topik: unknown field"),
        "{out:?}"
    );
}

#[tokio::test]
async fn environment_overrides_keys_and_are_named_in_errors() {
    let mut cmd = aqueduct();
    cmd.args(["check", "pipelines/users.toml"])
        .env("AQUEDUCT_KAFKA__TOPIC", "no spaces allowed");
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("kafka.topic: `no spaces allowed` is not a valid topic name"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("set by environment variable AQUEDUCT_KAFKA__TOPIC"),
        "{out:?}"
    );
    // Variables without `__` (the local stack's) are not spec keys.
    let mut cmd = aqueduct();
    cmd.args(["check", "pipelines/users.toml"])
        .env("AQUEDUCT_KAFKA_PORT", "9092");
    assert_eq!(run(&mut cmd).await.code, Some(0));
}

#[tokio::test]
async fn ddl_prints_keyspace_and_table() {
    let mut cmd = aqueduct();
    cmd.args(["ddl", "pipelines/users.toml"]);
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("CREATE KEYSPACE IF NOT EXISTS \"spark_streams\" WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};"), "{out:?}");
    assert!(
        out.stdout
            .contains("CREATE TABLE IF NOT EXISTS \"spark_streams\".\"created_users\" ("),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("\"post_code\" text,") && out.stdout.contains("\"dob\" timestamp,"),
        "{out:?}"
    );
    assert!(out.stdout.contains("PRIMARY KEY ((\"id\"))"), "{out:?}");
}

#[tokio::test]
async fn a_bare_spec_path_means_run_and_a_missing_spec_exits_2() {
    let mut cmd = aqueduct();
    cmd.arg("pipelines/nope.toml");
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("pipelines/nope.toml: cannot read spec"),
        "{out:?}"
    );
    let mut cmd = aqueduct();
    cmd.args(["run", "--only", "sideways", "pipelines/users.toml"]);
    assert_eq!(run(&mut cmd).await.code, Some(2), "bad usage");
}

/// A librdkafka property from the environment keeps its dotted name
/// (`AQUEDUCT_KAFKA__PROPERTIES__SASL_PASSWORDD` is `sasl.passwordd`, not `sasl_passwordd`),
/// and the error refusing an unknown one names the property, never its value (it printed the
/// value twice).
#[tokio::test]
async fn a_refused_kafka_property_from_the_environment_is_named_without_its_value() {
    let mut cmd = aqueduct();
    cmd.args(["run", "--once", "pipelines/users.toml"])
        .env("AQUEDUCT_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
        .env(
            "AQUEDUCT_KAFKA__PROPERTIES__SASL_PASSWORDD",
            "hunter2-recognisable",
        );
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("property `sasl.passwordd`: No such configuration property"),
        "{out:?}"
    );
    assert!(!out.stderr.contains("hunter2"), "the value leaked: {out:?}");

    // A property `check` refuses names the variable that set it.
    let mut cmd = aqueduct();
    cmd.args(["check", "pipelines/users.toml"])
        .env("AQUEDUCT_KAFKA__PROPERTIES__ENABLE_IDEMPOTENCE", "false");
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains(
            "(value set by environment variable AQUEDUCT_KAFKA__PROPERTIES__ENABLE_IDEMPOTENCE)"
        ),
        "{out:?}"
    );
}
