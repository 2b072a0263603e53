//! The docs page in a real browser: headless Chromium (Debian's) driven by playwright-core
//! loads `/docs`, authorizes with the demo client through Veneer's own token endpoint, runs
//! `GET /items/{no}` with "Try it out" and sees typed JSON. The screenshot is kept in
//! `tests/artifacts/docs.png`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn docs_page_authorizes_and_runs_a_call() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("tests/browser/node_modules/playwright-core").exists(),
        "run scripts/test.sh (it runs `npm ci` in tests/browser)"
    );
    let data = tempfile::tempdir().expect("data dir");
    let mut gateway = common::Process(
        Command::new(env!("CARGO_BIN_EXE_veneer"))
            .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
            .env("VENEER_DEV_SECRET", "browser-secret")
            .env("VENEER_DATA", data.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            // Kept in a file: if the gateway stops early, its last words explain the failure.
            .stderr(std::fs::File::create(data.path().join("gateway.log")).expect("log file"))
            .spawn()
            .expect("veneer starts"),
    );
    let stdout = gateway.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut base = None;
    for line in lines.by_ref() {
        let line = line.expect("line");
        if let Some(rest) = line.split("gateway at ").nth(1) {
            base = Some(rest.trim().to_string());
            break;
        }
    }
    let base = base.expect("dev mode prints its address");
    // The rest of the welcome text is read too: the test is about the docs page.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    let shot = root.join("tests/artifacts/docs.png");
    let out = Command::new("node")
        .arg(root.join("tests/browser/docs.mjs"))
        .args([&base, "demo", "browser-secret"])
        .arg(&shot)
        .output()
        .expect("node runs");
    let early_exit = gateway.try_wait().expect("gateway status");
    let _ = gateway.kill();
    let _ = gateway.wait();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(data.path().join("gateway.log")).unwrap_or_default();
    assert!(
        out.status.success() && text.contains("DOCS OK"),
        "docs page test failed:\n{text}\ngateway exited early: {early_exit:?}\ngateway log:\n{log}"
    );
    assert!(shot.exists(), "screenshot saved");
}
