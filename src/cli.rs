//! The `veneer` command line. Commands and flags here are a contract users' scripts rely
//! on (DESIGN.md, "What the binary offers"): add, never rename.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::config::{self, ConfigSource, compile::CompileOptions};
use crate::server::{self, AppState};
use crate::{admin, dev};

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
        /// Directory of the embedded store; overrides delivery.data_dir (not used with
        /// delivery.redis). Dev mode's default is ./veneer-data.
        #[arg(long, env = "VENEER_DATA")]
        data: Option<PathBuf>,
        /// The base URL clients reach the gateway at (behind a proxy, in a container):
        /// tokens, the authorization-server metadata and the docs page name it. Overrides
        /// auth.issuer.
        #[arg(long, env = "VENEER_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// Validate a config offline; exits non-zero listing every problem.
    Check {
        /// Config directory.
        #[arg(long, env = "VENEER_CONFIG", default_value = "config")]
        config: PathBuf,
    },
    /// Print the OpenAPI 3.1 document that `GET /openapi.json` serves.
    Openapi {
        /// Config directory.
        #[arg(long, env = "VENEER_CONFIG", default_value = "config")]
        config: PathBuf,
        /// json (default) or yaml.
        #[arg(long, default_value = "json")]
        format: String,
    },
    /// Write a routes file (backend + one route per operation) from a WSDL file.
    ImportWsdl {
        /// The WSDL file, or its URL with --allow-url.
        file: PathBuf,
        /// Backend name.
        #[arg(long)]
        backend: String,
        /// SOAP endpoint (default: the WSDL's soap:address).
        #[arg(long)]
        endpoint: Option<String>,
        /// Output file, e.g. config/routes/erp.yaml (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// "1.1" or "1.2" when the WSDL binds both.
        #[arg(long)]
        soap_version: Option<String>,
        /// The wsdl:port (or service) to import when the WSDL has several.
        #[arg(long)]
        port: Option<String>,
        /// Accept a URL: download the WSDL and its imports once into wsdl/<backend>/ beside
        /// the routes folder (the gateway itself never fetches).
        #[arg(long)]
        allow_url: bool,
        /// With --allow-url: follow redirects to another host (by default a download only
        /// follows redirects that stay on the host it asked).
        #[arg(long)]
        allow_cross_host_redirects: bool,
    },
    /// Manage the signing keys of the built-in token issuer.
    Keys {
        /// What to do with keys.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Register OAuth2 clients.
    Client {
        /// What to do.
        #[command(subcommand)]
        command: ClientCommand,
    },
}

/// `veneer keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a signing key in DIR (the newest key signs; older ones keep verifying).
    New {
        /// Key directory (auth.signing_keys).
        #[arg(long, default_value = "config/keys")]
        dir: PathBuf,
        /// ES256 or EdDSA.
        #[arg(long, default_value = "ES256")]
        alg: String,
    },
}

/// `veneer client …`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a client: prints its secret once and the config lines with the secret's hash.
    New {
        /// client_id.
        #[arg(long)]
        id: String,
        /// Comma-separated scopes it may be granted.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// Hash a secret read from standard input (for secrets made elsewhere).
    Hash,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { config } => check(config),
        Command::Openapi { config, format } => report(openapi(&config, &format)),
        Command::ImportWsdl {
            file,
            backend,
            endpoint,
            out,
            soap_version,
            port,
            allow_url,
            allow_cross_host_redirects,
        } => {
            let file = if allow_url && file.to_string_lossy().contains("://") {
                let options = crate::import::fetch::FetchOptions {
                    cross_host_redirects: allow_cross_host_redirects,
                    ..Default::default()
                };
                match crate::import::command::download_wsdl(&file.to_string_lossy(), &backend, out.as_deref(), &options)
                    .await
                {
                    Ok(local) => local,
                    Err(e) => return report(Err(e)),
                }
            } else {
                match crate::import::command::local_wsdl(&file, &backend, out.as_deref()).await {
                    Ok(local) => local,
                    Err(e) => return report(Err(e)),
                }
            };
            let target = crate::import::command::ImportTarget {
                backend: &backend,
                endpoint: endpoint.as_deref(),
                port: port.as_deref(),
            };
            report(crate::import::command::import_wsdl(&file, &target, out.as_deref(), soap_version.as_deref()))
        }
        Command::Keys { command: KeysCommand::New { dir, alg } } => report(admin::new_key(&dir, &alg)),
        Command::Client { command: ClientCommand::New { id, scopes } } => report(admin::new_client(&id, &scopes)),
        Command::Client { command: ClientCommand::Hash } => report(admin::hash_stdin()),
        Command::Serve { config, listen, dev, data, public_url } => match serve(
            config,
            Place { listen, data, public_url: public_url.map(|u| u.trim_end_matches('/').to_string()) },
            dev,
        )
        .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        },
    }
}

fn report(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn openapi(dir: &std::path::Path, format: &str) -> Result<String, String> {
    let gw = config::compile(&ConfigSource::Dir(dir.to_path_buf()), &CompileOptions::default()).map_err(|e| {
        let lines: Vec<String> = e.0.iter().map(|p| ConfigSource::display_path(dir, p)).collect();
        format!("the config has {}:\n  {}", count(lines.len(), "problem"), lines.join("\n  "))
    })?;
    let doc = crate::openapi::document(&gw);
    match format {
        "json" => crate::openapi::json(&doc).map(|s| s + "\n"),
        "yaml" => crate::openapi::yaml(&doc),
        other => Err(format!("--format {other} is unknown; use json or yaml")),
    }
}

fn check(dir: PathBuf) -> ExitCode {
    match config::compile(&ConfigSource::Dir(dir.clone()), &CompileOptions::default()) {
        Ok(gw) => {
            let (routes, backends) = (count(gw.routes.iter().count(), "route"), count(gw.backends.len(), "backend"));
            println!("{}: OK ({routes}, {backends})", dir.display());
            // The data dictionary, with each conversion and its precision spelled out.
            for (file, sensors) in config::compile_sensors::describe(&gw.sensors) {
                println!("  {file}: {} sensor(s)", sensors.len());
                for s in sensors {
                    println!("    {s}");
                }
            }
            for t in &gw.sensors.topics {
                println!("  mqtt topic {} (subscribes to {})", t.text(), t.filter());
            }
            if let Some(why) = gw.auth.as_ref().and_then(|a| a.nobody_can_call()) {
                eprintln!("  warning: auth: {why}");
            }
            for route in gw.routes.iter() {
                let fed = gw.sensors.sensors.iter().any(|s| Arc::ptr_eq(&s.route, route));
                if let Some(w) = route.erp_key_warning(fed) {
                    eprintln!("  warning: {w}");
                }
            }
            // What the WSDLs hold but cannot serve is not an error until a route asks for it;
            // say it anyway, so nobody is surprised later.
            for (name, backend) in &gw.backends {
                for k in &backend.model.skipped {
                    eprintln!(
                        "  warning: backend {name}: operation {} cannot be used ({}): {}",
                        k.operation,
                        k.location(),
                        k.reason
                    );
                }
                for n in &backend.model.notes {
                    eprintln!("  note: backend {name}: WSDL {}: {}", n.location(), n.message);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{} in {}:", count(e.0.len(), "problem"), dir.display());
            for p in &e.0 {
                eprintln!("  {}", ConfigSource::display_path(&dir, p));
            }
            ExitCode::FAILURE
        }
    }
}

/// `1 route`, `5 routes`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Where a gateway runs: its address, its data, and the URL clients reach it at.
struct Place {
    listen: Option<SocketAddr>,
    data: Option<PathBuf>,
    public_url: Option<String>,
}

/// The base URL tokens name: the public URL when given, else the address bound (never
/// `0.0.0.0`, which no client can reach: `localhost` instead).
fn base_url(public_url: Option<&str>, local: SocketAddr) -> String {
    match public_url {
        Some(u) => u.to_string(),
        None if local.ip().is_unspecified() => format!("http://localhost:{}", local.port()),
        None => format!("http://{local}"),
    }
}

async fn serve(dir: PathBuf, place: Place, dev_mode: bool) -> Result<(), String> {
    let Place { listen, data, public_url } = place;
    if let Some(u) = &public_url {
        match reqwest::Url::parse(u) {
            Ok(p) if matches!(p.scheme(), "http" | "https") && p.host_str().is_some() => {}
            _ => return Err(format!("--public-url {u:?} is not an http(s) URL such as https://veneer.plant.example")),
        }
    }
    // The recorder first: metrics recorded while the config loads (its fingerprint) count.
    crate::telemetry::install();
    let default_listen: SocketAddr = DEFAULT_LISTEN.parse().map_err(|e| format!("{e}"))?;
    let problems = |dir: &PathBuf, e: config::ConfigError| {
        let lines: Vec<String> = e.0.iter().map(|p| ConfigSource::display_path(dir, p)).collect();
        format!("the config has {}:\n  {}", count(lines.len(), "problem"), lines.join("\n  "))
    };
    if dev_mode {
        let erp = dev::start().await.map_err(|e| format!("cannot start the sample ERP: {e}"))?;
        let addr = listen.unwrap_or(default_listen);
        let listener = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let secret = std::env::var("VENEER_DEV_SECRET").unwrap_or_else(|_| admin::random_secret());
        let admin_secret = std::env::var("VENEER_DEV_ADMIN_SECRET").unwrap_or_else(|_| admin::random_secret());
        // Queued writes need a place on disk; dev mode makes one in the working directory.
        let data = data.unwrap_or_else(|| PathBuf::from("veneer-data"));
        let options = CompileOptions {
            backend_urls: [("erp".to_string(), erp.url.clone())].into(),
            // Tokens name the address clients actually reach.
            issuer: Some(base_url(public_url.as_deref(), local)),
            dev_client: Some((dev::DEMO_CLIENT.to_string(), secret.clone())),
            dev_admin: Some((dev::ADMIN_CLIENT.to_string(), admin_secret.clone())),
            data_dir: Some(data.clone()),
            retained: Default::default(),
        };
        let mut gateway =
            config::compile(&ConfigSource::Embedded, &options).map_err(|e| problems(&"(embedded)".into(), e))?;
        crate::telemetry::config_loaded(None, &ConfigSource::Embedded.fingerprint());
        // MQTT ingress when a broker runs where Mosquitto listens by default.
        let broker = if cfg!(feature = "mqtt") { dev::local_broker() } else { None };
        gateway.mqtt = broker.map(dev::mqtt_settings);
        // A second dev instance on the same directory fails here, before its welcome text.
        crate::delivery::store::Store::open(&data).and_then(crate::delivery::store::Store::close)?;
        let base = base_url(public_url.as_deref(), local);
        dev::print_welcome(&base, local, &erp, (&secret, &admin_secret), &data, broker);
        return server::run(listener, AppState::new(gateway), server::shutdown_signal())
            .await
            .map_err(|e| e.to_string());
    }
    // Counters, buckets and protections live outside snapshots (`options.retained`, shared
    // by every reload), so a reload keeps them.
    let options = CompileOptions { issuer: public_url, data_dir: data, ..CompileOptions::default() };
    let gateway = config::compile(&ConfigSource::Dir(dir.clone()), &options).map_err(|e| problems(&dir, e))?;
    let addr = listen.or(gateway.server.listen).unwrap_or(default_listen);
    let listener = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    if gateway.auth.is_none() {
        tracing::warn!("gateway.yaml has no auth: section; every route is open to anyone who can reach it");
    }
    if let Some(why) = gateway.auth.as_ref().and_then(|a| a.nobody_can_call()) {
        tracing::warn!("auth: {why}");
    }
    let state = AppState::reloadable(gateway, dir, options);
    if let Some(r) = &state.reloader {
        r.watch().map_err(|e| format!("cannot watch the config for reloads: {e}"))?;
    }
    server::run(listener, state, server::shutdown_signal()).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_name_an_address_no_client_can_reach() {
        let any: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        let loopback: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        assert_eq!(base_url(None, any), "http://localhost:8080");
        assert_eq!(base_url(None, "[::]:8080".parse().expect("addr")), "http://localhost:8080");
        assert_eq!(base_url(None, loopback), "http://127.0.0.1:8080");
        assert_eq!(base_url(Some("https://veneer.plant.example"), any), "https://veneer.plant.example");
    }
}
