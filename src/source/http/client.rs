//! [`Client`]: one reqwest client and everything a request goes through: the rate budget,
//! the credentials (put in as it is sent, and only to the source's own origin), a new access
//! token after a 401, the response rules, the default verdicts by status, retries and the
//! body cap.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::de::IgnoredAny;
use tracing::{info, warn};

use super::{
    FetchError, REDACTED, Request, Response, auth, budget, error_chain, retry_after, rules, snippet,
};
use crate::backoff::backoff;
use crate::jq::Jq;
use crate::metrics::Metrics;
use crate::spec::{Action, ParamPlace, Retry, Rule, Secret, Source};

/// The longest one rate-limited wait lasts, whatever the API says (a misread header must not
/// park the pipeline for years); a longer one is cut and logged.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(3600);

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
        // Credentials go to the source's own origin only: a redirect elsewhere is not
        // followed when there are any (reqwest drops only `Authorization` and `Cookie`).
        let origin = source.endpoint.url.origin();
        let keeps_secrets = !source.secrets.is_empty() || source.oauth2.is_some();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                attempt.error("more than 10 redirects")
            } else if keeps_secrets && attempt.url().origin() != origin {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let http = reqwest::Client::builder()
            .timeout(source.timeout)
            .redirect(redirects)
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
                Attempt::Fatal(message) => return Err(self.failed(request, attempt, message)),
                Attempt::Auth(e) => return Err(e.into()),
                Attempt::Retry { message, after } => {
                    if attempt >= attempts {
                        return Err(self.failed(request, attempt, message));
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
                    // At least the first backoff (a `Retry-After: 0` or a reset already past
                    // must not make a busy loop), at most MAX_RATE_LIMIT_WAIT.
                    let asked = after
                        .unwrap_or_else(|| backoff(initial_backoff, max_backoff, limited))
                        .max(initial_backoff);
                    let delay = asked.min(MAX_RATE_LIMIT_WAIT);
                    if delay < asked {
                        warn!(url = %url, asked = ?asked, "the API asks for a wait longer than an hour; waiting an hour (is the rule's wait_format right?)");
                    }
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

    fn failed(&self, request: &Request, attempts: u32, message: String) -> FetchError {
        FetchError::Failed {
            method: request.method.clone(),
            url: request.url.to_string(),
            attempts,
            message,
        }
    }

    /// `text` with every secret of the source, the current access token among them, replaced
    /// by [`REDACTED`].
    fn scrub(&self, text: &str) -> String {
        let mut text = super::scrub(self.source, text);
        if let Some(tokens) = &self.tokens {
            for secret in tokens.secrets_now() {
                text = text.replace(&secret.0, REDACTED);
            }
        }
        text
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
                // The request goes again: it counts against the budget like any other.
                let waited = self.budget.wait().await;
                self.waited(waited);
                continue;
            }
            return self.judge(request, response).await;
        }
    }

    /// Sends `request` with the source's secrets and `token` put in, if it goes to the
    /// source's own origin (a next link may point elsewhere: it gets none).
    async fn send(
        &self,
        request: &Request,
        token: Option<&Secret>,
    ) -> reqwest::Result<reqwest::Response> {
        let mut url = request.url.clone();
        let mut headers = request.headers.clone();
        let own = url.origin() == self.source.endpoint.url.origin();
        if !own && (!self.source.secrets.is_empty() || token.is_some()) {
            warn!(url = %request.url, "the request goes to another origin than source.url; it is sent without the source's credentials");
        }
        let (secrets, token) = if own {
            (&self.source.secrets[..], token)
        } else {
            (&[][..], None)
        };
        let secret_header = |value: &str| {
            let mut value = reqwest::header::HeaderValue::from_str(value).ok()?;
            value.set_sensitive(true);
            Some(value)
        };
        for secret in secrets {
            match &secret.place {
                ParamPlace::Query(name) => {
                    url = super::request::with_param(&url, name, &secret.value.0);
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
            .request(request.method.clone(), url)
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
                snippet(&self.scrub(&String::from_utf8_lossy(&body)))
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
        if status.is_redirection() {
            // Only a redirect to another origin comes back (see `new`).
            let to = headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            return Attempt::Fatal(format!(
                "HTTP {status}: a redirect to {}, not followed: the source's credentials go to the origin of source.url only (point source.url at the new place)",
                self.scrub(to)
            ));
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
                    snippet(&self.scrub(&String::from_utf8_lossy(&body)))
                ),
                after: None,
            },
        }
    }

    /// The records of one response body, each as its JSON text, by a `records` expression.
    pub fn records<'b>(
        &self,
        records: &Jq,
        url: &reqwest::Url,
        body: &'b [u8],
    ) -> Result<Vec<Cow<'b, str>>, FetchError> {
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
