//! `GET /.well-known/jwks.json` and `GET /.well-known/oauth-authorization-server` (RFC 8414).

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::LocalIssuer;
use crate::error::GatewayError;

/// The built-in issuer's public keys; 404 when no issuer is configured.
pub fn jwks(local: Option<&LocalIssuer>) -> Response {
    match local {
        Some(l) => ([(header::CACHE_CONTROL, "public, max-age=300")], Json(l.keys.jwks())).into_response(),
        None => not_configured(),
    }
}

/// Authorization server metadata.
pub(crate) fn server_metadata(local: Option<&LocalIssuer>) -> Response {
    let Some(l) = local else { return not_configured() };
    let base = l.issuer.trim_end_matches('/');
    Json(json!({
        "issuer": l.issuer,
        "token_endpoint": l.token_endpoint(),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "ES384", "EdDSA", "RS256", "PS256"],
        "scopes_supported": l.scopes(),
    }))
    .into_response()
}

fn not_configured() -> Response {
    let mut res =
        GatewayError::RouteNotFound("the built-in authorization server is not configured (auth.issuer)".into())
            .into_response();
    *res.status_mut() = StatusCode::NOT_FOUND;
    res
}
