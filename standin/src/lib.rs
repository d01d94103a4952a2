//! A randomuser.me-compatible stand-in API, for aqueduct's tests, benchmarks and offline demo
//! (the real API is out of reach of CI machines). A crate of its own in the workspace, so the
//! product library does not carry it.
//!
//! `GET /api/?results=N&seed=S&page=P` returns `{"results": [...], "info": {...}}` with users in
//! exactly the real v1.4 shape: postcode a number or a string by nationality, `id.value` null
//! for IR/NZ/TR/UA, non-ASCII names. The same seed, page and count give the same users.
//!
//! `GET /fdsnws/event/1/query?format=geojson&starttime=T1&endtime=T2[&orderby=time-asc]
//! [&limit=N][&seed=S][&per_day=N]` serves the USGS query API's shape over any time range:
//! `per_day` events (default 24) on every UTC day, the same for the same seed and day whatever
//! the window asked, so a test knows exactly which events a window or a back-fill holds
//! ([`quakes_between`]). Times as the API takes them (`2026-01-01`, `2026-01-01T06:00:00`, with
//! or without a zone); `orderby=time` (the API's default) is newest first.
//!
//! Faults on demand, by query parameter:
//! - `fault=500|503|429|truncate|garbage` with `fault_times=N` (default 1): the first N requests
//!   carrying `fault` that this server sees fail that way (429 and 503 send `Retry-After: 1`).
//! - `delay_ms=N`: answer after N ms.
//! - `invalid=N`: the first N users of each page break the randomuser schema.
//! - `huge=N`: the first N users of each page carry a number no JSON library holds as a double
//!   (`"huge": 1e400`): well-formed JSON that cannot be decoded into values.
//! - `big=N`: the first N users of each page carry a 2 MB `bio`, more than a Kafka message
//!   holds by default (1 MB).
//! - `fault=404` answers `404 {"error": "..."}` (a parent that was deleted).
//!
//! The same pages behind the ways real APIs authenticate and limit (OAuth2, an API key in the
//! query string, Slack's `ok: false`, GitHub's rate limit headers): see [`apis`].

pub mod apis;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

/// The size of a `big=N` user's `bio`.
const BIG_FIELD: usize = 2_000_000;

/// Counters a test can read.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered, faults included.
    pub requests: AtomicU64,
    /// The query strings of the requests, in order.
    pub queries: std::sync::Mutex<Vec<String>>,
    /// The paths and query strings of the requests, in order.
    pub uris: std::sync::Mutex<Vec<String>>,
    /// When each request came, in order.
    pub times: std::sync::Mutex<Vec<std::time::Instant>>,
    /// The state of the authenticating and limiting stand-ins.
    pub apis: apis::Apis,
}

impl Stats {
    /// Counts a request and keeps its query string.
    fn saw(&self, uri: &axum::http::Uri) -> u64 {
        self.queries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(uri.query().unwrap_or_default().to_owned());
        self.uris.lock().unwrap_or_else(|e| e.into_inner()).push(
            uri.path_and_query()
                .map_or_else(String::new, |p| p.to_string()),
        );
        self.times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(std::time::Instant::now());
        self.requests.fetch_add(1, Ordering::SeqCst)
    }
}

/// The router; `stats` counts requests.
pub fn router(stats: Arc<Stats>) -> Router {
    let router = Router::new()
        .route("/api/", get(users))
        .route("/api", get(users))
        .route("/fdsnws/event/1/query", get(query));
    apis::routes(router).with_state(stats)
}

/// A random token's text.
fn hex_token() -> String {
    (0..24)
        .map(|_| char::from_digit(fastrand::u32(..16), 16).unwrap_or('0'))
        .collect()
}

/// Serves on `addr` (port 0 for any) until the task is dropped; returns the bound address.
pub async fn spawn(
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, Arc<Stats>, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let stats = Arc::new(Stats::default());
    let app = router(stats.clone());
    let handle = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "stand-in API stopped");
        }
    });
    Ok((bound, stats, handle))
}

async fn users(
    State(stats): State<Arc<Stats>>,
    uri: axum::http::Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let n = stats.saw(&uri);
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<u64>().ok());
    if let Some(ms) = num("delay_ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let results = num("results")
        .filter(|r| (1..=5000).contains(r))
        .unwrap_or(1) as usize;
    let page = num("page").filter(|p| *p <= 10_000).unwrap_or(1).max(1);
    let seed = q
        .get("seed")
        .cloned()
        .unwrap_or_else(|| format!("{:016x}", fastrand::u64(..)));
    let mut body = json!({
        "results": (0..results).map(|i| user(&seed, page, i, i < num("invalid").unwrap_or(0) as usize)).collect::<Vec<_>>(),
        "info": {"seed": seed, "results": results, "page": page, "version": "1.4"}
    });
    let big = num("big").unwrap_or(0) as usize;
    for user in body["results"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .take(big)
    {
        user["bio"] = json!("x".repeat(BIG_FIELD));
    }
    let fault = q.get("fault").map(String::as_str);
    if fault.is_some() && n < num("fault_times").unwrap_or(1) {
        let retry_after = [(header::RETRY_AFTER, HeaderValue::from_static("1"))];
        let error = Json(
            json!({"error": "Uh oh, something has gone wrong. Please tweet us @randomapi about the issue. Thank you."}),
        );
        match fault {
            Some("500") => return (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
            Some("404") => {
                let error = Json(json!({"error": "Not found"}));
                return (StatusCode::NOT_FOUND, error).into_response();
            }
            Some("503") => {
                return (StatusCode::SERVICE_UNAVAILABLE, retry_after, error).into_response();
            }
            Some("429") => {
                let error = Json(
                    json!({"error": "Whoa, ease up there cowboy. You've requested too many users too fast."}),
                );
                return (StatusCode::TOO_MANY_REQUESTS, retry_after, error).into_response();
            }
            Some("truncate") => {
                let text = body.to_string();
                return (
                    [(header::CONTENT_TYPE, "application/json")],
                    text[..text.len() / 2].to_owned(),
                )
                    .into_response();
            }
            Some("garbage") => {
                return (
                    [(header::CONTENT_TYPE, "text/html")],
                    "<html>502 Bad Gateway</html>",
                )
                    .into_response();
            }
            _ => {}
        }
    }
    match num("huge").unwrap_or(0) as usize {
        0 => Json(body).into_response(),
        huge => {
            // serde_json cannot hold 1e400, so it is spliced into the text of each user.
            let users = body["results"].as_array().map_or(&[][..], Vec::as_slice);
            let texts: Vec<String> = users
                .iter()
                .enumerate()
                .map(|(i, u)| {
                    let text = u.to_string();
                    match text.strip_prefix('{') {
                        Some(rest) if i < huge => format!("{{\"huge\":1e400,{rest}"),
                        _ => text,
                    }
                })
                .collect();
            let text = format!(
                "{{\"results\":[{}],\"info\":{}}}",
                texts.join(","),
                body["info"]
            );
            ([(header::CONTENT_TYPE, "application/json")], text).into_response()
        }
    }
}

const DAY_MS: i64 = 86_400_000;

/// The query route's events: those of `seed` whose time is in `[start_ms, end_ms)`, oldest
/// first (`per_day` on each UTC day).
pub fn quakes_between(seed: &str, start_ms: i64, end_ms: i64, per_day: usize) -> Vec<Value> {
    if end_ms <= start_ms {
        return Vec::new();
    }
    let time = |q: &Value| q["properties"]["time"].as_i64().unwrap_or_default();
    let mut quakes: Vec<Value> = (start_ms.div_euclid(DAY_MS)..=(end_ms - 1).div_euclid(DAY_MS))
        .flat_map(|day| (0..per_day).map(move |i| quake_of_day(seed, day, i)))
        .filter(|q| (start_ms..end_ms).contains(&time(q)))
        .collect();
    quakes.sort_by_key(|q| (time(q), q["id"].as_str().unwrap_or_default().to_owned()));
    quakes
}

/// Event `index` of UTC day `day` (days since 1970-01-01) for `seed`.
fn quake_of_day(seed: &str, day: i64, index: usize) -> Value {
    let mut quake = earthquake(&format!("{seed}@{day}"), index);
    let within = quake["properties"]["time"]
        .as_i64()
        .unwrap_or_default()
        .rem_euclid(DAY_MS);
    let time = day * DAY_MS + within;
    quake["properties"]["time"] = json!(time);
    quake["properties"]["updated"] = json!(time + 60_000);
    quake
}

/// A time as the USGS API takes it, as epoch milliseconds (UTC when no zone is given).
fn usgs_time(text: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

async fn query(
    State(stats): State<Arc<Stats>>,
    uri: axum::http::Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    stats.saw(&uri);
    let bad = |message: String| (StatusCode::BAD_REQUEST, message).into_response();
    if q.get("format").map(String::as_str) != Some("geojson") {
        return bad("Error 400: Bad Request\n\nonly format=geojson is served".into());
    }
    let mut window = [0i64; 2];
    for (at, name) in window.iter_mut().zip(["starttime", "endtime"]) {
        match q.get(name).map(|t| (usgs_time(t), t)) {
            Some((Some(ms), _)) => *at = ms,
            Some((None, text)) => {
                return bad(format!(
                    "Error 400: Bad Request\n\nBad {name} value \"{text}\""
                ));
            }
            None => return bad(format!("Error 400: Bad Request\n\n{name} is required here")),
        }
    }
    let per_day = q
        .get("per_day")
        .and_then(|n| n.parse().ok())
        .unwrap_or(24usize)
        .min(1000);
    let seed = q.get("seed").map_or("usgs", String::as_str);
    let mut features = quakes_between(seed, window[0], window[1], per_day);
    match q.get("orderby").map(String::as_str) {
        None | Some("time") => features.reverse(),
        Some("time-asc") => {}
        Some(other) => {
            return bad(format!(
                "Error 400: Bad Request\n\nBad orderby value \"{other}\""
            ));
        }
    }
    if let Some(limit) = q.get("limit").and_then(|n| n.parse::<usize>().ok()) {
        features.truncate(limit);
    }
    Json(json!({
        "type": "FeatureCollection",
        "metadata": {
            "generated": chrono::Utc::now().timestamp_millis(),
            "url": "https://earthquake.usgs.gov/fdsnws/event/1/query",
            "title": "USGS Earthquakes",
            "status": 200,
            "api": "1.14.1",
            "count": features.len()
        },
        "features": features
    }))
    .into_response()
}

/// Earthquake `index` for `seed`, in the USGS GeoJSON feature shape.
pub fn earthquake(seed: &str, index: usize) -> Value {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ("quake", seed, index).hash(&mut h);
    let mut rng = fastrand::Rng::with_seed(h.finish());
    let net = pick(&mut rng, &["ci", "nc", "ak", "us", "hv"]);
    let code = format!("{}", rng.u32(10_000_000..99_999_999));
    let id = format!("{net}{code}");
    // Deterministic: within 30 days from 2026-01-01T00:00Z, to the millisecond.
    let time = 1_767_225_600_000 + rng.i64(0..30 * 86_400_000);
    let mag = (rng.f64() * 60.0).round() / 10.0 - 0.5;
    let place = format!(
        "{} km {} of {}",
        rng.u8(1..=99),
        pick(&mut rng, &["N", "NE", "SW", "ESE"]),
        pick(
            &mut rng,
            &[
                "Ridgecrest, CA",
                "Anchorage, Alaska",
                "Pāhala, Hawaii",
                "Ciudad Ixtepec, Mexico"
            ]
        )
    );
    json!({
        "type": "Feature",
        "properties": {
            "mag": mag,
            "place": place,
            "time": time,
            "updated": time + rng.i64(0..3_600_000),
            "tz": null,
            "url": format!("https://earthquake.usgs.gov/earthquakes/eventpage/{id}"),
            "felt": if rng.bool() { Value::Null } else { json!(rng.u16(0..500)) },
            "alert": null,
            "status": pick(&mut rng, &["automatic", "reviewed"]),
            "tsunami": u8::from(rng.u8(0..20) == 0),
            "sig": rng.u16(0..1000),
            "net": net,
            "code": code,
            "ids": format!(",{id},"),
            "sources": format!(",{net},us,"),
            "types": ",origin,phase-data,",
            "magType": pick(&mut rng, &["ml", "md", "mb", "mww"]),
            "type": "earthquake",
            "title": format!("M {mag:.1} - {place}")
        },
        "geometry": {
            "type": "Point",
            "coordinates": [
                (rng.f64() * 360.0 - 180.0 ) * 1e4 / 1e4,
                (rng.f64() * 180.0 - 90.0) * 1e4 / 1e4,
                (rng.f64() * 700.0 * 100.0).round() / 100.0
            ]
        },
        "id": id
    })
}

struct Nat {
    code: &'static str,
    country: &'static str,
    first_male: &'static [&'static str],
    first_female: &'static [&'static str],
    last: &'static [&'static str],
    cities: &'static [(&'static str, &'static str)],
    id_name: &'static str,
    postcode: fn(&mut fastrand::Rng) -> Value,
}

const NATS: &[Nat] = &[
    Nat {
        code: "US",
        country: "United States",
        first_male: &["Brad", "Jesse", "Dwight"],
        first_female: &["Jennie", "Ella", "Zoë"],
        last: &["Nichols", "Hughes", "Ramos"],
        cities: &[("Billings", "Michigan"), ("Fresno", "California")],
        id_name: "SSN",
        postcode: us_postcode,
    },
    Nat {
        code: "GB",
        country: "United Kingdom",
        first_male: &["Oliver", "Harry"],
        first_female: &["Amelia", "Chloé"],
        last: &["Smith", "O'Brien"],
        cities: &[("Leeds", "West Yorkshire"), ("Bath", "Somerset")],
        id_name: "NINO",
        postcode: gb_postcode,
    },
    Nat {
        code: "NO",
        country: "Norway",
        first_male: &["Håkon", "Ørjan"],
        first_female: &["Åse", "Ingrid"],
        last: &["Øvergård", "Berg"],
        cities: &[("Oslo", "Oslo"), ("Tromsø", "Troms")],
        id_name: "FN",
        postcode: no_postcode,
    },
    Nat {
        code: "IR",
        country: "Iran",
        first_male: &["آرمین", "کیان"],
        first_female: &["نیایش", "ستایش"],
        last: &["رضایی", "کریمی"],
        cities: &[("تهران", "تهران"), ("شیراز", "فارس")],
        id_name: "",
        postcode: us_postcode,
    },
    Nat {
        code: "DE",
        country: "Germany",
        first_male: &["Jürgen", "Lukas"],
        first_female: &["Jördis", "Marie"],
        last: &["Müller", "Schröder"],
        cities: &[("Köln", "Nordrhein-Westfalen"), ("Jena", "Thüringen")],
        id_name: "SVNR",
        postcode: us_postcode,
    },
    Nat {
        code: "UA",
        country: "Ukraine",
        first_male: &["Сергій", "Богдан"],
        first_female: &["Олена", "Ярина"],
        last: &["Шевченко", "Коваленко"],
        cities: &[("Київ", "Київська"), ("Львів", "Львівська")],
        id_name: "",
        postcode: us_postcode,
    },
    Nat {
        code: "CA",
        country: "Canada",
        first_male: &["Liam", "Noah"],
        first_female: &["Léa", "Charlotte"],
        last: &["Tremblay", "Roy"],
        cities: &[("Ottawa", "Ontario"), ("Laval", "Québec")],
        id_name: "SIN",
        postcode: ca_postcode,
    },
];

fn us_postcode(rng: &mut fastrand::Rng) -> Value {
    json!(rng.u32(10000..=99999))
}
fn gb_postcode(rng: &mut fastrand::Rng) -> Value {
    json!(format!(
        "{}{} {}{}{}",
        letter(rng),
        rng.u8(1..=9),
        rng.u8(0..=9),
        letter(rng),
        letter(rng)
    ))
}
fn no_postcode(rng: &mut fastrand::Rng) -> Value {
    json!(format!("{:04}", rng.u16(1..=9999)))
}
fn ca_postcode(rng: &mut fastrand::Rng) -> Value {
    json!(format!(
        "{}{}{} {}{}{}",
        letter(rng),
        rng.u8(0..=9),
        letter(rng),
        rng.u8(0..=9),
        letter(rng),
        rng.u8(0..=9)
    ))
}
fn letter(rng: &mut fastrand::Rng) -> char {
    rng.char('A'..='Z')
}

fn pick<'a>(rng: &mut fastrand::Rng, xs: &[&'a str]) -> &'a str {
    xs[rng.usize(..xs.len())]
}

fn hex(rng: &mut fastrand::Rng, n: usize) -> String {
    (0..n).map(|_| rng.digit(16)).collect()
}

fn date(rng: &mut fastrand::Rng, from_year: i32, to_year: i32) -> (String, i64) {
    use chrono::{Datelike, TimeZone, Utc};
    let start = Utc
        .with_ymd_and_hms(from_year, 1, 1, 0, 0, 0)
        .single()
        .map_or(0, |d| d.timestamp_millis());
    let end = Utc
        .with_ymd_and_hms(to_year, 1, 1, 0, 0, 0)
        .single()
        .map_or(0, |d| d.timestamp_millis());
    let ms = rng.i64(start..end);
    let at = Utc.timestamp_millis_opt(ms).single().unwrap_or_default();
    let age = i64::from(Utc::now().year() - at.year());
    (at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), age)
}

/// User `index` of `page` for `seed`; `broken` makes it fail the randomuser schema.
pub fn user(seed: &str, page: u64, index: usize, broken: bool) -> Value {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (seed, page, index).hash(&mut h);
    let mut rng = fastrand::Rng::with_seed(h.finish());
    let nat = &NATS[rng.usize(..NATS.len())];
    let male = rng.bool();
    let first = pick(
        &mut rng,
        if male {
            nat.first_male
        } else {
            nat.first_female
        },
    );
    let last = pick(&mut rng, nat.last);
    let (city, state) = nat.cities[rng.usize(..nat.cities.len())];
    let title = if male {
        "Mr"
    } else {
        pick(&mut rng, &["Miss", "Mrs", "Ms"])
    };
    let (dob, dob_age) = date(&mut rng, 1945, 2004);
    let (registered, registered_age) = date(&mut rng, 2002, 2022);
    let mut uuid_bytes = [0u8; 16];
    rng.fill(&mut uuid_bytes);
    let uuid = uuid::Builder::from_random_bytes(uuid_bytes)
        .into_uuid()
        .to_string();
    let ascii_first: String = first
        .chars()
        .filter(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_lowercase();
    let ascii_last: String = last
        .chars()
        .filter(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_lowercase();
    let email_name = if ascii_first.is_empty() {
        format!("user{}", rng.u32(100..999))
    } else {
        format!("{ascii_first}.{ascii_last}")
    };
    let picture_n = rng.u8(0..=99);
    let kind = if male { "men" } else { "women" };
    let id_value = if matches!(nat.code, "IR" | "UA") {
        Value::Null
    } else {
        json!(format!("{}-{}", rng.u32(100..999), rng.u32(1000..9999)))
    };
    let phone = format!(
        "({}) {}-{}",
        rng.u16(200..999),
        rng.u16(100..999),
        rng.u16(1000..9999)
    );
    let mut user = json!({
        "gender": if male { "male" } else { "female" },
        "name": {"title": title, "first": first, "last": last},
        "location": {
            "street": {"number": rng.u16(1..=9999), "name": pick(&mut rng, &["Valwood Pkwy", "High Street", "Hauptstraße", "Storgata"])},
            "city": city,
            "state": state,
            "country": nat.country,
            "postcode": (nat.postcode)(&mut rng),
            "coordinates": {"latitude": format!("{:.4}", rng.f64() * 180.0 - 90.0), "longitude": format!("{:.4}", rng.f64() * 360.0 - 180.0)},
            "timezone": {"offset": pick(&mut rng, &["+9:30", "-12:00", "0:00", "+5:45"]), "description": "Somewhere"}
        },
        "email": format!("{email_name}@example.com"),
        "login": {
            "uuid": uuid,
            "username": format!("{}{}", pick(&mut rng, &["happy", "silver", "tiny", "red"]), pick(&mut rng, &["koala", "fish", "bear", "cat"])) + &rng.u16(100..999).to_string(),
            "password": hex(&mut rng, 8),
            "salt": hex(&mut rng, 8),
            "md5": hex(&mut rng, 32),
            "sha1": hex(&mut rng, 40),
            "sha256": hex(&mut rng, 64)
        },
        "dob": {"date": dob, "age": dob_age},
        "registered": {"date": registered, "age": registered_age},
        "phone": phone,
        "cell": format!("({}) {}-{}", rng.u16(200..999), rng.u16(100..999), rng.u16(1000..9999)),
        "id": {"name": nat.id_name, "value": id_value},
        "picture": {
            "large": format!("https://randomuser.me/api/portraits/{kind}/{picture_n}.jpg"),
            "medium": format!("https://randomuser.me/api/portraits/med/{kind}/{picture_n}.jpg"),
            "thumbnail": format!("https://randomuser.me/api/portraits/thumb/{kind}/{picture_n}.jpg")
        },
        "nat": nat.code
    });
    if broken {
        // Two classic breakages: a missing login (no stable id) and an email that is a number.
        if let Some(obj) = user.as_object_mut() {
            obj.remove("login");
            obj.insert("email".into(), json!(12345));
        }
    }
    user
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_users() {
        assert_eq!(user("abc", 1, 0, false), user("abc", 1, 0, false));
        assert_ne!(user("abc", 1, 0, false), user("abc", 2, 0, false));
        assert_ne!(user("abc", 1, 0, false), user("abd", 1, 0, false));
    }

    #[test]
    fn users_have_the_real_shape() {
        let mut numbers = 0;
        let mut strings = 0;
        let mut null_ids = 0;
        for i in 0..200 {
            let u = user("shape", 1, i, false);
            match &u["location"]["postcode"] {
                Value::Number(_) => numbers += 1,
                Value::String(_) => strings += 1,
                other => panic!("postcode {other}"),
            }
            if u["id"]["value"].is_null() {
                null_ids += 1;
            }
            assert!(uuid::Uuid::parse_str(u["login"]["uuid"].as_str().unwrap()).is_ok());
            assert!(
                chrono::DateTime::parse_from_rfc3339(u["dob"]["date"].as_str().unwrap()).is_ok()
            );
            assert!(u["location"]["street"]["number"].is_u64());
        }
        assert!(
            numbers > 0 && strings > 0 && null_ids > 0,
            "{numbers} {strings} {null_ids}"
        );
    }

    #[test]
    fn the_query_route_serves_the_same_events_of_a_day_whatever_the_window() {
        let day = usgs_time("2026-03-01").unwrap();
        let whole = quakes_between("w", day, day + 2 * DAY_MS, 10);
        assert_eq!(whole.len(), 20);
        let noon = day + DAY_MS / 2;
        let mut halves = quakes_between("w", day, noon, 10);
        halves.extend(quakes_between("w", noon, day + 2 * DAY_MS, 10));
        assert_eq!(halves, whole);
        let times: Vec<i64> = whole
            .iter()
            .map(|q| q["properties"]["time"].as_i64().unwrap())
            .collect();
        assert!(times.windows(2).all(|t| t[0] <= t[1]), "oldest first");
        assert!(times.iter().all(|t| (day..day + 2 * DAY_MS).contains(t)));
        assert_ne!(whole, quakes_between("v", day, day + 2 * DAY_MS, 10));
        assert!(quakes_between("w", noon, noon, 10).is_empty());
    }

    #[test]
    fn usgs_times_parse_as_the_api_takes_them() {
        let midnight = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        assert_eq!(usgs_time("2026-01-01"), Some(midnight));
        assert_eq!(usgs_time("2026-01-01T00:00:00"), Some(midnight));
        assert_eq!(usgs_time("2026-01-01T01:00:00+01:00"), Some(midnight));
        assert_eq!(usgs_time("2026-01-01T00:00:01.5Z"), Some(midnight + 1_500));
        assert_eq!(usgs_time("yesterday"), None);
    }

    #[tokio::test]
    async fn the_query_route_answers_like_the_usgs_api() {
        let (addr, stats, _server) = spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let get = |query: &str| {
            let url = format!("http://{addr}/fdsnws/event/1/query?{query}");
            async move {
                let answer = reqwest::get(url).await.unwrap();
                (answer.status().as_u16(), answer.text().await.unwrap())
            }
        };
        let window =
            "format=geojson&starttime=2026-01-01&endtime=2026-01-02T00:00:00&seed=q&per_day=5";
        let (status, body) = get(&format!("{window}&orderby=time-asc")).await;
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let day = usgs_time("2026-01-01").unwrap();
        let expected = quakes_between("q", day, day + DAY_MS, 5);
        assert_eq!(body["features"], json!(expected));
        assert_eq!(body["metadata"]["count"], 5);
        let (_, newest_first) = get(window).await;
        let newest_first: Value = serde_json::from_str(&newest_first).unwrap();
        let mut reversed = expected.clone();
        reversed.reverse();
        assert_eq!(newest_first["features"], json!(reversed));
        let (_, limited) = get(&format!("{window}&orderby=time-asc&limit=2")).await;
        let limited: Value = serde_json::from_str(&limited).unwrap();
        assert_eq!(limited["features"], json!(expected[..2]));
        for (query, says) in [
            (
                "starttime=2026-01-01&endtime=2026-01-02",
                "only format=geojson",
            ),
            (
                "format=geojson&starttime=soon&endtime=2026-01-02",
                "Bad starttime value \"soon\"",
            ),
            ("format=geojson&starttime=2026-01-01", "endtime is required"),
            (&format!("{window}&orderby=magnitude"), "Bad orderby value"),
        ] {
            let (status, body) = get(query).await;
            assert_eq!(status, 400, "{query}");
            assert!(body.contains(says), "{query}: {body}");
        }
        assert_eq!(stats.requests.load(Ordering::SeqCst), 7);
    }
}
