//! Decoding cost in instructions, which unlike time does not move with a noisy machine:
//! the `GET /items/{no}` response decoded `N` times, either as the request path does it
//! (`text`: straight to JSON text) or through a `Value` tree serialised afterwards (`tree`).
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

const WSDL: &str = include_str!("../config/wsdl/sample-erp.wsdl");
fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode != "text" && mode != "tree" {
        eprintln!("usage: decode_cost text|tree [N [ROWS]]");
        std::process::exit(2);
    }
    let n: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let rows: usize = std::env::args().nth(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let model = wsdl::read(WSDL.as_bytes(), ReadOptions::default()).expect("wsdl");
    let op = model.operation("GetItem").expect("op");
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetItemResponse xmlns="urn:veneer:sample-erp"><GetItemResult><No>1000</No><Description>Hydraulic pump HP-200</Description><Base_Unit_of_Measure>PCS</Base_Unit_of_Measure><Inventory>1520.25</Inventory><Unit_Price>12345678901234567.123456</Unit_Price><Blocked>false</Blocked><Last_Date_Modified>2026-11-20T14:03:11Z</Last_Date_Modified>"#,
    );
    for i in 0..rows {
        xml.push_str(&format!(
            "<Location><Code>LOC{i}</Code><Bin>A-{i:04}</Bin><Quantity>{i}.250</Quantity></Location>"
        ));
    }
    xml.push_str("</GetItemResult></GetItemResponse></soap:Body></soap:Envelope>");
    let select: Vec<String> = vec![];
    let mut total = 0;
    for _ in 0..n {
        if mode == "text" {
            if let Ok(Decoded::Body(b)) =
                decode::response_json(&op.output, &op.faults, &model.schema, xml.as_bytes(), &select)
            {
                total += b.len();
            }
        } else if let Ok(Decoded::Body(v)) =
            decode::response_with_faults(&op.output, &op.faults, &model.schema, xml.as_bytes())
        {
            let sel = select.iter().try_fold(&v, |v, k| v.get(k)).unwrap_or(&serde_json::Value::Null);
            total += serde_json::to_vec(sel).map(|b| b.len()).unwrap_or(0);
        }
    }
    println!("{total}");
}
