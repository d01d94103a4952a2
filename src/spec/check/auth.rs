//! `[source.auth]` and the source's header and query values: which are secrets, read from
//! where, and where each goes in a request. The static kinds of authentication (bearer, basic,
//! api_key) become secret parameters like any other; `oauth2` is checked here and run by the
//! source's `auth` module.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use super::Checker;
use super::security::read_secret;
use crate::spec::raw::{RawAuth, RawParam, RawParamDetail};
use crate::spec::{ClientAuth, Grant, OAuth2, ParamPlace, Secret, SecretParam};

/// The source's headers and query parameters: plain headers in a map, plain query parameters
/// appended to `url`, secrets apart.
pub(super) fn params(
    c: &mut Checker,
    headers: BTreeMap<String, RawParam>,
    query: BTreeMap<String, RawParam>,
    url: Option<&mut reqwest::Url>,
    base: &Path,
) -> (HeaderMap, Vec<SecretParam>) {
    let mut plain = HeaderMap::new();
    let mut secrets = Vec::new();
    for (k, v) in headers {
        let key = format!("source.headers.{k}");
        let Some(name) = c.header_name(&key, &k) else {
            continue;
        };
        let Some((value, is_secret)) = param(c, &key, v, base) else {
            continue;
        };
        let Ok(header) = HeaderValue::from_str(&value.0) else {
            c.err(&key, "the value is not a valid header value");
            continue;
        };
        if is_secret {
            secrets.push(SecretParam {
                place: ParamPlace::Header(name),
                value,
            });
        } else {
            plain.insert(name, header);
        }
    }
    let mut pairs = Vec::new();
    for (k, v) in query {
        let key = format!("source.query.{k}");
        let Some((value, is_secret)) = param(c, &key, v, base) else {
            continue;
        };
        if is_secret {
            secrets.push(SecretParam {
                place: ParamPlace::Query(k),
                value,
            });
        } else {
            pairs.push((k, value.0));
        }
    }
    if let Some(url) = url
        && !pairs.is_empty()
    {
        url.query_pairs_mut().extend_pairs(pairs);
    }
    (plain, secrets)
}

/// One header or query value, and whether it is a secret.
fn param(c: &mut Checker, key: &str, raw: RawParam, base: &Path) -> Option<(Secret, bool)> {
    let RawParamDetail {
        value,
        file,
        prefix,
        secret: marked,
    } = match raw {
        RawParam::Plain(scalar) => return Some((Secret(scalar.to_string()), false)),
        RawParam::Detailed(detail) => detail,
    };
    let from_file = file.is_some();
    let value = match (value, file) {
        (Some(_), Some(_)) => {
            c.err(key, "set one of `value` and `file`, not both");
            return None;
        }
        (Some(value), None) => Secret(value),
        (None, Some(file)) => read_secret(c, &format!("{key}.file"), &base.join(file))?,
        (None, None) => {
            c.err(key, "set `value` or `file` (a file holding the value)");
            return None;
        }
    };
    Some((
        Secret(format!("{prefix}{}", value.0)),
        marked.unwrap_or(from_file),
    ))
}

/// Fails where `[source.auth]` would set a header or query parameter `[source]` already sets
/// (one would silently replace the other).
pub(super) fn no_clash(
    c: &mut Checker,
    headers: &HeaderMap,
    params: &[SecretParam],
    auth: &[SecretParam],
    oauth2: bool,
) {
    let oauth2_header = oauth2.then_some(ParamPlace::Header(AUTHORIZATION));
    let set_by_auth = auth.iter().map(|p| &p.place).chain(oauth2_header.as_ref());
    for place in set_by_auth {
        let clash = match place {
            ParamPlace::Header(name) => {
                headers.contains_key(name)
                    || params
                        .iter()
                        .any(|p| matches!(&p.place, ParamPlace::Header(h) if h == name))
            }
            ParamPlace::Query(name) => params
                .iter()
                .any(|p| matches!(&p.place, ParamPlace::Query(q) if q == name)),
        };
        if clash {
            let (key, what) = match place {
                ParamPlace::Header(name) => (format!("source.headers.{name}"), "header"),
                ParamPlace::Query(name) => (format!("source.query.{name}"), "query parameter"),
            };
            c.err(
                &key,
                format!("[source.auth] sets this {what} too: set it in one place"),
            );
        }
    }
}

/// What `[source.auth]` comes to: secret parameters (bearer, basic, api_key) or an OAuth2
/// client.
pub(super) fn auth(
    c: &mut Checker,
    raw: RawAuth,
    base: &Path,
) -> Option<(Vec<SecretParam>, Option<OAuth2>)> {
    let kind = raw.kind.clone();
    let allowed: &[&str] = match kind.as_str() {
        "bearer" => &["token"],
        "basic" => &["username", "password"],
        "api_key" => &["key", "header", "query", "prefix"],
        "oauth2" => &[
            "grant",
            "token_url",
            "client_id",
            "client_secret",
            "refresh_token",
            "scopes",
            "client_auth",
            "token_params",
        ],
        other => {
            c.err(
                "source.auth.type",
                format!(
                    "`{other}` is not {}",
                    super::one_of(crate::spec::raw::AUTH_TYPES)
                ),
            );
            return None;
        }
    };
    for (name, given) in given_keys(&raw) {
        if given && !allowed.contains(&name) {
            c.err(
                &format!("source.auth.{name}"),
                format!(
                    "is not a key of type = \"{kind}\" (it takes {})",
                    allowed.join(", ")
                ),
            );
        }
    }
    let required = |c: &mut Checker, name: &str, value: Option<Secret>| {
        if value.is_none() {
            c.err(
                &format!("source.auth.{name}"),
                format!(
                    "type = \"{kind}\" needs `{name}` (or `{name}_file`, or AQUEDUCT_SOURCE__AUTH__{})",
                    name.to_ascii_uppercase()
                ),
            );
        }
        value
    };
    let header = |c: &mut Checker, name: &str, value: String| {
        if HeaderValue::from_str(&value).is_err() {
            c.err(
                &format!("source.auth.{name}"),
                "cannot be sent in a header (a control character, or a line break inside?)",
            );
            return None;
        }
        Some(SecretParam {
            place: ParamPlace::Header(AUTHORIZATION),
            value: Secret(value),
        })
    };
    match kind.as_str() {
        "bearer" => {
            let token = secret_of(c, "token", raw.token, raw.token_file, base);
            let token = required(c, "token", token)?;
            Some((
                vec![header(c, "token", format!("Bearer {}", token.0))?],
                None,
            ))
        }
        "basic" => {
            let password = secret_of(c, "password", raw.password, raw.password_file, base);
            let password = required(c, "password", password);
            let username = required(c, "username", raw.username.map(Secret));
            let (username, password) = (username?, password?);
            let pair = format!("{}:{}", username.0, password.0);
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            Some((
                vec![header(c, "password", format!("Basic {encoded}"))?],
                None,
            ))
        }
        "api_key" => {
            let key = secret_of(c, "key", raw.key, raw.key_file, base);
            let key = required(c, "key", key);
            let place = match (raw.header, raw.query) {
                (Some(h), None) => c
                    .header_name("source.auth.header", &h)
                    .map(ParamPlace::Header),
                (None, Some(q)) if !q.is_empty() => Some(ParamPlace::Query(q)),
                _ => {
                    c.err(
                        "source.auth",
                        "type = \"api_key\" needs exactly one of `header` (e.g. \"X-API-Key\") and `query` (e.g. \"api_key\"): where the key goes",
                    );
                    None
                }
            };
            let value = Secret(format!("{}{}", raw.prefix.unwrap_or_default(), key?.0));
            if matches!(place, Some(ParamPlace::Header(_)))
                && HeaderValue::from_str(&value.0).is_err()
            {
                c.err("source.auth.key", "is not a valid header value");
                return None;
            }
            Some((
                vec![SecretParam {
                    place: place?,
                    value,
                }],
                None,
            ))
        }
        _ => oauth2(c, raw, base).map(|o| (Vec::new(), Some(o))),
    }
}

fn oauth2(c: &mut Checker, raw: RawAuth, base: &Path) -> Option<OAuth2> {
    let client_secret = secret_of(
        c,
        "client_secret",
        raw.client_secret,
        raw.client_secret_file,
        base,
    );
    if client_secret.is_none() {
        c.err(
            "source.auth.client_secret",
            "type = \"oauth2\" needs `client_secret` (or `client_secret_file`, or AQUEDUCT_SOURCE__AUTH__CLIENT_SECRET)",
        );
    }
    let client_id = match raw.client_id {
        Some(id) if !id.is_empty() => Some(id),
        _ => {
            c.err(
                "source.auth.client_id",
                "type = \"oauth2\" needs `client_id`",
            );
            None
        }
    };
    let token_url = match raw.token_url.as_deref().map(reqwest::Url::parse) {
        Some(Ok(url)) if matches!(url.scheme(), "http" | "https") => Some(url),
        Some(Ok(url)) => {
            c.err(
                "source.auth.token_url",
                format!("scheme `{}` is not http or https", url.scheme()),
            );
            None
        }
        Some(Err(e)) => {
            c.err("source.auth.token_url", format!("is not a URL: {e}"));
            None
        }
        None => {
            c.err(
                "source.auth.token_url",
                "type = \"oauth2\" needs `token_url`, the token endpoint",
            );
            None
        }
    };
    let refresh_token_file = raw.refresh_token_file.as_ref().map(|f| base.join(f));
    let refresh_token = secret_of(
        c,
        "refresh_token",
        raw.refresh_token,
        raw.refresh_token_file,
        base,
    );
    let grant = match raw.grant.as_deref() {
        Some("client_credentials") => {
            if refresh_token.is_some() {
                c.err(
                    "source.auth.refresh_token",
                    "is for grant = \"refresh_token\", not \"client_credentials\"",
                );
            }
            Some(Grant::ClientCredentials)
        }
        Some("refresh_token") => match refresh_token {
            Some(token) => Some(Grant::RefreshToken {
                token,
                file: refresh_token_file,
            }),
            None => {
                c.err(
                    "source.auth.refresh_token",
                    "grant = \"refresh_token\" needs `refresh_token` (or `refresh_token_file`, where a rotated token is saved)",
                );
                None
            }
        },
        Some(other) => {
            c.err(
                "source.auth.grant",
                format!("`{other}` is not client_credentials or refresh_token"),
            );
            None
        }
        None => {
            c.err(
                "source.auth.grant",
                "type = \"oauth2\" needs `grant`: client_credentials or refresh_token",
            );
            None
        }
    };
    let client_auth = match raw.client_auth.as_deref() {
        None | Some("basic") => Some(ClientAuth::Basic),
        Some("body") => Some(ClientAuth::Body),
        Some(other) => {
            c.err(
                "source.auth.client_auth",
                format!("`{other}` is not basic or body"),
            );
            None
        }
    };
    for name in raw.token_params.keys() {
        const RESERVED: [&str; 6] = [
            "grant_type",
            "scope",
            "client_id",
            "client_secret",
            "refresh_token",
            "assertion",
        ];
        if RESERVED.contains(&name.as_str()) {
            c.err(
                &format!("source.auth.token_params.{name}"),
                "is a field aqueduct sends itself (from `grant`, `scopes`, `client_id`, ...)",
            );
        }
    }
    Some(OAuth2 {
        token_url: token_url?,
        client_id: client_id?,
        client_secret: client_secret?,
        grant: grant?,
        scopes: raw.scopes,
        client_auth: client_auth?,
        params: raw
            .token_params
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect(),
    })
}

/// `source.auth.<name>` or `source.auth.<name>_file`.
fn secret_of(
    c: &mut Checker,
    name: &str,
    inline: Option<String>,
    file: Option<std::path::PathBuf>,
    base: &Path,
) -> Option<Secret> {
    super::security::secret(c, &format!("source.auth.{name}"), inline, file, base)
}

/// Each key of `[source.auth]` (a `_file` counted as its key) and whether it is set.
fn given_keys(raw: &RawAuth) -> [(&'static str, bool); 15] {
    [
        ("token", raw.token.is_some() || raw.token_file.is_some()),
        ("username", raw.username.is_some()),
        (
            "password",
            raw.password.is_some() || raw.password_file.is_some(),
        ),
        ("key", raw.key.is_some() || raw.key_file.is_some()),
        ("header", raw.header.is_some()),
        ("query", raw.query.is_some()),
        ("prefix", raw.prefix.is_some()),
        ("grant", raw.grant.is_some()),
        ("token_url", raw.token_url.is_some()),
        ("client_id", raw.client_id.is_some()),
        (
            "client_secret",
            raw.client_secret.is_some() || raw.client_secret_file.is_some(),
        ),
        (
            "refresh_token",
            raw.refresh_token.is_some() || raw.refresh_token_file.is_some(),
        ),
        ("scopes", !raw.scopes.is_empty()),
        ("client_auth", raw.client_auth.is_some()),
        ("token_params", !raw.token_params.is_empty()),
    ]
}
