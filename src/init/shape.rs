//! The shape of sample values: which kinds of JSON value were seen at each place, how often
//! each field was present, which string formats held throughout; and the JSON Schema it
//! implies ([`Shape::schema`]). Plain counting, as dlt and Airbyte's connector builder infer:
//! no guess outlives the sample, and every guess is one a human can read and change.

use serde_json::{Map, Value, json};

/// A string format recognised in samples, named as JSON Schema names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DateTime,
    Uuid,
    Email,
}

impl Format {
    /// The `format` keyword's value.
    pub fn name(self) -> &'static str {
        match self {
            Format::DateTime => "date-time",
            Format::Uuid => "uuid",
            Format::Email => "email",
        }
    }
}

/// The format `s` is written in, if one is recognised. A date-time is RFC 3339 with a `T`
/// (what a `timestamp` column reads); a UUID is the hyphenated form (what a `uuid` column
/// reads); an email is `local@domain.tld` without spaces.
pub fn format_of(s: &str) -> Option<Format> {
    let t_at_10 = matches!(s.as_bytes().get(10), Some(b'T' | b't'));
    if t_at_10 && chrono::DateTime::parse_from_rfc3339(s).is_ok() {
        return Some(Format::DateTime);
    }
    if s.len() == 36 && s.as_bytes()[8] == b'-' && uuid::Uuid::try_parse(s).is_ok() {
        return Some(Format::Uuid);
    }
    let (local, domain) = s.split_once('@')?;
    let plain = |part: &str| !part.is_empty() && !part.contains(['@', ' ', '\t', '\n']);
    let dotted = domain.split('.').count() >= 2 && domain.split('.').all(|p| !p.is_empty());
    (plain(local) && plain(domain) && dotted).then_some(Format::Email)
}

/// What was seen at one place of the samples (the records, a field, an array's elements).
#[derive(Debug, Default, Clone)]
pub struct Shape {
    /// Values seen here.
    pub seen: usize,
    pub nulls: usize,
    pub bools: usize,
    /// Whole numbers.
    pub integers: usize,
    /// Whole numbers outside a `bigint`'s range (of the `integers`).
    pub big_integers: usize,
    /// Numbers with a fraction or an exponent.
    pub fractions: usize,
    pub strings: usize,
    /// The format every string seen here had, while they all had the same.
    pub format: Option<Format>,
    /// Arrays seen here, and the shape of all their elements together.
    pub arrays: usize,
    pub items: Option<Box<Shape>>,
    /// Objects seen here, and their fields in the order first seen, each with the shape of
    /// its values where present.
    pub objects: usize,
    pub fields: Vec<(String, Shape)>,
}

/// A kind of JSON value, as a column's type cares for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Integer,
    /// Whole numbers, some beyond a `bigint` (64 bits).
    BigInteger,
    Number,
    String,
    Array,
    Object,
}

impl Shape {
    /// The shape of `values`.
    pub fn of<'a>(values: impl IntoIterator<Item = &'a Value>) -> Shape {
        let mut shape = Shape::default();
        for v in values {
            shape.observe(v);
        }
        shape
    }

    /// Adds one value.
    pub fn observe(&mut self, v: &Value) {
        self.seen += 1;
        match v {
            Value::Null => self.nulls += 1,
            Value::Bool(_) => self.bools += 1,
            Value::Number(n) if n.is_i64() => self.integers += 1,
            Value::Number(n) if n.is_u64() => {
                self.integers += 1;
                self.big_integers += 1;
            }
            Value::Number(_) => self.fractions += 1,
            Value::String(s) => {
                let format = format_of(s);
                self.format = match self.strings {
                    0 => format,
                    _ => self.format.filter(|f| Some(*f) == format),
                };
                self.strings += 1;
            }
            Value::Array(items) => {
                self.arrays += 1;
                let shape = self.items.get_or_insert_default();
                for item in items {
                    shape.observe(item);
                }
            }
            Value::Object(fields) => {
                self.objects += 1;
                for (name, value) in fields {
                    match self.fields.iter_mut().find(|(n, _)| n == name) {
                        Some((_, shape)) => shape.observe(value),
                        None => {
                            let mut shape = Shape::default();
                            shape.observe(value);
                            self.fields.push((name.clone(), shape));
                        }
                    }
                }
            }
        }
    }

    /// The kinds seen here other than null, integers counted as numbers when fractions were
    /// seen too.
    pub fn kinds(&self) -> Vec<Kind> {
        let numbers = match (self.integers > 0, self.fractions > 0) {
            (_, true) => Some(Kind::Number),
            (true, false) if self.big_integers > 0 => Some(Kind::BigInteger),
            (true, false) => Some(Kind::Integer),
            (false, false) => None,
        };
        [
            (self.bools > 0).then_some(Kind::Bool),
            numbers,
            (self.strings > 0).then_some(Kind::String),
            (self.arrays > 0).then_some(Kind::Array),
            (self.objects > 0).then_some(Kind::Object),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Whether a null was seen here.
    pub fn nullable(&self) -> bool {
        self.nulls > 0
    }

    /// Whether the field `name` of the objects seen here was in every one of them.
    pub fn always_has(&self, name: &str) -> bool {
        self.fields
            .iter()
            .any(|(n, shape)| n == name && shape.seen == self.objects)
    }

    /// The JSON Schema of the values seen here: their types (with `null` when one was null),
    /// a string format that held throughout, objects' properties with the fields present in
    /// every object `required`, and arrays' `items`. Nothing seen: `{}`, anything goes.
    pub fn schema(&self) -> Value {
        let mut schema = Map::new();
        let mut types: Vec<&str> = self
            .kinds()
            .into_iter()
            .map(|k| match k {
                Kind::Bool => "boolean",
                Kind::Integer | Kind::BigInteger => "integer",
                Kind::Number => "number",
                Kind::String => "string",
                Kind::Array => "array",
                Kind::Object => "object",
            })
            .collect();
        if self.nullable() {
            types.push("null");
        }
        match types.as_slice() {
            [] => return json!({}),
            [one] => schema.insert("type".into(), json!(one)),
            _ => schema.insert("type".into(), json!(types)),
        };
        if let (Some(format), true) = (self.format, self.strings > 0) {
            schema.insert("format".into(), json!(format.name()));
        }
        if self.objects > 0 {
            let properties: Map<String, Value> = self
                .fields
                .iter()
                .map(|(name, shape)| (name.clone(), shape.schema()))
                .collect();
            let required: Vec<&str> = self
                .fields
                .iter()
                .filter(|(name, _)| self.always_has(name))
                .map(|(name, _)| name.as_str())
                .collect();
            schema.insert("properties".into(), Value::Object(properties));
            if !required.is_empty() {
                schema.insert("required".into(), json!(required));
            }
        }
        if let Some(items) = self.items.as_ref().filter(|i| i.seen > 0) {
            schema.insert("items".into(), items.schema());
        }
        Value::Object(schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised_strictly() {
        assert_eq!(format_of("2026-11-01T10:00:00Z"), Some(Format::DateTime));
        assert_eq!(
            format_of("1993-07-20T09:44:18.674+02:00"),
            Some(Format::DateTime)
        );
        // A space for the `T`, a date alone, no zone: not what a timestamp column reads.
        assert_eq!(format_of("2026-11-01 10:00:00Z"), None);
        assert_eq!(format_of("2026-11-01"), None);
        assert_eq!(format_of("2026-11-01T10:00:00"), None);
        assert_eq!(
            format_of("7a0eed16-9430-4d68-901f-c0d4c1c3bf00"),
            Some(Format::Uuid)
        );
        assert_eq!(format_of("7a0eed1694304d68901fc0d4c1c3bf00"), None);
        assert_eq!(format_of("ana.lima@example.com"), Some(Format::Email));
        for not_email in ["@example.com", "a@b", "a b@c.d", "a@b.", "a@@b.c", "plain"] {
            assert_eq!(format_of(not_email), None, "{not_email}");
        }
    }

    #[test]
    fn the_schema_has_types_nullability_required_fields_and_formats() {
        let records = [
            json!({"id": 1, "at": "2026-11-01T10:00:00Z", "mag": 1, "who": {"mail": "a@b.io"}, "tags": ["x"]}),
            json!({"id": 2, "at": "2026-11-02T10:00:00Z", "mag": 2.5, "who": null, "note": "n"}),
        ];
        let schema = Shape::of(&records).schema();
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "at": {"type": "string", "format": "date-time"},
                    "mag": {"type": "number"},
                    "who": {"type": ["object", "null"], "properties": {"mail": {"type": "string", "format": "email"}}, "required": ["mail"]},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "note": {"type": "string"}
                },
                "required": ["at", "id", "mag", "who"]
            })
        );
    }

    #[test]
    fn a_format_that_does_not_hold_throughout_is_left_out_and_mixed_kinds_are_listed() {
        let shape = Shape::of(&[json!("2026-11-01T10:00:00Z"), json!("soon"), json!(3)]);
        assert_eq!(shape.schema(), json!({"type": ["integer", "string"]}));
        assert_eq!(shape.kinds(), [Kind::Integer, Kind::String]);
        let big = Shape::of(&[json!(1), json!(u64::MAX)]);
        assert_eq!(big.kinds(), [Kind::BigInteger]);
        assert_eq!(big.schema()["type"], "integer");
        // Nothing seen (the items of empty arrays): anything goes.
        assert_eq!(Shape::of(&[json!([])]).schema(), json!({"type": "array"}));
    }
}
