//! Validation and compilation of the whole config into a [`Gateway`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use super::problems::CompileOptions;
use super::problems::{AtLeast, FileText, duration, fault_rules, http_url, parse_yaml, read_text};
use super::raw::{AuthSection, BackendSection, GatewayFile, RoutesFile};
use super::{
    ConfigError, ConfigProblem, ConfigSource, Gateway, ServerSettings, compile_auth, compile_limits, compile_mqtt,
    compile_protect, compile_route, compile_sensors, compile_session, secret, tls, units,
};
use crate::auth::Auth;
use crate::backend::credentials::{UpstreamOAuth, WsSecurity};
use crate::backend::{Backend, BackendSettings, BackendTls, BasicAuth, Credentials, DEFAULT_MAX_RESPONSE};
use crate::delivery::DeliverySettings;
use crate::route::Route;
use crate::route::RouteTable;
use crate::schema::SoapVersion;
use crate::schema::wsdl::{self, ReadOptions};
use crate::state::Retained;
use crate::throttle::Throttle;

/// Loads, validates and compiles the config; every problem is reported at once.
pub fn compile(source: &ConfigSource, options: &CompileOptions) -> Result<Gateway, ConfigError> {
    let mut problems = Vec::new();
    let retained = options.retained.clone();
    let gateway_file = read_text(source, Path::new("gateway.yaml")).map_err(|p| ConfigError(vec![p]))?;
    let raw: GatewayFile = parse_yaml(&gateway_file).map_err(|p| ConfigError(vec![p]))?;

    let server = server_settings(source, &gateway_file, &raw, &mut problems);

    // Route files first: they may declare backends of their own (as `veneer import-wsdl` writes).
    let route_files = route_files(source, &mut problems);
    let declared = declared_backends(&gateway_file, &raw, &route_files, &mut problems);
    let mut backends = BTreeMap::new();
    for (name, (file, section)) in &declared {
        match backend(source, file, name, section, options, &retained) {
            Ok(b) => {
                backends.insert(name.to_string(), Arc::new(b));
            }
            Err(mut p) => problems.append(&mut p),
        }
    }

    let throttle = compile_limits::compile(&gateway_file, &raw, options, &retained, &mut problems);
    let delivery = delivery_settings(source, &gateway_file, &raw, options, &mut problems);
    if let Some(fleet) = &delivery.fleet {
        claims_outlast_calls(&gateway_file, fleet, &backends, &mut problems);
    }
    let mut routes = Vec::new();
    let mut refused = BTreeSet::new();
    for (file, parsed) in &route_files {
        for (i, section) in parsed.routes.iter().enumerate() {
            match compile_route::compile(
                file,
                i,
                section,
                &backends,
                declared.contains_key(section.backend.as_str()),
                &throttle,
                &delivery,
            ) {
                Ok(route) => routes.push((route, file.at(&["routes", &i.to_string(), "route"], ""))),
                Err(mut p) => {
                    refused.extend(compile_sensors::route_name(&section.route));
                    problems.append(&mut p);
                }
            }
        }
    }
    let auth = auth(source, &gateway_file, &raw, options, &routes, &throttle, &mut problems);
    if auth.is_none() && server.metrics_scope.is_some() {
        problems.push(gateway_file.at(
            &["server", "metrics_scope"],
            "server.metrics_scope needs an auth: section to check tokens with; add auth: or remove metrics_scope",
        ));
    }
    let routes = RouteTable::build(routes).unwrap_or_else(|refused| {
        problems.extend(refused.into_iter().map(|(at, message)| ConfigProblem { message, ..at }));
        RouteTable::default()
    });
    let named = compile_sensors::NamedRoutes { table: &routes, refused };
    let sensors = compile_sensors::compile(source, &gateway_file, &raw, &named, &mut problems);
    let mqtt = compile_mqtt::compile(source, &gateway_file, &raw, &mut problems);
    if problems.is_empty() {
        Ok(Gateway { server, backends, routes, auth, throttle, delivery, sensors: Arc::new(sensors), mqtt })
    } else {
        Err(ConfigError(problems))
    }
}

/// Every `routes/*.yaml`, read and parsed (a file that is not is a problem, and left out).
fn route_files(source: &ConfigSource, problems: &mut Vec<ConfigProblem>) -> Vec<(FileText, RoutesFile)> {
    let mut files = Vec::new();
    for rel in source.route_files().unwrap_or_else(|p| {
        problems.push(p);
        Vec::new()
    }) {
        match read_text(source, &rel).and_then(|file| parse_yaml::<RoutesFile>(&file).map(|parsed| (file, parsed))) {
            Ok(f) => files.push(f),
            Err(p) => problems.push(p),
        }
    }
    files
}

/// Every backend declared, in gateway.yaml or a routes file, with where; a name declared
/// twice is a problem.
fn declared_backends<'a>(
    gateway_file: &'a FileText,
    raw: &'a GatewayFile,
    route_files: &'a [(FileText, RoutesFile)],
    problems: &mut Vec<ConfigProblem>,
) -> BTreeMap<&'a str, (&'a FileText, &'a BackendSection)> {
    let mut declared: BTreeMap<&str, (&FileText, &BackendSection)> = BTreeMap::new();
    for (name, section) in &raw.backends {
        declared.insert(name, (gateway_file, section));
    }
    for (file, parsed) in route_files {
        for (name, section) in &parsed.backends {
            if let Some((first, _)) = declared.insert(name, (file, section)) {
                problems.push(file.at(
                    &["backends", name],
                    format!("backend {name} is already defined in {}; rename one", first.path.display()),
                ));
            }
        }
    }
    declared
}

/// A replica still calling past `claim_after` would see its item taken over and sent again
/// by another one: the claim must outlast every backend's timeout.
fn claims_outlast_calls(
    gateway_file: &FileText,
    fleet: &crate::delivery::fleet::FleetSettings,
    backends: &BTreeMap<String, Arc<Backend>>,
    problems: &mut Vec<ConfigProblem>,
) {
    for (name, b) in backends {
        if fleet.claim_after <= b.settings.timeout {
            problems.push(gateway_file.at(
                &["delivery", "redis", "claim_after"],
                format!(
                    "delivery.redis.claim_after ({:?}) must be longer than backend {name}'s timeout ({:?})",
                    fleet.claim_after, b.settings.timeout
                ),
            ));
        }
    }
}

/// `auth:` with every scope the routes (and `POST /telemetry`) use; without it, a route
/// that requires scopes is a problem, since nothing could check them.
fn auth(
    source: &ConfigSource,
    gateway_file: &FileText,
    raw: &GatewayFile,
    options: &CompileOptions,
    routes: &[(Route, ConfigProblem)],
    throttle: &Throttle,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Auth> {
    let mut route_scopes: BTreeSet<String> = routes.iter().flat_map(|(r, _)| r.scopes.iter().cloned()).collect();
    // POST /telemetry's scope counts as used once there is a data dictionary.
    if source.sensor_files().is_ok_and(|f| !f.is_empty()) {
        route_scopes
            .insert(raw.telemetry.as_ref().and_then(|t| t.scope.clone()).unwrap_or_else(|| "telemetry:write".into()));
    }
    match &raw.auth {
        Some(section) => {
            compile_auth::compile(source, gateway_file, section, options, &route_scopes, throttle, problems)
        }
        None => {
            for (route, at) in routes.iter().filter(|(r, _)| !r.scopes.is_empty()) {
                problems.push(ConfigProblem {
                    message: format!(
                        "route {} {} requires scopes, but gateway.yaml has no auth: section to check them",
                        route.method, route.path
                    ),
                    ..at.clone()
                });
            }
            None
        }
    }
}

/// `delivery:`: the store's directory (relative to the config directory) and the retry policy.
fn delivery_settings(
    source: &ConfigSource,
    file: &FileText,
    raw: &GatewayFile,
    options: &CompileOptions,
    problems: &mut Vec<ConfigProblem>,
) -> DeliverySettings {
    let mut d = DeliverySettings::default();
    let s = raw.delivery.as_ref();
    let configured = s.and_then(|s| s.data_dir.as_deref()).map(|p| source.path(p));
    // `--data`/`VENEER_DATA` moves the embedded store (a container's volume); a fleet's
    // queue is in Redis, and the override does not apply to it.
    let fleet = s.is_some_and(|s| s.redis.is_some());
    d.data_dir = if fleet { configured } else { options.data_dir.clone().or(configured) };
    let Some(s) = s else { return d };
    if let Some(r) = &s.redis {
        let url = match (&r.url, &r.url_env) {
            (Some(u), None) => Ok(u.clone()),
            (None, Some(_)) => secret::resolve(source, r.url_env.as_deref(), None, "url"),
            _ => Err("delivery.redis needs exactly one of url or url_env".to_string()),
        };
        let claim_after = duration(
            "delivery.redis.claim_after",
            r.claim_after.as_deref(),
            Duration::from_secs(60),
            AtLeast::Positive,
            &mut |m| problems.push(file.at(&["delivery", "redis", "claim_after"], m)),
        );
        match url {
            Ok(url) if d.data_dir.is_none() => {
                d.fleet = Some(crate::delivery::fleet::FleetSettings {
                    url,
                    prefix: r.prefix.clone().unwrap_or_else(|| "veneer:".into()),
                    claim_after,
                    max_len: r.max_len.unwrap_or(1_000_000).max(1),
                    relaxed: match r.durability.as_deref() {
                        None | Some("strict") => false,
                        Some("relaxed") => true,
                        Some(other) => {
                            problems.push(file.at(
                                &["delivery", "redis", "durability"],
                                format!("delivery.redis.durability {other:?} is strict or relaxed"),
                            ));
                            false
                        }
                    },
                });
            }
            Ok(_) => problems.push(
                file.at(&["delivery", "redis"], "delivery: give data_dir (one node) or redis (a fleet), not both"),
            ),
            Err(m) => problems.push(file.at(&["delivery", "redis"], m)),
        }
    }
    for (key, value, slot) in [
        ("backoff", &s.backoff, &mut d.backoff),
        ("max_backoff", &s.max_backoff, &mut d.max_backoff),
        ("max_age", &s.max_age, &mut d.max_age),
        ("keep_delivered", &s.keep_delivered, &mut d.keep_delivered),
        ("idempotency_ttl", &s.idempotency_ttl, &mut d.idempotency_ttl),
        ("keep_dead", &s.keep_dead, &mut d.keep_dead),
    ] {
        *slot = duration(&format!("delivery.{key}"), value.as_deref(), *slot, AtLeast::Positive, &mut |m| {
            problems.push(file.at(&["delivery", key], m))
        });
    }
    for (key, value, slot) in [
        ("max_bytes", &s.max_bytes, &mut d.max_bytes),
        ("idempotency_max_bytes", &s.idempotency_max_bytes, &mut d.idempotency_max_bytes),
        ("idempotency_max_answer", &s.idempotency_max_answer, &mut d.idempotency_max_answer),
        ("max_dead_input", &s.max_dead_input, &mut d.max_dead_input),
    ] {
        match value.as_deref().map(units::size) {
            None => {}
            Some(Ok(0)) => problems.push(file.at(&["delivery", key], format!("delivery.{key} must be more than 0"))),
            Some(Ok(n)) => *slot = n as u64,
            Some(Err(m)) => problems.push(file.at(&["delivery", key], format!("delivery.{key}: {m}"))),
        }
    }
    match s.max_items {
        Some(0) => problems.push(file.at(&["delivery", "max_items"], "delivery.max_items must be more than 0")),
        Some(n) => d.max_items = n,
        None => {}
    }
    d
}

fn server_settings(
    source: &ConfigSource,
    file: &FileText,
    raw: &GatewayFile,
    problems: &mut Vec<ConfigProblem>,
) -> ServerSettings {
    let s = &raw.server;
    let mut settings = ServerSettings::defaults();
    settings.allow_anonymous = s.allow_anonymous;
    if let Some(c) = &s.cors {
        settings.cors =
            cors(c).map_err(|m| problems.push(file.at(&["server", "cors"], format!("server.cors: {m}")))).ok();
    }
    settings.metrics_scope = s.metrics_scope.clone();
    if let Some(t) = &s.tls {
        let require = t.client_auth == super::raw::ClientAuth::Required;
        let path = |p: &str| source.path(p);
        match tls::server_config(
            &path(&t.cert_file),
            &path(&t.key_file),
            t.client_ca_file.as_deref().map(path).as_deref(),
            require,
        ) {
            Ok(c) => settings.tls = Some(c),
            Err(m) => problems.push(file.at(&["server", "tls"], format!("server.tls: {m}"))),
        }
    }
    if let Some(listen) = &s.listen {
        match listen.parse::<SocketAddr>() {
            Ok(a) => settings.listen = Some(a),
            Err(_) => problems.push(file.at(
                &["server", "listen"],
                format!("server.listen {listen:?} is not an address; write e.g. \"127.0.0.1:8080\""),
            )),
        }
    }
    if let Some(size) = &s.max_body {
        match units::size(size) {
            Ok(n) => settings.max_body = n,
            Err(m) => problems.push(file.at(&["server", "max_body"], format!("server.max_body: {m}"))),
        }
    }
    for (key, text, slot, least) in [
        ("request_timeout", &s.request_timeout, &mut settings.request_timeout, AtLeast::Zero),
        ("header_timeout", &s.header_timeout, &mut settings.header_timeout, AtLeast::Positive),
    ] {
        *slot = duration(&format!("server.{key}"), text.as_deref(), *slot, least, &mut |m| {
            problems.push(file.at(&["server", key], m))
        });
    }
    match s.max_connections {
        Some(0) => problems.push(file.at(
            &["server", "max_connections"],
            "server.max_connections must be at least 1 (it caps open client connections)",
        )),
        Some(n) => settings.max_connections = n,
        None => {}
    }
    if let Some(listen) = &s.metrics_listen {
        match listen.parse::<SocketAddr>() {
            Ok(a) => settings.metrics_listen = Some(a),
            Err(_) => problems.push(file.at(
                &["server", "metrics_listen"],
                format!("server.metrics_listen {listen:?} is not an address; write e.g. \"127.0.0.1:9090\""),
            )),
        }
    }
    settings
}

fn backend(
    source: &ConfigSource,
    file: &FileText,
    name: &str,
    s: &BackendSection,
    options: &CompileOptions,
    retained: &Retained,
) -> Result<Backend, Vec<ConfigProblem>> {
    // `key` is a dotted key path under the backend ("" for the backend itself).
    let here = |key: &str, message: String| {
        let mut path = vec!["backends", name];
        path.extend(key.split('.').filter(|k| !k.is_empty()));
        file.at(&path, format!("backend {name}: {message}"))
    };
    let mut problems = Vec::new();

    let url = backend_url(name, s, options, &mut |key, m| problems.push(here(key, m)));
    let soap_version = match s.soap_version.as_deref() {
        None => None,
        Some("1.1") => Some(SoapVersion::V11),
        Some("1.2") => Some(SoapVersion::V12),
        Some(v) => {
            problems.push(here("soap_version", format!("soap_version {v:?} is unknown; write \"1.1\" or \"1.2\"")));
            None
        }
    };
    // `key`: where the WSDL is named (`wsdl`, `session.login.wsdl`).
    let load = |key: &str, wsdl_path: &str| {
        let bytes = source.read(Path::new(wsdl_path)).map_err(|p| here(key, p.message))?;
        load_wsdl(source, name, wsdl_path, &bytes, s, soap_version)
    };
    let model = load("wsdl", &s.wsdl).map(Arc::new).map_err(|p| problems.push(p)).ok();

    let mut time = |key: &str, value: &Option<String>, default: Duration| {
        duration(key, value.as_deref(), default, AtLeast::Zero, &mut |m| problems.push(here(key, m)))
    };
    let timeout = time("timeout", &s.timeout, Duration::from_secs(30));
    let connect_timeout = time("connect_timeout", &s.connect_timeout, Duration::from_secs(5));
    let max_response = max_response(s, &mut |key, m| problems.push(here(key, m)));
    let credentials = s
        .auth
        .as_ref()
        .map(|a| credentials(source, a, &mut |needle, m| problems.push(here(needle, m))))
        .unwrap_or_default();
    let faults = fault_rules(file, &["backends", name, "faults"], &s.faults, &mut problems);
    let mut protection = compile_protect::protection(s, &mut |needle, m| problems.push(here(needle, m)));
    let mut credentials = credentials;
    let mut session = None;
    if let Some(model) = &model {
        if let Some(t) = s.auth.as_ref().and_then(|a| a.netsuite_tba.as_ref()) {
            match compile_session::netsuite(source, t, model) {
                Ok(tba) => credentials.netsuite = Some(tba),
                Err(m) => problems.push(here("auth.netsuite_tba", m)),
            }
        }
        if let Some(sess) = &s.session {
            let mut found = Vec::new();
            let mut fail = |needle: &str, m: String| found.push(here(needle, m));
            session = compile_session::session(source, sess, model, url.as_ref(), &load, &mut fail, &mut problems);
            problems.extend(found);
        }
    }
    if let Some(spec) = &session {
        slots_for_sessions(s, spec, &mut protection, &mut |key, m| problems.push(here(key, m)));
    }

    match (url, model, problems.is_empty()) {
        (Some(url), Some(model), true) => {
            let settings = BackendSettings {
                name: name.to_string(),
                url,
                timeout,
                connect_timeout,
                max_response,
                credentials,
                faults,
                fault_detail: s.fault_detail.unwrap_or_default(),
            };
            let tls = match &s.tls {
                None => Ok(BackendTls::default()),
                Some(t) => backend_tls(source, t),
            };
            tls.and_then(|tls| Backend::new(settings, model, protection, tls, session, retained))
                .map_err(|m| vec![here("", m)])
        }
        _ => Err(problems),
    }
}

/// The backend's endpoint: `--backend-url` (dev mode), `url`, or `url_env`, as an http(s) URL.
fn backend_url(
    name: &str,
    s: &BackendSection,
    options: &CompileOptions,
    here: &mut dyn FnMut(&str, String),
) -> Option<reqwest::Url> {
    let url = match (options.backend_urls.get(name), &s.url, &s.url_env) {
        (Some(u), _, _) => Some(u.clone()),
        (None, Some(u), None) => Some(u.clone()),
        (None, None, Some(var)) => {
            std::env::var(var).map_err(|_| here("url_env", format!("environment variable {var} is not set"))).ok()
        }
        (None, Some(_), Some(_)) => {
            here("url", "set either url or url_env, not both".into());
            None
        }
        (None, None, None) => {
            here("", "no endpoint; add url: \"http://host:port/path\" or url_env: VAR".into());
            None
        }
    };
    url.and_then(|u| http_url(&u).map_err(|m| here("url", m)).ok())
}

/// `max_response:`, more than zero bytes.
fn max_response(s: &BackendSection, here: &mut dyn FnMut(&str, String)) -> usize {
    match s.max_response.as_deref().map(units::size) {
        None => DEFAULT_MAX_RESPONSE,
        Some(Ok(0)) => {
            here("max_response", "max_response: 0 would refuse every response; write e.g. 8MiB".into());
            DEFAULT_MAX_RESPONSE
        }
        Some(Ok(n)) => n,
        Some(Err(m)) => {
            here("max_response", format!("max_response: {m}"));
            DEFAULT_MAX_RESPONSE
        }
    }
}

/// With exclusive sessions, one call at a time per session: more slots than sessions would
/// only wait for one, so `max_concurrency` defaults to the pool's size and may not exceed it.
fn slots_for_sessions(
    s: &BackendSection,
    spec: &crate::backend::session::SessionSpec,
    protection: &mut crate::backend::Protection,
    here: &mut dyn FnMut(&str, String),
) {
    if !spec.exclusive {
        return;
    }
    match s.max_concurrency {
        Some(n) if n > spec.size => here(
            "max_concurrency",
            format!(
                "max_concurrency {n} is more than session.size {} with exclusive sessions; calls past {} would hold a slot only to wait for a session. Set max_concurrency to at most {} or raise size",
                spec.size, spec.size, spec.size
            ),
        ),
        Some(_) => {}
        None => protection.queue.max_concurrency = spec.size,
    }
}

/// Reads a WSDL of backend `name` (its own, or its login service's) with the backend's
/// reading options; problems point into the WSDL.
fn load_wsdl(
    source: &ConfigSource,
    name: &str,
    wsdl_path: &str,
    bytes: &[u8],
    s: &BackendSection,
    soap_version: Option<SoapVersion>,
) -> Result<crate::schema::ServiceModel, ConfigProblem> {
    let options = ReadOptions {
        soap_version,
        naming: s.json_naming,
        renames: s.rename.clone(),
        base: matches!(source, ConfigSource::Dir(_))
            .then(|| source.path(wsdl_path).parent().map(Path::to_path_buf))
            .flatten(),
        root: match source {
            ConfigSource::Dir(dir) => Some(dir.clone()),
            ConfigSource::Embedded => None,
        },
        catalog: s.catalog.iter().map(|(url, file)| (url.clone(), source.path(file))).collect(),
        port: s.port.clone(),
        any_as_xml: s.xsd_any == super::raw::XsdAny::Xml,
    };
    wsdl::read(bytes, options).map_err(|e| ConfigProblem {
        file: match &e {
            wsdl::WsdlError::Invalid { file: Some(f), .. } => PathBuf::from(f),
            _ => PathBuf::from(wsdl_path),
        },
        line: match &e {
            wsdl::WsdlError::Xml(x) => Some(x.line),
            wsdl::WsdlError::Invalid { line, .. } => Some(*line),
        },
        message: format!(
            "WSDL of backend {name}: {}",
            match &e {
                wsdl::WsdlError::Xml(x) => x.message.clone(),
                wsdl::WsdlError::Invalid { message, .. } => message.clone(),
            }
        ),
    })
}

/// A backend's extra CA and client certificate.
fn backend_tls(source: &ConfigSource, t: &super::raw::BackendTlsSection) -> Result<BackendTls, String> {
    let roots = match &t.ca_file {
        Some(f) => tls::backend_roots(&source.path(f))?,
        None => Vec::new(),
    };
    let identity = match (&t.client_cert_file, &t.client_key_file) {
        (Some(c), Some(k)) => Some(tls::backend_identity(&source.path(c), &source.path(k))?),
        (None, None) => None,
        _ => return Err("tls: give both client_cert_file and client_key_file".into()),
    };
    Ok(BackendTls { roots, identity })
}

/// Upstream credentials; each problem goes to `fail(key path under the backend, message)`.
fn credentials(source: &ConfigSource, a: &AuthSection, fail: &mut dyn FnMut(&str, String)) -> Credentials {
    let mut c = Credentials::default();
    if let Some(b) = &a.basic {
        match secret::resolve(source, b.password_env.as_deref(), b.password_file.as_deref(), "password") {
            Ok(password) => c.basic = Some(BasicAuth { username: b.username.clone(), password }),
            Err(m) => fail("auth.basic", m),
        }
    }
    if let Some(w) = &a.ws_security {
        let digest = w.password_type == super::raw::PasswordType::Digest;
        let ttl = duration(
            "timestamp_ttl",
            w.timestamp_ttl.as_deref(),
            Duration::from_secs(300),
            AtLeast::Positive,
            &mut |m| fail("auth.ws_security.timestamp_ttl", m),
        );
        match secret::resolve(source, w.password_env.as_deref(), w.password_file.as_deref(), "password") {
            Ok(password) => c.ws_security = Some(WsSecurity { username: w.username.clone(), password, digest, ttl }),
            Err(m) => fail("auth.ws_security", m),
        }
    }
    if let Some(o) = &a.oauth2 {
        let made =
            secret::resolve(source, o.client_secret_env.as_deref(), o.client_secret_file.as_deref(), "client_secret")
                .and_then(|sec| UpstreamOAuth::new(&o.token_url, &o.client_id, sec, o.scopes.clone()));
        match made {
            Ok(u) => c.oauth2 = Some(u),
            Err(m) => fail("auth.oauth2", m),
        }
    }
    c
}

/// A `cors:` section, compiled.
pub(super) fn cors(c: &super::raw::CorsSection) -> Result<Arc<crate::route::cors::CorsPolicy>, String> {
    let max_age = match c.max_age.as_deref().map(units::duration) {
        None => Duration::from_secs(600),
        Some(Ok(d)) => d,
        Some(Err(m)) => return Err(format!("max_age: {m}")),
    };
    crate::route::cors::CorsPolicy::new(
        &c.origins,
        c.methods.as_deref(),
        c.headers.as_deref(),
        c.expose.as_deref(),
        max_age,
    )
    .map(Arc::new)
}
