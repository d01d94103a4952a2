//! Mapping a record to a row: each column's jq expression, then its CQL type conversion.

use crate::cql::Row;
use crate::jq::{Input, Json};
use crate::spec::Cassandra;

/// Why a record could not become a row; it names the column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct MapError {
    pub column: String,
    pub message: String,
}

/// Computes every column of `c` from `record`, in spec order.
pub fn row(c: &Cassandra, record: &Json) -> Result<Row, MapError> {
    // Shared by every column's filter: converted for jaq at most once.
    let input = Input::new(record);
    c.columns
        .iter()
        .map(|col| {
            let fail = |message: String| MapError {
                column: col.name.clone(),
                message,
            };
            let value = col
                .jq
                .run_one_on(&input)
                .map_err(|e| fail(format!("jq `{}` failed: {e}", col.jq.code())))?;
            let cql = col.cql_type.to_cql(value).map_err(fail)?;
            if cql.is_none() && is_key(c, &col.name) {
                return Err(fail(format!(
                    "is part of the primary key but `{}` yielded null",
                    col.jq.code()
                )));
            }
            Ok(cql)
        })
        .collect()
}

fn is_key(c: &Cassandra, name: &str) -> bool {
    c.partition_key.iter().any(|k| k == name) || c.clustering_key.iter().any(|(k, _)| k == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::spec_with;
    use scylla::value::{CqlTimestamp, CqlValue};
    use serde_json::{Value, json};

    fn row(c: &Cassandra, record: &Value) -> Result<Row, MapError> {
        super::row(c, &Json::from(record))
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
