//! The `veneer` binary: logging, then the CLI.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // One crypto provider for every rustls user in the process (STACK.md trap 1).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // VENEER_LOG_FORMAT=json: one JSON object per line, for log pipelines.
    if std::env::var("VENEER_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    veneer::cli::run(veneer::cli::Cli::parse()).await
}
