//! The gateway run exactly as the Dockerfile's runtime stage says (no container engine runs
//! on these machines): as its `USER` (uid from its `useradd`), with its `ENV`, `WORKDIR` and
//! `CMD`, the config copied where `COPY config /etc/veneer` puts it and owned by root (the
//! runtime user cannot write it, as with a read-only mount), and the data directory the
//! image creates for that user. It must start, say it is ready, and keep its store there.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The runtime stage: its instructions after the last `FROM`, as (keyword, arguments).
fn runtime_stage() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).expect("Dockerfile");
    let joined = text.replace("\\\n", " ");
    let lines: Vec<(String, String)> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(' ').map(|(k, a)| (k.to_ascii_uppercase(), a.trim().to_string())))
        .collect();
    let last_from = lines.iter().rposition(|(k, _)| k == "FROM").expect("a FROM");
    lines[last_from + 1..].to_vec()
}

fn one(stage: &[(String, String)], keyword: &str) -> Option<String> {
    stage.iter().rev().find(|(k, _)| k == keyword).map(|(_, a)| a.clone())
}

/// `["a", "b"]` → [a, b].
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("{args} is not the exec form: {e}"))
}

fn make_readable(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn the_image_runs_as_documented_non_root_with_a_read_only_config() {
    assert_eq!(
        Command::new("id").arg("-u").output().map(|o| o.stdout).unwrap_or_default(),
        b"0\n",
        "runs as root to take the image's user"
    );
    let stage = runtime_stage();
    let user = one(&stage, "USER").expect("a USER: the image does not run as root");
    assert_ne!(user, "root");
    let runs: Vec<&String> = stage.iter().filter(|(k, _)| k == "RUN").map(|(_, a)| a).collect();
    let uid: u32 = runs
        .iter()
        .find_map(|r| {
            r.split("--uid").nth(1).and_then(|rest| rest.split_whitespace().next()).and_then(|n| n.parse().ok())
        })
        .expect("useradd --uid N");
    let env: BTreeMap<String, String> = stage
        .iter()
        .filter(|(k, _)| k == "ENV")
        .flat_map(|(_, a)| {
            a.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    let config_in_image = env.get("VENEER_CONFIG").expect("ENV VENEER_CONFIG").clone();
    let data_in_image = env.get("VENEER_DATA").expect("ENV VENEER_DATA: the store's volume").clone();
    assert!(
        stage.iter().any(|(k, a)| k == "COPY" && a.ends_with(&format!("config {config_in_image}"))),
        "the config is copied to {config_in_image}"
    );
    assert!(
        runs.iter().any(|r| r.contains(&format!("mkdir -p {data_in_image}")) && r.contains("chown")),
        "the image creates {data_in_image} for its user: {runs:?}"
    );
    let workdir = one(&stage, "WORKDIR");
    let mut argv = exec_form(&one(&stage, "ENTRYPOINT").expect("ENTRYPOINT"));
    argv.extend(exec_form(&one(&stage, "CMD").expect("CMD")));
    assert_eq!(argv.first().map(String::as_str), Some("veneer"));

    // The image's paths, here: the config owned by root, the data directory by the user.
    let root = tempfile::tempdir().expect("tempdir");
    make_readable(root.path());
    let config = root.path().join("etc-veneer");
    copy_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config"), &config);
    let data = root.path().join("var-lib-veneer");
    std::fs::create_dir(&data).expect("mkdir");
    std::os::unix::fs::chown(&data, Some(uid), Some(uid)).expect("chown");
    let map = |p: &str| -> PathBuf {
        if p == data_in_image || p.starts_with(&format!("{data_in_image}/")) {
            data.join(p.trim_start_matches(&data_in_image).trim_start_matches('/'))
        } else if p == config_in_image {
            config.clone()
        } else {
            PathBuf::from(p)
        }
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_veneer"));
    cmd.args(&argv[1..]).env_clear().env("PATH", "/usr/bin:/bin");
    for (k, v) in &env {
        let v = match k.as_str() {
            "VENEER_CONFIG" | "VENEER_DATA" => map(v).display().to_string(),
            // The image listens on every interface; here, loopback on a free port.
            "VENEER_LISTEN" => format!("127.0.0.1:{port}"),
            _ => v.clone(),
        };
        cmd.env(k, v);
    }
    cmd.current_dir(workdir.as_deref().map_or_else(|| PathBuf::from("/"), map));
    cmd.uid(uid).gid(uid).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = common::Process(cmd.spawn().expect("veneer starts"));
    let stderr = child.0.stderr.take().expect("stderr");
    let mut log = String::new();
    let ready = BufReader::new(stderr).lines().map_while(Result::ok).find(|l| {
        log.push_str(l);
        log.push('\n');
        l.contains("veneer is listening")
    });
    assert!(ready.is_some(), "the gateway did not start as the image runs it:\n{log}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let status = rt.block_on(async {
        common::client().get(format!("http://127.0.0.1:{port}/readyz")).send().await.map(|r| r.status().as_u16())
    });
    assert_eq!(status.ok(), Some(200), "{log}");
    assert!(data.join("veneer.redb").exists(), "the store is in the data volume");
    assert!(!config.join("data").exists(), "nothing is written into the config");
}

/// Copies `from` to `to`, readable by everyone, writable by its owner (root) only.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    make_readable(to);
    for entry in std::fs::read_dir(from).expect("read config").flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
    }
}
