//! The dead-letter envelope: a record that could not go on, with the reason, as JSON on the
//! dead-letter topic. Consumers of that topic can fix and replay `record`. Built here, produced
//! by [`crate::kafka::produce::Producer::dead_letter`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::validate::Violation;

/// How much of a record too large for a Kafka message its dead letter keeps.
pub const KEPT_OF_TOO_LARGE: usize = 64 * 1024;

/// The start of `text`: at most [`KEPT_OF_TOO_LARGE`] bytes, cut on a character boundary.
pub fn head(text: &str) -> &str {
    let mut cut = KEPT_OF_TOO_LARGE.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// Where in the pipeline a record failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// It failed the JSON Schema (ingest).
    Validate,
    /// The `kafka.key` expression failed on it (ingest).
    Key,
    /// Kafka refused it: larger than a message may be (ingest).
    Produce,
    /// The Kafka message was not JSON (load).
    Decode,
    /// A column's jq expression or type conversion failed (load).
    Map,
    /// Cassandra rejected the row as invalid, e.g. an empty partition key (load).
    Write,
}

/// Where the record came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Origin {
    Api {
        url: String,
    },
    Kafka {
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// Read by `preview --input` or `test`: the file and the record's place in it (from 1).
    File {
        file: String,
        record: usize,
    },
}

/// The JSON written to the dead-letter topic.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub pipeline: String,
    pub stage: Stage,
    /// One line saying what is wrong.
    pub reason: String,
    /// Schema violations (stage `validate`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    /// The table whose row failed (stages `map` and `write`), by its name in the spec; the
    /// record's rows for the other tables were written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The column that failed (stage `map`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The original record; for stage `decode`, the payload as text (`null` when it is kept
    /// in `payload_base64`).
    pub record: Value,
    /// For stage `decode`, a payload that is not UTF-8 text or not JSON's (`codec` other than
    /// `json`), whole, in base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// The codec that could not read `payload_base64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codec: Option<&'static str>,
    pub origin: Origin,
    /// When it was dead-lettered, RFC 3339.
    pub time: String,
}

impl Stage {
    /// Every stage, in flow order: `ALL[s.index()] == s`.
    pub const ALL: [Stage; 6] = [
        Stage::Validate,
        Stage::Key,
        Stage::Produce,
        Stage::Decode,
        Stage::Map,
        Stage::Write,
    ];

    /// Its place in [`Stage::ALL`], for per-stage arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Stage::Validate => "validate",
            Stage::Key => "key",
            Stage::Produce => "produce",
            Stage::Decode => "decode",
            Stage::Map => "map",
            Stage::Write => "write",
        }
    }
}

impl DeadLetter {
    pub fn new(
        pipeline: &str,
        stage: Stage,
        reason: String,
        record: Value,
        origin: Origin,
    ) -> Self {
        DeadLetter {
            pipeline: pipeline.to_owned(),
            stage,
            reason,
            violations: Vec::new(),
            table: None,
            column: None,
            record,
            payload_base64: None,
            codec: None,
            origin,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// This dead letter with `record` cut to the start of its text, for one whose envelope is
    /// larger than a Kafka message: the reason says so.
    pub fn with_record_cut(mut self, envelope: usize) -> DeadLetter {
        let text = match &self.record {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let kept = head(&text);
        self.reason = format!(
            "{}; the dead letter was {envelope} bytes, more than a Kafka message: `record` holds the first {} bytes of its {}",
            self.reason,
            kept.len(),
            text.len()
        );
        self.record = Value::String(kept.to_owned());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_is_listed_once_at_its_index() {
        for (i, stage) in Stage::ALL.into_iter().enumerate() {
            assert_eq!(stage.index(), i, "{}", stage.name());
        }
    }
}
