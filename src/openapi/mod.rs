//! OpenAPI 3.1 generated from the compiled routes, the same model that serves requests, so
//! the document cannot drift from what the gateway does. Served at `/openapi.json` and
//! `/openapi.yaml` from the live snapshot and printed by `veneer openapi`.

pub mod schema;
mod telemetry;

use serde_json::{Map, Value, json};

use self::schema::{Direction, Schemas};
use crate::config::Gateway;
use crate::route::{Route, Source};
use crate::schema::{Element, TypeRef};

/// Status codes every route may answer, with when.
const ERRORS: &[(u16, &str)] = &[
    (400, "The body is not valid JSON"),
    (401, "No valid bearer token"),
    (403, "The token lacks a required scope"),
    (404, "No such route, or the backend reports the record missing"),
    (413, "The body exceeds the size limit"),
    (415, "The body is not application/json"),
    (422, "Input does not match the operation's schema, or the backend rejected it"),
    (429, "A rate limit or quota refused the request"),
    (502, "The backend failed or answered with something unusable"),
    (503, "The backend is protected right now (queue full, circuit open, busy)"),
    (504, "The backend timed out"),
];

/// Builds the document for a snapshot.
pub fn document(gw: &Gateway) -> Value {
    let mut paths = Map::new();
    let mut components = Map::new();
    let mut used_ids = std::collections::HashSet::new();
    // One builder per backend: its component names stay unique across that backend's routes.
    let mut builders: std::collections::BTreeMap<&str, Schemas<'_>> = std::collections::BTreeMap::new();
    for route in gw.routes.iter() {
        let backend = route.backend.name();
        let schemas = builders
            .entry(backend)
            .or_insert_with(|| Schemas::new(&route.backend.model.schema, &format!("{backend}.")));
        let op = operation(gw, route, schemas, &mut used_ids);
        let path = paths.entry(route.path.clone()).or_insert_with(|| json!({}));
        path[route.method.as_str().to_ascii_lowercase()] = op;
    }
    for schemas in builders.into_values() {
        components.extend(schemas.components);
    }
    if let Some(item) = telemetry::path_item(&gw.sensors, security_scheme(gw).map(|(name, _)| name)) {
        paths.insert("/telemetry".into(), item);
    }
    components.insert("Problem".into(), problem_schema());
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Veneer",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "REST/JSON facade over SOAP backends. Every error is application/problem+json (RFC 9457).",
        },
        "paths": paths,
        "components": { "schemas": components },
    });
    if let Some((name, scheme)) = security_scheme(gw) {
        doc["components"]["securitySchemes"] = json!({ name: scheme });
    }
    doc
}

/// Checks the document against utoipa's typed OpenAPI model: a document that does not fit
/// the model (an operation, parameter, response or security shape out of place) is a bug
/// here, reported rather than served. What is served is the document itself: utoipa 6's
/// schema model has no place for JSON Schema 2020-12 keywords such as `contains`, or
/// `anyOf` beside `properties`, and would drop them silently.
fn check(doc: &Value) -> Result<(), String> {
    serde_json::from_value::<utoipa::openapi::OpenApi>(doc.clone())
        .map(drop)
        .map_err(|e| format!("the generated OpenAPI document does not fit the OpenAPI model: {e}"))
}

/// The document as pretty JSON.
pub fn json(doc: &Value) -> Result<String, String> {
    check(doc)?;
    serde_json::to_string_pretty(doc).map_err(|e| e.to_string())
}

/// The document as YAML.
pub fn yaml(doc: &Value) -> Result<String, String> {
    check(doc)?;
    yaml_serde::to_string(doc).map_err(|e| e.to_string())
}

/// The scheme every route that is not public requires, exactly as the gateway enforces it:
/// with an `auth:` section a bearer token is checked on every such route, whoever issued it.
/// Veneer's own issuer is an OAuth2 client-credentials flow (`oauth2`); without it, tokens
/// come from external issuers or introspection, a plain bearer token (`bearer`).
fn security_scheme(gw: &Gateway) -> Option<(&'static str, Value)> {
    let auth = gw.auth.as_ref()?;
    let Some(local) = auth.local.as_ref() else {
        return Some((
            "bearer",
            json!({
                "type": "http",
                "scheme": "bearer",
                "description": "An access token from an issuer this gateway trusts (auth.external_issuers or introspection).",
            }),
        ));
    };
    let scopes: Map<String, Value> =
        local.scopes().into_iter().map(|s| (s.clone(), json!(format!("Grants {s}")))).collect();
    Some((
        "oauth2",
        json!({
            "type": "oauth2",
            "description": "Client credentials from Veneer's own authorization server.",
            "flows": { "clientCredentials": { "tokenUrl": local.token_endpoint(), "scopes": scopes } },
        }),
    ))
}

fn operation(
    gw: &Gateway,
    route: &Route,
    schemas: &mut Schemas,
    used: &mut std::collections::HashSet<String>,
) -> Value {
    let soap = route.operation();
    // operationId is the WSDL operation's name; a second route on it gets a suffix.
    let mut id = soap.name.clone();
    let mut n = 2;
    while !used.insert(id.clone()) {
        id = format!("{}_{n}", soap.name);
        n += 1;
    }
    let mut op = json!({
        "operationId": id,
        "tags": [route.backend.name()],
        "parameters": parameters(route, schemas),
        "responses": responses(route, schemas),
    });
    if let Some(s) = &route.summary {
        op["summary"] = json!(s);
    }
    if let Some(d) = &route.description {
        op["description"] = json!(d);
    }
    if let Some(body) = request_body(route, schemas) {
        op["requestBody"] = body;
    }
    match security_scheme(gw) {
        Some((name, _)) if !route.public => op["security"] = json!([{ name: route.scopes }]),
        _ => op["security"] = json!([]),
    }
    op
}

/// The input element's child with JSON key `key`.
fn child<'a>(route: &'a Route, el: &'a Element, key: &str) -> Option<&'a Element> {
    let TypeRef::Complex(id) = el.ty else { return None };
    route.backend.model.schema.complex(id).children.iter().find(|c| c.json_name == key)
}

fn parameters(route: &Route, schemas: &mut Schemas) -> Value {
    let mut out = Vec::new();
    let input = &route.operation().input;
    let fields: &[(String, Source)] = match &route.input {
        Source::Object { fields, .. } => fields,
        _ => &[],
    };
    for (key, source) in fields {
        let (location, name) = match source {
            Source::Path(n) => ("path", n.clone()),
            Source::Query(n) => ("query", n.clone()),
            Source::Header(h) => ("header", h.as_str().to_string()),
            _ => continue,
        };
        let Some(el) = child(route, input, key) else { continue };
        let mut p = json!({ "name": name, "in": location, "required": location == "path" || el.is_required(), "schema": schemas.element(el, Direction::Request) });
        if let Some(d) = &el.doc {
            p["description"] = json!(d);
        }
        out.push(p);
    }
    // Path parameters the mapping does not use still exist in the path.
    for seg in route.path.split('/') {
        let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else { continue };
        if !out.iter().any(|p| p["in"] == "path" && p["name"] == name) {
            out.push(json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }));
        }
    }
    if !route.idempotent {
        out.push(json!({
            "name": "Idempotency-Key",
            "in": "header",
            "required": route.idempotency_required,
            "description": "draft-ietf-httpapi-idempotency-key-header: a retry with the same key and payload replays the first answer (marked `Idempotent-Replayed: true`); the same key with another payload is 422; a retry while the first is still running is 409. Keys are kept per client and route for the gateway's idempotency_ttl (default 24 h).",
            "schema": { "type": "string", "minLength": 1, "maxLength": crate::delivery::idempotency::MAX_KEY, "pattern": "^[!-~]+$" },
        }));
    }
    Value::Array(out)
}

fn request_body(route: &Route, schemas: &mut Schemas) -> Option<Value> {
    let input = &route.operation().input;
    let schema = match &route.input {
        Source::Body(keys) if keys.is_empty() => schemas.element(input, Direction::Request),
        Source::Object { fields, spread: Some(spread) } if matches!(spread.as_ref(), Source::Body(k) if k.is_empty()) =>
        {
            let TypeRef::Complex(id) = input.ty else { return None };
            let mapped: Vec<String> = fields.iter().map(|(k, _)| k.clone()).collect();
            schemas.object(route.backend.model.schema.complex(id), Direction::Request, &mapped)
        }
        Source::Object { fields, .. } => {
            // Fields taken from top-level body keys, e.g. `Text: "{body.text}"`.
            let mut props = Map::new();
            let mut required = Vec::new();
            for (key, source) in fields {
                let Source::Body(keys) = source else { continue };
                let ([body_key], Some(el)) = (keys.as_slice(), child(route, input, key)) else { continue };
                props.insert(body_key.clone(), schemas.element(el, Direction::Request));
                if el.is_required() {
                    required.push(json!(body_key));
                }
            }
            if props.is_empty() {
                return None;
            }
            json!({ "type": "object", "properties": props, "required": required })
        }
        _ => return None,
    };
    let example = match &route.input {
        Source::Body(keys) if keys.is_empty() => Some(schemas.example(input, 0)),
        _ => None,
    };
    let mut media = json!({ "schema": schema });
    if let Some(e) = example {
        media["example"] = e;
    }
    Some(json!({ "required": true, "content": { "application/json": media } }))
}

fn responses(route: &Route, schemas: &mut Schemas) -> Value {
    let output = &route.operation().output;
    let mut el = output;
    let mut schema = None;
    for key in &route.response {
        match child(route, el, key) {
            Some(c) => el = c,
            None => {
                schema = Some(json!({}));
                break;
            }
        }
    }
    let schema = schema.unwrap_or_else(|| {
        if route.response.is_empty() {
            match el.ty {
                TypeRef::Complex(id) => {
                    schemas.object(route.backend.model.schema.complex(id), Direction::Response, &[])
                }
                TypeRef::Simple(ref st) => schema::simple(st, Direction::Response),
            }
        } else {
            // The selected element may be absent (minOccurs 0): the body is then null.
            let s = schemas.element(el, Direction::Response);
            if el.is_array() || el.is_required() { s } else { json!({ "oneOf": [s, { "type": "null" }] }) }
        }
    });
    let limited = route.limit.is_some();
    let mut ok = json!({
        "description": "Success",
        "content": { "application/json": { "schema": schema } },
    });
    if limited {
        ok["headers"] = rate_limit_headers();
    }
    let mut out = Map::new();
    if route.queued.is_some() {
        let mut accepted = json!({
            "description": "Accepted: stored durably; the gateway delivers it to the ERP (GET the Location for its state)",
            "headers": { "Location": { "description": "/deliveries/{id}", "schema": { "type": "string" } } },
            "content": { "application/json": { "schema": {
                "type": "object",
                "required": ["id", "state"],
                "properties": { "id": { "type": "string" }, "state": { "type": "string", "enum": ["queued"] } },
            } } },
        });
        if limited {
            accepted["headers"]["RateLimit-Policy"] = rate_limit_headers()["RateLimit-Policy"].clone();
            accepted["headers"]["RateLimit"] = rate_limit_headers()["RateLimit"].clone();
        }
        out.insert("202".into(), accepted);
    } else if route.operation().one_way {
        let mut accepted = json!({ "description": "Accepted: the one-way operation was delivered (no body)" });
        if limited {
            accepted["headers"] = rate_limit_headers();
        }
        out.insert("202".into(), accepted);
    } else {
        out.insert(route.status.as_u16().to_string(), ok);
    }
    for (status, why) in ERRORS {
        let mut r = json!({ "description": why, "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } });
        if matches!(status, 429 | 503) {
            r["headers"] = json!({ "Retry-After": { "description": "Seconds to wait before retrying", "schema": { "type": "integer" } } });
        }
        out.insert(status.to_string(), r);
    }
    if !route.idempotent {
        let problem = json!({ "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } });
        out.insert(
            "409".into(),
            json!({ "description": "A request with this Idempotency-Key is still being processed", "content": problem }),
        );
    }
    Value::Object(out)
}

fn rate_limit_headers() -> Value {
    json!({
        "RateLimit-Policy": { "description": "Limits that apply (draft-ietf-httpapi-ratelimit-headers)", "schema": { "type": "string" } },
        "RateLimit": { "description": "Remaining quota and seconds to reset, per policy", "schema": { "type": "string" } },
    })
}

fn problem_schema() -> Value {
    json!({
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": { "type": "string" },
            "title": { "type": "string" },
            "status": { "type": "integer" },
            "detail": { "type": "string" },
            "errors": {
                "type": "array",
                "description": "Every invalid input value, each with a JSON pointer or a parameter",
                "items": {
                    "type": "object",
                    "required": ["detail"],
                    "properties": {
                        "pointer": { "type": "string" },
                        "in": { "type": "string", "enum": ["path", "query", "header"] },
                        "parameter": { "type": "string" },
                        "detail": { "type": "string" },
                    },
                },
            },
            "fault": { "type": "object", "description": "The SOAP Fault: code, subcodes, reason, actor, detail" },
            "backend": { "type": "string" },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile::CompileOptions;
    use crate::config::{ConfigSource, compile};

    #[test]
    fn the_document_fits_the_typed_model_and_is_served_as_built() {
        let options = CompileOptions {
            backend_urls: [("erp".to_string(), "http://127.0.0.1:9/erp".to_string())].into(),
            issuer: Some("http://127.0.0.1:8080".into()),
            dev_client: Some(("demo".into(), "secret".into())),
            dev_admin: None,
            data_dir: None,
            retained: Default::default(),
        };
        let gw = compile(&ConfigSource::Embedded, &options).expect("sample config");
        let doc = document(&gw);
        let typed: utoipa::openapi::OpenApi = serde_json::from_value(doc.clone()).expect("fits the model");
        let served: Value = serde_json::from_str(&json(&doc).expect("json")).expect("json");
        assert_eq!(served, doc, "served as built, keyword for keyword");
        for (path, item) in doc["paths"].as_object().expect("paths") {
            assert!(typed.paths.paths.contains_key(path), "{path} fits the typed model");
            assert!(item.as_object().is_some_and(|ops| !ops.is_empty()));
        }
        let yaml_doc: Value = yaml_serde::from_str(&yaml(&doc).expect("yaml")).expect("yaml parses");
        assert_eq!(yaml_doc, doc, "the YAML form says the same");
        // The 2020-12 keywords the typed model would have dropped are served.
        let telemetry = &doc["paths"]["/telemetry"]["post"]["requestBody"]["content"]["application/json"]["schema"];
        assert!(telemetry["oneOf"][1]["contains"]["anyOf"].is_array(), "{telemetry}");
    }
}
