//! The example specs of `pipelines/examples/`, run as written against stand-ins of their APIs
//! (only the API's address, Kafka's and Cassandra's, and the pipeline's names overridden by
//! environment): every record exactly once in Cassandra, and a second run resumes from the
//! saved cursors.

use std::collections::BTreeSet;

use crate::support::*;

/// `aqueduct` on an example spec, with its own pipeline name, topic and keyspace.
fn example(spec: &str, api: &str, name: &str, keyspace: &str) -> tokio::process::Command {
    let mut cmd = aqueduct();
    cmd.args(["run", "--once", spec])
        .env("AQUEDUCT_SOURCE__URL", api)
        .env("AQUEDUCT_NAME", name)
        .env("AQUEDUCT_KAFKA__TOPIC", name)
        .env("AQUEDUCT_KAFKA__BOOTSTRAP_SERVERS", kafka_addr())
        .env(
            "AQUEDUCT_CASSANDRA__CONTACT_POINTS",
            format!("[\"{}\"]", cassandra_addr()),
        )
        .env("AQUEDUCT_CASSANDRA__KEYSPACE", keyspace);
    cmd
}

/// The rows of `cql`'s two text-ish columns.
async fn pairs<A, B>(cql: String) -> BTreeSet<(A, B)>
where
    A: Ord + for<'f> scylla::deserialize::value::DeserializeValue<'f, 'f>,
    B: Ord + for<'f> scylla::deserialize::value::DeserializeValue<'f, 'f>,
{
    let rows = session()
        .await
        .query_unpaged(cql, ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    rows.rows::<(A, B)>().unwrap().map(Result::unwrap).collect()
}

/// github-issues.toml: three repositories (a list), their issues by `Link` pages of two under
/// a rate limit of four requests a 2 s window (kept by the headers, or a refusal waited out),
/// one row per issue; the second run asks each repository `since` its own last update.
#[tokio::test(flavor = "multi_thread")]
async fn github_issues_of_a_list_of_repositories() {
    if !services_up("example_github_issues") {
        return;
    }
    let api = Api::start().await;
    let (name, keyspace) = (unique("gh"), unique("ks"));
    let url = format!(
        "http://{}/github/repos/{{{{ $parent.full_name }}}}/issues?issues=5&per_page=2&state=all&sort=updated&direction=asc&limit=4&window_s=2",
        api.addr
    );
    let spec = "pipelines/examples/github-issues.toml";
    let out = run(&mut example(spec, &url, &name, &keyspace)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let repos = [
        "rust-lang/rust",
        "scylladb/scylla-rust-driver",
        "tokio-rs/tokio",
    ];
    let want: BTreeSet<(String, i32)> = repos
        .iter()
        .flat_map(|r| (1..=5).map(move |n| (r.to_string(), n)))
        .collect();
    let cql = format!("SELECT repository, number FROM {keyspace}.issues");
    assert_eq!(pairs::<String, i32>(cql.clone()).await, want);
    // 3 pages of each repository's 5 issues, and any refused for the limit asked again.
    let refused = api
        .stats
        .apis
        .over_limit
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(api.requests(), 9 + refused, "{out:?}");

    let seen = api.stats.uris.lock().unwrap().len();
    let out = run(&mut example(spec, &url, &name, &keyspace)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let uris = api.stats.uris.lock().unwrap()[seen..].to_vec();
    let refused_again = api
        .stats
        .apis
        .over_limit
        .load(std::sync::atomic::Ordering::SeqCst)
        - refused;
    assert_eq!(
        uris.len() as u64,
        3 + refused_again,
        "one page each, from its cursor: {uris:?}"
    );
    assert!(
        uris.iter()
            .all(|u| u.contains("&since=2026-11-01T00%3A04%3A00Z")),
        "{uris:?}"
    );
    assert_eq!(pairs::<String, i32>(cql).await, want);
}

/// linear-issues.toml: a GraphQL connection of 250 issues by pages of 100, the page token in
/// the body's variables, the key in the Authorization header; one row per issue.
#[tokio::test(flavor = "multi_thread")]
async fn linear_issues_by_graphql_pages() {
    if !services_up("example_linear_issues") {
        return;
    }
    let api = Api::start().await;
    let (name, keyspace) = (unique("linear"), unique("ks"));
    let url = format!(
        "http://{}/graphql/?seed=lin&total=250&key=lin_api_K3y",
        api.addr
    );
    let out = run(example(
        "pipelines/examples/linear-issues.toml",
        &url,
        &name,
        &keyspace,
    )
    .env("AQUEDUCT_SOURCE__AUTH__KEY", "lin_api_K3y"))
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(api.requests(), 3, "{out:?}");
    assert!(!out.stderr.contains("lin_api_K3y"), "{out:?}");
    let got =
        pairs::<String, String>(format!("SELECT identifier, title FROM {keyspace}.issues")).await;
    let want: BTreeSet<(String, String)> = (1..=250)
        .map(|i| (format!("ENG-{i}"), format!("Issue {i}")))
        .collect();
    assert_eq!(got, want);
}

/// slack-messages.toml: three channels listed by pages of two, each channel's five messages
/// by pages of two (with Slack's edges: the first page one short though more follow, and a
/// cursor on the page ending the messages, leading to an empty last page), a rate-limited
/// answer waited out by the spec's rule; one row per message, the bot token never shown. The second run asks each channel only for what came after its
/// own latest message.
#[tokio::test(flavor = "multi_thread")]
async fn slack_messages_of_every_channel() {
    if !services_up("example_slack_messages") {
        return;
    }
    let api = Api::start().await;
    let (name, keyspace) = (unique("slack"), unique("ks"));
    let history = format!(
        "http://{}/slack/api/conversations.history?limit=2&messages=5&limited=1&short=1&empty_last=1",
        api.addr
    );
    let channels = format!(
        "http://{}/slack/api/conversations.list?types=public_channel&limit=2&channels=3",
        api.addr
    );
    let token = randomuser_standin::apis::SLACK_TOKEN;
    let slack = || {
        let mut cmd = example(
            "pipelines/examples/slack-messages.toml",
            &history,
            &name,
            &keyspace,
        );
        cmd.env("AQUEDUCT_SOURCE__PARENT__URL", &channels)
            .env("AQUEDUCT_SOURCE__AUTH__TOKEN", token);
        cmd
    };
    let out = run(&mut slack()).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!out.stderr.contains(token), "{out:?}");
    // 2 pages of channels, then 4 pages of each channel's messages (1, 2, 2, none), one of
    // them twice.
    assert_eq!(api.requests(), 2 + 3 * 4 + 1, "{out:?}");
    assert!(out.stderr.contains("source.on_response.0"), "{out:?}");
    let want: BTreeSet<(String, String)> = (0..3)
        .flat_map(|c| {
            (0..5).map(move |i| (format!("C0{c:08}"), randomuser_standin::apis::slack_ts(i)))
        })
        .collect();
    let cql = format!("SELECT channel, ts FROM {keyspace}.messages");
    assert_eq!(pairs::<String, String>(cql.clone()).await, want);

    let out = run(&mut slack()).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let uris = api.stats.uris.lock().unwrap()[15..].to_vec();
    let latest = randomuser_standin::apis::slack_ts(4);
    let history: Vec<&String> = uris.iter().filter(|u| u.contains("history")).collect();
    assert_eq!(history.len(), 3, "{uris:?}");
    assert!(
        history
            .iter()
            .all(|u| u.contains(&format!("&oldest={latest}"))),
        "{uris:?}"
    );
    assert_eq!(pairs::<String, String>(cql).await, want);
}

/// The `name` parameter of a request the stand-in saw (`/path?query`).
fn param(uri: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(&format!("http://standin{uri}"))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// stripe-charges.toml: a day a window from 2026-12-01 up to now less the lag, each window's
/// four charges by pages of three (`starting_after`, the window's bounds kept on every page);
/// every charge of the windows done exactly once. The second run starts where the first ended.
#[tokio::test(flavor = "multi_thread")]
async fn stripe_charges_a_day_at_a_time() {
    if !services_up("example_stripe_charges") {
        return;
    }
    let api = Api::start().await;
    let (name, keyspace) = (unique("stripe"), unique("ks"));
    let url = format!("http://{}/stripe/v1/charges?limit=3&per_day=4", api.addr);
    let stripe = || {
        let mut cmd = example(
            "pipelines/examples/stripe-charges.toml",
            &url,
            &name,
            &keyspace,
        );
        cmd.env(
            "AQUEDUCT_SOURCE__AUTH__TOKEN",
            randomuser_standin::apis::STRIPE_KEY,
        )
        .env("AQUEDUCT_SOURCE__WINDOW__START", "2026-12-01T00:00:00Z");
        cmd
    };
    let out = run(&mut stripe()).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let uris = api.stats.uris.lock().unwrap().clone();
    let bound = |uri: &String, k: &str| {
        param(uri, k)
            .unwrap_or_else(|| panic!("no {k} in {uri}"))
            .parse::<i64>()
            .unwrap()
    };
    let start = bound(&uris[0], "created[gte]");
    assert_eq!(start, 1_796_083_200, "2026-12-01T00:00:00Z");
    let end = uris.iter().map(|u| bound(u, "created[lt]")).max().unwrap();
    assert!(
        uris.iter().any(|u| param(u, "starting_after").is_some()),
        "{uris:?}"
    );
    let want: BTreeSet<String> = randomuser_standin::apis::stripe_charges_between(start, end, 4)
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(want.len() >= 24, "six days at least: {}", want.len());
    let cql = format!("SELECT id, currency FROM {keyspace}.charges");
    let ids = |rows: BTreeSet<(String, String)>| -> BTreeSet<String> {
        rows.into_iter().map(|(id, _)| id).collect()
    };
    assert_eq!(ids(pairs::<String, String>(cql.clone()).await), want);

    let seen = uris.len();
    let out = run(&mut stripe()).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let uris = api.stats.uris.lock().unwrap()[seen..].to_vec();
    if let Some(first) = uris.first() {
        assert_eq!(bound(first, "created[gte]"), end, "{uris:?}");
    }
    assert!(ids(pairs::<String, String>(cql).await).is_superset(&want));
}

/// notion-database.toml: seven pages of a database by pages of three, the token at the body's
/// `/start_cursor`, the filter from the cursor; one row per page. The second run asks only for
/// pages edited since the last one seen.
#[tokio::test(flavor = "multi_thread")]
async fn notion_database_pages_edited_since_the_last_poll() {
    if !services_up("example_notion_database") {
        return;
    }
    let api = Api::start().await;
    let (name, keyspace) = (unique("notion"), unique("ks"));
    let url = format!(
        "http://{}/notion/v1/databases/668d797c-76fa-4934-9b05-ad288df2d136/query?pages=7",
        api.addr
    );
    let notion = || {
        let mut cmd = example(
            "pipelines/examples/notion-database.toml",
            &url,
            &name,
            &keyspace,
        );
        cmd.env(
            "AQUEDUCT_SOURCE__AUTH__TOKEN",
            randomuser_standin::apis::NOTION_TOKEN,
        )
        .env("AQUEDUCT_SOURCE__BODY__PAGE_SIZE", "3");
        cmd
    };
    let out = run(&mut notion()).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(api.requests(), 3, "{out:?}");
    let cql = format!("SELECT title, status FROM {keyspace}.pages");
    let titles = |rows: BTreeSet<(String, String)>| -> BTreeSet<String> {
        rows.into_iter().map(|(t, _)| t).collect()
    };
    let want: BTreeSet<String> = (1..=7).map(|i| format!("Task {i}")).collect();
    assert_eq!(titles(pairs::<String, String>(cql.clone()).await), want);

    let out = run(&mut notion()).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    // One request, from the last edit seen (inclusive): the last page alone, again.
    assert_eq!(api.requests(), 4, "{out:?}");
    assert_eq!(titles(pairs::<String, String>(cql).await), want);
}

/// Every example passes `aqueduct check` offline, run as its opening comment says (each
/// `AQUEDUCT_...=` of the command there set, a credential read from the shell given a
/// placeholder): the command each example documents is one that works.
#[tokio::test]
async fn every_example_checks_as_its_comment_runs_it() {
    let dir = repo().join("pipelines/examples");
    let mut specs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    specs.sort();
    assert!(specs.len() >= 5, "{specs:?}");
    for spec in specs {
        let name = spec.file_name().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(&spec).unwrap();
        // The comment's lines up to the one running this spec.
        let run_line = format!("aqueduct run pipelines/examples/{name}");
        let head: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
        let at = head
            .iter()
            .position(|l| l.contains(&run_line))
            .unwrap_or_else(|| panic!("{name}: its opening comment gives no `{run_line}`"));
        let mut cmd = aqueduct();
        cmd.arg("check").arg(&spec);
        let command = head[..=at].iter().rev().take_while(|l| l.trim_end() != "#");
        for word in command.flat_map(|l| l.split_whitespace()) {
            if let Some((key, value)) = word.split_once('=')
                && key.starts_with("AQUEDUCT_")
            {
                let value = match value.trim_matches('"') {
                    shell if shell.starts_with('$') => "placeholder",
                    value => value,
                };
                cmd.env(key, value);
            }
        }
        let out = run(&mut cmd).await;
        assert_eq!(out.code, Some(0), "{name}: {out:?}");
        assert!(out.stdout.contains(": ok"), "{name}: {out:?}");
    }
}
