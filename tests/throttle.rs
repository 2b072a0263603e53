//! Rate limits and quotas through real HTTP: exact GCRA admission, draft RateLimit headers,
//! 429 problems with Retry-After, per-route and per-client-route buckets, daily quotas, and
//! limits shared by three gateways through a real redis-server (which is killed mid-test).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use veneer::auth::clients;

/// Writes a config over the in-process sample ERP. `limits` goes under gateway.yaml's
/// `limits:`; `route_limits` is added to `GET /items/{no}`.
async fn config(limits: &str, client_limits: &str, route_limits: &str) -> tempfile::TempDir {
    let erp = veneer::dev::start().await.expect("sample ERP");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for sub in ["keys", "wsdl", "routes"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    std::fs::write(
        dir.path().join("keys/k.pem"),
        veneer::auth::keys::generate_pem(jsonwebtoken::Algorithm::ES256).expect("key"),
    )
    .expect("key");
    std::fs::copy(root.join("wsdl/sample-erp.wsdl"), dir.path().join("wsdl/sample-erp.wsdl")).expect("copy");
    let routes = std::fs::read_to_string(root.join("routes/items.yaml")).expect("routes") + route_limits;
    std::fs::write(dir.path().join("routes/items.yaml"), routes).expect("write");
    let hash = clients::hash_secret("secret").expect("hash");
    let yaml = format!(
        "backends:\n  erp:\n    url: \"{}\"\n    wsdl: wsdl/sample-erp.wsdl\n    faults: [{{ code: Client, reason: \"does not exist\", status: 404 }}]\nlimits:\n{limits}auth:\n  issuer: \"http://veneer.test\"\n  signing_keys: keys/\n  clients:\n    - {{ id: a, secret_hash: \"{hash}\", scopes: [items:read]{client_limits} }}\n    - {{ id: b, secret_hash: \"{hash}\", scopes: [items:read] }}\n",
        erp.url
    );
    std::fs::write(dir.path().join("gateway.yaml"), yaml).expect("write");
    dir
}

async fn token(gw: &common::Gateway, id: &str) -> String {
    let body: Value = common::token(gw, id, "secret", None).await.json().await.expect("json");
    body["access_token"].as_str().expect("token").to_string()
}

async fn get(gw: &common::Gateway, token: &str) -> reqwest::Response {
    common::client().get(gw.url("/items/1000")).bearer_auth(token).send().await.expect("request")
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// `r` of the named policy in a `RateLimit` header.
fn remaining(rate_limit: &str, policy: &str) -> Option<u64> {
    rate_limit
        .split(", ")
        .find(|p| p.starts_with(&format!("\"{policy}\"")))?
        .split(";r=")
        .nth(1)?
        .split(';')
        .next()?
        .parse()
        .ok()
}

#[tokio::test]
async fn client_burst_is_exact_and_headers_count_down() {
    let dir = config("  default: { rate: 2/s, burst: 5 }\n", "", "").await;
    let gw = common::with_config_self_issuer(dir.path()).await;
    let t = token(&gw, "b").await;
    let first = Instant::now();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let res = get(&gw, &t).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "ratelimit-policy"), "\"client\";q=5;w=3");
        seen.push(remaining(&header(&res, "ratelimit"), "client").expect("r"));
    }
    // Requests took far less than 500 ms, so at most one token can have come back.
    assert!(seen.windows(2).all(|w| w[1] <= w[0]), "remaining never grows within a burst: {seen:?}");
    assert_eq!(seen.first(), Some(&4));
    let refused = get(&gw, &t).await;
    let retry: u64 = header(&refused, "retry-after").parse().expect("Retry-After");
    assert!((1..=1).contains(&retry), "at 2/s the next slot is under a second away: {retry}");
    assert_eq!(remaining(&header(&refused, "ratelimit"), "client"), Some(0));
    let p = common::problem(refused, 429).await;
    assert_eq!(p["title"], "Too many requests");
    // Other clients have their own bucket.
    assert_eq!(get(&gw, &token(&gw, "a").await).await.status(), 200);
    // The refill arithmetic is tested exactly on paused time (`throttle::local`); here, the
    // bucket admits again once the wait it announced has passed, and not before.
    common::eventually("the bucket admits again", Duration::from_secs(5), || async {
        let res = get(&gw, &t).await;
        assert!(matches!(res.status().as_u16(), 200 | 429), "{}", res.status());
        res.status() == 200
    })
    .await;
    assert!(first.elapsed() >= Duration::from_millis(500), "one interval at 2/s passed before a refill");
}

#[tokio::test]
async fn client_limits_and_route_limits_combine() {
    let dir =
        config("", ", limits: { rate: 100/s, burst: 100 }", "    limits: { rate: 1/min, burst: 3, per: client }\n")
            .await;
    let gw = common::with_config_self_issuer(dir.path()).await;
    let (ta, tb) = (token(&gw, "a").await, token(&gw, "b").await);
    for _ in 0..3 {
        let res = get(&gw, &ta).await;
        assert_eq!(res.status(), 200);
        let policy = header(&res, "ratelimit-policy");
        assert!(policy.contains("\"client\";q=100") && policy.contains("\"client-route\";q=3;w=180"), "{policy}");
    }
    let refused = get(&gw, &ta).await;
    let retry = header(&refused, "retry-after").parse::<u64>().expect("Retry-After");
    assert!((50..=60).contains(&retry), "one slot a minute: {retry}");
    common::problem(refused, 429).await;
    assert_eq!(get(&gw, &tb).await.status(), 200, "per client: b has its own route bucket");
}

#[tokio::test]
async fn daily_quota_refuses_until_midnight() {
    let dir = config("", ", limits: { quota: { day: 3 } }", "").await;
    let gw = common::with_config_self_issuer(dir.path()).await;
    let t = token(&gw, "a").await;
    for expected_left in [2, 1, 0] {
        let res = get(&gw, &t).await;
        assert_eq!(res.status(), 200);
        assert_eq!(remaining(&header(&res, "ratelimit"), "day"), Some(expected_left));
    }
    let refused = get(&gw, &t).await;
    let retry: u64 = header(&refused, "retry-after").parse().expect("Retry-After");
    assert!(retry > 0 && retry <= 86_400, "{retry}");
    common::problem(refused, 429).await;
}

/// A redis-server on a free loopback port, killed when dropped.

#[tokio::test]
async fn three_gateways_share_one_exact_limit_through_redis() {
    let mut redis = common::Redis::start();
    let shared = format!("  redis: {{ url: \"redis://127.0.0.1:{}/\", timeout: 200ms }}\n", redis.port);
    // 20/s with a burst of 50 on the route, shared by every replica. Low enough that the test
    // clients (debug build, 2 cores) saturate it, so admission is the limiter's alone.
    let dir = config(&shared, "", "    limits: { rate: 20/s, burst: 50 }\n").await;
    let gws = [
        common::with_config(dir.path()).await,
        common::with_config(dir.path()).await,
        common::with_config(dir.path()).await,
    ];
    // Replicas share the issuer and key directory, so one token works on all three.
    let t = token(&gws[0], "a").await;
    // Warm up every replica (Redis connection, token cache). The three requests spend three
    // of the burst; the lower bound below allows for them instead of waiting for a refill.
    const WARM_UP: f64 = 3.0;
    for gw in &gws {
        assert_eq!(get(gw, &t).await.status(), 200);
    }
    let started = Instant::now();
    let run_for = Duration::from_secs(4);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let url = gws[i % 3].url("/items/1000");
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let client = common::client();
            // Admitted count, and (sent, received) of the first and last admitted request.
            let (mut ok, mut first, mut last) = (0u64, None, None);
            while started.elapsed() < run_for {
                let sent = started.elapsed();
                let status = client.get(&url).bearer_auth(&t).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
                assert!(status == 200 || status == 429, "unexpected status {status}");
                if status == 200 {
                    ok += 1;
                    first = first.or(Some((sent, started.elapsed())));
                    last = Some((sent, started.elapsed()));
                }
            }
            (ok, first, last)
        }));
    }
    let (mut admitted, mut first, mut last) = (0, None::<(Duration, Duration)>, None::<(Duration, Duration)>);
    for task in tasks {
        let (ok, f, l) = task.await.expect("task");
        admitted += ok;
        first = match (first, f) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
        last = match (last, l) {
            (Some(a), Some(b)) => Some(if b.0 > a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
    }
    let ((first_sent, first_received), (last_sent, last_received)) =
        (first.expect("admissions"), last.expect("admissions"));
    // Each admission happened between its request's send and receipt, so the admitted span
    // lies between these two bounds; GCRA allows B + R·span over it.
    let allowed = |span: Duration| 50.0 + 20.0 * span.as_secs_f64();
    let (low, high) = (
        allowed(last_sent.saturating_sub(first_received)) - WARM_UP,
        allowed(last_received.saturating_sub(first_sent)),
    );
    let mid = (low + high) / 2.0;
    println!(
        "three replicas admitted {admitted}; GCRA allows {low:.1}..{high:.1} (mid {mid:.1}, {:+.2}%)",
        (admitted as f64 - mid) / mid * 100.0
    );
    assert!(admitted as f64 <= high * 1.01, "over-admitted: {admitted} > {high:.1} + 1%");
    assert!(admitted as f64 >= low * 0.99, "under-admitted: {admitted} < {low:.1} - 1%");

    // Redis dies: the default policy falls back to each replica's local limiter; nothing hangs.
    redis.stop();
    let before = Instant::now();
    let res = common::client().get(gws[1].url("/items/1000")).bearer_auth(&t).send().await.expect("request");
    assert!(matches!(res.status().as_u16(), 200 | 429), "local fallback answers: {}", res.status());
    assert!(before.elapsed() < Duration::from_secs(2), "no request hangs on a dead Redis");
}

#[tokio::test]
async fn reject_policy_refuses_while_redis_is_down_and_recovers() {
    let mut redis = common::Redis::start();
    let port = redis.port;
    let shared = format!("  redis: {{ url: \"redis://127.0.0.1:{port}/\", timeout: 100ms, on_unavailable: reject }}\n");
    let dir = config(&shared, "", "    limits: { rate: 1000/s, burst: 1000 }\n").await;
    let gw = common::with_config_self_issuer(dir.path()).await;
    let t = token(&gw, "a").await;
    assert_eq!(get(&gw, &t).await.status(), 200);
    redis.stop();
    let res = get(&gw, &t).await;
    assert_eq!(header(&res, "retry-after"), "1");
    common::problem(res, 503).await;
    let _back = common::Redis::start_on(port);
    common::eventually("shared limits recover after Redis returned", Duration::from_secs(10), async || {
        get(&gw, &t).await.status() == 200
    })
    .await;
}

#[test]
fn unchanged_limits_keep_their_state_across_snapshots() {
    use veneer::throttle::local::Registry;
    use veneer::throttle::rate::Rate;
    let registry = Registry::default();
    let rate = Rate::parse("1/min", Some(1)).expect("rate");
    let first = registry.get("route:GET /x", rate);
    assert!(matches!(first.check("k"), veneer::throttle::Decision::Allow { .. }));
    // A new snapshot asking for the same limit gets the same state: still exhausted.
    let again = registry.get("route:GET /x", rate);
    assert!(matches!(again.check("k"), veneer::throttle::Decision::Deny { .. }));
    // A changed limit starts fresh.
    let changed = registry.get("route:GET /x", Rate::parse("2/min", Some(2)).expect("rate"));
    assert!(matches!(changed.check("k"), veneer::throttle::Decision::Allow { .. }));
}
