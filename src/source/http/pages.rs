//! [`Pages`]: the pages of one poll, by the spec's pagination: a page number, an offset, a
//! next link from the body or the `Link` header, or a token put into the poll's first
//! request. A next URL or token seen twice in one poll ends it with an error.

use std::collections::HashSet;

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::FetchError;
use super::request::{Bindings, PlaceError, Request, redacted, with_param};
use crate::spec::{Endpoint, Paging, Source};

/// Walks the pages of one poll.
pub struct Pages<'a> {
    source: &'a Source,
    /// What the poll asks.
    endpoint: &'a Endpoint,
    /// Where the poll stands: a page token goes in these.
    bindings: Bindings,
    /// The poll's first request, which later pages vary.
    base: Request,
    /// The next page's request, or `None` when the poll is over.
    next: Option<Request>,
    fetched: u32,
    /// Records received so far in this poll (the offset mode's position).
    records_seen: i64,
    /// The URLs this poll asked for, so that an API handing out the same next link twice
    /// ends the poll instead of looping.
    asked: HashSet<String>,
}

impl<'a> Pages<'a> {
    /// The pages of a poll of `endpoint` from `bindings`.
    pub fn new(
        source: &'a Source,
        endpoint: &'a Endpoint,
        bindings: Bindings,
    ) -> Result<Self, PlaceError> {
        let base = Request::build(source, endpoint, &bindings)?;
        let first = match endpoint.pagination.as_ref().map(|p| &p.mode) {
            None
            | Some(
                Paging::Single
                | Paging::NextLink { .. }
                | Paging::LinkHeader { .. }
                | Paging::Cursor { .. },
            ) => base.clone(),
            Some(Paging::Page { param, start } | Paging::Offset { param, start }) => Request {
                url: with_param(&base.url, param, &start.to_string()),
                ..base.clone()
            },
        };
        Ok(Pages {
            source,
            endpoint,
            bindings,
            base,
            asked: HashSet::from([first.url.to_string()]),
            next: Some(first),
            fetched: 0,
            records_seen: 0,
        })
    }

    /// The request to send next, if the poll is not over.
    pub fn next_request(&self) -> Option<&Request> {
        self.next.as_ref()
    }

    /// Ends the poll here.
    pub fn end(&mut self) {
        self.next = None;
    }

    /// Moves on after a page (its body and headers) that yielded `count` records.
    pub fn advance(
        &mut self,
        body: &[u8],
        headers: &HeaderMap,
        count: usize,
    ) -> Result<(), FetchError> {
        self.fetched += 1;
        self.records_seen += count as i64;
        let Some(current) = self.next.take() else {
            return Ok(());
        };
        let Some(pagination) = &self.endpoint.pagination else {
            return Ok(());
        };
        let short = pagination
            .page_size
            .is_some_and(|size| count < size as usize);
        let numbered = matches!(pagination.mode, Paging::Page { .. } | Paging::Offset { .. });
        if self.fetched >= pagination.max_pages || short || (numbered && count == 0) {
            return Ok(());
        }
        if let Paging::Cursor { token, stop, .. } = &pagination.mode {
            self.next = self.token_request(&current, token, stop.as_ref(), body, headers)?;
            return Ok(());
        }
        let url = match &pagination.mode {
            Paging::Page { param, start } => Some(with_param(
                &self.base.url,
                param,
                &(start + i64::from(self.fetched)).to_string(),
            )),
            Paging::Offset { param, start } => Some(with_param(
                &self.base.url,
                param,
                &(start + self.records_seen).to_string(),
            )),
            Paging::NextLink { next } => {
                let current = &current.url;
                let err = |message: String| FetchError::NextLink {
                    url: current.to_string(),
                    expr: next.code().to_owned(),
                    message: super::scrub(self.source, &message),
                };
                let page: Value = serde_json::from_slice(body).map_err(|e| err(e.to_string()))?;
                match next
                    .run_with_var(&page, &headers_value(headers))
                    .map_err(|e| err(e.to_string()))?
                {
                    Value::Null => None,
                    // An API may echo a key in its links (NASA's do): it stands as
                    // REDACTED here too, and goes in as the request is sent.
                    Value::String(link) => Some(redacted(
                        self.source,
                        current
                            .join(&link)
                            .map_err(|e| err(format!("`{link}` is not a URL: {e}")))?,
                    )),
                    other => return Err(err(format!("yielded {other}, not a URL string or null"))),
                }
            }
            Paging::Single | Paging::Cursor { .. } => None,
            Paging::LinkHeader { rel, stop_if } => {
                let current = &current.url;
                let err = |message: String| FetchError::NextLink {
                    url: current.to_string(),
                    expr: format!("the Link header's rel=\"{rel}\""),
                    message: super::scrub(self.source, &message),
                };
                match next_link(headers, rel, stop_if).map_err(&err)? {
                    None => None,
                    Some(link) => Some(redacted(
                        self.source,
                        current
                            .join(&link)
                            .map_err(|e| err(format!("`{link}` is not a URL: {e}")))?,
                    )),
                }
            }
        };
        if let Some(url) = &url
            && !self.asked.insert(url.to_string())
        {
            return Err(FetchError::NextLink {
                url: url.to_string(),
                expr: "the pagination".to_owned(),
                message: format!(
                    "the API gave {url} as the next page again in this poll; the poll stops here rather than loop"
                ),
            });
        }
        self.next = url.map(|url| Request {
            url,
            ..self.base.clone()
        });
        Ok(())
    }
}
impl Pages<'_> {
    /// The `cursor` mode's next request: the poll's first with the page's token in, or
    /// `None` at the end (no token, an empty one, or `stop` true). A token seen before in this
    /// poll is an error: the API would be walked in a circle.
    fn token_request(
        &mut self,
        current: &Request,
        token: &crate::jq::Jq,
        stop: Option<&crate::jq::Jq>,
        body: &[u8],
        headers: &HeaderMap,
    ) -> Result<Option<Request>, FetchError> {
        let err = |expr: &crate::jq::Jq, message: String| FetchError::NextLink {
            url: current.url.to_string(),
            expr: expr.code().to_owned(),
            message: super::scrub(self.source, &message),
        };
        let page: Value = serde_json::from_slice(body).map_err(|e| err(token, e.to_string()))?;
        let headers = headers_value(headers);
        if let Some(stop) = stop {
            let stops = stop
                .run_with_var(&page, &headers)
                .map_err(|e| err(stop, e.to_string()))?;
            if !matches!(stops, Value::Null | Value::Bool(false)) {
                return Ok(None);
            }
        }
        let value = token
            .run_with_var(&page, &headers)
            .map_err(|e| err(token, e.to_string()))?;
        match &value {
            Value::Null => return Ok(None),
            Value::String(s) if s.is_empty() => return Ok(None),
            Value::String(_) | Value::Number(_) => {}
            other => {
                return Err(err(
                    token,
                    format!("yielded {other}, not a token (a string or a number) or null"),
                ));
            }
        }
        if !self.asked.insert(format!("token {value}")) {
            return Err(err(
                token,
                format!(
                    "the API gave the token {value} again in this poll; the poll stops here rather than loop"
                ),
            ));
        }
        let bindings = Bindings {
            token: value,
            ..self.bindings.clone()
        };
        Request::build(self.source, self.endpoint, &bindings)
            .map(Some)
            .map_err(|e| err(token, e.to_string()))
    }
}

/// A response's headers as jq's `$headers`: lower-case names, repeated ones joined by `, `.
fn headers_value(headers: &HeaderMap) -> Value {
    let mut out = serde_json::Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match out.get_mut(name.as_str()) {
            Some(Value::String(text)) => {
                text.push_str(", ");
                text.push_str(&value);
            }
            _ => {
                out.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    Value::Object(out)
}

/// The URL of the link of relation `rel` in the `Link` headers (RFC 8288: any number of
/// headers and links, quoted parameters, several relations in one), or `None` when there is
/// none or it carries every `stop_if` parameter (Sentry's `results="false"`).
pub fn next_link(
    headers: &HeaderMap,
    rel: &str,
    stop_if: &[(String, String)],
) -> Result<Option<String>, String> {
    use nom_language::error::VerboseError;
    for value in headers.get_all(reqwest::header::LINK) {
        let text = value
            .to_str()
            .map_err(|_| "a Link header is not text".to_owned())?;
        let links = nom_rfc8288::complete::link_lenient::<VerboseError<&str>>(text)
            .map_err(|e| format!("the Link header `{text}` does not parse: {e}"))?;
        for link in links.into_iter().flatten() {
            let param = |key: &str| {
                link.params
                    .iter()
                    .find(|p| p.key.eq_ignore_ascii_case(key))
                    .and_then(|p| p.val.as_deref())
            };
            let is_rel = param("rel").is_some_and(|rels| {
                rels.split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case(rel))
            });
            if !is_rel {
                continue;
            }
            let stops =
                !stop_if.is_empty() && stop_if.iter().all(|(k, v)| param(k) == Some(v.as_str()));
            return Ok((!stops).then(|| link.url.to_owned()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::spec_with;
    use serde_json::json;

    fn pages_of(spec: &crate::spec::Spec) -> Pages<'_> {
        Pages::new(
            spec.source.as_ref().unwrap(),
            &spec.source.as_ref().unwrap().endpoint,
            Bindings::default(),
        )
        .unwrap()
    }

    /// The next page's URL (there must be one).
    fn next_url<'a>(pages: &'a Pages) -> &'a str {
        pages.next_request().expect("a next page").url.as_str()
    }

    fn source(pagination: &str) -> crate::spec::Spec {
        spec_with(
            &format!("records = \".results[]\"\n{pagination}"),
            "table = \"t\"\npartition_key = [\"id\"]\ncolumns.id = { type = \"text\", jq = \".id\" }",
        )
    }

    #[test]
    fn no_pagination_is_one_page() {
        let spec = source("");
        let mut pages = pages_of(&spec);
        assert_eq!(
            next_url(&pages),
            "http://example.test/api/?results=10&page=9"
        );
        pages
            .advance(json!({}).to_string().as_bytes(), &HeaderMap::new(), 10)
            .unwrap();
        assert!(pages.next_request().is_none());
    }

    #[test]
    fn page_mode_counts_up_to_the_limit_and_stops_on_an_empty_page() {
        let spec = source("[source.pagination]\nmode = \"page\"\nparam = \"page\"\nmax_pages = 3");
        let mut pages = pages_of(&spec);
        assert_eq!(
            next_url(&pages),
            "http://example.test/api/?results=10&page=1"
        );
        pages
            .advance(json!({}).to_string().as_bytes(), &HeaderMap::new(), 10)
            .unwrap();
        assert_eq!(
            next_url(&pages),
            "http://example.test/api/?results=10&page=2"
        );
        pages
            .advance(json!({}).to_string().as_bytes(), &HeaderMap::new(), 10)
            .unwrap();
        assert_eq!(
            next_url(&pages),
            "http://example.test/api/?results=10&page=3"
        );
        pages
            .advance(json!({}).to_string().as_bytes(), &HeaderMap::new(), 10)
            .unwrap();
        assert!(pages.next_request().is_none());
        let mut pages = pages_of(&spec);
        pages
            .advance(json!({}).to_string().as_bytes(), &HeaderMap::new(), 0)
            .unwrap();
        assert!(
            pages.next_request().is_none(),
            "an empty page ends the poll"
        );
    }

    #[test]
    fn a_short_page_ends_the_poll_only_with_a_page_size_and_an_empty_one_only_when_numbered() {
        let h = HeaderMap::new();
        let body = json!({"next": "/api/?page=2"}).to_string();
        for (pagination, count, ends) in [
            // A short page goes on (APIs differ)...
            ("mode = \"page\"\nparam = \"page\"", 3, false),
            ("mode = \"next_link\"\nnext = \".next\"", 3, false),
            // ...unless the spec gives the size of a full page.
            ("mode = \"page\"\nparam = \"page\"\npage_size = 10", 3, true),
            (
                "mode = \"page\"\nparam = \"page\"\npage_size = 10",
                10,
                false,
            ),
            (
                "mode = \"next_link\"\nnext = \".next\"\npage_size = 10",
                9,
                true,
            ),
            // An empty page ends a numbered walk, which has nothing else to go by...
            ("mode = \"offset\"\nparam = \"offset\"", 0, true),
            // ...but not a walk whose API says where the next page is (Slack returns
            // empty pages with a next cursor).
            ("mode = \"next_link\"\nnext = \".next\"", 0, false),
        ] {
            let spec = source(&format!("[source.pagination]\n{pagination}\nmax_pages = 5"));
            let mut pages = pages_of(&spec);
            pages.advance(body.as_bytes(), &h, count).unwrap();
            assert_eq!(
                pages.next_request().is_none(),
                ends,
                "{pagination} after {count} records"
            );
        }
    }

    #[test]
    fn a_key_echoed_in_a_next_link_stands_as_redacted() {
        let spec = source(
            "auth = { type = \"api_key\", query = \"api_key\", key = \"S3CRET\" }\n[source.pagination]\nmode = \"next_link\"\nnext = \".links.next\"\nmax_pages = 5",
        );
        let mut pages = pages_of(&spec);
        assert!(next_url(&pages).ends_with("&api_key=REDACTED"));
        let page = json!({"links": {"next": "/neo/browse?page=1&size=20&api_key=S3CRET"}});
        pages
            .advance(page.to_string().as_bytes(), &HeaderMap::new(), 20)
            .unwrap();
        assert_eq!(
            next_url(&pages),
            "http://example.test/neo/browse?page=1&size=20&api_key=REDACTED"
        );
    }

    #[test]
    fn offset_mode_advances_by_records_received() {
        let spec =
            source("[source.pagination]\nmode = \"offset\"\nparam = \"offset\"\nmax_pages = 5");
        let mut pages = pages_of(&spec);
        assert!(next_url(&pages).ends_with("offset=0"));
        pages
            .advance(json!({}).to_string().as_bytes(), &HeaderMap::new(), 7)
            .unwrap();
        assert!(next_url(&pages).ends_with("offset=7"));
        pages
            .advance(json!({}).to_string().as_bytes(), &HeaderMap::new(), 7)
            .unwrap();
        assert!(next_url(&pages).ends_with("offset=14"));
    }

    #[test]
    fn next_link_mode_follows_relative_links_until_null() {
        let spec =
            source("[source.pagination]\nmode = \"next_link\"\nnext = \".next\"\nmax_pages = 5");
        let mut pages = pages_of(&spec);
        pages
            .advance(
                json!({"next": "/api/?cursor=abc"}).to_string().as_bytes(),
                &HeaderMap::new(),
                3,
            )
            .unwrap();
        assert_eq!(next_url(&pages), "http://example.test/api/?cursor=abc");
        pages
            .advance(
                json!({"next": null}).to_string().as_bytes(),
                &HeaderMap::new(),
                3,
            )
            .unwrap();
        assert!(pages.next_request().is_none());
        let mut pages = pages_of(&spec);
        let err = pages
            .advance(
                json!({"next": 5}).to_string().as_bytes(),
                &HeaderMap::new(),
                3,
            )
            .unwrap_err();
        assert!(err.to_string().contains("not a URL string"), "{err}");
    }

    fn link_headers(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(reqwest::header::LINK, v.parse().unwrap());
        }
        headers
    }

    #[test]
    fn link_header_mode_follows_rel_next_among_many_links_until_a_stop() {
        let spec = source("[source.pagination]\nmode = \"link_header\"\nmax_pages = 9");
        let mut pages = pages_of(&spec);
        // GitHub: several links in one header, in any order; a relative one resolves.
        let github = link_headers(&[
            r#"<https://api.github.com/repositories/1/issues?page=1>; rel="prev", </repositories/1/issues?page=3&per_page=2>; rel="next", <https://api.github.com/repositories/1/issues?page=9>; rel="last""#,
        ]);
        pages.advance(b"[]", &github, 2).unwrap();
        assert_eq!(
            next_url(&pages),
            "http://example.test/repositories/1/issues?page=3&per_page=2"
        );
        // Links spread over two headers, a quoted parameter with a comma, two relations.
        let split = link_headers(&[
            r#"<https://x.test/a?c=1>; rel="prev"; title="a, b""#,
            r#"<https://x.test/a?c=2>; rel="next last""#,
        ]);
        pages.advance(b"[]", &split, 2).unwrap();
        assert_eq!(next_url(&pages), "https://x.test/a?c=2");
        // No next link: the last page.
        pages
            .advance(
                b"[]",
                &link_headers(&[r#"<https://x.test/a?c=1>; rel="prev""#]),
                2,
            )
            .unwrap();
        assert!(pages.next_request().is_none());

        // Sentry: a next link with results="false" means there is none.
        let spec = source(
            "[source.pagination]\nmode = \"link_header\"\nmax_pages = 9\nstop_if = { results = \"false\" }",
        );
        let sentry = |more: &'static str| {
            link_headers(&[if more == "true" {
                r#"<https://sentry.io/api/0/issues/?&cursor=100:0:1>; rel="previous"; results="false"; cursor="100:0:1", <https://sentry.io/api/0/issues/?&cursor=100:1:0>; rel="next"; results="true"; cursor="100:1:0""#
            } else {
                r#"<https://sentry.io/api/0/issues/?&cursor=100:1:1>; rel="previous"; results="true"; cursor="100:1:1", <https://sentry.io/api/0/issues/?&cursor=100:2:0>; rel="next"; results="false"; cursor="100:2:0""#
            }])
        };
        let mut pages = pages_of(&spec);
        pages.advance(b"[]", &sentry("true"), 100).unwrap();
        assert_eq!(
            next_url(&pages),
            "https://sentry.io/api/0/issues/?&cursor=100:1:0"
        );
        pages.advance(b"[]", &sentry("false"), 100).unwrap();
        assert!(pages.next_request().is_none());
    }

    #[test]
    fn cursor_mode_puts_the_token_into_the_first_request_until_it_runs_out() {
        // Slack: the token in a query parameter; the first request's parameters stay.
        let spec = source(
            "[source.pagination]\nmode = \"cursor\"\ntoken = \".response_metadata.next_cursor\"\nquery = \"cursor\"\nmax_pages = 9",
        );
        let mut pages = pages_of(&spec);
        let page = |next: &str| json!({"ok": true, "response_metadata": {"next_cursor": next}});
        let h = HeaderMap::new();
        pages
            .advance(page("dXNlcjpVMEc5V0ZYTlo=").to_string().as_bytes(), &h, 2)
            .unwrap();
        assert_eq!(
            next_url(&pages),
            "http://example.test/api/?results=10&page=9&cursor=dXNlcjpVMEc5V0ZYTlo%3D"
        );
        pages
            .advance(page("bmV4dA==").to_string().as_bytes(), &h, 2)
            .unwrap();
        assert!(next_url(&pages).ends_with("&page=9&cursor=bmV4dA%3D%3D"));
        // The same token again: an error, not a loop.
        let err = pages
            .advance(page("dXNlcjpVMEc5V0ZYTlo=").to_string().as_bytes(), &h, 2)
            .unwrap_err();
        assert!(err.to_string().contains("again in this poll"), "{err}");
        // An empty token is the end (Slack's last page).
        let mut pages = pages_of(&spec);
        pages
            .advance(page("").to_string().as_bytes(), &h, 2)
            .unwrap();
        assert!(pages.next_request().is_none());

        // Notion: a POST body's start_cursor, stopping on has_more = false.
        let spec = source(
            "method = \"POST\"\nbody = { page_size = 2 }\n[source.pagination]\nmode = \"cursor\"\ntoken = \".next_cursor\"\nstop = \".has_more == false\"\nbody = \"/start_cursor\"\nmax_pages = 9",
        );
        let mut pages = pages_of(&spec);
        let page = |more: bool| json!({"has_more": more, "next_cursor": "e6c6f5c4-1"});
        pages
            .advance(page(true).to_string().as_bytes(), &h, 2)
            .unwrap();
        assert_eq!(
            pages.next_request().unwrap().body,
            Some(json!({"page_size": 2, "start_cursor": "e6c6f5c4-1"}))
        );
        pages
            .advance(page(false).to_string().as_bytes(), &h, 2)
            .unwrap();
        assert!(pages.next_request().is_none());
    }

    #[test]
    fn next_link_reads_headers_and_a_repeated_link_ends_the_poll_with_an_error() {
        let spec = source(
            "[source.pagination]\nmode = \"next_link\"\nnext = '$headers[\"x-next\"]'\nmax_pages = 9",
        );
        let mut pages = pages_of(&spec);
        let mut headers = HeaderMap::new();
        headers.insert("x-next", "/api/?after=7".parse().unwrap());
        pages.advance(b"{}", &headers, 3).unwrap();
        assert_eq!(next_url(&pages), "http://example.test/api/?after=7");
        let err = pages.advance(b"{}", &headers, 3).unwrap_err();
        assert!(
            err.to_string()
                .contains("as the next page again in this poll"),
            "{err}"
        );
        assert!(pages.next_request().is_none());
        pages.advance(b"{}", &HeaderMap::new(), 3).unwrap();
    }
}
