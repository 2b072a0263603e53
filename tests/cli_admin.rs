//! `veneer keys new`, `veneer client new`, `veneer client hash`: what IT runs to register
//! clients and rotate keys.

use std::io::Write;
use std::process::{Command, Stdio};

fn veneer(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_veneer")).args(args).output().expect("run veneer");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn keys_new_writes_private_keys_that_load_and_rotate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let (ok, out, err) = veneer(&["keys", "new", "--dir", d]);
    assert!(ok, "{err}");
    assert!(out.contains("kid "), "{out}");
    // Back to back, most likely within one millisecond: the names still differ and sort.
    let (ok, out2, _) = veneer(&["keys", "new", "--dir", d, "--alg", "EdDSA"]);
    assert!(ok);
    let keys = veneer::auth::keys::KeySet::load_dir(dir.path()).expect("keys load");
    assert_eq!(keys.jwks().keys.len(), 2);
    let newest_kid = out2.split("kid ").nth(1).and_then(|s| s.split(')').next()).expect("kid printed");
    assert_eq!(keys.signer().kid, newest_kid, "the newest key signs");
    #[cfg(unix)]
    for entry in std::fs::read_dir(dir.path()).expect("dir").flatten() {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(entry.metadata().expect("meta").permissions().mode() & 0o777, 0o600, "private keys are owner-only");
    }
    // Many keys in one burst, and a key stamped in the future (a clock set back since):
    // every new key sorts after it and signs.
    std::fs::rename(dir.path().join(newest_file(dir.path())), dir.path().join("key-900000000000000.pem"))
        .expect("rename");
    for _ in 0..5 {
        let printed = veneer::admin::new_key(dir.path(), "ES256").expect("new key");
        let kid = printed.split("kid ").nth(1).and_then(|s| s.split(')').next()).expect("kid printed");
        let keys = veneer::auth::keys::KeySet::load_dir(dir.path()).expect("keys load");
        assert_eq!(keys.signer().kid, kid, "the newest key signs");
    }
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 7);
    let (ok, _, err) = veneer(&["keys", "new", "--dir", d, "--alg", "HS256"]);
    assert!(!ok && err.contains("ES256 or EdDSA"), "{err}");
}

/// The file name that sorts last in `dir`.
fn newest_file(dir: &std::path::Path) -> std::ffi::OsString {
    std::fs::read_dir(dir).expect("dir").flatten().map(|e| e.file_name()).max().expect("a key file")
}

#[test]
fn client_new_prints_a_secret_once_and_a_matching_hash() {
    let (ok, out, err) = veneer(&["client", "new", "--id", "line-3-edge", "--scopes", "items:read,telemetry:write"]);
    assert!(ok, "{err}");
    let secret = out.lines().find_map(|l| l.strip_prefix("client_secret: ")).expect("secret line").trim().to_string();
    let hash = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret_hash: "))
        .expect("hash line")
        .trim_matches('"')
        .to_string();
    assert!(out.contains("scopes: [items:read, telemetry:write]"), "{out}");
    assert!(secret.len() >= 40, "a 256-bit secret");
    assert!(veneer::auth::clients::verify_secret(Some(&hash), &secret));
    let (ok, _, err) = veneer(&["client", "new", "--id", "bad id!", "--scopes", "a"]);
    assert!(!ok && err.contains("--id"), "{err}");
}

#[test]
fn client_hash_reads_stdin() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_veneer"))
        .args(["client", "hash"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().expect("stdin").write_all(b"made-elsewhere\n").expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(veneer::auth::clients::verify_secret(Some(&hash), "made-elsewhere"));
}
