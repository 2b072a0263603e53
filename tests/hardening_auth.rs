//! Regression tests for the "Hardening" issue, end to end through real HTTP on loopback:
//! the token endpoint's bounds (body size, parameter count, duplicates), failed-login limits
//! per client id and per source address, client-assertion replay memory that survives a
//! reload and is shared through Redis, quotas and backend call slots that survive a reload,
//! RFC 7662 introspection that checks audience, issuer and token type, remembers refusals
//! and caps its calls, and rate-limit buckets keyed by issuer and client.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use veneer::auth::{clients, keys};
use veneer::config::compile::CompileOptions;
use veneer::config::{self, ConfigSource};
use veneer::server::{self, AppState, Reloader};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs()
}

fn hash(secret: &str) -> String {
    clients::hash_secret(secret).expect("argon2 hash of a test secret")
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// The URL of the in-process sample ERP (a fresh one per call).
async fn erp_url() -> String {
    veneer::dev::start().await.expect("sample ERP starts").url
}

/// A config dir with the sample WSDL, `GET /items/{no}` (scope `items:read`), a signing key
/// under `keys/`, and `gateway_yaml`.
fn config_dir(gateway_yaml: &str) -> tempfile::TempDir {
    let dir = common::config_dir(gateway_yaml, &["items.yaml"], false);
    std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir keys");
    std::fs::write(dir.path().join("keys/k.pem"), keys::generate_pem(Algorithm::ES256).expect("signing key"))
        .expect("write signing key");
    dir
}

/// The `backends:` section for the sample ERP at `url`.
fn erp_backend(url: &str) -> String {
    format!(
        "backends:\n  erp:\n    url: \"{url}\"\n    wsdl: wsdl/sample-erp.wsdl\n    faults: [{{ code: Client, reason: \"does not exist\", status: 404 }}]\n"
    )
}

/// An RFC 6749 error answer: status, `Cache-Control: no-store`, and its `error` code.
async fn oauth_error(res: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "status of an OAuth error");
    assert_eq!(header(&res, "cache-control"), "no-store", "token endpoint answers are never cached");
    let body: Value = res.json().await.expect("an RFC 6749 error body is JSON");
    assert_eq!(body["error"], code, "{body}");
    body
}

async fn token_basic(base: &str, id: &str, secret: &str) -> reqwest::Response {
    common::client()
        .post(format!("{base}/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token request")
}

async fn access_token(base: &str, id: &str, secret: &str) -> String {
    let res = token_basic(base, id, secret).await;
    assert_eq!(res.status(), 200, "{id} gets a token");
    let body: Value = res.json().await.expect("token json");
    body["access_token"].as_str().expect("access_token").to_string()
}

async fn get_item(base: &str, no: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = common::client().get(format!("{base}/items/{no}")).timeout(Duration::from_secs(30));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("item request")
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    common::eventually(what, Duration::from_secs(15), async || check()).await;
}

/// A reloadable gateway over a config dir (the way `veneer serve` runs one), with the
/// reloader at hand so a test reloads exactly when it means to.
struct Live {
    base: String,
    reloader: Arc<Reloader>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve_reloadable(dir: &Path, self_issuer: bool) -> Live {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let options = CompileOptions {
        data_dir: None,
        retained: Default::default(),
        issuer: self_issuer.then(|| base.clone()),
        ..Default::default()
    };
    let gw = config::compile(&ConfigSource::Dir(dir.to_path_buf()), &options)
        .unwrap_or_else(|e| panic!("test config must compile:\n{e}"));
    let state = AppState::reloadable(gw, dir.to_path_buf(), options);
    let reloader = state.reloader.clone().expect("a reloadable state has a reloader");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(server::run(listener, state, async move {
        let _ = rx.await;
    }));
    Live { base, reloader, _stop: tx }
}

/// Changes a file under the config dir (as an operator editing it would) and reloads;
/// asserts the reload took a new snapshot.
async fn edit_and_reload(live: &Live, dir: &Path) {
    let before = ConfigSource::Dir(dir.to_path_buf()).fingerprint();
    let path = dir.join("gateway.yaml");
    let mut yaml = std::fs::read_to_string(&path).expect("read gateway.yaml");
    yaml.push_str(&format!("# edited at {:?}\n", Instant::now()));
    std::fs::write(&path, yaml).expect("write gateway.yaml");
    let after = live.reloader.reload("test").await.unwrap_or_else(|e| panic!("the edited config must reload:\n{e}"));
    assert_ne!(before, after, "the reload compiled the edited files");
}

// ---------------------------------------------------------------------------------------
// 1. The token endpoint's bounds and failed-login limits
// ---------------------------------------------------------------------------------------

/// A gateway (self issuer) with clients `a` and `b` (secret `secret`) and `auth_extra`
/// appended under `auth:`.
async fn token_gateway(auth_extra: &str) -> (common::Gateway, tempfile::TempDir) {
    let h = hash("secret");
    let yaml = format!(
        "{}auth:\n  issuer: set-by-test\n  signing_keys: keys/\n  clients:\n    - {{ id: a, secret_hash: \"{h}\", scopes: [items:read] }}\n    - {{ id: b, secret_hash: \"{h}\", scopes: [items:read] }}\n{auth_extra}",
        erp_backend(&erp_url().await)
    );
    let dir = config_dir(&yaml);
    let gw = common::with_config_self_issuer(dir.path()).await;
    (gw, dir)
}

async fn post_form_body(gw: &common::Gateway, body: String) -> reqwest::Result<reqwest::Response> {
    common::client()
        .post(gw.url("/oauth2/token"))
        .basic_auth("a", Some("secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
}

#[tokio::test]
async fn token_endpoint_bounds_body_size_parameter_count_and_duplicates() {
    let (gw, _dir) = token_gateway("").await;

    // Just over 16 KiB: 413 in the RFC 6749 shape, and no token.
    let big = format!("grant_type=client_credentials&pad={}", "x".repeat(16 * 1024));
    let body = oauth_error(post_form_body(&gw, big).await.expect("request"), 413, "invalid_request").await;
    assert!(body["error_description"].as_str().is_some_and(|d| d.contains("16384")), "{body}");

    // 40 000 parameters (~330 KB): refused by the size bound, quickly, before any parsing.
    let flood: String = (0..40_000).map(|i| format!("a{i}=1")).collect::<Vec<_>>().join("&");
    let started = Instant::now();
    match post_form_body(&gw, flood).await {
        Ok(res) => {
            oauth_error(res, 413, "invalid_request").await;
        }
        // The gateway may answer and close before the client finished sending: the refusal
        // then shows as a reset connection, which is still a refusal, never a token.
        Err(e) => assert!(!e.is_timeout(), "a 330 KB token request must not hang: {e}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "refused in {:?}", started.elapsed());

    // 33 small parameters, well under 16 KiB: 400 naming the limit.
    let params = |n: usize| {
        std::iter::once("grant_type=client_credentials".to_string())
            .chain((1..n).map(|i| format!("p{i}=1")))
            .collect::<Vec<_>>()
            .join("&")
    };
    let body = oauth_error(post_form_body(&gw, params(33)).await.expect("request"), 400, "invalid_request").await;
    assert!(body["error_description"].as_str().is_some_and(|d| d.contains("at most 32")), "{body}");
    // The limit is exact: 32 parameters are a valid request (unknown ones are ignored).
    let ok = post_form_body(&gw, params(32)).await.expect("request");
    assert_eq!(ok.status(), 200, "32 parameters are allowed");

    // A duplicate parameter (not grant_type this time): 400.
    let dup = "grant_type=client_credentials&scope=items%3Aread&scope=items%3Aread".to_string();
    let body = oauth_error(post_form_body(&gw, dup).await.expect("request"), 400, "invalid_request").await;
    assert!(body["error_description"].as_str().is_some_and(|d| d.contains("more than once")), "{body}");
}

#[tokio::test]
async fn failed_logins_per_client_id_are_limited_even_for_the_right_secret() {
    let (gw, _dir) = token_gateway(
        "  login_failures: { per_client: { rate: \"3/min\", burst: 3 }, per_address: { rate: \"100/min\" } }\n",
    )
    .await;
    for i in 1..=3 {
        let res = token_basic(&gw.base, "a", "wrong").await;
        assert_eq!(res.status(), 401, "failure {i} of the burst is an ordinary 401");
        oauth_error(res, 401, "invalid_client").await;
    }
    // The burst is used up: the next failure is refused with 429 and a wait.
    let res = token_basic(&gw.base, "a", "wrong").await;
    let retry: u64 = header(&res, "retry-after").parse().expect("429 carries Retry-After in seconds");
    assert!((1..=60).contains(&retry), "3/min: the wait is at most a minute: {retry}");
    let body = oauth_error(res, 429, "temporarily_unavailable").await;
    assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{body}");

    // While penalised, the right secret is refused too (by any client authentication).
    let res = token_basic(&gw.base, "a", "secret").await;
    assert!(!header(&res, "retry-after").is_empty(), "Retry-After on the penalised right secret");
    oauth_error(res, 429, "temporarily_unavailable").await;
    let post = common::client()
        .post(gw.url("/oauth2/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", "a"), ("client_secret", "secret")])
        .send()
        .await
        .expect("request");
    oauth_error(post, 429, "temporarily_unavailable").await;

    // Another client id is not affected: right secret works, a wrong one is a plain 401.
    assert_eq!(token_basic(&gw.base, "b", "secret").await.status(), 200);
    oauth_error(token_basic(&gw.base, "b", "wrong").await, 401, "invalid_client").await;
}

#[tokio::test]
async fn failed_logins_per_source_address_are_limited_for_every_client_id() {
    let (gw, _dir) = token_gateway(
        "  login_failures: { per_client: { rate: \"100/min\" }, per_address: { rate: \"3/min\", burst: 3 } }\n",
    )
    .await;
    // Three different (unknown) client ids from one address use up the address's burst.
    for id in ["x1", "x2", "x3"] {
        oauth_error(token_basic(&gw.base, id, "guess").await, 401, "invalid_client").await;
    }
    let res = token_basic(&gw.base, "x4", "guess").await;
    assert!(!header(&res, "retry-after").is_empty(), "Retry-After on the address refusal");
    oauth_error(res, 429, "temporarily_unavailable").await;
    // Now even a registered client with its right secret is refused from this address.
    oauth_error(token_basic(&gw.base, "a", "secret").await, 429, "temporarily_unavailable").await;

    // Another loopback source address (127.0.0.2 reaches 127.0.0.1 on Linux) is not.
    let other = reqwest::Client::builder()
        .no_proxy()
        .local_address(Some("127.0.0.2".parse().expect("ip")))
        .build()
        .expect("client");
    let res = other
        .post(gw.url("/oauth2/token"))
        .basic_auth("a", Some("secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await;
    match res {
        Ok(res) => assert_eq!(res.status(), 200, "a different source address has its own failure budget"),
        Err(e) => eprintln!("skipping the other-address check: cannot send from 127.0.0.2: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// 2. private_key_jwt replay memory: across reloads, and across replicas through Redis
// ---------------------------------------------------------------------------------------

/// gateway.yaml with one `private_key_jwt` client `signer`; `issuer` is the configured one
/// (replaced by a self issuer when the test asks for one), `limits` goes under `limits:`.
async fn signer_yaml(client_jwk: &jsonwebtoken::jwk::Jwk, issuer: &str, limits: &str) -> String {
    format!(
        "{}{limits}auth:\n  issuer: \"{issuer}\"\n  signing_keys: keys/\n  clients:\n    - {{ id: signer, jwk: {}, scopes: [items:read] }}\n",
        erp_backend(&erp_url().await),
        serde_json::to_string(client_jwk).expect("jwk json")
    )
}

fn client_key() -> keys::SigningKey {
    keys::from_pem(&keys::generate_pem(Algorithm::ES256).expect("client key")).expect("load client key")
}

/// A client assertion (RFC 7523) by `signer` for the token endpoint `aud`.
fn assertion(key: &keys::SigningKey, aud: &str, jti: &str) -> String {
    let t = now();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(key.kid.clone());
    let claims = json!({"iss": "signer", "sub": "signer", "aud": aud, "iat": t, "exp": t + 120, "jti": jti});
    jsonwebtoken::encode(&h, &claims, &key.encoding).expect("sign assertion")
}

async fn assertion_request(base: &str, jwt: &str) -> reqwest::Response {
    common::client()
        .post(format!("{base}/oauth2/token"))
        .form(&[("grant_type", "client_credentials"), ("client_assertion_type", JWT_BEARER), ("client_assertion", jwt)])
        .send()
        .await
        .expect("assertion request")
}

#[tokio::test]
async fn a_used_client_assertion_stays_used_after_a_reload() {
    let key = client_key();
    let dir = config_dir(&signer_yaml(&key.jwk, "set-by-test", "").await);
    let live = serve_reloadable(dir.path(), true).await;
    let endpoint = format!("{}/oauth2/token", live.base);
    let first = assertion(&key, &endpoint, "reload-1");
    assert_eq!(assertion_request(&live.base, &first).await.status(), 200, "first use");
    oauth_error(assertion_request(&live.base, &first).await, 401, "invalid_client").await;

    edit_and_reload(&live, dir.path()).await;
    // Before the fix, the reload built a fresh replay memory and this replay got a token.
    oauth_error(assertion_request(&live.base, &first).await, 401, "invalid_client").await;
    // The reloaded gateway still accepts new assertions: the refusal is about the replay.
    let second = assertion(&key, &endpoint, "reload-2");
    assert_eq!(assertion_request(&live.base, &second).await.status(), 200, "a fresh jti after the reload");
    oauth_error(assertion_request(&live.base, &second).await, 401, "invalid_client").await;
}

/// A redis-server on a free loopback port, killed when dropped.

#[tokio::test]
async fn a_client_assertion_used_at_one_replica_is_refused_at_another_through_redis() {
    let redis = common::Redis::start();
    let key = client_key();
    // `reject`: a Redis problem shows as 503, never as a silent fall-back to local memory.
    let shared = format!(
        "limits:\n  redis: {{ url: \"redis://127.0.0.1:{}/\", timeout: 2s, on_unavailable: reject }}\n",
        redis.port
    );
    let issuer = "http://veneer.test";
    let endpoint = format!("{issuer}/oauth2/token");
    let dir = config_dir(&signer_yaml(&key.jwk, issuer, &shared).await);
    let (a, b) = (common::with_config(dir.path()).await, common::with_config(dir.path()).await);

    let at_a = assertion(&key, &endpoint, "shared-1");
    assert_eq!(assertion_request(&a.base, &at_a).await.status(), 200, "first use, at A");
    oauth_error(assertion_request(&b.base, &at_a).await, 401, "invalid_client").await;
    let at_b = assertion(&key, &endpoint, "shared-2");
    assert_eq!(assertion_request(&b.base, &at_b).await.status(), 200, "first use, at B");
    oauth_error(assertion_request(&a.base, &at_b).await, 401, "invalid_client").await;

    // Control: without Redis each replica only knows its own assertions, so the refusal
    // above is Redis's doing.
    let alone = config_dir(&signer_yaml(&key.jwk, issuer, "").await);
    let (c, d) = (common::with_config(alone.path()).await, common::with_config(alone.path()).await);
    let jwt = assertion(&key, &endpoint, "alone-1");
    assert_eq!(assertion_request(&c.base, &jwt).await.status(), 200);
    assert_eq!(assertion_request(&d.base, &jwt).await.status(), 200, "replicas without Redis share nothing");
}

// ---------------------------------------------------------------------------------------
// 3. Quotas survive a reload
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_daily_quota_is_not_reset_by_a_reload() {
    let h = hash("secret");
    let yaml = format!(
        "{}auth:\n  issuer: set-by-test\n  signing_keys: keys/\n  clients:\n    - {{ id: a, secret_hash: \"{h}\", scopes: [items:read], limits: {{ quota: {{ day: 3 }} }} }}\n    - {{ id: b, secret_hash: \"{h}\", scopes: [items:read] }}\n",
        erp_backend(&erp_url().await)
    );
    let dir = config_dir(&yaml);
    let live = serve_reloadable(dir.path(), true).await;
    let t = access_token(&live.base, "a", "secret").await;
    for n in 1..=3 {
        assert_eq!(get_item(&live.base, "1000", Some(&t)).await.status(), 200, "call {n} of 3");
    }
    edit_and_reload(&live, dir.path()).await;
    let refused = get_item(&live.base, "1000", Some(&t)).await;
    let retry: u64 = header(&refused, "retry-after").parse().expect("Retry-After");
    assert!(retry > 0 && retry <= 86_400, "until the next UTC day: {retry}");
    common::problem(refused, 429).await;
    // A token minted after the reload counts against the same quota.
    let fresh = access_token(&live.base, "a", "secret").await;
    assert_eq!(get_item(&live.base, "1000", Some(&fresh)).await.status(), 429, "quota per client, not per token");
    // The reloaded gateway serves everyone else.
    let tb = access_token(&live.base, "b", "secret").await;
    assert_eq!(get_item(&live.base, "1000", Some(&tb)).await.status(), 200);
}

// ---------------------------------------------------------------------------------------
// 4. Backend max_concurrency survives a reload
// ---------------------------------------------------------------------------------------

/// A SOAP backend that holds each call until released (or 5 s pass), counting calls.
#[derive(Clone, Default)]
struct HeldErp {
    hits: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    released: Arc<AtomicBool>,
    release: Arc<tokio::sync::Notify>,
}

async fn held_call(State(erp): State<HeldErp>) -> (StatusCode, [(&'static str, &'static str); 1], &'static str) {
    erp.hits.fetch_add(1, Ordering::SeqCst);
    let now = erp.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    erp.peak.fetch_max(now, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !erp.released.load(Ordering::SeqCst) && Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_millis(100), erp.release.notified()).await;
    }
    erp.in_flight.fetch_sub(1, Ordering::SeqCst);
    (StatusCode::OK, [("content-type", "text/xml")], common::ITEM_RESPONSE)
}

#[tokio::test]
async fn backend_call_slots_in_use_still_count_after_a_reload() {
    let erp = HeldErp::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/erp", listener.local_addr().expect("addr"));
    let app = Router::new().route("/erp", post(held_call)).with_state(erp.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let yaml = format!(
        "backends:\n  erp:\n    url: \"{url}\"\n    wsdl: wsdl/sample-erp.wsdl\n    timeout: 10s\n    max_concurrency: 1\n    queue: {{ max: 0 }}\n    retries: {{ attempts: 0 }}\n    circuit_breaker: {{ enabled: false }}\n"
    );
    let dir = common::config_dir(&yaml, &["items.yaml"], true);
    let live = serve_reloadable(dir.path(), false).await;

    let base = live.base.clone();
    let first = tokio::spawn(async move { get_item(&base, "1000", None).await.status().as_u16() });
    wait_until("the first call to reach the backend", || erp.in_flight.load(Ordering::SeqCst) == 1).await;

    // Before the reload, the only slot is taken: a second call is shed at once.
    let shed = get_item(&live.base, "2000", None).await;
    assert!(!header(&shed, "retry-after").is_empty(), "503 carries Retry-After");
    common::problem(shed, 503).await;

    edit_and_reload(&live, dir.path()).await;
    // After it, the call in flight still holds the slot. Before the fix the new snapshot had
    // a fresh gate, so this call reached the backend (two at once) and got a 200.
    let shed = get_item(&live.base, "3000", None).await;
    assert!(!header(&shed, "retry-after").is_empty(), "503 carries Retry-After");
    let p = common::problem(shed, 503).await;
    assert_eq!(p["title"], "Backend overloaded", "{p}");
    assert_eq!(erp.hits.load(Ordering::SeqCst), 1, "shed calls never reach the backend");

    erp.released.store(true, Ordering::SeqCst);
    erp.release.notify_waiters();
    assert_eq!(first.await.expect("first call task"), 200, "the call in flight during the reload completes");
    assert_eq!(get_item(&live.base, "1000", None).await.status(), 200, "the slot is free again");
    assert_eq!(erp.peak.load(Ordering::SeqCst), 1, "the backend never saw two calls at once");
}

// ---------------------------------------------------------------------------------------
// 5 and 6. Introspection, and limits keyed by issuer and client
// ---------------------------------------------------------------------------------------

const INTROSPECTION_CLIENT: &str = "veneer-rs";
const INTROSPECTION_SECRET: &str = "introspection-secret";
const IDP_ISSUER: &str = "https://idp.example";

/// A stand-in authorization server: RFC 7662 introspection answering per token, and a JWKS
/// for JWTs it signs itself. Counts calls per token and the most calls at once.
#[derive(Clone)]
struct Idp {
    base: String,
    key: Arc<keys::SigningKey>,
    stats: Arc<IdpStats>,
}

#[derive(Default)]
struct IdpStats {
    calls: Mutex<HashMap<String, usize>>,
    total: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    unauthenticated: AtomicUsize,
}

impl Idp {
    fn calls(&self, token: &str) -> usize {
        self.stats.calls.lock().expect("calls lock").get(token).copied().unwrap_or(0)
    }
}

fn answer_for(token: &str) -> Value {
    let exp = now() + 300;
    let active = |aud: Value, token_type: &str, client: &str| {
        json!({"active": true, "aud": aud, "token_type": token_type, "scope": "items:read",
               "client_id": client, "iss": IDP_ISSUER, "exp": exp})
    };
    match token {
        "other-aud" => active(json!(["api://another-api"]), "Bearer", "partner"),
        "refresh" => active(json!("api://veneer"), "refresh_token", "partner"),
        "wrong-iss" => {
            let mut a = active(json!("api://veneer"), "Bearer", "partner");
            a["iss"] = json!("https://evil.example");
            a
        }
        "good" => active(json!("api://veneer"), "Bearer", "partner"),
        "alt-aud" => active(json!(["api://unrelated", "api://veneer-alt"]), "Bearer", "partner"),
        "as-line3" => active(json!("api://veneer"), "Bearer", "line3"),
        _ => json!({"active": false}),
    }
}

async fn introspect(State(idp): State<Idp>, headers: HeaderMap, body: String) -> (StatusCode, axum::Json<Value>) {
    let stats = &idp.stats;
    stats.total.fetch_add(1, Ordering::SeqCst);
    let now_in = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stats.peak.fetch_max(now_in, Ordering::SeqCst);
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let token = form.get("token").cloned().unwrap_or_default();
    *stats.calls.lock().expect("calls lock").entry(token.clone()).or_default() += 1;
    let expected = format!("Basic {}", STANDARD.encode(format!("{INTROSPECTION_CLIENT}:{INTROSPECTION_SECRET}")));
    let authenticated = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str());
    if token.starts_with("slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    if !authenticated {
        stats.unauthenticated.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"})));
    }
    (StatusCode::OK, axum::Json(answer_for(&token)))
}

async fn start_idp() -> Idp {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let idp = Idp { base, key: Arc::new(client_key()), stats: Arc::default() };
    let jwks = json!({ "keys": [idp.key.jwk] }).to_string();
    let app = Router::new()
        .route("/introspect", post(introspect))
        .route("/jwks", get(move || async move { jwks }))
        .with_state(idp.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    idp
}

/// A gateway (self issuer) with registered client `line3` (2/min, burst 2), a default
/// limit of 100/min, the IdP as an external JWT issuer, and introspection at the IdP.
async fn introspection_gateway(idp: &Idp) -> (common::Gateway, tempfile::TempDir) {
    let dir = introspection_config(idp).await;
    let gw = common::with_config_self_issuer(dir.path()).await;
    (gw, dir)
}

/// The config dir of [`introspection_gateway`].
async fn introspection_config(idp: &Idp) -> tempfile::TempDir {
    let yaml = format!(
        r#"{backend}limits:
  default: {{ rate: 100/min, burst: 100 }}
auth:
  issuer: set-by-test
  signing_keys: keys/
  clients:
    - {{ id: line3, secret_hash: "{line3}", scopes: [items:read], limits: {{ rate: 2/min, burst: 2 }} }}
  external_issuers:
    - issuer: "{idp}"
      audience: "api://veneer"
      jwks_uri: "{idp}/jwks"
      algorithms: [ES256]
  introspection:
    endpoint: "{idp}/introspect"
    client_id: {INTROSPECTION_CLIENT}
    client_secret_file: secrets/introspection
    audience: ["api://veneer", "api://veneer-alt"]
    issuer: "{IDP_ISSUER}"
    max_concurrency: 2
"#,
        backend = erp_backend(&erp_url().await),
        line3 = hash("line3-secret"),
        idp = idp.base,
    );
    let dir = config_dir(&yaml);
    std::fs::create_dir_all(dir.path().join("secrets")).expect("mkdir secrets");
    std::fs::write(dir.path().join("secrets/introspection"), format!("{INTROSPECTION_SECRET}\n"))
        .expect("write secret");
    dir
}

/// A 401 problem with a Bearer challenge; returns its detail.
async fn unauthorized(res: reqwest::Response) -> String {
    let challenge = header(&res, "www-authenticate");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let p = common::problem(res, 401).await;
    p["detail"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn introspection_accepts_only_active_access_tokens_for_this_api() {
    let idp = start_idp().await;
    let (gw, _dir) = introspection_gateway(&idp).await;

    let detail = unauthorized(get_item(&gw.base, "1000", Some("other-aud")).await).await;
    assert!(detail.contains("audience"), "another API's token: {detail}");
    let detail = unauthorized(get_item(&gw.base, "1000", Some("refresh")).await).await;
    assert!(detail.contains("not an access token"), "a refresh token: {detail}");
    let detail = unauthorized(get_item(&gw.base, "1000", Some("wrong-iss")).await).await;
    assert!(detail.contains("issuer"), "another issuer: {detail}");
    let detail = unauthorized(get_item(&gw.base, "1000", Some("inactive")).await).await;
    assert!(detail.contains("not active"), "{detail}");

    assert_eq!(get_item(&gw.base, "1000", Some("good")).await.status(), 200, "right audience, Bearer");
    assert_eq!(get_item(&gw.base, "1000", Some("alt-aud")).await.status(), 200, "one of a list of audiences");
    assert_eq!(idp.stats.unauthenticated.load(Ordering::SeqCst), 0, "Veneer authenticates with the secret file");
    // Accepted tokens are cached too: more calls with "good" ask the endpoint no more.
    for _ in 0..20 {
        assert_eq!(get_item(&gw.base, "1000", Some("good")).await.status(), 200);
    }
    assert_eq!(idp.calls("good"), 1, "an accepted token is introspected once");
}

#[tokio::test]
async fn a_junk_opaque_token_is_introspected_once_not_per_request() {
    let idp = start_idp().await;
    let (gw, _dir) = introspection_gateway(&idp).await;
    for i in 0..300 {
        let res = get_item(&gw.base, "1000", Some("junk-opaque-token")).await;
        assert_eq!(res.status(), 401, "request {i}");
    }
    let calls = idp.calls("junk-opaque-token");
    assert!((1..=2).contains(&calls), "300 requests with one junk token made {calls} introspection calls");
    // Unacceptable-but-active answers are remembered the same way.
    for _ in 0..50 {
        assert_eq!(get_item(&gw.base, "1000", Some("refresh")).await.status(), 401);
    }
    assert!(idp.calls("refresh") <= 2, "a refused refresh token made {} calls", idp.calls("refresh"));
}

#[tokio::test]
async fn slow_introspection_is_capped_and_the_excess_gets_503_without_hanging() {
    let idp = start_idp().await;
    let (gw, _dir) = introspection_gateway(&idp).await;
    let started = Instant::now();
    let requests = (0..20).map(|i| {
        let base = gw.base.clone();
        async move { get_item(&base, "1000", Some(&format!("slow-{i}"))).await }
    });
    let results = tokio::time::timeout(Duration::from_secs(25), futures_util::future::join_all(requests))
        .await
        .expect("no request hangs behind a slow introspection endpoint");
    let elapsed = started.elapsed();
    let peak = idp.stats.peak.load(Ordering::SeqCst);
    assert!(peak <= 2, "max_concurrency 2, yet the endpoint saw {peak} calls at once");
    assert!(idp.stats.total.load(Ordering::SeqCst) <= 8, "calls: {}", idp.stats.total.load(Ordering::SeqCst));
    let statuses: Vec<u16> = results.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 401 || *s == 503), "{statuses:?}");
    // The calls that got a slot were answered ("inactive"): the endpoint works, it is slow.
    assert!(statuses.contains(&401), "{statuses:?}");
    let busy: Vec<reqwest::Response> = results.into_iter().filter(|r| r.status() == 503).collect();
    assert!(busy.len() >= 10, "most of 20 concurrent junk tokens are shed: {statuses:?} after {elapsed:?}");
    for res in busy {
        assert!(!header(&res, "retry-after").is_empty(), "503 carries Retry-After");
        common::problem(res, 503).await;
    }
}

/// The introspection call cap and the remembered refusals are retained across reloads, so a
/// reload (any file touched under the config dir) never opens `max_concurrency` fresh slots
/// beside the ones still in use.
#[tokio::test]
async fn introspection_call_slots_in_use_still_count_after_a_reload() {
    let idp = start_idp().await;
    let dir = introspection_config(&idp).await;
    let live = serve_reloadable(dir.path(), true).await;
    let slow = |name: &'static str| {
        let base = live.base.clone();
        tokio::spawn(async move { get_item(&base, "1000", Some(name)).await.status().as_u16() })
    };
    let before = [slow("slow-before-1"), slow("slow-before-2")];
    wait_until("two introspection calls in flight", || idp.stats.in_flight.load(Ordering::SeqCst) == 2).await;
    edit_and_reload(&live, dir.path()).await;
    let after = [slow("slow-after-1"), slow("slow-after-2")];
    let mut statuses = Vec::new();
    for task in before.into_iter().chain(after) {
        statuses.push(task.await.expect("request task"));
    }
    let peak = idp.stats.peak.load(Ordering::SeqCst);
    assert!(peak <= 2, "max_concurrency 2, yet {peak} introspection calls ran at once across a reload: {statuses:?}");
}

fn external_jwt(idp: &Idp, client_id: &str) -> String {
    let t = now();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(idp.key.kid.clone());
    let claims = json!({"iss": idp.base, "aud": "api://veneer", "client_id": client_id, "scope": "items:read",
                        "iat": t, "exp": t + 300});
    jsonwebtoken::encode(&h, &claims, &idp.key.encoding).expect("sign external token")
}

#[tokio::test]
async fn external_callers_named_like_a_registered_client_do_not_share_its_bucket() {
    let idp = start_idp().await;
    let (gw, _dir) = introspection_gateway(&idp).await;
    // The registered client exhausts its own 2/min bucket.
    let own = access_token(&gw.base, "line3", "line3-secret").await;
    for n in 1..=2 {
        let res = get_item(&gw.base, "1000", Some(&own)).await;
        assert_eq!(res.status(), 200, "registered call {n}");
        assert!(header(&res, "ratelimit-policy").contains("\"client\";q=2;"), "{}", header(&res, "ratelimit-policy"));
    }
    common::problem(get_item(&gw.base, "1000", Some(&own)).await, 429).await;

    // The same client_id from an external JWT issuer and from introspection: each is under
    // the default limit, in a bucket of its own.
    let jwt = external_jwt(&idp, "line3");
    for (what, token) in [("external JWT", jwt.as_str()), ("introspected", "as-line3")] {
        for n in 1..=3 {
            let res = get_item(&gw.base, "1000", Some(token)).await;
            assert_eq!(res.status(), 200, "{what} caller with client_id line3, call {n}");
            let policy = header(&res, "ratelimit-policy");
            assert!(policy.contains("\"client\";q=100;"), "{what}: the default limit applies: {policy}");
        }
    }
    // And the registered client is still refused: nothing above refilled or reused its bucket.
    common::problem(get_item(&gw.base, "1000", Some(&own)).await, 429).await;
}
