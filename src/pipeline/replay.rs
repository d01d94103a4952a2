//! Replay: the loader run over the dead-letter topic. Each dead letter's original record goes
//! through the spec as it is now (validate, key, map) and is written; a record that still
//! fails is dead-lettered again with its new reason. The consumer group is the pipeline's
//! plus `-replay`, so a dead letter is replayed once per group, at least once, like the loader.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::dead_letter::Stage;

/// How a replay runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    /// Dead letters from before this time are read and passed over.
    pub since: Option<DateTime<Utc>>,
    /// Report only: write nothing, dead-letter nothing, commit nothing.
    pub dry_run: bool,
}

/// The part of an envelope a replay reads.
#[derive(Deserialize)]
struct Envelope<'a> {
    stage: Stage,
    #[serde(borrow)]
    record: &'a RawValue,
    time: Option<String>,
    #[serde(default)]
    violations: Vec<serde::de::IgnoredAny>,
    payload_base64: Option<String>,
}

/// What to do with one message of the dead-letter topic.
#[derive(Debug, PartialEq)]
pub enum Original {
    /// Replay this record text (as the API sent it, or as the topic held it).
    Record(String),
    /// Replay this payload, which the topic's codec could not read before.
    Payload(Vec<u8>),
    /// Older than `--since`.
    Skip,
    /// Not a dead-letter envelope: why.
    Unreadable(String),
}

/// The original record of a dead letter. A record that could not be decoded (stage `decode`,
/// or `validate` without violations) is kept as its text in a JSON string: that text is the
/// original; any other record is JSON, replayed as its JSON text.
pub fn original(payload: &[u8], since: Option<DateTime<Utc>>) -> Original {
    let envelope: Envelope = match serde_json::from_slice(payload) {
        Ok(e) => e,
        Err(e) => return Original::Unreadable(format!("not a dead-letter envelope: {e}")),
    };
    if let Some(since) = since {
        let time = envelope
            .time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        if time.is_some_and(|t| t < since) {
            return Original::Skip;
        }
    }
    if let Some(encoded) = &envelope.payload_base64 {
        return match base64::engine::general_purpose::STANDARD.decode(encoded) {
            Ok(payload) => Original::Payload(payload),
            Err(e) => Original::Unreadable(format!("payload_base64 is not base64: {e}")),
        };
    }
    let as_text = envelope.stage == Stage::Decode
        || (envelope.stage == Stage::Validate && envelope.violations.is_empty());
    if as_text && let Ok(Value::String(text)) = serde_json::from_str(envelope.record.get()) {
        return Original::Record(text);
    }
    Original::Record(envelope.record.get().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_record_comes_back_as_the_api_sent_it() {
        let dl = br#"{"pipeline":"p","stage":"map","reason":"r","column":"c","record":{"a":[1,2]},"origin":{"url":"u"},"time":"2026-11-30T04:00:00.000Z"}"#;
        assert_eq!(
            original(dl, None),
            Original::Record(r#"{"a":[1,2]}"#.into())
        );
        // A payload that was not JSON comes back as its text.
        let dl = br#"{"pipeline":"p","stage":"decode","reason":"r","record":"{not json","origin":{"topic":"t","partition":0,"offset":1},"time":"2026-11-30T04:00:00.000Z"}"#;
        assert_eq!(original(dl, None), Original::Record("{not json".into()));
        let dl = br#"{"pipeline":"p","stage":"decode","reason":"r","record":null,"payload_base64":"AAAAAAE=","codec":"avro","origin":{"topic":"t","partition":0,"offset":1},"time":"2026-11-30T04:00:00.000Z"}"#;
        assert_eq!(original(dl, None), Original::Payload(vec![0, 0, 0, 0, 1]));
        let dl = br#"{"pipeline":"p","stage":"validate","reason":"cannot be decoded","record":"{\"n\":1e400}","origin":{"url":"u"},"time":"2026-11-30T04:00:00.000Z"}"#;
        assert_eq!(
            original(dl, None),
            Original::Record(r#"{"n":1e400}"#.into())
        );
        // A string record that failed the schema stays a JSON string.
        let dl = br#"{"pipeline":"p","stage":"validate","reason":"type","violations":[{"pointer":"","keyword":"type","schema_path":"/type","message":"m"}],"record":"text","origin":{"url":"u"},"time":"2026-11-30T04:00:00.000Z"}"#;
        assert_eq!(original(dl, None), Original::Record(r#""text""#.into()));
    }

    #[test]
    fn since_passes_over_older_dead_letters() {
        let dl = br#"{"stage":"map","record":{},"time":"2026-11-30T04:00:00.000Z"}"#;
        let at = |t: &str| Some(t.parse::<DateTime<Utc>>().unwrap());
        assert_eq!(original(dl, at("2026-11-30T05:00:00Z")), Original::Skip);
        assert_eq!(
            original(dl, at("2026-11-30T03:00:00Z")),
            Original::Record("{}".into())
        );
        assert!(matches!(
            original(b"garbage", None),
            Original::Unreadable(_)
        ));
    }
}
