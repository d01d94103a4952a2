//! Pipeline specs: [`load`] reads a TOML file (plus `AQUEDUCT_` environment overrides), checks
//! everything that can be checked offline, compiles every jq expression and the JSON Schema,
//! and returns a [`Spec`] or every problem found at once. `aqueduct check` stops here.

mod check;
pub mod infer;
mod locate;
mod raw;
pub mod reference;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use crate::cql::CqlType;
use crate::jq::Jq;
use crate::template::Template;

/// The prefix of environment variables that override spec keys; `__` separates key path
/// segments: `AQUEDUCT_KAFKA__BOOTSTRAP_SERVERS` sets `kafka.bootstrap_servers`.
pub const ENV_PREFIX: &str = "AQUEDUCT_";

/// A checked pipeline spec, ready to build.
#[derive(Debug)]
pub struct Spec {
    pub name: String,
    pub path: PathBuf,
    pub shutdown_timeout: Duration,
    /// `None`: the pipeline loads a topic others produce.
    pub source: Option<Source>,
    pub validate: Validate,
    pub kafka: Kafka,
    pub cassandra: Cassandra,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_address: Option<std::net::SocketAddr>,
}

impl Spec {
    /// How the source polls incrementally, if it has a source and it does.
    pub fn incremental(&self) -> Option<&Incremental> {
        self.source.as_ref()?.incremental.as_ref()
    }
}

/// `[source]`, checked.
#[derive(Debug)]
pub struct Source {
    /// What is asked, and how its pages and records come out.
    pub endpoint: Endpoint,
    /// The headers every request carries that are no secret.
    pub headers: reqwest::header::HeaderMap,
    pub schedule: Schedule,
    pub timeout: Duration,
    /// The largest response body read.
    pub max_body_size: bytesize::ByteSize,
    pub retry: Retry,
    /// How a poll asks only for what is new, if it does.
    pub incremental: Option<Incremental>,
    /// Headers and query parameters that are secrets (`[source.auth]`'s static kinds among
    /// them): put in as each request is sent, never part of a shown request.
    pub secrets: Vec<SecretParam>,
    /// `[source.auth]` of type `oauth2`.
    pub oauth2: Option<OAuth2>,
    /// `[[source.on_response]]`, in order.
    pub rules: Vec<Rule>,
    /// `[source.rate_limit]`.
    pub rate_limit: Option<RateLimit>,
    /// `[source.parent]`: the parents `endpoint` is asked for, once each.
    pub parent: Option<Parent>,
}

/// `[source.parent]`, checked.
#[derive(Debug)]
pub struct Parent {
    pub parents: Parents,
    /// What identifies a parent (its cursor's key).
    pub key: Jq,
    /// Fields put into each child record, by jq on its parent.
    pub include: Vec<(String, Jq)>,
    /// Parents asked for at once.
    pub concurrency: usize,
}

/// Where the parents come from.
#[derive(Debug)]
pub enum Parents {
    List(Vec<serde_json::Value>),
    /// The records of this endpoint's pages.
    Endpoint(Box<Endpoint>),
}

/// One kind of request a source sends: where, with what, and how its pages and records come
/// out.
#[derive(Debug)]
pub struct Endpoint {
    /// The URL with the spec's query parameters merged in.
    pub url: reqwest::Url,
    pub method: reqwest::Method,
    pub body: Option<serde_json::Value>,
    /// The `{{ jq }}` placeholders in the URL's path, the query, the headers and the body.
    pub templates: Templates,
    /// Selects the records of a response.
    pub records: Jq,
    pub pagination: Option<Pagination>,
}

/// The request's templates ([`crate::template`]), each with the spec key it is written at.
#[derive(Debug, Default)]
pub struct Templates {
    /// The URL's path.
    pub path: Option<Template>,
    /// Query parameters, by name.
    pub query: Vec<(String, Template)>,
    pub headers: Vec<(reqwest::header::HeaderName, Template)>,
    /// Strings of the POST body, by JSON pointer.
    pub body: Vec<(String, Template)>,
}

impl Templates {
    /// Whether any template reads `var` (one of [`crate::template::VARS`]).
    pub fn read(&self, var: &str) -> bool {
        let query = self.query.iter().map(|(_, t)| t);
        let headers = self.headers.iter().map(|(_, t)| t);
        let body = self.body.iter().map(|(_, t)| t);
        self.path
            .iter()
            .chain(query)
            .chain(headers)
            .chain(body)
            .any(|t| t.reads_var(var))
    }
}

/// A header or query parameter whose value is a secret.
#[derive(Debug, Clone)]
pub struct SecretParam {
    /// Where it goes.
    pub place: ParamPlace,
    /// What is sent, any prefix included.
    pub value: Secret,
}

/// Where a request parameter goes.
#[derive(Debug, Clone)]
pub enum ParamPlace {
    /// A request header.
    Header(reqwest::header::HeaderName),
    /// A query parameter.
    Query(String),
}

/// `[source.auth]` with `type = "oauth2"`, checked.
#[derive(Debug)]
pub struct OAuth2 {
    /// The token endpoint.
    pub token_url: reqwest::Url,
    pub client_id: String,
    pub client_secret: Secret,
    pub grant: Grant,
    /// Scopes asked for.
    pub scopes: Vec<String>,
    /// How the client authenticates to the token endpoint.
    pub client_auth: ClientAuth,
    /// Extra form fields of the token request.
    pub params: Vec<(String, String)>,
}

/// An OAuth2 grant.
#[derive(Debug)]
pub enum Grant {
    /// `client_credentials`: the client's own credentials get a token.
    ClientCredentials,
    /// The refresh token, and the file it came from (where a rotated one is saved).
    RefreshToken {
        token: Secret,
        file: Option<PathBuf>,
    },
}

/// How an OAuth2 client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// An `Authorization: Basic` header.
    Basic,
    /// `client_id` and `client_secret` form fields.
    Body,
}

/// `[[source.on_response]]`, checked.
#[derive(Debug)]
pub struct Rule {
    /// Its key path, e.g. `source.on_response.0`, for logs and errors.
    pub key: String,
    /// The statuses it matches; empty: any status.
    pub status: Vec<reqwest::StatusCode>,
    /// A predicate on the body, if it has one.
    pub jq: Option<Jq>,
    /// Header values it asks for, exactly.
    pub headers: Vec<(reqwest::header::HeaderName, String)>,
    pub action: Action,
    /// Where the wait of `retry` and `rate_limited` is read, if anywhere.
    pub wait: Option<WaitHeader>,
}

/// What a response rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A failed attempt, retried per `[source.retry]`.
    Retry,
    /// Wait, then try again; not an attempt.
    RateLimited,
    /// No records from this page; the pagination ends.
    Ignore,
    /// The poll fails.
    Fail,
}

/// A header telling how long to wait.
#[derive(Debug, Clone)]
pub struct WaitHeader {
    /// The header.
    pub name: reqwest::header::HeaderName,
    /// How its value is written.
    pub format: WaitFormat,
}

/// How a wait is written in a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFormat {
    /// Seconds, or an HTTP date (`Retry-After`).
    RetryAfter,
    /// The Unix time to wait until, in seconds.
    EpochS,
    /// The Unix time to wait until, in milliseconds.
    EpochMs,
}

/// `[source.rate_limit]`, checked.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// At most this many requests per `per`.
    pub budget: Option<(std::num::NonZeroU32, Duration)>,
    /// The header of requests left, and the one of when they are renewed.
    pub remaining: Option<(reqwest::header::HeaderName, WaitHeader)>,
}

/// `[source.cursor]` or `[source.window]`, checked.
#[derive(Debug)]
pub enum Incremental {
    Cursor(Cursor),
    Window(Window),
}

/// `[source.cursor]`, checked.
#[derive(Debug)]
pub struct Cursor {
    /// Computes the cursor from a response page, with `$cursor` the value so far.
    pub value: Jq,
    pub initial: Option<serde_json::Value>,
    /// Where it goes, unless only templates read it (`{{ $cursor }}`).
    pub place: Option<Place>,
    /// Turns the cursor into the text sent at `place`.
    pub format: Option<Jq>,
}

/// Where a cursor goes in a request.
#[derive(Debug, Clone)]
pub enum Place {
    Query(String),
    Header(reqwest::header::HeaderName),
    /// A JSON pointer into the body.
    Body(String),
}

/// `[source.window]`, checked.
#[derive(Debug)]
pub struct Window {
    /// The query parameters of a window's bounds, unless only templates read them (`{{ $start
    /// }}`, `{{ $end }}`).
    pub start_param: Option<String>,
    pub end_param: Option<String>,
    pub size: Duration,
    pub start: WindowStart,
    pub lag: Duration,
    pub max_windows: u32,
    pub format: TimeFormat,
}

/// Where the first window starts, when no cursor is saved yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowStart {
    At(chrono::DateTime<chrono::Utc>),
    /// This long before the first poll.
    Ago(Duration),
}

impl Window {
    /// Where the first window starts for a first poll at `now`: `start`, or `start` before
    /// now rounded down to a whole window (windows of an hour start on the hour).
    pub fn first_start(&self, now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        use chrono::DurationRound;
        match self.start {
            WindowStart::At(t) => t,
            WindowStart::Ago(ago) => {
                let t = now - chrono::Duration::from_std(ago).unwrap_or_default();
                chrono::Duration::from_std(self.size)
                    .ok()
                    .and_then(|size| t.duration_trunc(size).ok())
                    .unwrap_or(t)
            }
        }
    }
}

/// How a time is written in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    Rfc3339,
    EpochMs,
    EpochS,
    /// A strftime pattern (chrono's), in UTC.
    Pattern(String),
}

/// When polls start.
#[derive(Debug)]
pub enum Schedule {
    Every(Duration),
    Cron(Box<croner::Cron>),
}

/// Retry policy of one HTTP request.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// How one poll walks several pages.
#[derive(Debug)]
pub struct Pagination {
    pub mode: Paging,
    /// Most pages fetched per poll.
    pub max_pages: u32,
    /// A page with fewer records than this ends the poll (unset: only what the mode says, or
    /// an empty page in the page and offset modes).
    pub page_size: Option<u32>,
}

/// Where the next page of a poll is.
#[derive(Debug)]
pub enum Paging {
    /// Nowhere: one request per poll.
    Single,
    Page {
        param: String,
        start: i64,
    },
    Offset {
        param: String,
        start: i64,
    },
    /// `next` reads the page, with `$headers`.
    NextLink {
        next: Jq,
    },
    /// The poll's first request plus a token `token` takes from the page, put at `place`;
    /// `null` or `""`, or `stop` true, ends the poll.
    Cursor {
        token: Jq,
        /// Where the token goes, unless only templates read it (`{{ $token }}`).
        place: Option<Place>,
        stop: Option<Jq>,
    },
    /// The `Link` header's URL of relation `rel`, unless it carries every `stop_if` parameter.
    LinkHeader {
        rel: String,
        stop_if: Vec<(String, String)>,
    },
}

/// `[validate]`, checked: the compiled schema (if any) and the invalid-record policy.
#[derive(Debug)]
pub struct Validate {
    pub schema: Option<jsonschema::Validator>,
    /// The schema as written (what `kafka.codec = "json_schema"` registers).
    pub document: Option<serde_json::Value>,
    pub on_invalid: OnInvalid,
}

/// What happens to a record that fails the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInvalid {
    DeadLetter,
    Drop,
    Fail,
}

/// `[kafka]`, checked.
#[derive(Debug)]
pub struct Kafka {
    pub bootstrap_servers: String,
    pub topic: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub create_topics: bool,
    pub key: Option<Jq>,
    pub group_id: String,
    pub dead_letter_topic: String,
    /// Where `[source.cursor]` and `[source.window]` keep their cursors.
    pub cursor_topic: String,
    /// How often stored offsets are committed.
    pub commit_interval: Duration,
    /// Extra librdkafka properties, none of which collides with one aqueduct sets itself:
    /// for both clients, the producer only, the consumer only.
    pub properties: Vec<(String, String)>,
    pub producer_properties: Vec<(String, String)>,
    pub consumer_properties: Vec<(String, String)>,
    /// Topic configs of the topics aqueduct creates (`min.insync.replicas`, ...).
    pub topic_properties: Vec<(String, String)>,
    pub tls: Option<Tls>,
    pub sasl: Option<Sasl>,
    /// How records go into the topic's messages.
    pub codec: CodecKind,
    /// How message keys go into the topic's messages.
    pub key_codec: CodecKind,
    pub schema_registry: Option<SchemaRegistry>,
}

/// `kafka.codec`, `kafka.key_codec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecKind {
    Json,
    Avro,
    JsonSchema,
}

impl Kafka {
    /// The codec of `part` of the messages.
    pub fn codec_of(&self, part: Part) -> CodecKind {
        match part {
            Part::Key => self.key_codec,
            Part::Value => self.codec,
        }
    }
}

/// `[kafka.schema_registry]`, checked.
#[derive(Debug, Clone)]
pub struct SchemaRegistry {
    pub url: reqwest::Url,
    pub auth: RegistryAuth,
    /// CA certificates to trust; `None`: the system's.
    pub ca_file: Option<PathBuf>,
    pub subject_strategy: SubjectStrategy,
    /// The schema of the records produced (Avro's from `schema_file`, JSON Schema's from
    /// `[validate]`).
    pub value: Writer,
    /// The schema of the message keys produced (from `key_schema_file`).
    pub key: Writer,
    pub auto_register: bool,
    pub timeout: Duration,
}

impl SchemaRegistry {
    /// The schema of what is produced into `part` of the messages.
    pub fn writer(&self, part: Part) -> &Writer {
        match part {
            Part::Key => &self.key,
            Part::Value => &self.value,
        }
    }
}

/// The schema a pipeline registers for one part of the messages it produces.
#[derive(Debug, Clone, Default)]
pub struct Writer {
    /// The schema as registered; `None` when that part is not produced with a registry codec.
    pub schema: Option<String>,
    /// Its full name (Avro's `namespace.name`, JSON Schema's `title`), for the record-name
    /// strategies.
    pub record_name: Option<String>,
}

/// The two parts of a Kafka message a codec writes: the key and the value (the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Key,
    Value,
}

impl Part {
    /// As the topic-name strategy suffixes subjects: `key` or `value`.
    pub fn name(self) -> &'static str {
        match self {
            Part::Key => "key",
            Part::Value => "value",
        }
    }
}

/// How the registry is logged in to.
#[derive(Debug, Clone)]
pub enum RegistryAuth {
    None,
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

/// `schema_registry.subject_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectStrategy {
    TopicName,
    RecordName,
    TopicRecordName,
}

/// `[kafka.tls]` or `[cassandra.tls]`, checked: each file read and holding what it should.
#[derive(Debug, Clone)]
pub struct Tls {
    /// CA certificates to trust; `None`: the system's.
    pub ca_file: Option<PathBuf>,
    pub client: Option<ClientCertificate>,
    pub verify_hostname: bool,
}

/// A client certificate and its key (PEM files).
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub key_password: Option<Secret>,
}

/// `[kafka.sasl]`, checked.
#[derive(Debug, Clone)]
pub struct Sasl {
    /// As librdkafka names it: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: &'static str,
    pub username: String,
    pub password: Secret,
}

/// `[cassandra]`, checked.
#[derive(Debug)]
pub struct Cassandra {
    pub contact_points: Vec<String>,
    /// Replication map of `CREATE KEYSPACE`, `class` first.
    pub replication: Vec<(String, String)>,
    pub concurrency: usize,
    pub request_timeout: Duration,
    pub credentials: Option<(String, Secret)>,
    pub tls: Option<Tls>,
    /// `None`: read from the node (`auto`).
    pub unsynced_window: Option<Duration>,
    /// Every table a record is written to, at least one, in the file's order.
    pub tables: Vec<Table>,
}

/// One table that receives a row of every record.
#[derive(Debug)]
pub struct Table {
    /// The spec's name for it (`[cassandra.tables.<name>]`, or the table's name in the
    /// one-table form): the `table` label of its metrics and dead letters.
    pub name: String,
    pub keyspace: String,
    pub table: String,
    pub consistency: scylla::statement::Consistency,
    pub ttl: Option<Ttl>,
    /// Computes each row's write time (`USING TIMESTAMP`) from the record.
    pub writetime: Option<Jq>,
    /// What a null does to its column.
    pub nulls: Nulls,
    /// When it yields true for a record, the row is deleted by primary key instead.
    pub delete: Option<Jq>,
    pub create: bool,
    pub partition_key: Vec<String>,
    /// Clustering columns with `true` for descending order.
    pub clustering_key: Vec<(String, bool)>,
    pub columns: Vec<Column>,
    /// Storage-attached indexes, created with the table.
    pub indexes: Vec<Index>,
    /// The spec's user-defined types, in this table's keyspace, in the file's order.
    pub types: Vec<crate::cql::Udt>,
}

/// A storage-attached index (SAI) of one column.
#[derive(Debug)]
pub struct Index {
    pub name: String,
    pub column: String,
    /// `WITH OPTIONS`, in name order.
    pub options: Vec<(String, String)>,
}

/// A table's time to live.
#[derive(Debug)]
pub enum Ttl {
    Fixed(Duration),
    /// Seconds, computed from each record (null: none).
    Jq(Jq),
}

/// What a null does to its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nulls {
    /// A CQL null: the cell is deleted (a tombstone).
    Null,
    /// Left unset: the column keeps what it holds, no tombstone.
    Unset,
}

impl Table {
    /// The primary key columns' indexes in `columns`: partition key, then clustering key.
    pub fn key_columns(&self) -> impl Iterator<Item = usize> + '_ {
        self.partition_key
            .iter()
            .chain(self.clustering_key.iter().map(|(name, _)| name))
            .filter_map(|name| self.columns.iter().position(|c| &c.name == name))
    }

    /// Whether `name` is a primary key column.
    pub fn is_key(&self, name: &str) -> bool {
        self.partition_key.iter().any(|k| k == name)
            || self.clustering_key.iter().any(|(k, _)| k == name)
    }
}

/// One table column and the jq expression that computes it.
#[derive(Debug)]
pub struct Column {
    pub name: String,
    pub cql_type: CqlType,
    pub jq: Jq,
}

/// A secret; `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One problem in a spec, located as precisely as known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: PathBuf,
    /// Line and column (1-based) of the key in the file, when it is there.
    pub position: Option<(usize, usize)>,
    /// Dotted key path, e.g. `cassandra.columns.age.type`; empty for the whole file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a spec.
#[derive(Debug)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// Reads, checks and compiles the spec at `path`, with environment overrides.
/// The JSON Schema of a spec file, from the spec's own structs and their doc comments: what
/// `aqueduct schema` prints and `schemas/aqueduct-spec.json` holds.
pub fn json_schema() -> serde_json::Value {
    // Draft 7: what editors' JSON Schema support (taplo's among them) reads.
    let mut schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<raw::RawSpec>();
    schema.insert("title".into(), "aqueduct pipeline spec".into());
    schema.to_value()
}

pub fn load(path: &Path) -> Result<Spec, SpecErrors> {
    let whole = |message: String| {
        SpecErrors(vec![SpecError {
            file: path.to_owned(),
            position: None,
            key: String::new(),
            message,
        }])
    };
    // figment reads a missing file as an empty one; say what is really wrong.
    let text =
        std::fs::read_to_string(path).map_err(|e| whole(format!("cannot read spec: {e}")))?;
    let locator = locate::Locator::new(path, &text);
    let mut figment = Figment::new()
        .merge(Toml::string(&text))
        .merge(env_overrides());
    if let Some(properties) = env_properties() {
        figment = figment.merge(properties);
    }
    let raw: raw::RawSpec = match figment.extract() {
        Ok(raw) => raw,
        Err(errors) => {
            return Err(SpecErrors(
                errors
                    .into_iter()
                    .map(|e| locator.figment_error(e))
                    .collect(),
            ));
        }
    };
    check::check(raw, path, &locator)
}

/// Reads and checks the `[source]` table alone of `text` (TOML; other tables are passed
/// over), with the `AQUEDUCT_SOURCE__` environment overrides a spec gets: what `aqueduct init`
/// asks an API with. `path` names the text in errors, and its folder is where relative files
/// (`token_file`, ...) are read from.
pub fn load_source(path: &Path, text: &str) -> Result<Source, SpecErrors> {
    #[derive(serde::Deserialize)]
    struct SourceAlone {
        source: raw::RawSource,
    }
    let locator = locate::Locator::new(path, text);
    let figment = Figment::new()
        .merge(Toml::string(text))
        .merge(env_overrides());
    match figment.extract::<SourceAlone>() {
        Ok(raw) => check::source_alone(raw.source, path, &locator),
        Err(errors) => Err(SpecErrors(
            errors
                .into_iter()
                .map(|e| locator.figment_error(e))
                .collect(),
        )),
    }
}

/// `AQUEDUCT_SECTION__KEY=value` variables, plus the top-level keys (`AQUEDUCT_NAME`,
/// `AQUEDUCT_SHUTDOWN_TIMEOUT`). Others without `__` (such as the local stack's
/// `AQUEDUCT_KAFKA_PORT`) are not spec keys and are left alone.
fn env_overrides() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|key| {
            let key = key.as_str();
            (key.contains("__") && property_map(key).is_none())
                || TOP_LEVEL_KEYS.iter().any(|k| key.eq_ignore_ascii_case(k))
        })
        .split("__")
}

/// The maps of librdkafka properties and topic configs under `[kafka]`. Their keys are dotted
/// (`sasl.password`), which a figment key path cannot hold, so they are read from the
/// environment apart.
const PROPERTY_MAPS: &[&str] = &[
    "properties",
    "producer_properties",
    "consumer_properties",
    "topic_properties",
];

/// For `KAFKA__PROPERTIES__SASL_PASSWORD` (the prefix stripped): the map (`properties`) and
/// the librdkafka key (`sasl.password`: lower case, `_` for `.`, as no librdkafka property
/// or topic config name holds an underscore).
fn property_map(key: &str) -> Option<(&'static str, String)> {
    let mut parts = key.splitn(3, "__");
    let section = parts.next()?;
    let map = parts.next()?;
    let name = parts.next()?;
    let map = PROPERTY_MAPS
        .iter()
        .find(|m| section.eq_ignore_ascii_case("kafka") && map.eq_ignore_ascii_case(m))?;
    Some((map, name.to_ascii_lowercase().replace('_', ".")))
}

/// `AQUEDUCT_KAFKA__PROPERTIES__SASL_PASSWORD=...` as `kafka.properties."sasl.password"`
/// (and the same for the other [`PROPERTY_MAPS`]): where operators keep
/// passwords. None without any, so a spec missing `[kafka]` is still told so.
fn env_properties() -> Option<Serialized<BTreeMap<&'static str, BTreeMap<String, String>>>> {
    let mut maps: BTreeMap<&'static str, BTreeMap<String, String>> = BTreeMap::new();
    for (key, value) in std::env::vars() {
        let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if let Some((map, name)) = property_map(rest) {
            maps.entry(map).or_default().insert(name, value);
        }
    }
    (!maps.is_empty()).then(|| Serialized::default("kafka", maps))
}

/// Spec keys outside any section (lower case, as figment reports env keys).
const TOP_LEVEL_KEYS: &[&str] = &["name", "shutdown_timeout"];

#[cfg(test)]
pub(crate) mod tests;
