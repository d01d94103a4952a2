//! Turns a [`RawSpec`] into a [`Spec`]: every cross-field rule, every compile step (jq, JSON
//! Schema, cron, CQL types), each failure collected with its key path rather than stopping at
//! the first. One file per spec section.

mod auth;
mod cassandra;
mod kafka;
mod responses;
mod security;
mod source;
mod templates;

use std::path::Path;

use super::locate::Locator;
use super::raw::{RawSource, RawSpec};
use super::{Spec, SpecError, SpecErrors};
use crate::jq::Jq;

pub(super) struct Checker<'a> {
    locator: &'a Locator<'a>,
    errors: Vec<SpecError>,
}

impl Checker<'_> {
    pub(super) fn err(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(self.locator.error(key, message));
    }

    /// `name` as a header name; an error at `key` if it is none.
    pub(super) fn header_name(
        &mut self,
        key: &str,
        name: &str,
    ) -> Option<reqwest::header::HeaderName> {
        reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| self.err(key, format!("`{name}` is not a valid header name")))
            .ok()
    }

    pub(super) fn jq(&mut self, key: &str, code: &str) -> Option<Jq> {
        Jq::compile(code)
            .map_err(|e| self.err(key, format!("{e} in `{code}`")))
            .ok()
    }
}

pub(super) fn check(raw: RawSpec, path: &Path, locator: &Locator) -> Result<Spec, SpecErrors> {
    let mut c = Checker {
        locator,
        errors: Vec::new(),
    };
    let name = match raw.name {
        Some(name) => name,
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pipeline".into()),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        c.err(
            "name",
            format!("`{name}` may hold only letters, digits, '-', '_' and '.'"),
        );
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let produces = raw.source.is_some();
    let source = match raw.source {
        Some(raw) => source::source(&mut c, raw, base).map(Some),
        None => Some(None),
    };
    let validate = source::validate(&mut c, raw.validate, base);
    let validated = validate.as_ref().and_then(|v| v.document.as_ref());
    let kafka = kafka::kafka(&mut c, raw.kafka, &name, base, validated, produces);
    let cassandra = cassandra::cassandra(&mut c, raw.cassandra, base);
    let metrics_address = match raw.metrics.address.map(|a| (a.parse(), a)) {
        None => None,
        Some((Ok(addr), _)) => Some(addr),
        Some((Err(_), a)) => {
            c.err(
                "metrics.address",
                format!("`{a}` is not an address like 127.0.0.1:9898"),
            );
            None
        }
    };
    match (source, validate, kafka, cassandra) {
        (Some(source), Some(validate), Some(kafka), Some(cassandra)) if c.errors.is_empty() => {
            Ok(Spec {
                name,
                path: path.to_owned(),
                shutdown_timeout: raw.shutdown_timeout,
                source,
                validate,
                kafka,
                cassandra,
                metrics_address,
            })
        }
        _ => Err(SpecErrors(c.errors)),
    }
}

/// Checks a `[source]` table alone (`aqueduct init --source`).
pub(super) fn source_alone(
    raw: RawSource,
    path: &Path,
    locator: &Locator,
) -> Result<super::Source, SpecErrors> {
    let mut c = Checker {
        locator,
        errors: Vec::new(),
    };
    let base = path.parent().unwrap_or(Path::new("."));
    match source::source(&mut c, raw, base) {
        Some(source) if c.errors.is_empty() => Ok(source),
        _ => Err(SpecErrors(c.errors)),
    }
}

/// `words` as a message lists them: "a, b or c".
pub(super) fn one_of(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}
