//! The `aqueduct` binary: parse the command line, set up logging, run, map the outcome to an
//! exit code (0 ok, 1 runtime failure, 2 invalid spec or usage).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use aqueduct::cli::{self, Cli, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse_from(cli::normalize_args(std::env::args_os().collect()));
    init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.worker_threads())
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aqueduct: cannot start the async runtime: {e}");
            return ExitCode::from(cli::EXIT_FAILED);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => cli::fail(&e),
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer, fmt};

    // The drivers' own info lines (sharding, node discovery) are noise for a pipeline's user.
    let filter = EnvFilter::try_from_env("AQUEDUCT_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,scylla=warn"));
    let terminal = std::io::stderr().is_terminal();
    match format {
        // On a terminal, log lines go through the progress bars' writer so a bar never
        // overwrites them; only spans marked `indicatif.pb_show` get a bar.
        LogFormat::Text if terminal => {
            let bars = tracing_indicatif::IndicatifLayer::new();
            let lines = fmt::layer().with_writer(bars.get_stderr_writer());
            tracing_subscriber::registry()
                .with(filter)
                .with(lines)
                .with(bars.with_filter(tracing_indicatif::filter::IndicatifFilter::new(false)))
                .init();
        }
        LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(fmt::layer().with_ansi(false).with_writer(std::io::stderr))
            .init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(
                fmt::layer()
                    .json()
                    .with_ansi(false)
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}
