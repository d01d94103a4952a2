//! Turns a [`RawSpec`] into a [`Spec`]: every cross-field rule, every compile step (jq, JSON
//! Schema, cron, CQL types), each failure collected with its key path rather than stopping at
//! the first.

use std::path::Path;

use scylla::statement::Consistency;

use super::locate::Locator;
use super::raw::{RawCassandra, RawKafka, RawPagination, RawSource, RawSpec, RawValidate, Scalar};
use super::{
    Cassandra, Column, Kafka, OnInvalid, Pagination, Retry, Schedule, Secret, Source, Spec,
    SpecError, SpecErrors, Validate, infer,
};
use crate::cassandra::types::{CqlType, JsonKind};
use crate::jq::Jq;

/// librdkafka properties aqueduct sets from typed spec keys or for its guarantees; setting
/// them in `kafka.properties` is an error naming both.
const RESERVED_KAFKA_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.bootstrap_servers"),
    ("metadata.broker.list", "kafka.bootstrap_servers"),
    ("group.id", "kafka.group_id"),
    ("enable.idempotence", "aqueduct's idempotent producer"),
    ("acks", "aqueduct's idempotent producer (acks=all)"),
    (
        "enable.auto.offset.store",
        "aqueduct's at-least-once offset handling",
    ),
    (
        "enable.auto.commit",
        "aqueduct's at-least-once offset handling",
    ),
];

/// Cassandra's largest TTL: 20 years.
const MAX_TTL_SECS: u64 = 630_720_000;

struct Checker<'a> {
    locator: &'a Locator<'a>,
    errors: Vec<SpecError>,
}

impl Checker<'_> {
    fn err(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(self.locator.error(key, message));
    }

    fn jq(&mut self, key: &str, code: &str) -> Option<Jq> {
        Jq::compile(code)
            .map_err(|e| self.err(key, format!("{e} in `{code}`")))
            .ok()
    }
}

pub(super) fn check(raw: RawSpec, path: &Path, locator: &Locator) -> Result<Spec, SpecErrors> {
    let mut c = Checker {
        locator,
        errors: Vec::new(),
    };
    let name = match raw.name {
        Some(name) => name,
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pipeline".into()),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        c.err(
            "name",
            format!("`{name}` may hold only letters, digits, '-', '_' and '.'"),
        );
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let source = source(&mut c, raw.source);
    let validate = validate(&mut c, raw.validate, base);
    let kafka = kafka(&mut c, raw.kafka, &name);
    let cassandra = cassandra(&mut c, raw.cassandra);
    match (source, validate, kafka, cassandra) {
        (Some(source), Some(validate), Some(kafka), Some(cassandra)) if c.errors.is_empty() => {
            Ok(Spec {
                name,
                path: path.to_owned(),
                shutdown_timeout: raw.shutdown_timeout,
                source,
                validate,
                kafka,
                cassandra,
            })
        }
        _ => Err(SpecErrors(c.errors)),
    }
}

fn source(c: &mut Checker, raw: RawSource) -> Option<Source> {
    let mut url = match reqwest::Url::parse(&raw.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
        Ok(url) => {
            c.err(
                "source.url",
                format!("scheme `{}` is not http or https", url.scheme()),
            );
            None
        }
        Err(e) => {
            c.err("source.url", format!("`{}` is not a URL: {e}", raw.url));
            None
        }
    };
    if let Some(url) = url.as_mut() {
        for (k, v) in &raw.query {
            url.query_pairs_mut().append_pair(k, &v.to_string());
        }
    }
    let method = match raw.method.to_ascii_uppercase().as_str() {
        "GET" => Some(reqwest::Method::GET),
        "POST" => Some(reqwest::Method::POST),
        other => {
            c.err("source.method", format!("`{other}` is not GET or POST"));
            None
        }
    };
    if raw.body.is_some() && method == Some(reqwest::Method::GET) {
        c.err("source.body", "a body is only sent with method = \"POST\"");
    }
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in &raw.headers {
        let key = format!("source.headers.{k}");
        match (
            reqwest::header::HeaderName::from_bytes(k.as_bytes()),
            reqwest::header::HeaderValue::from_str(v),
        ) {
            (Ok(name), Ok(value)) => {
                headers.insert(name, value);
            }
            (Err(_), _) => c.err(&key, format!("`{k}` is not a valid header name")),
            (_, Err(_)) => c.err(&key, "the value is not a valid header value"),
        }
    }
    let schedule = match (raw.schedule.every, raw.schedule.cron) {
        (Some(every), None) if every.is_zero() => {
            c.err("source.schedule.every", "must be longer than 0s");
            None
        }
        (Some(every), None) => Some(Schedule::Every(every)),
        (None, Some(expr)) => match expr.parse::<croner::Cron>() {
            Ok(cron) => Some(Schedule::Cron(Box::new(cron))),
            Err(e) => {
                c.err(
                    "source.schedule.cron",
                    format!("`{expr}` is not a cron expression: {e}"),
                );
                None
            }
        },
        _ => {
            c.err(
                "source.schedule",
                "set exactly one of `every` (e.g. \"30s\") and `cron`",
            );
            None
        }
    };
    if raw.timeout.is_zero() {
        c.err("source.timeout", "must be longer than 0s");
    }
    let records = c.jq("source.records", &raw.records);
    let retry = Retry {
        attempts: raw.retry.attempts,
        initial_backoff: raw.retry.initial_backoff,
        max_backoff: raw.retry.max_backoff,
    };
    if retry.attempts == 0 {
        c.err(
            "source.retry.attempts",
            "must be at least 1 (the first attempt counts)",
        );
    }
    if retry.initial_backoff > retry.max_backoff {
        c.err(
            "source.retry.initial_backoff",
            "is longer than source.retry.max_backoff",
        );
    }
    let pagination = match raw.pagination {
        None => Some(None),
        Some(p) => pagination(c, p).map(Some),
    };
    Some(Source {
        url: url?,
        method: method?,
        headers,
        body: raw.body,
        schedule: schedule?,
        timeout: raw.timeout,
        records: records?,
        retry,
        pagination: pagination?,
    })
}

fn pagination(c: &mut Checker, raw: RawPagination) -> Option<Pagination> {
    if raw.max_pages == 0 {
        c.err("source.pagination.max_pages", "must be at least 1");
    }
    let param = |c: &mut Checker| {
        if raw.next.is_some() {
            c.err(
                "source.pagination.next",
                format!("is for mode = \"next_link\", not \"{}\"", raw.mode),
            );
        }
        match &raw.param {
            Some(p) if !p.is_empty() => Some(p.clone()),
            _ => {
                c.err(
                    "source.pagination.param",
                    format!("mode = \"{}\" needs the query parameter's name", raw.mode),
                );
                None
            }
        }
    };
    match raw.mode.as_str() {
        "page" => Some(Pagination::Page {
            param: param(c)?,
            start: raw.start.unwrap_or(1),
            max_pages: raw.max_pages,
        }),
        "offset" => Some(Pagination::Offset {
            param: param(c)?,
            start: raw.start.unwrap_or(0),
            max_pages: raw.max_pages,
        }),
        "next_link" => {
            if raw.param.is_some() || raw.start.is_some() {
                c.err(
                    "source.pagination",
                    "`param` and `start` are for the page and offset modes",
                );
            }
            let Some(code) = raw.next else {
                c.err(
                    "source.pagination.next",
                    "mode = \"next_link\" needs a jq expression yielding the next URL",
                );
                return None;
            };
            Some(Pagination::NextLink {
                next: c.jq("source.pagination.next", &code)?,
                max_pages: raw.max_pages,
            })
        }
        other => {
            c.err(
                "source.pagination.mode",
                format!("`{other}` is not page, offset or next_link"),
            );
            None
        }
    }
}

fn validate(c: &mut Checker, raw: RawValidate, base: &Path) -> Option<Validate> {
    let on_invalid = match raw.on_invalid.as_str() {
        "dead_letter" => Some(OnInvalid::DeadLetter),
        "drop" => Some(OnInvalid::Drop),
        "fail" => Some(OnInvalid::Fail),
        other => {
            c.err(
                "validate.on_invalid",
                format!("`{other}` is not dead_letter, drop or fail"),
            );
            None
        }
    };
    let (key, document) = match (raw.schema_file, raw.schema) {
        (Some(_), Some(_)) => {
            c.err(
                "validate",
                "set one of `schema_file` and `schema`, not both",
            );
            return None;
        }
        (None, None) => {
            return Some(Validate {
                schema: None,
                on_invalid: on_invalid?,
            });
        }
        (Some(file), None) => {
            let full = base.join(&file);
            let text = match std::fs::read_to_string(&full) {
                Ok(text) => text,
                Err(e) => {
                    c.err(
                        "validate.schema_file",
                        format!("cannot read {}: {e}", full.display()),
                    );
                    return None;
                }
            };
            match serde_json::from_str(&text) {
                Ok(doc) => ("validate.schema_file", doc),
                Err(e) => {
                    c.err(
                        "validate.schema_file",
                        format!("{} is not JSON: {e}", full.display()),
                    );
                    return None;
                }
            }
        }
        (None, Some(serde_json::Value::String(text))) => match serde_json::from_str(&text) {
            Ok(doc) => ("validate.schema", doc),
            Err(e) => {
                c.err(
                    "validate.schema",
                    format!("the inline schema is not JSON: {e}"),
                );
                return None;
            }
        },
        (None, Some(doc)) => ("validate.schema", doc),
    };
    match jsonschema::validator_for(&document) {
        Ok(schema) => Some(Validate {
            schema: Some(schema),
            on_invalid: on_invalid?,
        }),
        Err(e) => {
            c.err(
                key,
                format!(
                    "invalid JSON Schema: {e} (at schema path {})",
                    e.schema_path()
                ),
            );
            None
        }
    }
}

fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
}

fn kafka(c: &mut Checker, raw: RawKafka, name: &str) -> Option<Kafka> {
    if raw.bootstrap_servers.trim().is_empty() {
        c.err("kafka.bootstrap_servers", "is empty");
    }
    if !valid_topic(&raw.topic) {
        c.err(
            "kafka.topic",
            format!(
                "`{}` is not a valid topic name (letters, digits, '.', '_', '-'; at most 249)",
                raw.topic
            ),
        );
    }
    let dead_letter_topic = raw
        .dead_letter_topic
        .unwrap_or_else(|| format!("{}_dlq", raw.topic));
    if !valid_topic(&dead_letter_topic) {
        c.err(
            "kafka.dead_letter_topic",
            format!("`{dead_letter_topic}` is not a valid topic name"),
        );
    } else if dead_letter_topic == raw.topic {
        c.err("kafka.dead_letter_topic", "must differ from kafka.topic");
    }
    if raw.partitions < 1 {
        c.err("kafka.partitions", "must be at least 1");
    }
    if raw.replication_factor < 1 {
        c.err("kafka.replication_factor", "must be at least 1");
    }
    let key = match &raw.key {
        Some(code) => Some(c.jq("kafka.key", code)?),
        None => None,
    };
    let group_id = raw.group_id.unwrap_or_else(|| format!("aqueduct-{name}"));
    if group_id.trim().is_empty() {
        c.err("kafka.group_id", "is empty");
    }
    let properties = kafka_properties(c, "kafka.properties", raw.properties);
    let producer_properties =
        kafka_properties(c, "kafka.producer_properties", raw.producer_properties);
    let consumer_properties =
        kafka_properties(c, "kafka.consumer_properties", raw.consumer_properties);
    Some(Kafka {
        bootstrap_servers: raw.bootstrap_servers,
        topic: raw.topic,
        partitions: raw.partitions,
        replication_factor: raw.replication_factor,
        create_topics: raw.create_topics,
        key,
        group_id,
        dead_letter_topic,
        properties,
        producer_properties,
        consumer_properties,
    })
}

/// Pass-through librdkafka properties, refusing those aqueduct sets itself.
fn kafka_properties(
    c: &mut Checker,
    section: &str,
    raw: std::collections::BTreeMap<String, Scalar>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in raw {
        if let Some((_, owner)) = RESERVED_KAFKA_PROPERTIES.iter().find(|(p, _)| *p == k) {
            c.err(
                &format!("{section}.{k}"),
                format!("`{k}` is set by {owner}; remove it here"),
            );
            continue;
        }
        out.push((k, v.to_string()));
    }
    out
}

/// CQL identifiers aqueduct accepts: they are always double-quoted in statements, so this
/// is about readable names and the 48-character limit, not about injection.
pub(crate) fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 48
        && chars.next().is_some_and(|ch| ch.is_ascii_alphabetic())
        && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn consistency(name: &str) -> Option<Consistency> {
    Some(match name.to_ascii_lowercase().as_str() {
        "any" => Consistency::Any,
        "one" => Consistency::One,
        "two" => Consistency::Two,
        "three" => Consistency::Three,
        "quorum" => Consistency::Quorum,
        "all" => Consistency::All,
        "local_quorum" => Consistency::LocalQuorum,
        "each_quorum" => Consistency::EachQuorum,
        "local_one" => Consistency::LocalOne,
        _ => return None,
    })
}

fn cassandra(c: &mut Checker, raw: RawCassandra) -> Option<Cassandra> {
    if raw.contact_points.is_empty() {
        c.err(
            "cassandra.contact_points",
            "name at least one node, e.g. [\"127.0.0.1:9042\"]",
        );
    }
    let contact_points = raw
        .contact_points
        .iter()
        .map(|p| {
            if p.contains(':') {
                p.clone()
            } else {
                format!("{p}:9042")
            }
        })
        .collect();
    for (key, value) in [
        ("cassandra.keyspace", &raw.keyspace),
        ("cassandra.table", &raw.table),
    ] {
        if !valid_identifier(value) {
            c.err(key, format!("`{value}` is not a valid name (a letter, then letters, digits or '_'; at most 48)"));
        }
    }
    let replication = replication(c, raw.replication);
    let consistency = consistency(&raw.consistency);
    if consistency.is_none() {
        c.err("cassandra.consistency", format!("`{}` is not one of any, one, two, three, quorum, all, local_quorum, each_quorum, local_one", raw.consistency));
    }
    if let Some(ttl) = raw.ttl {
        if ttl.as_secs() == 0 || ttl.as_secs() > MAX_TTL_SECS {
            c.err(
                "cassandra.ttl",
                "must be between 1s and 20 years (Cassandra's limit)",
            );
        }
    }
    if raw.concurrency == 0 {
        c.err("cassandra.concurrency", "must be at least 1");
    }
    if raw.request_timeout.is_zero() {
        c.err("cassandra.request_timeout", "must be longer than 0s");
    }
    let credentials = match (raw.username, raw.password) {
        (Some(user), Some(password)) => Some((user, Secret(password))),
        (None, None) => None,
        _ => {
            c.err(
                "cassandra",
                "set both `username` and `password`, or neither",
            );
            None
        }
    };
    // The key is checked against every column named, even one whose expression is broken.
    let declared: Vec<(String, Option<CqlType>)> = raw
        .columns
        .iter()
        .map(|(name, col)| (name.clone(), col.cql_type.parse().ok()))
        .collect();
    let (partition_key, clustering_key) =
        primary_key(c, &raw.partition_key, &raw.clustering_key, &declared);
    let columns = columns(c, raw.columns);
    Some(Cassandra {
        contact_points,
        keyspace: raw.keyspace,
        table: raw.table,
        replication: replication?,
        consistency: consistency?,
        ttl: raw.ttl,
        create: raw.create,
        concurrency: raw.concurrency,
        request_timeout: raw.request_timeout,
        credentials,
        partition_key,
        clustering_key,
        columns,
    })
}

fn replication(
    c: &mut Checker,
    raw: Option<std::collections::BTreeMap<String, Scalar>>,
) -> Option<Vec<(String, String)>> {
    let Some(mut map) = raw else {
        return Some(vec![
            ("class".into(), "SimpleStrategy".into()),
            ("replication_factor".into(), "1".into()),
        ]);
    };
    let class = match map.remove("class") {
        Some(Scalar::String(class))
            if ["SimpleStrategy", "NetworkTopologyStrategy"].contains(&class.as_str()) =>
        {
            class
        }
        _ => {
            c.err(
                "cassandra.replication.class",
                "must be \"SimpleStrategy\" or \"NetworkTopologyStrategy\"",
            );
            return None;
        }
    };
    let mut out = vec![("class".to_owned(), class)];
    for (k, v) in map {
        let ok_name = k
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch));
        match v {
            Scalar::Integer(n) if n >= 1 && ok_name => out.push((k, n.to_string())),
            _ => c.err(
                &format!("cassandra.replication.{k}"),
                "must be a replication factor (a whole number, at least 1)",
            ),
        }
    }
    if out.len() == 1 {
        c.err(
            "cassandra.replication",
            "name a replication factor, e.g. replication_factor = 1",
        );
    }
    Some(out)
}

fn columns(
    c: &mut Checker,
    raw: std::collections::BTreeMap<String, super::raw::RawColumn>,
) -> Vec<Column> {
    if raw.is_empty() {
        c.err(
            "cassandra.columns",
            "no columns: add `name = { type = \"text\", jq = \".field\" }`",
        );
    }
    let mut out = Vec::new();
    for (name, col) in raw {
        let key = format!("cassandra.columns.{name}");
        if !valid_identifier(&name) {
            c.err(&key, format!("`{name}` is not a valid column name"));
        }
        let cql_type = col
            .cql_type
            .parse::<CqlType>()
            .map_err(|e| c.err(&format!("{key}.type"), e))
            .ok();
        let jq = c.jq(&format!("{key}.jq"), &col.jq);
        let (Some(cql_type), Some(jq)) = (cql_type, jq) else {
            continue;
        };
        if let Some(kinds) = infer::kinds(&col.jq) {
            let yields: Vec<JsonKind> =
                kinds.into_iter().filter(|k| *k != JsonKind::Null).collect();
            if !yields.is_empty() && !yields.iter().any(|k| cql_type.accepts(*k)) {
                let what: Vec<String> = yields.iter().map(|k| k.to_string()).collect();
                c.err(
                    &format!("{key}.jq"),
                    format!(
                        "type mismatch: column `{name}` is {cql_type}, but `{}` can only yield {}",
                        col.jq,
                        what.join(" or ")
                    ),
                );
            }
        }
        out.push(Column { name, cql_type, jq });
    }
    // Columns in the order the file lists them (DDL reads as written); any added only by
    // environment variables come last.
    out.sort_by_key(|col| {
        c.locator
            .key_position(&format!("cassandra.columns.{}", col.name))
            .unwrap_or((usize::MAX, 0))
    });
    out
}

fn primary_key(
    c: &mut Checker,
    partition: &[String],
    clustering: &[String],
    columns: &[(String, Option<CqlType>)],
) -> (Vec<String>, Vec<(String, bool)>) {
    if partition.is_empty() {
        c.err(
            "cassandra.partition_key",
            "name at least one column, e.g. partition_key = [\"id\"]",
        );
    }
    let check_column = |c: &mut Checker, key: &str, name: &str, seen: &mut Vec<String>| {
        if seen.iter().any(|s| s == name) {
            c.err(
                key,
                format!("column `{name}` is named twice in the primary key"),
            );
        }
        seen.push(name.to_owned());
        match columns.iter().find(|(col, _)| col == name) {
            None => c.err(key, format!("column `{name}` is not in cassandra.columns")),
            Some((_, Some(ty))) if ty.is_collection() => c.err(
                key,
                format!("column `{name}` is a {ty}; a primary key column cannot be a collection"),
            ),
            Some(_) => {}
        }
    };
    let mut names = Vec::new();
    for name in partition {
        check_column(c, "cassandra.partition_key", name, &mut names);
    }
    let mut clustering_key = Vec::new();
    for entry in clustering {
        let mut words = entry.split_whitespace();
        let name = words.next().unwrap_or_default();
        let desc = match words.next().map(|w| w.to_ascii_lowercase()) {
            None => false,
            Some(w) if w == "asc" => false,
            Some(w) if w == "desc" => true,
            Some(w) => {
                c.err(
                    "cassandra.clustering_key",
                    format!("`{w}` in `{entry}` is not asc or desc"),
                );
                false
            }
        };
        check_column(c, "cassandra.clustering_key", name, &mut names);
        clustering_key.push((name.to_owned(), desc));
    }
    (partition.to_vec(), clustering_key)
}
