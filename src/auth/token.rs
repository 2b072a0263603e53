//! `POST /oauth2/token`: the client-credentials grant (RFC 6749 §4.4), with client
//! authentication by `client_secret_basic`, `client_secret_post` or `private_key_jwt`
//! (RFC 7523), and RFC 9068 JWT access tokens.
//!
//! Errors here follow RFC 6749 §5.2 (`{"error": …}`), not problem+json: OAuth clients
//! parse that format and no other.
//!
//! Work per unauthenticated request is bounded: the body is at most `MAX_BODY` bytes and
//! `MAX_PARAMS` parameters, duplicates are found with a set, argon2 runs off the async
//! workers, and failed attempts are limited per client id and per address
//! (`super::guard::LoginGuard`).

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Header, Validation};
use serde_json::{Value, json};

use super::LocalIssuer;
use super::clients::verify_secret;
use super::verify::now;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An RFC 6749 §5.2 error.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: String,
}

fn err(status: StatusCode, code: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError { status, code, description: description.into() }
}

fn invalid_request(d: impl Into<String>) -> OAuthError {
    err(StatusCode::BAD_REQUEST, "invalid_request", d)
}

/// One message for every client-authentication failure: no hint which part was wrong.
fn invalid_client() -> OAuthError {
    err(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed")
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut res =
            (self.status, no_store(), axum::Json(json!({"error": self.code, "error_description": self.description})))
                .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"veneer\""));
        }
        res
    }
}

fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")]
}

/// Largest token request body: a client-credentials request with an assertion fits in 4 KiB.
pub(crate) const MAX_BODY: usize = 16 * 1024;
/// Most parameters in a token request (the grant uses at most six).
pub(crate) const MAX_PARAMS: usize = 32;

/// A too-many-failures refusal: 429 with `Retry-After`, in the RFC 6749 error shape.
fn slow_down(wait: Duration) -> Response {
    let secs = crate::throttle::local::ceil_secs(wait).max(1);
    let mut res = err(
        StatusCode::TOO_MANY_REQUESTS,
        "temporarily_unavailable",
        format!("too many failed client authentications; retry after {secs} s"),
    )
    .into_response();
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    res
}

/// Handles a token request against the built-in issuer; `peer` is the caller's address
/// when the listener knows it.
pub async fn handle(
    local: &LocalIssuer,
    headers: &HeaderMap,
    body: axum::body::Body,
    peer: Option<IpAddr>,
) -> Response {
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let e = err(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                format!("a token request is at most {MAX_BODY} bytes"),
            );
            crate::telemetry::token_failure("token_endpoint", e.code);
            return e.into_response();
        }
    };
    let result = match parse_form(headers, &body) {
        Ok(form) => issue(local, headers, &form, peer).await,
        Err(e) => Err(Refusal::OAuth(e)),
    };
    match result {
        Ok(r) => r,
        Err(Refusal::OAuth(e)) => {
            crate::telemetry::token_failure("token_endpoint", e.code);
            e.into_response()
        }
        Err(Refusal::Throttled(wait)) => {
            crate::telemetry::token_failure("token_endpoint", "throttled");
            slow_down(wait)
        }
    }
}

/// Why a token request got no token.
enum Refusal {
    OAuth(OAuthError),
    /// Too many failed attempts from this client id or address.
    Throttled(Duration),
}

impl From<OAuthError> for Refusal {
    fn from(e: OAuthError) -> Self {
        Refusal::OAuth(e)
    }
}

/// The form parameters, each at most once, at most [`MAX_PARAMS`] of them.
fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(invalid_request("send the request as application/x-www-form-urlencoded"));
    }
    let mut form: Vec<(String, String)> = Vec::new();
    let mut seen = HashSet::new();
    for (k, v) in form_urlencoded::parse(body) {
        if form.len() == MAX_PARAMS {
            return Err(invalid_request(format!("a token request has at most {MAX_PARAMS} parameters")));
        }
        if !seen.insert(k.clone()) {
            return Err(invalid_request(format!("parameter {k} appears more than once")));
        }
        form.push((k.into_owned(), v.into_owned()));
    }
    Ok(form)
}

async fn issue(
    local: &LocalIssuer,
    headers: &HeaderMap,
    form: &[(String, String)],
    peer: Option<IpAddr>,
) -> Result<Response, Refusal> {
    let param = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match param("grant_type") {
        None => return Err(invalid_request("grant_type is missing").into()),
        Some("client_credentials") => {}
        Some(_) => {
            return Err(
                err(StatusCode::BAD_REQUEST, "unsupported_grant_type", "only client_credentials is supported").into()
            );
        }
    }
    let claimed = claimed_client(headers, &param);
    if let Some(wait) = local.guard.refused(claimed.as_deref(), peer) {
        return Err(Refusal::Throttled(wait));
    }
    let client_id = match authenticate_client(local, headers, &param).await {
        Ok(id) => id,
        Err(e) if e.code == "invalid_client" => {
            return Err(match local.guard.failed(claimed.as_deref(), peer) {
                Some(wait) => Refusal::Throttled(wait),
                None => Refusal::OAuth(e),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let client = local.clients.get(&client_id).ok_or_else(invalid_client)?;
    let granted: BTreeSet<String> = match param("scope") {
        None => client.scopes.clone(),
        Some(requested) => {
            let requested: BTreeSet<String> = requested.split_whitespace().map(str::to_string).collect();
            let granted: BTreeSet<String> = requested.intersection(&client.scopes).cloned().collect();
            if granted.is_empty() && !requested.is_empty() {
                return Err(err(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "none of the requested scopes may be granted to this client",
                )
                .into());
            }
            granted
        }
    };
    let scope = granted.into_iter().collect::<Vec<_>>().join(" ");
    let token = mint(local, &client_id, &scope)?;
    crate::telemetry::token_issued(&client_id);
    let body =
        json!({"access_token": token, "token_type": "Bearer", "expires_in": local.ttl.as_secs(), "scope": scope});
    Ok((StatusCode::OK, no_store(), axum::Json(body)).into_response())
}

/// Signs an RFC 9068 access token with the newest key.
pub fn mint(local: &LocalIssuer, client_id: &str, scope: &str) -> Result<String, OAuthError> {
    let key = local.keys.signer();
    let mut header = Header::new(key.alg);
    header.typ = Some("at+jwt".into());
    header.kid = Some(key.kid.clone());
    let iat = now();
    let claims = json!({
        "iss": local.issuer, "sub": client_id, "aud": local.audience, "client_id": client_id,
        "iat": iat, "nbf": iat, "exp": iat + local.ttl.as_secs(),
        "jti": uuid::Uuid::new_v4().to_string(), "scope": scope,
    });
    jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|e| {
        tracing::error!(error = %e, "signing an access token failed");
        err(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the token could not be signed")
    })
}

/// The client id a request claims (before it is proven), for the failed-login limits.
fn claimed_client<'a>(headers: &HeaderMap, param: &impl Fn(&str) -> Option<&'a str>) -> Option<String> {
    if let Some((id, _)) = headers.get(header::AUTHORIZATION).and_then(basic_credentials) {
        return Some(id);
    }
    if let Some(id) = param("client_id") {
        return Some(id.to_string());
    }
    let assertion = param("client_assertion")?;
    let claims: Value = jsonwebtoken::dangerous::insecure_decode(assertion).ok()?.claims;
    claims["iss"].as_str().map(str::to_string)
}

/// Establishes the client by exactly one method; returns its id.
async fn authenticate_client<'a>(
    local: &LocalIssuer,
    headers: &HeaderMap,
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Result<String, OAuthError> {
    let basic =
        headers.get(header::AUTHORIZATION).map(|v| basic_credentials(v).ok_or_else(invalid_client)).transpose()?;
    let post = param("client_secret");
    let assertion = param("client_assertion");
    if [basic.is_some(), post.is_some(), assertion.is_some()].iter().filter(|b| **b).count() > 1 {
        return Err(invalid_request("use exactly one client authentication method"));
    }
    if let Some((id, secret)) = basic {
        return check_secret(local, &id, &secret).await;
    }
    if let Some(secret) = post {
        let id = param("client_id").ok_or_else(|| invalid_request("client_id is missing"))?;
        return check_secret(local, id, secret).await;
    }
    if let Some(jwt) = assertion {
        if param("client_assertion_type") != Some(JWT_BEARER) {
            return Err(invalid_request(format!("client_assertion_type must be {JWT_BEARER}")));
        }
        return check_assertion(local, jwt, param("client_id")).await;
    }
    Err(invalid_client())
}

/// `Authorization: Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let (scheme, b64) = value.to_str().ok()?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    Some((unescape(id)?, unescape(secret)?))
}

async fn check_secret(local: &LocalIssuer, id: &str, secret: &str) -> Result<String, OAuthError> {
    let client = local.clients.get(id);
    // Always run argon2, even for unknown ids, so timing says nothing about which part failed.
    let hash = client.filter(|c| !c.disabled).and_then(|c| c.secret_hash.clone());
    let secret = secret.to_string();
    let ok = local.guard.hash_check(move || verify_secret(hash.as_deref(), &secret)).await;
    if ok { Ok(id.to_string()) } else { Err(invalid_client()) }
}

/// RFC 7523 §3: a JWT signed by the client's registered key.
async fn check_assertion(local: &LocalIssuer, jwt: &str, client_id: Option<&str>) -> Result<String, OAuthError> {
    let claims: Value =
        jsonwebtoken::dangerous::insecure_decode(jwt).map(|d| d.claims).map_err(|_| invalid_client())?;
    let iss = claims["iss"].as_str().ok_or_else(invalid_client)?;
    if client_id.is_some_and(|c| c != iss) {
        return Err(invalid_client());
    }
    let client = local.clients.get(iss).filter(|c| !c.disabled).ok_or_else(invalid_client)?;
    let (key, algs) = client.key.as_ref().ok_or_else(invalid_client)?;
    let header = jsonwebtoken::decode_header(jwt).map_err(|_| invalid_client())?;
    if !algs.contains(&header.alg) {
        return Err(invalid_client());
    }
    let mut v = Validation::new(header.alg);
    v.leeway = 30;
    v.set_issuer(&[iss]);
    v.sub = Some(iss.to_string());
    v.set_audience(&[local.token_endpoint(), local.issuer.clone()]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let verified: Value = jsonwebtoken::decode(jwt, key, &v).map(|d| d.claims).map_err(|_| invalid_client())?;
    let jti = verified["jti"].as_str().ok_or_else(|| invalid_request("the client assertion needs a jti"))?;
    let exp = verified["exp"].as_u64().unwrap_or(0);
    if exp > now() + 3600 {
        return Err(invalid_request("the client assertion must expire within an hour"));
    }
    let replay_key = format!("{iss}\u{0}{jti}");
    match local.replay.first_use(&replay_key).await {
        Ok(true) => Ok(iss.to_string()),
        Ok(false) => Err(invalid_client()),
        Err(()) => Err(err(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "client assertions cannot be checked for replay right now; retry shortly",
        )),
    }
}
