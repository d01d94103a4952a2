//! The spec file as written: a serde mirror of the TOML. The `///` comments here are the spec
//! reference: `aqueduct schema` derives the JSON Schema from these types (schemars), and
//! `aqueduct docs` renders the book's reference/spec.md from it. Nothing else outside `spec`
//! uses them: `spec::check` turns them into the checked [`crate::spec::Spec`].

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

/// A duration as `humantime` reads it: `30s`, `1m 30s`, `500ms`, `2h`, `1day`.
pub const DURATION_PATTERN: &str = r"^\s*([0-9]+\s*[a-zA-Zµ]+\s*)+$";
/// A size as `bytesize` reads it: `10MiB`, `512 KB`, `1048576`.
pub const SIZE_PATTERN: &str = r"^\s*[0-9]+(\.[0-9]+)?\s*([kKmMgGtTpP]i?)?[bB]?\s*$";

/// The words a key takes, one of a few: the schema's `enum`s, and what `check` lists when a
/// spec gives another.
pub const AUTH_TYPES: &[&str] = &["bearer", "basic", "api_key", "oauth2"];
pub const RULE_ACTIONS: &[&str] = &["retry", "rate_limited", "ignore", "fail"];
pub const PAGINATION_MODES: &[&str] = &[
    "single",
    "page",
    "offset",
    "next_link",
    "link_header",
    "cursor",
];
pub const ON_INVALID: &[&str] = &["dead_letter", "drop", "fail"];
pub const CODECS: &[&str] = &["json", "avro", "json_schema"];
pub const SUBJECT_STRATEGIES: &[&str] = &["topic_name", "record_name", "topic_record_name"];
pub const NULLS: &[&str] = &["null", "unset"];

/// A whole pipeline spec.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    /// Pipeline name, used in logs and in the default consumer group id. Default: the file name
    /// without `.toml`.
    pub name: Option<String>,
    /// How long a stop (SIGINT/SIGTERM) may take to flush, finish writes and commit. Default 30s.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    #[schemars(with = "String", extend("pattern" = DURATION_PATTERN))]
    pub shutdown_timeout: Duration,
    /// The API polled. Without it the pipeline loads a topic others produce.
    pub source: Option<RawSource>,
    /// The JSON Schema every record must pass, and what happens to one that does not.
    #[serde(default)]
    pub validate: RawValidate,
    /// The topic the records stream through, and how they are written into it.
    pub kafka: RawKafka,
    /// The Cassandra nodes and the tables that receive the rows.
    pub cassandra: RawCassandra,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: RawMetrics,
}

/// `[metrics]`: Prometheus exposition of the run's counters.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `host:port` to serve, while the pipeline runs, `GET /metrics` (OpenMetrics text),
    /// `GET /health` (200 while the process answers) and `GET /ready` (200 once the loader has
    /// partitions, or an ingest-only run its clients; 503 until then), e.g. "127.0.0.1:9898".
    /// Default: not served.
    pub address: Option<String>,
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}

/// `[source]`: the HTTP JSON API that is polled.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// The URL, with or without a query string.
    pub url: String,
    /// HTTP method: GET (default) or POST.
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers: a string, or `{ value = "...", secret = true }`, or `{ file = "...",
    /// prefix = "Token " }` (the value read from a file, relative to the spec; a secret).
    /// Secret values never show in any output.
    #[serde(default)]
    pub headers: BTreeMap<String, RawParam>,
    /// Query parameters, added to those in `url`. Values may be strings, numbers or booleans,
    /// or a secret as for `headers` (`{ value = "...", secret = true }` or `{ file = "..." }`).
    #[serde(default)]
    pub query: BTreeMap<String, RawParam>,
    /// JSON body sent with POST, written as a TOML table.
    pub body: Option<serde_json::Value>,
    /// When to poll: `{ every = "30s" }` or `{ cron = "0 */5 * * * *" }` (seconds field optional).
    pub schedule: RawSchedule,
    /// Timeout of one request, connect to last byte. Default 30s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String", extend("pattern" = DURATION_PATTERN))]
    pub timeout: Duration,
    /// The largest response body read, e.g. `"64 MiB"` (default), `"500KB"` or a number of
    /// bytes: a larger one fails the attempt (retried like any failed attempt) as soon as it
    /// says so or gets there, before any of its records is produced.
    #[serde(default = "default_max_body_size")]
    #[schemars(with = "String", extend("pattern" = SIZE_PATTERN))]
    pub max_body_size: bytesize::ByteSize,
    /// jq expression selecting the records from a response, e.g. `.results[]`. Default `.[]`.
    #[serde(default = "default_records")]
    pub records: String,
    /// How failed requests are retried.
    #[serde(default)]
    pub retry: RawRetry,
    /// How the pages of one poll follow each other. Default: one request a poll.
    pub pagination: Option<RawPagination>,
    /// Incremental polling by a value taken from the responses (a timestamp, a token).
    pub cursor: Option<RawCursor>,
    /// Incremental polling by time windows, with catch-up and `aqueduct backfill`.
    pub window: Option<RawWindow>,
    /// How requests authenticate: bearer, basic, api_key or oauth2.
    pub auth: Option<RawAuth>,
    /// Rules for responses, tried in order before the defaults.
    #[serde(default)]
    pub on_response: Vec<RawRule>,
    /// A budget of requests the source keeps to.
    pub rate_limit: Option<RawRateLimit>,
    /// Parent-child requests: the parents this request runs for, once each, with `$parent`.
    pub parent: Option<RawParent>,
}

/// `[source.parent]`: the parents the source's request runs for, once each per poll, each
/// bound to `$parent` in its templates (e.g. `url = ".../repos/{{ $parent.full_name }}/issues"`).
/// The parents are a `list`, or the records of their own request (`url`, with its own `query`,
/// `body`, `records` and `pagination`; `[source]`'s headers, auth, rules, budget and retries
/// apply to it too).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawParent {
    /// The parents as written, e.g. `[{ full_name = "rust-lang/rust" }, { full_name = "tokio-rs/tokio" }]`.
    pub list: Option<Vec<serde_json::Value>>,
    /// The URL listing the parents (the origin of `source.url`).
    pub url: Option<String>,
    /// HTTP method: GET (default) or POST.
    #[serde(default = "default_method")]
    pub method: String,
    /// Query parameters of the parents' request (strings, numbers, booleans).
    #[serde(default)]
    pub query: BTreeMap<String, RawParam>,
    /// JSON body sent with POST.
    pub body: Option<serde_json::Value>,
    /// jq selecting the parents from a response. Default `.[]`.
    #[serde(default = "default_records")]
    pub records: String,
    /// How the pages of the parents' request follow each other, as for the source's.
    pub pagination: Option<RawPagination>,
    /// jq on a parent giving what identifies it (a string or a number): its cursor is kept
    /// under it. Default `.id`.
    #[serde(default = "default_parent_key")]
    pub key: String,
    /// Fields put into each child record from its parent: a name and a jq expression on the
    /// parent, e.g. `{ repo = ".full_name" }`; a child record that is not an object goes as
    /// it is.
    #[serde(default)]
    pub include: BTreeMap<String, String>,
    /// Parents whose requests run at once. Default 4.
    #[serde(default = "default_parent_concurrency")]
    pub concurrency: usize,
}

fn default_parent_key() -> String {
    ".id".into()
}
fn default_parent_concurrency() -> usize {
    4
}

/// A header or query parameter value: as written, or a secret given inline or in a file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawParam {
    Plain(Scalar),
    Detailed(RawParamDetail),
}

/// `{ value = "...", secret = true }` or `{ file = "...", prefix = "..." }`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawParamDetail {
    /// The value.
    pub value: Option<String>,
    /// A file holding the value instead (relative to the spec's folder; a trailing newline is
    /// dropped); a value from a file is a secret.
    pub file: Option<std::path::PathBuf>,
    /// Text put before the value, e.g. `"Token "`.
    #[serde(default)]
    pub prefix: String,
    /// Never show the value: in logs, errors, dead letters or `preview`. Default: true for a
    /// value from a file, false otherwise.
    pub secret: Option<bool>,
}

/// `[source.auth]`: how requests authenticate. Every credential may be given inline, by an
/// environment override (`AQUEDUCT_SOURCE__AUTH__TOKEN`), or from a file (`<key>_file`,
/// relative to the spec's folder); none ever shows in any output.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// `bearer` (an `Authorization: Bearer` token), `basic` (username and password),
    /// `api_key` (a key in a header or a query parameter) or `oauth2` (an access token from a
    /// token endpoint, cached until it expires and refreshed on a 401).
    #[serde(rename = "type")]
    #[schemars(extend("enum" = AUTH_TYPES))]
    pub kind: String,
    /// `bearer`: the token.
    pub token: Option<String>,
    /// A file holding the token instead (relative to the spec's folder).
    pub token_file: Option<std::path::PathBuf>,
    /// `basic`: the user name.
    pub username: Option<String>,
    /// `basic`: the password.
    pub password: Option<String>,
    /// A file holding the password instead (relative to the spec's folder).
    pub password_file: Option<std::path::PathBuf>,
    /// `api_key`: the key.
    pub key: Option<String>,
    /// A file holding the key instead (relative to the spec's folder).
    pub key_file: Option<std::path::PathBuf>,
    /// `api_key`: the header that carries the key, e.g. `X-API-Key`.
    pub header: Option<String>,
    /// `api_key`: the query parameter that carries the key instead, e.g. `api_key`.
    pub query: Option<String>,
    /// `api_key`: text put before the key, e.g. `"Token token="`. Default none.
    pub prefix: Option<String>,
    /// `oauth2`: `client_credentials` or `refresh_token`.
    pub grant: Option<String>,
    /// `oauth2`: the token endpoint's URL (with any query parameters it needs, e.g. Zoom's
    /// `account_id`).
    pub token_url: Option<String>,
    /// `oauth2`: the client id.
    pub client_id: Option<String>,
    /// `oauth2`: the client secret.
    pub client_secret: Option<String>,
    /// A file holding the client secret instead (relative to the spec's folder).
    pub client_secret_file: Option<std::path::PathBuf>,
    /// `oauth2`, `grant = "refresh_token"`: the refresh token. When the token endpoint sends a
    /// new one, it replaces the old one in `refresh_token_file` (atomically), since the old
    /// one stops working.
    pub refresh_token: Option<String>,
    /// A file holding the refresh token (and where a rotated one is saved) instead (relative to the spec's folder).
    pub refresh_token_file: Option<std::path::PathBuf>,
    /// `oauth2`: scopes asked for. Default none.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `oauth2`: how the client authenticates to the token endpoint: `basic` (an
    /// `Authorization: Basic` header, the default, as RFC 6749 asks servers to support) or
    /// `body` (`client_id` and `client_secret` as form fields).
    pub client_auth: Option<String>,
    /// `oauth2`: extra form fields of the token request, e.g. `{ audience = "api" }`.
    #[serde(default)]
    pub token_params: BTreeMap<String, Scalar>,
}

/// `[[source.on_response]]`: a rule for responses. A response matches when every condition
/// given holds (at least one is needed); the first rule that matches decides.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// HTTP status codes, e.g. `[403, 404]`.
    #[serde(default)]
    pub status: Vec<u16>,
    /// jq predicate on the response body, e.g. `.ok == false and .error == "ratelimited"`
    /// (a body that is not JSON does not match).
    pub jq: Option<String>,
    /// Header values, e.g. `{ "X-RateLimit-Remaining" = "0" }` (exact, names in any case).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `retry` (a failed attempt, retried per `[source.retry]`), `rate_limited` (wait, then
    /// try again, not counted as an attempt), `ignore` (the page has no records and ends the
    /// poll's pagination; the poll succeeds) or `fail` (the poll fails).
    #[schemars(extend("enum" = RULE_ACTIONS))]
    pub action: String,
    /// The header saying how long to wait (`retry`, `rate_limited`), e.g. `Retry-After` or
    /// `X-RateLimit-Reset`. Default: the backoff. A `retry` wait is capped by
    /// `retry.max_backoff`; a `rate_limited` one lasts at least `retry.initial_backoff` and at
    /// most an hour (a longer one is logged as a likely misread header).
    pub wait_header: Option<String>,
    /// How `wait_header` is written: `retry_after` (seconds, or an HTTP date; the default),
    /// `epoch_s` or `epoch_ms` (the time to wait until).
    pub wait_format: Option<String>,
}

/// `[source.rate_limit]`: the source keeps to the API's published limit rather than finding
/// it by hitting it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// At most this many requests per `per`, evenly spaced (a GCRA limiter: 100 per 1m is one
    /// every 0.6 s). Default: no budget of our own.
    pub requests: Option<u32>,
    /// The interval of `requests`, e.g. "1m". Default 1s.
    #[serde(default = "default_rate_per", with = "humantime_serde")]
    #[schemars(with = "String", extend("pattern" = DURATION_PATTERN))]
    pub per: Duration,
    /// The header in which the API reports requests left, e.g. `X-RateLimit-Remaining`.
    pub remaining_header: Option<String>,
    /// The header saying when the budget is renewed, e.g. `X-RateLimit-Reset`; when
    /// `remaining_header` reaches 0, requests wait until then.
    pub reset_header: Option<String>,
    /// How `reset_header` is written: `epoch_s` (the default), `epoch_ms` or `retry_after`
    /// (seconds from now, or an HTTP date).
    pub reset_format: Option<String>,
}

fn default_rate_per() -> Duration {
    Duration::from_secs(1)
}

fn default_method() -> String {
    "GET".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_body_size() -> bytesize::ByteSize {
    bytesize::ByteSize::mib(64)
}
fn default_records() -> String {
    ".[]".into()
}

/// A TOML scalar used as a query parameter value.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::String(s) => f.write_str(s),
            Scalar::Integer(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// `schedule`: exactly one of `every` and `cron`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// Fixed interval between the starts of two polls, e.g. "30s". The first poll is at once.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub every: Option<Duration>,
    /// Cron expression (5 fields, or 6 with seconds first), in UTC.
    pub cron: Option<String>,
}

/// `[source.retry]`: retries of one request, with exponential backoff and full jitter. 429 and
/// 503 honour `Retry-After`. Retried: connection errors, timeouts, 408, 429 and 5xx.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Attempts in all, the first included. Default 5.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Backoff before the second attempt; doubles each time. Default 500ms.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    #[schemars(with = "String", extend("pattern" = DURATION_PATTERN))]
    pub initial_backoff: Duration,
    /// Cap on one backoff (and on a `Retry-After`). Default 30s.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    #[schemars(with = "String", extend("pattern" = DURATION_PATTERN))]
    pub max_backoff: Duration,
}

impl Default for RawRetry {
    fn default() -> Self {
        RawRetry {
            attempts: default_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn default_attempts() -> u32 {
    5
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

/// `[source.pagination]`: several requests per poll.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPagination {
    /// `page` (a page number parameter), `offset` (an offset parameter advanced by the records
    /// received), `next_link` (a jq expression on the response yields the next URL or null),
    /// `link_header` (the `Link` header's `rel="next"` URL, as GitHub, Sentry and Greenhouse
    /// page) or `cursor` (a token from the response goes into the next request, which is
    /// otherwise the poll's first: Stripe, Slack, Notion, Jira, GraphQL); `single` (default):
    /// one request per poll, whose `page_size` tells a full page.
    #[serde(default = "default_mode")]
    #[schemars(extend("enum" = PAGINATION_MODES))]
    pub mode: String,
    /// Query parameter carrying the page number or offset (`page` / `offset` modes).
    pub param: Option<String>,
    /// First page number or offset. Default 1 for `page`, 0 for `offset`.
    pub start: Option<i64>,
    /// jq expression yielding the next URL, or null at the end (`next_link` mode); `$headers`
    /// holds the response's headers (lower-case names), e.g. `$headers["x-next-page"]`.
    pub next: Option<String>,
    /// `cursor` mode: jq on the response (with `$headers`) giving the next page's token, e.g.
    /// `.response_metadata.next_cursor` (Slack) or `.data[-1].id` (Stripe's `starting_after`);
    /// `null`, `""` or no output ends the poll.
    pub token: Option<String>,
    /// `cursor` mode: jq on the response (with `$headers`) that, when true, ends the poll, e.g.
    /// `.has_more == false`.
    pub stop: Option<String>,
    /// `cursor` mode: the query parameter the token goes in (the rest of the request stays).
    pub query: Option<String>,
    /// `cursor` mode: the header the token goes in instead.
    pub header: Option<String>,
    /// `cursor` mode: a JSON pointer into the POST body the token goes in instead, e.g.
    /// `/start_cursor` (Notion) or `/variables/after` (GraphQL).
    pub body: Option<String>,
    /// `link_header` mode: the relation of the next page's link. Default `next`.
    pub rel: Option<String>,
    /// `link_header` mode: link parameters that mean there is no next page, e.g. Sentry's
    /// `{ results = "false" }`.
    #[serde(default)]
    pub stop_if: BTreeMap<String, String>,
    /// Most pages fetched per poll. Default 1.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// The records a full page holds (the limit the request asks for): a page with fewer ends
    /// the poll. Unset, a short page does not end it (some APIs return short pages before the
    /// last); in the `page` and `offset` modes an empty page still does.
    pub page_size: Option<u32>,
}

fn default_max_pages() -> u32 {
    1
}
fn default_mode() -> String {
    "single".into()
}

/// `[source.cursor]`: each poll asks only for what is new since the last one. The cursor is a
/// value computed from the responses, sent with the next poll's request, and kept on
/// `kafka.cursor_topic` once every record of the poll is acknowledged by Kafka.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCursor {
    /// jq expression on each response page giving the cursor after it, with `$cursor` the value
    /// so far, e.g. `[$cursor, .items[].updated_at] | max` or `.next_cursor`. `null` or no
    /// output keeps the value so far.
    pub value: String,
    /// The cursor before the first poll (any TOML value). Default: none, and the first request
    /// goes without it.
    pub initial: Option<serde_json::Value>,
    /// The query parameter the cursor goes in.
    pub query: Option<String>,
    /// The request header the cursor goes in.
    pub header: Option<String>,
    /// The body field the cursor goes in (a JSON pointer, e.g. `/filter/since`; POST only).
    pub body: Option<String>,
    /// jq expression turning the cursor into what is sent, e.g. `. / 1000 | todate`. Default:
    /// a string as it is, other values as JSON.
    pub format: Option<String>,
}

/// `[source.window]`: each poll asks for the time windows after the cursor (the end of the
/// last window done) up to now, oldest first, a bounded number per poll, so a pipeline that
/// was down catches up. `aqueduct backfill` runs the windows of a past range once.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    /// Query parameter taking a window's start (inclusive), e.g. `starttime`; or write
    /// `{{ $start }}` where it goes (a path, one parameter with both bounds, a body string).
    pub start_param: Option<String>,
    /// Query parameter taking a window's end (exclusive), e.g. `endtime`; or `{{ $end }}`.
    pub end_param: Option<String>,
    /// Length of a full window, e.g. "1h"; the last window of a poll is cut at now less
    /// `lag`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String", extend("pattern" = DURATION_PATTERN))]
    pub size: Duration,
    /// Where the first window starts when no cursor is saved: an RFC 3339 time, e.g.
    /// "2026-11-01T00:00:00Z", or a duration before the first poll, e.g. "7d" (rounded down
    /// to a whole window).
    pub start: String,
    /// How far behind now the last window ends, for data that arrives late. Default 0s.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "String", extend("pattern" = DURATION_PATTERN))]
    pub lag: Duration,
    /// Most windows fetched per poll while catching up. Default 24.
    #[serde(default = "default_max_windows")]
    pub max_windows: u32,
    /// How times are written in the request: `rfc3339` (default,
    /// `2026-11-01T00:00:00Z`), `epoch_ms`, `epoch_s`, or a strftime pattern such as
    /// `%Y-%m-%dT%H:%M:%S` (UTC).
    #[serde(default = "default_time_format")]
    pub format: String,
}

fn default_max_windows() -> u32 {
    24
}
fn default_time_format() -> String {
    "rfc3339".into()
}

/// `[validate]`: the JSON Schema every record must pass.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawValidate {
    /// Path of a JSON Schema file, relative to the spec file.
    pub schema_file: Option<String>,
    /// An inline schema: a TOML table, or a string holding JSON.
    pub schema: Option<serde_json::Value>,
    /// What to do with an invalid record: `dead_letter` (default: to the dead-letter topic with
    /// its reasons), `drop` (counted and logged) or `fail` (the run stops, exit 1).
    #[serde(default = "default_on_invalid")]
    #[schemars(extend("enum" = ON_INVALID))]
    pub on_invalid: String,
}

impl Default for RawValidate {
    fn default() -> Self {
        RawValidate {
            schema_file: None,
            schema: None,
            on_invalid: default_on_invalid(),
        }
    }
}

fn default_on_invalid() -> String {
    "dead_letter".into()
}

/// `[kafka]`: the topic records stream through.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Topic the records are produced to and consumed from.
    pub topic: String,
    /// Partitions of the topic when aqueduct creates it. Default 3.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of the topic when aqueduct creates it. Default 1.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// Create the topic and dead-letter topic if missing. Default true.
    #[serde(default = "default_true")]
    pub create_topics: bool,
    /// jq expression computing the message key (a string or number); records with the same
    /// key keep their order. Default: no key.
    pub key: Option<String>,
    /// Consumer group of the loaders. Default `aqueduct-<name>`.
    pub group_id: Option<String>,
    /// Topic for records that fail validation or mapping. Default `<topic>_dlq`.
    pub dead_letter_topic: Option<String>,
    /// Compacted topic keeping the cursors of `[source.cursor]` and `[source.window]`, keyed by
    /// pipeline name. Default `aqueduct-cursors`.
    #[serde(default = "default_cursor_topic")]
    pub cursor_topic: String,
    /// How often the loader commits the offsets of written rows. A crashed loader writes again
    /// at most what was written in this window. Default 1s.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    #[schemars(with = "String", extend("pattern" = DURATION_PATTERN))]
    pub commit_interval: Duration,
    /// Extra librdkafka properties for both producer and consumer, e.g. security settings.
    #[serde(default)]
    pub properties: BTreeMap<String, Scalar>,
    /// Extra librdkafka properties for the producer only, e.g. `compression.type`.
    #[serde(default)]
    pub producer_properties: BTreeMap<String, Scalar>,
    /// Extra librdkafka properties for the consumer only, e.g. `session.timeout.ms`.
    #[serde(default)]
    pub consumer_properties: BTreeMap<String, Scalar>,
    /// Topic configs of the topic and dead-letter topic when aqueduct creates them, e.g.
    /// `min.insync.replicas` (the broker's defaults otherwise).
    #[serde(default)]
    pub topic_properties: BTreeMap<String, Scalar>,
    /// TLS to the brokers (librdkafka's `security.protocol` SSL, or SASL_SSL with `[kafka.sasl]`).
    pub tls: Option<RawTls>,
    /// SASL login to the brokers (SASL_PLAINTEXT, or SASL_SSL with `[kafka.tls]`).
    pub sasl: Option<RawSasl>,
    /// How records are written into the topic's messages: `json` (default: the record's JSON
    /// text, byte for byte as the API sent it), `avro` or `json_schema` (Confluent's wire
    /// format: a zero byte, the schema's id in the registry in 4 bytes, then the record; needs
    /// `[kafka.schema_registry]`).
    #[serde(default = "default_codec")]
    #[schemars(extend("enum" = CODECS))]
    pub codec: String,
    /// How message keys are written: `json` (default: a string key as its text, any other
    /// value as JSON), `avro` or `json_schema` (the wire format, with the schema of
    /// `schema_registry.key_schema_file` when aqueduct produces the keys). Keys read are
    /// decoded with it for tombstones and `tap`.
    #[serde(default = "default_codec")]
    #[schemars(extend("enum" = CODECS))]
    pub key_codec: String,
    /// The Schema Registry holding the topic's schemas (Confluent's REST API: Confluent,
    /// Karapace, Redpanda, Apicurio's ccompat).
    pub schema_registry: Option<RawSchemaRegistry>,
}

fn default_codec() -> String {
    "json".into()
}

/// `[kafka.schema_registry]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSchemaRegistry {
    /// The registry's address, e.g. `http://127.0.0.1:8081`.
    pub url: String,
    /// HTTP basic auth: the user, with `password` (or `password_file`).
    pub username: Option<String>,
    /// The password (set it with AQUEDUCT_KAFKA__SCHEMA_REGISTRY__PASSWORD).
    pub password: Option<String>,
    /// A file holding the password instead (relative to the spec's folder).
    pub password_file: Option<std::path::PathBuf>,
    /// A bearer token instead of basic auth.
    pub token: Option<String>,
    /// A file holding the token instead.
    pub token_file: Option<std::path::PathBuf>,
    /// CA certificates (PEM) to trust for an `https` registry. Default: the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// The subject a schema is registered under: `topic_name` (default, `<topic>-value`, keys
    /// `<topic>-key`), `record_name` (the Avro record's full name, or the JSON Schema's
    /// `title`) or `topic_record_name` (`<topic>-<name>`).
    #[serde(default = "default_subject_strategy")]
    #[schemars(extend("enum" = SUBJECT_STRATEGIES))]
    pub subject_strategy: String,
    /// The Avro schema (`.avsc`) of the records produced, relative to the spec's folder;
    /// required with `codec = "avro"` when aqueduct produces. For `json_schema`, `[validate]`'s
    /// schema is the one registered.
    pub schema_file: Option<std::path::PathBuf>,
    /// The schema of the message keys produced with `kafka.key_codec` `avro` (an `.avsc`;
    /// `"string"` for Confluent's string keys) or `json_schema` (a JSON Schema), relative to
    /// the spec's folder; required with those key codecs and `kafka.key`. Registered under
    /// `<topic>-key` with the topic-name strategy.
    pub key_schema_file: Option<std::path::PathBuf>,
    /// Register the schema if the subject lacks it (Confluent's `auto.register.schemas`).
    /// With false it must be registered already. Default true.
    #[serde(default = "default_true")]
    pub auto_register: bool,
    /// How long a registry request may take. Default 10s.
    #[serde(default = "default_registry_timeout", with = "humantime_serde")]
    #[schemars(with = "String", extend("pattern" = DURATION_PATTERN))]
    pub timeout: Duration,
}

fn default_subject_strategy() -> String {
    "topic_name".into()
}
fn default_registry_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_cursor_topic() -> String {
    "aqueduct-cursors".into()
}

/// `[kafka.tls]`, `[cassandra.tls]`: speak TLS to the servers. Files are relative to the spec's
/// folder.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// CA certificates (PEM) to trust. Default: the system's trusted CAs.
    pub ca_file: Option<std::path::PathBuf>,
    /// A client certificate (PEM), for servers that check clients; with `key_file` (both or
    /// neither).
    pub cert_file: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    pub key_file: Option<std::path::PathBuf>,
    /// The password of an encrypted `key_file`.
    pub key_password: Option<String>,
    /// A file holding `key_password` instead.
    pub key_password_file: Option<std::path::PathBuf>,
    /// Check that the server's certificate names the host (or IP address) connected to; the
    /// certificate chain is checked either way. Cassandra's driver checks a node's certificate
    /// against its IP address. Default true.
    #[serde(default = "default_true")]
    pub verify_hostname: bool,
}

/// `[kafka.sasl]`: log in to the brokers.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSasl {
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub mechanism: String,
    pub username: String,
    /// The password (set it with AQUEDUCT_KAFKA__SASL__PASSWORD).
    pub password: Option<String>,
    /// A file holding the password instead (relative to the spec's folder; a trailing newline
    /// is dropped), e.g. a mounted secret.
    pub password_file: Option<std::path::PathBuf>,
}

fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_partitions() -> i32 {
    3
}
fn default_replication_factor() -> i32 {
    1
}
fn default_true() -> bool {
    true
}

/// `[cassandra]`: the nodes, and the table that receives the rows (`table`, `partition_key`,
/// `columns` here), or several tables that each receive a row of every record
/// (`[cassandra.tables.<name>]`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCassandra {
    /// `host:port` of one or more nodes (the port defaults to 9042).
    pub contact_points: Vec<String>,
    /// Keyspace name (letters, digits, underscore; starts with a letter; at most 48); the
    /// keyspace of every table that names none.
    pub keyspace: String,
    /// Table name (same rules), when the pipeline writes one table.
    pub table: Option<String>,
    /// Keyspace replication, used when aqueduct creates the keyspace. Default
    /// `{ class = "SimpleStrategy", replication_factor = 1 }`; `NetworkTopologyStrategy` takes
    /// `dc = n` pairs.
    #[serde(default)]
    pub replication: Option<BTreeMap<String, Scalar>>,
    /// Write consistency: any, one, two, three, quorum, all, local_quorum (default),
    /// each_quorum, local_one. Every table's unless it sets its own.
    #[serde(default = "default_consistency")]
    pub consistency: String,
    /// Time to live of written rows, up to 20 years: e.g. "30d", or `{ jq = "<expression>" }`
    /// giving each row's in seconds (null: none; `USING TTL ?`). Default: none. Every table's
    /// unless it sets its own.
    #[serde(default)]
    pub ttl: Option<RawTtl>,
    /// A jq expression giving each row's write time (`USING TIMESTAMP`), an RFC 3339 string
    /// or epoch milliseconds, e.g. `.updated`: an older version of a record (`replay`,
    /// `backfill`, a re-delivery) never overwrites a newer one, as Cassandra keeps the cell
    /// with the latest write time. A record whose expression yields null or no time is
    /// dead-lettered for that table (column `writetime`). Default: none (the last write wins).
    /// Every table's unless it sets its own.
    pub writetime: Option<String>,
    /// What a null does to its column: "null" (default) writes a CQL null, which deletes the
    /// cell and leaves a tombstone; "unset" leaves the column as it is (no tombstone), for
    /// records that carry only some fields. Every table's unless it sets its own.
    #[serde(default)]
    #[schemars(extend("enum" = NULLS))]
    pub nulls: Option<String>,
    /// A jq condition on the record, e.g. `.deleted == true`: when it yields true the row is
    /// deleted by its primary key (`DELETE ... WHERE`, `USING TIMESTAMP` with `writetime`)
    /// instead of written; null or false writes it. Every table's unless it sets its own.
    /// Whether or not it is set, a Kafka tombstone (a key without a value) deletes the row its
    /// key names: the value of a one-column primary key, or an object naming each key column
    /// as Debezium's and Kafka Connect's keys do (`{"id": 3}`), read with `kafka.key_codec`;
    /// the message's timestamp is the write time where the table takes one. A key that cannot
    /// name the row is dead-lettered for that table.
    pub delete: Option<String>,
    /// Create the keyspaces and tables if missing. Default true. Either way each table is
    /// checked against its columns at start. Every table's unless it sets its own.
    #[serde(default = "default_true")]
    pub create: bool,
    /// Writes in flight at once (lanes; rows of one message key are written in order). Default
    /// 256: Cassandra writes more per CPU second with more requests in flight.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Timeout of one write. Default 10s.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    #[schemars(with = "String", extend("pattern" = DURATION_PATTERN))]
    pub request_timeout: Duration,
    /// Username for password authentication.
    pub username: Option<String>,
    /// Password for password authentication (set it with AQUEDUCT_CASSANDRA__PASSWORD).
    pub password: Option<String>,
    /// A file holding the password instead (relative to the spec's folder; a trailing newline
    /// is dropped), e.g. a mounted secret; not both.
    pub password_file: Option<std::path::PathBuf>,
    /// TLS to the nodes (Cassandra's `client_encryption_options`).
    pub tls: Option<RawTls>,
    /// How long a node may hold acknowledged writes only in memory: Cassandra acknowledges a
    /// write before its commit log reaches the disk (`commitlog_sync: periodic`, the default,
    /// syncs every 10 s), so a node that crashes loses that window. When a node restarts and
    /// as many nodes as acknowledge each write (from each table's consistency and its
    /// keyspace's replication: one at RF 1 or at `one`, two at RF 3 and `local_quorum`) have
    /// restarted or are down within overlapping windows, aqueduct writes again what it wrote in
    /// them; one node of three restarting at `local_quorum` loses nothing, and nothing is
    /// written again. "auto" (default) reads it from the node (`system_views.settings`; 10 s
    /// when the node does not say); "0s" turns the watch off (`commitlog_sync: batch`).
    #[serde(default = "default_unsynced_window")]
    pub unsynced_window: String,
    /// Partition key columns, in order (one table).
    #[serde(default)]
    pub partition_key: Vec<String>,
    /// Clustering columns, in order; `"col desc"` for descending order (one table).
    #[serde(default)]
    pub clustering_key: Vec<String>,
    /// The columns: `name = { type = "<CQL type>", jq = "<expression on the record>" }` (one
    /// table).
    #[serde(default)]
    pub columns: BTreeMap<String, RawColumn>,
    /// User-defined types, by name: `[cassandra.types.address]` with `street = "text"`, ...
    /// (field = CQL type); created in the keyspace of every table (`CREATE TYPE`), usable as
    /// column types (`address`, `frozen<address>`, `list<frozen<address>>`) and in the fields
    /// of types defined after them. A column of such a type takes a JSON object of its fields:
    /// a missing or null field is null, an unknown one a mapping error naming it.
    #[serde(default)]
    pub types: BTreeMap<String, BTreeMap<String, String>>,
    /// Storage-attached indexes (SAI) of the table, by index name (one table).
    #[serde(default)]
    pub indexes: BTreeMap<String, RawIndex>,
    /// Several tables, each receiving a row of every record, by a name of yours (it labels
    /// their metrics and dead letters): `[cassandra.tables.users_by_email]`. Instead of
    /// `table`, `partition_key`, `clustering_key` and `columns` above.
    #[serde(default)]
    pub tables: BTreeMap<String, RawTable>,
}

/// A time to live: fixed, or computed per row.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawTtl {
    /// A duration, e.g. "30d".
    Fixed(
        #[serde(with = "humantime_serde")]
        #[schemars(with = "String", extend("pattern" = DURATION_PATTERN))]
        Duration,
    ),
    /// `{ jq = "<expression>" }`: seconds from the record; null for none.
    Jq { jq: String },
}

/// One table of `[cassandra.tables.<name>]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    /// Keyspace name. Default: `cassandra.keyspace`.
    pub keyspace: Option<String>,
    /// Table name. Default: the table's name in the spec.
    pub table: Option<String>,
    /// Write consistency of this table. Default: `cassandra.consistency`.
    pub consistency: Option<String>,
    /// Time to live of this table's rows, e.g. "30d", or `{ jq = "<expression>" }` in
    /// seconds. Default: `cassandra.ttl`.
    #[serde(default)]
    pub ttl: Option<RawTtl>,
    /// A jq expression giving each row's write time (`USING TIMESTAMP`), an RFC 3339 string or
    /// epoch milliseconds, e.g. `.updated`: an older version written later (a replay, a
    /// backfill) never overwrites a newer one. Default: `cassandra.writetime`.
    pub writetime: Option<String>,
    /// "null" or "unset": what a null does to its column. Default: `cassandra.nulls`.
    #[schemars(extend("enum" = NULLS))]
    pub nulls: Option<String>,
    /// A jq condition on the record, e.g. `.deleted == true`: when it yields true the row is
    /// deleted by its primary key instead of written. Default: `cassandra.delete`.
    pub delete: Option<String>,
    /// Create this table (and its keyspace) if missing. Default: `cassandra.create`.
    pub create: Option<bool>,
    /// Partition key columns, in order.
    #[serde(default)]
    pub partition_key: Vec<String>,
    /// Clustering columns, in order; `"col desc"` for descending order.
    #[serde(default)]
    pub clustering_key: Vec<String>,
    /// The columns: `name = { type = "<CQL type>", jq = "<expression on the record>" }`.
    #[serde(default)]
    pub columns: BTreeMap<String, RawColumn>,
    /// Storage-attached indexes (SAI) of the table, by index name.
    #[serde(default)]
    pub indexes: BTreeMap<String, RawIndex>,
}

/// A storage-attached index: `indexes.<name> = { column = "embedding", options = {
/// similarity_function = "cosine" } }`, created with the table (`CREATE INDEX ... USING
/// 'sai'`); a `vector<float, n>` column so indexed answers `ORDER BY col ANN OF [...]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIndex {
    /// The column indexed.
    pub column: String,
    /// SAI options, e.g. `similarity_function` (cosine, dot_product, euclidean) for vectors,
    /// `case_sensitive` or `normalize` for text.
    #[serde(default)]
    pub options: BTreeMap<String, Scalar>,
}

fn default_unsynced_window() -> String {
    "auto".into()
}
fn default_consistency() -> String {
    "local_quorum".into()
}
fn default_concurrency() -> usize {
    256
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

/// One column of `[cassandra.columns]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawColumn {
    /// CQL type, e.g. `text`, `timestamp`, `list<int>`, `map<text, double>`.
    #[serde(rename = "type")]
    pub cql_type: String,
    /// jq expression computing the value from the record.
    pub jq: String,
}
