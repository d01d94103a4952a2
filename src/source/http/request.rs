//! What a request of a poll is, and the one place that builds it: the spec's own request
//! ([`Request::of`]) with a cursor ([`Request::with_cursor`]) or a time window
//! ([`Request::with_window`]) put in, or a value at a place ([`Request::with_value`]); the
//! pages of a poll vary it ([`super::pages`]).
//!
//! A request holds no credential: a secret query parameter stands in it as `REDACTED`, and
//! the client puts the secrets in as it sends, so a request's URL can be shown anywhere.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::jq;
use crate::spec::{Cursor, ParamPlace, Place, Source, TimeFormat, Window};

/// Why a cursor could not go into a request.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("source.cursor.format `{code}` on the cursor {cursor}: {source}")]
    Format {
        code: String,
        cursor: Value,
        source: jq::Error,
    },
    #[error("the cursor {text:?} cannot be sent in header {header}")]
    Header { text: String, header: String },
    #[error("putting the cursor at {pointer} in the body: {reason}")]
    Body { pointer: String, reason: String },
}

/// One request of a poll: the source's own, with a cursor or a time window put in, and for a
/// later page, its page parameter.
#[derive(Debug, Clone)]
pub struct Request {
    /// The URL, secret query parameters standing as `REDACTED`.
    pub url: reqwest::Url,
    /// The headers that are no secret.
    pub headers: reqwest::header::HeaderMap,
    /// The JSON body (POST).
    pub body: Option<Value>,
}

/// One time window: from `start` (inclusive) to `end` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Request {
    /// The request as the spec writes it.
    pub fn of(source: &Source) -> Request {
        Request {
            url: redacted(source, source.url.clone()),
            headers: source.headers.clone(),
            body: source.body.clone(),
        }
    }

    /// This request with the cursor put where the spec says. With no cursor yet (`null`: no
    /// `initial`, nothing saved), the request as it is.
    pub fn with_cursor(&self, cursor: &Cursor, value: &Value) -> Result<Request, PlaceError> {
        if value.is_null() {
            return Ok(self.clone());
        }
        let sent = match &cursor.format {
            Some(format) => format.run_one(value).map_err(|source| PlaceError::Format {
                code: format.code().to_owned(),
                cursor: value.clone(),
                source,
            })?,
            None => value.clone(),
        };
        self.with_value(&cursor.place, sent)
    }

    /// This request with `value` put at `place`: in a query parameter or a header as text (a
    /// string as it is, other values as JSON), in the body as it is.
    pub fn with_value(&self, place: &Place, value: Value) -> Result<Request, PlaceError> {
        let sent = value;
        let text = match &sent {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut request = self.clone();
        match place {
            Place::Query(param) => request.url = with_param(&self.url, param, &text),
            Place::Header(name) => {
                let header = reqwest::header::HeaderValue::from_str(&text).map_err(|_| {
                    PlaceError::Header {
                        text: text.clone(),
                        header: name.to_string(),
                    }
                })?;
                request.headers.insert(name.clone(), header);
            }
            Place::Body(pointer) => {
                let body = request
                    .body
                    .get_or_insert_with(|| Value::Object(Default::default()));
                crate::pointer::set(body, pointer, sent, true).map_err(|reason| {
                    PlaceError::Body {
                        pointer: pointer.clone(),
                        reason,
                    }
                })?;
            }
        }
        Ok(request)
    }

    /// This request asking for the window `w`.
    pub fn with_window(&self, window: &Window, w: TimeWindow) -> Request {
        let url = with_param(
            &self.url,
            &window.start_param,
            &format_time(&window.format, w.start),
        );
        let url = with_param(&url, &window.end_param, &format_time(&window.format, w.end));
        Request {
            url,
            ..self.clone()
        }
    }
}

/// A time as a request carries it.
pub fn format_time(format: &TimeFormat, t: DateTime<Utc>) -> String {
    match format {
        TimeFormat::Rfc3339 => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        TimeFormat::EpochMs => t.timestamp_millis().to_string(),
        TimeFormat::EpochS => t.timestamp().to_string(),
        TimeFormat::Pattern(pattern) => t.format(pattern).to_string(),
    }
}

/// `url` with each secret query parameter of `source` standing as `REDACTED`.
pub(super) fn redacted(source: &Source, mut url: reqwest::Url) -> reqwest::Url {
    for secret in &source.secrets {
        if let ParamPlace::Query(name) = &secret.place {
            url = with_param(&url, name, super::REDACTED);
        }
    }
    url
}

/// `url` with query parameter `param` set to `value` (replacing any earlier value).
pub fn with_param(url: &reqwest::Url, param: &str, value: &str) -> reqwest::Url {
    let mut out = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != param)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    out.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(param, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::{cursor_spec, spec_with, the_cursor, the_window, time, window_spec};
    use serde_json::json;

    #[test]
    fn a_window_goes_in_its_two_parameters_in_the_spec_format() {
        for (format, start, end) in [
            ("", "2026-11-01T00:00:00Z", "2026-11-01T01:00:00Z"),
            ("format = \"epoch_ms\"", "1793491200000", "1793494800000"),
            ("format = \"epoch_s\"", "1793491200", "1793494800"),
            (
                "format = \"%Y-%m-%dT%H:%M:%S\"",
                "2026-11-01T00:00:00",
                "2026-11-01T01:00:00",
            ),
        ] {
            let spec = window_spec(format);
            let w = the_window(&spec);
            let from = time("2026-11-01T00:00:00Z");
            let first =
                crate::incremental::windows(w, from, time("2026-11-02T00:00:00Z"), Some(1))[0];
            let request = Request::of(&spec.source).with_window(w, first);
            let pairs: Vec<(String, String)> = request
                .url
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            assert!(
                pairs.contains(&("starttime".into(), start.into())),
                "{pairs:?}"
            );
            assert!(pairs.contains(&("endtime".into(), end.into())), "{pairs:?}");
        }
    }

    #[test]
    fn a_cursor_goes_in_a_query_parameter_a_header_or_the_body_formatted() {
        let spec = cursor_spec("value = '.next'\nquery = \"since\"\nformat = '. / 1000 | todate'");
        let request = Request::of(&spec.source)
            .with_cursor(the_cursor(&spec), &json!(1793491200000_i64))
            .unwrap();
        assert!(
            request
                .url
                .as_str()
                .ends_with("&since=2026-11-01T00%3A00%3A00Z"),
            "{}",
            request.url
        );
        let spec = cursor_spec("value = '.next'\nheader = \"X-Since\"");
        let request = Request::of(&spec.source)
            .with_cursor(the_cursor(&spec), &json!("tok"))
            .unwrap();
        assert_eq!(request.headers["x-since"], "tok");
        let spec = spec_with(
            "records = \".items[]\"\nmethod = \"POST\"\nbody = { filter = { kind = \"a\" } }\n[source.cursor]\nvalue = '.next'\nbody = \"/filter/since\"",
            "table = \"t\"\npartition_key = [\"id\"]\ncolumns.id = { type = \"text\", jq = \".id\" }",
        );
        let request = Request::of(&spec.source)
            .with_cursor(the_cursor(&spec), &json!(42))
            .unwrap();
        assert_eq!(
            request.body,
            Some(json!({"filter": {"kind": "a", "since": 42}}))
        );
        // No cursor yet: the request as written.
        let request = Request::of(&spec.source)
            .with_cursor(the_cursor(&spec), &Value::Null)
            .unwrap();
        assert_eq!(request.body, Some(json!({"filter": {"kind": "a"}})));
    }
}
