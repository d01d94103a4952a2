//! The HTTP JSON API source as a component. A [`Client`] owns everything about talking to the
//! API: one reqwest client, the timeout, retries (exponential backoff with full jitter;
//! `Retry-After` honoured on 429 and 503) and the body cap; its [`Client::fetch`] gives the
//! whole [`Response`]. [`request`] builds each request of a poll, and [`poll`] is the one poll
//! loop that `run`, `backfill`, `preview` and the tests drive.
//!
//! A page is kept as the body the API sent (checked to be JSON); records are cut out of it as
//! text.

pub mod poll;
pub mod request;

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::de::IgnoredAny;
use tracing::warn;

use crate::backoff::backoff;
use crate::metrics::Metrics;
use crate::spec::{Retry, Source};

pub use request::{Pages, Request};

/// Why a request failed for good.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("building the HTTP client: {0}")]
    Client(String),
    #[error("{method} {url}: {message} (after {attempts} attempt(s))")]
    Failed {
        method: reqwest::Method,
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

/// A response the API gave, whole.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body, checked to be JSON.
    pub body: Bytes,
}

/// Talks to the source's API.
pub struct Client<'a> {
    source: &'a Source,
    http: reqwest::Client,
    /// Counts retries, when the run keeps metrics.
    metrics: Option<&'a Metrics>,
}

/// What one attempt came to.
enum Attempt {
    Done(Response),
    /// Worth another try; with the server's `Retry-After` when it sent one.
    Retry {
        message: String,
        after: Option<Duration>,
    },
    Fatal(String),
}

impl<'a> Client<'a> {
    /// The client of `source`; retries count in `metrics`, if given.
    pub fn new(source: &'a Source, metrics: Option<&'a Metrics>) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .timeout(source.timeout)
            .user_agent(concat!("aqueduct/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Client(error_chain(&e.without_url())))?;
        Ok(Client {
            source,
            http,
            metrics,
        })
    }

    /// The source this client polls.
    pub fn source(&self) -> &'a Source {
        self.source
    }

    /// One request, retried per the spec. To stop it (a shutdown), drop the future: the
    /// request or the wait in progress ends there.
    pub async fn fetch(&self, request: &Request) -> Result<Response, FetchError> {
        let url = &request.url;
        let Retry {
            attempts,
            initial_backoff,
            max_backoff,
        } = self.source.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (message, after) = match self.attempt_once(request).await {
                Attempt::Done(response) => return Ok(response),
                Attempt::Fatal(message) => return Err(self.failed(url, attempt, message)),
                Attempt::Retry { message, after } => (message, after),
            };
            if attempt >= attempts {
                return Err(self.failed(url, attempt, message));
            }
            let delay = match after {
                Some(after) => after.min(max_backoff),
                None => backoff(initial_backoff, max_backoff, attempt),
            };
            warn!(url = %url, attempt, error = %message, retry_in = ?delay, "request failed; retrying");
            if let Some(metrics) = self.metrics {
                metrics.http_retries.inc();
            }
            tokio::time::sleep(delay).await;
        }
    }

    fn failed(&self, url: &reqwest::Url, attempts: u32, message: String) -> FetchError {
        FetchError::Failed {
            method: self.source.method.clone(),
            url: url.to_string(),
            attempts,
            message,
        }
    }

    async fn attempt_once(&self, request: &Request) -> Attempt {
        let mut builder = self
            .http
            .request(self.source.method.clone(), request.url.clone())
            .headers(request.headers.clone());
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    message: error_chain(&e.without_url()),
                    after: None,
                };
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let message = format!("HTTP {status}: {}", snippet(&body));
            return if retryable(status) {
                let after = matches!(
                    status,
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                )
                .then(|| retry_after(&headers))
                .flatten();
                Attempt::Retry { message, after }
            } else {
                Attempt::Fatal(message)
            };
        }
        let body = match read_body(response, self.source.max_body_size).await {
            Ok(b) => b,
            Err(message) => {
                return Attempt::Retry {
                    message,
                    after: None,
                };
            }
        };
        // Checked whole, without building its values: those are read record by record later.
        match serde_json::from_slice::<IgnoredAny>(&body) {
            Ok(_) => Attempt::Done(Response {
                status,
                headers,
                body,
            }),
            // A cut-off body is usually a passing fault; garbage stays garbage and runs out of
            // tries.
            Err(e) => Attempt::Retry {
                message: format!(
                    "the response is not JSON ({e}); it starts: {}",
                    snippet(&String::from_utf8_lossy(&body))
                ),
                after: None,
            },
        }
    }

    /// The records of one response body, each as its JSON text, by the spec's `records`
    /// expression.
    pub fn records<'b>(
        &self,
        url: &reqwest::Url,
        body: &'b [u8],
    ) -> Result<Vec<Cow<'b, str>>, FetchError> {
        let records = &self.source.records;
        records
            .records(body)
            .map_err(|message| FetchError::Records {
                url: url.to_string(),
                expr: records.code().to_owned(),
                message: message.to_string(),
                snippet: snippet(&String::from_utf8_lossy(body)),
            })
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
            Err(e) => {
                return Err(format!(
                    "reading the body: {}",
                    error_chain(&e.without_url())
                ));
            }
        }
    }
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?.to_str().ok()?, chrono::Utc::now())
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

#[cfg(test)]
mod tests {
    use super::*;

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
