//! The exchange with the ERP, one step below every way in (configured routes, the delivery
//! workers, telemetry and its lookups): encode the call from a route's inputs, send it
//! through the backend, read and decode the answer into the route's JSON or the right error.

use std::time::Instant;

use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::Value;

use super::Route;
use super::cache::Cached;
use super::inputs::{self, RequestValues};
use crate::backend::{self, faults};
use crate::error::GatewayError;
use crate::telemetry;
use crate::translate::decode::{self, DecodeError, Decoded};
use crate::translate::encode;
use crate::translate::fault::FaultDetail;

/// What the ERP will be asked: the input, the route's SOAP header values, the envelope.
pub(crate) struct Call {
    /// The operation's input as JSON (what a cache key and an idempotency fingerprint hash).
    pub input: Value,
    /// The SOAP header elements the route fills, written out.
    pub route_header: String,
    /// The whole envelope.
    pub envelope: String,
}

/// Assembles the input and encodes the envelope; 422 with every problem located.
pub(crate) fn encode_call(route: &Route, values: &RequestValues<'_>) -> Result<Call, GatewayError> {
    let input = inputs::assemble(&route.input, values).unwrap_or(Value::Object(Default::default()));
    let op = route.operation();
    let backend = &route.backend;
    // SOAP headers the route fills (they are inputs, and so part of a cache key).
    let mut route_header = String::new();
    let mut errors = Vec::new();
    for (i, source) in &route.soap_headers {
        if let Some(value) = inputs::assemble(source, values)
            && let Err(e) = encode::body_element(&mut route_header, &op.headers[*i], &backend.model.schema, &value)
        {
            errors.extend(e.into_iter().map(|e| inputs::locate(source, e)));
        }
    }
    // The backend adds its own (credentials, session) per attempt.
    let header = &route_header;
    match encode::envelope(op, &backend.model.schema, &input, (!header.is_empty()).then_some(header.as_str())) {
        Ok(envelope) if errors.is_empty() => Ok(Call { input, route_header, envelope }),
        Ok(_) => Err(GatewayError::Validation(errors)),
        Err(e) => {
            errors.extend(e.into_iter().map(|e| inputs::locate(&route.input, e)));
            Err(GatewayError::Validation(errors))
        }
    }
}

/// Reads through a GET route with these parameters (path and query alike) and returns the
/// JSON it would answer: the data dictionary's lookups.
pub(crate) async fn read(route: &Route, params: &[(String, String)]) -> Result<Value, GatewayError> {
    let headers = HeaderMap::new();
    let values =
        RequestValues { path: params, query: params, headers: &headers, body: None, delivery_key: "", raw_key: "" };
    let call = encode_call(route, &values)?;
    let answer = fetch(route, call.envelope, backend::Forward::default()).await?;
    serde_json::from_slice(&answer.body).map_err(|e| GatewayError::Internal(format!("reading a lookup: {e}")))
}

/// An ordered route's partition: the route, and the value of its `partition:` source (one
/// order per machine, say) in this request.
pub(crate) fn partition(route: &Route, values: &RequestValues<'_>) -> Option<String> {
    let queued = route.queued.as_ref().filter(|q| q.ordered)?;
    let by = match queued.partition.as_ref().and_then(|p| inputs::assemble(p, values)) {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    Some(format!("{}\u{0}{by}", route.id))
}

/// Calls the backend and turns its answer into the route's JSON, or the right error.
pub(crate) async fn fetch(route: &Route, envelope: String, forward: backend::Forward) -> Result<Cached, GatewayError> {
    let backend = &route.backend;
    let op = route.operation();
    let reply = backend.call(route.operation, envelope, forward, route.idempotent).await?;
    if op.one_way && reply.status.is_success() && reply.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Cached { status: axum::http::StatusCode::ACCEPTED, body: Bytes::new(), stored: Instant::now() });
    }
    // The route's JSON is written straight from the XML, down the `response:` path.
    let decoded = decode::response_json(&op.output, &op.faults, &backend.model.schema, &reply.body, &route.response);
    let bad_response = |title: &'static str, detail: String| GatewayError::BackendResponse {
        backend: backend.name().to_string(),
        title,
        detail,
    };
    match decoded {
        Ok(Decoded::Fault(mut fault)) => {
            telemetry::fault(backend.name(), fault.code_local());
            if fault.detail.is_some() && backend.settings.fault_detail != FaultDetail::Pass {
                tracing::info!(backend = backend.name(), code = %fault.code, detail = %fault.detail.as_ref().map(ToString::to_string).unwrap_or_default(), "SOAP fault detail (not shown to the caller)");
                fault.redact(backend.settings.fault_detail);
            }
            let status = faults::status_for(&route.faults, &backend.settings.faults, &fault);
            Err(GatewayError::Fault { backend: backend.name().to_string(), fault: Box::new(fault), status })
        }
        Ok(Decoded::Body(_)) if !reply.status.is_success() => Err(bad_response(
            "Backend returned an HTTP error",
            format!("HTTP {} with a SOAP body that is not a Fault", reply.status),
        )),
        Ok(Decoded::Body(body)) => Ok(Cached { status: route.status, body: Bytes::from(body), stored: Instant::now() }),
        Err(e) if !reply.status.is_success() && !matches!(e, DecodeError::Doctype) => {
            // The body (an HTML error page, a stack trace) goes to the log, not to the caller.
            let start = String::from_utf8_lossy(&reply.body[..reply.body.len().min(500)]).into_owned();
            tracing::warn!(backend = backend.name(), status = %reply.status, error = %e, body = %start, "backend answered an HTTP error without a SOAP fault");
            Err(bad_response(
                "Backend returned an HTTP error",
                format!(
                    "HTTP {} without a SOAP Fault; the request id finds the details in the gateway log",
                    reply.status
                ),
            ))
        }
        Err(e) => Err(bad_response(e.title(), e.to_string())),
    }
}
