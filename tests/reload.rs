//! Reload without restart, and the metrics page: steady traffic while the config changes
//! twice (once valid, once broken) sees zero failures; the new route appears after the valid
//! change and the broken one changes nothing; `POST /admin/reload` needs the admin scope;
//! `/metrics` shows every metric family after a short scripted run.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use veneer::config::compile::CompileOptions;
use veneer::config::{self, ConfigSource};
use veneer::server::{self, AppState};

/// A config dir over the in-process sample ERP; `auth` is appended to gateway.yaml.
async fn config_dir(auth: &str, extra_backend: &str) -> tempfile::TempDir {
    let erp = veneer::dev::start().await.expect("sample ERP");
    let yaml = format!(
        "backends:\n  erp:\n    url: \"{}\"\n    wsdl: wsdl/sample-erp.wsdl\n    faults: [{{ code: Client, reason: \"does not exist\", status: 404 }}]\n{extra_backend}{auth}",
        erp.url
    );
    common::config_dir(&yaml, &["items.yaml"], auth.is_empty())
}

/// Serves `dir` reloadably, watching it; returns the base URL.
async fn serve(dir: &Path, issuer: bool) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let options = CompileOptions { issuer: issuer.then(|| base.clone()), ..Default::default() };
    let gw = config::compile(&ConfigSource::Dir(dir.to_path_buf()), &options).expect("config");
    let state = AppState::reloadable(gw, dir.to_path_buf(), options);
    state.reloader.as_ref().expect("reloader").watch().expect("watch");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(server::run(listener, state, async move {
        let _ = rx.await;
    }));
    (base, tx)
}

async fn metrics(base: &str) -> String {
    common::client().get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text")
}

fn reloads(page: &str, result: &str) -> u64 {
    page.lines()
        .find(|l| l.starts_with("veneer_config_reloads_total") && l.contains(&format!("result=\"{result}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn wait_for(what: &str, check: impl AsyncFnMut() -> bool) {
    common::eventually(what, Duration::from_secs(15), check).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_reload_without_dropping_a_request() {
    let dir = config_dir("", "").await;
    let (base, _stop) = serve(dir.path(), false).await;
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let traffic: Vec<_> = (0..4)
        .map(|_| {
            let (base, failures, sent, running) = (base.clone(), failures.clone(), sent.clone(), running.clone());
            tokio::spawn(async move {
                let client = common::client();
                while running.load(Ordering::SeqCst) {
                    let ok = client
                        .get(format!("{base}/items/1000"))
                        .send()
                        .await
                        .map(|r| r.status() == 200)
                        .unwrap_or(false);
                    sent.fetch_add(1, Ordering::SeqCst);
                    if !ok {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    let before = reloads(&metrics(&base).await, "success");

    // A valid change: a new route appears.
    let extra = "routes:\n  - route: \"GET /stock/{no}\"\n    backend: erp\n    operation: GetItem\n    request: { ItemNo: \"{path.no}\" }\n    response: GetItemResult.Location\n";
    std::fs::write(dir.path().join("routes/stock.yaml"), extra).expect("write");
    wait_for("the new route", async || {
        common::client().get(format!("{base}/stock/1000")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(reloads(&metrics(&base).await, "success") > before);

    // A broken change: rejected, counted, and the running config keeps serving.
    let failed_before = reloads(&metrics(&base).await, "failure");
    std::fs::write(
        dir.path().join("routes/stock.yaml"),
        "routes:\n  - route: \"GET /stock/{no}\"\n    backend: nowhere\n    operation: X\n",
    )
    .expect("write");
    wait_for("the rejected reload", async || reloads(&metrics(&base).await, "failure") > failed_before).await;
    let still = common::client().get(format!("{base}/stock/1000")).send().await.expect("req");
    assert_eq!(still.status(), 200, "the broken config changed nothing");

    running.store(false, Ordering::SeqCst);
    for t in traffic {
        t.await.expect("traffic task");
    }
    let (sent, failed) = (sent.load(Ordering::SeqCst), failures.load(Ordering::SeqCst));
    assert!(sent > 20, "steady traffic ran: {sent}");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed during reloads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reload_needs_the_admin_scope_and_metrics_cover_every_family() {
    let hash = veneer::auth::clients::hash_secret("s").expect("hash");
    let auth = format!(
        "auth:\n  issuer: set-by-test\n  signing_keys: keys/\n  clients:\n    - {{ id: ops, secret_hash: \"{hash}\", scopes: [veneer:admin, items:read], limits: {{ rate: 1/min, burst: 3 }} }}\n    - {{ id: app, secret_hash: \"{hash}\", scopes: [items:read] }}\n"
    );
    // A second backend nobody listens on, with a breaker that opens at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let dead = format!(
        "  dead:\n    url: \"http://127.0.0.1:{port}/erp\"\n    wsdl: wsdl/sample-erp.wsdl\n    retries: {{ attempts: 0 }}\n    circuit_breaker: {{ window: 1, min_calls: 1, open_for: 60s }}\n"
    );
    let dir = config_dir(&auth, &dead).await;
    std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
    std::fs::write(
        dir.path().join("keys/k.pem"),
        veneer::auth::keys::generate_pem(jsonwebtoken::Algorithm::ES256).expect("key"),
    )
    .expect("key");
    let dead_route = "routes:\n  - route: \"GET /dead/{no}\"\n    backend: dead\n    operation: GetItem\n    scopes: [items:read]\n    request: { ItemNo: \"{path.no}\" }\n  - route: \"GET /cached/{no}\"\n    backend: erp\n    operation: GetItem\n    scopes: [items:read]\n    cache: 10s\n    request: { ItemNo: \"{path.no}\" }\n";
    std::fs::write(dir.path().join("routes/extra.yaml"), dead_route).expect("write");
    let (base, _stop) = serve(dir.path(), true).await;
    let token = |id: &'static str| {
        let base = base.clone();
        async move {
            let res = common::client()
                .post(format!("{base}/oauth2/token"))
                .basic_auth(id, Some("s"))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .expect("token");
            let body: serde_json::Value = res.json().await.expect("json");
            body["access_token"].as_str().expect("token").to_string()
        }
    };
    let (ops, app) = (token("ops").await, token("app").await);
    let c = common::client();
    let reload = |t: Option<String>| c.post(format!("{base}/admin/reload")).bearer_auth(t.unwrap_or_default()).send();
    assert_eq!(reload(None).await.expect("req").status(), 401);
    assert_eq!(reload(Some(app.clone())).await.expect("req").status(), 403);
    let ok = reload(Some(ops.clone())).await.expect("req");
    assert_eq!(ok.status(), 200);

    // A short scripted run touching every family.
    let get = |path: &'static str, t: &str| c.get(format!("{base}{path}")).bearer_auth(t.to_string()).send();
    assert_eq!(get("/items/1000", &app).await.expect("req").status(), 200);
    assert_eq!(get("/items/9999", &app).await.expect("req").status(), 404); // SOAP fault
    for _ in 0..2 {
        get("/cached/1000", &app).await.expect("req"); // miss, then hit
    }
    for _ in 0..4 {
        get("/items/1000", &ops).await.expect("req"); // the 4th is rate limited
    }
    get("/items/1000", "not-a-token").await.expect("req"); // validation failure
    for _ in 0..2 {
        get("/dead/1000", &app).await.expect("req"); // unreachable, then circuit open (shed)
    }
    let page = metrics(&base).await;
    for family in [
        "veneer_requests_total",
        "veneer_request_duration_seconds_bucket",
        "veneer_backend_duration_seconds_bucket",
        "veneer_soap_faults_total",
        "veneer_rate_limited_total",
        "veneer_shed_total",
        "veneer_circuit_state",
        "veneer_tokens_issued_total",
        "veneer_token_failures_total",
        "veneer_cache_lookups_total",
        "veneer_config_reloads_total",
        "veneer_config_info",
    ] {
        assert!(page.contains(family), "/metrics lacks {family}:\n{page}");
    }
    assert!(page.contains("route=\"GET /items/{no}\""), "routes are labelled by template");
    assert!(!page.contains("/items/1000"), "no raw paths in labels");
    assert!(!page.contains(&app[..20]), "no tokens in labels");
    assert!(page.contains("result=\"hit\""));
}

#[test]
fn dashboard_queries_only_metrics_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("src/telemetry.rs")).expect("telemetry.rs");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("ops/grafana-dashboard.json")).expect("dashboard"))
            .expect("json");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for panel in panels {
        let expr = panel["targets"][0]["expr"].as_str().expect("expr");
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("veneer_"))
        {
            let base = ["_bucket", "_count", "_sum"].iter().fold(word, |w, s| w.strip_suffix(s).unwrap_or(w));
            assert!(
                source.contains(&format!("\"{base}\"")),
                "panel {:?} queries {word}, which Veneer does not export",
                panel["title"]
            );
        }
    }
}
