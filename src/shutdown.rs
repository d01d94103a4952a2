//! Stopping a run: the signal watcher. The run's one `CancellationToken` is the shutdown
//! signal every task watches; [`watch_signals`] is the only thing that cancels it from outside,
//! and it lives, like every other task of a run, in the run's `JoinSet` (see `pipeline::run`).

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Watches SIGINT/SIGTERM until `done`. First signal: cancels `shutdown`, a graceful stop.
/// Second: exits the process at once (130), committing nothing more.
pub async fn watch_signals(shutdown: CancellationToken, done: CancellationToken) {
    for n in 0.. {
        let signal = tokio::select! {
            signal = next_signal() => signal,
            _ = done.cancelled() => return,
        };
        if let Err(e) = signal {
            warn!(error = %e, "cannot listen for signals");
            return;
        }
        if n == 0 {
            info!("signal received: stopping (a second signal exits at once)");
            shutdown.cancel();
        } else {
            warn!("second signal: exiting at once; unwritten messages will be consumed again");
            std::process::exit(130);
        }
    }
}

async fn next_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
