//! The walk over quick-xml's events: namespace scopes, the envelope, the body, and each
//! element by its schema (simple, complex, arrays, `xsd:any`), down the response path.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::NamespaceResolver;
use quick_xml::name::{QName, ResolveResult};
use quick_xml::reader::Reader;
use serde_json::Value;

use super::XSI;
use super::fault::{self};
use super::xmltext;
use crate::schema::{ComplexType, Element, SchemaSet, SoapVersion, TypeRef, XML_KEY};

use super::*;

pub(super) struct Decoder<'x, 's> {
    pub(super) r: Reader<&'x [u8]>,
    /// Namespace bindings in scope. Kept here rather than by quick-xml's `NsReader`, which
    /// pushes a scope for every element: most elements of a response declare nothing, and
    /// only those with attributes can.
    pub(super) ns: NamespaceResolver,
    /// For each open element, whether it pushed a scope.
    pub(super) scopes: Vec<bool>,
    /// The scope of the element just closed (or empty) goes at the next read, as `NsReader`
    /// does.
    pub(super) pending_pop: bool,
    /// The whole document, for raw-XML capture of `xsd:any` content.
    pub(super) text: &'x str,
    pub(super) schema: &'s SchemaSet,
    pub(super) faults: &'s [Element],
    pub(super) path: Vec<&'s str>,
    /// The JSON text written so far. Every value is written here once, in document order:
    /// with its key before it while an object's fields come in schema order (see
    /// [`InPlace`]), else replaced with the rest of its object at the end tag (see
    /// [`Decoder::assemble`]).
    pub(super) out: Vec<u8>,
    /// The fields written for the complex elements being read, innermost last.
    pub(super) fields: Vec<Field>,
    /// An object's keys as it is put together; kept between elements so that this
    /// allocates nothing.
    pub(super) entries: Entries<'s, Source<'s>>,
}

/// The part of a key path (`select`) that applies below key `key`: the rest of the path
/// when it starts with `key`, else nothing (the whole value).
pub(super) fn below<'a>(select: &'a [String], key: &str) -> &'a [String] {
    match select.split_first() {
        Some((first, rest)) if first == key => rest,
        _ => &[],
    }
}

/// Does the path go on below `key`? A value that is not an object then selects to `null`.
pub(super) fn goes_below(select: &[String], key: &str) -> bool {
    !below(select, key).is_empty()
}

/// Whether a start tag has any attributes (namespace declarations included).
pub(super) fn has_attributes(start: &BytesStart<'_>) -> bool {
    !start.attributes_raw().trim_ascii_start().is_empty()
}

/// The index in `children` of the one named `local`, looked for from `last` (where the
/// previous child was found) onwards first: documents follow the schema's order, so a child
/// is found at once, even in the ERP records with a hundred fields.
pub(super) fn find_child(children: &[Element], local: &str, last: usize) -> Option<usize> {
    let from = last.min(children.len());
    let named = |c: &Element| c.name == local;
    children[from..].iter().position(named).map(|i| i + from).or_else(|| children[..from].iter().position(named))
}

/// A start tag and whether it was self-closing.
pub(super) struct Open<'x> {
    pub(super) start: BytesStart<'x>,
    pub(super) empty: bool,
}

impl<'x, 's> Decoder<'x, 's> {
    pub(super) fn next(&mut self) -> Result<Event<'x>, DecodeError> {
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
    pub(super) fn push_scope(&mut self, start: &BytesStart<'x>) -> Result<bool, DecodeError> {
        if !has_attributes(start) {
            return Ok(false);
        }
        self.ns
            .push(start)
            .map_err(|e| DecodeError::Malformed(format!("at byte {}: {e}", self.r.buffer_position())))?;
        Ok(true)
    }

    /// The next start tag, skipping whitespace, comments and PIs; `None` at an end tag.
    pub(super) fn next_open(&mut self) -> Result<Option<Open<'x>>, DecodeError> {
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

    pub(super) fn where_(&self) -> String {
        if self.path.is_empty() { "the envelope".into() } else { format!("/{}", self.path.join("/")) }
    }

    /// Whether a start tag is `{ns}local`. Borrows where [`Decoder::name_of`] copies: it
    /// runs for every child of the envelope and the Body.
    pub(super) fn is_named(&self, start: &BytesStart<'x>, ns: &str, local: &str) -> bool {
        let (bound, name) = self.ns.resolve_element(start.name());
        name.as_ref() == local && matches!(bound, ResolveResult::Bound(n) if n.0 == ns)
    }

    /// The namespace URI and local name of a start tag.
    pub(super) fn name_of(&self, start: &BytesStart<'x>) -> (String, String) {
        let (ns, local) = self.ns.resolve_element(start.name());
        let ns = match ns {
            ResolveResult::Bound(n) => n.0.to_string(),
            _ => String::new(),
        };
        (ns, local.as_ref().to_string())
    }

    pub(super) fn skip(&mut self, open: &Open<'x>) -> Result<(), DecodeError> {
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

    pub(super) fn envelope(&mut self, expected: &'s Element, select: &[String]) -> Result<Decoded<()>, DecodeError> {
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

    pub(super) fn body(
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
    pub(super) fn value(
        &mut self,
        el: &'s Element,
        open: &Open<'x>,
        depth: usize,
        select: &[String],
    ) -> Result<(), DecodeError> {
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
    pub(super) fn xsi_type(&self, start: &BytesStart<'x>) -> Option<(String, String)> {
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
    pub(super) fn array(&mut self, item: &'s Element, open: &Open<'x>, depth: usize) -> Result<(), DecodeError> {
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
    pub(super) fn complex(
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

    pub(super) fn child(
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

    /// The element just opened, as written in the document up to its end tag, with the
    /// namespace declarations it relies on from its ancestors added to its start tag.
    pub(super) fn fragment(&mut self, open: &Open<'x>) -> Result<String, DecodeError> {
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
    pub(super) fn text(&mut self) -> Result<Cow<'x, str>, DecodeError> {
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
}
