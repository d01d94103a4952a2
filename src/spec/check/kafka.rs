//! `[kafka]`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Checker, security};
use crate::spec::raw::{RawKafka, RawSchemaRegistry, Scalar};
use crate::spec::{CodecKind, Kafka, RegistryAuth, SchemaRegistry, SubjectStrategy, Writer};

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

pub(super) fn kafka(
    c: &mut Checker,
    raw: RawKafka,
    name: &str,
    base: &Path,
    validated: Option<&serde_json::Value>,
    produces: bool,
) -> Option<Kafka> {
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
        Some(_) if !produces => {
            c.err(
                "kafka.key",
                "keys the records aqueduct produces, and without [source] it produces none (it loads the topic as others keyed it)",
            );
            None
        }
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
    let codec = codec_kind(c, "kafka.codec", &raw.codec);
    let key_codec = codec_kind(c, "kafka.key_codec", &raw.key_codec);
    let produces_keys = produces && raw.key.is_some();
    if key_codec.is_some_and(|k| k != CodecKind::Json) && produces && !produces_keys {
        c.err(
            "kafka.key_codec",
            "writes the message keys, and without kafka.key the records have none",
        );
    }
    let schema_registry = match (raw.schema_registry, codec, key_codec) {
        (None, Some(codec), Some(key_codec)) => {
            for (field, kind, name) in [
                ("kafka.codec", codec, &raw.codec),
                ("kafka.key_codec", key_codec, &raw.key_codec),
            ] {
                if kind != CodecKind::Json {
                    c.err(
                        field,
                        format!("`{name}` needs [kafka.schema_registry]: the messages carry the schema's id in the registry"),
                    );
                }
            }
            None
        }
        (Some(raw), Some(codec), Some(key_codec)) => {
            let parts = Parts {
                codec,
                key_codec,
                validated,
                produces,
                produces_keys,
            };
            schema_registry(c, raw, parts, base)
        }
        _ => None,
    };
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
        codec: codec?,
        key_codec: key_codec?,
        schema_registry,
    })
}

/// `[kafka.schema_registry]` for the codecs of `parts`: the schemas of the records and keys
/// produced read and parsed here, so a broken one is named by `check`, not by the registry at
/// start.
fn schema_registry(
    c: &mut Checker,
    raw: RawSchemaRegistry,
    parts: Parts,
    base: &Path,
) -> Option<SchemaRegistry> {
    let Parts {
        codec,
        key_codec,
        validated,
        produces,
        produces_keys,
    } = parts;
    let key = |k: &str| format!("kafka.schema_registry.{k}");
    let url = match reqwest::Url::parse(&raw.url) {
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            c.err(
                &key("url"),
                "holds a login: give it as `username` and `password` (or `password_file`), which are never printed",
            );
            None
        }
        Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
        Ok(url) => {
            c.err(&key("url"), format!("`{url}` is not an http or https URL"));
            None
        }
        Err(e) => {
            c.err(&key("url"), format!("`{}` is not a URL: {e}", raw.url));
            None
        }
    };
    let password = security::secret(c, &key("password"), raw.password, raw.password_file, base);
    let token = security::secret(c, &key("token"), raw.token, raw.token_file, base);
    let auth = match (raw.username, password, token) {
        (None, None, None) => Some(RegistryAuth::None),
        (Some(username), Some(password), None) => Some(RegistryAuth::Basic { username, password }),
        (None, None, Some(token)) => Some(RegistryAuth::Bearer(token)),
        (Some(_), None, None) => {
            c.err(
                &key("username"),
                "needs `password` (or `password_file`, or AQUEDUCT_KAFKA__SCHEMA_REGISTRY__PASSWORD)",
            );
            None
        }
        (None, Some(_), None) => {
            c.err(&key("password"), "needs `username`");
            None
        }
        _ => {
            c.err(
                &key("token"),
                "set `username` and `password`, or `token`, not both",
            );
            None
        }
    };
    let ca_file = raw.ca_file.map(|file| base.join(file));
    if let Some(file) = &ca_file
        && let Err(e) = std::fs::metadata(file)
    {
        c.err(
            &key("ca_file"),
            format!("cannot read {}: {e}", file.display()),
        );
    }
    let subject_strategy = match raw.subject_strategy.as_str() {
        "topic_name" => Some(SubjectStrategy::TopicName),
        "record_name" => Some(SubjectStrategy::RecordName),
        "topic_record_name" => Some(SubjectStrategy::TopicRecordName),
        other => {
            c.err(
                &key("subject_strategy"),
                format!(
                    "`{other}` is not {}",
                    super::one_of(crate::spec::raw::SUBJECT_STRATEGIES)
                ),
            );
            None
        }
    };
    if codec == CodecKind::Json && key_codec == CodecKind::Json {
        c.err(
            "kafka.schema_registry",
            "is used only with kafka.codec or kafka.key_codec \"avro\" or \"json_schema\"",
        );
        return None;
    }
    let value = match codec {
        CodecKind::Json => {
            if raw.schema_file.is_some() {
                c.err(&key("schema_file"), "is for kafka.codec = \"avro\"");
            }
            Some(Writer::default())
        }
        CodecKind::Avro => match &raw.schema_file {
            None if !produces => Some(Writer::default()),
            None => {
                c.err(
                    &key("schema_file"),
                    "is needed with kafka.codec = \"avro\": the Avro schema (.avsc) of the records produced",
                );
                None
            }
            Some(file) => avro_writer(c, &key("schema_file"), &base.join(file)),
        },
        CodecKind::JsonSchema => {
            if raw.schema_file.is_some() {
                c.err(
                    &key("schema_file"),
                    "is for Avro; with json_schema, [validate]'s schema is the one registered",
                );
            }
            if produces && validated.is_none() {
                c.err(
                    "kafka.codec",
                    "`json_schema` registers [validate]'s schema: set validate.schema or validate.schema_file",
                );
            }
            Some(json_schema_writer(validated.filter(|_| produces)))
        }
    };
    let key_writer = match (key_codec, &raw.key_schema_file) {
        (CodecKind::Json, None) => Some(Writer::default()),
        (CodecKind::Json, Some(_)) => {
            c.err(
                &key("key_schema_file"),
                "is for kafka.key_codec = \"avro\" or \"json_schema\"",
            );
            None
        }
        (_, None) if !produces_keys => Some(Writer::default()),
        (_, None) => {
            c.err(
                &key("key_schema_file"),
                "is needed with this kafka.key_codec: the schema of the keys kafka.key computes",
            );
            None
        }
        (_, Some(_)) if !produces_keys => {
            c.err(
                &key("key_schema_file"),
                "is the schema of the keys aqueduct produces, and this pipeline produces none (it needs [source] and kafka.key)",
            );
            None
        }
        (CodecKind::Avro, Some(file)) => avro_writer(c, &key("key_schema_file"), &base.join(file)),
        (_, Some(file)) => {
            let full = base.join(file);
            let document = std::fs::read_to_string(&full)
                .map_err(|e| format!("cannot read {}: {e}", full.display()))
                .and_then(|text| {
                    serde_json::from_str::<serde_json::Value>(&text)
                        .map_err(|e| format!("{} is not JSON: {e}", full.display()))
                })
                .and_then(|doc| match jsonschema::validator_for(&doc) {
                    Ok(_) => Ok(doc),
                    Err(e) => Err(format!(
                        "{} is not a valid JSON Schema: {e}",
                        full.display()
                    )),
                });
            match document {
                Ok(doc) => Some(json_schema_writer(Some(&doc))),
                Err(e) => {
                    c.err(&key("key_schema_file"), e);
                    None
                }
            }
        }
    };
    let record_strategy = subject_strategy.is_some_and(|s| s != SubjectStrategy::TopicName);
    for (writer, kind, field) in [
        (&value, codec, "schema_file"),
        (&key_writer, key_codec, "key_schema_file"),
    ] {
        let Some(writer) = writer else { continue };
        if record_strategy && writer.schema.is_some() && writer.record_name.is_none() {
            c.err(
                &key("subject_strategy"),
                match kind {
                    CodecKind::Avro => format!(
                        "names the subject by the record's name, and the Avro schema of {field} is no named record"
                    ),
                    _ if field == "schema_file" => "names the subject by the record's name: give [validate]'s schema a `title`".to_owned(),
                    _ => format!("names the subject by the record's name: give the JSON Schema of {field} a `title`"),
                },
            );
        }
    }
    if raw.timeout.is_zero() {
        c.err(&key("timeout"), "must be longer than 0s");
    }
    Some(SchemaRegistry {
        url: url?,
        auth: auth?,
        ca_file,
        subject_strategy: subject_strategy?,
        value: value?,
        key: key_writer?,
        auto_register: raw.auto_register,
        timeout: raw.timeout,
    })
}

/// What the registry serves: each part's codec and whether aqueduct produces it.
struct Parts<'v> {
    codec: CodecKind,
    key_codec: CodecKind,
    /// `[validate]`'s schema, registered by `json_schema`.
    validated: Option<&'v serde_json::Value>,
    produces: bool,
    produces_keys: bool,
}

/// `kafka.codec` or `kafka.key_codec`.
fn codec_kind(c: &mut Checker, field: &str, name: &str) -> Option<CodecKind> {
    match name {
        "json" => Some(CodecKind::Json),
        "avro" => Some(CodecKind::Avro),
        "json_schema" => Some(CodecKind::JsonSchema),
        other => {
            c.err(
                field,
                format!(
                    "`{other}` is not {}",
                    super::one_of(crate::spec::raw::CODECS)
                ),
            );
            None
        }
    }
}

/// The Avro schema (`.avsc`) in `file`, read and parsed.
fn avro_writer(c: &mut Checker, field: &str, file: &Path) -> Option<Writer> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| c.err(field, format!("cannot read {}: {e}", file.display())))
        .ok()?;
    match apache_avro::Schema::parse_str(&text) {
        Ok(schema) => {
            let record_name = match &schema {
                apache_avro::Schema::Record(r) => Some(r.name.fullname(None)),
                _ => None,
            };
            Some(Writer {
                schema: Some(text),
                record_name,
            })
        }
        Err(e) => {
            c.err(
                field,
                format!("{} is not an Avro schema: {e}", file.display()),
            );
            None
        }
    }
}

/// A JSON Schema as registered, named by its `title`.
fn json_schema_writer(document: Option<&serde_json::Value>) -> Writer {
    Writer {
        schema: document.map(|doc| doc.to_string()),
        record_name: document
            .and_then(|doc| doc.get("title"))
            .and_then(|t| t.as_str())
            .map(str::to_owned),
    }
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
