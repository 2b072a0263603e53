//! `/healthz` (the process answers) and `/readyz` (a config snapshot is loaded and serving).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;

/// Liveness: no dependencies checked, so an ERP outage never restarts the gateway.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: reports the loaded snapshot.
pub async fn readyz(State(state): State<AppState>) -> Json<Value> {
    let gw = state.gateway.load();
    Json(json!({ "status": "ready", "routes": gw.routes.iter().count(), "backends": gw.backends.len() }))
}
