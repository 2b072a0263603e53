//! Credentials Veneer presents to the ERP: HTTP Basic, WS-Security UsernameToken (digest and
//! text, with Timestamp), and OAuth2 client credentials from a real OpenID provider
//! (oidc-provider), cached across calls. A recording SOAP backend checks what arrives.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A password with characters that must be escaped in XML.
const PASSWORD: &str = "pa&ss<word>";

type Seen = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A SOAP backend that records every request and answers GetItem.
async fn recording_backend() -> (String, Seen) {
    let seen: Seen = Arc::default();
    async fn handle(
        State(seen): State<Seen>,
        headers: HeaderMap,
        body: Bytes,
    ) -> ([(&'static str, &'static str); 1], &'static str) {
        if let Ok(mut s) = seen.lock() {
            s.push((headers, String::from_utf8_lossy(&body).into_owned()));
        }
        ([("content-type", "text/xml")], common::ITEM_RESPONSE)
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/erp", listener.local_addr().expect("addr"));
    let app = Router::new().route("/erp", post(handle)).with_state(seen.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

/// A config over the recording backend with `auth_yaml` under the backend; secrets in files.
async fn gateway(url: &str, auth_yaml: &str, secret: &str) -> (common::Gateway, tempfile::TempDir) {
    let dir = common::config_dir("", &["items.yaml"], true);
    std::fs::write(dir.path().join("secret"), format!("{secret}\n")).expect("write secret");
    let auth = auth_yaml.replace("SECRET_FILE", &dir.path().join("secret").display().to_string());
    let yaml = format!("backends:\n  erp:\n    url: \"{url}\"\n    wsdl: wsdl/sample-erp.wsdl\n    auth:\n{auth}");
    std::fs::write(dir.path().join("gateway.yaml"), yaml).expect("write");
    (common::with_config(dir.path()).await, dir)
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    text.split(start).nth(1).and_then(|r| r.split(end).next()).unwrap_or("")
}

#[tokio::test]
async fn basic_auth_reaches_the_backend() {
    let (url, seen) = recording_backend().await;
    let (gw, _dir) =
        gateway(&url, "      basic: { username: svc-veneer, password_file: SECRET_FILE }\n", PASSWORD).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let res = common::client()
        .get(gw.url("/items/1000"))
        .header("x-request-id", "req-42")
        .header("traceparent", traceparent)
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 200);
    let seen = seen.lock().expect("lock");
    let (headers, body) = &seen[0];
    let expected = format!("Basic {}", STANDARD.encode("svc-veneer:pa&ss<word>"));
    assert_eq!(headers.get("authorization").and_then(|v| v.to_str().ok()), Some(expected.as_str()));
    assert_eq!(
        headers.get("x-request-id").and_then(|v| v.to_str().ok()),
        Some("req-42"),
        "the request id travels to the backend"
    );
    assert_eq!(
        headers.get("traceparent").and_then(|v| v.to_str().ok()),
        Some(traceparent),
        "W3C trace context travels too"
    );
    assert_eq!(headers.get("soapaction").and_then(|v| v.to_str().ok()), Some("\"urn:veneer:sample-erp/GetItem\""));
    assert!(headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with("text/xml")));
    assert!(!body.contains("Security"), "no WS-Security header unless configured");
}

#[tokio::test]
async fn ws_security_password_digest_is_correct_and_fresh() {
    let (url, seen) = recording_backend().await;
    let (gw, _dir) =
        gateway(&url, "      ws_security: { username: \"svc&co\", password_file: SECRET_FILE }\n", PASSWORD).await;
    for _ in 0..2 {
        assert_eq!(common::client().get(gw.url("/items/1000")).send().await.expect("req").status(), 200);
    }
    let seen = seen.lock().expect("lock");
    let bodies: Vec<&String> = seen.iter().map(|(_, b)| b).collect();
    for body in &bodies {
        assert!(body.contains("<soap:Header><wsse:Security"), "{body}");
        assert!(body.contains("<wsse:Username>svc&amp;co</wsse:Username>"), "{body}");
        assert!(body.contains("#PasswordDigest\">"), "{body}");
        assert!(body.contains("<wsu:Timestamp") && body.contains("<wsu:Expires>"), "{body}");
        // Recompute: Base64(SHA-1(nonce + created + password)).
        let nonce = STANDARD.decode(between(body, "#Base64Binary\">", "</wsse:Nonce>")).expect("nonce");
        let created = between(body, "</wsse:Nonce><wsu:Created>", "</wsu:Created>");
        let mut input = nonce.clone();
        input.extend_from_slice(created.as_bytes());
        input.extend_from_slice(b"pa&ss<word>");
        let expected = STANDARD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input));
        assert_eq!(between(body, "#PasswordDigest\">", "</wsse:Password>"), expected);
        assert!(!body.contains("pa&amp;ss"), "a digest never carries the password itself");
    }
    let nonce = |b: &str| between(b, "#Base64Binary\">", "</wsse:Nonce>").to_string();
    assert_ne!(nonce(bodies[0]), nonce(bodies[1]), "every call has a fresh nonce");
}

#[tokio::test]
async fn ws_security_password_text_is_escaped() {
    let (url, seen) = recording_backend().await;
    let (gw, _dir) = gateway(
        &url,
        "      ws_security: { username: svc, password_file: SECRET_FILE, password_type: text }\n",
        PASSWORD,
    )
    .await;
    assert_eq!(common::client().get(gw.url("/items/1000")).send().await.expect("req").status(), 200);
    let seen = seen.lock().expect("lock");
    assert!(seen[0].1.contains("#PasswordText\">pa&amp;ss&lt;word&gt;</wsse:Password>"), "{}", seen[0].1);
}

#[tokio::test]
async fn oauth2_client_credentials_from_a_real_idp_are_cached() {
    let provider = common::OidcProvider::start();
    let issuer = provider.issuer.clone();
    let (url, seen) = recording_backend().await;
    let auth = format!(
        "      oauth2: {{ token_url: \"{issuer}/token\", client_id: iot-platform, client_secret_file: SECRET_FILE, scopes: [items:read] }}\n"
    );
    let (gw, _dir) = gateway(&url, &auth, "iot-secret").await;
    for _ in 0..3 {
        assert_eq!(common::client().get(gw.url("/items/1000")).send().await.expect("req").status(), 200);
    }
    drop(provider);
    let seen = seen.lock().expect("lock");
    let tokens: Vec<String> = seen
        .iter()
        .map(|(h, _)| h.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string())
        .collect();
    assert_eq!(tokens.len(), 3);
    assert!(tokens[0].starts_with("Bearer ey"), "{tokens:?}");
    assert!(tokens.iter().all(|t| *t == tokens[0]), "one token, reused until it nears expiry");
    let claims: serde_json::Value =
        jsonwebtoken::dangerous::insecure_decode(tokens[0].trim_start_matches("Bearer ")).expect("jwt").claims;
    assert_eq!(claims["iss"], issuer);
    assert_eq!(claims["client_id"], "iot-platform");
}

#[tokio::test]
async fn routes_fill_soap_header_parts() {
    // SAP Business One wants its session in a MsgHeader soap:header on every call.
    let (url, seen) = recording_backend().await;
    let dir = common::config_dir(
        &format!(
            "backends:\n  b1:\n    url: \"{url}\"\n    wsdl: wsdl/sap-b1-items.wsdl\n    retries: {{ attempts: 0 }}\n"
        ),
        &[],
        true,
    );
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wsdl");
    std::fs::copy(fixtures.join("sap-b1-items.wsdl"), dir.path().join("wsdl/sap-b1-items.wsdl")).expect("copy");
    let routes = "routes:\n  - route: \"GET /b1/items/{code}\"\n    backend: b1\n    operation: GetByParams\n    request: { ItemParams: { ItemCode: \"{path.code}\" } }\n    soap_headers:\n      MsgHeader: { SessionID: \"{header.x-b1-session}\", ServiceName: ItemsService }\n";
    std::fs::write(dir.path().join("routes/b1.yaml"), routes).expect("write");
    let gw = common::with_config(dir.path()).await;
    // The recording backend answers something else; this test looks only at what it received.
    let _ = common::client().get(gw.url("/b1/items/A-1")).header("x-b1-session", "s<e>ss").send().await.expect("req");
    let seen = seen.lock().expect("lock");
    let body = &seen[0].1;
    assert!(
        body.contains(r#"<soap:Header><MsgHeader xmlns="http://www.sap.com/SBO/DIS"><SessionID>s&lt;e&gt;ss</SessionID><ServiceName>ItemsService</ServiceName></MsgHeader></soap:Header>"#),
        "{body}"
    );
    assert!(body.contains(r#"<GetByParams xmlns="ItemsService"><ItemParams xmlns="http://www.sap.com/SBO/DIS"><ItemCode>A-1</ItemCode></ItemParams></GetByParams>"#), "{body}");
}
