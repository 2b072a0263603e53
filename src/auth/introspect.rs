//! Opaque tokens: RFC 7662 introspection with the `oauth2` crate, and the small adapter that
//! lets `oauth2` (built for reqwest 0.12) use our reqwest 0.13 client (STACK.md trap 1).

use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    AccessToken, ClientId, ClientSecret, EndpointNotSet, EndpointSet, IntrospectionUrl, TokenIntrospectionResponse,
};

use super::verify::{AuthError, Principal, now};

/// Sends one `oauth2` request with reqwest 0.13; no redirects are followed (the client is
/// built with `Policy::none()`), so a token call cannot be bounced elsewhere.
pub async fn send(http: &reqwest::Client, req: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, reqwest::Error> {
    let (parts, body) = req.into_parts();
    let res = http.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send().await?;
    let mut out = http::Response::builder().status(res.status());
    if let Some(headers) = out.headers_mut() {
        *headers = res.headers().clone();
    }
    let body = res.bytes().await?.to_vec();
    // Status and headers came from a valid response, so building cannot fail; map it anyway.
    Ok(out.body(body).unwrap_or_else(|_| http::Response::new(Vec::new())))
}

/// `oauth2`'s HTTP client trait over our reqwest client. A named type with a boxed `Send`
/// future: a closure here makes the whole handler future fail the `Send` bound.
pub struct OAuthHttp(pub reqwest::Client);

impl<'c> oauth2::AsyncHttpClient<'c> for OAuthHttp {
    type Error = reqwest::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<oauth2::HttpResponse, reqwest::Error>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

/// A reqwest client for token and introspection calls: short timeout, no redirects, no proxy.
pub fn token_http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())
}

type IntrospectionClient = BasicClient<EndpointNotSet, EndpointNotSet, EndpointSet, EndpointNotSet, EndpointNotSet>;

/// Introspects opaque tokens at one endpoint.
pub struct Introspector {
    client: IntrospectionClient,
    http: OAuthHttp,
    /// Longest time an active answer is trusted when the response has no `exp`.
    max_cache: Duration,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Introspector {{ endpoint: {} }}", self.client.introspection_url().as_str())
    }
}

impl Introspector {
    /// An introspector authenticating as `client_id`/`secret`.
    pub fn new(endpoint: &str, client_id: &str, secret: String, max_cache: Duration) -> Result<Self, String> {
        let url = IntrospectionUrl::new(endpoint.to_string()).map_err(|e| format!("introspection endpoint: {e}"))?;
        let client = BasicClient::new(ClientId::new(client_id.to_string()))
            .set_client_secret(ClientSecret::new(secret))
            .set_introspection_url(url);
        Ok(Introspector { client, http: OAuthHttp(token_http_client()?), max_cache })
    }

    /// Asks the endpoint whether the token is active.
    pub async fn introspect(&self, token: &str) -> Result<Principal, AuthError> {
        let token = AccessToken::new(token.to_string());
        let res = self.client.introspect(&token).request_async(&self.http).await.map_err(|e| {
            tracing::warn!(error = %e, "token introspection failed");
            AuthError::Invalid("the token could not be introspected".into())
        })?;
        if !res.active() {
            return Err(AuthError::Invalid("the token is not active".into()));
        }
        let cap = now() + self.max_cache.as_secs();
        let expires_at = res.exp().map_or(cap, |e| (e.timestamp().max(0) as u64).min(cap));
        Ok(Principal {
            client_id: res
                .client_id()
                .map(|c| c.to_string())
                .or_else(|| res.sub().map(str::to_string))
                .unwrap_or_default(),
            scopes: res.scopes().map(|s| s.iter().map(|s| s.to_string()).collect()).unwrap_or_default(),
            issuer: res.iss().unwrap_or("introspection").to_string(),
            expires_at,
        })
    }
}
