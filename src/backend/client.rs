//! The HTTP client for SOAP calls: hyper-util's pooled client over a rustls connector.
//!
//! On the load harness reqwest cost 14 µs of CPU per call more than hyper's own client
//! (README, Performance). What it added on this path (URL handling per call, redirect and
//! proxy policies, a retry layer) Veneer does not use; what a backend needs stays: a connect
//! deadline and a whole-call deadline, TLS with extra roots and a client certificate, HTTP/2
//! by ALPN, pooled connections, and a bounded response body.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Request, StatusCode, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Extra TLS material for a backend.
#[derive(Debug, Default)]
pub struct BackendTls {
    /// CAs to trust besides the system roots.
    pub roots: Vec<CertificateDer<'static>>,
    /// Client certificate chain and key to present.
    pub identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

/// Why a call got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The connect or whole-call deadline passed.
    #[error("the call timed out")]
    Timeout,
    /// Refused, reset, closed early, or TLS failed; the cause chain, for the log.
    #[error("{0}")]
    Unreachable(String),
    /// The answer was larger than allowed.
    #[error("the response exceeded its limit")]
    TooLarge,
}

thread_local! {
    /// Which of a client's pools this thread's calls use.
    static POOL: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Makes this thread's calls use pool `index`: each serving runtime has its own thread and
/// its own pool, so a call's connection is driven by the runtime that waits for it (no
/// wakeup crosses threads).
pub(crate) fn use_pool(index: usize) {
    POOL.with(|p| p.set(index));
}

/// How many pools a client keeps: one per serving runtime, and so also how many serving
/// runtimes the listener starts (one per core).
pub(crate) fn pools() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A pooled client for one backend.
#[derive(Clone)]
pub struct HttpClient {
    clients: Arc<[Client<HttpsConnector<HttpConnector>, Full<Bytes>>]>,
    timeout: Duration,
    max_response: usize,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpClient {{ timeout: {:?}, max_response: {} }}", self.timeout, self.max_response)
    }
}

impl HttpClient {
    /// A client with these deadlines (`timeout` covers connect, send and the whole answer),
    /// trusting the system roots plus `tls.roots`.
    pub fn new(
        tls: BackendTls,
        connect_timeout: Duration,
        timeout: Duration,
        max_response: usize,
    ) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(tls)?)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_idle_timeout(Duration::from_secs(60)).pool_timer(TokioTimer::new()).timer(TokioTimer::new());
        let clients = (0..pools()).map(|_| builder.build(https.clone())).collect();
        Ok(HttpClient { clients, timeout, max_response })
    }

    /// POSTs `body` with `headers` to `uri` and reads the whole answer, within the call
    /// deadline and the response limit.
    pub async fn post(&self, uri: Uri, headers: HeaderMap, body: Bytes) -> Result<(StatusCode, Bytes), CallError> {
        let mut req = Request::post(uri).body(Full::new(body)).map_err(|e| CallError::Unreachable(e.to_string()))?;
        *req.headers_mut() = headers;
        let call = async {
            let client = &self.clients[POOL.with(std::cell::Cell::get) % self.clients.len()];
            let res = client.request(req).await.map_err(|e| classify(&e))?;
            let status = res.status();
            // A declared length over the limit is refused before a byte of the body is read.
            let declared = res.headers().get(axum::http::header::CONTENT_LENGTH);
            let declared = declared.and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > u64::try_from(self.max_response).unwrap_or(u64::MAX)) {
                return Err(CallError::TooLarge);
            }
            let body = Limited::new(res.into_body(), self.max_response).collect().await.map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() { CallError::TooLarge } else { classify(e.as_ref()) }
            })?;
            Ok((status, body.to_bytes()))
        };
        tokio::time::timeout(self.timeout, call).await.unwrap_or(Err(CallError::Timeout))
    }
}

/// A connect timeout is a timeout; anything else is unreachable, with its cause chain (the
/// URL is never part of it: it may carry an API key in its query).
fn classify(e: &(dyn std::error::Error + 'static)) -> CallError {
    let mut reason = String::new();
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
            return CallError::Timeout;
        }
        if !reason.is_empty() {
            reason.push_str(": ");
        }
        reason.push_str(&c.to_string());
        cause = c.source();
    }
    CallError::Unreachable(reason)
}

/// The rustls config: the platform's roots plus the backend's own CAs, and its client
/// certificate when it has one. ALPN is set by the connector (h2, then http/1.1).
fn tls_config(tls: BackendTls) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(tls.roots, provider.clone())
        .map_err(|e| format!("cannot load the trusted roots: {e}"))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    match tls.identity {
        Some((chain, key)) => {
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("the client certificate and key: {e}"))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}
