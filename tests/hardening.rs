//! Hardening regressions: what an anonymous client could do to the gateway before (grow its
//! metrics without bound, hold connections with half a request, read one caller's cached
//! answer with another's input, read backend internals in errors), each through real HTTP
//! on loopback against the sample ERP or a backend written here to misbehave on cue.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use veneer::config::compile::CompileOptions;
use veneer::config::{self, ConfigSource};
use veneer::server::{self, AppState};

/// Serves `dir` as a reloadable gateway; returns its base URL, its state and the stopper.
async fn reloadable(dir: &Path) -> (String, AppState, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let options = CompileOptions::default();
    let gw = config::compile(&ConfigSource::Dir(dir.to_path_buf()), &options).unwrap_or_else(|e| panic!("{e}"));
    let state = AppState::reloadable(gw, dir.to_path_buf(), options);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::run(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    (base, state, tx)
}

/// An open gateway (no auth) over the sample WSDL, with `routes` as its route file and
/// `backend_extra` added to the backend `erp` at `url`.
fn open_config(url: &str, server: &str, backend_extra: &str, routes: &str) -> tempfile::TempDir {
    let gateway = format!(
        "server: {{ {server} }}\nbackends:\n  erp:\n    url: \"{url}\"\n    wsdl: wsdl/sample-erp.wsdl\n{backend_extra}"
    );
    let dir = common::config_dir(&gateway, &[], true);
    std::fs::write(dir.path().join("routes/test.yaml"), routes).expect("routes");
    dir
}

const ITEM_ROUTE: &str = "routes:\n  - route: \"GET /items/{no}\"\n    backend: erp\n    operation: GetItem\n    request: { itemNo: \"{path.no}\" }\n    response: GetItemResult\n";

/// A backend that answers every request with `status` and `body` after `delay`.
async fn fixed_backend(status: u16, body: String, delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                read_request(&mut sock).await;
                tokio::time::sleep(delay).await;
                let ct = if body.starts_with('<') && !body.starts_with("<html") { "text/xml" } else { "text/html" };
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {ct}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/soap")
}

/// Reads one HTTP request (headers, then Content-Length bytes).
async fn read_request(sock: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = sock.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

const ENV11: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>"#;

fn fault(code: &str, reason: &str, detail: &str) -> String {
    format!(
        "{ENV11}<soap:Fault><faultcode>{code}</faultcode><faultstring>{reason}</faultstring>{detail}</soap:Fault></soap:Body></soap:Envelope>"
    )
}

/// Lines of `/metrics` belonging to one metric family's series.
async fn series(base: &str, family: &str) -> usize {
    let page =
        common::client().get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    page.lines().filter(|l| l.starts_with(&format!("{family}{{"))).count()
}

#[tokio::test]
async fn random_methods_and_fault_codes_leave_the_series_count_constant() {
    // A backend whose fault codes change with every call, as a hostile ERP proxy could.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut n = 0u32;
        while let Ok((mut sock, _)) = listener.accept().await {
            n += 1;
            let body = fault(&format!("ORA-{n:05}"), "failed", "");
            tokio::spawn(async move {
                read_request(&mut sock).await;
                let head = format!(
                    "HTTP/1.1 500 X\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
            });
        }
    });
    let dir = open_config(&format!("http://{addr}/soap"), "", "", ITEM_ROUTE);
    let gw = common::with_config(dir.path()).await;
    let client = common::client();
    let call = |method: String| {
        let client = client.clone();
        let url = gw.url("/items/1000");
        async move {
            let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method token");
            client.request(m, url).send().await.expect("request").status()
        }
    };
    // One of each first, so every series that can exist exists.
    assert_eq!(call("XMETHOD0".into()).await, 405);
    assert_eq!(call("GET".into()).await, 502);
    let (requests, faults) =
        (series(&gw.base, "veneer_requests_total").await, series(&gw.base, "veneer_soap_faults_total").await);
    for i in 1..200 {
        let long = format!("X{}{i}", "M".repeat(200));
        assert_eq!(call(long).await, 405);
        if i % 10 == 0 {
            assert_eq!(call("GET".into()).await, 502);
        }
    }
    assert_eq!(series(&gw.base, "veneer_requests_total").await, requests, "methods must not add series");
    assert_eq!(series(&gw.base, "veneer_soap_faults_total").await, faults, "fault codes must not add series");
}

#[tokio::test]
async fn half_a_request_line_is_closed_within_the_header_timeout() {
    let dir = open_config("http://127.0.0.1:9/soap", "header_timeout: 1s, request_timeout: 60s", "", ITEM_ROUTE);
    let gw = common::with_config(dir.path()).await;
    let mut sock = TcpStream::connect(gw.base.trim_start_matches("http://")).await.expect("connect");
    sock.write_all(b"GET /hea").await.expect("write half a request line");
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    // Closed (EOF, or a 408 then EOF) well before the request timeout; never served.
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut got = Vec::new();
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the gateway must close a connection that never finishes its headers");
    assert!(!String::from_utf8_lossy(&read).contains("200 OK"), "never served");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(8), "closed after {waited:?}, header_timeout is 1 s");
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_a_slot_frees() {
    let dir = open_config("http://127.0.0.1:9/soap", "header_timeout: 2s, max_connections: 2", "", ITEM_ROUTE);
    let gw = common::with_config(dir.path()).await;
    let addr = gw.base.trim_start_matches("http://").to_string();
    // Two idle connections hold both slots until the header timeout closes them.
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.expect("partial headers");
        idle.push(s);
    }
    // Give the accept loop a moment to take both (readiness: the first request below).
    let started = Instant::now();
    let res = common::client().get(gw.url("/healthz")).timeout(Duration::from_secs(20)).send().await.expect("served");
    assert_eq!(res.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "a third connection was served at once ({:?}) although two were open and the cap is 2",
        started.elapsed()
    );
}

#[tokio::test]
async fn cached_answers_depend_on_body_and_header_inputs() {
    let erp = veneer::dev::start().await.expect("sample ERP");
    let routes = "routes:
  - route: \"POST /orders/search\"
    backend: erp
    operation: ListProductionOrders
    idempotent: true
    cache: 30s
    request: { Status: \"{body.status}\" }
    response: ProductionOrder
  - route: \"GET /orders/by-header\"
    backend: erp
    operation: ListProductionOrders
    cache: 30s
    request: { Status: \"{header.x-status}\" }
    response: ProductionOrder
";
    let dir = open_config(&erp.url, "", "", routes);
    let gw = common::with_config(dir.path()).await;
    let client = common::client();
    let statuses = |v: serde_json::Value| -> Vec<String> {
        v.as_array().expect("array").iter().map(|o| o["status"].as_str().unwrap_or("").to_string()).collect()
    };
    for (status, want) in [("Released", "Released"), ("Planned", "Planned"), ("Released", "Released")] {
        let by_body: serde_json::Value = client
            .post(gw.url("/orders/search"))
            .json(&serde_json::json!({"status": status}))
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("json");
        let got = statuses(by_body);
        assert!(!got.is_empty() && got.iter().all(|s| s == want), "body {status}: got {got:?}");
        let by_header: serde_json::Value = client
            .get(gw.url("/orders/by-header"))
            .header("x-status", status)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        let got = statuses(by_header);
        assert!(!got.is_empty() && got.iter().all(|s| s == want), "header {status}: got {got:?}");
    }
}

#[tokio::test]
async fn unreachable_backend_problem_names_no_url() {
    // Port 9 (discard) is closed on loopback: the connection is refused.
    let dir = open_config("http://127.0.0.1:9/soap?apikey=s3cr3t-key", "", "", ITEM_ROUTE);
    let gw = common::with_config(dir.path()).await;
    let res = common::client().get(gw.url("/items/1000")).send().await.expect("request");
    let p = common::problem(res, 502).await;
    let text = p.to_string();
    assert!(!text.contains("s3cr3t") && !text.contains("apikey") && !text.contains("127.0.0.1"), "{text}");
    assert_eq!(p["backend"], "erp");
}

#[tokio::test]
async fn backend_error_pages_and_fault_details_stay_in_the_log() {
    let trace =
        "<html><body>java.lang.NullPointerException at com.acme.erp.Dao(jdbc:oracle:thin:scott/tiger@db)</body></html>";
    let url = fixed_backend(500, trace.into(), Duration::ZERO).await;
    let dir = open_config(&url, "", "", ITEM_ROUTE);
    let gw = common::with_config(dir.path()).await;
    let p = common::problem(common::client().get(gw.url("/items/1000")).send().await.expect("request"), 502).await;
    let text = p.to_string();
    assert!(!text.contains("NullPointer") && !text.contains("tiger"), "{text}");

    let detail = "<detail><ora>ORA-01017: invalid username/password; logon denied</ora><stack>at System.Data.OracleClient</stack></detail>";
    let body = fault("soap:Server", "database error", detail);
    let url = fixed_backend(500, body, Duration::ZERO).await;
    // Default (typed): code and reason only, since the WSDL declares no fault element.
    let dir = open_config(&url, "", "", ITEM_ROUTE);
    let gw = common::with_config(dir.path()).await;
    let p = common::problem(common::client().get(gw.url("/items/1000")).send().await.expect("request"), 502).await;
    assert_eq!(p["fault"]["code"], "Server");
    assert_eq!(p["fault"]["reason"], "database error");
    assert!(!p.to_string().contains("ORA-01017") && !p.to_string().contains("OracleClient"), "{p}");
    // `hide` also drops detail; `pass` passes it whole (for a trusted ERP, by choice).
    let dir = open_config(&url, "", "    fault_detail: pass\n", ITEM_ROUTE);
    let gw = common::with_config(dir.path()).await;
    let p = common::problem(common::client().get(gw.url("/items/1000")).send().await.expect("request"), 502).await;
    assert!(p["fault"]["detail"]["ora"].as_str().is_some_and(|s| s.contains("ORA-01017")), "{p}");
    let dir = open_config(&url, "", "    fault_detail: hide\n", ITEM_ROUTE);
    let gw = common::with_config(dir.path()).await;
    let p = common::problem(common::client().get(gw.url("/items/1000")).send().await.expect("request"), 502).await;
    assert!(p["fault"].get("detail").is_none(), "{p}");
}

#[tokio::test]
async fn a_body_of_unknown_keys_gets_a_bounded_422() {
    let erp = veneer::dev::start().await.expect("sample ERP");
    let routes = "routes:\n  - route: \"POST /readings\"\n    backend: erp\n    operation: PostSensorReading\n";
    let dir = open_config(&erp.url, "", "", routes);
    let gw = common::with_config(dir.path()).await;
    let body: serde_json::Map<String, serde_json::Value> =
        (0..20_000).map(|i| (format!("unknown{i}"), serde_json::Value::from(i))).collect();
    let res = common::client().post(gw.url("/readings")).json(&body).send().await.expect("post");
    let bytes = res.content_length();
    let p = common::problem(res, 422).await;
    let listed = p["errors"].as_array().expect("errors").len();
    assert_eq!(listed, veneer::error::MAX_LISTED_ERRORS, "{bytes:?} bytes");
    let detail = p["detail"].as_str().expect("detail");
    assert!(detail.contains("more are not"), "says how many more: {detail}");
    assert!(p.to_string().len() < 64 * 1024, "the answer stays small");
}

#[tokio::test]
async fn request_timeout_follows_a_reload() {
    let item = format!(
        "{ENV11}<GetItemResponse xmlns=\"urn:veneer:sample-erp\"><GetItemResult><No>1000</No></GetItemResult></GetItemResponse></soap:Body></soap:Envelope>"
    );
    let url = fixed_backend(200, item, Duration::from_secs(3)).await;
    let dir = open_config(&url, "request_timeout: 30s", "    timeout: 20s\n", ITEM_ROUTE);
    let (base, state, _stop) = reloadable(dir.path()).await;
    let gateway_yaml = std::fs::read_to_string(dir.path().join("gateway.yaml")).expect("read");
    std::fs::write(
        dir.path().join("gateway.yaml"),
        gateway_yaml.replace("request_timeout: 30s", "request_timeout: 1s"),
    )
    .expect("write");
    state.reloader.as_ref().expect("reloader").reload("test").await.expect("reload");
    let started = Instant::now();
    let res = common::client().get(format!("{base}/items/1000")).send().await.expect("request");
    common::problem(res, 504).await;
    assert!(started.elapsed() < Duration::from_millis(2900), "the reloaded 1 s deadline applies");
}

#[tokio::test]
async fn a_reload_that_drops_auth_is_refused_unless_meant() {
    let erp = veneer::dev::start().await.expect("sample ERP");
    let dir = auth_config(&erp.url, "");
    let (base, state, _stop) = reloadable(dir.path()).await;
    let client = common::client();
    assert_eq!(client.get(format!("{base}/items/1000")).send().await.expect("get").status(), 401);

    // Open the routes by removing auth: refused, the old config keeps serving.
    let open = format!("backends:\n  erp:\n    url: \"{}\"\n    wsdl: wsdl/sample-erp.wsdl\n", erp.url);
    let items = std::fs::read_to_string(dir.path().join("routes/items.yaml")).expect("routes");
    let unscoped: String =
        items.lines().filter(|l| !l.trim_start().starts_with("scopes:")).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.path().join("routes/items.yaml"), unscoped).expect("write");
    std::fs::write(dir.path().join("gateway.yaml"), &open).expect("write");
    let reloader = state.reloader.as_ref().expect("reloader");
    let err = reloader.reload("test").await.expect_err("dropping auth is refused");
    assert!(err.to_string().contains("allow_anonymous"), "{err}");
    assert_eq!(client.get(format!("{base}/items/1000")).send().await.expect("get").status(), 401);

    // Said explicitly: accepted.
    std::fs::write(dir.path().join("gateway.yaml"), format!("server: {{ allow_anonymous: true }}\n{open}"))
        .expect("write");
    reloader.reload("test").await.expect("meant: accepted");
    assert_eq!(client.get(format!("{base}/items/1000")).send().await.expect("get").status(), 200);
}

/// A config with the built-in issuer (its own URL), client `c` (secret `s3cret`, scopes
/// `items:read` and `ops:metrics`), the sample item routes, and `server` settings.
fn auth_config(erp_url: &str, server: &str) -> tempfile::TempDir {
    let hash = veneer::auth::clients::hash_secret("s3cret").expect("hash");
    let yaml = format!(
        "server: {{ {server} }}\nbackends:\n  erp:\n    url: \"{erp_url}\"\n    wsdl: wsdl/sample-erp.wsdl\nauth:\n  issuer: \"http://veneer.test\"\n  signing_keys: keys\n  clients:\n    - id: c\n      secret_hash: \"{hash}\"\n      scopes: [items:read, ops:metrics]\n    - id: d\n      secret_hash: \"{hash}\"\n      scopes: [items:read]\n"
    );
    let dir = common::config_dir(&yaml, &["items.yaml"], false);
    veneer::admin::new_key(&dir.path().join("keys"), "ES256").expect("signing key");
    dir
}

#[tokio::test]
async fn metrics_can_require_a_scope() {
    let dir = auth_config("http://127.0.0.1:9/soap", "metrics_scope: ops:metrics");
    let gw = common::with_config_self_issuer(dir.path()).await;
    let client = common::client();
    common::problem(client.get(gw.url("/metrics")).send().await.expect("metrics"), 401).await;
    let without = common::access_token(&gw.base, "d", "s3cret").await;
    let res = client.get(gw.url("/metrics")).bearer_auth(&without).send().await.expect("metrics");
    common::problem(res, 403).await;
    let with = common::access_token(&gw.base, "c", "s3cret").await;
    let res = client.get(gw.url("/metrics")).bearer_auth(&with).send().await.expect("metrics");
    assert_eq!(res.status(), 200);
    assert!(
        res.text().await.expect("text").contains("veneer_tokens_issued_total"),
        "the tokens issued above are counted"
    );
}

#[test]
fn metrics_scope_without_auth_is_a_config_error() {
    let dir = common::config_dir(
        "server: { metrics_scope: ops:metrics }\nbackends:\n  erp:\n    url: \"http://127.0.0.1:9/soap\"\n    wsdl: wsdl/sample-erp.wsdl\n",
        &[],
        true,
    );
    let err = config::compile(&ConfigSource::Dir(dir.path().to_path_buf()), &CompileOptions::default())
        .expect_err("metrics_scope needs auth");
    assert!(err.to_string().contains("metrics_scope"), "{err}");
}

#[test]
fn password_files_resolve_from_the_config_directory() {
    let dir = common::config_dir(
        "backends:\n  erp:\n    url: \"http://127.0.0.1:9/soap\"\n    wsdl: wsdl/sample-erp.wsdl\n    auth: { basic: { username: svc, password_file: secrets/erp-password } }\n",
        &[],
        true,
    );
    std::fs::create_dir_all(dir.path().join("secrets")).expect("mkdir");
    std::fs::write(dir.path().join("secrets/erp-password"), "pw\n").expect("write");
    // The test's working directory is the crate root, where secrets/erp-password does not exist.
    assert!(!Path::new("secrets/erp-password").exists());
    let compiled = config::compile(&ConfigSource::Dir(dir.path().to_path_buf()), &CompileOptions::default());
    assert!(compiled.is_ok(), "{:?}", compiled.err());
}
