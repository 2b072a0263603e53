//! Data-driven translation tests over `tests/fixtures/translate/<case>/`:
//!
//! - `case.txt`: `wsdl: <file under tests/fixtures/wsdl>`, `operation: <name>`, optional
//!   `soap: 1.2`, `naming: original` and `xsd_any: xml`;
//! - `request.json` (with SOAP header values in `request_headers.json`) → must encode to exactly `expected_request.xml`, or fail with the
//!   field errors in `expected_errors.json`;
//! - `backend_response.xml` → must decode to `expected.json`: `{"body": …}`, `{"fault": …}`
//!   or `{"error": "<problem title>"}`.
//!
//! `BLESS=1 cargo test --test translate_fixtures` writes the expected files from the
//! current output, for review in the diff.

mod common;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use veneer::schema::naming::JsonNaming;
use veneer::schema::wsdl::{self, ReadOptions};
use veneer::schema::{ServiceModel, SoapVersion};
use veneer::translate::decode::{self, Decoded};
use veneer::translate::encode;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn setting<'a>(case: &'a str, key: &str) -> Option<&'a str> {
    case.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')).map(str::trim))
}

fn load(case_dir: &Path) -> (ServiceModel, String) {
    let case = std::fs::read_to_string(case_dir.join("case.txt")).expect("case.txt");
    let wsdl_file = setting(&case, "wsdl").expect("case.txt names a wsdl");
    let options = ReadOptions {
        soap_version: setting(&case, "soap").map(|v| if v == "1.2" { SoapVersion::V12 } else { SoapVersion::V11 }),
        naming: if setting(&case, "naming") == Some("original") { JsonNaming::Original } else { JsonNaming::CamelCase },
        any_as_xml: setting(&case, "xsd_any") == Some("xml"),
        ..Default::default()
    };
    let path = fixtures().join("wsdl").join(wsdl_file);
    let bytes = std::fs::read(&path).expect("wsdl file");
    let options = ReadOptions { base: path.parent().map(Path::to_path_buf), ..options };
    let model = wsdl::read(&bytes, options).unwrap_or_else(|e| panic!("{wsdl_file}: {e}"));
    (model, setting(&case, "operation").expect("case.txt names an operation").to_string())
}

fn check_or_bless(path: &Path, actual: &str) -> Option<String> {
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(path, actual).expect("bless");
        return None;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|_| panic!("missing {}", path.display()));
    (expected.trim_end() != actual.trim_end()).then(|| {
        format!("{}:\n--- expected\n{}\n--- actual\n{}", path.display(), expected.trim_end(), actual.trim_end())
    })
}

/// Runs one case: the number of checks it made (an encode, a decode) and its mismatches.
fn run_case(dir: &Path) -> (usize, Vec<String>) {
    let (model, op_name) = load(dir);
    let op = model.operation(&op_name).unwrap_or_else(|| panic!("{}: no operation {op_name}", dir.display()));
    let mut failures = Vec::new();
    let mut checks = 0;
    if let Ok(request) = std::fs::read_to_string(dir.join("request.json")) {
        checks += 1;
        let input: Value = serde_json::from_str(&request).expect("request.json is JSON");
        // request_headers.json: header element name → JSON, as a route's `soap_headers:` fills it.
        let header = std::fs::read_to_string(dir.join("request_headers.json")).ok().map(|text| {
            let headers: serde_json::Map<String, Value> =
                serde_json::from_str(&text).expect("headers are a JSON object");
            let mut xml = String::new();
            for (name, value) in &headers {
                let el = op.headers.iter().find(|h| &h.name == name).unwrap_or_else(|| panic!("no header {name}"));
                encode::body_element(&mut xml, el, &model.schema, value).expect("header encodes");
            }
            xml
        });
        match encode::envelope(op, &model.schema, &input, header.as_deref()) {
            Ok(xml) => failures.extend(check_or_bless(&dir.join("expected_request.xml"), &xml)),
            Err(errors) => {
                let actual = serde_json::to_string_pretty(&errors).expect("errors serialise");
                failures.extend(check_or_bless(&dir.join("expected_errors.json"), &actual));
            }
        }
    }
    if let Ok(response) = std::fs::read(dir.join("backend_response.xml")) {
        checks += 1;
        failures.extend(common::text_decoder_agrees(op, &model.schema, &response, &dir.display().to_string()));
        let actual = match decode::response_with_faults(&op.output, &op.faults, &model.schema, &response) {
            Ok(Decoded::Body(v)) => json!({ "body": v }),
            Ok(Decoded::Fault(f)) => json!({ "fault": f.to_json() }),
            Err(e) => json!({ "error": e.title(), "detail": e.to_string() }),
        };
        let text = serde_json::to_string_pretty(&actual).expect("serialise");
        failures.extend(check_or_bless(&dir.join("expected.json"), &text));
    }
    if checks == 0 {
        failures.push(format!("{}: nothing to check (no request.json or backend_response.xml)", dir.display()));
    }
    (checks, failures)
}

#[test]
fn translation_fixtures() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures().join("translate"))
        .expect("fixtures dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 6, "fixture cases went missing: {cases:?}");
    let mut checks = 0;
    let mut failures = Vec::new();
    for case in &cases {
        let (n, f) = run_case(case);
        checks += n;
        failures.extend(f);
    }
    assert!(failures.is_empty(), "{} fixture mismatch(es):\n{}", failures.len(), failures.join("\n\n"));
    // Every expected file was compared: none sits in a folder nothing reads.
    let expected = cases
        .iter()
        .flat_map(|c| ["expected_request.xml", "expected_errors.json", "expected.json"].map(|f| c.join(f)))
        .filter(|p| p.exists())
        .count();
    assert_eq!(checks, expected, "each check has exactly one expected file");
    println!("{} fixture cases, {checks} checks", cases.len());
}
