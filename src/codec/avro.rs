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
use chrono::{DateTime, NaiveDate, NaiveTime};
use serde_json::{Value, json};

/// `record` encoded by `schema` (Avro's binary encoding, no header): its JSON resolved to the
/// schema's types (numbers to int/long/float, objects to records, a value to its union branch).
pub fn encode(schema: &Schema, record: &Value) -> Result<Vec<u8>, String> {
    let value = Avro::try_from(record.clone())
        .and_then(|value| value.resolve(schema))
        .map_err(|e| e.to_string())?;
    apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()
        .and_then(|writer| writer.write_value_to_vec(value))
        .map_err(|e| e.to_string())
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
        Avro::Date(days) => match NaiveDate::from_num_days_from_ce_opt(days + 719_163) {
            Some(date) => Value::String(date.format("%Y-%m-%d").to_string()),
            None => json!(days),
        },
        Avro::Decimal(decimal) => {
            let scale = match schema {
                Some(Schema::Decimal(d)) => d.scale as i64,
                _ => 0,
            };
            let unscaled = num_bigint::BigInt::from(decimal);
            Value::String(BigDecimal::new(unscaled, scale).to_string())
        }
        Avro::BigDecimal(decimal) => Value::String(decimal.to_string()),
        Avro::TimeMillis(ms) => time(i64::from(ms) * 1_000_000),
        Avro::TimeMicros(us) => time(us * 1_000),
        Avro::TimestampMillis(ms) | Avro::LocalTimestampMillis(ms) => json!(ms),
        Avro::TimestampMicros(us) | Avro::LocalTimestampMicros(us) => {
            timestamp(DateTime::from_timestamp_micros(us), us)
        }
        Avro::TimestampNanos(ns) | Avro::LocalTimestampNanos(ns) => {
            timestamp(Some(DateTime::from_timestamp_nanos(ns)), ns)
        }
        Avro::Duration(d) => json!({
            "months": u32::from(d.months()),
            "days": u32::from(d.days()),
            "millis": u32::from(d.millis()),
        }),
        Avro::Uuid(u) => Value::String(u.to_string()),
    }
}

/// A float as JSON; NaN and the infinities, which JSON lacks, as text.
fn number(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or_else(|| Value::String(x.to_string()), Value::Number)
}

fn time(nanos: i64) -> Value {
    let secs = nanos.div_euclid(1_000_000_000) as u32;
    let frac = nanos.rem_euclid(1_000_000_000) as u32;
    match NaiveTime::from_num_seconds_from_midnight_opt(secs, frac) {
        Some(t) => Value::String(t.format("%H:%M:%S%.f").to_string()),
        None => json!(nanos),
    }
}

fn timestamp(t: Option<DateTime<chrono::Utc>>, raw: i64) -> Value {
    match t {
        Some(t) => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        None => json!(raw),
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
        let record = json!({
            "id": 7, "name": "ada", "at": 1_767_225_600_123_i64, "at_us": 1_767_225_600_123_456_i64,
            "born": 20_000, "price": "AQI=", "uid": "6f3c1a52-9d0e-4b8e-8f7a-2a3b4c5d6e7f",
            "tags": ["a", "b"]
        });
        // JSON has no bytes: a decimal is given as the bytes of its unscaled value.
        let mut record = record;
        record["price"] = json!([1, 2]);
        let bytes = encode(&schema, &record);
        // Resolution from JSON cannot make bytes from an array: say so, do not guess.
        assert!(bytes.is_err(), "{bytes:?}");
        record.as_object_mut().unwrap().remove("price");
        let schema = Schema::parse_str(&SCHEMA.replace(
            r#"{"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},"#,
            "",
        ))
        .unwrap();
        let bytes = encode(&schema, &record).unwrap();
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build();
        let back = reader.unwrap().read_value(&mut &bytes[..]).unwrap();
        assert_eq!(
            to_json(back, Some(&schema), &names(&schema)),
            json!({
                "id": 7, "name": "ada", "at": 1_767_225_600_123_i64,
                "at_us": "2026-01-01T00:00:00.123456Z", "born": "2024-10-04",
                "uid": "6f3c1a52-9d0e-4b8e-8f7a-2a3b4c5d6e7f", "tags": ["a", "b"]
            })
        );
        // A record missing a field without a default does not fit.
        let e = encode(&schema, &json!({"id": 1})).unwrap_err();
        assert!(!e.is_empty());
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
