//! End to end against a SOAP server not written in this project: spyne (Python) serving
//! `tests/spyne/plant_service.py` on a free loopback port. The gateway reads spyne's own
//! WSDL, so this checks our WSDL reader, encoder and decoder against a real implementation.

mod common;

use common::Spyne;

use serde_json::{Value, json};

const ROUTES: &str = r#"
routes:
  - route: "GET /parts/{no}"
    backend: plant
    operation: GetPart
    request: { PartNo: "{path.no}" }
    response: GetPartResult
  - route: "POST /parts"
    backend: plant
    operation: CreatePart
    status: 201
    response: CreatePartResult
    faults:
      - { code: Client.Validation, status: 422 }
  - route: "POST /echo"
    backend: plant
    operation: Echo
    request: { Text: "{body.text}" }
    response: EchoResult
  - route: "GET /crash"
    backend: plant
    operation: Crash
"#;

async fn gateway(spyne: &Spyne) -> (common::Gateway, tempfile::TempDir) {
    let wsdl = common::client()
        .get(format!("{}/?wsdl", spyne.base))
        .send()
        .await
        .expect("WSDL")
        .text()
        .await
        .expect("WSDL text");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("plant.wsdl"), wsdl).expect("write wsdl");
    let gateway_yaml = format!(
        "backends:\n  plant:\n    url: \"{}/\"\n    wsdl: plant.wsdl\n    timeout: 5s\n    faults:\n      - {{ code: Client.NotFound, status: 404 }}\n",
        spyne.base
    );
    std::fs::write(dir.path().join("gateway.yaml"), gateway_yaml).expect("write gateway");
    std::fs::create_dir(dir.path().join("routes")).expect("mkdir");
    std::fs::write(dir.path().join("routes/plant.yaml"), ROUTES).expect("write routes");
    (common::with_config(dir.path()).await, dir)
}

#[tokio::test]
async fn get_round_trips_types_and_arrays() {
    let spyne = common::start_spyne();
    let (gw, _dir) = gateway(&spyne).await;
    let res = common::client().get(gw.url("/parts/P-1")).send().await.expect("request");
    assert_eq!(res.status(), 200);
    let text = res.text().await.expect("body");
    assert!(text.contains(r#""price":12345678901234567.123456"#), "decimal digits kept: {text}");
    let part: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(part["partNo"], "P-1");
    assert_eq!(part["active"], true);
    assert_eq!(part["updatedAt"], "2026-11-01T08:30:00+00:00");
    assert_eq!(part["tags"]["string"], json!(["steel", "m8", "din933"]));

    let one: Value =
        common::client().get(gw.url("/parts/P-2")).send().await.expect("request").json().await.expect("json");
    assert_eq!(one["tags"]["string"], json!(["zinc"]), "one entry is still an array");
    assert_eq!(one["active"], false);
    assert_eq!(one["price"], json!(0.05));
}

#[tokio::test]
async fn post_round_trips_and_faults_map() {
    let spyne = common::start_spyne();
    let (gw, _dir) = gateway(&spyne).await;
    let c = common::client();
    let res = c
        .post(gw.url("/parts"))
        .header("content-type", "application/json")
        // Raw text: a client library's f64 would already have lost the digits under test.
        .body(r#"{"active": true, "price": 98765432109876543.000001, "partNo": "P-9", "description": "Nut M8"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 201);
    let text = res.text().await.expect("body");
    assert!(text.contains(r#""price":98765432109876543.000001"#), "{text}");
    let part: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(part["tags"]["string"], json!(["new"]));

    let res = c
        .post(gw.url("/parts"))
        .json(&json!({"partNo": "P-9", "price": -1.5, "active": false}))
        .send()
        .await
        .expect("request");
    let p = common::problem(res, 422).await;
    assert_eq!(p["fault"]["code"], "Client.Validation");

    let p = common::problem(c.get(gw.url("/parts/P-404")).send().await.expect("request"), 404).await;
    assert_eq!(p["detail"], "Part P-404 not found");

    let p = common::problem(c.get(gw.url("/crash")).send().await.expect("request"), 502).await;
    assert_eq!(p["fault"]["code"], "Server");
}

#[tokio::test]
async fn injection_arrives_as_literal_text() {
    let spyne = common::start_spyne();
    let (gw, _dir) = gateway(&spyne).await;
    for evil in ["</Text><Admin>1</Admin>", "]]><x/><![CDATA[", "&amp; &lt;", "<!DOCTYPE x [<!ENTITY e \"e\">]>&e;"] {
        let res = common::client().post(gw.url("/echo")).json(&json!({ "text": evil })).send().await.expect("request");
        assert_eq!(res.status(), 200);
        let echoed: Value = res.json().await.expect("json");
        assert_eq!(echoed, json!(evil), "spyne must receive exactly the text sent");
    }
}

#[tokio::test]
async fn missing_required_input_never_reaches_the_backend() {
    let spyne = common::start_spyne();
    let (gw, _dir) = gateway(&spyne).await;
    let res = common::client()
        .post(gw.url("/parts"))
        .json(&json!({"description": "no number"}))
        .send()
        .await
        .expect("request");
    let p = common::problem(res, 422).await;
    let pointers: Vec<&str> =
        p["errors"].as_array().expect("errors").iter().filter_map(|e| e["pointer"].as_str()).collect();
    assert_eq!(pointers, ["/partNo", "/price", "/active"]);
}
