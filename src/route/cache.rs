//! Response cache with request coalescing for idempotent routes (`cache:`): concurrent
//! identical requests share one backend call (moka's `try_get_with` runs one loader per key
//! and hands its result to every waiter), and successful answers are kept for the TTL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use aws_lc_rs::digest::{Context, SHA256};
use serde_json::Value;

use crate::auth::Principal;

/// A successful, serialised answer.
#[derive(Debug)]
pub struct Cached {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body.
    pub body: Bytes,
    /// When the backend answered.
    pub stored: Instant,
}

impl Cached {
    /// The HTTP response; with a cache, `Cache-Control` and `Age` say how fresh it is.
    pub fn response(&self, cache: Option<&RouteCache>) -> Response {
        let mut res = if self.body.is_empty() {
            self.status.into_response() // a one-way operation's 202 carries no body
        } else {
            (self.status, [(header::CONTENT_TYPE, "application/json")], self.body.clone()).into_response()
        };
        if let Some(c) = cache {
            let age = self.stored.elapsed().as_secs();
            let left = c.ttl.as_secs().saturating_sub(age);
            // Private: answers are per caller's permissions, never for shared caches.
            if let Ok(v) = HeaderValue::from_str(&format!("private, max-age={left}")) {
                res.headers_mut().insert(header::CACHE_CONTROL, v);
            }
            res.headers_mut().insert(header::AGE, HeaderValue::from(age));
        }
        res
    }
}

/// A route's cache.
pub struct RouteCache {
    /// Freshness lifetime.
    pub ttl: Duration,
    /// Keep answers per client (never serve one client's answer to another).
    pub per_client: bool,
    /// The entries, by [`RouteCache::key`].
    pub entries: moka::future::Cache<[u8; 32], Arc<Cached>>,
}

impl std::fmt::Debug for RouteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RouteCache {{ ttl: {:?}, per_client: {} }}", self.ttl, self.per_client)
    }
}

impl RouteCache {
    /// A cache holding answers for `ttl`.
    pub fn new(ttl: Duration, per_client: bool) -> Self {
        RouteCache {
            ttl,
            per_client,
            entries: moka::future::Cache::builder().time_to_live(ttl).max_capacity(10_000).build(),
        }
    }

    /// The key: a SHA-256 over everything the backend call is made of (the assembled input,
    /// from path, query, headers and body alike, and the SOAP header values the route
    /// fills), the caller's scope set, and the client when per-client. Two requests share an
    /// answer only when the ERP would have been asked exactly the same thing.
    pub fn key(&self, input: &Value, route_header: &str, principal: Option<&Principal>) -> [u8; 32] {
        let mut ctx = call_digest(input, route_header);
        let mut part = |bytes: &[u8]| {
            ctx.update(&(bytes.len() as u64).to_le_bytes());
            ctx.update(bytes);
        };
        if let Some(p) = principal {
            for s in &p.scopes {
                part(s.as_bytes());
            }
            if self.per_client {
                part(b"\x00client");
                part(p.issuer.as_bytes());
                part(p.client_id.as_bytes());
            }
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }
}

/// A digest over what the ERP is asked: the input and the route's SOAP header values. Each
/// part is preceded by its length, so no two different part lists hash the same bytes.
fn call_digest(input: &Value, route_header: &str) -> Context {
    let mut ctx = Context::new(&SHA256);
    for bytes in [canonical(input).as_slice(), route_header.as_bytes()] {
        ctx.update(&(bytes.len() as u64).to_le_bytes());
        ctx.update(bytes);
    }
    ctx
}

/// The input as JSON with every object's keys in sorted order: a client that writes the
/// same fields in another order asks the same thing (the envelope follows the schema's
/// order), so a retry is a replay, not "a different payload", and hits the same cache entry.
fn canonical(input: &Value) -> Vec<u8> {
    fn write(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_unstable();
                out.push(b'{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let _ = serde_json::to_writer(&mut *out, k);
                    out.push(b':');
                    write(&m[k], out);
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(item, out);
                }
                out.push(b']');
            }
            // Writing a scalar into a Vec cannot fail.
            scalar => {
                let _ = serde_json::to_writer(&mut *out, scalar);
            }
        }
    }
    let mut out = Vec::with_capacity(128);
    write(input, &mut out);
    out
}

/// The hex fingerprint of a call (an `Idempotency-Key`'s payload identity).
pub fn fingerprint(input: &Value, route_header: &str) -> String {
    call_digest(input, route_header).finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(client: &str, scopes: &[&str]) -> Principal {
        Principal {
            client_id: client.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            issuer: "iss".into(),
            expires_at: 0,
        }
    }

    #[test]
    fn a_payload_is_the_same_in_any_key_order_and_another_with_another_value() {
        let a = serde_json::json!({"quantity": 1, "at": {"x": 1, "y": [{"b": 2, "a": 1}]}});
        let b: Value =
            serde_json::from_str(r#"{"at": {"y": [{"a": 1, "b": 2}], "x": 1}, "quantity": 1}"#).expect("json");
        assert_eq!(fingerprint(&a, ""), fingerprint(&b, ""));
        assert_ne!(fingerprint(&a, ""), fingerprint(&serde_json::json!({"quantity": 2, "at": a["at"]}), ""));
        assert_ne!(fingerprint(&a, ""), fingerprint(&a, "<H/>"));
    }

    #[test]
    fn keys_separate_inputs_headers_scopes_and_per_client_routes_separate_clients() {
        let item = serde_json::json!({"No": "1000"});
        let shared = RouteCache::new(Duration::from_secs(1), false);
        let a = principal("a", &["items:read"]);
        let b = principal("b", &["items:read"]);
        let wide = principal("c", &["items:read", "prices:read"]);
        assert_eq!(shared.key(&item, "", Some(&a)), shared.key(&item, "", Some(&b)));
        assert_ne!(shared.key(&item, "", Some(&a)), shared.key(&item, "", Some(&wide)), "scope sets never share");
        let released = serde_json::json!({"Status": "Released"});
        let planned = serde_json::json!({"Status": "Planned"});
        assert_ne!(shared.key(&released, "", Some(&a)), shared.key(&planned, "", Some(&a)), "body fields");
        assert_ne!(
            shared.key(&item, "<S>1</S>", Some(&a)),
            shared.key(&item, "<S>2</S>", Some(&a)),
            "SOAP header values"
        );
        // Parts are delimited: moving bytes between parts changes the key.
        assert_ne!(shared.key(&item, "ab", None), shared.key(&serde_json::json!({"No": "1000ab"}), "", None));
        let per_client = RouteCache::new(Duration::from_secs(1), true);
        assert_ne!(per_client.key(&item, "", Some(&a)), per_client.key(&item, "", Some(&b)));
    }
}
