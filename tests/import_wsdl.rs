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

/// A loopback HTTP server answering paths with fixed raw responses, built knowing its port;
/// anything else is 404. It serves one request at a time until the test process ends.
fn serve(build: impl FnOnce(u16) -> Vec<(String, String)>) -> u16 {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("addr").port();
    let routes: std::collections::HashMap<String, String> = build(port).into_iter().collect();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(&stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let path = request.split(' ').nth(1).unwrap_or("");
            let not_found = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string();
            let response = routes.get(path).unwrap_or(&not_found);
            let _ = (&stream).write_all(response.as_bytes());
        }
    });
    port
}

fn ok_xml(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn redirect(to: &str) -> String {
    format!("HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
}

/// A one-operation document/literal WSDL whose schema holds `imports`.
fn ping_wsdl(imports: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:tns="urn:t" targetNamespace="urn:t">
  <types>
    <xsd:schema targetNamespace="urn:t" elementFormDefault="qualified">
      {imports}
      <xsd:element name="Ping"><xsd:complexType><xsd:sequence><xsd:element name="text" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="PingResponse"><xsd:complexType><xsd:sequence><xsd:element name="text" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
    </xsd:schema>
  </types>
  <message name="PingIn"><part name="parameters" element="tns:Ping"/></message>
  <message name="PingOut"><part name="parameters" element="tns:PingResponse"/></message>
  <portType name="P"><operation name="Ping"><input message="tns:PingIn"/><output message="tns:PingOut"/></operation></portType>
  <binding name="B" type="tns:P"><soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="Ping"><soap:operation soapAction="urn:t#Ping"/><input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>
  </binding>
  <service name="S"><port name="Port" binding="tns:B"><soap:address location="http://127.0.0.1:9/ping"/></port></service>
</definitions>"#
    )
}

fn schema(ns: &str) -> String {
    format!(
        r#"<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" targetNamespace="{ns}"><xsd:element name="E" type="xsd:string"/></xsd:schema>"#
    )
}

/// `import-wsdl URL --allow-url` into a fresh config; its success and output.
fn import_url(dir: &Path, url: &str, extra: &[&str]) -> (bool, String) {
    let out = dir.join("routes/ping.yaml");
    let mut args = vec!["import-wsdl", url, "--allow-url", "--backend", "ping", "--out"];
    let out = out.to_string_lossy().into_owned();
    args.push(&out);
    args.extend_from_slice(extra);
    veneer(&args)
}

#[test]
fn locations_written_with_character_references_are_downloaded_not_read_locally() {
    // `&#47;dev&#47;zero` is `/dev/zero` to the schema reader. Resolved against the WSDL's
    // URL it names a document on the same server: it is downloaded and the saved WSDL
    // points at the downloaded file, so `check` never opens the local path.
    let tmp_name = format!("veneer-test-{}.xsd", std::process::id());
    let port = serve(|_| {
        let imports = format!(
            "<xsd:import namespace=\"urn:z\" schemaLocation=\"&#47;dev&#47;zero\"/>\n      <xsd:import namespace=\"urn:y\" schemaLocation=\"&#x2F;tmp&#47;{tmp_name}\"/>"
        );
        vec![
            ("/svc.wsdl".into(), ok_xml(&ping_wsdl(&imports))),
            ("/dev/zero".into(), ok_xml(&schema("urn:z"))),
            (format!("/tmp/{tmp_name}"), ok_xml(&schema("urn:y"))),
        ]
    });
    let dir = empty_config(&[]);
    let (ok, text) = import_url(dir.path(), &format!("http://127.0.0.1:{port}/svc.wsdl"), &[]);
    assert!(ok, "{text}");
    let saved = std::fs::read_to_string(dir.path().join("wsdl/ping/ping.wsdl")).expect("saved WSDL");
    assert!(
        saved.contains("schemaLocation=\"zero.xsd\"") && saved.contains(&format!("schemaLocation=\"{tmp_name}\"")),
        "the locations name the downloaded files: {saved}"
    );
    assert!(!saved.contains("&#47;") && !saved.contains("&#x2F;"), "{saved}");
    assert!(dir.path().join("wsdl/ping/zero.xsd").is_file() && dir.path().join("wsdl/ping").join(&tmp_name).is_file());
    let (ok, text) = common::bounded_check(dir.path());
    assert!(ok && text.contains("OK (1 route, 1 backend)"), "{text}");

    // A location that is not http(s) once decoded and resolved is refused, and no routes
    // are written.
    let port = serve(|_| {
        let imports = "<xsd:import namespace=\"urn:z\" schemaLocation=\"file&#58;&#47;&#47;&#47;dev&#47;zero\"/>";
        vec![("/svc.wsdl".into(), ok_xml(&ping_wsdl(imports)))]
    });
    let dir = empty_config(&[]);
    let (ok, text) = import_url(dir.path(), &format!("http://127.0.0.1:{port}/svc.wsdl"), &[]);
    assert!(!ok && text.contains("\"file:///dev/zero\" is not an http(s) URL"), "{text}");
    assert!(!dir.path().join("routes/ping.yaml").exists());
}

#[test]
fn redirects_stay_on_the_host_unless_allowed() {
    // 127.0.0.1 and localhost are the same machine but different host names: the redirect
    // is refused without --allow-cross-host-redirects, followed with it. A redirect on the
    // same host is followed either way.
    let port = serve(|port| {
        vec![
            ("/svc.wsdl".into(), redirect(&format!("http://localhost:{port}/real.wsdl"))),
            ("/same.wsdl".into(), redirect(&format!("http://127.0.0.1:{port}/real.wsdl"))),
            ("/real.wsdl".into(), ok_xml(&ping_wsdl(""))),
        ]
    });
    let dir = empty_config(&[]);
    let url = format!("http://127.0.0.1:{port}/svc.wsdl");
    let (ok, text) = import_url(dir.path(), &url, &[]);
    assert!(!ok && text.contains("another host") && text.contains("--allow-cross-host-redirects"), "{text}");
    assert!(!dir.path().join("routes/ping.yaml").exists());

    let (ok, text) = import_url(dir.path(), &format!("http://127.0.0.1:{port}/same.wsdl"), &[]);
    assert!(ok, "{text}");

    let dir = empty_config(&[]);
    let (ok, text) = import_url(dir.path(), &url, &["--allow-cross-host-redirects"]);
    assert!(ok, "{text}");
}

/// A local WSDL outside the config directory (here beside it, with an XSD it imports from a
/// subfolder) is copied with its import into wsdl/<backend>/, and the routes file names it
/// relative to the config: no absolute path that only exists on the machine that imported.
#[test]
fn a_wsdl_outside_the_config_is_copied_in_with_its_imports() {
    let elsewhere = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(elsewhere.path().join("xsd")).expect("mkdir");
    std::fs::write(elsewhere.path().join("xsd/extra.xsd"), schema("urn:extra")).expect("write");
    let wsdl = elsewhere.path().join("ping.wsdl");
    std::fs::write(&wsdl, ping_wsdl(r#"<xsd:import namespace="urn:extra" schemaLocation="xsd/extra.xsd"/>"#))
        .expect("write");
    let dir = empty_config(&[]);
    let out = dir.path().join("routes/ping.yaml");
    let (ok, text) =
        veneer(&["import-wsdl", &wsdl.to_string_lossy(), "--backend", "ping", "--out", &out.to_string_lossy()]);
    assert!(ok, "{text}");
    assert!(text.contains("copied") && text.contains("wsdl/ping"), "{text}");
    let routes = std::fs::read_to_string(&out).expect("written");
    assert!(routes.contains("wsdl: \"wsdl/ping/ping.wsdl\""), "{routes}");
    assert!(!routes.contains(&*elsewhere.path().to_string_lossy()), "no path outside the config: {routes}");
    let copied = std::fs::read_to_string(dir.path().join("wsdl/ping/ping.wsdl")).expect("the WSDL is copied");
    assert!(copied.contains("schemaLocation=\"extra.xsd\""), "its import names the copy: {copied}");
    assert!(dir.path().join("wsdl/ping/extra.xsd").is_file());
    // The config no longer needs the original files.
    drop(elsewhere);
    let (ok, text) = veneer(&["check", "--config", &dir.path().to_string_lossy()]);
    assert!(ok && text.contains("OK (1 route, 1 backend)"), "{text}");
}
