//! Progress of a run that ends by itself (`run --once`, `replay`): records done, rate, lag
//! left and ETA. On a terminal a bar (indicatif, drawn through tracing-indicatif so log lines
//! print above it); elsewhere an `info` line every so often, for logs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressStyle;
use tokio_util::sync::CancellationToken;
use tracing::info;
use tracing_indicatif::span_ext::IndicatifSpanExt;

use crate::metrics::Metrics;

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

/// What a loader has done so far: messages it took and finished (written or dead-lettered),
/// and the lag left on its partitions.
fn loader_done(metrics: &Metrics) -> (u64, u64) {
    let in_flight = u64::try_from(metrics.writes_in_flight.get()).unwrap_or(0);
    (
        metrics.consumed.get().saturating_sub(in_flight),
        metrics.lag_total(),
    )
}

/// Shows progress until `stop`.
pub async fn report(metrics: Arc<Metrics>, display: Display, stop: CancellationToken) {
    let every = match display {
        Display::Bar => Duration::from_millis(200),
        Display::Lines(every) => every,
    };
    let span = tracing::info_span!("progress", indicatif.pb_show = tracing::field::Empty);
    if display == Display::Bar {
        let style = ProgressStyle::with_template(
            "{spinner} {pos}/{len} records  {per_sec}  lag {msg}  eta {eta}  {wide_bar}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        span.pb_set_style(&style);
        span.pb_start();
    }
    let mut tick = tokio::time::interval(every);
    tick.tick().await; // the first tick is at once
    let mut last = (Instant::now(), 0);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let (done, lag) = loader_done(&metrics);
        match display {
            Display::Bar => {
                span.pb_set_length(done + lag);
                span.pb_set_position(done);
                span.pb_set_message(&lag.to_string());
            }
            Display::Lines(_) => {
                let (then, done_then) = last;
                let seconds = then.elapsed().as_secs_f64();
                let rate = (done - done_then.min(done)) as f64 / seconds.max(0.001);
                let eta_s = (rate > 0.0).then(|| (lag as f64 / rate).round() as u64);
                info!(
                    done,
                    rate_per_s = rate.round() as u64,
                    lag_left = lag,
                    eta_s,
                    "progress"
                );
                last = (Instant::now(), done);
            }
        }
    }
}
