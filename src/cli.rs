//! The `veneer` command line. Commands and flags here are a contract users' scripts rely
//! on (DESIGN.md, "What the binary offers"): add, never rename.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::config::{self, ConfigSource, compile::CompileOptions};
use crate::dev;
use crate::server::{self, AppState};

/// A REST/JSON facade for SOAP ERPs.
#[derive(Debug, Parser)]
#[command(name = "veneer", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// Config directory (gateway.yaml, routes/, wsdl/).
        #[arg(long, env = "VENEER_CONFIG", default_value = "config")]
        config: PathBuf,
        /// Listen address; overrides server.listen.
        #[arg(long, env = "VENEER_LISTEN")]
        listen: Option<SocketAddr>,
        /// Dev mode: the embedded sample config and an in-process sample ERP; needs nothing else.
        #[arg(long)]
        dev: bool,
    },
    /// Validate a config offline; exits non-zero listing every problem.
    Check {
        /// Config directory.
        #[arg(long, env = "VENEER_CONFIG", default_value = "config")]
        config: PathBuf,
    },
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { config } => check(config),
        Command::Serve {
            config,
            listen,
            dev,
        } => match serve(config, listen, dev).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check(dir: PathBuf) -> ExitCode {
    match config::compile(&ConfigSource::Dir(dir.clone()), &CompileOptions::default()) {
        Ok(gw) => {
            println!(
                "{}: OK ({} routes, {} backends)",
                dir.display(),
                gw.routes.iter().count(),
                gw.backends.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{} problem(s) in {}:", e.0.len(), dir.display());
            for p in &e.0 {
                eprintln!("  {}", ConfigSource::display_path(&dir, p));
            }
            ExitCode::FAILURE
        }
    }
}

async fn serve(dir: PathBuf, listen: Option<SocketAddr>, dev_mode: bool) -> Result<(), String> {
    let (source, options, erp) = if dev_mode {
        let erp = dev::start()
            .await
            .map_err(|e| format!("cannot start the sample ERP: {e}"))?;
        let options = CompileOptions {
            backend_urls: [("erp".to_string(), erp.url.clone())].into(),
        };
        (ConfigSource::Embedded, options, Some(erp))
    } else {
        (
            ConfigSource::Dir(dir.clone()),
            CompileOptions::default(),
            None,
        )
    };
    let gateway = config::compile(&source, &options).map_err(|e| {
        let lines: Vec<String> =
            e.0.iter()
                .map(|p| ConfigSource::display_path(&dir, p))
                .collect();
        format!(
            "the config has {} problem(s):\n  {}",
            lines.len(),
            lines.join("\n  ")
        )
    })?;
    let default_listen: SocketAddr = DEFAULT_LISTEN.parse().map_err(|e| format!("{e}"))?;
    let addr = listen
        .or(if dev_mode {
            None
        } else {
            gateway.server.listen
        })
        .unwrap_or(default_listen);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%local, routes = gateway.routes.iter().count(), "veneer is listening");
    if let Some(erp) = &erp {
        dev::print_welcome(local, erp);
    }
    server::run(listener, AppState::new(gateway), server::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}
