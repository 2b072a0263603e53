//! CORS (the Fetch standard's CORS protocol) for browser dashboards: a compiled policy per
//! gateway (`server.cors`) or per route (a route's `cors:` replaces the gateway's on its
//! path). A preflight from an allowed origin for an allowed method and headers is answered
//! 204 with the `Access-Control-Allow-*` headers, before authentication (browsers send no
//! token with it); a refused one gets 403 and no CORS header at all, so the browser blocks
//! the call. An allowed origin's real request gets `Access-Control-Allow-Origin` and the
//! exposed headers.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};

/// Request headers a browser may send by default: a token, a JSON body, an idempotency key.
pub(crate) const DEFAULT_HEADERS: [&str; 4] = ["authorization", "content-type", "idempotency-key", "x-request-id"];

/// Response headers a script may read by default: where a 202 went, limits, the request id.
pub(crate) const DEFAULT_EXPOSE: [&str; 6] =
    ["location", "retry-after", "ratelimit", "ratelimit-policy", "x-request-id", "idempotent-replayed"];

/// A compiled CORS policy.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    /// Exact origins (`https://dashboard.plant.example`), or `None` for any origin (`*`).
    origins: Option<Vec<String>>,
    /// Methods allowed; `None`: those the path serves.
    methods: Option<Vec<Method>>,
    /// Request headers allowed (lower case).
    headers: Vec<HeaderName>,
    /// `Access-Control-Expose-Headers`.
    expose: HeaderValue,
    /// `Access-Control-Max-Age`.
    max_age: Duration,
}

impl CorsPolicy {
    /// A policy from its parts as configured; the error says which value is wrong.
    pub fn new(
        origins: &[String],
        methods: Option<&[String]>,
        headers: Option<&[String]>,
        expose: Option<&[String]>,
        max_age: Duration,
    ) -> Result<CorsPolicy, String> {
        if origins.is_empty() {
            return Err("origins: list the origins allowed (\"https://dashboard.example\"), or \"*\" for any".into());
        }
        let origins = if origins.iter().any(|o| o == "*") {
            None
        } else {
            let mut list = Vec::new();
            for o in origins {
                let url = reqwest::Url::parse(o).map_err(|_| format!("origin {o:?} is not scheme://host[:port]"))?;
                let exact = url.origin().ascii_serialization();
                if !matches!(url.scheme(), "http" | "https") || exact != o.trim_end_matches('/') {
                    return Err(format!(
                        "origin {o:?} is not an origin: write scheme://host[:port] only, as {exact:?}"
                    ));
                }
                list.push(exact);
            }
            Some(list)
        };
        let methods = methods
            .map(|ms| {
                ms.iter()
                    .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| format!("method {m:?}")))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let names = |list: Option<&[String]>, default: &[&'static str]| -> Result<Vec<HeaderName>, String> {
            match list {
                Some(l) => l
                    .iter()
                    .map(|h| {
                        HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).map_err(|_| format!("header {h:?}"))
                    })
                    .collect(),
                None => Ok(default.iter().map(|h| HeaderName::from_static(h)).collect()),
            }
        };
        let headers = names(headers, &DEFAULT_HEADERS)?;
        let expose = names(expose, &DEFAULT_EXPOSE)?;
        let expose = HeaderValue::from_str(&expose.iter().map(HeaderName::as_str).collect::<Vec<_>>().join(", "))
            .map_err(|_| "expose: not header names".to_string())?;
        Ok(CorsPolicy { origins, methods, headers, expose, max_age })
    }

    fn allows_origin(&self, origin: &str) -> bool {
        self.origins.as_ref().is_none_or(|list| list.iter().any(|o| o == origin))
    }

    /// The answer to a preflight: the headers of a 204, or `None` to refuse it. `served`:
    /// the methods the path serves.
    pub fn preflight(&self, req: &HeaderMap, served: &[Method]) -> Option<HeaderMap> {
        let origin = req.get(header::ORIGIN)?.to_str().ok()?;
        if !self.allows_origin(origin) {
            return None;
        }
        let method = Method::from_bytes(req.get(header::ACCESS_CONTROL_REQUEST_METHOD)?.as_bytes()).ok()?;
        let allowed: &[Method] = self.methods.as_deref().unwrap_or(served);
        if !allowed.contains(&method) || !served.contains(&method) {
            return None;
        }
        let asked = req.get(header::ACCESS_CONTROL_REQUEST_HEADERS).and_then(|v| v.to_str().ok()).unwrap_or("");
        let asked: Vec<&str> = asked.split(',').map(str::trim).filter(|h| !h.is_empty()).collect();
        if !asked.iter().all(|h| self.headers.iter().any(|a| a.as_str().eq_ignore_ascii_case(h))) {
            return None;
        }
        let mut out = HeaderMap::new();
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_str(origin).ok()?);
        let methods = allowed.iter().filter(|m| served.contains(m)).map(Method::as_str).collect::<Vec<_>>().join(", ");
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_str(&methods).ok()?);
        if !asked.is_empty() {
            let list = asked.iter().map(|h| h.to_ascii_lowercase()).collect::<Vec<_>>().join(", ");
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_str(&list).ok()?);
        }
        out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(self.max_age.as_secs()));
        out.insert(header::VARY, HeaderValue::from_static("origin"));
        Some(out)
    }

    /// Adds the headers an allowed origin's real request gets; nothing for another origin.
    pub(crate) fn decorate(&self, origin: Option<&HeaderValue>, res: &mut HeaderMap) {
        res.append(header::VARY, HeaderValue::from_static("origin"));
        let Some(origin) = origin.filter(|o| o.to_str().is_ok_and(|o| self.allows_origin(o))) else { return };
        res.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        res.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, self.expose.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str], methods: Option<&[&str]>) -> CorsPolicy {
        let o: Vec<String> = origins.iter().map(|s| s.to_string()).collect();
        let m: Option<Vec<String>> = methods.map(|m| m.iter().map(|s| s.to_string()).collect());
        CorsPolicy::new(&o, m.as_deref(), None, None, Duration::from_secs(600)).expect("policy")
    }

    fn preflight(origin: &str, method: &str, headers: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(origin).expect("origin"));
        h.insert(header::ACCESS_CONTROL_REQUEST_METHOD, HeaderValue::from_str(method).expect("method"));
        if !headers.is_empty() {
            h.insert(header::ACCESS_CONTROL_REQUEST_HEADERS, HeaderValue::from_str(headers).expect("headers"));
        }
        h
    }

    #[test]
    fn only_listed_origins_methods_and_headers_pass_a_preflight() {
        let p = policy(&["https://dash.example"], None);
        let served = [Method::GET];
        let ok = p.preflight(&preflight("https://dash.example", "GET", "Authorization"), &served).expect("allowed");
        assert_eq!(ok[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://dash.example");
        assert_eq!(ok[header::ACCESS_CONTROL_ALLOW_HEADERS], "authorization");
        assert_eq!(ok[header::ACCESS_CONTROL_MAX_AGE], "600");
        assert!(p.preflight(&preflight("https://evil.example", "GET", ""), &served).is_none(), "another origin");
        assert!(
            p.preflight(&preflight("https://dash.example", "DELETE", ""), &served).is_none(),
            "a method not served"
        );
        assert!(p.preflight(&preflight("https://dash.example", "GET", "x-secret"), &served).is_none(), "a header");
        let narrow = policy(&["*"], Some(&["get"]));
        assert!(narrow.preflight(&preflight("https://any.example", "POST", ""), &[Method::POST]).is_none());
        assert!(narrow.preflight(&preflight("https://any.example", "GET", ""), &[Method::GET]).is_some());
    }

    #[test]
    fn origins_are_checked_when_configured() {
        let bad = |o: &str| CorsPolicy::new(&[o.to_string()], None, None, None, Duration::ZERO).expect_err(o);
        assert!(bad("https://dash.example/path").contains("scheme://host"));
        assert!(bad("dash.example").contains("not scheme://host"));
        assert!(CorsPolicy::new(&[], None, None, None, Duration::ZERO).is_err());
    }
}
