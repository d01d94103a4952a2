//! Trying a spec without servers: `preview` (rows and dead letters from the stand-in API or
//! saved responses) and `test` (the cases kept in `pipelines/tests/`). Kafka and Cassandra are
//! pointed at closed ports: neither command may need them.

use serde_json::Value;

use crate::support::{Api, aqueduct, repo, run, spec_file};

/// An aqueduct command with Kafka and Cassandra pointed at closed ports.
fn offline() -> tokio::process::Command {
    let mut cmd = aqueduct();
    cmd.env("AQUEDUCT_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
        .env("AQUEDUCT_CASSANDRA__CONTACT_POINTS", r#"["127.0.0.1:1"]"#);
    cmd
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn preview_polls_the_api_and_prints_rows_and_dead_letters() {
    let api = Api::start().await;
    let mut cmd = offline();
    cmd.env("AQUEDUCT_SOURCE__URL", api.url("seed=preview&invalid=2"))
        .args(["preview", "pipelines/users.toml", "--limit", "5"]);
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines = json_lines(&out.stdout);
    // Two dead letters, and each of the three users a row in each of users.toml's two tables.
    assert_eq!(lines.len(), 2 + 3 * 2, "{out:?}");
    let dead: Vec<&Value> = lines.iter().filter_map(|l| l.get("dead_letter")).collect();
    assert_eq!(dead.len(), 2, "{out:?}");
    assert_eq!(dead[0]["stage"], "validate");
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .contains("\"login\" is a required property")
    );
    let tables: Vec<&Value> = lines.iter().filter_map(|l| l.get("table")).collect();
    assert_eq!(
        tables,
        ["created_users", "users_by_country"].repeat(3),
        "{out:?}"
    );
    let row = lines.iter().find_map(|l| l.get("row")).unwrap();
    // Every column of the spec, in its order (the text keeps it), typed: a timestamp as
    // RFC 3339.
    assert_eq!(row.as_object().unwrap().len(), 12, "{row}");
    assert!(out.stdout.contains(r#""row":{"id":"#), "{out:?}");
    assert!(row["dob"].as_str().unwrap().ends_with('Z'), "{row}");
    assert!(
        out.stderr
            .contains("users: 5 records, 6 rows, 2 dead letters (validate 2)"),
        "{out:?}"
    );
    assert_eq!(api.requests(), 1, "one page, no retries");
}

#[tokio::test]
async fn preview_reads_saved_responses_or_records_and_prints_a_table() {
    let api = Api::start().await;
    let body = reqwest::get(api.url("seed=saved&results=3"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Two saved responses, one after the other.
    let responses = dir.path().join("responses.json");
    std::fs::write(&responses, format!("{body}\n{body}")).unwrap();
    let mut cmd = offline();
    cmd.args([
        "preview",
        "pipelines/users.toml",
        "--format",
        "table",
        "--input",
    ])
    .arg(&responses);
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("│ # ┆ id"),
        "a table with the columns as header: {out:?}"
    );
    assert!(
        out.stderr.contains("6 records, 12 rows, 0 dead letters"),
        "{out:?}"
    );

    // Records, one per line, from stdin.
    let users: Value = serde_json::from_str(&body).unwrap();
    let records: String = users["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| format!("{u}\n"))
        .collect();
    let mut cmd = offline();
    cmd.args([
        "preview",
        "pipelines/users.toml",
        "--records",
        "--input",
        "-",
        "--limit",
        "2",
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(records.as_bytes()).await.unwrap();
    drop(stdin);
    let done = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert_eq!(done.status.code(), Some(0), "{stdout}");
    assert_eq!(
        json_lines(&stdout).len(),
        2 * 2,
        "--limit 2, a row in each table: {stdout}"
    );

    // A response the records expression cannot select from says so, and hints --records.
    let mut cmd = offline();
    cmd.args(["preview", "pipelines/users.toml", "--input"])
        .arg(repo().join("pipelines/tests/users/user.json"));
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("use --records"), "{out:?}");
}

#[tokio::test]
async fn preview_exits_1_when_the_fetch_fails_and_2_for_a_bad_spec() {
    let mut cmd = offline();
    cmd.env("AQUEDUCT_SOURCE__URL", "http://127.0.0.1:1/api/")
        .env("AQUEDUCT_SOURCE__RETRY__ATTEMPTS", "1")
        .args(["preview", "pipelines/users.toml"]);
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("preview: GET http://127.0.0.1:1/api/"),
        "{out:?}"
    );

    let (_dir, bad) = spec_file("name = \"x\"\n");
    let mut cmd = offline();
    cmd.arg("preview").arg(&bad);
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(2), "{out:?}");
}

#[tokio::test]
async fn the_shipped_specs_pass_their_tests() {
    let mut cmd = offline();
    cmd.args(["test", "pipelines/users.toml", "pipelines/earthquakes.toml"]);
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("21 cases: 21 passed, 0 failed"),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_failing_case_shows_what_differs_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("pipelines/users.toml"),
        dir.path().join("users.toml"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
    std::fs::copy(
        repo().join("pipelines/schemas/randomuser-user.json"),
        dir.path().join("schemas/randomuser-user.json"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("tests")).unwrap();
    let user = repo().join("pipelines/tests/users/user.json");
    let cases = format!(
        r#"
[[case]]
name = "right"
record_file = {user:?}
row = {{ post_code = "87282" }}

[[case]]
name = "wrong column"
record_file = {user:?}
set = {{ "/location/postcode" = "01234" }}
row = {{ post_code = "1234" }}

[[case]]
name = "wrong outcome"
record_file = {user:?}
remove = ["/login"]
row = {{ post_code = "87282" }}
"#
    );
    std::fs::write(dir.path().join("tests/users.toml"), cases).unwrap();
    let mut cmd = offline();
    cmd.arg("test").arg(dir.path().join("users.toml"));
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.contains("ok   right"), "{out:?}");
    assert!(
        out.stdout.contains("FAIL wrong column")
            && out.stdout.contains(
                r#"column post_code of table created_users: expected "1234", got "01234""#
            ),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("FAIL wrong outcome")
            && out
                .stdout
                .contains("expected a row, got a dead letter at stage validate"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("3 cases: 1 passed, 2 failed"),
        "{out:?}"
    );

    // A broken test file is not a failing case: exit 2, naming the file and the case.
    std::fs::write(
        dir.path().join("tests/users.toml"),
        "[[case]]\nname = \"no input\"\nrow = { post_code = \"1\" }\n",
    )
    .unwrap();
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains(
            "case 1 (\"no input\"): give exactly one of record, record_json and record_file"
        ),
        "{out:?}"
    );
    std::fs::remove_file(dir.path().join("tests/users.toml")).unwrap();
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("tests/users.toml: No such file"),
        "{out:?}"
    );
}

/// `aqueduct test ... | head -1`: a reader that goes away is no panic (println! panicked).
#[tokio::test]
async fn a_closed_stdout_is_no_panic() {
    for args in [
        &["test", "pipelines/users.toml", "pipelines/earthquakes.toml"][..],
        &[
            "check",
            "pipelines/users.toml",
            "pipelines/earthquakes.toml",
        ][..],
        &["ddl", "pipelines/users.toml"][..],
    ] {
        let mut cmd = offline();
        cmd.args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        drop(child.stdout.take()); // the reader is gone before the first line
        let out = child.wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
