//! Fetching from the HTTP JSON API: one request with timeout and retries (exponential backoff
//! with full jitter; `Retry-After` honoured on 429 and 503), and the pages of one poll. A page
//! is kept as the body the API sent (checked to be JSON); records are cut out of it as text.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde::de::IgnoredAny;
use serde_json::Value;
use tracing::warn;

use crate::backoff::backoff;
use crate::jq::{Input, Json};
use crate::spec::{Pagination, Retry, Source};

/// Why a request failed for good.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url}: {message} (after {attempts} attempt(s))")]
    Failed {
        url: String,
        attempts: u32,
        message: String,
    },
    #[error(
        "the records expression `{expr}` failed on the response from {url}: {message}; response starts: {snippet}"
    )]
    Records {
        url: String,
        expr: String,
        message: String,
        snippet: String,
    },
    #[error("the next-page expression `{expr}` on the response from {url}: {message}")]
    NextLink {
        url: String,
        expr: String,
        message: String,
    },
    #[error("the cursor from the response from {url}: {message}")]
    Cursor { url: String, message: String },
}

/// Builds the HTTP client for a source.
pub fn client(source: &Source) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(source.timeout)
        .user_agent(concat!("aqueduct/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// What one attempt came to.
enum Attempt {
    Done(Bytes),
    /// Worth another try; with the server's `Retry-After` when it sent one.
    Retry {
        message: String,
        after: Option<Duration>,
    },
    Fatal(String),
}

/// One request of a poll: the source's own, with a cursor or a time window put in, and for a
/// later page, its page parameter.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: reqwest::Url,
    pub headers: reqwest::header::HeaderMap,
    pub body: Option<Value>,
}

impl Request {
    /// The request as the spec writes it.
    pub fn of(source: &Source) -> Request {
        Request {
            url: source.url.clone(),
            headers: source.headers.clone(),
            body: source.body.clone(),
        }
    }
}

/// One request, retried per the spec. `on_retry` is called before each retry (for metrics).
/// To stop it (a shutdown), drop the future: the request or the wait in progress ends there.
pub async fn fetch(
    client: &reqwest::Client,
    source: &Source,
    request: &Request,
    mut on_retry: impl FnMut(),
) -> Result<Bytes, FetchError> {
    let url = &request.url;
    let Retry {
        attempts,
        initial_backoff,
        max_backoff,
    } = source.retry;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (message, after) = match attempt_once(client, source, request).await {
            Attempt::Done(v) => return Ok(v),
            Attempt::Fatal(message) => return Err(failed(url, attempt, message)),
            Attempt::Retry { message, after } => (message, after),
        };
        if attempt >= attempts {
            return Err(failed(url, attempt, message));
        }
        let delay = match after {
            Some(after) => after.min(max_backoff),
            None => backoff(initial_backoff, max_backoff, attempt),
        };
        warn!(url = %url, attempt, error = %message, retry_in = ?delay, "request failed; retrying");
        on_retry();
        tokio::time::sleep(delay).await;
    }
}

fn failed(url: &reqwest::Url, attempts: u32, message: String) -> FetchError {
    FetchError::Failed {
        url: url.to_string(),
        attempts,
        message,
    }
}

async fn attempt_once(client: &reqwest::Client, source: &Source, request: &Request) -> Attempt {
    let mut builder = client
        .request(source.method.clone(), request.url.clone())
        .headers(request.headers.clone());
    if let Some(body) = &request.body {
        builder = builder.json(body);
    }
    let response = match builder.send().await {
        Ok(r) => r,
        Err(e) => {
            return Attempt::Retry {
                message: error_chain(&e),
                after: None,
            };
        }
    };
    let status = response.status();
    let after = retry_after(&response);
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let message = format!("HTTP {status}: {}", snippet(&body));
        return if retryable(status) {
            let after = matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            )
            .then_some(after)
            .flatten();
            Attempt::Retry { message, after }
        } else {
            Attempt::Fatal(message)
        };
    }
    let bytes = match read_body(response, source.max_body_size).await {
        Ok(b) => b,
        Err(message) => {
            return Attempt::Retry {
                message,
                after: None,
            };
        }
    };
    // Checked whole, without building its values: those are read record by record later.
    match serde_json::from_slice::<IgnoredAny>(&bytes) {
        Ok(_) => Attempt::Done(bytes),
        // A cut-off body is usually a passing fault; garbage stays garbage and runs out of tries.
        Err(e) => Attempt::Retry {
            message: format!(
                "the response is not JSON ({e}); it starts: {}",
                snippet(&String::from_utf8_lossy(&bytes))
            ),
            after: None,
        },
    }
}

/// The body, read a chunk at a time up to `limit` (`source.max_body_size`): a larger one is
/// refused as soon as it says so (`Content-Length`) or as soon as it gets there.
async fn read_body(
    mut response: reqwest::Response,
    limit: bytesize::ByteSize,
) -> Result<Bytes, String> {
    let too_big = || {
        format!(
            "the response is larger than source.max_body_size ({limit}); raise it if that is expected"
        )
    };
    if response
        .content_length()
        .is_some_and(|n| n > limit.as_u64())
    {
        return Err(too_big());
    }
    let mut body = bytes::BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if (body.len() + chunk.len()) as u64 > limit.as_u64() {
                    return Err(too_big());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => return Err(format!("reading the body: {}", error_chain(&e))),
        }
    }
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    parse_retry_after(
        response.headers().get(RETRY_AFTER)?.to_str().ok()?,
        chrono::Utc::now(),
    )
}

fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    // A date in the past means "now".
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or_default(),
    )
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// The start of a body, for messages.
pub fn snippet(body: &str) -> String {
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::text::shorten(&one_line, 200)
}

/// The records of one response body, each as its JSON text, by the spec's `records`
/// expression.
pub fn records<'a>(
    source: &Source,
    url: &reqwest::Url,
    body: &'a [u8],
) -> Result<Vec<Cow<'a, str>>, FetchError> {
    source
        .records
        .records(body)
        .map_err(|message| FetchError::Records {
            url: url.to_string(),
            expr: source.records.code().to_owned(),
            message: message.to_string(),
            snippet: snippet(&String::from_utf8_lossy(body)),
        })
}

/// Walks the pages of one poll.
pub struct Pages<'a> {
    source: &'a Source,
    /// The poll's first request, which later pages vary.
    base: Request,
    /// The next page's request, or `None` when the poll is over.
    next: Option<Request>,
    fetched: u32,
    /// Records received so far in this poll (the offset mode's position).
    records_seen: i64,
}

impl<'a> Pages<'a> {
    /// The pages of a poll starting with `base`.
    pub fn new(source: &'a Source, base: Request) -> Self {
        let first = match &source.pagination {
            None | Some(Pagination::NextLink { .. }) => base.clone(),
            Some(Pagination::Page { param, start, .. })
            | Some(Pagination::Offset { param, start, .. }) => Request {
                url: with_param(&base.url, param, &start.to_string()),
                ..base.clone()
            },
        };
        Pages {
            source,
            base,
            next: Some(first),
            fetched: 0,
            records_seen: 0,
        }
    }

    /// The request to send next, if the poll is not over.
    pub fn next_request(&self) -> Option<&Request> {
        self.next.as_ref()
    }

    /// Moves on after a page (its body) that yielded `count` records.
    pub fn advance(&mut self, body: &[u8], count: usize) -> Result<(), FetchError> {
        self.fetched += 1;
        self.records_seen += count as i64;
        let Some(current) = self.next.take() else {
            return Ok(());
        };
        let Some(pagination) = &self.source.pagination else {
            return Ok(());
        };
        let max_pages = match pagination {
            Pagination::Page { max_pages, .. }
            | Pagination::Offset { max_pages, .. }
            | Pagination::NextLink { max_pages, .. } => *max_pages,
        };
        if self.fetched >= max_pages || count == 0 {
            return Ok(());
        }
        let url = match pagination {
            Pagination::Page { param, start, .. } => Some(with_param(
                &self.base.url,
                param,
                &(start + i64::from(self.fetched)).to_string(),
            )),
            Pagination::Offset { param, start, .. } => Some(with_param(
                &self.base.url,
                param,
                &(start + self.records_seen).to_string(),
            )),
            Pagination::NextLink { next, .. } => {
                let current = &current.url;
                let err = |message: String| FetchError::NextLink {
                    url: current.to_string(),
                    expr: next.code().to_owned(),
                    message,
                };
                let page: Json = serde_json::from_slice(body).map_err(|e| err(e.to_string()))?;
                match next
                    .run_one_on(&Input::new(&page))
                    .map_err(|e| err(e.to_string()))?
                {
                    Value::Null => None,
                    Value::String(link) => Some(
                        current
                            .join(&link)
                            .map_err(|e| err(format!("`{link}` is not a URL: {e}")))?,
                    ),
                    other => return Err(err(format!("yielded {other}, not a URL string or null"))),
                }
            }
        };
        self.next = url.map(|url| Request {
            url,
            ..self.base.clone()
        });
        Ok(())
    }
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
    use crate::spec::tests::spec_with;
    use serde_json::json;

    fn pages_of(spec: &crate::spec::Spec) -> Pages<'_> {
        Pages::new(&spec.source, Request::of(&spec.source))
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
        pages.advance(json!({}).to_string().as_bytes(), 10).unwrap();
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
        pages.advance(json!({}).to_string().as_bytes(), 10).unwrap();
        assert_eq!(
            next_url(&pages),
            "http://example.test/api/?results=10&page=2"
        );
        pages.advance(json!({}).to_string().as_bytes(), 10).unwrap();
        assert_eq!(
            next_url(&pages),
            "http://example.test/api/?results=10&page=3"
        );
        pages.advance(json!({}).to_string().as_bytes(), 10).unwrap();
        assert!(pages.next_request().is_none());
        let mut pages = pages_of(&spec);
        pages.advance(json!({}).to_string().as_bytes(), 0).unwrap();
        assert!(
            pages.next_request().is_none(),
            "an empty page ends the poll"
        );
    }

    #[test]
    fn offset_mode_advances_by_records_received() {
        let spec =
            source("[source.pagination]\nmode = \"offset\"\nparam = \"offset\"\nmax_pages = 5");
        let mut pages = pages_of(&spec);
        assert!(next_url(&pages).ends_with("offset=0"));
        pages.advance(json!({}).to_string().as_bytes(), 7).unwrap();
        assert!(next_url(&pages).ends_with("offset=7"));
        pages.advance(json!({}).to_string().as_bytes(), 7).unwrap();
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
                3,
            )
            .unwrap();
        assert_eq!(next_url(&pages), "http://example.test/api/?cursor=abc");
        pages
            .advance(json!({"next": null}).to_string().as_bytes(), 3)
            .unwrap();
        assert!(pages.next_request().is_none());
        let mut pages = pages_of(&spec);
        let err = pages
            .advance(json!({"next": 5}).to_string().as_bytes(), 3)
            .unwrap_err();
        assert!(err.to_string().contains("not a URL string"), "{err}");
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
