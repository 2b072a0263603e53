//! The request pipeline for configured routes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use std::time::Instant;

use axum::http::{HeaderMap, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;
use tracing::Instrument;

use super::cache::Cached;
use super::faults;
use super::inputs::{self, RequestValues};
use super::route::{Matched, Route};
use crate::backend::{self, REQUEST_ID};
use crate::config::Gateway;
use crate::error::GatewayError;
use crate::telemetry;
use crate::throttle::{Caller, Outcome};
use crate::translate::decode::{self, DecodeError, Decoded};
use crate::translate::encode;
use crate::translate::fault::FaultDetail;

/// Serves one request against a snapshot; every failure becomes a problem response.
pub async fn handle(gateway: Arc<Gateway>, req: Request) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let request_id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut seen = Seen { limits: Outcome::default(), route: None, client: "anonymous", client_id: None };
    // Everything logged for this request (backend errors, fault details) carries its id.
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut res = match serve(&gateway, req, &mut seen).instrument(span.clone()).await {
        Ok(res) => res,
        Err(e) => span.in_scope(|| e.response()),
    };
    // Rate-limit headers on every answer of a limited route, refusals included.
    seen.limits.apply(res.headers_mut());
    let elapsed = started.elapsed();
    let route = seen.route.as_ref().map_or("unmatched", |r| r.id.as_str());
    let client = seen.client_id.as_deref().filter(|_| seen.client == "registered").unwrap_or(seen.client);
    telemetry::request(route, method.as_str(), res.status().as_u16(), client, elapsed);
    // The access log: one line per request; never a token or header value.
    tracing::info!(
        target: "veneer::access",
        request_id = %request_id,
        route,
        client = seen.client_id.as_deref().unwrap_or("-"),
        status = res.status().as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    res
}

/// What the pipeline learnt about a request, for headers, metrics and the access log.
struct Seen {
    limits: Outcome,
    route: Option<Arc<Route>>,
    /// `registered`, `external` or `anonymous`: bounds the metrics label.
    client: &'static str,
    client_id: Option<String>,
}

async fn serve(gateway: &Gateway, req: Request, seen: &mut Seen) -> Result<Response, GatewayError> {
    let (parts, body) = req.into_parts();
    let Matched { route, params: path } = gateway.routes.find(&parts.method, parts.uri.path())?;
    seen.route = Some(route.clone());
    let limits = &mut seen.limits;
    let mut principal = None;
    let mut caller = None;
    if let Some(auth) = gateway.auth.as_ref().filter(|_| !route.public) {
        let p = auth
            .authenticate(&parts.headers)
            .await
            .inspect_err(|e| telemetry::token_failure("validation", e.reason()))?;
        let registered =
            auth.local.as_ref().is_some_and(|l| l.issuer == p.issuer && l.clients.contains_key(&p.client_id));
        seen.client = if registered { "registered" } else { "external" };
        seen.client_id = Some(p.client_id.clone());
        let key = if registered { p.client_id.clone() } else { format!("{}|{}", p.issuer, p.client_id) };
        caller = Some(Caller { key, registered });
        let missing: Vec<String> = route.scopes.iter().filter(|s| !p.scopes.contains(*s)).cloned().collect();
        if !missing.is_empty() {
            return Err(GatewayError::Forbidden(missing));
        }
        principal = Some(p);
    }
    // Throttle after auth (limits are per caller) and before any translation work: rates
    // first, quotas last, so a refused request never uses up quota.
    if let Some(c) = &caller {
        gateway.throttle.check_client(c, limits).await?;
    }
    if let (None, Some(rl)) = (limits.refused(), &route.limit) {
        rl.check(&route.id, caller.as_ref().map(|c| c.key.as_str()), limits).await?;
    }
    if let Some(c) = &caller {
        gateway.throttle.take_quota(c, limits).await?;
    }
    if let Some(wait) = limits.refused() {
        for policy in limits.refusing() {
            telemetry::rate_limited(policy);
        }
        return Err(GatewayError::RateLimited(wait));
    }
    let query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let body = if route.input.reads_body() {
        Some(read_json(&parts.headers, body, gateway.server.max_body).await?)
    } else {
        None
    };

    let values = RequestValues { path: &path, query: &query, headers: &parts.headers, body: body.as_ref() };
    let input = inputs::assemble(&route.input, &values).unwrap_or(Value::Object(Default::default()));
    let op = route.operation();
    let backend = &route.backend;
    // SOAP headers: those the route fills (they are inputs, and so part of a cache key),
    // after the backend's own (WS-Security, fresh per call).
    let mut route_header = String::new();
    let mut errors = Vec::new();
    for (i, source) in &route.soap_headers {
        if let Some(value) = inputs::assemble(source, &values) {
            if let Err(e) = encode::body_element(&mut route_header, &op.headers[*i], &backend.model.schema, &value) {
                errors.extend(e.into_iter().map(|e| inputs::locate(source, e)));
            }
        }
    }
    let mut header = backend.soap_header().unwrap_or_default();
    header.push_str(&route_header);
    let envelope =
        match encode::envelope(op, &backend.model.schema, &input, (!header.is_empty()).then_some(header.as_str())) {
            Ok(envelope) if errors.is_empty() => envelope,
            Ok(_) => return Err(GatewayError::Validation(errors)),
            Err(e) => {
                errors.extend(e.into_iter().map(|e| inputs::locate(&route.input, e)));
                return Err(GatewayError::Validation(errors));
            }
        };

    let forward = backend::forwarded(&parts.headers);
    let Some(cache) = &route.cache else {
        return Ok(fetch(&route, envelope, forward).await?.response(None));
    };
    let key = cache.key(&input, &route_header, principal.as_deref());
    let mut loaded = false;
    let answer = cache
        .entries
        .try_get_with(key, async {
            loaded = true;
            fetch(&route, envelope, forward).await.map(Arc::new)
        })
        .await
        .map_err(GatewayError::Shared)?;
    telemetry::cache(&route.id, !loaded);
    Ok(answer.response(Some(cache)))
}

/// Calls the backend and turns its answer into the route's JSON, or the right error.
async fn fetch(route: &Route, envelope: String, forward: backend::Forward) -> Result<Cached, GatewayError> {
    let backend = &route.backend;
    let op = route.operation();
    let reply = backend.call(route.operation, envelope, forward, route.idempotent).await?;
    if op.one_way && reply.status.is_success() && reply.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Cached { status: axum::http::StatusCode::ACCEPTED, body: Bytes::new(), stored: Instant::now() });
    }
    let decoded = decode::response_with_faults(&op.output, &op.faults, &backend.model.schema, &reply.body);
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
        Ok(Decoded::Body(value)) => {
            let selected = route.response.iter().try_fold(&value, |v, k| v.get(k)).unwrap_or(&Value::Null);
            let body = serde_json::to_vec(selected)
                .map_err(|e| GatewayError::Internal(format!("serialising response: {e}")))?;
            Ok(Cached { status: route.status, body: Bytes::from(body), stored: Instant::now() })
        }
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

/// Reads and parses a JSON body: 415 for another media type, 413 past the limit, 400 when
/// it does not parse.
async fn read_json(headers: &HeaderMap, body: Body, limit: usize) -> Result<Value, GatewayError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence != "application/json" && !essence.ends_with("+json") {
        return Err(GatewayError::UnsupportedMediaType(if content_type.is_empty() {
            "(none)".into()
        } else {
            content_type.to_string()
        }));
    }
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        // to_bytes fails for over-limit bodies and for broken uploads; tell them apart.
        let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            GatewayError::PayloadTooLarge { limit }
        } else {
            GatewayError::MalformedJson { detail: format!("the body could not be read: {e}") }
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::MalformedJson {
            detail: "this route needs a JSON body, and the request has none".into(),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| GatewayError::MalformedJson { detail: e.to_string() })
}
