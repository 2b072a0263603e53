//! The `GET /items/{no}` SOAP response and quick-xml's reader alone over a document, shared
//! by `benches/translate.rs` and `examples/decode_cost.rs` so both measure the same input.

/// The GetItem response with `rows` `<Location>` rows (3 is the item route's message; the
/// large response has 5000).
pub fn item_response(rows: usize) -> String {
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetItemResponse xmlns="urn:veneer:sample-erp"><GetItemResult><No>1000</No><Description>Hydraulic pump HP-200</Description><Base_Unit_of_Measure>PCS</Base_Unit_of_Measure><Inventory>1520.25</Inventory><Unit_Price>12345678901234567.123456</Unit_Price><Blocked>false</Blocked><Last_Date_Modified>2026-11-20T14:03:11Z</Last_Date_Modified>"#,
    );
    for i in 0..rows {
        xml.push_str(&format!(
            "<Location><Code>LOC{i}</Code><Bin>A-{i:04}</Bin><Quantity>{i}.250</Quantity></Location>"
        ));
    }
    xml.push_str("</GetItemResult></GetItemResponse></soap:Body></soap:Envelope>");
    xml
}

/// Reads every event of `xml` with the reader the decoder uses (same settings) and does
/// nothing with them but count the start tags: what tokenising alone costs, the floor of
/// any decoder built on quick-xml.
pub fn events_only(xml: &str) -> usize {
    let mut r = quick_xml::Reader::from_str(std::hint::black_box(xml));
    let mut starts = 0;
    loop {
        match r.read_event().expect("well-formed") {
            quick_xml::events::Event::Start(_) | quick_xml::events::Event::Empty(_) => starts += 1,
            quick_xml::events::Event::Eof => return starts,
            _ => {}
        }
    }
}
