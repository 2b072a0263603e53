//! SOAP backends: one pooled HTTP client each, with timeouts and upstream credentials.
//!
//! This module only moves bytes (at most `max_response` of them per answer); it never
//! interprets a response body. Transport failures are classified here (timeout → 504,
//! refused/reset → 502) so the pipeline does not have to.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use bytes::Bytes;

use self::breaker::Breaker;
use self::protect::{BreakerSettings, BusyRule, Gate, QueueSettings, Retries, RetrySettings};
use self::session::{Lease, Rendered, Session, SessionPool, SessionSpec};
use crate::backend::faults::FaultRule;
use crate::error::{GatewayError, OverloadKind};
use crate::schema::{Operation, ServiceModel};
use crate::telemetry::BackendMetrics;
use crate::translate::decode::{self, Decoded};
use crate::translate::encode;
use crate::translate::fault::FaultDetail;

pub mod breaker;
pub mod client;
pub mod credentials;
pub mod faults;
pub mod netsuite;
pub(crate) mod protect;
pub mod session;

pub use client::BackendTls;
pub use credentials::BasicAuth;
pub use credentials::Credentials;

use self::client::{CallError, HttpClient};

/// Header carrying the request id to the backend (and back in responses).
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// `max_response` when a backend does not set it: 8 MiB. Far above ordinary SOAP answers,
/// yet a misbehaving ERP cannot make the gateway buffer hundreds of megabytes per call.
pub(crate) const DEFAULT_MAX_RESPONSE: usize = 8 * 1024 * 1024;

/// A backend's compiled settings.
#[derive(Debug)]
pub struct BackendSettings {
    /// Name in the config.
    pub name: String,
    /// SOAP endpoint.
    pub url: reqwest::Url,
    /// Per-call deadline (connect + send + full response).
    pub timeout: Duration,
    /// TCP connect deadline.
    pub connect_timeout: Duration,
    /// Largest response body read, in bytes; a larger one is refused while it streams.
    pub max_response: usize,
    /// What the backend is shown to prove who Veneer is.
    pub credentials: Credentials,
    /// Fault → status rules for every route on this backend.
    pub faults: Vec<FaultRule>,
    /// How much of a fault's detail callers see.
    pub fault_detail: FaultDetail,
}

/// A SOAP backend: its settings, its operation model, its connection pool and the
/// protections in front of it.
pub struct Backend {
    /// Settings.
    pub settings: Arc<BackendSettings>,
    /// Operations and types from its WSDL.
    pub model: Arc<ServiceModel>,
    /// Concurrency cap and queue (shared with earlier snapshots while its settings hold).
    pub gate: Arc<Gate>,
    retries: Option<Retries>,
    /// Circuit breaker (shared with earlier snapshots while its settings hold).
    breaker: Option<Arc<Breaker>>,
    transport: Arc<Transport>,
    session: Option<Arc<Sessions>>,
    link: Link,
    metrics: BackendMetrics,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("settings", &self.settings)
            .field("gate", &self.gate)
            .field("retries", &self.retries)
            .finish()
    }
}

/// Protection settings of a backend.
#[derive(Debug, Clone)]
pub struct Protection {
    /// Concurrency cap and queue.
    pub queue: QueueSettings,
    /// Retries for idempotent calls (`None`: never).
    pub retries: Option<RetrySettings>,
    /// Circuit breaker (`None`: off).
    pub breaker: Option<BreakerSettings>,
    /// Faults that mean "too busy".
    pub busy: Vec<BusyRule>,
}

/// The backend's raw answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Response body.
    pub body: Bytes,
}

/// One attempt at a call.
#[derive(Clone)]
struct Attempt {
    op: usize,
    envelope: Bytes,
    /// Request id and W3C trace context, passed on to the ERP.
    forward: Forward,
}

/// Headers carried from the client's request to the backend: `x-request-id`,
/// `traceparent` and `tracestate` (W3C Trace Context).
pub(crate) type Forward = Vec<(&'static str, HeaderValue)>;

/// The headers of `headers` that travel to the backend.
pub(crate) fn forwarded(headers: &axum::http::HeaderMap) -> Forward {
    [REQUEST_ID, "traceparent", "tracestate"].iter().filter_map(|n| headers.get(*n).map(|v| (*n, v.clone()))).collect()
}

/// What a call to the ERP goes through: the HTTP client, the backend's settings and model.
#[derive(Clone)]
pub struct Link {
    /// The pooled HTTP client.
    pub client: HttpClient,
    /// The backend's URL as a request URI, made once.
    pub uri: Uri,
    /// Settings (name, URL, credentials, limits).
    pub settings: Arc<BackendSettings>,
    /// Operations and types.
    pub model: Arc<ServiceModel>,
}

/// Sends one attempt; classifies transport failures, expired sessions and busy faults.
struct Transport {
    link: Link,
    busy: Vec<BusyRule>,
    session: Option<Arc<Sessions>>,
}

/// A backend's sessions: this snapshot's settings (what a session sends, which faults mean
/// expired) and the pool, which a reload keeps while its login settings are unchanged.
struct Sessions {
    spec: Arc<SessionSpec>,
    pool: Arc<SessionPool>,
}

/// POSTs an envelope for `op` to `url` with the backend's credentials; reads the answer
/// (bounded by `max_response`) without interpreting it.
pub(crate) async fn post(
    link: &Link,
    url: &reqwest::Url,
    op: &Operation,
    envelope: Bytes,
    extra: &[(HeaderName, HeaderValue)],
    forward: Forward,
) -> Result<Reply, GatewayError> {
    let settings = &link.settings;
    // The backend's own URL was made a URI once; a session's endpoint is made one here.
    let uri = if std::ptr::eq(url, &settings.url) {
        link.uri.clone()
    } else {
        Uri::try_from(url.as_str()).map_err(|e| GatewayError::BackendUnreachable {
            backend: settings.name.clone(),
            reason: format!("the session endpoint is not a URI: {e}"),
        })?
    };
    let (content_type, soap_action) = encode::http_headers(op);
    let not_header_text = |what: &str| GatewayError::BackendUnreachable {
        backend: settings.name.clone(),
        reason: format!("the {what} from the WSDL is not HTTP header text"),
    };
    let mut headers = HeaderMap::with_capacity(4 + forward.len() + extra.len());
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(&content_type).map_err(|_| not_header_text("action"))?);
    if let Some(action) = soap_action {
        let action = HeaderValue::from_str(&action).map_err(|_| not_header_text("SOAPAction"))?;
        headers.insert(HeaderName::from_static("soapaction"), action);
    }
    for (name, value) in forward {
        headers.insert(name, value);
    }
    for (name, value) in extra {
        headers.append(name.clone(), value.clone());
    }
    let creds = &settings.credentials;
    if let Some(b) = &creds.basic {
        headers.insert(header::AUTHORIZATION, b.header());
    }
    if let Some(o) = &creds.oauth2 {
        let token =
            o.token().await.map_err(|reason| GatewayError::UpstreamAuth { backend: settings.name.clone(), reason })?;
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| GatewayError::UpstreamAuth {
            backend: settings.name.clone(),
            reason: "the token endpoint answered a token that is not header text".into(),
        })?;
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
    }
    let backend = || settings.name.clone();
    match link.client.post(uri, headers, envelope).await {
        Ok((status, body)) => Ok(Reply { status, body }),
        Err(CallError::Timeout) => {
            Err(GatewayError::BackendTimeout { backend: backend(), timeout_ms: settings.timeout.as_millis() })
        }
        Err(CallError::TooLarge) => Err(GatewayError::BackendResponse {
            backend: backend(),
            title: "Backend response too large",
            detail: format!("the response exceeded max_response ({} bytes)", settings.max_response),
        }),
        Err(CallError::Unreachable(reason)) => Err(GatewayError::BackendUnreachable { backend: backend(), reason }),
    }
}

impl Transport {
    async fn send(&self, a: Attempt) -> Result<Reply, GatewayError> {
        let reply = self.post_in(None, a.op, &a.envelope, a.forward).await?;
        self.check_busy(a.op, &reply.body)?;
        Ok(reply)
    }

    /// An attempt in a session: lease one, send, and when the ERP says the session expired,
    /// retire it, log in again and send once more. Runs on a task of its own, so a caller
    /// that goes away does not release an exclusive session while the ERP still works on
    /// its call, nor leave a login half-recorded.
    async fn send_in_session(&self, s: &Sessions, a: Attempt) -> Result<Reply, GatewayError> {
        let pool = &s.pool;
        let mut lease = pool.lease().await;
        let mut session = pool.session(&mut lease).await?;
        let rendered = self.render(s, &mut lease, &session, a.op).await?;
        let mut reply = self.post_in(Some(&rendered), a.op, &a.envelope, a.forward.clone()).await?;
        if s.spec.is_expired(&self.link.model, a.op, &reply.body) {
            if !session.proven() {
                return Err(pool.refused_at_once(&mut lease, &session).await);
            }
            // Refused before the ERP did anything: a new session, and the call once more.
            crate::telemetry::session_expired(&self.link.settings.name);
            tracing::info!(backend = %self.link.settings.name, "the ERP forgot the session; logging in again");
            pool.retire(&mut lease, &session).await;
            session = pool.session(&mut lease).await?;
            let rendered = self.render(s, &mut lease, &session, a.op).await?;
            reply = self.post_in(Some(&rendered), a.op, &a.envelope, a.forward).await?;
            // Never the ERP's own words here: some put the session id in them.
            if s.spec.is_expired(&self.link.model, a.op, &reply.body) {
                return Err(pool.refused_at_once(&mut lease, &session).await);
            }
        }
        session.touch();
        pool.worked();
        if pool.is_closed() {
            pool.retire_closed(&mut lease, &session).await;
        }
        self.check_busy(a.op, &reply.body)?;
        Ok(reply)
    }

    /// What `session` adds to a call of `op`. Values the login answer gave that cannot be
    /// used (a URL outside the backend's origins, text that fits no header) make the login
    /// a failed one: the session is retired and the next login waits for the backoff.
    async fn render<'a>(
        &self,
        s: &'a Sessions,
        lease: &mut Lease<'a>,
        session: &Arc<Session>,
        op: usize,
    ) -> Result<Rendered, GatewayError> {
        match s.spec.render(&self.link.model, op, session) {
            Ok(r) => Ok(r),
            Err(reason) => Err(s.pool.unusable(lease, session, reason).await),
        }
    }

    /// Sends an attempt with the backend's own SOAP headers, fresh per attempt (a
    /// WS-Security or NetSuite nonce must never be sent twice, retries included) and, in a
    /// session, its SOAP header, HTTP headers and endpoint.
    async fn post_in(
        &self,
        rendered: Option<&Rendered>,
        op: usize,
        envelope: &Bytes,
        forward: Forward,
    ) -> Result<Reply, GatewayError> {
        let (settings, model) = (&self.link.settings, &self.link.model);
        let mut header = settings.credentials.ws_security.as_ref().map(|w| w.header()).unwrap_or_default();
        if let Some(tba) = &settings.credentials.netsuite {
            header.push_str(&tba.header(&model.schema));
        }
        if let Some(r) = rendered {
            header.push_str(&r.soap_header);
        }
        let envelope = if header.is_empty() { envelope.clone() } else { encode::with_header(envelope, &header) };
        let url = rendered.and_then(|r| r.url.as_ref()).unwrap_or(&settings.url);
        let http = rendered.map_or(&[][..], |r| r.http.as_slice());
        post(&self.link, url, &model.operations[op], envelope, http, forward).await
    }

    /// A fault matching a busy rule is overload, not an answer: it feeds the breaker.
    fn check_busy(&self, op: usize, body: &[u8]) -> Result<(), GatewayError> {
        if self.busy.is_empty() || !body.windows(5).any(|w| w == b"Fault") {
            return Ok(());
        }
        let model = &self.link.model;
        let Ok(Decoded::Fault(fault)) = decode::response(&model.operations[op].output, &model.schema, body) else {
            return Ok(());
        };
        for rule in &self.busy {
            let code_ok = rule.code.as_deref().is_none_or(|c| fault.has_code(c));
            let reason_ok = rule.reason.as_ref().is_none_or(|r| r.is_match(&fault.reason));
            if code_ok && reason_ok {
                return Err(GatewayError::Overloaded {
                    backend: self.link.settings.name.clone(),
                    kind: OverloadKind::Busy,
                    reason: format!("busy: {}", fault.reason),
                    retry_after: rule.retry_after,
                    status: rule.status,
                });
            }
        }
        Ok(())
    }
}

/// What a backend keeps across config snapshots, by its name and settings (the slot gate,
/// the breaker, the ERP session pool): a reload that leaves them unchanged hands the new
/// backend the same ones. `state::Retained` keeps them for the process.
pub trait Kept {
    /// The slot gate for these queue settings.
    fn gate(&self, name: &str, settings: QueueSettings) -> Arc<Gate>;
    /// The circuit breaker for these settings.
    fn breaker(&self, name: &str, settings: BreakerSettings) -> Arc<Breaker>;
    /// The session pool for this session spec, reaching the ERP over `link`.
    fn session_pool(&self, name: &str, spec: Arc<SessionSpec>, link: Link) -> Arc<SessionPool>;
}

impl Backend {
    /// Builds the backend, its client pool and its protections.
    pub fn new(
        settings: BackendSettings,
        model: Arc<ServiceModel>,
        protection: Protection,
        tls: BackendTls,
        session: Option<SessionSpec>,
        retained: &dyn Kept,
    ) -> Result<Self, String> {
        let client = HttpClient::new(tls, settings.connect_timeout, settings.timeout, settings.max_response)?;
        let uri = Uri::try_from(settings.url.as_str()).map_err(|e| format!("url {}: {e}", settings.url))?;
        let settings = Arc::new(settings);
        let link = Link { client, uri, settings: settings.clone(), model: model.clone() };
        let session = session.map(|spec| {
            let spec = Arc::new(spec);
            Arc::new(Sessions { pool: retained.session_pool(&settings.name, spec.clone(), link.clone()), spec })
        });
        let transport = Arc::new(Transport { link: link.clone(), busy: protection.busy, session: session.clone() });
        let breaker = protection.breaker.map(|b| retained.breaker(&settings.name, b));
        Ok(Backend {
            metrics: BackendMetrics::new(&settings.name, model.operations.iter().map(|o| o.name.as_str())),
            gate: retained.gate(&settings.name, protection.queue),
            retries: protection.retries.map(Retries::new),
            settings,
            model,
            breaker,
            transport,
            session,
            link,
        })
    }

    /// Logs the backend's ERP sessions out (shutdown), waiting at most `deadline`.
    pub(crate) async fn close_sessions(&self, deadline: Duration) {
        if let Some(s) = &self.session {
            s.pool.close(deadline).await;
        }
    }

    /// The session pool, with the client it should use, once this snapshot serves.
    pub(crate) fn session_pool(&self) -> Option<(&Arc<SessionPool>, &Link)> {
        self.session.as_ref().map(|s| (&s.pool, &self.link))
    }

    /// Does the backend's session fill SOAP header element `el` on every call?
    pub(crate) fn session_fills(&self, el: &crate::schema::Element) -> bool {
        self.session.as_ref().is_some_and(|s| {
            s.spec.soap_headers.iter().any(|h| h.element.name == el.name && h.element.namespace == el.namespace)
        })
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Calls operation `op` with an envelope: through the queue, the breaker and, for
    /// idempotent calls, retries.
    pub async fn call(
        &self,
        op: usize,
        envelope: String,
        forward: Forward,
        idempotent: bool,
    ) -> Result<Reply, GatewayError> {
        let started = std::time::Instant::now();
        let result = self.call_with_retries(op, envelope, forward, idempotent).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(GatewayError::Overloaded { kind, .. }) => {
                crate::telemetry::shed(self.name(), kind.label());
                "shed"
            }
            Err(GatewayError::BackendTimeout { .. }) => "timeout",
            Err(_) => "error",
        };
        self.metrics.call(op, outcome, started.elapsed());
        result
    }

    async fn call_with_retries(
        &self,
        op: usize,
        envelope: String,
        forward: Forward,
        idempotent: bool,
    ) -> Result<Reply, GatewayError> {
        let attempt = Attempt { op, envelope: Bytes::from(envelope), forward };
        if let Some(r) = &self.retries {
            r.deposit();
        }
        let mut n = 0;
        loop {
            let slot = self.gate.enter(self.name()).await?;
            let result = self.attempt(attempt.clone(), slot).await;
            match (result, &self.retries) {
                (Err(e), Some(r)) if idempotent && protect::retryable(&e) && r.allow(n + 1) => {
                    n += 1;
                    tracing::debug!(backend = self.name(), attempt = n, error = %e, "retrying idempotent call");
                    tokio::time::sleep(r.backoff(n)).await;
                }
                (result, _) => return result,
            }
        }
    }

    /// One attempt through the circuit breaker, holding a call slot; in a session, on a
    /// task of its own, which holds the slot: a caller that hangs up must not free it while
    /// the ERP still works on the call, or the ERP would see more than `max_concurrency`.
    async fn attempt(&self, a: Attempt, slot: tokio::sync::OwnedSemaphorePermit) -> Result<Reply, GatewayError> {
        let pass = match &self.breaker {
            Some(b) => Some(b.admit().map_err(|_| GatewayError::Overloaded {
                backend: self.settings.name.clone(),
                kind: OverloadKind::CircuitOpen,
                reason: "the circuit breaker is open after repeated failures".into(),
                retry_after: b.open_for().max(Duration::from_secs(1)),
                status: StatusCode::SERVICE_UNAVAILABLE,
            })?),
            None => None,
        };
        let result = match self.transport.session.clone() {
            None => {
                let _slot = slot;
                self.transport.send(a).await
            }
            Some(s) => {
                let t = self.transport.clone();
                let task = tokio::spawn(async move {
                    let _slot = slot;
                    t.send_in_session(&s, a).await
                });
                task.await.unwrap_or_else(|e| Err(GatewayError::Internal(format!("the session call task failed: {e}"))))
            }
        };
        if let Some(pass) = pass {
            pass.record(result.as_ref().err().is_some_and(protect::breaker_failure));
        }
        result
    }
}
