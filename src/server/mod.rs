//! The HTTP server: the axum app over the current [`Gateway`] snapshot, its middleware
//! stack, health endpoints and graceful shutdown.

mod docs;
mod health;
mod oauth;
mod stack;

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::config::Gateway;
use crate::pipeline::handler;

/// Shared state: the live snapshot, swapped whole on reload.
#[derive(Clone)]
pub struct AppState {
    /// The current compiled config.
    pub gateway: Arc<ArcSwap<Gateway>>,
}

impl AppState {
    /// State serving `gateway`.
    pub fn new(gateway: Gateway) -> Self {
        AppState { gateway: Arc::new(ArcSwap::from_pointee(gateway)) }
    }
}

/// The application: fixed endpoints, configured routes as the fallback, and the middleware
/// stack around both.
pub fn app(state: AppState) -> Router {
    let request_timeout = state.gateway.load().server.request_timeout;
    let router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/oauth2/token", post(oauth::token))
        .route("/.well-known/jwks.json", get(oauth::jwks))
        .route("/.well-known/oauth-authorization-server", get(oauth::metadata))
        .route("/openapi.json", get(docs::openapi_json))
        .route("/openapi.yaml", get(docs::openapi_yaml))
        .merge(docs::swagger_ui())
        .fallback(dispatch)
        .with_state(state);
    stack::wrap(router, request_timeout)
}

/// Configured routes: each request reads the snapshot once, so a reload never splits one.
async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    handler::handle(state.gateway.load_full(), req).await
}

/// Serves until `shutdown` resolves, then stops accepting and drains in-flight requests.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}
