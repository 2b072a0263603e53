//! `/healthz` (the process answers) and `/readyz` (a config snapshot is loaded and serving,
//! and the delivery store can write).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;

/// Liveness: no dependencies checked, so an ERP outage never restarts the gateway.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the loaded snapshot, and 503 while the embedded store cannot write (a full
/// disk): queued writes would be refused, so a load balancer should send them elsewhere.
/// The ERP's health is not checked here: an ERP outage is what the queue is for.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let gw = state.gateway.load();
    let (routes, backends) = (gw.routes.iter().count(), gw.backends.len());
    let problem = state.services.get().and_then(|s| s.queue.as_ref()).and_then(|q| q.problem());
    match problem {
        None => Json(json!({ "status": "ready", "routes": routes, "backends": backends })).into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "routes": routes, "backends": backends, "store": why })),
        )
            .into_response(),
    }
}
