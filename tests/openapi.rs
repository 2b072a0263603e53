//! The OpenAPI document: the committed `openapi/openapi.json` is current, the documents for
//! the sample config and for a real ERP route set (NAV SalesOrder) validate as OpenAPI 3.1
//! (Python `openapi-spec-validator`), and schemathesis with every check finds the dev-mode
//! gateway and the shipped config exactly as strict as their documents say.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use veneer::config::compile::CompileOptions;
use veneer::config::{self, ConfigSource};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The document of the sample config as dev mode serves it on its default address.
fn sample_document() -> String {
    let options = CompileOptions {
        backend_urls: [("erp".to_string(), "http://127.0.0.1:7047/erp".to_string())].into(),
        issuer: Some("http://127.0.0.1:8080".into()),
        dev_client: Some((veneer::dev::DEMO_CLIENT.into(), "unused".into())),
        dev_admin: None,
        data_dir: None,
        retained: Default::default(),
    };
    let gw = config::compile(&ConfigSource::Embedded, &options).expect("sample config");
    veneer::openapi::json(&veneer::openapi::document(&gw)).expect("document") + "\n"
}

#[test]
fn committed_openapi_json_is_current() {
    let path = root().join("openapi/openapi.json");
    let current = sample_document();
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &current).expect("write openapi.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == current,
        "openapi/openapi.json is stale: run `BLESS=1 cargo test --test openapi` and commit it"
    );
}

fn validate(path: &Path) {
    let out = Command::new("openapi-spec-validator")
        .arg(path)
        .output()
        .expect("openapi-spec-validator runs (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains(": OK"), "{} is not valid OpenAPI 3.1:\n{text}", path.display());
}

#[test]
fn sample_and_nav_documents_validate_as_openapi_31() {
    validate(&root().join("openapi/openapi.json"));
    let nav = config::compile(&ConfigSource::Dir(root().join("tests/fixtures/nav")), &CompileOptions::default())
        .expect("NAV routes");
    let doc = veneer::openapi::document(&nav);
    assert_eq!(doc["paths"]["/sales-orders/{no}"]["get"]["operationId"], "Read");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("nav.json");
    std::fs::write(&file, veneer::openapi::json(&doc).expect("json")).expect("write");
    validate(&file);
}

#[test]
fn telemetry_is_documented_with_the_dictionary() {
    let doc: serde_json::Value = serde_json::from_str(&sample_document()).expect("json");
    let post = &doc["paths"]["/telemetry"]["post"];
    assert_eq!(post["security"][0]["oauth2"][0], "telemetry:write");
    let description = post["description"].as_str().expect("description");
    // Each sensor of config/sensors/press-line.yaml, with both units.
    for row in ["| `T-1*` | temperature | `[degF]` | `Cel` (C)", "| `P-*` | pressure | `[psi]` | `bar` (bar)"] {
        assert!(description.contains(row), "{row} in:\n{description}");
    }
    assert!(post["requestBody"]["content"]["application/x-ndjson"].is_object());
    assert!(post["responses"]["422"].is_object() && post["responses"]["202"].is_object());
}

#[test]
fn cli_prints_the_served_document() {
    let out = Command::new(env!("CARGO_BIN_EXE_veneer"))
        .args(["openapi", "--config", "tests/fixtures/nav", "--format", "yaml"])
        .current_dir(root())
        .output()
        .expect("run");
    assert!(out.status.success());
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.contains("openapi: 3.1.0") && yaml.contains("/sales-orders/{no}"), "{yaml}");
}

/// Runs schemathesis with every check against a served document: responses as documented
/// (status, content type, schema, headers), every schema-valid request accepted, every
/// schema-violating one refused, authentication enforced as declared. The seed makes a
/// failure reproducible (`st run … --seed 7`); the hooks (tests/contract/hooks.py) only make
/// generated requests behave as a client must where the rule is state or the clock.
async fn schemathesis(url: String, token: Option<String>) -> String {
    let scratch = tempfile::tempdir().expect("tempdir");
    let cwd = scratch.path().to_path_buf();
    let hooks = root().join("tests/contract");
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("schemathesis");
        // schemathesis keeps a cache in its working directory: not in the repository.
        cmd.current_dir(cwd).args(["run", &url, "--checks", "all", "--max-examples", "150", "--seed", "7"]);
        cmd.args(["--output-sanitize", "false"]);
        if let Some(token) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        cmd.env("SCHEMATHESIS_HOOKS", "hooks").env("PYTHONPATH", hooks).output()
    })
    .await
    .expect("join")
    .expect("schemathesis runs (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    // No phase or check marked failed (a warning such as "Authentication failed" is not one).
    assert!(text.contains("passed") && !text.contains('❌'), "{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_gateway_keeps_its_contract_under_every_check() {
    let gw = common::dev().await;
    let served: serde_json::Value =
        gw.client().get(gw.url("/openapi.json")).send().await.expect("req").json().await.expect("json");
    assert!(
        served["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]["tokenUrl"]
            .as_str()
            .is_some_and(|u| u == gw.url("/oauth2/token"))
    );
    let yaml = gw.client().get(gw.url("/openapi.yaml")).send().await.expect("req");
    assert_eq!(yaml.status(), 200);
    let text = schemathesis(gw.url("/openapi.json"), gw.token.clone()).await;
    // Every operation was reached with a token, none only refused.
    assert!(!text.contains("Authentication failed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_config_keeps_its_contract_under_every_check() {
    // Outside dev mode nobody can be authorised yet: every route is declared as needing a
    // token and answers 401 as documented, whatever is sent.
    let data = tempfile::tempdir().expect("data");
    let data_dir = data.path().to_str().expect("utf-8 path").to_string();
    let gw = common::Veneer::serve(&root().join("config"), &[("VENEER_DATA", data_dir.as_str())]);
    let text = schemathesis(format!("{}/openapi.json", gw.base), None).await;
    assert!(text.contains("returned only 401"), "{text}");
}

/// The shipped config outside dev mode (an `auth:` section, no issuer or client yet): every
/// route that is not public is declared as needing a token, as the gateway enforces, and
/// every requirement names a scheme the document declares.
#[test]
fn security_is_declared_as_the_gateway_enforces_it() {
    let gw = config::compile(&ConfigSource::Dir(root().join("config")), &CompileOptions::default()).expect("config");
    let doc = veneer::openapi::document(&gw);
    let schemes = doc["components"]["securitySchemes"].as_object().expect("a declared scheme");
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let security = op["security"].as_array().expect("security");
            assert!(!security.is_empty(), "{method} {path} is declared anonymous but answers 401 without a token");
            for requirement in security {
                for name in requirement.as_object().expect("requirement").keys() {
                    assert!(schemes.contains_key(name), "{method} {path} names the undeclared scheme {name}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "the routes and /telemetry: {checked}");
}
