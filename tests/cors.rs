//! CORS through real HTTP, as a browser dashboard meets it: preflights from an allowed and a
//! refused origin, a route with its own policy, a built-in endpoint, and what a real request
//! carries back; and a dashboard page in a real browser.

mod common;

use reqwest::Method;

/// The sample ERP's item route under `server.cors` for `https://dash.example`, and a second
/// route whose own policy allows only `https://ops.example`.
async fn gateway() -> (common::Gateway, tempfile::TempDir) {
    let erp = veneer::dev::start().await.expect("the sample ERP");
    let yaml = format!(
        "server:\n  cors: {{ origins: [\"https://dash.example\"], max_age: 5m }}\nbackends:\n  erp: {{ url: \"{}\", wsdl: wsdl/sample-erp.wsdl }}\n",
        erp.url
    );
    let dir = common::config_dir(&yaml, &["items.yaml"], true);
    std::fs::write(
        dir.path().join("routes/ops.yaml"),
        "routes:\n  - { route: \"GET /ops/items/{no}\", backend: erp, operation: GetItem, request: { ItemNo: \"{path.no}\" }, cors: { origins: [\"https://ops.example\"] } }\n",
    )
    .expect("write");
    (common::with_config(dir.path()).await, dir)
}

async fn preflight(gw: &common::Gateway, origin: &str, path: &str, method: &str, headers: &str) -> reqwest::Response {
    let mut req = gw
        .client()
        .request(Method::OPTIONS, gw.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method);
    if !headers.is_empty() {
        req = req.header("access-control-request-headers", headers);
    }
    req.send().await.expect("preflight")
}

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

#[tokio::test]
async fn preflights_and_requests_follow_the_gateways_and_the_routes_policy() {
    let (gw, _dir) = gateway().await;
    // Allowed: 204 with what the browser needs.
    let ok = preflight(&gw, "https://dash.example", "/items/1000", "GET", "authorization").await;
    assert_eq!(ok.status(), 204);
    assert_eq!(header(&ok, "access-control-allow-origin").as_deref(), Some("https://dash.example"));
    assert!(header(&ok, "access-control-allow-methods").is_some_and(|m| m.contains("GET")));
    assert_eq!(header(&ok, "access-control-allow-headers").as_deref(), Some("authorization"));
    assert_eq!(header(&ok, "access-control-max-age").as_deref(), Some("300"));
    // Refused: another origin, a method the path does not serve, a header not allowed. No
    // CORS header at all, and a problem saying why.
    for (origin, method, headers) in [
        ("https://evil.example", "GET", ""),
        ("https://dash.example", "DELETE", ""),
        ("https://dash.example", "GET", "x-secret"),
    ] {
        let refused = preflight(&gw, origin, "/items/1000", method, headers).await;
        assert!(
            !refused.headers().keys().any(|k| k.as_str().starts_with("access-control-")),
            "{origin} {method} {headers}"
        );
        let problem = common::problem(refused, 403).await;
        assert!(problem["type"].as_str().is_some_and(|t| t.ends_with("cors-refused")), "{problem}");
    }
    // A real request: the allowed origin may read the answer and the exposed headers.
    let res =
        gw.client().get(gw.url("/items/1000")).header("origin", "https://dash.example").send().await.expect("get");
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "access-control-allow-origin").as_deref(), Some("https://dash.example"));
    assert!(header(&res, "access-control-expose-headers").is_some_and(|h| h.contains("x-request-id")));
    assert!(header(&res, "vary").is_some_and(|v| v.to_ascii_lowercase().contains("origin")));
    let other =
        gw.client().get(gw.url("/items/1000")).header("origin", "https://evil.example").send().await.expect("get");
    assert_eq!(header(&other, "access-control-allow-origin"), None, "another origin cannot read it");
    // A route's own policy replaces the gateway's on its path.
    assert_eq!(preflight(&gw, "https://ops.example", "/ops/items/1000", "GET", "").await.status(), 204);
    assert_eq!(preflight(&gw, "https://dash.example", "/ops/items/1000", "GET", "").await.status(), 403);
    // Built-in endpoints follow the gateway's policy: a dashboard may post telemetry or ask
    // for the document.
    let token = preflight(&gw, "https://dash.example", "/openapi.json", "GET", "").await;
    assert_eq!(token.status(), 204);
}

/// Without `cors:`, a preflight is an OPTIONS like any other: no CORS header.
#[tokio::test]
async fn without_a_policy_no_cors_header_is_sent() {
    let gw = common::dev().await;
    let res = preflight(&gw, "https://dash.example", "/items/1000", "GET", "authorization").await;
    assert!(!res.headers().keys().any(|k| k.as_str().starts_with("access-control-")));
    assert_eq!(res.status(), 405);
}

#[test]
fn a_bad_origin_is_a_config_error_on_its_line() {
    let dir = common::config_dir(
        "server:\n  cors: { origins: [\"https://dash.example/app\"] }\nbackends:\n  erp: { url: \"http://127.0.0.1:9/\", wsdl: wsdl/sample-erp.wsdl }\n",
        &["items.yaml"],
        true,
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_veneer"))
        .args(["check", "--config"])
        .arg(dir.path())
        .output()
        .expect("veneer runs");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("gateway.yaml:2:") && text.contains("scheme://host"), "{text}");
}

/// In a real browser (headless Chromium through playwright-core): a dashboard page from the
/// allowed origin reads the answer and an exposed header; one from another origin cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_dashboard_calls_from_the_allowed_origin_only() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("tests/browser/node_modules/playwright-core").exists(),
        "run scripts/test.sh (it runs `npm ci` in tests/browser)"
    );
    let erp = veneer::dev::start().await.expect("the sample ERP");
    let yaml = format!(
        "server:\n  cors: {{ origins: [\"http://dash.example\"] }}\nbackends:\n  erp: {{ url: \"{}\", wsdl: wsdl/sample-erp.wsdl }}\n",
        erp.url
    );
    let dir = common::config_dir(&yaml, &["items.yaml"], true);
    let gw = common::with_config(dir.path()).await;
    let base = gw.url("");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(root.join("tests/browser/cors.mjs"))
            .arg(base.trim_end_matches('/'))
            .output()
    })
    .await
    .expect("join")
    .expect("node runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("CORS OK"), "{text}");
}
