//! A fault's `<detail>` read as a small tree and typed when it matches a declared
//! `wsdl:fault` element; anything else keeps its text.

use std::str::FromStr;

use quick_xml::events::Event;
use serde_json::{Map, Number, Value};

use super::fault::{Fault, XNode};
use super::xmltext;
use crate::schema::builtin::{JsonKind, json_number_text, parse_bool};
use crate::schema::{Element, SIMPLE_CONTENT_KEY, SchemaSet, SimpleType, TypeRef};

use super::*;

/// Replaces untyped detail entries by typed JSON where a declared fault element matches.
pub(super) fn type_fault_detail(f: &mut Fault, tree: &XNode, faults: &[Element], schema: &SchemaSet) {
    if faults.is_empty() {
        return;
    }
    let Some(detail) = tree.children.iter().find(|c| c.name == "detail" || c.name == "Detail") else { return };
    let Some(Value::Object(map)) = f.detail.as_mut() else { return };
    for child in &detail.children {
        if let Some(el) = faults.iter().find(|e| e.name == child.name) {
            map.insert(child.name.clone(), typed_tree(el, child, schema, 0));
            f.declared.push(child.name.clone());
        }
    }
}

/// Typed JSON for an element already read into a tree (fault details are small and rare).
pub(super) fn typed_tree(el: &Element, node: &XNode, schema: &SchemaSet, depth: usize) -> Value {
    if node.attrs.iter().any(|(k, v)| k == "nil" && (v == "true" || v == "1")) {
        return Value::Null;
    }
    match &el.ty {
        TypeRef::Simple(st) => typed_text(st, &node.text).unwrap_or_else(|| Value::String(node.text.clone())),
        TypeRef::Complex(_) if depth > MAX_DEPTH => node.to_json(),
        TypeRef::Complex(id) => {
            let ct = schema.complex(*id);
            let mut map = Map::new();
            for a in &ct.attributes {
                if let Some((_, v)) = node.attrs.iter().find(|(k, _)| *k == a.name) {
                    map.insert(a.json_name.clone(), typed_text(&a.ty, v).unwrap_or_else(|| Value::String(v.clone())));
                }
            }
            if let Some(st) = &ct.simple_content {
                map.insert(
                    SIMPLE_CONTENT_KEY.into(),
                    typed_text(st, &node.text).unwrap_or_else(|| Value::String(node.text.clone())),
                );
            }
            for c in &ct.children {
                let mut found =
                    node.children.iter().filter(|n| n.name == c.name).map(|n| typed_tree(c, n, schema, depth + 1));
                if c.is_array() {
                    map.insert(c.json_name.clone(), Value::Array(found.collect()));
                } else if let Some(v) = found.next() {
                    map.insert(c.json_name.clone(), v);
                }
            }
            Value::Object(map)
        }
    }
}

/// A simple value from text, or `None` when the text does not fit the type.
pub(super) fn typed_text(st: &SimpleType, text: &str) -> Option<Value> {
    let kind = st.base.json_kind();
    if kind != JsonKind::String && text.trim().is_empty() {
        return Some(Value::Null);
    }
    match kind {
        JsonKind::String => Some(Value::String(text.to_string())),
        JsonKind::Boolean => parse_bool(text).map(Value::Bool),
        JsonKind::Number => Number::from_str(text.trim())
            .ok()
            .or_else(|| json_number_text(text).and_then(|t| Number::from_str(&t).ok()))
            .map(Value::Number),
    }
}

impl<'x, 's> Decoder<'x, 's> {
    /// Reads an element into an untyped tree (fault bodies).
    pub(super) fn tree(&mut self, open: &Open<'x>, depth: usize) -> Result<XNode, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::Schema(format!("fault detail nests deeper than {MAX_DEPTH} levels")));
        }
        let mut node = XNode { name: open.start.local_name().as_ref().to_string(), ..XNode::default() };
        for attr in open.start.attributes().flatten() {
            let key = attr.key.as_ref();
            if key == "xmlns" || key.starts_with("xmlns:") {
                continue;
            }
            if let Ok(v) = attr.normalized_value(quick_xml::XmlVersion::Implicit1_0) {
                node.attrs.push((attr.key.local_name().as_ref().to_string(), v.into_owned()));
            }
        }
        if open.empty {
            return Ok(node);
        }
        loop {
            match self.next()? {
                Event::Start(start) => node.children.push(self.tree(&Open { start, empty: false }, depth + 1)?),
                Event::Empty(start) => node.children.push(self.tree(&Open { start, empty: true }, depth + 1)?),
                Event::Text(t) => node.text.push_str(&t.xml10_content()),
                Event::CData(t) => node.text.push_str(&t.xml10_content()),
                Event::GeneralRef(r) => node.text.push(xmltext::resolve_ref(&r).map_err(DecodeError::Malformed)?),
                Event::End(_) => return Ok(node),
                _ => {}
            }
        }
    }
}
