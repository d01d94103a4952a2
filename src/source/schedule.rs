//! When polls start: a fixed interval (first poll at once) or a cron expression (UTC).

use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use crate::spec::Schedule;

/// Yields the start time of each poll.
pub struct Ticker<'a> {
    schedule: &'a Schedule,
    next: Option<Instant>,
}

impl<'a> Ticker<'a> {
    pub fn new(schedule: &'a Schedule) -> Self {
        Ticker {
            schedule,
            next: None,
        }
    }

    /// Waits until the next poll is due. After a poll that ran past several ticks, the next
    /// poll starts at once and the missed ticks are skipped rather than run in a burst.
    pub async fn tick(&mut self) {
        let now = Instant::now();
        let due = match (self.schedule, self.next) {
            (Schedule::Every(_), None) => now,
            (Schedule::Every(every), Some(prev)) => {
                let mut due = prev + *every;
                while due + *every <= now {
                    due += *every;
                }
                due
            }
            (Schedule::Cron(cron), _) => now + until_next(cron),
        };
        tokio::time::sleep_until(due).await;
        self.next = Some(due);
    }
}

fn until_next(cron: &croner::Cron) -> Duration {
    let now = Utc::now();
    match cron.find_next_occurrence(&now, false) {
        Ok(next) => (next - now).to_std().unwrap_or_default(),
        // No future occurrence (e.g. a date long past): never poll again.
        Err(_) => Duration::from_secs(365 * 24 * 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn interval_polls_at_once_then_every_period() {
        let schedule = Schedule::Every(Duration::from_secs(10));
        let mut ticker = Ticker::new(&schedule);
        let start = Instant::now();
        ticker.tick().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        ticker.tick().await;
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        // A poll that overran two periods polls once at once, not twice in a burst.
        tokio::time::advance(Duration::from_secs(25)).await;
        ticker.tick().await;
        assert_eq!(start.elapsed(), Duration::from_secs(35));
        ticker.tick().await;
        assert_eq!(start.elapsed(), Duration::from_secs(40));
    }

    #[test]
    fn cron_waits_for_the_next_match() {
        let cron: croner::Cron = "* * * * * *".parse().unwrap();
        assert!(until_next(&cron) <= Duration::from_secs(1));
        let cron: croner::Cron = "0 0 1 1 *".parse().unwrap();
        assert!(until_next(&cron) > Duration::from_secs(60));
    }
}
