//! The codec layer: the one place where a record becomes a Kafka message payload and a
//! payload becomes the record again. On either side of it a record is JSON text: the ingest
//! hands it the text the API sent (with that text parsed), and the loader, replay and `tap`
//! get JSON text back for the jq mappings. `json` (the default) is that text itself, byte for
//! byte both ways.

use std::borrow::Cow;

use serde_json::Value;

/// How records are written into a topic's messages and read back.
#[derive(Debug)]
pub enum Codec {
    /// The record's JSON text as the payload.
    Json,
}

/// Why a record could not become a payload, or a payload a record.
#[derive(Debug, thiserror::Error)]
pub enum Error {}

impl Codec {
    /// The codec's name, as dead letters and `tap` say it.
    pub fn name(&self) -> &'static str {
        match self {
            Codec::Json => "json",
        }
    }

    /// The payload of a record: its JSON `text`, which parses as `record`.
    pub fn encode<'t>(&self, text: &'t str, _record: &Value) -> Result<Cow<'t, [u8]>, Error> {
        match self {
            Codec::Json => Ok(Cow::Borrowed(text.as_bytes())),
        }
    }

    /// The JSON text of the record in `payload`. For `json` the payload itself, checked only
    /// when the loader parses it.
    pub async fn decode<'p>(&self, payload: &'p [u8]) -> Result<Cow<'p, [u8]>, Error> {
        match self {
            Codec::Json => Ok(Cow::Borrowed(payload)),
        }
    }
}
