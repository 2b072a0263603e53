//! The config files as written: plain serde structs, unknown keys rejected.
//!
//! Values that need checking (durations, sizes, URLs, regexes) stay strings here and are
//! parsed by [`super::compile`], which knows the file and line to blame.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::schema::naming::JsonNaming;

/// `gateway.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// Listener settings.
    #[serde(default)]
    pub server: ServerSection,
    /// SOAP backends by name.
    #[serde(default)]
    pub backends: BTreeMap<String, BackendSection>,
}

/// `server:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// `host:port`; `--listen` and `VENEER_LISTEN` override it.
    pub listen: Option<String>,
    /// Largest accepted request body, e.g. `1MiB`.
    pub max_body: Option<String>,
    /// Whole-request deadline, e.g. `30s`.
    pub request_timeout: Option<String>,
}

/// One entry under `backends:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    /// SOAP endpoint URL.
    pub url: Option<String>,
    /// Name of an environment variable holding the endpoint URL.
    pub url_env: Option<String>,
    /// WSDL file, relative to the config directory.
    pub wsdl: String,
    /// `"1.1"` or `"1.2"` when the WSDL binds both.
    pub soap_version: Option<String>,
    /// Per-call deadline, e.g. `10s`.
    pub timeout: Option<String>,
    /// TCP connect deadline, e.g. `2s`.
    pub connect_timeout: Option<String>,
    /// JSON key naming for this backend's elements.
    #[serde(default)]
    pub json_naming: JsonNaming,
    /// Upstream credentials.
    pub auth: Option<AuthSection>,
    /// Fault → HTTP status rules, tried after the route's own.
    #[serde(default)]
    pub faults: Vec<FaultRuleSection>,
}

/// `auth:` of a backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// HTTP Basic.
    pub basic: Option<BasicSection>,
}

/// HTTP Basic credentials; the password only by reference.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicSection {
    /// User name (not secret).
    pub username: String,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (trailing newline ignored).
    pub password_file: Option<String>,
}

/// One fault mapping rule: every given condition must match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRuleSection {
    /// Fault code or subcode, without prefix (`Client`, `Client.NotFound`, `Sender`).
    pub code: Option<String>,
    /// Regular expression matched against the fault reason.
    pub reason: Option<String>,
    /// HTTP status to answer with.
    pub status: u16,
}

/// A file under `routes/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    /// The routes it defines.
    #[serde(default)]
    pub routes: Vec<RouteSection>,
}

/// One route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// `"METHOD /path/{param}"`.
    pub route: String,
    /// Backend name.
    pub backend: String,
    /// WSDL operation name.
    pub operation: String,
    /// One-line summary for docs.
    pub summary: Option<String>,
    /// Longer description for docs.
    pub description: Option<String>,
    /// How request values fill the operation's input (see README).
    pub request: Option<yaml_serde::Value>,
    /// Dot-separated element path under the output element that becomes the body.
    pub response: Option<String>,
    /// HTTP status of a successful answer (default 200).
    pub status: Option<u16>,
    /// Fault → HTTP status rules, tried before the backend's.
    #[serde(default)]
    pub faults: Vec<FaultRuleSection>,
}
