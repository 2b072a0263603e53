//! The gateway binary under an unauthenticated flood, all at once and loopback only: wrong
//! secrets at the token endpoint (argon2 on every one: the failed-login limits are set high
//! here, so the hashing gate itself is what is tested), random long methods, and
//! connections that send half their headers. A normal client keeps calling a route the
//! whole time; its latency and the gateway's peak memory are measured and bounded loosely.
//! The figures are printed (`cargo test --test flood -- --nocapture`).

mod common;

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len().saturating_sub(1) * 99 / 100).copied().unwrap_or_default()
}

/// Calls `GET /items/1000` one after another until `until`; returns each latency.
async fn normal_client(client: reqwest::Client, url: String, token: String, until: Instant) -> Vec<Duration> {
    let mut samples = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let res = client.get(&url).bearer_auth(&token).send().await.expect("normal request");
        assert_eq!(res.status(), 200, "the normal client is served during the flood");
        let _ = res.bytes().await;
        samples.push(started.elapsed());
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_normal_client_is_served_while_the_gateway_is_flooded() {
    let erp = veneer::dev::start().await.expect("sample ERP");
    let hash = veneer::auth::clients::hash_secret("s3cret").expect("hash");
    let yaml = format!(
        "server: {{ header_timeout: 2s }}\nbackends:\n  erp:\n    url: \"{}\"\n    wsdl: wsdl/sample-erp.wsdl\nauth:\n  issuer: \"http://veneer.test\"\n  signing_keys: keys\n  login_failures: {{ per_client: {{ rate: \"100000/s\" }}, per_address: {{ rate: \"100000/s\" }} }}\n  clients:\n    - id: c\n      secret_hash: \"{hash}\"\n      scopes: [items:read]\n",
        erp.url
    );
    let dir = common::config_dir(&yaml, &["items.yaml"], false);
    veneer::admin::new_key(&dir.path().join("keys"), "ES256").expect("signing key");
    let gw = common::Veneer::serve(dir.path(), &[]);
    let client = common::client();
    let token = common::access_token(&gw.base, "c", "s3cret").await;
    let url = format!("{}/items/1000", gw.base);

    // Baseline, same run: the normal client alone.
    let quiet =
        normal_client(client.clone(), url.clone(), token.clone(), Instant::now() + Duration::from_secs(2)).await;

    let until = Instant::now() + Duration::from_secs(6);
    let mut flood = Vec::new();
    for i in 0..32 {
        let (client, base) = (client.clone(), gw.base.clone());
        flood.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                let _ = client
                    .post(format!("{base}/oauth2/token"))
                    .basic_auth(format!("guess-{i}-{n}"), Some("wrong"))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await;
                n += 1;
            }
            n
        }));
    }
    for i in 0..8 {
        let (client, url) = (client.clone(), url.clone());
        flood.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                let method = format!("M{i}{n}{}", "X".repeat(100));
                if let Ok(m) = reqwest::Method::from_bytes(method.as_bytes()) {
                    let _ = client.request(m, &url).send().await;
                }
                n += 1;
            }
            n
        }));
    }
    let addr = gw.base.trim_start_matches("http://").to_string();
    for _ in 0..200 {
        let addr = addr.clone();
        flood.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                let Ok(mut s) = TcpStream::connect(&addr).await else { continue };
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").await;
                n += 1;
                // Hold it until the gateway closes it (its header timeout) or the flood ends.
                let mut buf = [0u8; 64];
                let left = until.saturating_duration_since(Instant::now());
                let _ = tokio::time::timeout(left, tokio::io::AsyncReadExt::read(&mut s, &mut buf)).await;
            }
            n
        }));
    }
    let loaded = normal_client(client.clone(), url, token, until).await;
    let mut sent = 0;
    for f in flood {
        sent += f.await.expect("flood task");
    }
    let rss = peak_rss_kib(gw.child.id());
    let (quiet_p99, loaded_p99) = (p99(quiet), p99(loaded.clone()));
    eprintln!(
        "flood: {sent} hostile requests/connections in 6 s; normal client: {} calls, p99 {:.1} ms (alone {:.1} ms); gateway peak RSS {:.1} MiB",
        loaded.len(),
        loaded_p99.as_secs_f64() * 1000.0,
        quiet_p99.as_secs_f64() * 1000.0,
        rss as f64 / 1024.0
    );
    assert!(loaded.len() >= 20, "the normal client got only {} answers in 6 s", loaded.len());
    assert!(loaded_p99 < Duration::from_millis(750), "p99 {loaded_p99:?} under flood");
    assert!(rss < 160 * 1024, "peak RSS {rss} KiB (about 80 MiB measured)");
}
