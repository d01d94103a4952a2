//! What a request of a poll is, and the one place that builds it ([`Request::build`]): the
//! spec's own request with its templates filled and the cursor, the time window and the page
//! token put where the spec says, from the poll's [`Bindings`]; the pages of a poll vary it
//! ([`super::pages`]).
//!
//! A request holds no credential: a secret query parameter stands in it as `REDACTED`, and
//! the client puts the secrets in as it sends, so a request's URL can be shown anywhere.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::jq;
use crate::spec::{
    Cursor, Endpoint, Incremental, Pagination, Paging, ParamPlace, Place, Source, TimeFormat,
    Window,
};

/// Why a request could not be built: a value that cannot go where the spec puts it.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("source.cursor.format `{code}` on the cursor {cursor}: {source}")]
    Format {
        code: String,
        cursor: Value,
        source: jq::Error,
    },
    #[error("the value {text:?} cannot be sent in header {header}")]
    Header { text: String, header: String },
    #[error("putting a value at {pointer} in the body: {reason}")]
    Body { pointer: String, reason: String },
    #[error("the template of {at}: {source}")]
    Template { at: String, source: jq::Error },
}

/// One request of a poll: the source's own, with a cursor or a time window put in, and for a
/// later page, its page parameter.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: reqwest::Method,
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

/// Where a poll's request stands: the values its templates read and its places take.
#[derive(Debug, Clone, Default)]
pub struct Bindings {
    /// The cursor so far (`null`: none yet).
    pub cursor: Value,
    /// The time window asked for.
    pub window: Option<TimeWindow>,
    /// The page token of the cursor paging mode (`null` on a poll's first page).
    pub token: Value,
    /// The parent the request is for (`[source.parent]`).
    pub parent: Value,
}

impl Bindings {
    /// A poll from the cursor `cursor`.
    pub fn cursor(cursor: Value) -> Bindings {
        Bindings {
            cursor,
            ..Bindings::default()
        }
    }

    /// A poll of the window `w`.
    pub fn window(w: TimeWindow) -> Bindings {
        Bindings {
            window: Some(w),
            ..Bindings::default()
        }
    }

    /// The values of [`crate::template::VARS`], in order: a window's bounds as the window's
    /// format writes them (the epoch formats as numbers).
    fn values(&self, source: &Source) -> Vec<Value> {
        let format = match &source.incremental {
            Some(Incremental::Window(window)) => &window.format,
            _ => &TimeFormat::Rfc3339,
        };
        let bound = |t: Option<DateTime<Utc>>| match (t, format) {
            (None, _) => Value::Null,
            (Some(t), TimeFormat::EpochMs) => Value::from(t.timestamp_millis()),
            (Some(t), TimeFormat::EpochS) => Value::from(t.timestamp()),
            (Some(t), format) => Value::String(format_time(format, t)),
        };
        vec![
            self.cursor.clone(),
            bound(self.window.map(|w| w.start)),
            bound(self.window.map(|w| w.end)),
            self.token.clone(),
            self.parent.clone(),
        ]
    }
}

impl Request {
    /// The request to `endpoint` as the spec writes it, before any template is filled.
    fn of(source: &Source, endpoint: &Endpoint) -> Request {
        Request {
            method: endpoint.method.clone(),
            url: redacted(source, endpoint.url.clone()),
            headers: source.headers.clone(),
            body: endpoint.body.clone(),
        }
    }

    /// The request to `endpoint` at `bindings`: its templates filled, then the cursor, the
    /// window and the page token put at the places the spec gives them.
    pub fn build(
        source: &Source,
        endpoint: &Endpoint,
        bindings: &Bindings,
    ) -> Result<Request, PlaceError> {
        let mut request =
            Request::of(source, endpoint).with_templates(source, endpoint, bindings)?;
        match &source.incremental {
            Some(Incremental::Cursor(cursor)) => {
                request = request.with_cursor(cursor, &bindings.cursor)?;
            }
            Some(Incremental::Window(window)) => {
                if let Some(w) = bindings.window {
                    request = request.with_window(window, w);
                }
            }
            None => {}
        }
        if let Some(Pagination {
            mode: Paging::Cursor {
                place: Some(place), ..
            },
            ..
        }) = &endpoint.pagination
            && !bindings.token.is_null()
        {
            request = request.with_value(place, bindings.token.clone())?;
        }
        Ok(request)
    }

    /// This request with the source's templates filled from `bindings`.
    fn with_templates(
        mut self,
        source: &Source,
        endpoint: &Endpoint,
        bindings: &Bindings,
    ) -> Result<Request, PlaceError> {
        let t = &endpoint.templates;
        let values = bindings.values(source);
        let render = |template: &crate::template::Template, at: &dyn Fn() -> String| {
            template
                .render(&values)
                .map_err(|source| PlaceError::Template { at: at(), source })
        };
        if let Some(path) = &t.path {
            let path = render(path, &|| "source.url's path".to_owned())?;
            self.url.set_path(&text(&path));
        }
        for (name, template) in &t.query {
            let value = render(template, &|| format!("the query parameter {name}"))?;
            if !value.is_null() {
                self.url = with_param(&self.url, name, &text(&value));
            }
        }
        for (name, template) in &t.headers {
            let value = render(template, &|| format!("the header {name}"))?;
            if !value.is_null() {
                self = self.with_value(&Place::Header(name.clone()), value)?;
            }
        }
        for (pointer, template) in &t.body {
            let value = render(template, &|| format!("the body's {pointer}"))?;
            self = self.with_value(&Place::Body(pointer.clone()), value)?;
        }
        Ok(self)
    }

    /// This request with the cursor put where the spec says, if it says. With no cursor yet
    /// (`null`: no `initial`, nothing saved), the request as it is.
    fn with_cursor(self, cursor: &Cursor, value: &Value) -> Result<Request, PlaceError> {
        let Some(place) = &cursor.place else {
            return Ok(self);
        };
        if value.is_null() {
            return Ok(self);
        }
        let sent = match &cursor.format {
            Some(format) => format.run_one(value).map_err(|source| PlaceError::Format {
                code: format.code().to_owned(),
                cursor: value.clone(),
                source,
            })?,
            None => value.clone(),
        };
        self.with_value(place, sent)
    }

    /// This request with `value` put at `place`: in a query parameter or a header as text (a
    /// string as it is, other values as JSON), in the body as it is.
    fn with_value(mut self, place: &Place, sent: Value) -> Result<Request, PlaceError> {
        let text = text(&sent);
        match place {
            Place::Query(param) => self.url = with_param(&self.url, param, &text),
            Place::Header(name) => {
                let header = reqwest::header::HeaderValue::from_str(&text).map_err(|_| {
                    PlaceError::Header {
                        text: text.clone(),
                        header: name.to_string(),
                    }
                })?;
                self.headers.insert(name.clone(), header);
            }
            Place::Body(pointer) => {
                let body = self
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
        Ok(self)
    }

    /// This request asking for the window `w` in its parameters, if the spec names them.
    fn with_window(mut self, window: &Window, w: TimeWindow) -> Request {
        for (param, t) in [(&window.start_param, w.start), (&window.end_param, w.end)] {
            if let Some(param) = param {
                self.url = with_param(&self.url, param, &format_time(&window.format, t));
            }
        }
        self
    }
}

/// A value as a request's text carries it: a string as it is, `null` as nothing, anything
/// else as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
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
            let request = Request::of(
                spec.source.as_ref().unwrap(),
                &spec.source.as_ref().unwrap().endpoint,
            )
            .with_window(w, first);
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

    /// A spec whose `[source]` is `source` (with its `url`).
    fn templated(source: &str) -> crate::spec::Spec {
        crate::spec::tests::spec_from(&format!(
            "[source]\nschedule = {{ every = \"10s\" }}\n{source}\n\
             [kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\ntopic = \"t\"\n\
             [cassandra]\ncontact_points = [\"127.0.0.1\"]\nkeyspace = \"ks\"\n\
             table = \"t\"\npartition_key = [\"id\"]\ncolumns.id = {{ type = \"text\", jq = \".id\" }}\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn templates_put_the_window_in_a_path_one_parameter_a_header_and_a_sql_string() {
        // Chargebee's updated_at[between], a year in the path, a header range and a
        // QuickBooks-like SQL query, from epoch-second windows with no parameters of their own.
        let spec = templated(
            r#"url = "http://example.test/v2/{{ $start | todate | .[0:4] }}/items?updated_at[between]=[{{ $start }},{{ $end }}]&limit=100"
method = "POST"
headers = { x-range = "{{ $start }}-{{ $end }}", accept = "application/json" }
body = { query = "SELECT * FROM Invoice WHERE Metadata.LastUpdatedTime >= '{{ $start | todate }}'", since = "{{ $start }}" }
[source.window]
size = "1h"
start = "2026-11-01T00:00:00Z"
format = "epoch_s""#,
        );
        let w = TimeWindow {
            start: time("2026-11-01T00:00:00Z"),
            end: time("2026-11-01T01:00:00Z"),
        };
        let request = Request::build(
            spec.source.as_ref().unwrap(),
            &spec.source.as_ref().unwrap().endpoint,
            &Bindings::window(w),
        )
        .unwrap();
        assert_eq!(
            request.url.as_str(),
            "http://example.test/v2/2026/items?limit=100&updated_at%5Bbetween%5D=%5B1793491200%2C1793494800%5D"
        );
        assert_eq!(request.headers["x-range"], "1793491200-1793494800");
        assert_eq!(request.headers["accept"], "application/json");
        assert_eq!(
            request.body,
            Some(json!({
                "query": "SELECT * FROM Invoice WHERE Metadata.LastUpdatedTime >= '2026-11-01T00:00:00Z'",
                // One placeholder alone keeps its value's type.
                "since": 1793491200
            }))
        );
    }

    #[test]
    fn templates_take_the_cursor_and_page_token_and_leave_out_what_is_null() {
        // GraphQL (Linear): the cursor in a filter, the page token in variables.after.
        let spec = templated(
            r#"url = "http://example.test/graphql"
method = "POST"
records = ".data.issues.nodes[]"
query = { since = "{{ $cursor }}", token = "{{ $token }}" }
body = { query = "query($after: String) { issues(after: $after) { nodes { id } } }", variables = { after = "{{ $token }}", filter = { updatedAt = { gt = "{{ $cursor // \"1970-01-01T00:00:00Z\" }}" } } } }
[source.cursor]
value = "[$cursor, .data.issues.nodes[].updatedAt] | max"
[source.pagination]
mode = "cursor"
token = ".data.issues.pageInfo.endCursor"
max_pages = 5"#,
        );
        let first = Request::build(
            spec.source.as_ref().unwrap(),
            &spec.source.as_ref().unwrap().endpoint,
            &Bindings::default(),
        )
        .unwrap();
        // null leaves a parameter out, and is null in the body.
        assert_eq!(first.url.as_str(), "http://example.test/graphql");
        assert_eq!(
            first.body.as_ref().unwrap()["variables"],
            json!({"after": null, "filter": {"updatedAt": {"gt": "1970-01-01T00:00:00Z"}}})
        );
        let later = Bindings {
            cursor: json!("2026-11-02T00:00:00Z"),
            token: json!("c2"),
            ..Bindings::default()
        };
        let page = Request::build(
            spec.source.as_ref().unwrap(),
            &spec.source.as_ref().unwrap().endpoint,
            &later,
        )
        .unwrap();
        assert_eq!(
            page.url.as_str(),
            "http://example.test/graphql?since=2026-11-02T00%3A00%3A00Z&token=c2"
        );
        assert_eq!(
            page.body.as_ref().unwrap()["variables"],
            json!({"after": "c2", "filter": {"updatedAt": {"gt": "2026-11-02T00:00:00Z"}}})
        );
        // The GraphQL query's braces are text.
        assert_eq!(
            page.body.as_ref().unwrap()["query"],
            "query($after: String) { issues(after: $after) { nodes { id } } }"
        );
    }

    #[test]
    fn a_placeholder_is_refused_in_the_origin_and_a_failing_one_names_its_place() {
        let err = crate::spec::tests::spec_from(
            "[source]\nurl = \"http://{{ $cursor }}.example.test/\"\nschedule = { every = \"1s\" }\n[source.cursor]\nvalue = \".n\"\n[kafka]\nbootstrap_servers = \"k:9092\"\ntopic = \"t\"\n[cassandra]\ncontact_points = [\"c\"]\nkeyspace = \"ks\"\ntable = \"t\"\npartition_key = [\"id\"]\ncolumns.id = { type = \"text\", jq = \".id\" }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("path and query only"), "{err}");
        let spec = templated(
            "url = \"http://example.test/items/{{ $cursor | tonumber }}\"\n[source.cursor]\nvalue = \".n\"",
        );
        let err = Request::build(
            spec.source.as_ref().unwrap(),
            &spec.source.as_ref().unwrap().endpoint,
            &Bindings::cursor(json!("abc")),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("source.url's path"), "{err}");
    }

    #[test]
    fn a_cursor_goes_in_a_query_parameter_a_header_or_the_body_formatted() {
        let spec = cursor_spec("value = '.next'\nquery = \"since\"\nformat = '. / 1000 | todate'");
        let request = Request::of(
            spec.source.as_ref().unwrap(),
            &spec.source.as_ref().unwrap().endpoint,
        )
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
        let request = Request::of(
            spec.source.as_ref().unwrap(),
            &spec.source.as_ref().unwrap().endpoint,
        )
        .with_cursor(the_cursor(&spec), &json!("tok"))
        .unwrap();
        assert_eq!(request.headers["x-since"], "tok");
        let spec = spec_with(
            "records = \".items[]\"\nmethod = \"POST\"\nbody = { filter = { kind = \"a\" } }\n[source.cursor]\nvalue = '.next'\nbody = \"/filter/since\"",
            "table = \"t\"\npartition_key = [\"id\"]\ncolumns.id = { type = \"text\", jq = \".id\" }",
        );
        let request = Request::of(
            spec.source.as_ref().unwrap(),
            &spec.source.as_ref().unwrap().endpoint,
        )
        .with_cursor(the_cursor(&spec), &json!(42))
        .unwrap();
        assert_eq!(
            request.body,
            Some(json!({"filter": {"kind": "a", "since": 42}}))
        );
        // No cursor yet: the request as written.
        let request = Request::of(
            spec.source.as_ref().unwrap(),
            &spec.source.as_ref().unwrap().endpoint,
        )
        .with_cursor(the_cursor(&spec), &Value::Null)
        .unwrap();
        assert_eq!(request.body, Some(json!({"filter": {"kind": "a"}})));
    }
}
