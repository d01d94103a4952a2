//! `[[source.on_response]]` and `[source.rate_limit]`: what a response means beyond its status
//! and how fast requests may go.

use std::num::NonZeroU32;

use reqwest::StatusCode;

use super::Checker;
use crate::spec::raw::{RawRateLimit, RawRule};
use crate::spec::{Action, RateLimit, Rule, WaitFormat, WaitHeader};

pub(super) fn rules(c: &mut Checker, raw: Vec<RawRule>) -> Option<Vec<Rule>> {
    let mut ok = true;
    let mut rules = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
        match rule(c, format!("source.on_response.{i}"), raw) {
            Some(rule) => rules.push(rule),
            None => ok = false,
        }
    }
    ok.then_some(rules)
}

fn rule(c: &mut Checker, key: String, raw: RawRule) -> Option<Rule> {
    if raw.status.is_empty() && raw.jq.is_none() && raw.headers.is_empty() {
        c.err(
            &key,
            "a rule needs at least one of `status`, `jq` and `headers`: what responses it matches",
        );
    }
    let mut status = Vec::new();
    for code in &raw.status {
        match StatusCode::from_u16(*code) {
            Ok(s) => status.push(s),
            Err(_) => c.err(
                &format!("{key}.status"),
                format!("{code} is not an HTTP status code"),
            ),
        }
    }
    let jq = match &raw.jq {
        Some(code) => Some(c.jq(&format!("{key}.jq"), code)?),
        None => None,
    };
    let mut headers = Vec::new();
    for (name, value) in raw.headers {
        if let Some(h) = c.header_name(&format!("{key}.headers.{name}"), &name) {
            headers.push((h, value));
        }
    }
    let action = match raw.action.as_str() {
        "retry" => Some(Action::Retry),
        "rate_limited" => Some(Action::RateLimited),
        "ignore" => Some(Action::Ignore),
        "fail" => Some(Action::Fail),
        other => {
            c.err(
                &format!("{key}.action"),
                format!(
                    "`{other}` is not {}",
                    super::one_of(crate::spec::raw::RULE_ACTIONS)
                ),
            );
            None
        }
    };
    let wait = match raw.wait_header {
        Some(name) => wait_header(
            c,
            &format!("{key}.wait_header"),
            &name,
            raw.wait_format.as_deref(),
            WaitFormat::RetryAfter,
        ),
        None => {
            if raw.wait_format.is_some() {
                c.err(
                    &format!("{key}.wait_format"),
                    "is the format of `wait_header`, which is not set",
                );
            }
            None
        }
    };
    if wait.is_some() && matches!(action, Some(Action::Ignore | Action::Fail)) {
        c.err(
            &format!("{key}.wait_header"),
            "is for the actions retry and rate_limited",
        );
    }
    Some(Rule {
        key,
        status,
        jq,
        headers,
        action: action?,
        wait,
    })
}

/// A header and how a wait is written in it (`default` when not said).
fn wait_header(
    c: &mut Checker,
    key: &str,
    name: &str,
    format: Option<&str>,
    default: WaitFormat,
) -> Option<WaitHeader> {
    let format = match format {
        None => Some(default),
        Some("retry_after") => Some(WaitFormat::RetryAfter),
        Some("epoch_s") => Some(WaitFormat::EpochS),
        Some("epoch_ms") => Some(WaitFormat::EpochMs),
        Some(other) => {
            let format_key = key.replace("_header", "_format");
            c.err(
                &format_key,
                format!("`{other}` is not retry_after, epoch_s or epoch_ms"),
            );
            None
        }
    };
    let name = c.header_name(key, name);
    Some(WaitHeader {
        name: name?,
        format: format?,
    })
}

pub(super) fn rate_limit(c: &mut Checker, raw: RawRateLimit) -> Option<RateLimit> {
    let budget = match raw.requests {
        None => None,
        Some(n) => match NonZeroU32::new(n) {
            Some(n) if !(raw.per / n.get()).is_zero() => Some((n, raw.per)),
            _ => {
                c.err(
                    "source.rate_limit",
                    "`requests` and `per` must be more than 0",
                );
                return None;
            }
        },
    };
    let remaining = match (raw.remaining_header, raw.reset_header) {
        (None, None) => {
            if raw.reset_format.is_some() {
                c.err(
                    "source.rate_limit.reset_format",
                    "is the format of `reset_header`, which is not set",
                );
            }
            None
        }
        (Some(remaining), Some(reset)) => {
            let name = c.header_name("source.rate_limit.remaining_header", &remaining);
            let reset = wait_header(
                c,
                "source.rate_limit.reset_header",
                &reset,
                raw.reset_format.as_deref(),
                WaitFormat::EpochS,
            );
            Some((name?, reset?))
        }
        _ => {
            c.err(
                "source.rate_limit",
                "set both `remaining_header` and `reset_header` (when nothing is left, requests wait for the reset), or neither",
            );
            return None;
        }
    };
    if budget.is_none() && remaining.is_none() {
        c.err(
            "source.rate_limit",
            "set `requests` (and `per`), or `remaining_header` and `reset_header`, or both",
        );
        return None;
    }
    Some(RateLimit { budget, remaining })
}
