//! Configuration: files → typed structs → validated, compiled, immutable [`Gateway`].
//!
//! Invariant: a [`Gateway`] is built whole or not at all; requests only read it, and a
//! reload swaps the whole snapshot, never patches it. Every problem found names the file,
//! the line where it can be found, and what to write instead.

pub mod compile;
mod compile_auth;
mod compile_limits;
mod compile_mqtt;
mod compile_protect;
mod compile_route;
pub(crate) mod compile_sensors;
mod compile_session;
mod marks;
pub(crate) mod problems;
pub mod raw;
pub(crate) mod raw_sensors;
pub(crate) mod raw_session;
pub mod secret;
mod snapshot;
pub mod source;
pub mod tls;
pub mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use compile::compile;
pub use source::ConfigSource;

use crate::auth::Auth;
use crate::backend::Backend;
use crate::route::RouteTable;
use crate::throttle::Throttle;

/// One problem in the config, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file, relative to the config directory.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found in a config; compilation reports all of them, not just the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Address from the config file, if any (the CLI may override it).
    pub listen: Option<SocketAddr>,
    /// Largest accepted request body in bytes.
    pub max_body: usize,
    /// Whole-request deadline.
    pub request_timeout: Duration,
    /// TLS for the listener, when configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Time to receive a request's headers (and the longest keep-alive idle time).
    pub header_timeout: Duration,
    /// Open client connections at most.
    pub max_connections: usize,
    /// A separate address for `/metrics` (then the main listener does not serve it).
    pub metrics_listen: Option<SocketAddr>,
    /// Scope a token needs to read `/metrics` on the main listener.
    pub metrics_scope: Option<String>,
    /// The config means to run without `auth:` (a reload may then drop it).
    pub allow_anonymous: bool,
    /// `server.cors`: CORS on every endpoint without a route policy of its own.
    pub cors: Option<Arc<crate::route::cors::CorsPolicy>>,
}

impl ServerSettings {
    /// The defaults: 1 MiB bodies, 30 s per request, 10 s for headers, 10 000 connections.
    pub(crate) fn defaults() -> Self {
        ServerSettings {
            listen: None,
            max_body: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            tls: None,
            header_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            metrics_listen: None,
            metrics_scope: None,
            allow_anonymous: false,
            cors: None,
        }
    }
}

/// The compiled, immutable gateway: everything a request needs, nothing it must parse.
#[derive(Debug)]
pub struct Gateway {
    /// Listener settings.
    pub server: ServerSettings,
    /// Backends by name.
    pub backends: BTreeMap<String, Arc<Backend>>,
    /// Routes and the path matcher over them.
    pub routes: RouteTable,
    /// OAuth2; `None` leaves routes open (no `auth:` section).
    pub auth: Option<Auth>,
    /// Rate limits and quotas.
    pub throttle: Throttle,
    /// Queued delivery and idempotency keys.
    pub delivery: crate::delivery::DeliverySettings,
    /// The data dictionary and `POST /telemetry` settings.
    pub sensors: Arc<crate::ingest::dictionary::Dictionary>,
    /// MQTT ingress, when configured.
    pub mqtt: Option<crate::ingest::mqtt::MqttSettings>,
}
