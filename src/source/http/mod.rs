//! The HTTP JSON API source as a component. A [`Client`] owns everything about talking to the
//! API: one reqwest client, the timeout, credentials ([`auth`] for OAuth2; the others are
//! secret headers and query parameters), the rate budget ([`budget`]), the response rules
//! ([`rules`]), retries (exponential backoff with full jitter; `Retry-After` honoured on 429
//! and 503) and the body cap; its [`Client::fetch`] gives the whole [`Response`]. [`request`]
//! builds each request of a poll, and [`poll`] is the one poll loop that `run`, `backfill`,
//! `preview` and the tests drive.
//!
//! Credentials are put in as a request is sent and never kept in a [`Request`], so the URLs
//! shown in logs, errors and dead letters hold none; messages that quote a response have the
//! source's secrets replaced by [`REDACTED`].
//!
//! A page is kept as the body the API sent (checked to be JSON); records are cut out of it as
//! text.

pub mod auth;
pub mod budget;
pub mod poll;
pub mod request;
pub mod rules;

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::de::IgnoredAny;
use tracing::{info, warn};

use crate::backoff::backoff;
use crate::metrics::Metrics;
use crate::spec::{Action, ParamPlace, Retry, Rule, Secret, Source};

pub use request::{Pages, Request};

/// What a secret is shown as.
pub const REDACTED: &str = "REDACTED";

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
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
}

impl FetchError {
    /// Whether the run must stop rather than poll again on schedule: credentials refused, a
    /// rotated refresh token not saved.
    pub fn is_fatal(&self) -> bool {
        matches!(self, FetchError::Auth(e) if e.is_fatal())
    }
}

/// A response the API gave, whole.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body, checked to be JSON unless the response is ignored.
    pub body: Bytes,
    /// The key of the `ignore` rule that matched, if one did: the page has no records.
    pub ignored: Option<String>,
}

/// Talks to the source's API.
pub struct Client<'a> {
    source: &'a Source,
    http: reqwest::Client,
    tokens: Option<auth::Tokens<'a>>,
    budget: budget::Budget,
    /// Counts retries and waits, when the run keeps metrics.
    metrics: Option<&'a Metrics>,
}

/// What one attempt came to.
enum Attempt {
    Done(Response),
    /// Worth another try; with the wait the server asked for, if it did.
    Retry {
        message: String,
        after: Option<Duration>,
    },
    /// The API asks us to slow down: wait, then try again, not counted as an attempt.
    RateLimited {
        message: String,
        after: Option<Duration>,
    },
    Fatal(String),
    /// No access token could be had.
    Auth(auth::AuthError),
}

impl<'a> Client<'a> {
    /// The client of `source`; retries count in `metrics`, if given.
    pub fn new(source: &'a Source, metrics: Option<&'a Metrics>) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .timeout(source.timeout)
            .user_agent(concat!("aqueduct/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Client(error_chain(&e.without_url())))?;
        let tokens = match &source.oauth2 {
            Some(config) => Some(
                auth::Tokens::new(config, source.timeout, source.retry)
                    .map_err(|e| FetchError::Client(error_chain(&e.without_url())))?,
            ),
            None => None,
        };
        Ok(Client {
            source,
            http,
            tokens,
            budget: budget::Budget::new(source.rate_limit.as_ref()),
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
        let (mut attempt, mut limited) = (0, 0);
        loop {
            attempt += 1;
            let (message, delay) = match self.attempt_once(request).await {
                Attempt::Done(response) => return Ok(response),
                Attempt::Fatal(message) => return Err(self.failed(url, attempt, message)),
                Attempt::Auth(e) => return Err(e.into()),
                Attempt::Retry { message, after } => {
                    if attempt >= attempts {
                        return Err(self.failed(url, attempt, message));
                    }
                    let delay = match after {
                        Some(after) => after.min(max_backoff),
                        None => backoff(initial_backoff, max_backoff, attempt),
                    };
                    if let Some(metrics) = self.metrics {
                        metrics.http_retries.inc();
                    }
                    (message, delay)
                }
                Attempt::RateLimited { message, after } => {
                    attempt -= 1;
                    limited += 1;
                    let delay =
                        after.unwrap_or_else(|| backoff(initial_backoff, max_backoff, limited));
                    warn!(url = %url, error = %message, wait = ?delay, "rate limited; waiting");
                    self.waited(delay);
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            warn!(url = %url, attempt, error = %message, retry_in = ?delay, "request failed; retrying");
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

    /// Counts time spent waiting for the API's limits.
    fn waited(&self, wait: Duration) {
        if let Some(metrics) = self.metrics
            && !wait.is_zero()
        {
            metrics.source_wait.inc_by(wait.as_secs_f64());
        }
    }

    /// One attempt: after the budget allows it, with the credentials in, once more with a new
    /// access token if the API refused the old one.
    async fn attempt_once(&self, request: &Request) -> Attempt {
        let waited = self.budget.wait().await;
        self.waited(waited);
        let mut token = match &self.tokens {
            Some(tokens) => match tokens.token().await {
                Ok(token) => Some(token),
                Err(e) => return Attempt::Auth(e),
            },
            None => None,
        };
        let mut renewed = false;
        loop {
            let response = match self.send(request, token.as_ref()).await {
                Ok(r) => r,
                Err(e) => {
                    return Attempt::Retry {
                        message: error_chain(&e.without_url()),
                        after: None,
                    };
                }
            };
            self.budget.observe(response.headers());
            if let (Some(tokens), Some(stale)) = (&self.tokens, &token)
                && response.status() == StatusCode::UNAUTHORIZED
                && !renewed
            {
                info!(url = %request.url, "the API refused the access token; asking for a new one");
                renewed = true;
                token = match tokens.refused(stale).await {
                    Ok(token) => Some(token),
                    Err(e) => return Attempt::Auth(e),
                };
                continue;
            }
            return self.judge(request, response).await;
        }
    }

    /// Sends `request` with the source's secrets and `token` put in.
    async fn send(
        &self,
        request: &Request,
        token: Option<&Secret>,
    ) -> reqwest::Result<reqwest::Response> {
        let mut url = request.url.clone();
        let mut headers = request.headers.clone();
        let secret_header = |value: &str| {
            let mut value = reqwest::header::HeaderValue::from_str(value).ok()?;
            value.set_sensitive(true);
            Some(value)
        };
        for secret in &self.source.secrets {
            match &secret.place {
                ParamPlace::Query(name) => {
                    url = request::with_param(&url, name, &secret.value.0);
                }
                // Checked to be a valid header value.
                ParamPlace::Header(name) => {
                    if let Some(value) = secret_header(&secret.value.0) {
                        headers.insert(name.clone(), value);
                    }
                }
            }
        }
        if let Some(value) = token.and_then(|t| secret_header(&format!("Bearer {}", t.0))) {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = self
            .http
            .request(self.source.method.clone(), url)
            .headers(headers);
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        builder.send().await
    }

    /// What a response comes to: by the first rule it matches, else by its status.
    async fn judge(&self, request: &Request, response: reqwest::Response) -> Attempt {
        let status = response.status();
        let headers = response.headers().clone();
        let body = match read_body(response, self.source.max_body_size).await {
            Ok(b) => b,
            Err(message) if status.is_success() => {
                return Attempt::Retry {
                    message,
                    after: None,
                };
            }
            // An error's body only explains it: the status decides.
            Err(_) => Bytes::new(),
        };
        let quoted = || {
            format!(
                "HTTP {status}: {}",
                scrub(self.source, &snippet(&String::from_utf8_lossy(&body)))
            )
        };
        if let Some(rule) = rules::matching(&self.source.rules, status, &headers, &body) {
            let message = format!("{} (matched {}, {:?})", quoted(), rule.key, rule.action);
            let after = || wait_of(rule, &headers);
            return match rule.action {
                Action::Retry => Attempt::Retry {
                    message,
                    after: after(),
                },
                Action::RateLimited => Attempt::RateLimited {
                    message,
                    after: after(),
                },
                Action::Fail => Attempt::Fatal(message),
                Action::Ignore => {
                    info!(url = %request.url, status = %status, rule = %rule.key, "response ignored by rule; the page has no records");
                    if let Some(metrics) = self.metrics {
                        metrics.ignored_responses.inc();
                    }
                    Attempt::Done(Response {
                        status,
                        headers,
                        body,
                        ignored: Some(rule.key.clone()),
                    })
                }
            };
        }
        if !status.is_success() {
            let message = quoted();
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
        // Checked whole, without building its values: those are read record by record later.
        match serde_json::from_slice::<IgnoredAny>(&body) {
            Ok(_) => Attempt::Done(Response {
                status,
                headers,
                body,
                ignored: None,
            }),
            // A cut-off body is usually a passing fault; garbage stays garbage and runs out of
            // tries.
            Err(e) => Attempt::Retry {
                message: format!(
                    "the response is not JSON ({e}); it starts: {}",
                    scrub(self.source, &snippet(&String::from_utf8_lossy(&body)))
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

/// The wait a rule's `wait_header` asks for, if it has one and the response carries it.
fn wait_of(rule: &Rule, headers: &HeaderMap) -> Option<Duration> {
    rules::wait(rule.wait.as_ref()?, headers, chrono::Utc::now())
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

/// `text` with every secret of `source` replaced by [`REDACTED`].
fn scrub(source: &Source, text: &str) -> String {
    let mut text = text.to_owned();
    for secret in &source.secrets {
        let value = secret.value.0.as_str();
        // A bare scheme word ("Bearer ", "Basic ") is no secret; what follows it is.
        let value = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("Basic "))
            .unwrap_or(value);
        if !value.is_empty() {
            text = text.replace(value, REDACTED);
        }
    }
    text
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
