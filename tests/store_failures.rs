//! The embedded store under failure, with the gateway binary and spyne as the ERP: a disk
//! that fills up and frees again (a real tmpfs of a few MiB), and a damaged store file at
//! start. Every count of what was booked is taken inside the ERP.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ROUTES: &str = r#"
routes:
  - route: "POST /readings"
    backend: plant
    operation: RecordReading
    delivery: queued
    request: { ReadingId: "{delivery.key}", Machine: "{body.machine}", Value: "{body.value}" }
    duplicate_faults:
      - { code: Client.Duplicate }
"#;

/// A config directory for spyne at `base` whose store lives in `data` (absolute).
async fn config(base: &str, data: &Path) -> tempfile::TempDir {
    let wsdl = common::client().get(format!("{base}/?wsdl")).send().await.expect("WSDL").text().await.expect("text");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("plant.wsdl"), wsdl).expect("write wsdl");
    let gateway_yaml = format!(
        "delivery: {{ data_dir: \"{}\", backoff: 50ms, max_backoff: 300ms }}\nbackends:\n  plant:\n    url: \"{base}/\"\n    wsdl: plant.wsdl\n    timeout: 10s\n    connect_timeout: 1s\n",
        data.display()
    );
    std::fs::write(dir.path().join("gateway.yaml"), gateway_yaml).expect("write gateway");
    std::fs::create_dir(dir.path().join("routes")).expect("mkdir");
    std::fs::write(dir.path().join("routes/plant.yaml"), ROUTES).expect("write routes");
    dir
}

/// A tmpfs of `size` mounted on a new directory; unmounted when dropped.
struct SmallDisk {
    at: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let parent = tempfile::tempdir().expect("tempdir");
        let at = parent.path().join("disk");
        std::fs::create_dir(&at).expect("mkdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill it, which needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { at, _parent: parent }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// Writes zeros into `path` until the disk is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).and_then(|()| f.sync_data()).is_ok() {}
}

async fn readyz(base: &str) -> u16 {
    common::client().get(format!("{base}/readyz")).send().await.map_or(0, |r| r.status().as_u16())
}

async fn post(base: &str, key: &str) -> reqwest::Response {
    // A long machine name makes each item a few KiB, so the disk fills within a few hundred.
    let machine = format!("m-{}", "x".repeat(4000));
    common::client()
        .post(format!("{base}/readings"))
        .header("idempotency-key", key)
        .json(&json!({ "machine": machine, "value": 1 }))
        .send()
        .await
        .expect("post")
}

fn booked(stats: &Value) -> BTreeSet<String> {
    stats["arrivals"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .flat_map(|ids| ids.as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// The disk fills: writes are refused with 503 (never a 202 that was not stored), `/readyz`
/// says 503, the workers wait instead of logging errors in a loop; the disk frees: writes
/// resume without a restart, `/readyz` follows, and every 202 is booked once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_they_resume_once_it_frees() {
    let spyne = common::start_spyne();
    let disk = SmallDisk::mount("8m");
    let data = disk.at.join("data");
    let dir = config(&spyne.base, &data).await;
    let gw = common::Veneer::serve(dir.path(), &[]);
    assert_eq!(readyz(&gw.base).await, 200);
    let mut accepted = Vec::new();
    for i in 0..5 {
        let key = format!("before-{i}");
        assert_eq!(post(&gw.base, &key).await.status(), 202);
        accepted.push(key);
    }
    fill(&disk.at.join("filler"));
    let mut refused = None;
    for i in 0..5000 {
        let key = format!("full-{i}");
        let res = post(&gw.base, &key).await;
        match res.status().as_u16() {
            202 => accepted.push(key),
            503 => {
                refused = Some(common::problem(res, 503).await);
                break;
            }
            other => panic!("a write on a full disk answered {other}"),
        }
    }
    let problem = refused.expect("a write on a full disk is refused");
    assert!(problem["type"].as_str().is_some_and(|t| t.ends_with("store-unavailable")), "{problem}");
    assert_eq!(readyz(&gw.base).await, 503, "/readyz follows the store");
    let ready: Value =
        common::client().get(format!("{}/readyz", gw.base)).send().await.expect("readyz").json().await.expect("json");
    assert!(ready["store"].as_str().is_some_and(|s| !s.is_empty()), "{ready}");
    // Still refused while full (no 202 for what cannot be stored).
    assert_eq!(post(&gw.base, "while-full").await.status(), 503);
    std::fs::remove_file(disk.at.join("filler")).expect("free the disk");
    let freed = Instant::now();
    common::eventually("/readyz 200 again", Duration::from_secs(30), || async { readyz(&gw.base).await == 200 }).await;
    let recovered = freed.elapsed();
    eprintln!(
        "disk full: {} accepted before the refusal; ready again {recovered:?} after the disk freed",
        accepted.len()
    );
    for i in 0..5 {
        let key = format!("after-{i}");
        assert_eq!(post(&gw.base, &key).await.status(), 202, "writes resume without a restart");
        accepted.push(key);
    }
    let promised: BTreeSet<String> =
        accepted.iter().map(|k| veneer::delivery::erp_key("anonymous", "POST /readings", k)).collect();
    common::eventually("every 202 booked", Duration::from_secs(60), || async {
        let stats = common::spyne_stats(&spyne.base, "ReadingStats").await.expect("stats");
        booked(&stats).is_superset(&promised)
    })
    .await;
    let stats = common::spyne_stats(&spyne.base, "ReadingStats").await.expect("stats");
    assert_eq!(stats["booked"].as_u64(), Some(booked(&stats).len() as u64), "none booked twice");
    drop(gw);
}

/// A damaged store file stops the gateway at start with a message that names the file and
/// says what to do: never a panic, never "listening".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_a_clear_error_at_start() {
    let spyne = common::start_spyne();
    let data = tempfile::tempdir().expect("tempdir");
    let dir = config(&spyne.base, data.path()).await;
    {
        let gw = common::Veneer::serve(dir.path(), &[]);
        for i in 0..200 {
            assert_eq!(post(&gw.base, &format!("k-{i}")).await.status(), 202);
        }
    }
    let file = data.path().join("veneer.redb");
    let mut bytes = std::fs::read(&file).expect("the store file");
    for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
        *b = (i * 7 % 251) as u8;
    }
    std::fs::write(&file, bytes).expect("damage it");
    let out = Command::new(env!("CARGO_BIN_EXE_veneer"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("veneer runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "no panic exit: {stderr}");
    assert!(stderr.contains(&file.display().to_string()), "names the file: {stderr}");
    assert!(stderr.contains("move it aside"), "says what to do: {stderr}");
    assert!(!stderr.contains("veneer is listening"), "{stderr}");
}
