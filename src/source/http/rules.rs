//! `[[source.on_response]]`: which rule a response matches, and how long a header says to
//! wait.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::spec::{Rule, WaitFormat, WaitHeader};

/// The first rule `status`, `headers` and `body` match, if any.
pub fn matching<'r>(
    rules: &'r [Rule],
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<&'r Rule> {
    // The body is decoded once, and only if a rule asks about it.
    let mut decoded: Option<Option<Value>> = None;
    rules.iter().find(|rule| {
        if !rule.status.is_empty() && !rule.status.contains(&status) {
            return false;
        }
        let headers_hold = rule.headers.iter().all(|(name, want)| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() == want)
        });
        if !headers_hold {
            return false;
        }
        let Some(jq) = &rule.jq else {
            return true;
        };
        let body = decoded.get_or_insert_with(|| serde_json::from_slice(body).ok());
        body.as_ref()
            .and_then(|body| jq.run_one(body).ok())
            .is_some_and(|v| !matches!(v, Value::Null | Value::Bool(false)))
    })
}

/// How long `header` in `headers` says to wait from `now`, if it is there and readable.
pub fn wait(header: &WaitHeader, headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let text = headers.get(&header.name)?.to_str().ok()?.trim();
    let until = |ms: i64| {
        Some(
            (DateTime::from_timestamp_millis(ms)? - now)
                .to_std()
                .unwrap_or_default(),
        )
    };
    match header.format {
        WaitFormat::RetryAfter => super::parse_retry_after(text, now),
        WaitFormat::EpochS => until(text.parse::<f64>().ok().map(|s| (s * 1000.0) as i64)?),
        WaitFormat::EpochMs => until(text.parse().ok()?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::spec_with;

    fn rules_of(rules: &str) -> crate::spec::Spec {
        spec_with(
            &format!("records = \".results[]\"\n{rules}"),
            "table = \"t\"\npartition_key = [\"id\"]\ncolumns.id = { type = \"text\", jq = \".id\" }",
        )
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn the_first_rule_whose_every_condition_holds_decides() {
        let spec = rules_of(
            r#"
[[source.on_response]]
status = [403]
headers = { "X-RateLimit-Remaining" = "0" }
action = "rate_limited"
[[source.on_response]]
status = [403, 404]
action = "ignore"
[[source.on_response]]
jq = '.ok == false and .error == "ratelimited"'
action = "retry"
"#,
        );
        let rules = &spec.source.as_ref().unwrap().rules;
        let key = |status: u16, h: &[(&'static str, &'static str)], body: &str| {
            matching(
                rules,
                StatusCode::from_u16(status).unwrap(),
                &headers(h),
                body.as_bytes(),
            )
            .map(|r| r.key.as_str())
        };
        assert_eq!(
            key(403, &[("x-ratelimit-remaining", "0")], "{}"),
            Some("source.on_response.0")
        );
        assert_eq!(
            key(403, &[("x-ratelimit-remaining", "12")], "{}"),
            Some("source.on_response.1")
        );
        assert_eq!(key(404, &[], "<html>"), Some("source.on_response.1"));
        assert_eq!(
            key(200, &[], r#"{"ok": false, "error": "ratelimited"}"#),
            Some("source.on_response.2")
        );
        assert_eq!(key(200, &[], r#"{"ok": true}"#), None);
        assert_eq!(
            key(200, &[], "not json"),
            None,
            "a body not JSON does not match"
        );
        assert_eq!(key(500, &[], "{}"), None);
    }

    #[test]
    fn waits_read_seconds_dates_and_epoch_times() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .unwrap()
            .to_utc();
        let header = |format| WaitHeader {
            name: "x-wait".parse().unwrap(),
            format,
        };
        let h = |v: &'static str| headers(&[("x-wait", v)]);
        assert_eq!(
            wait(&header(WaitFormat::RetryAfter), &h("7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            wait(&header(WaitFormat::EpochS), &h("1796637630"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            wait(&header(WaitFormat::EpochMs), &h("1796637600500"), now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            wait(&header(WaitFormat::EpochS), &h("1700000000"), now),
            Some(Duration::ZERO),
            "a time past means now"
        );
        assert_eq!(wait(&header(WaitFormat::EpochS), &h("soon"), now), None);
        assert_eq!(wait(&header(WaitFormat::EpochS), &headers(&[]), now), None);
    }
}
