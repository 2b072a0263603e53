//! OAuth2 security tests: the built-in token endpoint (RFC 6749 §4.4, RFC 7523), bearer
//! validation on routes (RFC 6750, RFC 9068), and an external issuer whose JWKS can be
//! broken or down on cue. Each test names the attack or rule it proves.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use veneer::auth::{clients, keys};

/// A gateway over the sample ERP with registered clients, plus everything to forge tokens.
struct Fixture {
    gw: common::Gateway,
    _dir: tempfile::TempDir,
    issuer_key: keys::SigningKey,
    client_key: keys::SigningKey,
    idp: Idp,
}

/// A stand-in for a company IdP: serves discovery and a JWKS, or garbage, or nothing.
struct Idp {
    base: String,
    key: keys::SigningKey,
    mode: Arc<AtomicU8>,
    fetches: Arc<AtomicUsize>,
}

const IDP_OK: u8 = 0;
const IDP_BROKEN: u8 = 1;
const IDP_DOWN: u8 = 2;

#[derive(Clone)]
struct IdpState {
    jwks: Value,
    mode: Arc<AtomicU8>,
    fetches: Arc<AtomicUsize>,
    base: String,
}

async fn start_idp() -> Idp {
    let key = keys::from_pem(&keys::generate_pem(Algorithm::ES256).expect("key")).expect("load");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let mode = Arc::new(AtomicU8::new(IDP_OK));
    let fetches = Arc::new(AtomicUsize::new(0));
    let state = IdpState {
        jwks: json!({ "keys": [key.jwk] }),
        mode: mode.clone(),
        fetches: fetches.clone(),
        base: base.clone(),
    };
    async fn jwks(State(s): State<IdpState>) -> (StatusCode, String) {
        s.fetches.fetch_add(1, Ordering::SeqCst);
        match s.mode.load(Ordering::SeqCst) {
            IDP_OK => (StatusCode::OK, s.jwks.to_string()),
            IDP_BROKEN => (StatusCode::OK, "{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\"".into()),
            _ => (StatusCode::SERVICE_UNAVAILABLE, String::new()),
        }
    }
    async fn discovery(State(s): State<IdpState>) -> String {
        json!({ "issuer": s.base, "jwks_uri": format!("{}/jwks", s.base) }).to_string()
    }
    let app = Router::new()
        .route("/jwks", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Idp { base, key, mode, fetches }
}

async fn fixture() -> Fixture {
    let erp = veneer::dev::start().await.expect("sample ERP");
    let idp = start_idp().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("wsdl")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("routes")).expect("mkdir");
    let issuer_pem = keys::generate_pem(Algorithm::ES256).expect("key");
    std::fs::write(dir.path().join("keys/key-1.pem"), &issuer_pem).expect("write key");
    std::fs::copy(root.join("wsdl/sample-erp.wsdl"), dir.path().join("wsdl/sample-erp.wsdl")).expect("copy wsdl");
    for f in ["items.yaml", "production.yaml"] {
        std::fs::copy(root.join("routes").join(f), dir.path().join("routes").join(f)).expect("copy routes");
    }
    let client_key = keys::from_pem(&keys::generate_pem(Algorithm::ES256).expect("key")).expect("load");
    let yaml = format!(
        r#"backends:
  erp:
    url: "{erp}"
    wsdl: wsdl/sample-erp.wsdl
    faults: [{{ code: Client, reason: "does not exist", status: 404 }}]
auth:
  issuer: "set by the test"
  signing_keys: keys/
  token_ttl: 5m
  leeway: 5s
  clients:
    - {{ id: line3, secret_hash: "{line3}", scopes: [items:read, telemetry:write] }}
    - {{ id: sensors, secret_hash: "{sensors}", scopes: [telemetry:write] }}
    - {{ id: retired, secret_hash: "{retired}", scopes: [items:read], disabled: true }}
    - {{ id: signer, jwk: {jwk}, scopes: [items:read] }}
  external_issuers:
    - issuer: "{idp}"
      audience: "api://veneer"
      algorithms: [ES256]
      refresh_interval: 2s
"#,
        erp = erp.url,
        line3 = clients::hash_secret("line3-secret").expect("hash"),
        sensors = clients::hash_secret("sensors-secret").expect("hash"),
        retired = clients::hash_secret("retired-secret").expect("hash"),
        jwk = serde_json::to_string(&client_key.jwk).expect("jwk"),
        idp = idp.base,
    );
    std::fs::write(dir.path().join("gateway.yaml"), yaml).expect("write gateway");
    let gw = common::with_config_self_issuer(dir.path()).await;
    Fixture { gw, _dir: dir, issuer_key: keys::from_pem(&issuer_pem).expect("load"), client_key, idp }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

impl Fixture {
    /// Claims of a token the built-in issuer would mint for `client`.
    fn claims(&self, client: &str, scope: &str) -> Value {
        let t = now();
        json!({"iss": self.gw.base, "sub": client, "aud": self.gw.base, "client_id": client, "scope": scope,
               "iat": t, "nbf": t, "exp": t + 300, "jti": "test"})
    }

    fn sign(&self, header: &Header, claims: &Value, key: &EncodingKey) -> String {
        jsonwebtoken::encode(header, claims, key).expect("sign")
    }

    fn local_header(&self) -> Header {
        let mut h = Header::new(Algorithm::ES256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(self.issuer_key.kid.clone());
        h
    }

    async fn get_item(&self, token: Option<&str>) -> reqwest::Response {
        let mut req = common::client().get(self.gw.url("/items/1000"));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        req.send().await.expect("request")
    }

    async fn token_ok(&self, id: &str, secret: &str, scope: Option<&str>) -> Value {
        let res = common::token(&self.gw, id, secret, scope).await;
        assert_eq!(res.status(), 200);
        res.json().await.expect("json")
    }
}

async fn oauth_error(res: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status);
    assert_eq!(res.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let body: Value = res.json().await.expect("oauth error json");
    assert_eq!(body["error"], code, "{body}");
    body
}

async fn rejected(res: reqwest::Response, what: &str) -> String {
    let challenge = res.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let p = common::problem(res, 401).await;
    assert!(challenge.starts_with("Bearer realm=\"veneer\""), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{what}: {challenge}");
    p["detail"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn issues_rfc9068_tokens_that_open_routes() {
    let f = fixture().await;
    let res = common::token(&f.gw, "line3", "line3-secret", None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "items:read telemetry:write");
    let token = body["access_token"].as_str().expect("token");
    let header = jsonwebtoken::decode_header(token).expect("header");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.kid.as_deref(), Some(f.issuer_key.kid.as_str()));
    let claims: Value = jsonwebtoken::dangerous::insecure_decode(token).expect("claims").claims;
    for claim in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"] {
        assert!(!claims[claim].is_null(), "claim {claim} missing: {claims}");
    }
    assert_eq!(claims["client_id"], "line3");
    assert_eq!(f.get_item(Some(token)).await.status(), 200);
}

#[tokio::test]
async fn client_secret_post_works() {
    let f = fixture().await;
    let res = common::client()
        .post(f.gw.url("/oauth2/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", "line3"), ("client_secret", "line3-secret")])
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn wrong_secret_and_unknown_client_look_the_same() {
    let f = fixture().await;
    let res = common::token(&f.gw, "line3", "wrong", None).await;
    assert!(res.headers().contains_key("www-authenticate"));
    let wrong_secret = oauth_error(res, 401, "invalid_client").await;
    let unknown = oauth_error(common::token(&f.gw, "nobody", "line3-secret", None).await, 401, "invalid_client").await;
    assert_eq!(wrong_secret, unknown, "no hint which part was wrong");
}

#[tokio::test]
async fn disabled_client_gets_no_token_and_its_tokens_stop_working() {
    let f = fixture().await;
    oauth_error(common::token(&f.gw, "retired", "retired-secret", None).await, 401, "invalid_client").await;
    // A token minted earlier, with a valid signature, for the now-disabled client.
    let token = f.sign(&f.local_header(), &f.claims("retired", "items:read"), &f.issuer_key.encoding);
    let detail = rejected(f.get_item(Some(&token)).await, "disabled client").await;
    assert!(detail.contains("disabled"), "{detail}");
}

#[tokio::test]
async fn scopes_are_narrowed_and_escalation_is_refused() {
    let f = fixture().await;
    let narrowed = f.token_ok("sensors", "sensors-secret", Some("telemetry:write items:read admin")).await;
    assert_eq!(narrowed["scope"], "telemetry:write");
    oauth_error(
        common::token(&f.gw, "sensors", "sensors-secret", Some("admin items:read")).await,
        400,
        "invalid_scope",
    )
    .await;
}

#[tokio::test]
async fn insufficient_scope_is_403_naming_the_scope() {
    let f = fixture().await;
    let body = f.token_ok("sensors", "sensors-secret", None).await;
    let res = f.get_item(body["access_token"].as_str()).await;
    let challenge = res.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"items:read\""),
        "{challenge}"
    );
    common::problem(res, 403).await;
}

#[tokio::test]
async fn malformed_token_requests_are_rfc6749_errors() {
    let f = fixture().await;
    let post = |form: &'static [(&'static str, &'static str)]| {
        common::client().post(f.gw.url("/oauth2/token")).basic_auth("line3", Some("line3-secret")).form(form).send()
    };
    oauth_error(post(&[("grant_type", "password")]).await.expect("req"), 400, "unsupported_grant_type").await;
    oauth_error(post(&[("scope", "items:read")]).await.expect("req"), 400, "invalid_request").await;
    oauth_error(
        post(&[("grant_type", "client_credentials"), ("grant_type", "client_credentials")]).await.expect("req"),
        400,
        "invalid_request",
    )
    .await;
    let json_body = common::client()
        .post(f.gw.url("/oauth2/token"))
        .basic_auth("line3", Some("line3-secret"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .expect("req");
    oauth_error(json_body, 400, "invalid_request").await;
    let no_auth = common::client()
        .post(f.gw.url("/oauth2/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("req");
    oauth_error(no_auth, 401, "invalid_client").await;
}

fn assertion(f: &Fixture, key: &EncodingKey, aud: &str, jti: &str) -> String {
    let t = now();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(f.client_key.kid.clone());
    let claims = json!({"iss": "signer", "sub": "signer", "aud": aud, "iat": t, "exp": t + 60, "jti": jti});
    jsonwebtoken::encode(&h, &claims, key).expect("sign assertion")
}

async fn assertion_request(f: &Fixture, jwt: &str) -> reqwest::Response {
    common::client()
        .post(f.gw.url("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", jwt),
        ])
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn private_key_jwt_authenticates_once_per_assertion() {
    let f = fixture().await;
    let endpoint = f.gw.url("/oauth2/token");
    let good = assertion(&f, &f.client_key.encoding, &endpoint, "a-1");
    let res = assertion_request(&f, &good).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(f.get_item(body["access_token"].as_str()).await.status(), 200);
    // Replay of the same assertion.
    oauth_error(assertion_request(&f, &good).await, 401, "invalid_client").await;
    // Signed by a key IT never registered.
    let other = keys::from_pem(&keys::generate_pem(Algorithm::ES256).expect("key")).expect("load");
    oauth_error(assertion_request(&f, &assertion(&f, &other.encoding, &endpoint, "a-2")).await, 401, "invalid_client")
        .await;
    // Meant for another server.
    oauth_error(
        assertion_request(&f, &assertion(&f, &f.client_key.encoding, "https://elsewhere/token", "a-3")).await,
        401,
        "invalid_client",
    )
    .await;
}

#[tokio::test]
async fn missing_and_garbage_authorization_headers() {
    let f = fixture().await;
    let res = f.get_item(None).await;
    assert_eq!(res.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer realm=\"veneer\""));
    common::problem(res, 401).await;
    for header in [
        "Bearer",
        "Bearer ",
        "Basic bGluZTM6bGluZTMtc2VjcmV0",
        "Bearer a b",
        "Bearer ÿÿÿ",
        "Bearer x.y.z",
        "bearer \u{1}",
    ] {
        let res = common::client().get(f.gw.url("/items/1000")).header("authorization", header.as_bytes()).send().await;
        let Ok(res) = res else { continue }; // a header reqwest itself refuses to send proves nothing
        assert_eq!(res.status(), 401, "{header:?}");
        rejected(res, header).await;
    }
    // Characters no token has are refused as a malformed header, before any verification
    // (and after the cache is asked, which only ever holds verified tokens).
    for token in ["a,b.c.d", "a\"b.c.d", "x.y.z%"] {
        let detail = rejected(f.get_item(Some(token)).await, token).await;
        assert!(detail.contains("must be `Bearer <token>`"), "{token}: {detail}");
    }
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let f = fixture().await;
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt", "kid": f.issuer_key.kid}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(f.claims("line3", "items:read").to_string());
    rejected(f.get_item(Some(&format!("{header}.{payload}."))).await, "alg none").await;
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_is_rejected() {
    let f = fixture().await;
    // Algorithm confusion: HS256 keyed with the issuer's *public* key (as JWK JSON and as raw x).
    let mut h = f.local_header();
    h.alg = Algorithm::HS256;
    for secret in [serde_json::to_vec(&f.issuer_key.jwk).expect("jwk"), f.issuer_key.kid.as_bytes().to_vec()] {
        let token = f.sign(&h, &f.claims("line3", "items:read"), &EncodingKey::from_secret(&secret));
        rejected(f.get_item(Some(&token)).await, "HS256 confusion").await;
    }
}

#[tokio::test]
async fn time_issuer_audience_kid_and_tampering() {
    let f = fixture().await;
    let h = f.local_header();
    let key = &f.issuer_key.encoding;
    let mut expired = f.claims("line3", "items:read");
    expired["exp"] = json!(now() - 60);
    assert!(rejected(f.get_item(Some(&f.sign(&h, &expired, key))).await, "expired").await.contains("expired"));
    let mut early = f.claims("line3", "items:read");
    early["nbf"] = json!(now() + 120);
    assert!(rejected(f.get_item(Some(&f.sign(&h, &early, key))).await, "nbf").await.contains("not valid yet"));
    let mut wrong_iss = f.claims("line3", "items:read");
    wrong_iss["iss"] = json!("https://evil.example");
    rejected(f.get_item(Some(&f.sign(&h, &wrong_iss, key))).await, "iss").await;
    let mut wrong_aud = f.claims("line3", "items:read");
    wrong_aud["aud"] = json!("https://other-api.example");
    assert!(rejected(f.get_item(Some(&f.sign(&h, &wrong_aud, key))).await, "aud").await.contains("audience"));
    let mut unknown_kid = h.clone();
    unknown_kid.kid = Some("no-such-key".into());
    rejected(f.get_item(Some(&f.sign(&unknown_kid, &f.claims("line3", "items:read"), key))).await, "kid").await;
    // Tampered payload: a valid token with its scope rewritten, signature kept.
    let valid = f.sign(&h, &f.claims("sensors", "telemetry:write"), key);
    let parts: Vec<&str> = valid.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(f.claims("sensors", "items:read").to_string());
    assert!(
        rejected(f.get_item(Some(&format!("{}.{forged}.{}", parts[0], parts[2]))).await, "tampered")
            .await
            .contains("signature")
    );
    // Not an access token: typ missing.
    let mut no_typ = h.clone();
    no_typ.typ = None;
    rejected(f.get_item(Some(&f.sign(&no_typ, &f.claims("line3", "items:read"), key))).await, "typ").await;
}

fn idp_token(f: &Fixture, kid: &str, key: &EncodingKey) -> String {
    let t = now();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.to_string());
    let claims = json!({"iss": f.idp.base, "aud": "api://veneer", "azp": "iot-platform", "scp": ["items:read"], "iat": t, "exp": t + 300});
    jsonwebtoken::encode(&h, &claims, key).expect("sign")
}

#[tokio::test]
async fn external_issuer_keys_are_cached_and_survive_an_idp_outage() {
    let f = fixture().await;
    let token = idp_token(&f, &f.idp.key.kid, &f.idp.key.encoding);
    assert_eq!(f.get_item(Some(&token)).await.status(), 200);
    let fetched = f.idp.fetches.load(Ordering::SeqCst);
    assert_eq!(fetched, 1, "one JWKS fetch (after discovery)");
    // A new token with the same key: no fetch at all.
    let second = idp_token(&f, &f.idp.key.kid, &f.idp.key.encoding);
    f.idp.mode.store(IDP_DOWN, Ordering::SeqCst);
    assert_eq!(f.get_item(Some(&second)).await.status(), 200, "cached keys keep working while the IdP is down");
    assert_eq!(f.idp.fetches.load(Ordering::SeqCst), fetched);
}

#[tokio::test]
async fn unknown_kid_refreshes_at_most_once_per_interval_and_broken_jwks_changes_nothing() {
    let f = fixture().await;
    let good = idp_token(&f, &f.idp.key.kid, &f.idp.key.encoding);
    assert_eq!(f.get_item(Some(&good)).await.status(), 200);
    let rotated = keys::from_pem(&keys::generate_pem(Algorithm::ES256).expect("key")).expect("load");
    f.idp.mode.store(IDP_BROKEN, Ordering::SeqCst);
    let before = f.idp.fetches.load(Ordering::SeqCst);
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let unknown = idp_token(&f, &rotated.kid, &rotated.encoding);
        rejected(f.get_item(Some(&unknown)).await, "unknown kid").await;
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "no request hangs on a broken IdP");
    let refreshes = f.idp.fetches.load(Ordering::SeqCst) - before;
    assert!(refreshes <= 1, "20 unknown-kid requests within the interval caused {refreshes} JWKS fetches");
    // The broken JWKS did not evict the good key.
    assert_eq!(f.get_item(Some(&idp_token(&f, &f.idp.key.kid, &f.idp.key.encoding))).await.status(), 200);
}

#[tokio::test]
async fn hmac_from_external_issuer_is_rejected() {
    let f = fixture().await;
    let t = now();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(f.idp.key.kid.clone());
    let claims = json!({"iss": f.idp.base, "aud": "api://veneer", "azp": "x", "scp": "items:read", "exp": t + 300});
    let token = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(b"guessable")).expect("sign");
    assert!(rejected(f.get_item(Some(&token)).await, "ext HS256").await.contains("not allowed"));
}

#[tokio::test]
async fn metadata_and_jwks_are_published() {
    let f = fixture().await;
    let meta: Value = common::client()
        .get(f.gw.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(meta["issuer"], f.gw.base);
    assert_eq!(meta["token_endpoint"], f.gw.url("/oauth2/token"));
    assert!(
        meta["token_endpoint_auth_methods_supported"].as_array().is_some_and(|m| m.contains(&json!("private_key_jwt")))
    );
    let jwks: Value =
        common::client().get(f.gw.url("/.well-known/jwks.json")).send().await.expect("req").json().await.expect("json");
    assert_eq!(jwks["keys"][0]["kid"], f.issuer_key.kid.as_str());
    assert!(jwks["keys"][0]["d"].is_null(), "the private part is never published");
}
