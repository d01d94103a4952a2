//! The source against stand-ins of real APIs' authentication and limits (`standin::apis`):
//! OAuth2 with expiring access tokens and rotating refresh tokens, an API key in the query
//! string, Slack's `ok: false`, GitHub's rate limit headers, a request budget; rows exact in
//! Cassandra, and no secret in any output.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use randomuser_standin::apis::{self, API_KEY, CLIENT_ID, CLIENT_SECRET};

use crate::support::*;

/// A pipeline from one of the stand-in's routes into a table of user ids and emails.
struct Source {
    api: Api,
    topic: String,
    keyspace: String,
}

impl Source {
    async fn start() -> Source {
        Source {
            api: Api::start().await,
            topic: unique("src"),
            keyspace: unique("ks"),
        }
    }

    fn url(&self, route: &str, query: &str) -> String {
        format!("http://{}/{route}?{query}", self.api.addr)
    }

    /// A spec polling `url`, with `source` lines in `[source]` and `sections` after it all
    /// (`[source.auth]` and the like). Written into `dir`, where `*_file`s are found.
    fn spec(&self, dir: &Path, url: &str, source: &str, sections: &str) -> std::path::PathBuf {
        // The stand-ins serve randomuser's shape unless `source` says otherwise.
        let records = if source.contains("records =") {
            ""
        } else {
            "records = \".results[]\""
        };
        let text = format!(
            r#"
name = "{topic}"
[source]
url = "{url}"
schedule = {{ every = "1h" }}
{records}
retry = {{ attempts = 3, initial_backoff = "10ms", max_backoff = "100ms" }}
{source}
[validate]
schema = {{ type = "object", required = ["login"], properties = {{ login = {{ type = "object", required = ["uuid"] }} }} }}
[kafka]
bootstrap_servers = "{kafka}"
topic = "{topic}"
key = ".login.uuid"
[cassandra]
contact_points = ["{cassandra}"]
keyspace = "{keyspace}"
table = "t"
partition_key = ["id"]
columns.id = {{ type = "uuid", jq = ".login.uuid" }}
columns.email = {{ type = "text", jq = ".email" }}
{sections}
"#,
            kafka = kafka_addr(),
            cassandra = cassandra_addr(),
            topic = self.topic,
            keyspace = self.keyspace,
        );
        let path = dir.join("spec.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The ids in the table.
    async fn ids(&self) -> BTreeSet<String> {
        let rows = session()
            .await
            .query_unpaged(format!("SELECT id FROM {}.t", self.keyspace), ())
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        rows.rows::<(uuid::Uuid,)>()
            .unwrap()
            .map(|r| r.unwrap().0.to_string())
            .collect()
    }
}

/// The ids of the stand-in's users of `seed` on pages `1..=pages` of `per_page`.
fn users(seed: &str, pages: u64, per_page: usize, skip_invalid: usize) -> BTreeSet<String> {
    (1..=pages)
        .flat_map(|page| {
            (skip_invalid..per_page).map(move |i| {
                randomuser_standin::user(seed, page, i, false)["login"]["uuid"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
        })
        .collect()
}

/// Fails if any of `secrets` is in `text`.
fn no_secret(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{what} shows the secret {secret:?}:\n{text}"
        );
    }
}

fn pages(n: u32) -> String {
    format!("pagination = {{ mode = \"page\", param = \"page\", max_pages = {n} }}")
}

/// Client credentials, by Basic header and by form fields: seven pages on tokens that
/// each serve three requests; every expired token is renewed once (a 401, a new token, the
/// same request again), the rows are exact, and at trace level neither the client secret nor
/// any access token the endpoint issued shows in the log or the dead letters.
#[tokio::test(flavor = "multi_thread")]
async fn oauth2_client_credentials_renews_expired_tokens_and_shows_no_secret() {
    if !services_up("oauth2_client_credentials") {
        return;
    }
    for client_auth in ["basic", "body"] {
        let s = Source::start().await;
        let dir = tempfile::tempdir().unwrap();
        let spec = s.spec(
            dir.path(),
            &s.url("oauth/api/", "seed=oauth&results=5&invalid=1"),
            &pages(7),
            &format!(
                r#"[source.auth]
type = "oauth2"
grant = "client_credentials"
token_url = "http://{}/oauth/token"
client_id = "{CLIENT_ID}"
client_auth = "{client_auth}"
scopes = ["users:read"]"#,
                s.api.addr
            ),
        );
        let out = run(aqueduct()
            .args(["run", "--once"])
            .arg(&spec)
            .env("AQUEDUCT_LOG", "trace")
            .env("AQUEDUCT_SOURCE__AUTH__CLIENT_SECRET", CLIENT_SECRET))
        .await;
        assert_eq!(out.code, Some(0), "{client_auth}: {out:?}");
        let apis = &s.api.stats.apis;
        assert_eq!(
            apis.token_requests.load(Ordering::SeqCst),
            3,
            "{client_auth}: 7 requests on tokens of 3 uses"
        );
        assert_eq!(apis.expired.load(Ordering::SeqCst), 2, "{client_auth}");
        assert_eq!(s.ids().await, users("oauth", 7, 5, 1), "{client_auth}");
        let mut secrets = vec![CLIENT_SECRET.to_owned()];
        secrets.extend(apis.issued.lock().unwrap().iter().cloned());
        assert_eq!(secrets.len(), 4);
        no_secret("the trace-level log", &format!("{out:?}"), &secrets);
        let dead = topic_messages(&format!("{}_dlq", s.topic));
        assert_eq!(dead.len(), 7, "one invalid user a page");
        no_secret("the dead letters", &format!("{dead:?}"), &secrets);
    }
}

/// A refresh token the endpoint rotates is saved in its file at once; the next run starts
/// from the new one (the old one is dead: with it, the run would be refused).
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_refresh_token_is_saved_and_the_next_run_uses_it() {
    if !services_up("a_rotated_refresh_token_is_saved") {
        return;
    }
    let s = Source::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("refresh-token");
    std::fs::write(&token_file, format!("{}\n", apis::FIRST_REFRESH_TOKEN)).unwrap();
    std::fs::write(dir.path().join("client-secret"), CLIENT_SECRET).unwrap();
    let spec = s.spec(
        dir.path(),
        &s.url("oauth/api/", "seed=rotate&results=4"),
        &pages(2),
        &format!(
            r#"[source.auth]
type = "oauth2"
grant = "refresh_token"
token_url = "http://{}/oauth/token"
client_id = "{CLIENT_ID}"
client_secret_file = "client-secret"
refresh_token_file = "refresh-token""#,
            s.api.addr
        ),
    );
    let apis = &s.api.stats.apis;
    let mut used = vec![apis::FIRST_REFRESH_TOKEN.to_owned()];
    for round in 1..=2 {
        let out = run(aqueduct()
            .args(["run", "--once"])
            .arg(&spec)
            .env("AQUEDUCT_LOG", "debug"))
        .await;
        assert_eq!(out.code, Some(0), "run {round}: {out:?}");
        let on_disk = std::fs::read_to_string(&token_file).unwrap();
        assert_eq!(on_disk.trim_end(), apis.refresh_token(), "run {round}");
        assert!(
            !used.contains(&apis.refresh_token()),
            "run {round}: rotated"
        );
        used.push(apis.refresh_token());
        assert!(
            out.stderr.contains("rotated the refresh token; saved"),
            "{out:?}"
        );
        let mut secrets = used.clone();
        secrets.push(CLIENT_SECRET.to_owned());
        secrets.extend(apis.issued.lock().unwrap().iter().cloned());
        no_secret("the log", &format!("{out:?}"), &secrets);
    }
    assert_eq!(apis.token_requests.load(Ordering::SeqCst), 2);
    assert_eq!(s.ids().await, users("rotate", 2, 4, 0));
}

/// A token endpoint that refuses the credentials stops even a live run, at once, with the
/// endpoint's error and exit 1: one token request, no request to the API, no retry storm.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_endpoint_that_refuses_the_credentials_stops_the_run() {
    if !services_up("a_token_endpoint_that_refuses") {
        return;
    }
    let s = Source::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = s.spec(
        dir.path(),
        &s.url("oauth/api/", "seed=refused&results=3"),
        "",
        &format!(
            r#"[source.auth]
type = "oauth2"
grant = "client_credentials"
token_url = "http://{}/oauth/token"
client_id = "{CLIENT_ID}"
client_secret = "not-the-secret-0d9a""#,
            s.api.addr
        ),
    );
    let out = run(aqueduct().arg("run").arg(&spec)).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "the token endpoint http://{}/oauth/token refused the credentials: invalid_client",
            s.api.addr
        )),
        "{out:?}"
    );
    no_secret(
        "the log",
        &format!("{out:?}"),
        &["not-the-secret-0d9a".to_owned()],
    );
    assert_eq!(s.api.stats.apis.token_requests.load(Ordering::SeqCst), 1);
    assert_eq!(s.api.requests(), 0);
}

/// A bearer token read from a file authenticates; an API key carried in the query string
/// (NASA's `api_key`) is sent, and shown as `api_key=REDACTED` in the retry warning, the dead
/// letters' origin and `preview`, never as itself.
#[tokio::test(flavor = "multi_thread")]
async fn keys_in_the_query_or_a_file_are_sent_and_never_shown() {
    if !services_up("keys_in_the_query_or_a_file") {
        return;
    }
    let s = Source::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = s.spec(
        dir.path(),
        &s.url("keyed/api/", "seed=keyed&results=6&invalid=2&fault=500"),
        "",
        "[source.auth]\ntype = \"api_key\"\nquery = \"api_key\"\n",
    );
    let secrets = [API_KEY.to_owned()];
    let out = run(aqueduct()
        .args(["run", "--once"])
        .arg(&spec)
        .env("AQUEDUCT_LOG", "trace")
        .env("AQUEDUCT_SOURCE__AUTH__KEY", API_KEY))
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("request failed; retrying") && out.stderr.contains("api_key=REDACTED"),
        "{out:?}"
    );
    no_secret("the trace-level log", &format!("{out:?}"), &secrets);
    assert_eq!(s.ids().await, users("keyed", 1, 6, 2));
    let dead = topic_messages(&format!("{}_dlq", s.topic));
    assert_eq!(dead.len(), 2, "{dead:?}");
    for (_, letter) in &dead {
        let url = letter["origin"]["url"].as_str().unwrap();
        assert!(url.contains("api_key=REDACTED"), "{letter}");
    }
    no_secret("the dead letters", &format!("{dead:?}"), &secrets);
    let preview = run(aqueduct()
        .args(["preview", "--format", "json"])
        .arg(&spec)
        .env("AQUEDUCT_SOURCE__AUTH__KEY", API_KEY))
    .await;
    assert_eq!(preview.code, Some(0), "{preview:?}");
    assert!(preview.stdout.contains("api_key=REDACTED"), "{preview:?}");
    no_secret("preview", &format!("{preview:?}"), &secrets);

    // Pages by the API's own links, which carry the key (NASA's do).
    let s2 = Source::start().await;
    let spec2 = s2.spec(
        dir.path(),
        &s2.url("keyed/api/", "seed=links&results=3"),
        "pagination = { mode = \"next_link\", next = \".links.next\", max_pages = 3 }",
        "[source.auth]\ntype = \"api_key\"\nquery = \"api_key\"\n",
    );
    let out = run(aqueduct()
        .args(["run", "--once"])
        .arg(&spec2)
        .env("AQUEDUCT_LOG", "debug")
        .env("AQUEDUCT_SOURCE__AUTH__KEY", API_KEY))
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("seed=links&page=3&api_key=REDACTED"),
        "the third page's URL, from the second's link: {out:?}"
    );
    no_secret("the debug log", &format!("{out:?}"), &secrets);
    assert_eq!(s2.ids().await, users("links", 3, 3, 0));

    // A wrong key: the API's refusal, and still not the key.
    let wrong = run(aqueduct()
        .args(["run", "--once"])
        .arg(&spec)
        .env("AQUEDUCT_SOURCE__AUTH__KEY", "key-WRONG-77"))
    .await;
    assert_eq!(wrong.code, Some(1), "{wrong:?}");
    assert!(wrong.stderr.contains("API_KEY_INVALID"), "{wrong:?}");
    no_secret(
        "the log",
        &format!("{wrong:?}"),
        &["key-WRONG-77".to_owned()],
    );

    // A bearer token from a file, on the OAuth2 API (a token the endpoint issued).
    let s = Source::start().await;
    let token: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{}/oauth/token", s.api.addr))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    std::fs::write(dir.path().join("token"), &token).unwrap();
    let spec = s.spec(
        dir.path(),
        &s.url("oauth/api/", "seed=bearer&results=3"),
        &pages(2),
        "[source.auth]\ntype = \"bearer\"\ntoken_file = \"token\"\n",
    );
    let out = run(aqueduct()
        .args(["run", "--once"])
        .arg(&spec)
        .env("AQUEDUCT_LOG", "trace"))
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(s.ids().await, users("bearer", 2, 3, 0));
    no_secret("the trace-level log", &format!("{out:?}"), &[token]);
}

/// Slack's HTTP 200 with `{"ok": false, "error": "ratelimited"}`: a rule makes it a rate
/// limit, waited out per `Retry-After` and not counted as an attempt (one attempt allowed).
#[tokio::test(flavor = "multi_thread")]
async fn a_200_that_says_ratelimited_is_waited_out_by_a_rule() {
    if !services_up("a_200_that_says_ratelimited") {
        return;
    }
    let s = Source::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = s.spec(
        dir.path(),
        &s.url("slack/api/", "seed=slack&results=5&limited=2"),
        "",
        r#"[[source.on_response]]
jq = '.ok == false and .error == "ratelimited"'
action = "rate_limited"
wait_header = "Retry-After""#,
    );
    let out = run(aqueduct()
        .args(["run", "--once"])
        .arg(&spec)
        .env("AQUEDUCT_SOURCE__RETRY__ATTEMPTS", "1"))
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(s.api.requests(), 3);
    assert!(
        out.stderr.contains("rate limited; waiting")
            && out
                .stderr
                .contains("matched source.on_response.0, RateLimited")
            && out.stderr.contains("wait=1s"),
        "{out:?}"
    );
    assert_eq!(s.ids().await, users("slack", 1, 5, 0));
}

/// GitHub's rate limit (3 requests per 2 s window here), kept two ways: by reading
/// `X-RateLimit-Remaining`/`-Reset` and waiting before the limit (no request refused), or by
/// a rule that waits out a refused request until the reset. The rows are exact either way.
#[tokio::test(flavor = "multi_thread")]
async fn github_rate_limits_are_kept_before_or_waited_out_after() {
    if !services_up("github_rate_limits") {
        return;
    }
    let before = r#"[source.rate_limit]
remaining_header = "X-RateLimit-Remaining"
reset_header = "X-RateLimit-Reset""#;
    let after = r#"[[source.on_response]]
status = [403]
headers = { "X-RateLimit-Remaining" = "0" }
action = "rate_limited"
wait_header = "X-RateLimit-Reset"
wait_format = "epoch_s""#;
    for (how, sections) in [("before", before), ("after", after)] {
        let s = Source::start().await;
        let dir = tempfile::tempdir().unwrap();
        let spec = s.spec(
            dir.path(),
            &s.url("github/api/", "seed=gh&results=4&limit=3&window_s=2"),
            &pages(7),
            sections,
        );
        let out = run(aqueduct()
            .args(["run", "--once"])
            .arg(&spec)
            .env("AQUEDUCT_SOURCE__RETRY__ATTEMPTS", "1"))
        .await;
        assert_eq!(out.code, Some(0), "{how}: {out:?}");
        let refused = s.api.stats.apis.over_limit.load(Ordering::SeqCst);
        match how {
            "before" => assert_eq!(refused, 0, "{out:?}"),
            _ => assert!(refused >= 1, "{out:?}"),
        }
        assert_eq!(s.ids().await, users("gh", 7, 4, 0), "{how}");
    }
}

/// `requests = 4, per = "1s"`: no four requests within a second, and the wait is counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_budget_spaces_the_requests() {
    if !services_up("a_request_budget") {
        return;
    }
    let s = Source::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = s.spec(
        dir.path(),
        &s.url("api/", "seed=budget&results=2"),
        &pages(9),
        "[source.rate_limit]\nrequests = 4\nper = \"1s\"\n",
    );
    let port = free_port();
    let out = run(aqueduct()
        .args(["run", "--once"])
        .arg(&spec)
        .env("AQUEDUCT_METRICS__ADDRESS", format!("127.0.0.1:{port}")))
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let times = s.api.stats.times.lock().unwrap().clone();
    assert_eq!(times.len(), 9);
    for w in times.windows(5) {
        let span = w[4] - w[0];
        assert!(
            span >= Duration::from_millis(950),
            "5 requests within {span:?}, more than 4 a second"
        );
    }
    let waited: f64 = out
        .stderr
        .split("source_wait_s=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no source_wait_s in the summary: {out:?}"));
    assert!(waited >= 1.0, "8 waits of ~250 ms: {waited} s");
    assert_eq!(s.ids().await, users("budget", 9, 2, 0));
}

/// A 404 (a deleted parent) is ignored by a rule: the poll succeeds with no records from it,
/// and says so; without the rule, the 404 fails the run.
#[tokio::test(flavor = "multi_thread")]
async fn an_ignore_rule_skips_a_404_and_without_it_the_run_fails() {
    if !services_up("an_ignore_rule_skips_a_404") {
        return;
    }
    let s = Source::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = s.url("api/", "seed=gone&results=3&fault=404&fault_times=1");
    let spec = s.spec(
        dir.path(),
        &url,
        "",
        "[[source.on_response]]\nstatus = [404]\naction = \"ignore\"\n",
    );
    let out = run(aqueduct().args(["run", "--once"]).arg(&spec)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("response ignored by rule")
            && out.stderr.contains("rule=source.on_response.0"),
        "{out:?}"
    );
    assert!(s.ids().await.is_empty());
    // The fault is spent; the next poll gets the page.
    let out = run(aqueduct().args(["run", "--once"]).arg(&spec)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(s.ids().await, users("gone", 1, 3, 0));

    let s = Source::start().await;
    let spec = s.spec(
        dir.path(),
        &s.url("api/", "seed=gone&results=3&fault=404"),
        "",
        "",
    );
    let out = run(aqueduct().args(["run", "--once"]).arg(&spec)).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("HTTP 404 Not Found"), "{out:?}");
}

/// An API that redirects to another origin: with credentials at stake, the redirect is not
/// followed (reqwest would forward every header but `Authorization`), and the error says so.
#[tokio::test(flavor = "multi_thread")]
async fn credentials_do_not_follow_a_redirect_to_another_origin() {
    if !services_up("credentials_do_not_follow_a_redirect") {
        return;
    }
    let s = Source::start().await;
    let dir = tempfile::tempdir().unwrap();
    // localhost and 127.0.0.1 are two origins.
    let elsewhere = format!(
        "http://localhost:{}/api/?seed=moved&results=3",
        s.api.addr.port()
    );
    let url = format!(
        "http://{}/redirect/?to={}",
        s.api.addr,
        elsewhere.replace('&', "%26").replace('?', "%3F")
    );
    let spec = s.spec(
        dir.path(),
        &url,
        "",
        "[source.auth]\ntype = \"api_key\"\nheader = \"X-API-Key\"\nkey = \"k-4Zt8\"\n",
    );
    let out = run(aqueduct().args(["run", "--once"]).arg(&spec)).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("302 Found: a redirect to http://localhost:")
            && out.stderr.contains("not followed"),
        "{out:?}"
    );
    assert_eq!(s.api.requests(), 0, "nothing reached the other origin");

    // Without credentials, a redirect is followed as before.
    let spec = s.spec(dir.path(), &url, "", "");
    let out = run(aqueduct().args(["run", "--once"]).arg(&spec)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(s.ids().await, users("moved", 1, 3, 0));
}

/// GitHub's paging: the `Link` header's `rel="next"` (among prev, last and first, relative
/// here) is followed to the last page; every user exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn link_header_pages_are_followed_to_the_last() {
    if !services_up("link_header_pages") {
        return;
    }
    let s = Source::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = s.spec(
        dir.path(),
        &s.url("github/api/", "seed=linked&results=3&paged=4&limit=100"),
        "pagination = { mode = \"link_header\", max_pages = 10 }",
        "",
    );
    let out = run(aqueduct()
        .args(["run", "--once"])
        .arg(&spec)
        .env("AQUEDUCT_LOG", "debug"))
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(s.api.requests(), 4, "{out:?}");
    assert!(out.stderr.contains("page=4"), "{out:?}");
    assert_eq!(s.ids().await, users("linked", 4, 3, 0));
}

/// Slack's cursor paging: `response_metadata.next_cursor` goes into the `cursor` parameter of
/// the poll's first request (its other parameters kept), until it is empty.
#[tokio::test(flavor = "multi_thread")]
async fn cursor_pages_carry_the_token_until_it_is_empty() {
    if !services_up("cursor_pages") {
        return;
    }
    let s = Source::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = s.spec(
        dir.path(),
        &s.url("slack/api/", "seed=slackpages&results=4&paged=3"),
        "pagination = { mode = \"cursor\", token = \".response_metadata.next_cursor\", query = \"cursor\", max_pages = 10 }",
        "",
    );
    let out = run(aqueduct().args(["run", "--once"]).arg(&spec)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(s.api.requests(), 3, "{out:?}");
    let queries = s.api.stats.queries.lock().unwrap().clone();
    assert!(
        queries[1..]
            .iter()
            .all(|q| q.starts_with("seed=slackpages&results=4&paged=3&cursor=")),
        "{queries:?}"
    );
    assert_eq!(s.ids().await, users("slackpages", 3, 4, 0));
}

/// An API handing back the cursor it was asked with would be walked in a circle: the poll
/// stops there with an error naming the token, after two requests, and the run exits 1.
#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_page_token_ends_the_poll_with_an_error() {
    if !services_up("repeated_token") {
        return;
    }
    let s = Source::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = s.spec(
        dir.path(),
        &s.url(
            "slack/api/conversations.history",
            "channel=C000000001&messages=6&limit=2&repeat=2",
        ),
        &format!(
            r#"records = ".messages[]"
auth = {{ type = "bearer", token = "{}" }}
pagination = {{ mode = "cursor", token = ".response_metadata.next_cursor", query = "cursor", max_pages = 10 }}"#,
            randomuser_standin::apis::SLACK_TOKEN
        ),
        "",
    );
    let out = run(aqueduct().args(["run", "--once"]).arg(&spec)).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("again in this poll"), "{out:?}");
    assert!(
        out.stderr.contains(".response_metadata.next_cursor"),
        "{out:?}"
    );
    assert_eq!(s.api.requests(), 2, "{out:?}");
}

/// A GraphQL API (Linear's Relay connections): the page token goes into the POST body's
/// `variables.after` by a template (null on the first page), the query text with its braces
/// kept, until `pageInfo.hasNextPage` is false; every user exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn graphql_pages_carry_the_token_in_the_body_variables() {
    if !services_up("graphql_pages") {
        return;
    }
    let s = Source::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = s.spec(
        dir.path(),
        &s.url("graphql/", "seed=gql&total=10"),
        r#"method = "POST"
records = ".data.issues.nodes[]"
body = { query = "query Issues($first: Int, $after: String) { issues(first: $first, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }", variables = { first = 4, after = "{{ $token }}" } }
pagination = { mode = "cursor", token = ".data.issues.pageInfo.endCursor", stop = ".data.issues.pageInfo.hasNextPage | not", max_pages = 10 }"#,
        "",
    );
    let out = run(aqueduct().args(["run", "--once"]).arg(&spec)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    // 4 + 4 + 2, and no request past the last page.
    assert_eq!(s.api.requests(), 3, "{out:?}");
    assert_eq!(s.ids().await, users("gql", 1, 10, 0));
}

/// A keyset walk on `updated_at` alone stalls where more records share one value than a page
/// holds: the run says so (and counts it) instead of asking for the same page forever
/// unnoticed. A compound cursor `[updated_at, id]`, in two parameters by templates, walks
/// every record exactly once, one page per poll, each run resuming from the saved cursor.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_keyset_walk_is_reported_and_a_compound_cursor_walks_through() {
    if !services_up("keyset_cursor") {
        return;
    }
    let s = Source::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = s.url("keyset/api/", "seed=keys&total=12&ties=6&limit=4");
    let single = s.spec(
        dir.path(),
        &url,
        r#"records = ".items[]"
query = { updated_since = "{{ $cursor }}" }
pagination = { page_size = 4 }"#,
        "[source.cursor]\nvalue = '[$cursor, .items[].updated_at] | max'",
    );
    let mut stalled = None;
    for _ in 0..2 {
        stalled = Some(run(aqueduct().args(["run", "--once"]).arg(&single)).await);
    }
    let stalled = stalled.unwrap();
    assert_eq!(stalled.code, Some(0), "{stalled:?}");
    assert!(
        stalled
            .stderr
            .contains("a full page did not move the cursor"),
        "{stalled:?}"
    );
    // Users 5 and 6 share the first updated_at with 1..4 and are never reached.
    assert_eq!(s.ids().await.len(), 4);

    let s = Source::start().await;
    let url = s.url("keyset/api/", "seed=keys&total=12&ties=6&limit=4");
    let compound = s.spec(
        dir.path(),
        &url,
        r#"records = ".items[]"
query = { updated_since = "{{ $cursor[0] }}", after_id = "{{ $cursor[1] }}" }
pagination = { page_size = 4 }"#,
        "[source.cursor]\nvalue = '[$cursor, (.items[] | [.updated_at, .id])] | max'",
    );
    for _ in 0..4 {
        let out = run(aqueduct().args(["run", "--once"]).arg(&compound)).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(!out.stderr.contains("did not move the cursor"), "{out:?}");
    }
    let want: BTreeSet<String> = (1..=12)
        .map(|i| {
            randomuser_standin::user("keys", 1, i, false)["login"]["uuid"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(s.ids().await, want);
    let queries = s.api.stats.queries.lock().unwrap().clone();
    assert!(
        queries[1..].iter().all(|q| q.contains("&after_id=")),
        "{queries:?}"
    );
}

/// GitHub's issues of every repository of an organisation: the repositories are listed by
/// their own paged request, and the issues request runs for each (two at once) with the
/// repository in its path by a template, each issue carrying its repository's name. Each
/// repository keeps its own cursor: one whose requests fail is reported and the run fails,
/// while the others' issues land and their cursors are saved; the next run asks each
/// repository only for what is new since its own cursor, a new repository from the start, and
/// the failed one again. Every issue exactly once in Cassandra.
#[tokio::test(flavor = "multi_thread")]
async fn issues_of_every_repository_with_a_cursor_per_repository() {
    if !services_up("parent_child") {
        return;
    }
    let s = Source::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = |repos: u32, fail: &str| {
        s.spec(
            dir.path(),
            &s.url(
                "github/repos/{{ $parent.full_name }}/issues",
                &format!("seed=gh&issues=5&per_page=2&state=all&sort=updated&direction=asc{fail}"),
            ),
            r#"records = ".[]"
query = { since = "{{ $cursor }}" }
pagination = { mode = "link_header", max_pages = 10 }"#,
            &format!(
                r#"columns.repo = {{ type = "text", jq = ".repo" }}
[source.cursor]
value = '[$cursor, .[].updated_at] | max'
[source.parent]
url = "{}"
key = ".full_name"
include = {{ repo = ".full_name" }}
pagination = {{ mode = "link_header", max_pages = 10 }}
concurrency = 2"#,
                s.url(
                    "github/orgs/acme/repos",
                    &format!("repos={repos}&per_page=2")
                )
            ),
        )
    };
    let issues = |repos: std::ops::Range<u32>| -> BTreeSet<(String, String)> {
        repos
            .flat_map(|r| {
                (0..5).map(move |i| {
                    let name = format!("acme/repo{r}");
                    let user = randomuser_standin::user(&format!("gh/{name}"), 1, i, false);
                    (user["login"]["uuid"].as_str().unwrap().to_owned(), name)
                })
            })
            .collect()
    };
    let rows = || async {
        let rows = session()
            .await
            .query_unpaged(format!("SELECT id, repo FROM {}.t", s.keyspace), ())
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        rows.rows::<(uuid::Uuid, String)>()
            .unwrap()
            .map(|r| {
                let (id, repo) = r.unwrap();
                (id.to_string(), repo)
            })
            .collect::<BTreeSet<_>>()
    };

    let out = run(aqueduct()
        .args(["run", "--once"])
        .arg(spec(3, "&fail=acme/repo2")))
    .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("1 of 3 parents failed; the first, acme/repo2"),
        "{out:?}"
    );
    // (--once stops its loader when the poll fails, so the rows come with the next run; the
    // cursors the other parents saved show in its requests, below.)

    let before = s.api.stats.uris.lock().unwrap().len();
    let out = run(aqueduct().args(["run", "--once"]).arg(spec(4, ""))).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(rows().await, issues(0..4));
    let uris = s.api.stats.uris.lock().unwrap()[before..].to_vec();
    let first_of = |repo: &str| {
        uris.iter()
            .find(|u| u.starts_with(&format!("/github/repos/acme/{repo}/issues?")))
            .cloned()
            .unwrap_or_else(|| panic!("no request for {repo}: {uris:?}"))
    };
    // Each repository from its own cursor: the last issue's update, 4 minutes in.
    for repo in ["repo0", "repo1"] {
        assert!(
            first_of(repo).contains("&since=2026-11-01T00%3A04%3A00Z"),
            "{uris:?}"
        );
    }
    // The failed one and the new one from the start.
    for repo in ["repo2", "repo3"] {
        assert!(!first_of(repo).contains("since="), "{uris:?}");
    }
}

/// Slack's messages of every channel in time windows (`oldest`/`latest`), each channel keeping
/// its own window cursor: a run does at most two windows per channel; the next run goes on
/// from each channel's last window, and a channel new since starts at `window.start`. Every
/// message exactly once in Cassandra. `cursor --set` takes the map of parents' cursors.
#[tokio::test(flavor = "multi_thread")]
async fn messages_of_every_channel_in_windows_per_channel() {
    if !services_up("parent_windows") {
        return;
    }
    let s = Source::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = |channels: u32| {
        s.spec(
            dir.path(),
            &s.url("slack/api/conversations.history", "limit=50&messages=150"),
            &format!(
                r#"records = ".messages[]"
query = {{ channel = "{{{{ $parent.id }}}}", oldest = "{{{{ $start }}}}", latest = "{{{{ $end }}}}" }}
auth = {{ type = "bearer", token = "{}" }}
pagination = {{ mode = "cursor", token = ".response_metadata.next_cursor", query = "cursor", max_pages = 10 }}"#,
                randomuser_standin::apis::SLACK_TOKEN
            ),
            &format!(
                r#"[source.window]
size = "1m"
start = "2026-11-01T00:00:00Z"
format = "epoch_s"
max_windows = 2
[source.parent]
url = "{}"
records = ".channels[]"
pagination = {{ mode = "cursor", token = ".response_metadata.next_cursor", query = "cursor", max_pages = 10 }}"#,
                s.url(
                    "slack/api/conversations.list",
                    &format!("channels={channels}&limit=2")
                )
            ),
        )
    };
    let messages = |channel: u32, count: u64| -> BTreeSet<String> {
        (0..count)
            .map(|i| {
                randomuser_standin::user(&format!("C0{channel:08}"), 1, i as usize, false)["login"]
                    ["uuid"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };

    let out = run(aqueduct().args(["run", "--once"]).arg(spec(2))).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    // Two windows of a minute each: a message a second, so 120 of each channel's 150.
    let want: BTreeSet<String> = messages(0, 120)
        .into_iter()
        .chain(messages(1, 120))
        .collect();
    assert_eq!(s.ids().await, want);

    let before = s.api.stats.uris.lock().unwrap().len();
    let out = run(aqueduct().args(["run", "--once"]).arg(spec(3))).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let want: BTreeSet<String> = [messages(0, 150), messages(1, 150), messages(2, 120)]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(s.ids().await, want);
    let uris = s.api.stats.uris.lock().unwrap()[before..].to_vec();
    let first_of = |channel: &str| {
        uris.iter()
            .find(|u| u.contains(&format!("channel={channel}&")))
            .cloned()
            .unwrap_or_else(|| panic!("no request for {channel}: {uris:?}"))
    };
    // Each channel from its own last window's end; the new one from window.start.
    let at = |minutes: i64| {
        format!(
            "latest={}&oldest={}",
            1_793_491_200 + 60 * (minutes + 1),
            1_793_491_200 + 60 * minutes
        )
    };
    assert!(first_of("C000000000").contains(&at(2)), "{uris:?}");
    assert!(first_of("C000000001").contains(&at(2)), "{uris:?}");
    assert!(first_of("C000000002").contains(&at(0)), "{uris:?}");

    // A backfill runs each window for every parent, the live cursors untouched.
    let before = s.api.stats.uris.lock().unwrap().len();
    let out = run(aqueduct().arg("backfill").arg(spec(3)).args([
        "--from",
        "2026-11-01T00:00:00Z",
        "--to",
        "2026-11-01T00:01:00Z",
    ]))
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let uris = s.api.stats.uris.lock().unwrap()[before..].to_vec();
    for channel in ["C000000000", "C000000001", "C000000002"] {
        let of = format!("channel={channel}&{}", at(0));
        assert!(uris.iter().any(|u| u.contains(&of)), "{uris:?}");
    }
    assert_eq!(s.ids().await, want);

    // The map of parents' cursors, each a time; anything else is refused before Kafka.
    let out = run(aqueduct()
        .args(["cursor"])
        .arg(spec(3))
        .args(["--set", "5"]))
    .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("is not a JSON map"), "{out:?}");
    let out = run(aqueduct()
        .args(["cursor"])
        .arg(spec(3))
        .args(["--set", r#"{"C000000000": "2026-11-01T00:01:00Z"}"#]))
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout
            .contains(r#"{"C000000000":"2026-11-01T00:01:00Z"}"#),
        "{out:?}"
    );
}

/// The parents' cursors are one message on the cursor topic; when the map outgrows what the
/// topic takes in a message, the run stops saying so (not with Kafka's bare error).
#[tokio::test(flavor = "multi_thread")]
async fn a_parents_cursor_map_too_large_for_its_topic_is_said() {
    if !services_up("parents_cursor_too_large") {
        return;
    }
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let s = Source::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cursor_topic = unique("cursors");
    let admin: AdminClient<_> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_addr())
        .create()
        .unwrap();
    let small = NewTopic::new(&cursor_topic, 1, TopicReplication::Fixed(1))
        .set("max.message.bytes", "1000")
        .set("cleanup.policy", "compact");
    let created = admin
        .create_topics([&small], &AdminOptions::new())
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let channels: Vec<String> = (0..40)
        .map(|i| format!("{{ id = \"C0{i:08}-with-a-long-channel-name\" }}"))
        .collect();
    let spec = s.spec(
        dir.path(),
        &s.url("slack/api/conversations.history", "messages=3"),
        &format!(
            r#"records = ".messages[]"
query = {{ channel = "{{{{ $parent.id }}}}", oldest = "{{{{ $start }}}}", latest = "{{{{ $end }}}}" }}
auth = {{ type = "bearer", token = "{}" }}"#,
            randomuser_standin::apis::SLACK_TOKEN
        ),
        &format!(
            "[source.window]\nsize = \"1h\"\nstart = \"2026-11-01T00:00:00Z\"\nformat = \"epoch_s\"\nmax_windows = 1\n[source.parent]\nlist = [{}]",
            channels.join(", ")
        ),
    );
    let out = run(aqueduct()
        .args(["run", "--once"])
        .arg(&spec)
        .env("AQUEDUCT_KAFKA__CURSOR_TOPIC", &cursor_topic))
    .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "is more than the cursor topic {cursor_topic} takes in a message"
        )),
        "{out:?}"
    );
}

/// Several pipelines in one process (`aqueduct run A.toml B.toml`): each loads its own API
/// into its own table with its own Kafka clients. One whose API fails is reported by name and
/// the run exits 1, while the other's rows all land; when both are fine, both load and the
/// run exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn pipelines_in_one_process_each_load_and_fail_alone() {
    if !services_up("pipelines_in_one_process") {
        return;
    }
    let (a, b) = (Source::start().await, Source::start().await);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let spec_a = a.spec(dir_a.path(), &a.url("api/", "seed=one&results=5"), "", "");
    let failing = b.spec(
        dir_b.path(),
        &b.url("api/", "seed=two&results=4&fault=404&fault_times=1000"),
        "",
        "",
    );
    let out = run(aqueduct()
        .args(["run", "--once"])
        .arg(&spec_a)
        .arg(&failing))
    .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("pipelines failed: {}", b.topic)),
        "{out:?}"
    );
    assert_eq!(a.ids().await, users("one", 1, 5, 0));
    assert!(b.ids().await.is_empty());

    let fine = b.spec(dir_b.path(), &b.url("api/", "seed=two&results=4"), "", "");
    // A folder stands for the specs in it.
    std::fs::rename(&fine, dir_a.path().join("b.toml")).unwrap();
    let out = run(aqueduct().args(["run", "--once"]).arg(dir_a.path())).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr
            .contains("running pipelines in one process pipelines=2"),
        "{out:?}"
    );
    assert_eq!(b.ids().await, users("two", 1, 4, 0));
}

/// Two pipelines running live in one process serve one metrics endpoint, every family once
/// with both pipelines' samples, and ready when both are; one SIGTERM stops both cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn pipelines_in_one_process_share_a_metrics_endpoint_and_stop_together() {
    if !services_up("pipelines_in_one_process_live") {
        return;
    }
    let (a, b) = (Source::start().await, Source::start().await);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let port = free_port();
    let spec_a = a.spec(
        dir_a.path(),
        &a.url("api/", "seed=live1&results=5"),
        "",
        &format!("[metrics]\naddress = \"127.0.0.1:{port}\""),
    );
    let spec_b = b.spec(dir_b.path(), &b.url("api/", "seed=live2&results=4"), "", "");
    let mut running = Background::spawn(aqueduct().arg("run").arg(&spec_a).arg(&spec_b));
    // Their tables exist once both say they started.
    wait_until("both pipelines started", 60, || async {
        running.log().matches("pipeline started").count() == 2
    })
    .await;
    wait_until("both pipelines' rows are written", 60, || async {
        a.ids().await.len() == 5 && b.ids().await.len() == 4
    })
    .await;
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let written = |text: &str, name: &str, n: u32| {
        text.lines().any(|l| {
            l == format!("aqueduct_records_total{{pipeline=\"{name}\",stage=\"written\"}} {n}")
        })
    };
    let mut text = String::new();
    for _ in 0..50 {
        text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        if written(&text, &a.topic, 5) && written(&text, &b.topic, 4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        written(&text, &a.topic, 5) && written(&text, &b.topic, 4),
        "{text}"
    );
    assert_eq!(
        text.matches("# TYPE aqueduct_records counter").count(),
        1,
        "{text}"
    );
    assert_eq!(running.terminate().await, Some(0), "{}", running.log());
    assert_eq!(
        running.log().matches("summary").count(),
        2,
        "{}",
        running.log()
    );
}

/// A parent whose request cannot be built (here an `include` field failing on it) is that
/// parent's failure: counted and named, while the other parents' issues all land.
#[tokio::test(flavor = "multi_thread")]
async fn a_parent_whose_request_cannot_be_built_fails_alone() {
    if !services_up("parent_fails_alone") {
        return;
    }
    let s = Source::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = s.spec(
        dir.path(),
        &s.url(
            "github/repos/{{ $parent.full_name }}/issues",
            "seed=gh&issues=3&per_page=10",
        ),
        "records = \".[]\"",
        &format!(
            r#"[source.parent]
url = "{}"
key = ".full_name"
include = {{ shard = 'if .id == 1001 then error("no shard for \(.full_name)") else .id % 2 end' }}"#,
            s.url("github/orgs/acme/repos", "repos=3&per_page=10")
        ),
    );
    // Live: the loader goes on loading what the other parents produced.
    let mut running = Background::spawn(aqueduct().arg("run").arg(&spec));
    running
        .wait_for("1 of 3 parents failed; the first, acme/repo1", 60)
        .await;
    assert!(
        running.log().contains("no shard for acme/repo1"),
        "{}",
        running.log()
    );
    let want: BTreeSet<String> = [0, 2]
        .iter()
        .flat_map(|r| {
            (0..3).map(move |i| {
                randomuser_standin::user(&format!("gh/acme/repo{r}"), 1, i, false)["login"]["uuid"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
        })
        .collect();
    wait_until("the other parents' issues are written", 60, || async {
        s.ids().await == want
    })
    .await;
    assert_eq!(running.terminate().await, Some(0), "{}", running.log());
}
