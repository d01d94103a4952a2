//! `[source]` and `[validate]`.

use std::path::Path;

use super::Checker;
use crate::jq::Jq;
use crate::spec::raw::{
    RawCursor, RawPagination, RawParam, RawParent, RawSource, RawValidate, RawWindow,
};
use crate::spec::{
    Cursor, Endpoint, Incremental, OnInvalid, Pagination, Paging, Parent, Parents, Place, Retry,
    Schedule, Source, Templates, TimeFormat, Validate, Window, WindowStart,
};

pub(super) fn source(c: &mut Checker, mut raw: RawSource, base: &Path) -> Option<Source> {
    let filled = super::templates::Filled::of(&raw);
    let mut templates = super::templates::templates(c, &mut raw, &filled);
    let mut url = super::templates::url(c, "source.url", &raw.url, &filled, &mut templates);
    let method = self::method(c, "source", &raw.method, raw.body.is_some());
    let parent = match raw.parent.take() {
        None => Some(None),
        Some(parent) => self::parent(c, parent, url.as_ref()).map(Some),
    };
    if matches!(parent, Some(Some(_))) && !templates.read("$parent") {
        c.err(
            "source.parent",
            "the source's request reads no $parent, so every parent would get the same request: write {{ $parent.id }} (or another field) in source.url, a query or header value, or a string of the body",
        );
    }
    let (headers, mut secrets) = super::auth::params(c, raw.headers, raw.query, url.as_mut(), base);
    let auth = match raw.auth {
        None => Some((Vec::new(), None)),
        Some(auth) => super::auth::auth(c, auth, base),
    };
    let rules = super::responses::rules(c, raw.on_response);
    let rate_limit = match raw.rate_limit {
        None => Some(None),
        Some(limit) => super::responses::rate_limit(c, limit).map(Some),
    };
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
        Some(p) => pagination(c, "source", p, method.as_ref()).map(Some),
    };
    let incremental = match (raw.cursor, raw.window) {
        (None, None) => Some(None),
        (Some(cursor), None) => {
            self::cursor(c, cursor, method.as_ref()).map(|c| Some(Incremental::Cursor(c)))
        }
        (None, Some(window)) => self::window(c, window).map(|w| Some(Incremental::Window(w))),
        (Some(_), Some(_)) => {
            c.err(
                "source.cursor",
                "set [source.cursor] or [source.window], not both (a window's cursor is the end of the last window done)",
            );
            None
        }
    };
    match &incremental {
        Some(Some(Incremental::Cursor(cursor))) => goes_somewhere(
            c,
            "source.cursor",
            cursor.place.is_some(),
            &templates,
            "$cursor",
            "set `query`, `header` or `body`",
        ),
        Some(Some(Incremental::Window(window))) => {
            goes_somewhere(
                c,
                "source.window.start_param",
                window.start_param.is_some(),
                &templates,
                "$start",
                "set start_param",
            );
            goes_somewhere(
                c,
                "source.window.end_param",
                window.end_param.is_some(),
                &templates,
                "$end",
                "set end_param",
            );
        }
        _ => {}
    }
    if let Some(Some(Pagination {
        mode: Paging::Cursor { place, .. },
        ..
    })) = &pagination
    {
        goes_somewhere(
            c,
            "source.pagination",
            place.is_some(),
            &templates,
            "$token",
            "set `query`, `header` or `body`",
        );
    }
    let (auth_secrets, oauth2) = auth?;
    super::auth::no_clash(c, &headers, &secrets, &auth_secrets, oauth2.is_some());
    secrets.extend(auth_secrets);
    Some(Source {
        endpoint: Endpoint {
            url: url?,
            method: method?,
            body: raw.body,
            templates,
            records: records?,
            pagination: pagination?,
        },
        headers,
        schedule: schedule?,
        timeout: raw.timeout,
        max_body_size: raw.max_body_size,
        retry,
        incremental: incremental?,
        secrets,
        oauth2,
        rules: rules?,
        rate_limit: rate_limit?,
        parent: parent?,
    })
}

/// `{at}.method`, and whether a body may go with it.
fn method(c: &mut Checker, at: &str, text: &str, body: bool) -> Option<reqwest::Method> {
    let method = match text.to_ascii_uppercase().as_str() {
        "GET" => reqwest::Method::GET,
        "POST" => reqwest::Method::POST,
        other => {
            c.err(
                &format!("{at}.method"),
                format!("`{other}` is not GET or POST"),
            );
            return None;
        }
    };
    if body && method == reqwest::Method::GET {
        c.err(
            &format!("{at}.body"),
            "a body is only sent with method = \"POST\"",
        );
    }
    Some(method)
}

/// `[source.parent]`: a list, or a request at the origin of `source.url` (`source`).
fn parent(c: &mut Checker, mut raw: RawParent, source: Option<&reqwest::Url>) -> Option<Parent> {
    let at = "source.parent";
    let key = c.jq("source.parent.key", &raw.key);
    let include: Vec<Option<(String, Jq)>> = std::mem::take(&mut raw.include)
        .into_iter()
        .map(|(name, code)| {
            let jq = c.jq(&format!("source.parent.include.{name}"), &code)?;
            Some((name, jq))
        })
        .collect();
    if raw.concurrency == 0 {
        c.err("source.parent.concurrency", "must be at least 1");
    }
    let parents = match (raw.list.take(), raw.url.take()) {
        (Some(list), None) => {
            if raw.pagination.is_some() || raw.body.is_some() || !raw.query.is_empty() {
                c.err(
                    at,
                    "`query`, `body` and `pagination` are for parents from a `url`, not a `list`",
                );
            }
            // A listed parent is known now: its key and fields are checked here, not at run.
            let fields: Option<Vec<&(String, Jq)>> = include.iter().map(Option::as_ref).collect();
            if let (Some(key), Some(fields)) = (&key, fields) {
                for (i, parent) in list.iter().enumerate() {
                    let at = format!("source.parent.list.{i}");
                    match key.run_one(parent) {
                        Ok(serde_json::Value::String(_) | serde_json::Value::Number(_)) => {}
                        Ok(other) => c.err(
                            &at,
                            format!(
                                "key `{}` gives {other}: a parent's key is a string or a number",
                                key.code()
                            ),
                        ),
                        Err(e) => c.err(&at, format!("key `{}`: {e}", key.code())),
                    }
                    for (name, jq) in &fields {
                        if let Err(e) = jq.run_one(parent) {
                            c.err(&at, format!("include.{name} `{}`: {e}", jq.code()));
                        }
                    }
                }
            }
            Some(Parents::List(list))
        }
        (None, Some(url)) => {
            let filled = super::templates::Filled::of_parent(&raw);
            let mut templates = Templates::default();
            let query = super::templates::take(c, "source.parent.query", &mut raw.query, &filled);
            if let Some(body) = &raw.body {
                super::templates::body_strings(
                    c,
                    "source.parent.body",
                    body,
                    &mut String::new(),
                    &filled,
                    &mut templates.body,
                );
            }
            let mut url =
                super::templates::url(c, "source.parent.url", &url, &filled, &mut templates);
            templates.query.extend(query);
            if let (Some(url), Some(source)) = (&url, source)
                && url.origin() != source.origin()
            {
                c.err(
                    "source.parent.url",
                    format!(
                        "is not at the origin of source.url ({}): the source's credentials go to one origin",
                        source.origin().ascii_serialization()
                    ),
                );
            }
            let pairs: Vec<(String, String)> = std::mem::take(&mut raw.query)
                .into_iter()
                .filter_map(|(name, value)| match value {
                    RawParam::Plain(value) => Some((name, value.to_string())),
                    RawParam::Detailed(_) => {
                        c.err(
                            &format!("source.parent.query.{name}"),
                            "a secret goes in [source] query or [source.auth], which every request of the source carries",
                        );
                        None
                    }
                })
                .collect();
            if let Some(url) = url.as_mut()
                && !pairs.is_empty()
            {
                url.query_pairs_mut().extend_pairs(pairs);
            }
            let method = method(c, at, &raw.method, raw.body.is_some());
            let records = c.jq("source.parent.records", &raw.records);
            let pagination = match raw.pagination.take() {
                None => Some(None),
                Some(p) => pagination(c, at, p, method.as_ref()).map(Some),
            };
            if let Some(Some(Pagination {
                mode: Paging::Cursor { place: None, .. },
                ..
            })) = &pagination
                && !templates.read("$token")
            {
                c.err(
                    "source.parent.pagination",
                    "$token goes nowhere: set `query`, `header` or `body`, or write {{ $token }} in the parents' request",
                );
            }
            Some(Parents::Endpoint(Box::new(Endpoint {
                url: url?,
                method: method?,
                body: raw.body,
                templates,
                records: records?,
                pagination: pagination?,
            })))
        }
        _ => {
            c.err(
                at,
                "set one of `list` (the parents as written) and `url` (a request listing them)",
            );
            None
        }
    };
    Some(Parent {
        parents: parents?,
        key: key?,
        include: include.into_iter().collect::<Option<_>>()?,
        concurrency: raw.concurrency,
    })
}

/// Where a value goes in a request (`[source.cursor]`, the cursor paging mode): at most one
/// of a query parameter, a header and a JSON pointer into a POST body; none when templates
/// read it (`var`), which `source` checks once they are known.
fn place(
    c: &mut Checker,
    section: &str,
    what: &str,
    (query, header, body): (Option<String>, Option<String>, Option<String>),
    method: Option<&reqwest::Method>,
) -> Option<Option<Place>> {
    match (query, header, body) {
        (None, None, None) => Some(None),
        (Some(param), None, None) if !param.is_empty() => Some(Some(Place::Query(param))),
        (None, Some(header), None) => c
            .header_name(&format!("{section}.header"), &header)
            .map(|h| Some(Place::Header(h))),
        (None, None, Some(pointer)) => {
            if !pointer.starts_with('/') {
                c.err(
                    &format!("{section}.body"),
                    format!(
                        "`{pointer}` is not a JSON pointer (one starts with `/`, e.g. `/since`)"
                    ),
                );
                None
            } else if method != Some(&reqwest::Method::POST) {
                c.err(
                    &format!("{section}.body"),
                    "a body is only sent with method = \"POST\"",
                );
                None
            } else {
                Some(Some(Place::Body(pointer)))
            }
        }
        _ => {
            c.err(
                section,
                format!("set one of `query` (a parameter name), `header` and `body` (a JSON pointer): where {what} goes"),
            );
            None
        }
    }
}

/// Fails at `key` unless `placed` or a template reads `var`: a value that goes nowhere.
fn goes_somewhere(
    c: &mut Checker,
    key: &str,
    placed: bool,
    templates: &Templates,
    var: &str,
    how: &str,
) {
    if !placed && !templates.read(var) {
        c.err(
            key,
            format!("{var} goes nowhere: {how}, or write {{{{ {var} }}}} in source.url, a query or header value, or a string of the body"),
        );
    }
}

fn cursor(c: &mut Checker, raw: RawCursor, method: Option<&reqwest::Method>) -> Option<Cursor> {
    let value = Jq::compile_with_vars(&raw.value, &["$cursor"])
        .map_err(|e| c.err("source.cursor.value", format!("{e} in `{}`", raw.value)))
        .ok();
    let format = match &raw.format {
        Some(code) => Some(c.jq("source.cursor.format", code)?),
        None => None,
    };
    let place = place(
        c,
        "source.cursor",
        "the cursor",
        (raw.query, raw.header, raw.body),
        method,
    );
    if matches!(place, Some(None)) && format.is_some() {
        c.err(
            "source.cursor.format",
            "formats the cursor at `query`, `header` or `body`; in a template, format it in the placeholder, e.g. {{ $cursor | todate }}",
        );
    }
    Some(Cursor {
        value: value?,
        initial: raw.initial,
        place: place?,
        format,
    })
}

fn window(c: &mut Checker, raw: RawWindow) -> Option<Window> {
    for (key, param) in [
        ("start_param", &raw.start_param),
        ("end_param", &raw.end_param),
    ] {
        if param.as_ref().is_some_and(String::is_empty) {
            c.err(&format!("source.window.{key}"), "is empty");
        }
    }
    if raw.start_param.is_some() && raw.start_param == raw.end_param {
        c.err("source.window.end_param", "must differ from start_param");
    }
    if raw.size < std::time::Duration::from_secs(1) {
        c.err("source.window.size", "must be at least 1s");
    }
    if raw.max_windows == 0 {
        c.err("source.window.max_windows", "must be at least 1");
    }
    let start = match (
        chrono::DateTime::parse_from_rfc3339(&raw.start),
        humantime::parse_duration(&raw.start),
    ) {
        (Ok(t), _) => Some(WindowStart::At(t.to_utc())),
        (_, Ok(ago)) => Some(WindowStart::Ago(ago)),
        (Err(e), Err(_)) => {
            c.err(
                "source.window.start",
                format!(
                    "`{}` is neither an RFC 3339 time such as 2026-11-01T00:00:00Z ({e}) nor a duration before the first poll such as 7d",
                    raw.start
                ),
            );
            None
        }
    };
    let format = match time_format(&raw.format) {
        Ok(f) => Some(f),
        Err(e) => {
            c.err("source.window.format", e);
            None
        }
    };
    Some(Window {
        start_param: raw.start_param,
        end_param: raw.end_param,
        size: raw.size,
        start: start?,
        lag: raw.lag,
        max_windows: raw.max_windows,
        format: format?,
    })
}

/// `rfc3339`, `epoch_ms`, `epoch_s`, or a strftime pattern chrono can write.
fn time_format(text: &str) -> Result<TimeFormat, String> {
    match text {
        "rfc3339" => Ok(TimeFormat::Rfc3339),
        "epoch_ms" => Ok(TimeFormat::EpochMs),
        "epoch_s" => Ok(TimeFormat::EpochS),
        pattern if pattern.contains('%') => {
            use chrono::format::{Item, StrftimeItems};
            if StrftimeItems::new(pattern).any(|item| matches!(item, Item::Error)) {
                Err(format!(
                    "`{pattern}` is not a strftime pattern chrono can write"
                ))
            } else {
                Ok(TimeFormat::Pattern(pattern.to_owned()))
            }
        }
        other => Err(format!(
            "`{other}` is not `rfc3339`, `epoch_ms`, `epoch_s` or a strftime pattern (with `%`)"
        )),
    }
}

fn pagination(
    c: &mut Checker,
    at: &str,
    raw: RawPagination,
    method: Option<&reqwest::Method>,
) -> Option<Pagination> {
    if raw.max_pages == 0 {
        c.err(&format!("{at}.pagination.max_pages"), "must be at least 1");
    }
    if raw.page_size == Some(0) {
        c.err(
            &format!("{at}.pagination.page_size"),
            "must be at least 1 (the records a full page holds)",
        );
    }
    let (max_pages, page_size) = (raw.max_pages, raw.page_size);
    Some(Pagination {
        mode: paging(c, at, raw, method)?,
        max_pages,
        page_size,
    })
}

/// `[source.pagination]`'s mode and the keys that go with it.
fn paging(
    c: &mut Checker,
    at: &str,
    raw: RawPagination,
    method: Option<&reqwest::Method>,
) -> Option<Paging> {
    let param = |c: &mut Checker| {
        if raw.next.is_some() {
            c.err(
                &format!("{at}.pagination.next"),
                format!("is for mode = \"next_link\", not \"{}\"", raw.mode),
            );
        }
        match &raw.param {
            Some(p) if !p.is_empty() => Some(p.clone()),
            _ => {
                c.err(
                    &format!("{at}.pagination.param"),
                    format!("mode = \"{}\" needs the query parameter's name", raw.mode),
                );
                None
            }
        }
    };
    if raw.mode != "cursor"
        && (raw.token.is_some()
            || raw.stop.is_some()
            || raw.query.is_some()
            || raw.header.is_some()
            || raw.body.is_some())
    {
        c.err(
            &format!("{at}.pagination"),
            format!(
                "`token`, `stop`, `query`, `header` and `body` are for mode = \"cursor\", not \"{}\"",
                raw.mode
            ),
        );
    }
    if raw.mode != "link_header" && (raw.rel.is_some() || !raw.stop_if.is_empty()) {
        c.err(
            &format!("{at}.pagination"),
            format!(
                "`rel` and `stop_if` are for mode = \"link_header\", not \"{}\"",
                raw.mode
            ),
        );
    }
    match raw.mode.as_str() {
        "single" => {
            if raw.max_pages > 1 || raw.param.is_some() || raw.start.is_some() || raw.next.is_some()
            {
                c.err(
                    &format!("{at}.pagination"),
                    "mode = \"single\" (the default) is one request per poll: set a mode to walk pages",
                );
            }
            Some(Paging::Single)
        }
        "page" => Some(Paging::Page {
            param: param(c)?,
            start: raw.start.unwrap_or(1),
        }),
        "offset" => Some(Paging::Offset {
            param: param(c)?,
            start: raw.start.unwrap_or(0),
        }),
        "next_link" => {
            if raw.param.is_some() || raw.start.is_some() {
                c.err(
                    &format!("{at}.pagination"),
                    "`param` and `start` are for the page and offset modes",
                );
            }
            let Some(code) = raw.next else {
                c.err(
                    &format!("{at}.pagination.next"),
                    "mode = \"next_link\" needs a jq expression yielding the next URL",
                );
                return None;
            };
            let next = Jq::compile_with_vars(&code, &["$headers"])
                .map_err(|e| c.err(&format!("{at}.pagination.next"), format!("{e} in `{code}`")))
                .ok()?;
            Some(Paging::NextLink { next })
        }
        "cursor" => {
            if raw.param.is_some() || raw.start.is_some() || raw.next.is_some() {
                c.err(
                    &format!("{at}.pagination"),
                    "`param`, `start` and `next` are for the page, offset and next_link modes",
                );
            }
            let token = match &raw.token {
                Some(code) => Jq::compile_with_vars(code, &["$headers"])
                    .map_err(|e| {
                        c.err(
                            &format!("{at}.pagination.token"),
                            format!("{e} in `{code}`"),
                        )
                    })
                    .ok(),
                None => {
                    c.err(
                        &format!("{at}.pagination.token"),
                        "mode = \"cursor\" needs a jq expression giving the next page's token, e.g. \".response_metadata.next_cursor\"",
                    );
                    None
                }
            };
            let stop = match &raw.stop {
                Some(code) => Some(
                    Jq::compile_with_vars(code, &["$headers"])
                        .map_err(|e| {
                            c.err(&format!("{at}.pagination.stop"), format!("{e} in `{code}`"))
                        })
                        .ok()?,
                ),
                None => None,
            };
            let place = place(
                c,
                &format!("{at}.pagination"),
                "the token",
                (raw.query.clone(), raw.header.clone(), raw.body.clone()),
                method,
            );
            Some(Paging::Cursor {
                token: token?,
                place: place?,
                stop,
            })
        }
        "link_header" => {
            if raw.param.is_some() || raw.start.is_some() || raw.next.is_some() {
                c.err(
                    &format!("{at}.pagination"),
                    "`param`, `start` and `next` are for the page, offset and next_link modes",
                );
            }
            Some(Paging::LinkHeader {
                rel: raw.rel.unwrap_or_else(|| "next".to_owned()),
                stop_if: raw.stop_if.into_iter().collect(),
            })
        }
        other => {
            c.err(
                &format!("{at}.pagination.mode"),
                format!(
                    "`{other}` is not {}",
                    super::one_of(crate::spec::raw::PAGINATION_MODES)
                ),
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
                format!(
                    "`{other}` is not {}",
                    super::one_of(crate::spec::raw::ON_INVALID)
                ),
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
                document: None,
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
            document: Some(document),
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
