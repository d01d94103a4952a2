//! What the pipeline does with one record, without a server: the ingest's checks (decode, JSON
//! Schema, message key) and the loader's mapping to each table's row. `run` uses them on the hot path;
//! `preview` and `test` run both in a row on records they read themselves.

use base64::Engine as _;
use serde_json::Value;

use crate::codec;
use crate::dead_letter::{DeadLetter, Origin, Stage};
use crate::jq::{Input, Json};
use crate::map::{self, Change};
use crate::spec::{Part, Spec, Table};
use crate::validate;

/// A record the ingest does not produce to the topic.
#[derive(Debug)]
pub struct Rejected {
    pub dead_letter: Box<DeadLetter>,
    /// The record's message key when it could be computed: its dead letter is keyed alike.
    pub key: Option<Value>,
}

/// The ingest's verdict on a record (its JSON text, as the API sent it): the message key it is
/// produced with (`None` without `kafka.key`, or when the key is null) and the record parsed,
/// or why it cannot go on (stage `validate` or `key`).
pub fn admit(spec: &Spec, text: &str, origin: &Origin) -> Result<(Option<Value>, Value), Rejected> {
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
            Ok(key) => Ok(Some(key)),
            Err(e) => Err(format!("kafka.key `{}` failed: {e}", jq.code())),
        },
    };
    let violations = validate::violations(spec.validate.schema.as_ref(), &record);
    if !violations.is_empty() {
        let reason = violations_reason(&violations);
        let mut rejected = reject(Stage::Validate, reason, record, key.ok().flatten());
        rejected.dead_letter.violations = violations;
        return Err(rejected);
    }
    match key {
        Ok(key) => Ok((key, record)),
        Err(reason) => Err(reject(Stage::Key, reason, record, None)),
    }
}

/// A message key as text, as `json` keys are written: a string as itself, any other value as
/// JSON.
pub fn key_text(key: &Value) -> String {
    match key {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// One line naming every violation.
fn violations_reason(violations: &[validate::Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("{} at {:?}: {}", v.keyword, v.pointer, v.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The loader's schema check of a record of a topic others produce (a spec without
/// `[source]`, with a `[validate]` schema): the dead letter (stage `validate`) of a record
/// that fails it. A payload that is no JSON passes here, for the decoding to name.
pub fn validate_loaded(
    spec: &Spec,
    payload: &[u8],
    origin: impl Fn() -> Origin,
) -> Result<(), Box<DeadLetter>> {
    let Some(schema) = spec.validate.schema.as_ref() else {
        return Ok(());
    };
    let Ok(record) = serde_json::from_slice::<Value>(payload) else {
        return Ok(());
    };
    let violations = validate::violations(Some(schema), &record);
    if violations.is_empty() {
        return Ok(());
    }
    let reason = violations_reason(&violations);
    let mut dl = DeadLetter::new(&spec.name, Stage::Validate, reason, record, origin());
    dl.violations = violations;
    Err(Box::new(dl))
}

/// The loader's decoding of a message payload: the record, borrowing from the payload, or the
/// dead letter that says why not (stage `decode`). `origin` is called only for a dead letter.
pub fn decode<'p>(
    spec: &Spec,
    payload: &'p [u8],
    origin: impl Fn() -> Origin,
) -> Result<Json<'p>, Box<DeadLetter>> {
    serde_json::from_slice(payload).map_err(|e| {
        let reason = format!("the message is not JSON: {e}");
        Box::new(undecodable(spec, "json", payload, reason, origin()))
    })
}

/// The dead letter (stage `decode`) of a payload `codec` could not read: its text when it is
/// JSON's codec and UTF-8, else the payload whole in base64, the codec named.
pub fn undecodable(
    spec: &Spec,
    codec: &'static str,
    payload: &[u8],
    reason: String,
    origin: Origin,
) -> DeadLetter {
    let text = std::str::from_utf8(payload)
        .ok()
        .filter(|_| codec == "json");
    let record = text.map_or(Value::Null, |t| Value::String(t.to_owned()));
    let mut dl = DeadLetter::new(&spec.name, Stage::Decode, reason, record, origin);
    if text.is_none() {
        dl.payload_base64 = Some(base64::engine::general_purpose::STANDARD.encode(payload));
        dl.codec = Some(codec);
    }
    dl
}

/// The loader's verdict on a record for table `t`: the row it writes there, or the dead letter
/// that says why not (stage `map`, naming the table and column). `input` is `record` made
/// ready for jq, shared by every table.
pub fn table_row(
    spec: &Spec,
    t: &Table,
    record: &Json,
    input: &Input,
    origin: impl Fn() -> Origin,
) -> TableRow {
    map::change_of(t, input).map_err(|e| {
        let mut dl = DeadLetter::new(
            &spec.name,
            Stage::Map,
            e.to_string(),
            record.into(),
            origin(),
        );
        dl.table = Some(t.name.clone());
        dl.column = Some(e.column);
        Box::new(dl)
    })
}

/// Every table's row of a message payload, in spec order, each a row or its dead letter; `Err`
/// when the payload is not a record at all.
pub fn to_rows(
    spec: &Spec,
    payload: &[u8],
    origin: impl Fn() -> Origin,
) -> Result<Vec<TableRow>, Box<DeadLetter>> {
    let record = decode(spec, payload, &origin)?;
    let input = Input::new(&record);
    Ok(spec
        .cassandra
        .tables
        .iter()
        .map(|t| table_row(spec, t, &record, &input, &origin))
        .collect())
}

/// What a Kafka tombstone (a message key without a value) makes of each table: the delete of
/// the row its key names ([`map::tombstone_change`]; the key as its codec decoded it), or the
/// dead letter of a table the key cannot name a row of.
pub fn tombstone(
    spec: &Spec,
    key: Option<&Value>,
    timestamp_ms: Option<i64>,
    origin: impl Fn() -> Origin,
) -> Vec<TableRow> {
    let text = key.map(key_text);
    spec.cassandra
        .tables
        .iter()
        .map(|t| {
            let fail = |reason: String| {
                let record = text.clone().map_or(Value::Null, Value::String);
                let mut dl = DeadLetter::new(&spec.name, Stage::Map, reason, record, origin());
                dl.table = Some(t.name.clone());
                Box::new(dl)
            };
            let Some(key) = key else {
                return Err(fail("a tombstone without a key deletes nothing".into()));
            };
            map::tombstone_change(t, key, timestamp_ms).map_err(|e| fail(e.to_string()))
        })
        .collect()
}

/// What a record makes of one table (a row to write or to delete), or the dead letter that
/// says why it cannot.
pub type TableRow = Result<Change, Box<DeadLetter>>;

/// What became of one record in both halves: its message key and each table's row, or the
/// dead letter of the whole record.
pub type Outcome = Result<(Option<String>, Vec<TableRow>), Box<DeadLetter>>;

/// Both halves on one record, as `run` would take it from the API to rows: through the
/// topic's codecs too (an Avro record is mapped as the loader reads it back; one the schema
/// cannot hold is dead-lettered at stage `produce`, a key at stage `key`).
pub fn through(spec: &Spec, text: &str, origin: &Origin) -> Outcome {
    let (key, record) = admit(spec, text, origin).map_err(|r| r.dead_letter)?;
    let fail = |stage, e: codec::Error, record: &Value| {
        let dl = DeadLetter::new(
            &spec.name,
            stage,
            e.to_string(),
            record.clone(),
            origin.clone(),
        );
        Box::new(dl)
    };
    if let Some(key) = &key {
        codec::offline(&spec.kafka, Part::Key, key).map_err(|e| fail(Stage::Key, e, &record))?;
    }
    let read = codec::offline(&spec.kafka, Part::Value, &record)
        .map_err(|e| fail(Stage::Produce, e, &record))?
        .map(|read| read.to_string());
    let key = key.as_ref().map(key_text);
    let rows = to_rows(spec, read.as_deref().unwrap_or(text).as_bytes(), || {
        origin.clone()
    })?;
    Ok((key, rows))
}
