//! Queued delivery and `Idempotency-Key` end to end, against spyne (a real SOAP server whose
//! `RecordReading` refuses a duplicate reading id, as ERPs refuse a duplicate external
//! document number) and the gateway binary where a crash is part of the test (kill -9).
//! Every count is taken inside the ERP.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

const ROUTES: &str = r#"
routes:
  - route: "POST /readings"
    backend: plant
    operation: RecordReading
    delivery: queued
    request: { ReadingId: "{delivery.key}", Machine: "{body.machine}", Value: "{body.value}" }
    response: RecordReadingResult
    duplicate_faults:
      - { code: Client.Duplicate }
    faults:
      - { code: Client.Validation, status: 422 }
  - route: "POST /readings/ordered"
    backend: plant
    operation: RecordReading
    delivery: { mode: queued, ordered: true, partition: "{body.machine}" }
    request: { ReadingId: "{delivery.key}", Machine: "{body.machine}", Value: "{body.value}" }
    duplicate_faults:
      - { code: Client.Duplicate }
  - route: "POST /readings/direct"
    backend: plant
    operation: RecordReading
    request: { ReadingId: "{delivery.key}", Machine: "{body.machine}", Value: "{body.value}" }
    response: RecordReadingResult
  - route: "POST /readings/strict"
    backend: plant
    operation: RecordReading
    idempotency: { required: true }
    request: { ReadingId: "{delivery.key}", Machine: "{body.machine}", Value: "{body.value}" }
    response: RecordReadingResult
  - route: "POST /sleep"
    backend: plant
    operation: Sleep
    request: { Seconds: "{body.seconds}" }
    response: SleepResult
  - route: "GET /stats"
    backend: plant
    operation: ReadingStats
    response: ReadingStatsResult
  - route: "POST /allow-negative"
    backend: plant
    operation: AllowNegative
    request: { Allow: "{body.allow}" }
"#;

/// A config directory for spyne at `base`, with `delivery` settings and `auth` (may be empty).
async fn config(base: &str, delivery: &str, auth: &str) -> tempfile::TempDir {
    let wsdl = common::client().get(format!("{base}/?wsdl")).send().await.expect("WSDL").text().await.expect("text");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("plant.wsdl"), wsdl).expect("write wsdl");
    let gateway_yaml = format!(
        "delivery: {{ data_dir: data, {delivery} }}\nbackends:\n  plant:\n    url: \"{base}/\"\n    wsdl: plant.wsdl\n    timeout: 10s\n    connect_timeout: 1s\n{auth}"
    );
    std::fs::write(dir.path().join("gateway.yaml"), gateway_yaml).expect("write gateway");
    std::fs::create_dir(dir.path().join("routes")).expect("mkdir");
    std::fs::write(dir.path().join("routes/plant.yaml"), ROUTES).expect("write routes");
    dir
}

fn port_of(base: &str) -> u16 {
    base.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port")
}

/// The ERP's own counts: bookings, and reading ids in arrival order per machine.
async fn stats(spyne_base: &str) -> (usize, Value) {
    let v = common::spyne_stats(spyne_base, "ReadingStats").await.expect("spyne answers");
    (v["booked"].as_u64().unwrap_or(0) as usize, v["arrivals"].clone())
}

fn booked_ids(arrivals: &Value) -> BTreeSet<String> {
    arrivals
        .as_object()
        .map(|m| m.values().flat_map(|ids| ids.as_array().cloned().unwrap_or_default()))
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// The ERP document numbers `{delivery.key}` gives these Idempotency-Keys of one caller on
/// one route.
fn erp_ids<'a>(caller: &str, route: &str, keys: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    keys.into_iter().map(|k| veneer::delivery::erp_key(caller, route, k)).collect()
}

async fn post_reading(base: &str, path: &str, key: &str, machine: &str, value: f64) -> reqwest::Response {
    common::client()
        .post(format!("{base}{path}"))
        .header("idempotency-key", key)
        .json(&json!({ "machine": machine, "value": value }))
        .send()
        .await
        .expect("post")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_posted_while_the_erp_is_down_all_arrive_once() {
    let spyne = common::start_spyne();
    let base = spyne.base.clone();
    // The breaker opens during the outage; a short open time keeps the test about delivery,
    // not about waiting out the default 30 s (which made it slow enough to time out on a
    // loaded machine).
    let dir = config(&base, "backoff: 50ms, max_backoff: 500ms", "    circuit_breaker: { open_for: 1s }\n").await;
    let gw = common::with_config(dir.path()).await;
    // The ERP goes down; every reading is still accepted at once.
    drop(spyne);
    let mut ids = Vec::new();
    for chunk in 0..50 {
        let mut tasks = Vec::new();
        for i in 0..20 {
            let url = gw.base.clone();
            let key = format!("r-{}", chunk * 20 + i);
            tasks.push(tokio::spawn(async move {
                let res = post_reading(&url, "/readings", &key, &format!("m{}", i % 4), 1.5).await;
                (res.status().as_u16(), res.headers().get("location").cloned(), key)
            }));
        }
        for t in tasks {
            let (status, location, key) = t.await.expect("join");
            assert_eq!(status, 202, "accepted while the ERP is down");
            assert!(location.is_some_and(|l| l.to_str().unwrap_or("").starts_with("/deliveries/")));
            ids.push(key);
        }
    }
    let (first_status, _) = {
        let res = post_reading(&gw.base, "/readings", "r-0", "m0", 1.5).await;
        let replayed = res.headers().contains_key("idempotent-replayed");
        (res.status().as_u16(), replayed)
    };
    assert_eq!(first_status, 202, "a retry of an accepted post replays its 202");
    // The ERP comes back on the same address: every accepted reading arrives, once.
    let spyne = common::start_spyne_on(port_of(&base));
    common::eventually("all 1000 readings booked", Duration::from_secs(180), || async {
        stats(&spyne.base).await.0 >= 1000
    })
    .await;
    let (booked, arrivals) = stats(&spyne.base).await;
    assert_eq!(booked, 1000);
    assert_eq!(booked_ids(&arrivals), erp_ids("anonymous", "POST /readings", &ids));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_reading_is_dead_at_once_and_the_rest_go_on() {
    let spyne = common::start_spyne();
    let hash = veneer::auth::clients::hash_secret("s3cret").expect("hash");
    let auth = format!(
        "auth:\n  issuer: \"http://veneer.test\"\n  signing_keys: keys\n  clients:\n    - {{ id: edge, secret_hash: \"{hash}\", scopes: [] }}\n    - {{ id: ops, secret_hash: \"{hash}\", scopes: [\"veneer:admin\"] }}\n    - {{ id: peer, secret_hash: \"{hash}\", scopes: [] }}\n"
    );
    let dir = config(&spyne.base, "backoff: 50ms, max_backoff: 200ms", &auth).await;
    veneer::admin::new_key(&dir.path().join("keys"), "ES256").expect("key");
    let gw = common::with_config_self_issuer(dir.path()).await;
    let token = |id: &'static str| common::access_token(&gw.base, id, "s3cret");
    let (edge, ops) = (token("edge").await, token("ops").await);
    let client = common::client();
    let post = |key: &str, value: f64| {
        client
            .post(gw.url("/readings/ordered"))
            .bearer_auth(&edge)
            .header("idempotency-key", key)
            .json(&json!({ "machine": "press-1", "value": value }))
            .send()
    };
    // An ordered partition: the poison item is first, the others wait behind it.
    let poison: Value = post("poison", -1.0).await.expect("post").json().await.expect("json");
    for i in 0..5 {
        assert_eq!(post(&format!("ok-{i}"), 2.0).await.expect("post").status(), 202);
    }
    let id = poison["id"].as_str().expect("id").to_string();
    common::eventually("five readings behind the poison one booked", Duration::from_secs(30), || async {
        stats(&spyne.base).await.0 == 5
    })
    .await;
    let get = |path: String, token: &str| {
        let req = client.get(gw.url(&path)).bearer_auth(token).send();
        async move {
            let res = req.await.expect("get");
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (_, status) = get(format!("/deliveries/{id}"), &edge).await;
    assert_eq!(status["state"], "dead", "{status}");
    assert_eq!(status["attempts"], 1, "a permanent fault is not retried: {status}");
    assert_eq!(status["lastError"]["status"], 422, "{status}");
    // Another client cannot see it (it does not exist for them); an admin can, and the
    // dead-letter list has it.
    assert_eq!(get(format!("/deliveries/{id}"), &token("peer").await).await.0, 404);
    assert_eq!(get(format!("/deliveries/{id}"), &ops).await.0, 200, "an admin sees every delivery");
    let (_, dead) = get("/admin/deliveries?state=dead".into(), &ops).await;
    assert_eq!(dead["items"].as_array().map(Vec::len), Some(1), "{dead}");
    let forbidden = client.get(gw.url("/admin/deliveries?state=dead")).bearer_auth(&edge).send().await.expect("list");
    common::problem(forbidden, 403).await;
    // The ERP's data is fixed; an operator retries the dead letter; it is delivered.
    let allow = client.post(gw.url("/allow-negative")).bearer_auth(&edge).json(&json!({ "allow": true })).send();
    assert_eq!(allow.await.expect("allow").status(), 200);
    let retried = client.post(gw.url(&format!("/admin/deliveries/{id}/retry"))).bearer_auth(&ops).send().await;
    assert_eq!(retried.expect("retry").status(), 200);
    common::eventually("the retried reading booked", Duration::from_secs(30), || async {
        stats(&spyne.base).await.0 == 6
    })
    .await;
    let (_, status) = get(format!("/deliveries/{id}"), &edge).await;
    assert_eq!(status["state"], "delivered", "{status}");
    // Arrival order within the partition: the poison reading came last only because it
    // was retried by hand; the others kept their order.
    let (_, arrivals) = stats(&spyne.base).await;
    let erp_id = |k: &str| veneer::delivery::erp_key("edge", "POST /readings/ordered", k);
    let order = ["ok-0", "ok-1", "ok-2", "ok-3", "ok-4", "poison"].map(erp_id);
    assert_eq!(arrivals["press-1"], json!(order));
}

/// Two clients may choose the same Idempotency-Key: the ERP's document number names the
/// client too, so neither write is refused as the other's duplicate (and counted delivered
/// without being booked), while each client's own retry is still one booking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_with_one_idempotency_key_both_book() {
    let spyne = common::start_spyne();
    let hash = veneer::auth::clients::hash_secret("s3cret").expect("hash");
    let auth = format!(
        "auth:\n  issuer: \"http://veneer.test\"\n  signing_keys: keys\n  clients:\n    - {{ id: line-a, secret_hash: \"{hash}\", scopes: [] }}\n    - {{ id: line-b, secret_hash: \"{hash}\", scopes: [] }}\n"
    );
    let dir = config(&spyne.base, "backoff: 50ms, max_backoff: 200ms", &auth).await;
    veneer::admin::new_key(&dir.path().join("keys"), "ES256").expect("key");
    let gw = common::with_config_self_issuer(dir.path()).await;
    let client = common::client();
    let mut deliveries = Vec::new();
    for id in ["line-b", "line-a", "line-a"] {
        let token = common::access_token(&gw.base, id, "s3cret").await;
        let res = client
            .post(gw.url("/readings"))
            .bearer_auth(&token)
            .header("idempotency-key", "order-1001")
            .json(&json!({ "machine": id, "value": 1 }))
            .send()
            .await
            .expect("post");
        assert_eq!(res.status(), 202);
        let id = res.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
        deliveries.push((token, id));
    }
    assert_eq!(deliveries[1].1, deliveries[2].1, "line-a's retry replays its first answer");
    for (token, id) in &deliveries[..2] {
        common::eventually("delivered", Duration::from_secs(30), || async {
            let res = client.get(gw.url(&format!("/deliveries/{id}"))).bearer_auth(token).send().await.expect("get");
            let status: Value = res.json().await.expect("json");
            assert_ne!(status["duplicate"], true, "counted as another client's duplicate: {status}");
            status["state"] == "delivered"
        })
        .await;
    }
    let (booked, arrivals) = stats(&spyne.base).await;
    assert_eq!(booked, 2, "both clients' writes are booked: {arrivals}");
    let keys = ["order-1001".to_string()];
    let expected: BTreeSet<String> = erp_ids("line-a", "POST /readings", &keys)
        .union(&erp_ids("line-b", "POST /readings", &keys))
        .cloned()
        .collect();
    assert_eq!(booked_ids(&arrivals), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_replay_refuse_changed_payloads_and_in_flight_retries() {
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, "idempotency_ttl: 2s", "").await;
    let gw = common::with_config(dir.path()).await;
    // First call books; a retry with the same key and payload replays (the ERP would refuse
    // a second booking of this id, so a replayed 200 proves it was not called again).
    let first = post_reading(&gw.base, "/readings/direct", "k-1", "m1", 3.0).await;
    assert_eq!(first.status(), 200);
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let first_body = first.text().await.expect("body");
    let again = post_reading(&gw.base, "/readings/direct", "k-1", "m1", 3.0).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers().get("idempotent-replayed").map(|v| v.as_bytes()), Some(b"true".as_slice()));
    assert_eq!(again.text().await.expect("body"), first_body);
    assert_eq!(stats(&spyne.base).await.0, 1);
    // Same key, another payload: 422.
    let changed = post_reading(&gw.base, "/readings/direct", "k-1", "m1", 4.0).await;
    common::problem(changed, 422).await;
    // Two sends of one key at once, to a call that takes 2 s: whichever claims the key runs,
    // the other is told 409 at once; afterwards the answer replays.
    let send = || {
        common::client().post(gw.url("/sleep")).header("idempotency-key", "slow").json(&json!({ "seconds": 2 })).send()
    };
    let (a, b) = tokio::join!(send(), send());
    let mut statuses = [a.expect("a").status().as_u16(), b.expect("b").status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);
    let replay = send().await.expect("replay");
    assert_eq!(replay.status(), 200);
    assert!(replay.headers().contains_key("idempotent-replayed"));
    // Required: 400 without the header.
    let missing = common::client().post(gw.url("/readings/strict")).json(&json!({"machine": "m", "value": 1})).send();
    common::problem(missing.await.expect("post"), 400).await;
    // Expiry: after idempotency_ttl the key is forgotten; the call runs again, and the ERP
    // refuses the duplicate id it carries.
    common::eventually("the key expires", Duration::from_secs(20), || async {
        let res = post_reading(&gw.base, "/readings/direct", "k-1", "m1", 3.0).await;
        !res.headers().contains_key("idempotent-replayed")
    })
    .await;
    assert_eq!(stats(&spyne.base).await.0, 1, "booked once, however often it was sent");
    // An unknown delivery is named as such, not as a missing route.
    let unknown = common::client().get(gw.url("/deliveries/does-not-exist")).send().await.expect("get");
    let problem = common::problem(unknown, 404).await;
    assert_eq!(problem["detail"], "no delivery does-not-exist", "{problem}");
}

/// The gateway binary over `dir`, killed with -9 mid-stream, then restarted on the same data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_stream_loses_nothing_accepted_and_books_nothing_twice() {
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, "backoff: 50ms, max_backoff: 300ms", "").await;
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let first = common::Veneer::serve(dir.path(), &[]);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (base, accepted) = (first.base.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..10_000 {
                let key = format!("k{t}-{i}");
                let res = common::client()
                    .post(format!("{base}/readings"))
                    .header("idempotency-key", &key)
                    .json(&json!({ "machine": format!("m{t}"), "value": 1 }))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 202 => accepted.lock().expect("lock").push(key),
                    // The gateway died: whatever it had not answered is not promised.
                    _ => return,
                }
            }
        }));
    }
    common::eventually("a few hundred accepted", Duration::from_secs(60), || async {
        accepted.lock().expect("lock").len() >= 400
    })
    .await;
    kill_9(first);
    for t in tasks {
        let _ = t.await;
    }
    let promised = erp_ids("anonymous", "POST /readings", accepted.lock().expect("lock").iter());
    // Restarted on the same data directory: every 202 is delivered.
    let second = common::Veneer::serve(dir.path(), &[]);
    common::eventually("every accepted reading booked", Duration::from_secs(120), || async {
        let (_, arrivals) = stats(&spyne.base).await;
        booked_ids(&arrivals).is_superset(&promised)
    })
    .await;
    let (booked, arrivals) = stats(&spyne.base).await;
    let ids = booked_ids(&arrivals);
    assert_eq!(booked, ids.len(), "no reading booked twice");
    eprintln!("kill -9: {} accepted before the crash, {} booked after the restart", promised.len(), booked);
    drop(second);
}

fn kill_9(mut gw: common::Veneer) {
    // Child::kill is SIGKILL: no drain, no flush, no destructor.
    gw.child.kill().expect("kill -9");
    let _ = gw.child.wait();
}

/// A config for a fleet: the queue in a shared Redis instead of a data directory.
async fn fleet_config(spyne_base: &str, redis_port: u16) -> tempfile::TempDir {
    fleet_config_with(spyne_base, redis_port, "").await
}

/// [`fleet_config`] with an `auth:` section.
async fn fleet_config_with(spyne_base: &str, redis_port: u16, auth: &str) -> tempfile::TempDir {
    let dir = config(spyne_base, "backoff: 50ms, max_backoff: 300ms", auth).await;
    let yaml = std::fs::read_to_string(dir.path().join("gateway.yaml")).expect("read");
    let yaml = yaml.replace(
        "delivery: { data_dir: data, ",
        &format!("delivery: {{ redis: {{ url: \"redis://127.0.0.1:{redis_port}/\", claim_after: 2s }}, "),
    );
    // A replica's item is taken over after claim_after, which must outlast the backend's
    // timeout (or an attempt still running would be sent twice).
    let yaml = yaml.replace("timeout: 10s", "timeout: 1s");
    // Ordered delivery needs the embedded store; the fleet's routes deliver concurrently.
    let routes =
        ROUTES.replace("delivery: { mode: queued, ordered: true, partition: \"{body.machine}\" }", "delivery: queued");
    std::fs::write(dir.path().join("gateway.yaml"), yaml).expect("write");
    std::fs::write(dir.path().join("routes/plant.yaml"), routes).expect("write");
    dir
}

/// Three replicas share one redis-server; one is killed with -9 while calls it took are in
/// flight: the others take its unfinished items over, and every 202 is booked, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_takes_over_a_killed_replicas_items() {
    let spyne = common::start_spyne();
    let redis_dir = tempfile::tempdir().expect("redis dir");
    let redis = common::Redis::start_durable(redis_dir.path());
    let dir = fleet_config(&spyne.base, redis.port).await;
    let replicas: Vec<common::Veneer> = (0..3).map(|_| common::Veneer::serve(dir.path(), &[])).collect();
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    // Slow readings (0.5 s in the ERP) keep calls in flight; fast ones keep the stream busy.
    let mut tasks = Vec::new();
    for t in 0..6 {
        let (base, accepted) = (bases[t % 3].clone(), accepted.clone());
        let machine = if t < 3 { "slow" } else { "fast" };
        tasks.push(tokio::spawn(async move {
            for i in 0..400 {
                let key = format!("f{t}-{i}");
                let res = common::client()
                    .post(format!("{base}/readings"))
                    .header("idempotency-key", &key)
                    .json(&json!({ "machine": machine, "value": 1 }))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 202 => accepted.lock().expect("lock").push(key),
                    Ok(r) => panic!("replica {base} refused a reading: {}", r.status()),
                    // The killed replica: what it did not answer is not promised.
                    Err(_) => return,
                }
            }
        }));
    }
    common::eventually("600 accepted", Duration::from_secs(60), || async {
        accepted.lock().expect("lock").len() >= 600
    })
    .await;
    let mut replicas = replicas.into_iter();
    // Calls the first replica took are in flight in the ERP now: kill it.
    kill_9(replicas.next().expect("three replicas"));
    for t in tasks {
        t.await.expect("posting");
    }
    let promised = erp_ids("anonymous", "POST /readings", accepted.lock().expect("lock").iter());
    common::eventually("every accepted reading booked by the surviving replicas", Duration::from_secs(180), || async {
        booked_ids(&stats(&spyne.base).await.1).is_superset(&promised)
    })
    .await;
    let (booked, arrivals) = stats(&spyne.base).await;
    assert_eq!(booked, booked_ids(&arrivals).len(), "no reading booked twice");
    eprintln!("fleet: {} accepted by three replicas, one killed with -9; {booked} booked", promised.len());
    drop(redis);
}

/// SIGTERM while a delivery is in flight: the attempt finishes within the drain time and its
/// outcome is stored, so the restarted gateway does not send it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_delivery_in_flight_finish() {
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, "backoff: 50ms", "").await;
    let first = common::Veneer::serve(dir.path(), &[]);
    // A slow reading: 0.5 s inside the ERP.
    let res = post_reading(&first.base, "/readings", "slow-1", "slow", 1.0).await;
    assert_eq!(res.status(), 202);
    let location = res.headers().get("location").and_then(|v| v.to_str().ok()).expect("location").to_string();
    let status = |base: String, location: String| async move {
        let v: Value = common::client().get(format!("{base}{location}")).send().await.ok()?.json().await.ok()?;
        Some(v)
    };
    common::eventually("the delivery is in flight", Duration::from_secs(10), || {
        let check = status(first.base.clone(), location.clone());
        async move { check.await.is_some_and(|v| v["state"] == "delivering") }
    })
    .await;
    let pid = first.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let mut first = first;
    let exit = first.child.wait().expect("exit");
    assert!(exit.success(), "graceful exit: {exit:?}");
    // Restarted on the same data: the item is delivered, by the first attempt (a second one
    // would have met the ERP's duplicate fault and say so).
    let second = common::Veneer::serve(dir.path(), &[]);
    let v = status(second.base.clone(), location.clone()).await.expect("status");
    assert_eq!(v["state"], "delivered", "{v}");
    assert_eq!(v["attempts"], 1, "{v}");
    assert!(v.get("duplicate").is_none(), "delivered once, not re-sent: {v}");
    assert_eq!(stats(&spyne.base).await.0, 1);
}

#[tokio::test]
async fn a_claim_after_shorter_than_a_backend_timeout_is_a_config_error() {
    let spyne = common::start_spyne();
    let dir = fleet_config(&spyne.base, 6379).await;
    let yaml = std::fs::read_to_string(dir.path().join("gateway.yaml")).expect("read");
    std::fs::write(dir.path().join("gateway.yaml"), yaml.replace("timeout: 1s", "timeout: 5s")).expect("write");
    let err = veneer::config::compile(
        &veneer::config::ConfigSource::Dir(dir.path().to_path_buf()),
        &veneer::config::compile::CompileOptions::default(),
    )
    .expect_err("claim_after 2s < timeout 5s");
    assert!(err.to_string().contains("claim_after"), "{err}");
}

/// The embedded queue is bounded: past `max_items` a queued route answers 503 `queue-full`
/// with a Retry-After, before the disk fills; once the ERP has taken the items, the oldest
/// delivered statuses make room and writes are taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_queue_full_and_takes_writes_again_once_drained() {
    let spyne = common::start_spyne();
    let base = spyne.base.clone();
    let dir = config(&base, "backoff: 50ms, max_backoff: 200ms, max_items: 5", "").await;
    let gw = common::with_config(dir.path()).await;
    drop(spyne); // the ERP is down: items stay queued
    for i in 0..5 {
        assert_eq!(post_reading(&gw.base, "/readings", &format!("q-{i}"), "m", 1.0).await.status(), 202);
    }
    let full = post_reading(&gw.base, "/readings", "q-5", "m", 1.0).await;
    let retry_after = full.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
    let problem = common::problem(full, 503).await;
    assert!(problem["type"].as_str().is_some_and(|t| t.ends_with("queue-full")), "{problem}");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("max_items")), "{problem}");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)), "Retry-After");
    let spyne = common::start_spyne_on(port_of(&base));
    common::eventually("the five booked", Duration::from_secs(60), || async { stats(&spyne.base).await.0 == 5 }).await;
    // The refused write was not stored, and its key is free: the retry is accepted now.
    common::eventually("a write accepted again", Duration::from_secs(20), || async {
        post_reading(&gw.base, "/readings", "q-5", "m", 1.0).await.status() == 202
    })
    .await;
    common::eventually("booked", Duration::from_secs(30), || async { stats(&spyne.base).await.0 == 6 }).await;
}

/// Idempotency records are bounded: an answer above `idempotency_max_answer` is kept as its
/// status, Location and digest (a replay gets those and an empty body), and past
/// `idempotency_max_bytes` the oldest answers are forgotten while recent keys still replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_records_keep_large_answers_as_a_digest_and_forget_the_oldest_past_the_bound() {
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, "idempotency_max_answer: 8B, idempotency_max_bytes: 64KiB", "").await;
    let gw = common::with_config(dir.path()).await;
    let first = post_reading(&gw.base, "/readings/direct", "big-0", "m", 1.0).await;
    assert_eq!(first.status(), 200);
    let body = first.bytes().await.expect("body");
    assert!(body.len() > 8, "an answer larger than the bound: {body:?}");
    let replay = post_reading(&gw.base, "/readings/direct", "big-0", "m", 1.0).await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers().get("idempotent-replayed").map(|v| v.as_bytes()), Some(b"true".as_slice()));
    let digest = replay.headers().get("repr-digest").and_then(|v| v.to_str().ok()).map(str::to_string);
    use base64::Engine;
    let expected = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
    let expected = format!("sha-256=:{}:", base64::engine::general_purpose::STANDARD.encode(expected.as_ref()));
    assert_eq!(digest.as_deref(), Some(expected.as_str()));
    assert!(replay.bytes().await.expect("body").is_empty());
    assert_eq!(stats(&spyne.base).await.0, 1, "the replay did not call the ERP");
    // Many keys: each record is a few hundred bytes, so 600 of them pass 64 KiB; the oldest
    // are forgotten (their retry runs again and the ERP refuses the duplicate id), the
    // newest still replay.
    for i in 1..600 {
        assert_eq!(post_reading(&gw.base, "/readings/direct", &format!("big-{i}"), "m", 1.0).await.status(), 200);
    }
    let newest = post_reading(&gw.base, "/readings/direct", "big-599", "m", 1.0).await;
    assert!(newest.headers().contains_key("idempotent-replayed"), "the newest key still replays");
    common::eventually("the oldest answers forgotten", Duration::from_secs(20), || async {
        let oldest = post_reading(&gw.base, "/readings/direct", "big-1", "m", 1.0).await;
        !oldest.headers().contains_key("idempotent-replayed")
    })
    .await;
    let metrics = common::client().get(gw.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    let evicted: f64 = metrics
        .lines()
        .find(|l| l.starts_with("veneer_idempotency_evicted_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(evicted >= 100.0, "forgotten answers are counted: {evicted}");
}

/// A fleet's queued routes need a Redis that persists every write: with `appendonly no` they
/// answer 503 (a 202 could be lost), and once Redis is configured so (checked every few
/// seconds, as after a restart or failover) they accept again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_without_appendonly_refuses_queued_writes_until_it_persists_them() {
    let spyne = common::start_spyne();
    let redis = common::Redis::start(); // appendonly no
    let dir = fleet_config(&spyne.base, redis.port).await;
    let gw = common::with_config(dir.path()).await;
    let refused = post_reading(&gw.base, "/readings", "d-1", "m", 1.0).await;
    let problem = common::problem(refused, 503).await;
    assert!(problem["type"].as_str().is_some_and(|t| t.ends_with("queue-not-durable")), "{problem}");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("appendonly")), "{problem}");
    // A direct route is not affected.
    assert_eq!(post_reading(&gw.base, "/readings/direct", "d-2", "m", 1.0).await.status(), 200);
    for (name, value) in [("appendonly", "yes"), ("appendfsync", "always")] {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "CONFIG", "SET", name, value])
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    common::eventually("queued writes accepted again", Duration::from_secs(20), || async {
        post_reading(&gw.base, "/readings", "d-1", "m", 1.0).await.status() == 202
    })
    .await;
    common::eventually("booked", Duration::from_secs(30), || async {
        booked_ids(&stats(&spyne.base).await.1).contains(&veneer::delivery::erp_key(
            "anonymous",
            "POST /readings",
            "d-1",
        ))
    })
    .await;
}

/// The fleet's admin list reads Redis' state index page by page, oldest first, each item
/// with what was stored for the ERP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_lists_deliveries_by_state_page_by_page() {
    let spyne = common::start_spyne();
    let redis_dir = tempfile::tempdir().expect("redis dir");
    let redis = common::Redis::start_durable(redis_dir.path());
    let hash = veneer::auth::clients::hash_secret("s3cret").expect("hash");
    let auth = format!(
        "auth:\n  issuer: \"http://veneer.test\"\n  signing_keys: keys\n  clients:\n    - {{ id: ops, secret_hash: \"{hash}\", scopes: [\"veneer:admin\"] }}\n"
    );
    let dir = fleet_config_with(&spyne.base, redis.port, &auth).await;
    veneer::admin::new_key(&dir.path().join("keys"), "ES256").expect("key");
    let gw = common::with_config_self_issuer(dir.path()).await;
    drop(spyne); // the ERP is down: the items stay queued
    let ops = common::access_token(&gw.base, "ops", "s3cret").await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let res = common::client()
            .post(gw.url("/readings"))
            .bearer_auth(&ops)
            .header("idempotency-key", format!("page-{i}"))
            .json(&json!({ "machine": "m", "value": i }))
            .send()
            .await
            .expect("post");
        assert_eq!(res.status(), 202);
        ids.push(res.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string());
    }
    let (mut listed, mut after, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let mut url = gw.url("/admin/deliveries?state=queued&limit=10");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page: Value =
            common::client().get(url).bearer_auth(&ops).send().await.expect("list").json().await.expect("json");
        pages += 1;
        for item in page["items"].as_array().expect("items") {
            assert_eq!(item["input"]["machine"], "m", "the stored input is shown: {item}");
            listed.push(item["id"].as_str().expect("id").to_string());
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
        assert!(pages < 10, "paging ends");
    }
    assert_eq!(listed, ids, "every queued item once, oldest first");
    assert_eq!(pages, 3);
}
