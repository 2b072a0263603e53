//! XSD constructs the corpus uses rarely or not at all, on one small WSDL: named model
//! groups and attribute groups, `xsd:list`, `xsd:union`, XSD patterns (name classes, block
//! names, literal `$`), and an abstract type substituted with `xsi:type`, each through the
//! encoder and the decoder.

use serde_json::{Value, json};
use veneer::schema::ServiceModel;
use veneer::schema::wsdl::{self, ReadOptions};
use veneer::translate::decode::{self, Decoded};
use veneer::translate::encode;

const WSDL: &str = r#"<?xml version="1.0"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:t="urn:x" targetNamespace="urn:x">
  <types>
    <xs:schema targetNamespace="urn:x" elementFormDefault="qualified">
      <xs:simpleType name="Codes"><xs:list itemType="xs:int"/></xs:simpleType>
      <xs:simpleType name="SizeOrAuto">
        <xs:union memberTypes="xs:decimal">
          <xs:simpleType><xs:restriction base="xs:string"><xs:enumeration value="auto"/></xs:restriction></xs:simpleType>
        </xs:union>
      </xs:simpleType>
      <xs:simpleType name="Name"><xs:restriction base="xs:string"><xs:pattern value="\i\c*"/></xs:restriction></xs:simpleType>
      <xs:simpleType name="Price"><xs:restriction base="xs:string"><xs:pattern value="\d+\$"/></xs:restriction></xs:simpleType>
      <xs:simpleType name="Ascii"><xs:restriction base="xs:string"><xs:pattern value="\p{IsBasicLatin}+"/></xs:restriction></xs:simpleType>
      <xs:group name="Audit">
        <xs:sequence><xs:element name="CreatedBy" type="xs:string"/><xs:element name="CreatedAt" type="xs:dateTime" minOccurs="0"/></xs:sequence>
      </xs:group>
      <xs:attributeGroup name="Ids"><xs:attribute name="id" type="xs:int" use="required"/><xs:attribute name="rev" type="xs:int"/></xs:attributeGroup>
      <xs:complexType name="Shape" abstract="true">
        <xs:sequence><xs:element name="Label" type="t:Name"/></xs:sequence>
        <xs:attributeGroup ref="t:Ids"/>
      </xs:complexType>
      <xs:complexType name="Circle"><xs:complexContent><xs:extension base="t:Shape">
        <xs:sequence><xs:element name="Radius" type="t:SizeOrAuto"/></xs:sequence>
      </xs:extension></xs:complexContent></xs:complexType>
      <xs:complexType name="Box"><xs:complexContent><xs:extension base="t:Shape">
        <xs:sequence><xs:element name="Codes" type="t:Codes"/><xs:element name="Price" type="t:Price" minOccurs="0"/><xs:element name="Note" type="t:Ascii" minOccurs="0"/></xs:sequence>
      </xs:extension></xs:complexContent></xs:complexType>
      <xs:element name="Put"><xs:complexType><xs:sequence>
        <xs:element name="Shape" type="t:Shape" maxOccurs="unbounded"/>
        <xs:group ref="t:Audit"/>
      </xs:sequence></xs:complexType></xs:element>
      <xs:element name="PutResponse"><xs:complexType><xs:sequence>
        <xs:element name="Shape" type="t:Shape" maxOccurs="unbounded"/>
      </xs:sequence></xs:complexType></xs:element>
    </xs:schema>
  </types>
  <message name="PutIn"><part name="p" element="t:Put"/></message>
  <message name="PutOut"><part name="p" element="t:PutResponse"/></message>
  <portType name="P"><operation name="Put"><input message="t:PutIn"/><output message="t:PutOut"/></operation></portType>
  <binding name="B" type="t:P"><soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="Put"><soap:operation soapAction="Put"/><input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>
  </binding>
</definitions>"#;

fn model() -> ServiceModel {
    wsdl::read(WSDL.as_bytes(), ReadOptions::default()).expect("loads")
}

fn encode(input: Value) -> Result<String, String> {
    let m = model();
    let op = m.operation("Put").expect("Put");
    encode::envelope(op, &m.schema, &input, None).map_err(|e| serde_json::to_string(&e).expect("json"))
}

#[test]
fn abstract_types_groups_lists_unions_and_patterns_encode() {
    let xml = encode(json!({
        "shape": [
            { "@type": "Circle", "id": 1, "label": "c1", "radius": "auto" },
            { "@type": "Box", "id": 2, "rev": 3, "label": "_b.2", "codes": [1, "2", 3], "price": "12$", "note": "plain" },
            { "@type": "Circle", "id": 3, "label": "c3", "radius": 2.5 }
        ],
        "createdBy": "ops"
    }))
    .expect("valid");
    assert!(
        xml.contains(
            r#"<Shape xmlns:vt="urn:x" xsi:type="vt:Circle" id="1"><Label>c1</Label><Radius>auto</Radius></Shape>"#
        ),
        "{xml}"
    );
    assert!(
        xml.contains(r#"xsi:type="vt:Box" id="2" rev="3"><Label>_b.2</Label><Codes>1 2 3</Codes><Price>12$</Price>"#),
        "{xml}"
    );
    assert!(xml.contains("<Radius>2.5</Radius>"), "{xml}");
    assert!(xml.contains("</Shape><CreatedBy>ops</CreatedBy></Put>"), "the group's elements follow in order: {xml}");

    let errors = encode(json!({
        "shape": [
            { "id": 1, "label": "x", "radius": 1 },
            { "@type": "Triangle", "id": 2, "label": "x" },
            { "@type": "Circle", "label": "9lives", "radius": "big" },
            { "@type": "Box", "id": 4, "label": "b", "codes": [1, "two"], "price": "$12", "note": "naïve" }
        ]
    }))
    .expect_err("invalid");
    for needle in [
        r#""/shape/0/@type","detail":"Shape is abstract; name the concrete type: one of Circle, Box""#,
        r#""/shape/1/@type","detail":"unknown type \"Triangle\"; expected one of Circle, Box""#,
        r#""/shape/2/id","detail":"required attribute is missing""#,
        r#""/shape/2/label","detail":"expected text matching the pattern"#,
        r#""/shape/2/radius","detail":"expected a value of one of the union's types"#,
        r#""/shape/3/codes/1""#,
        r#""/shape/3/price","detail":"expected text matching the pattern"#,
        r#""/shape/3/note","detail":"expected text matching the pattern"#,
        r#""/createdBy","detail":"required field is missing""#,
    ] {
        assert!(errors.contains(needle), "{needle}\nin {errors}");
    }
}

#[test]
fn abstract_types_lists_and_unions_decode() {
    let m = model();
    let op = m.operation("Put").expect("Put");
    let response = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><s:Body>
      <PutResponse xmlns="urn:x" xmlns:x="urn:x">
        <Shape i:type="x:Box" id="2"><Label>b</Label><Codes> 4  5
          6 </Codes></Shape>
        <Shape i:type="Circle" id="1"><Label>c</Label><Radius>auto</Radius></Shape>
        <Shape i:type="x:Circle" id="3"><Label>d</Label><Radius>0.75</Radius></Shape>
      </PutResponse></s:Body></s:Envelope>"#;
    let Ok(Decoded::Body(v)) = decode::response(&op.output, &m.schema, response.as_bytes()) else { panic!("decodes") };
    assert_eq!(
        v,
        json!({ "shape": [
            { "@type": "Box", "id": 2, "label": "b", "codes": [4, 5, 6] },
            { "@type": "Circle", "id": 1, "label": "c", "radius": "auto" },
            { "@type": "Circle", "id": 3, "label": "d", "radius": 0.75 }
        ]})
    );
}

#[test]
fn raw_xml_capture_makes_each_undeclared_element_standalone() {
    // Salesforce's sObject is open (xsd:any); with xsd_any: xml its undeclared fields come
    // back as one XML string, each element carrying the namespace declarations it uses.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wsdl/salesforce-partner-v58.wsdl");
    let bytes = std::fs::read(path).expect("wsdl");
    let m = wsdl::read(&bytes, ReadOptions { any_as_xml: true, ..Default::default() }).expect("loads");
    let op = m.operation("retrieve").expect("retrieve");
    let response = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:sf="urn:sobject.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:a="urn:a"><soapenv:Body><retrieveResponse><result xsi:type="sf:sObject"><sf:type>Account</sf:type><sf:Id>001</sf:Id><sf:Description xsi:nil="true"/><Plain a:flag="1">x &amp; y</Plain><sf:Owner xsi:type="sf:User"><sf:Name>Ann</sf:Name></sf:Owner><Mine xmlns="urn:mine"><Deep/></Mine></result></retrieveResponse></soapenv:Body></soapenv:Envelope>"#;
    let Ok(Decoded::Body(v)) = decode::response(&op.output, &m.schema, response.as_bytes()) else { panic!("decodes") };
    let xml = v["result"][0]["@xml"].as_str().expect("raw XML").to_string();
    assert_eq!(
        xml,
        concat!(
            r#"<sf:Description xmlns:sf="urn:sobject.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:nil="true"/>"#,
            r#"<Plain xmlns="urn:partner.soap.sforce.com" xmlns:a="urn:a" a:flag="1">x &amp; y</Plain>"#,
            r#"<sf:Owner xmlns:sf="urn:sobject.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="sf:User"><sf:Name>Ann</sf:Name></sf:Owner>"#,
            r#"<Mine xmlns="urn:mine"><Deep/></Mine>"#,
        )
    );
    assert_eq!(v["result"][0]["type"], "Account");
    // What came out goes back in unchanged.
    assert!(veneer::translate::xmltext::check_fragment(&xml).is_ok());
}

#[test]
fn substitution_groups_become_a_choice_of_their_members() {
    // OAGIS-style: an abstract head element and members, one of them transitively.
    let wsdl = WSDL
        .replace(
            r#"<xs:element name="PutResponse">"#,
            r#"<xs:element name="Party" type="xs:anyType" abstract="true"/>
      <xs:element name="Person" substitutionGroup="t:Party"><xs:complexType><xs:sequence><xs:element name="Name" type="xs:string"/></xs:sequence></xs:complexType></xs:element>
      <xs:element name="Company" substitutionGroup="t:Party"><xs:complexType><xs:sequence><xs:element name="Name" type="xs:string"/></xs:sequence></xs:complexType></xs:element>
      <xs:element name="Supplier" substitutionGroup="t:Company"><xs:complexType><xs:sequence><xs:element name="Vat" type="xs:string"/></xs:sequence></xs:complexType></xs:element>
      <xs:element name="PutResponse">"#,
        )
        .replace(
            r#"<xs:element name="Shape" type="t:Shape" maxOccurs="unbounded"/>
      </xs:sequence></xs:complexType></xs:element>"#,
            r#"<xs:element ref="t:Party" maxOccurs="unbounded"/>
      </xs:sequence></xs:complexType></xs:element>"#,
        );
    let m = wsdl::read(wsdl.as_bytes(), ReadOptions::default()).expect("loads");
    let op = m.operation("Put").expect("Put");
    let response = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><PutResponse xmlns="urn:x">
        <Person><Name>Ann</Name></Person><Supplier><Vat>DE1</Vat></Supplier><Person><Name>Bo</Name></Person>
      </PutResponse></s:Body></s:Envelope>"#;
    let Ok(Decoded::Body(v)) = decode::response(&op.output, &m.schema, response.as_bytes()) else { panic!("decodes") };
    assert_eq!(
        v,
        json!({ "person": [{ "name": "Ann" }, { "name": "Bo" }], "company": [], "supplier": [{ "vat": "DE1" }] })
    );
    let put = m.operation("Put").expect("Put");
    let xml = encode::envelope(
        put,
        &m.schema,
        &json!({ "shape": [{ "@type": "Circle", "id": 1, "label": "c", "radius": 1 }], "createdBy": "x" }),
        None,
    )
    .expect("the request side is unchanged");
    assert!(xml.contains("<Shape"), "{xml}");
    let resp_schema = veneer::openapi::schema::Schemas::new(&m.schema, "").example(&op.output, 0);
    assert!(resp_schema.get("party").is_none(), "the abstract head is not a field: {resp_schema}");
}

/// A WSDL whose schema holds `schema` and whose operations are `(name, input, output)`
/// element names from it.
fn one_schema_wsdl(schema: &str, ops: &[(&str, &str, &str)]) -> String {
    let mut messages = String::new();
    let mut port = String::new();
    let mut binding = String::new();
    for (op, input, output) in ops {
        messages.push_str(&format!(
            r#"<message name="{op}In"><part name="p" element="t:{input}"/></message><message name="{op}Out"><part name="p" element="t:{output}"/></message>"#
        ));
        port.push_str(&format!(
            r#"<operation name="{op}"><input message="t:{op}In"/><output message="t:{op}Out"/></operation>"#
        ));
        binding.push_str(&format!(
            r#"<operation name="{op}"><soap:operation soapAction="{op}"/><input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>"#
        ));
    }
    format!(
        r#"<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:t="urn:x" targetNamespace="urn:x">
  <types><xs:schema targetNamespace="urn:x" elementFormDefault="qualified">{schema}</xs:schema></types>
  {messages}<portType name="P">{port}</portType>
  <binding name="B" type="t:P"><soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>{binding}</binding>
</definitions>"#
    )
}

#[test]
fn a_global_element_that_contains_itself_is_a_tree_not_a_loop() {
    let wsdl = one_schema_wsdl(
        r#"<xs:element name="Node"><xs:complexType><xs:sequence>
             <xs:element name="Name" type="xs:string"/>
             <xs:element ref="t:Node" minOccurs="0" maxOccurs="unbounded"/>
           </xs:sequence></xs:complexType></xs:element>"#,
        &[("Tree", "Node", "Node")],
    );
    let m = wsdl::read(wsdl.as_bytes(), ReadOptions::default()).expect("loads");
    let op = m.operation("Tree").expect("Tree");
    let response = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><Node xmlns="urn:x"><Name>root</Name><Node><Name>a</Name><Node><Name>a1</Name></Node></Node><Node><Name>b</Name></Node></Node></s:Body></s:Envelope>"#;
    let Ok(Decoded::Body(v)) = decode::response(&op.output, &m.schema, response.as_bytes()) else { panic!("decodes") };
    assert_eq!(v["node"][0]["node"][0]["name"], "a1");
    assert_eq!(v["node"][1]["name"], "b");
}

#[test]
fn exponentially_nested_groups_are_refused_not_expanded() {
    // g0 holds g1 twice, g1 holds g2 twice, … : 2^40 elements if expanded.
    let mut schema = String::new();
    for i in 0..40 {
        schema.push_str(&format!(
            r#"<xs:group name="g{i}"><xs:sequence><xs:group ref="t:g{n}"/><xs:group ref="t:g{n}"/></xs:sequence></xs:group>"#,
            n = i + 1
        ));
    }
    schema.push_str(
        r#"<xs:group name="g40"><xs:sequence><xs:element name="Leaf" type="xs:string"/></xs:sequence></xs:group>"#,
    );
    schema.push_str(r#"<xs:element name="Bomb"><xs:complexType><xs:group ref="t:g0"/></xs:complexType></xs:element>"#);
    schema.push_str(r#"<xs:element name="Ok"><xs:complexType><xs:sequence><xs:element name="A" type="xs:int"/></xs:sequence></xs:complexType></xs:element>"#);
    let wsdl = one_schema_wsdl(&schema, &[("Boom", "Bomb", "Ok"), ("Fine", "Ok", "Ok")]);
    let m = wsdl::read(wsdl.as_bytes(), ReadOptions::default()).expect("the usable operation loads");
    assert_eq!(m.operations.len(), 1);
    assert!(m.skipped[0].reason.contains("exponential"), "{:?}", m.skipped);
}

#[test]
fn subtypes_are_complete_whichever_type_is_reached_first() {
    // B (extends A) is reached before A; C extends B. A value of type A may still be a C.
    let wsdl = one_schema_wsdl(
        r#"<xs:complexType name="A"><xs:sequence><xs:element name="X" type="xs:int"/></xs:sequence></xs:complexType>
           <xs:complexType name="B"><xs:complexContent><xs:extension base="t:A"><xs:sequence><xs:element name="Y" type="xs:int"/></xs:sequence></xs:extension></xs:complexContent></xs:complexType>
           <xs:complexType name="C"><xs:complexContent><xs:extension base="t:B"><xs:sequence><xs:element name="Z" type="xs:int"/></xs:sequence></xs:extension></xs:complexContent></xs:complexType>
           <xs:element name="Put"><xs:complexType><xs:sequence><xs:element name="b" type="t:B"/><xs:element name="a" type="t:A"/></xs:sequence></xs:complexType></xs:element>
           <xs:element name="Done"><xs:complexType><xs:sequence/></xs:complexType></xs:element>"#,
        &[("Put", "Put", "Done")],
    );
    let m = wsdl::read(wsdl.as_bytes(), ReadOptions::default()).expect("loads");
    let op = m.operation("Put").expect("Put");
    let xml = encode::envelope(
        op,
        &m.schema,
        &json!({ "b": { "x": 1, "y": 2 }, "a": { "@type": "C", "x": 1, "y": 2, "z": 3 } }),
        None,
    )
    .expect("C substitutes A");
    assert!(xml.contains(r#"xsi:type="vt:C"><X>1</X><Y>2</Y><Z>3</Z></a>"#), "{xml}");
}

#[test]
fn a_list_of_a_union_is_an_array_of_mixed_values() {
    let wsdl = one_schema_wsdl(
        r#"<xs:simpleType name="Mixed"><xs:list><xs:simpleType><xs:union memberTypes="xs:int xs:date"/></xs:simpleType></xs:list></xs:simpleType>
           <xs:element name="M"><xs:complexType><xs:sequence><xs:element name="V" type="t:Mixed"/></xs:sequence></xs:complexType></xs:element>"#,
        &[("Echo", "M", "M")],
    );
    let m = wsdl::read(wsdl.as_bytes(), ReadOptions::default()).expect("loads");
    let op = m.operation("Echo").expect("Echo");
    let xml = encode::envelope(op, &m.schema, &json!({ "v": [1, "2020-01-01"] }), None).expect("valid");
    assert!(xml.contains("<V>1 2020-01-01</V>"), "{xml}");
    let bad = encode::envelope(op, &m.schema, &json!({ "v": [1, "soon"] }), None).expect_err("not int, not date");
    assert_eq!(bad[0].pointer.as_deref(), Some("/v/1"));
    let response = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><M xmlns="urn:x"><V> 7 2021-02-03 </V></M></s:Body></s:Envelope>"#;
    let Ok(Decoded::Body(v)) = decode::response(&op.output, &m.schema, response.as_bytes()) else { panic!("decodes") };
    assert_eq!(v, json!({ "v": [7, "2021-02-03"] }));
}

#[test]
fn a_type_that_fails_fails_every_operation_using_it() {
    // T names an undeclared type: both operations using T are skipped, neither gets an
    // empty T silently.
    let wsdl = one_schema_wsdl(
        r#"<xs:complexType name="T"><xs:sequence><xs:element name="Q" type="t:Nowhere"/></xs:sequence></xs:complexType>
           <xs:element name="E1"><xs:complexType><xs:sequence><xs:element name="t" type="t:T"/></xs:sequence></xs:complexType></xs:element>
           <xs:element name="E2"><xs:complexType><xs:sequence><xs:element name="t" type="t:T"/></xs:sequence></xs:complexType></xs:element>
           <xs:element name="Ok"><xs:complexType><xs:sequence/></xs:complexType></xs:element>"#,
        &[("One", "E1", "Ok"), ("Two", "E2", "Ok"), ("Three", "Ok", "Ok")],
    );
    let m = wsdl::read(wsdl.as_bytes(), ReadOptions::default()).expect("Three loads");
    let skipped: Vec<&str> = m.skipped.iter().map(|s| s.operation.as_str()).collect();
    assert_eq!(skipped, ["One", "Two"]);
    assert!(m.skipped.iter().all(|s| s.reason.contains("Nowhere")), "{:?}", m.skipped);
}
