//! `[source]` and `[validate]`.

use std::path::Path;

use super::Checker;
use crate::spec::raw::{RawPagination, RawSource, RawValidate};
use crate::spec::{OnInvalid, Pagination, Retry, Schedule, Source, Validate};

pub(super) fn source(c: &mut Checker, raw: RawSource) -> Option<Source> {
    let mut url = match reqwest::Url::parse(&raw.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
        Ok(url) => {
            c.err(
                "source.url",
                format!("scheme `{}` is not http or https", url.scheme()),
            );
            None
        }
        Err(e) => {
            c.err("source.url", format!("`{}` is not a URL: {e}", raw.url));
            None
        }
    };
    if let Some(url) = url.as_mut() {
        for (k, v) in &raw.query {
            url.query_pairs_mut().append_pair(k, &v.to_string());
        }
    }
    let method = match raw.method.to_ascii_uppercase().as_str() {
        "GET" => Some(reqwest::Method::GET),
        "POST" => Some(reqwest::Method::POST),
        other => {
            c.err("source.method", format!("`{other}` is not GET or POST"));
            None
        }
    };
    if raw.body.is_some() && method == Some(reqwest::Method::GET) {
        c.err("source.body", "a body is only sent with method = \"POST\"");
    }
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in &raw.headers {
        let key = format!("source.headers.{k}");
        match (
            reqwest::header::HeaderName::from_bytes(k.as_bytes()),
            reqwest::header::HeaderValue::from_str(v),
        ) {
            (Ok(name), Ok(value)) => {
                headers.insert(name, value);
            }
            (Err(_), _) => c.err(&key, format!("`{k}` is not a valid header name")),
            (_, Err(_)) => c.err(&key, "the value is not a valid header value"),
        }
    }
    let schedule = match (raw.schedule.every, raw.schedule.cron) {
        (Some(every), None) if every.is_zero() => {
            c.err("source.schedule.every", "must be longer than 0s");
            None
        }
        (Some(every), None) => Some(Schedule::Every(every)),
        (None, Some(expr)) => match expr.parse::<croner::Cron>() {
            Ok(cron) => Some(Schedule::Cron(Box::new(cron))),
            Err(e) => {
                c.err(
                    "source.schedule.cron",
                    format!("`{expr}` is not a cron expression: {e}"),
                );
                None
            }
        },
        _ => {
            c.err(
                "source.schedule",
                "set exactly one of `every` (e.g. \"30s\") and `cron`",
            );
            None
        }
    };
    if raw.timeout.is_zero() {
        c.err("source.timeout", "must be longer than 0s");
    }
    let records = c.jq("source.records", &raw.records);
    let retry = Retry {
        attempts: raw.retry.attempts,
        initial_backoff: raw.retry.initial_backoff,
        max_backoff: raw.retry.max_backoff,
    };
    if retry.attempts == 0 {
        c.err(
            "source.retry.attempts",
            "must be at least 1 (the first attempt counts)",
        );
    }
    if retry.initial_backoff > retry.max_backoff {
        c.err(
            "source.retry.initial_backoff",
            "is longer than source.retry.max_backoff",
        );
    }
    let pagination = match raw.pagination {
        None => Some(None),
        Some(p) => pagination(c, p).map(Some),
    };
    Some(Source {
        url: url?,
        method: method?,
        headers,
        body: raw.body,
        schedule: schedule?,
        timeout: raw.timeout,
        max_body_size: raw.max_body_size,
        records: records?,
        retry,
        pagination: pagination?,
    })
}

fn pagination(c: &mut Checker, raw: RawPagination) -> Option<Pagination> {
    if raw.max_pages == 0 {
        c.err("source.pagination.max_pages", "must be at least 1");
    }
    let param = |c: &mut Checker| {
        if raw.next.is_some() {
            c.err(
                "source.pagination.next",
                format!("is for mode = \"next_link\", not \"{}\"", raw.mode),
            );
        }
        match &raw.param {
            Some(p) if !p.is_empty() => Some(p.clone()),
            _ => {
                c.err(
                    "source.pagination.param",
                    format!("mode = \"{}\" needs the query parameter's name", raw.mode),
                );
                None
            }
        }
    };
    match raw.mode.as_str() {
        "page" => Some(Pagination::Page {
            param: param(c)?,
            start: raw.start.unwrap_or(1),
            max_pages: raw.max_pages,
        }),
        "offset" => Some(Pagination::Offset {
            param: param(c)?,
            start: raw.start.unwrap_or(0),
            max_pages: raw.max_pages,
        }),
        "next_link" => {
            if raw.param.is_some() || raw.start.is_some() {
                c.err(
                    "source.pagination",
                    "`param` and `start` are for the page and offset modes",
                );
            }
            let Some(code) = raw.next else {
                c.err(
                    "source.pagination.next",
                    "mode = \"next_link\" needs a jq expression yielding the next URL",
                );
                return None;
            };
            Some(Pagination::NextLink {
                next: c.jq("source.pagination.next", &code)?,
                max_pages: raw.max_pages,
            })
        }
        other => {
            c.err(
                "source.pagination.mode",
                format!("`{other}` is not page, offset or next_link"),
            );
            None
        }
    }
}

pub(super) fn validate(c: &mut Checker, raw: RawValidate, base: &Path) -> Option<Validate> {
    let on_invalid = match raw.on_invalid.as_str() {
        "dead_letter" => Some(OnInvalid::DeadLetter),
        "drop" => Some(OnInvalid::Drop),
        "fail" => Some(OnInvalid::Fail),
        other => {
            c.err(
                "validate.on_invalid",
                format!("`{other}` is not dead_letter, drop or fail"),
            );
            None
        }
    };
    let (key, document) = match (raw.schema_file, raw.schema) {
        (Some(_), Some(_)) => {
            c.err(
                "validate",
                "set one of `schema_file` and `schema`, not both",
            );
            return None;
        }
        (None, None) => {
            return Some(Validate {
                schema: None,
                on_invalid: on_invalid?,
            });
        }
        (Some(file), None) => {
            let full = base.join(&file);
            let text = match std::fs::read_to_string(&full) {
                Ok(text) => text,
                Err(e) => {
                    c.err(
                        "validate.schema_file",
                        format!("cannot read {}: {e}", full.display()),
                    );
                    return None;
                }
            };
            match serde_json::from_str(&text) {
                Ok(doc) => ("validate.schema_file", doc),
                Err(e) => {
                    c.err(
                        "validate.schema_file",
                        format!("{} is not JSON: {e}", full.display()),
                    );
                    return None;
                }
            }
        }
        (None, Some(serde_json::Value::String(text))) => match serde_json::from_str(&text) {
            Ok(doc) => ("validate.schema", doc),
            Err(e) => {
                c.err(
                    "validate.schema",
                    format!("the inline schema is not JSON: {e}"),
                );
                return None;
            }
        },
        (None, Some(doc)) => ("validate.schema", doc),
    };
    match jsonschema::validator_for(&document) {
        Ok(schema) => Some(Validate {
            schema: Some(schema),
            on_invalid: on_invalid?,
        }),
        Err(e) => {
            c.err(
                key,
                format!(
                    "invalid JSON Schema: {e} (at schema path {})",
                    e.schema_path()
                ),
            );
            None
        }
    }
}
