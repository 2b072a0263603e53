//! End to end against rpc/encoded as a real implementation speaks it: PHP's SoapServer
//! (ext-soap, as MantisBT and many PHP ERPs run it) on PHP's built-in web server, serving
//! corpus WSDLs. PHP must decode the gateway's encoded requests (`xsi:type` on every value,
//! a `soapenc:Array`, a struct) and the gateway must decode PHP's replies, including the
//! empty 202 of a one-way operation.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

/// PHP's built-in server; killed when dropped.
struct Php {
    child: Child,
    base: String,
}

impl Drop for Php {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `php -S 127.0.0.1:0 <script>` and waits for the line naming the port it bound.
fn start_php(script: &str, env: &[(&str, &Path)]) -> Php {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("php")
        .args(["-S", "127.0.0.1:0", script])
        .envs(env.iter().copied())
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("php runs (scripts/test.sh installs php-cli and php-soap)");
    let stderr = child.stderr.take().expect("stderr piped");
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    let found = loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break None,
            Ok(_) => {
                if let Some(url) = line.split("Development Server (").nth(1).and_then(|r| r.split(')').next()) {
                    break Some(url.to_string());
                }
            }
        }
    };
    // Keep draining PHP's log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in reader.lines() {});
    match found {
        Some(base) => Php { child, base },
        None => {
            let _ = child.kill();
            panic!("php -S did not start (is php-cli installed?)");
        }
    }
}

const ROUTES: &str = r#"
routes:
  - route: "GET /issues/{id}"
    backend: mantis
    operation: mc_issue_get
    request: { username: "{header.x-user}", password: "{header.x-password}", issue_id: "{path.id}" }
    response: return
  - route: "POST /issues/batch"
    backend: mantis
    operation: mc_issues_get
    request: { username: "{header.x-user}", password: "{header.x-password}", issue_ids: "{body.ids}" }
    response: return
  - route: "POST /issues/{id}/notes"
    backend: mantis
    operation: mc_issue_note_add
    request: { username: "{header.x-user}", password: "{header.x-password}", issue_id: "{path.id}", note: "{body}" }
    response: return
"#;

/// A config directory with one backend `name` (the corpus WSDL `wsdl`, at `url`) and `routes`.
fn config(name: &str, wsdl: &str, url: &str, routes: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("routes")).expect("mkdir");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wsdl").join(wsdl), dir.path().join(wsdl))
        .expect("copy wsdl");
    std::fs::write(dir.path().join("gateway.yaml"), "{}\n").expect("write");
    let backend = format!("backends:\n  {name}:\n    url: \"{url}/\"\n    wsdl: {wsdl}\n");
    std::fs::write(dir.path().join("routes").join(format!("{name}.yaml")), backend + routes).expect("write");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_soapserver_speaks_rpc_encoded_with_the_gateway() {
    let php = start_php("tests/php/mantis_server.php", &[]);
    let dir = config("mantis", "mantisconnect.wsdl", &php.base, ROUTES);
    let gw = common::with_config(dir.path()).await;
    let c = common::client();
    let login = |r: reqwest::RequestBuilder| r.header("x-user", "reporter").header("x-password", "s3cr&t<");

    // An encoded struct comes back typed: integers, nested structs, a SOAP-ENC array, nil.
    let res = login(c.get(gw.url("/issues/99"))).send().await.expect("request");
    assert_eq!(res.status(), 200);
    let issue: Value = res.json().await.expect("json");
    assert_eq!(issue["id"], 99);
    assert_eq!(issue["description"], "Ölstand <niedrig> & steigend");
    assert_eq!(issue["project"], json!({ "id": 1, "name": "plant" }));
    assert_eq!(issue["customFields"].as_array().map(Vec::len), Some(2), "{issue}");
    assert_eq!(issue["customFields"][0]["field"]["name"], "line");
    assert_eq!(issue["attachments"], json!([]));
    assert_eq!(issue["sticky"], false);

    // The password with & and < reached PHP intact (else: Access denied).
    let denied = c.get(gw.url("/issues/99")).header("x-user", "reporter").header("x-password", "wrong");
    let p = common::problem(denied.send().await.expect("request"), 422).await;
    assert_eq!(p["fault"]["reason"], "Access denied");
    let p = common::problem(login(c.get(gw.url("/issues/5000"))).send().await.expect("request"), 422).await;
    assert_eq!(p["fault"]["reason"], "Issue #5000 not found");

    // A JSON array becomes a SOAP-ENC array PHP reads as a PHP array, and back.
    let res =
        login(c.post(gw.url("/issues/batch"))).json(&json!({ "ids": [7, "8", 9] })).send().await.expect("request");
    assert_eq!(res.status(), 200);
    let issues: Value = res.json().await.expect("json");
    let ids: Vec<&Value> = issues.as_array().expect("array").iter().map(|i| &i["id"]).collect();
    assert_eq!(ids, [&json!(7), &json!(8), &json!(9)]);

    // A JSON object becomes an encoded struct PHP reads as an object.
    let text = "Öl nachgefüllt <b>&amp;</b> ]]>";
    let res = login(c.post(gw.url("/issues/42/notes")))
        .json(&json!({ "text": text, "viewState": { "id": 10 } }))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let id: Value = res.json().await.expect("json");
    assert_eq!(id, json!(42 * 1000 + text.len() + 10), "PHP decoded every byte of the note and its nested struct");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_operation_answers_202_once_php_accepted_it() {
    let marker_dir = tempfile::tempdir().expect("tempdir");
    let marker = marker_dir.path().join("logout");
    let php = start_php("tests/php/reforma_server.php", &[("REFORMA_MARKER", &marker)]);
    let routes = r#"
routes:
  - route: "POST /logout"
    backend: reforma
    operation: Logout
    request: {}
  - route: "GET /requests"
    backend: reforma
    operation: GetRequestList
    request: {}
    response: return
"#;
    let dir = config("reforma", "reformagkh.wsdl", &php.base, routes);
    let gw = common::with_config(dir.path()).await;
    let c = common::client();

    let res = c.post(gw.url("/logout")).send().await.expect("request");
    assert_eq!(res.status(), 202);
    assert!(res.headers().get("content-type").is_none());
    assert_eq!(res.bytes().await.expect("body").len(), 0);
    assert_eq!(std::fs::read_to_string(&marker).expect("PHP ran Logout"), "logged out");

    // A request-response operation of the same encoded service: a SOAP-ENC array of structs,
    // an enumerated int, a nil dateTime.
    let res = c.get(gw.url("/requests")).send().await.expect("request");
    assert_eq!(res.status(), 200);
    let list: Value = res.json().await.expect("json");
    assert_eq!(list[0]["inn"], "7701234567");
    assert_eq!(list[0]["updateDate"], Value::Null);
    assert_eq!(list[1]["status"], 3);
    assert_eq!(list.as_array().map(Vec::len), Some(2));
}
