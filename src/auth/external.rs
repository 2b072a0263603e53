//! Trusted external issuers (the company's IdP): keys from its JWKS, fetched lazily, cached,
//! and refreshed on an unknown `kid` at most once per `refresh_interval`, never per request.
//! When the IdP is down or serves garbage, the keys already cached keep working.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use super::verify::{AuthError, Principal, decode, invalid, scopes_from, validation};

/// How long one JWKS or discovery fetch may take; a slow IdP must not hold requests.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// Settings of one external issuer.
#[derive(Debug, Clone)]
pub struct ExternalSettings {
    /// Exact `iss` value.
    pub issuer: String,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// `jwks_uri`; `None` means OpenID discovery at `{issuer}/.well-known/openid-configuration`.
    pub jwks_uri: Option<String>,
    /// Algorithm allowlist (asymmetric only; checked at config load).
    pub algorithms: Vec<Algorithm>,
    /// Claim holding scopes (`roles` for Entra ID); default `scope` then `scp`.
    pub scope_claim: Option<String>,
    /// Least time between two JWKS fetches.
    pub refresh_interval: Duration,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    /// The key to use for tokens without `kid` when the set has exactly one.
    only: Option<DecodingKey>,
    jwks_uri: Option<String>,
    last_fetch: Option<Instant>,
}

/// An external issuer with its key cache.
pub struct ExternalIssuer {
    /// `iss`.
    pub issuer: String,
    settings: ExternalSettings,
    cache: RwLock<KeyCache>,
    refresh: Mutex<()>,
    http: reqwest::Client,
}

impl std::fmt::Debug for ExternalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalIssuer").field("settings", &self.settings).finish()
    }
}

impl ExternalIssuer {
    /// A new issuer with an empty key cache.
    pub fn new(settings: ExternalSettings) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ExternalIssuer {
            issuer: settings.issuer.clone(),
            settings,
            cache: RwLock::default(),
            refresh: Mutex::new(()),
            http,
        })
    }

    /// Verifies a token this issuer signed.
    pub async fn verify(&self, token: &str, header: &Header, leeway: Duration) -> Result<Principal, AuthError> {
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(invalid("algorithm", format!("the algorithm {:?} is not allowed for this issuer", header.alg)));
        }
        let key = self.key(header.kid.as_deref()).await?;
        let v = validation(header.alg, &self.settings.issuer, &self.settings.audiences, leeway);
        let claims = decode(token, &key, &v)?;
        let client_id = ["client_id", "azp", "appid", "sub"]
            .iter()
            .find_map(|c| claims[*c].as_str())
            .ok_or_else(|| invalid("other", "the token names no client (client_id, azp or sub)"))?;
        Ok(Principal {
            client_id: client_id.to_string(),
            scopes: scopes_from(&claims, self.settings.scope_claim.as_deref()),
            issuer: self.issuer.clone(),
            expires_at: claims["exp"].as_u64().unwrap_or(0),
        })
    }

    async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, AuthError> {
        if let Some(k) = self.lookup(kid).await {
            return Ok(k);
        }
        // Single flight: one refresh at a time, and at most once per interval.
        let _guard = self.refresh.lock().await;
        if let Some(k) = self.lookup(kid).await {
            return Ok(k);
        }
        let last_fetch = self.cache.read().await.last_fetch;
        let due = last_fetch.is_none_or(|t| t.elapsed() >= self.settings.refresh_interval);
        if due && let Err(e) = self.fetch().await {
            tracing::warn!(issuer = %self.issuer, error = %e, "JWKS refresh failed; keeping cached keys");
        }
        self.lookup(kid)
            .await
            .ok_or_else(|| invalid("unknown_key", "the token was signed with a key this issuer does not publish"))
    }

    async fn lookup(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let cache = self.cache.read().await;
        match kid {
            Some(kid) => cache.keys.get(kid).cloned(),
            None => cache.only.clone(),
        }
    }

    async fn fetch(&self) -> Result<(), String> {
        // Record the attempt first: a failing IdP is retried once per interval, not per request.
        self.cache.write().await.last_fetch = Some(Instant::now());
        // Read the cached URI in its own statement: the read guard must be gone before any
        // write below, or the refresh would deadlock on itself.
        let cached_uri = self.cache.read().await.jwks_uri.clone();
        let uri = match (&self.settings.jwks_uri, cached_uri) {
            (Some(u), _) => u.clone(),
            (None, Some(u)) => u,
            (None, None) => {
                let url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
                let doc: Value = self.get_json(&url).await?;
                let uri = doc["jwks_uri"].as_str().ok_or("the discovery document has no jwks_uri")?.to_string();
                self.cache.write().await.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let set: JwkSet =
            serde_json::from_value(self.get_json(&uri).await?).map_err(|e| format!("invalid JWKS: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            // Symmetric keys in a public JWKS are never usable: skipped.
            if matches!(jwk.algorithm, jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)) {
                continue;
            }
            if let (Some(kid), Ok(key)) = (&jwk.common.key_id, DecodingKey::from_jwk(jwk)) {
                keys.insert(kid.clone(), key);
            }
        }
        if keys.is_empty() {
            return Err("the JWKS holds no usable keys".into());
        }
        let mut cache = self.cache.write().await;
        cache.only = if keys.len() == 1 { keys.values().next().cloned() } else { None };
        cache.keys = keys;
        Ok(())
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let res = self.http.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", res.status()));
        }
        res.json().await.map_err(|e| format!("GET {url}: not JSON: {e}"))
    }
}
