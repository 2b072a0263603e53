//! End to end against a real OpenID provider not written in this project: the npm package
//! `oidc-provider` (tests/oidc/provider.mjs) issues client-credentials JWTs; Veneer finds its
//! keys by OpenID discovery and accepts its tokens on a scoped route.

mod common;

use serde_json::Value;

#[tokio::test]
async fn tokens_from_oidc_provider_open_scoped_routes() {
    let provider = common::OidcProvider::start();
    let erp = veneer::dev::start().await.expect("sample ERP");
    let yaml = format!(
        "backends:\n  erp:\n    url: \"{}\"\n    wsdl: wsdl/sample-erp.wsdl\nauth:\n  external_issuers:\n    - issuer: \"{}\"\n      audience: \"api://veneer\"\n      algorithms: [ES256]\n",
        erp.url, provider.issuer
    );
    let dir = common::config_dir(&yaml, &["items.yaml"], false);
    let gw = common::with_config(dir.path()).await;

    let client = common::client();
    let get_token = |scope: &'static str| {
        client
            .post(format!("{}/token", provider.issuer))
            .basic_auth("iot-platform", Some("iot-secret"))
            .form(&[("grant_type", "client_credentials"), ("scope", scope), ("resource", "api://veneer")])
            .send()
    };
    let token: Value = get_token("items:read").await.expect("token").json().await.expect("json");
    let access = token["access_token"].as_str().expect("access_token");
    let res = client.get(gw.url("/items/1000")).bearer_auth(access).send().await.expect("request");
    assert_eq!(res.status(), 200);
    let item: Value = res.json().await.expect("json");
    assert_eq!(item["no"], "1000");

    // A token of the same IdP without the route's scope is refused with 403.
    let other: Value = get_token("telemetry:write").await.expect("token").json().await.expect("json");
    let res = client
        .get(gw.url("/items/1000"))
        .bearer_auth(other["access_token"].as_str().expect("token"))
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn opaque_tokens_are_checked_by_introspection() {
    let provider = common::OidcProvider::start();
    let client = common::client();
    let discovery: Value = client
        .get(format!("{}/.well-known/openid-configuration", provider.issuer))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    let endpoint = discovery["introspection_endpoint"].as_str().expect("introspection endpoint").to_string();
    let erp = veneer::dev::start().await.expect("sample ERP");
    let dir = common::config_dir("", &["items.yaml"], false);
    std::fs::write(dir.path().join("introspection-secret"), "iot-secret\n").expect("secret");
    let yaml = format!(
        "backends:\n  erp:\n    url: \"{}\"\n    wsdl: wsdl/sample-erp.wsdl\nauth:\n  introspection:\n    endpoint: \"{endpoint}\"\n    client_id: iot-platform\n    client_secret_file: \"{}\"\n",
        erp.url,
        dir.path().join("introspection-secret").display()
    );
    std::fs::write(dir.path().join("gateway.yaml"), yaml).expect("write");
    let gw = common::with_config(dir.path()).await;

    let token: Value = client
        .post(format!("{}/token", provider.issuer))
        .basic_auth("iot-platform", Some("iot-secret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "items:read"), ("resource", "urn:veneer:opaque")])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let opaque = token["access_token"].as_str().expect("access_token");
    assert_eq!(opaque.split('.').count(), 1, "an opaque token, not a JWT: {opaque}");
    for _ in 0..2 {
        let res = client.get(gw.url("/items/1000")).bearer_auth(opaque).send().await.expect("request");
        assert_eq!(res.status(), 200);
    }
    let forged =
        client.get(gw.url("/items/1000")).bearer_auth("not-a-real-token-0123456789").send().await.expect("request");
    let challenge = forged.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert_eq!(forged.status(), 401);
    assert!(challenge.contains("invalid_token"), "{challenge}");
}
