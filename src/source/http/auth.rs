//! OAuth2 access tokens for `[source.auth] type = "oauth2"`: asked of the token endpoint by
//! the `oauth2` crate (through our own reqwest client, which follows no redirect), cached
//! until shortly before they expire, renewed when the API answers 401. A refresh token the
//! endpoint rotates replaces the old one at once, in memory and in its file (written whole
//! and renamed into place), since the old one stops working.
//!
//! Nothing here logs a token: a token endpoint's answer is secret.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, ClientId, ClientSecret, HttpRequest, HttpResponse, RefreshToken, RequestTokenError,
    Scope, TokenResponse, TokenUrl,
};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::backoff::backoff;
use crate::spec::{ClientAuth, Grant, OAuth2, Retry, Secret};

/// A token is renewed this long before it expires (or at a tenth of its life, if shorter).
const MARGIN: Duration = Duration::from_secs(60);

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The endpoint refused the credentials: asking again would not help.
    #[error(
        "the token endpoint {url} refused the credentials: {reason} (check source.auth's client_id, client_secret and refresh_token)"
    )]
    Refused { url: String, reason: String },
    #[error("the token endpoint {url}: {message} (after {attempts} attempt(s))")]
    Unreachable {
        url: String,
        attempts: u32,
        message: String,
    },
    #[error("the token endpoint {url} answered with no usable token: {message}")]
    Invalid { url: String, message: String },
}

impl AuthError {
    /// Whether the run must stop (rather than try again at the next poll): the credentials
    /// were refused, or the endpoint answers what is no token.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, AuthError::Unreachable { .. })
    }
}

/// An access token and when it is renewed.
struct Cached {
    token: Secret,
    renew_at: Instant,
}

struct State {
    cached: Option<Cached>,
    /// The refresh token in use (`grant = "refresh_token"`).
    refresh: Option<Secret>,
}

/// Hands out access tokens.
pub struct Tokens<'a> {
    config: &'a OAuth2,
    http: reqwest::Client,
    retry: Retry,
    state: Mutex<State>,
}

/// What one exchange with the endpoint came to, short of a token.
#[derive(Debug, thiserror::Error)]
enum Exchange {
    /// Worth another try: the endpoint is away or overloaded.
    #[error("{0}")]
    Passing(String),
    /// An answer that is no OAuth2 error response, with a 4xx status.
    #[error("{0}")]
    Refused(String),
}

impl<'a> Tokens<'a> {
    /// Tokens from `config`'s endpoint; its requests time out and are retried as the API's.
    pub fn new(config: &'a OAuth2, timeout: Duration, retry: Retry) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("aqueduct/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let refresh = match &config.grant {
            Grant::RefreshToken { token, .. } => Some(token.clone()),
            Grant::ClientCredentials => None,
        };
        Ok(Tokens {
            config,
            http,
            retry,
            state: Mutex::new(State {
                cached: None,
                refresh,
            }),
        })
    }

    /// The secrets in use now: the current access token and refresh token, if not being
    /// renewed this instant (for scrubbing messages).
    pub fn secrets_now(&self) -> Vec<Secret> {
        let Ok(state) = self.state.try_lock() else {
            return Vec::new();
        };
        state
            .cached
            .iter()
            .map(|c| c.token.clone())
            .chain(state.refresh.clone())
            .collect()
    }

    /// The current access token, asked for if there is none or it is about to expire.
    pub async fn token(&self) -> Result<Secret, AuthError> {
        let mut state = self.state.lock().await;
        if let Some(cached) = &state.cached
            && Instant::now() < cached.renew_at
        {
            return Ok(cached.token.clone());
        }
        self.renew(&mut state).await
    }

    /// The API refused `stale` (a 401): a new token, unless another request renewed it
    /// meanwhile.
    pub async fn refused(&self, stale: &Secret) -> Result<Secret, AuthError> {
        let mut state = self.state.lock().await;
        if let Some(cached) = &state.cached
            && cached.token.0 != stale.0
        {
            return Ok(cached.token.clone());
        }
        state.cached = None;
        self.renew(&mut state).await
    }

    /// Asks the endpoint, retrying per `[source.retry]` while it is away.
    async fn renew(&self, state: &mut State) -> Result<Secret, AuthError> {
        let url = self.config.token_url.to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let message = match self.exchange(state.refresh.as_ref()).await {
                Ok(response) => return Ok(self.take(state, response).await),
                Err(RequestTokenError::Request(Exchange::Passing(message))) => {
                    scrub(self.config, state, &message)
                }
                Err(RequestTokenError::Request(Exchange::Refused(reason))) => {
                    return Err(AuthError::Refused {
                        url,
                        reason: scrub(self.config, state, &reason),
                    });
                }
                Err(RequestTokenError::ServerResponse(e)) => {
                    return Err(AuthError::Refused {
                        url,
                        reason: scrub(self.config, state, &e.to_string()),
                    });
                }
                Err(RequestTokenError::Parse(e, _body)) => {
                    // The body is never shown: it may hold a token.
                    return Err(AuthError::Invalid {
                        url,
                        message: format!("it is not an OAuth2 token response ({e})"),
                    });
                }
                Err(RequestTokenError::Other(message)) => {
                    return Err(AuthError::Invalid { url, message });
                }
            };
            if attempt >= self.retry.attempts {
                return Err(AuthError::Unreachable {
                    url,
                    attempts: attempt,
                    message,
                });
            }
            let delay = backoff(self.retry.initial_backoff, self.retry.max_backoff, attempt);
            warn!(url, attempt, error = %message, retry_in = ?delay, "token request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn exchange(
        &self,
        refresh: Option<&Secret>,
    ) -> Result<
        oauth2::basic::BasicTokenResponse,
        RequestTokenError<Exchange, oauth2::basic::BasicErrorResponse>,
    > {
        let c = self.config;
        let client = BasicClient::new(ClientId::new(c.client_id.clone()))
            .set_client_secret(ClientSecret::new(c.client_secret.0.clone()))
            .set_token_uri(TokenUrl::from_url(c.token_url.clone()))
            .set_auth_type(match c.client_auth {
                ClientAuth::Basic => AuthType::BasicAuth,
                ClientAuth::Body => AuthType::RequestBody,
            });
        let scopes = c.scopes.iter().map(|s| Scope::new(s.clone()));
        let send = Sender { http: &self.http };
        match refresh {
            None => {
                let mut request = client.exchange_client_credentials().add_scopes(scopes);
                for (k, v) in &c.params {
                    request = request.add_extra_param(k.clone(), v.clone());
                }
                request.request_async(&send).await
            }
            Some(refresh) => {
                let refresh = RefreshToken::new(refresh.0.clone());
                let mut request = client.exchange_refresh_token(&refresh).add_scopes(scopes);
                for (k, v) in &c.params {
                    request = request.add_extra_param(k.clone(), v.clone());
                }
                request.request_async(&send).await
            }
        }
    }
}

/// The `oauth2` crate's HTTP client: ours. (Its future is boxed as `Send` so that the
/// ingest's future, which holds it, is provably `Send`.)
struct Sender<'t> {
    http: &'t reqwest::Client,
}

impl<'c> oauth2::AsyncHttpClient<'c> for Sender<'_> {
    type Error = Exchange;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<HttpResponse, Exchange>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

impl Sender<'_> {
    /// One HTTP exchange for the `oauth2` crate: passing failures and refusals that are no
    /// OAuth2 error response are told apart here; anything else goes back to it whole.
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, Exchange> {
        let request = reqwest::Request::try_from(request)
            .map_err(|e| Exchange::Refused(format!("building the request: {e}")))?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| Exchange::Passing(super::error_chain(&e.without_url())))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| Exchange::Passing(super::error_chain(&e.without_url())))?;
        if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            return Err(Exchange::Passing(format!(
                "HTTP {status}: {}",
                super::snippet(&String::from_utf8_lossy(&body))
            )));
        }
        let is_error_response = serde_json::from_slice::<serde_json::Value>(&body)
            .is_ok_and(|v| v.get("error").is_some());
        if status.is_client_error() && !is_error_response {
            return Err(Exchange::Refused(format!(
                "HTTP {status}: {}",
                super::snippet(&String::from_utf8_lossy(&body))
            )));
        }
        let mut out = HttpResponse::new(body.to_vec());
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

impl Tokens<'_> {
    /// Keeps a new token (and a rotated refresh token).
    async fn take(&self, state: &mut State, response: oauth2::basic::BasicTokenResponse) -> Secret {
        if let Some(new) = response.refresh_token()
            && state
                .refresh
                .as_ref()
                .is_some_and(|old| old.0 != *new.secret())
        {
            let new = Secret(new.secret().clone());
            if let Grant::RefreshToken {
                file: Some(file), ..
            } = &self.config.grant
            {
                // The old token is dead either way: the run goes on with the new one, and only
                // a restart would be refused.
                match save(file, &new.0).await {
                    Ok(()) => info!(
                        file = %file.display(),
                        "the token endpoint rotated the refresh token; saved"
                    ),
                    Err(e) => error!(
                        file = %file.display(),
                        error = %e,
                        "the token endpoint rotated the refresh token and it could not be saved: this run goes on with it, but a restart will be refused (the old one no longer works); make the file's folder writable, and authorise again if the run stops"
                    ),
                }
            } else {
                warn!(
                    "the token endpoint rotated the refresh token, which was not read from a file: a restart will start from the old one, which no longer works (set source.auth.refresh_token_file)"
                );
            }
            state.refresh = Some(new);
        }
        let token = Secret(response.access_token().secret().clone());
        // No lifetime said: an hour, renewed sooner on a 401. Nor more than a day.
        let life = response
            .expires_in()
            .unwrap_or(Duration::from_secs(3600))
            .min(Duration::from_secs(24 * 3600));
        let renew_at = Instant::now() + life.saturating_sub(MARGIN.min(life / 10));
        state.cached = Some(Cached {
            token: token.clone(),
            renew_at,
        });
        info!(expires_in = ?life, "access token obtained");
        token
    }
}

/// `text` with the client secret and the refresh tokens (the first and the current one)
/// replaced.
fn scrub(config: &OAuth2, state: &State, text: &str) -> String {
    let first = match &config.grant {
        Grant::RefreshToken { token, .. } => Some(token),
        Grant::ClientCredentials => None,
    };
    let mut text = text.to_owned();
    for secret in std::iter::once(&config.client_secret)
        .chain(first)
        .chain(&state.refresh)
    {
        text = text.replace(&secret.0, super::REDACTED);
    }
    text
}

/// Writes `text` to `file` whole: into a new file beside it, synced, then renamed over it, so
/// a crash leaves the old token or the new one, never half of one.
async fn save(file: &Path, text: &str) -> std::io::Result<()> {
    let file: PathBuf = file.to_owned();
    let text = text.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let dir = file.parent().unwrap_or(Path::new("."));
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(".{}.new", name.unwrap_or_default()));
        let mut out = std::fs::File::create(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            out.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        out.write_all(text.as_bytes())?;
        out.write_all(b"\n")?;
        out.sync_all()?;
        std::fs::rename(&tmp, &file)?;
        std::fs::File::open(dir)?.sync_all()
    })
    .await
    .map_err(std::io::Error::other)?
}
