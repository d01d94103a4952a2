//! Avro records to and from the JSON the rest of the pipeline speaks. Logical types arrive as
//! the JSON the CQL conversions take: `timestamp-millis` as epoch milliseconds, finer
//! timestamps as RFC 3339 text (no digit lost), `date` as `YYYY-MM-DD`, `time-*` as
//! `HH:MM:SS.f`, `decimal` as its decimal text, `uuid` as text, bytes as base64; a union is
//! its value alone (no `{"type": value}` wrapper).

use apache_avro::Schema;
use apache_avro::schema::{Names, ResolvedSchema};
use apache_avro::types::Value as Avro;
use base64::Engine;
use bigdecimal::BigDecimal;
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Timelike};
use serde_json::{Value, json};

/// `record` encoded by `schema` (Avro's binary encoding, no header): its JSON resolved to the
/// schema's types (numbers to int/long/float, objects to records, a value to its union branch),
/// logical types taken as the decoding writes them (RFC 3339 or epoch milliseconds for a
/// timestamp, `YYYY-MM-DD` for a date, `HH:MM:SS.f` for a time, decimal text or a number for a
/// decimal). `names`: the schema's named types.
pub fn encode(schema: &Schema, names: &Names, record: &Value) -> Result<Vec<u8>, String> {
    let value = prepare(record, schema, names)?
        .resolve(schema)
        .map_err(|e| e.to_string())?;
    apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()
        .and_then(|writer| writer.write_value_to_vec(value))
        .map_err(|e| e.to_string())
}

/// `record` written by `schema` and read back, as the loader sees it: what `preview` and
/// `test` map.
pub fn round_trip(schema: &Schema, record: &Value) -> Result<Value, String> {
    let names = names(schema);
    let bytes = encode(schema, &names, record)?;
    let value = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()
        .and_then(|reader| reader.read_value(&mut &bytes[..]))
        .map_err(|e| e.to_string())?;
    Ok(to_json(value, Some(schema), &names))
}

/// `json` as an Avro value for `schema` to resolve: the logical types' text made their
/// values (what plain resolution cannot), the rest as JSON converts.
fn prepare(json: &Value, schema: &Schema, names: &Names) -> Result<Avro, String> {
    let schema = match schema {
        Schema::Ref { name } => names.get(name).unwrap_or(schema),
        schema => schema,
    };
    let not = |what: &str| format!("{json} is not {what}");
    Ok(match (schema, json) {
        (Schema::Record(record), Value::Object(fields)) => Avro::Map(
            fields
                .iter()
                .map(|(name, value)| {
                    let field = record.fields.iter().find(|f| &f.name == name);
                    let value = match field {
                        Some(field) => prepare(value, &field.schema, names)?,
                        None => Avro::try_from(value.clone()).map_err(|e| e.to_string())?,
                    };
                    Ok((name.clone(), value))
                })
                .collect::<Result<_, String>>()?,
        ),
        (Schema::Map(map), Value::Object(fields)) => Avro::Map(
            fields
                .iter()
                .map(|(name, value)| Ok((name.clone(), prepare(value, &map.types, names)?)))
                .collect::<Result<_, String>>()?,
        ),
        (Schema::Array(array), Value::Array(items)) => Avro::Array(
            items
                .iter()
                .map(|item| prepare(item, &array.items, names))
                .collect::<Result<_, _>>()?,
        ),
        (Schema::Union(union), value) if !value.is_null() => {
            // The first branch taking this kind of JSON value; resolution checks the rest.
            let branch = union.variants().iter().find(|v| takes(v, value, names));
            match branch {
                Some(branch) => prepare(value, branch, names)?,
                None => Avro::try_from(value.clone()).map_err(|e| e.to_string())?,
            }
        }
        (
            Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos,
            Value::String(t),
        ) => {
            let t = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
                .map_err(|_| not("a local time (YYYY-MM-DDTHH:MM:SS)"))?
                .and_utc();
            match schema {
                Schema::LocalTimestampMillis => Avro::LocalTimestampMillis(t.timestamp_millis()),
                Schema::LocalTimestampMicros => Avro::LocalTimestampMicros(t.timestamp_micros()),
                _ => Avro::LocalTimestampNanos(
                    t.timestamp_nanos_opt()
                        .ok_or_else(|| not("a time nanoseconds reach"))?,
                ),
            }
        }
        (Schema::TimestampMillis, Value::String(t)) => Avro::TimestampMillis(
            instant(t)
                .ok_or_else(|| not("an RFC 3339 time"))?
                .timestamp_millis(),
        ),
        (Schema::TimestampMicros, Value::String(t)) => Avro::TimestampMicros(
            instant(t)
                .ok_or_else(|| not("an RFC 3339 time"))?
                .timestamp_micros(),
        ),
        (Schema::TimestampNanos, Value::String(t)) => {
            let t = instant(t).ok_or_else(|| not("an RFC 3339 time"))?;
            Avro::TimestampNanos(
                t.timestamp_nanos_opt()
                    .ok_or_else(|| not("a time nanoseconds reach"))?,
            )
        }
        (Schema::Date, Value::String(d)) => {
            let d =
                NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| not("a date (YYYY-MM-DD)"))?;
            Avro::Date(d.num_days_from_ce() - 719_163)
        }
        (Schema::TimeMillis | Schema::TimeMicros, Value::String(t)) => {
            let t = NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
                .map_err(|_| not("a time (HH:MM:SS)"))?;
            let micros = i64::from(t.num_seconds_from_midnight()) * 1_000_000
                + i64::from(t.nanosecond() / 1_000);
            match schema {
                Schema::TimeMillis => Avro::TimeMillis((micros / 1_000) as i32),
                _ => Avro::TimeMicros(micros),
            }
        }
        (Schema::Decimal(decimal), Value::String(_) | Value::Number(_)) => {
            let text = json
                .as_str()
                .map_or_else(|| json.to_string(), str::to_owned);
            let number: BigDecimal = text.trim().parse().map_err(|_| not("a decimal"))?;
            let scaled = number.with_scale(decimal.scale as i64);
            if scaled != number {
                let scale = decimal.scale;
                return Err(not(&format!(
                    "a decimal of scale {scale} (digits would be lost)"
                )));
            }
            let (unscaled, _) = scaled.into_bigint_and_exponent();
            if unscaled.magnitude().to_string().len() > decimal.precision {
                return Err(not(&format!(
                    "a decimal of precision {}",
                    decimal.precision
                )));
            }
            // Sign-extended to the bytes the precision takes, as Avro's writer wants them.
            let mut bytes = unscaled.to_signed_bytes_be();
            let bits = decimal.precision as f64 / 2f64.log10();
            let width = ((bits + 1.0) / 8.0).ceil() as usize;
            let fill = match unscaled.sign() {
                num_bigint::Sign::Minus => 0xff,
                _ => 0,
            };
            while bytes.len() < width {
                bytes.insert(0, fill);
            }
            Avro::Decimal(apache_avro::Decimal::from(bytes))
        }
        (_, value) => Avro::try_from(value.clone()).map_err(|e| e.to_string())?,
    })
}

/// Whether a union's `branch` can hold the JSON `value` (its kind, not its content).
fn takes(branch: &Schema, value: &Value, names: &Names) -> bool {
    let branch = match branch {
        Schema::Ref { name } => match names.get(name) {
            Some(schema) => schema,
            None => return false,
        },
        branch => branch,
    };
    match value {
        Value::Null => matches!(branch, Schema::Null),
        Value::Bool(_) => matches!(branch, Schema::Boolean),
        Value::Number(n) if n.is_i64() || n.is_u64() => !matches!(
            branch,
            Schema::Null
                | Schema::Boolean
                | Schema::String
                | Schema::Record(_)
                | Schema::Map(_)
                | Schema::Array(_)
                | Schema::Enum(_)
        ),
        Value::Number(_) => matches!(branch, Schema::Float | Schema::Double | Schema::Decimal(_)),
        Value::String(_) => !matches!(
            branch,
            Schema::Null
                | Schema::Boolean
                | Schema::Int
                | Schema::Long
                | Schema::Float
                | Schema::Double
                | Schema::Record(_)
                | Schema::Map(_)
                | Schema::Array(_)
        ),
        Value::Array(_) => matches!(branch, Schema::Array(_)),
        Value::Object(_) => matches!(branch, Schema::Record(_) | Schema::Map(_)),
    }
}

/// An RFC 3339 time.
fn instant(text: &str) -> Option<DateTime<chrono::Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.to_utc())
}

/// The named types of `schema` (records, enums, fixed), by full name: what a reference to
/// one by name (`"type": "Value"`) stands for.
pub fn names(schema: &Schema) -> Names {
    ResolvedSchema::try_from(schema)
        .map(|resolved| {
            (resolved.get_names().iter())
                .map(|(name, schema)| (name.clone(), (*schema).clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// An Avro value as JSON; `schema` (where known, references looked up in `names`) gives a
/// decimal its scale.
pub fn to_json(value: Avro, schema: Option<&Schema>, names: &Names) -> Value {
    let schema = match schema {
        Some(Schema::Ref { name }) => names.get(name),
        schema => schema,
    };
    match value {
        Avro::Null => Value::Null,
        Avro::Boolean(b) => Value::Bool(b),
        Avro::Int(n) => json!(n),
        Avro::Long(n) => json!(n),
        Avro::Float(x) => number(f64::from(x)),
        Avro::Double(x) => number(x),
        Avro::Bytes(b) | Avro::Fixed(_, b) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Avro::String(s) | Avro::Enum(_, s) => Value::String(s),
        Avro::Union(branch, value) => {
            let schema = match schema {
                Some(Schema::Union(union)) => union.variants().get(branch as usize),
                _ => None,
            };
            to_json(*value, schema, names)
        }
        Avro::Array(items) => {
            let schema = match schema {
                Some(Schema::Array(array)) => Some(&*array.items),
                _ => None,
            };
            Value::Array(
                items
                    .into_iter()
                    .map(|v| to_json(v, schema, names))
                    .collect(),
            )
        }
        Avro::Map(map) => {
            let schema = match schema {
                Some(Schema::Map(map)) => Some(&*map.types),
                _ => None,
            };
            Value::Object(
                map.into_iter()
                    .map(|(k, v)| (k, to_json(v, schema, names)))
                    .collect(),
            )
        }
        Avro::Record(fields) => {
            let schemas = match schema {
                Some(Schema::Record(record)) => Some(&record.fields),
                _ => None,
            };
            Value::Object(
                fields
                    .into_iter()
                    .enumerate()
                    .map(|(i, (name, v))| {
                        let schema = schemas.and_then(|f| f.get(i)).map(|f| &f.schema);
                        (name, to_json(v, schema, names))
                    })
                    .collect(),
            )
        }
        Avro::Date(days) => match days
            .checked_add(719_163)
            .and_then(NaiveDate::from_num_days_from_ce_opt)
        {
            Some(date) => Value::String(date.format("%Y-%m-%d").to_string()),
            None => json!(days),
        },
        Avro::Decimal(decimal) => {
            let scale = match schema {
                Some(Schema::Decimal(d)) => d.scale as i64,
                _ => 0,
            };
            let unscaled = num_bigint::BigInt::from(decimal);
            Value::String(BigDecimal::new(unscaled, scale).to_plain_string())
        }
        Avro::BigDecimal(decimal) => Value::String(decimal.to_plain_string()),
        Avro::TimeMillis(ms) => time(i64::from(ms).saturating_mul(1_000_000)),
        Avro::TimeMicros(us) => time(us.saturating_mul(1_000)),
        Avro::TimestampMillis(ms) => json!(ms),
        Avro::TimestampMicros(us) => timestamp(DateTime::from_timestamp_micros(us), us, true),
        Avro::TimestampNanos(ns) => timestamp(Some(DateTime::from_timestamp_nanos(ns)), ns, true),
        // A local time has no zone: written without one.
        Avro::LocalTimestampMillis(ms) => timestamp(DateTime::from_timestamp_millis(ms), ms, false),
        Avro::LocalTimestampMicros(us) => timestamp(DateTime::from_timestamp_micros(us), us, false),
        Avro::LocalTimestampNanos(ns) => {
            timestamp(Some(DateTime::from_timestamp_nanos(ns)), ns, false)
        }
        Avro::Duration(d) => json!({
            "months": u32::from(d.months()),
            "days": u32::from(d.days()),
            "millis": u32::from(d.millis()),
        }),
        Avro::Uuid(u) => Value::String(u.to_string()),
    }
}

/// A float as JSON; NaN and the infinities, which JSON lacks, as the text Java's and
/// JavaScript's parsers know (`NaN`, `Infinity`, `-Infinity`).
fn number(x: f64) -> Value {
    match serde_json::Number::from_f64(x) {
        Some(n) => Value::Number(n),
        None if x.is_nan() => Value::String("NaN".into()),
        None if x > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

fn time(nanos: i64) -> Value {
    let secs = nanos.div_euclid(1_000_000_000) as u32;
    let frac = nanos.rem_euclid(1_000_000_000) as u32;
    match NaiveTime::from_num_seconds_from_midnight_opt(secs, frac) {
        Some(t) => Value::String(t.format("%H:%M:%S%.f").to_string()),
        None => json!(nanos),
    }
}

fn timestamp(t: Option<DateTime<chrono::Utc>>, raw: i64, zoned: bool) -> Value {
    match (t, zoned) {
        (Some(t), true) => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        (Some(t), false) => Value::String(t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
        (None, _) => json!(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{
        "type": "record", "name": "User", "namespace": "demo",
        "fields": [
            {"name": "id", "type": "int"},
            {"name": "name", "type": ["null", "string"], "default": null},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "at_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "born", "type": {"type": "int", "logicalType": "date"}},
            {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
            {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "tags", "type": {"type": "array", "items": "string"}}
        ]
    }"#;

    #[test]
    fn a_record_goes_through_avro_and_back_as_the_cql_conversions_take_it() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let names = names(&schema);
        let back = |record: &Value| {
            let bytes = encode(&schema, &names, record)?;
            let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build();
            let value = reader.unwrap().read_value(&mut &bytes[..]).unwrap();
            Ok::<_, String>(to_json(value, Some(&schema), &names))
        };
        // As the decoding writes them: they come back the same.
        let decoded = json!({
            "id": 7, "name": "ada", "at": 1_767_225_600_123_i64,
            "at_us": "2026-01-01T00:00:00.123456Z", "born": "2024-10-04", "price": "1234.50",
            "uid": "6f3c1a52-9d0e-4b8e-8f7a-2a3b4c5d6e7f", "tags": ["a", "b"], "extra": true
        });
        let mut want = decoded.clone();
        want.as_object_mut().unwrap().remove("extra");
        assert_eq!(back(&decoded).unwrap(), want);
        // As APIs send them: a timestamp as text, a decimal as a number, a null union.
        let sent = json!({
            "id": 7, "name": null, "at": "2026-01-01T00:00:00.123Z",
            "at_us": 1_767_225_600_123_456_i64, "born": 20_000, "price": 12.5,
            "uid": "6f3c1a52-9d0e-4b8e-8f7a-2a3b4c5d6e7f", "tags": []
        });
        let got = back(&sent).unwrap();
        assert_eq!(got["name"], Value::Null);
        assert_eq!(got["at"], json!(1_767_225_600_123_i64));
        assert_eq!(got["at_us"], json!("2026-01-01T00:00:00.123456Z"));
        assert_eq!(got["born"], json!("2024-10-04"));
        assert_eq!(got["price"], json!("12.50"));
        let mut negative = sent.clone();
        negative["price"] = json!("-3.1");
        assert_eq!(back(&negative).unwrap()["price"], json!("-3.10"));
        negative["price"] = json!("12345678.9");
        assert!(back(&negative).unwrap_err().contains("precision 9"));
        negative["price"] = json!("1.239");
        assert!(
            back(&negative)
                .unwrap_err()
                .contains("digits would be lost")
        );
        // What does not fit says what.
        let e = back(&json!({"id": 1})).unwrap_err();
        assert!(!e.is_empty());
        let mut bad = decoded.clone();
        bad["born"] = json!("4 October");
        assert!(back(&bad).unwrap_err().contains("is not a date"));
    }

    /// Debezium's envelope names its row type once (`before`) and refers to it by name
    /// (`after`): the decimal behind the reference keeps its scale (it lost it before).
    #[test]
    fn a_decimal_behind_a_named_reference_keeps_its_scale() {
        let schema = Schema::parse_str(
            r#"{"type": "record", "name": "Envelope", "fields": [
                {"name": "before", "type": ["null", {"type": "record", "name": "Value", "fields": [
                    {"name": "balance", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}}]}]},
                {"name": "after", "type": ["null", "Value"]}]}"#,
        )
        .unwrap();
        let row = || {
            Avro::Record(vec![(
                "balance".into(),
                Avro::Decimal(apache_avro::Decimal::from(vec![0x01, 0xf5])),
            )])
        };
        let value = Avro::Record(vec![
            ("before".into(), Avro::Union(1, Box::new(row()))),
            ("after".into(), Avro::Union(1, Box::new(row()))),
        ]);
        assert_eq!(
            to_json(value, Some(&schema), &names(&schema)),
            json!({"before": {"balance": "5.01"}, "after": {"balance": "5.01"}})
        );
    }

    #[test]
    fn local_times_small_decimals_and_odd_floats_come_out_as_text_that_reads_back() {
        let schema = Schema::parse_str(
            r#"{"type": "record", "name": "R", "fields": [
                {"name": "local", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
                {"name": "tiny", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 8}},
                {"name": "x", "type": "double"}]}"#,
        )
        .unwrap();
        let names = names(&schema);
        let record = json!({"local": "2026-12-07T09:30:00.250", "tiny": "0.00000001", "x": 1.5});
        let bytes = encode(&schema, &names, &record).unwrap();
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build();
        let value = reader.unwrap().read_value(&mut &bytes[..]).unwrap();
        assert_eq!(
            to_json(value, Some(&schema), &names),
            json!({"local": "2026-12-07T09:30:00.250", "tiny": "0.00000001", "x": 1.5})
        );
        assert_eq!(number(f64::NAN), json!("NaN"));
        assert_eq!(number(f64::NEG_INFINITY), json!("-Infinity"));
        assert_eq!(
            to_json(Avro::Date(i32::MAX), None, &Names::new()),
            json!(i32::MAX)
        );
    }

    #[test]
    fn a_decimal_takes_its_scale_from_the_schema() {
        let schema = Schema::parse_str(
            r#"{"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}"#,
        )
        .unwrap();
        let value = Avro::Decimal(apache_avro::Decimal::from(vec![0x30, 0x39]));
        assert_eq!(
            to_json(value, Some(&schema), &Names::new()),
            json!("123.45")
        );
    }
}

#[cfg(test)]
mod users {
    use super::*;
    use crate::jq::Json;

    /// The stand-in's users through `pipelines/schemas/randomuser-user.avsc` and back map to
    /// the rows their JSON maps to, in every table of users.toml: the schema the bench and an
    /// Avro users pipeline use holds what the API sends (a postcode number or text, a null
    /// id, non-Latin names, timestamps that become `timestamp-millis`).
    #[test]
    fn users_through_their_avro_schema_make_the_rows_their_json_makes() {
        let text = std::fs::read_to_string("pipelines/schemas/randomuser-user.avsc").unwrap();
        let schema = Schema::parse_str(&text).unwrap();
        let spec = crate::spec::load(std::path::Path::new("pipelines/users.toml")).unwrap();
        for i in 0..300 {
            let user = randomuser_standin::user("avro", 1 + i / 100, (i % 100) as usize, false);
            let back = round_trip(&schema, &user).unwrap();
            for t in &spec.cassandra.tables {
                let want = crate::map::row(t, &Json::from(&user)).unwrap();
                let got = crate::map::row(t, &Json::from(&back)).unwrap();
                assert_eq!(got, want, "user {i}, table {}: {back}", t.name);
            }
        }
    }
}
