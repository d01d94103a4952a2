//! The spec reference in Markdown, rendered from the spec's JSON Schema ([`super::json_schema`]):
//! a table of keys for each table of the spec, in the order the schema nests them, so the
//! reference is the structs' doc comments and never kept by hand.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use super::raw::{DURATION_PATTERN, SIZE_PATTERN};

/// The section of the keys outside any table.
const TOP: &str = "Top level";

/// The top level's tables in the order a record meets them.
const FLOW: [&str; 5] = [
    "[source]",
    "[validate]",
    "[kafka]",
    "[cassandra]",
    "[metrics]",
];

/// The reference: the book's `reference/spec.md`.
pub fn markdown(schema: &Value) -> String {
    let mut out = String::from(
        "# Spec reference\n\n\
         Every key of a pipeline spec, generated from the spec's structs and their doc comments\n\
         by `aqueduct docs` (a test fails when this file differs). `aqueduct check`\n\
         says more about what goes together; `aqueduct schema` gives the same as a JSON Schema.\n",
    );
    let mut book = Book {
        definitions: schema["definitions"]
            .as_object()
            .cloned()
            .unwrap_or_default(),
        written: BTreeMap::new(),
        out: &mut out,
    };
    book.table(TOP, schema, None);
    out
}

struct Book<'o> {
    definitions: serde_json::Map<String, Value>,
    /// The definitions already written, at which path.
    written: BTreeMap<String, String>,
    out: &'o mut String,
}

impl Book<'_> {
    /// The section of the table at `path` described by `schema` (an object), then those of the
    /// tables inside it. `definition`: its name among the definitions, if it has one.
    fn table(&mut self, path: &str, schema: &Value, definition: Option<&str>) {
        if let Some(name) = definition {
            self.written.insert(name.to_owned(), path.to_owned());
        }
        let _ = write!(self.out, "\n## `{path}`\n\n");
        if let Some(text) = schema["description"].as_str() {
            let _ = write!(self.out, "{}\n\n", text.replace('\n', " "));
        }
        self.out
            .push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let empty = serde_json::Map::new();
        let properties = schema["properties"].as_object().unwrap_or(&empty);
        let mut inner = Vec::new();
        for (key, property) in properties {
            let child = match path {
                TOP => format!("[{key}]"),
                _ => format!("{}.{key}]", path.trim_end_matches(']')),
            };
            let kind = self.kind(property, &child, &mut inner);
            let default = match (&property["default"], required.contains(&key.as_str())) {
                (_, true) => "required".to_owned(),
                (Value::Null, false) => String::new(),
                (d, false) => format!("`{d}`"),
            };
            let meaning = property["description"]
                .as_str()
                .unwrap_or_default()
                .replace('\n', " ")
                .replace('|', "\\|");
            let _ = writeln!(self.out, "| `{key}` | {kind} | {default} | {meaning} |");
        }
        inner.sort_by_key(|(path, _)| FLOW.iter().position(|p| p == path));
        for (path, definition) in inner {
            match self.written.get(&definition) {
                Some(_) => {}
                None => {
                    let schema = self.definitions[&definition].clone();
                    self.table(&path, &schema, Some(&definition));
                }
            }
        }
    }

    /// How the reference names the type of `schema`, found at `path`; a table inside it is
    /// queued in `inner` for a section of its own.
    fn kind(&self, schema: &Value, path: &str, inner: &mut Vec<(String, String)>) -> String {
        if let Some(target) = schema["$ref"].as_str() {
            let name = target.trim_start_matches("#/definitions/").to_owned();
            let definition = &self.definitions[&name];
            if definition["type"] == "object" && definition.get("properties").is_some() {
                let shown = self.written.get(&name).cloned().unwrap_or(path.to_owned());
                if !inner.iter().any(|(_, n)| *n == name) && !self.written.contains_key(&name) {
                    inner.push((path.to_owned(), name));
                }
                return format!("table (`{shown}`)");
            }
            return self.kind(definition, path, inner);
        }
        if let Some([one]) = schema["allOf"].as_array().map(Vec::as_slice) {
            return self.kind(one, path, inner);
        }
        if let Some(branches) = schema["anyOf"].as_array().or(schema["oneOf"].as_array()) {
            let kinds: Vec<String> = branches
                .iter()
                .filter(|b| b["type"] != "null")
                .map(|b| self.kind(b, path, inner))
                .collect();
            return kinds.join(" or ");
        }
        if let Some(words) = schema["enum"].as_array() {
            let words: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
            return words.join(", ");
        }
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        match types.iter().find(|t| **t != "null").copied() {
            Some("string") => match schema["pattern"].as_str() {
                Some(p) if p == DURATION_PATTERN => "duration".into(),
                Some(p) if p == SIZE_PATTERN => "size".into(),
                _ => "string".into(),
            },
            Some("array") => format!("array of {}", self.kind(&schema["items"], path, inner)),
            Some("object") => match schema.get("additionalProperties") {
                Some(Value::Object(_)) => {
                    let each = format!("{}.<name>]", path.trim_end_matches(']'));
                    format!(
                        "map of {}",
                        self.kind(&schema["additionalProperties"], &each, inner)
                    )
                }
                _ => "table".into(),
            },
            Some(other) => other.into(),
            None => "any".into(),
        }
    }
}
