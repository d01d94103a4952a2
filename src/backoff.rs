//! The wait before a retry, for every retry loop (HTTP requests, Cassandra writes): exponential
//! with full jitter, as AWS's architecture blog recommends for many clients retrying at once.

use std::time::Duration;

/// Before attempt `attempt + 1` (so `attempt` 1 is the first retry): a random wait up to
/// `initial * 2^(attempt-1)`, capped at `max`.
pub fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = initial
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(max);
    ceiling.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        let mut waits = std::collections::HashSet::new();
        for attempt in 1..40 {
            let d = backoff(initial, max, attempt);
            assert!(d <= max);
            assert!(d <= initial * 2u32.pow(attempt.min(10) - 1));
            waits.insert(d);
        }
        assert!(waits.len() > 1, "jittered");
    }
}
