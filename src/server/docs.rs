//! `/openapi.json`, `/openapi.yaml` (from the live snapshot, so a reload updates them) and
//! `/docs`, Swagger UI embedded in the binary: no CDN, no outside validator.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa_swagger_ui::{Config, SwaggerUi, oauth};

use super::AppState;
use crate::error::GatewayError;
use crate::openapi;

/// `GET /openapi.json`.
pub(crate) async fn openapi_json(State(state): State<AppState>) -> Response {
    let gw = state.gateway.load();
    match openapi::json(&openapi::document(&gw)) {
        Ok(doc) => ([(header::CONTENT_TYPE, "application/json")], doc).into_response(),
        Err(e) => GatewayError::Internal(e).into_response(),
    }
}

/// `GET /openapi.yaml`.
pub(crate) async fn openapi_yaml(State(state): State<AppState>) -> Response {
    let gw = state.gateway.load();
    match openapi::yaml(&openapi::document(&gw)) {
        Ok(doc) => ([(header::CONTENT_TYPE, "application/yaml")], doc).into_response(),
        Err(e) => GatewayError::Internal(e).into_response(),
    }
}

/// Swagger UI at `/docs`, reading our own `/openapi.json` (never a frozen copy) and getting
/// tokens from our own token endpoint with the client-credentials flow.
pub(crate) fn swagger_ui() -> Router<AppState> {
    let config =
        Config::new(["/openapi.json"]).validator_url("none").try_it_out_enabled(true).persist_authorization(false);
    Router::from(SwaggerUi::new("/docs").config(config).oauth(oauth::Config::new().app_name("Veneer")))
}
