//! Opaque tokens: RFC 7662 introspection with the `oauth2` crate, and the small adapter that
//! lets `oauth2` (built for reqwest 0.12) use our reqwest 0.13 client (STACK.md trap 1).

use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    AccessToken, ClientId, ClientSecret, EndpointNotSet, EndpointSet, IntrospectionUrl, TokenIntrospectionResponse,
};

use aws_lc_rs::digest::{SHA256, digest};

use super::verify::{AuthError, Principal, invalid, now};

/// Largest token or introspection answer read (they are a few hundred bytes).
const MAX_ANSWER: usize = 64 * 1024;

/// Why a token or introspection call failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Transport.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// The answer was larger than `MAX_ANSWER`.
    #[error("the answer is larger than {MAX_ANSWER} bytes")]
    TooLarge,
}

/// Sends one `oauth2` request with reqwest 0.13; no redirects are followed (the client is
/// built with `Policy::none()`), so a token call cannot be bounced elsewhere, and the
/// answer is read up to `MAX_ANSWER` bytes.
pub async fn send(http: &reqwest::Client, req: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, HttpError> {
    let (parts, body) = req.into_parts();
    let mut res = http.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send().await?;
    let mut out = http::Response::builder().status(res.status());
    if let Some(headers) = out.headers_mut() {
        *headers = res.headers().clone();
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await? {
        if chunk.len() > MAX_ANSWER - body.len() {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    // Status and headers came from a valid response, so building cannot fail; map it anyway.
    Ok(out.body(body).unwrap_or_else(|_| http::Response::new(Vec::new())))
}

/// `oauth2`'s HTTP client trait over our reqwest client. A named type with a boxed `Send`
/// future: a closure here makes the whole handler future fail the `Send` bound.
pub(crate) struct OAuthHttp(pub reqwest::Client);

impl<'c> oauth2::AsyncHttpClient<'c> for OAuthHttp {
    type Error = HttpError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

/// A reqwest client for token and introspection calls: short timeout, no redirects, no proxy.
pub(crate) fn token_http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())
}

type IntrospectionClient = BasicClient<EndpointNotSet, EndpointNotSet, EndpointSet, EndpointNotSet, EndpointNotSet>;

/// What an active answer must say before Veneer trusts it.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// `aud` must name one of these (empty: not checked).
    pub audiences: Vec<String>,
    /// `iss`, when the answer carries one, must be this.
    pub issuer: Option<String>,
}

/// How long an "inactive" answer is remembered: junk tokens cost one call, not one each.
const NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// How long a call waits for an introspection slot before the request gets 503.
const SLOT_WAIT: Duration = Duration::from_secs(2);

/// What an introspector keeps across reloads ([`crate::state::Retained::introspection`]).
pub struct IntrospectionState {
    /// Hashes of tokens found inactive (or unacceptable) recently.
    rejected: moka::sync::Cache<[u8; 32], (&'static str, &'static str)>,
    /// Introspection calls in flight at most: junk tokens cannot turn into a call flood.
    slots: tokio::sync::Semaphore,
}

impl IntrospectionState {
    /// Fresh state with `max_concurrency` call slots.
    pub fn new(max_concurrency: usize) -> Self {
        IntrospectionState {
            rejected: moka::sync::Cache::builder().time_to_live(NEGATIVE_TTL).max_capacity(100_000).build(),
            slots: tokio::sync::Semaphore::new(max_concurrency.max(1)),
        }
    }
}

/// Introspects opaque tokens at one endpoint.
pub struct Introspector {
    client: IntrospectionClient,
    http: OAuthHttp,
    /// Longest time an active answer is trusted when the response has no `exp`.
    max_cache: Duration,
    expect: Expect,
    state: std::sync::Arc<IntrospectionState>,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Introspector {{ endpoint: {} }}", self.client.introspection_url().as_str())
    }
}

impl Introspector {
    /// An introspector authenticating as `client_id`/`secret`, with its call slots and
    /// remembered refusals in `state`.
    pub fn new(
        endpoint: &str,
        client_id: &str,
        secret: String,
        max_cache: Duration,
        expect: Expect,
        state: std::sync::Arc<IntrospectionState>,
    ) -> Result<Self, String> {
        let url = IntrospectionUrl::new(endpoint.to_string()).map_err(|e| format!("introspection endpoint: {e}"))?;
        let client = BasicClient::new(ClientId::new(client_id.to_string()))
            .set_client_secret(ClientSecret::new(secret))
            .set_introspection_url(url);
        Ok(Introspector { client, http: OAuthHttp(token_http_client()?), max_cache, expect, state })
    }

    /// Asks the endpoint whether the token is active and meant for this API.
    pub async fn introspect(&self, token: &str) -> Result<Principal, AuthError> {
        let hash: [u8; 32] = digest(&SHA256, token.as_bytes()).as_ref().try_into().unwrap_or([0; 32]);
        if let Some((reason, why)) = self.state.rejected.get(&hash) {
            return Err(invalid(reason, why));
        }
        self.ask(token, hash).await
    }

    /// One call to the endpoint; definite refusals are remembered, an unreachable endpoint
    /// is asked again next time.
    async fn ask(&self, token: &str, hash: [u8; 32]) -> Result<Principal, AuthError> {
        let _slot = match tokio::time::timeout(SLOT_WAIT, self.state.slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            _ => return Err(AuthError::Unavailable("too many tokens are being introspected; retry shortly".into())),
        };
        let token = AccessToken::new(token.to_string());
        let res = self
            .client
            .introspect(&token)
            .set_token_type_hint("access_token")
            .request_async(&self.http)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "token introspection failed");
                AuthError::Unavailable("the token could not be introspected; retry shortly".into())
            })?;
        if let Err((reason, why)) = self.acceptable(&res) {
            self.state.rejected.insert(hash, (reason, why));
            return Err(invalid(reason, why));
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

impl Introspector {
    /// Why an answer is not a usable access token for this API, if it is not.
    fn acceptable(&self, res: &Answer) -> Result<(), (&'static str, &'static str)> {
        if !res.active() {
            return Err(("inactive", "the token is not active"));
        }
        // RFC 7662 token_type is the access token's type; anything else (a refresh token)
        // opens nothing here.
        let access = |t: &str| t.eq_ignore_ascii_case("bearer") || t.eq_ignore_ascii_case("access_token");
        if res.token_type().is_some_and(|t| !access(t.as_ref())) {
            return Err(("token_type", "the token is not an access token"));
        }
        if let (Some(want), Some(iss)) = (&self.expect.issuer, res.iss())
            && iss != want
        {
            return Err(("issuer", "the token has the wrong issuer"));
        }
        if !self.expect.audiences.is_empty() {
            let aud = res.aud().map(Vec::as_slice).unwrap_or_default();
            if !aud.iter().any(|a| self.expect.audiences.contains(a)) {
                return Err(("audience", "the token is not meant for this API (audience)"));
            }
        }
        Ok(())
    }
}

type Answer = oauth2::StandardTokenIntrospectionResponse<oauth2::EmptyExtraTokenFields, oauth2::basic::BasicTokenType>;
