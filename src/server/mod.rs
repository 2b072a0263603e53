//! The HTTP server: the axum app over the current [`Gateway`] snapshot, its middleware
//! stack, health endpoints and graceful shutdown.

mod deliveries;
mod docs;
mod front;
mod health;
pub mod listener;
mod oauth;
mod reload;
mod stack;
mod telemetry_in;

use std::future::Future;
use std::sync::Arc;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::{get, post};
use axum_server::tls_rustls::RustlsConfig;
use tokio::net::TcpListener;

use self::front::Authorized;
use crate::config::Gateway;
use crate::config::compile::CompileOptions;
use crate::delivery::Services;
use crate::error::{FieldError, GatewayError};
use crate::pipeline::handler;
use crate::telemetry;
pub use reload::Reloader;

/// Shared state: the live snapshot, swapped whole on reload. One `Arc` around it all: axum
/// clones the state for every request, and one reference count is cheaper to share between
/// cores than five.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] holds.
pub struct Shared {
    /// The current compiled config.
    pub gateway: Arc<ArcSwap<Gateway>>,
    /// Reloads the config directory (absent for the embedded dev config).
    pub reloader: Option<Arc<Reloader>>,
    /// The listener's live TLS config, when TLS is on; reloads replace its certificates.
    pub tls: Arc<OnceLock<RustlsConfig>>,
    /// The delivery queue and idempotency keys, started by [`run`].
    pub services: Arc<OnceLock<Services>>,
    /// Readings in (HTTP and MQTT): groups and looked-up values, kept across reloads.
    pub intake: Arc<crate::ingest::intake::Intake>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// State serving `gateway`, without reload.
    pub fn new(gateway: Gateway) -> Self {
        AppState(Arc::new(Shared {
            gateway: Arc::new(ArcSwap::from_pointee(gateway)),
            reloader: None,
            tls: Arc::default(),
            services: Arc::default(),
            intake: Arc::new(crate::ingest::intake::Intake::new()),
        }))
    }

    /// State serving the config in `dir`, reloadable; `options.retained` should be set so
    /// counters, buckets and protections survive reloads.
    pub fn reloadable(gateway: Gateway, dir: PathBuf, options: CompileOptions) -> Self {
        options.retained.commit_sessions(&gateway.backends);
        let swap = Arc::new(ArcSwap::from_pointee(gateway));
        let tls: Arc<OnceLock<RustlsConfig>> = Arc::default();
        let reloader = Reloader::new(dir, options, swap.clone(), tls.clone());
        AppState(Arc::new(Shared {
            gateway: swap,
            reloader: Some(reloader),
            tls,
            services: Arc::default(),
            intake: Arc::new(crate::ingest::intake::Intake::new()),
        }))
    }
}

/// The application: fixed endpoints, configured routes as the fallback, and the middleware
/// stack around both.
pub fn app(state: AppState) -> stack::App {
    let router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/oauth2/token", post(oauth::token))
        .route("/.well-known/jwks.json", get(oauth::jwks))
        .route("/.well-known/oauth-authorization-server", get(oauth::metadata))
        .route("/metrics", get(metrics))
        // The gateway's own endpoints for callers: one front (who, scope, log, metrics).
        .merge(
            Router::new()
                .route("/admin/reload", post(admin_reload))
                .route("/telemetry", post(telemetry_in::post))
                .route("/deliveries/{id}", get(deliveries::status))
                .route("/admin/deliveries", get(deliveries::list))
                .route("/admin/deliveries/{id}", axum::routing::delete(deliveries::discard))
                .route("/admin/deliveries/{id}/retry", post(deliveries::retry))
                .route("/admin/backends/{name}/{action}", post(deliveries::pause))
                .route_layer(axum::middleware::from_fn(front::observe)),
        )
        .route("/openapi.json", get(docs::openapi_json))
        .route("/openapi.yaml", get(docs::openapi_yaml))
        .merge(docs::swagger_ui())
        .fallback(dispatch)
        .with_state(state.clone());
    stack::wrap(router, state)
}

/// Configured routes: each request reads the snapshot once, so a reload never splits one.
async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    handler::handle(state.gateway.load_full(), state.services.get(), req).await
}

/// `GET /metrics` on the main listener: absent when `server.metrics_listen` moves it to its
/// own address, and behind a bearer token when `server.metrics_scope` is set.
async fn metrics(State(state): State<AppState>, _: Authorized<front::Metrics>) -> Response {
    if state.gateway.load().server.metrics_listen.is_some() {
        return GatewayError::RouteNotFound("/metrics is served on the metrics listener".into()).response();
    }
    metrics_page().await
}

/// Prometheus text.
async fn metrics_page() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], telemetry::render()).into_response()
}

/// `POST /admin/reload`: a third reload trigger, for a token with the admin scope.
async fn admin_reload(State(state): State<AppState>, _: Authorized<front::Admin>) -> Response {
    let Some(reloader) = &state.reloader else {
        return GatewayError::RouteNotFound("this gateway runs an embedded config, which cannot be reloaded".into())
            .response();
    };
    match reloader.reload("POST /admin/reload").await {
        Ok(hash) => axum::Json(serde_json::json!({ "status": "reloaded", "config": hash })).into_response(),
        Err(e) => GatewayError::Validation(
            e.0.iter()
                .map(|p| FieldError { pointer: None, location: None, parameter: None, detail: p.to_string() })
                .collect(),
        )
        .response(),
    }
}

/// Serves until `shutdown` resolves, then stops accepting and drains in-flight requests
/// for at most `drain` before returning.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with_drain(listener, state, shutdown, Duration::from_secs(30)).await
}

/// [`run`] with an explicit drain deadline.
pub(crate) async fn run_with_drain(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    // Before anything records a metric, so nothing from the first seconds is lost.
    telemetry::install();
    // The queue resumes what the store holds before the first request is accepted.
    if state.services.get().is_none() {
        let services = crate::delivery::Services::start(state.gateway.load().delivery.clone(), state.gateway.clone())
            .await
            .map_err(std::io::Error::other)?;
        let _ = state.services.set(services);
    }
    let upkeep = tokio::spawn(upkeep(state.gateway.clone()));
    let server = state.gateway.load().server.clone();
    let limits = listener::Limits::new(server.header_timeout, server.max_connections);
    // Several listeners stop on one signal.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signalled: Arc<OnceLock<std::time::Instant>> = Arc::default();
    let signal_time = signalled.clone();
    let on_signal = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = signal_time.set(std::time::Instant::now());
        let _ = on_signal.send(true);
    });
    let stopped = {
        let stop_rx = stop_rx.clone();
        move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        }
    };
    let metrics = match server.metrics_listen {
        Some(addr) => Some(metrics_listener(addr, &server, stopped(), drain).await?),
        None => None,
    };
    let tls = server.tls.map(|config| {
        let rustls = RustlsConfig::from_config(config);
        let _ = state.tls.set(rustls.clone());
        rustls
    });
    let services = state.services.get().cloned();
    // Only now, with every store open and the queue resumed: a supervisor or test that
    // waits for this line must not see a gateway that then fails to open its store.
    tracing::info!(local = %listener.local_addr()?, routes = state.gateway.load().routes.iter().count(), "veneer is listening");
    // MQTT ingress: stops taking messages on the signal; unacknowledged ones come back.
    #[cfg(feature = "mqtt")]
    let mqtt = services.clone().zip(state.gateway.load().mqtt.clone()).and_then(|(s, settings)| {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let stop = stopped();
        tokio::spawn(async move {
            stop.await;
            let _ = tx.send(true);
        });
        crate::ingest::mqtt::start(settings, state.gateway.clone(), s, state.intake.clone(), rx)
    });
    let sessions = state.gateway.clone();
    // The serving threads stay up until everything below has finished with the ERP.
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let threads = crate::backend::client::pools();
    let (result, serving) = listener::serve_on_threads(
        listener,
        app(state),
        tls,
        limits,
        listener::Ending { stop: stop_rx, release: release_rx, drain },
        threads,
    )
    .await;
    // Without a signal this listener stopped only by failing (a serving thread that could
    // not start): the others stop too, or joining them below would wait for ever.
    let _ = stop_tx.send(true);
    // Deliveries in flight get what is left of the drain time to finish; whatever does not
    // finish is attempted again after the restart (or by another replica).
    if let Some(queue) = services.and_then(|s| s.queue) {
        let spent = signalled.get().map_or(Duration::ZERO, std::time::Instant::elapsed);
        queue.stop(drain.saturating_sub(spent)).await;
    }
    #[cfg(feature = "mqtt")]
    if let Some(m) = mqtt {
        let _ = m.await;
    }
    if let Some(m) = metrics {
        let _ = m.await;
    }
    // Last, once nothing calls the ERP any more: log its sessions out (licences freed at
    // once instead of at the ERP's idle timeout).
    let gateway = sessions.load_full();
    futures_util::future::join_all(gateway.backends.values().map(|b| b.close_sessions(Duration::from_secs(5)))).await;
    let _ = release_tx.send(true);
    serving.join().await;
    upkeep.abort();
    result
}

/// Every five seconds: the metrics' upkeep, and rate-limit keys whose buckets are full
/// again forgotten, so memory stays bounded.
async fn upkeep(gateway: Arc<ArcSwap<Gateway>>) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        telemetry::upkeep();
        gateway.load().throttle.registry.shrink();
    }
}

/// `/metrics` on `server.metrics_listen`, its own address, until `stopped` resolves.
async fn metrics_listener(
    addr: std::net::SocketAddr,
    server: &crate::config::ServerSettings,
    stopped: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let l = TcpListener::bind(addr).await?;
    tracing::info!(local = %l.local_addr()?, "metrics listener");
    let router = Router::new().route("/metrics", get(metrics_page));
    let limits = listener::Limits::new(server.header_timeout, server.max_connections);
    Ok(tokio::spawn(listener::serve(l, stack::bare(router), None, limits, stopped, drain)))
}

/// Resolves on SIGTERM or Ctrl-C.
pub(crate) async fn shutdown_signal() {
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
