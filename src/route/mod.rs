//! The route room, below both the HTTP pipeline and the delivery workers: compiled routes
//! and the path matcher over them, where each input comes from (`inputs`), the response
//! cache (`cache`), CORS policies (`cors`), queued-delivery settings (`queued`), and the
//! exchange with the ERP that every way in uses (`exchange`: encode the call, send it, read
//! and decode the answer).

pub mod cache;
pub mod cors;
pub(crate) mod exchange;
pub(crate) mod inputs;
pub mod queued;

use std::sync::Arc;

use axum::http::{HeaderName, Method, StatusCode};
use serde_json::Value;

use crate::backend::Backend;
use crate::backend::faults::FaultRule;
use crate::error::GatewayError;
use crate::schema::Operation;

/// Where one piece of the SOAP input comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A path parameter (always present once the route matched).
    Path(String),
    /// A query parameter.
    Query(String),
    /// A request header.
    Header(HeaderName),
    /// The JSON body, or the value at these keys inside it (empty = whole body).
    Body(Vec<String>),
    /// A constant from the route config.
    Literal(Value),
    /// `{delivery.key}`: the caller's `Idempotency-Key` scoped to caller and route (see
    /// [`queued::erp_key`]), else the delivery id; with `raw`
    /// (`{delivery.raw_key}`) the key exactly as the caller sent it.
    DeliveryKey {
        /// The caller's key as sent, which two callers may share.
        raw: bool,
    },
    /// A JSON object built field by field; `spread` fills the keys not mapped explicitly.
    Object {
        /// JSON key → source.
        fields: Vec<(String, Source)>,
        /// `"...": "{body}"`: the rest of the object comes from here.
        spread: Option<Box<Source>>,
    },
}

impl Source {
    /// True when any part of the input comes from the request body.
    pub(crate) fn reads_body(&self) -> bool {
        match self {
            Source::Body(_) => true,
            Source::Object { fields, spread } => {
                fields.iter().any(|(_, s)| s.reads_body()) || spread.as_ref().is_some_and(|s| s.reads_body())
            }
            _ => false,
        }
    }

    /// True when this source, or any part of it, satisfies `f`.
    pub fn any(&self, f: &impl Fn(&Source) -> bool) -> bool {
        f(self)
            || match self {
                Source::Object { fields, spread } => {
                    fields.iter().any(|(_, s)| s.any(f)) || spread.as_ref().is_some_and(|s| s.any(f))
                }
                _ => false,
            }
    }
}

/// A route, compiled: everything a request needs, nothing to parse.
#[derive(Debug)]
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// Path template as configured (`/items/{no}`).
    pub path: String,
    /// `"GET /items/{no}"`: names the route in limits, logs and metrics.
    pub id: String,
    /// The backend it calls.
    pub backend: Arc<Backend>,
    /// Index of the operation in the backend's model.
    pub operation: usize,
    /// How the operation's input is filled.
    pub input: Source,
    /// SOAP header elements (index into the operation's headers) and how they are filled.
    pub soap_headers: Vec<(usize, Source)>,
    /// JSON keys from the output element's content down to the response body.
    pub response: Vec<String>,
    /// Safe to retry.
    pub idempotent: bool,
    /// Response cache with request coalescing.
    pub cache: Option<cache::RouteCache>,
    /// Status of a successful answer.
    pub status: StatusCode,
    /// Route-level fault rules (tried before the backend's).
    pub faults: Vec<FaultRule>,
    /// Scopes a token must carry.
    pub scopes: Vec<String>,
    /// The route's own rate limit.
    pub limit: Option<crate::throttle::RouteLimit>,
    /// `delivery: queued`: stored, answered 202, delivered by the workers.
    pub queued: Option<queued::Queued>,
    /// Faults meaning "the ERP already has this" (a queued item counts as delivered).
    pub duplicate_faults: Vec<FaultRule>,
    /// `Idempotency-Key` must be sent (400 without it).
    pub idempotency_required: bool,
    /// Served without a token.
    pub public: bool,
    /// CORS on this route's path, replacing the gateway's.
    pub cors: Option<Arc<cors::CorsPolicy>>,
    /// Docs: summary.
    pub summary: Option<String>,
    /// Docs: description.
    pub description: Option<String>,
    /// Its request metrics' handles.
    pub metrics: crate::telemetry::RouteMetrics,
}

impl Route {
    /// The SOAP operation this route calls.
    pub fn operation(&self) -> &Operation {
        &self.backend.model.operations[self.operation]
    }

    /// Why this queued route's duplicate refusals may drop another caller's write, if they
    /// may: its `duplicate_faults` count "already exists" as delivered, so the key that
    /// reaches the ERP must tell callers apart. `fed_by_sensors`: the data dictionary fills
    /// the body, with a `{key}` naming the reading's source.
    pub(crate) fn erp_key_warning(&self, fed_by_sensors: bool) -> Option<String> {
        if self.queued.is_none() || self.duplicate_faults.is_empty() {
            return None;
        }
        let uses = |raw: bool| {
            std::iter::once(&self.input)
                .chain(self.soap_headers.iter().map(|(_, s)| s))
                .any(|s| s.any(&|s| matches!(s, Source::DeliveryKey { raw: r } if *r == raw)))
        };
        if uses(true) {
            return Some(format!(
                "route {}: {{delivery.raw_key}} reaches the ERP as sent, and duplicate_faults count a refused duplicate as delivered: \
                 two clients using the same Idempotency-Key book one document; use {{delivery.key}} (scoped to the client)",
                self.id
            ));
        }
        (!uses(false) && !fed_by_sensors).then(|| {
            format!(
                "route {}: duplicate_faults count a refused duplicate as delivered, but no {{delivery.key}} reaches the ERP: \
                 a write whose document number another caller already used is dropped; map {{delivery.key}} into the ERP's external document number",
                self.id
            )
        })
    }
}

/// A route matched for a request.
pub struct Matched {
    /// The route.
    pub route: Arc<Route>,
    /// Percent-decoded path parameters, in path order.
    pub params: Vec<(String, String)>,
}

/// All routes plus a matcher from path to the routes on it.
#[derive(Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    matcher: matchit::Router<Vec<usize>>,
    /// Route id (`"POST /path"`) → index: a delivery finds its route without a scan.
    by_id: std::collections::HashMap<String, usize>,
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.routes.iter().map(|r| format!("{} {}", r.method, r.path))).finish()
    }
}

impl RouteTable {
    /// Builds the matcher. Each route comes with where it was declared (`At`, the config's
    /// problem template); a route defined twice or overlapping another is refused with its
    /// place and what to change.
    pub fn build<At: Clone>(routes: Vec<(Route, At)>) -> Result<Self, Vec<(At, String)>> {
        let mut table = RouteTable::default();
        let mut problems = Vec::new();
        let mut paths: Vec<(String, Vec<usize>, At)> = Vec::new();
        for (route, at) in routes {
            let idx = table.routes.len();
            match paths.iter_mut().find(|(p, _, _)| *p == route.path) {
                Some((_, ids, _)) => {
                    if ids.iter().any(|&i| table.routes[i].method == route.method) {
                        let message =
                            format!("route {} {} is defined twice; remove or rename one", route.method, route.path);
                        problems.push((at, message));
                        continue;
                    }
                    ids.push(idx);
                }
                None => paths.push((route.path.clone(), vec![idx], at)),
            }
            table.by_id.insert(route.id.clone(), idx);
            table.routes.push(Arc::new(route));
        }
        for (path, ids, at) in paths {
            if let Err(e) = table.matcher.insert(path.clone(), ids.clone()) {
                let route = &table.routes[ids[0]];
                problems.push((at, format!("route path {path} ({} {}) overlaps another route: {e}; use the same parameter names or distinct literal segments", route.method, route.path)));
            }
        }
        if problems.is_empty() { Ok(table) } else { Err(problems) }
    }

    /// The route with this id (`"POST /path"`).
    pub(crate) fn by_id(&self, id: &str) -> Option<&Arc<Route>> {
        self.by_id.get(id).map(|&i| &self.routes[i])
    }

    /// Every route, in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }

    /// The routes on a path, whatever their method (CORS preflights ask about a path).
    pub(crate) fn on_path(&self, path: &str) -> Vec<&Arc<Route>> {
        self.matcher.at(path).map(|m| m.value.iter().map(|&i| &self.routes[i]).collect()).unwrap_or_default()
    }

    /// The route for a request, with its percent-decoded path parameters.
    pub fn find(&self, method: &Method, path: &str) -> Result<Matched, GatewayError> {
        let m = self.matcher.at(path).map_err(|_| GatewayError::RouteNotFound(format!("no route for {path}")))?;
        let route = m
            .value
            .iter()
            .map(|&i| &self.routes[i])
            .find(|r| r.method == method || (method == Method::HEAD && r.method == Method::GET))
            .ok_or_else(|| {
                GatewayError::MethodNotAllowed(m.value.iter().map(|&i| self.routes[i].method.clone()).collect())
            })?;
        let mut params = Vec::with_capacity(m.params.len());
        for (k, v) in m.params.iter() {
            let decoded = percent_encoding::percent_decode_str(v).decode_utf8().map_err(|_| {
                GatewayError::Validation(vec![crate::error::FieldError {
                    pointer: None,
                    location: Some("path"),
                    parameter: Some(k.to_string()),
                    detail: "is not valid UTF-8 after percent-decoding".into(),
                }])
            })?;
            params.push((k.to_string(), decoded.into_owned()));
        }
        Ok(Matched { route: route.clone(), params })
    }
}
