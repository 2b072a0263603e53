//! The request pipeline for configured routes: match → authenticate → throttle →
//! Idempotency-Key → read and encode → queue, cache or call → decode.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use tracing::Instrument;

use crate::auth::Principal;
use crate::backend::{self, REQUEST_ID};
use crate::config::Gateway;
use crate::delivery::idempotency::{self, Claim};
use crate::delivery::submit::{Origin, item_for};
use crate::delivery::{self, Services};
use crate::error::{FieldError, GatewayError};
use crate::route::cache;
use crate::route::exchange::{Call, encode_call, fetch, partition};
use crate::route::inputs::RequestValues;
use crate::route::{Matched, Route};
use crate::telemetry;
use crate::throttle::{Caller, Outcome};

/// Serves one request against a snapshot; every failure becomes a problem response.
/// `services` holds the delivery queue and the idempotency keys (absent in tests that use
/// the bare router).
pub async fn handle(gateway: Arc<Gateway>, services: Option<&Services>, req: Request) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let request_id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut seen = Seen { limits: Outcome::default(), route: None, client: "anonymous", client_id: None };
    // Everything logged for this request (backend errors, fault details) carries its id.
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut res = match serve(&gateway, services, req, &request_id, &mut seen).instrument(span.clone()).await {
        Ok(res) => res,
        Err(e) => span.in_scope(|| e.response()),
    };
    // Rate-limit headers on every answer of a limited route, refusals included.
    seen.limits.apply(res.headers_mut());
    let elapsed = started.elapsed();
    let route = seen.route.as_ref().map_or("unmatched", |r| r.id.as_str());
    let client = seen.client_id.as_deref().filter(|_| seen.client == "registered").unwrap_or(seen.client);
    match &seen.route {
        Some(r) => r.metrics.request(method.as_str(), res.status().as_u16(), client, elapsed),
        None => telemetry::request(route, method.as_str(), res.status().as_u16(), client, elapsed),
    }
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

/// Who is calling, as far as the pipeline needs it.
#[derive(Clone)]
struct Who {
    principal: Option<Arc<Principal>>,
    caller: Option<Caller>,
}

impl Who {
    /// The caller's key for throttling, idempotency and delivery ownership.
    fn key(&self) -> &str {
        self.caller.as_ref().map_or("anonymous", |c| c.key.as_str())
    }
}

/// The steps, in the order of the diagram in ARCHITECTURE.md.
async fn serve(
    gateway: &Gateway,
    services: Option<&Services>,
    req: Request,
    request_id: &str,
    seen: &mut Seen,
) -> Result<Response, GatewayError> {
    let (parts, body) = req.into_parts();
    let Matched { route, params: path } = gateway.routes.find(&parts.method, parts.uri.path())?;
    seen.route = Some(route.clone());
    let who = authenticate(gateway, &route, &parts.headers, seen).await?;
    throttle(gateway, &route, who.caller.as_ref(), &mut seen.limits).await?;
    let idempotency_key = idempotency_key(&route, &parts.headers)?;
    let query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let body = if route.input.reads_body() {
        Some(read_json(&parts.headers, body, gateway.server.max_body).await?)
    } else {
        None
    };
    // `{delivery.key}`: the caller's Idempotency-Key scoped to the caller and route (two
    // clients sending `order-1001` must not book one document), else the delivery id (a
    // fresh one for a direct call, so an ERP document number is still unique).
    let delivery_id = (!route.idempotent).then(delivery::new_id);
    let raw_key = idempotency_key.as_deref().or(delivery_id.as_deref()).unwrap_or("");
    let delivery_key = match idempotency_key.as_deref() {
        Some(k) => delivery::erp_key(who.key(), &route.id, k),
        None => raw_key.to_string(),
    };
    let values = RequestValues {
        path: &path,
        query: &query,
        headers: &parts.headers,
        body: body.as_ref(),
        delivery_key: &delivery_key,
        raw_key,
    };
    let call = encode_call(&route, &values)?;
    let forward = backend::forwarded(&parts.headers);
    let job = Job {
        route: route.clone(),
        partition: partition(&route, &values),
        call,
        who: who.clone(),
        forward,
        request_id: request_id.to_string(),
        delivery_id: delivery_id.clone(),
        delivery_key: delivery_key.clone(),
    };
    let (Some(key), Some(services)) = (idempotency_key.as_deref(), services) else {
        return execute(services, job).await;
    };
    // Idempotency-Key: the first request runs and its answer is kept; retries replay it.
    let scoped = idempotency::scoped(who.key(), &route.id, key);
    let fingerprint = cache::fingerprint(&job.call.input, &job.call.route_header);
    if let Claim::Replay(answer) = Box::pin(services.keys.claim(&scoped, &fingerprint)).await? {
        return Ok(answer.response());
    }
    let task = spawn_keyed(services.clone(), job, scoped, fingerprint);
    task.await.unwrap_or_else(|e| Err(GatewayError::Internal(format!("the request task failed: {e}"))))
}

/// Runs a call under an Idempotency-Key on its own task: when the client goes away (or the
/// request deadline drops the request) the ERP may still book it, and the answer must still
/// be stored for the retry to replay. A plain function, so the task's future is built here
/// and not carried inside every request's future.
fn spawn_keyed(
    services: Services,
    job: Job,
    scoped: String,
    fingerprint: String,
) -> tokio::task::JoinHandle<Result<Response, GatewayError>> {
    tokio::spawn(async move {
        match execute(Some(&services), job).await {
            // Never sent to the ERP: the key is free for a retry.
            Err(
                e @ (GatewayError::Overloaded { .. }
                | GatewayError::StoreUnavailable
                | GatewayError::QueueFull(_)
                | GatewayError::QueueNotDurable),
            ) => {
                services.keys.release(&scoped).await;
                Err(e)
            }
            Ok(res) => Ok(services.keys.finish(&scoped, &fingerprint, res).await),
            Err(e) => Ok(services.keys.finish(&scoped, &fingerprint, e.response()).await),
        }
    })
}

/// Authentication and the route's scopes; `Who` is empty on open routes.
async fn authenticate(
    gateway: &Gateway,
    route: &Route,
    headers: &HeaderMap,
    seen: &mut Seen,
) -> Result<Who, GatewayError> {
    let Some(auth) = gateway.auth.as_ref().filter(|_| !route.public) else {
        return Ok(Who { principal: None, caller: None });
    };
    let p = auth.authenticate(headers).await.inspect_err(|e| telemetry::token_failure("validation", e.reason()))?;
    let caller = auth.caller(&p);
    seen.client = if caller.registered { "registered" } else { "external" };
    seen.client_id = Some(p.client_id.clone());
    let missing: Vec<String> = route.scopes.iter().filter(|s| !p.scopes.contains(*s)).cloned().collect();
    if !missing.is_empty() {
        return Err(GatewayError::Forbidden(missing));
    }
    Ok(Who { principal: Some(p), caller: Some(caller) })
}

/// Throttle after auth (limits are per caller) and before any translation work: rates first,
/// quotas last, so a refused request never uses up quota.
async fn throttle(
    gateway: &Gateway,
    route: &Route,
    caller: Option<&Caller>,
    limits: &mut Outcome,
) -> Result<(), GatewayError> {
    if let Some(c) = caller {
        gateway.throttle.check_client(c, limits).await?;
    }
    if let (None, Some(rl)) = (limits.refused(), &route.limit) {
        rl.check(&route.id, caller.map(|c| c.key.as_str()), limits).await?;
    }
    if let Some(c) = caller {
        gateway.throttle.take_quota(c, limits).await?;
    }
    if let Some(wait) = limits.refused() {
        for policy in limits.refusing() {
            telemetry::rate_limited(policy);
        }
        return Err(GatewayError::RateLimited(wait));
    }
    Ok(())
}

/// The `Idempotency-Key` of a non-idempotent route's request (quotes of the structured-field
/// string removed); 400 when the route requires one and it is missing or malformed.
fn idempotency_key(route: &Route, headers: &HeaderMap) -> Result<Option<String>, GatewayError> {
    if route.idempotent {
        return Ok(None);
    }
    let Some(raw) = headers.get("idempotency-key") else {
        return if route.idempotency_required { Err(GatewayError::IdempotencyKeyRequired) } else { Ok(None) };
    };
    let text = raw.to_str().unwrap_or("").trim();
    let key = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    if !idempotency::valid_key(key) {
        return Err(GatewayError::Validation(vec![FieldError {
            pointer: None,
            location: Some("header"),
            parameter: Some("idempotency-key".into()),
            detail: format!("an Idempotency-Key is 1 to {} visible ASCII characters", idempotency::MAX_KEY),
        }]));
    }
    Ok(Some(key.to_string()))
}

/// A validated request, ready to be queued, served from cache or sent (owned, so it can
/// outlive the request on its own task).
struct Job {
    route: Arc<Route>,
    call: Call,
    who: Who,
    forward: backend::Forward,
    request_id: String,
    delivery_id: Option<String>,
    delivery_key: String,
    partition: Option<String>,
}

/// Queues the call, answers it from the cache, or sends it.
async fn execute(services: Option<&Services>, job: Job) -> Result<Response, GatewayError> {
    let route = job.route.clone();
    // The queue and the cache are boxed: their futures are large, and the direct call below,
    // the common path, would otherwise carry their size and copy it on every poll chain.
    if route.queued.is_some() {
        return Box::pin(enqueue(services, job)).await;
    }
    let Some(cache) = &route.cache else {
        return Ok(fetch(&route, job.call.envelope, job.forward).await?.response(None));
    };
    let key = cache.key(&job.call.input, &job.call.route_header, job.who.principal.as_deref());
    let mut loaded = false;
    let answer = Box::pin(cache.entries.try_get_with(key, async {
        loaded = true;
        fetch(&route, job.call.envelope, job.forward).await.map(Arc::new)
    }))
    .await
    .map_err(GatewayError::Shared)?;
    telemetry::cache(&route.id, !loaded);
    Ok(answer.response(Some(cache)))
}

/// Stores the call for the delivery workers: 202 with `Location: /deliveries/{id}` once the
/// store has committed it.
async fn enqueue(services: Option<&Services>, job: Job) -> Result<Response, GatewayError> {
    let id = store_job(services, job).await?;
    let location = format!("/deliveries/{id}");
    let mut res =
        (StatusCode::ACCEPTED, axum::Json(serde_json::json!({ "id": id, "state": "queued" }))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// Stores a job as a queued item; its id once committed.
async fn store_job(services: Option<&Services>, job: Job) -> Result<String, GatewayError> {
    let origin = Origin {
        client: job.who.key().to_string(),
        key: job.delivery_key,
        partition: job.partition,
        request_id: job.request_id,
    };
    let mut item = item_for(&job.route, job.call, origin);
    if let Some(id) = job.delivery_id {
        item.id = id;
    }
    crate::delivery::submit::enqueue(services, item).await
}

/// Reads a body of at most `limit` bytes: 413 past it, 400 for a broken upload.
pub(crate) async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, GatewayError> {
    let mut read = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| GatewayError::MalformedJson { detail: format!("the body could not be read: {e}") })?;
        let Ok(data) = frame.into_data() else { continue }; // trailers carry no JSON
        if data.len() > limit - read.len() {
            linger(body).await;
            return Err(GatewayError::PayloadTooLarge { limit });
        }
        read.extend_from_slice(&data);
    }
    Ok(read.freeze())
}

/// What a refused upload is still read for, at most, before its 413 is sent.
const LINGER_BYTES: usize = 16 * 1024 * 1024;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and drops what the client is still sending (within [`LINGER_BYTES`] and
/// [`LINGER_TIME`]) before a 413: a connection closed with unread data is reset, and the
/// client would see a broken pipe instead of the answer. nginx's lingering close does the
/// same.
async fn linger(mut body: Body) {
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > LINGER_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
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
        linger(body).await;
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    let bytes = read_body(body, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::MalformedJson {
            detail: "this route needs a JSON body, and the request has none".into(),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| GatewayError::MalformedJson { detail: e.to_string() })
}
