//! `GET /admin/deliveries` on a store of 200 000 dead letters, with the gateway binary: the
//! list is paged through the store's state index off the async workers, so `/healthz`
//! answers promptly while an operator pages through all of it.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use veneer::delivery::store::{Store, Write};
use veneer::delivery::{Item, State};

const DEAD: usize = 200_000;

/// A dead letter as the workers store one.
fn dead_letter(i: usize) -> Item {
    let now = veneer::delivery::now_ms();
    Item {
        id: veneer::delivery::new_id(),
        route: "POST /sales-orders".into(),
        backend: "erp".into(),
        client: "line-3".into(),
        key: format!("order-{i}"),
        partition: None,
        input: json!({ "No": format!("SO-{i}"), "Quantity": i % 17 }),
        route_header: String::new(),
        request_id: String::new(),
        state: State::Dead,
        attempts: 3,
        created_ms: now,
        updated_ms: now,
        next_ms: now,
        last_error: Some(json!({ "status": 422, "title": "Invalid input" })),
        result: None,
        duplicate: false,
        retried_ms: None,
    }
}

/// Fills `dir` with `DEAD` dead letters, many writes per commit.
async fn fill(dir: &std::path::Path) -> BTreeSet<String> {
    let store = Store::open(dir).expect("open the store");
    let mut ids = BTreeSet::new();
    for chunk in (0..DEAD).collect::<Vec<_>>().chunks(2000) {
        let writes = chunk.iter().map(|i| {
            let item = dead_letter(*i);
            ids.insert(item.id.clone());
            let bytes = serde_json::to_vec(&item).expect("json");
            store.write(Write::PutItem(item.id, State::Dead.code(), bytes))
        });
        for w in futures_util::future::join_all(writes.collect::<Vec<_>>()).await {
            w.expect("stored");
        }
    }
    store.close().expect("closed");
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_200k_dead_letters_keeps_healthz_prompt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let ids = fill(&data).await;
    let hash = veneer::auth::clients::hash_secret("s3cret").expect("hash");
    let yaml = format!(
        "delivery: {{ data_dir: data }}\n\
         auth:\n  issuer: \"http://veneer.test\"\n  signing_keys: keys\n  clients:\n    - {{ id: ops, secret_hash: \"{hash}\", scopes: [\"veneer:admin\"] }}\n\
         backends:\n  erp:\n    url: \"http://127.0.0.1:9/\"\n    wsdl: wsdl/sample-erp.wsdl\n"
    );
    let config = common::config_dir(&yaml, &["items.yaml"], false);
    std::fs::rename(&data, config.path().join("data")).expect("move the store in");
    veneer::admin::new_key(&config.path().join("keys"), "ES256").expect("key");
    let gw = common::Veneer::serve(config.path(), &[]);
    let token = common::access_token(&gw.base, "ops", "s3cret").await;

    // /healthz is probed every 10 ms while the whole list is paged through.
    let probing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let prober = {
        let (base, probing) = (gw.base.clone(), probing.clone());
        tokio::spawn(async move {
            let client = common::client();
            let mut took = Vec::new();
            while probing.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let res = client.get(format!("{base}/healthz")).send().await.expect("healthz");
                assert_eq!(res.status(), 200);
                took.push(started.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            took
        })
    };
    let client = common::client();
    let (mut seen, mut order, mut after, mut pages) = (BTreeSet::new(), Vec::new(), None::<String>, 0);
    let started = Instant::now();
    loop {
        let mut url = format!("{}/admin/deliveries?state=dead&limit=1000", gw.base);
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page: Value = client.get(url).bearer_auth(&token).send().await.expect("list").json().await.expect("json");
        let items = page["items"].as_array().expect("items");
        pages += 1;
        for i in items {
            assert_eq!(i["state"], "dead");
            assert!(i["input"]["No"].as_str().is_some_and(|n| n.starts_with("SO-")), "the stored input is shown: {i}");
            let id = i["id"].as_str().expect("id").to_string();
            assert!(seen.insert(id.clone()), "no item twice");
            order.push(id);
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
        assert!(pages <= DEAD / 1000 + 2, "paging ends");
    }
    let listed_in = started.elapsed();
    probing.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut took = prober.await.expect("prober");
    assert_eq!(seen, ids, "every dead letter listed once");
    assert!(order.windows(2).all(|w| w[0] < w[1]), "oldest first (v7 ids sort by age), across pages");
    took.sort();
    let p99 = took[took.len() * 99 / 100];
    eprintln!(
        "200k dead letters listed in {pages} pages in {listed_in:?}; /healthz p99 {p99:?} over {} probes",
        took.len()
    );
    assert!(took.len() >= 20, "probed throughout: {}", took.len());
    assert!(p99 < Duration::from_millis(50), "/healthz p99 {p99:?} while listing");
}
