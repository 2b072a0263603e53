//! JSON Schema (OpenAPI 3.1 dialect) from the operation model: the same types the encoder
//! checks and the decoder produces, so the document describes exactly what is served.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::schema::builtin::Builtin;
use crate::schema::{
    ComplexType, Element, SIMPLE_CONTENT_KEY, SchemaSet, SimpleType, TYPE_KEY, TypeId, TypeRef, XML_KEY,
};

/// Which way data flows: requests are checked strictly; responses are what the decoder
/// yields (absent optional elements omitted, empty non-string values as `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client → Veneer.
    Request,
    /// Veneer → client.
    Response,
}

/// Collects named component schemas while building; complex types become `$ref`s so
/// recursive types terminate.
pub struct Schemas<'a> {
    set: &'a SchemaSet,
    prefix: String,
    /// Component name → schema.
    pub components: BTreeMap<String, Value>,
    /// Component name → the type it describes, so two types never share a name.
    owners: BTreeMap<String, (TypeId, Direction)>,
}

impl<'a> Schemas<'a> {
    /// A builder for one backend's types; `prefix` keeps component names unique per backend.
    pub fn new(set: &'a SchemaSet, prefix: &str) -> Self {
        Schemas { set, prefix: prefix.to_string(), components: BTreeMap::new(), owners: BTreeMap::new() }
    }

    /// The schema of one occurrence of `el` (arrays handled by [`Self::element`]).
    fn single(&mut self, el: &Element, dir: Direction) -> Value {
        let mut s = match &el.ty {
            TypeRef::Simple(st) => simple(st, dir),
            TypeRef::Complex(id) => self.complex_ref(*id, &el.name, dir),
        };
        if el.nillable {
            s = nullable(s);
        }
        if let (Some(doc), Value::Object(m)) = (&el.doc, &mut s) {
            m.insert("description".into(), json!(doc));
        }
        s
    }

    /// The schema of `el` as it appears under its JSON key.
    pub fn element(&mut self, el: &Element, dir: Direction) -> Value {
        let one = self.single(el, dir);
        if !el.is_array() {
            return one;
        }
        let mut arr = json!({ "type": "array", "items": one });
        if dir == Direction::Request && el.min_occurs > 0 {
            arr["minItems"] = json!(el.min_occurs);
        }
        if let Some(max) = el.max_occurs {
            arr["maxItems"] = json!(max);
        }
        arr
    }

    /// The schema of a complex type's content, without the fields in `except`.
    pub fn object(&mut self, ct: &ComplexType, dir: Direction, except: &[String]) -> Value {
        let mut props = Map::new();
        let mut required = Vec::new();
        for a in &ct.attributes {
            if except.contains(&a.json_name) {
                continue;
            }
            props.insert(a.json_name.clone(), simple(&a.ty, dir));
            if a.required && dir == Direction::Request {
                required.push(json!(a.json_name));
            }
        }
        if let Some(st) = &ct.simple_content {
            props.insert(SIMPLE_CONTENT_KEY.into(), simple(st, dir));
            required.push(json!(SIMPLE_CONTENT_KEY));
        }
        for c in &ct.children {
            if except.contains(&c.json_name) {
                continue;
            }
            props.insert(c.json_name.clone(), self.element(c, dir));
            // Requests must carry required elements; responses always carry arrays.
            let present = match dir {
                Direction::Request => c.is_required(),
                Direction::Response => c.is_array(),
            };
            if present {
                required.push(json!(c.json_name));
            }
        }
        if ct.open && self.set.any_as_xml {
            props.insert(
                XML_KEY.into(),
                json!({ "type": "string", "description": "Content the schema leaves open (xsd:any), as XML elements" }),
            );
        }
        let polymorphic = !ct.subtypes.is_empty();
        if polymorphic {
            // xsi:type substitution: "@type" names the concrete type, whose extra fields follow.
            let mut names: Vec<&str> = Vec::new();
            if !ct.is_abstract {
                names.extend(ct.local_name());
            }
            names.extend(ct.subtypes.iter().filter_map(|id| self.set.complex(*id).local_name()));
            props.insert(
                TYPE_KEY.into(),
                json!({ "type": "string", "enum": names, "description": "The concrete XSD type (xsi:type); its own fields may be added" }),
            );
            if ct.is_abstract && dir == Direction::Request {
                required.push(json!(TYPE_KEY));
            }
        }
        let mut s = json!({ "type": "object", "properties": props });
        if !required.is_empty() {
            s["required"] = Value::Array(required);
        }
        if !ct.open && !polymorphic && dir == Direction::Request {
            // The encoder refuses unknown fields; say so.
            s["additionalProperties"] = json!(false);
        }
        s
    }

    /// A `$ref` to the type's component; an anonymous type is named after the element that
    /// holds it (`erp.PostSensorReadingInput`), with its id only where that name is taken.
    fn complex_ref(&mut self, id: TypeId, element: &str, dir: Direction) -> Value {
        let ct = self.set.complex(id);
        if let Some(item) = &ct.array_item {
            // A SOAP-encoded array is a plain JSON array.
            return json!({ "type": "array", "items": self.single(item, dir) });
        }
        let base = ct
            .name
            .as_deref()
            .and_then(|n| n.rsplit('}').next())
            .or(Some(element))
            .filter(|n| !n.is_empty())
            .unwrap_or("Anonymous");
        let suffix = if dir == Direction::Request { "Input" } else { "" };
        let mut name = format!("{}{}{}", self.prefix, sanitize(base), suffix);
        if self.owners.get(&name).is_some_and(|owner| *owner != (id, dir)) {
            name = format!("{name}{id}");
        }
        self.owners.insert(name.clone(), (id, dir));
        if !self.components.contains_key(&name) {
            // Reserve the name first: a recursive reference finds it and stops.
            self.components.insert(name.clone(), json!({}));
            let schema = self.object(ct, dir, &[]);
            self.components.insert(name.clone(), schema);
        }
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }
}

impl Schemas<'_> {
    /// An example value for `el`, built from its type (enumerations, formats, arrays of one).
    pub fn example(&self, el: &Element, depth: usize) -> Value {
        let one = match &el.ty {
            TypeRef::Simple(st) => simple_example(st),
            TypeRef::Complex(id) if depth < 6 => {
                let mut ct = self.set.complex(*id);
                if let Some(item) = &ct.array_item {
                    let items = json!([self.example(item, depth + 1)]);
                    return if el.is_array() { json!([items]) } else { items };
                }
                let mut m = Map::new();
                if let (true, Some(&sub)) = (ct.is_abstract, ct.subtypes.first()) {
                    ct = self.set.complex(sub);
                    m.insert(TYPE_KEY.into(), json!(ct.local_name()));
                }
                for a in &ct.attributes {
                    m.insert(a.json_name.clone(), simple_example(&a.ty));
                }
                if let Some(st) = &ct.simple_content {
                    m.insert(SIMPLE_CONTENT_KEY.into(), simple_example(st));
                }
                for c in ct.children.iter().filter(|c| c.is_required() || depth < 2) {
                    m.insert(c.json_name.clone(), self.example(c, depth + 1));
                }
                Value::Object(m)
            }
            TypeRef::Complex(_) => json!({}),
        };
        if el.is_array() { json!([one]) } else { one }
    }
}

fn simple_example(st: &SimpleType) -> Value {
    if let Some(first) = st.facets.enumeration.first() {
        return json!(first);
    }
    match st.base {
        Builtin::Boolean => json!(true),
        Builtin::Decimal => json!(12.5),
        Builtin::Float => json!(1.5),
        Builtin::Integer { min, .. } => json!(min.map_or(1, |m| m.clamp(0, 1) as i64)),
        Builtin::Date => json!("2026-11-25"),
        Builtin::DateTime => json!("2026-11-25T08:00:00Z"),
        Builtin::Time => json!("08:00:00"),
        Builtin::Base64 => json!("AAAA"),
        Builtin::Hex => json!("0A"),
        Builtin::String | Builtin::Any => {
            let len = st.facets.length.or(st.facets.min_length).unwrap_or(0).max(1);
            let max = st.facets.length.or(st.facets.max_length).unwrap_or(usize::MAX);
            json!("ABC123".chars().cycle().take(len.max(6).min(max)).collect::<String>())
        }
    }
}

/// OpenAPI component names allow `[A-Za-z0-9._-]`.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect()
}

fn nullable(s: Value) -> Value {
    match s {
        Value::Object(mut m) if m.get("type").is_some_and(Value::is_string) => {
            let t = m.remove("type").unwrap_or(Value::Null);
            m.insert("type".into(), json!([t, "null"]));
            if let Some(Value::Array(e)) = m.get_mut("enum") {
                e.push(Value::Null);
            }
            Value::Object(m)
        }
        other => json!({ "oneOf": [other, { "type": "null" }] }),
    }
}

/// Text XML 1.0 can carry: no control character but tab, LF and CR, no U+FFFE or U+FFFF
/// (`translate::xmltext::is_xml_char`; lone surrogates cannot occur in JSON text decoded as UTF-8).
pub(crate) const XML_TEXT_PATTERN: &str = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\uFFFE\\uFFFF]*$";

/// XSD's timezone: `Z` or an offset of at most ±14:00 (RFC 3339 allows more).
macro_rules! xsd_zone {
    () => {
        "(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)"
    };
}

/// `xsd:date` as the gateway reads it: four-digit year, optional timezone.
pub(crate) const DATE_PATTERN: &str = concat!("^[0-9]{4}-[0-9]{2}-[0-9]{2}", xsd_zone!(), "?$");
/// `xsd:dateTime` as the gateway reads it: upper-case `T`, optional fraction and timezone.
pub(crate) const DATE_TIME_PATTERN: &str =
    concat!("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?", xsd_zone!(), "?$");
/// `xsd:time` as the gateway reads it.
pub(crate) const TIME_PATTERN: &str = concat!("^[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?", xsd_zone!(), "?$");
/// `xsd:base64Binary`: the alphabet, padding and whitespace.
pub(crate) const BASE64_PATTERN: &str = "^[A-Za-z0-9+/=\\s]*$";

/// The schema of a simple type (an array of them for an `xsd:list`).
pub(crate) fn simple(st: &SimpleType, dir: Direction) -> Value {
    if st.list {
        return json!({ "type": "array", "items": simple(&SimpleType { list: false, ..st.clone() }, dir) });
    }
    if !st.union.is_empty() {
        let members: Vec<Value> = st.union.iter().map(|m| simple(m, dir)).collect();
        return json!({ "anyOf": members });
    }
    let f = &st.facets;
    let mut s = match st.base {
        Builtin::Boolean => json!({ "type": "boolean" }),
        Builtin::Decimal => json!({ "type": "number", "format": "decimal" }),
        Builtin::Float => json!({ "type": "number", "format": "double" }),
        Builtin::Integer { min, max } => {
            let mut s = json!({ "type": "integer" });
            if let Some(m) = min.filter(|m| i64::try_from(*m).is_ok()) {
                s["minimum"] = json!(m as i64);
            }
            if let Some(m) = max.filter(|m| i64::try_from(*m).is_ok()) {
                s["maximum"] = json!(m as i64);
            }
            s
        }
        Builtin::Date => json!({ "type": "string", "format": "date" }),
        Builtin::DateTime => json!({ "type": "string", "format": "date-time" }),
        Builtin::Time => json!({ "type": "string", "format": "time" }),
        Builtin::Base64 => json!({ "type": "string", "contentEncoding": "base64" }),
        Builtin::Hex => json!({ "type": "string", "pattern": "^([0-9a-fA-F]{2})*$" }),
        Builtin::String | Builtin::Any => json!({ "type": "string" }),
    };
    // Facets are checked on input only; the decoder passes the ERP's values through, so
    // response schemas promise the type and nothing more.
    if dir == Direction::Response {
        return if st.base.json_kind() == crate::schema::builtin::JsonKind::String { s } else { nullable(s) };
    }
    // What the gateway refuses beyond the JSON type, so that the document is exactly as
    // strict as the encoder: the lexical forms XSD allows, and only characters XML can carry.
    let lexical = match st.base {
        Builtin::Date => Some(DATE_PATTERN),
        Builtin::DateTime => Some(DATE_TIME_PATTERN),
        Builtin::Time => Some(TIME_PATTERN),
        Builtin::Base64 => Some(BASE64_PATTERN),
        Builtin::String | Builtin::Any => Some(XML_TEXT_PATTERN),
        _ => None,
    };
    if !f.enumeration.is_empty() {
        s["enum"] = json!(f.enumeration);
    }
    if st.base.json_kind() == crate::schema::builtin::JsonKind::String {
        if let Some(n) = f.length.or(f.min_length) {
            s["minLength"] = json!(n);
        }
        if let Some(n) = f.length.or(f.max_length) {
            s["maxLength"] = json!(n);
        }
    }
    // JSON Schema has one `pattern` per schema: a facet's own pattern goes beside it in `allOf`.
    match (f.patterns.as_slice(), lexical) {
        ([p], Some(l)) => {
            s["pattern"] = json!(p.as_str());
            s["allOf"] = json!([{ "pattern": l }]);
        }
        ([p], None) => s["pattern"] = json!(p.as_str()),
        (_, Some(l)) => s["pattern"] = json!(l),
        (_, None) => {}
    }
    if let Some(v) = f.min_inclusive.as_deref().and_then(|v| v.parse::<f64>().ok()) {
        s["minimum"] = json!(v);
    }
    if let Some(v) = f.max_inclusive.as_deref().and_then(|v| v.parse::<f64>().ok()) {
        s["maximum"] = json!(v);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ComplexType;

    fn holder(name: &str, id: TypeId) -> Element {
        Element {
            name: name.into(),
            json_name: name.into(),
            namespace: None,
            ty: TypeRef::Complex(id),
            min_occurs: 1,
            max_occurs: Some(1),
            nillable: false,
            doc: None,
        }
    }

    #[test]
    fn anonymous_types_are_named_after_their_element_and_never_share_a_name() {
        let set = SchemaSet { types: vec![ComplexType::default(), ComplexType::default()], any_as_xml: false };
        let mut schemas = Schemas::new(&set, "erp.");
        let first = schemas.element(&holder("Item", 0), Direction::Request);
        let again = schemas.element(&holder("Item", 0), Direction::Request);
        let other = schemas.element(&holder("Item", 1), Direction::Request);
        let answer = schemas.element(&holder("Item", 0), Direction::Response);
        assert_eq!(first["$ref"], "#/components/schemas/erp.ItemInput");
        assert_eq!(again, first, "one type, one name");
        assert_eq!(other["$ref"], "#/components/schemas/erp.ItemInput1", "another type under the same element name");
        assert_eq!(answer["$ref"], "#/components/schemas/erp.Item");
        assert_eq!(schemas.components.len(), 3);
    }
}
