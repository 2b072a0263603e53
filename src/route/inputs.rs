//! Collects a request's values into the JSON content of the SOAP input element, and maps
//! encoder errors back to where the client wrote the value (body pointer or parameter).

use axum::http::HeaderMap;
use serde_json::{Map, Value};

use super::Source;
use crate::error::FieldError;

/// The parts of a request that routes can read.
pub(crate) struct RequestValues<'a> {
    /// Percent-decoded path parameters.
    pub path: &'a [(String, String)],
    /// Decoded query pairs, in order.
    pub query: &'a [(String, String)],
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The parsed JSON body, when the route reads one.
    pub body: Option<&'a Value>,
    /// `{delivery.key}`: the key the ERP sees, scoped to the caller.
    pub delivery_key: &'a str,
    /// `{delivery.raw_key}`: the caller's key as sent.
    pub raw_key: &'a str,
}

/// Builds the input value; `None` when the source has no value in this request.
pub(crate) fn assemble(source: &Source, req: &RequestValues<'_>) -> Option<Value> {
    match source {
        Source::Path(name) => req.path.iter().find(|(k, _)| k == name).map(|(_, v)| Value::String(v.clone())),
        Source::Query(name) => req.query.iter().find(|(k, _)| k == name).map(|(_, v)| Value::String(v.clone())),
        Source::Header(name) => {
            req.headers.get(name).and_then(|v| v.to_str().ok()).map(|v| Value::String(v.to_string()))
        }
        Source::Body(keys) => keys.iter().try_fold(req.body?, |v, k| v.get(k)).cloned(),
        Source::Literal(v) => Some(v.clone()),
        Source::DeliveryKey { raw: false } => Some(Value::String(req.delivery_key.to_string())),
        Source::DeliveryKey { raw: true } => Some(Value::String(req.raw_key.to_string())),
        Source::Object { fields, spread } => {
            let mut map = match spread.as_deref().and_then(|s| assemble(s, req)) {
                Some(Value::Object(m)) => m,
                // A non-object where fields are spread is reported by the encoder as-is.
                Some(other) => return Some(other),
                None => Map::new(),
            };
            for (key, src) in fields {
                match assemble(src, req) {
                    Some(v) => {
                        map.insert(key.clone(), v);
                    }
                    None => {
                        map.remove(key);
                    }
                }
            }
            Some(Value::Object(map))
        }
    }
}

/// Rewrites an encoder error (pointer into the assembled input) to point where the client
/// supplied the value.
pub(crate) fn locate(source: &Source, err: FieldError) -> FieldError {
    let pointer = err.pointer.clone().unwrap_or_default();
    relocate(source, &pointer, err)
}

fn relocate(source: &Source, pointer: &str, err: FieldError) -> FieldError {
    let param = |location: &'static str, name: &str| FieldError {
        pointer: None,
        location: Some(location),
        parameter: Some(name.to_string()),
        detail: err.detail.clone(),
    };
    match source {
        Source::Path(name) => param("path", name),
        Source::Query(name) => param("query", name),
        Source::Header(name) => param("header", name.as_str()),
        Source::Body(keys) => {
            let mut p: String = keys.iter().fold(String::new(), |acc, k| crate::translate::pointer_push(&acc, k));
            p.push_str(pointer);
            FieldError { pointer: Some(p), ..err }
        }
        Source::DeliveryKey { .. } => FieldError {
            pointer: None,
            location: Some("header"),
            parameter: Some("idempotency-key".into()),
            detail: format!("the delivery key does not fit the element it fills: {}", err.detail),
        },
        Source::Literal(_) => FieldError {
            pointer: None,
            detail: format!("the route's configured value is invalid: {}", err.detail),
            ..err
        },
        Source::Object { fields, spread } => {
            let (first, rest) = split_first(pointer);
            if let Some((_, src)) = fields.iter().find(|(k, _)| *k == first) {
                return relocate(src, rest, err);
            }
            match spread {
                Some(s) => relocate(s, pointer, err),
                None => err,
            }
        }
    }
}

/// `"/a/b/c"` → (`"a"`, `"/b/c"`), unescaping the RFC 6901 token.
fn split_first(pointer: &str) -> (String, &str) {
    let p = pointer.strip_prefix('/').unwrap_or(pointer);
    let (head, rest) = p.find('/').map_or((p, ""), |i| (&p[..i], &p[i..]));
    (head.replace("~1", "/").replace("~0", "~"), rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_override_the_spread_body_and_errors_find_their_origin() {
        let source = Source::Object {
            fields: vec![
                ("orderNo".into(), Source::Path("no".into())),
                ("qty".into(), Source::Body(vec!["quantity".into()])),
            ],
            spread: Some(Box::new(Source::Body(vec![]))),
        };
        let body = json!({"orderNo": "evil", "quantity": 5, "note": "x"});
        let headers = HeaderMap::new();
        let req = RequestValues {
            path: &[("no".into(), "PO-1".into())],
            query: &[],
            headers: &headers,
            body: Some(&body),
            delivery_key: "",
            raw_key: "",
        };
        let v = assemble(&source, &req).expect("object");
        assert_eq!(v["orderNo"], "PO-1");
        assert_eq!(v["qty"], 5);
        assert_eq!(v["note"], "x");
        let e = locate(&source, FieldError::at("/orderNo", "bad"));
        assert_eq!((e.location, e.parameter.as_deref(), e.pointer), (Some("path"), Some("no"), None));
        assert_eq!(locate(&source, FieldError::at("/qty", "bad")).pointer.as_deref(), Some("/quantity"));
        assert_eq!(locate(&source, FieldError::at("/note/0", "bad")).pointer.as_deref(), Some("/note/0"));
    }
}
