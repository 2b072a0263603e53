//! End to end through real HTTP: the gateway in dev mode over the in-process sample ERP.

mod common;

use serde_json::{Value, json};

#[tokio::test]
async fn get_item_returns_typed_json() {
    let gw = common::dev().await;
    let res = gw.client().get(gw.url("/items/1000")).send().await.expect("request");
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-request-id"));
    let text = res.text().await.expect("body");
    // Every digit of the decimal survives: checked on the raw text, before any float parsing.
    assert!(text.contains(r#""unitPrice":12345678901234567.123456"#), "{text}");
    let item: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(item["no"], "1000");
    assert_eq!(item["inventory"], json!(1520.25));
    assert_eq!(item["blocked"], false);
    assert_eq!(item["lastDateModified"], "2026-11-20T14:03:11Z");
    assert_eq!(item["safetyLeadTime"], Value::Null, "xsi:nil becomes null");
    assert_eq!(item["location"].as_array().map(Vec::len), Some(2));
    assert_eq!(item["location"][1], json!({"code": "LINE3", "bin": "L3-FEED", "quantity": 320.25}));
    let keys: Vec<&str> = item.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(keys.first(), Some(&"no"), "keys follow schema order: {keys:?}");
}

#[tokio::test]
async fn arrays_stay_arrays_with_one_or_zero_entries() {
    let gw = common::dev().await;
    let one: Value = gw.client().get(gw.url("/items/1001")).send().await.expect("req").json().await.expect("json");
    assert_eq!(one["location"], json!([{"code": "MAIN", "quantity": 42}]));
    assert_eq!(one["blocked"], true);
    let none: Value = gw.client().get(gw.url("/items/2000")).send().await.expect("req").json().await.expect("json");
    assert_eq!(none["location"], json!([]));
    let orders: Value = gw
        .client()
        .get(gw.url("/production-orders?status=Finished"))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(orders, json!([]));
}

#[tokio::test]
async fn unknown_item_fault_maps_to_404() {
    let gw = common::dev().await;
    let res = gw.client().get(gw.url("/items/9999")).send().await.expect("request");
    let p = common::problem(res, 404).await;
    assert_eq!(p["fault"]["code"], "Client");
    assert_eq!(p["fault"]["reason"], "Item 9999 does not exist");
    assert_eq!(p["backend"], "erp");
}

#[tokio::test]
async fn route_level_fault_rule_wins() {
    let gw = common::dev().await;
    let res = gw
        .client()
        .post(gw.url("/production-orders/PO-1003/output"))
        .json(&json!({"quantity": 1, "finishedAt": "2026-11-25T10:00:00Z"}))
        .send()
        .await
        .expect("request");
    let p = common::problem(res, 409).await;
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("not released")));
}

#[tokio::test]
async fn post_routes_round_trip() {
    let gw = common::dev().await;
    let c = gw.client();
    let res = c
        .post(gw.url("/sensor-readings"))
        .json(&json!({"unit": "C", "value": 71.25, "timestamp": "2026-11-25T08:00:00Z", "sensorId": "T-100"}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["accepted"], true);
    assert!(body["entryNo"].is_u64());

    let res = c
        .post(gw.url("/production-orders/PO-1001/output"))
        .json(&json!({"quantity": "2.5", "finishedAt": "2026-11-25T10:00:00Z", "orderNo": "ignored: the path wins"}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let order: Value = res.json().await.expect("json");
    assert_eq!(order["no"], "PO-1001");
    assert_eq!(order["status"], "Released");
}

#[tokio::test]
async fn invalid_input_lists_every_problem_with_pointers() {
    let gw = common::dev().await;
    let res = gw.client()
        .post(gw.url("/sensor-readings"))
        .json(&json!({"sensorId": "a-sensor-id-much-longer-than-twenty", "timestamp": "yesterday", "value": true, "colour": "red"}))
        .send()
        .await
        .expect("request");
    let p = common::problem(res, 422).await;
    let errors = p["errors"].as_array().expect("errors array");
    let find =
        |ptr: &str| errors.iter().find(|e| e["pointer"] == ptr).map(|e| e["detail"].as_str().unwrap_or("").to_string());
    assert!(find("/sensorId").is_some_and(|d| d.contains("at most 20")), "{p}");
    assert!(find("/timestamp").is_some_and(|d| d.contains("date-time")), "{p}");
    assert!(find("/value").is_some_and(|d| d.contains("decimal")), "{p}");
    assert!(find("/unit").is_some_and(|d| d.contains("required")), "{p}");
    assert!(find("/colour").is_some_and(|d| d.contains("unknown")), "{p}");
    assert_eq!(errors.len(), 5, "{p}");
}

#[tokio::test]
async fn query_and_path_errors_name_the_parameter() {
    let gw = common::dev().await;
    let c = gw.client();
    let res = c.get(gw.url("/production-orders?limit=ten")).send().await.expect("request");
    let p = common::problem(res, 422).await;
    let errors = p["errors"].as_array().expect("errors");
    assert!(
        errors.iter().any(|e| e["in"] == "query"
            && e["parameter"] == "status"
            && e["detail"].as_str().is_some_and(|d| d.contains("required"))),
        "{p}"
    );
    assert!(errors.iter().any(|e| e["in"] == "query" && e["parameter"] == "limit"), "{p}");

    let long = "x".repeat(21);
    let res = c.get(gw.url(&format!("/items/{long}"))).send().await.expect("request");
    let p = common::problem(res, 422).await;
    assert_eq!(p["errors"][0]["in"], "path");
    assert_eq!(p["errors"][0]["parameter"], "no");
}

#[tokio::test]
async fn malformed_json_is_400() {
    let gw = common::dev().await;
    let res = gw
        .client()
        .post(gw.url("/sensor-readings"))
        .header("content-type", "application/json")
        .body(r#"{"sensorId": "T-1", "#)
        .send()
        .await
        .expect("request");
    let p = common::problem(res, 400).await;
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("line 1")), "{p}");

    let res = gw
        .client()
        .post(gw.url("/sensor-readings"))
        .header("content-type", "application/json")
        .send()
        .await
        .expect("request");
    common::problem(res, 400).await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let gw = common::dev().await;
    let res = gw
        .client()
        .post(gw.url("/sensor-readings"))
        .header("content-type", "application/xml")
        .body("<reading/>")
        .send()
        .await
        .expect("request");
    common::problem(res, 415).await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let gw = common::dev().await;
    let big = format!(r#"{{"sensorId": "{}"}}"#, "x".repeat(2 * 1024 * 1024));
    let res = gw
        .client()
        .post(gw.url("/sensor-readings"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("request");
    common::problem(res, 413).await;
}

#[tokio::test]
async fn oversized_chunked_body_is_413() {
    let gw = common::dev().await;
    let chunks = (0..40).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024]));
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let res = gw
        .client()
        .post(gw.url("/sensor-readings"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    common::problem(res, 413).await;
}

#[tokio::test]
async fn unknown_route_is_404_and_wrong_method_405() {
    let gw = common::dev().await;
    let c = gw.client();
    common::problem(c.get(gw.url("/nothing/here")).send().await.expect("request"), 404).await;
    let res = c.delete(gw.url("/items/1000")).send().await.expect("request");
    assert_eq!(res.headers().get("allow").and_then(|v| v.to_str().ok()), Some("GET"));
    common::problem(res, 405).await;
}

#[tokio::test]
async fn health_endpoints() {
    let gw = common::dev().await;
    let c = gw.client();
    assert_eq!(c.get(gw.url("/healthz")).send().await.expect("request").status(), 200);
    let ready: Value = c.get(gw.url("/readyz")).send().await.expect("request").json().await.expect("json");
    assert_eq!(ready["routes"], 5);
}

#[tokio::test]
async fn a_queued_reading_is_accepted_at_once_and_delivered() {
    let gw = common::dev().await;
    let client = gw.client();
    let res = client
        .post(gw.url("/sensor-readings/queued"))
        .json(
            &serde_json::json!({"sensorId": "T-100", "timestamp": "2026-11-25T08:00:00Z", "value": 71.25, "unit": "C"}),
        )
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 202);
    let location = res.headers().get("location").and_then(|v| v.to_str().ok()).expect("Location").to_string();
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["state"], "queued");
    assert_eq!(location, format!("/deliveries/{}", body["id"].as_str().expect("id")));
    // Delivered to the sample ERP in the background; its answer is on the status document.
    common::eventually("the reading is delivered", std::time::Duration::from_secs(20), async || {
        let status: serde_json::Value =
            client.get(gw.url(&location)).send().await.expect("status").json().await.expect("json");
        if status["state"] == "delivered" {
            assert_eq!(status["result"]["accepted"], true, "{status}");
            assert_eq!(status["attempts"], 1, "{status}");
        }
        status["state"] == "delivered"
    })
    .await;
    // A bad reading is refused at once and never queued.
    let bad = client.post(gw.url("/sensor-readings/queued")).json(&serde_json::json!({"value": "hot"})).send();
    common::problem(bad.await.expect("post"), 422).await;
}

/// A built-in endpoint asked with another method answers as a configured route does: 405,
/// the `method-not-allowed` problem, and `Allow` listing what it takes.
#[tokio::test]
async fn built_in_endpoints_answer_405_with_allow_like_routes() {
    let gw = common::dev().await;
    let client = gw.client();
    for (method, path, allowed) in [
        (reqwest::Method::POST, "/healthz", "GET"),
        (reqwest::Method::GET, "/oauth2/token", "POST"),
        (reqwest::Method::PUT, "/openapi.json", "GET"),
        (reqwest::Method::DELETE, "/admin/reload", "POST"),
        (reqwest::Method::POST, "/items/1000", "GET"),
    ] {
        let res = client.request(method.clone(), gw.url(path)).send().await.expect("request");
        let allow = res.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert!(allow.split(',').any(|m| m.trim() == allowed), "{method} {path}: Allow {allow:?}");
        let problem = common::problem(res, 405).await;
        assert!(
            problem["type"].as_str().is_some_and(|t| t.ends_with("method-not-allowed")),
            "{method} {path}: {problem}"
        );
    }
}
