//! The container recipe cannot rot silently. No container engine can pull base images where
//! the tests run, so this test does what `docker build` would do up to the compiler: it reads
//! the Dockerfile's build stage, assembles the build context from its `COPY` lines (filtered
//! by `.dockerignore`) into a temporary directory, and runs the stage's cargo command there.
//! It also checks that the runtime stage copies only what the build stage produces.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One Dockerfile instruction: keyword (upper case) and its arguments.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

/// One stage: its `FROM` arguments and the instructions after it.
#[derive(Debug)]
struct Stage {
    from: String,
    body: Vec<Instruction>,
}

impl Stage {
    /// The `AS` name, lower-cased (stage names are case-insensitive).
    fn name(&self) -> Option<String> {
        let words: Vec<&str> = self.from.split_whitespace().collect();
        words.windows(2).find(|w| w[0].eq_ignore_ascii_case("as")).map(|w| w[1].to_ascii_lowercase())
    }

    fn all(&self, keyword: &str) -> impl Iterator<Item = &Instruction> {
        self.body.iter().filter(move |i| i.keyword == keyword)
    }
}

/// Splits a Dockerfile into stages. Handles comments, blank lines and `\` continuations
/// (comment lines inside a continuation are dropped, as Docker does).
fn stages(text: &str) -> Vec<Stage> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.trim().is_empty() {
        logical.push(current);
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((line.as_str(), ""));
        let keyword = keyword.to_ascii_uppercase();
        let args = args.trim().to_string();
        if keyword == "FROM" {
            stages.push(Stage { from: args, body: Vec::new() });
        } else if let Some(stage) = stages.last_mut() {
            stage.body.push(Instruction { keyword, args });
        }
    }
    stages
}

/// A `COPY`: its `--flag=value` options, sources and destination.
#[derive(Debug)]
struct Copy {
    from: Option<String>,
    sources: Vec<String>,
    dest: String,
}

fn copy(args: &str) -> Copy {
    let words: Vec<String> = if args.starts_with('[') {
        serde_json::from_str(args).unwrap_or_else(|e| panic!("COPY {args}: bad JSON form: {e}"))
    } else {
        args.split_whitespace().map(str::to_string).collect()
    };
    let mut from = None;
    let mut paths = Vec::new();
    for w in words {
        match w.strip_prefix("--") {
            Some(flag) => {
                if let Some(stage) = flag.strip_prefix("from=") {
                    from = Some(stage.to_ascii_lowercase());
                }
            }
            None => paths.push(w),
        }
    }
    let dest = paths.pop().unwrap_or_else(|| panic!("COPY {args}: no destination"));
    assert!(!paths.is_empty(), "COPY {args}: no source");
    Copy { from, sources: paths, dest }
}

/// `.dockerignore` patterns, in order; `!` patterns re-include.
struct Ignore {
    patterns: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    fn load(root: &Path) -> Self {
        let text = std::fs::read_to_string(root.join(".dockerignore")).unwrap_or_default();
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (negated, p) = l.strip_prefix('!').map_or((false, l), |p| (true, p));
                (
                    negated,
                    p.trim_matches('/').split('/').filter(|s| !s.is_empty() && *s != ".").map(String::from).collect(),
                )
            })
            .collect();
        Ignore { patterns }
    }

    /// Whether `rel` (a path inside the context) is left out. As in Docker, a pattern
    /// matching a parent directory leaves out everything under it; the last match wins.
    fn ignored(&self, rel: &Path) -> bool {
        let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        let mut ignored = false;
        for (negated, pattern) in &self.patterns {
            if (1..=parts.len()).any(|n| glob(pattern, &parts[..n])) {
                ignored = !negated;
            }
        }
        ignored
    }

    fn has_negations(&self) -> bool {
        self.patterns.iter().any(|(n, _)| *n)
    }
}

/// Path-segment glob: `**` spans any number of segments, `*` and `?` stay within one.
fn glob(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => (0..=path.len()).any(|skip| glob(rest, &path[skip..])),
        Some((p, rest)) => {
            path.split_first().is_some_and(|(s, tail)| segment(p.as_bytes(), s.as_bytes()) && glob(rest, tail))
        }
    }
}

fn segment(p: &[u8], s: &[u8]) -> bool {
    match (p.split_first(), s.split_first()) {
        (None, _) => s.is_empty(),
        (Some((b'*', rest)), _) => (0..=s.len()).any(|skip| segment(rest, &s[skip..])),
        (Some((b'?', rest)), Some((_, tail))) => segment(rest, tail),
        (Some((c, rest)), Some((d, tail))) => c == d && segment(rest, tail),
        (Some(_), None) => false,
    }
}

/// Copies `src` (a path in the context) to `dest`, as `COPY` does: a directory's contents
/// land in `dest`; ignored paths never leave the context.
fn copy_tree(root: &Path, ignore: &Ignore, rel: &Path, dest: &Path) {
    let src = root.join(rel);
    if src.is_dir() {
        std::fs::create_dir_all(dest).expect("mkdir");
        for entry in std::fs::read_dir(&src).expect("read dir").flatten() {
            let child = rel.join(entry.file_name());
            // Walking into an ignored tree (node_modules, venvs) is slow and, without
            // `!` patterns, cannot bring anything back.
            if ignore.ignored(&child) && !ignore.has_negations() {
                continue;
            }
            copy_tree(root, ignore, &child, &dest.join(entry.file_name()));
        }
    } else if src.is_file() && !ignore.ignored(rel) {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::copy(&src, dest).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        // Fresh modification times on purpose: cargo then checks this copy for real instead
        // of trusting check results in the shared target directory (which another checkout
        // of the package may have written from other sources).
    }
}

/// The build stage (`FROM … AS build`) and the final (runtime) stage.
fn dockerfile() -> (Stage, Stage) {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("read Dockerfile");
    let mut stages = stages(&text);
    let build = stages.iter().position(|s| s.name().as_deref() == Some("build")).expect("a `FROM … AS build` stage");
    let runtime = stages.pop().expect("a final stage");
    assert!(stages.len() > build, "the build stage is not the final stage");
    (stages.swap_remove(build), runtime)
}

/// The build stage's `WORKDIR` (absolute, no trailing slash).
fn workdir(build: &Stage) -> String {
    let w = build.all("WORKDIR").last().map(|i| i.args.trim_end_matches('/').to_string()).unwrap_or_default();
    assert!(w.starts_with('/'), "the build stage needs an absolute WORKDIR, got {w:?}");
    w
}

/// Assembles the build stage's filesystem from its `COPY` lines into `into`.
fn assemble(build: &Stage, into: &Path) {
    let root = repo();
    let ignore = Ignore::load(&root);
    let workdir = workdir(build);
    for c in build.all("COPY").map(|i| copy(&i.args)).filter(|c| c.from.is_none()) {
        let dest = match c.dest.strip_prefix('/') {
            Some(_) => c
                .dest
                .strip_prefix(&workdir)
                .unwrap_or_else(|| panic!("COPY to {} is outside WORKDIR {workdir}", c.dest))
                .trim_start_matches('/')
                .to_string(),
            None => c.dest.clone(),
        };
        let dest_path = into.join(&dest);
        let into_dir = c.dest.ends_with('/') || c.sources.len() > 1 || dest_path.is_dir();
        for s in &c.sources {
            assert!(!s.contains(['*', '?', '[']), "COPY {s}: wildcards are not supported by this test");
            let rel = Path::new(s.trim_start_matches("./"));
            let src = root.join(rel);
            assert!(src.exists(), "COPY {s}: not in the build context");
            assert!(!ignore.ignored(rel), "COPY {s}: left out of the context by .dockerignore");
            let target = if src.is_file() && into_dir {
                dest_path.join(rel.file_name().expect("file name"))
            } else {
                dest_path.clone()
            };
            copy_tree(&root, &ignore, rel, &target);
        }
    }
}

/// The cargo command of the build stage's `RUN` line, as words.
fn build_command(build: &Stage) -> Vec<String> {
    build
        .all("RUN")
        .flat_map(|i| i.args.split("&&").map(str::trim).map(String::from).collect::<Vec<_>>())
        .find(|c| c.starts_with("cargo "))
        .expect("a RUN line with a cargo command")
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Reuse the dependencies this repository has already compiled.
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    c.env("CARGO_TARGET_DIR", target);
    c
}

/// Runs the build stage's cargo command in `dir`, as `cargo check` in the dev profile,
/// offline. Checking reads the manifest, resolves the lock file and compiles every crate of
/// the build up to code generation, which is where a missing file or target shows; a
/// release build would take many minutes more and prove nothing extra about the context.
fn run_build_command(build: &Stage, dir: &Path) -> (bool, String) {
    let words = build_command(build);
    assert_eq!(words.get(1).map(String::as_str), Some("build"), "expected `cargo build …`, got {words:?}");
    // The dev profile: an optimised profile would compile every dependency again.
    let mut args = Vec::new();
    let mut rest = words[2..].iter().map(String::as_str);
    while let Some(a) = rest.next() {
        match a {
            "--release" => {}
            "--profile" => {
                rest.next();
            }
            a if a.starts_with("--profile=") => {}
            a => args.push(a),
        }
    }
    let out = cargo().arg("check").args(&args).arg("--offline").current_dir(dir).output().expect("run cargo");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn build_stage_compiles_from_its_own_context() {
    let (build, _) = dockerfile();
    let dir = tempfile::tempdir().expect("tempdir");
    assemble(&build, dir.path());
    let (ok, err) = run_build_command(&build, dir.path());
    assert!(ok, "the Dockerfile's build stage does not build from the files it copies:\n{err}");
}

#[test]
fn a_context_without_the_declared_benches_is_refused() {
    // The bug this test exists for: Cargo.toml declares [[bench]] targets, so a context
    // without benches/ cannot even be read as a manifest.
    let (build, _) = dockerfile();
    let dir = tempfile::tempdir().expect("tempdir");
    assemble(&build, dir.path());
    std::fs::remove_dir_all(dir.path().join("benches")).expect("benches/ was copied");
    let (ok, err) = run_build_command(&build, dir.path());
    assert!(!ok, "cargo accepted a context without benches/");
    assert!(err.contains("bench") && err.contains("can't find"), "{err}");
}

#[test]
fn dockerignore_patterns_match_like_docker() {
    let ignore = Ignore::load(&repo());
    for kept in ["Cargo.toml", "src/main.rs", "benches/translate.rs", "config/wsdl/sample-erp.wsdl"] {
        assert!(!ignore.ignored(Path::new(kept)), "{kept} must stay in the context");
    }
    for gone in ["target/release/veneer", ".git/HEAD", "tests/oidc/node_modules/x/y.js", "benches/load/run.sh"] {
        assert!(ignore.ignored(Path::new(gone)), "{gone} must stay out of the context");
    }
    let p = |s: &str| s.split('/').map(String::from).collect::<Vec<_>>();
    assert!(glob(&p("**/node_modules"), &p("node_modules")));
    assert!(glob(&p("**/*.log"), &p("a/b/c.log")));
    assert!(!glob(&p("*.log"), &p("a/c.log")));
}

#[test]
fn runtime_stage_copies_what_the_build_stage_produces() {
    let (build, runtime) = dockerfile();
    let workdir = workdir(&build);
    let words = build_command(&build);
    // The profile the build stage names decides the directory its binaries land in.
    let profile = words
        .iter()
        .position(|w| w == "--profile")
        .and_then(|i| words.get(i + 1).cloned())
        .or_else(|| words.iter().find_map(|w| w.strip_prefix("--profile=").map(String::from)))
        .or_else(|| words.iter().any(|w| w == "--release").then(|| "release".to_string()))
        .expect("an optimised build: --release or --profile NAME");
    assert_ne!(profile, "dev", "the image gets an optimised build");

    // The binaries Cargo.toml declares, from the manifest itself.
    let out = cargo()
        .args(["metadata", "--no-deps", "--offline", "--format-version", "1"])
        .current_dir(repo())
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let bins: BTreeSet<String> = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin")))
        .filter_map(|t| t["name"].as_str().map(String::from))
        .collect();
    let produced: BTreeSet<String> = bins.iter().map(|b| format!("{workdir}/target/{profile}/{b}")).collect();

    let ignore = Ignore::load(&repo());
    let mut installed = BTreeSet::new();
    for c in runtime.all("COPY").map(|i| copy(&i.args)) {
        match c.from.as_deref() {
            Some("build") => {
                for s in &c.sources {
                    assert!(produced.contains(s), "COPY --from=build {s}: the build stage produces only {produced:?}");
                    let name = Path::new(s).file_name().expect("file name").to_string_lossy().into_owned();
                    installed.insert(if c.dest.ends_with('/') {
                        name
                    } else {
                        c.dest.rsplit('/').next().unwrap_or(&name).to_string()
                    });
                }
            }
            Some(other) => panic!("COPY --from={other}: no such stage"),
            None => {
                for s in &c.sources {
                    let rel = Path::new(s.trim_start_matches("./"));
                    assert!(repo().join(rel).exists(), "COPY {s}: not in the build context");
                    assert!(!ignore.ignored(rel), "COPY {s}: left out of the context by .dockerignore");
                }
            }
        }
    }
    // The entry point is one of the copied binaries.
    let entry = runtime.all("ENTRYPOINT").last().expect("an ENTRYPOINT");
    let entry: Vec<String> = serde_json::from_str(&entry.args).expect("ENTRYPOINT in JSON form");
    let program = entry.first().map(|p| p.rsplit('/').next().unwrap_or(p).to_string()).unwrap_or_default();
    assert!(installed.contains(&program), "ENTRYPOINT {program:?} is not one of the copied binaries {installed:?}");
}
