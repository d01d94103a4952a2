//! What the pipeline does with one record, without a server: the ingest's checks (decode, JSON
//! Schema, message key) and the loader's mapping to a row. `run` uses them on the hot path;
//! `preview` and `test` run both in a row on records they read themselves.

use serde_json::Value;

use crate::cql::Row;
use crate::dead_letter::{DeadLetter, Origin, Stage};
use crate::jq::Json;
use crate::spec::Spec;
use crate::{map, validate};

/// A record the ingest does not produce to the topic.
#[derive(Debug)]
pub struct Rejected {
    pub dead_letter: Box<DeadLetter>,
    /// The record's message key when it could be computed: its dead letter is keyed alike.
    pub key: Option<String>,
}

/// The ingest's verdict on a record (its JSON text, as the API sent it): the message key it is
/// produced with (`None` without `kafka.key`, or when the key is null), or why it cannot go on
/// (stage `validate` or `key`).
pub fn admit(spec: &Spec, text: &str, origin: &Origin) -> Result<Option<String>, Rejected> {
    let reject = |stage, reason, record, key| Rejected {
        dead_letter: Box::new(DeadLetter::new(
            &spec.name,
            stage,
            reason,
            record,
            origin.clone(),
        )),
        key,
    };
    let record: Value = match serde_json::from_str(text) {
        Ok(record) => record,
        // JSON the page check let through but serde_json cannot hold (a number out of range).
        Err(e) => {
            let reason = format!("the record cannot be decoded: {e}");
            return Err(reject(Stage::Validate, reason, text.into(), None));
        }
    };
    let key = match &spec.kafka.key {
        None => Ok(None),
        Some(jq) => match jq.run_one(&record) {
            Ok(Value::Null) => Ok(None),
            Ok(Value::String(s)) => Ok(Some(s)),
            Ok(other) => Ok(Some(other.to_string())),
            Err(e) => Err(format!("kafka.key `{}` failed: {e}", jq.code())),
        },
    };
    let violations = validate::violations(spec.validate.schema.as_ref(), &record);
    if !violations.is_empty() {
        let reason = violations
            .iter()
            .map(|v| format!("{} at {:?}: {}", v.keyword, v.pointer, v.message))
            .collect::<Vec<_>>()
            .join("; ");
        let mut rejected = reject(Stage::Validate, reason, record, key.ok().flatten());
        rejected.dead_letter.violations = violations;
        return Err(rejected);
    }
    key.map_err(|reason| reject(Stage::Key, reason, record, None))
}

/// The loader's verdict on a message payload: the row it writes, or the dead letter that says
/// why not (stage `decode` or `map`). `origin` is called only for a dead letter.
pub fn to_row(
    spec: &Spec,
    payload: &[u8],
    origin: impl Fn() -> Origin,
) -> Result<Row, Box<DeadLetter>> {
    // Decoded once, borrowing from the payload; the mapping reads it as it is.
    let record: Json = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => {
            let text = Value::String(String::from_utf8_lossy(payload).into_owned());
            let reason = format!("the message is not JSON: {e}");
            return Err(Box::new(DeadLetter::new(
                &spec.name,
                Stage::Decode,
                reason,
                text,
                origin(),
            )));
        }
    };
    map::row(&spec.cassandra, &record).map_err(|e| {
        let mut dl = DeadLetter::new(
            &spec.name,
            Stage::Map,
            e.to_string(),
            (&record).into(),
            origin(),
        );
        dl.column = Some(e.column);
        Box::new(dl)
    })
}

/// What became of one record in both halves: its message key and row, or its dead letter.
pub type Outcome = Result<(Option<String>, Row), Box<DeadLetter>>;

/// Both halves on one record, as `run` would take it from the API to a row.
pub fn through(spec: &Spec, text: &str, origin: &Origin) -> Outcome {
    let key = admit(spec, text, origin).map_err(|r| r.dead_letter)?;
    let row = to_row(spec, text.as_bytes(), || origin.clone())?;
    Ok((key, row))
}
