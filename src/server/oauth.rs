//! The built-in authorization server's endpoints, over the current snapshot.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;

use super::AppState;
use crate::auth::{metadata, token};

/// `POST /oauth2/token`.
pub(crate) async fn token(State(state): State<AppState>, req: Request) -> Response {
    let gw = state.gateway.load_full();
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let (parts, body) = req.into_parts();
    match gw.auth.as_ref().and_then(|a| a.local.as_ref()) {
        Some(local) => token::handle(local, &parts.headers, body, peer).await,
        None => metadata::jwks(None),
    }
}

/// `GET /.well-known/jwks.json`.
pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    let gw = state.gateway.load();
    metadata::jwks(gw.auth.as_ref().and_then(|a| a.local.as_ref()))
}

/// `GET /.well-known/oauth-authorization-server`.
pub(crate) async fn metadata(State(state): State<AppState>) -> Response {
    let gw = state.gateway.load();
    metadata::server_metadata(gw.auth.as_ref().and_then(|a| a.local.as_ref()))
}
