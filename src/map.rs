//! Mapping a record to a table's row: each column's jq expression, then its CQL type
//! conversion.

use scylla::value::CqlValue;

use crate::cql::{CqlType, Row};
use crate::jq::{Input, Json};
use crate::spec::{Table, Ttl};

/// Why a record could not become a row; it names the column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct MapError {
    pub column: String,
    pub message: String,
}

/// What a record makes of one table.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The row to write: every column in spec order, then the time to live and the write
    /// time, when the table takes them from the record (the upsert's bind markers).
    Upsert(Row),
    /// The row to delete: the write time (when the table takes it from the record), then the
    /// primary key columns, partition key first (the delete's bind markers).
    Delete(Row),
}

/// How a failing delete condition is named in its dead letter's `column`.
pub const DELETE: &str = "delete";

/// The change a record makes to table `t`: a delete when the table's `delete` condition holds,
/// else the row to write.
pub fn change_of(t: &Table, input: &Input) -> Result<Change, MapError> {
    let Some(condition) = &t.delete else {
        return row_of(t, input).map(Change::Upsert);
    };
    let fail = |message: String| MapError {
        column: DELETE.to_owned(),
        message,
    };
    let deletes = match condition.run_one_on(input) {
        Ok(serde_json::Value::Bool(b)) => b,
        Ok(serde_json::Value::Null) => false,
        Ok(other) => {
            return Err(fail(format!(
                "`{}` yielded {other}, not true or false",
                condition.code()
            )));
        }
        Err(e) => return Err(fail(format!("jq `{}` failed: {e}", condition.code()))),
    };
    if !deletes {
        return row_of(t, input).map(Change::Upsert);
    }
    let mut key = Vec::new();
    if let Some(jq) = &t.writetime {
        key.push(Some(writetime(jq, input)?));
    }
    for i in t.key_columns() {
        key.push(column(t, &t.columns[i], input)?);
    }
    Ok(Change::Delete(key))
}

/// The delete a Kafka tombstone makes of table `t`: its message `key` gives the primary key,
/// as the value of a one-column key, or as a JSON object naming each key column (Debezium's
/// and Kafka Connect's keys; an object of one field also gives a one-column key); with the
/// message's timestamp as the write time where the table takes one.
pub fn tombstone_change(
    t: &Table,
    key: &serde_json::Value,
    timestamp_ms: Option<i64>,
) -> Result<Change, MapError> {
    let columns: Vec<usize> = t.key_columns().collect();
    let names: Vec<&str> = columns
        .iter()
        .map(|&i| t.columns[i].name.as_str())
        .collect();
    let values: Vec<(usize, serde_json::Value)> = match key {
        serde_json::Value::Object(fields) if names.iter().all(|n| fields.contains_key(*n)) => {
            columns
                .iter()
                .zip(&names)
                .map(|(&i, n)| (i, fields[*n].clone()))
                .collect()
        }
        serde_json::Value::Object(fields) if columns.len() == 1 && fields.len() == 1 => {
            vec![(
                columns[0],
                fields.values().next().cloned().unwrap_or_default(),
            )]
        }
        serde_json::Value::Object(_) | serde_json::Value::Array(_) if columns.len() > 1 => {
            return Err(MapError {
                column: names.join(", "),
                message: format!(
                    "the tombstone's message key {key} does not name every primary key column ({})",
                    names.join(", ")
                ),
            });
        }
        v if columns.len() == 1 => vec![(columns[0], v.clone())],
        _ => {
            return Err(MapError {
                column: names.join(", "),
                message: format!(
                    "a tombstone deletes by its message key, which gives a one-column primary key or a JSON object naming each key column; this table's has {} ({})",
                    names.len(),
                    names.join(", ")
                ),
            });
        }
    };
    let mut row = Vec::with_capacity(values.len() + 1);
    if t.writetime.is_some() {
        let ms = timestamp_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        row.push(Some(CqlValue::BigInt(ms.saturating_mul(1000))));
    }
    for (i, value) in values {
        let col = &t.columns[i];
        let value = match (&col.cql_type, value) {
            // A numeric or boolean key text for a text column stays text.
            (CqlType::Text | CqlType::Ascii, v) if !v.is_string() => {
                serde_json::Value::String(v.to_string())
            }
            (_, v) => v,
        };
        let value = col.cql_type.to_cql(value).map_err(|e| MapError {
            column: col.name.clone(),
            message: format!("the tombstone's message key: {e}"),
        })?;
        row.push(value);
    }
    Ok(Change::Delete(row))
}

/// Computes every column of table `t` from `record`, in spec order.
pub fn row(t: &Table, record: &Json) -> Result<Row, MapError> {
    row_of(t, &Input::new(record))
}

/// [`row`] of a record already made an [`Input`]: shared by every column's filter and every
/// table's, so it is converted for jaq at most once.
pub fn row_of(t: &Table, input: &Input) -> Result<Row, MapError> {
    let mut row = columns(t, input)?;
    if let Some(Ttl::Jq(jq)) = &t.ttl {
        row.push(Some(ttl(jq, input)?));
    }
    if let Some(jq) = &t.writetime {
        row.push(Some(writetime(jq, input)?));
    }
    Ok(row)
}

/// The write time of `USING TIMESTAMP`: microseconds since the epoch, from a timestamp.
fn writetime(jq: &crate::jq::Jq, input: &Input) -> Result<CqlValue, MapError> {
    let fail = |message: String| MapError {
        column: WRITETIME.to_owned(),
        message,
    };
    let value = jq
        .run_one_on(input)
        .map_err(|e| fail(format!("jq `{}` failed: {e}", jq.code())))?;
    match CqlType::Timestamp
        .to_cql(value)
        .map_err(|e| fail(e.to_string()))?
    {
        Some(CqlValue::Timestamp(ms)) => Ok(CqlValue::BigInt(ms.0.saturating_mul(1000))),
        _ => Err(fail(format!(
            "`{}` yielded null; a row's write time must be given",
            jq.code()
        ))),
    }
}

/// How a failing write time is named in its dead letter's `column`.
pub const WRITETIME: &str = "writetime";

/// How a failing time to live is named in its dead letter's `column`.
pub const TTL: &str = "ttl";

/// Cassandra's largest time to live: 20 years, in seconds.
const MAX_TTL_SECS: i64 = 630_720_000;

/// The time to live of `USING TTL ?`: whole seconds; null is none (0).
fn ttl(jq: &crate::jq::Jq, input: &Input) -> Result<CqlValue, MapError> {
    let fail = |message: String| MapError {
        column: TTL.to_owned(),
        message,
    };
    let value = jq
        .run_one_on(input)
        .map_err(|e| fail(format!("jq `{}` failed: {e}", jq.code())))?;
    match CqlType::Int
        .to_cql(value)
        .map_err(|e| fail(e.to_string()))?
    {
        None => Ok(CqlValue::Int(0)),
        Some(CqlValue::Int(s)) if (0..=MAX_TTL_SECS).contains(&i64::from(s)) => {
            Ok(CqlValue::Int(s))
        }
        Some(other) => Err(fail(format!(
            "{} is not a time to live in seconds (0 to 20 years)",
            crate::cql::to_json(&other)
        ))),
    }
}

fn columns(t: &Table, input: &Input) -> Result<Row, MapError> {
    t.columns.iter().map(|col| column(t, col, input)).collect()
}

/// One column of table `t`'s row.
fn column(
    t: &Table,
    col: &crate::spec::Column,
    input: &Input,
) -> Result<Option<CqlValue>, MapError> {
    let fail = |message: String| MapError {
        column: col.name.clone(),
        message,
    };
    let value = col
        .jq
        .run_one_on(input)
        .map_err(|e| fail(format!("jq `{}` failed: {e}", col.jq.code())))?;
    let cql = col
        .cql_type
        .to_cql(value)
        .map_err(|e| fail(e.to_string()))?;
    if cql.is_none() && t.is_key(&col.name) {
        return Err(fail(format!(
            "is part of the primary key but `{}` yielded null",
            col.jq.code()
        )));
    }
    Ok(cql)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::spec_with;
    use scylla::value::{CqlTimestamp, CqlValue};
    use serde_json::{Value, json};

    fn row(spec: &crate::spec::Cassandra, record: &Value) -> Result<Row, MapError> {
        super::row(&spec.tables[0], &Json::from(record))
    }

    fn spec() -> crate::spec::Spec {
        spec_with(
            "",
            r#"
            table = "users"
            partition_key = ["id"]
            columns.id = { type = "uuid", jq = ".login.uuid" }
            columns.address = { type = "text", jq = '"\(.location.street.number) \(.location.street.name)"' }
            columns.post_code = { type = "text", jq = ".location.postcode | tostring" }
            columns.dob = { type = "timestamp", jq = ".dob.date" }
            columns.age = { type = "int", jq = ".dob.age" }
            "#,
        )
    }

    fn user() -> Value {
        json!({
            "login": {"uuid": "7a0eed16-9430-4d68-901f-c0d4c1c3bf00"},
            "location": {"street": {"number": 8929, "name": "Valwood Pkwy"}, "postcode": 10001},
            "dob": {"date": "1992-03-08T15:13:16.688Z", "age": 33}
        })
    }

    #[test]
    fn maps_columns_in_spec_order() {
        let spec = spec();
        let row = row(&spec.cassandra, &user()).unwrap();
        // The file's order: id, address, post_code, dob, age.
        assert_eq!(
            row,
            vec![
                Some(CqlValue::Uuid(
                    "7a0eed16-9430-4d68-901f-c0d4c1c3bf00".parse().unwrap()
                )),
                Some(CqlValue::Text("8929 Valwood Pkwy".into())),
                Some(CqlValue::Text("10001".into())),
                Some(CqlValue::Timestamp(CqlTimestamp(700_067_596_688))),
                Some(CqlValue::Int(33)),
            ]
        );
    }

    #[test]
    fn missing_optional_field_is_null() {
        let spec = spec();
        let mut u = user();
        u["dob"].as_object_mut().unwrap().remove("age");
        let row = row(&spec.cassandra, &u).unwrap();
        assert_eq!(row[4], None);
    }

    #[test]
    fn a_write_time_is_bound_last_in_microseconds() {
        let spec = spec_with(
            "",
            r#"
            table = "users"
            writetime = ".updated"
            partition_key = ["id"]
            columns.id = { type = "text", jq = ".id" }
            "#,
        );
        let t = &spec.cassandra.tables[0];
        assert_eq!(
            crate::cassandra::ddl::insert(t),
            "INSERT INTO \"ks\".\"users\" (\"id\") VALUES (?) USING TIMESTAMP ?"
        );
        let got = row(
            &spec.cassandra,
            &json!({"id": "a", "updated": "2026-12-01T10:00:00.5Z"}),
        );
        assert_eq!(
            got.unwrap(),
            vec![
                Some(CqlValue::Text("a".into())),
                Some(CqlValue::BigInt(1_796_119_200_500_000))
            ]
        );
        let got = row(
            &spec.cassandra,
            &json!({"id": "a", "updated": 1_796_119_200_500i64}),
        );
        assert_eq!(
            got.unwrap()[1],
            Some(CqlValue::BigInt(1_796_119_200_500_000))
        );
        let err = row(&spec.cassandra, &json!({"id": "a"})).unwrap_err();
        assert_eq!(err.column, WRITETIME);
        assert!(err.message.contains("yielded null"), "{err}");
    }

    #[test]
    fn a_delete_condition_makes_a_delete_by_primary_key() {
        let spec = spec_with(
            "",
            r#"
            table = "users"
            delete = ".gone"
            writetime = ".at"
            partition_key = ["id"]
            clustering_key = ["n"]
            columns.name = { type = "text", jq = ".name" }
            columns.n = { type = "int", jq = ".n" }
            columns.id = { type = "text", jq = ".id" }
            "#,
        );
        let t = &spec.cassandra.tables[0];
        assert_eq!(
            crate::cassandra::ddl::delete(t),
            "DELETE FROM \"ks\".\"users\" USING TIMESTAMP ? WHERE \"id\" = ? AND \"n\" = ?"
        );
        let change = |record: Value| change_of(t, &Input::new(&Json::from(&record)));
        assert_eq!(
            change(json!({"id": "a", "n": 1, "gone": true, "at": 1})),
            Ok(Change::Delete(vec![
                Some(CqlValue::BigInt(1000)),
                Some(CqlValue::Text("a".into())),
                Some(CqlValue::Int(1))
            ]))
        );
        assert!(matches!(
            change(json!({"id": "a", "n": 1, "gone": false, "at": 1})),
            Ok(Change::Upsert(_))
        ));
        assert!(matches!(
            change(json!({"id": "a", "n": 1, "at": 1})),
            Ok(Change::Upsert(_))
        ));
        let err = change(json!({"id": "a", "n": 1, "gone": "yes", "at": 1})).unwrap_err();
        assert_eq!(err.column, DELETE);
        // A tombstone's key text finds a row by a one-column primary key only; a JSON object
        // (Debezium's, Kafka Connect's keys) names each key column.
        let err = tombstone_change(t, &json!("a"), Some(5)).unwrap_err();
        assert!(err.message.contains("has 2 (id, n)"), "{err}");
        let Ok(Change::Delete(row)) = tombstone_change(t, &json!({"n": 1, "id": "a"}), Some(5))
        else {
            panic!("an object naming both key columns deletes");
        };
        assert_eq!(row.len(), 3, "{row:?}");
        let err = tombstone_change(t, &json!({"id": "a"}), Some(5)).unwrap_err();
        assert!(
            err.message
                .contains("does not name every primary key column (id, n)"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_column() {
        let spec = spec();
        let mut u = user();
        u["dob"]["age"] = json!("old");
        let err = row(&spec.cassandra, &u).unwrap_err();
        assert_eq!(err.column, "age");
        assert!(
            err.to_string()
                .contains("column age: expected an integer in range for int, got \"old\""),
            "{err}"
        );
        let mut u = user();
        u["login"] = json!({});
        let err = row(&spec.cassandra, &u).unwrap_err();
        assert_eq!(err.column, "id");
        assert!(err.message.contains("primary key"), "{err}");
        let mut u = user();
        u["location"] = json!("nowhere");
        let err = row(&spec.cassandra, &u).unwrap_err();
        assert_eq!(err.column, "address");
        assert!(err.message.contains("jq"), "{err}");
    }
}
