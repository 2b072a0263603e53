//! The `session:` and `auth.netsuite_tba:` sections of a backend, as written in YAML.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `session:` of a backend: log in once, send the session on every call, log in again when
/// the ERP forgets it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionSection {
    /// The call that opens a session.
    pub login: LoginSection,
    /// Name → dot-separated path in the login answer (JSON keys under the output element):
    /// `id: SessionID`, `server_url: result.serverUrl`.
    pub capture: BTreeMap<String, String>,
    /// Path in the login answer holding the session's lifetime in seconds, when the ERP
    /// says (Salesforce's `result.userInfo.sessionSecondsValid`).
    pub expires_in: Option<String>,
    /// SOAP header element → its content, in the syntax of a route's `soap_headers:`, with
    /// `{session.NAME}` for captured values.
    #[serde(default)]
    pub soap_headers: Option<yaml_serde::Mapping>,
    /// HTTP header → value template (`Cookie: "B1SESSION={session.id}"`).
    #[serde(default)]
    pub http_headers: BTreeMap<String, String>,
    /// Endpoint for later calls (`"{session.server_url}"`); default: the backend's `url`.
    pub url: Option<String>,
    /// Hosts besides the backend's own origin that `url` may name (`host`, `host:port`,
    /// `*.domain`): the backend's credentials go with every call.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The call that closes a session (when it is retired and on shutdown).
    pub logout: Option<LogoutSection>,
    /// Sessions kept at most (default 1).
    pub size: Option<usize>,
    /// One call at a time per session (SAP B1 DI): calls wait for a free session.
    #[serde(default)]
    pub exclusive: bool,
    /// Retire a session unused this long (default `15m`).
    pub idle: Option<String>,
    /// Retire a session this long after its login whatever its use (default `8h`).
    pub lifetime: Option<String>,
    /// Faults meaning "session expired or invalid"; default patterns cover SAP B1,
    /// Salesforce and Siebel.
    pub expired_faults: Option<Vec<ExpiredFaultSection>>,
    /// First wait after a failed login (default `5s`), doubling up to `5m`.
    pub login_backoff: Option<String>,
}

/// `session.login:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginSection {
    /// WSDL operation.
    pub operation: String,
    /// A second WSDL holding it (SAP B1's `LoginService`), relative to the config directory;
    /// default: the backend's own.
    pub wsdl: Option<String>,
    /// Endpoint of the login call; default: that WSDL's address for a second WSDL, else the
    /// backend's `url`.
    pub url: Option<String>,
    /// Constant values of the operation's input (JSON keys, nested as the input is).
    #[serde(default)]
    pub input: Option<yaml_serde::Value>,
    /// Dot-separated input path → environment variable holding its (secret) value.
    #[serde(default)]
    pub input_env: BTreeMap<String, String>,
    /// Dot-separated input path → file holding its (secret) value.
    #[serde(default)]
    pub input_file: BTreeMap<String, String>,
}

/// `session.logout:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogoutSection {
    /// WSDL operation, in the login WSDL when there is one, else the backend's.
    pub operation: String,
    /// Constant values of its input.
    #[serde(default)]
    pub input: Option<yaml_serde::Value>,
    /// Its SOAP headers; default: the session's `soap_headers`.
    #[serde(default)]
    pub soap_headers: Option<yaml_serde::Mapping>,
}

/// One "session expired" fault pattern: every given condition must match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpiredFaultSection {
    /// Fault code or subcode, without prefix (`INVALID_SESSION_ID`).
    pub code: Option<String>,
    /// Regular expression searched in the fault reason.
    pub reason: Option<String>,
}

/// `auth.netsuite_tba:`: NetSuite token-based authentication (a signed `tokenPassport`
/// header on every call). Everything but the account only by reference.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NetSuiteTbaSection {
    /// The NetSuite account id (`1234567`, `1234567_SB1` for a sandbox).
    pub account: String,
    /// Environment variable holding the integration's consumer key.
    pub consumer_key_env: Option<String>,
    /// File holding the consumer key.
    pub consumer_key_file: Option<String>,
    /// Environment variable holding the consumer secret.
    pub consumer_secret_env: Option<String>,
    /// File holding the consumer secret.
    pub consumer_secret_file: Option<String>,
    /// Environment variable holding the access token id.
    pub token_id_env: Option<String>,
    /// File holding the token id.
    pub token_id_file: Option<String>,
    /// Environment variable holding the token secret.
    pub token_secret_env: Option<String>,
    /// File holding the token secret.
    pub token_secret_file: Option<String>,
}
