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

/// github-issues.toml: three repositories (a list), their issues by `Link` pages of two, one
/// row per issue; the second run asks each repository `since` its own last update.
#[tokio::test(flavor = "multi_thread")]
async fn github_issues_of_a_list_of_repositories() {
    if !services_up("example_github_issues") {
        return;
    }
    let api = Api::start().await;
    let (name, keyspace) = (unique("gh"), unique("ks"));
    let url = format!(
        "http://{}/github/repos/{{{{ $parent.full_name }}}}/issues?issues=5&per_page=2&state=all&sort=updated&direction=asc",
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
    // 3 pages of each repository's 5 issues.
    assert_eq!(api.requests(), 9, "{out:?}");

    let out = run(&mut example(spec, &url, &name, &keyspace)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let uris = api.stats.uris.lock().unwrap()[9..].to_vec();
    assert_eq!(uris.len(), 3, "one page each, from its cursor: {uris:?}");
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
