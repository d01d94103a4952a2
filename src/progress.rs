//! Progress of a run that ends by itself (`run --once`, `replay`): records done, rate, records
//! left and ETA. On a terminal a bar (indicatif, drawn through tracing-indicatif so log lines
//! print above it); elsewhere an `info` line every so often, for logs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::ProgressStyle;
use tokio_util::sync::CancellationToken;
use tracing::info;
use tracing_indicatif::span_ext::IndicatifSpanExt;

use crate::metrics::{Metrics, get};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// A bar on the terminal (stderr is one, logs are text).
    Bar,
    /// A log line at this interval.
    Lines(Duration),
}

/// The interval of progress lines: `AQUEDUCT_PROGRESS_EVERY` (a duration such as `30s`), else
/// 10 s.
pub fn line_interval() -> Result<Duration, String> {
    match std::env::var("AQUEDUCT_PROGRESS_EVERY") {
        Err(_) => Ok(Duration::from_secs(10)),
        Ok(text) => humantime::parse_duration(&text)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                format!("AQUEDUCT_PROGRESS_EVERY={text:?} is not a duration such as 30s")
            }),
    }
}

/// What a loader has done so far and has left: messages it finished (written, dead-lettered
/// or passed over), and those it has taken and not finished plus those it has still to read
/// up to the drain target (until that is known, the lag Kafka reports).
fn loader_done(metrics: &Metrics) -> (u64, u64) {
    let done = get(&metrics.loaded);
    let left = match metrics.drain_left.load(Ordering::Relaxed) {
        ..0 => metrics.lag_total(),
        unread => metrics.consumed.get().saturating_sub(done) + unread.unsigned_abs(),
    };
    (done, left)
}

/// Shows progress until `stop`.
pub async fn report(metrics: Arc<Metrics>, display: Display, stop: CancellationToken) {
    let every = match display {
        Display::Bar => Duration::from_millis(200),
        Display::Lines(every) => every,
    };
    let span = tracing::info_span!("progress", indicatif.pb_show = tracing::field::Empty);
    if display == Display::Bar {
        let style =
            ProgressStyle::with_template("{spinner} {pos}/{len} records  {msg}  {wide_bar}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        span.pb_set_style(&style);
        span.pb_start();
    }
    let mut tick = tokio::time::interval(every);
    tick.tick().await; // the first tick is at once
    // The rate is taken over a second at least, so a bar's figure does not jump each redraw.
    let window = every.max(Duration::from_secs(1));
    let (mut since, mut done_since, mut rate) = (Instant::now(), 0, 0);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let (done, left) = loader_done(&metrics);
        if since.elapsed() >= window {
            let per_s = done.saturating_sub(done_since) as f64 / since.elapsed().as_secs_f64();
            (since, done_since, rate) = (Instant::now(), done, per_s.round() as u64);
        }
        let eta_s = (rate > 0).then(|| left.div_ceil(rate));
        // Time the source spent waiting for the API's limits, if any.
        let api_wait_s = Some(metrics.source_wait.get().round() as u64).filter(|s| *s > 0);
        match display {
            Display::Bar => {
                span.pb_set_length(done + left);
                span.pb_set_position(done);
                let eta = eta_s.map_or_else(|| "-".to_owned(), |s| format!("{s}s"));
                let wait = api_wait_s.map_or_else(String::new, |s| format!("  api wait {s}s"));
                span.pb_set_message(&format!("{rate}/s  left {left}  eta {eta}{wait}"));
            }
            Display::Lines(_) => {
                info!(done, rate_per_s = rate, left, eta_s, api_wait_s, "progress")
            }
        }
    }
}
