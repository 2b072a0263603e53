//! JSON → SOAP envelope, guided by the operation's schema.
//!
//! Elements are written in schema order whatever the JSON key order; every value is checked
//! against its XSD type and facets and every problem is collected, so a client sees all of
//! them at once; text is always escaped, so JSON can never inject markup.

use serde_json::{Map, Value};

use super::FieldError;
use super::xmltext::{check_fragment, escape_into, is_xml_char};
use super::{XSI, pointer_push};
use crate::schema::builtin::{Builtin, JsonKind, plain_decimal};
use crate::schema::ns::SOAP_ENC;
use crate::schema::{
    ComplexType, Element, Operation, SIMPLE_CONTENT_KEY, SchemaSet, SimpleType, SoapVersion, TYPE_KEY, TypeRef,
    XML_KEY, split_name,
};

/// Deepest element nesting written; guards against recursive types fed deep JSON.
const MAX_DEPTH: usize = 64;

/// Builds the full SOAP envelope for `input` (the JSON content of the operation's input element).
pub fn envelope(
    op: &Operation,
    schema: &SchemaSet,
    input: &Value,
    header: Option<&str>,
) -> Result<String, Vec<FieldError>> {
    let mut out = String::with_capacity(512);
    out.push_str(r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap=""#);
    out.push_str(op.soap_version.envelope_ns());
    out.push_str(r#"" xmlns:xsi=""#);
    out.push_str(XSI);
    if op.encoded {
        out.push_str(r#"" xmlns:soapenc=""#);
        out.push_str(SOAP_ENC);
        out.push_str(r#"" soap:encodingStyle=""#);
        out.push_str(SOAP_ENC);
    }
    out.push_str(r#"">"#);
    if let Some(h) = header {
        // Pre-rendered by the backend's credentials (WS-Security); never from client input.
        out.push_str("<soap:Header>");
        out.push_str(h);
        out.push_str("</soap:Header>");
    }
    out.push_str("<soap:Body>");
    let mut enc = Encoder { schema, out: &mut out, errors: Vec::new(), encoded: op.encoded };
    enc.element_value(&op.input, input, None, "", 0);
    if !enc.errors.is_empty() {
        return Err(enc.errors);
    }
    out.push_str("</soap:Body></soap:Envelope>");
    Ok(out)
}

/// `envelope` (as [`envelope`] wrote it) with `header` elements first in its `soap:Header`,
/// which is added when the envelope has none. What [`envelope`] writes before its Header or
/// Body is fixed text, so the first `<soap:Header>` or `<soap:Body>` is the real one.
pub(crate) fn with_header(envelope: &[u8], header: &str) -> bytes::Bytes {
    let find = |needle: &[u8]| envelope.windows(needle.len()).position(|w| w == needle);
    let mut out = Vec::with_capacity(envelope.len() + header.len() + 32);
    if let Some(i) = find(b"<soap:Header>") {
        let at = i + b"<soap:Header>".len();
        out.extend_from_slice(&envelope[..at]);
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&envelope[at..]);
    } else if let Some(at) = find(b"<soap:Body>") {
        out.extend_from_slice(&envelope[..at]);
        out.extend_from_slice(b"<soap:Header>");
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(b"</soap:Header>");
        out.extend_from_slice(&envelope[at..]);
    } else {
        return bytes::Bytes::copy_from_slice(envelope);
    }
    bytes::Bytes::from(out)
}

/// Writes one top-level element (the message element) for `value`.
pub fn body_element(out: &mut String, el: &Element, schema: &SchemaSet, value: &Value) -> Result<(), Vec<FieldError>> {
    let mut enc = Encoder { schema, out, errors: Vec::new(), encoded: false };
    enc.element_value(el, value, None, "", 0);
    if enc.errors.is_empty() { Ok(()) } else { Err(enc.errors) }
}

/// The `Content-Type` and optional `SOAPAction` header for an operation.
pub(crate) fn http_headers(op: &Operation) -> (String, Option<String>) {
    match op.soap_version {
        SoapVersion::V11 => ("text/xml; charset=utf-8".into(), Some(format!("\"{}\"", op.soap_action))),
        SoapVersion::V12 if op.soap_action.is_empty() => ("application/soap+xml; charset=utf-8".into(), None),
        SoapVersion::V12 => (format!("application/soap+xml; charset=utf-8; action=\"{}\"", op.soap_action), None),
    }
}

struct Encoder<'a> {
    schema: &'a SchemaSet,
    out: &'a mut String,
    errors: Vec<FieldError>,
    /// rpc/encoded: every value carries its `xsi:type`.
    encoded: bool,
}

impl<'a> Encoder<'a> {
    fn fail(&mut self, pointer: &str, detail: impl Into<String>) {
        self.errors.push(FieldError::at(pointer, detail));
    }

    fn open_tag(&mut self, el: &Element, parent_ns: Option<&str>) {
        self.out.push('<');
        self.out.push_str(&el.name);
        // A default-namespace declaration wherever the namespace changes: no prefixes to
        // track, and unqualified children of qualified parents get xmlns="".
        let ns = el.namespace.as_deref();
        if ns != parent_ns {
            self.out.push_str(" xmlns=\"");
            escape_into(self.out, ns.unwrap_or(""));
            self.out.push('"');
        }
    }

    /// ` xmlns:vt="…"` for a `{ns}Local` type name; returns the local part, to write as `vt:Local`.
    fn declare_vt<'n>(&mut self, type_name: &'n str) -> &'n str {
        let (ns, local) = split_name(type_name);
        self.out.push_str(" xmlns:vt=\"");
        escape_into(self.out, ns);
        self.out.push('"');
        local
    }

    /// ` xmlns:vt="…" xsi:type="vt:Local"` for a `{ns}Local` type name.
    fn xsi_type(&mut self, type_name: &str) {
        let local = self.declare_vt(type_name);
        self.out.push_str(" xsi:type=\"vt:");
        escape_into(self.out, local);
        self.out.push('"');
    }

    fn close_tag(&mut self, el: &Element) {
        self.out.push_str("</");
        self.out.push_str(&el.name);
        self.out.push('>');
    }

    /// Writes all occurrences of `el` for `value` (an array for repeated elements).
    fn element_value(&mut self, el: &Element, value: &Value, parent_ns: Option<&str>, pointer: &str, depth: usize) {
        if el.is_array() {
            let Value::Array(items) = value else {
                return self.fail(pointer, "expected an array");
            };
            if (items.len() as u64) < u64::from(el.min_occurs) {
                self.fail(pointer, format!("expected at least {} item(s)", el.min_occurs));
            }
            if let Some(max) = el.max_occurs.filter(|&m| items.len() as u64 > u64::from(m)) {
                self.fail(pointer, format!("expected at most {max} item(s)"));
            }
            for (i, item) in items.iter().enumerate() {
                self.one(el, item, parent_ns, &pointer_push(pointer, &i.to_string()), depth);
            }
        } else {
            self.one(el, value, parent_ns, pointer, depth);
        }
    }

    fn one(&mut self, el: &Element, value: &Value, parent_ns: Option<&str>, pointer: &str, depth: usize) {
        if depth > MAX_DEPTH {
            return self.fail(pointer, "nested too deeply");
        }
        if value.is_null() {
            if !el.nillable {
                return self.fail(pointer, "must not be null");
            }
            self.open_tag(el, parent_ns);
            self.out.push_str(" xsi:nil=\"true\"/>");
            return;
        }
        match &el.ty {
            TypeRef::Simple(st) => {
                let Some(text) = self.simple_text(st, value, pointer) else {
                    return;
                };
                self.open_tag(el, parent_ns);
                if let Some(name) = st.name.as_deref().filter(|_| self.encoded) {
                    self.xsi_type(name);
                }
                self.out.push('>');
                escape_into(self.out, &text);
                self.close_tag(el);
            }
            TypeRef::Complex(id) => {
                let schema = self.schema;
                let declared = schema.complex(*id);
                if let Some(item) = &declared.array_item {
                    return self.array(el, item, value, parent_ns, pointer, depth);
                }
                let Value::Object(map) = value else {
                    return self.fail(pointer, "expected an object");
                };
                let Some((ct, substituted)) = self.substitution(declared, map, pointer) else { return };
                self.open_tag(el, parent_ns);
                if let Some(name) = ct.name.as_deref().filter(|_| substituted || self.encoded) {
                    self.xsi_type(name);
                }
                self.attributes(ct, map, pointer);
                self.out.push('>');
                self.complex_content(ct, map, el.namespace.as_deref(), pointer, depth);
                self.close_tag(el);
            }
        }
    }

    /// The type a value is written as: the declared one, or the subtype its `@type` names
    /// (true when substituted). Abstract types must be substituted.
    fn substitution(
        &mut self,
        declared: &'a ComplexType,
        map: &Map<String, Value>,
        pointer: &str,
    ) -> Option<(&'a ComplexType, bool)> {
        let schema = self.schema;
        let choices = || {
            let names: Vec<&str> =
                declared.subtypes.iter().filter_map(|id| schema.complex(*id).local_name()).take(20).collect();
            let more = if declared.subtypes.len() > 20 { ", …" } else { "" };
            format!("{}{more}", names.join(", "))
        };
        // The pointer is built only for an error: this runs for every object on every request.
        let p = || pointer_push(pointer, TYPE_KEY);
        match map.get(TYPE_KEY) {
            None if declared.is_abstract => {
                self.fail(
                    &p(),
                    format!(
                        "{} is abstract; name the concrete type: one of {}",
                        declared.local_name().unwrap_or("the type"),
                        choices()
                    ),
                );
                None
            }
            None => Some((declared, false)),
            Some(Value::String(t)) if declared.local_name() == Some(t.as_str()) && !declared.is_abstract => {
                Some((declared, false))
            }
            Some(Value::String(t)) => {
                match declared.subtypes.iter().find(|id| schema.complex(**id).local_name() == Some(t.as_str())) {
                    Some(id) => Some((schema.complex(*id), true)),
                    None => {
                        self.fail(&p(), format!("unknown type {t:?}; expected one of {}", choices()));
                        None
                    }
                }
            }
            Some(_) => {
                self.fail(&p(), "expected a type name (a string)");
                None
            }
        }
    }

    /// A SOAP-encoded array: a JSON array written as `<item>`s, typed in rpc/encoded.
    fn array(
        &mut self,
        el: &Element,
        item: &Element,
        value: &Value,
        parent_ns: Option<&str>,
        pointer: &str,
        depth: usize,
    ) {
        let Value::Array(items) = value else {
            return self.fail(pointer, "expected an array");
        };
        self.open_tag(el, parent_ns);
        if self.encoded {
            let item_type = match &item.ty {
                TypeRef::Simple(st) => st.name.clone(),
                TypeRef::Complex(id) => self.schema.complex(*id).name.clone(),
            };
            let item_type = item_type.unwrap_or_else(|| "{http://www.w3.org/2001/XMLSchema}anyType".into());
            let local = self.declare_vt(&item_type);
            self.out.push_str(" xsi:type=\"soapenc:Array\" soapenc:arrayType=\"vt:");
            escape_into(self.out, local);
            self.out.push_str(&format!("[{}]\"", items.len()));
        }
        self.out.push('>');
        for (i, v) in items.iter().enumerate() {
            self.one(item, v, el.namespace.as_deref(), &pointer_push(pointer, &i.to_string()), depth + 1);
        }
        self.close_tag(el);
    }

    fn attributes(&mut self, ct: &ComplexType, map: &Map<String, Value>, pointer: &str) {
        for attr in &ct.attributes {
            let p = pointer_push(pointer, &attr.json_name);
            match map.get(&attr.json_name) {
                None | Some(Value::Null) if attr.required => self.fail(&p, "required attribute is missing"),
                None | Some(Value::Null) => {}
                Some(v) => {
                    if let Some(text) = self.simple_text(&attr.ty, v, &p) {
                        self.out.push(' ');
                        self.out.push_str(&attr.name);
                        self.out.push_str("=\"");
                        escape_into(self.out, &text);
                        self.out.push('"');
                    }
                }
            }
        }
    }

    fn complex_content(
        &mut self,
        ct: &ComplexType,
        map: &Map<String, Value>,
        ns: Option<&str>,
        pointer: &str,
        depth: usize,
    ) {
        let known = |key: &str| {
            key == TYPE_KEY
                || ct.children.iter().any(|c| c.json_name == key)
                || ct.attributes.iter().any(|a| a.json_name == key)
                || (ct.simple_content.is_some() && key == SIMPLE_CONTENT_KEY)
        };
        if !ct.open {
            for key in map.keys().filter(|k| !known(k)) {
                self.fail(&pointer_push(pointer, key), "unknown field");
            }
        }
        if let Some(st) = &ct.simple_content {
            let p = pointer_push(pointer, SIMPLE_CONTENT_KEY);
            match map.get(SIMPLE_CONTENT_KEY) {
                Some(v) => {
                    if let Some(text) = self.simple_text(st, v, &p) {
                        escape_into(self.out, &text);
                    }
                }
                None => self.fail(&p, "required field is missing"),
            }
        }
        for child in &ct.children {
            let p = pointer_push(pointer, &child.json_name);
            match map.get(&child.json_name) {
                Some(v) => self.element_value(child, v, ns, &p, depth + 1),
                None if child.is_required() => self.fail(&p, "required field is missing"),
                None => {}
            }
        }
        if ct.open && self.schema.any_as_xml {
            // xsd:any as raw XML: checked to be balanced elements, then written as given.
            let p = pointer_push(pointer, XML_KEY);
            match map.get(XML_KEY) {
                None | Some(Value::Null) => {}
                Some(Value::String(xml)) => match check_fragment(xml) {
                    Ok(()) => self.out.push_str(xml),
                    Err(e) => self.fail(&p, e),
                },
                Some(_) => self.fail(&p, "expected XML text (a string)"),
            }
            for key in map.keys().filter(|k| !known(k) && *k != XML_KEY) {
                self.fail(&pointer_push(pointer, key), "unknown field (undeclared content goes in \"@xml\")");
            }
        } else if ct.open {
            // xsd:any: keys the schema does not declare are written as elements of their own
            // name after the declared ones, in the namespace of the type's own elements
            // (Salesforce: `##targetNamespace` of sObject), else the parent's.
            let any_ns = ct.children.first().map_or(ns, |c| c.namespace.as_deref());
            for (key, v) in map.iter().filter(|(k, _)| !known(k)) {
                self.untyped(
                    key,
                    v,
                    (any_ns != ns).then_some(any_ns.unwrap_or("")),
                    &pointer_push(pointer, key),
                    depth + 1,
                );
            }
        }
    }

    /// An element the schema leaves open: text for scalars, nesting for objects, one element
    /// per array item.
    fn untyped(&mut self, name: &str, value: &Value, xmlns: Option<&str>, pointer: &str, depth: usize) {
        let valid_name = name.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_alphanumeric() || "_-.".contains(c));
        if !valid_name {
            return self.fail(pointer, "is not a valid XML element name");
        }
        if depth > MAX_DEPTH {
            return self.fail(pointer, "nested too deeply");
        }
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.untyped(name, item, xmlns, &pointer_push(pointer, &i.to_string()), depth);
                }
            }
            Value::Null => {
                self.untyped_open(name, xmlns);
                self.out.push_str(" xsi:nil=\"true\"/>");
            }
            Value::Object(m) => {
                self.untyped_open(name, xmlns);
                self.out.push('>');
                for (k, v) in m {
                    self.untyped(k, v, None, &pointer_push(pointer, k), depth + 1);
                }
                self.out.push_str("</");
                self.out.push_str(name);
                self.out.push('>');
            }
            scalar => {
                let text = match scalar {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if let Some(bad) = text.chars().find(|c| !is_xml_char(*c)) {
                    return self.fail(
                        pointer,
                        format!("contains the control character U+{:04X}, which XML cannot carry", bad as u32),
                    );
                }
                self.untyped_open(name, xmlns);
                self.out.push('>');
                escape_into(self.out, &text);
                self.out.push_str("</");
                self.out.push_str(name);
                self.out.push('>');
            }
        }
    }

    fn untyped_open(&mut self, name: &str, xmlns: Option<&str>) {
        self.out.push('<');
        self.out.push_str(name);
        if let Some(ns) = xmlns {
            self.out.push_str(" xmlns=\"");
            escape_into(self.out, ns);
            self.out.push('"');
        }
    }

    /// The XML text for a simple value, or `None` after recording why it is invalid.
    fn simple_text(&mut self, st: &SimpleType, value: &Value, pointer: &str) -> Option<String> {
        if !st.union.is_empty() && !st.list {
            // A union: the first member that takes the value.
            let before = self.errors.len();
            for member in &st.union {
                if let Some(text) = self.simple_text(member, value, pointer) {
                    self.errors.truncate(before);
                    return Some(text);
                }
            }
            self.errors.truncate(before);
            let kinds: Vec<&str> = st.union.iter().map(|m| m.base.describe()).collect();
            self.fail(pointer, format!("expected a value of one of the union's types: {}", kinds.join("; ")));
            return None;
        }
        if st.list {
            // xsd:list: a JSON array (or its lexical form) of item values, space-separated.
            let item = SimpleType { list: false, ..st.clone() };
            return match value {
                Value::Array(items) => {
                    let before = self.errors.len();
                    let texts: Vec<String> = items
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| self.simple_text(&item, v, &pointer_push(pointer, &i.to_string())))
                        .collect();
                    (self.errors.len() == before).then(|| texts.join(" "))
                }
                other => {
                    let text = self.simple_text(&SimpleType::builtin(Builtin::String), other, pointer)?;
                    let before = self.errors.len();
                    for t in text.split_whitespace() {
                        self.simple_text(&item, &Value::String(t.to_string()), pointer);
                    }
                    (self.errors.len() == before).then_some(text)
                }
            };
        }
        let kind = st.base.json_kind();
        let text = match value {
            Value::String(s) => s.clone(),
            // Numbers and booleans are accepted for their own kinds; strings carry any type
            // in its XML lexical form (path and query values are always strings).
            Value::Number(n) if kind == JsonKind::Number => {
                let text = n.to_string();
                // JSON allows exponents, xs:decimal and the integer types do not.
                plain_decimal(&text).unwrap_or(text)
            }
            Value::Bool(b) if kind == JsonKind::Boolean => b.to_string(),
            _ => {
                self.fail(pointer, format!("expected {}", expected_json(st.base)));
                return None;
            }
        };
        if let Some(bad) = text.chars().find(|c| !is_xml_char(*c)) {
            self.fail(pointer, format!("contains the control character U+{:04X}, which XML cannot carry", bad as u32));
            return None;
        }
        if let Err(msg) = st.base.check(&text).and_then(|()| check_facets(st, &text)) {
            self.fail(pointer, msg);
            return None;
        }
        Some(text)
    }
}

fn expected_json(b: Builtin) -> String {
    match b.json_kind() {
        JsonKind::String => b.describe().to_string(),
        JsonKind::Number => format!("{} (a JSON number or a numeric string)", b.describe()),
        JsonKind::Boolean => "a boolean".to_string(),
    }
}

fn check_facets(st: &SimpleType, text: &str) -> Result<(), String> {
    let f = &st.facets;
    if !f.enumeration.is_empty() && !f.enumeration.iter().any(|e| e == text) {
        let shown: Vec<&str> = f.enumeration.iter().take(20).map(String::as_str).collect();
        let more = if f.enumeration.len() > 20 { ", …" } else { "" };
        return Err(format!("expected one of: {}{more}", shown.join(", ")));
    }
    let len = text.chars().count();
    if f.length.is_some_and(|l| len != l) {
        return Err(format!("expected exactly {} characters", f.length.unwrap_or_default()));
    }
    if let Some(min) = f.min_length.filter(|&m| len < m) {
        return Err(format!("expected at least {min} characters"));
    }
    if let Some(max) = f.max_length.filter(|&m| len > m) {
        return Err(format!("expected at most {max} characters"));
    }
    if st.base.json_kind() == JsonKind::Number {
        check_numeric_facets(st, text)?;
    }
    if let Some(p) = f.patterns.iter().find(|p| !p.is_match(text)) {
        let shown = p.as_str().trim_start_matches("^(?:").trim_end_matches(")$");
        return Err(format!("expected text matching the pattern {shown}"));
    }
    Ok(())
}

fn check_numeric_facets(st: &SimpleType, text: &str) -> Result<(), String> {
    let f = &st.facets;
    // Bounds compare as f64: exact enough for the bounds ERPs declare (prices, quantities).
    let value: f64 = text.trim().parse().map_err(|_| format!("expected {}", st.base.describe()))?;
    if let Some(min) = f.min_inclusive.as_deref().filter(|m| m.parse::<f64>().is_ok_and(|m| value < m)) {
        return Err(format!("expected a value of at least {min}"));
    }
    if let Some(max) = f.max_inclusive.as_deref().filter(|m| m.parse::<f64>().is_ok_and(|m| value > m)) {
        return Err(format!("expected a value of at most {max}"));
    }
    let t = text.trim().trim_start_matches(['+', '-']);
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let frac = frac.trim_end_matches('0');
    let digits = int.trim_start_matches('0').len() + frac.len();
    if let Some(total) = f.total_digits.filter(|&d| digits > d as usize) {
        return Err(format!("expected at most {total} digits"));
    }
    if let Some(fd) = f.fraction_digits.filter(|&d| frac.len() > d as usize) {
        return Err(format!("expected at most {fd} decimal places"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_header;

    #[test]
    fn a_header_joins_an_existing_one_or_gets_its_own() {
        let bare = br#"<?xml version="1.0"?><soap:Envelope xmlns:soap="x"><soap:Body><A/></soap:Body></soap:Envelope>"#;
        assert_eq!(
            &with_header(bare, "<S/>")[..],
            br#"<?xml version="1.0"?><soap:Envelope xmlns:soap="x"><soap:Header><S/></soap:Header><soap:Body><A/></soap:Body></soap:Envelope>"#
        );
        // The session's header goes first, before the route's own (here `<R/>`), and a
        // `<soap:Body>` inside header text is never mistaken for the body.
        let with = br#"<soap:Envelope xmlns:soap="x"><soap:Header><R>&lt;soap:Body&gt;</R></soap:Header><soap:Body><A/></soap:Body></soap:Envelope>"#;
        assert_eq!(
            &with_header(with, "<S/>")[..],
            br#"<soap:Envelope xmlns:soap="x"><soap:Header><S/><R>&lt;soap:Body&gt;</R></soap:Header><soap:Body><A/></soap:Body></soap:Envelope>"#
        );
    }
}
