//! JSON Schema validation of records. The schema is compiled once by `spec::load`.

use serde::Serialize;
use serde_json::Value;

/// One way a record breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// JSON pointer into the record, e.g. `/login/uuid`; empty for the record itself.
    pub pointer: String,
    /// The schema keyword that failed, e.g. `required`, `type`, `format`.
    pub keyword: String,
    /// JSON pointer into the schema.
    pub schema_path: String,
    pub message: String,
}

/// Every violation of `record` (empty when valid, or when there is no schema).
pub fn violations(schema: Option<&jsonschema::Validator>, record: &Value) -> Vec<Violation> {
    let Some(schema) = schema else {
        return Vec::new();
    };
    // Most records pass: the plain check is cheaper than collecting errors.
    if schema.is_valid(record) {
        return Vec::new();
    }
    schema
        .iter_errors(record)
        .map(|e| Violation {
            pointer: e.instance_path().to_string(),
            keyword: e.kind().keyword().to_string(),
            schema_path: e.schema_path().to_string(),
            message: e.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_pointer_and_keyword() {
        let schema = jsonschema::validator_for(&json!({
            "type": "object",
            "required": ["login"],
            "properties": {"dob": {"type": "object", "properties": {"age": {"type": "integer"}}}}
        }))
        .unwrap();
        assert!(violations(Some(&schema), &json!({"login": {}})).is_empty());
        let v = violations(Some(&schema), &json!({"dob": {"age": "x"}}));
        assert_eq!(v.len(), 2, "{v:?}");
        let age = v.iter().find(|v| v.keyword == "type").unwrap();
        assert_eq!(age.pointer, "/dob/age");
        assert!(age.message.contains("\"x\""), "{age:?}");
        let required = v.iter().find(|v| v.keyword == "required").unwrap();
        assert_eq!(required.pointer, "");
        assert!(violations(None, &json!(1)).is_empty());
    }
}
