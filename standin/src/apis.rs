//! Stand-ins of the ways real APIs authenticate and limit, each serving randomuser pages
//! (`{"results": [...]}`, as `/api/`, same query parameters) once a request gets through:
//!
//! - `POST /oauth/token`: an OAuth2 token endpoint (RFC 6749 §4.4 and §6). Clients
//!   authenticate by HTTP Basic or by `client_id`/`client_secret` form fields; a wrong client
//!   is `401 {"error": "invalid_client"}`. `grant_type=client_credentials` gives an access
//!   token; `grant_type=refresh_token` gives one and a new refresh token, and the one used
//!   dies (rotation, as QuickBooks, HubSpot and Typeform do): using it again is
//!   `400 {"error": "invalid_grant"}`. Answers carry `Cache-Control: no-store`.
//! - `GET /oauth/api/`: takes `Authorization: Bearer <token>`; a token serves
//!   [`TOKEN_USES`] requests, then is expired: `401` with `WWW-Authenticate: Bearer
//!   error="invalid_token"`.
//! - `GET /keyed/api/?api_key=KEY`: api.data.gov's (NASA's) key in the query string; none is
//!   `403 API_KEY_MISSING`, a wrong one `403 API_KEY_INVALID`; answers carry
//!   `X-RateLimit-Limit` and `X-RateLimit-Remaining`, and, as NASA's NeoWs, a
//!   `links.next` that repeats the query, key included, with the next `page`.
//! - `GET /slack/api/?limited=N`: Slack's Web API habit of answering HTTP 200 with
//!   `{"ok": false, "error": "ratelimited"}` (and `Retry-After`); the first N requests with
//!   `limited` get that. With `paged=N`, Slack's cursor paging: an opaque `cursor` parameter,
//!   `response_metadata.next_cursor` in each page, `""` on the last; a cursor it did not give
//!   is `{"ok": false, "error": "invalid_cursor"}`.
//! - `GET /github/api/?limit=L&window_s=W`: GitHub's primary rate limit: L requests per
//!   window of W seconds, every answer with `X-RateLimit-Limit`, `-Remaining`, `-Used`,
//!   `-Reset` (the window's end, Unix seconds) and `-Resource`; a request over the limit is
//!   `403` with `X-RateLimit-Remaining: 0` and the documented message, counted in
//!   [`Apis::over_limit`].
//!   With `paged=N`, pages carry GitHub's `Link` header (`prev`, `next`, `last`, `first`).
//! - `GET /github/orgs/{org}/repos?repos=N&per_page=P&page=K`: GitHub's repositories of an
//!   organisation (`id`, `name`, `full_name`), N in all, paged by `Link` headers.
//! - `GET /github/repos/{owner}/{repo}/issues?issues=M&per_page=P&page=K&since=T`: GitHub's
//!   issues of a repository (a bare array, oldest `updated_at` first as with
//!   `sort=updated&direction=asc`): M issues updated a minute apart from 2026-11-01T00:00:00Z;
//!   `since` (ISO 8601) keeps those updated at or after it; paged by `Link` headers; under
//!   the rate limit of `/github/api/` (`limit`, `window_s`). With `fail={owner}/{repo}` that
//!   repository's issues answer `500`.
//! - `GET /redirect/?to=URL`: `302 Found` to URL (an API that moved).
//! - `POST /notion/v1/databases/{id}/query?pages=N`: Notion's database query
//!   (`Authorization: Bearer` [`NOTION_TOKEN`], else `401 unauthorized`; no `Notion-Version`
//!   is `400 missing_version`): N pages edited a minute apart from 2026-11-01, oldest first;
//!   the body's `filter` may be Notion's timestamp filter (`{"timestamp": "last_edited_time",
//!   "last_edited_time": {"on_or_after": T}}`), `page_size` 1 to 100 (default 100), and
//!   `start_cursor` a `next_cursor` it gave (another is `400 validation_error`); answers
//!   `{"object": "list", "results", "next_cursor" (null on the last page), "has_more"}`.
//! - `GET /stripe/v1/charges?per_day=K&limit=L&created[gte]=T&created[lt]=T&starting_after=ID`:
//!   Stripe's list of charges (`Authorization: Bearer` [`STRIPE_KEY`], else `401`): K charges
//!   a UTC day, newest first, `{"object": "list", "url", "has_more", "data"}`; `created[gt]`,
//!   `[gte]`, `[lt]`, `[lte]` (Unix seconds) filter; `starting_after` continues after a charge
//!   of the list (one it does not know is `400 resource_missing`); `limit` 1 to 100, default 10.
//! - `GET /slack/api/conversations.list?channels=N&limit=L&cursor=C` and
//!   `GET /slack/api/conversations.history?channel=ID&messages=M&limit=L&oldest=TS&latest=TS&cursor=C`:
//!   Slack's Web API (HTTP 200 always; `{"ok": false, "error": ...}` on a problem: no
//!   `Authorization: Bearer` [`SLACK_TOKEN`] is `not_authed`, an unknown channel
//!   `channel_not_found`, a cursor it did not give `invalid_cursor`). N public channels; each
//!   channel's M messages newest first, one a second from 2026-11-01, `ts` as Slack writes it
//!   (`"1793491200.000100"`); `oldest` keeps the messages after it and `latest` those before
//!   it (both exclusive, as Slack's default `inclusive=false`). Both page by
//!   `response_metadata.next_cursor`, `""` on the last page, with Slack's edges on request
//!   (`short`, `empty_last`, `repeat`: [`slack_page`]); history says `has_more` too. With `limited=N` the first N history requests are `429`
//!   with `Retry-After: 1` and `{"ok": false, "error": "ratelimited"}`, as Slack's tier limits.
//! - `POST /graphql/?seed=S&total=N`: a GraphQL API paged as Relay connections (Linear's
//!   `issues(first, after)`): the body is `{"query": ..., "variables": {"first": F, "after":
//!   C}}`; the answer is `{"data": {"issues": {"nodes": [...], "pageInfo": {"hasNextPage",
//!   "endCursor"}}}}` over N users in all. As Relay's, the last page's `endCursor` is its last
//!   node's (not null) and `hasNextPage` is false; a page past the end has no nodes and a null
//!   `endCursor`. A body that is no GraphQL request is `400 {"errors": [...]}`; a cursor it did
//!   not give is `200 {"data": null, "errors": [...]}`, as GraphQL servers answer. Nodes carry
//!   Linear's issue fields (`id`, `identifier`, `title`, `priority`, `createdAt`,
//!   `updatedAt`). With `key=K`, the `Authorization` header must be K (a Linear personal API
//!   key), else `400 AUTHENTICATION_ERROR`.
//! - `GET /keyset/api/?seed=S&total=N&ties=T&limit=L`: N users ordered by `(updated_at, id)`,
//!   T in a row sharing one `updated_at` (epoch seconds); `updated_since=U` keeps those with
//!   `updated_at >= U` (inclusive, as Shopify's `updated_at_min`), and with `after_id=I` too,
//!   those after `(U, I)`: a keyset walk. At most L (default 50) in `{"items": [...]}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

use crate::Stats;

/// The stand-in token endpoint's one client: its id and its secret.
pub const CLIENT_ID: &str = "aqueduct-standin";
/// See [`CLIENT_ID`].
pub const CLIENT_SECRET: &str = "cs-7Hq2xVb9TzK4mW1p";
/// The refresh token a new stand-in starts with.
pub const FIRST_REFRESH_TOKEN: &str = "rt-0-Lr8sYd3NfP6cJ5aE";
/// `/keyed/api/`'s key.
pub const API_KEY: &str = "key-SUPERSECRET123-Qz7v";
/// The secret key the Stripe route takes.
pub const STRIPE_KEY: &str = "sk_test_51StR1p3K3yStandIn";
/// The integration token the Notion route takes.
pub const NOTION_TOKEN: &str = "secret_N0t10nIntegrationT0k3n";
/// The bot token the Slack routes take.
pub const SLACK_TOKEN: &str = "xoxb-1234-5678-Sl4ckT0k3n";
/// Requests an access token serves before it expires.
pub const TOKEN_USES: u32 = 3;

/// What the stand-ins keep and what a test can read.
#[derive(Debug)]
pub struct Apis {
    /// Access tokens issued, with the uses left.
    tokens: Mutex<HashMap<String, u32>>,
    /// Every access token ever issued (a test checks none shows in any output).
    pub issued: Mutex<Vec<String>>,
    /// The one refresh token that works now.
    refresh: Mutex<String>,
    /// Token requests, answered or refused.
    pub token_requests: AtomicU64,
    /// Requests answered 401 for an expired or unknown access token.
    pub expired: AtomicU64,
    /// `/slack/api/` requests seen.
    slack_seen: AtomicU64,
    /// `/github/api/`'s window: its end (Unix seconds) and requests in it.
    window: Mutex<(u64, u64)>,
    /// `/github/api/` requests refused for being over the limit.
    pub over_limit: AtomicU64,
}

impl Default for Apis {
    fn default() -> Self {
        Apis {
            tokens: Mutex::default(),
            issued: Mutex::default(),
            refresh: Mutex::new(FIRST_REFRESH_TOKEN.to_owned()),
            token_requests: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            slack_seen: AtomicU64::new(0),
            window: Mutex::new((0, 0)),
            over_limit: AtomicU64::new(0),
        }
    }
}

impl Apis {
    /// The refresh token that works now.
    pub fn refresh_token(&self) -> String {
        lock(&self.refresh).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The routes, beside `/api/`.
pub fn routes(router: Router<Arc<Stats>>) -> Router<Arc<Stats>> {
    use axum::routing::{get, post};
    router
        .route("/oauth/token", post(token))
        .route("/oauth/api/", get(oauth_api))
        .route("/keyed/api/", get(keyed_api))
        .route("/slack/api/", get(slack_api))
        .route("/github/api/", get(github_api))
        .route("/redirect/", get(redirect))
        .route("/graphql/", post(graphql))
        .route("/stripe/v1/charges", get(stripe_charges))
        .route("/notion/v1/databases/{id}/query", post(notion_query))
        .route("/slack/api/conversations.list", get(slack_channels))
        .route("/slack/api/conversations.history", get(slack_history))
        .route("/keyset/api/", get(keyset))
        .route("/github/orgs/{org}/repos", get(github_repos))
        .route("/github/repos/{owner}/{repo}/issues", get(github_issues))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// `Authorization: Basic` credentials, decoded.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    // RFC 6749 §2.3.1: both are form-urlencoded before they are joined.
    Some((url_decode(id), url_decode(secret)))
}

fn url_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn token(
    State(stats): State<Arc<Stats>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let apis = &stats.apis;
    apis.token_requests.fetch_add(1, Ordering::SeqCst);
    let client = basic(&headers).or_else(|| {
        Some((
            form.get("client_id")?.clone(),
            form.get("client_secret")?.clone(),
        ))
    });
    if client != Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned())) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    let rotated = match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => None,
        Some("refresh_token") => {
            let mut current = lock(&apis.refresh);
            if form.get("refresh_token") != Some(&*current) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The refresh token is invalid, expired or revoked",
                );
            }
            let n = apis.token_requests.load(Ordering::SeqCst);
            *current = format!("rt-{n}-{}", crate::hex_token());
            Some(current.clone())
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be client_credentials or refresh_token",
            );
        }
    };
    let access = format!("at-{}", crate::hex_token());
    lock(&apis.tokens).insert(access.clone(), TOKEN_USES);
    lock(&apis.issued).push(access.clone());
    let mut body = json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600});
    if let Some(refresh) = rotated {
        body["refresh_token"] = json!(refresh);
    }
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(body),
    )
        .into_response()
}

async fn oauth_api(
    state: State<Arc<Stats>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    query: Query<HashMap<String, String>>,
) -> Response {
    let apis = &state.0.apis;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let Some(token) = bearer else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"standin\"")],
            Json(json!({"error": "unauthorized"})),
        )
            .into_response();
    };
    let usable = {
        let mut tokens = lock(&apis.tokens);
        match tokens.get_mut(&token) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    };
    if !usable {
        state.0.saw(&uri);
        apis.expired.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"standin\", error=\"invalid_token\", error_description=\"The access token expired\"",
            )],
            Json(json!({"error": "invalid_token"})),
        )
            .into_response();
    }
    crate::users(state, uri, query).await
}

async fn keyed_api(
    state: State<Arc<Stats>>,
    uri: axum::http::Uri,
    query: Query<HashMap<String, String>>,
) -> Response {
    let refuse = |code: &str, message: &str| {
        (
            StatusCode::FORBIDDEN,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response()
    };
    match query.0.get("api_key").map(String::as_str) {
        None => {
            return refuse(
                "API_KEY_MISSING",
                "No api_key was supplied. Get one at https://api.nasa.gov:443",
            );
        }
        Some(key) if key != API_KEY => {
            return refuse(
                "API_KEY_INVALID",
                "An invalid api_key was supplied. Get one at https://api.nasa.gov:443",
            );
        }
        Some(_) => {}
    }
    let page = query
        .0
        .get("page")
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(1);
    let next = {
        // As NASA's NeoWs does: the links carry the caller's key.
        let mut pairs: Vec<(String, String)> = query
            .0
            .iter()
            .filter(|(k, _)| *k != "page")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        pairs.sort();
        pairs.push(("page".into(), (page + 1).to_string()));
        let text: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        format!("/keyed/api/?{text}")
    };
    let mut response = with_field(
        crate::users(state, uri, query).await,
        "links",
        json!({ "next": next }),
    )
    .await;
    let h = response.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from_static("1000"));
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("999"));
    response
}

/// A 200 response's JSON body with `key` set to `value` (other responses as they are).
async fn with_field(response: Response, key: &str, value: serde_json::Value) -> Response {
    if response.status() != StatusCode::OK {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut page: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    page[key] = value;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(page.to_string()))
}

async fn slack_api(
    state: State<Arc<Stats>>,
    uri: axum::http::Uri,
    mut query: Query<HashMap<String, String>>,
) -> Response {
    let limited = query
        .0
        .get("limited")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if state.0.apis.slack_seen.fetch_add(1, Ordering::SeqCst) < limited {
        state.0.saw(&uri);
        return (
            [(header::RETRY_AFTER, "1")],
            Json(json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response();
    }
    // Slack's cursor paging: `cursor` (opaque: base64 of `page:N`) picks the page; the last
    // page's `next_cursor` is "" (with `paged=N` pages in all).
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let page = match query.0.get("cursor") {
        None => 1,
        Some(cursor) => match b64
            .decode(cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| t.strip_prefix("page:")?.parse::<u64>().ok())
        {
            Some(page) => page,
            None => {
                return Json(json!({"ok": false, "error": "invalid_cursor"})).into_response();
            }
        },
    };
    query.0.insert("page".into(), page.to_string());
    let Some(pages) = query.0.get("paged").and_then(|p| p.parse::<u64>().ok()) else {
        return crate::users(state, uri, query).await;
    };
    let next = if page < pages {
        b64.encode(format!("page:{}", page + 1))
    } else {
        String::new()
    };
    let response = crate::users(state, uri, query).await;
    let response = with_field(response, "ok", json!(true)).await;
    with_field(
        response,
        "response_metadata",
        json!({ "next_cursor": next }),
    )
    .await
}

/// GitHub's primary rate limit, `limit` requests (default 60) a window of `window_s` seconds
/// (default 3600) from `query`, counted for this request: the `X-RateLimit-*` headers of its
/// answer, or the whole `403` answer if it is over the limit.
fn github_limit(
    state: &Stats,
    uri: &axum::http::Uri,
    query: &HashMap<String, String>,
) -> Result<impl Fn(&mut HeaderMap) + use<>, Box<Response>> {
    let num = |k: &str, default: u64| {
        query
            .get(k)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let (limit, window_s) = (num("limit", 60), num("window_s", 3600).max(1));
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let (reset, used) = {
        let mut window = lock(&state.apis.window);
        if now >= window.0 as f64 {
            *window = (now.ceil() as u64 + window_s, 0);
        }
        window.1 += 1;
        *window
    };
    let remaining = limit.saturating_sub(used.min(limit));
    let headers = move |h: &mut HeaderMap| {
        for (name, value) in [
            ("x-ratelimit-limit", limit.to_string()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-used", used.min(limit).to_string()),
            ("x-ratelimit-reset", reset.to_string()),
            ("x-ratelimit-resource", "core".to_owned()),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
    };
    if used > limit {
        state.saw(uri);
        state.apis.over_limit.fetch_add(1, Ordering::SeqCst);
        let mut response = (
            StatusCode::FORBIDDEN,
            Json(json!({
                "message": "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.)",
                "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"
            })),
        )
            .into_response();
        headers(response.headers_mut());
        return Err(Box::new(response));
    }
    Ok(headers)
}

async fn github_api(
    state: State<Arc<Stats>>,
    uri: axum::http::Uri,
    query: Query<HashMap<String, String>>,
) -> Response {
    let headers = match github_limit(&state.0, &uri, &query.0) {
        Ok(headers) => headers,
        Err(over) => return *over,
    };
    let links = links(&uri, &query.0);
    let mut response = crate::users(state, uri, query).await;
    headers(response.headers_mut());
    if let Some(links) = links.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, links);
    }
    response
}

/// GitHub's `Link` header for `paged=N` pages: `next` and `last` (the other query parameters
/// kept), `prev` and `first` after the first page.
fn links(uri: &axum::http::Uri, query: &HashMap<String, String>) -> Option<String> {
    let pages = query.get("paged")?.parse::<u64>().ok()?;
    let page = query
        .get("page")
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(1);
    let at = |n: u64| {
        let mut pairs: Vec<(&String, String)> = query
            .iter()
            .filter(|(k, _)| *k != "page")
            .map(|(k, v)| (k, v.clone()))
            .collect();
        pairs.sort();
        let page = "page".to_owned();
        let text = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .append_pair(&page, &n.to_string())
            .finish();
        // Relative, which RFC 8288 allows (GitHub's are absolute).
        format!("<{}?{text}>", uri.path())
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("{}; rel=\"prev\"", at(page - 1)));
    }
    if page < pages {
        links.push(format!("{}; rel=\"next\"", at(page + 1)));
        links.push(format!("{}; rel=\"last\"", at(pages)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", at(1)));
    }
    Some(links.join(", "))
}

async fn redirect(query: Query<HashMap<String, String>>) -> Response {
    let to = query.0.get("to").cloned().unwrap_or_default();
    match HeaderValue::from_str(&to) {
        Ok(to) => (StatusCode::FOUND, [(header::LOCATION, to)]).into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn graphql(
    state: State<Arc<Stats>>,
    uri: axum::http::Uri,
    query: Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    use base64::Engine;
    state.0.saw(&uri);
    let b64 = base64::engine::general_purpose::STANDARD;
    let error = |status: StatusCode, message: &str, code: &str| {
        let body =
            json!({"data": null, "errors": [{"message": message, "extensions": {"code": code}}]});
        (status, Json(body)).into_response()
    };
    // With `key=K`, Linear's personal API key: the Authorization header is K itself.
    if let Some(key) = query.0.get("key")
        && headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            != Some(key.as_str())
    {
        let body = json!({"errors": [{"message": "Authentication required, not authenticated", "extensions": {"type": "authentication error", "code": "AUTHENTICATION_ERROR"}}]});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let request: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "POST body is not JSON",
                "BAD_REQUEST",
            );
        }
    };
    if !request["query"].is_string() {
        return error(
            StatusCode::BAD_REQUEST,
            "GraphQL operations must contain a non-empty `query`",
            "BAD_REQUEST",
        );
    }
    let variables = &request["variables"];
    let first = match &variables["first"] {
        serde_json::Value::Null => 50,
        v => match v.as_u64().filter(|n| (1..=250).contains(n)) {
            Some(n) => n,
            None => {
                return error(
                    StatusCode::OK,
                    "first must be between 1 and 250",
                    "INVALID_INPUT",
                );
            }
        },
    };
    // A cursor is the index of a node; the page starts after it.
    let start = match &variables["after"] {
        serde_json::Value::Null => 0,
        serde_json::Value::String(cursor) => match b64
            .decode(cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| t.strip_prefix("node:")?.parse::<u64>().ok())
        {
            Some(index) => index + 1,
            None => {
                return error(
                    StatusCode::OK,
                    "Argument Validation Error: after is not a valid cursor",
                    "INVALID_INPUT",
                );
            }
        },
        _ => {
            return error(
                StatusCode::OK,
                "Variable \"$after\" got invalid value; String cannot represent a non string value",
                "BAD_USER_INPUT",
            );
        }
    };
    let total = query
        .0
        .get("total")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(0);
    let seed = query.0.get("seed").map_or("graphql", String::as_str);
    let end = (start + first).min(total).max(start);
    // Linear's issue fields, beside randomuser's (which the tests' tables read).
    let nodes: Vec<serde_json::Value> = (start..end)
        .map(|i| {
            let mut node = crate::user(seed, 1, i as usize, false);
            node["id"] = node["login"]["uuid"].clone();
            node["identifier"] = json!(format!("ENG-{}", i + 1));
            node["title"] = json!(format!("Issue {}", i + 1));
            node["priority"] = json!(i % 5);
            node["createdAt"] = json!("2026-10-01T00:00:00.000Z");
            node["updatedAt"] = json!(format!("2026-11-01T00:{:02}:00.000Z", i % 60));
            node
        })
        .collect();
    let end_cursor = (end > start).then(|| b64.encode(format!("node:{}", end - 1)));
    Json(json!({"data": {"issues": {
        "nodes": nodes,
        "pageInfo": {"hasNextPage": end < total, "endCursor": end_cursor}
    }}}))
    .into_response()
}

async fn keyset(
    state: State<Arc<Stats>>,
    uri: axum::http::Uri,
    query: Query<HashMap<String, String>>,
) -> Response {
    state.0.saw(&uri);
    let num = |k: &str| query.0.get(k).and_then(|v| v.parse::<u64>().ok());
    let (total, ties, limit) = (
        num("total").unwrap_or(0),
        num("ties").unwrap_or(1).max(1),
        num("limit").unwrap_or(50).clamp(1, 250),
    );
    let seed = query.0.get("seed").map_or("keyset", String::as_str);
    let since = num("updated_since");
    let after = num("after_id");
    let updated_at = |id: u64| 1_793_491_200 + (id - 1) / ties;
    let items: Vec<serde_json::Value> = (1..=total)
        .filter(|&id| match (since, after) {
            (None, _) => true,
            (Some(u), None) => updated_at(id) >= u,
            (Some(u), Some(i)) => (updated_at(id), id) > (u, i),
        })
        .take(limit as usize)
        .map(|id| {
            let mut user = crate::user(seed, 1, id as usize, false);
            user["id"] = json!(id);
            user["updated_at"] = json!(updated_at(id));
            user
        })
        .collect();
    Json(json!({ "items": items })).into_response()
}

/// A page of `items` (`per_page`, `page` from `query`) with GitHub's `Link` header.
fn github_page(
    uri: &axum::http::Uri,
    query: &HashMap<String, String>,
    items: Vec<serde_json::Value>,
) -> Response {
    let num = |k: &str, default: usize| {
        query
            .get(k)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(default)
    };
    let (per_page, page) = (num("per_page", 30).clamp(1, 100), num("page", 1).max(1));
    let pages = items.len().div_ceil(per_page).max(1);
    let mut paged = query.clone();
    paged.insert("paged".into(), pages.to_string());
    let items: Vec<serde_json::Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut response = Json(items).into_response();
    if let Some(links) = links(uri, &paged).and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, links);
    }
    response
}

async fn github_repos(
    state: State<Arc<Stats>>,
    uri: axum::http::Uri,
    axum::extract::Path(org): axum::extract::Path<String>,
    query: Query<HashMap<String, String>>,
) -> Response {
    state.0.saw(&uri);
    let n = query
        .0
        .get("repos")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let repos = (0..n)
        .map(|i| json!({"id": 1000 + i, "name": format!("repo{i}"), "full_name": format!("{org}/repo{i}")}))
        .collect();
    github_page(&uri, &query.0, repos)
}

/// When issue `i` of the issues route was last updated.
pub fn issue_updated_at(i: u64) -> String {
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default()
        + chrono::Duration::minutes(i as i64);
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn github_issues(
    state: State<Arc<Stats>>,
    uri: axum::http::Uri,
    axum::extract::Path((owner, repo)): axum::extract::Path<(String, String)>,
    query: Query<HashMap<String, String>>,
) -> Response {
    let limit = match github_limit(&state.0, &uri, &query.0) {
        Ok(headers) => headers,
        Err(over) => return *over,
    };
    state.0.saw(&uri);
    let full_name = format!("{owner}/{repo}");
    if query.0.get("fail") == Some(&full_name) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"message": "Server Error"})),
        )
            .into_response();
    }
    let since = match query.0.get("since") {
        None => None,
        Some(t) => match chrono::DateTime::parse_from_rfc3339(t) {
            Ok(t) => Some(t.to_utc()),
            Err(_) => {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(json!({"message": "Validation Failed", "errors": [{"resource": "Issue", "field": "since", "code": "invalid"}]})),
                )
                    .into_response();
            }
        },
    };
    let m = query
        .0
        .get("issues")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let seed = query.0.get("seed").map_or("github", String::as_str);
    let issues = (0..m)
        .filter(|&i| {
            since.is_none_or(|since| {
                chrono::DateTime::parse_from_rfc3339(&issue_updated_at(i))
                    .is_ok_and(|t| t.to_utc() >= since)
            })
        })
        .map(|i| {
            let mut issue = crate::user(&format!("{seed}/{full_name}"), 1, i as usize, false);
            // GitHub's fields (beside randomuser's, which the tests' tables read).
            let id = 2_000_000_000 + (fnv(&full_name) % 1_000_000) * 1000 + i;
            issue["id"] = json!(id);
            issue["node_id"] = json!(format!("I_kwDO{id:x}"));
            issue["number"] = json!(i + 1);
            issue["title"] = json!(format!("Issue {} of {full_name}", i + 1));
            issue["state"] = json!(if i % 3 == 0 { "closed" } else { "open" });
            issue["user"] = json!({"login": format!("user{}", i % 7), "id": 100 + i % 7});
            issue["labels"] = json!([{"name": if i % 2 == 0 { "bug" } else { "enhancement" }}]);
            issue["comments"] = json!(i % 4);
            issue["created_at"] = json!("2026-10-01T00:00:00Z");
            issue["updated_at"] = json!(issue_updated_at(i));
            issue["html_url"] = json!(format!("https://github.com/{full_name}/issues/{}", i + 1));
            issue["repository_url"] = json!(format!("https://api.github.com/repos/{full_name}"));
            issue
        })
        .collect();
    let mut response = github_page(&uri, &query.0, issues);
    limit(response.headers_mut());
    response
}

/// A stable hash of `text` (FNV-1a), for ids that do not change between runs.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Slack's answer to a problem: HTTP 200, `ok: false`.
fn slack_error(error: &str) -> Response {
    Json(json!({"ok": false, "error": error})).into_response()
}

/// One page of `items` as Slack pages them: `limit` (1 to 1000, default 100) from the
/// `cursor` (one this gave, else `invalid_cursor`), with the next page's cursor (`""` on the
/// last). Slack's documented edges, on request: `short=K` makes the K-th page one item short
/// though more follow ("fewer results than your specified limit, even when there are
/// additional results"); `empty_last=1` gives a cursor on a page that ends the items exactly,
/// leading to an empty page with `""`; `repeat=K` makes the K-th page give back the cursor it
/// was asked with (an API that would be walked in a circle).
fn slack_page(
    query: &HashMap<String, String>,
    items: Vec<serde_json::Value>,
) -> Result<(Vec<serde_json::Value>, String), Box<Response>> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let number = |name: &str| query.get(name).and_then(|v| v.parse::<usize>().ok());
    let limit = number("limit").unwrap_or(100).clamp(1, 1000);
    let asked = query.get("cursor").filter(|c| !c.is_empty());
    // A cursor is where its page starts and which page it is.
    let (start, page) = match asked {
        None => (0, 1),
        Some(cursor) => b64
            .decode(cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| {
                let (start, page) = t.strip_prefix("next:")?.split_once(':')?;
                Some((start.parse::<usize>().ok()?, page.parse::<usize>().ok()?))
            })
            .ok_or_else(|| Box::new(slack_error("invalid_cursor")))?,
    };
    let take = match number("short") {
        Some(short) if short == page && limit > 1 => limit - 1,
        _ => limit,
    };
    let end = (start + take).min(items.len());
    let more = end < items.len()
        || (number("empty_last") == Some(1) && start < end && end - start == take);
    let next = match asked {
        Some(cursor) if number("repeat") == Some(page) => cursor.clone(),
        _ if more => b64.encode(format!("next:{end}:{}", page + 1)),
        _ => String::new(),
    };
    Ok((items.into_iter().skip(start).take(take).collect(), next))
}

fn slack_authed(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {SLACK_TOKEN}").as_str())
}

async fn slack_channels(
    state: State<Arc<Stats>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    query: Query<HashMap<String, String>>,
) -> Response {
    state.0.saw(&uri);
    if !slack_authed(&headers) {
        return slack_error("not_authed");
    }
    let n = query
        .0
        .get("channels")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let channels = (0..n)
        .map(|i| json!({"id": format!("C0{i:08}"), "name": format!("channel-{i}"), "is_channel": true, "is_archived": false}))
        .collect();
    match slack_page(&query.0, channels) {
        Ok((channels, next)) => Json(
            json!({"ok": true, "channels": channels, "response_metadata": {"next_cursor": next}}),
        )
        .into_response(),
        Err(e) => *e,
    }
}

/// Message `i` of a channel's history: its `ts`.
pub fn slack_ts(i: u64) -> String {
    format!("{}.000100", 1_793_491_200 + i)
}

async fn slack_history(
    state: State<Arc<Stats>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    query: Query<HashMap<String, String>>,
) -> Response {
    state.0.saw(&uri);
    if !slack_authed(&headers) {
        return slack_error("not_authed");
    }
    // With `limited=N`, the first N history requests are rate limited as Slack's Web API
    // answers: 429, `Retry-After`, and `ok: false` in the body.
    let limited = query
        .0
        .get("limited")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if state.0.apis.slack_seen.fetch_add(1, Ordering::SeqCst) < limited {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            Json(json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response();
    }
    let Some(channel) = query.0.get("channel").filter(|c| c.starts_with('C')) else {
        return slack_error("channel_not_found");
    };
    let m = query
        .0
        .get("messages")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let bound = |name: &str, default: f64| {
        query
            .0
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (oldest, latest) = (bound("oldest", 0.0), bound("latest", f64::INFINITY));
    let messages: Vec<serde_json::Value> = (0..m)
        .rev()
        .filter(|&i| {
            slack_ts(i)
                .parse::<f64>()
                .is_ok_and(|ts| ts > oldest && ts < latest)
        })
        .map(|i| {
            let mut message = crate::user(channel, 1, i as usize, false);
            message["type"] = json!("message");
            message["user"] = json!(format!("U0{:08}", i % 4));
            message["text"] = json!(format!("message {i} in {channel}"));
            message["ts"] = json!(slack_ts(i));
            message
        })
        .collect();
    match slack_page(&query.0, messages) {
        Ok((messages, next)) => Json(json!({
            "ok": true,
            "messages": messages,
            "has_more": !next.is_empty(),
            "pin_count": 0,
            "response_metadata": {"next_cursor": next}
        }))
        .into_response(),
        Err(e) => *e,
    }
}

/// The stand-in's Stripe charges created in `[from, until)` (Unix seconds), `per_day` a UTC
/// day, newest first.
pub fn stripe_charges_between(from: i64, until: i64, per_day: i64) -> Vec<serde_json::Value> {
    const DAY: i64 = 86_400;
    let mut charges = Vec::new();
    for day in from.div_euclid(DAY)..=until.div_euclid(DAY) {
        for i in 0..per_day {
            let created = day * DAY + (i + 1) * DAY / (per_day + 1);
            if created < from || created >= until {
                continue;
            }
            let id = format!("ch_3{:022x}", fnv(&format!("{day}/{i}")) as u128 * 7919);
            charges.push(json!({
                "id": id,
                "object": "charge",
                "amount": 500 + (fnv(&id) % 9500),
                "currency": "usd",
                "created": created,
                "customer": format!("cus_{:014x}", fnv(&id) % 50),
                "paid": true,
                "status": "succeeded",
                "description": format!("Charge {i} of day {day}"),
                "livemode": false
            }));
        }
    }
    charges.sort_by_key(|c| std::cmp::Reverse(c["created"].as_i64()));
    charges
}

async fn stripe_charges(
    state: State<Arc<Stats>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    query: Query<HashMap<String, String>>,
) -> Response {
    state.0.saw(&uri);
    let error = |status: StatusCode, kind: &str, message: String, param: Option<&str>| {
        let body = json!({"error": {"type": kind, "message": message, "param": param, "code": if status == StatusCode::BAD_REQUEST { Some("resource_missing") } else { None }}});
        (status, Json(body)).into_response()
    };
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(format!("Bearer {STRIPE_KEY}").as_str())
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "You did not provide an API key.".to_owned(),
            None,
        );
    }
    let q = &query.0;
    let time = |k: &str| q.get(k).and_then(|v| v.parse::<i64>().ok());
    let from = time("created[gte]")
        .or(time("created[gt]").map(|t| t + 1))
        .unwrap_or(1_790_000_000);
    let until = time("created[lt]")
        .or(time("created[lte]").map(|t| t + 1))
        .unwrap_or(1_800_000_000);
    let per_day = time("per_day").unwrap_or(4);
    let limit = time("limit").unwrap_or(10).clamp(1, 100) as usize;
    let all = stripe_charges_between(from, until, per_day);
    let start = match q.get("starting_after") {
        None => 0,
        Some(after) => match all.iter().position(|c| c["id"] == json!(after)) {
            Some(at) => at + 1,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    format!("No such charge: '{after}'"),
                    Some("starting_after"),
                );
            }
        },
    };
    let page: Vec<serde_json::Value> = all.iter().skip(start).take(limit).cloned().collect();
    let has_more = start + page.len() < all.len();
    Json(json!({"object": "list", "url": "/v1/charges", "has_more": has_more, "data": page}))
        .into_response()
}

/// When page `i` of the Notion route was last edited.
pub fn notion_edited(i: u64) -> String {
    format!("2026-11-01T{:02}:{:02}:00.000Z", i / 60 % 24, i % 60)
}

async fn notion_query(
    state: State<Arc<Stats>>,
    uri: axum::http::Uri,
    axum::extract::Path(database): axum::extract::Path<String>,
    headers: HeaderMap,
    query: Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    use base64::Engine;
    state.0.saw(&uri);
    let b64 = base64::engine::general_purpose::STANDARD;
    let error = |status: StatusCode, code: &str, message: &str| {
        let body =
            json!({"object": "error", "status": status.as_u16(), "code": code, "message": message});
        (status, Json(body)).into_response()
    };
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(format!("Bearer {NOTION_TOKEN}").as_str())
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "API token is invalid.",
        );
    }
    if headers.get("notion-version").is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_version",
            "Notion-Version header failed validation: Notion-Version header should be defined, instead was `undefined`.",
        );
    }
    let request: serde_json::Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    "Error parsing JSON body.",
                );
            }
        }
    };
    let n = query
        .0
        .get("pages")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let since = request["filter"]["last_edited_time"]["on_or_after"]
        .as_str()
        .map(str::to_owned);
    let size = match &request["page_size"] {
        serde_json::Value::Null => 100,
        v => match v.as_u64().filter(|n| (1..=100).contains(n)) {
            Some(n) => n as usize,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "validation_error",
                    "body failed validation: body.page_size should be a number between 1 and 100.",
                );
            }
        },
    };
    let pages: Vec<serde_json::Value> = (0..n)
        .filter(|&i| since.as_deref().is_none_or(|s| notion_edited(i).as_str() >= s))
        .map(|i| {
            let mut page = crate::user(&database, 1, i as usize, false);
            page["object"] = json!("page");
            page["id"] = page["login"]["uuid"].clone();
            page["created_time"] = json!("2026-10-01T00:00:00.000Z");
            page["last_edited_time"] = json!(notion_edited(i));
            page["archived"] = json!(false);
            page["properties"] = json!({
                "Name": {"id": "title", "type": "title", "title": [{"type": "text", "plain_text": format!("Task {}", i + 1)}]},
                "Status": {"id": "s%3Ab", "type": "select", "select": {"name": if i % 2 == 0 { "Done" } else { "In progress" }}}
            });
            page
        })
        .collect();
    let start = match &request["start_cursor"] {
        serde_json::Value::Null => 0,
        serde_json::Value::String(cursor) => match b64
            .decode(cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| t.strip_prefix("at:")?.parse::<usize>().ok())
        {
            Some(at) => at,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "validation_error",
                    "body failed validation: body.start_cursor should be a valid uuid.",
                );
            }
        },
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "validation_error",
                "body failed validation: body.start_cursor should be a string.",
            );
        }
    };
    let end = (start + size).min(pages.len());
    let next = (end < pages.len()).then(|| b64.encode(format!("at:{end}")));
    Json(json!({
        "object": "list",
        "results": pages.into_iter().skip(start).take(size).collect::<Vec<_>>(),
        "has_more": next.is_some(),
        "next_cursor": next,
        "type": "page_or_database",
        "page_or_database": {}
    }))
    .into_response()
}
