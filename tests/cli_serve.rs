//! The README's first command, as a user runs it: `veneer serve --dev` prints a demo client
//! and working commands, serves typed JSON to a token holder, and exits 0 on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// `veneer serve --dev` on a free port with its data in `data`, stdout piped.
fn dev_gateway(data: &std::path::Path) -> common::Process {
    common::Process(
        Command::new(env!("CARGO_BIN_EXE_veneer"))
            .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .env("VENEER_DEV_SECRET", "cli-test-secret")
            .env("VENEER_DATA", data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("veneer starts"),
    )
}

#[tokio::test]
async fn dev_mode_prints_working_commands_and_stops_cleanly() {
    let data = tempfile::tempdir().expect("data dir");
    let mut child = dev_gateway(data.path());
    let stdout = child.stdout.take().expect("stdout");
    // Readiness: the welcome text is printed only once the listener is bound. It is read up to
    // its last line, so a changed text fails here instead of hanging.
    let (mut base, mut credentials, mut item_curl) = (None, None, false);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("stdout line");
        if let Some(rest) = line.split("gateway at ").nth(1) {
            base = Some(rest.trim().to_string());
        }
        if line.contains("client_id=demo client_secret=cli-test-secret") {
            credentials = Some(());
        }
        item_curl |= line.contains("Authorization: Bearer $TOKEN") && line.trim_end().ends_with("/items/1000");
        if line.contains("a SOAP fault, mapped to 404") {
            break;
        }
    }
    let base = base.expect("dev mode prints the gateway address");
    assert!(credentials.is_some(), "dev mode prints the demo client");
    assert!(item_curl, "dev mode prints a curl for /items/1000");

    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let unauthenticated = client.get(format!("{base}/items/1000")).send().await.expect("request");
    assert_eq!(unauthenticated.status(), 401);
    let bearer = &common::access_token(&base, "demo", "cli-test-secret").await;
    let item: serde_json::Value = client
        .get(format!("{base}/items/1000"))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(item["blocked"], false);
    assert!(item["inventory"].is_number());
    assert!(item["location"].is_array());

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let exit = child.wait().expect("veneer exits");
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
}

#[tokio::test]
async fn metrics_from_the_start_and_on_their_own_listener() {
    // The config's fingerprint is recorded while it loads, before the first request: it is
    // on the page only if the recorder was installed first.
    let dir = common::config_dir(
        "server: { metrics_listen: \"127.0.0.1:0\" }\nbackends:\n  erp:\n    url: \"http://127.0.0.1:9/soap\"\n    wsdl: wsdl/sample-erp.wsdl\n",
        &["items.yaml"],
        true,
    );
    let gw = common::Veneer::serve(dir.path(), &[]);
    let metrics = gw.metrics.clone().expect("the metrics listener is announced");
    let client = common::client();
    let page = client.get(format!("{metrics}/metrics")).send().await.expect("metrics");
    assert_eq!(page.status(), 200);
    let text = page.text().await.expect("text");
    assert!(text.contains("veneer_config_info{hash="), "the loaded config is on the page:\n{text}");
    // The main listener does not serve it.
    let res = client.get(format!("{}/metrics", gw.base)).send().await.expect("main /metrics");
    common::problem(res, 404).await;
}

#[tokio::test]
async fn dev_mode_keeps_serving_when_nobody_reads_its_stdout() {
    // `veneer serve --dev | head -2`, or a harness that stops reading after the address: the
    // welcome text then meets a closed pipe, which must not take the gateway down.
    let data = tempfile::tempdir().expect("data dir");
    let mut child = dev_gateway(data.path());
    // Read up to the address, then close the pipe: the rest of the welcome text meets it.
    let addr = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.split("gateway at ").nth(1).map(|r| r.trim().trim_start_matches("http://").to_string()))
        .expect("the welcome text names the address");
    let client = common::client();
    let health = format!("http://{addr}/healthz");
    let mut healthy = false;
    for _ in 0..200 {
        if let Some(exit) = child.try_wait().expect("status") {
            panic!("the gateway exited with a closed stdout: {exit:?}");
        }
        if client.get(&health).send().await.is_ok_and(|r| r.status() == 200) {
            healthy = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(healthy, "the gateway answers /healthz");
    // Still there after the welcome text was written.
    assert!(client.get(&health).send().await.is_ok_and(|r| r.status() == 200));
    assert!(child.try_wait().expect("status").is_none(), "the gateway keeps running");
}

/// Dev mode's operator client reaches the admin endpoints, and `--public-url` is what
/// tokens and the authorization-server metadata name (never the address bound).
#[tokio::test]
async fn dev_mode_has_an_operator_and_names_the_public_url() {
    let data = tempfile::tempdir().expect("data dir");
    let mut child = common::Process(
        Command::new(env!("CARGO_BIN_EXE_veneer"))
            .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--public-url", "https://veneer.plant.example/"])
            .env("RUST_LOG", "warn")
            .env("VENEER_DEV_SECRET", "cli-test-secret")
            .env("VENEER_DEV_ADMIN_SECRET", "cli-admin-secret")
            .env("VENEER_DATA", data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("veneer starts"),
    );
    let stdout = child.stdout.take().expect("stdout");
    let (mut public, mut listening, mut operator) = (None, None, false);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("stdout line");
        if let Some(rest) = line.split("gateway at ").nth(1) {
            public = Some(rest.trim().to_string());
        }
        if let Some(rest) = line.split("(listening on ").nth(1) {
            listening = rest.strip_suffix(')').map(str::to_string);
        }
        operator |= line.contains("client_id=dev-admin client_secret=cli-admin-secret");
        if line.contains("admin/deliveries?state=dead") {
            break;
        }
    }
    assert!(operator, "dev mode prints the operator client");
    assert_eq!(public.as_deref(), Some("https://veneer.plant.example"), "the commands name the public URL");
    let base = format!("http://{}", listening.expect("the address bound, beside the public URL"));
    let metadata: serde_json::Value = common::client()
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    assert_eq!(metadata["issuer"], "https://veneer.plant.example", "{metadata}");
    assert_eq!(metadata["token_endpoint"], "https://veneer.plant.example/oauth2/token", "{metadata}");
    let admin = common::access_token(&base, "dev-admin", "cli-admin-secret").await;
    let dead = common::client()
        .get(format!("{base}/admin/deliveries?state=dead"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("list");
    assert_eq!(dead.status(), 200);
    let demo = common::access_token(&base, "demo", "cli-test-secret").await;
    let refused =
        common::client().get(format!("{base}/admin/deliveries")).bearer_auth(&demo).send().await.expect("list");
    assert_eq!(refused.status(), 403, "the demo client is not an operator");
}

/// A second dev instance on the same data directory stops before its welcome text, with a
/// message that says why and what to do.
#[tokio::test]
async fn a_second_dev_instance_on_one_data_directory_says_why_before_its_banner() {
    let data = tempfile::tempdir().expect("data dir");
    let mut first = dev_gateway(data.path());
    let stdout = first.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.contains("gateway at "))), "the first instance runs");
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    let second = Command::new(env!("CARGO_BIN_EXE_veneer"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .env("VENEER_DATA", data.path())
        .output()
        .expect("veneer runs");
    let (out, err) = (String::from_utf8_lossy(&second.stdout), String::from_utf8_lossy(&second.stderr));
    assert!(!second.status.success(), "{out}{err}");
    assert!(!out.contains("Veneer dev mode"), "no welcome text for a gateway that cannot run: {out}");
    assert!(err.contains("in use by another process") && err.contains("--data"), "{err}");
}

/// A public URL that is not one stops `serve` with a message saying what to write.
#[test]
fn a_public_url_that_is_not_one_is_refused() {
    let data = tempfile::tempdir().expect("data dir");
    let out = Command::new(env!("CARGO_BIN_EXE_veneer"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--public-url", "veneer.plant.example"])
        .env("VENEER_DATA", data.path())
        .output()
        .expect("veneer runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--public-url") && err.contains("https://"), "{err}");
}
