//! Compiles a backend's `session:` (login, captures, what a session sends, lifetimes, pool)
//! and `auth.netsuite_tba:` against the backend's WSDL. Everything a session sends is
//! checked here, so a misspelt element or capture is a config error, not a failed login.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, StatusCode};
use regex::Regex;
use serde_json::{Map, Value};

use super::problems::{self, AtLeast, http_url};
use super::raw_session::{LoginSection, NetSuiteTbaSection, SessionSection};
use super::{ConfigProblem, ConfigSource, secret};
use crate::backend::faults::FaultRule;
use crate::backend::netsuite::{TokenParts, TokenPassport};
use crate::backend::session::template::{Template, ValueTemplate};
use crate::backend::session::{
    DEFAULT_EXPIRED_CODE, DEFAULT_EXPIRED_REASON, Endpoints, HeaderSpec, SessionCall, SessionSpec,
};
use crate::schema::{Element, SIMPLE_CONTENT_KEY, SchemaSet, ServiceModel, TypeRef};
use crate::translate::encode;

/// Loads another WSDL (the login service's) with the backend's reading options; the first
/// argument is the key path naming it, for problems.
pub(super) type LoadWsdl<'a> = dyn Fn(&str, &str) -> Result<ServiceModel, ConfigProblem> + 'a;

/// The backend's compiled session; each problem goes to `fail(key path under the backend,
/// message)`.
pub(super) fn session(
    source: &ConfigSource,
    s: &SessionSection,
    model: &Arc<ServiceModel>,
    backend_url: Option<&reqwest::Url>,
    load: &LoadWsdl<'_>,
    fail: &mut dyn FnMut(&str, String),
    problems: &mut Vec<ConfigProblem>,
) -> Option<SessionSpec> {
    let before = problems.len();
    let mut failed = false;
    let mut bad = |needle: &str, m: String| {
        failed = true;
        fail(needle, format!("session: {m}"));
    };
    let names: Vec<&str> = s.capture.keys().map(String::as_str).collect();

    // The login: its WSDL, operation, endpoint and input (secrets merged in).
    let login_model = match &s.login.wsdl {
        None => Some(model.clone()),
        Some(w) => load("session.login.wsdl", w).map(Arc::new).map_err(|p| problems.push(p)).ok(),
    };
    let mut secrets = Vec::new();
    let login = login_model.and_then(|m| login_call(source, &s.login, m, &mut secrets, &mut bad));
    let login_url = login_url(s, login.as_ref(), &mut bad);
    let login = login.map(|c| SessionCall { url: login_url, ..c });

    let (capture, expires_in) = captures(s, login.as_ref(), &mut bad);

    let soap_headers =
        header_specs(s.soap_headers.as_ref(), model, &names, "session.soap_headers", Fit::Exact, &mut bad);
    let headers_by_op = model
        .operations
        .iter()
        .map(|op| soap_headers.iter().enumerate().filter(|(_, h)| h.declared_by(op)).map(|(i, _)| i).collect())
        .collect();
    let http_headers = http_headers(s, &names, &mut bad);
    let url = s
        .url
        .as_deref()
        .and_then(|u| Template::parse(u, &names).map_err(|m| bad("session.url", format!("url: {m}"))).ok());
    let own = backend_url.into_iter().chain(login.as_ref().and_then(|c| c.url.as_ref()));
    let endpoints = Endpoints::new(own, &s.allowed_hosts)
        .map_err(|m| bad("session.allowed_hosts", format!("allowed_hosts: {m}")))
        .unwrap_or_default();
    if s.soap_headers.as_ref().is_none_or(|h| h.is_empty()) && s.http_headers.is_empty() {
        bad("session", "the session is never sent: add soap_headers: or http_headers:".into());
    }

    let session_headers_ok = soap_headers.len() == s.soap_headers.as_ref().map_or(0, |h| h.len());
    let logout = logout(s, model, login.as_ref(), &names, session_headers_ok, &mut bad);

    let mut duration = |key: &str, value: &Option<String>, default: Duration| {
        problems::duration(key, value.as_deref(), default, AtLeast::Positive, &mut |m| {
            bad(&format!("session.{key}"), m)
        })
    };
    let idle = duration("idle", &s.idle, Duration::from_secs(15 * 60));
    let lifetime = duration("lifetime", &s.lifetime, Duration::from_secs(8 * 3600));
    let login_backoff = duration("login_backoff", &s.login_backoff, Duration::from_secs(5));
    let size = s.size.unwrap_or(1);
    if size == 0 || size > 256 {
        bad("session.size", format!("size: {size} sessions; use 1 to 256"));
    }
    let expired = expired_rules(s, &mut bad);
    let fingerprint = fingerprint(s, &secrets, backend_url);
    match login {
        Some(login) if !failed && problems.len() == before => Some(SessionSpec {
            login,
            logout,
            capture,
            expires_in,
            soap_headers,
            headers_by_op,
            http_headers,
            url,
            endpoints,
            size,
            exclusive: s.exclusive,
            idle,
            lifetime,
            expired,
            login_backoff,
            secrets,
            fingerprint,
        }),
        _ => None,
    }
}

/// JSON keys from the login answer's root down to one value.
type KeyPath = Vec<String>;

/// `capture:` and `expires_in:`: paths into the login answer (XML or JSON names), kept as
/// JSON keys; every capture name is letters, digits and _.
fn captures(
    s: &SessionSection,
    login: Option<&SessionCall>,
    bad: &mut dyn FnMut(&str, String),
) -> (Vec<(String, KeyPath)>, Option<KeyPath>) {
    let answer = login.map(|c| (c.model.clone(), c.operation().output.clone()));
    let answer_path = |key: &str, path: &str, bad: &mut dyn FnMut(&str, String)| -> Option<Vec<String>> {
        let (m, output) = answer.as_ref()?;
        let what = key.trim_start_matches("session.").replace('.', " ");
        json_path(output, &m.schema, &key_path(path)).map_err(|e| bad(key, format!("{what}: {e}"))).ok()
    };
    let mut capture = Vec::new();
    for (name, path) in &s.capture {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bad(&format!("session.capture.{name}"), format!("capture name {name:?}: use letters, digits and _"));
        }
        capture.extend(answer_path(&format!("session.capture.{name}"), path, bad).map(|p| (name.clone(), p)));
    }
    let expires_in = s.expires_in.as_deref().and_then(|p| answer_path("session.expires_in", p, bad));
    if s.capture.is_empty() {
        bad("session.capture", "capture: names nothing; capture at least the session id (id: SessionID)".into());
    }
    (capture, expires_in)
}

/// Where the login call goes: `login.url`, else the login WSDL's own address.
fn login_url(
    s: &SessionSection,
    login: Option<&SessionCall>,
    bad: &mut dyn FnMut(&str, String),
) -> Option<reqwest::Url> {
    match (&s.login.url, &s.login.wsdl, login) {
        (Some(u), _, _) => http_url(u).map_err(|m| bad("session.login.url", format!("login.url: {m}"))).ok(),
        (None, Some(_), Some(call)) => match call.model.endpoint.as_deref().map(http_url) {
            Some(Ok(u)) => Some(u),
            _ => {
                bad("session.login", "the login WSDL has no http(s) address; set login.url".into());
                None
            }
        },
        _ => None,
    }
}

/// `http_headers:`: header names and their `{session.NAME}` templates.
fn http_headers(s: &SessionSection, names: &[&str], bad: &mut dyn FnMut(&str, String)) -> Vec<(HeaderName, Template)> {
    let mut out = Vec::new();
    for (name, value) in &s.http_headers {
        match (HeaderName::from_bytes(name.as_bytes()), Template::parse(value, names)) {
            (Ok(n), Ok(t)) => out.push((n, t)),
            (Err(_), _) => bad(&format!("session.http_headers.{name}"), format!("{name:?} is not an HTTP header name")),
            (_, Err(m)) => bad(&format!("session.http_headers.{name}"), format!("http_headers.{name}: {m}")),
        }
    }
    out
}

/// `logout:`, in the login WSDL when there is one; without its own `soap_headers:` it sends
/// the session's values for the header elements the logout operation declares.
/// `session_headers_ok`: every session header compiled (a broken one is reported once).
fn logout(
    s: &SessionSection,
    model: &Arc<ServiceModel>,
    login: Option<&SessionCall>,
    names: &[&str],
    session_headers_ok: bool,
    bad: &mut dyn FnMut(&str, String),
) -> Option<SessionCall> {
    let l = s.logout.as_ref()?;
    // In the login WSDL when there is one (nothing to check when that failed to load).
    let logout_model = match &s.login.wsdl {
        Some(_) => login?.model.clone(),
        None => model.clone(),
    };
    let op = find_operation(&logout_model, &l.operation)
        .map_err(|m| bad("session.logout.operation", format!("logout: {m}")))
        .ok()?;
    let input =
        input_value(&l.input, &logout_model, op).map_err(|m| bad("session.logout.input", format!("logout.input: {m}")));
    let headers = match &l.soap_headers {
        Some(h) => header_specs(Some(h), &logout_model, names, "session.logout.soap_headers", Fit::Exact, bad),
        // The session's own values, for the elements the logout declares, without the
        // fields they lack (SAP B1's login service has a MsgHeader of the same name
        // without ServiceName).
        None => {
            let own = header_specs(s.soap_headers.as_ref(), &logout_model, names, "", Fit::Prune, &mut |_, _| ());
            let declared: Vec<HeaderSpec> =
                own.into_iter().filter(|h| h.declared_by(&logout_model.operations[op])).collect();
            if declared.is_empty() && s.http_headers.is_empty() && session_headers_ok {
                bad(
                    "session.logout",
                    format!(
                        "logout: operation {} declares none of the session's SOAP headers, so the ERP could not tell which session ends; give logout.soap_headers",
                        l.operation
                    ),
                );
            }
            declared
        }
    };
    let url = if s.login.wsdl.is_some() { login.and_then(|c| c.url.clone()) } else { None };
    Some(SessionCall { model: logout_model.clone(), op, url, input: input.ok()?, headers })
}

/// `expired_faults:`, or the defaults (the code `INVALID_SESSION_ID`, or a reason saying the
/// session expired, timed out or is invalid or unknown).
fn expired_rules(s: &SessionSection, bad: &mut dyn FnMut(&str, String)) -> Vec<FaultRule> {
    match &s.expired_faults {
        None => {
            vec![rule(Some(DEFAULT_EXPIRED_CODE.into()), None), rule(None, Regex::new(DEFAULT_EXPIRED_REASON).ok())]
        }
        Some(list) => {
            let mut rules = Vec::new();
            for r in list {
                match r.reason.as_deref().map(Regex::new).transpose() {
                    Ok(reason) if r.code.is_some() || reason.is_some() => rules.push(rule(r.code.clone(), reason)),
                    Ok(_) => {
                        bad("session.expired_faults", "an expired_faults entry needs code:, reason: or both".into())
                    }
                    Err(e) => bad(
                        "session.expired_faults",
                        format!("expired_faults reason is not a valid regular expression: {e}"),
                    ),
                }
            }
            rules
        }
    }
}

/// `auth.netsuite_tba`, checked against the backend's WSDL.
pub(super) fn netsuite(
    source: &ConfigSource,
    t: &NetSuiteTbaSection,
    model: &ServiceModel,
) -> Result<TokenPassport, String> {
    let get = |env: &Option<String>, file: &Option<String>, what: &str| {
        secret::resolve(source, env.as_deref(), file.as_deref(), what).map_err(|m| format!("netsuite_tba: {m}"))
    };
    let parts = TokenParts {
        account: t.account.clone(),
        consumer_key: get(&t.consumer_key_env, &t.consumer_key_file, "consumer_key")?,
        consumer_secret: get(&t.consumer_secret_env, &t.consumer_secret_file, "consumer_secret")?,
        token_id: get(&t.token_id_env, &t.token_id_file, "token_id")?,
        token_secret: get(&t.token_secret_env, &t.token_secret_file, "token_secret")?,
    };
    if parts.account.trim().is_empty() {
        return Err("netsuite_tba: account is empty".into());
    }
    TokenPassport::new(parts, model)
}

fn rule(code: Option<String>, reason: Option<Regex>) -> FaultRule {
    // The status is not used: an expired session is retried, never answered.
    FaultRule { code, reason, status: StatusCode::BAD_GATEWAY }
}

fn key_path(path: &str) -> Vec<String> {
    path.split('.').map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect()
}

fn find_operation(model: &ServiceModel, name: &str) -> Result<usize, String> {
    model.operations.iter().position(|o| o.name == name).ok_or_else(|| {
        let names: Vec<&str> = model.operations.iter().map(|o| o.name.as_str()).collect();
        format!("operation {name:?} is not in the WSDL; it has: {}", names.join(", "))
    })
}

/// The login call: operation, constant input, secrets put in at their paths, the whole
/// checked by encoding it once.
fn login_call(
    source: &ConfigSource,
    l: &LoginSection,
    model: Arc<ServiceModel>,
    secrets: &mut Vec<String>,
    bad: &mut dyn FnMut(&str, String),
) -> Option<SessionCall> {
    let op =
        find_operation(&model, &l.operation).map_err(|m| bad("session.login.operation", format!("login: {m}"))).ok()?;
    let mut input =
        input_value(&l.input, &model, op).map_err(|m| bad("session.login.input", format!("login.input: {m}"))).ok()?;
    // Named as written, before keys become JSON names.
    let written = l.input.as_ref().and_then(|y| serde_json::to_value(y).ok()).unwrap_or(Value::Null);
    if let Some(key) = literal_secret(&written) {
        bad(
            &format!("session.login.input.{key}"),
            format!("login.input.{key} looks like a secret written in the file; move it to input_env or input_file"),
        );
    }
    let refs = l.input_env.iter().map(|(p, v)| (p, Some(v.as_str()), None));
    let refs = refs.chain(l.input_file.iter().map(|(p, f)| (p, None, Some(f.as_str()))));
    for (path, env, file) in refs {
        let what = format!("login input {path}");
        let value = match secret::resolve(source, env, file, "input") {
            Ok(v) => v,
            Err(m) => {
                bad(
                    &format!("session.login.{}.{path}", if env.is_some() { "input_env" } else { "input_file" }),
                    format!("{what}: {m}"),
                );
                continue;
            }
        };
        if let Err(m) = set_at(&mut input, &model.operations[op].input, &model.schema, &key_path(path), &value) {
            bad(
                &format!("session.login.{}.{path}", if env.is_some() { "input_env" } else { "input_file" }),
                format!("{what}: {m}"),
            );
        }
        secrets.push(value);
    }
    let o = &model.operations[op];
    if let Err(errors) = encode::envelope(o, &model.schema, &input, None) {
        let redact =
            |t: &str| secrets.iter().filter(|s| s.len() >= 3).fold(t.to_string(), |t, s| t.replace(s.as_str(), "***"));
        for e in errors {
            bad("session.login.input", format!("login input {}: {}", e.pointer.unwrap_or_default(), redact(&e.detail)));
        }
        return None;
    }
    Some(SessionCall { model, op, url: None, input, headers: Vec::new() })
}

/// The dotted path of a non-empty string under a key naming a password or secret.
fn literal_secret(value: &Value) -> Option<String> {
    let Value::Object(map) = value else { return None };
    map.iter().find_map(|(k, v)| {
        let lower = k.to_ascii_lowercase();
        match v {
            Value::String(s) if !s.is_empty() && (lower.contains("password") || lower.contains("secret")) => {
                Some(k.clone())
            }
            Value::Object(_) => literal_secret(v).map(|rest| format!("{k}.{rest}")),
            _ => None,
        }
    })
}

/// An operation's constant input from YAML, keys normalised to JSON names.
fn input_value(input: &Option<yaml_serde::Value>, model: &ServiceModel, op: usize) -> Result<Value, String> {
    let json = match input {
        None => Value::Object(Map::new()),
        Some(y) => serde_json::to_value(y).map_err(|e| format!("not a JSON-like value: {e}"))?,
    };
    normalise(&json, &model.operations[op].input, &model.schema, "", Fit::Exact)
}

/// How configured values meet an element: every key must be one of its fields, or keys it
/// lacks are left out (the session's header reused for a logout's shorter element).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    Exact,
    Prune,
}

/// `value` with element keys (XML or JSON names) turned into JSON names; unknown keys are
/// errors naming the element's fields.
fn normalise(value: &Value, el: &Element, schema: &SchemaSet, at: &str, fit: Fit) -> Result<Value, String> {
    let TypeRef::Complex(id) = el.ty else { return Ok(value.clone()) };
    match value {
        Value::Array(items) => {
            items.iter().map(|v| normalise(v, el, schema, at, fit)).collect::<Result<Vec<_>, _>>().map(Value::Array)
        }
        Value::Object(map) => {
            let ct = schema.complex(id);
            let mut out = Map::new();
            for (k, v) in map {
                if let Some(child) = ct.children.iter().find(|c| c.name == *k || c.json_name == *k) {
                    out.insert(child.json_name.clone(), normalise(v, child, schema, &format!("{at}/{k}"), fit)?);
                } else if let Some(a) = ct.attributes.iter().find(|a| a.name == *k || a.json_name == *k) {
                    out.insert(a.json_name.clone(), v.clone());
                } else if k == SIMPLE_CONTENT_KEY && ct.simple_content.is_some() {
                    out.insert(k.clone(), v.clone());
                } else if fit == Fit::Prune {
                    continue;
                } else {
                    let names: Vec<&str> = ct.children.iter().map(|c| c.name.as_str()).collect();
                    return Err(format!(
                        "{el_name}{at} has no element {k:?}; its elements are: {}",
                        names.join(", "),
                        el_name = el.name
                    ));
                }
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// A dot-separated element path under `el` (XML or JSON names) as JSON keys.
fn json_path(el: &Element, schema: &SchemaSet, path: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(path.len());
    let mut at = el;
    for key in path {
        let TypeRef::Complex(id) = at.ty else { return Err(format!("{} has no elements (at {key:?})", at.name)) };
        let ct = schema.complex(id);
        let Some(child) = ct.children.iter().find(|c| c.name == *key || c.json_name == *key) else {
            let names: Vec<&str> = ct.children.iter().map(|c| c.name.as_str()).collect();
            return Err(format!("{} has no element {key:?}; its elements are: {}", at.name, names.join(", ")));
        };
        out.push(child.json_name.clone());
        at = child;
    }
    if out.is_empty() {
        return Err("the path is empty".into());
    }
    Ok(out)
}

/// Puts `text` at a dot-separated element path of `input`, creating objects on the way.
fn set_at(input: &mut Value, el: &Element, schema: &SchemaSet, path: &[String], text: &str) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else { return Err("the path is empty".into()) };
    let TypeRef::Complex(id) = el.ty else { return Err(format!("{} has no fields", el.name)) };
    let ct = schema.complex(id);
    let Some(child) = ct.children.iter().find(|c| c.name == *first || c.json_name == *first) else {
        let names: Vec<&str> = ct.children.iter().map(|c| c.name.as_str()).collect();
        return Err(format!("{} has no element {first:?}; its elements are: {}", el.name, names.join(", ")));
    };
    if !input.is_object() {
        *input = Value::Object(Map::new());
    }
    let Some(map) = input.as_object_mut() else { return Err("not an object".into()) };
    let slot = map.entry(child.json_name.clone()).or_insert(Value::Null);
    if rest.is_empty() {
        *slot = Value::String(text.to_string());
        Ok(())
    } else {
        set_at(slot, child, schema, rest, text)
    }
}

/// SOAP header templates (the mapping at key path `at`): element (XML or JSON name, as some
/// operation of `model` declares it) → content with `{session.NAME}`; each checked by encoding it with stand-in
/// values.
fn header_specs(
    headers: Option<&yaml_serde::Mapping>,
    model: &ServiceModel,
    names: &[&str],
    at: &str,
    fit: Fit,
    bad: &mut dyn FnMut(&str, String),
) -> Vec<HeaderSpec> {
    let mut specs = Vec::new();
    for (k, v) in headers.into_iter().flatten() {
        let Some(key) = k.as_str() else {
            bad(at, "soap_headers keys must be header element names".into());
            continue;
        };
        let declared = model.operations.iter().flat_map(|o| o.headers.iter());
        let Some(element) = declared.clone().find(|h| h.name == key || h.json_name == key) else {
            let mut known: Vec<&str> = declared.map(|h| h.name.as_str()).collect();
            known.sort_unstable();
            known.dedup();
            bad(
                &format!("{at}.{key}"),
                format!(
                    "no operation declares a SOAP header {key:?}; declared: {}",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            );
            continue;
        };
        let value = serde_json::to_value(v)
            .map_err(|e| e.to_string())
            .and_then(|j| normalise(&j, element, &model.schema, "", fit))
            .and_then(|j| ValueTemplate::parse(&j, names));
        let value = match value {
            Ok(t) => t,
            Err(m) => {
                bad(&format!("{at}.{key}"), format!("soap_headers.{key}: {m}"));
                continue;
            }
        };
        let stand_in = names.iter().map(|n| (n.to_string(), "0".to_string())).collect();
        let mut probe = String::new();
        if let Err(errors) = encode::body_element(&mut probe, element, &model.schema, &value.render(&stand_in)) {
            for e in errors {
                bad(
                    &format!("{at}.{key}"),
                    format!("soap_headers.{key}{}: {}", e.pointer.unwrap_or_default(), e.detail),
                );
            }
            continue;
        }
        specs.push(HeaderSpec { element: element.clone(), value });
    }
    specs
}

/// A digest of the settings and the secrets they resolve to (never stored themselves).
fn fingerprint(s: &SessionSection, secrets: &[String], backend_url: Option<&reqwest::Url>) -> String {
    use aws_lc_rs::digest::{SHA256, digest};
    let text = format!("{s:?}\u{0}{}\u{0}{:?}", secrets.join("\u{0}"), backend_url.map(reqwest::Url::as_str));
    digest(&SHA256, text.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
