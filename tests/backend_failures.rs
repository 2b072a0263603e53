//! Backends that misbehave: slow, garbage, HTML, truncated XML, DOCTYPE bombs, Faults with
//! HTTP 200, refused and reset connections. Each is a raw TCP listener on loopback that
//! answers on cue, because a real SOAP server cannot misbehave on demand.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// Answer 200 with this body in chunked encoding (no Content-Length).
    Chunked(String),
    /// Answer 200 with this many bytes of chunked body, counting what was written; set the
    /// flag when done (finished, or the gateway hung up).
    Flood(usize, Arc<AtomicUsize>, Arc<AtomicBool>),
    /// Declare this Content-Length, send a few bytes and stall.
    Declare(u64),
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
                    Behaviour::Chunked(body) => {
                        let _ = sock.write_all(CHUNKED_HEAD.as_bytes()).await;
                        for part in body.as_bytes().chunks(16 * 1024) {
                            let _ = sock.write_all(format!("{:x}\r\n", part.len()).as_bytes()).await;
                            let _ = sock.write_all(part).await;
                            let _ = sock.write_all(b"\r\n").await;
                        }
                        let _ = sock.write_all(b"0\r\n\r\n").await;
                    }
                    Behaviour::Flood(total, written, done) => {
                        let chunk = vec![b'x'; 64 * 1024];
                        let mut ok = sock.write_all(CHUNKED_HEAD.as_bytes()).await.is_ok();
                        let mut sent = 0;
                        while ok && sent < total {
                            let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                            ok = sock.write_all(&frame).await.is_ok();
                            sent += chunk.len();
                            written.fetch_add(chunk.len(), Ordering::Relaxed);
                        }
                        if ok {
                            let _ = sock.write_all(b"0\r\n\r\n").await;
                        }
                        done.store(true, Ordering::Relaxed);
                    }
                    Behaviour::Declare(len) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
                        );
                        let _ = sock.write_all(head.as_bytes()).await;
                        let _ = sock.write_all(ENV11.as_bytes()).await;
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
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
    get_item_with(behaviour, |t| t).await
}

/// Like `get_item_via`, with `edit` applied to the backend's gateway.yaml first.
async fn get_item_with(behaviour: Behaviour, edit: impl Fn(String) -> String) -> (u16, serde_json::Value) {
    let url = backend(behaviour).await;
    let dir = config_for(&url);
    edit_gateway(dir.path(), edit);
    let gw = common::with_config(dir.path()).await;
    let res = common::client().get(gw.url("/items/1000")).send().await.expect("request");
    let status = res.status().as_u16();
    let body = if status == 200 { res.json().await.expect("JSON body") } else { common::problem(res, status).await };
    (status, body)
}

fn edit_gateway(dir: &Path, edit: impl Fn(String) -> String) {
    let path = dir.join("gateway.yaml");
    let text = std::fs::read_to_string(&path).expect("read gateway.yaml");
    std::fs::write(&path, edit(text)).expect("write gateway.yaml");
}

/// Sets the backend's `max_response` and gives it time to stream (5 s instead of 300 ms).
fn max_response(limit: &'static str) -> impl Fn(String) -> String {
    move |t| t.replace("timeout: 300ms", &format!("timeout: 5s\n    max_response: {limit}"))
}

const ENV11: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>"#;

const CHUNKED_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";

/// A valid GetItem response of exactly `size` bytes: the description fills it up.
fn item_response_of(size: usize) -> String {
    let open =
        format!("{ENV11}<GetItemResponse xmlns=\"urn:veneer:sample-erp\"><GetItemResult><No>1000</No><Description>");
    let close = "</Description><Base_Unit_of_Measure>PCS</Base_Unit_of_Measure><Inventory>5</Inventory>\
        <Unit_Price>1.5</Unit_Price><Blocked>false</Blocked><Last_Date_Modified>2024-01-01T00:00:00Z</Last_Date_Modified>\
        </GetItemResult></GetItemResponse></soap:Body></soap:Envelope>";
    let fill = size.checked_sub(open.len() + close.len()).expect("size fits the envelope");
    format!("{open}{}{close}", "d".repeat(fill))
}

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
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("503")), "{p}");
    // The backend's page stays in the log: callers never see a backend's body.
    assert!(!p.to_string().contains("down") && !p.to_string().contains("<html"), "{p}");
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
    assert_eq!(p["fault"]["reason"], "Item 1000 does not exist");
    // An undeclared detail is not shown by default (fault_detail: typed).
    assert!(p["fault"].get("detail").is_none(), "{p}");
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

#[tokio::test]
async fn endless_response_is_cut_off_at_the_default_limit() {
    // 300 MB once took 655 MB of RSS. Now the gateway stops reading at 8 MiB and hangs up:
    // the backend gets to write little more than the limit plus socket buffers.
    let (written, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let flood = Behaviour::Flood(300_000_000, written.clone(), done.clone());
    let (status, p) = get_item_with(flood, |t| t.replace("timeout: 300ms", "timeout: 5s")).await;
    assert_eq!(status, 502, "{p}");
    assert_eq!(p["title"], "Backend response too large");
    assert_eq!(p["backend"], "erp");
    assert_eq!(p["detail"], format!("the response exceeded max_response ({} bytes)", 8 * 1024 * 1024));
    common::eventually("the gateway hangs up", Duration::from_secs(5), async || done.load(Ordering::Relaxed)).await;
    let sent = written.load(Ordering::Relaxed);
    assert!(sent < 64 * 1024 * 1024, "the gateway read {sent} bytes before hanging up");
}

#[tokio::test]
async fn response_at_the_limit_passes_and_one_byte_more_is_502() {
    let body = item_response_of(64 * 1024);
    let (status, item) = get_item_with(Behaviour::Chunked(body), max_response("64KiB")).await;
    assert_eq!(status, 200, "{item}");
    assert!(item["description"].as_str().is_some_and(|d| d.len() > 60_000), "{item}");

    let body = item_response_of(64 * 1024 + 1);
    let (status, p) = get_item_with(Behaviour::Chunked(body), max_response("64KiB")).await;
    assert_eq!(status, 502, "{p}");
    assert_eq!(p["title"], "Backend response too large");
    assert_eq!(p["detail"], "the response exceeded max_response (65536 bytes)");

    // The same with Content-Length: refused from the header alone.
    let body = item_response_of(64 * 1024 + 1);
    let (status, p) = get_item_with(Behaviour::Reply(200, "text/xml", body), max_response("64KiB")).await;
    assert_eq!(status, 502, "{p}");
    assert_eq!(p["title"], "Backend response too large");
}

#[tokio::test]
async fn declared_length_over_the_limit_is_refused_before_the_body() {
    // The backend declares 300 MB and stalls: only the header can have answered in time.
    let (status, p) = get_item_via(Behaviour::Declare(300_000_000)).await;
    assert_eq!(status, 502, "{p}");
    assert_eq!(p["title"], "Backend response too large");
}
