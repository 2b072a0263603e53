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
use crate::backend::REQUEST_ID;
use crate::error::{FieldError, GatewayError};
use crate::ingest::intake::{Outcome, Submitter};
use crate::ingest::reading::{self, Context};
use crate::telemetry;
use crate::throttle::{Caller, Outcome as Limits};

/// Its request metrics, counted like a route's.
static METRICS: std::sync::LazyLock<telemetry::RouteMetrics> =
    std::sync::LazyLock::new(|| telemetry::RouteMetrics::new("POST /telemetry"));

/// The handler: the request, then its metrics and access-log line, as for a route.
pub(crate) async fn post(State(state): State<AppState>, req: Request) -> Response {
    let started = std::time::Instant::now();
    let gw = state.gateway.load_full();
    let mut limits = Limits::default();
    let (parts, body) = req.into_parts();
    let request_id = parts.headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut client = Client::default();
    let mut res = match serve(&state, &gw, &parts.headers, body, &mut limits, &mut client).await {
        Ok(res) => res,
        Err(e) => e.response(),
    };
    limits.apply(res.headers_mut());
    let elapsed = started.elapsed();
    METRICS.request("POST", res.status().as_u16(), client.label(), elapsed);
    tracing::info!(
        target: "veneer::access",
        request_id = %request_id,
        route = "POST /telemetry",
        client = client.id.as_deref().unwrap_or("-"),
        status = res.status().as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    res
}

/// Who posted, for the metrics label and the access log.
#[derive(Default)]
struct Client {
    id: Option<String>,
    registered: bool,
}

impl Client {
    /// A registered client by id; every other caller folded into one value (bounded labels).
    fn label(&self) -> &str {
        match (&self.id, self.registered) {
            (Some(id), true) => id,
            (Some(_), false) => "external",
            (None, _) => "anonymous",
        }
    }
}

async fn serve(
    state: &AppState,
    gw: &crate::config::Gateway,
    headers: &HeaderMap,
    body: Body,
    limits: &mut Limits,
    seen: &mut Client,
) -> Result<Response, GatewayError> {
    if gw.sensors.is_empty() {
        return Err(GatewayError::RouteNotFound("/telemetry: the data dictionary (sensors/*.yaml) is empty".into()));
    }
    // The same checks as a route: a token with the telemetry scope, then the client's limits.
    let caller = match &gw.auth {
        None => Caller { key: "anonymous".to_string(), registered: false },
        Some(auth) => {
            let p =
                auth.authenticate(headers).await.inspect_err(|e| telemetry::token_failure("validation", e.reason()))?;
            let caller = auth.caller(&p);
            *seen = Client { id: Some(p.client_id.clone()), registered: caller.registered };
            if !p.scopes.contains(&gw.sensors.settings.scope) {
                return Err(GatewayError::Forbidden(vec![gw.sensors.settings.scope.clone()]));
            }
            gw.throttle.check_client(&caller, limits).await?;
            if let Some(wait) = limits.refused() {
                for policy in limits.refusing() {
                    telemetry::rate_limited(policy);
                }
                return Err(GatewayError::RateLimited(wait));
            }
            caller
        }
    };
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let ndjson = match essence.as_str() {
        "application/json" => false,
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => true,
        other => {
            return Err(GatewayError::UnsupportedMediaType(if other.is_empty() {
                "(none)".into()
            } else {
                other.into()
            }));
        }
    };
    let limit = gw.server.max_body;
    let bytes = crate::pipeline::handler::read_body(body, limit).await?;
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
    if let Some(wait) = limits.refused() {
        for policy in limits.refusing() {
            telemetry::rate_limited(policy);
        }
        return Err(GatewayError::RateLimited(wait));
    }
    let who = Submitter {
        client: caller.key,
        request_id: headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("").to_string(),
    };
    let ctx = Context { topic: Vec::new(), now: chrono::Utc::now() };
    let services = state.services.get();
    let results = crate::ingest::take(&state.intake, &gw.sensors, services, &who, &ctx, items).await;
    crate::ingest::count("http", &results);
    let (mut accepted, mut rejected, mut unavailable) = (0, 0, 0);
    let mut refusal = None;
    let mut listed = Vec::with_capacity(results.len());
    let mut errors = Vec::new();
    for (pointer, r) in &results {
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
