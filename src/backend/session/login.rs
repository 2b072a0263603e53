//! The calls a session makes itself: login (capturing values from the answer) and logout.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::{Session, SessionCall, SessionSpec};
use crate::backend::{Link, post};
use crate::error::GatewayError;
use crate::translate::decode::{self, Decoded};
use crate::translate::encode;

/// What a login found out: the captured values and how long the session may sit idle.
pub(super) struct LoggedIn {
    pub values: BTreeMap<String, String>,
    pub idle: Duration,
}

/// Why a login failed.
pub(super) enum LoginError {
    /// The ERP could not be reached or timed out: not the credentials' fault, so no login
    /// backoff (the breaker and the caller's retries deal with it).
    Transport(GatewayError),
    /// The ERP answered, and not with a session: for the log (secrets blanked out by the
    /// caller), never for a caller.
    Refused(String),
}

/// Logs in.
pub(super) async fn login(spec: &SessionSpec, link: &Link) -> Result<LoggedIn, LoginError> {
    let call = &spec.login;
    let url = call.url.as_ref().unwrap_or(&link.settings.url);
    let answer = send(call, link, url, String::new(), &[]).await?;
    let mut values = BTreeMap::new();
    for (name, path) in &spec.capture {
        match at(&answer, path) {
            Some(v) => {
                values.insert(name.clone(), v);
            }
            None => {
                return Err(LoginError::Refused(format!(
                    "the login answer has no value at {} (capture {name})",
                    path.join(".")
                )));
            }
        }
    }
    let mut idle = spec.idle;
    if let Some(path) = &spec.expires_in {
        match at(&answer, path).and_then(|s| s.trim().parse::<f64>().ok()) {
            // The ERP's inactivity timeout, with a margin so no call goes out on a session
            // about to lapse.
            Some(secs) if secs.is_finite() && secs > 0.0 => {
                idle = idle.min(Duration::from_secs_f64((secs * 0.9).min(spec.idle.as_secs_f64())));
            }
            _ => tracing::warn!(
                backend = %link.settings.name,
                path = %path.join("."),
                "the login answer gives no usable expires_in; the configured idle time applies"
            ),
        }
    }
    Ok(LoggedIn { values, idle })
}

/// Logs a session out; failures are logged, not returned (the ERP forgets it in time).
pub(super) async fn logout(spec: &SessionSpec, link: &Link, session: &Session) {
    let Some(call) = &spec.logout else { return };
    let mut header = String::new();
    for h in call.headers.iter().filter(|h| h.declared_by(call.operation())) {
        if encode::body_element(&mut header, &h.element, &call.model.schema, &h.value.render(session.values())).is_err()
        {
            tracing::warn!(backend = %link.settings.name, header = %h.element.name, "the logout header does not fit its element; logging out without it");
        }
    }
    let session_url = spec.url.as_ref().and_then(|t| reqwest::Url::parse(&t.render(session.values())).ok());
    let url = call.url.as_ref().or(session_url.as_ref()).unwrap_or(&link.settings.url);
    let http = spec.http_headers(session).unwrap_or_default();
    match send(call, link, url, header, &http).await {
        Ok(_) => tracing::debug!(backend = %link.settings.name, "session logged out"),
        Err(LoginError::Refused(e)) => {
            tracing::info!(backend = %link.settings.name, error = %spec.redact(&e), "logout refused")
        }
        Err(LoginError::Transport(e)) => tracing::info!(backend = %link.settings.name, error = %e, "logout failed"),
    }
}

/// Sends a session call and decodes its answer; a fault or an unusable answer is an error.
async fn send(
    call: &SessionCall,
    link: &Link,
    url: &reqwest::Url,
    header: String,
    http: &[(axum::http::HeaderName, axum::http::HeaderValue)],
) -> Result<Value, LoginError> {
    let op = call.operation();
    let refused = LoginError::Refused;
    let envelope = encode::envelope(op, &call.model.schema, &call.input, (!header.is_empty()).then_some(&header))
        .map_err(|e| refused(format!("the {} input does not fit the operation: {} problem(s)", op.name, e.len())))?;
    let reply = post(link, url, op, Bytes::from(envelope), http, Vec::new()).await.map_err(|e| match e {
        GatewayError::BackendUnreachable { .. } | GatewayError::BackendTimeout { .. } => LoginError::Transport(e),
        other => refused(other.to_string()),
    })?;
    match decode::response_with_faults(&op.output, &op.faults, &call.model.schema, &reply.body) {
        Ok(Decoded::Body(v)) if reply.status.is_success() => Ok(v),
        Ok(Decoded::Body(_)) => {
            Err(refused(format!("{} answered HTTP {} without a SOAP fault", op.name, reply.status)))
        }
        Ok(Decoded::Fault(f)) => Err(refused(format!("{} was refused: {} ({})", op.name, f.reason, f.code))),
        Err(e) => Err(refused(format!("{} answered something unusable: {e}", op.name))),
    }
}

/// The text at a key path of a decoded answer (strings and numbers; `null` is absent).
fn at(answer: &Value, path: &[String]) -> Option<String> {
    match path.iter().try_fold(answer, |v, k| v.get(k))? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_paths_read_strings_and_numbers_only() {
        let v =
            serde_json::json!({"result": {"sessionId": "S", "userInfo": {"sessionSecondsValid": 7200}, "empty": ""}});
        let p = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
        assert_eq!(at(&v, &p("result.sessionId")).as_deref(), Some("S"));
        assert_eq!(at(&v, &p("result.userInfo.sessionSecondsValid")).as_deref(), Some("7200"));
        assert_eq!(at(&v, &p("result.empty")), None);
        assert_eq!(at(&v, &p("result.userInfo")), None);
        assert_eq!(at(&v, &p("result.missing")), None);
    }
}
