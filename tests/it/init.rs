//! `aqueduct init`: a starting spec from a sample, asked of the stand-in APIs or read from a
//! file; the written spec passes `check` and `preview` on the same sample, and no file is ever
//! overwritten. No Kafka or Cassandra: they are pointed at closed ports.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{Api, Run, aqueduct, repo, run};

/// An aqueduct command with Kafka and Cassandra pointed at closed ports.
fn offline() -> tokio::process::Command {
    let mut cmd = aqueduct();
    cmd.env("AQUEDUCT_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
        .env("AQUEDUCT_CASSANDRA__CONTACT_POINTS", r#"["127.0.0.1:1"]"#);
    cmd
}

async fn init(args: &[&str]) -> Run {
    let mut cmd = offline();
    cmd.arg("init").args(args);
    run(&mut cmd).await
}

/// The written spec, parsed.
fn spec_at(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap();
    toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn columns(spec: &toml::Table) -> &toml::Table {
    spec["cassandra"]["columns"].as_table().unwrap()
}

/// The column's `(type, jq)`.
fn column<'a>(spec: &'a toml::Table, name: &str) -> (&'a str, &'a str) {
    let c = &columns(spec).get(name).unwrap_or_else(|| {
        panic!(
            "no column {name} in {:?}",
            columns(spec).keys().collect::<Vec<_>>()
        )
    });
    (c["type"].as_str().unwrap(), c["jq"].as_str().unwrap())
}

fn partition_key(spec: &toml::Table) -> Vec<&str> {
    spec["cassandra"]["partition_key"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

/// `url`'s body, saved to `dir/name`.
async fn save(url: &str, dir: &Path, name: &str) -> PathBuf {
    let body = reqwest::get(url).await.unwrap().text().await.unwrap();
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

/// `aqueduct check` passes on `spec`.
async fn checks(spec: &Path) {
    let mut cmd = offline();
    cmd.arg("check").arg(spec);
    let out = run(&mut cmd).await;
    assert_eq!(
        out.code,
        Some(0),
        "{out:?}\n{}",
        std::fs::read_to_string(spec).unwrap()
    );
}

/// `aqueduct preview --input sample` gives a row for each of `records` and no dead letter.
async fn previews(spec: &Path, sample: &Path, records: usize) {
    let mut cmd = offline();
    cmd.arg("preview")
        .arg(spec)
        .arg("--input")
        .arg(sample)
        .args(["--format", "json", "--limit", "1000"]);
    let out = run(&mut cmd).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dead: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("dead_letter").is_some())
        .collect();
    assert!(
        dead.is_empty(),
        "dead letters: {dead:?}\n{}",
        std::fs::read_to_string(spec).unwrap()
    );
    assert_eq!(
        lines.iter().filter(|l| l.get("row").is_some()).count(),
        records,
        "{out:?}"
    );
}

#[tokio::test]
async fn randomuser_from_its_url_makes_a_spec_that_checks_and_previews() {
    let api = Api::start().await;
    // A folder with docs/spec.schema.json, as the repository has.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("docs")).unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::copy(
        repo().join("docs/spec.schema.json"),
        dir.path().join("docs/spec.schema.json"),
    )
    .unwrap();
    let out = dir.path().join("pipelines/people.toml");
    let url = api.url("results=30&seed=init");
    let run = init(&["people", "--url", &url, "-o", out.to_str().unwrap()]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("wrote "), "{run:?}");
    assert_eq!(api.requests(), 1, "one request");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with("#:schema ../docs/spec.schema.json\n"),
        "{text}"
    );
    let spec = spec_at(&out);
    assert_eq!(spec["name"].as_str(), Some("people"));
    assert_eq!(spec["source"]["url"].as_str(), Some(url.as_str()));
    assert_eq!(spec["source"]["records"].as_str(), Some(".results[]"));
    assert!(spec["source"].get("pagination").is_none(), "{text}");
    assert_eq!(spec["kafka"]["topic"].as_str(), Some("people"));
    assert_eq!(spec["kafka"]["key"].as_str(), Some(".login.uuid"));
    assert_eq!(spec["cassandra"]["keyspace"].as_str(), Some("people"));
    assert_eq!(partition_key(&spec), ["login_uuid"]);
    assert_eq!(column(&spec, "login_uuid"), ("uuid", ".login.uuid"));
    assert_eq!(column(&spec, "name_first"), ("text", ".name.first"));
    assert_eq!(
        column(&spec, "location_street_number"),
        ("bigint", ".location.street.number")
    );
    assert_eq!(column(&spec, "dob_date"), ("timestamp", ".dob.date"));
    // The schema: nested, required where always present, formats recognised.
    let schema: Value = serde_json::from_str(spec["validate"]["schema"].as_str().unwrap()).unwrap();
    let required = schema["required"].as_array().unwrap();
    assert!(required.contains(&"login".into()), "{schema}");
    assert_eq!(
        schema["properties"]["login"]["properties"]["uuid"]["format"],
        "uuid"
    );
    assert_eq!(schema["properties"]["email"]["format"], "email");
    // The same users, saved, are what check and preview get.
    let sample = save(&url, dir.path(), "users.json").await;
    checks(&out).await;
    previews(&out, &sample, 30).await;
}

#[tokio::test]
async fn earthquakes_geojson_from_its_url_makes_a_spec_that_checks_and_previews() {
    let api = Api::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("quakes.toml");
    let url = format!(
        "http://{}/fdsnws/event/1/query?format=geojson&starttime=2026-01-01&endtime=2026-01-02&seed=init",
        api.addr
    );
    let run = init(&["quakes", "--url", &url, "-o", out.to_str().unwrap()]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    // No docs/spec.schema.json above a temporary folder: no directive.
    assert!(!text.contains("#:schema"), "{text}");
    let spec = spec_at(&out);
    assert_eq!(spec["source"]["records"].as_str(), Some(".features[]"));
    assert_eq!(partition_key(&spec), ["id"]);
    assert_eq!(column(&spec, "id"), ("text", ".id"));
    assert_eq!(
        column(&spec, "properties_time"),
        ("bigint", ".properties.time")
    );
    assert_eq!(
        column(&spec, "properties_mag_type").1,
        ".properties.magType"
    );
    assert_eq!(
        column(&spec, "geometry_coordinates"),
        ("list<double>", ".geometry.coordinates")
    );
    let sample = save(&url, dir.path(), "quakes.json").await;
    checks(&out).await;
    previews(&out, &sample, 24).await;
}

#[tokio::test]
async fn a_nested_saved_response_gets_its_records_path_and_next_link() {
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("items.json");
    let items: Vec<Value> = (0..4)
        .map(|i| {
            serde_json::json!({
                "item-id": format!("it_{i}"),
                "owner": {"name": "Ana", "address": {"city": "Porto", "zip": if i % 2 == 0 { Value::from(4000) } else { Value::from("4000-1") }}},
                "tags": ["a", "b"],
                "parts": [{"sku": i}],
                "updated": "2026-11-01T10:00:00Z",
                "score": if i == 0 { Value::Null } else { Value::from(i as f64 / 2.0) },
            })
        })
        .collect();
    let body = serde_json::json!({
        "data": {"items": items, "total": 4},
        "paging": {"next": "https://api.example.com/items?after=it_3"}
    });
    std::fs::write(&sample, body.to_string()).unwrap();
    let out = dir.path().join("items.toml");
    let run = init(&[
        "items",
        "--response",
        sample.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let spec = spec_at(&out);
    assert_eq!(spec["source"]["records"].as_str(), Some(".data.items[]"));
    let paging = spec["source"]["pagination"].as_table().unwrap();
    assert_eq!(paging["mode"].as_str(), Some("next_link"));
    assert_eq!(paging["next"].as_str(), Some(".paging.next"));
    assert_eq!(partition_key(&spec), ["item_id"]);
    assert_eq!(column(&spec, "item_id"), ("text", r#".["item-id"]"#));
    assert_eq!(
        column(&spec, "owner_address_city"),
        ("text", ".owner.address.city")
    );
    assert_eq!(
        column(&spec, "owner_address_zip"),
        ("text", ".owner.address.zip | tostring")
    );
    assert_eq!(column(&spec, "tags"), ("list<text>", ".tags"));
    assert_eq!(column(&spec, "parts"), ("text", ".parts | tojson"));
    assert_eq!(column(&spec, "score"), ("double", ".score"));
    checks(&out).await;
    previews(&out, &sample, 4).await;
}

#[tokio::test]
async fn a_link_header_api_is_paged_by_its_link_header() {
    let api = Api::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gh.toml");
    let url = format!("http://{}/github/api/?paged=3&results=5&seed=gh", api.addr);
    let run = init(&["gh", "--url", &url, "-o", out.to_str().unwrap()]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let spec = spec_at(&out);
    let paging = spec["source"]["pagination"].as_table().unwrap();
    assert_eq!(paging["mode"].as_str(), Some("link_header"));
    assert!(paging["max_pages"].as_integer().unwrap() > 1);
    checks(&out).await;
}

#[tokio::test]
async fn a_source_file_with_auth_asks_through_it_and_guesses_stripes_cursor() {
    let api = Api::start().await;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("stripe-source.toml");
    // The key comes from the environment (an inline one in a second file, never copied).
    std::fs::write(
        &source,
        format!(
            "[source]\nurl = \"http://{}/stripe/v1/charges?limit=5\"\nauth = {{ type = \"bearer\" }}\n",
            api.addr
        ),
    )
    .unwrap();
    let key = randomuser_standin::apis::STRIPE_KEY;
    let out = dir.path().join("charges.toml");
    let mut cmd = offline();
    cmd.env("AQUEDUCT_SOURCE__AUTH__TOKEN", key).args([
        "init",
        "charges",
        "--source",
        source.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let run1 = run(&mut cmd).await;
    assert_eq!(run1.code, Some(0), "{run1:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains(key) && !run1.stderr.contains(key), "{text}");
    let spec = spec_at(&out);
    assert_eq!(spec["source"]["auth"]["type"].as_str(), Some("bearer"));
    assert_eq!(spec["source"]["records"].as_str(), Some(".data[]"));
    let paging = spec["source"]["pagination"].as_table().unwrap();
    assert_eq!(paging["mode"].as_str(), Some("cursor"));
    assert_eq!(paging["token"].as_str(), Some(".data[-1].id"));
    assert_eq!(paging["stop"].as_str(), Some(".has_more | not"));
    assert_eq!(paging["query"].as_str(), Some("starting_after"));
    assert_eq!(partition_key(&spec), ["id"]);
    let mut cmd = offline();
    cmd.env("AQUEDUCT_SOURCE__AUTH__TOKEN", key)
        .arg("check")
        .arg(&out);
    let checked = run(&mut cmd).await;
    assert_eq!(checked.code, Some(0), "{checked:?}");

    // Written inline, the key still works for the one request but stays out of the spec.
    let inline = dir.path().join("inline.toml");
    std::fs::write(
        &inline,
        std::fs::read_to_string(&source).unwrap().replace(
            "{ type = \"bearer\" }",
            &format!("{{ type = \"bearer\", token = \"{key}\" }}"),
        ),
    )
    .unwrap();
    let out2 = dir.path().join("charges2.toml");
    let run2 = init(&[
        "charges",
        "--source",
        inline.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run2.code, Some(0), "{run2:?}");
    let text = std::fs::read_to_string(&out2).unwrap();
    assert!(!text.contains(key), "{text}");
    assert!(
        text.contains("source.auth.token was written inline"),
        "{text}"
    );

    // A header marked secret is not copied either, nor printed when the spec goes to stdout.
    let header = dir.path().join("header.toml");
    std::fs::write(
        &header,
        std::fs::read_to_string(&source).unwrap().replace(
            "auth = { type = \"bearer\" }",
            &format!(
                "headers = {{ Authorization = {{ value = \"Bearer {key}\", secret = true }}, Accept = \"application/json\" }}"
            ),
        ),
    )
    .unwrap();
    let run3 = init(&["charges", "--source", header.to_str().unwrap()]).await;
    assert_eq!(run3.code, Some(0), "{run3:?}");
    assert!(
        !run3.stdout.contains(key) && !run3.stderr.contains(key),
        "{run3:?}"
    );
    assert!(
        run3.stdout
            .contains("source.headers.Authorization was a secret written inline"),
        "{}",
        run3.stdout
    );
    let written: toml::Table = run3.stdout.parse().unwrap();
    assert_eq!(
        written["source"]["headers"]["Accept"].as_str(),
        Some("application/json")
    );
    assert!(written["source"]["headers"].get("Authorization").is_none());
}

#[tokio::test]
async fn an_existing_file_is_never_overwritten() {
    let api = Api::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("users.toml");
    std::fs::write(&out, "name = \"mine\"\n").unwrap();
    let run = init(&[
        "users",
        "--url",
        &api.url("results=3"),
        "-o",
        out.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains(&format!("{} exists", out.display())),
        "{run:?}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"name = \"mine\"\n");
    assert_eq!(api.requests(), 0, "refused before asking the API");
}

#[tokio::test]
async fn garbage_in_gets_an_exit_code_and_a_message_naming_it() {
    let api = Api::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let cases: Vec<(Vec<String>, i32, String)> = vec![
        (
            vec!["--response".into(), file("html.json", "<html>oops</html>")],
            2,
            "html.json: document 1 is not JSON".into(),
        ),
        (
            vec![
                "--response".into(),
                file("flat.json", r#"{"count": 3, "ids": [1, 2, 3]}"#),
            ],
            2,
            "no array of objects in the response from".into(),
        ),
        (
            vec!["--url".into(), api.url("fault=500&fault_times=5")],
            1,
            "HTTP 500".into(),
        ),
        (
            vec!["--url".into(), api.url("fault=garbage&fault_times=5")],
            1,
            "not JSON".into(),
        ),
        (
            vec!["--url".into(), "http://127.0.0.1:1/api/".into()],
            1,
            "http://127.0.0.1:1/api/".into(),
        ),
        (
            vec![
                "--source".into(),
                file("nosource.toml", "url = \"http://x\"\n"),
            ],
            2,
            "has no [source] table".into(),
        ),
    ];
    for (args, code, message) in cases {
        let mut all = vec!["p".to_owned()];
        all.extend(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = init(&all).await;
        assert_eq!(out.code, Some(code), "{all:?}: {out:?}");
        assert!(out.stderr.contains(&message), "{all:?}: {out:?}");
        assert!(!out.stderr.contains("panicked"), "{out:?}");
    }
    let bad_name = init(&["a b", "--url", &api.url("")]).await;
    assert_eq!(bad_name.code, Some(2), "{bad_name:?}");
    // One of --url, --response and --source, and only one.
    assert_eq!(init(&["p"]).await.code, Some(2));
    assert_eq!(
        init(&["p", "--url", "http://x", "--response", "f"])
            .await
            .code,
        Some(2)
    );
}
