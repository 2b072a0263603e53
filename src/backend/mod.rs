//! SOAP backends: one pooled HTTP client each, with timeouts and upstream credentials.
//!
//! This module only moves bytes; it never interprets a response body. Transport failures
//! are classified here (timeout → 504, refused/reset → 502) so the pipeline does not have to.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use bytes::Bytes;

use crate::error::GatewayError;
use crate::pipeline::faults::FaultRule;
use crate::schema::{Operation, ServiceModel};
use crate::translate::encode;

pub mod credentials;

pub use credentials::{BasicAuth, Credentials};

/// Header carrying the request id to the backend (and back in responses).
pub const REQUEST_ID: &str = "x-request-id";

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
    /// What the backend is shown to prove who Veneer is.
    pub credentials: Credentials,
    /// Fault → status rules for every route on this backend.
    pub faults: Vec<FaultRule>,
}

/// A SOAP backend: its settings, its operation model and its connection pool.
#[derive(Debug)]
pub struct Backend {
    /// Settings.
    pub settings: BackendSettings,
    /// Operations and types from its WSDL.
    pub model: ServiceModel,
    client: reqwest::Client,
}

/// The backend's raw answer.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Response body.
    pub body: Bytes,
}

impl Backend {
    /// Builds the backend and its client pool.
    pub fn new(settings: BackendSettings, model: ServiceModel) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            // Backends are addressed directly; a proxy from the environment must not reroute them.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        Ok(Backend { settings, model, client })
    }

    /// The SOAP header this backend needs on every call (WS-Security), rendered fresh.
    pub fn soap_header(&self) -> Option<String> {
        self.settings.credentials.ws_security.as_ref().map(|w| w.header())
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Posts an envelope for `op` and returns the raw reply.
    pub async fn call(
        &self,
        op: &Operation,
        envelope: String,
        request_id: Option<&HeaderValue>,
    ) -> Result<Reply, GatewayError> {
        let (content_type, soap_action) = encode::http_headers(op);
        let mut req = self
            .client
            .post(self.settings.url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(envelope);
        if let Some(action) = soap_action {
            req = req.header("SOAPAction", action);
        }
        if let Some(id) = request_id {
            req = req.header(REQUEST_ID, id.clone());
        }
        let creds = &self.settings.credentials;
        if let Some(b) = &creds.basic {
            req = req.basic_auth(&b.username, Some(&b.password));
        }
        if let Some(o) = &creds.oauth2 {
            let token = o
                .token()
                .await
                .map_err(|reason| GatewayError::BackendUnreachable { backend: self.settings.name.clone(), reason })?;
            req = req.bearer_auth(token);
        }
        let classify = |e: reqwest::Error| self.transport_error(e);
        let res = req.send().await.map_err(classify)?;
        let status = res.status();
        let body = res.bytes().await.map_err(classify)?;
        Ok(Reply { status, body })
    }

    fn transport_error(&self, e: reqwest::Error) -> GatewayError {
        let backend = self.settings.name.clone();
        if e.is_timeout() {
            return GatewayError::BackendTimeout { backend, timeout_ms: self.settings.timeout.as_millis() };
        }
        // The source chain names the cause (refused, reset, closed before a full response).
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason = format!("{reason}: {s}");
            source = s.source();
        }
        GatewayError::BackendUnreachable { backend, reason }
    }
}
