//! The middleware stack, in one place. Layers listed first wrap everything after them.

use std::any::Any;
use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use super::AppState;
use crate::backend::REQUEST_ID;
use crate::error::{GatewayError, bare_status_problem};

/// The whole application as one service, as the listeners serve it: a request from hyper in,
/// a response out.
pub(crate) type App = BoxCloneSyncService<axum::http::Request<Incoming>, Response, Infallible>;

/// An application without middleware (the metrics listener), as the listeners serve it.
pub(crate) fn bare(router: Router) -> App {
    BoxCloneSyncService::new(router)
}

/// Wraps the app in the gateway's middleware: one service around the whole router, so a
/// request clones the stack once (a few `Arc`s), where `Router::layer` would box and clone
/// each layer again for every route it reaches.
pub(crate) fn wrap(router: Router, state: AppState) -> App {
    let request_id = HeaderName::from_static(REQUEST_ID);
    // Listed outermost first: the order a request passes through.
    let stack = ServiceBuilder::new()
        // One body type for the listeners (the trace layer wraps the body to time it).
        .map_response(IntoResponse::into_response)
        // Credentials never reach logs: marked before the trace layer sees headers.
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
        // Every request gets an id (a client's own is kept) before anything logs.
        .layer(SetRequestIdLayer::new(request_id.clone(), FastRequestId))
        .layer(TraceLayer::new_for_http())
        // The id goes back to the client, to match their logs with ours.
        .layer(PropagateRequestIdLayer::new(request_id))
        // Errors produced by the layers below come without a body: give them one.
        .map_response(problem_for_bare_errors)
        .map_response(IntoResponse::into_response)
        // A panic anywhere below becomes a 500 problem, never a dropped connection.
        .layer(CatchPanicLayer::custom(panic_problem))
        .map_request(|req: axum::http::Request<Incoming>| req.map(Body::new))
        // CORS before anything authenticates: a preflight carries no token.
        .layer(axum::middleware::from_fn_with_state(state.clone(), cors))
        // A whole-request deadline, above the per-backend timeouts; read from the current
        // snapshot, so a reload changes it.
        .layer(axum::middleware::from_fn_with_state(state, deadline))
        .service(router);
    BoxCloneSyncService::new(stack)
}

/// Request ids without a syscall per request: a random 64-bit prefix drawn once per process
/// (ids stay unique across replicas and restarts) and a counter, as 32 hex digits. A UUID v4
/// per request cost one `getrandom` each.
#[derive(Clone, Copy)]
struct FastRequestId;

impl MakeRequestId for FastRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        use std::sync::OnceLock;
        use std::sync::atomic::{AtomicU64, Ordering};
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(rand::random::<u64>);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Hex digits written directly: `format!` cost more than the rest of the layer.
        let mut id = [0u8; 32];
        let digits = (u128::from(prefix) << 64) | u128::from(n);
        for (i, d) in id.iter_mut().enumerate() {
            *d = b"0123456789abcdef"[((digits >> (4 * (31 - i))) & 0xf) as usize];
        }
        axum::http::HeaderValue::from_bytes(&id).ok().map(RequestId::new)
    }
}

async fn deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.gateway.load().server.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => bare_status_problem(StatusCode::GATEWAY_TIMEOUT),
    }
}

/// CORS from the current snapshot: a route's policy on its path, else `server.cors`; none
/// configured, no CORS header (browsers then keep other origins out).
async fn cors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else { return next.run(req).await };
    let gw = state.gateway.load_full();
    let on_path = gw.routes.on_path(req.uri().path());
    let Some(policy) = on_path.iter().find_map(|r| r.cors.clone()).or_else(|| gw.server.cors.clone()) else {
        return next.run(req).await;
    };
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        // A configured path serves its routes' methods; a built-in endpoint answers a method
        // it does not serve with 405 on the real request.
        let served: Vec<Method> = if on_path.is_empty() {
            vec![Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE]
        } else {
            on_path.iter().map(|r| r.method.clone()).collect()
        };
        return match policy.preflight(req.headers(), &served) {
            Some(headers) => (StatusCode::NO_CONTENT, headers).into_response(),
            None => GatewayError::CorsRefused(format!(
                "this origin, method or header is not allowed on {} (server.cors, or the route's cors:)",
                req.uri().path()
            ))
            .response(),
        };
    }
    let mut res = next.run(req).await;
    policy.decorate(Some(&origin), res.headers_mut());
    res
}

fn problem_for_bare_errors(res: Response) -> Response {
    // Only bodyless errors (no content type) come from layers; anything with a body was
    // written on purpose (problem+json, or RFC 6749 errors at the token endpoint).
    let bare = !res.headers().contains_key(header::CONTENT_TYPE);
    if bare && res.status() == StatusCode::METHOD_NOT_ALLOWED {
        // A built-in endpoint's 405 (axum's method router): the same problem and `Allow` as a
        // configured route's.
        let allow: Vec<axum::http::Method> = res
            .headers()
            .get_all(header::ALLOW)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|m| axum::http::Method::from_bytes(m.trim().as_bytes()).ok())
            .collect();
        if !allow.is_empty() {
            return crate::error::GatewayError::MethodNotAllowed(allow).response();
        }
    }
    if bare && (res.status().is_client_error() || res.status().is_server_error()) {
        return bare_status_problem(res.status());
    }
    res
}

fn panic_problem(err: Box<dyn Any + Send + 'static>) -> Response {
    let what = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = what, "request handler panicked");
    GatewayError::Internal(what.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> String {
        let req = axum::http::Request::new(());
        let id = FastRequestId.make_request_id(&req).expect("an id");
        id.header_value().to_str().expect("ASCII").to_string()
    }

    #[test]
    fn request_ids_share_the_process_prefix_and_count_up_in_hex() {
        let (a, b) = (id(), id());
        for v in [&a, &b] {
            assert_eq!(v.len(), 32, "{v}");
            assert!(v.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)), "{v}");
        }
        assert_eq!(a[..16], b[..16], "one prefix per process");
        let n = |v: &str| u64::from_str_radix(&v[16..], 16).expect("hex");
        assert!(n(&b) > n(&a), "{a} then {b}");
    }
}
