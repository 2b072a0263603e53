//! TLS on both sides, with certificates made by `openssl` for each run: the listener
//! terminates TLS and requires client certificates (mutual TLS); certificates are replaced
//! on reload; a backend is reached over TLS with a company CA and a client certificate.

mod common;

use std::path::Path;
use std::sync::Arc;

use veneer::config::compile::CompileOptions;
use veneer::config::{self, ConfigSource};
use veneer::server::{self, AppState};

fn https_client(dir: &Path, ca: &str, client: Option<&str>) -> reqwest::Client {
    let root =
        reqwest::Certificate::from_pem(&std::fs::read(dir.join(format!("{ca}.pem"))).expect("ca")).expect("ca pem");
    let mut b = reqwest::Client::builder().no_proxy().add_root_certificate(root);
    if let Some(c) = client {
        let mut pem = std::fs::read(dir.join(format!("{c}.pem"))).expect("cert");
        pem.extend(std::fs::read(dir.join(format!("{c}.key"))).expect("key"));
        b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    b.build().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_requires_client_certificates_and_reloads_its_own() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    common::pki(d, "ca1", "server");
    common::pki(d, "ca1", "client");
    std::fs::write(
        d.join("gateway.yaml"),
        "server:\n  tls: { cert_file: server.pem, key_file: server.key, client_ca_file: ca1.pem }\n",
    )
    .expect("write");
    let options = CompileOptions::default();
    let gw = config::compile(&ConfigSource::Dir(d.to_path_buf()), &options).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("https://{}", listener.local_addr().expect("addr"));
    let state = AppState::reloadable(gw, d.to_path_buf(), options);
    let reloader = state.reloader.clone().expect("reloader");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::run(listener, state, async move {
        let _ = stopped.await;
    }));

    let res =
        https_client(d, "ca1", Some("client")).get(format!("{base}/healthz")).send().await.expect("mutual TLS works");
    assert_eq!(res.status(), 200);
    assert!(
        https_client(d, "ca1", None).get(format!("{base}/healthz")).send().await.is_err(),
        "no client certificate, no connection"
    );
    assert!(
        reqwest::Client::builder().no_proxy().build().expect("c").get(format!("{base}/healthz")).send().await.is_err(),
        "an untrusted server certificate is refused"
    );

    // A new server certificate from another CA, picked up by a reload.
    common::pki(d, "ca2", "server");
    reloader.reload("test").await.expect("reload");
    let fresh = https_client(d, "ca2", Some("client"))
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("new certificate served");
    assert_eq!(fresh.status(), 200);
    let _ = stop.send(());
    server.await.expect("join").expect("server stops cleanly");
}

#[tokio::test]
async fn backend_over_tls_with_company_ca_and_client_certificate() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    common::pki(d, "erp-ca", "server");
    common::pki(d, "erp-ca", "client");
    // The ERP: TLS, requiring our client certificate, answering GetItem.
    let erp_tls = veneer::config::tls::server_config(
        &d.join("server.pem"),
        &d.join("server.key"),
        Some(&d.join("erp-ca.pem")),
        true,
    )
    .expect("erp tls");
    let app = axum::Router::new()
        .route("/erp", axum::routing::post(|| async { ([("content-type", "text/xml")], common::ITEM_RESPONSE) }));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let port = std_listener.local_addr().expect("addr").port();
    let rustls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::clone(&erp_tls));
    tokio::spawn(async move {
        let _ = axum_server::from_tcp_rustls(std_listener, rustls)
            .expect("tls server")
            .serve(app.into_make_service())
            .await;
    });

    let yaml = format!(
        "backends:\n  erp:\n    url: \"https://127.0.0.1:{port}/erp\"\n    wsdl: wsdl/sample-erp.wsdl\n    retries: {{ attempts: 0 }}\n    tls: {{ ca_file: erp-ca.pem, client_cert_file: client.pem, client_key_file: client.key }}\n"
    );
    let conf = common::config_dir(&yaml, &["items.yaml"], true);
    for f in ["erp-ca.pem", "client.pem", "client.key"] {
        std::fs::copy(d.join(f), conf.path().join(f)).expect("copy pki");
    }
    let gw = common::with_config(conf.path()).await;
    assert_eq!(common::client().get(gw.url("/items/1000")).send().await.expect("req").status(), 200);

    // Without the client certificate the ERP refuses the handshake: a clear 502.
    let without = yaml.replace(", client_cert_file: client.pem, client_key_file: client.key", "");
    std::fs::write(conf.path().join("gateway.yaml"), without).expect("write");
    let gw = common::with_config(conf.path()).await;
    let p = common::problem(common::client().get(gw.url("/items/1000")).send().await.expect("req"), 502).await;
    assert_eq!(p["title"], "Backend unreachable");
}

#[tokio::test]
async fn a_tls_connection_that_never_finishes_its_handshake_is_closed() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    common::pki(d, "ca1", "server");
    std::fs::write(
        d.join("gateway.yaml"),
        "server:\n  header_timeout: 1s\n  tls: { cert_file: server.pem, key_file: server.key }\n",
    )
    .expect("write");
    let gw = config::compile(&ConfigSource::Dir(d.to_path_buf()), &CompileOptions::default()).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::run(listener, AppState::new(gw), async move {
        let _ = stopped.await;
    }));
    // Half a ClientHello record header, then silence.
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut sock, &[0x16, 0x03, 0x01]).await.expect("write");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the handshake deadline (header_timeout) closes the connection");
    assert!(started.elapsed() < std::time::Duration::from_secs(8), "closed after {:?}", started.elapsed());
}
