//! The codec layer: the one place where a record becomes a Kafka message payload and a
//! payload becomes the record again. On either side of it a record is JSON text: the ingest
//! hands it the text the API sent (with that text parsed), and the loader and replay get JSON
//! text back for the jq mappings.
//!
//! - `json` (the default) is that text itself, byte for byte both ways.
//! - `avro` and `json_schema` are Confluent's wire format: a zero byte, the schema's id in the
//!   registry (4 bytes, big-endian), then the record (Avro's binary encoding, or the JSON
//!   text). The schema of the records produced is registered (or looked up) once, at start;
//!   the writer schemas of the messages read are fetched by id and cached ([`registry`]).
//!
//! Keys have their own codec (`kafka.key_codec`, [`Codecs`]): `json` writes a string key as
//! its text and any other value as JSON text, as aqueduct always has.

mod avro;
pub mod registry;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use schema_registry_converter::async_impl::avro::AvroDecoder;
use serde_json::Value;

use crate::spec::{CodecKind, Kafka, Part};

/// The codecs of a pipeline's messages: their keys' and their records'.
pub struct Codecs {
    pub key: Codec,
    pub value: Codec,
}

impl Codecs {
    /// Both codecs of `kafka` ([`Codec::connect`]); `produces`: whether the pipeline produces
    /// messages (their keys only with `kafka.key`). The registry, when the spec names one,
    /// must answer now: one that is down at start is an error, even for a loader that would
    /// ask it only when the first message comes.
    pub async fn connect(kafka: &Kafka, produces: bool) -> Result<Codecs, registry::Error> {
        if let Some(registry) = &kafka.schema_registry {
            registry::Client::new(registry)?.reach().await?;
        }
        Ok(Codecs {
            key: Codec::connect(kafka, Part::Key, produces && kafka.key.is_some()).await?,
            value: Codec::connect(kafka, Part::Value, produces).await?,
        })
    }
}

/// How records (or keys) are written into a topic's messages and read back.
pub enum Codec {
    /// The record's JSON text as the payload.
    Json,
    /// Avro in the wire format.
    Avro(Box<Avro>),
    /// JSON text in the wire format; `id`: the schema of the records produced.
    JsonSchema { id: Option<u32> },
}

/// The `avro` codec's schemas.
pub struct Avro {
    /// The schema of the records produced, and its id.
    writer: Option<(apache_avro::Schema, u32)>,
    /// Its named types.
    writer_names: apache_avro::schema::Names,
    /// The writer schemas of the messages read, fetched by id and cached.
    decoder: AvroDecoder,
    /// The named types of each writer schema, by its id.
    names: std::sync::Mutex<HashMap<u32, Arc<apache_avro::schema::Names>>>,
}

/// Why a record could not become a payload, or a payload a record.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the record does not fit the Avro schema: {0}")]
    NotAvro(String),
    #[error(
        "the message is not in Confluent's wire format (a zero byte, then the schema id): it starts {0}"
    )]
    NotWireFormat(String),
    #[error("the message cannot be read with its schema (id {id} in the registry): {reason}")]
    Undecodable { id: u32, reason: String },
    #[error(transparent)]
    Registry(#[from] registry::Error),
}

impl Error {
    /// Whether the same payload may decode later (the registry was away): the loader waits and
    /// tries again instead of dead-lettering it.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Registry(e) if e.is_transient())
    }
}

impl Codec {
    /// The codec of `part` of the messages (`kafka.codec` or `kafka.key_codec`); when the
    /// pipeline `produces` that part, its schema registered or looked up now: a registry that
    /// cannot be reached, or refuses the schema, is an error naming it.
    pub async fn connect(
        kafka: &Kafka,
        part: Part,
        produces: bool,
    ) -> Result<Codec, registry::Error> {
        let codec = kafka.codec_of(part);
        let registry = match (codec, &kafka.schema_registry) {
            (CodecKind::Json, _) => return Ok(Codec::Json),
            (_, Some(registry)) => registry,
            (_, None) => unreachable!("check requires [kafka.schema_registry] with this codec"),
        };
        let client = registry::Client::new(registry)?;
        let schema = &registry.writer(part).schema;
        let id = match schema {
            Some(schema) if produces => Some(client.schema_id(kafka, part, schema).await?),
            _ => None,
        };
        Ok(match codec {
            CodecKind::Json => Codec::Json,
            CodecKind::JsonSchema => Codec::JsonSchema { id },
            CodecKind::Avro => {
                let writer = match (schema, id) {
                    (Some(text), Some(id)) => {
                        let schema = apache_avro::Schema::parse_str(text)
                            .map_err(|e| registry::Error::Schema(e.to_string()))?;
                        Some((schema, id))
                    }
                    _ => None,
                };
                let writer_names = writer
                    .as_ref()
                    .map(|(schema, _)| avro::names(schema))
                    .unwrap_or_default();
                Codec::Avro(Box::new(Avro {
                    writer,
                    writer_names,
                    decoder: AvroDecoder::new(client.settings()?),
                    names: Default::default(),
                }))
            }
        })
    }

    /// The codec's name, as dead letters say it.
    pub fn name(&self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::Avro(_) => "avro",
            Codec::JsonSchema { .. } => "json_schema",
        }
    }

    /// The payload of a record: its JSON `text`, which parses as `record`.
    pub fn encode<'t>(&self, text: &'t str, record: &Value) -> Result<Cow<'t, [u8]>, Error> {
        match self {
            Codec::Json => Ok(Cow::Borrowed(text.as_bytes())),
            Codec::JsonSchema { id } => {
                let id = id.expect("a producing pipeline registers its schema at start");
                Ok(Cow::Owned(wire_format(id, text.as_bytes())))
            }
            Codec::Avro(avro) => {
                let (schema, id) = avro
                    .writer
                    .as_ref()
                    .expect("a producing pipeline registers its schema at start");
                let datum =
                    avro::encode(schema, &avro.writer_names, record).map_err(Error::NotAvro)?;
                Ok(Cow::Owned(wire_format(*id, &datum)))
            }
        }
    }

    /// The payload of a message key computed by `kafka.key`.
    pub fn encode_key(&self, key: &Value) -> Result<Vec<u8>, Error> {
        let text = match (self, key) {
            (Codec::Json, Value::String(text)) => Cow::Borrowed(text.as_str()),
            _ => Cow::Owned(key.to_string()),
        };
        self.encode(&text, key).map(Cow::into_owned)
    }

    /// The value of a message key: its JSON, or (`json` only) its text when it is no JSON.
    pub async fn decode_key(&self, key: &[u8]) -> Result<Value, Error> {
        let text = self.decode(key).await?;
        Ok(serde_json::from_slice(&text)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&text).into_owned())))
    }

    /// The JSON text of the record in `payload`. For `json` the payload itself (checked only
    /// when the loader parses it); for `json_schema` the payload after its header.
    pub async fn decode<'p>(&self, payload: &'p [u8]) -> Result<Cow<'p, [u8]>, Error> {
        match self {
            Codec::Json => Ok(Cow::Borrowed(payload)),
            Codec::JsonSchema { .. } => {
                let (id, body) = split_wire_format(payload)?;
                // Checked here, so a body that is no JSON is dead-lettered whole, header too.
                serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|e| {
                    Error::Undecodable {
                        id,
                        reason: format!("the record is not JSON: {e}"),
                    }
                })?;
                Ok(Cow::Borrowed(body))
            }
            Codec::Avro(avro) => {
                let (id, _) = split_wire_format(payload)?;
                // The writer schema first: a registry that fails to give it is waited for
                // (the converter caches its failures, so they are cleared for the next try);
                // only an id the registry does not know makes the message undecodable.
                if let Err(e) = avro.decoder.get_schema(id).await {
                    avro.decoder.remove_errors_from_cache();
                    return Err(match registry::status(&e) {
                        Some(404) => Error::Undecodable {
                            id,
                            reason: format!(
                                "the registry has no schema {id}: {}",
                                registry::describe(&e)
                            ),
                        },
                        _ => Error::Registry(registry::Error::Unreachable(registry::describe(&e))),
                    });
                }
                let decoded = avro
                    .decoder
                    .decode_with_schema(Some(payload))
                    .await
                    .map_err(|e| Error::Undecodable {
                        id,
                        reason: registry::describe(&e),
                    })?
                    .ok_or_else(|| Error::NotWireFormat("with nothing".into()))?;
                let schema = &decoded.schema.parsed;
                let names = {
                    let mut known = avro.names.lock().unwrap_or_else(|e| e.into_inner());
                    let names = known
                        .entry(id)
                        .or_insert_with(|| Arc::new(avro::names(schema)));
                    names.clone()
                };
                let json = avro::to_json(decoded.value, Some(schema), &names);
                Ok(Cow::Owned(json.to_string().into_bytes()))
            }
        }
    }
}

/// What the loader would read of `value` (a record, or a key) once `part`'s codec wrote it,
/// found without a registry for `preview` and `test`: `None` when it reads `value` itself;
/// for Avro, `value` written by the spec's schema and read back. An error says why that
/// schema cannot hold it.
pub fn offline(kafka: &Kafka, part: Part, value: &Value) -> Result<Option<Value>, Error> {
    let schema = kafka
        .schema_registry
        .as_ref()
        .and_then(|r| r.writer(part).schema.as_deref());
    match (kafka.codec_of(part), schema) {
        (CodecKind::Avro, Some(schema)) => {
            let schema = apache_avro::Schema::parse_str(schema)
                .map_err(|e| Error::NotAvro(e.to_string()))?;
            avro::round_trip(&schema, value)
                .map(Some)
                .map_err(Error::NotAvro)
        }
        _ => Ok(None),
    }
}

/// `body` behind the wire format's header for schema `id`.
fn wire_format(id: u32, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(5 + body.len());
    payload.push(0);
    payload.extend_from_slice(&id.to_be_bytes());
    payload.extend_from_slice(body);
    payload
}

/// The schema id and the body of a wire-format payload.
fn split_wire_format(payload: &[u8]) -> Result<(u32, &[u8]), Error> {
    match payload {
        [0, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        _ => {
            let head: Vec<String> = payload.iter().take(8).map(|b| format!("{b:02x}")).collect();
            Err(Error::NotWireFormat(match head.is_empty() {
                true => "with nothing".into(),
                false => format!("with bytes {}", head.join(" ")),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn json_keys_are_a_strings_text_or_a_values_json_and_read_back() {
        let json = Codec::Json;
        assert_eq!(json.encode_key(&"u-1".into()).unwrap(), b"u-1");
        assert_eq!(
            json.encode_key(&serde_json::json!({"id": 3})).unwrap(),
            br#"{"id":3}"#
        );
        assert_eq!(json.decode_key(b"u-1").await.unwrap(), "u-1");
        assert_eq!(json.decode_key(b"42").await.unwrap(), 42);
    }

    #[tokio::test]
    async fn an_avro_key_is_the_wire_format_around_its_avro_encoding() {
        let schema = apache_avro::Schema::parse_str(r#""string""#).unwrap();
        let settings = schema_registry_converter::async_impl::schema_registry::SrSettings::new(
            "http://127.0.0.1:9".into(),
        );
        let avro = Codec::Avro(Box::new(Avro {
            writer_names: avro::names(&schema),
            writer: Some((schema, 7)),
            decoder: AvroDecoder::new(settings),
            names: Default::default(),
        }));
        assert_eq!(
            avro.encode_key(&"ab".into()).unwrap(),
            [0, 0, 0, 0, 7, 4, b'a', b'b']
        );
        let e = avro.encode_key(&serde_json::json!(5)).unwrap_err();
        assert!(
            e.to_string().contains("does not fit the Avro schema"),
            "{e}"
        );
    }

    #[test]
    fn the_wire_format_is_a_zero_byte_the_id_and_the_body() {
        let payload = wire_format(258, b"{}");
        assert_eq!(payload, [0, 0, 0, 1, 2, b'{', b'}']);
        assert_eq!(split_wire_format(&payload).unwrap(), (258, &b"{}"[..]));
        let e = split_wire_format(br#"{"a":1}"#).unwrap_err().to_string();
        assert!(e.contains("starts with bytes 7b 22 61"), "{e}");
        assert!(split_wire_format(&[0, 1]).is_err());
    }
}
