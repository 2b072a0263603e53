//! The docs page in a real browser: headless Chromium (Debian's) driven by playwright-core
//! loads `/docs`, authorizes with the demo client through Veneer's own token endpoint, runs
//! `GET /items/{no}` with "Try it out" and sees typed JSON. The screenshot is kept in
//! `tests/artifacts/docs.png`.

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
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_veneer"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .env("VENEER_DEV_SECRET", "browser-secret")
        .env("VENEER_DATA", data.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("veneer starts");
    let stdout = gateway.stdout.take().expect("stdout");
    let mut base = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if let Some(rest) = line.split("gateway at ").nth(1) {
            base = Some(rest.trim().to_string());
            break;
        }
    }
    let base = base.expect("dev mode prints its address");
    let shot = root.join("tests/artifacts/docs.png");
    let out = Command::new("node")
        .arg(root.join("tests/browser/docs.mjs"))
        .args([&base, "demo", "browser-secret"])
        .arg(&shot)
        .output()
        .expect("node runs");
    let _ = gateway.kill();
    let _ = gateway.wait();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("DOCS OK"), "docs page test failed:\n{text}");
    assert!(shot.exists(), "screenshot saved");
}
