//! Backends that misbehave: slow, garbage, HTML, truncated XML, DOCTYPE bombs, Faults with
//! HTTP 200, refused and reset connections. Each is a raw TCP listener on loopback that
//! answers on cue, because a real SOAP server cannot misbehave on demand.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the fake backend does with each request.
#[derive(Clone)]
enum Behaviour {
    /// Answer with this status, content type and body.
    Reply(u16, &'static str, String),
    /// Wait this long before answering (longer than the backend timeout).
    Stall(Duration),
    /// Close the connection without answering.
    Close,
}

/// Starts a one-behaviour backend; returns its URL.
async fn backend(behaviour: Behaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let behaviour = behaviour.clone();
            tokio::spawn(async move {
                read_request(&mut sock).await;
                match behaviour {
                    Behaviour::Reply(status, ct, body) => {
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: {ct}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = sock.write_all(head.as_bytes()).await;
                        let _ = sock.write_all(body.as_bytes()).await;
                    }
                    Behaviour::Stall(d) => tokio::time::sleep(d).await,
                    Behaviour::Close => {}
                }
            });
        }
    });
    format!("http://{addr}/erp")
}

/// Reads one HTTP request (headers and a content-length body).
async fn read_request(sock: &mut tokio::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = sock.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return;
            }
        }
    }
}

/// A config dir with the sample WSDL and routes, its backend at `url`, timeout 300 ms.
fn config_for(url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    let gateway = std::fs::read_to_string(root.join("gateway.yaml"))
        .expect("sample gateway.yaml")
        .replace("http://127.0.0.1:7047/erp", url)
        .replace("timeout: 10s", "timeout: 300ms");
    // These tests are about the backend, not auth: drop the auth section and route scopes.
    let gateway = gateway.split("\nauth:").next().unwrap_or_default().to_string();
    std::fs::write(dir.path().join("gateway.yaml"), gateway).expect("write");
    for sub in ["routes", "wsdl"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        for entry in std::fs::read_dir(root.join(sub)).expect("read dir").flatten() {
            let text = std::fs::read_to_string(entry.path()).expect("read");
            let text: String =
                text.lines().filter(|l| !l.trim_start().starts_with("scopes:")).map(|l| format!("{l}\n")).collect();
            std::fs::write(dir.path().join(sub).join(entry.file_name()), text).expect("write");
        }
    }
    dir
}

async fn get_item_via(behaviour: Behaviour) -> (u16, serde_json::Value) {
    let url = backend(behaviour).await;
    let dir = config_for(&url);
    let gw = common::with_config(dir.path()).await;
    let res = common::client().get(gw.url("/items/1000")).send().await.expect("request");
    let status = res.status().as_u16();
    (status, common::problem(res, status).await)
}

const ENV11: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>"#;

#[tokio::test]
async fn slow_backend_is_504() {
    let (status, p) = get_item_via(Behaviour::Stall(Duration::from_secs(5))).await;
    assert_eq!(status, 504);
    assert_eq!(p["backend"], "erp");
}

#[tokio::test]
async fn refused_connection_is_502() {
    // Bind then drop: the port is free and nothing listens on it.
    let port = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr").port();
    let dir = config_for(&format!("http://127.0.0.1:{port}/erp"));
    let gw = common::with_config(dir.path()).await;
    let res = common::client().get(gw.url("/items/1000")).send().await.expect("request");
    let p = common::problem(res, 502).await;
    assert_eq!(p["title"], "Backend unreachable");
}

#[tokio::test]
async fn connection_closed_without_answer_is_502() {
    let (status, p) = get_item_via(Behaviour::Close).await;
    assert_eq!(status, 502);
    assert_eq!(p["title"], "Backend unreachable");
}

#[tokio::test]
async fn garbage_is_502() {
    let (status, p) = get_item_via(Behaviour::Reply(200, "text/xml", "\u{1}\u{2} not xml at all".into())).await;
    assert_eq!(status, 502);
    assert_eq!(p["title"], "Backend response is not a SOAP envelope");
}

#[tokio::test]
async fn html_error_page_is_502_with_clear_title() {
    let html = "<html><head><title>503 Service Unavailable</title></head><body>down</body></html>".to_string();
    let (status, p) = get_item_via(Behaviour::Reply(503, "text/html", html)).await;
    assert_eq!(status, 502);
    assert_eq!(p["title"], "Backend returned an HTTP error");
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("HTML") && d.contains("503")), "{p}");
}

#[tokio::test]
async fn truncated_xml_is_502() {
    let body = format!("{ENV11}<GetItemResponse xmlns=\"urn:veneer:sample-erp\"><GetItemResult><No>1000</No><Descr");
    let (status, p) = get_item_via(Behaviour::Reply(200, "text/xml", body)).await;
    assert_eq!(status, 502);
    assert_eq!(p["title"], "Backend response is not well-formed XML");
}

#[tokio::test]
async fn doctype_bomb_is_refused() {
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><x>&lol3;</x></soap:Body></soap:Envelope>"#;
    let (status, p) = get_item_via(Behaviour::Reply(200, "text/xml", bomb.into())).await;
    assert_eq!(status, 502);
    assert_eq!(p["title"], "Backend response refused (DOCTYPE)");
}

#[tokio::test]
async fn external_entity_is_refused() {
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>&xxe;</soap:Body></soap:Envelope>"#;
    let (status, p) = get_item_via(Behaviour::Reply(500, "text/xml", xxe.into())).await;
    assert_eq!(status, 502);
    assert!(!p.to_string().contains("root:"), "no file content may leak: {p}");
}

#[tokio::test]
async fn fault_with_http_200_is_still_a_fault() {
    let body = format!(
        "{ENV11}<soap:Fault><faultcode>soap:Client</faultcode><faultstring>Item 1000 does not exist</faultstring><detail><code>NAV-17</code></detail></soap:Fault></soap:Body></soap:Envelope>"
    );
    let (status, p) = get_item_via(Behaviour::Reply(200, "text/xml", body)).await;
    assert_eq!(status, 404);
    assert_eq!(p["fault"]["detail"]["code"], "NAV-17");
}

#[tokio::test]
async fn soap12_receiver_fault_defaults_to_502() {
    let body = r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><env:Fault><env:Code><env:Value>env:Receiver</env:Value><env:Subcode><env:Value>erp:Deadlock</env:Value></env:Subcode></env:Code><env:Reason><env:Text xml:lang="en">Deadlock on table Item</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>"#;
    let (status, p) = get_item_via(Behaviour::Reply(500, "application/soap+xml", body.into())).await;
    assert_eq!(status, 502);
    assert_eq!(p["fault"]["code"], "Receiver");
    assert_eq!(p["fault"]["subcodes"][0], "Deadlock");
    assert_eq!(p["fault"]["reason"], "Deadlock on table Item");
}

#[tokio::test]
async fn client_fault_without_rule_is_422() {
    let body = format!(
        "{ENV11}<soap:Fault><faultcode>soap:Client</faultcode><faultstring>Quantity must be positive</faultstring></soap:Fault></soap:Body></soap:Envelope>"
    );
    let (status, _) = get_item_via(Behaviour::Reply(500, "text/xml", body)).await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn response_that_breaks_the_schema_is_502() {
    let body = format!(
        "{ENV11}<GetItemResponse xmlns=\"urn:veneer:sample-erp\"><GetItemResult><No>1000</No><Inventory>lots</Inventory></GetItemResult></GetItemResponse></soap:Body></soap:Envelope>"
    );
    let (status, p) = get_item_via(Behaviour::Reply(200, "text/xml", body)).await;
    assert_eq!(status, 502);
    assert_eq!(p["title"], "Backend response does not match the WSDL");
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("Inventory")), "{p}");
}

#[tokio::test]
async fn wrong_body_element_is_502() {
    let body = format!("{ENV11}<Other xmlns=\"urn:x\"/></soap:Body></soap:Envelope>");
    let (status, p) = get_item_via(Behaviour::Reply(200, "text/xml", body)).await;
    assert_eq!(status, 502);
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("GetItemResponse")), "{p}");
}
