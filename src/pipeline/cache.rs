//! Response cache with request coalescing for idempotent routes (`cache:`): concurrent
//! identical requests share one backend call (moka's `try_get_with` runs one loader per key
//! and hands its result to every waiter), and successful answers are kept for the TTL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

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
    /// The entries.
    pub entries: moka::future::Cache<String, Arc<Cached>>,
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

    /// The key: parameters, query, the caller's scope set, and the client when per-client.
    pub fn key(&self, params: &[(String, String)], query: Option<&str>, principal: Option<&Principal>) -> String {
        let mut key = String::new();
        for (k, v) in params {
            key.push_str(k);
            key.push('=');
            key.push_str(v);
            key.push('\u{0}');
        }
        key.push('?');
        key.push_str(query.unwrap_or(""));
        if let Some(p) = principal {
            key.push('\u{0}');
            key.push_str(&p.scopes.iter().cloned().collect::<Vec<_>>().join(" "));
            if self.per_client {
                key.push('\u{0}');
                key.push_str(&p.issuer);
                key.push('\u{0}');
                key.push_str(&p.client_id);
            }
        }
        key
    }
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
    fn keys_separate_scopes_and_per_client_routes_separate_clients() {
        let params = vec![("no".to_string(), "1000".to_string())];
        let shared = RouteCache::new(Duration::from_secs(1), false);
        let a = principal("a", &["items:read"]);
        let b = principal("b", &["items:read"]);
        let wide = principal("c", &["items:read", "prices:read"]);
        assert_eq!(shared.key(&params, None, Some(&a)), shared.key(&params, None, Some(&b)));
        assert_ne!(
            shared.key(&params, None, Some(&a)),
            shared.key(&params, None, Some(&wide)),
            "scope sets never share"
        );
        assert_ne!(shared.key(&params, Some("x=1"), Some(&a)), shared.key(&params, None, Some(&a)));
        let per_client = RouteCache::new(Duration::from_secs(1), true);
        assert_ne!(per_client.key(&params, None, Some(&a)), per_client.key(&params, None, Some(&b)));
    }
}
