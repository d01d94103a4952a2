//! Maps a key path such as `cassandra.columns.age.type` to its line and column in the spec
//! file, so every message can point at the place to fix.

use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::{ENV_PREFIX, PROPERTY_MAPS, SpecError};

/// Positions of keys in one spec file.
pub struct Locator<'a> {
    file: PathBuf,
    text: &'a str,
    table: Option<toml::Spanned<DeTable<'a>>>,
}

impl<'a> Locator<'a> {
    pub fn new(file: &Path, text: &'a str) -> Self {
        Locator {
            file: file.to_owned(),
            text,
            table: DeTable::parse(text).ok(),
        }
    }

    /// An error at `key` (dotted path).
    pub fn error(&self, key: &str, message: impl Into<String>) -> SpecError {
        let path: Vec<&str> = if key.is_empty() {
            vec![]
        } else {
            key.split('.').collect()
        };
        let mut message = message.into();
        if let Some(var) = env_var_for(&path) {
            message.push_str(&format!(" (value set by environment variable {var})"));
        }
        SpecError {
            file: self.file.clone(),
            position: self.position(&path),
            key: key.to_owned(),
            message,
        }
    }

    /// Converts a figment extraction error, keeping its key path.
    pub fn figment_error(&self, e: figment::Error) -> SpecError {
        let key = e.path.join(".");
        match &e.kind {
            figment::error::Kind::Message(m) if m.starts_with("TOML parse error") => {
                self.syntax_error(m)
            }
            kind => self.error(&key, kind.to_string()),
        }
    }

    /// The TOML parser's multi-line report (position, source excerpt, reason) as one line.
    fn syntax_error(&self, report: &str) -> SpecError {
        let mut lines = report.lines();
        let head = lines.next().unwrap_or_default();
        let position = head
            .strip_prefix("TOML parse error at line ")
            .and_then(|rest| rest.split_once(", column "))
            .and_then(|(line, col)| Some((line.trim().parse().ok()?, col.trim().parse().ok()?)));
        // Skip the excerpt (`  |`, `7 | [kafka`, `  |  ^`); keep the reason.
        let reason: Vec<&str> = lines
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.contains('|'))
            .collect();
        SpecError {
            file: self.file.clone(),
            position,
            key: String::new(),
            message: format!("TOML parse error: {}", reason.join(", ")),
        }
    }

    /// Line and column of `key` (dotted path), if that exact key is in the file.
    pub fn key_position(&self, key: &str) -> Option<(usize, usize)> {
        let path: Vec<&str> = key.split('.').collect();
        let mut table = self.table.as_ref()?.get_ref();
        for (i, segment) in path.iter().enumerate() {
            let (k, v) = table.iter().find(|(k, _)| k.get_ref() == segment)?;
            if i + 1 == path.len() {
                return Some(line_col(self.text, k.span().start));
            }
            match v.get_ref() {
                DeValue::Table(t) => table = t,
                _ => return None,
            }
        }
        None
    }

    /// Line and column of the deepest key of `path` present in the file; a number segment
    /// is an index into an array of tables (`source.on_response.0.action`).
    fn position(&self, path: &[&str]) -> Option<(usize, usize)> {
        let mut table = self.table.as_ref()?.get_ref();
        let mut found = None;
        let mut segments = path.iter();
        while let Some(segment) = segments.next() {
            let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref() == segment) else {
                break;
            };
            found = Some(k.span().start);
            let mut value = v;
            if let DeValue::Array(items) = value.get_ref() {
                let Some(item) = segments
                    .next()
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| items.get(i))
                else {
                    break;
                };
                found = Some(item.span().start);
                value = item;
            }
            match value.get_ref() {
                DeValue::Table(t) => table = t,
                _ => break,
            }
        }
        found.map(|offset| line_col(self.text, offset))
    }
}

/// The environment variable that would set this key, if it is set.
fn env_var_for(path: &[&str]) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    // A librdkafka property (`kafka.properties.sasl.password`) is one variable segment with
    // `_` for its dots (spec::property_map).
    let segments = match path {
        ["kafka", map, property @ ..] if PROPERTY_MAPS.contains(map) && !property.is_empty() => {
            format!("KAFKA__{map}__{}", property.join("_"))
        }
        _ => path.join("__"),
    };
    let name = format!("{ENV_PREFIX}{}", segments.to_ascii_uppercase());
    std::env::var_os(&name).map(|_| name)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
