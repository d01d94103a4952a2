//! The table a sample suggests: one column per leaf field (nested objects flattened, their
//! names joined by `_`), each with a CQL type and a jq path; and the partition key, a column
//! whose values are all there and all different across the sample.

use serde_json::Value;

use super::shape::{Format, Kind, Shape};

/// The longest column name Cassandra takes.
const MAX_NAME: usize = 48;

/// A proposed column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// CQL type.
    pub cql: String,
    pub jq: String,
    /// The field's path in the record (empty for a column computed from the whole record).
    pub path: Vec<String>,
    /// What a human should look at, if anything.
    pub note: Option<String>,
}

/// The columns of records of shape `records` (an object shape), in the order of their fields
/// (sorted by name, as serde_json keeps an object's).
pub fn columns(records: &Shape) -> Vec<Column> {
    let mut out = Vec::new();
    flatten(records, &mut Vec::new(), &mut out);
    let mut taken: Vec<String> = Vec::new();
    for column in &mut out {
        let mut name = column.name.clone();
        let mut n = 2;
        while taken.contains(&name) {
            let suffix = format!("_{n}");
            name = format!("{}{suffix}", cut(&column.name, MAX_NAME - suffix.len()));
            n += 1;
        }
        taken.push(name.clone());
        column.name = name;
    }
    out
}

fn flatten(shape: &Shape, path: &mut Vec<String>, out: &mut Vec<Column>) {
    for (field, value) in &shape.fields {
        path.push(field.clone());
        let kinds = value.kinds();
        if kinds == [Kind::Object] && !value.fields.is_empty() {
            flatten(value, path, out);
        } else {
            out.push(leaf(value, &kinds, path));
        }
        path.pop();
    }
}

/// The column of one leaf field.
fn leaf(shape: &Shape, kinds: &[Kind], path: &[String]) -> Column {
    let jq = jq_path(path);
    // A filter applied to non-null values only: a null stays a null.
    let piped = |filter: &str| match shape.nullable() {
        true => format!("{jq} | values | {filter}"),
        false => format!("{jq} | {filter}"),
    };
    let (cql, jq, note) = match kinds {
        [] => (
            "text".to_owned(),
            jq,
            Some("only nulls in the sample: the type is a guess".to_owned()),
        ),
        [Kind::Array] => match list_of(shape.items.as_deref()) {
            Some(element) => (format!("list<{element}>"), jq, None),
            None => (
                "text".to_owned(),
                piped("tojson"),
                Some("an array of objects or mixed values, kept as JSON text".to_owned()),
            ),
        },
        [Kind::Object] => (
            "text".to_owned(),
            piped("tojson"),
            Some("always an empty object in the sample, kept as JSON text".to_owned()),
        ),
        [one] => (scalar(*one, shape.format).to_owned(), jq, None),
        several
            if several
                .iter()
                .all(|k| !matches!(k, Kind::Array | Kind::Object)) =>
        {
            (
                "text".to_owned(),
                piped("tostring"),
                Some("values of several kinds in the sample, kept as text".to_owned()),
            )
        }
        _ => (
            "text".to_owned(),
            piped("tojson"),
            Some("values of several kinds in the sample, kept as JSON text".to_owned()),
        ),
    };
    Column {
        name: column_name(path),
        cql,
        jq,
        path: path.to_vec(),
        note,
    }
}

/// The CQL type of a scalar kind.
fn scalar(kind: Kind, format: Option<Format>) -> &'static str {
    match (kind, format) {
        (Kind::Bool, _) => "boolean",
        (Kind::Integer, _) => "bigint",
        (Kind::BigInteger, _) => "varint",
        (Kind::Number, _) => "double",
        (Kind::String, Some(Format::DateTime)) => "timestamp",
        (Kind::String, Some(Format::Uuid)) => "uuid",
        _ => "text",
    }
}

/// The element type of a list column for arrays whose elements are all of one scalar kind
/// and never null (a CQL list holds no nulls); `None` otherwise.
fn list_of(items: Option<&Shape>) -> Option<&'static str> {
    let items = items.filter(|i| i.seen > 0 && !i.nullable())?;
    match items.kinds().as_slice() {
        // Lists of strings stay text: a format seen in a few elements is a thin guess.
        [Kind::String] => Some("text"),
        [kind @ (Kind::Bool | Kind::Integer | Kind::BigInteger | Kind::Number)] => {
            Some(scalar(*kind, None))
        }
        _ => None,
    }
}

/// The jq path of a field: `.name.first`, or `.["odd key"]` where a key is no plain name.
pub fn jq_path(path: &[String]) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let mut out = String::new();
    for key in path {
        if is_plain(key) {
            out.push('.');
            out.push_str(key);
        } else {
            if out.is_empty() {
                out.push('.');
            }
            // A JSON string is a jq string (a backslash is escaped, so no `\(` can appear).
            let quoted = serde_json::to_string(key).unwrap_or_else(|_| "\"\"".to_owned());
            out.push_str(&format!("[{quoted}]"));
        }
    }
    out
}

/// Whether `key` can follow a `.` in jq as it is.
fn is_plain(key: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "and", "or", "not", "if", "then", "elif", "else", "end", "as", "def", "reduce", "foreach",
        "try", "catch", "label", "import", "include", "__loc__",
    ];
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&key)
}

/// A column name for a field path: snake case (`magType` -> `mag_type`), the keys joined by
/// `_`, what is no letter or digit an `_`, starting with a letter, at most 48 characters.
pub fn column_name(path: &[String]) -> String {
    let mut name = String::new();
    for key in path {
        if !name.is_empty() {
            name.push('_');
        }
        let mut previous: Option<char> = None;
        for c in key.chars() {
            if c.is_ascii_uppercase()
                && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
            {
                name.push('_');
            }
            name.push(if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            });
            previous = Some(c);
        }
    }
    let mut squeezed = String::new();
    for c in name.chars() {
        if !(c == '_' && (squeezed.is_empty() || squeezed.ends_with('_'))) {
            squeezed.push(c);
        }
    }
    let squeezed = squeezed.trim_end_matches('_');
    let name = match squeezed.chars().next() {
        Some(c) if c.is_ascii_alphabetic() => squeezed.to_owned(),
        Some(_) => format!("f_{squeezed}"),
        None => "field".to_owned(),
    };
    cut(&name, MAX_NAME).to_owned()
}

fn cut(s: &str, n: usize) -> &str {
    // ASCII only by construction.
    &s[..s.len().min(n)]
}

/// The proposed partition key.
#[derive(Debug, PartialEq)]
pub struct Key {
    /// The index of the key column in the columns (after [`choose_key`] added one, if it did).
    pub column: usize,
    /// Why this one; for the spec's comment.
    pub why: String,
}

/// Chooses the partition key among `columns` for `records`: a column of text, a whole number
/// or a UUID whose value is in every record and different in each. Names that say "identity"
/// win (`id`, `uuid`, `*_uuid`, `*_id`), then UUIDs, then the first such column. With none,
/// a `record` column (the record's JSON text) is added and chosen, and `why` says so.
pub fn choose_key(columns: &mut Vec<Column>, records: &[Value]) -> Key {
    let rank = |c: &Column| {
        let last = c.path.last().map(String::as_str).unwrap_or_default();
        if c.name == "id" {
            0
        } else if last == "uuid" || c.name == "uuid" {
            1
        } else if c.name.ends_with("_uuid") || c.name.ends_with("_id") {
            2
        } else if c.cql == "uuid" {
            3
        } else if c.path.len() == 1 {
            4
        } else {
            5
        }
    };
    let best = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c.cql.as_str(), "text" | "bigint" | "uuid") && c.note.is_none())
        .filter(|(_, c)| unique(records, &c.path))
        .min_by_key(|(i, c)| (rank(c), *i));
    let sample = match records.len() {
        1 => "the one record of the sample (one record proves no uniqueness)".to_owned(),
        n => format!("the {n} records of the sample"),
    };
    if let Some((i, c)) = best {
        return Key {
            column: i,
            why: format!("`{}` is present and different in each of {sample}", c.name),
        };
    }
    let name = ["record", "record_json", "whole_record"]
        .into_iter()
        .find(|n| !columns.iter().any(|c| c.name == *n))
        .unwrap_or("aqueduct_record");
    columns.push(Column {
        name: name.into(),
        cql: "text".into(),
        jq: "tojson".into(),
        path: Vec::new(),
        note: None,
    });
    Key {
        column: columns.len() - 1,
        why: format!(
            "no field is present and different in each of {sample}: the key is the whole record's JSON text (a changed record makes a new row); choose the field that identifies a record"
        ),
    }
}

/// Whether the value at `path` is a string or a whole number in every record, and no two
/// are the same.
fn unique(records: &[Value], path: &[String]) -> bool {
    let mut seen = std::collections::HashSet::new();
    records.iter().all(|r| {
        let value = path.iter().try_fold(r, |v, key| v.get(key));
        match value {
            Some(v @ (Value::String(_) | Value::Number(_))) if !v.is_f64() => {
                seen.insert(v.to_string())
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(columns: &[Column]) -> Vec<(&str, &str, &str)> {
        columns
            .iter()
            .map(|c| (c.name.as_str(), c.cql.as_str(), c.jq.as_str()))
            .collect()
    }

    #[test]
    fn nested_objects_flatten_and_leaves_get_types() {
        let records = [
            json!({"name": {"first": "Ana", "last": "Lima"}, "login": {"uuid": "7a0eed16-9430-4d68-901f-c0d4c1c3bf00"}, "dob": {"date": "1990-01-01T00:00:00Z", "age": 35}, "postcode": 1234, "coordinates": [1.5, 2, 3], "labels": [{"name": "bug"}], "magType": "ml", "ok": true, "gone": null}),
            json!({"name": {"first": "Bo", "last": "Ek"}, "login": {"uuid": "8b0eed16-9430-4d68-901f-c0d4c1c3bf00"}, "dob": {"date": "1991-01-01T00:00:00Z", "age": 34}, "postcode": "AB1", "coordinates": [0, 0, 0], "labels": [], "magType": null, "ok": false, "gone": null}),
        ];
        let columns = columns(&Shape::of(&records));
        assert_eq!(
            names(&columns),
            [
                ("coordinates", "list<double>", ".coordinates"),
                ("dob_age", "bigint", ".dob.age"),
                ("dob_date", "timestamp", ".dob.date"),
                ("gone", "text", ".gone"),
                ("labels", "text", ".labels | tojson"),
                ("login_uuid", "uuid", ".login.uuid"),
                ("mag_type", "text", ".magType"),
                ("name_first", "text", ".name.first"),
                ("name_last", "text", ".name.last"),
                ("ok", "boolean", ".ok"),
                ("postcode", "text", ".postcode | tostring"),
            ]
        );
        assert!(columns[3].note.is_some());
    }

    #[test]
    fn odd_keys_are_quoted_in_jq_and_made_names() {
        let path = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        assert_eq!(jq_path(&path(&["a", "b-c"])), r#".a["b-c"]"#);
        assert_eq!(jq_path(&path(&["if", "x"])), r#".["if"].x"#);
        assert_eq!(jq_path(&path(&["say \"hi\""])), r#".["say \"hi\""]"#);
        assert_eq!(column_name(&path(&["a", "b-c"])), "a_b_c");
        assert_eq!(
            column_name(&path(&["HTTPStatus", "_links"])),
            "httpstatus_links"
        );
        assert_eq!(column_name(&path(&["3d", "x"])), "f_3d_x");
        assert_eq!(column_name(&path(&["%%"])), "field");
        assert_eq!(column_name(&path(&[&"a".repeat(60)])).len(), 48);
        // Two fields that make one name: the second gets a suffix.
        let shape = Shape::of(&[json!({"a_b": 1, "a": {"b": 2}})]);
        let names: Vec<String> = columns(&shape).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["a_b", "a_b_2"]);
    }

    #[test]
    fn the_key_is_a_unique_field_named_like_an_identity() {
        let records = [
            json!({"email": "a@x.io", "login": {"uuid": "7a0eed16-9430-4d68-901f-c0d4c1c3bf00"}, "id": {"value": null}}),
            json!({"email": "b@x.io", "login": {"uuid": "8b0eed16-9430-4d68-901f-c0d4c1c3bf00"}, "id": {"value": "1"}}),
        ];
        let mut cols = columns(&Shape::of(&records));
        let key = choose_key(&mut cols, &records);
        assert_eq!(cols[key.column].name, "login_uuid", "{}", key.why);
        // A plain `id` wins over everything.
        let records = [
            json!({"email": "a", "id": 7}),
            json!({"email": "b", "id": 8}),
        ];
        let mut cols = columns(&Shape::of(&records));
        let key = choose_key(&mut cols, &records);
        assert_eq!(cols[key.column].name, "id");
        // Nothing unique: the record's JSON text, said so.
        let records = [json!({"n": 1}), json!({"n": 1})];
        let mut cols = columns(&Shape::of(&records));
        let key = choose_key(&mut cols, &records);
        assert_eq!(
            (cols[key.column].name.as_str(), cols[key.column].jq.as_str()),
            ("record", "tojson")
        );
        assert!(key.why.starts_with("no field"), "{}", key.why);
    }
}
