//! ERP sessions and NetSuite token-based auth against real ERP WSDLs, with a loopback
//! capture server standing in for the ERP: it records every request and answers canned SOAP
//! messages shaped like the real system's.
//!
//! - SAP Business One (B1WS): `Login` on the LoginService, its SessionID in the ItemsService
//!   `MsgHeader`, one session for many calls, `Logout` on shutdown.
//! - Salesforce partner API: `login` on the backend URL, later calls on the `serverUrl` it
//!   answers with a `SessionHeader`, a new login after `INVALID_SESSION_ID`.
//! - NetSuite: a signed `tokenPassport` on every call, the signature recomputed by Python.
//! - The config errors a session or TBA setting can have, with their lines.
//!
//! The SAP B1 request bodies are compared with `tests/fixtures/sessions/*.xml`;
//! `BLESS=1 cargo test --test erp_session_fixtures` rewrites them, for review in the diff.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use veneer::backend::netsuite::{TokenParts, TokenPassport};
use veneer::config::compile::CompileOptions;
use veneer::config::{self, ConfigProblem, ConfigSource};
use veneer::schema::dom::{self, Node};

const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const B1_DIS: &str = "http://www.sap.com/SBO/DIS";
const NS_MESSAGES: &str = "urn:messages_2023_2.platform.webservices.netsuite.com";
const NS_CORE: &str = "urn:core_2023_2.platform.webservices.netsuite.com";

/// One request as the capture server saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    /// `SOAPAction` without its quotes.
    action: String,
    headers: HeaderMap,
    body: String,
}

impl Seen {
    /// The local name of the body's first element: the operation (Salesforce sends an empty
    /// SOAPAction for every operation, so the action cannot tell them apart).
    fn operation(&self) -> String {
        envelope(&self.body)
            .child(SOAP_ENV, "Body")
            .and_then(|b| b.children.first())
            .map(|n| n.local.clone())
            .unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Answer = Arc<dyn Fn(&Seen) -> (StatusCode, String) + Send + Sync>;

#[derive(Clone)]
struct CaptureState {
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Answer,
}

/// A loopback SOAP server recording every request; stops with the test's runtime.
#[derive(Clone)]
struct Capture {
    /// `http://127.0.0.1:PORT`.
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Capture {
    /// Binds a free port first, so the answers can name the server's own address (the
    /// Salesforce `serverUrl`).
    async fn start<F>(answer: impl FnOnce(&str) -> F) -> Capture
    where
        F: Fn(&Seen) -> (StatusCode, String) + Send + Sync + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let state = CaptureState { seen: seen.clone(), answer: Arc::new(answer(&base)) };
        let app = Router::new().fallback(record).with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Capture { base, seen }
    }

    fn all(&self) -> Vec<Seen> {
        self.seen.lock().expect("capture log").clone()
    }

    /// The requests for one operation, in arrival order.
    fn calls(&self, operation: &str) -> Vec<Seen> {
        self.all().into_iter().filter(|s| s.operation() == operation).collect()
    }
}

async fn record(State(state): State<CaptureState>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let seen = Seen {
        path: uri.path().to_string(),
        action: headers.get("soapaction").and_then(|v| v.to_str().ok()).unwrap_or("").trim_matches('"').to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let (status, xml) = (state.answer)(&seen);
    state.seen.lock().expect("capture log").push(seen);
    (status, [("content-type", "text/xml; charset=utf-8")], xml).into_response()
}

/// A SOAP 1.1 fault the way an ASMX server writes it, for requests a test did not expect.
fn unexpected(seen: &Seen) -> (StatusCode, String) {
    let text = format!("the capture server has no answer for {} {:?}", seen.path, seen.action);
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            r#"<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><soap:Fault><faultcode>soap:Server</faultcode><faultstring>{text}</faultstring></soap:Fault></soap:Body></soap:Envelope>"#
        ),
    )
}

fn envelope(xml: &str) -> Node {
    dom::parse(xml.as_bytes()).unwrap_or_else(|e| panic!("the gateway sent XML that does not parse ({e:?}):\n{xml}"))
}

/// The element at a path of (namespace, local name) steps under `node`.
fn at<'a>(node: &'a Node, path: &[(&str, &str)]) -> &'a Node {
    path.iter().fold(node, |n, (ns, local)| {
        n.child(ns, local).unwrap_or_else(|| panic!("no {{{ns}}}{local} under {{{}}}{}: {n:#?}", n.ns, n.local))
    })
}

/// A config directory: WSDLs (files or whole folders) copied from the test corpus,
/// `gateway.yaml`, `routes/routes.yaml` and extra files (secrets).
fn config_dir(wsdls: &[&str], gateway_yaml: &str, routes_yaml: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wsdl");
    for w in wsdls {
        copy_all(&corpus.join(w), &dir.path().join(w));
    }
    std::fs::write(dir.path().join("gateway.yaml"), gateway_yaml).expect("write gateway.yaml");
    std::fs::create_dir(dir.path().join("routes")).expect("mkdir routes");
    std::fs::write(dir.path().join("routes/routes.yaml"), routes_yaml).expect("write routes");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write file");
    }
    dir
}

fn copy_all(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read dir").flatten() {
            copy_all(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sessions").join(name)
}

/// Compares `actual` with a fixture file, or writes it under `BLESS=1`.
fn check_or_bless(name: &str, actual: &str) {
    let path = fixture(name);
    if std::env::var_os("BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("fixture dir")).expect("mkdir fixtures");
        std::fs::write(&path, format!("{}\n", actual.trim_end())).expect("bless");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}; run with BLESS=1 and review it", path.display()));
    assert_eq!(expected.trim_end(), actual.trim_end(), "{} differs from what the gateway sent", path.display());
}

// ---------------------------------------------------------------------------------------
// SAP Business One

const B1_SESSION: &str = "{A1B2C3D4-E5F6-4789-9ABC-DEF012345678}";
const B1_PASSWORD: &str = "B1-s3cret&<pw>";

fn b1_login_response() -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"><soap:Body><LoginResponse xmlns="http://www.sap.com/SBO/DIS"><SessionID>{B1_SESSION}</SessionID></LoginResponse></soap:Body></soap:Envelope>"#
    )
}

const B1_ITEM_RESPONSE: &str = r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"><soap:Body><GetByParamsResponse xmlns="http://www.sap.com/SBO/DIS"><Item><ItemCode>A00001</ItemCode><ItemName>J.B. Officeprint 1420</ItemName><ItemsGroupCode>100</ItemsGroupCode><VatLiable>tYES</VatLiable><PurchaseItem>tYES</PurchaseItem><SalesItem>tYES</SalesItem><InventoryItem>tYES</InventoryItem></Item></GetByParamsResponse></soap:Body></soap:Envelope>"#;

const B1_LOGOUT_RESPONSE: &str = r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"><soap:Body><LogoutResponse xmlns="http://www.sap.com/SBO/DIS" /></soap:Body></soap:Envelope>"#;

/// A B1WS DI server: answers by SOAPAction, and only on the service each action belongs to.
async fn b1_server() -> Capture {
    Capture::start(|_| {
        |seen: &Seen| match (seen.path.as_str(), seen.action.as_str()) {
            ("/B1WS/LoginService", "LoginService/Login") => (StatusCode::OK, b1_login_response()),
            ("/B1WS/LoginService", "LoginService/Logout") => (StatusCode::OK, B1_LOGOUT_RESPONSE.to_string()),
            ("/B1WS/ItemsService", "ItemsService/GetByParams") => (StatusCode::OK, B1_ITEM_RESPONSE.to_string()),
            _ => unexpected(seen),
        }
    })
    .await
}

/// The B1 backend's YAML; `msg_header` is the session's `MsgHeader` template.
fn b1_gateway_yaml(base: &str, msg_header: &str) -> String {
    format!(
        r#"backends:
  b1:
    wsdl: sap-b1-items.wsdl
    url: "{base}/B1WS/ItemsService"
    timeout: 5s
    session:
      login:
        wsdl: sap-b1-login.wsdl
        url: "{base}/B1WS/LoginService"
        operation: Login
        input: {{ DatabaseServer: "hana-db:30015", DatabaseName: SBODEMOUS, DatabaseType: dst_MSSQL2005, CompanyUsername: manager, Language: ln_English }}
        input_file: {{ CompanyPassword: b1-password.txt }}
      capture: {{ id: SessionID }}
      soap_headers:
        MsgHeader: {msg_header}
      logout: {{ operation: Logout }}
      size: 1
      exclusive: true
"#
    )
}

const B1_ROUTES: &str = r#"routes:
  - route: "GET /items/{code}"
    backend: b1
    operation: GetByParams
    request: { ItemParams: { ItemCode: "{path.code}" } }
"#;

/// ItemsService's `MsgHeader` has a `ServiceName` (enumeration: `ItemsService`); the login
/// service's has only `SessionID`.
const B1_HEADER_WITH_SERVICE: &str = r#"{ SessionID: "{session.id}", ServiceName: ItemsService }"#;
const B1_HEADER_ID_ONLY: &str = r#"{ SessionID: "{session.id}" }"#;

async fn b1_gateway(erp: &Capture, msg_header: &str) -> (common::Gateway, tempfile::TempDir) {
    let dir = config_dir(
        &["sap-b1-items.wsdl", "sap-b1-login.wsdl"],
        &b1_gateway_yaml(&erp.base, msg_header),
        B1_ROUTES,
        // A trailing newline, as an editor writes it: not part of the password.
        &[("b1-password.txt", &format!("{B1_PASSWORD}\n"))],
    );
    (common::with_config(dir.path()).await, dir)
}

#[tokio::test]
async fn sap_b1_logs_in_once_and_sends_the_session_in_msg_header() {
    let erp = b1_server().await;
    let (gw, _dir) = b1_gateway(&erp, B1_HEADER_WITH_SERVICE).await;
    let c = common::client();
    for _ in 0..2 {
        let res = c.get(gw.url("/items/A00001")).send().await.expect("request");
        assert_eq!(res.status(), 200);
        let item: Value = res.json().await.expect("json");
        assert_eq!(
            item,
            json!({
                "itemCode": "A00001",
                "itemName": "J.B. Officeprint 1420",
                "itemsGroupCode": 100,
                "vatLiable": "tYES",
                "purchaseItem": "tYES",
                "salesItem": "tYES",
                "inventoryItem": "tYES"
            })
        );
    }

    let logins = erp.calls("Login");
    assert_eq!(logins.len(), 1, "one login for two calls: {:#?}", erp.all());
    let login = &logins[0];
    assert_eq!(login.path, "/B1WS/LoginService", "the login goes to login.url");
    assert_eq!(login.action, "LoginService/Login");
    assert!(login.header("content-type").is_some_and(|t| t.starts_with("text/xml")), "{:?}", login.headers);
    check_or_bless("sap-b1-login.request.xml", &login.body);
    // Independent of the fixture: the password from the file, escaped, in CompanyPassword.
    let password = at(
        &envelope(&login.body),
        &[(SOAP_ENV, "Body"), ("LoginService", "Login"), ("LoginService", "CompanyPassword")],
    )
    .text
    .clone();
    assert_eq!(password, B1_PASSWORD, "the file's content without its newline");

    let gets = erp.calls("GetByParams");
    assert_eq!(gets.len(), 2);
    check_or_bless("sap-b1-getbyparams.request.xml", &gets[0].body);
    assert_eq!(gets[0].body, gets[1].body, "both calls ride the same session");
    for get in &gets {
        assert_eq!(get.path, "/B1WS/ItemsService");
        assert_eq!(get.action, "ItemsService/GetByParams");
        let doc = envelope(&get.body);
        let header = at(&doc, &[(SOAP_ENV, "Header"), (B1_DIS, "MsgHeader")]);
        assert_eq!(at(header, &[(B1_DIS, "SessionID")]).text, B1_SESSION);
        assert_eq!(at(header, &[(B1_DIS, "ServiceName")]).text, "ItemsService");
        let code = at(
            &doc,
            &[(SOAP_ENV, "Body"), ("ItemsService", "GetByParams"), (B1_DIS, "ItemParams"), (B1_DIS, "ItemCode")],
        );
        assert_eq!(code.text, "A00001");
        for secret in [B1_PASSWORD, "B1-s3cret", "CompanyPassword"] {
            assert!(!get.body.contains(secret), "the password never leaves the login: {}", get.body);
        }
        assert!(get.header("cookie").is_none(), "B1WS takes the session in MsgHeader only");
    }
    assert!(erp.calls("Logout").is_empty(), "no logout while the session is in use");
}

/// On shutdown the session is logged out on the LoginService, whose `MsgHeader` has no
/// `ServiceName`: the SessionID must still be there, whatever the backend's template adds.
#[tokio::test]
async fn sap_b1_logs_out_on_shutdown_with_the_session_id() {
    for msg_header in [B1_HEADER_ID_ONLY, B1_HEADER_WITH_SERVICE] {
        let erp = b1_server().await;
        let (gw, _dir) = b1_gateway(&erp, msg_header).await;
        let res = common::client().get(gw.url("/items/A00001")).send().await.expect("request");
        assert_eq!(res.status(), 200, "template {msg_header}");
        drop(gw);
        let erp2 = erp.clone();
        common::eventually("a Logout on shutdown", Duration::from_secs(10), move || {
            let erp = erp2.clone();
            async move { !erp.calls("Logout").is_empty() }
        })
        .await;
        let logouts = erp.calls("Logout");
        assert_eq!(logouts.len(), 1, "template {msg_header}: {logouts:#?}");
        let logout = &logouts[0];
        assert_eq!(logout.path, "/B1WS/LoginService", "the logout goes where the login went");
        assert_eq!(logout.action, "LoginService/Logout");
        let doc = envelope(&logout.body);
        let header = doc.child(SOAP_ENV, "Header").and_then(|h| h.child(B1_DIS, "MsgHeader"));
        let Some(header) = header else {
            panic!(
                "template {msg_header}: the Logout carries no MsgHeader, so B1 cannot tell which session to end:\n{}",
                logout.body
            )
        };
        assert_eq!(at(header, &[(B1_DIS, "SessionID")]).text, B1_SESSION, "template {msg_header}");
        assert!(header.child(B1_DIS, "ServiceName").is_none(), "the login service's MsgHeader has no ServiceName");
        assert!(
            doc.child(SOAP_ENV, "Body").and_then(|b| b.child("LoginService", "Logout")).is_some(),
            "{}",
            logout.body
        );
        assert!(!logout.body.contains("B1-s3cret"), "no password in the logout");
    }
}

// ---------------------------------------------------------------------------------------
// Salesforce

const SF_PASSWORD: &str = "Sf-pass!w0rdAbCdEfToKeN";
const SF_ORG_PATH: &str = "/services/Soap/u/58.0/00D5g000004Sxyz";

fn sf_session(n: usize) -> String {
    format!("00D5g000004Sxyz!AQ0AQH{n}.x7Yq_sessionNumber{n}")
}

fn sf_login_response(base: &str, n: usize) -> String {
    let session = sf_session(n);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><loginResponse><result><metadataServerUrl>{base}/services/Soap/m/58.0/00D5g000004Sxyz</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>true</sandbox><serverUrl>{base}{SF_ORG_PATH}</serverUrl><sessionId>{session}</sessionId><userId>0055g00000AbCdEAAV</userId><userInfo><accessibilityMode>false</accessibilityMode><chatterExternal>false</chatterExternal><currencySymbol>$</currencySymbol><orgAttachmentFileSizeLimit>5242880</orgAttachmentFileSizeLimit><orgDefaultCurrencyIsoCode>USD</orgDefaultCurrencyIsoCode><orgDefaultCurrencyLocale>en_US</orgDefaultCurrencyLocale><orgDisallowHtmlAttachments>false</orgDisallowHtmlAttachments><orgHasPersonAccounts>false</orgHasPersonAccounts><organizationId>00D5g000004SxyzEAC</organizationId><organizationMultiCurrency>false</organizationMultiCurrency><organizationName>Plant Integration</organizationName><profileId>00e5g000000AbCdAAK</profileId><roleId xsi:nil="true"/><sessionSecondsValid>7200</sessionSecondsValid><userDefaultCurrencyIsoCode xsi:nil="true"/><userEmail>integration@plant.example</userEmail><userFullName>Integration User</userFullName><userId>0055g00000AbCdEAAV</userId><userLanguage>en_US</userLanguage><userLocale>en_US</userLocale><userName>integration@plant.example</userName><userTimeZone>Europe/Berlin</userTimeZone><userType>Standard</userType><userUiSkin>Theme3</userUiSkin></userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"#
    )
}

const SF_TIMESTAMP_RESPONSE: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com"><soapenv:Header><LimitInfoHeader><limitInfo><current>12</current><limit>5000000</limit><type>API REQUESTS</type></limitInfo></LimitInfoHeader></soapenv:Header><soapenv:Body><getServerTimestampResponse><result><timestamp>2024-05-14T09:30:00.000Z</timestamp></result></getServerTimestampResponse></soapenv:Body></soapenv:Envelope>"#;

/// Salesforce's answer to a call whose session it does not know (HTTP 500, as Salesforce
/// sends every fault), with the `UnexpectedErrorFault` detail the WSDL declares.
const SF_INVALID_SESSION: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_SESSION_ID</faultcode><faultstring>INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session</faultstring><detail><sf:UnexpectedErrorFault xsi:type="sf:UnexpectedErrorFault"><sf:exceptionCode>INVALID_SESSION_ID</sf:exceptionCode><sf:exceptionMessage>Invalid Session ID found in SessionHeader: Illegal Session</sf:exceptionMessage></sf:UnexpectedErrorFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;

const SF_PARTNER: &str = "urn:partner.soap.sforce.com";

#[tokio::test]
async fn salesforce_logs_in_follows_server_url_and_logs_in_again_when_the_session_is_refused() {
    let logins = Arc::new(AtomicUsize::new(0));
    let refuse_next = Arc::new(AtomicBool::new(false));
    let erp = Capture::start(|base| {
        let (base, logins, refuse_next) = (base.to_string(), logins.clone(), refuse_next.clone());
        move |seen: &Seen| match (seen.path.as_str(), seen.operation().as_str()) {
            ("/services/Soap/u/58.0", "login") => {
                (StatusCode::OK, sf_login_response(&base, logins.fetch_add(1, Ordering::SeqCst) + 1))
            }
            (SF_ORG_PATH, "getServerTimestamp") if refuse_next.swap(false, Ordering::SeqCst) => {
                (StatusCode::INTERNAL_SERVER_ERROR, SF_INVALID_SESSION.to_string())
            }
            (SF_ORG_PATH, "getServerTimestamp") => (StatusCode::OK, SF_TIMESTAMP_RESPONSE.to_string()),
            _ => unexpected(seen),
        }
    })
    .await;
    let gateway_yaml = format!(
        r#"backends:
  sf:
    wsdl: salesforce-partner-v58.wsdl
    url: "{}/services/Soap/u/58.0"
    timeout: 5s
    session:
      login:
        operation: login
        input: {{ username: integration@plant.example }}
        input_file: {{ password: sf-password.txt }}
      capture: {{ id: result.sessionId, server_url: result.serverUrl }}
      expires_in: result.userInfo.sessionSecondsValid
      soap_headers:
        SessionHeader: {{ sessionId: "{{session.id}}" }}
      url: "{{session.server_url}}"
"#,
        erp.base
    );
    let routes = r#"routes:
  - route: "GET /salesforce/time"
    backend: sf
    operation: getServerTimestamp
"#;
    let dir = config_dir(
        &["salesforce-partner-v58.wsdl"],
        &gateway_yaml,
        routes,
        &[("sf-password.txt", &format!("{SF_PASSWORD}\n"))],
    );
    let gw = common::with_config(dir.path()).await;
    let c = common::client();
    let time = |res: reqwest::Response| async move {
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.expect("json")
    };

    let body = time(c.get(gw.url("/salesforce/time")).send().await.expect("request")).await;
    assert_eq!(body, json!({ "timestamp": "2024-05-14T09:30:00.000Z" }));
    let all = erp.all();
    assert_eq!(all.len(), 2, "a login, then the call: {all:#?}");
    let login = &all[0];
    assert_eq!(login.path, "/services/Soap/u/58.0", "the login goes to the backend url");
    assert_eq!(login.operation(), "login");
    let doc = envelope(&login.body);
    let l = at(&doc, &[(SOAP_ENV, "Body"), (SF_PARTNER, "login")]);
    assert_eq!(at(l, &[(SF_PARTNER, "username")]).text, "integration@plant.example");
    assert_eq!(at(l, &[(SF_PARTNER, "password")]).text, SF_PASSWORD);
    assert!(doc.child(SOAP_ENV, "Header").is_none_or(|h| h.child(SF_PARTNER, "SessionHeader").is_none()));
    let call = &all[1];
    assert_eq!(call.path, SF_ORG_PATH, "later calls go to the serverUrl the login answered");
    assert_eq!(call.operation(), "getServerTimestamp");
    let session_of = |seen: &Seen| {
        at(&envelope(&seen.body), &[(SOAP_ENV, "Header"), (SF_PARTNER, "SessionHeader"), (SF_PARTNER, "sessionId")])
            .text
            .clone()
    };
    assert_eq!(session_of(call), sf_session(1));
    assert!(!call.body.contains(SF_PASSWORD), "the password stays in the login");

    // Salesforce forgets the session: one more login, the call once more, still a 200.
    refuse_next.store(true, Ordering::SeqCst);
    let body = time(c.get(gw.url("/salesforce/time")).send().await.expect("request")).await;
    assert_eq!(body, json!({ "timestamp": "2024-05-14T09:30:00.000Z" }));
    let all = erp.all();
    let ops: Vec<(String, String)> = all.iter().map(|s| (s.path.clone(), s.operation())).collect();
    let expected: Vec<(String, String)> = [
        ("/services/Soap/u/58.0", "login"),
        (SF_ORG_PATH, "getServerTimestamp"),
        (SF_ORG_PATH, "getServerTimestamp"),
        ("/services/Soap/u/58.0", "login"),
        (SF_ORG_PATH, "getServerTimestamp"),
    ]
    .iter()
    .map(|(p, o)| (p.to_string(), o.to_string()))
    .collect();
    assert_eq!(ops, expected);
    assert_eq!(session_of(&all[2]), sf_session(1), "the refused call carried the old session");
    assert_eq!(session_of(&all[4]), sf_session(2), "the retry carries the new session");
    assert_eq!(logins.load(Ordering::SeqCst), 2);

    // The new session is kept: no third login.
    time(c.get(gw.url("/salesforce/time")).send().await.expect("request")).await;
    assert_eq!(erp.calls("login").len(), 2);
    assert_eq!(session_of(erp.all().last().expect("a call")), sf_session(2));
}

/// A Salesforce backend behind Basic auth whose login answers `server_url` as serverUrl;
/// `allowed_hosts` is the session's list (YAML).
fn sf_redirect_config(erp: &Capture, allowed_hosts: &str) -> tempfile::TempDir {
    let gateway_yaml = format!(
        r#"backends:
  sf:
    wsdl: salesforce-partner-v58.wsdl
    url: "{}/services/Soap/u/58.0"
    timeout: 5s
    auth: {{ basic: {{ username: integration, password_file: sf-password.txt }} }}
    session:
      login:
        operation: login
        input: {{ username: integration@plant.example }}
        input_file: {{ password: sf-password.txt }}
      capture: {{ id: result.sessionId, server_url: result.serverUrl }}
      soap_headers:
        SessionHeader: {{ sessionId: "{{session.id}}" }}
      url: "{{session.server_url}}"
      login_backoff: 30s
      allowed_hosts: {allowed_hosts}
"#,
        erp.base
    );
    let routes = "routes:\n  - { route: \"GET /salesforce/time\", backend: sf, operation: getServerTimestamp }\n";
    config_dir(
        &["salesforce-partner-v58.wsdl"],
        &gateway_yaml,
        routes,
        &[("sf-password.txt", &format!("{SF_PASSWORD}\n"))],
    )
}

/// A login answer naming another host for later calls (a spoofed or hostile ERP) is
/// refused: that host never sees the backend's credentials or the session, the caller gets
/// a 502, and the refusal backs off like a failed login. Listed in `allowed_hosts`, the
/// same host is used.
#[tokio::test]
async fn a_login_answer_pointing_elsewhere_is_refused_unless_the_host_is_allowed() {
    let elsewhere = Capture::start(|_| |_: &Seen| (StatusCode::OK, SF_TIMESTAMP_RESPONSE.to_string())).await;
    let logins = Arc::new(AtomicUsize::new(0));
    let erp = Capture::start(|_| {
        let (target, logins) = (elsewhere.base.clone(), logins.clone());
        move |seen: &Seen| match seen.operation().as_str() {
            "login" => (StatusCode::OK, sf_login_response(&target, logins.fetch_add(1, Ordering::SeqCst) + 1)),
            _ => unexpected(seen),
        }
    })
    .await;
    let dir = sf_redirect_config(&erp, "[]");
    let gw = common::with_config(dir.path()).await;
    let c = common::client();
    for _ in 0..3 {
        let res = c.get(gw.url("/salesforce/time")).send().await.expect("request");
        let problem = common::problem(res, 502).await;
        let text = problem.to_string();
        assert!(!text.contains(&sf_session(1)) && !text.contains(SF_PASSWORD), "{problem}");
    }
    assert!(elsewhere.all().is_empty(), "the other host saw nothing: {:#?}", elsewhere.all());
    assert_eq!(logins.load(Ordering::SeqCst), 1, "the refusal backs off like a failed login");
    assert!(erp.all().iter().all(|s| s.operation() == "login"));
    drop(gw);

    // The operator lists the host: the calls go there, with the session.
    let port = elsewhere.base.rsplit(':').next().expect("port");
    let dir = sf_redirect_config(&erp, &format!("[\"127.0.0.1:{port}\"]"));
    let gw = common::with_config(dir.path()).await;
    let res = c.get(gw.url("/salesforce/time")).send().await.expect("request");
    assert_eq!(res.status(), 200);
    let calls = elsewhere.calls("getServerTimestamp");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, SF_ORG_PATH);
}

// ---------------------------------------------------------------------------------------
// NetSuite token-based authentication

const NS_ACCOUNT: &str = "1234567_SB1";
const NS_CONSUMER_KEY: &str = "ef0d7a3c9b1e4f2a8c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b";
const NS_CONSUMER_SECRET: &str = "4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b";
const NS_TOKEN_ID: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0";
const NS_TOKEN_SECRET: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

const NS_SERVER_TIME_RESPONSE: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Header><platformMsgs:documentInfo xmlns:platformMsgs="urn:messages_2023_2.platform.webservices.netsuite.com"><platformMsgs:nsId>WEBSERVICES_1234567_SB1_051420241716094781296305563_9a1b2c3d4e</platformMsgs:nsId></platformMsgs:documentInfo></soapenv:Header><soapenv:Body><getServerTimeResponse xmlns="urn:messages_2023_2.platform.webservices.netsuite.com"><platformCore:getServerTimeResult xmlns:platformCore="urn:core_2023_2.platform.webservices.netsuite.com"><platformCore:status isSuccess="true"/><platformCore:serverTime>2024-05-14T02:30:00.000-07:00</platformCore:serverTime></platformCore:getServerTimeResult></getServerTimeResponse></soapenv:Body></soapenv:Envelope>"#;

/// The signature computed by Python's standard library, from the parts (Python joins them).
fn python_signature(account: &str, consumer_key: &str, token_id: &str, nonce: &str, timestamp: &str) -> String {
    let script = "import base64, hashlib, hmac, sys\n\
                  account, ck, cs, tid, ts, nonce, timestamp = sys.argv[1:]\n\
                  base = '&'.join([account, ck, tid, nonce, timestamp])\n\
                  key = cs + '&' + ts\n\
                  print(base64.b64encode(hmac.new(key.encode(), base.encode(), hashlib.sha256).digest()).decode())";
    let out = std::process::Command::new("python3")
        .args(["-c", script, account, consumer_key, NS_CONSUMER_SECRET, token_id, NS_TOKEN_SECRET, nonce, timestamp])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}

#[tokio::test]
async fn netsuite_calls_carry_a_fresh_correctly_signed_token_passport() {
    let erp = Capture::start(|_| {
        |seen: &Seen| match (seen.path.as_str(), seen.action.as_str()) {
            ("/services/NetSuitePort_2023_2", "getServerTime") => (StatusCode::OK, NS_SERVER_TIME_RESPONSE.to_string()),
            _ => unexpected(seen),
        }
    })
    .await;
    let gateway_yaml = format!(
        r#"backends:
  ns:
    wsdl: netsuite-2023_2/netsuite.wsdl
    url: "{}/services/NetSuitePort_2023_2"
    timeout: 5s
    auth:
      netsuite_tba: {{ account: "{NS_ACCOUNT}", consumer_key_file: ck.txt, consumer_secret_file: cs.txt, token_id_file: tid.txt, token_secret_file: ts.txt }}
"#,
        erp.base
    );
    let routes = r#"routes:
  - route: "GET /netsuite/time"
    backend: ns
    operation: getServerTime
"#;
    let dir = config_dir(
        &["netsuite-2023_2"],
        &gateway_yaml,
        routes,
        &[
            ("ck.txt", &format!("{NS_CONSUMER_KEY}\n")),
            ("cs.txt", &format!("{NS_CONSUMER_SECRET}\n")),
            ("tid.txt", &format!("{NS_TOKEN_ID}\n")),
            ("ts.txt", &format!("{NS_TOKEN_SECRET}\n")),
        ],
    );
    let gw = common::with_config(dir.path()).await;
    for _ in 0..2 {
        let res = common::client().get(gw.url("/netsuite/time")).send().await.expect("request");
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.expect("json");
        // statusDetail is unbounded: always an array, empty when absent.
        let status = json!({ "isSuccess": true, "statusDetail": [] });
        assert_eq!(body, json!({ "status": status, "serverTime": "2024-05-14T02:30:00.000-07:00" }));
    }

    let calls = erp.calls("getServerTime");
    assert_eq!(calls.len(), 2);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
    let mut nonces = Vec::new();
    for call in &calls {
        let doc = envelope(&call.body);
        let header = at(&doc, &[(SOAP_ENV, "Header")]);
        assert_eq!(header.children.len(), 1, "only the tokenPassport: {}", call.body);
        let passport = at(header, &[(NS_MESSAGES, "tokenPassport")]);
        let names: Vec<(&str, &str)> = passport.children.iter().map(|c| (c.ns.as_str(), c.local.as_str())).collect();
        assert_eq!(
            names,
            ["account", "consumerKey", "token", "nonce", "timestamp", "signature"].map(|n| (NS_CORE, n)),
            "the TokenPassport sequence, in the core namespace"
        );
        let text = |n: &str| at(passport, &[(NS_CORE, n)]).text.clone();
        assert_eq!(text("account"), NS_ACCOUNT);
        assert_eq!(text("consumerKey"), NS_CONSUMER_KEY);
        assert_eq!(text("token"), NS_TOKEN_ID);
        let nonce = text("nonce");
        assert!(
            (6..=64).contains(&nonce.len()) && nonce.chars().all(|c| c.is_ascii_alphanumeric()),
            "NetSuite wants 6 to 64 alphanumerics: {nonce:?}"
        );
        let timestamp = text("timestamp");
        let secs: i64 = timestamp.parse().expect("timestamp is seconds");
        assert!((now - secs).abs() <= 60, "timestamp {secs} is not within a minute of {now}");
        let signature = at(passport, &[(NS_CORE, "signature")]);
        assert_eq!(signature.attr("algorithm"), Some("HMAC-SHA256"));
        let expected = python_signature(NS_ACCOUNT, NS_CONSUMER_KEY, NS_TOKEN_ID, &nonce, &timestamp);
        assert_eq!(signature.text, expected, "signature over the request's own nonce and timestamp");
        for secret in [NS_CONSUMER_SECRET, NS_TOKEN_SECRET] {
            assert!(!call.body.contains(secret), "secrets only sign, they are never sent");
        }
        assert!(at(&doc, &[(SOAP_ENV, "Body")]).child(NS_MESSAGES, "getServerTime").is_some(), "{}", call.body);
        nonces.push(nonce);
    }
    assert_ne!(nonces[0], nonces[1], "every call has a fresh nonce");
}

#[test]
fn token_passport_signature_matches_python_for_fixed_inputs() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wsdl/netsuite-2023_2/netsuite.wsdl");
    let bytes = std::fs::read(&path).expect("netsuite.wsdl");
    let options =
        veneer::schema::wsdl::ReadOptions { base: path.parent().map(Path::to_path_buf), ..Default::default() };
    let model = veneer::schema::wsdl::read(&bytes, options).expect("the NetSuite WSDL loads");
    let parts = TokenParts {
        account: NS_ACCOUNT.into(),
        consumer_key: NS_CONSUMER_KEY.into(),
        consumer_secret: NS_CONSUMER_SECRET.into(),
        token_id: NS_TOKEN_ID.into(),
        token_secret: NS_TOKEN_SECRET.into(),
    };
    let passport = TokenPassport::new(parts, &model).expect("the WSDL declares tokenPassport");
    let ours = passport.signature("fjZ8RbCwCvbB", 1_700_000_000);
    assert_eq!(ours, python_signature(NS_ACCOUNT, NS_CONSUMER_KEY, NS_TOKEN_ID, "fjZ8RbCwCvbB", "1700000000"));
    assert_ne!(passport.signature("fjZ8RbCwCvbC", 1_700_000_000), ours, "the nonce is signed");
    assert_ne!(passport.signature("fjZ8RbCwCvbB", 1_700_000_001), ours, "the timestamp is signed");
}

// ---------------------------------------------------------------------------------------
// Config errors

/// Compiles a config dir that must fail; its problems.
fn problems(dir: &Path) -> Vec<ConfigProblem> {
    match config::compile(&ConfigSource::Dir(dir.to_path_buf()), &CompileOptions::default()) {
        Ok(_) => panic!("the config must not compile"),
        Err(e) => e.0,
    }
}

/// The 1-based line of the only line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let lines: Vec<usize> = text.lines().enumerate().filter(|(_, l)| l.contains(needle)).map(|(i, _)| i + 1).collect();
    assert_eq!(lines.len(), 1, "{needle:?} must be on exactly one line of the test config");
    lines[0]
}

/// Asserts the config has exactly one problem, in `file` at `line`, saying `message`.
fn assert_one_problem(dir: &Path, file: &str, line: usize, message: &str) {
    let found = problems(dir);
    let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 1, "one problem expected:\n{}", shown.join("\n"));
    let p = &found[0];
    assert_eq!((p.file.as_path(), p.line), (Path::new(file), Some(line)), "{p}");
    assert_eq!(p.message, message, "{p}");
}

/// The B1 backend as in the end-to-end test, on an address nothing listens on (compiling
/// never connects).
fn b1_yaml(msg_header: &str) -> String {
    b1_gateway_yaml("http://127.0.0.1:9", msg_header)
}

fn b1_dir(gateway_yaml: &str, routes_yaml: &str) -> tempfile::TempDir {
    config_dir(
        &["sap-b1-items.wsdl", "sap-b1-login.wsdl"],
        gateway_yaml,
        routes_yaml,
        &[("b1-password.txt", B1_PASSWORD)],
    )
}

#[test]
fn the_b1_test_config_itself_compiles() {
    // The error cases below each change one thing of this config.
    let dir = b1_dir(&b1_yaml(B1_HEADER_WITH_SERVICE), B1_ROUTES);
    if let Err(e) = config::compile(&ConfigSource::Dir(dir.path().to_path_buf()), &CompileOptions::default()) {
        panic!("{e}");
    }
}

#[test]
fn a_header_template_naming_a_value_not_captured_is_refused() {
    let yaml = b1_yaml(r#"{ SessionID: "{session.sid}" }"#);
    let dir = b1_dir(&yaml, B1_ROUTES);
    assert_one_problem(
        dir.path(),
        "gateway.yaml",
        15, // `MsgHeader:` under session.soap_headers (b1_gateway_yaml's 15th line)
        r#"backend b1: session: soap_headers.MsgHeader: {session.sid} in "{session.sid}" is not captured; capture: names id"#,
    );
}

#[test]
fn a_route_filling_the_header_the_session_fills_is_refused() {
    let routes =
        format!("{B1_ROUTES}    soap_headers:\n      MsgHeader: {{ SessionID: \"{{header.x-b1-session}}\" }}\n");
    let dir = b1_dir(&b1_yaml(B1_HEADER_WITH_SERVICE), &routes);
    assert_one_problem(
        dir.path(),
        "routes/routes.yaml",
        7, // the route's `MsgHeader:` line
        r#"route "GET /items/{code}": SOAP header "MsgHeader" is filled by backend b1's session; remove it from the route"#,
    );
}

#[test]
fn exclusive_sessions_refuse_more_concurrency_than_sessions() {
    let yaml = b1_yaml(B1_HEADER_WITH_SERVICE)
        .replace("    timeout: 5s\n", "    timeout: 5s\n    max_concurrency: 8\n")
        .replace("size: 1", "size: 2");
    let dir = b1_dir(&yaml, B1_ROUTES);
    assert_one_problem(
        dir.path(),
        "gateway.yaml",
        line_of(&yaml, "max_concurrency:"),
        "backend b1: max_concurrency 8 is more than session.size 2 with exclusive sessions; calls past 2 would hold a slot only to wait for a session. Set max_concurrency to at most 2 or raise size",
    );
}

#[test]
fn a_login_operation_missing_from_the_login_wsdl_is_refused() {
    let yaml = b1_yaml(B1_HEADER_WITH_SERVICE).replace("operation: Login", "operation: LogIn");
    let dir = b1_dir(&yaml, B1_ROUTES);
    assert_one_problem(
        dir.path(),
        "gateway.yaml",
        line_of(&yaml, "operation: LogIn"),
        r#"backend b1: session: login: operation "LogIn" is not in the WSDL; it has: Login, Logout"#,
    );
}

#[test]
fn netsuite_tba_on_a_wsdl_without_token_passport_is_refused() {
    let yaml = r#"backends:
  calc:
    wsdl: calculator.wsdl
    url: "http://127.0.0.1:9/calculator.asmx"
    auth:
      netsuite_tba: { account: "1234567_SB1", consumer_key_file: ck.txt, consumer_secret_file: cs.txt, token_id_file: tid.txt, token_secret_file: ts.txt }
"#;
    let dir = config_dir(
        &["calculator.wsdl"],
        yaml,
        "routes: []\n",
        &[("ck.txt", "ck"), ("cs.txt", "cs"), ("tid.txt", "tid"), ("ts.txt", "ts")],
    );
    assert_one_problem(
        dir.path(),
        "gateway.yaml",
        line_of(yaml, "netsuite_tba:"),
        "backend calc: netsuite_tba: no operation of this WSDL declares a tokenPassport SOAP header",
    );
}

#[test]
fn a_password_written_in_the_login_input_is_refused() {
    let yaml = b1_yaml(B1_HEADER_WITH_SERVICE)
        .replace("Language: ln_English }", "Language: ln_English, CompanyPassword: hunter2 }")
        .replace("        input_file: { CompanyPassword: b1-password.txt }\n", "");
    let dir = b1_dir(&yaml, B1_ROUTES);
    assert_one_problem(
        dir.path(),
        "gateway.yaml",
        line_of(&yaml, "input: {"),
        "backend b1: session: login.input.CompanyPassword looks like a secret written in the file; move it to input_env or input_file",
    );
}

/// A login answer without the captured value (an empty `LoginResponse`, as a B1 DI server
/// misconfigured for the company gives): a 502 naming the backend, the ERP's business call
/// never made, and the next request not logging in again during the backoff.
#[tokio::test]
async fn a_login_answer_without_the_session_id_is_a_502_and_backs_off() {
    let erp = Capture::start(|_| {
        |seen: &Seen| match (seen.path.as_str(), seen.action.as_str()) {
            ("/B1WS/LoginService", "LoginService/Login") => (
                StatusCode::OK,
                r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><LoginResponse xmlns="http://www.sap.com/SBO/DIS"/></soap:Body></soap:Envelope>"#.to_string(),
            ),
            _ => unexpected(seen),
        }
    })
    .await;
    let (gw, _dir) = b1_gateway(&erp, B1_HEADER_ID_ONLY).await;
    for _ in 0..3 {
        let res = common::client().get(gw.url("/items/A00001")).send().await.expect("request");
        assert!(res.headers().contains_key("retry-after"));
        let p = common::problem(res, 502).await;
        assert_eq!(p["type"], "urn:veneer:problem:backend-login", "{p}");
        assert_eq!(p["backend"], "b1", "{p}");
    }
    assert_eq!(erp.calls("Login").len(), 1, "one attempt, then the backoff");
    assert!(erp.calls("GetByParams").is_empty(), "nothing reached the ERP without a session");
}
