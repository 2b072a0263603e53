//! Decoding cost in instructions, which unlike time does not move with a noisy machine:
//! the `GET /items/{no}` response decoded `N` times, either as the request path does it
//! (`text`: straight to JSON text) or through a `Value` tree serialised afterwards (`tree`);
//! or (`wide`) a record of 80 fields, the width of an ERP page such as a NAV sales line.
//! `events` reads the item response's events with quick-xml's reader alone and does
//! nothing with them: the tokeniser's share, which no decoder built on it can go below.
//!
//!   cargo build --release --example decode_cost
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/decode_cost text 2000
//!
//! Run it with `0` as well and subtract: the difference over `N` is the cost per response.
//! A third argument sets the number of `<Location>` rows (3 by default; the criterion
//! benchmark's large response has 5000).

use veneer::schema::wsdl::{self, ReadOptions};
use veneer::translate::decode::{self, Decoded};
// The allocator the gateway ships with (src/main.rs), so the figures are the request path's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../benches/support/messages.rs"]
mod messages;
use messages::{events_only, item_response};

const WSDL: &str = include_str!("../config/wsdl/sample-erp.wsdl");
const WIDE_FIELDS: usize = 80;

/// A WSDL whose response is one record of `WIDE_FIELDS` string fields, and such a response.
fn wide() -> (String, String) {
    let fields: String =
        (0..WIDE_FIELDS).map(|i| format!(r#"<xs:element name="Field_{i}" type="xs:string" minOccurs="0"/>"#)).collect();
    let wsdl = format!(
        r#"<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
        xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:t="urn:x" targetNamespace="urn:x">
      <types><xs:schema targetNamespace="urn:x" elementFormDefault="qualified">
        <xs:element name="Line"><xs:complexType><xs:sequence>{fields}</xs:sequence></xs:complexType></xs:element>
      </xs:schema></types>
      <message name="Line"><part name="p" element="t:Line"/></message>
      <portType name="P"><operation name="GetItem"><input message="t:Line"/><output message="t:Line"/></operation></portType>
      <binding name="B" type="t:P"><soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
        <operation name="GetItem"><soap:operation soapAction="Get"/><input><soap:body use="literal"/></input>
        <output><soap:body use="literal"/></output></operation></binding>
    </definitions>"#
    );
    let body: String = (0..WIDE_FIELDS).map(|i| format!("<Field_{i}>value {i}</Field_{i}>")).collect();
    let xml = format!(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><Line xmlns="urn:x">{body}</Line></s:Body></s:Envelope>"#
    );
    (wsdl, xml)
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if !["text", "tree", "wide", "events"].contains(&mode.as_str()) {
        eprintln!("usage: decode_cost text|tree|wide|events [N [ROWS]]");
        std::process::exit(2);
    }
    let n: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let rows: usize = std::env::args().nth(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let (wsdl, xml) = if mode == "wide" { wide() } else { (WSDL.to_string(), item_response(rows)) };
    let model = wsdl::read(wsdl.as_bytes(), ReadOptions::default()).expect("wsdl");
    let op = model.operation("GetItem").expect("op");
    let mut total = 0;
    for _ in 0..n {
        if mode == "events" {
            total += events_only(&xml);
        } else if mode == "tree" {
            if let Ok(Decoded::Body(v)) =
                decode::response_with_faults(&op.output, &op.faults, &model.schema, xml.as_bytes())
            {
                total += serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(0);
            }
        } else if let Ok(Decoded::Body(b)) =
            decode::response_json(&op.output, &op.faults, &model.schema, xml.as_bytes(), &[])
        {
            total += b.len();
        }
    }
    // A decoding error would make every figure meaningless.
    assert!(n == 0 || total > 0, "nothing decoded");
    println!("{total}");
}
