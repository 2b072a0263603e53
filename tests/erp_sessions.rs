//! ERP sessions end to end against a session-based SOAP server not written in Rust: spyne
//! serving `tests/spyne/session_service.py`, which works like SAP Business One's DI web
//! services (a `Login` returning a SessionID for the `MsgHeader` of every later call, one
//! call at a time per session, a fault for an unknown or expired session). The server
//! itself counts logins, logouts and calls that overlap within one session.

mod common;

use std::time::Duration;

use common::Spyne;
use serde_json::{Value, json};

const NS: &str = "urn:veneer:test:sessions";

const ROUTES: &str = r#"
routes:
  - route: "GET /stock/{item}"
    backend: erp
    operation: GetStock
    request: { ItemCode: "{path.item}" }
    response: Quantity
  - route: "POST /readings"
    backend: erp
    operation: PostReading
    request: { ReadingId: "{body.id}", Value: "{body.value}" }
    response: Booked
"#;

/// The spyne session ERP; `args` beyond the port go to the script.
fn erp(args: &[&str]) -> Spyne {
    let mut all = vec!["--port", "0"];
    all.extend_from_slice(args);
    common::start_spyne_script("session_service.py", &all)
}

/// A config dir for a gateway in front of `erp`, whose backend session settings are
/// `session` (YAML, indented under `session:`), logging in with `password`.
async fn config(erp: &Spyne, password: &str, session: &str) -> tempfile::TempDir {
    let wsdl = common::client().get(format!("{}/?wsdl", erp.base)).send().await.expect("WSDL");
    let wsdl = wsdl.text().await.expect("WSDL text");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("erp.wsdl"), wsdl).expect("write wsdl");
    std::fs::write(dir.path().join("erp-password.txt"), format!("{password}\n")).expect("write password");
    let gateway_yaml = format!(
        r#"backends:
  erp:
    url: "{}/"
    wsdl: erp.wsdl
    timeout: 10s
    queue: {{ max: 512, timeout: 20s }}
    session:
      login:
        operation: Login
        input: {{ Company: PLANT1, UserName: veneer }}
        input_file: {{ Password: erp-password.txt }}
      capture: {{ id: SessionID }}
      soap_headers:
        MsgHeader: {{ SessionID: "{{session.id}}" }}
      logout: {{ operation: Logout }}
{session}
"#,
        erp.base
    );
    std::fs::write(dir.path().join("gateway.yaml"), gateway_yaml).expect("write gateway");
    std::fs::create_dir(dir.path().join("routes")).expect("mkdir");
    std::fs::write(dir.path().join("routes/erp.yaml"), ROUTES).expect("write routes");
    dir
}

/// Runs `veneer serve` over `dir` at debug level, logging to a file; returns the process,
/// a reader of its log so far, and its base URL once it listens.
async fn serve_binary(dir: &std::path::Path) -> (common::Process, impl Fn() -> String, String) {
    let log_path = dir.join("veneer.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = common::Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_veneer"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(dir)
            .env("RUST_LOG", "debug")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("veneer starts"),
    );
    let read_log = move || std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut base = None;
    common::eventually("the gateway listens", Duration::from_secs(20), || {
        base = read_log()
            .lines()
            .find(|l| l.contains("veneer is listening"))
            .and_then(|l| l.split("local=").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .map(|a| format!("http://{a}"));
        std::future::ready(base.is_some())
    })
    .await;
    (child, read_log, base.expect("address"))
}

fn signal(child: &common::Process, sig: &str) {
    let status = std::process::Command::new("kill").args([sig, &child.0.id().to_string()]).status();
    assert!(status.expect("kill runs").success());
}

async fn stats(erp: &Spyne) -> Value {
    common::spyne_stats_in(&erp.base, NS, "Stats").await.expect("stats")
}

/// Calls an operation of the ERP directly (not through the gateway).
async fn admin(erp: &Spyne, operation: &str) {
    call(erp, operation, "").await;
}

/// Calls `operation` of the ERP directly with `content` (XML) as its input.
async fn call(erp: &Spyne, operation: &str, content: &str) {
    let body = format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><{operation} xmlns="{NS}">{content}</{operation}></soap:Body></soap:Envelope>"#
    );
    let res = common::client()
        .post(format!("{}/", erp.base))
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", format!("\"{operation}\""))
        .body(body)
        .send()
        .await
        .expect("admin call");
    assert_eq!(res.status(), 200, "{operation}");
}

/// `n` concurrent GETs of distinct items; every answer must be 200 with its quantity.
async fn concurrent_gets(gw: &common::Gateway, n: usize) {
    let client = common::client();
    let calls = (0..n).map(|i| {
        let (client, url) = (client.clone(), gw.url(&format!("/stock/ITEM-{i}")));
        async move {
            let res = client.get(url).send().await.expect("request");
            let status = res.status();
            let body = res.text().await.expect("body");
            (status, body, i)
        }
    });
    for (status, body, i) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "call {i}: {body}");
        // spyne answers len(ItemCode) * 10.
        assert_eq!(body, (format!("ITEM-{i}").len() * 10).to_string(), "call {i}");
    }
}

#[tokio::test]
async fn a_pool_of_four_serves_200_concurrent_calls_one_at_a_time_and_logs_in_again_once_per_session() {
    let erp = erp(&["--call-ms", "5"]);
    let dir = config(&erp, "secret", "      size: 4\n      exclusive: true").await;
    let gw = common::with_config(dir.path()).await;

    concurrent_gets(&gw, 200).await;
    let s = stats(&erp).await;
    assert_eq!(s["overlaps"], 0, "two calls shared a session at once: {s}");
    assert_eq!(s["logins"], 4, "one login per pooled session: {s}");
    assert_eq!(s["calls"], 200, "{s}");
    assert_eq!(s["session_faults"], 0, "{s}");
    // Every pooled session was used (calls waited for a free one instead of logging in more).
    assert_eq!(s["session_calls"].as_object().map(|m| m.len()), Some(4), "{s}");

    // The ERP forgets every session (a restart, a nightly job): each pooled session meets
    // one fault, logs in again once, and the call it carried still succeeds.
    admin(&erp, "ExpireAll").await;
    concurrent_gets(&gw, 200).await;
    let s = stats(&erp).await;
    assert_eq!(s["logins"], 8, "exactly one extra login per pooled session: {s}");
    assert_eq!(s["session_faults"], 4, "one refused call per stale session: {s}");
    assert_eq!(s["overlaps"], 0, "{s}");
    assert_eq!(s["calls"], 400, "{s}");

    // A write refused for its session is sent again after the new login (the ERP did
    // nothing with it), and booked exactly once.
    admin(&erp, "ExpireAll").await;
    let res = common::client()
        .post(gw.url("/readings"))
        .json(&json!({"id": "R-1", "value": 12.5}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.expect("body"), "1", "booked once");
    let s = stats(&erp).await;
    assert_eq!(s["bookings"]["R-1"], 1, "{s}");
    assert_eq!(s["logins"], 9, "{s}");

    // Shutdown logs every live session out (licences freed now, not at the ERP's timeout):
    // the one logged in for the write; the other three the ERP had already forgotten.
    assert_eq!(s["live_sessions"], 1, "{s}");
    drop(gw);
    common::eventually("every live session logged out on shutdown", Duration::from_secs(15), || async {
        let s = stats(&erp).await;
        s["live_sessions"] == 0 && s["logouts"] == 1
    })
    .await;
}

/// Calls `/stock/X{i}` for each `i` at once; every answer must be the login problem with the
/// backoff left as `Retry-After`, and never the password.
async fn refused_logins(gw: &common::Gateway, calls: std::ops::Range<usize>) {
    let client = common::client();
    let calls = calls.map(|i| client.get(gw.url(&format!("/stock/X{i}"))).send());
    for res in futures_util::future::join_all(calls).await {
        let res = res.expect("request");
        let retry: u64 = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("Retry-After");
        assert!((1..=2).contains(&retry), "Retry-After {retry}: the backoff left (1 s, then 2 s)");
        let problem = common::problem(res, 502).await;
        assert_eq!(problem["backend"], "erp", "{problem}");
        let text = problem.to_string();
        assert!(!text.contains("not-the-password"), "the password leaked: {text}");
    }
}

#[tokio::test]
async fn a_wrong_password_is_a_clean_502_and_login_attempts_stay_bounded() {
    let erp = erp(&[]);
    let dir = config(&erp, "not-the-password", "      size: 2\n      exclusive: true\n      login_backoff: 1s").await;
    let gw = common::with_config(dir.path()).await;
    // One attempt at a time until one works: 25 concurrent calls, whatever the pool size, try
    // one login.
    let started = std::time::Instant::now();
    refused_logins(&gw, 0..25).await;
    assert_eq!(stats(&erp).await["login_attempts"], 1);
    // None during the backoff (1 s); then one probe. Polled, one call at a time.
    let mut probe_sent = started;
    common::eventually("a login probe after the backoff", Duration::from_secs(10), async || {
        probe_sent = std::time::Instant::now();
        refused_logins(&gw, 25..26).await;
        stats(&erp).await["login_attempts"] == 2
    })
    .await;
    assert!(started.elapsed() >= Duration::from_secs(1), "a login was tried within the 1 s backoff");
    // The second refusal doubles the backoff: 25 more calls within it try nothing.
    refused_logins(&gw, 26..51).await;
    let s = stats(&erp).await;
    if probe_sent.elapsed() < Duration::from_secs(2) {
        assert_eq!(s["login_attempts"], 2, "a login was tried within the doubled backoff: {s}");
    }
    assert_eq!(s["logins"], 0, "{s}");
}

#[tokio::test]
async fn idle_sessions_are_logged_out_and_the_next_call_logs_in_again() {
    let erp = erp(&[]);
    let dir = config(&erp, "secret", "      idle: 1s").await;
    let gw = common::with_config(dir.path()).await;
    concurrent_gets(&gw, 1).await;
    assert_eq!(stats(&erp).await["logins"], 1);
    // The sweeper logs the idle session out, freeing the ERP licence it held.
    common::eventually("the idle session is logged out", Duration::from_secs(10), || async {
        stats(&erp).await["logouts"] == 1
    })
    .await;
    concurrent_gets(&gw, 1).await;
    let s = stats(&erp).await;
    assert_eq!(s["logins"], 2, "{s}");
    assert_eq!(s["session_faults"], 0, "no call met a stale session: {s}");
}

#[tokio::test]
async fn session_ids_never_reach_metrics_or_the_api_document() {
    let erp = erp(&[]);
    let dir = config(&erp, "secret", "").await;
    let gw = common::with_config(dir.path()).await;
    concurrent_gets(&gw, 3).await;
    let metrics = common::client().get(gw.url("/metrics")).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("metrics text");
    assert!(metrics.contains(r#"veneer_session_logins_total{backend="erp",outcome="ok"} 1"#), "{metrics}");
    let ids: Vec<String> = stats(&erp).await["session_calls"].as_object().expect("sessions").keys().cloned().collect();
    assert_eq!(ids.len(), 1);
    assert!(!metrics.contains(&ids[0]), "the session id is in /metrics");
    let openapi = common::client().get(gw.url("/openapi.json")).send().await.expect("openapi");
    let openapi = openapi.text().await.expect("openapi text");
    assert!(!openapi.contains("MsgHeader") && !openapi.contains(&ids[0]), "the session header is not a caller's input");
}

#[tokio::test]
async fn the_binary_logs_no_password_or_session_id_even_at_debug() {
    let erp = erp(&["--password", "Pl4nt-Secret"]);
    let dir = config(&erp, "Pl4nt-Secret", "      size: 2").await;
    let (mut child, read_log, base) = serve_binary(dir.path()).await;

    let client = common::client();
    // Logins, calls, a refusal for a forgotten session and the relogin, a write.
    for round in 0..2 {
        for i in 0..4 {
            let res = client.get(format!("{base}/stock/I{i}")).send().await.expect("request");
            assert_eq!(res.status(), 200, "round {round}");
        }
        admin(&erp, "ExpireAll").await;
    }
    let res = client.post(format!("{base}/readings")).json(&json!({"id": "R-9", "value": 1})).send().await;
    assert_eq!(res.expect("request").status(), 200);
    // SIGTERM: a graceful stop, which logs the live sessions out.
    signal(&child, "-TERM");
    // Blocking is fine: nothing in this process serves the shutdown.
    let exited = child.0.wait().expect("wait");
    assert!(exited.success(), "{exited:?}");

    let s = stats(&erp).await;
    let ids: Vec<&String> = s["session_calls"].as_object().expect("sessions").keys().collect();
    assert!(ids.len() >= 3, "several sessions were used: {s}");
    assert_eq!(s["live_sessions"], 0, "shutdown logged the live session out: {s}");
    let text = read_log();
    assert!(text.contains("logged in to the ERP"), "the log is there: {text}");
    assert!(!text.contains('\u{1b}'), "a log written to a file has no terminal colours");
    assert!(!text.contains("Pl4nt-Secret"), "the password is in the log");
    for id in ids {
        assert!(!text.contains(id.as_str()), "session id {id} is in the log");
    }
}

#[tokio::test]
async fn a_reload_keeps_logged_in_sessions_unless_the_session_settings_change() {
    let erp = erp(&[]);
    let dir = config(&erp, "secret", "      size: 1").await;
    let (child, read_log, base) = serve_binary(dir.path()).await;
    let client = common::client();
    let get = || async {
        let res = client.get(format!("{base}/stock/ABC")).send().await.expect("request");
        assert_eq!(res.status(), 200);
    };
    get().await;
    let reloads = || read_log().matches("config reloaded").count();
    let reload = |before: usize| {
        signal(&child, "-HUP");
        common::eventually("the reload", Duration::from_secs(20), move || std::future::ready(reloads() > before))
    };

    // A route file edit: the session settings are untouched, the session stays.
    let routes = dir.path().join("routes/erp.yaml");
    let text = std::fs::read_to_string(&routes).expect("routes");
    std::fs::write(&routes, format!("# edited\n{text}")).expect("edit routes");
    reload(reloads()).await;
    get().await;
    let s = stats(&erp).await;
    assert_eq!((s["logins"].as_u64(), s["logouts"].as_u64()), (Some(1), Some(0)), "{s}");

    // A changed session setting: the old pool logs out, the next call logs in anew.
    let gw = dir.path().join("gateway.yaml");
    let text = std::fs::read_to_string(&gw).expect("gateway.yaml");
    std::fs::write(&gw, text.replace("size: 1", "size: 2")).expect("edit gateway.yaml");
    reload(reloads()).await;
    common::eventually("the replaced pool logs out", Duration::from_secs(10), || async {
        stats(&erp).await["logouts"] == 1
    })
    .await;
    get().await;
    assert_eq!(stats(&erp).await["logins"], 2);
    drop(child);
}

#[tokio::test]
async fn a_caller_that_gives_up_never_frees_its_session_for_a_second_call_too_early() {
    let erp = erp(&["--call-ms", "400"]);
    let dir = config(&erp, "secret", "      size: 1\n      exclusive: true").await;
    let gw = common::with_config(dir.path()).await;
    concurrent_gets(&gw, 1).await; // logged in
    // A caller that hangs up mid-call: the ERP still works on its call in the session.
    let impatient = reqwest::Client::builder().no_proxy().timeout(Duration::from_millis(100)).build().expect("client");
    assert!(impatient.get(gw.url("/stock/GONE")).send().await.is_err(), "the caller gave up");
    // The next call must wait for that one to end, not share the session with it.
    concurrent_gets(&gw, 1).await;
    let s = stats(&erp).await;
    assert_eq!(s["overlaps"], 0, "{s}");
    assert_eq!(s["calls"], 3, "the abandoned call still ran: {s}");
}

/// Renames the backend in `dir` to `name`: the metrics are one registry per test process,
/// and a test that counts logins of backend `erp` must not see another test's.
fn rename_backend(dir: &std::path::Path, name: &str) {
    let yaml = std::fs::read_to_string(dir.join("gateway.yaml")).expect("read");
    std::fs::write(dir.join("gateway.yaml"), yaml.replace("  erp:\n", &format!("  {name}:\n"))).expect("write");
    let routes = std::fs::read_to_string(dir.join("routes/erp.yaml")).expect("read");
    std::fs::write(dir.join("routes/erp.yaml"), routes.replace("backend: erp", &format!("backend: {name}")))
        .expect("write");
}

/// Changes the ERP account's password (as its administrator would), directly.
async fn set_password(erp: &Spyne, password: &str) {
    call(erp, "SetPassword", &format!("<Password>{password}</Password>")).await;
}

/// A password changed under a healthy pool whose sessions then all expire: the sessions'
/// logins are made one at a time, so the burst costs one failed login, not one per pooled
/// session (five failures lock an SAP B1 user).
#[tokio::test]
async fn a_password_changed_under_a_full_pool_costs_one_failed_login() {
    let erp = erp(&["--call-ms", "100"]);
    let dir = config(&erp, "secret", "      size: 5\n      exclusive: true\n      login_backoff: 30s").await;
    rename_backend(dir.path(), "erp_rotated");
    let gw = common::with_config(dir.path()).await;
    concurrent_gets(&gw, 20).await;
    let before = stats(&erp).await;
    assert!(before["logins"].as_u64().is_some_and(|n| n >= 2), "several sessions in the pool: {before}");
    set_password(&erp, "rotated").await;
    admin(&erp, "ExpireAll").await;
    let client = common::client();
    let calls = (0..20).map(|i| client.get(gw.url(&format!("/stock/Y{i}"))).send());
    for res in futures_util::future::join_all(calls).await {
        common::problem(res.expect("request"), 502).await;
    }
    let s = stats(&erp).await;
    assert_eq!(s["login_failures"], 1, "one failed login for the whole pool: {s}");
}

/// Many backends with a wrong password, each called by ten callers at once on the
/// gateway binary's threads: each tries one login, however the calls interleave (a waiting
/// caller once slipped in between a refusal and its backoff).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pools_with_a_wrong_password_try_one_login_each() {
    const POOLS: usize = 150;
    let erp = erp(&[]);
    let dir = config(&erp, "wrong", "      size: 3\n      login_backoff: 30s").await;
    let yaml = std::fs::read_to_string(dir.path().join("gateway.yaml")).expect("read");
    let (head, backend) = yaml.split_once("  erp:\n").expect("one backend");
    let mut all = head.to_string();
    let mut routes = String::from("routes:\n");
    for i in 0..POOLS {
        all.push_str(&format!("  erp{i}:\n{backend}"));
        routes.push_str(&format!(
            "  - {{ route: \"GET /stock{i}/{{item}}\", backend: erp{i}, operation: GetStock, request: {{ ItemCode: \"{{path.item}}\" }}, response: Quantity }}\n"
        ));
    }
    std::fs::write(dir.path().join("gateway.yaml"), all).expect("write");
    std::fs::write(dir.path().join("routes/erp.yaml"), routes).expect("write");
    let gw = common::Veneer::serve(dir.path(), &[]);
    let client = common::client();
    let calls = (0..POOLS * 10).map(|n| client.get(format!("{}/stock{}/I{n}", gw.base, n % POOLS)).send());
    for res in futures_util::future::join_all(calls).await {
        common::problem(res.expect("request"), 502).await;
    }
    let s = stats(&erp).await;
    assert_eq!(s["login_attempts"], POOLS, "{s}");
}

/// A caller that hangs up mid-call does not free the backend's call slot while the ERP still
/// works on that call: with `max_concurrency: 1`, the ERP never sees two calls at once.
#[tokio::test]
async fn a_caller_that_hangs_up_keeps_max_concurrency_at_the_erp() {
    let erp = erp(&["--call-ms", "400"]);
    let dir = config(&erp, "secret", "      size: 2").await;
    let yaml = std::fs::read_to_string(dir.path().join("gateway.yaml")).expect("read");
    let yaml = yaml.replace("    queue:", "    max_concurrency: 1\n    queue:");
    std::fs::write(dir.path().join("gateway.yaml"), yaml).expect("write");
    rename_backend(dir.path(), "erp_capped");
    let gw = common::with_config(dir.path()).await;
    concurrent_gets(&gw, 1).await; // logged in
    let impatient = reqwest::Client::builder().no_proxy().timeout(Duration::from_millis(100)).build().expect("client");
    assert!(impatient.get(gw.url("/stock/GONE")).send().await.is_err(), "the caller gave up");
    concurrent_gets(&gw, 2).await;
    let s = stats(&erp).await;
    assert_eq!(s["peak_in_flight"], 1, "max_concurrency: 1 held at the ERP: {s}");
    assert_eq!(s["calls"], 4, "the abandoned call still ran: {s}");
}
