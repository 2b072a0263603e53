//! The binary as operators run it: SIGHUP reloads the config, and SIGTERM under load lets
//! every accepted request finish before a clean exit.

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::post;

/// A SOAP backend that answers GetItem after `delay`; the counter tells how many calls
/// have arrived.
async fn slow_backend(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/erp", listener.local_addr().expect("addr"));
    let arrived = Arc::new(AtomicUsize::new(0));
    let count = arrived.clone();
    let app = Router::new().route(
        "/erp",
        post(move || {
            count.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(delay).await;
                ([("content-type", "text/xml")], common::ITEM_RESPONSE)
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, arrived)
}

fn config(url: &str) -> tempfile::TempDir {
    let yaml =
        format!("backends:\n  erp:\n    url: \"{url}\"\n    wsdl: wsdl/sample-erp.wsdl\n    max_concurrency: 64\n");
    common::config_dir(&yaml, &["items.yaml"], true)
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().expect("kill").success());
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config() {
    let (url, _) = slow_backend(Duration::ZERO).await;
    let dir = config(&url);
    let mut gateway = common::Veneer::serve(dir.path(), &[]);
    let (child, base) = (&mut gateway.child, gateway.base.clone());
    assert_eq!(client().get(format!("{base}/stock/1000")).send().await.expect("req").status(), 404);
    let extra = "routes:\n  - route: \"GET /stock/{no}\"\n    backend: erp\n    operation: GetItem\n    request: { ItemNo: \"{path.no}\" }\n";
    std::fs::write(dir.path().join("routes/stock.yaml"), extra).expect("write");
    signal(child, "-HUP");
    common::eventually("the route appears after SIGHUP", Duration::from_secs(15), async || {
        client().get(format!("{base}/stock/1000")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    signal(child, "-TERM");
    assert!(child.wait().expect("exit").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_completes_every_accepted_request() {
    let (url, arrived) = slow_backend(Duration::from_millis(400)).await;
    let dir = config(&url);
    let mut gateway = common::Veneer::serve(dir.path(), &[]);
    let (child, base) = (&mut gateway.child, gateway.base.clone());
    let c = client();
    // Warm the connection pool so every request below is accepted before the signal.
    assert_eq!(c.get(format!("{base}/items/1000")).send().await.expect("req").status(), 200);
    let inflight: Vec<_> = (0..30).map(|_| tokio::spawn(c.get(format!("{base}/items/1000")).send())).collect();
    // The signal comes once all 30 are waiting on the backend (the warm-up call was one more).
    common::eventually("30 calls in flight at the backend", Duration::from_secs(20), || {
        std::future::ready(arrived.load(Ordering::SeqCst) >= 31)
    })
    .await;
    signal(child, "-TERM");
    let mut ok = 0;
    for r in inflight {
        let res = r.await.expect("task").expect("an accepted request completes");
        assert_eq!(res.status(), 200);
        ok += 1;
    }
    assert_eq!(ok, 30);
    let status = child.wait().expect("exit");
    assert!(status.success(), "exit 0 after draining, got {status:?}");
    assert!(c.get(format!("{base}/healthz")).send().await.is_err(), "nothing listens after shutdown");
}
