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
mod client;
pub mod pages;
pub mod parents;
pub mod poll;
pub mod request;
pub mod rules;

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::spec::{Grant, Source};

pub use client::Client;
pub use pages::Pages;
pub use request::{Bindings, Request};

/// What a secret is shown as.
pub const REDACTED: &str = "REDACTED";

/// Why a request failed for good.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(String),
    /// The request failed, its retries too.
    #[error("{method} {url}: {message} (after {attempts} attempt(s))")]
    Failed {
        method: reqwest::Method,
        url: String,
        attempts: u32,
        message: String,
    },
    /// The `records` expression failed on a response.
    #[error(
        "the records expression `{expr}` failed on the response from {url}: {message}; response starts: {snippet}"
    )]
    Records {
        url: String,
        expr: String,
        message: String,
        snippet: String,
    },
    /// The next page's link could not be had from a response.
    #[error("the next-page expression `{expr}` on the response from {url}: {message}")]
    NextLink {
        url: String,
        expr: String,
        message: String,
    },
    /// The cursor could not move on after a response.
    #[error("the cursor from the response from {url}: {message}")]
    Cursor { url: String, message: String },
    /// No access token could be had.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// The parents could not be listed, or a parent has no key.
    #[error("source.parent: {0}")]
    Parents(String),
    /// Some parents' requests failed; the others' records went on.
    #[error("{failed} of {of} parents failed; the first, {key}: {first}")]
    ParentsFailed {
        failed: usize,
        of: usize,
        key: String,
        first: Box<FetchError>,
    },
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
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// The body, checked to be JSON unless the response is ignored.
    pub body: Bytes,
    /// The key of the `ignore` rule that matched, if one did: the page has no records.
    pub ignored: Option<String>,
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

/// `text` with every secret of `source`'s spec replaced by [`REDACTED`] (the client adds the
/// tokens it got since).
fn scrub(source: &Source, text: &str) -> String {
    let params = source.secrets.iter().map(|secret| {
        let value = secret.value.0.as_str();
        // A bare scheme word ("Bearer ", "Basic ") is no secret; what follows it is.
        value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("Basic "))
            .unwrap_or(value)
    });
    let oauth2 = source.oauth2.iter().flat_map(|o| {
        let refresh = match &o.grant {
            Grant::RefreshToken { token, .. } => Some(token.0.as_str()),
            Grant::ClientCredentials => None,
        };
        std::iter::once(o.client_secret.0.as_str()).chain(refresh)
    });
    let mut text = text.to_owned();
    for secret in params.chain(oauth2) {
        if !secret.is_empty() {
            text = text.replace(secret, REDACTED);
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
