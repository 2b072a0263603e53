//! SOAP response → typed JSON (or a [`Fault`]), streaming with quick-xml.
//!
//! The reader walks the envelope once, typing values by the schema as it goes: numbers for
//! numeric types (decimals keep every digit), booleans, arrays wherever maxOccurs > 1 even
//! with zero or one occurrence, `null` for `xsi:nil`, attributes as keys. A DOCTYPE is
//! refused outright and only the five predefined entities exist, so nothing expands.

use std::borrow::Cow;

use quick_xml::name::NamespaceResolver;
use quick_xml::reader::Reader;
use serde_json::Value;

use super::XSI;
use super::fault::{self, Fault};
use super::xmltext;
use crate::schema::{Element, SchemaSet};

/// Deepest nesting accepted from a backend (bounds recursion on hostile input).
const MAX_DEPTH: usize = 128;

/// What a SOAP response held: the body as a [`Value`] tree, or (from [`response_json`])
/// as JSON text.
#[derive(Debug, PartialEq)]
pub enum Decoded<V = Value> {
    /// The body element's content, typed.
    Body(V),
    /// A SOAP Fault.
    Fault(Fault),
}

/// Why a backend response could not be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// A `<!DOCTYPE`: refused, never expanded.
    #[error("the response contains a DOCTYPE declaration, which is refused")]
    Doctype,
    /// Not well-formed XML (includes truncated responses).
    #[error("{0}")]
    Malformed(String),
    /// Well-formed, but not a SOAP envelope.
    #[error("{0}")]
    NotSoap(String),
    /// A SOAP envelope whose content does not match the WSDL.
    #[error("{0}")]
    Schema(String),
}

impl DecodeError {
    /// A short stable summary, used as the problem title.
    pub fn title(&self) -> &'static str {
        match self {
            DecodeError::Doctype => "Backend response refused (DOCTYPE)",
            DecodeError::Malformed(_) => "Backend response is not well-formed XML",
            DecodeError::NotSoap(_) => "Backend response is not a SOAP envelope",
            DecodeError::Schema(_) => "Backend response does not match the WSDL",
        }
    }
}

/// Decodes a response whose body should hold `expected` (an operation's output element).
pub fn response(expected: &Element, schema: &SchemaSet, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    response_with_faults(expected, &[], schema, bytes)
}

/// [`response`], typing fault details that match the operation's declared `wsdl:fault`s.
/// The tree is read back from the JSON text [`response_json`] writes, so both are typed
/// by the same code; the request path uses the text.
pub fn response_with_faults(
    expected: &Element,
    faults: &[Element],
    schema: &SchemaSet,
    bytes: &[u8],
) -> Result<Decoded, DecodeError> {
    match response_json(expected, faults, schema, bytes, &[])? {
        Decoded::Fault(f) => Ok(Decoded::Fault(f)),
        // The text is ours and valid JSON; serde_json's nesting limit (128) is the one way
        // reading it back can fail, on a response that nests deeper than that.
        Decoded::Body(text) => serde_json::from_slice(&text)
            .map(Decoded::Body)
            .map_err(|e| DecodeError::Schema(format!("the response nests too deeply to read as a tree: {e}"))),
    }
}

/// [`response_with_faults`], with the body written straight as JSON text (no tree is built
/// and serialised): the value at the key path `select` (empty: the whole content), `null`
/// where the path leads nowhere, exactly as [`Value::get`] along the path would give.
pub fn response_json(
    expected: &Element,
    faults: &[Element],
    schema: &SchemaSet,
    bytes: &[u8],
    select: &[String],
) -> Result<Decoded<Vec<u8>>, DecodeError> {
    let text = xmltext::to_utf8(bytes).map_err(DecodeError::Malformed)?;
    // Axis-style rpc/encoded replies point at shared values with href="#id"; inline them.
    let text = match super::multiref::inline(&text) {
        Ok(Some(inlined)) => Cow::Owned(inlined),
        Ok(None) => text,
        Err(super::multiref::MultirefError::Malformed(e)) => return Err(DecodeError::Malformed(e)),
        Err(super::multiref::MultirefError::Graph(e)) => return Err(DecodeError::Schema(e)),
    };
    let mut d = Decoder {
        r: Reader::from_str(&text),
        ns: NamespaceResolver::default(),
        scopes: Vec::with_capacity(16),
        pending_pop: false,
        text: &text,
        schema,
        faults,
        path: Vec::with_capacity(16),
        out: Vec::with_capacity(text.len()),
        fields: Vec::with_capacity(32),
        entries: Entries::with_capacity(16),
    };
    Ok(match d.envelope(expected, select)? {
        Decoded::Body(()) => Decoded::Body(d.out),
        Decoded::Fault(f) => Decoded::Fault(f),
    })
}

mod assemble;
mod fault_detail;
mod in_place;
mod typing;
mod walk;

use self::assemble::*;
use self::fault_detail::*;
use self::in_place::*;
use self::typing::*;
use self::walk::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::TypeRef;

    /// A WSDL in namespace `urn:x` (prefix `t`) over `types`, with one document/literal
    /// operation `Get{E}` per element `E` in `elements`, taking and answering that element.
    fn wsdl_with(types: &str, elements: &[&str]) -> crate::schema::ServiceModel {
        let mut messages = String::new();
        let mut port = String::new();
        let mut binding = String::new();
        for e in elements {
            messages.push_str(&format!(r#"<message name="{e}"><part name="p" element="t:{e}"/></message>"#));
            port.push_str(&format!(
                r#"<operation name="Get{e}"><input message="t:{e}"/><output message="t:{e}"/></operation>"#
            ));
            binding.push_str(&format!(
                r#"<operation name="Get{e}"><soap:operation soapAction="{e}"/><input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>"#
            ));
        }
        let wsdl = format!(
            r#"<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
                xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:t="urn:x" targetNamespace="urn:x">
              <types><xs:schema targetNamespace="urn:x" elementFormDefault="qualified">{types}</xs:schema></types>
              {messages}<portType name="P">{port}</portType>
              <binding name="B" type="t:P"><soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>{binding}</binding>
            </definitions>"#
        );
        crate::schema::wsdl::read(wsdl.as_bytes(), Default::default()).expect("wsdl")
    }

    /// `R` has a key twice (the attribute `id` and the element `Id`); `S` is `R` without `Id`.
    const ORDER_TYPES: &str = r#"
        <xs:complexType name="S"><xs:sequence>
          <xs:element name="A" type="xs:string" minOccurs="0"/>
          <xs:element name="B" type="xs:int" minOccurs="0" maxOccurs="unbounded"/>
          <xs:element name="C" type="xs:string" minOccurs="0"/>
        </xs:sequence><xs:attribute name="id" type="xs:int"/></xs:complexType>
        <xs:element name="S" type="t:S"/>
        <xs:element name="R"><xs:complexType><xs:complexContent><xs:extension base="t:S">
          <xs:sequence><xs:element name="Id" type="xs:string" minOccurs="0"/></xs:sequence>
        </xs:extension></xs:complexContent></xs:complexType></xs:element>
    "#;

    /// Values are written in the document's order and put together in the schema's: keys in
    /// schema order, a repeated single element's last value in its first place, an array's
    /// items gathered across other fields, absent arrays empty; a path selects through it.
    /// Both for a type whose keys are all different and for one that has a key twice.
    #[test]
    fn objects_take_the_schema_order_whatever_the_document_order() {
        let model = wsdl_with(ORDER_TYPES, &["R", "S"]);
        for (name, distinct) in [("S", true), ("R", false)] {
            let op = model.operation(&format!("Get{name}")).expect("op");
            let TypeRef::Complex(id) = op.output.ty else { panic!("{name} is complex") };
            assert_eq!(model.schema.complex(id).distinct_keys, distinct, "{name}");
            let envelope = |inner: &str| {
                let inner = inner.replace('R', name);
                format!(
                    r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>{inner}</s:Body></s:Envelope>"#
                )
            };
            let decode = |inner: &str, select: &[&str]| {
                let select: Vec<String> = select.iter().map(|s| s.to_string()).collect();
                match response_json(&op.output, &[], &model.schema, envelope(inner).as_bytes(), &select) {
                    Ok(Decoded::Body(b)) => String::from_utf8(b).expect("utf-8"),
                    other => panic!("{name}: {inner}: {other:?}"),
                }
            };
            let shuffled = r#"<R xmlns="urn:x" id="7"><C>c1</C><B>1</B><A>a</A><B>2</B><C>c2</C></R>"#;
            assert_eq!(decode(shuffled, &[]), r#"{"id":7,"a":"a","b":[1,2],"c":"c2"}"#, "{name}");
            assert_eq!(decode(r#"<R xmlns="urn:x"><C>c</C></R>"#, &[]), r#"{"b":[],"c":"c"}"#, "{name}");
            assert_eq!(decode(r#"<R xmlns="urn:x"/>"#, &[]), r#"{"b":[]}"#, "{name}");
            assert_eq!(decode(shuffled, &["c"]), r#""c2""#, "{name}");
            assert_eq!(decode(shuffled, &["b"]), "[1,2]", "{name}");
            assert_eq!(decode(shuffled, &["id"]), "7", "{name}");
            for path in [&["b", "x"][..], &["a", "x"], &["nothing"], &["id", "x"]] {
                assert_eq!(decode(shuffled, path), "null", "{name}: {path:?}");
            }
            // A bad value is an error even where the path does not lead.
            let bad = envelope(r#"<R xmlns="urn:x"><B>one</B><C>c</C></R>"#);
            let err = response_json(&op.output, &[], &model.schema, bad.as_bytes(), &["c".into()]);
            assert!(matches!(err, Err(DecodeError::Schema(ref m)) if m.contains("/B")), "{name}: {err:?}");
            if !distinct {
                // The attribute `id` and the element `Id` share a key: the later field wins,
                // in the first one's place.
                let both = r#"<R xmlns="urn:x" id="7"><Id>x</Id><A>a</A></R>"#;
                assert_eq!(decode(both, &[]), r#"{"id":"x","a":"a","b":[]}"#);
                assert_eq!(decode(both, &["id"]), r#""x""#);
            }
        }
    }

    thread_local! {
        /// Switches writing in place off, so that a test can compare it with `assemble`.
        pub(super) static ASSEMBLE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// `T` has attributes, children (arrays among them, and `T` again) and a field `Q` with
    /// simple content and an attribute; `Sub` extends `T` and is named with `xsi:type`; `U`
    /// takes `xsd:any`, which `InPlace` leaves to `assemble`.
    const IN_PLACE_TYPES: &str = r#"
        <xs:complexType name="T"><xs:sequence>
          <xs:element name="A" type="xs:string" minOccurs="0" nillable="true"/>
          <xs:element name="B" type="xs:int" minOccurs="0" maxOccurs="unbounded"/>
          <xs:element name="C" type="xs:string" minOccurs="0"/>
          <xs:element name="D" type="t:T" minOccurs="0" maxOccurs="unbounded"/>
          <xs:element name="Q" type="t:Q" minOccurs="0"/>
        </xs:sequence>
        <xs:attribute name="x" type="xs:int"/><xs:attribute name="y" type="xs:string"/></xs:complexType>
        <xs:complexType name="Q"><xs:simpleContent><xs:extension base="xs:decimal">
          <xs:attribute name="unit" type="xs:string"/><xs:attribute name="list" type="xs:string"/>
        </xs:extension></xs:simpleContent></xs:complexType>
        <xs:complexType name="Sub"><xs:complexContent><xs:extension base="t:T">
          <xs:sequence><xs:element name="E" type="xs:string" minOccurs="0"/></xs:sequence>
        </xs:extension></xs:complexContent></xs:complexType>
        <xs:complexType name="U"><xs:sequence>
          <xs:element name="A" type="xs:string" minOccurs="0"/>
          <xs:any minOccurs="0" maxOccurs="unbounded" processContents="lax"/>
        </xs:sequence></xs:complexType>
        <xs:element name="T" type="t:T"/>
        <xs:element name="U" type="t:U"/>
    "#;

    /// Objects written in place as their fields come give exactly the text `assemble` puts
    /// together (the same documents decoded with writing in place switched off): fields in
    /// order, absent arrays before, between and after, attributes, simple content, an
    /// `xsi:type` subtype; and a field out of order, a repeated single element, an array's
    /// item after another field or attributes out of schema order, which hand the object
    /// to `assemble` part-way, also one level down.
    #[test]
    fn objects_written_in_place_are_what_assemble_writes() {
        let model = wsdl_with(IN_PLACE_TYPES, &["T", "U"]);
        let ty = |name: &str| {
            let TypeRef::Complex(id) = model.operation(&format!("Get{name}")).expect("op").output.ty else {
                panic!("{name} is complex")
            };
            model.schema.complex(id)
        };
        assert!(InPlace::applies(ty("T"), &[]), "T is written in place");
        assert!(!InPlace::applies(ty("U"), &[]), "U (xsd:any) is put together");
        assert!(!InPlace::applies(ty("T"), &["a".into()]), "a path into T is put together");
        let decode = |name: &str, attributes: &str, inner: &str, in_place: bool| {
            ASSEMBLE_ONLY.set(!in_place);
            let op = model.operation(&format!("Get{name}")).expect("op");
            let xml = format!(
                r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns:t="urn:x"><s:Body><{name} xmlns="urn:x"{attributes}>{inner}</{name}></s:Body></s:Envelope>"#
            );
            let decoded = response_json(&op.output, &[], &model.schema, xml.as_bytes(), &[]);
            ASSEMBLE_ONLY.set(false);
            match decoded {
                Ok(Decoded::Body(b)) => String::from_utf8(b).expect("utf-8"),
                other => panic!("{name}: {inner}: {other:?}"),
            }
        };
        let cases = [
            ("", "<A>a</A><B>1</B><B>2</B><C>c</C><D><B>3</B></D>"),
            ("", ""),
            ("", "<C>c</C>"),
            ("", "<B>1</B>"),
            ("", "<D/><D><C>x</C></D>"),
            ("", "\n  <A>a</A>\n  <B>1</B>\n"),
            ("", r#"<A i:nil="true"/><B>1</B>"#),
            ("", "<A>a</A><Z>undeclared</Z><C>c</C>"),
            (r#" x="1" y="b""#, r#"<A>a</A><Q unit="kg" list="L">1.50</Q>"#),
            (r#" y="b""#, r#"<Q>2</Q>"#),
            (r#" i:type="t:Sub" x="1""#, "<A>a</A><E>e</E>"),
            // Handed over to assemble part-way.
            ("", "<A>a</A><C>c</C><B>1</B>"),
            ("", "<B>1</B><C>c</C><B>2</B>"),
            ("", "<A>a1</A><B>1</B><A>a2</A>"),
            ("", "<D><C>c</C><A>a</A></D><B>1</B>"),
            (r#" y="b" x="1""#, "<A>a</A>"),
            ("", r#"<Q list="L" unit="kg">3</Q><A>a</A>"#),
            (r#" i:type="t:Sub""#, "<E>e</E><A>a</A>"),
        ];
        for (attributes, inner) in cases {
            let assembled = decode("T", attributes, inner, false);
            assert_eq!(decode("T", attributes, inner, true), assembled, "T{attributes}: {inner}");
        }
        // Spot checks that the common answer is the right one.
        assert_eq!(
            decode("T", "", "<A>a</A><B>1</B><B>2</B><C>c</C><D><B>3</B></D>", true),
            r#"{"a":"a","b":[1,2],"c":"c","d":[{"b":[3],"d":[]}]}"#
        );
        assert_eq!(
            decode("T", r#" y="b" x="1""#, r#"<Q list="L" unit="kg">1.50</Q>"#, true),
            r#"{"x":1,"y":"b","b":[],"d":[],"q":{"unit":"kg","list":"L","value":1.50}}"#
        );
        assert_eq!(
            decode("T", r#" i:type="t:Sub""#, "<B>1</B><E>e</E>", true),
            r#"{"@type":"Sub","b":[1],"d":[],"e":"e"}"#
        );
        // `xsd:any` content is kept after the declared fields.
        assert_eq!(decode("U", "", "<Z>z</Z><A>a</A>", true), r#"{"a":"a","Z":"z"}"#);
    }

    /// A list nested in itself: every level is an object holding an array, two JSON levels
    /// per element.
    const NESTED_TYPES: &str = r#"
        <xs:complexType name="Node"><xs:sequence>
          <xs:element name="Node" type="t:Node" minOccurs="0" maxOccurs="unbounded"/>
        </xs:sequence></xs:complexType>
        <xs:element name="Tree" type="t:Node"/>
    "#;

    /// Within the decoder's own limit (128 elements) a response decodes as text even where
    /// its JSON nests deeper than serde_json reads back (128 levels): the tree is then a
    /// clear error, not a panic or a wrong value. Past the decoder's limit both refuse.
    #[test]
    fn nesting_limits_are_errors_for_text_and_tree_alike() {
        let model = wsdl_with(NESTED_TYPES, &["Tree"]);
        let op = model.operation("GetTree").expect("op");
        let nested = |levels: usize| {
            let inner = "<Node>".repeat(levels) + &"</Node>".repeat(levels);
            format!(
                r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><Tree xmlns="urn:x">{inner}</Tree></s:Body></s:Envelope>"#
            )
        };
        let shallow = nested(3);
        let tree = response(&op.output, &model.schema, shallow.as_bytes());
        assert_eq!(tree, Ok(Decoded::Body(serde_json::json!({"node": [{"node": [{"node": [{"node": []}]}]}]}))));

        let deep = nested(100);
        let text = response_json(&op.output, &[], &model.schema, deep.as_bytes(), &[]);
        assert!(matches!(&text, Ok(Decoded::Body(b)) if b.len() > 1000), "{text:?}");
        let tree = response(&op.output, &model.schema, deep.as_bytes());
        assert!(matches!(&tree, Err(DecodeError::Schema(m)) if m.contains("nests too deeply")), "{tree:?}");

        let too_deep = nested(MAX_DEPTH + 1);
        for err in [
            response_json(&op.output, &[], &model.schema, too_deep.as_bytes(), &[]).map(|_| ()),
            response(&op.output, &model.schema, too_deep.as_bytes()).map(|_| ()),
        ] {
            assert!(matches!(&err, Err(DecodeError::Schema(m)) if m.contains("nest deeper than")), "{err:?}");
        }
    }
}
