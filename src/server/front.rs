//! The one front for the gateway's own endpoints (`/telemetry`, `/deliveries/{id}`,
//! `/admin/*`, `/metrics` behind `server.metrics_scope`): who calls and whether their token
//! carries the endpoint's scope (the [`Authorized`] extractor), and one access-log line and
//! request metrics per request ([`observe`]), written once instead of in each handler.
//! Configured routes have the same steps in `pipeline::handler`.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::auth::{ADMIN_SCOPE, Principal};
use crate::backend::REQUEST_ID;
use crate::config::Gateway;
use crate::error::GatewayError;
use crate::telemetry;
use crate::throttle::Caller;

/// What an endpoint asks of its caller.
pub(crate) trait Need: Send + Sync + 'static {
    /// The scope a token must carry, `None` for any authenticated caller.
    fn scope(gw: &Gateway) -> Option<String>;
    /// Without an `auth:` section, whether anyone may call (true) or no one (false: there
    /// is no one who could hold the scope).
    const OPEN_WITHOUT_AUTH: bool;
    /// Whether this gateway checks nothing at all here (a setting leaves it open).
    fn open(_gw: &Gateway) -> bool {
        false
    }
}

/// `veneer:admin`: the `/admin/` endpoints.
pub(crate) struct Admin;
impl Need for Admin {
    fn scope(_: &Gateway) -> Option<String> {
        Some(ADMIN_SCOPE.to_string())
    }
    const OPEN_WITHOUT_AUTH: bool = false;
}

/// The telemetry scope (`telemetry.scope`): `POST /telemetry`.
pub(crate) struct Telemetry;
impl Need for Telemetry {
    fn scope(gw: &Gateway) -> Option<String> {
        Some(gw.sensors.settings.scope.clone())
    }
    const OPEN_WITHOUT_AUTH: bool = true;
}

/// Any caller with a valid token (they see what is theirs): `GET /deliveries/{id}`.
pub(crate) struct AnyCaller;
impl Need for AnyCaller {
    fn scope(_: &Gateway) -> Option<String> {
        None
    }
    const OPEN_WITHOUT_AUTH: bool = true;
}

/// `server.metrics_scope`, when set: `/metrics` on the main listener.
pub(crate) struct Metrics;
impl Need for Metrics {
    fn scope(gw: &Gateway) -> Option<String> {
        gw.server.metrics_scope.clone()
    }
    const OPEN_WITHOUT_AUTH: bool = false;
    fn open(gw: &Gateway) -> bool {
        gw.server.metrics_scope.is_none()
    }
}

/// A caller authenticated and authorised for what `N` needs.
pub(crate) struct Authorized<N: Need> {
    /// The token's principal (`None` without an `auth:` section, or where the endpoint is open).
    pub principal: Option<Arc<Principal>>,
    /// The throttle's key for the caller (`anonymous` without a token).
    pub caller: Caller,
    _need: PhantomData<N>,
}

impl<N: Need> Authorized<N> {
    /// Whether the caller holds `veneer:admin` (or the gateway has no `auth:` at all).
    pub(crate) fn is_admin(&self) -> bool {
        self.principal.as_ref().is_none_or(|p| p.scopes.contains(ADMIN_SCOPE))
    }
}

impl<N: Need> FromRequestParts<AppState> for Authorized<N> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let gw = state.gateway.load_full();
        let anonymous = || Authorized {
            principal: None,
            caller: Caller { key: "anonymous".to_string(), registered: false },
            _need: PhantomData,
        };
        if N::open(&gw) {
            return Ok(anonymous());
        }
        let Some(auth) = gw.auth.as_ref() else {
            return if N::OPEN_WITHOUT_AUTH {
                Ok(anonymous())
            } else {
                Err(GatewayError::Forbidden(N::scope(&gw).into_iter().collect()).response())
            };
        };
        let principal = auth
            .authenticate(&parts.headers)
            .await
            .inspect_err(|e| telemetry::token_failure("validation", e.reason()))
            .map_err(|e| GatewayError::from(e).response())?;
        let caller = auth.caller(&principal);
        if let Some(seen) = parts.extensions.get::<Seen>() {
            seen.record(&principal.client_id, caller.registered);
        }
        if let Some(scope) = N::scope(&gw)
            && !principal.scopes.contains(&scope)
        {
            return Err(GatewayError::Forbidden(vec![scope]).response());
        }
        Ok(Authorized { principal: Some(principal), caller, _need: PhantomData })
    }
}

/// Who called, filled in by [`Authorized`] and read by [`observe`] once the handler answered.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Option<(String, bool)>>>);

impl Seen {
    fn record(&self, client: &str, registered: bool) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((client.to_string(), registered));
    }

    /// The client id for the log, and the bounded metrics label: a registered client by id,
    /// every other caller folded into one value.
    fn labels(&self) -> (String, String) {
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some((id, true)) => (id.clone(), id),
            Some((id, false)) => (id, "external".into()),
            None => ("-".into(), "anonymous".into()),
        }
    }
}

/// Middleware for the built-in endpoints: the request's metrics (by the endpoint's path
/// template) and its access-log line, as for a configured route.
pub(crate) async fn observe(path: Option<MatchedPath>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let seen = Seen::default();
    req.extensions_mut().insert(seen.clone());
    let method = req.method().clone();
    let route = format!("{method} {}", path.as_ref().map_or(req.uri().path(), MatchedPath::as_str));
    let request_id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let res = next.run(req).await;
    let elapsed = started.elapsed();
    let (client, label) = seen.labels();
    telemetry::request(&route, method.as_str(), res.status().as_u16(), &label, elapsed);
    tracing::info!(
        target: "veneer::access",
        request_id = %request_id,
        route = %route,
        client = %client,
        status = res.status().as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    res
}
