//! Delivery status and operations: `GET /deliveries/{id}` for the client that posted it, and
//! under `/admin/` (scope `veneer:admin`) listing, retrying and discarding dead letters and
//! pausing a backend's deliveries.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::front::{Admin, AnyCaller, Authorized};
use crate::delivery::{Page, Queue, State as ItemState};
use crate::error::{FieldError, GatewayError};

fn queue(state: &AppState) -> Result<Queue, GatewayError> {
    state
        .services
        .get()
        .and_then(|s| s.queue.clone())
        .ok_or_else(|| GatewayError::RouteNotFound("this gateway has no delivery store (delivery.data_dir)".into()))
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::RouteNotFound(format!("no delivery {id}"))
}

/// `GET /deliveries/{id}`: the item's state for the client that posted it (or an admin).
pub(crate) async fn status(
    State(state): State<AppState>,
    who: Authorized<AnyCaller>,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let queue = queue(&state)?;
        // The same caller key the pipeline used when it accepted the item.
        let (caller, admin) = (who.caller.key.as_str(), who.is_admin());
        let item = queue.get(&id).await?.ok_or_else(|| not_found(&id))?;
        // Another client's item does not exist, as far as this caller can tell. An item
        // posted without a token (a public route) is no one's: its id is the secret.
        if item.client != caller && item.client != "anonymous" && !admin {
            return Err(not_found(&id));
        }
        Ok(axum::Json(item.view()).into_response())
    }
    .await;
    result.unwrap_or_else(|e| e.response())
}

/// `?state=dead&route=POST%20/readings&limit=100&after=ID`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    state: Option<String>,
    route: Option<String>,
    limit: Option<usize>,
    /// The previous page's `next`.
    after: Option<String>,
}

/// `GET /admin/deliveries`: a page of items by state and route, oldest first, each with
/// what was stored for the ERP; `next` is the cursor of the following page (`?after=`).
pub(crate) async fn list(State(state): State<AppState>, _: Authorized<Admin>, Query(q): Query<ListQuery>) -> Response {
    let result = async {
        let queue = queue(&state)?;
        let wanted = match q.state.as_deref() {
            None => None,
            Some(s) => Some(ItemState::parse(s).ok_or_else(|| {
                GatewayError::Validation(vec![FieldError {
                    pointer: None,
                    location: Some("query"),
                    parameter: Some("state".into()),
                    detail: "state is one of queued, delivering, delivered, dead".into(),
                }])
            })?),
        };
        let page = Page { state: wanted, route: q.route, after: q.after, limit: q.limit.unwrap_or(100).clamp(1, 1000) };
        let (items, next) = queue.list(page).await?;
        // A page of a thousand items is a few MB of JSON: written off the request threads too.
        let body = tokio::task::spawn_blocking(move || {
            let views: Vec<_> = items.iter().map(|i| i.admin_view()).collect();
            serde_json::to_vec(&serde_json::json!({ "items": views, "next": next }))
        })
        .await
        .map_err(|e| GatewayError::Internal(format!("listing deliveries failed: {e}")))?
        .map_err(|e| GatewayError::Internal(format!("listing deliveries failed: {e}")))?;
        Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
    }
    .await;
    result.unwrap_or_else(|e: GatewayError| e.response())
}

/// `POST /admin/deliveries/{id}/retry`: a dead letter goes back to the queue.
pub(crate) async fn retry(State(state): State<AppState>, _: Authorized<Admin>, Path(id): Path<String>) -> Response {
    let result = async {
        let item = queue(&state)?.retry(&id).await?.ok_or_else(|| not_found(&id))?;
        Ok(axum::Json(item.view()).into_response())
    }
    .await;
    result.unwrap_or_else(|e: GatewayError| e.response())
}

/// `DELETE /admin/deliveries/{id}`: a dead letter is discarded.
pub(crate) async fn discard(State(state): State<AppState>, _: Authorized<Admin>, Path(id): Path<String>) -> Response {
    let result = async {
        queue(&state)?.discard(&id).await?.ok_or_else(|| not_found(&id))?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    result.unwrap_or_else(|e: GatewayError| e.response())
}

/// `POST /admin/backends/{name}/pause` and `/resume`.
pub(crate) async fn pause(
    State(state): State<AppState>,
    _: Authorized<Admin>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let result = async {
        let gw = state.gateway.load_full();
        let paused = match action.as_str() {
            "pause" => true,
            "resume" => false,
            _ => return Err(GatewayError::RouteNotFound(format!("/admin/backends/{name}/{action}"))),
        };
        if !gw.backends.contains_key(&name) {
            return Err(GatewayError::RouteNotFound(format!("no backend {name}")));
        }
        queue(&state)?.set_paused(&name, paused).await?;
        Ok(axum::Json(serde_json::json!({ "backend": name, "paused": paused })).into_response())
    }
    .await;
    result.unwrap_or_else(|e: GatewayError| e.response())
}
