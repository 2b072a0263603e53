//! `veneer import-wsdl`: the routes file it writes passes `veneer check` unchanged, for the
//! sample ERP and for real ERP WSDLs (Dynamics NAV, SAP Business One with a soap:header,
//! an ASMX service), and it serves requests as written.

mod common;

use std::path::Path;
use std::process::Command;

fn veneer(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_veneer")).args(args).output().expect("run veneer");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A config directory holding only an empty gateway.yaml and the given WSDLs.
fn empty_config(wsdls: &[&Path]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("wsdl")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("routes")).expect("mkdir");
    std::fs::write(dir.path().join("gateway.yaml"), "{}\n").expect("write");
    for w in wsdls {
        std::fs::copy(w, dir.path().join("wsdl").join(w.file_name().expect("name"))).expect("copy");
    }
    dir
}

fn import(dir: &Path, wsdl: &str, backend: &str, endpoint: &str) -> String {
    let file = dir.join("wsdl").join(wsdl);
    let out = dir.join("routes").join(format!("{backend}.yaml"));
    let (ok, text) = veneer(&[
        "import-wsdl",
        &file.to_string_lossy(),
        "--backend",
        backend,
        "--endpoint",
        endpoint,
        "--out",
        &out.to_string_lossy(),
    ]);
    assert!(ok, "{text}");
    std::fs::read_to_string(out).expect("written")
}

#[test]
fn real_erp_wsdls_import_into_configs_that_check() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wsdl");
    let files = ["nav-salesorder-page.wsdl", "sap-b1-items.wsdl", "calculator.wsdl"].map(|f| fixtures.join(f));
    let dir = empty_config(&files.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    let nav = import(dir.path(), "nav-salesorder-page.wsdl", "nav", "http://127.0.0.1:9/nav");
    assert!(nav.contains("wsdl: \"wsdl/nav-salesorder-page.wsdl\""), "the WSDL path is relative to the config: {nav}");
    assert!(nav.contains("- route: \"GET /nav/{no}\"") && nav.contains("operation: \"Read\""), "{nav}");
    assert!(nav.contains("    #   setSize (integer, required)\n"), "body fields are listed for editing: {nav}");
    let b1 = import(dir.path(), "sap-b1-items.wsdl", "b1", "http://127.0.0.1:9/b1");
    assert!(b1.matches("- route:").count() == 5, "every ItemsService operation, its MsgHeader part set aside: {b1}");
    import(dir.path(), "calculator.wsdl", "calc", "http://127.0.0.1:9/calc");
    let (ok, text) = veneer(&["check", "--config", &dir.path().to_string_lossy()]);
    assert!(ok && text.contains("OK (20 routes, 3 backends)"), "{text}");
    let (ok, text) = veneer(&["openapi", "--config", &dir.path().to_string_lossy()]);
    assert!(ok && text.contains("\"operationId\": \"ReadMultiple\""), "operationIds are the WSDL names");
}

#[test]
fn network_urls_need_an_explicit_flag() {
    let (ok, text) = veneer(&["import-wsdl", "http://erp.example/ws?wsdl", "--backend", "x"]);
    assert!(!ok && text.contains("--allow-url"), "{text}");
    // Even with the flag, only http(s) is fetched.
    let (ok, text) = veneer(&["import-wsdl", "file:///etc/passwd", "--allow-url", "--backend", "x"]);
    assert!(!ok && text.contains("not an http(s) URL"), "{text}");
}

#[test]
fn a_failed_download_names_the_url_and_writes_no_routes() {
    // A loopback port nobody listens on: the connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let dir = empty_config(&[]);
    let out = dir.path().join("routes/plant.yaml");
    let url = format!("http://127.0.0.1:{port}/erp.wsdl");
    let (ok, text) =
        veneer(&["import-wsdl", &url, "--allow-url", "--backend", "plant", "--out", &out.to_string_lossy()]);
    assert!(!ok && text.contains(&url), "{text}");
    assert!(!out.exists(), "nothing is written for a failed import");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spyne_wsdl_fetched_by_url_imports_and_serves() {
    // spyne generates its WSDL at run time; import it by URL (the one explicit download),
    // then serve the generated routes against the same service.
    let spyne = common::start_spyne();
    let dir = empty_config(&[]);
    let out = dir.path().join("routes/plant.yaml");
    let (ok, text) = veneer(&[
        "import-wsdl",
        &format!("{}/?wsdl", spyne.base),
        "--allow-url",
        "--backend",
        "plant",
        "--out",
        &out.to_string_lossy(),
    ]);
    assert!(ok, "{text}");
    let saved = dir.path().join("wsdl/plant/plant.wsdl");
    assert!(std::fs::read_to_string(&saved).is_ok_and(|w| w.contains("GetPart")), "the WSDL is kept as a file");
    let yaml = std::fs::read_to_string(&out).expect("routes written");
    assert!(yaml.contains("wsdl: \"wsdl/plant/plant.wsdl\""), "{yaml}");
    assert!(
        yaml.contains(&format!("url: \"{}/\"", spyne.base)),
        "the endpoint comes from spyne's soap:address: {yaml}"
    );
    let (ok, text) = veneer(&["check", "--config", &dir.path().to_string_lossy()]);
    assert!(ok, "{text}\n{yaml}");

    let gw = common::with_config(dir.path()).await;
    let c = common::client();
    let part = c.get(gw.url("/plant/part?partNo=P-1")).send().await.expect("request");
    assert_eq!(part.status(), 200, "{yaml}");
    let part: serde_json::Value = part.json().await.expect("json");
    assert_eq!(part["partNo"], "P-1", "{part}");
    assert_eq!(part["price"].to_string(), "12345678901234567.123456", "{part}");
    let echo = c
        .post(gw.url("/plant/echo"))
        .json(&serde_json::json!({ "text": "<b>&amp;</b>" }))
        .send()
        .await
        .expect("request");
    assert_eq!(echo.status(), 200);
    let echo: serde_json::Value = echo.json().await.expect("json");
    assert_eq!(echo, serde_json::json!("<b>&amp;</b>"), "the text travels literally, both ways");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_routes_serve_requests() {
    let erp = veneer::dev::start().await.expect("sample ERP");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/wsdl/sample-erp.wsdl");
    let dir = empty_config(&[&sample]);
    import(dir.path(), "sample-erp.wsdl", "plant", &erp.url);
    let gw = common::with_config(dir.path()).await;
    let c = common::client();
    let item: serde_json::Value =
        c.get(gw.url("/plant/item/1000")).send().await.expect("req").json().await.expect("json");
    assert_eq!(item["blocked"], false);
    assert!(item["location"].is_array());
    let orders = c.get(gw.url("/plant/production-orders/Released?maxRows=1")).send().await.expect("req");
    assert_eq!(orders.status(), 200);
    let reading = c
        .post(gw.url("/plant/post-sensor-reading"))
        .json(&serde_json::json!({"sensorId": "T-1", "timestamp": "2026-11-25T08:00:00Z", "value": 1.5, "unit": "C"}))
        .send()
        .await
        .expect("req");
    assert_eq!(reading.status(), 200);
}

#[test]
fn every_corpus_wsdl_imports_into_one_config_that_checks_and_documents() {
    // Every usable corpus WSDL (document, rpc/literal, rpc/encoded, one-way, Cyrillic names,
    // xsd:any, abstract types), imported side by side: the routes check unchanged, and the
    // OpenAPI document served for all of them is valid OpenAPI 3.1.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wsdl");
    let dir = empty_config(&[]);
    let copy = |rel: &str| {
        let from = fixtures.join(rel);
        let to = dir.path().join("wsdl").join(rel);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&from, &to).expect("copy");
    };
    for entry in std::fs::read_dir(fixtures.join("netsuite-2023_2/xsd")).expect("xsd").flatten() {
        copy(&format!("netsuite-2023_2/xsd/{}", entry.file_name().to_string_lossy()));
    }
    copy("lnp-numbermanagement/NumberManagementModel.xsd");
    copy("lnp-numbermanagement/CommonIdsModel.xsd");
    let wsdls = [
        ("nav-salesorder-page.wsdl", "nav"),
        ("nav-b2bmanagement-codeunit.wsdl", "navcu"),
        ("sap-b1-login.wsdl", "b1login"),
        ("sap-b1-items.wsdl", "b1items"),
        ("sap-b1-orders.wsdl", "b1orders"),
        ("sap-s4-journalentry.wsdl", "s4"),
        ("netsuite-2023_2/netsuite.wsdl", "netsuite"),
        ("salesforce-partner-v58.wsdl", "sf"),
        ("siebel-order.wsdl", "siebel"),
        ("1c-delivery.wsdl", "delivery"),
        ("mantisconnect.wsdl", "mantis"),
        ("reformagkh.wsdl", "reforma"),
        ("lnp-numbermanagement/NumberManagement.wsdl", "lnp"),
        ("calculator.wsdl", "calc"),
        ("numberconversion.wsdl", "numbers"),
        ("countryinfo.wsdl", "countries"),
        ("globalweather.wsdl", "weather"),
    ];
    for (wsdl, backend) in wsdls {
        copy(wsdl);
        import(dir.path(), wsdl, backend, &format!("http://127.0.0.1:9/{backend}"));
    }
    let (ok, text) = veneer(&["check", "--config", &dir.path().to_string_lossy()]);
    assert!(ok && text.contains("OK (325 routes, 17 backends)"), "{text}");
    // What the WSDLs hold but do not use is said, with lines.
    assert!(
        text.contains("note: backend weather: WSDL line 161: binding \"GlobalWeatherHttpGet\" is not a SOAP binding"),
        "{text}"
    );
    assert!(
        text.contains(
            "note: backend lnp: WSDL line 403: operation \"listAvailablePublicNumberGroups\" is bound more than once"
        ),
        "{text}"
    );
    let doc = Command::new(env!("CARGO_BIN_EXE_veneer"))
        .args(["openapi", "--config", &dir.path().to_string_lossy()])
        .output()
        .expect("openapi");
    assert!(doc.status.success(), "{}", String::from_utf8_lossy(&doc.stderr));
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, &doc.stdout).expect("write");
    let out = Command::new("openapi-spec-validator")
        .arg(&path)
        .output()
        .expect("openapi-spec-validator runs (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains(": OK"), "not valid OpenAPI 3.1:\n{text}");
}
