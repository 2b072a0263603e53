//! Telemetry in, end to end: `POST /telemetry` against the data dictionary
//! (`sensors/*.yaml`), with spyne as the ERP. Readings are checked, converted in decimal to
//! the ERP's unit, enriched (machine metadata, the shift in the plant's time zone, the
//! current order looked up from the ERP), grouped where the operation takes a list, and
//! queued. Every assertion about what arrived is made on what the ERP booked, asked over
//! SOAP directly (MeasurementStats), never on what the gateway says it did.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// Spyne's measurement operations and the order lookup. The batch operation's input is
/// `Measurements` → `Measurement*` (spyne's Array), so the route maps the group's list
/// (`{"measurements": [...]}`) one level down.
const ROUTES: &str = r#"
routes:
  - route: "POST /measurements"
    backend: plant
    operation: RecordMeasurement
    delivery: queued
    duplicate_faults: [ { code: Client.Duplicate } ]
  - route: "POST /measurements/batch"
    backend: plant
    operation: RecordMeasurements
    delivery: queued
    request: { Measurements: { Measurement: "{body.measurements}" } }
  - route: "GET /orders/{machine}"
    backend: plant
    operation: CurrentOrder
    request: { Machine: "{path.machine}" }
    response: CurrentOrderResult
"#;

/// The press line's dictionary; `@TTL@` is the order lookup's ttl.
const SENSORS: &str = r#"
# The press line: devices send °F, psi and mm/s; the ERP books °C, bar and mm/s.
time_zone: Europe/Berlin
shifts:
  - { name: early, start: "06:00" }
  - { name: late, start: "14:00" }
  - { name: night, start: "22:00" }
machines:
  PRESS-01: { work_center: WC-PRESS-A }
  PRESS-02: { work_center: WC-PRESS-B }
lookups:
  order:
    route: "GET /orders/{machine}"
    params: { machine: "{machine}" }
    pick: ""
    ttl: @TTL@
    max_stale: 1h
sensors:
  - id: "T-1*"
    quantity: temperature
    unit: "[degF]"
    erp_unit: Cel
    erp_unit_label: C
    range: [-40, 900]
    decimals: 2
    machine: PRESS-01
    route: "POST /measurements"
    body:
      readingId: "{key}"
      sensor: "{sensor}"
      machine: "{machine}"
      value: "{value}"
      unit: "{unit}"
      timestamp: "{timestamp}"
      workCenter: "{meta.work_center}"
      shift: "{shift}"
      orderNo: "{lookup.order}"
  - id: "P-*"
    quantity: pressure
    unit: "[psi]"
    erp_unit: bar
    range: [0, 5000]
    decimals: 4
    machine: PRESS-02
    route: "POST /measurements"
    body:
      readingId: "{key}"
      sensor: "{sensor}"
      machine: "{machine}"
      value: "{value}"
      unit: "{unit}"
      timestamp: "{timestamp}"
      workCenter: "{meta.work_center}"
      shift: "{shift}"
      orderNo: "{lookup.order}"
  - id: "G-*"
    quantity: vibration
    unit: mm/s
    range: [0, 100]
    decimals: 3
    machine: PRESS-01
    route: "POST /measurements/batch"
    group: { field: measurements, max: 50, wait: 100ms }
    body:
      readingId: "{key}"
      sensor: "{sensor}"
      machine: "{machine}"
      value: "{value}"
      unit: "{unit}"
      timestamp: "{timestamp}"
      workCenter: "{meta.work_center}"
      shift: "{shift}"
"#;

/// A config directory for spyne at `base`: its WSDL, the routes, the press-line dictionary
/// (order lookup fresh for `ttl`), the delivery store in `data` (relative to the directory
/// or absolute).
async fn config(base: &str, ttl: &str, data: &str) -> tempfile::TempDir {
    let wsdl = common::client().get(format!("{base}/?wsdl")).send().await.expect("WSDL").text().await.expect("text");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("plant.wsdl"), wsdl).expect("write wsdl");
    // Fixed timestamps from 2026 stay acceptable for years: max_age is ten years. The circuit
    // breaker opens while the ERP is down (tests stop it) and probes again after a second.
    let gateway_yaml = format!(
        "server: {{ max_body: 64KiB }}\n\
         delivery: {{ data_dir: \"{data}\", backoff: 50ms, max_backoff: 500ms }}\n\
         telemetry: {{ max_age: 3650d, max_ahead: 5m }}\n\
         backends:\n  plant:\n    url: \"{base}/\"\n    wsdl: plant.wsdl\n    timeout: 10s\n    connect_timeout: 1s\n    circuit_breaker: {{ open_for: 1s }}\n"
    );
    std::fs::write(dir.path().join("gateway.yaml"), gateway_yaml).expect("write gateway");
    std::fs::create_dir(dir.path().join("routes")).expect("mkdir");
    std::fs::write(dir.path().join("routes/plant.yaml"), ROUTES).expect("write routes");
    std::fs::create_dir(dir.path().join("sensors")).expect("mkdir");
    std::fs::write(dir.path().join("sensors/press.yaml"), SENSORS.replace("@TTL@", ttl)).expect("write sensors");
    dir
}

fn port_of(base: &str) -> u16 {
    base.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port")
}

/// What the ERP holds: `{"booked", "measurements": {id: fields}, "calls": {op: n},
/// "duplicates"}`, asked over SOAP directly, not through the gateway.
async fn erp(spyne_base: &str) -> Value {
    common::spyne_stats(spyne_base, "MeasurementStats").await.expect("spyne answers")
}

fn booked(stats: &Value) -> u64 {
    stats["booked"].as_u64().expect("booked")
}

fn calls(stats: &Value, op: &str) -> u64 {
    stats["calls"][op].as_u64().expect("calls")
}

fn booked_ids(stats: &Value) -> BTreeSet<String> {
    stats["measurements"].as_object().expect("measurements").keys().cloned().collect()
}

/// Waits until the ERP has booked `n` measurements and returns its stats.
async fn booked_n(spyne_base: &str, n: u64, limit: Duration) -> Value {
    common::eventually(&format!("{n} measurements booked"), limit, || async { booked(&erp(spyne_base).await) >= n })
        .await;
    erp(spyne_base).await
}

/// POST /telemetry with a JSON body; the status and the JSON answer.
async fn post(gw_base: &str, body: &Value) -> (u16, Value) {
    let res = common::client().post(format!("{gw_base}/telemetry")).json(body).send().await.expect("post");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// POST /telemetry with a body of this content type.
async fn post_raw(gw_base: &str, content_type: &str, body: String) -> reqwest::Response {
    common::client()
        .post(format!("{gw_base}/telemetry"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("post")
}

/// `(pointer, status)` of every reading in a 202 answer.
fn statuses(answer: &Value) -> Vec<(String, String)> {
    answer["readings"]
        .as_array()
        .unwrap_or_else(|| panic!("readings in {answer}"))
        .iter()
        .map(|r| {
            (r["pointer"].as_str().expect("pointer").to_string(), r["status"].as_str().expect("status").to_string())
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(p, s)| (p.to_string(), s.to_string())).collect()
}

/// The pointers of a 422 problem's `errors`.
fn error_pointers(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors in {problem}"))
        .iter()
        .map(|e| {
            assert!(e["detail"].as_str().is_some_and(|d| !d.is_empty()), "every error has a detail: {problem}");
            e["pointer"].as_str().expect("pointer").to_string()
        })
        .collect()
}

/// Epoch milliseconds of an RFC 3339 time.
fn epoch_ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).expect("time").timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_are_converted_and_enriched_before_the_erp_books_them() {
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, "60s", "data").await;
    let gw = common::with_config(dir.path()).await;
    // Winter (Berlin = UTC+1) and summer (UTC+2) times, each in a different shift in
    // Berlin than it would be in UTC.
    let readings = json!([
        // 06:30 in Berlin: early (05:30 UTC would be night).
        {"sensor": "T-100", "value": 212, "timestamp": "2026-01-15T05:30:00Z", "id": "t1-a"},
        // 14:30 in Berlin: late.
        {"sensor": "P-7", "value": 14.5, "timestamp": "2026-01-15T13:30:00Z", "id": "t1-b"},
        // Sent in Cel to a °F sensor: range-checked in °F, booked in °C. 22:30 CEST: night.
        {"sensor": "T-105", "value": 37.5, "unit": "Cel", "timestamp": "2026-07-15T20:30:00Z", "id": "t1-c"},
        // Kelvin, epoch milliseconds, another machine than the sensor's. 06:30 CEST: early.
        {"sensor": "T-106", "value": 373.15, "unit": "K", "timestamp": epoch_ms("2026-07-15T04:30:00Z"),
         "machine": "PRESS-02", "id": "t1-d"},
        // No id: the key is machine/sensor@timestamp. 05:59 in Berlin: still the night shift.
        {"sensor": "T-107", "value": 50, "timestamp": "2026-01-15T04:59:00Z"},
        // No id, one sensor id on two machines in the same second: two readings, two keys
        // (the ERP refuses a duplicate key, and the second would be counted delivered).
        {"sensor": "P-9", "value": 14.5, "timestamp": "2026-01-15T04:59:00Z", "machine": "PRESS-01"},
        {"sensor": "P-9", "value": 29, "timestamp": "2026-01-15T04:59:00Z", "machine": "PRESS-02"},
    ]);
    let (status, answer) = post(&gw.base, &readings).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!((answer["accepted"].as_u64(), answer["rejected"].as_u64()), (Some(7), Some(0)), "{answer}");
    let stats = booked_n(&spyne.base, 7, Duration::from_secs(30)).await;
    let m = &stats["measurements"];
    let fields = |id: &str| {
        let r = &m[id];
        [
            &r["Sensor"],
            &r["Value"],
            &r["Unit"],
            &r["Machine"],
            &r["WorkCenter"],
            &r["Shift"],
            &r["OrderNo"],
            &r["Timestamp"],
        ]
        .map(|v| v.as_str().map(str::to_string))
        .map(Option::unwrap_or_default)
    };
    assert_eq!(
        fields("t1-a"),
        ["T-100", "100", "C", "PRESS-01", "WC-PRESS-A", "early", "PO-1001", "2026-01-15T05:30:00+00:00"],
        "212 °F: {stats}"
    );
    assert_eq!(
        fields("t1-b"),
        ["P-7", "0.9997", "bar", "PRESS-02", "WC-PRESS-B", "late", "PO-1002", "2026-01-15T13:30:00+00:00"],
        "14.5 psi: {stats}"
    );
    assert_eq!(
        fields("t1-c"),
        ["T-105", "37.5", "C", "PRESS-01", "WC-PRESS-A", "night", "PO-1001", "2026-07-15T20:30:00+00:00"],
        "37.5 Cel: {stats}"
    );
    assert_eq!(
        fields("t1-d"),
        ["T-106", "100", "C", "PRESS-02", "WC-PRESS-B", "early", "PO-1002", "2026-07-15T04:30:00+00:00"],
        "373.15 K: {stats}"
    );
    assert_eq!(
        fields("machine=PRESS-01/T-107@2026-01-15T04:59:00Z"),
        ["T-107", "10", "C", "PRESS-01", "WC-PRESS-A", "night", "PO-1001", "2026-01-15T04:59:00+00:00"],
        "50 °F without an id: {stats}"
    );
    assert_eq!(fields("machine=PRESS-01/P-9@2026-01-15T04:59:00Z")[3], "PRESS-01", "{stats}");
    assert_eq!(fields("machine=PRESS-02/P-9@2026-01-15T04:59:00Z")[3], "PRESS-02", "{stats}");
    assert_eq!(booked(&stats), 7, "{stats}");
    assert_eq!(stats["duplicates"], 0, "no reading was refused as another's duplicate: {stats}");
    // The order is asked once per machine; the other readings use the cached value.
    assert_eq!(calls(&stats, "CurrentOrder"), 2, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_rounded_to_the_sensors_decimals_also_without_a_conversion() {
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, "60s", "data").await;
    let gw = common::with_config(dir.path()).await;
    let readings = json!([
        // °F → °C, decimals 2: 100.123456 °F is 37.846364 °C.
        {"sensor": "T-100", "value": 100.123456, "timestamp": "2026-02-01T10:00:00Z", "id": "r-converted"},
        // G-* is mm/s in and out, decimals 3.
        {"sensor": "G-1", "value": 1.23456, "timestamp": "2026-02-01T10:00:00Z", "id": "r-same-unit"},
        {"sensor": "G-2", "value": 0.123456, "unit": "cm/s", "timestamp": "2026-02-01T10:00:00Z", "id": "r-cm"},
    ]);
    let (status, answer) = post(&gw.base, &readings).await;
    assert_eq!(status, 202, "{answer}");
    let stats = booked_n(&spyne.base, 3, Duration::from_secs(30)).await;
    let value = |id: &str| stats["measurements"][id]["Value"].as_str().unwrap_or_default().to_string();
    assert_eq!(value("r-converted"), "37.85", "{stats}");
    assert_eq!(
        [value("r-same-unit"), value("r-cm")],
        ["1.235", "1.235"],
        "decimals: 3 applies when device and ERP unit are the same: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_is_answered_reading_by_reading_and_only_valid_ones_are_booked() {
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, "60s", "data").await;
    let gw = common::with_config(dir.path()).await;
    let a_year_ahead = (chrono::Utc::now() + chrono::Duration::days(365)).to_rfc3339();
    let readings = json!([
        {"sensor": "T-100", "value": 212, "timestamp": "2026-02-01T10:00:00Z", "id": "m-0"},
        {"sensor": "X-999", "value": 1, "timestamp": "2026-02-01T10:00:00Z", "id": "m-1"},
        {"sensor": "T-100", "value": "212", "timestamp": "2026-02-01T10:00:00Z", "id": "m-2"},
        // 901 °F: just above the range.
        {"sensor": "T-100", "value": 901, "timestamp": "2026-02-01T10:00:00Z", "id": "m-3"},
        {"sensor": "T-100", "value": 100, "timestamp": a_year_ahead, "id": "m-4"},
        42,
        {"sensor": "T-100", "value": 100, "unit": "bar", "timestamp": "2026-02-01T10:00:00Z", "id": "m-6"},
        // Older than telemetry.max_age (ten years).
        {"sensor": "T-100", "value": 100, "timestamp": "2015-01-01T00:00:00Z", "id": "m-7"},
        // 500 Cel is 932 °F: out of the range that is written in °F, though 500 < 900.
        {"sensor": "T-100", "value": 500, "unit": "Cel", "timestamp": "2026-02-01T10:00:00Z", "id": "m-8"},
        {"sensor": "P-2", "value": 100, "timestamp": "2026-02-01T10:00:00Z", "id": "m-9"},
    ]);
    let (status, answer) = post(&gw.base, &readings).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        statuses(&answer),
        pairs(&[
            ("/0", "queued"),
            ("/1/sensor", "rejected"),
            ("/2/value", "rejected"),
            ("/3/value", "rejected"),
            ("/4/timestamp", "rejected"),
            ("/5", "rejected"),
            ("/6/unit", "rejected"),
            ("/7/timestamp", "rejected"),
            ("/8/value", "rejected"),
            ("/9", "queued"),
        ]),
        "{answer}"
    );
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64(), answer["failed"].as_u64()),
        (Some(2), Some(8), Some(0)),
        "{answer}"
    );
    let listed = answer["readings"].as_array().expect("readings");
    for r in listed {
        match r["status"].as_str() {
            Some("queued") => assert!(r["delivery"].as_str().is_some_and(|d| !d.is_empty()), "{r}"),
            _ => assert!(r["reason"].as_str().is_some_and(|d| !d.is_empty()), "{r}"),
        }
    }
    assert!(listed[1]["reason"].as_str().is_some_and(|r| r.contains("X-999")), "{answer}");
    assert!(listed[3]["reason"].as_str().is_some_and(|r| r.contains("901") && r.contains("900")), "{answer}");
    let stats = booked_n(&spyne.base, 2, Duration::from_secs(30)).await;
    assert_eq!(booked_ids(&stats), BTreeSet::from(["m-0".to_string(), "m-9".to_string()]), "{stats}");
    assert_eq!(stats["measurements"]["m-9"]["Value"], "6.8948", "100 psi in bar: {stats}");
    assert_eq!(calls(&stats, "RecordMeasurement"), 2, "only the valid readings reach the ERP: {stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_media_types_ndjson_and_size_limits() {
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, "60s", "data").await;
    let gw = common::with_config(dir.path()).await;
    // None valid: 422 with every reason, nothing booked.
    let res = common::client()
        .post(gw.url("/telemetry"))
        .json(&json!([
            {"sensor": "NOPE", "value": 1},
            {"sensor": "T-100", "value": true},
            {"sensor": "T-100"},
            "T-100",
        ]))
        .send()
        .await
        .expect("post");
    let problem = common::problem(res, 422).await;
    assert_eq!(problem["type"], "urn:veneer:problem:invalid-readings", "{problem}");
    assert_eq!(error_pointers(&problem), ["/0/sensor", "/1/value", "/2/value", "/3"], "{problem}");
    // One object on its own, invalid: pointers from the root.
    let res = common::client().post(gw.url("/telemetry")).json(&json!({"sensor": "NOPE", "value": 1})).send();
    let problem = common::problem(res.await.expect("post"), 422).await;
    assert_eq!(error_pointers(&problem), ["/sensor"], "{problem}");
    // Another media type: 415.
    let res = post_raw(&gw.base, "text/plain", r#"[{"sensor": "T-100", "value": 1}]"#.into()).await;
    common::problem(res, 415).await;
    // More readings than telemetry.max_readings (1000): 422 at the root.
    let many: Vec<Value> = (0..1001).map(|_| json!({"sensor": "T-100", "value": 1})).collect();
    let res = common::client().post(gw.url("/telemetry")).json(&many).send().await.expect("post");
    let problem = common::problem(res, 422).await;
    assert_eq!(error_pointers(&problem), [""], "{problem}");
    // Over server.max_body (64 KiB): 413.
    let big: Vec<Value> =
        (0..2000).map(|i| json!({"sensor": "T-100", "value": 1, "id": format!("big-{i:06}-padding")})).collect();
    let big = serde_json::to_string(&big).expect("json");
    assert!(big.len() > 64 * 1024);
    common::problem(post_raw(&gw.base, "application/json", big).await, 413).await;
    // NDJSON: pointers count the lines with content (the blank one is skipped).
    let ndjson = [
        r#"{"sensor": "T-100", "value": 212, "timestamp": "2026-03-01T10:00:00Z", "id": "n-0"}"#,
        "",
        r#"{not json"#,
        r#"{"sensor": "X-1", "value": 1, "id": "n-2"}"#,
        r#"{"sensor": "T-101", "value": 32, "timestamp": "2026-03-01T10:00:00Z", "id": "n-3"}"#,
    ]
    .join("\n");
    let res = post_raw(&gw.base, "application/x-ndjson", ndjson).await;
    assert_eq!(res.status(), 202);
    let answer: Value = res.json().await.expect("json");
    assert_eq!(
        statuses(&answer),
        pairs(&[("/0", "queued"), ("/1", "rejected"), ("/2/sensor", "rejected"), ("/3", "queued")]),
        "{answer}"
    );
    // One object on its own, valid, without a timestamp (now).
    let (status, answer) = post(&gw.base, &json!({"sensor": "T-102", "value": 50, "id": "one"})).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(statuses(&answer), pairs(&[("", "queued")]), "{answer}");
    let stats = booked_n(&spyne.base, 3, Duration::from_secs(30)).await;
    assert_eq!(booked_ids(&stats), ["n-0", "n-3", "one"].map(String::from).into(), "{stats}");
    assert_eq!(
        (&stats["measurements"]["n-0"]["Value"], &stats["measurements"]["n-3"]["Value"]),
        (&json!("100"), &json!("0"))
    );
    assert_eq!(stats["measurements"]["one"]["Value"], "10", "{stats}");
}

/// A reading of the grouped sensor (G-*, mm/s, 50 per call, 100 ms wait).
fn grouped(i: usize, prefix: &str) -> Value {
    json!({"sensor": format!("G-{}", i % 7), "value": (i % 100) as f64 / 4.0,
           "timestamp": "2026-04-01T10:00:00Z", "id": format!("{prefix}-{i}")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_readings_go_to_the_erp_in_calls_of_at_most_max() {
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, "60s", "data").await;
    let gw = common::with_config(dir.path()).await;
    // 120 in one request: 50 + 50 + 20. Several rounds, as how the readings of one request
    // meet the group's flushes depends on scheduling.
    for round in 0..5u64 {
        let batch: Vec<Value> = (0..120).map(|i| grouped(i, &format!("g{round}"))).collect();
        let (status, answer) = post(&gw.base, &json!(batch)).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["accepted"], 120, "{answer}");
        // Readings sent in one call share its delivery.
        let mut per_delivery = std::collections::BTreeMap::<String, usize>::new();
        for r in answer["readings"].as_array().expect("readings") {
            *per_delivery.entry(r["delivery"].as_str().expect("delivery").to_string()).or_default() += 1;
        }
        let sizes: Vec<usize> = per_delivery.into_values().collect();
        let stats = booked_n(&spyne.base, 120 * (round + 1), Duration::from_secs(30)).await;
        assert_eq!(booked(&stats), 120 * (round + 1));
        let batches = calls(&stats, "RecordMeasurements") - 3 * round;
        assert!(
            batches >= 3,
            "round {round}: 120 readings in {batches} calls (readings per call: {sizes:?}); group.max is 50"
        );
        assert_eq!(batches, 3, "round {round}: 120 readings, 50 per call (readings per call: {sizes:?})");
    }
    let stats = erp(&spyne.base).await;
    assert_eq!(stats["duplicates"], 0);
    assert_eq!(calls(&stats, "RecordMeasurement"), 0);
    assert_eq!(stats["measurements"]["g0-5"]["Value"], "1.25");
    assert_eq!(stats["measurements"]["g0-5"]["Shift"], "early", "12:00 CEST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_of_separate_requests_within_the_wait_share_a_call() {
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, "60s", "data").await;
    let gw = common::with_config(dir.path()).await;
    // 20 requests of one reading each, at the same time (within the 100 ms wait).
    let requests = 20;
    let posts: Vec<_> = (0..requests)
        .map(|i| {
            let (base, body) = (gw.base.clone(), json!([grouped(i, "s")]));
            tokio::spawn(async move { post(&base, &body).await })
        })
        .collect();
    for p in posts {
        let (status, answer) = p.await.expect("join");
        assert_eq!(status, 202, "{answer}");
    }
    let stats = booked_n(&spyne.base, requests as u64, Duration::from_secs(30)).await;
    assert_eq!(booked(&stats), requests as u64);
    let batches = calls(&stats, "RecordMeasurements");
    assert!(batches < requests as u64, "{requests} requests within the wait took {batches} calls");
    assert_eq!(stats["duplicates"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_posted_while_the_erp_is_down_arrive_once() {
    let spyne = common::start_spyne();
    let base = spyne.base.clone();
    let dir = config(&base, "60s", "data").await;
    let gw = common::with_config(dir.path()).await;
    drop(spyne);
    // 100 to the single-reading operation, 100 grouped.
    let readings: Vec<Value> = (0..200)
        .map(|i| {
            let (sensor, id) = if i < 100 {
                (format!("T-1{i:02}"), format!("d-t-{i}"))
            } else {
                (format!("G-{i}"), format!("d-g-{i}"))
            };
            json!({"sensor": sensor, "value": (i % 90) as f64, "timestamp": "2026-05-01T08:00:00Z", "id": id})
        })
        .collect();
    let ids: BTreeSet<String> = readings.iter().map(|r| r["id"].as_str().expect("id").to_string()).collect();
    let (status, answer) = post(&gw.base, &json!(readings)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], 200, "{answer}");
    assert!(
        statuses(&answer).iter().all(|(_, s)| s == "queued"),
        "every reading queued while the ERP is down: {answer}"
    );
    // The ERP comes back on the same address.
    let spyne = common::start_spyne_on(port_of(&base));
    let stats = booked_n(&spyne.base, 200, Duration::from_secs(90)).await;
    assert_eq!(booked_ids(&stats), ids, "{stats}");
    assert_eq!(calls(&stats, "RecordMeasurement"), 100, "no single reading sent twice: {stats}");
    assert_eq!(stats["duplicates"], 0, "no grouped reading sent twice: {stats}");
    // The same readings again (a device that did not see the 202): the ERP refuses them
    // as duplicates; nothing is booked twice.
    let (status, answer) = post(&gw.base, &json!(readings)).await;
    assert_eq!(status, 202, "{answer}");
    common::eventually("the repeated readings reached the ERP", Duration::from_secs(60), || async {
        let s = erp(&spyne.base).await;
        calls(&s, "RecordMeasurement") >= 200 && s["duplicates"].as_u64() >= Some(100)
    })
    .await;
    let stats = erp(&spyne.base).await;
    assert_eq!(booked(&stats), 200, "{stats}");
    assert_eq!(stats["duplicates"], 100, "{stats}");
    assert_eq!(booked_ids(&stats), ids);
}

/// One T-100 reading on `machine`.
fn on_machine(id: &str, machine: &str) -> Value {
    json!([{"sensor": "T-100", "value": 212, "timestamp": "2026-06-01T10:00:00Z", "machine": machine, "id": id}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looked_up_order_stands_in_while_the_erp_is_down() {
    let spyne = common::start_spyne();
    let base = spyne.base.clone();
    // A zero ttl: every reading's lookup goes to the ERP (expiry itself is tested on
    // instants in `ingest::intake`).
    let dir = config(&base, "0s", "data").await;
    let gw = common::with_config(dir.path()).await;
    assert_eq!(post(&gw.base, &on_machine("s-1", "PRESS-01")).await.0, 202);
    let stats = booked_n(&base, 1, Duration::from_secs(30)).await;
    assert_eq!(stats["measurements"]["s-1"]["OrderNo"], "PO-1001", "{stats}");
    assert_eq!(calls(&stats, "CurrentOrder"), 1, "{stats}");
    // The ERP goes down: PRESS-01's order is the last known one; PRESS-02's was never
    // looked up, so its reading has none (proof the ERP really could not be asked).
    drop(spyne);
    assert_eq!(post(&gw.base, &on_machine("s-2", "PRESS-01")).await.0, 202);
    assert_eq!(post(&gw.base, &on_machine("s-3", "PRESS-02")).await.0, 202);
    let spyne = common::start_spyne_on(port_of(&base));
    let stats = booked_n(&spyne.base, 2, Duration::from_secs(60)).await;
    assert_eq!(stats["measurements"]["s-2"]["OrderNo"], "PO-1001", "stale value within max_stale: {stats}");
    assert_eq!(stats["measurements"]["s-3"]["OrderNo"], Value::Null, "{stats}");
    assert_eq!(calls(&stats, "CurrentOrder"), 0, "both lookups were tried while the ERP was down: {stats}");
    // Back up: readings still carry the order.
    assert_eq!(post(&gw.base, &on_machine("s-4", "PRESS-01")).await.0, 202);
    let stats = booked_n(&spyne.base, 3, Duration::from_secs(30)).await;
    assert_eq!(stats["measurements"]["s-4"]["OrderNo"], "PO-1001", "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_is_asked_again_once_its_ttl_has_passed() {
    // A 60 s ttl asks once per machine (the dictionary test); a zero ttl asks for every
    // reading. Expiry at the ttl itself is tested on instants in `ingest::intake`.
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, "0s", "data").await;
    let gw = common::with_config(dir.path()).await;
    assert_eq!(post(&gw.base, &on_machine("l-1", "PRESS-01")).await.0, 202);
    booked_n(&spyne.base, 1, Duration::from_secs(30)).await;
    assert_eq!(post(&gw.base, &on_machine("l-2", "PRESS-01")).await.0, 202);
    let stats = booked_n(&spyne.base, 2, Duration::from_secs(30)).await;
    assert_eq!(calls(&stats, "CurrentOrder"), 2, "a value older than its ttl is asked again: {stats}");
}

/// A second dictionary file with a sensor of its own.
const HUMIDITY: &str = r#"
machines:
  PAINT-01: { work_center: WC-PAINT }
sensors:
  - id: "H-1"
    quantity: humidity
    unit: "%"
    range: [0, 100]
    machine: PAINT-01
    route: "POST /measurements"
    body:
      readingId: "{key}"
      sensor: "{sensor}"
      machine: "{machine}"
      value: "{value}"
      unit: "{unit}"
      timestamp: "{timestamp}"
      workCenter: "{meta.work_center}"
"#;

/// Serves `dir` reloadably, watching it for changes (as `veneer serve` does).
async fn serve_reloadable(dir: &Path) -> (String, tokio::sync::oneshot::Sender<()>) {
    use veneer::config::compile::CompileOptions;
    use veneer::config::{self, ConfigSource};
    use veneer::server::{self, AppState};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let options = CompileOptions::default();
    let gw = config::compile(&ConfigSource::Dir(dir.to_path_buf()), &options).expect("config");
    let state = AppState::reloadable(gw, dir.to_path_buf(), options);
    state.reloader.as_ref().expect("reloader").watch().expect("watch");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(server::run(listener, state, async move {
        let _ = rx.await;
    }));
    (base, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sensor_file_is_picked_up_on_reload() {
    let spyne = common::start_spyne();
    // The store outside the watched directory: the only change there is the new sensor file.
    let data = tempfile::tempdir().expect("data dir");
    let dir = config(&spyne.base, "60s", &data.path().display().to_string()).await;
    let (base, _stop) = serve_reloadable(dir.path()).await;
    let reading = json!([{"sensor": "H-1", "value": 55.5, "timestamp": "2026-06-01T10:00:00Z", "id": "h-1"}]);
    let res = common::client().post(format!("{base}/telemetry")).json(&reading).send().await.expect("post");
    let problem = common::problem(res, 422).await;
    assert_eq!(error_pointers(&problem), ["/0/sensor"], "unknown before the reload: {problem}");
    // Written under another name and renamed, so the watcher never sees half a file.
    std::fs::write(dir.path().join("sensors/humidity.yaml.new"), HUMIDITY).expect("write");
    std::fs::rename(dir.path().join("sensors/humidity.yaml.new"), dir.path().join("sensors/humidity.yaml"))
        .expect("rename");
    common::eventually("the new sensor file is picked up", Duration::from_secs(20), async || {
        let (status, answer) = post(&base, &reading).await;
        if status == 202 {
            assert_eq!(statuses(&answer), pairs(&[("/0", "queued")]), "{answer}");
            return true;
        }
        assert_eq!(status, 422, "before the reload: {answer}");
        false
    })
    .await;
    // The press line's sensors still work after the reload.
    let press = json!([{"sensor": "T-100", "value": 212, "timestamp": "2026-06-01T10:00:00Z", "id": "t-after"}]);
    assert_eq!(post(&base, &press).await.0, 202);
    let stats = booked_n(&spyne.base, 2, Duration::from_secs(30)).await;
    let h = &stats["measurements"]["h-1"];
    assert_eq!(
        (&h["Value"], &h["Unit"], &h["WorkCenter"]),
        (&json!("55.5"), &json!("%"), &json!("WC-PAINT")),
        "{stats}"
    );
    assert_eq!(stats["measurements"]["t-after"]["Value"], "100", "{stats}");
}

/// Problems, one per entry (line numbers are counted by hand; keep them in step).
const BROKEN_A: &str = r#"# Problems for veneer check, one per entry.
topics:
  - "factory/{plant"
sensors:
  - id: "T-1*"
    unit: "[degF]"
    erp_unit: Cel
    route: "POST /measurements"
    body: { readingId: "{key}", value: "{value}" }
  - id: "U-1"
    unit: "[foo]"
    route: "POST /measurements"
    body: { value: "{value}" }
  - id: "V-1"
    unit: mm/s
    erp_unit: mm/s2
    route: "POST /measurements"
    body: { value: "{value}" }
  - id: "W-1"
    unit: Cel
    route: "POST /measurements"
    body:
      readingId: "{key}"
      value: "{valeu}"
  - id: "X-1"
    unit: Cel
    route: "POST /nowhere"
    body: { value: "{value}" }
"#;

const BROKEN_B: &str = r#"# Another file, whose pattern overlaps T-1* in a.yaml.
sensors:
  - id: "Q-1"
    unit: Cel
    route: "POST /measurements"
    body: { value: "{value}" }
  - id: "T-10?"
    unit: "[degF]"
    route: "POST /measurements"
    body: { value: "{value}" }
"#;

/// `veneer check --config DIR`: success, and everything it printed.
fn check(dir: &Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_veneer"))
        .args(["check", "--config"])
        .arg(dir)
        .output()
        .expect("run veneer");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The problem line `veneer check` printed for `sensors/FILE:N`.
fn problem_at(text: &str, dir: &Path, file: &str, n: usize) -> String {
    let prefix = format!("{}:{n}: ", dir.join("sensors").join(file).display());
    text.lines()
        .find(|l| l.trim_start().starts_with(&prefix))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no problem reported at sensors/{file}:{n}:\n{text}"))
}

const TOPIC_LINE: usize = 3;
const UNKNOWN_UNIT_LINE: usize = 11;
const DIMENSION_LINE: usize = 16;
const TEMPLATE_LINE: usize = 24;
const ROUTE_LINE: usize = 27;
const OVERLAP_LINE: usize = 7;
const OVERLAPPED_LINE: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn veneer_check_names_file_and_line_of_each_dictionary_problem() {
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, "60s", "data").await;
    drop(spyne);
    std::fs::remove_file(dir.path().join("sensors/press.yaml")).expect("rm");
    std::fs::write(dir.path().join("sensors/a.yaml"), BROKEN_A).expect("write");
    std::fs::write(dir.path().join("sensors/b.yaml"), BROKEN_B).expect("write");
    let (ok, text) = check(dir.path());
    assert!(!ok, "{text}");
    assert!(text.contains("6 problems"), "{text}");
    let line = |file: &str, n: usize| problem_at(&text, dir.path(), file, n);
    let topic = line("a.yaml", TOPIC_LINE);
    assert!(topic.contains("factory/{plant"), "{topic}");
    let unit = line("a.yaml", UNKNOWN_UNIT_LINE);
    assert!(unit.contains("U-1") && unit.contains("[foo]") && unit.contains("not a UCUM unit"), "{unit}");
    let dimension = line("a.yaml", DIMENSION_LINE);
    assert!(dimension.contains("V-1") && dimension.contains("different things"), "{dimension}");
    let template = line("a.yaml", TEMPLATE_LINE);
    assert!(template.contains("W-1") && template.contains("{valeu} is unknown"), "{template}");
    let route = line("a.yaml", ROUTE_LINE);
    assert!(route.contains("X-1") && route.contains("POST /nowhere"), "{route}");
    let overlap = line("b.yaml", OVERLAP_LINE);
    assert!(
        overlap.contains("T-10?") && overlap.contains(&format!("sensors/a.yaml:{OVERLAPPED_LINE}")),
        "the overlap names the other entry's file and line: {overlap}"
    );
}

/// An unknown device unit, with `erp_unit:` written before `unit:`.
const KEY_ORDER: &str = r#"sensors:
  - id: "Y-1"
    erp_unit: Cel
    unit: "[foo]"
    route: "POST /measurements"
    body: { value: "{value}" }
"#;

const KEY_ORDER_UNIT_LINE: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_unit_is_reported_on_its_own_line_whatever_the_key_order() {
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, "60s", "data").await;
    drop(spyne);
    std::fs::write(dir.path().join("sensors/y.yaml"), KEY_ORDER).expect("write");
    let (ok, text) = check(dir.path());
    assert!(!ok, "{text}");
    assert!(text.contains("1 problem in "), "{text}");
    let unit = problem_at(&text, dir.path(), "y.yaml", KEY_ORDER_UNIT_LINE);
    assert!(unit.contains("Y-1") && unit.contains("[foo]"), "{unit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_requests_are_counted_like_routes() {
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, "60s", "data").await;
    let gw = common::with_config(dir.path()).await;
    let (status, _) = post(&gw.base, &json!([{"sensor": "T-100", "value": 212, "id": "counted"}])).await;
    assert_eq!(status, 202);
    let (status, _) = post(&gw.base, &json!([{"sensor": "nope", "value": 1}])).await;
    assert_eq!(status, 422);
    // The other built-in endpoints go through the same front: counted by their path template.
    let admin = common::client().get(format!("{}/admin/deliveries", gw.base)).send().await.expect("admin");
    assert_eq!(admin.status(), 403, "no auth: section, so no one holds veneer:admin");
    let missing = common::client().get(format!("{}/deliveries/nope", gw.base)).send().await.expect("status");
    assert_eq!(missing.status(), 404);
    let page = common::client().get(format!("{}/metrics", gw.base)).send().await.expect("metrics");
    let text = page.text().await.expect("text");
    for (route, class) in [
        ("POST /telemetry", "2xx"),
        ("POST /telemetry", "4xx"),
        ("GET /admin/deliveries", "4xx"),
        ("GET /deliveries/{id}", "4xx"),
    ] {
        let counted = text.lines().any(|l| {
            l.starts_with("veneer_requests_total{")
                && l.contains(&format!("route=\"{route}\""))
                && l.contains(&format!("status=\"{class}\""))
        });
        assert!(counted, "{route} {class} is in veneer_requests_total:\n{text}");
    }
}

/// Readings count one by one against the caller's readings limit: a request limit alone
/// would let each request carry `max_readings` of them into the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reading_counts_against_the_readings_limit() {
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, "60s", "data").await;
    let yaml = std::fs::read_to_string(dir.path().join("gateway.yaml")).expect("read");
    let yaml = yaml.replace(
        "telemetry: { max_age: 3650d, max_ahead: 5m }",
        "telemetry: { max_age: 3650d, max_ahead: 5m, max_readings: 20, readings_limit: { rate: \"20/min\", burst: 20 } }",
    );
    std::fs::write(dir.path().join("gateway.yaml"), yaml).expect("write");
    let gw = common::with_config(dir.path()).await;
    let batch = |from: usize, n: usize| {
        let list: Vec<Value> = (from..from + n)
            .map(|i| json!({"sensor": "P-7", "value": 14.5, "timestamp": "2026-01-15T13:30:00Z", "id": format!("rl-{i}")}))
            .collect();
        Value::Array(list)
    };
    let (status, answer) = post(&gw.base, &batch(0, 20)).await;
    assert_eq!(status, 202, "a full batch within the burst: {answer}");
    let res = common::client().post(gw.url("/telemetry")).json(&batch(20, 1)).send().await.expect("post");
    let policy = res.headers().get("ratelimit-policy").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(res.headers().contains_key("retry-after"));
    common::problem(res, 429).await;
    assert!(policy.contains("\"readings\";q=20;w=60"), "the readings policy is named: {policy}");
    let stats = booked_n(&spyne.base, 20, Duration::from_secs(30)).await;
    assert_eq!(booked(&stats), 20, "the refused reading was never queued: {stats}");
}
