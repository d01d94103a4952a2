//! The spec's text: every value quoted by the `toml` crate, a comment at each guess.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::columns::{Column, Key, column_name};
use super::paging::Paging;

/// What [`spec`] writes.
pub struct Draft<'a> {
    pub name: &'a str,
    /// The URL or file the sample came from.
    pub origin: &'a str,
    /// `#:schema`'s path, if the spec gets one.
    pub directive: Option<String>,
    /// The `[source]` table given (`--source`) or made from `--url`; `None` for a saved
    /// response.
    pub source: Option<&'a toml::Table>,
    /// The file `source` was read from.
    pub source_file: Option<&'a Path>,
    pub records: &'a str,
    pub records_guessed: bool,
    pub paging: Option<&'a Paging>,
    pub schema: &'a Value,
    /// Records in the sample.
    pub count: usize,
    pub columns: &'a [Column],
    pub key: &'a Key,
}

/// Credentials a `[source.auth]` table may hold inline: never copied into the spec.
const INLINE_SECRETS: &[&str] = &["token", "password", "key", "client_secret", "refresh_token"];

/// Drops the `[source]` headers or query parameters (`what`) whose value is a secret written
/// inline (`{ value = "...", secret = true }`), saying so; one read from a file stays, as the
/// file's name is no secret.
fn drop_inline_secrets(out: &mut String, what: &str, values: &mut toml::Table, file: &Path) {
    let secret = |v: &toml::Value| {
        v.get("secret").and_then(toml::Value::as_bool) == Some(true) && v.get("value").is_some()
    };
    let names: Vec<String> = values
        .iter()
        .filter(|(_, v)| secret(v))
        .map(|(name, _)| name.clone())
        .collect();
    for name in names {
        values.remove(&name);
        comment(
            out,
            &format!(
                "source.{what}.{name} was a secret written inline in {}: not copied here. Give it from a file: {name} = {{ file = \"...\" }}.",
                file.display()
            ),
        );
    }
}

/// A TOML value's text (strings quoted as TOML quotes them).
fn value(v: impl Into<toml::Value>) -> String {
    v.into().to_string()
}

/// A `key = value` line, the key quoted when it needs to be.
fn line(out: &mut String, key: &str, v: impl Into<toml::Value>) {
    let _ = writeln!(out, "{} = {}", bare_or_quoted(key), value(v));
}

/// An inline table with its keys in the order given (a `toml::Table` sorts them).
fn inline(pairs: &[(&str, toml::Value)]) -> String {
    let fields: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{} = {}", bare_or_quoted(k), value(v.clone())))
        .collect();
    format!("{{ {} }}", fields.join(", "))
}

fn bare_or_quoted(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match bare {
        true => key.to_owned(),
        false => value(key),
    }
}

fn comment(out: &mut String, text: &str) {
    for l in textwrap(text, 96) {
        let _ = writeln!(out, "# {l}");
    }
}

/// `text` in lines of at most about `width` characters, broken at spaces.
fn textwrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().expect("lines starts with one");
        if !last.is_empty() && last.len() + 1 + word.len() > width {
            lines.push(word.to_owned());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

/// The spec's text.
pub fn spec(d: &Draft) -> String {
    let mut out = String::new();
    if let Some(path) = &d.directive {
        let _ = writeln!(out, "#:schema {path}");
    }
    comment(
        &mut out,
        &format!(
            "A starting spec written by `aqueduct init` from {} ({} record{}). Review every line marked `guessed`, and the Kafka and Cassandra addresses; then `aqueduct check` it and `aqueduct preview --input` a saved response.",
            d.origin,
            d.count,
            if d.count == 1 { "" } else { "s" }
        ),
    );
    out.push('\n');
    line(&mut out, "name", d.name);
    out.push('\n');
    source(&mut out, d);
    validate(&mut out, d);
    kafka(&mut out, d);
    cassandra(&mut out, d);
    out
}

fn source(out: &mut String, d: &Draft) {
    out.push_str("[source]\n");
    let given = d.source.cloned().unwrap_or_default();
    match given.get("url") {
        Some(url) => line(out, "url", url.clone()),
        None => {
            comment(
                out,
                "guessed: the sample was a saved response, so the API's URL is not known: write it here.",
            );
            line(out, "url", "https://api.example.com/CHANGE-ME");
        }
    }
    for (key, v) in &given {
        if matches!(key.as_str(), "url" | "records" | "schedule") {
            continue;
        }
        let mut v = v.clone();
        if key == "auth"
            && let (toml::Value::Table(auth), Some(file)) = (&mut v, d.source_file)
        {
            for secret in INLINE_SECRETS {
                if auth.remove(*secret).is_some() {
                    comment(
                        out,
                        &format!(
                            "source.auth.{secret} was written inline in {}: not copied here. Give it with AQUEDUCT_SOURCE__AUTH__{} or `{secret}_file`.",
                            file.display(),
                            secret.to_ascii_uppercase()
                        ),
                    );
                }
            }
        }
        if matches!(key.as_str(), "headers" | "query")
            && let (toml::Value::Table(values), Some(file)) = (&mut v, d.source_file)
        {
            drop_inline_secrets(out, key, values, file);
        }
        line(out, key, v);
    }
    match given.get("schedule") {
        Some(schedule) => line(out, "schedule", schedule.clone()),
        None => {
            comment(out, "guessed: how often to poll.");
            line(out, "schedule", toml::Value::Table(super::every("5m")));
        }
    }
    if d.records_guessed {
        comment(
            out,
            "guessed: the records are the largest array of objects in the response.",
        );
    }
    line(out, "records", d.records);
    if let Some(paging) = d.paging {
        let (why, mut t): (String, Vec<(&str, toml::Value)>) = match paging {
            Paging::LinkHeader => (
                "the response's Link header has a rel=\"next\" link".to_owned(),
                vec![("mode", "link_header".into())],
            ),
            Paging::NextLink { next } => (
                format!("`{next}` holds the next page's URL"),
                vec![("mode", "next_link".into()), ("next", next.as_str().into())],
            ),
            Paging::Cursor {
                token,
                stop,
                query,
                from,
            } => {
                let mut t = vec![("mode", "cursor".into()), ("token", token.as_str().into())];
                if let Some(stop) = stop {
                    t.push(("stop", stop.as_str().into()));
                }
                t.push(("query", query.as_str().into()));
                (
                    format!(
                        "the next page is asked for with {from} in the query parameter `{query}` (check the API's name for it)"
                    ),
                    t,
                )
            }
        };
        t.push(("max_pages", 10.into()));
        comment(
            out,
            &format!("guessed: {why}; `max_pages` bounds the pages of one poll."),
        );
        let _ = writeln!(out, "pagination = {}", inline(&t));
    }
    out.push('\n');
}

fn validate(out: &mut String, d: &Draft) {
    out.push_str("[validate]\n");
    comment(
        out,
        "guessed: the JSON Schema of the sample: the types seen (with null where a null was seen), `required` for the fields present in every record, `format` where every string had one. Loosen what the API does not promise.",
    );
    let json = serde_json::to_string_pretty(d.schema).unwrap_or_else(|_| "{}".to_owned());
    line(out, "schema", json);
    line(out, "on_invalid", "dead_letter");
    out.push('\n');
}

fn kafka(out: &mut String, d: &Draft) {
    out.push_str("[kafka]\n");
    line(out, "bootstrap_servers", "127.0.0.1:9092");
    line(out, "topic", d.name);
    let key = &d.columns[d.key.column];
    if !key.path.is_empty() {
        comment(
            out,
            "The message key: records of one key keep their order (the partition key's field).",
        );
        line(out, "key", key.jq.as_str());
    }
    out.push('\n');
}

fn cassandra(out: &mut String, d: &Draft) {
    let ident = column_name(&[d.name.to_owned()]);
    out.push_str("[cassandra]\n");
    line(
        out,
        "contact_points",
        toml::Value::Array(vec!["127.0.0.1:9042".into()]),
    );
    line(out, "keyspace", ident.as_str());
    line(out, "table", ident.as_str());
    comment(out, &format!("guessed: {}.", d.key.why));
    line(
        out,
        "partition_key",
        toml::Value::Array(vec![d.columns[d.key.column].name.as_str().into()]),
    );
    out.push_str("\n[cassandra.columns]\n");
    for column in d.columns {
        if let Some(note) = &column.note {
            comment(out, &format!("guessed: {note}."));
        }
        let t = [
            ("type", column.cql.as_str().into()),
            ("jq", column.jq.as_str().into()),
        ];
        let _ = writeln!(out, "{} = {}", column.name, inline(&t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_by_toml_and_comments_wrap() {
        for text in [
            r#"a "b" \c"#,
            "line\nbreak '''",
            "{\n  \"type\": \"object\"\n}",
        ] {
            let read: toml::Table = toml::from_str(&format!("k = {}", value(text))).unwrap();
            assert_eq!(read["k"].as_str(), Some(text));
        }
        let mut out = String::new();
        line(&mut out, "X-API-Key", "k");
        line(&mut out, "odd key", 1);
        assert_eq!(out, "X-API-Key = \"k\"\n\"odd key\" = 1\n");
        let text = "word ".repeat(50);
        let lines = textwrap(&text, 20);
        assert!(lines.iter().all(|l| l.len() <= 20), "{lines:?}");
        assert_eq!(lines.join(" "), text.trim());
    }
}
