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
pub(crate) struct GatewayFile {
    /// Listener settings.
    #[serde(default)]
    pub server: ServerSection,
    /// SOAP backends by name.
    #[serde(default)]
    pub backends: BTreeMap<String, BackendSection>,
    /// OAuth2: the built-in issuer, external issuers, introspection.
    pub auth: Option<AuthConfigSection>,
    /// Rate limits for clients without their own, and the shared (Redis) limiter.
    pub limits: Option<LimitsSection>,
    /// Queued delivery's store and retry policy; idempotency keys.
    pub delivery: Option<DeliveryConfigSection>,
    /// `POST /telemetry`: who may post and which timestamps are sane.
    pub telemetry: Option<TelemetrySection>,
    /// MQTT ingress from the edge broker.
    pub mqtt: Option<MqttSection>,
}

/// `telemetry:` in gateway.yaml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TelemetrySection {
    /// Scope a token needs for `POST /telemetry` (default `telemetry:write`).
    pub scope: Option<String>,
    /// Readings per request or message at most (default 1000).
    pub max_readings: Option<usize>,
    /// Oldest reading accepted, counted back from now (default `7d`).
    pub max_age: Option<String>,
    /// Newest reading accepted, counted ahead of now: device clocks drift (default `5m`).
    pub max_ahead: Option<String>,
    /// Readings each caller may send (`POST /telemetry` counts every reading of a batch),
    /// besides its request limit (default `1000/s`, burst 2000).
    pub readings_limit: Option<RateSection>,
}

/// `mqtt:` in gateway.yaml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MqttSection {
    /// `mqtt://host:1883` or `mqtts://host:8883`.
    pub url: String,
    /// A stable client id: the broker keeps its session (and unacknowledged messages) under it.
    pub client_id: String,
    /// Broker user name.
    pub username: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<String>,
    /// CA and client certificate for `mqtts://`.
    pub tls: Option<BackendTlsSection>,
    /// Replicas split the topics through `$share/GROUP/…` subscriptions.
    pub share: Option<String>,
    /// Rejected messages are also published here (QoS 1), with the reason.
    pub error_topic: Option<String>,
    /// Keep-alive interval (default `30s`).
    pub keep_alive: Option<String>,
    /// Topic templates subscribed besides those of the sensor files.
    #[serde(default)]
    pub topics: Vec<String>,
}

/// `delivery:` in gateway.yaml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveryConfigSection {
    /// Directory of the embedded store (relative to the config directory).
    pub data_dir: Option<String>,
    /// First retry delay (default `1s`); doubles per attempt, with jitter.
    pub backoff: Option<String>,
    /// Longest retry delay (default `5m`).
    pub max_backoff: Option<String>,
    /// Retry for this long, then dead letter (default `24h`).
    pub max_age: Option<String>,
    /// Keep a delivered item's status this long (default `24h`).
    pub keep_delivered: Option<String>,
    /// Keep an `Idempotency-Key`'s answer this long (default `24h`).
    pub idempotency_ttl: Option<String>,
    /// Keep a dead letter this long, then delete it (default `30d`).
    pub keep_dead: Option<String>,
    /// Items the embedded store holds at most, dead letters and kept statuses included;
    /// past it new items get 503 `queue-full` (default 1000000).
    pub max_items: Option<u64>,
    /// Bytes of stored items at most (default `1GiB`); the file is about 1.5× this.
    pub max_bytes: Option<String>,
    /// Bytes of `Idempotency-Key` records at most (default `64MiB`); past it the oldest
    /// answers are forgotten first.
    pub idempotency_max_bytes: Option<String>,
    /// An answer larger than this is kept as its status, headers and digest, without its
    /// body (default `64KiB`).
    pub idempotency_max_answer: Option<String>,
    /// A dead letter's stored input (an MQTT payload) is cut to this size (default `64KiB`).
    pub max_dead_input: Option<String>,
    /// Redis Streams shared by a fleet of replicas (instead of `data_dir`).
    pub redis: Option<DeliveryRedisSection>,
}

/// `delivery.redis`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveryRedisSection {
    /// `redis://host:port/db`.
    pub url: Option<String>,
    /// Environment variable holding the URL.
    pub url_env: Option<String>,
    /// Key prefix (default `veneer:`).
    pub prefix: Option<String>,
    /// A stopped replica's unfinished items are taken over after this (default `60s`; keep
    /// it above the longest backend timeout).
    pub claim_after: Option<String>,
    /// Items a backend's stream holds at most; past it new items get 503 (default 1000000).
    pub max_len: Option<u64>,
    /// `strict` (default): queued routes answer 503 unless Redis runs with `appendonly yes`
    /// and `appendfsync always`; `relaxed`: accept anyway (a Redis crash can lose a 202).
    pub durability: Option<String>,
}

/// A route's `delivery:`: `queued`, or the same with options.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum DeliverySection {
    /// `direct` or `queued`.
    Mode(String),
    /// `{ mode: queued, ordered: true, … }`.
    Detailed(DeliveryDetail),
}

/// `delivery: { mode: queued, … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveryDetail {
    /// `queued` or `direct`.
    pub mode: String,
    /// Deliver in arrival order.
    #[serde(default)]
    pub ordered: bool,
    /// With `ordered`: one order per value of this source (e.g. `{body.machineId}`).
    pub partition: Option<String>,
    /// Retry for this long (default: `delivery.max_age`).
    pub max_age: Option<String>,
    /// Or at most this many attempts.
    pub max_attempts: Option<u32>,
}

/// A fault meaning "the ERP already has this".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DuplicateFaultSection {
    /// Fault code or subcode, without prefix.
    pub code: Option<String>,
    /// Regular expression matched against the fault reason.
    pub reason: Option<String>,
}

/// A route's `idempotency:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdempotencySection {
    /// Refuse requests without `Idempotency-Key` (400).
    #[serde(default)]
    pub required: bool,
}

/// `limits:` in gateway.yaml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsSection {
    /// Per-client limit for clients without their own.
    pub default: Option<RateSection>,
    /// Share limits and quotas across replicas.
    pub redis: Option<RedisSection>,
}

/// A rate with its burst.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateSection {
    /// `50/s`, `600/min`, `1000/h`.
    pub rate: String,
    /// Requests admitted back to back (default: the rate's count).
    pub burst: Option<u32>,
}

/// Redis for shared limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedisSection {
    /// `redis://host:port/db`.
    pub url: Option<String>,
    /// Env var holding the URL (it may carry a password).
    pub url_env: Option<String>,
    /// Key prefix, default `veneer:`.
    pub prefix: Option<String>,
    /// Deadline for one Redis call, default `50ms`.
    pub timeout: Option<String>,
    /// `local` (default: fall back to per-replica limits) or `reject` (503).
    pub on_unavailable: Option<crate::throttle::shared::OnUnavailable>,
}

/// A client's own limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientLimitsSection {
    /// `50/s` etc.
    pub rate: Option<String>,
    /// Burst.
    pub burst: Option<u32>,
    /// Calls per UTC day / month.
    pub quota: Option<QuotaSection>,
}

/// Quotas.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuotaSection {
    /// Calls per UTC day.
    pub day: Option<u64>,
    /// Calls per UTC month.
    pub month: Option<u64>,
}

/// `cache:` of a route.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum CacheSection {
    /// Just a TTL.
    Ttl(String),
    /// TTL and scope.
    Full(CacheFullSection),
}

/// `cache: { ttl, per_client }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheFullSection {
    /// Freshness lifetime.
    pub ttl: String,
    /// Keep answers per client.
    #[serde(default)]
    pub per_client: bool,
}

/// A route's own limit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteLimitSection {
    /// `20/s` etc.
    pub rate: String,
    /// Burst.
    pub burst: Option<u32>,
    /// `route` (one bucket for everyone, default) or `client` (one per client).
    #[serde(default)]
    pub per: LimitPer,
}

/// Whom a route's own limit counts: everyone together, or each client apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LimitPer {
    /// One bucket for the route.
    #[default]
    Route,
    /// One bucket per client on the route.
    Client,
}

/// `server.tls.client_auth`: whether client certificates are required.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ClientAuth {
    /// Every client presents one.
    #[default]
    Required,
    /// A client may present one.
    Optional,
}

/// `xsd_any:`: how `xs:any` content travels in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum XsdAny {
    /// As JSON, converted element by element.
    #[default]
    Json,
    /// As an XML string.
    Xml,
}

/// `ws_security.password_type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PasswordType {
    /// PasswordDigest (nonce and created time hashed with the password).
    #[default]
    Digest,
    /// PasswordText (over TLS only).
    Text,
}

/// `auth:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthConfigSection {
    /// `iss` of tokens Veneer issues: its public base URL.
    pub issuer: Option<String>,
    /// `aud` of tokens Veneer issues (default: the issuer).
    pub audience: Option<String>,
    /// Directory of PEM signing keys (`veneer keys new`).
    pub signing_keys: Option<String>,
    /// Access-token lifetime, e.g. `15m`.
    pub token_ttl: Option<String>,
    /// Allowed clock skew, e.g. `30s`.
    pub leeway: Option<String>,
    /// Registered clients.
    #[serde(default)]
    pub clients: Vec<ClientSection>,
    /// Trusted external issuers.
    #[serde(default)]
    pub external_issuers: Vec<ExternalIssuerSection>,
    /// RFC 7662 introspection for opaque tokens.
    pub introspection: Option<IntrospectionSection>,
    /// Failed client authentications allowed at the token endpoint before it answers 429.
    pub login_failures: Option<LoginFailuresSection>,
}

/// `auth.login_failures`: failed attempts per client id and per source address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginFailuresSection {
    /// Per `client_id` (default `10/min`, burst 10).
    pub per_client: Option<RateSection>,
    /// Per source address (default `60/min`, burst 60).
    pub per_address: Option<RateSection>,
}

/// One registered client.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientSection {
    /// `client_id`.
    pub id: String,
    /// argon2id hash of its secret (`veneer client new`).
    pub secret_hash: Option<String>,
    /// Public JWK for `private_key_jwt`.
    pub jwk: Option<serde_json::Value>,
    /// Scopes it may be granted.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Refuse it tokens, and reject tokens it already has.
    #[serde(default)]
    pub disabled: bool,
    /// Its own rate limit and quotas.
    pub limits: Option<ClientLimitsSection>,
}

/// One external issuer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExternalIssuerSection {
    /// Exact `iss`.
    pub issuer: String,
    /// Accepted audience(s).
    pub audience: OneOrMany,
    /// JWKS URL; default: OpenID discovery.
    pub jwks_uri: Option<String>,
    /// Allowed algorithms (asymmetric only), default `[RS256, ES256]`.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Claim carrying scopes, e.g. `roles`.
    pub scope_claim: Option<String>,
    /// Least time between JWKS refreshes, default `60s`.
    pub refresh_interval: Option<String>,
}

/// A string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    /// One value.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// As a list.
    pub(crate) fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// RFC 7662 introspection endpoint and Veneer's credentials for it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IntrospectionSection {
    /// Endpoint URL.
    pub endpoint: String,
    /// Veneer's client id at the introspection endpoint.
    pub client_id: String,
    /// Env var holding the secret.
    pub client_secret_env: Option<String>,
    /// File holding the secret.
    pub client_secret_file: Option<String>,
    /// Longest time to trust an answer without `exp`, default `60s`.
    pub max_cache: Option<String>,
    /// `aud` an active token must carry (one or several); without it, audience is not checked.
    pub audience: Option<OneOrMany>,
    /// `iss` an active token must carry, when the endpoint reports one.
    pub issuer: Option<String>,
    /// Introspection calls in flight at most (default 16); more wait briefly, then get 503.
    pub max_concurrency: Option<usize>,
}

/// `server:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerSection {
    /// `host:port`; `--listen` and `VENEER_LISTEN` override it.
    pub listen: Option<String>,
    /// Largest accepted request body, e.g. `1MiB`.
    pub max_body: Option<String>,
    /// Whole-request deadline, e.g. `30s`.
    pub request_timeout: Option<String>,
    /// Terminate TLS on the listener.
    pub tls: Option<ServerTlsSection>,
    /// Time a client has to send a request's headers, e.g. `10s` (default); an idle
    /// keep-alive connection is closed after the same time.
    pub header_timeout: Option<String>,
    /// Open client connections at most (default 10000); more wait in the kernel's backlog.
    pub max_connections: Option<usize>,
    /// Serve `/metrics` on this separate address instead of the main listener.
    pub metrics_listen: Option<String>,
    /// Scope a bearer token needs for `/metrics` on the main listener.
    pub metrics_scope: Option<String>,
    /// Say so when a config without `auth:` is meant: a reload never drops `auth:` otherwise.
    #[serde(default)]
    pub allow_anonymous: bool,
    /// CORS for browser dashboards, on every endpoint (a route's own `cors:` replaces it).
    pub cors: Option<CorsSection>,
}

/// `cors:` of the server or of a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CorsSection {
    /// Origins allowed (`https://dashboard.plant.example`), or `"*"` for any.
    pub origins: Vec<String>,
    /// Methods allowed (default: those the path serves).
    pub methods: Option<Vec<String>>,
    /// Request headers allowed (default: authorization, content-type, idempotency-key,
    /// x-request-id).
    pub headers: Option<Vec<String>>,
    /// Response headers scripts may read (default: location, retry-after, ratelimit,
    /// ratelimit-policy, x-request-id, idempotent-replayed).
    pub expose: Option<Vec<String>>,
    /// How long a browser may keep a preflight's answer (default `10m`).
    pub max_age: Option<String>,
}

/// `server.tls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerTlsSection {
    /// PEM certificate chain.
    pub cert_file: String,
    /// PEM private key.
    pub key_file: String,
    /// PEM CA bundle: clients must present a certificate it signed (mutual TLS).
    pub client_ca_file: Option<String>,
    /// `required` (default with a client CA) or `optional`.
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// A backend's `tls:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackendTlsSection {
    /// Extra CA bundle to trust for this backend (a company CA).
    pub ca_file: Option<String>,
    /// Client certificate to present.
    pub client_cert_file: Option<String>,
    /// Its key.
    pub client_key_file: Option<String>,
}

/// One entry under `backends:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackendSection {
    /// SOAP endpoint URL.
    pub url: Option<String>,
    /// How much of a SOAP fault's detail callers see: `typed` (default), `pass` or `hide`.
    pub fault_detail: Option<crate::translate::fault::FaultDetail>,
    /// Name of an environment variable holding the endpoint URL.
    pub url_env: Option<String>,
    /// WSDL file, relative to the config directory.
    pub wsdl: String,
    /// `"1.1"` or `"1.2"` when the WSDL binds both.
    pub soap_version: Option<String>,
    /// The `wsdl:port` (or `wsdl:service`) to use when the WSDL offers several.
    pub port: Option<String>,
    /// Per-call deadline, e.g. `10s`.
    pub timeout: Option<String>,
    /// TCP connect deadline, e.g. `2s`.
    pub connect_timeout: Option<String>,
    /// Largest response body accepted, e.g. `8MiB` (the default); larger ones are a 502.
    pub max_response: Option<String>,
    /// JSON key naming for this backend's elements.
    #[serde(default)]
    pub json_naming: JsonNaming,
    /// XSD element or attribute name → JSON key, overriding `json_naming`.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Absolute `schemaLocation` URL → local file (relative to the config directory).
    #[serde(default)]
    pub catalog: BTreeMap<String, String>,
    /// `json` (default) or `xml`: how `xsd:any` content travels.
    #[serde(default)]
    pub xsd_any: XsdAny,
    /// Upstream credentials.
    pub auth: Option<AuthSection>,
    /// Fault → HTTP status rules, tried after the route's own.
    #[serde(default)]
    pub faults: Vec<FaultRuleSection>,
    /// Calls in flight at most (default 32).
    pub max_concurrency: Option<usize>,
    /// Waiting room when all slots are busy.
    pub queue: Option<QueueSection>,
    /// Retries for idempotent calls.
    pub retries: Option<RetriesSection>,
    /// Circuit breaker.
    pub circuit_breaker: Option<BreakerSection>,
    /// Faults that mean "too busy": answered 503/429 with Retry-After, counted as failures.
    #[serde(default)]
    pub busy_faults: Vec<BusyFaultSection>,
    /// Custom CA and client certificate for the ERP's TLS.
    pub tls: Option<BackendTlsSection>,
    /// ERP sessions: log in once, reuse, log in again when the ERP forgets.
    pub session: Option<super::raw_session::SessionSection>,
}

/// `queue:` of a backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueSection {
    /// Calls waiting at most (default 64; 0 = refuse when all slots are busy).
    pub max: Option<usize>,
    /// Longest wait for a slot (default `2s`).
    pub timeout: Option<String>,
}

/// `retries:` of a backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetriesSection {
    /// Extra attempts (default 2; 0 disables).
    pub attempts: Option<u32>,
    /// First backoff (default `100ms`), doubling, with jitter.
    pub backoff: Option<String>,
    /// Retries as a share of calls, e.g. `20%` (default).
    pub budget: Option<String>,
}

/// `circuit_breaker:` of a backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakerSection {
    /// Set false to disable.
    pub enabled: Option<bool>,
    /// Failure ratio that opens it (default 0.5).
    pub failure_rate: Option<f64>,
    /// Calls in the sliding window (default 20).
    pub window: Option<usize>,
    /// Calls before the ratio counts (default 10).
    pub min_calls: Option<usize>,
    /// Time open before a probe (default `30s`).
    pub open_for: Option<String>,
}

/// One busy-fault pattern.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BusyFaultSection {
    /// Fault code or subcode.
    pub code: Option<String>,
    /// Regex on the fault reason.
    pub reason: Option<String>,
    /// 503 (default) or 429.
    pub status: Option<u16>,
    /// Suggested wait (default `5s`).
    pub retry_after: Option<String>,
}

/// `auth:` of a backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthSection {
    /// HTTP Basic.
    pub basic: Option<BasicSection>,
    /// WS-Security UsernameToken.
    pub ws_security: Option<WsSecuritySection>,
    /// OAuth2 client credentials against the ERP's IdP.
    pub oauth2: Option<UpstreamOAuthSection>,
    /// NetSuite token-based authentication (`tokenPassport`).
    pub netsuite_tba: Option<super::raw_session::NetSuiteTbaSection>,
}

/// WS-Security UsernameToken; the password only by reference.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WsSecuritySection {
    /// User name.
    pub username: String,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<String>,
    /// `digest` (default) or `text`.
    #[serde(default)]
    pub password_type: PasswordType,
    /// Timestamp lifetime, default `5m`.
    pub timestamp_ttl: Option<String>,
}

/// OAuth2 client credentials for the backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamOAuthSection {
    /// The IdP's token endpoint.
    pub token_url: String,
    /// Veneer's client id there.
    pub client_id: String,
    /// Environment variable holding the secret.
    pub client_secret_env: Option<String>,
    /// File holding the secret.
    pub client_secret_file: Option<String>,
    /// Scopes to request.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// HTTP Basic credentials; the password only by reference.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BasicSection {
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
pub(crate) struct FaultRuleSection {
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
pub(crate) struct RoutesFile {
    /// Backends declared beside their routes (names are global across files).
    #[serde(default)]
    pub backends: BTreeMap<String, BackendSection>,
    /// The routes it defines.
    #[serde(default)]
    pub routes: Vec<RouteSection>,
}

/// One route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteSection {
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
    /// SOAP header element name → values, in the same syntax as `request:`.
    pub soap_headers: Option<yaml_serde::Mapping>,
    /// Dot-separated element path under the output element that becomes the body.
    pub response: Option<String>,
    /// HTTP status of a successful answer (default 200).
    pub status: Option<u16>,
    /// Scopes a token must carry (all of them).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// No token needed (only meaningful when `auth:` is configured).
    #[serde(default)]
    pub public: bool,
    /// The route's own rate limit.
    pub limits: Option<RouteLimitSection>,
    /// Safe to retry (default: true for GET, false otherwise).
    pub idempotent: Option<bool>,
    /// Cache successful answers: `30s`, or `{ ttl: 30s, per_client: true }`.
    pub cache: Option<CacheSection>,
    /// Fault → HTTP status rules, tried before the backend's.
    #[serde(default)]
    pub faults: Vec<FaultRuleSection>,
    /// `queued`: store, answer 202, deliver in the background.
    pub delivery: Option<DeliverySection>,
    /// Faults that mean the ERP already has the item (counted as delivered).
    #[serde(default)]
    pub duplicate_faults: Vec<DuplicateFaultSection>,
    /// `Idempotency-Key` handling.
    pub idempotency: Option<IdempotencySection>,
    /// CORS on this route's path, replacing `server.cors`.
    pub cors: Option<CorsSection>,
}
