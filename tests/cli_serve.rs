//! The README's first command, as a user runs it: `veneer serve --dev` prints a working
//! curl, serves typed JSON, and exits 0 on SIGTERM after draining.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn dev_mode_prints_working_commands_and_stops_cleanly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_veneer"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("veneer starts");
    let stdout = child.stdout.take().expect("stdout");
    // Readiness: the welcome text is printed only once the listener is bound.
    let mut curl = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("stdout line");
        if let Some(cmd) = line
            .trim()
            .strip_prefix("curl -s http://")
            .filter(|c| c.ends_with("/items/1000"))
        {
            curl = Some(format!("http://{cmd}"));
            break;
        }
    }
    let url = curl.expect("dev mode prints a curl for /items/1000");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let item: serde_json::Value = client
        .get(&url)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(item["blocked"], false);
    assert!(item["inventory"].is_number());
    assert!(item["location"].is_array());

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = child.wait().expect("veneer exits");
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
}
