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
    runtime.block_on(cli::run(cli))
}

fn init_tracing(format: LogFormat) {
    // The drivers' own info lines (sharding, node discovery) are noise for a pipeline's user.
    let filter = tracing_subscriber::EnvFilter::try_from_env("AQUEDUCT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,scylla=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
