//! `[kafka]`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Checker, security};
use crate::spec::Kafka;
use crate::spec::raw::{RawKafka, Scalar};

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
    ("auto.commit.interval.ms", "kafka.commit_interval"),
];

fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
}

/// librdkafka properties `[kafka.tls]` sets.
const TLS_PROPERTIES: &[&str] = &[
    "security.protocol",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.endpoint.identification.algorithm",
];

/// librdkafka properties `[kafka.sasl]` sets.
const SASL_PROPERTIES: &[&str] = &[
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
];

pub(super) fn kafka(c: &mut Checker, raw: RawKafka, name: &str, base: &Path) -> Option<Kafka> {
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
    if !valid_topic(&raw.cursor_topic) {
        c.err(
            "kafka.cursor_topic",
            format!("`{}` is not a valid topic name", raw.cursor_topic),
        );
    } else if raw.cursor_topic == raw.topic || raw.cursor_topic == dead_letter_topic {
        c.err(
            "kafka.cursor_topic",
            "must differ from kafka.topic and kafka.dead_letter_topic",
        );
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
    if raw.commit_interval < std::time::Duration::from_millis(10) {
        c.err("kafka.commit_interval", "must be at least 10ms");
    }
    let tls = raw.tls.map(|tls| security::tls(c, "kafka", tls, base));
    let sasl = raw.sasl.map(|sasl| security::sasl(c, sasl, base));
    let mut owned: Vec<(&str, &str)> = RESERVED_KAFKA_PROPERTIES.to_vec();
    if tls.is_some() {
        owned.extend(TLS_PROPERTIES.iter().map(|p| (*p, "[kafka.tls]")));
    }
    if sasl.is_some() {
        owned.extend(SASL_PROPERTIES.iter().map(|p| (*p, "[kafka.sasl]")));
    }
    let properties = kafka_properties(c, "kafka.properties", raw.properties, &owned);
    let producer_properties = kafka_properties(
        c,
        "kafka.producer_properties",
        raw.producer_properties,
        &owned,
    );
    let consumer_properties = kafka_properties(
        c,
        "kafka.consumer_properties",
        raw.consumer_properties,
        &owned,
    );
    let topic_properties = raw
        .topic_properties
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    Some(Kafka {
        bootstrap_servers: raw.bootstrap_servers,
        topic: raw.topic,
        partitions: raw.partitions,
        replication_factor: raw.replication_factor,
        create_topics: raw.create_topics,
        key,
        group_id,
        dead_letter_topic,
        cursor_topic: raw.cursor_topic,
        commit_interval: raw.commit_interval,
        properties,
        producer_properties,
        consumer_properties,
        topic_properties,
        tls,
        sasl: match sasl {
            Some(sasl) => Some(sasl?),
            None => None,
        },
    })
}

/// Pass-through librdkafka properties, refusing those aqueduct sets itself (`owned`: property,
/// what sets it).
fn kafka_properties(
    c: &mut Checker,
    section: &str,
    raw: BTreeMap<String, Scalar>,
    owned: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in raw {
        if let Some((_, owner)) = owned.iter().find(|(p, _)| *p == k) {
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
