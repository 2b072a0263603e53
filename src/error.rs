//! The gateway's one error type and the one place it becomes `application/problem+json`
//! (RFC 9457).
//!
//! Each variant records who failed (the caller, the backend, the gateway) so the HTTP
//! status follows from the variant alone. Handlers return `Result<_, GatewayError>` and
//! never build error responses themselves.

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

pub use crate::translate::FieldError;
use crate::translate::fault::Fault;

/// Most input problems listed in one 422 answer; the detail says how many more there are.
pub const MAX_LISTED_ERRORS: usize = 100;

/// Media type of every error body.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The body is not JSON.
    #[error("malformed JSON: {detail}")]
    MalformedJson {
        /// Parser message with line and column.
        detail: String,
    },
    /// Input values do not fit the operation's schema.
    #[error("{} invalid input value(s)", .0.len())]
    Validation(Vec<FieldError>),
    /// Every reading of a telemetry batch was refused by the data dictionary.
    #[error("{} reading(s) rejected", .0.len())]
    ReadingsRejected(Vec<FieldError>),
    /// The body exceeds `server.max_body`.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// A body arrived with a media type other than JSON.
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    /// Nothing is here: no route has this path, or the resource asked for does not exist
    /// (the text says which, as a sentence).
    #[error("{0}")]
    RouteNotFound(String),
    /// The path exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed(Vec<Method>),
    /// The backend answered with a SOAP Fault, mapped to `status`.
    #[error("SOAP fault from backend {backend}: {}", fault.reason)]
    Fault {
        /// Backend name.
        backend: String,
        /// The parsed fault (boxed: it is large and rare).
        fault: Box<Fault>,
        /// Status chosen by the fault mapping.
        status: StatusCode,
    },
    /// The backend did not answer in time.
    #[error("backend {backend} did not answer within {timeout_ms} ms")]
    BackendTimeout {
        /// Backend name.
        backend: String,
        /// The timeout that expired.
        timeout_ms: u128,
    },
    /// The backend could not be reached, or dropped the connection.
    #[error("backend {backend} is unreachable")]
    BackendUnreachable {
        /// Backend name.
        backend: String,
        /// Refused, reset, DNS… (for the log, never shown to callers).
        reason: String,
    },
    /// The backend answered, but not with a usable SOAP response.
    #[error("backend {backend} sent an unusable response: {title}: {detail}")]
    BackendResponse {
        /// Backend name.
        backend: String,
        /// Short, stable summary (the problem title).
        title: &'static str,
        /// Specifics.
        detail: String,
    },
    /// Veneer could not get its own credentials for the backend (the upstream OAuth2 token
    /// endpoint failed): not the ERP's fault, so neither retried nor counted by its breaker.
    #[error("backend {backend}: the upstream credentials could not be obtained")]
    UpstreamAuth {
        /// Backend name.
        backend: String,
        /// The token endpoint's failure (for the log only).
        reason: String,
    },
    /// The ERP refused the gateway's session login (or the last one failed and the next is
    /// not due yet): the caller's request never reached it.
    #[error("backend {backend}: the gateway could not log in to the ERP")]
    BackendLogin {
        /// Backend name.
        backend: String,
        /// What the ERP answered, secrets blanked out (for the log only).
        reason: String,
        /// When a login may be tried again (the backoff left), for `Retry-After`.
        retry_after: Option<std::time::Duration>,
    },
    /// No valid bearer token.
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    /// A valid token without the scopes the route needs.
    #[error("the token lacks the scope(s) {}", .0.join(" "))]
    Forbidden(Vec<String>),
    /// A rate limit or quota refused the request.
    #[error("rate limit exceeded; retry after {} s", ceil_secs(*.0))]
    RateLimited(std::time::Duration),
    /// The shared limiter (Redis) is unreachable and the policy is to refuse.
    #[error("the shared rate limiter is unavailable")]
    LimiterUnavailable,
    /// The backend is protected right now: queue full, circuit open, or it said it is busy.
    #[error("backend {backend} is overloaded: {reason}")]
    Overloaded {
        /// Backend name.
        backend: String,
        /// Which protection answered (retries, the breaker and metrics read this).
        kind: OverloadKind,
        /// What happened, for people.
        reason: String,
        /// Suggested wait.
        retry_after: std::time::Duration,
        /// 503, or 429 for busy faults configured so.
        status: StatusCode,
    },
    /// The queue's store cannot take writes right now (disk full, I/O error).
    #[error("the delivery store is unavailable")]
    StoreUnavailable,
    /// The queue holds as much as it is allowed to (`delivery.max_items`/`max_bytes`, or a
    /// stream's `max_len`): new writes wait until deliveries drain it.
    #[error("the delivery queue is full ({0}); retry once the ERP has taken some of it")]
    QueueFull(String),
    /// A CORS preflight from an origin, for a method or with headers the policy does not
    /// allow: answered without any CORS header, so the browser blocks the call.
    #[error("{0}")]
    CorsRefused(String),
    /// Redis does not fsync every write, so a 202 could be lost; queued routes refuse.
    #[error(
        "the delivery queue's Redis does not persist every write (it needs appendonly yes and appendfsync always), so no write is accepted for later delivery"
    )]
    QueueNotDurable,
    /// The request conflicts with the resource's state.
    #[error("{0}")]
    Conflict(String),
    /// `Idempotency-Key` is required on this route.
    #[error("this route needs an Idempotency-Key header")]
    IdempotencyKeyRequired,
    /// A request with this `Idempotency-Key` is still being processed.
    #[error("a request with this Idempotency-Key is still being processed; retry later")]
    IdempotencyInFlight,
    /// This `Idempotency-Key` was used with another payload.
    #[error("this Idempotency-Key was already used with a different request payload")]
    IdempotencyMismatch,
    /// An error shared by coalesced requests (one backend call, several waiters).
    #[error("{0}")]
    Shared(std::sync::Arc<GatewayError>),
    /// A bug or a panic caught at the edge; never expected.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Which protection refused a backend call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverloadKind {
    /// Every call slot is busy and the waiting room is full (or the wait ran out).
    Queue,
    /// The circuit breaker is open after repeated failures.
    CircuitOpen,
    /// The ERP answered with a fault a `busy_faults` rule names.
    Busy,
}

impl OverloadKind {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            OverloadKind::Queue => "queue",
            OverloadKind::CircuitOpen => "circuit_open",
            OverloadKind::Busy => "busy",
        }
    }
}

/// The RFC 9457 body.
#[derive(Debug, Serialize)]
pub(crate) struct Problem {
    /// URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary, the same for every occurrence of the type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// This occurrence.
    pub detail: String,
    /// Input problems, each with a pointer or parameter.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The SOAP fault, for fault problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<Value>,
    /// The backend involved, for backend problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

fn problem_type(slug: &str) -> String {
    format!("urn:veneer:problem:{slug}")
}

impl GatewayError {
    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::MalformedJson { .. } => StatusCode::BAD_REQUEST,
            GatewayError::Validation(_) | GatewayError::ReadingsRejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GatewayError::RouteNotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::Fault { status, .. } => *status,
            GatewayError::BackendTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::BackendUnreachable { .. }
            | GatewayError::BackendResponse { .. }
            | GatewayError::UpstreamAuth { .. }
            | GatewayError::BackendLogin { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::LimiterUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Overloaded { status, .. } => *status,
            GatewayError::Shared(inner) => inner.status(),
            GatewayError::StoreUnavailable | GatewayError::QueueFull(_) | GatewayError::QueueNotDurable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::Conflict(_) | GatewayError::IdempotencyInFlight => StatusCode::CONFLICT,
            GatewayError::CorsRefused(_) => StatusCode::FORBIDDEN,
            GatewayError::IdempotencyKeyRequired => StatusCode::BAD_REQUEST,
            GatewayError::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            GatewayError::Unauthorized(AuthError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden(_) => StatusCode::FORBIDDEN,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem document for this error.
    pub(crate) fn to_problem(&self) -> Problem {
        if let GatewayError::Shared(inner) = self {
            return inner.to_problem();
        }
        let status = self.status();
        let mut p = Problem {
            kind: String::new(),
            title: String::new(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors: Vec::new(),
            fault: None,
            backend: None,
        };
        let (slug, title) = match self {
            GatewayError::MalformedJson { .. } => ("malformed-json", "Request body is not valid JSON"),
            GatewayError::Validation(errors) => {
                // A hostile body can hold a million wrong keys: list a bounded number.
                p.errors = errors.iter().take(MAX_LISTED_ERRORS).cloned().collect();
                p.detail = if errors.len() > MAX_LISTED_ERRORS {
                    format!(
                        "{} input value(s) do not match the operation's schema; the first {MAX_LISTED_ERRORS} are listed in errors, {} more are not",
                        errors.len(),
                        errors.len() - MAX_LISTED_ERRORS
                    )
                } else {
                    format!("{} input value(s) do not match the operation's schema; see errors", errors.len())
                };
                ("validation", "Invalid input")
            }
            GatewayError::ReadingsRejected(errors) => {
                p.errors = errors.iter().take(MAX_LISTED_ERRORS).cloned().collect();
                let listed = if errors.len() > MAX_LISTED_ERRORS {
                    format!("the first {MAX_LISTED_ERRORS} are listed in errors")
                } else {
                    "each is listed in errors with a pointer and the reason".to_string()
                };
                p.detail = format!("none of the {} reading(s) was accepted; {listed}", errors.len());
                ("invalid-readings", "Invalid readings")
            }
            GatewayError::PayloadTooLarge { .. } => ("payload-too-large", "Request body too large"),
            GatewayError::UnsupportedMediaType(got) => {
                p.detail = format!("send the body as application/json (got {got:?})");
                ("unsupported-media-type", "Unsupported media type")
            }
            GatewayError::RouteNotFound(_) => ("not-found", "No such route"),
            GatewayError::MethodNotAllowed(allow) => {
                p.detail =
                    format!("this path accepts {}", allow.iter().map(Method::as_str).collect::<Vec<_>>().join(", "));
                ("method-not-allowed", "Method not allowed")
            }
            GatewayError::Fault { backend, fault, .. } => {
                p.detail = fault.reason.clone();
                p.fault = Some(fault.to_json());
                p.backend = Some(backend.clone());
                ("soap-fault", "The backend rejected the request")
            }
            GatewayError::BackendTimeout { backend, .. } => {
                p.backend = Some(backend.clone());
                ("backend-timeout", "Backend timed out")
            }
            GatewayError::BackendUnreachable { backend, .. } => {
                p.backend = Some(backend.clone());
                ("backend-unreachable", "Backend unreachable")
            }
            GatewayError::BackendResponse { backend, title, detail } => {
                p.backend = Some(backend.clone());
                p.detail = detail.clone();
                ("backend-response", *title)
            }
            GatewayError::UpstreamAuth { backend, .. } => {
                p.backend = Some(backend.clone());
                ("upstream-auth", "Backend credentials unavailable")
            }
            GatewayError::BackendLogin { backend, .. } => {
                p.backend = Some(backend.clone());
                ("backend-login", "Backend login failed")
            }
            GatewayError::RateLimited(_) => ("rate-limited", "Too many requests"),
            GatewayError::LimiterUnavailable => ("limiter-unavailable", "Rate limiter unavailable"),
            GatewayError::Overloaded { backend, .. } => {
                p.backend = Some(backend.clone());
                ("backend-overloaded", "Backend overloaded")
            }
            GatewayError::Shared(_) => ("internal", "Internal error"), // unreachable: delegated above
            GatewayError::StoreUnavailable => ("store-unavailable", "Delivery store unavailable"),
            GatewayError::QueueFull(_) => ("queue-full", "Delivery queue full"),
            GatewayError::CorsRefused(_) => ("cors-refused", "CORS preflight refused"),
            GatewayError::QueueNotDurable => ("queue-not-durable", "Delivery queue not durable"),
            GatewayError::Conflict(_) => ("conflict", "Conflict"),
            GatewayError::IdempotencyKeyRequired => ("idempotency-key-required", "Idempotency-Key required"),
            GatewayError::IdempotencyInFlight => ("idempotency-key-in-flight", "Request in progress"),
            GatewayError::IdempotencyMismatch => ("idempotency-key-reused", "Idempotency-Key reused"),
            GatewayError::Unauthorized(AuthError::Unavailable(_)) => ("auth-unavailable", "Token check unavailable"),
            GatewayError::Unauthorized(_) => ("unauthorized", "Authentication required"),
            GatewayError::Forbidden(_) => ("forbidden", "Insufficient scope"),
            GatewayError::Internal(_) => {
                // Internals stay in the log, not in the response.
                p.detail = "the gateway hit an unexpected condition; the request id identifies it in the logs".into();
                ("internal", "Internal error")
            }
        };
        p.kind = problem_type(slug);
        p.title = title.to_string();
        p
    }
}

impl GatewayError {
    /// The RFC 6750 `WWW-Authenticate` challenge for 401 and 403.
    fn challenge(&self) -> Option<HeaderValue> {
        let quote = |s: &str| s.replace(['"', '\\'], "'");
        let value = match self {
            GatewayError::Unauthorized(AuthError::Missing) => "Bearer realm=\"veneer\"".to_string(),
            GatewayError::Unauthorized(AuthError::Unavailable(_)) => return None,
            GatewayError::Unauthorized(e) => {
                format!(
                    "Bearer realm=\"veneer\", error=\"invalid_token\", error_description=\"{}\"",
                    quote(&e.to_string())
                )
            }
            GatewayError::Forbidden(scopes) => {
                format!("Bearer realm=\"veneer\", error=\"insufficient_scope\", scope=\"{}\"", quote(&scopes.join(" ")))
            }
            _ => return None,
        };
        HeaderValue::from_str(&value).ok()
    }
}

/// A problem response for a status produced outside the pipeline (timeouts, panics…).
pub(crate) fn bare_status_problem(status: StatusCode) -> Response {
    let problem = Problem {
        kind: problem_type(&status.as_u16().to_string()),
        title: status.canonical_reason().unwrap_or("Error").to_string(),
        status: status.as_u16(),
        detail: match status {
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => {
                "the request took longer than the gateway's request timeout".into()
            }
            StatusCode::PAYLOAD_TOO_LARGE => "the request body exceeds the configured limit".into(),
            _ => status.canonical_reason().unwrap_or("error").to_string(),
        },
        errors: Vec::new(),
        fault: None,
        backend: None,
    };
    problem_response(status, &problem)
}

fn problem_response(status: StatusCode, problem: &Problem) -> Response {
    let body = serde_json::to_vec(problem).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = (status, body).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    res
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        self.response()
    }
}

impl GatewayError {
    /// The problem response, with `Retry-After`, `WWW-Authenticate` or `Allow` as fitting.
    pub fn response(&self) -> Response {
        if let GatewayError::Shared(inner) = self {
            return inner.response();
        }
        let status = self.status();
        if status.is_server_error() {
            // The full error (causes, backend reasons) goes to the log; callers get the problem.
            tracing::warn!(error = ?self, "request failed");
        }
        let mut res = problem_response(status, &self.to_problem());
        let retry_after = match self {
            GatewayError::RateLimited(d)
            | GatewayError::Overloaded { retry_after: d, .. }
            | GatewayError::BackendLogin { retry_after: Some(d), .. } => Some(ceil_secs(*d).max(1)),
            // A full queue drains at the ERP's pace: a second would only be tried again.
            GatewayError::QueueFull(_) | GatewayError::QueueNotDurable => Some(30),
            GatewayError::LimiterUnavailable
            | GatewayError::StoreUnavailable
            | GatewayError::IdempotencyInFlight
            | GatewayError::Unauthorized(AuthError::Unavailable(_)) => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.challenge() {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let GatewayError::MethodNotAllowed(allow) = self {
            let list = allow.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
            if let Ok(v) = HeaderValue::from_str(&list) {
                res.headers_mut().insert(header::ALLOW, v);
            }
        }
        res
    }
}

/// Why a request is not authenticated; the text goes into `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header (RFC 6750 §3.1: no error code in the challenge).
    #[error("the request carries no bearer token")]
    Missing,
    /// Anything wrong with the token.
    #[error("{detail}")]
    Invalid {
        /// A bounded label for metrics (`expired`, `audience`, `signature`, …).
        reason: &'static str,
        /// What is wrong, for `error_description`.
        detail: String,
    },
    /// The token could not be checked right now (introspection busy or unreachable): 503.
    #[error("{0}")]
    Unavailable(String),
}

impl AuthError {
    /// A bounded reason for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Unavailable(_) => "unavailable",
            AuthError::Invalid { reason, .. } => reason,
        }
    }
}

/// Seconds, rounded up, for `Retry-After`.
pub(crate) fn ceil_secs(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
