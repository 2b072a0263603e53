//! `POST /telemetry`: many readings in one request (a JSON array, one object, or NDJSON),
//! each checked against the data dictionary and answered one by one: 202 when any was
//! accepted (the body lists every reading's fate), 422 when none was, 503 when the store
//! could take none.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::front::{Authorized, Telemetry};
use crate::backend::REQUEST_ID;
use crate::error::{FieldError, GatewayError};
use crate::ingest::intake::{Outcome, Submitter};
use crate::ingest::reading::{self, Context};
use crate::telemetry;
use crate::throttle::Outcome as Limits;

/// The handler; the front (`front::observe`) counts and logs the request as for a route.
pub(crate) async fn post(State(state): State<AppState>, who: Authorized<Telemetry>, req: Request) -> Response {
    let gw = state.gateway.load_full();
    let mut limits = Limits::default();
    let (parts, body) = req.into_parts();
    let mut res = match serve(&state, &gw, &parts.headers, body, who, &mut limits).await {
        Ok(res) => res,
        Err(e) => e.response(),
    };
    limits.apply(res.headers_mut());
    res
}

async fn serve(
    state: &AppState,
    gw: &crate::config::Gateway,
    headers: &HeaderMap,
    body: Body,
    who: Authorized<Telemetry>,
    limits: &mut Limits,
) -> Result<Response, GatewayError> {
    if gw.sensors.is_empty() {
        return Err(GatewayError::RouteNotFound("/telemetry: the data dictionary (sensors/*.yaml) is empty".into()));
    }
    // The front checked the token and its scope; then the client's limits, as for a route.
    let caller = who.caller;
    if who.principal.is_some() {
        gw.throttle.check_client(&caller, limits).await?;
        refuse_if_limited(limits)?;
    }
    let ndjson = ndjson(headers)?;
    let bytes = crate::pipeline::handler::read_body(body, gw.server.max_body).await?;
    let items = reading::split(&bytes, ndjson).map_err(|r| GatewayError::MalformedJson { detail: r.reason })?;
    let max = gw.sensors.settings.max_readings;
    if items.is_empty() || items.len() > max {
        return Err(GatewayError::ReadingsRejected(vec![FieldError {
            pointer: Some(String::new()),
            location: None,
            parameter: None,
            detail: format!("{} readings; send 1 to {max} per request (telemetry.max_readings)", items.len()),
        }]));
    }
    // Every reading counts: a client's request limit alone would let each request carry
    // `max_readings` of them into the queue. Quotas last, so a refused batch uses none.
    gw.throttle.check_readings(&caller, items.len(), limits).await?;
    gw.throttle.take_quota(&caller, limits).await?;
    refuse_if_limited(limits)?;
    let who = Submitter {
        client: caller.key,
        request_id: headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("").to_string(),
    };
    let ctx = Context { topic: Vec::new(), now: chrono::Utc::now() };
    let services = state.services.get();
    let results = crate::ingest::take(&state.intake, &gw.sensors, services, &who, &ctx, items).await;
    crate::ingest::count("http", &results);
    answer(&results)
}

/// 429 when a limit or quota refused the request (each refusing policy counted).
fn refuse_if_limited(limits: &Limits) -> Result<(), GatewayError> {
    match limits.refused() {
        Some(wait) => {
            for policy in limits.refusing() {
                telemetry::rate_limited(policy);
            }
            Err(GatewayError::RateLimited(wait))
        }
        None => Ok(()),
    }
}

/// Whether the body is NDJSON (one reading per line) rather than JSON; 415 for anything else.
fn ndjson(headers: &HeaderMap) -> Result<bool, GatewayError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(false),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(true),
        "" => Err(GatewayError::UnsupportedMediaType("(none)".into())),
        other => Err(GatewayError::UnsupportedMediaType(other.into())),
    }
}

/// Every reading's fate: 202 listing them when any was accepted, 503 when none was and the
/// store (or the ERP) could take none, 422 with each reason when every one was refused.
fn answer(results: &[(String, Result<Outcome, reading::Rejected>)]) -> Result<Response, GatewayError> {
    let (mut accepted, mut rejected, mut unavailable) = (0, 0, 0);
    let mut refusal = None;
    let mut listed = Vec::with_capacity(results.len());
    let mut errors = Vec::new();
    for (pointer, r) in results {
        listed.push(match r {
            Ok(Outcome::Queued(id)) => {
                accepted += 1;
                json!({"pointer": pointer, "status": "queued", "delivery": id})
            }
            Ok(Outcome::Delivered(status)) => {
                accepted += 1;
                json!({"pointer": pointer, "status": "delivered", "erp_status": status})
            }
            Ok(Outcome::Failed { reason, retryable, queue }) => {
                refusal = refusal.or(queue.clone());
                if *retryable {
                    unavailable += 1;
                } else {
                    rejected += 1;
                    errors.push(FieldError {
                        pointer: Some(pointer.clone()),
                        location: None,
                        parameter: None,
                        detail: reason.clone(),
                    });
                }
                json!({"pointer": pointer, "status": "failed", "reason": reason, "retryable": retryable})
            }
            Err(r) => {
                rejected += 1;
                errors.push(FieldError {
                    pointer: Some(r.pointer.clone()),
                    location: None,
                    parameter: None,
                    detail: r.reason.clone(),
                });
                json!({"pointer": r.pointer, "status": "rejected", "reason": r.reason})
            }
        });
    }
    if accepted == 0 && unavailable > 0 {
        return Err(refusal.map_or(GatewayError::StoreUnavailable, |r| r.error()));
    }
    if accepted == 0 {
        return Err(GatewayError::ReadingsRejected(errors));
    }
    let body = json!({
        "accepted": accepted,
        "rejected": rejected,
        "failed": unavailable,
        "readings": Value::Array(listed),
    });
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}
