//! Value typing: text typed by its XSD simple type into JSON (numbers keep every digit,
//! booleans, `xsi:type` names), and the namespace prefixes a value uses.

use quick_xml::events::Event;

use crate::schema::builtin::{JsonKind, is_json_number, json_number_text, parse_bool};
use crate::schema::{ComplexType, SchemaSet, SimpleType, TypeId};

use super::*;

/// The namespace prefixes an element's subtree uses in names and in `xsi:type` values (`""`
/// for the default namespace), read up to the end of that element.
pub(super) fn used_prefixes(from: &str) -> Vec<String> {
    let mut r = quick_xml::reader::Reader::from_str(from);
    let mut out: Vec<String> = Vec::new();
    let mut add = |p: &str| {
        if !out.iter().any(|o| o == p) && p != "xml" {
            out.push(p.to_string());
        }
    };
    let mut depth = 0usize;
    loop {
        let (start, empty) = match r.read_event() {
            Ok(Event::Start(s)) => (s, false),
            Ok(Event::Empty(s)) => (s, true),
            Ok(Event::End(_)) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
                continue;
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => continue,
        };
        let element_prefix = start.name().prefix().map(|p| p.as_ref().to_string()).unwrap_or_default();
        add(&element_prefix);
        for a in start.attributes().flatten() {
            let key = a.key.as_ref();
            if key == "xmlns" || key.starts_with("xmlns:") {
                continue;
            }
            if let Some(p) = a.key.prefix() {
                add(p.as_ref());
            }
            if a.key.local_name().as_ref() == "type"
                && let Some((p, _)) = a.value.split_once(':')
            {
                add(p);
            }
        }
        if !empty {
            depth += 1;
        } else if depth == 0 {
            break;
        }
    }
    out
}

/// The subtype of `ct` an `xsi:type` names: the exact `{ns}local`, else the same local name
/// in another namespace (NetSuite messages carry older versioned namespaces).
pub(crate) fn subtype(schema: &SchemaSet, ct: &ComplexType, ns: &str, local: &str) -> Option<TypeId> {
    let named = |id: &&TypeId| schema.complex(**id).local_name() == Some(local);
    let exact = ct.subtypes.iter().filter(named).find(|id| schema.complex(**id).namespace() == Some(ns));
    exact.or_else(|| ct.subtypes.iter().find(named)).copied()
}

impl<'x, 's> Decoder<'x, 's> {
    /// Writes a simple value typed by `st`.
    pub(super) fn typed(&mut self, st: &SimpleType, text: &str) -> Result<(), DecodeError> {
        if st.list {
            let item = SimpleType { list: false, ..st.clone() };
            self.out.push(b'[');
            for (i, t) in text.split_whitespace().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                self.typed(&item, t)?;
            }
            self.out.push(b']');
            return Ok(());
        }
        if !st.union.is_empty()
            && let Some(member) = st.union_member(text.trim())
        {
            return self.typed(member, text);
        }
        let kind = st.base.json_kind();
        if kind == JsonKind::String {
            write_string(&mut self.out, text);
            return Ok(());
        }
        let t = text.trim();
        if t.is_empty() {
            self.out.extend_from_slice(b"null"); // ERPs write <Qty/> for "no value".
            return Ok(());
        }
        if kind == JsonKind::Boolean {
            let b = parse_bool(text).ok_or_else(|| self.mismatch(text, "a boolean"))?;
            self.out.extend_from_slice(if b { b"true" } else { b"false" });
        } else if is_json_number(t) {
            // Most ERP numbers are already valid JSON and are copied, every digit kept; only
            // odd forms (+1, .5, 007) are rewritten.
            self.out.extend_from_slice(t.as_bytes());
        } else if let Some(n) = json_number_text(t).filter(|n| is_json_number(n)) {
            self.out.extend_from_slice(n.as_bytes());
        } else if matches!(t, "INF" | "-INF" | "NaN") {
            // xs:float/double may be INF or NaN, which JSON numbers cannot hold.
            write_string(&mut self.out, t);
        } else {
            return Err(self.mismatch(text, st.base.describe()));
        }
        Ok(())
    }

    pub(super) fn mismatch(&self, text: &str, expected: &str) -> DecodeError {
        let shown: String = text.chars().take(40).collect();
        DecodeError::Schema(format!("{}: expected {expected}, got {shown:?}", self.where_()))
    }
}
