//! `randomuser-standin [ADDR]`: serves the randomuser.me-compatible stand-in API (see
//! the library of this crate) on ADDR, default 127.0.0.1:8080, until interrupted.

use std::net::SocketAddr;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    if arg == "-h" || arg == "--help" {
        println!(
            "usage: randomuser-standin [ADDR]   (default 127.0.0.1:8080)\nserves GET /api/?results=N&seed=S&page=P; faults: fault=500|503|429|404|truncate|garbage, fault_times=N, delay_ms=N, invalid=N, huge=N, big=N\nand GET /fdsnws/event/1/query?format=geojson&starttime=T1&endtime=T2[&orderby=time-asc][&limit=N][&seed=S][&per_day=N]\nand the same users behind OAuth2, an API key and rate limits: /oauth/token, /oauth/api/, /keyed/api/, /slack/api/, /github/api/;\nand paged as real APIs page: /graphql/ (Relay), /keyset/api/, /github/orgs/ORG/repos, /github/repos/OWNER/REPO/issues"
        );
        return ExitCode::SUCCESS;
    }
    let addr: SocketAddr = match arg.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("randomuser-standin: `{arg}` is not an address like 127.0.0.1:8080: {e}");
            return ExitCode::from(2);
        }
    };
    let (bound, _, server) = match randomuser_standin::spawn(addr).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("randomuser-standin: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!("randomuser-standin: serving http://{bound}/api/");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
        _ = server => ExitCode::from(1),
    }
}
