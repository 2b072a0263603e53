//! Compiles one route entry against its backend's operation model.
//!
//! The request mapping (`request:`) is checked against the operation's input element here,
//! once, so a route that cannot fill a required element never reaches a request.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderName, Method, StatusCode};
use yaml_serde::Value as Yaml;

use super::problems::{AtLeast, FileText, duration, fault_rules};
use super::raw::{CacheSection, DeliverySection, FaultRuleSection, RouteSection};
use super::units;
use super::{ConfigProblem, compile_limits};
use crate::backend::Backend;
use crate::backend::faults::FaultRule;
use crate::delivery::{DeliverySettings, Queued};
use crate::placeholder::Whole;
use crate::route::cache::RouteCache;
use crate::route::{Route, Source};
use crate::schema::{Element, SchemaSet, TypeRef};
use crate::throttle::Throttle;

/// Compiles a route; `backend_declared` distinguishes a typo from a backend that failed to compile.
pub(crate) fn compile(
    file: &FileText,
    index: usize,
    s: &RouteSection,
    backends: &BTreeMap<String, Arc<Backend>>,
    backend_declared: bool,
    throttle: &Throttle,
    delivery: &DeliverySettings,
) -> Result<Route, Vec<ConfigProblem>> {
    let index = index.to_string();
    // `key`: a dotted key path under this route's entry ("" for the entry itself).
    let here = |key: &str, message: String| {
        let path: Vec<&str> =
            ["routes", index.as_str()].into_iter().chain(key.split('.').filter(|k| !k.is_empty())).collect();
        file.at(&path, format!("route {:?}: {message}", s.route))
    };
    let (method, path, params) = parse_route(&s.route).map_err(|m| vec![here("route", m)])?;
    let (backend, op_index) = operation(s, backends, backend_declared, &here)?;
    let op = &backend.model.operations[op_index];
    let schema = &backend.model.schema;
    let mut problems = Vec::new();
    let mut ctx = MapCtx { schema, params: &params, problems: &mut problems, here: &here };
    let input = match &s.request {
        None if matches!(method, Method::GET | Method::DELETE | Method::HEAD) => {
            Some(Source::Object { fields: Vec::new(), spread: None })
        }
        None => Some(Source::Body(Vec::new())),
        Some(value) => ctx.source_mut(&op.input, value, &op.input.name, "request"),
    };
    let soap_headers = soap_headers(s, backend, op_index, &mut ctx);
    let queued = queued(s, &method, delivery, &op.input, &mut ctx);
    if let Some(Source::Object { fields, spread: None }) = &input {
        check_required(&op.input, schema, fields, &mut problems, &here);
    }
    let response = response_path(&op.output, schema, s.response.as_deref()).unwrap_or_else(|m| {
        problems.push(here("response", m));
        Vec::new()
    });
    let status = answer_status(s, &mut problems, &here);
    let faults = fault_rules(file, &["routes", &index, "faults"], &s.faults, &mut problems);
    let idempotent = s.idempotent.unwrap_or(method == Method::GET);
    let cache = cache(s, idempotent, &mut problems, &here);
    let duplicate_faults = duplicate_faults(file, &index, s, queued.is_some(), &mut problems, &here);
    let idempotency_required = s.idempotency.as_ref().is_some_and(|i| i.required);
    if idempotency_required && idempotent {
        problems.push(here(
            "idempotency",
            "Idempotency-Key applies to non-idempotent routes; this one is idempotent (GET, or idempotent: true)"
                .into(),
        ));
    }
    let limit = s.limits.as_ref().and_then(|l| {
        compile_limits::route(l, &format!("{method} {path}"), throttle)
            .map_err(|m| problems.push(here("limits", format!("limits: {m}"))))
            .ok()
    });
    let cors = s
        .cors
        .as_ref()
        .and_then(|c| super::compile::cors(c).map_err(|m| problems.push(here("cors", format!("cors: {m}")))).ok());
    match input {
        Some(input) if problems.is_empty() => Ok(Route {
            cors,
            id: format!("{method} {path}"),
            metrics: crate::telemetry::RouteMetrics::new(&format!("{method} {path}")),
            idempotent,
            queued,
            duplicate_faults,
            idempotency_required,
            cache,
            soap_headers,
            method,
            path,
            backend: backend.clone(),
            operation: op_index,
            input,
            response,
            status,
            faults,
            scopes: s.scopes.clone(),
            limit,
            public: s.public,
            summary: s.summary.clone(),
            description: s.description.clone().or_else(|| op.doc.clone()),
        }),
        _ => Err(problems),
    }
}

/// The route's backend and the index of its operation; an unknown name is a problem listing
/// the known ones (a backend that failed to compile has already said why: no problem here).
fn operation<'b>(
    s: &RouteSection,
    backends: &'b BTreeMap<String, Arc<Backend>>,
    backend_declared: bool,
    here: &impl Fn(&str, String) -> ConfigProblem,
) -> Result<(&'b Arc<Backend>, usize), Vec<ConfigProblem>> {
    let Some(backend) = backends.get(&s.backend) else {
        if backend_declared {
            return Err(Vec::new()); // its own problems are already reported
        }
        let known: Vec<&str> = backends.keys().map(String::as_str).collect();
        return Err(vec![here(
            "backend",
            format!("unknown backend {:?}; known backends: {}", s.backend, known.join(", ")),
        )]);
    };
    if let Some(i) = backend.model.operations.iter().position(|o| o.name == s.operation) {
        return Ok((backend, i));
    }
    if let Some(skipped) = backend.model.skipped.iter().find(|k| k.operation == s.operation) {
        return Err(vec![here(
            "operation",
            format!(
                "operation {:?} of backend {} cannot be used ({} of its WSDL set): {}",
                s.operation,
                s.backend,
                skipped.location(),
                skipped.reason
            ),
        )]);
    }
    let known: Vec<&str> = backend.model.operations.iter().map(|o| o.name.as_str()).collect();
    Err(vec![here(
        "operation",
        format!("backend {} has no operation {:?}; its WSDL offers: {}", s.backend, s.operation, known.join(", ")),
    )])
}

/// The route's `soap_headers:`: each names a header element of the operation that the
/// backend's session does not fill (two writers would send it twice).
fn soap_headers<F: Fn(&str, String) -> ConfigProblem>(
    s: &RouteSection,
    backend: &Backend,
    op_index: usize,
    ctx: &mut MapCtx<'_, F>,
) -> Vec<(usize, Source)> {
    let op = &backend.model.operations[op_index];
    let mut out = Vec::new();
    for (k, v) in s.soap_headers.iter().flatten() {
        let key = k.as_str().unwrap_or("");
        match op.headers.iter().position(|h| h.name == key || h.json_name == key) {
            Some(i) if backend.session_fills(&op.headers[i]) => ctx.problems.push((ctx.here)(
                &format!("soap_headers.{key}"),
                format!(
                    "SOAP header {key:?} is filled by backend {}'s session; remove it from the route",
                    backend.name()
                ),
            )),
            Some(i) => {
                if let Some(src) = ctx.source_mut(&op.headers[i], v, key, &format!("soap_headers.{key}")) {
                    out.push((i, src));
                }
            }
            None => {
                let names: Vec<&str> = op.headers.iter().map(|h| h.name.as_str()).collect();
                let known = if names.is_empty() { "none".to_string() } else { names.join(", ") };
                ctx.problems.push((ctx.here)(
                    "soap_headers",
                    format!("operation {} has no SOAP header {key:?}; its headers: {known}", op.name),
                ));
            }
        }
    }
    out
}

/// `status:`, a 2xx code (default 200).
fn answer_status(
    s: &RouteSection,
    problems: &mut Vec<ConfigProblem>,
    here: &impl Fn(&str, String) -> ConfigProblem,
) -> StatusCode {
    match s.status.map(StatusCode::from_u16) {
        None => StatusCode::OK,
        Some(Ok(st)) if st.is_success() => st,
        Some(_) => {
            problems.push(here("status", "status must be a 2xx code such as 200 or 201".into()));
            StatusCode::OK
        }
    }
}

/// `cache:`, only on idempotent routes; a zero TTL is no cache.
fn cache(
    s: &RouteSection,
    idempotent: bool,
    problems: &mut Vec<ConfigProblem>,
    here: &impl Fn(&str, String) -> ConfigProblem,
) -> Option<RouteCache> {
    let (ttl, per_client) = match s.cache.as_ref()? {
        CacheSection::Ttl(t) => (t.as_str(), false),
        CacheSection::Full(f) => (f.ttl.as_str(), f.per_client),
    };
    if !idempotent {
        problems.push(here("cache", "cache: is only for idempotent routes (GET, or idempotent: true)".into()));
        return None;
    }
    match units::duration(ttl) {
        Ok(d) if !d.is_zero() => Some(RouteCache::new(d, per_client)),
        Ok(_) => None,
        Err(m) => {
            problems.push(here("cache", format!("cache: {m}")));
            None
        }
    }
}

/// `duplicate_faults:` (a fault that means "already booked": 409, delivered), only on
/// queued routes.
fn duplicate_faults(
    file: &FileText,
    index: &str,
    s: &RouteSection,
    queued: bool,
    problems: &mut Vec<ConfigProblem>,
    here: &impl Fn(&str, String) -> ConfigProblem,
) -> Vec<FaultRule> {
    let sections: Vec<FaultRuleSection> = s
        .duplicate_faults
        .iter()
        .map(|d| FaultRuleSection { code: d.code.clone(), reason: d.reason.clone(), status: 409 })
        .collect();
    let rules = fault_rules(file, &["routes", index, "duplicate_faults"], &sections, problems);
    if !rules.is_empty() && !queued {
        problems.push(here(
            "duplicate_faults",
            "duplicate_faults: apply to queued deliveries; add delivery: queued".into(),
        ));
    }
    rules
}

/// A route's `delivery:`, checked: queued only for writes, and only with a data directory.
fn queued<F: Fn(&str, String) -> ConfigProblem>(
    s: &RouteSection,
    method: &Method,
    delivery: &DeliverySettings,
    input: &Element,
    ctx: &mut MapCtx<'_, F>,
) -> Option<Queued> {
    let here = ctx.here;
    let (mode, detail) = match s.delivery.as_ref()? {
        DeliverySection::Mode(m) => (m.as_str(), None),
        DeliverySection::Detailed(d) => (d.mode.as_str(), Some(d)),
    };
    match mode {
        "direct" => return None,
        "queued" => {}
        other => {
            ctx.problems.push(here("delivery", format!("delivery: {other:?} is unknown; write queued or direct")));
            return None;
        }
    }
    if !matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
        ctx.problems.push(here("delivery", "delivery: queued is for writes (POST, PUT, PATCH, DELETE)".into()));
    }
    if delivery.data_dir.is_none() && delivery.fleet.is_none() {
        ctx.problems.push(here("delivery",
            "delivery: queued needs a store; add to gateway.yaml `delivery: { data_dir: data }` (or delivery.redis for a fleet)".into(),
        ));
    }
    let mut q = Queued { ordered: false, partition: None, max_age: delivery.max_age, max_attempts: None };
    if let Some(d) = detail {
        q.ordered = d.ordered;
        if d.ordered && delivery.fleet.is_some() {
            ctx.problems.push(here("ordered",
                "ordered delivery needs the embedded store (delivery.data_dir); a fleet's Redis queue delivers concurrently".into(),
            ));
        }
        q.max_attempts = d.max_attempts;
        q.max_age = duration("delivery.max_age", d.max_age.as_deref(), q.max_age, AtLeast::Positive, &mut |m| {
            ctx.problems.push(here("delivery.max_age", m))
        });
        if let Some(p) = &d.partition {
            if !d.ordered {
                ctx.problems
                    .push(here("delivery.partition", "delivery.partition orders items; add ordered: true".into()));
            }
            q.partition = ctx.source_mut(input, &Yaml::String(p.clone()), "partition", "delivery.partition");
        }
    }
    Some(q)
}

/// `"GET /items/{no}"` → (method, path, parameter names).
fn parse_route(text: &str) -> Result<(Method, String, Vec<String>), String> {
    let hint = "write it as \"METHOD /path/{param}\", e.g. \"GET /items/{no}\"";
    let (method, path) = text.trim().split_once(' ').ok_or_else(|| hint.to_string())?;
    let method = match method {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        other => {
            return Err(format!("method {other:?} is not one of GET, POST, PUT, PATCH, DELETE; {hint}"));
        }
    };
    let path = path.trim();
    if !path.starts_with('/') {
        return Err(format!("the path must start with '/'; {hint}"));
    }
    let mut params = Vec::new();
    for seg in path.split('/').skip(1) {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("path parameter {{{name}}} must be a name of letters, digits and _"));
            }
            if params.iter().any(|p| p == name) {
                return Err(format!("path parameter {{{name}}} appears twice"));
            }
            params.push(name.to_string());
        } else if !seg.chars().all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)) {
            return Err(format!("path segment {seg:?} may hold only letters, digits, -._~ or a whole {{param}}"));
        }
    }
    Ok((method, path.to_string(), params))
}

struct MapCtx<'a, F: Fn(&str, String) -> ConfigProblem> {
    schema: &'a SchemaSet,
    params: &'a [String],
    problems: &'a mut Vec<ConfigProblem>,
    here: &'a F,
}

impl<F: Fn(&str, String) -> ConfigProblem> MapCtx<'_, F> {
    /// The source for element `el` from its mapping value; `None` after recording a problem.
    /// `at` names the element in messages; `path` is where its mapping is in the route.
    fn source_mut(&mut self, el: &Element, value: &Yaml, at: &str, path: &str) -> Option<Source> {
        match value {
            Yaml::String(s) => self.expression(s, path),
            Yaml::Bool(b) => Some(Source::Literal((*b).into())),
            Yaml::Number(n) => n.to_string().parse::<serde_json::Number>().ok().map(|n| Source::Literal(n.into())),
            Yaml::Mapping(map) => {
                let TypeRef::Complex(id) = el.ty else {
                    self.problems.push((self.here)(
                        path,
                        format!("{at} is a simple value; map it to one source such as \"{{path.x}}\", not to fields"),
                    ));
                    return None;
                };
                let ct = self.schema.complex(id);
                let mut fields = Vec::new();
                let mut spread = None;
                for (k, v) in map {
                    let Some(key) = k.as_str() else {
                        self.problems.push((self.here)(path, format!("keys under {at} must be element names")));
                        continue;
                    };
                    if key == "..." {
                        spread = self.source_mut(el, v, at, path).map(Box::new);
                        continue;
                    }
                    let Some(child) = ct.children.iter().find(|c| c.name == key || c.json_name == key) else {
                        let names: Vec<&str> = ct.children.iter().map(|c| c.name.as_str()).collect();
                        self.problems.push((self.here)(
                            &format!("{path}.{key}"),
                            format!("{at} has no element {key:?}; its elements are: {}", names.join(", ")),
                        ));
                        continue;
                    };
                    if let Some(src) = self.source_mut(child, v, key, &format!("{path}.{key}")) {
                        fields.push((child.json_name.clone(), src));
                    }
                }
                Some(Source::Object { fields, spread })
            }
            _ => {
                self.problems.push((self.here)(path, format!("{at}: expected \"{{path.x}}\", \"{{query.x}}\", \"{{header.x}}\", \"{{body}}\", a constant, or a mapping")));
                None
            }
        }
    }

    fn expression(&mut self, text: &str, path: &str) -> Option<Source> {
        let inner = match crate::placeholder::whole(text) {
            Ok(Whole::Var(inner)) => inner,
            Ok(Whole::Text(t)) => return Some(Source::Literal(t.into())),
            Ok(Whole::Mixed) => {
                self.problems.push((self.here)(path, format!("{text:?} mixes text with a placeholder; a mapping value is one placeholder such as \"{{path.no}}\" or a constant")));
                return None;
            }
            Err(m) => {
                self.problems.push((self.here)(path, m));
                return None;
            }
        };
        let (kind, name) = inner.split_once('.').unwrap_or((inner, ""));
        let fail = |m: String| (self.here)(path, m);
        let src = match (kind, name) {
            ("body", "") => Source::Body(Vec::new()),
            ("body", keys) => Source::Body(keys.split('.').map(str::to_string).collect()),
            ("path", p) if self.params.iter().any(|x| x == p) => Source::Path(p.to_string()),
            ("path", p) => {
                self.problems.push(fail(format!(
                    "{{path.{p}}} is not a parameter of the route path (it has: {})",
                    self.params.join(", ")
                )));
                return None;
            }
            ("query", q) if !q.is_empty() => Source::Query(q.to_string()),
            ("delivery", "key") => Source::DeliveryKey { raw: false },
            ("delivery", "raw_key") => Source::DeliveryKey { raw: true },
            ("header", h) => match HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) => Source::Header(name),
                Err(_) => {
                    self.problems.push(fail(format!("{h:?} is not a valid header name")));
                    return None;
                }
            },
            _ => {
                self.problems.push(fail(format!("unknown source {text:?}; use {{path.NAME}}, {{query.NAME}}, {{header.NAME}}, {{body}}, {{body.key}}, {{delivery.key}} or {{delivery.raw_key}}")));
                return None;
            }
        };
        Some(src)
    }
}

/// Every required child of the input element must be mapped when the body is not spread.
fn check_required(
    input: &Element,
    schema: &SchemaSet,
    fields: &[(String, Source)],
    problems: &mut Vec<ConfigProblem>,
    here: &impl Fn(&str, String) -> ConfigProblem,
) {
    let TypeRef::Complex(id) = input.ty else {
        return;
    };
    for child in schema.complex(id).children.iter().filter(|c| c.is_required()) {
        if !fields.iter().any(|(k, _)| *k == child.json_name) {
            problems.push(here("request", format!(
                "the operation's input requires element {0} but the route does not fill it; add under request: `{0}: \"{{query.{1}}}\"` (or a path/header/body source)",
                child.name, child.json_name
            )));
        }
    }
}

/// Resolves `response:` (dot-separated element names under the output element) to JSON keys.
/// Without it, a wrapper holding a single element answers with that element.
fn response_path(output: &Element, schema: &SchemaSet, spec: Option<&str>) -> Result<Vec<String>, String> {
    let TypeRef::Complex(id) = output.ty else {
        return Ok(Vec::new());
    };
    let Some(spec) = spec else {
        let ct = schema.complex(id);
        return Ok(match (ct.children.as_slice(), ct.attributes.is_empty()) {
            ([only], true) => vec![only.json_name.clone()],
            _ => Vec::new(),
        });
    };
    let mut keys = Vec::new();
    let mut ty = Some(id);
    for name in spec.split('.').filter(|n| !n.is_empty()) {
        let ct = ty.map(|t| schema.complex(t)).ok_or_else(|| format!("response: {name:?} is below a simple value"))?;
        let child = ct.children.iter().find(|c| c.name == name || c.json_name == name).ok_or_else(|| {
            let names: Vec<&str> = ct.children.iter().map(|c| c.name.as_str()).collect();
            format!("response: no element {name:?} here; available: {}", names.join(", "))
        })?;
        keys.push(child.json_name.clone());
        ty = match child.ty {
            TypeRef::Complex(t) => Some(t),
            TypeRef::Simple(_) => None,
        };
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::parse_route;

    #[test]
    fn route_strings() {
        assert!(parse_route("GET /items/{no}").is_ok());
        assert!(parse_route("get /items").is_err());
        assert!(parse_route("GET items").is_err());
        assert!(parse_route("GET /items/{no}/{no}").is_err());
        assert!(parse_route("GET /items/{n o}").is_err());
        assert!(parse_route("GET /items/x{no}").is_err());
    }
}
