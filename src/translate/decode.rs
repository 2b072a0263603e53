//! SOAP response → typed JSON (or a [`Fault`]), streaming with quick-xml.
//!
//! The reader walks the envelope once, typing values by the schema as it goes: numbers for
//! numeric types (decimals keep every digit), booleans, arrays wherever maxOccurs > 1 even
//! with zero or one occurrence, `null` for `xsi:nil`, attributes as keys. A DOCTYPE is
//! refused outright and only the five predefined entities exist, so nothing expands.

use std::borrow::Cow;
use std::str::FromStr;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::NamespaceResolver;
use quick_xml::name::{QName, ResolveResult};
use quick_xml::reader::Reader;
use serde_json::{Map, Number, Value};

use super::XSI;
use super::fault::{self, Fault, XNode};
use super::xmltext;
use crate::schema::builtin::{JsonKind, is_json_number, json_number_text, parse_bool};
use crate::schema::{
    ComplexType, Element, SIMPLE_CONTENT_KEY, SchemaSet, SimpleType, SoapVersion, TYPE_KEY, TypeId, TypeRef, XML_KEY,
};

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

/// Writes `s` as a JSON string, as serde_json writes it. Keys and most values have nothing
/// to escape (serde_json escapes quotes, backslashes and control characters only) and are
/// copied between quotes.
fn write_string(out: &mut Vec<u8>, s: &str) {
    // Without an early exit, so that the check runs wide over longer text.
    if s.bytes().fold(true, |plain, b| plain & (b >= 0x20) & (b != b'"') & (b != b'\\')) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a `str` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Writes an untyped value (`xsd:any` read as a tree), or the value at `path` within it.
fn write_untyped(out: &mut Vec<u8>, v: &Value, path: &[String]) {
    let v = path.iter().try_fold(v, |v, k| v.get(k)).unwrap_or(&Value::Null);
    // Writing a `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

type Key<'s> = Cow<'s, str>;

/// One value of a complex element being read, written to the decoder's output: which of
/// the element's fields it is (see [`FieldNo`]) and where its JSON text lies.
#[derive(Clone, Copy)]
struct Field {
    no: usize,
    start: usize,
    end: usize,
}

/// Numbers a complex type's fields in the order their keys are written: the attributes,
/// the simple content, then the children (an `xsi:type` name goes first, from the schema).
struct FieldNo {
    attributes: usize,
    /// Where the last child was found in the schema's list, where the next is looked for first.
    last_child: usize,
    /// The object being written in place, while its fields come in the schema's order.
    in_place: Option<InPlace>,
}

impl FieldNo {
    fn attribute(&self, i: usize) -> usize {
        i
    }
    fn simple_content(&self) -> usize {
        self.attributes
    }
    fn child(&self, i: usize) -> usize {
        self.attributes + 1 + i
    }
}

/// An object written as its fields come, with keys and separators before each value: when
/// the document gives them in the schema's order, as nearly every one does, the object is
/// finished at its end tag without being put together and moved. Fields are numbered as in
/// [`FieldNo`] (attributes, simple content, children); a field before the last one written,
/// or a single element repeated, hands the object to [`Decoder::assemble`], which puts it
/// together from the recorded fields over what was written in place. The text is the same
/// either way.
struct InPlace {
    /// The field number the next new field must be at or after.
    next: usize,
    /// The array (a field number) whose items are being written, if its `[` is open.
    open_array: Option<usize>,
    /// Keys written so far.
    keys: usize,
}

impl InPlace {
    /// Whether an element of `ct` (read down `select`) is written in place: its keys must all
    /// differ and come from the schema alone (no `xsd:any`), with no path into it, and the
    /// simple content of a type that has it is its only text.
    fn applies(ct: &ComplexType, select: &[String]) -> bool {
        #[cfg(test)]
        if tests::ASSEMBLE_ONLY.get() {
            return false;
        }
        ct.distinct_keys && !ct.open && select.is_empty() && (ct.simple_content.is_none() || ct.children.is_empty())
    }

    /// Opens the object, with the `xsi:type` name first when the element names a subtype.
    fn start(out: &mut Vec<u8>, substituted: Option<&str>) -> Self {
        out.push(b'{');
        let mut object = InPlace { next: 0, open_array: None, keys: 0 };
        if let Some(name) = substituted {
            object.key(TYPE_KEY, out);
            write_string(out, name);
        }
        object
    }

    /// Writes what goes before the value of field `no`: another item of the open array, or
    /// the key (and absent arrays' `[]` before it). `false` when the field comes before one
    /// already written or repeats a single element, which only `assemble` can place.
    fn enter(&mut self, no: usize, ct: &ComplexType, out: &mut Vec<u8>) -> bool {
        if self.open_array == Some(no) {
            out.push(b',');
            return true;
        }
        if no < self.next {
            return false;
        }
        self.close_array(out);
        self.absent_arrays(ct, self.next..no, out);
        let (key, array) = field(ct, no);
        self.key(key, out);
        if array {
            out.push(b'[');
            self.open_array = Some(no);
        }
        self.next = no + 1;
        true
    }

    /// Closes the object at the element's end tag.
    fn finish(mut self, ct: &ComplexType, out: &mut Vec<u8>) {
        self.close_array(out);
        self.absent_arrays(ct, self.next..usize::MAX, out);
        out.push(b'}');
    }

    fn key(&mut self, key: &str, out: &mut Vec<u8>) {
        if self.keys > 0 {
            out.push(b',');
        }
        self.keys += 1;
        write_string(out, key);
        out.push(b':');
    }

    fn close_array(&mut self, out: &mut Vec<u8>) {
        if self.open_array.take().is_some() {
            out.push(b']');
        }
    }

    /// Arrays are written even when empty: those among the fields numbered `skipped`.
    fn absent_arrays(&mut self, ct: &ComplexType, skipped: std::ops::Range<usize>, out: &mut Vec<u8>) {
        if skipped.is_empty() {
            return; // the next field, as nearly always
        }
        let first_child = ct.attributes.len() + 1;
        let from = skipped.start.saturating_sub(first_child).min(ct.children.len());
        let to = skipped.end.saturating_sub(first_child).min(ct.children.len());
        for c in ct.children[from..to.max(from)].iter().filter(|c| c.is_array()) {
            self.key(&c.json_name, out);
            out.extend_from_slice(b"[]");
        }
    }
}

/// The JSON key of field `no` of `ct` (numbered as in [`FieldNo`]) and whether it is an array.
fn field(ct: &ComplexType, no: usize) -> (&str, bool) {
    let attributes = ct.attributes.len();
    match no.checked_sub(attributes + 1) {
        Some(i) => ct.children.get(i).map_or(("", false), |c| (c.json_name.as_str(), c.is_array())),
        None if no == attributes => (SIMPLE_CONTENT_KEY, false),
        None => (ct.attributes[no].json_name.as_str(), false),
    }
}

/// Where a key's value comes from when an element's object is put together.
#[derive(Clone, Copy)]
enum Source<'s> {
    /// JSON text in the output, from..to.
    Text(usize, usize),
    /// An array of the values `fields[from..to]`.
    Items(usize, usize),
    /// A string from the schema (the `xsi:type` name).
    Str(&'s str),
    /// Undeclared content: the decoder's `extras[i]`.
    Extra(usize),
    Null,
}

/// An object's entries as they are gathered: a key seen again replaces the value in its
/// first place (as inserting into a map would), or is ignored (`keep_first`). Past a few
/// dozen keys an index replaces the linear search.
struct Entries<'s, V> {
    list: Vec<(Key<'s>, V)>,
    index: Option<std::collections::HashMap<Box<str>, usize>>,
}

impl<'s, V> Entries<'s, V> {
    const LINEAR: usize = 32;

    fn with_capacity(n: usize) -> Self {
        Entries { list: Vec::with_capacity(n), index: None }
    }

    fn position(&self, k: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(k).copied(),
            None => self.list.iter().position(|(have, _)| have.len() == k.len() && have == k),
        }
    }

    fn put(&mut self, k: Key<'s>, v: V, keep_first: bool) {
        match self.position(&k) {
            Some(_) if keep_first => {}
            Some(i) => self.list[i].1 = v,
            None => {
                if let Some(index) = &mut self.index {
                    index.insert(k.as_ref().into(), self.list.len());
                } else if self.list.len() == Self::LINEAR {
                    let mut index: std::collections::HashMap<Box<str>, usize> =
                        self.list.iter().enumerate().map(|(i, (k, _))| (k.as_ref().into(), i)).collect();
                    index.insert(k.as_ref().into(), self.list.len());
                    self.index = Some(index);
                }
                self.list.push((k, v));
            }
        }
    }

    fn take(&mut self, k: &str) -> Option<V> {
        self.position(k).map(|i| self.list.swap_remove(i).1)
    }

    /// Empties it for the next element, keeping the allocation.
    fn clear(&mut self) {
        self.list.clear();
        self.index = None;
    }
}

/// Replaces untyped detail entries by typed JSON where a declared fault element matches.
fn type_fault_detail(f: &mut Fault, tree: &XNode, faults: &[Element], schema: &SchemaSet) {
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
fn typed_tree(el: &Element, node: &XNode, schema: &SchemaSet, depth: usize) -> Value {
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
fn typed_text(st: &SimpleType, text: &str) -> Option<Value> {
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

/// The namespace prefixes an element's subtree uses in names and in `xsi:type` values (`""`
/// for the default namespace), read up to the end of that element.
fn used_prefixes(from: &str) -> Vec<String> {
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

struct Decoder<'x, 's> {
    r: Reader<&'x [u8]>,
    /// Namespace bindings in scope. Kept here rather than by quick-xml's `NsReader`, which
    /// pushes a scope for every element: most elements of a response declare nothing, and
    /// only those with attributes can.
    ns: NamespaceResolver,
    /// For each open element, whether it pushed a scope.
    scopes: Vec<bool>,
    /// The scope of the element just closed (or empty) goes at the next read, as `NsReader`
    /// does.
    pending_pop: bool,
    /// The whole document, for raw-XML capture of `xsd:any` content.
    text: &'x str,
    schema: &'s SchemaSet,
    faults: &'s [Element],
    path: Vec<&'s str>,
    /// The JSON text written so far. Every value is written here once, in document order:
    /// with its key before it while an object's fields come in schema order (see
    /// [`InPlace`]), else replaced with the rest of its object at the end tag (see
    /// [`Decoder::assemble`]).
    out: Vec<u8>,
    /// The fields written for the complex elements being read, innermost last.
    fields: Vec<Field>,
    /// An object's keys as it is put together; kept between elements so that this
    /// allocates nothing.
    entries: Entries<'s, Source<'s>>,
}

/// The part of a key path (`select`) that applies below key `key`: the rest of the path
/// when it starts with `key`, else nothing (the whole value).
fn below<'a>(select: &'a [String], key: &str) -> &'a [String] {
    match select.split_first() {
        Some((first, rest)) if first == key => rest,
        _ => &[],
    }
}

/// Does the path go on below `key`? A value that is not an object then selects to `null`.
fn goes_below(select: &[String], key: &str) -> bool {
    !below(select, key).is_empty()
}

/// Whether a start tag has any attributes (namespace declarations included).
fn has_attributes(start: &BytesStart<'_>) -> bool {
    !start.attributes_raw().trim_ascii_start().is_empty()
}

/// The index in `children` of the one named `local`, looked for from `last` (where the
/// previous child was found) onwards first: documents follow the schema's order, so a child
/// is found at once, even in the ERP records with a hundred fields.
fn find_child(children: &[Element], local: &str, last: usize) -> Option<usize> {
    let from = last.min(children.len());
    let named = |c: &Element| c.name == local;
    children[from..].iter().position(named).map(|i| i + from).or_else(|| children[..from].iter().position(named))
}

/// A start tag and whether it was self-closing.
struct Open<'x> {
    start: BytesStart<'x>,
    empty: bool,
}

impl<'x, 's> Decoder<'x, 's> {
    fn next(&mut self) -> Result<Event<'x>, DecodeError> {
        if std::mem::take(&mut self.pending_pop) {
            self.ns.pop();
        }
        let event = match self.r.read_event() {
            Ok(Event::DocType(_)) => return Err(DecodeError::Doctype),
            Ok(Event::Eof) => {
                return Err(DecodeError::Malformed("the response ends before the SOAP envelope is complete".into()));
            }
            Ok(e) => e,
            Err(e) => return Err(DecodeError::Malformed(format!("at byte {}: {e}", self.r.error_position()))),
        };
        match &event {
            Event::Start(start) => {
                let pushed = self.push_scope(start)?;
                self.scopes.push(pushed);
            }
            Event::Empty(start) => self.pending_pop = self.push_scope(start)?,
            Event::End(_) => self.pending_pop = self.scopes.pop() == Some(true),
            _ => {}
        }
        Ok(event)
    }

    /// Enters an element's namespace scope if it can declare any (it has attributes).
    fn push_scope(&mut self, start: &BytesStart<'x>) -> Result<bool, DecodeError> {
        if !has_attributes(start) {
            return Ok(false);
        }
        self.ns
            .push(start)
            .map_err(|e| DecodeError::Malformed(format!("at byte {}: {e}", self.r.buffer_position())))?;
        Ok(true)
    }

    /// The next start tag, skipping whitespace, comments and PIs; `None` at an end tag.
    fn next_open(&mut self) -> Result<Option<Open<'x>>, DecodeError> {
        loop {
            match self.next()? {
                Event::Start(start) => {
                    return Ok(Some(Open { start, empty: false }));
                }
                Event::Empty(start) => return Ok(Some(Open { start, empty: true })),
                Event::End(_) => return Ok(None),
                Event::Text(t) if t.xml10_content().trim().is_empty() => {}
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(DecodeError::Schema(format!("unexpected text inside {}", self.where_())));
                }
                _ => {}
            }
        }
    }

    fn where_(&self) -> String {
        if self.path.is_empty() { "the envelope".into() } else { format!("/{}", self.path.join("/")) }
    }

    /// Whether a start tag is `{ns}local`. Borrows where [`Decoder::name_of`] copies: it
    /// runs for every child of the envelope and the Body.
    fn is_named(&self, start: &BytesStart<'x>, ns: &str, local: &str) -> bool {
        let (bound, name) = self.ns.resolve_element(start.name());
        name.as_ref() == local && matches!(bound, ResolveResult::Bound(n) if n.0 == ns)
    }

    /// The namespace URI and local name of a start tag.
    fn name_of(&self, start: &BytesStart<'x>) -> (String, String) {
        let (ns, local) = self.ns.resolve_element(start.name());
        let ns = match ns {
            ResolveResult::Bound(n) => n.0.to_string(),
            _ => String::new(),
        };
        (ns, local.as_ref().to_string())
    }

    fn skip(&mut self, open: &Open<'x>) -> Result<(), DecodeError> {
        if !open.empty {
            let end = open.start.name();
            self.r.read_to_end(end).map_err(|e| DecodeError::Malformed(e.to_string()))?;
            // Its end tag is read: nothing inside can be resolved any more.
            if self.scopes.pop() == Some(true) {
                self.ns.pop();
            }
        }
        Ok(())
    }

    fn envelope(&mut self, expected: &'s Element, select: &[String]) -> Result<Decoded<()>, DecodeError> {
        let root = loop {
            match self.next()? {
                Event::Start(start) => break start,
                Event::Empty(_) => {
                    return Err(DecodeError::NotSoap("the response is an empty element, not a SOAP envelope".into()));
                }
                Event::Text(t) if t.xml10_content().trim().is_empty() => {}
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(DecodeError::NotSoap("the response is text, not XML".into()));
                }
                _ => {}
            }
        };
        let (ns, local) = self.name_of(&root);
        let version = match (ns.as_str(), local.as_str()) {
            ("http://schemas.xmlsoap.org/soap/envelope/", "Envelope") => SoapVersion::V11,
            ("http://www.w3.org/2003/05/soap-envelope", "Envelope") => SoapVersion::V12,
            (_, l) if l.eq_ignore_ascii_case("html") => {
                return Err(DecodeError::NotSoap("the backend answered with an HTML page".into()));
            }
            _ => {
                return Err(DecodeError::NotSoap(format!("the root element is <{local}>, not a SOAP Envelope")));
            }
        };
        let env_ns = version.envelope_ns();
        let mut result = None;
        while let Some(open) = self.next_open()? {
            if !self.is_named(&open.start, env_ns, "Body") {
                self.skip(&open)?; // Header and anything else around the Body.
                continue;
            }
            if open.empty {
                return Err(DecodeError::Schema("the SOAP Body is empty".into()));
            }
            result = Some(self.body(version, expected, select)?);
        }
        // Read to the end so a truncated or ill-formed tail is still an error.
        loop {
            match self.r.read_event() {
                Ok(Event::Eof) => break,
                Ok(Event::DocType(_)) => return Err(DecodeError::Doctype),
                Ok(_) => {}
                Err(e) => return Err(DecodeError::Malformed(e.to_string())),
            }
        }
        result.ok_or_else(|| DecodeError::Schema("the SOAP envelope has no Body".into()))
    }

    fn body(
        &mut self,
        version: SoapVersion,
        expected: &'s Element,
        select: &[String],
    ) -> Result<Decoded<()>, DecodeError> {
        let Some(open) = self.next_open()? else {
            return Err(DecodeError::Schema("the SOAP Body is empty".into()));
        };
        let local = open.start.local_name();
        let local: &str = local.as_ref();
        let decoded = if self.is_named(&open.start, version.envelope_ns(), "Fault") {
            let tree = self.tree(&open, 0)?;
            let mut f = fault::from_tree(version, &tree);
            type_fault_detail(&mut f, &tree, self.faults, self.schema);
            Decoded::Fault(f)
        } else if local == expected.name {
            self.path.push(&expected.name);
            self.value(expected, &open, 0, select)?;
            self.path.pop();
            Decoded::Body(())
        } else {
            return Err(DecodeError::Schema(format!("expected <{}> in the SOAP Body, found <{local}>", expected.name)));
        };
        // Whatever follows in the Body (nothing, normally) is skipped.
        while let Some(open) = self.next_open()? {
            self.skip(&open)?;
        }
        Ok(decoded)
    }

    /// Writes one occurrence of `el` whose start tag was just read: the value at `select`
    /// within it (empty: all of it).
    fn value(&mut self, el: &'s Element, open: &Open<'x>, depth: usize, select: &[String]) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::Schema(format!("elements nest deeper than {MAX_DEPTH} levels")));
        }
        // Most elements have no attributes at all: then there is no xsi:nil to look for.
        if has_attributes(&open.start) && open.start.attributes().has_nil(&self.ns) {
            self.skip(open)?;
            self.out.extend_from_slice(b"null");
            return Ok(());
        }
        let start = self.out.len();
        match &el.ty {
            TypeRef::Simple(st) => {
                let text = if open.empty { Cow::Borrowed("") } else { self.text()? };
                self.typed(st, &text)?;
            }
            TypeRef::Complex(id) => {
                let schema = self.schema;
                let mut ct = schema.complex(*id);
                let mut substituted = None;
                if !ct.subtypes.is_empty()
                    && let Some(sub) =
                        self.xsi_type(&open.start).and_then(|(ns, local)| subtype(schema, ct, &ns, &local))
                {
                    ct = schema.complex(sub);
                    substituted = ct.local_name();
                }
                match &ct.array_item {
                    Some(item) => self.array(item, open, depth)?,
                    None => return self.complex(ct, open, depth, select, substituted),
                }
            }
        }
        // A simple value or an array is checked and written whole; a path below it leads
        // nowhere.
        if !select.is_empty() {
            self.out.truncate(start);
            self.out.extend_from_slice(b"null");
        }
        Ok(())
    }

    /// `xsi:type` of a start tag, resolved to `(namespace, local name)`.
    fn xsi_type(&self, start: &BytesStart<'x>) -> Option<(String, String)> {
        let resolver = &self.ns;
        let attr = start.attributes().flatten().find(|a| {
            let (ns, local) = resolver.resolve_attribute(a.key);
            matches!(ns, ResolveResult::Bound(n) if n.0 == XSI) && local.as_ref() == "type"
        })?;
        let value = attr.normalized_value(quick_xml::XmlVersion::Implicit1_0).ok()?;
        let (ns, local) = resolver.resolve_element(QName(value.trim()));
        let ns = match ns {
            ResolveResult::Bound(n) => n.0.to_string(),
            _ => String::new(),
        };
        Some((ns, local.as_ref().to_string()))
    }

    /// A SOAP-encoded array: every child element is one item, whatever its name.
    fn array(&mut self, item: &'s Element, open: &Open<'x>, depth: usize) -> Result<(), DecodeError> {
        self.out.push(b'[');
        if !open.empty {
            let mut first = true;
            while let Some(child) = self.next_open()? {
                if !std::mem::take(&mut first) {
                    self.out.push(b',');
                }
                self.path.push(&item.name);
                self.value(item, &child, depth + 1, &[])?;
                self.path.pop();
            }
        }
        self.out.push(b']');
        Ok(())
    }

    /// Writes a complex element's object: its attributes, text and children are written as
    /// the document gives them, with their keys while they come in schema order (see
    /// [`InPlace`]), else put together in schema order at the end (see [`Decoder::assemble`]).
    /// The child at the head of `select` is decoded down the rest of the path.
    fn complex(
        &mut self,
        ct: &'s ComplexType,
        open: &Open<'x>,
        depth: usize,
        select: &[String],
        substituted: Option<&'s str>,
    ) -> Result<(), DecodeError> {
        let start = self.out.len();
        let base = self.fields.len();
        let in_place = InPlace::applies(ct, select).then(|| InPlace::start(&mut self.out, substituted));
        let mut no = FieldNo { attributes: ct.attributes.len(), last_child: 0, in_place };
        if !ct.attributes.is_empty() && has_attributes(&open.start) {
            for attr in open.start.attributes().flatten() {
                let key = attr.key.local_name();
                let Some(i) = ct.attributes.iter().position(|a| a.name == key.as_ref()) else {
                    continue;
                };
                let value = attr
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map_err(|e| DecodeError::Malformed(e.to_string()))?;
                let field = no.attribute(i);
                self.enter_in_place(ct, &mut no, field);
                let from = self.out.len();
                self.typed(&ct.attributes[i].ty, &value)?;
                self.written(field, from);
            }
        }
        let mut extras: Vec<(String, Value)> = Vec::new();
        let mut text = String::new();
        if !open.empty {
            loop {
                match self.next()? {
                    Event::Start(start) => {
                        self.child(ct, &mut no, &mut extras, Open { start, empty: false }, depth, select)?
                    }
                    Event::Empty(start) => {
                        self.child(ct, &mut no, &mut extras, Open { start, empty: true }, depth, select)?
                    }
                    Event::End(_) => break,
                    // Text between children only matters for simple content; the whitespace
                    // of a pretty-printed document is not gathered.
                    Event::Text(_) | Event::CData(_) if ct.simple_content.is_none() => {}
                    Event::Text(t) => text.push_str(&t.xml10_content()),
                    Event::CData(t) => text.push_str(&t.xml10_content()),
                    Event::GeneralRef(r) => text.push(xmltext::resolve_ref(&r).map_err(DecodeError::Malformed)?),
                    _ => {}
                }
            }
        }
        if let Some(st) = &ct.simple_content {
            let field = no.simple_content();
            self.enter_in_place(ct, &mut no, field);
            let from = self.out.len();
            self.typed(st, &text)?;
            self.written(field, from);
        }
        match no.in_place.take() {
            Some(object) => {
                object.finish(ct, &mut self.out);
                self.fields.truncate(base);
            }
            None => self.assemble(ct, &no, start, base, select, substituted, &extras),
        }
        Ok(())
    }

    fn child(
        &mut self,
        ct: &'s ComplexType,
        no: &mut FieldNo,
        extras: &mut Vec<(String, Value)>,
        open: Open<'x>,
        depth: usize,
        select: &[String],
    ) -> Result<(), DecodeError> {
        // The local name, found with a byte loop (quick-xml's `local_name` runs a `str::find`,
        // which costs more than the names are long).
        let name = open.start.name();
        let qname: &str = name.as_ref();
        let local = qname.bytes().position(|b| b == b':').map_or(qname, |i| &qname[i + 1..]);
        let Some(i) = find_child(&ct.children, local, no.last_child) else {
            if ct.open && self.schema.any_as_xml {
                // xsd:any as raw XML: the element as written, made standalone.
                let fragment = self.fragment(&open)?;
                match extras.iter_mut().find(|(k, _)| k == XML_KEY) {
                    Some((_, Value::String(s))) => s.push_str(&fragment),
                    _ => extras.push((XML_KEY.into(), Value::String(fragment))),
                }
                return Ok(());
            }
            if ct.open {
                // xsd:any (Salesforce's sObject fields): passed through as untyped JSON.
                let node = self.tree(&open, depth + 1)?;
                let v = node.to_json();
                // Repeated names gather into an array, in the first one's place.
                match extras.iter_mut().find(|(k, _)| *k == node.name) {
                    Some((_, Value::Array(items))) => items.push(v),
                    Some((_, first)) => *first = Value::Array(vec![first.take(), v]),
                    None => extras.push((node.name, v)),
                }
                return Ok(());
            }
            // Elements the WSDL does not declare (newer ERP versions add fields): skipped.
            return self.skip(&open);
        };
        no.last_child = i;
        let field = no.child(i);
        self.enter_in_place(ct, no, field);
        let el = &ct.children[i];
        // Only a single element can hold the rest of the path; an array selects to `null`.
        let select = if el.is_array() { &[][..] } else { below(select, &el.json_name) };
        let from = self.out.len();
        self.path.push(&el.name);
        self.value(el, &open, depth + 1, select)?;
        self.path.pop();
        self.written(field, from);
        Ok(())
    }

    /// Before field `field` of the element being read is written: its key, when the object
    /// is written in place; when it comes out of order, the object goes to `assemble`.
    fn enter_in_place(&mut self, ct: &ComplexType, no: &mut FieldNo, field: usize) {
        if let Some(object) = &mut no.in_place
            && !object.enter(field, ct, &mut self.out)
        {
            no.in_place = None;
        }
    }

    /// Records that field `no` of the complex element being read was written from `from` on.
    fn written(&mut self, no: usize, from: usize) {
        self.fields.push(Field { no, start: from, end: self.out.len() });
    }

    /// Replaces the fields a complex element wrote from `start` (`self.fields[base..]`, in
    /// document order) by its object: keys in schema order whatever the document's order,
    /// a repeated element's last value in its first place, arrays even when empty, and
    /// undeclared content after the declared. With a `select` path, by the value at it.
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        &mut self,
        ct: &'s ComplexType,
        no: &FieldNo,
        start: usize,
        base: usize,
        select: &[String],
        substituted: Option<&'s str>,
        extras: &[(String, Value)],
    ) {
        // Stable, and linear when the document's order is the schema's (as it nearly always is).
        self.fields[base..].sort_by_key(|f| f.no);
        let entries = &mut self.entries;
        entries.clear();
        // Anything under the selected key that was not decoded down the path.
        let whole = |key: &str, v: Source<'s>| if goes_below(select, key) { Source::Null } else { v };
        // The fields numbered `n`, as a range of `self.fields`; they come in order of number.
        let mut at = base;
        let fields = &self.fields;
        let mut run = |n: usize| {
            let from = at;
            while fields.get(at).is_some_and(|f| f.no == n) {
                at += 1;
            }
            (from, at)
        };
        let last =
            |(from, to): (usize, usize)| (to > from).then(|| Source::Text(fields[to - 1].start, fields[to - 1].end));
        // Keys that cannot repeat are appended; the rest replace a value of the same key.
        let distinct = ct.distinct_keys;
        let mut put = |k: Key<'s>, v: Source<'s>| {
            if distinct { entries.list.push((k, v)) } else { entries.put(k, v, false) }
        };
        if let Some(name) = substituted {
            put(TYPE_KEY.into(), whole(TYPE_KEY, Source::Str(name)));
        }
        for (i, a) in ct.attributes.iter().enumerate() {
            if let Some(v) = last(run(no.attribute(i))) {
                put(a.json_name.as_str().into(), whole(&a.json_name, v));
            }
        }
        if ct.simple_content.is_some()
            && let Some(v) = last(run(no.simple_content()))
        {
            put(SIMPLE_CONTENT_KEY.into(), whole(SIMPLE_CONTENT_KEY, v));
        }
        for (i, c) in ct.children.iter().enumerate() {
            let (from, to) = run(no.child(i));
            if c.is_array() {
                put(c.json_name.as_str().into(), whole(&c.json_name, Source::Items(from, to)));
            } else if let Some(v) = last((from, to)) {
                put(c.json_name.as_str().into(), v);
            }
        }
        for (i, (k, _)) in extras.iter().enumerate() {
            // A declared field always wins over an undeclared one of the same key.
            entries.put(Cow::Owned(k.clone()), Source::Extra(i), true);
        }
        // The object is written after the fields, then moved down over them.
        let tail = self.out.len();
        let (out, fields) = (&mut self.out, &self.fields);
        let write = |out: &mut Vec<u8>, v: Source<'s>, path: &[String]| match v {
            Source::Text(from, to) => out.extend_from_within(from..to),
            Source::Items(from, to) => {
                out.push(b'[');
                for (i, f) in fields[from..to].iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_within(f.start..f.end);
                }
                out.push(b']');
            }
            Source::Str(s) => write_string(out, s),
            Source::Extra(i) => write_untyped(out, &extras[i].1, path),
            Source::Null => out.extend_from_slice(b"null"),
        };
        match select.split_first() {
            None => {
                out.push(b'{');
                for (i, (k, v)) in entries.list.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(out, k);
                    out.push(b':');
                    write(out, *v, &[]);
                }
                out.push(b'}');
            }
            Some((key, path)) => write(out, entries.take(key).unwrap_or(Source::Null), path),
        }
        out.copy_within(tail.., start);
        out.truncate(start + (out.len() - tail));
        self.fields.truncate(base);
    }

    /// The element just opened, as written in the document up to its end tag, with the
    /// namespace declarations it relies on from its ancestors added to its start tag.
    fn fragment(&mut self, open: &Open<'x>) -> Result<String, DecodeError> {
        let tag_end = usize::try_from(self.r.buffer_position()).unwrap_or(0);
        let tag_len = open.start.len() + if open.empty { 3 } else { 2 };
        let start = tag_end.saturating_sub(tag_len);
        // Prefixes in scope here (the element's own declarations included), before skipping.
        let own: Vec<String> = open
            .start
            .attributes()
            .flatten()
            .map(|a| a.key.as_ref().to_string())
            .filter(|k| k == "xmlns" || k.starts_with("xmlns:"))
            .collect();
        let name_end = start + 1 + open.start.name().as_ref().len();
        let mut decls = String::new();
        for prefix in used_prefixes(self.text.get(start..).unwrap_or("")) {
            let decl = if prefix.is_empty() { "xmlns".to_string() } else { format!("xmlns:{prefix}") };
            if own.contains(&decl) {
                continue; // declared on the element itself
            }
            // Resolving a made-up name with the prefix gives the prefix's namespace.
            let probe = if prefix.is_empty() { "x".to_string() } else { format!("{prefix}:x") };
            if let (ResolveResult::Bound(ns), _) = self.ns.resolve_element(QName(&probe)) {
                decls.push_str(&format!(" {decl}=\"{}\"", ns.0.replace('&', "&amp;").replace('"', "&quot;")));
            }
        }
        self.skip(open)?;
        let end = usize::try_from(self.r.buffer_position()).unwrap_or(0);
        let (Some(head), Some(rest)) = (self.text.get(start..name_end), self.text.get(name_end..end)) else {
            return Err(DecodeError::Malformed("cannot capture an xsd:any element".into()));
        };
        Ok(format!("{head}{decls}{rest}"))
    }

    /// Text content of a simple element up to its end tag: borrowed from the document when
    /// it is one piece (no references, CDATA sections or line ends to normalise), as most are.
    fn text(&mut self) -> Result<Cow<'x, str>, DecodeError> {
        let mut text = Cow::Borrowed("");
        let append = |text: &mut Cow<'x, str>, piece: Cow<'x, str>| {
            if text.is_empty() {
                *text = piece;
            } else {
                text.to_mut().push_str(&piece);
            }
        };
        loop {
            match self.next()? {
                Event::Text(t) => append(&mut text, t.xml10_content()),
                Event::CData(t) => append(&mut text, t.xml10_content()),
                Event::GeneralRef(r) => text.to_mut().push(xmltext::resolve_ref(&r).map_err(DecodeError::Malformed)?),
                Event::End(_) => return Ok(text),
                Event::Start(start) => {
                    let open = Open { start, empty: false };
                    self.skip(&open)?;
                }
                _ => {}
            }
        }
    }

    /// Writes a simple value typed by `st`.
    fn typed(&mut self, st: &SimpleType, text: &str) -> Result<(), DecodeError> {
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

    fn mismatch(&self, text: &str, expected: &str) -> DecodeError {
        let shown: String = text.chars().take(40).collect();
        DecodeError::Schema(format!("{}: expected {expected}, got {shown:?}", self.where_()))
    }

    /// Reads an element into an untyped tree (fault bodies).
    fn tree(&mut self, open: &Open<'x>, depth: usize) -> Result<XNode, DecodeError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings are written as serde_json writes them, whether or not they need escaping.
    #[test]
    fn quoted_strings_are_what_serde_json_writes() {
        for s in
            ["plain", "", "quote \" inside", "back\\slash", "tab\there", "nul\u{0}", "Ø 622 mm", "\u{7f}del", "\u{1f}"]
        {
            let mut out = Vec::new();
            write_string(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).expect("json"), "{s:?}");
        }
    }

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

    /// The same puts, and what they leave, whether the keys are searched or indexed.
    #[test]
    fn entries_replace_in_place_or_keep_the_first_below_and_above_the_index_threshold() {
        for n in [3, Entries::<u32>::LINEAR + 5] {
            let mut e = Entries::with_capacity(n);
            for i in 0..n {
                e.put(format!("k{i}").into(), 0, false);
            }
            e.put("k1".into(), 1, false); // a later declared field: replaces, same place
            e.put("k2".into(), 2, true); // an undeclared one of a declared name: ignored
            e.put("extra".into(), 3, true);
            e.put("extra".into(), 4, true);
            let keys: Vec<&str> = e.list.iter().map(|(k, _)| k.as_ref()).collect();
            assert_eq!(keys.len(), n + 1, "n = {n}: {keys:?}");
            assert_eq!((keys[1], keys[n]), ("k1", "extra"), "n = {n}");
            assert_eq!(e.list[1].1, 1, "n = {n}");
            assert_eq!(e.list[2].1, 0, "n = {n}");
            assert_eq!(e.position("extra"), Some(n), "n = {n}");
            assert_eq!(e.take("extra"), Some(3), "n = {n}");
        }
    }
}
