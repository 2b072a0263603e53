//! Property test: the WSDL reader and the response decoder never panic, whatever the bytes.
//! Inputs are real corpus files mutated the way broken files are broken: truncated, a byte
//! flipped, a range dropped or doubled, markup characters spliced in. Each must give a
//! model or a clean error.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use veneer::schema::wsdl::{self, ReadOptions};
use veneer::translate::decode;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// One mutation of `bytes`, driven by three random numbers.
fn mutate(bytes: &[u8], kind: u8, a: usize, b: usize) -> Vec<u8> {
    let len = bytes.len().max(1);
    let (i, j) = (a % len, b % len);
    let (lo, hi) = (i.min(j), i.max(j));
    let mut out = bytes.to_vec();
    match kind % 6 {
        0 => out.truncate(i),
        1 => {
            if let Some(c) = out.get_mut(i) {
                *c ^= 1 << (b % 8);
            }
        }
        2 => {
            out.drain(lo..hi.min(lo + 64));
        }
        3 => {
            let copy = out[lo..hi.min(lo + 4096)].to_vec();
            out.splice(i..i, copy);
        }
        4 => {
            let junk: &[u8] = [b"<".as_slice(), b">", b"\"", b"&", b"</x>", b"<!--", b"]]>", b"\xff", b":"][b % 9];
            out.splice(i..i, junk.iter().copied());
        }
        _ => {
            // Swap two ranges' positions by rotating: reorders elements and attributes.
            out[lo..hi].rotate_left((hi - lo) / 2);
        }
    }
    out
}

const WSDLS: [&str; 6] = [
    "calculator.wsdl",
    "sap-b1-items.wsdl",
    "mantisconnect.wsdl",
    "lnp-numbermanagement/NumberManagement.wsdl",
    "siebel-order.wsdl",
    "1c-delivery.wsdl",
];

proptest! {
    // 512 cases in CI; PROPTEST_CASES=N for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_wsdl_reader_never_panics(file in 0usize..WSDLS.len(), kind: u8, a: usize, b: usize, twice: bool) {
        let path = fixtures().join("wsdl").join(WSDLS[file]);
        let bytes = std::fs::read(&path).expect("fixture");
        let mut mutated = mutate(&bytes, kind, a, b);
        if twice {
            mutated = mutate(&mutated, kind.wrapping_add(1), b, a);
        }
        let options = ReadOptions { base: path.parent().map(Path::to_path_buf), ..Default::default() };
        if let Ok(model) = wsdl::read(&mutated, options) {
            // Whatever loaded must be usable: every operation's output decodes without panic.
            for op in &model.operations {
                let _ = decode::response(&op.output, &model.schema, b"<x/>");
            }
        }
    }

    #[test]
    fn the_decoder_never_panics(file in 0usize..6, kind: u8, a: usize, b: usize) {
        let (wsdl_file, message, op, any_xml) = [
            ("netsuite-2023_2/netsuite.wsdl", "netsuite-2023_2/get-response-2.xml", "get", false),
            ("mantisconnect.wsdl", "mantisconnect/mc_issue_get-response-2.xml", "mc_issue_get", false),
            ("salesforce-partner-v58.wsdl", "salesforce-partner-v58/query-response.xml", "query", false),
            ("calculator.wsdl", "calculator/Add-response.xml", "Add", false),
            // Axis-style href/multiRef graph: mutations break references and make cycles.
            ("mantisconnect.wsdl", "../translate/mantis-axis-multiref/backend_response.xml", "mc_project_get_custom_fields", false),
            // xsd:any captured as raw XML spans.
            ("salesforce-partner-v58.wsdl", "salesforce-partner-v58/query-response.xml", "query", true),
        ][file];
        let model = model(wsdl_file, any_xml);
        let op = model.operation(op).expect("operation");
        let bytes = std::fs::read(fixtures().join("messages").join(message)).expect("message");
        let _ = decode::response_with_faults(&op.output, &op.faults, &model.schema, &mutate(&bytes, kind, a, b));
    }
}

/// Models are loaded once per file (NetSuite takes a moment in debug builds).
fn model(file: &str, any_as_xml: bool) -> std::sync::Arc<veneer::schema::ServiceModel> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    type Models = HashMap<(String, bool), Arc<veneer::schema::ServiceModel>>;
    static MODELS: OnceLock<Mutex<Models>> = OnceLock::new();
    let mut models = MODELS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    models
        .entry((file.to_string(), any_as_xml))
        .or_insert_with(|| {
            let path = fixtures().join("wsdl").join(file);
            let bytes = std::fs::read(&path).expect("fixture");
            let options = ReadOptions { base: path.parent().map(Path::to_path_buf), any_as_xml, ..Default::default() };
            Arc::new(wsdl::read(&bytes, options).expect("loads"))
        })
        .clone()
}
