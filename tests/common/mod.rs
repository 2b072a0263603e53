//! Shared helpers for end-to-end tests: start the gateway on a free loopback port over a
//! config (a directory, or the embedded sample with its in-process ERP) and stop it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use veneer::config::compile::CompileOptions;
use veneer::config::{self, ConfigSource};
use veneer::server::{self, AppState};

/// The dev-mode demo client's secret in tests.
pub const DEV_SECRET: &str = "test-dev-secret";

/// A running gateway; stopped (gracefully) when dropped.
pub struct Gateway {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A token of the demo client (dev mode only).
    pub token: Option<String>,
    /// The data directory of dev mode's queue, removed with the gateway.
    pub data: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
}

impl Gateway {
    /// The URL of a path on this gateway.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client that sends the demo client's bearer token, when there is one.
    pub fn client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = &self.token {
            headers.insert("authorization", format!("Bearer {t}").parse().expect("header value"));
        }
        reqwest::Client::builder().no_proxy().default_headers(headers).build().expect("client")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds a free loopback port, compiles the config (knowing its own URL) and serves it.
async fn start(source: ConfigSource, mut options: CompileOptions) -> Gateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let addr: SocketAddr = listener.local_addr().expect("local addr");
    let base = format!("http://{addr}");
    if options.dev_client.is_some() || options.issuer.as_deref() == Some(SELF) {
        options.issuer = Some(base.clone());
    }
    let gateway = config::compile(&source, &options).unwrap_or_else(|e| panic!("test config must compile:\n{e}"));
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(server::run(listener, AppState::new(gateway), async move {
        let _ = rx.await;
    }));
    Gateway { base, token: None, data: None, stop: Some(tx) }
}

/// Gets a client-credentials token from the gateway's own token endpoint.
pub async fn token(gw: &Gateway, id: &str, secret: &str, scope: Option<&str>) -> reqwest::Response {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    client().post(gw.url("/oauth2/token")).basic_auth(id, Some(secret)).form(&form).send().await.expect("token request")
}

/// A client-credentials access token from the gateway at `base` (panics if refused).
pub async fn access_token(base: &str, id: &str, secret: &str) -> String {
    let res = client()
        .post(format!("{base}/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token request");
    assert_eq!(res.status(), 200, "token for {id}");
    let body: serde_json::Value = res.json().await.expect("token json");
    body["access_token"].as_str().expect("access_token").to_string()
}

/// The gateway over the embedded sample config, with the sample ERP in-process (dev mode),
/// holding a demo-client token with every scope.
pub async fn dev() -> Gateway {
    let erp = veneer::dev::start().await.expect("sample ERP starts");
    let data = tempfile::tempdir().expect("data dir");
    let options = CompileOptions {
        backend_urls: [("erp".to_string(), erp.url)].into(),
        issuer: None,
        dev_client: Some((veneer::dev::DEMO_CLIENT.to_string(), DEV_SECRET.to_string())),
        dev_admin: None,
        data_dir: Some(data.path().to_path_buf()),
        retained: Default::default(),
    };
    let mut gw = start(ConfigSource::Embedded, options).await;
    gw.data = Some(data);
    let res = token(&gw, veneer::dev::DEMO_CLIENT, DEV_SECRET, None).await;
    assert_eq!(res.status(), 200, "dev token");
    let body: serde_json::Value = res.json().await.expect("token json");
    gw.token = body["access_token"].as_str().map(str::to_string);
    gw
}

/// Marks `CompileOptions::issuer` as "this gateway's own URL", known once it is bound.
pub const SELF: &str = "self";

/// The gateway over a config directory whose built-in issuer is the gateway's own URL.
pub async fn with_config_self_issuer(dir: &Path) -> Gateway {
    start(ConfigSource::Dir(dir.to_path_buf()), CompileOptions { issuer: Some(SELF.into()), ..Default::default() })
        .await
}

/// The gateway over a config directory.
pub async fn with_config(dir: &Path) -> Gateway {
    start(ConfigSource::Dir(dir.to_path_buf()), CompileOptions::default()).await
}

/// An HTTP client that never uses a proxy (tests talk to loopback only).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

/// Asserts a problem+json response and returns its body.
pub async fn problem(res: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert_eq!(ct, "application/problem+json", "content type");
    let body: serde_json::Value = res.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status, "problem status member: {body}");
    assert!(body["type"].as_str().is_some_and(|t| !t.is_empty()), "problem type: {body}");
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "problem title: {body}");
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()), "problem detail: {body}");
    body
}

/// A SOAP 1.1 answer to the sample ERP's GetItem (item 1000), for backends written in tests.
pub const ITEM_RESPONSE: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetItemResponse xmlns="urn:veneer:sample-erp"><GetItemResult><No>1000</No><Description>Pump</Description><Base_Unit_of_Measure>PCS</Base_Unit_of_Measure><Inventory>1</Inventory><Unit_Price>2</Unit_Price><Blocked>false</Blocked><Last_Date_Modified>2026-01-01T00:00:00Z</Last_Date_Modified></GetItemResult></GetItemResponse></soap:Body></soap:Envelope>"#;

/// A config directory with the sample WSDL, the named sample route files (with their
/// `scopes:` lines removed when `open`), and `gateway_yaml` as gateway.yaml.
pub fn config_dir(gateway_yaml: &str, route_files: &[&str], open: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    std::fs::create_dir_all(dir.path().join("wsdl")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("routes")).expect("mkdir");
    std::fs::copy(root.join("wsdl/sample-erp.wsdl"), dir.path().join("wsdl/sample-erp.wsdl")).expect("copy wsdl");
    for f in route_files {
        let text = std::fs::read_to_string(root.join("routes").join(f)).expect("sample routes");
        let text: String = text
            .lines()
            .filter(|l| !(open && l.trim_start().starts_with("scopes:")))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(dir.path().join("routes").join(f), text).expect("write routes");
    }
    std::fs::write(dir.path().join("gateway.yaml"), gateway_yaml).expect("write gateway.yaml");
    dir
}

/// The npm `oidc-provider` (tests/oidc/provider.mjs) on a free loopback port; stopped when dropped.
pub struct OidcProvider {
    child: std::process::Child,
    /// Its issuer URL (`http://127.0.0.1:PORT`).
    pub issuer: String,
}

impl OidcProvider {
    /// Starts it and waits for the line announcing its address.
    pub fn start() -> OidcProvider {
        use std::io::BufRead;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "run scripts/test.sh (it runs `npm ci` in tests/oidc)"
        );
        let mut child = std::process::Command::new("node")
            .arg(dir.join("provider.mjs"))
            .args(["--port", "0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("node runs");
        let mut line = String::new();
        let read = std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
        match (read, line.trim().strip_prefix("LISTENING ")) {
            (Ok(_), Some(issuer)) => OidcProvider { issuer: issuer.to_string(), child },
            _ => {
                let _ = child.kill();
                panic!("oidc-provider did not start; it printed {line:?}");
            }
        }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The spyne server; killed when dropped.
pub struct Spyne {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Drop for Spyne {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts spyne on port 0 and waits for the line announcing the port it bound.
pub fn start_spyne() -> Spyne {
    start_spyne_on(0)
}

/// Starts spyne on `port` (0: any free one) and waits for the line announcing it.
pub fn start_spyne_on(port: u16) -> Spyne {
    start_spyne_script("plant_service.py", &["--port", &port.to_string()])
}

/// Starts one of the spyne servers in `tests/spyne/` with `args` (which pick the port) and
/// waits for the line announcing the address it bound.
pub fn start_spyne_script(script: &str, args: &[&str]) -> Spyne {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spyne").join(script);
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs (scripts/test.sh installs spyne)");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut line = String::new();
    let read = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
    let addr = line.trim().strip_prefix("LISTENING ").map(str::to_string);
    match (read, addr) {
        (Ok(_), Some(addr)) => Spyne { child, base: format!("http://{addr}") },
        _ => {
            let _ = child.kill();
            panic!("spyne did not start (is `pip install spyne==2.14.0 lxml` done?); it printed {line:?}");
        }
    }
}

/// A child process killed (and reaped) when dropped, so a test that fails half-way leaves
/// nothing running.
pub struct Process(pub std::process::Child);

impl std::ops::Deref for Process {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The gateway binary over `dir`; killed when dropped.
pub struct Veneer {
    /// The process.
    pub child: std::process::Child,
    /// `http://ADDR` of the main listener.
    pub base: String,
    /// `http://ADDR` of the metrics listener, when the config has one.
    pub metrics: Option<String>,
}

impl Drop for Veneer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Veneer {
    /// Starts `veneer serve` over `dir` on a free port, with `env` set; ready once it logs
    /// the address it listens on (and the metrics listener's, which is bound before it).
    pub fn serve(dir: &Path, env: &[(&str, &str)]) -> Veneer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_veneer"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(dir)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,veneer::access=off")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("veneer starts");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let local = |line: &str| {
            let addr = line.split("local=").nth(1).and_then(|r| r.split_whitespace().next()).expect("local=ADDR");
            format!("http://{addr}")
        };
        // The metrics listener (when configured) is bound after the main one is announced.
        let wants_metrics =
            std::fs::read_to_string(dir.join("gateway.yaml")).is_ok_and(|t| t.contains("metrics_listen"));
        let (mut base, mut metrics) = (None, None);
        while base.is_none() || (wants_metrics && metrics.is_none()) {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("veneer exited before listening");
            };
            if line.contains("metrics listener") {
                metrics = Some(local(&line));
            }
            if line.contains("veneer is listening") {
                base = Some(local(&line));
            }
        }
        let base = base.unwrap_or_default();
        // Keep draining the log so the gateway never blocks on a full pipe; with
        // VENEER_TEST_LOGS=DIR each gateway's log is kept there for a post-mortem.
        let keep =
            std::env::var_os("VENEER_TEST_LOGS").map(|d| Path::new(&d).join(format!("veneer-{}.log", child.id())));
        std::thread::spawn(move || {
            use std::io::Write;
            let mut file = keep.and_then(|p| std::fs::File::create(p).ok());
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
            }
        });
        Veneer { child, base, metrics }
    }
}

/// A `redis-server` on a loopback port; stopped when dropped.
pub struct Redis {
    child: std::process::Child,
    /// Its port.
    pub port: u16,
    /// Its working directory (where a test that turns persistence on makes it write),
    /// removed with it.
    _dir: Option<tempfile::TempDir>,
}

impl Redis {
    /// Starts redis-server on `port` (a restart on the same port, say).
    pub fn start_on(port: u16) -> Redis {
        Redis::spawn(port, &["--appendonly", "no"]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts it on a free port with append-only persistence in `dir` (fsync per write).
    pub fn start_durable(dir: &Path) -> Redis {
        let dir = dir.display().to_string();
        on_a_free_port(|port| Redis::spawn(port, &["--appendonly", "yes", "--appendfsync", "always", "--dir", &dir]))
    }

    /// Starts it on a free port.
    pub fn start() -> Redis {
        on_a_free_port(|port| Redis::spawn(port, &["--appendonly", "no"]))
    }

    /// Ready once this process says so on its own output: a port probe could be answered
    /// by another server that took the port first.
    fn spawn(port: u16, extra: &[&str]) -> Result<Redis, String> {
        // A directory of its own unless the caller gives one: never the test's working
        // directory (a test may turn append-only persistence on at run time).
        let dir = (!extra.contains(&"--dir")).then(|| tempfile::tempdir().expect("tempdir"));
        let own = dir.as_ref().map(|d| d.path().display().to_string());
        let mut child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(own.iter().flat_map(|d| ["--dir", d.as_str()]))
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test.sh installs it)");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut printed = String::new();
        for line in lines.by_ref().map_while(Result::ok) {
            if line.contains("Ready to accept connections") {
                // Keep draining, so the server never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
                return Ok(Redis { child, port, _dir: dir });
            }
            printed.push_str(&line);
            printed.push('\n');
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("redis-server did not start on port {port}:\n{printed}"))
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `mosquitto` MQTT broker on a loopback port, anonymous, no persistence; stopped when
/// dropped.
pub struct Mosquitto {
    child: std::process::Child,
    /// Its port.
    pub port: u16,
    /// Holds mosquitto.conf and the broker's stderr (mosquitto.log); removed with it.
    dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts it on a free port.
    pub fn start() -> Mosquitto {
        on_a_free_port(|port| Mosquitto::try_start_with(port, ""))
    }

    /// Starts it on `port` and waits until it accepts connections.
    pub fn start_on(port: u16) -> Mosquitto {
        Mosquitto::start_with(port, "")
    }

    /// Starts it on `port` with `extra` lines in its config (another listener, TLS files).
    pub fn start_with(port: u16, extra: &str) -> Mosquitto {
        Mosquitto::try_start_with(port, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Ready once this broker logs that it runs (after opening its listener): a port probe
    /// could be answered by another server that took the port first.
    fn try_start_with(port: u16, extra: &str) -> Result<Mosquitto, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 1000\n\
                 max_queued_messages 100000\npersistence false\nlog_dest stderr\nlog_type error\nlog_type information\n\
                 # Run as root, mosquitto drops to its own user, which cannot read the test's files;\n\
                 # as anyone else this has no effect.\nuser root\n{extra}"
            ),
        )
        .expect("write mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        // Debian installs the broker in /usr/sbin, often not on a test runner's PATH.
        let bin = if Path::new("/usr/sbin/mosquitto").exists() { "/usr/sbin/mosquitto" } else { "mosquitto" };
        let mut child = std::process::Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("mosquitto.log"))
            .spawn()
            .expect("mosquitto runs (scripts/test.sh installs it)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let printed = std::fs::read_to_string(&log).unwrap_or_default();
            if printed.contains(&format!("listen socket on port {port}")) && printed.contains(" running") {
                break;
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(match exited {
                    Some(status) => format!("mosquitto exited ({status}) before listening on {port}: {printed}"),
                    None => format!("mosquitto did not listen on 127.0.0.1:{port} within 10 s: {printed}"),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(Mosquitto { child, port, dir })
    }

    /// Stops it (kill -9).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Publishes `messages` to `topic` on the broker at 127.0.0.1:`port`, QoS 1, one message per
/// line (`mosquitto_pub -l`), in order; panics unless mosquitto_pub exits 0.
pub fn mosquitto_pub(port: u16, topic: &str, messages: &[String]) {
    use std::io::Write;
    for m in messages {
        assert!(!m.contains('\n') && !m.is_empty(), "mosquitto_pub -l sends one non-empty line per message: {m:?}");
    }
    let mut child = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-t", topic, "-l"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_pub runs (scripts/test.sh installs mosquitto-clients)");
    let text: String = messages.iter().map(|m| format!("{m}\n")).collect();
    // Dropping stdin closes it: mosquitto_pub then sends what is left and exits. A write
    // error (it exited early, e.g. no broker) is reported with its stderr below.
    let written = child.stdin.take().expect("stdin").write_all(text.as_bytes());
    let out = child.wait_with_output().expect("mosquitto_pub finishes");
    assert!(
        out.status.success() && written.is_ok(),
        "mosquitto_pub to {topic} on port {port} failed ({}, stdin: {written:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `veneer check` with a memory ceiling and a time limit: a regression that reads
/// /dev/zero fails the test rather than exhausting the machine.
pub fn bounded_check(conf: &Path) -> (bool, String) {
    let mut child = std::process::Command::new("sh")
        .args(["-c", "ulimit -v 4000000; exec \"$0\" check --config \"$1\""])
        .arg(env!("CARGO_BIN_EXE_veneer"))
        .arg(conf)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("check");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!("veneer check did not finish within 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Runs `openssl` in `dir`; panics with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA named `ca` and a certificate for `who` (`server…` or `client…`, for 127.0.0.1)
/// signed by it, as PEM files in `dir`.
pub fn pki(dir: &Path, ca: &str, who: &str) {
    if !dir.join(format!("{ca}.pem")).exists() {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={ca}"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{who}.key"),
            "-out",
            &format!("{who}.csr"),
            "-subj",
            &format!("/CN={who}"),
        ],
    );
    let usage = if who.starts_with("client") { "clientAuth" } else { "serverAuth" };
    std::fs::write(
        dir.join(format!("{who}.ext")),
        format!("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"),
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{who}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{who}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{who}.ext"),
        ],
    );
}

/// Starts a server on a free loopback port, trying another when the one picked was taken
/// in the meantime (the port is found by binding 0 and released before the server binds).
fn on_a_free_port<T>(start: impl Fn(u16) -> Result<T, String>) -> T {
    let mut last = String::new();
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        match start(port) {
            Ok(server) => return server,
            Err(e) => last = e,
        }
    }
    panic!("no free port worked; the last attempt: {last}")
}

/// Polls `check` until it holds, failing the test after `limit`: the one way tests wait for
/// a condition (never a fixed sleep).
pub async fn eventually(what: &str, limit: std::time::Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The JSON text a spyne statistics operation (`ReadingStats`, `MeasurementStats`) answers,
/// asked over SOAP directly (not through the gateway), so the counts are the ERP's; `None`
/// while spyne is down.
pub async fn spyne_stats(base: &str, operation: &str) -> Option<serde_json::Value> {
    spyne_stats_in(base, "urn:veneer:test:plant", operation).await
}

/// [`spyne_stats`] for a server whose namespace is `ns`.
pub async fn spyne_stats_in(base: &str, ns: &str, operation: &str) -> Option<serde_json::Value> {
    let body = format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><{operation} xmlns="{ns}"/></soap:Body></soap:Envelope>"#
    );
    let res = client()
        .post(format!("{base}/"))
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", format!("\"{operation}\""))
        .body(body)
        .send()
        .await
        .ok()?;
    let xml = res.text().await.ok()?;
    // The JSON text inside <…{operation}Result>, whatever prefix spyne chose.
    let text = xml
        .split_once(&format!("{operation}Result>"))
        .and_then(|(_, rest)| rest.split_once("</"))
        .map(|(text, _)| text)
        .unwrap_or_else(|| panic!("unexpected {operation} answer: {xml}"))
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    Some(serde_json::from_str(&text).expect("stats json"))
}

/// Checks that the JSON-text decoder (the request path's) agrees byte for byte with the
/// tree decoder on one message: the whole body, every key path down to three levels, a
/// missing key and a path through an array or a scalar. Returns what disagreed.
pub fn text_decoder_agrees(
    op: &veneer::schema::Operation,
    schema: &veneer::schema::SchemaSet,
    bytes: &[u8],
    what: &str,
) -> Vec<String> {
    use serde_json::Value;
    use veneer::translate::decode::{self, Decoded};

    let tree = decode::response_with_faults(&op.output, &op.faults, schema, bytes);
    let text = |select: &[String]| decode::response_json(&op.output, &op.faults, schema, bytes, select);
    let whole = match (&tree, text(&[])) {
        (Ok(Decoded::Body(v)), Ok(Decoded::Body(_))) => v.clone(),
        (Ok(Decoded::Fault(a)), Ok(Decoded::Fault(b))) if *a == b => return Vec::new(),
        (Err(a), Err(b)) if *a == b => return Vec::new(),
        (a, b) => return vec![format!("{what}: the decoders disagree: {a:?} / {b:?}")],
    };
    let mut paths: Vec<Vec<String>> = vec![vec![], vec!["no-such-key".into()]];
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        let Value::Object(map) = v else { return };
        for (k, child) in map {
            path.push(k.clone());
            out.push(path.clone());
            if path.len() < 3 {
                walk(child, path, out);
            }
            if !child.is_object() {
                // Below an array or a scalar: `null`.
                path.push("x".into());
                out.push(path.clone());
                path.pop();
            }
            path.pop();
        }
    }
    walk(&whole, &mut Vec::new(), &mut paths);
    let mut problems = Vec::new();
    for path in &paths {
        let expected = path.iter().try_fold(&whole, |v, k| v.get(k)).unwrap_or(&Value::Null);
        let expected = serde_json::to_string(expected).unwrap_or_default();
        match text(path) {
            Ok(Decoded::Body(t)) if t == expected.as_bytes() => {}
            other => problems.push(format!(
                "{what} at {path:?}: expected {expected}, text decoder gave {:?}",
                other.map(|d| match d {
                    Decoded::Body(t) => String::from_utf8_lossy(&t).into_owned(),
                    Decoded::Fault(f) => format!("{f:?}"),
                })
            )),
        }
    }
    problems
}
