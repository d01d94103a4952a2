//! `[source.rate_limit]`: requests wait for their turn rather than hit the API's limit. A
//! budget of N requests per interval spaces them evenly (a GCRA limiter, `governor`); when
//! the API reports how many requests are left and none is, requests wait for its reset.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderName};
use tokio::time::Instant;
use tracing::info;

use crate::spec::{RateLimit, WaitHeader};

/// The source's budget.
pub struct Budget {
    limiter: Option<DefaultDirectRateLimiter>,
    remaining: Option<(HeaderName, WaitHeader)>,
    /// No request before this, the API said.
    closed_until: std::sync::Mutex<Option<Instant>>,
}

impl Budget {
    /// The budget `limit` sets (none: requests never wait).
    pub fn new(limit: Option<&RateLimit>) -> Budget {
        let limiter = limit.and_then(|l| l.budget).and_then(|(requests, per)| {
            let quota = Quota::with_period(per / requests.get())?.allow_burst(NonZeroU32::MIN);
            Some(RateLimiter::direct(quota))
        });
        Budget {
            limiter,
            remaining: limit.and_then(|l| l.remaining.clone()),
            closed_until: std::sync::Mutex::new(None),
        }
    }

    /// Waits until a request may go; gives how long that was.
    pub async fn wait(&self) -> Duration {
        let started = Instant::now();
        let closed = *self.closed_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = closed
            && until > started
        {
            info!(wait = ?(until - started), "the API's rate limit is spent; waiting for its reset");
            tokio::time::sleep_until(until).await;
        }
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        started.elapsed()
    }

    /// Reads what the API says is left of its limit from a response's headers.
    pub fn observe(&self, headers: &HeaderMap) {
        let Some((remaining, reset)) = &self.remaining else {
            return;
        };
        let left = headers
            .get(remaining)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok());
        let mut closed = self.closed_until.lock().unwrap_or_else(|e| e.into_inner());
        *closed = match left {
            // A reset further than a day away is a misread header: a day, then.
            Some(left) if left <= 0 => super::rules::wait(reset, headers, chrono::Utc::now())
                .map(|wait| Instant::now() + wait.min(Duration::from_secs(24 * 3600))),
            _ => None,
        };
    }
}
