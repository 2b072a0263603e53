//! The team's corpus of real ERP WSDLs and real SOAP messages (`tests/fixtures/wsdl/`,
//! `tests/fixtures/messages/`, provenance in each folder's SOURCES.md), read end to end:
//!
//! - every WSDL loads with the operation count SOURCES.md gives, and the broken ones fail
//!   (or note what they skip) with file lines;
//! - every response and fault decodes through its WSDL (typed spot checks below);
//! - every request decodes to JSON and encodes back to the same XML shape (element order,
//!   namespaces, attributes, text), or fails with field errors where the message breaks
//!   the schema.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use serde_json::{Value, json};
use veneer::schema::ServiceModel;
use veneer::schema::wsdl::{self, ReadOptions};
use veneer::translate::decode::{self, DecodeError, Decoded};
use veneer::translate::encode;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load(file: &str) -> Result<ServiceModel, wsdl::WsdlError> {
    let path = fixtures().join("wsdl").join(file);
    let bytes = std::fs::read(&path).expect("corpus file");
    wsdl::read(&bytes, ReadOptions { base: path.parent().map(Path::to_path_buf), ..Default::default() })
}

#[test]
fn every_corpus_wsdl_loads_with_its_operation_count() {
    // Counts from the corpus SOURCES.md (operations per portType, SOAP 1.1 binding).
    let expected = [
        ("nav-salesorder-page.wsdl", 11),
        ("nav-b2bmanagement-codeunit.wsdl", 5),
        ("sap-b1-login.wsdl", 2),
        ("sap-b1-items.wsdl", 5),
        ("sap-b1-orders.wsdl", 13),
        ("sap-s4-journalentry.wsdl", 1),
        ("netsuite-2023_2/netsuite.wsdl", 42),
        ("salesforce-partner-v58.wsdl", 63),
        ("siebel-order.wsdl", 12),
        ("1c-delivery.wsdl", 33),
        ("mantisconnect.wsdl", 72),
        ("reformagkh.wsdl", 25),
        ("lnp-numbermanagement/NumberManagement.wsdl", 12),
        ("calculator.wsdl", 4),
        ("numberconversion.wsdl", 2),
        ("countryinfo.wsdl", 21),
        ("globalweather.wsdl", 2),
    ];
    let mut wrong = Vec::new();
    for (file, count) in expected {
        match load(file) {
            Ok(m) if m.operations.len() == count && m.skipped.is_empty() => {}
            Ok(m) => wrong.push(format!("{file}: {} operations, skipped {:?}", m.operations.len(), m.skipped)),
            Err(e) => wrong.push(format!("{file}: {e}")),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    // GlobalWeather's HTTP GET/POST bindings are skipped with a note each.
    let weather = load("globalweather.wsdl").expect("loads");
    let http: Vec<_> = weather.notes.iter().filter(|n| n.message.contains("not a SOAP binding")).collect();
    assert_eq!(http.len(), 2, "{:?}", weather.notes);

    // The LNP binding binds listAvailablePublicNumberGroups twice (the portType has it once):
    // the first is used and the duplicate is pointed at by line.
    let lnp = load("lnp-numbermanagement/NumberManagement.wsdl").expect("loads");
    assert!(
        lnp.notes.iter().any(|n| n.line == 403 && n.message.contains("listAvailablePublicNumberGroups")),
        "{:?}",
        lnp.notes
    );

    // mantisconnect and reformagkh are rpc/encoded; reformagkh has one-way operations.
    let mantis = load("mantisconnect.wsdl").expect("loads");
    assert!(mantis.operations.iter().all(|o| o.encoded));
    let reforma = load("reformagkh.wsdl").expect("loads");
    assert!(reforma.operation("Logout").is_some_and(|o| o.one_way));
}

#[test]
fn the_binding_less_wcf_facade_gets_a_precise_diagnostic() {
    let err = load("nav-b2b-wcf/B2BService.wsdl").expect_err("its schemas are imported by URL");
    assert!(err.to_string().contains("http://localhost:35798/B2BService.svc?xsd=xsd0"), "{err}");
    let dir = fixtures().join("wsdl/nav-b2b-wcf");
    let catalog: BTreeMap<String, PathBuf> =
        [("xsd0", "B2BService1.xsd"), ("xsd1", "B2BService2.xsd"), ("xsd2", "B2BService.xsd")]
            .into_iter()
            .map(|(k, f)| (format!("http://localhost:35798/B2BService.svc?xsd={k}"), dir.join(f)))
            .collect();
    let bytes = std::fs::read(dir.join("B2BService.wsdl")).expect("wsdl");
    let err =
        wsdl::read(&bytes, ReadOptions { base: Some(dir), catalog, ..Default::default() }).expect_err("no binding");
    assert!(err.to_string().starts_with("line ") && err.to_string().contains("no SOAP binding"), "{err}");
}

#[test]
fn one_unusable_operation_leaves_the_rest_loaded() {
    // Break one operation's output message: the rest of the calculator still loads, and the
    // broken one is reported with its line.
    let path = fixtures().join("wsdl/calculator.wsdl");
    let text = std::fs::read_to_string(path).expect("wsdl");
    let broken =
        text.replacen(r#"<wsdl:output message="tns:AddSoapOut"/>"#, r#"<wsdl:output message="tns:Nowhere"/>"#, 1);
    assert!(broken != text, "the fixture still has the Add output");
    let model = wsdl::read(broken.as_bytes(), ReadOptions::default()).expect("the rest loads");
    assert_eq!(model.operations.len(), 3);
    let skipped = &model.skipped[0];
    assert_eq!(skipped.operation, "Add");
    assert!(skipped.line > 1 && skipped.reason.contains("Nowhere"), "{skipped:?}");
}

/// Folder under messages/ → its WSDL.
fn wsdl_of(folder: &str) -> &'static str {
    match folder {
        "netsuite-2023_2" => "netsuite-2023_2/netsuite.wsdl",
        "salesforce-partner-v58" => "salesforce-partner-v58.wsdl",
        "mantisconnect" => "mantisconnect.wsdl",
        "calculator" => "calculator.wsdl",
        "countryinfo" => "countryinfo.wsdl",
        "numberconversion" => "numberconversion.wsdl",
        "globalweather" => "globalweather.wsdl",
        "sap-s4-journalentry" => "sap-s4-journalentry.wsdl",
        other => panic!("no WSDL for messages/{other}"),
    }
}

/// Every message file: (folder, operation, kind, path).
fn messages() -> Vec<(String, String, String, PathBuf)> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(fixtures().join("messages")).expect("messages").flatten() {
        if !dir.path().is_dir() {
            continue;
        }
        let folder = dir.file_name().to_string_lossy().into_owned();
        for f in std::fs::read_dir(dir.path()).expect("folder").flatten() {
            let name = f.file_name().to_string_lossy().trim_end_matches(".xml").to_string();
            let (op, kind) = ["-request", "-response", "-fault"]
                .iter()
                .find_map(|k| name.find(k).map(|i| (name[..i].to_string(), k[1..].to_string())))
                .expect("file names are <operation>-<kind>[-n].xml");
            out.push((folder.clone(), op, kind, f.path()));
        }
    }
    out.sort();
    out
}

/// Messages whose operation the corpus WSDL does not have (SOURCES.md says so).
const NO_OPERATION: [&str; 2] = ["netsuite-2023_2/login", "mantisconnect/mc_search_issues"];

#[test]
fn every_response_and_fault_decodes() {
    let mut models: BTreeMap<String, ServiceModel> = BTreeMap::new();
    let mut decoded: BTreeMap<String, Result<Decoded, DecodeError>> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut count = 0;
    for (folder, op_name, kind, path) in messages().into_iter().filter(|m| m.2 != "request") {
        count += 1;
        let model = models.entry(folder.clone()).or_insert_with(|| load(wsdl_of(&folder)).expect("WSDL loads"));
        let file = format!("{folder}/{}", path.file_name().unwrap_or_default().to_string_lossy());
        let op = match model.operation(&op_name) {
            Some(op) => op,
            None if NO_OPERATION.contains(&format!("{folder}/{op_name}").as_str()) => {
                // No operation to decode against; a fault still types through any operation
                // that declares the same faults (NetSuite's login faults exist in 2023.2).
                if kind != "fault" {
                    continue;
                }
                model.operations.iter().max_by_key(|o| o.faults.len()).expect("operations")
            }
            None => {
                problems.push(format!("{file}: no operation {op_name}"));
                continue;
            }
        };
        let bytes = std::fs::read(&path).expect("message");
        let result = decode::response_with_faults(&op.output, &op.faults, &model.schema, &bytes);
        problems.extend(common::text_decoder_agrees(op, &model.schema, &bytes, &file));
        match (&result, kind.as_str()) {
            (Ok(Decoded::Body(Value::Object(_))), "response") | (Ok(Decoded::Fault(_)), "fault") => {}
            _ if file.ends_with("upsertList-response-2.xml") || file.ends_with("login-response-2.xml") => {}
            (other, _) => problems.push(format!("{file}: {other:?}")),
        }
        decoded.insert(file, result);
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(count >= 58, "{count} responses and faults");

    let body = |file: &str| match decoded.get(file) {
        Some(Ok(Decoded::Body(v))) => v.clone(),
        other => panic!("{file}: {other:?}"),
    };
    let fault = |file: &str| match decoded.get(file) {
        Some(Ok(Decoded::Fault(f))) => f.to_json(),
        other => panic!("{file}: {other:?}"),
    };
    let at = |v: &Value, pointer: &str| v.pointer(pointer).cloned().unwrap_or_else(|| panic!("{pointer} in {v:#}"));

    // The deliberately broken ones: clean errors, no panic.
    match decoded.get("netsuite-2023_2/upsertList-response-2.xml") {
        Some(Err(DecodeError::Malformed(m))) => assert!(m.contains("ends before"), "{m}"),
        other => panic!("truncated envelope: {other:?}"),
    }
    match decoded.get("salesforce-partner-v58/login-response-2.xml") {
        Some(Err(DecodeError::Malformed(m))) => assert!(m.contains("UTF-16"), "{m}"),
        other => panic!("utf-16 declared, single-byte written: {other:?}"),
    }

    // NetSuite: xsi:type substitution picks the concrete record type across namespace versions.
    let customer = body("netsuite-2023_2/get-response-3.xml");
    assert_eq!(at(&customer, "/readResponse/record/@type"), json!("Subsidiary"));
    let get = body("netsuite-2023_2/get-response-2.xml");
    let fields = at(&get, "/readResponse/record/customFieldList/customField");
    let mut types: Vec<&str> = fields.as_array().expect("array").iter().filter_map(|f| f["@type"].as_str()).collect();
    assert_eq!(types.len(), 6, "{fields:#}");
    types.dedup();
    assert_eq!(types.len(), 5, "five different custom field types: {types:?}");
    assert_eq!(at(&fields, "/5/value/1/name"), json!("selection value 2"));
    assert_eq!(at(&fields, "/3/value"), json!(false));
    let avail = body("netsuite-2023_2/getItemAvailability-response.xml");
    let list = at(&avail, "/getItemAvailabilityResult/itemAvailabilityList/itemAvailability");
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    assert!(list.to_string().contains("-1.0"), "negative decimal kept as written: {list}");
    let failed = body("netsuite-2023_2/add-response.xml");
    assert_eq!(at(&failed, "/writeResponse/status/isSuccess"), json!(false));
    assert_eq!(at(&failed, "/writeResponse/status/statusDetail/0/code"), json!("INVALID_INITIALIZE_REF"));
    let search = body("netsuite-2023_2/search-response.xml");
    assert_eq!(at(&search, "/searchResult/recordList/record/0/@type"), json!("Account"));
    let login = fault("netsuite-2023_2/login-fault-2.xml");
    assert!(login.to_string().contains("INVALID_LOGIN_CREDENTIALS"), "{login:#}");

    // Salesforce: sObject fields pass through, arrays stay arrays, nil is null.
    let query = body("salesforce-partner-v58/query-response.xml");
    assert_eq!(at(&query, "/result/records").as_array().map(Vec::len), Some(2));
    assert_eq!(at(&query, "/result/queryLocator"), Value::Null);
    let merge = body("salesforce-partner-v58/merge-response.xml");
    assert_eq!(at(&merge, "/result/0/mergedRecordIds").as_array().map(Vec::len), Some(2));
    let created = body("salesforce-partner-v58/create-response-2.xml");
    assert_eq!(at(&created, "/result/0/success"), json!(false));
    assert_eq!(at(&created, "/result/0/id"), Value::Null);
    let sf_fault = fault("salesforce-partner-v58/login-fault.xml");
    assert!(sf_fault.to_string().contains("INVALID_LOGIN"), "{sf_fault:#}");

    // MantisBT (rpc/encoded): SOAP-ENC arrays are JSON arrays, typed by wsdl:arrayType.
    let issue = body("mantisconnect/mc_issue_get-response-2.xml");
    assert_eq!(at(&issue, "/return/id"), json!(99));
    assert_eq!(at(&issue, "/return/customFields").as_array().map(Vec::len), Some(2));
    assert_eq!(at(&issue, "/return/customFields/0/field/name"), json!("abrt_hash"));
    assert_eq!(at(&issue, "/return/attachments"), json!([]));
    assert_eq!(at(&issue, "/return/dueDate"), Value::Null);
    assert_eq!(at(&issue, "/return/sticky"), json!(false));
    let id = body("mantisconnect/mc_project_get_id_from_name-response.xml");
    assert!(at(&id, "/return").is_number(), "{id}");
    let fields = body("mantisconnect/mc_project_get_custom_fields-response.xml");
    assert_eq!(at(&fields, "/return").as_array().map(Vec::len), Some(2));

    // The small services, SOAP 1.1 and 1.2.
    let info = body("countryinfo/FullCountryInfo-response.xml");
    assert_eq!(at(&info, "/fullCountryInfoResult/languages/tLanguage").as_array().map(Vec::len), Some(2));
    assert_eq!(body("calculator/Add-response-3.xml"), body("calculator/Add-response-2.xml"));
    let weather = body("globalweather/GetWeather-response.xml");
    assert_eq!(at(&weather, "/getWeatherResult"), json!("Data Not Found"));
}

/// The Body content of an envelope as comparable lines: depth, namespace, local name,
/// attributes (local names; `xsi:type` as its local type name) and trimmed text.
/// NetSuite's versioned namespaces are compared without the version.
fn shape(xml: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(xml).into_owned();
    let mut r = NsReader::from_str(&text);
    let version = regex::Regex::new(r"_\d{4}_\d|_2_5").expect("regex");
    let mut out: Vec<String> = Vec::new();
    let mut depth = 0usize;
    let mut in_body = false;
    let mut body_depth = 0;
    loop {
        let (empty, start) = match r.read_event() {
            Ok(Event::Start(s)) => (false, s),
            Ok(Event::Empty(s)) => (true, s),
            Ok(Event::End(_)) => {
                depth -= 1;
                if in_body && depth == body_depth {
                    in_body = false;
                }
                continue;
            }
            Ok(Event::Text(t)) if in_body => {
                let t = t.xml10_content().trim().to_string();
                if !t.is_empty()
                    && let Some(last) = out.last_mut()
                {
                    last.push_str(&format!(" text={t}"));
                }
                continue;
            }
            Ok(Event::GeneralRef(g)) if in_body => {
                if let Some(last) = out.last_mut() {
                    last.push(veneer::translate::xmltext::resolve_ref(&g).unwrap_or('?'));
                }
                continue;
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => continue,
        };
        let (ns, local) = r.resolver().resolve_element(start.name());
        let local = local.as_ref().to_string();
        let ns = match ns {
            ResolveResult::Bound(n) => version.replace_all(n.0, "").into_owned(),
            _ => String::new(),
        };
        if in_body {
            let mut attrs: Vec<String> = start
                .attributes()
                .flatten()
                .filter(|a| !a.key.as_ref().starts_with("xmlns"))
                .map(|a| {
                    let v = a.normalized_value(quick_xml::XmlVersion::Implicit1_0).unwrap_or_default().into_owned();
                    let key = a.key.local_name().as_ref().to_string();
                    let v = if key == "type" { v.rsplit(':').next().unwrap_or("").to_string() } else { v };
                    format!("{key}={v}")
                })
                .collect();
            attrs.sort();
            out.push(format!("{}{{{ns}}}{local} {}", "  ".repeat(depth - body_depth - 1), attrs.join(" ")));
        }
        if local == "Body" && ns.contains("soap") && !in_body {
            in_body = true;
            body_depth = depth;
        }
        if !empty {
            depth += 1;
        }
    }
    out
}

#[test]
fn every_request_round_trips_through_json() {
    let mut models: BTreeMap<String, ServiceModel> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut refused: BTreeMap<String, String> = BTreeMap::new();
    let mut round_tripped = 0;
    for (folder, op_name, _, path) in messages().into_iter().filter(|m| m.2 == "request") {
        let model = models.entry(folder.clone()).or_insert_with(|| load(wsdl_of(&folder)).expect("WSDL loads"));
        let file = format!("{folder}/{}", path.file_name().unwrap_or_default().to_string_lossy());
        let op = model.operation(&op_name).unwrap_or_else(|| panic!("{file}: no operation {op_name}"));
        let bytes = std::fs::read(&path).expect("message");
        // The request's Body, read as the operation's input element, is its JSON equivalent.
        let json = match decode::response(&op.input, &model.schema, &bytes) {
            Ok(Decoded::Body(v)) => v,
            other => {
                refused.insert(file, format!("decode: {other:?}"));
                continue;
            }
        };
        match encode::envelope(op, &model.schema, &json, None) {
            Ok(xml) => {
                let (want, got) = (shape(&bytes), shape(xml.as_bytes()));
                if want == got {
                    round_tripped += 1;
                } else {
                    problems.push(format!("{file}:\n  want {want:#?}\n  got  {got:#?}\n  json {json}"));
                }
            }
            Err(errors) => {
                refused.insert(file, serde_json::to_string(&errors).expect("errors"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The requests SOURCES.md marks INVALID are refused with a pointer at the fault;
    // every valid one round-trips.
    let expect_refused = [
        ("calculator/Add-request-2.xml", "expected an integer"),
        ("calculator/Add-request-3.xml", "/intA"),
        ("netsuite-2023_2/add-request.xml", "must not be null"),
        (
            "sap-s4-journalentry/JournalEntryCreateRequestConfirmation_In-request.xml",
            "/journalEntryCreateRequest/0/journalEntry/businessTransactionType",
        ),
    ];
    for (file, needle) in expect_refused {
        let why = refused.remove(file).unwrap_or_else(|| panic!("{file} was accepted"));
        assert!(why.contains(needle), "{file}: {why}");
    }
    assert!(refused.is_empty(), "refused: {refused:#?}");
    assert!(round_tripped >= 10, "{round_tripped} requests round-tripped");
}
