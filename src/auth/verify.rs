//! Bearer-token validation: `Authorization: Bearer …` → [`Principal`], or why not.
//!
//! JWTs are routed by their (unverified) `iss` to exactly one verifier, whose own key and
//! algorithm allowlist then decide; `none` and HMAC are never accepted. A verified token is
//! cached until it expires, so repeat calls skip the signature check. The cache is keyed by
//! the token itself: a lookup hashes it once (SipHash) and compares it whole, which costs a
//! tenth of the SHA-256 it was keyed by before, and no token can stand in for another.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::{Auth, LocalIssuer};

/// Who is calling, as established by a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `client_id` (or `azp`/`sub` for external tokens without one).
    pub client_id: String,
    /// Granted scopes.
    pub scopes: BTreeSet<String>,
    /// The issuer that vouched for it.
    pub issuer: String,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
}

pub use crate::error::AuthError;

/// An invalid token: `reason` is the metrics label, `msg` the description.
pub(crate) fn invalid(reason: &'static str, msg: impl Into<String>) -> AuthError {
    AuthError::Invalid { reason, detail: msg.into() }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Cache expiry: an entry lives until its token's `exp`.
pub(crate) struct UntilTokenExpiry;

impl moka::Expiry<Arc<str>, Arc<Principal>> for UntilTokenExpiry {
    fn expire_after_create(&self, _: &Arc<str>, p: &Arc<Principal>, _: Instant) -> Option<Duration> {
        Some(Duration::from_secs(p.expires_at.saturating_sub(now())))
    }
}

fn malformed_header() -> AuthError {
    invalid("malformed_header", "the Authorization header must be `Bearer <token>`")
}

/// The token of `Authorization: Bearer <token>`: the text after the scheme (in any case),
/// trimmed and not empty. Its characters are not checked here (see [`is_b64token`]).
fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Err(AuthError::Missing) };
    let value = value.as_bytes();
    let space = value.iter().position(|&b| b == b' ').ok_or_else(malformed_header)?;
    let (scheme, token) = (&value[..space], value[space + 1..].trim_ascii());
    if !scheme.eq_ignore_ascii_case(b"bearer") || token.is_empty() {
        return Err(malformed_header());
    }
    std::str::from_utf8(token).map_err(|_| malformed_header())
}

/// RFC 6750 b64token characters only (so ASCII); anything else is not a token we could have
/// issued. Checked without an early exit, which lets the loop run wide.
fn is_b64token(token: &str) -> bool {
    token.bytes().fold(true, |ok, b| ok & B64TOKEN[usize::from(b)])
}

/// The bytes of RFC 6750's b64token: `ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"`, and
/// trailing `=` (accepted anywhere here; the signature check decides the rest).
static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        b += 1;
    }
    table
};

impl Auth {
    /// Authenticates a request's bearer token.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Principal>, AuthError> {
        let token = bearer(headers)?;
        if let Some(p) = self.cache.get(token).filter(|p| p.expires_at > now()) {
            return Ok(p);
        }
        // Only verified tokens are cached, and those passed this check: a pass over the
        // whole token, so it is made on a miss only.
        if !is_b64token(token) {
            return Err(malformed_header());
        }
        // Boxed: verification (JWKS fetches, introspection) is a large future that the cached
        // path, nearly every request, would otherwise carry and move about.
        let principal = Arc::new(Box::pin(self.verify(token)).await?);
        self.cache.insert(token.into(), principal.clone());
        Ok(principal)
    }

    /// Verifies a token without the cache (what a first call costs).
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.split('.').count() != 3 {
            return match &self.introspection {
                Some(i) => i.introspect(token).await,
                None => Err(invalid(
                    "malformed_token",
                    "the token is not a JWT and no introspection endpoint is configured",
                )),
            };
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid("malformed_token", format!("malformed token: {e}")))?;
        let iss = unverified_issuer(token)?;
        if let Some(local) = &self.local
            && local.issuer == iss
        {
            return verify_local(local, token, &header, self.leeway);
        }
        for ext in &self.external {
            if ext.issuer == iss {
                return ext.verify(token, &header, self.leeway).await;
            }
        }
        Err(invalid("issuer", format!("tokens from issuer {iss:?} are not accepted")))
    }
}

/// Reads `iss` without verifying, only to choose the verifier; nothing else is trusted.
fn unverified_issuer(token: &str) -> Result<String, AuthError> {
    let payload = token.split('.').nth(1).ok_or_else(|| invalid("malformed_token", "malformed token"))?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid("malformed_token", "malformed token payload"))?;
    let claims: Value =
        serde_json::from_slice(&bytes).map_err(|_| invalid("malformed_token", "malformed token payload"))?;
    claims["iss"].as_str().map(str::to_string).ok_or_else(|| invalid("issuer", "the token has no issuer"))
}

/// The validation every issuer shares: exp/nbf with leeway, iss, aud, one algorithm.
pub(crate) fn validation(alg: Algorithm, issuer: &str, audiences: &[String], leeway: Duration) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = leeway.as_secs();
    v.validate_nbf = true;
    v.set_issuer(&[issuer]);
    v.set_audience(audiences);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v
}

/// Verifies with one key, mapping every failure to a short reason.
pub(crate) fn decode(token: &str, key: &DecodingKey, v: &Validation) -> Result<Value, AuthError> {
    use jsonwebtoken::errors::ErrorKind as K;
    jsonwebtoken::decode::<Value>(token, key, v).map(|d| d.claims).map_err(|e| {
        let (reason, detail) = match e.kind() {
            K::ExpiredSignature => ("expired", "the token has expired"),
            K::ImmatureSignature => ("not_yet_valid", "the token is not valid yet"),
            K::InvalidIssuer => ("issuer", "the token has the wrong issuer"),
            K::InvalidAudience => ("audience", "the token is not meant for this API (audience)"),
            K::InvalidSignature => ("signature", "the token signature is invalid"),
            K::InvalidAlgorithm => ("algorithm", "the token's algorithm is not allowed"),
            K::MissingRequiredClaim(_) => ("other", "the token lacks a required claim"),
            _ => ("other", "the token is invalid"),
        };
        invalid(reason, detail)
    })
}

/// Scopes from `scope` (space-separated), `scp` (string or array) or a configured claim.
pub(crate) fn scopes_from(claims: &Value, claim: Option<&str>) -> BTreeSet<String> {
    let names: Vec<&str> = match claim {
        Some(c) => vec![c],
        None => vec!["scope", "scp"],
    };
    let mut out = BTreeSet::new();
    for name in names {
        match &claims[name] {
            Value::String(s) => out.extend(s.split_whitespace().map(str::to_string)),
            Value::Array(items) => out.extend(items.iter().filter_map(Value::as_str).map(str::to_string)),
            _ => {}
        }
    }
    out
}

fn verify_local(
    local: &LocalIssuer,
    token: &str,
    header: &jsonwebtoken::Header,
    leeway: Duration,
) -> Result<Principal, AuthError> {
    if header.typ.as_deref().is_none_or(|t| !t.eq_ignore_ascii_case("at+jwt")) {
        return Err(invalid("token_type", "the token is not an access token (typ must be at+jwt)"));
    }
    let kid = header.kid.as_deref().ok_or_else(|| invalid("unknown_key", "the token has no key id"))?;
    let key = local.keys.find(kid).ok_or_else(|| invalid("unknown_key", "the token was signed with an unknown key"))?;
    if header.alg != key.alg {
        return Err(invalid("algorithm", "the token's algorithm does not match its key"));
    }
    let claims = decode(
        token,
        &key.decoding,
        &validation(key.alg, &local.issuer, std::slice::from_ref(&local.audience), leeway),
    )?;
    let client_id = claims["client_id"].as_str().ok_or_else(|| invalid("other", "the token has no client_id"))?;
    match local.clients.get(client_id) {
        Some(c) if !c.disabled => {}
        _ => return Err(invalid("client_disabled", "the token's client is disabled or no longer registered")),
    }
    Ok(Principal {
        client_id: client_id.to_string(),
        scopes: scopes_from(&claims, None),
        issuer: local.issuer.clone(),
        expires_at: claims["exp"].as_u64().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The token as `authenticate` takes it: after the scheme, then checked character by
    /// character (which a cached token skips, having passed it when it was verified).
    fn with(value: &[u8]) -> Result<String, AuthError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, axum::http::HeaderValue::from_bytes(value).expect("a header value"));
        let token = bearer(&headers)?;
        if is_b64token(token) { Ok(token.to_string()) } else { Err(malformed_header()) }
    }

    #[test]
    fn bearer_takes_the_b64token_after_the_scheme() {
        assert_eq!(with(b"Bearer a-b.c_d~e+f/g=="), Ok("a-b.c_d~e+f/g==".into()));
        assert_eq!(with(b"bEaReR  tok\t"), Ok("tok".into()), "scheme in any case, whitespace around the token");
        for bad in
            [&b"Bearer"[..], b"Bearer ", b"Basic abc", b"Bearer a b", b"Bearer a\xffb", b"Bearer a,b", b"Bearerabc"]
        {
            assert!(matches!(with(bad), Err(AuthError::Invalid { reason: "malformed_header", .. })), "{bad:?}");
        }
        assert_eq!(bearer(&HeaderMap::new()), Err(AuthError::Missing));
        // What the character check alone refuses, with the scheme and trimming already done.
        for bad in ["a b", "a,b", "a\"b", "x.y.z%", "ä"] {
            assert!(!is_b64token(bad), "{bad:?}");
        }
    }
}
