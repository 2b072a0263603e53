//! Credentials Veneer presents to the ERP: HTTP Basic, WS-Security UsernameToken (text or
//! digest, with a Timestamp), and OAuth2 client credentials against the ERP's own IdP
//! (token cached and refreshed before it expires). Secrets come from env or files only.

use std::fmt;
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, EndpointNotSet, EndpointSet, Scope, TokenResponse, TokenUrl};
use tokio::sync::Mutex;

use crate::auth::introspect::{OAuthHttp, token_http_client};
use crate::translate::xmltext::escape_into;

const WSSE: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
const WSU: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
const TOKEN_PROFILE: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0";

/// HTTP Basic credentials.
#[derive(Clone)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl BasicAuth {
    /// The `Authorization: Basic …` value (RFC 7617), marked sensitive.
    pub fn header(&self) -> axum::http::HeaderValue {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.username, self.password));
        let mut value = axum::http::HeaderValue::from_maybe_shared(bytes::Bytes::from(format!("Basic {encoded}")))
            .unwrap_or_else(|_| axum::http::HeaderValue::from_static("Basic"));
        value.set_sensitive(true);
        value
    }
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password, not even in debug output.
        write!(f, "BasicAuth {{ username: {:?}, password: \"***\" }}", self.username)
    }
}

/// WS-Security UsernameToken settings.
#[derive(Clone)]
pub struct WsSecurity {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// PasswordDigest (true) or PasswordText.
    pub digest: bool,
    /// Lifetime of the Timestamp.
    pub ttl: Duration,
}

impl fmt::Debug for WsSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WsSecurity {{ username: {:?}, digest: {} }}", self.username, self.digest)
    }
}

impl WsSecurity {
    /// A fresh `wsse:Security` header (new nonce and times for every call).
    pub fn header(&self) -> String {
        let now = chrono::Utc::now();
        let created = now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let expires = (now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::minutes(5)))
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let mut nonce = [0u8; 16];
        // With no randomness the nonce would repeat; fall back to the clock rather than fail.
        if SystemRandom::new().fill(&mut nonce).is_err() {
            nonce[..8].copy_from_slice(&now.timestamp_nanos_opt().unwrap_or(0).to_le_bytes());
        }
        let (password, kind) = if self.digest {
            // PasswordDigest = Base64(SHA-1(nonce + created + password)), per the token profile.
            let mut input = nonce.to_vec();
            input.extend_from_slice(created.as_bytes());
            input.extend_from_slice(self.password.as_bytes());
            (STANDARD.encode(digest(&SHA1_FOR_LEGACY_USE_ONLY, &input)), "PasswordDigest")
        } else {
            (self.password.clone(), "PasswordText")
        };
        let mut h = format!(
            r#"<wsse:Security xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}" soap:mustUnderstand="1"><wsu:Timestamp wsu:Id="TS-1"><wsu:Created>{created}</wsu:Created><wsu:Expires>{expires}</wsu:Expires></wsu:Timestamp><wsse:UsernameToken wsu:Id="UT-1"><wsse:Username>"#
        );
        escape_into(&mut h, &self.username);
        h.push_str(&format!(r#"</wsse:Username><wsse:Password Type="{TOKEN_PROFILE}#{kind}">"#));
        escape_into(&mut h, &password);
        h.push_str(&format!(
            r#"</wsse:Password><wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">{}</wsse:Nonce><wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security>"#,
            STANDARD.encode(nonce)
        ));
        h
    }
}

type TokenClient = BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// OAuth2 client credentials against the ERP's IdP.
pub struct UpstreamOAuth {
    client: TokenClient,
    scopes: Vec<String>,
    http: OAuthHttp,
    cached: Mutex<Option<(String, Instant)>>,
}

impl fmt::Debug for UpstreamOAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpstreamOAuth {{ token_url: {} }}", self.client.token_uri().as_str())
    }
}

/// Refresh this long before the token expires, so no call goes out with a dying token.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);

impl UpstreamOAuth {
    /// A client for `token_url`.
    pub fn new(token_url: &str, client_id: &str, secret: String, scopes: Vec<String>) -> Result<Self, String> {
        let url = TokenUrl::new(token_url.to_string()).map_err(|e| format!("token_url: {e}"))?;
        let client = BasicClient::new(ClientId::new(client_id.to_string()))
            .set_client_secret(ClientSecret::new(secret))
            .set_token_uri(url);
        Ok(UpstreamOAuth { client, scopes, http: OAuthHttp(token_http_client()?), cached: Mutex::new(None) })
    }

    /// A valid access token, from the cache or freshly requested.
    pub async fn token(&self) -> Result<String, String> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref().filter(|(_, until)| Instant::now() + REFRESH_MARGIN < *until) {
            let _ = until;
            return Ok(token.clone());
        }
        let mut req = self.client.exchange_client_credentials();
        for s in &self.scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let res =
            req.request_async(&self.http).await.map_err(|e| format!("the backend's token endpoint refused: {e}"))?;
        let lifetime = res.expires_in().unwrap_or(Duration::from_secs(300));
        let token = res.access_token().secret().clone();
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }
}

/// Everything a backend presents; any combination may be configured.
#[derive(Debug, Default)]
pub struct Credentials {
    /// HTTP Basic.
    pub basic: Option<BasicAuth>,
    /// WS-Security UsernameToken in the SOAP header.
    pub ws_security: Option<WsSecurity>,
    /// OAuth2 bearer token from the ERP's IdP.
    pub oauth2: Option<UpstreamOAuth>,
    /// NetSuite token-based authentication.
    pub netsuite: Option<super::netsuite::TokenPassport>,
}
