//! ERP sessions: a backend whose ERP wants a login (SAP Business One's `Login` → SessionID in
//! `MsgHeader`, Salesforce's `login()` → `sessionId` and `serverUrl`) gets a pool of
//! sessions. A call leases one, carries its values (a SOAP header, HTTP headers, the
//! endpoint), and when the ERP answers that the session expired, the session is retired,
//! a new one logged in and the call sent once more: the ERP refused it before doing
//! anything, so this holds for writes too.
//!
//! Captured values are secrets: they are never logged, counted or shown ([`Session`]'s
//! `Debug` prints none of them).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue};
use serde_json::Value;

use crate::backend::faults::FaultRule;
use crate::schema::{Element, Operation, ServiceModel};
use crate::translate::decode::{self, Decoded};
use crate::translate::encode;

mod endpoints;
mod login;
mod pool;
pub mod template;

pub use endpoints::Endpoints;
pub use pool::Lease;
pub use pool::SessionPool;
use template::{Template, ValueTemplate};

/// A call the session makes itself (login, logout): compiled once.
pub struct SessionCall {
    /// The WSDL the operation is in (the backend's, or the login WSDL).
    pub model: Arc<ServiceModel>,
    /// The operation's index in `model`.
    pub op: usize,
    /// Where it goes; `None`: where the backend's calls go (the session's URL, if any).
    pub url: Option<reqwest::Url>,
    /// Its input, secrets included.
    pub input: Value,
    /// Its SOAP headers (logout: the session's own values).
    pub headers: Vec<HeaderSpec>,
}

impl fmt::Debug for SessionCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The input holds the password: only its operation is shown.
        write!(f, "SessionCall {{ operation: {:?} }}", self.operation().name)
    }
}

impl SessionCall {
    /// The operation.
    pub fn operation(&self) -> &Operation {
        &self.model.operations[self.op]
    }
}

/// A SOAP header element a session fills.
#[derive(Debug, Clone)]
pub struct HeaderSpec {
    /// The element, as a WSDL operation declares it.
    pub element: Element,
    /// Its content, with `{session.NAME}` placeholders.
    pub value: ValueTemplate,
}

impl HeaderSpec {
    /// Does `op` declare this header element?
    pub(crate) fn declared_by(&self, op: &Operation) -> bool {
        op.headers.iter().any(|h| h.name == self.element.name && h.namespace == self.element.namespace)
    }
}

/// A backend's compiled `session:`.
pub struct SessionSpec {
    /// The login call.
    pub login: SessionCall,
    /// The logout call, if the ERP has one.
    pub logout: Option<SessionCall>,
    /// Name → key path in the login answer.
    pub capture: Vec<(String, Vec<String>)>,
    /// Key path of the session's lifetime in seconds, when the ERP gives it.
    pub expires_in: Option<Vec<String>>,
    /// SOAP header elements filled on the backend's calls.
    pub soap_headers: Vec<HeaderSpec>,
    /// For each operation of the backend, the indexes of `soap_headers` it declares.
    pub headers_by_op: Vec<Vec<usize>>,
    /// HTTP headers sent on every call.
    pub http_headers: Vec<(HeaderName, Template)>,
    /// Endpoint for calls, from captured values.
    pub url: Option<Template>,
    /// Where that endpoint may point (the backend's origin, `allowed_hosts`).
    pub endpoints: Endpoints,
    /// Sessions kept at most.
    pub size: usize,
    /// One call at a time per session.
    pub exclusive: bool,
    /// Retire a session unused this long.
    pub idle: Duration,
    /// Retire a session this long after its login.
    pub lifetime: Duration,
    /// Faults meaning "this session is no longer valid".
    pub expired: Vec<FaultRule>,
    /// First wait after a failed login; doubles up to `MAX_LOGIN_BACKOFF`.
    pub login_backoff: Duration,
    /// Configured secret values, blanked out of anything logged.
    pub secrets: Vec<String>,
    /// A digest of every setting, secrets included: a reload keeps the pool (and its
    /// logged-in sessions) only while it is unchanged.
    pub fingerprint: String,
}

impl fmt::Debug for SessionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionSpec")
            .field("login", &self.login)
            .field("size", &self.size)
            .field("exclusive", &self.exclusive)
            .field("idle", &self.idle)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// Longest wait between failed logins.
pub(crate) const MAX_LOGIN_BACKOFF: Duration = Duration::from_secs(300);

/// Fault reasons that mean "session expired or invalid" in SAP B1 ("Invalid session or
/// session already timeout"), Salesforce ("INVALID_SESSION_ID: Invalid Session ID found in
/// SessionHeader") and Siebel ("Session Token is missing or invalid or has expired").
/// Anchored on the word session (with an optional "id" or "token") next to the verdict, so
/// a business fault such as "Training session 42 is invalid" does not match.
pub(crate) const DEFAULT_EXPIRED_REASON: &str = r"(?i)\b(invalid|expired|unknown) session\b|\bsession( ?id| token)?( is| has| was)?( already)?( been)? (expired|timed? ?out|invalid|not valid|unknown|missing)\b";

/// Salesforce's fault code for an expired session.
pub(crate) const DEFAULT_EXPIRED_CODE: &str = "INVALID_SESSION_ID";

impl SessionSpec {
    /// Is `body` (the ERP's answer to operation `op`) a fault saying the session is gone?
    pub(crate) fn is_expired(&self, model: &ServiceModel, op: usize, body: &[u8]) -> bool {
        if self.expired.is_empty() || !body.windows(5).any(|w| w == b"Fault") {
            return false;
        }
        match decode::response(&model.operations[op].output, &model.schema, body) {
            Ok(Decoded::Fault(fault)) => self.expired.iter().any(|r| r.matches(&fault)),
            _ => false,
        }
    }

    /// `text` with every configured secret blanked out (an ERP may echo its input).
    pub(crate) fn redact(&self, text: &str) -> String {
        self.secrets.iter().filter(|s| s.len() >= 3).fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
    }
}

/// What a session adds to one attempt: SOAP header elements, HTTP headers, the endpoint.
pub(crate) struct Rendered {
    /// SOAP header elements for the operation (may be empty).
    pub soap_header: String,
    /// HTTP headers, marked sensitive.
    pub http: Vec<(HeaderName, HeaderValue)>,
    /// The endpoint the session names, if any.
    pub url: Option<reqwest::Url>,
}

impl SessionSpec {
    /// Renders `session`'s values for operation `op` of the backend whose current model is
    /// `model` (the spec is the current snapshot's, so a reload that changed the WSDL or
    /// the JSON naming is followed while the logged-in session carries on). Errors name
    /// the value, never its content.
    pub(crate) fn render(&self, model: &ServiceModel, op: usize, session: &Session) -> Result<Rendered, String> {
        let values = &session.values;
        let mut soap_header = String::new();
        for k in self.headers_by_op.get(op).into_iter().flatten() {
            let h = &self.soap_headers[*k];
            encode::body_element(&mut soap_header, &h.element, &model.schema, &h.value.render(values)).map_err(
                |e| {
                    let what: Vec<&str> = e.iter().map(|e| e.detail.as_str()).collect();
                    format!("the captured values do not fit SOAP header {}: {}", h.element.name, what.join("; "))
                },
            )?;
        }
        let http = self.http_headers(session)?;
        let url = match &self.url {
            None => None,
            Some(t) => match reqwest::Url::parse(&t.render(values)) {
                Ok(u) => {
                    self.endpoints.check(&u)?;
                    Some(u)
                }
                Err(_) => return Err("the session's url is not an http(s) URL".into()),
            },
        };
        Ok(Rendered { soap_header, http, url })
    }

    /// The HTTP headers a session sends, marked sensitive.
    pub(crate) fn http_headers(&self, session: &Session) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        let mut http = Vec::with_capacity(self.http_headers.len());
        for (name, t) in &self.http_headers {
            let mut v = HeaderValue::from_str(&t.render(&session.values))
                .map_err(|_| format!("a captured value cannot go in HTTP header {name}"))?;
            v.set_sensitive(true);
            http.push((name.clone(), v));
        }
        Ok(http)
    }
}

/// A logged-in session: the values captured from the login answer.
pub struct Session {
    /// Distinguishes a session from the one that replaced it in the same slot.
    pub generation: u64,
    values: BTreeMap<String, String>,
    expires: Instant,
    idle: Duration,
    last_used: Mutex<Instant>,
    /// A call succeeded in it (a session refused at once is a bad login, not an expiry).
    proven: AtomicBool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the captured values: a session id is as good as a password.
        write!(f, "Session {{ generation: {}, values: {} captured }}", self.generation, self.values.len())
    }
}

impl Session {
    /// A session with the values captured at login, living at most `lifetime` and idle
    /// at most `idle`.
    pub(crate) fn new(
        generation: u64,
        values: BTreeMap<String, String>,
        lifetime: Duration,
        idle: Duration,
    ) -> Session {
        let now = Instant::now();
        Session {
            generation,
            values,
            expires: now + lifetime,
            idle,
            last_used: Mutex::new(now),
            proven: AtomicBool::new(false),
        }
    }

    /// Still fit for a call at `now`: within its lifetime and not idle too long.
    pub fn usable(&self, now: Instant) -> bool {
        let last = *self.last_used.lock().unwrap_or_else(|p| p.into_inner());
        now < self.expires && now.saturating_duration_since(last) < self.idle
    }

    /// Records a call the ERP accepted in this session.
    pub(crate) fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.proven.store(true, Ordering::Relaxed);
    }

    /// Has the ERP accepted a call in this session yet?
    pub(crate) fn proven(&self) -> bool {
        self.proven.load(Ordering::Relaxed)
    }

    /// Captured values, for the logout call's templates.
    pub(crate) fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }
}

#[cfg(test)]
mod tests {
    use regex::Regex;

    #[test]
    fn the_default_expiry_pattern_knows_the_erps_and_not_business_faults() {
        let re = Regex::new(super::DEFAULT_EXPIRED_REASON).expect("regex");
        for expired in [
            "Invalid session or session already timed out.",
            "INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session",
            "Error: Inbound SOAP Message - Session Token is missing or invalid or has expired",
            "Session expired",
            "The session has expired",
            "Session ID is invalid",
            "session already timeout",
        ] {
            assert!(re.is_match(expired), "{expired}");
        }
        for other in ["Training session 42 is invalid", "Item A00001 does not exist", "Invalid item code"] {
            assert!(!re.is_match(other), "{other}");
        }
    }
}
