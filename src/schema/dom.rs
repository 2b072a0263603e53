//! A small read-only XML tree for WSDL and XSD files (config time only, never per request).
//!
//! Each node keeps the namespace bindings in scope, because XSD writes type references as
//! QName *values* (`type="tns:Item"`) that must be resolved where they appear.

use std::collections::HashMap;
use std::rc::Rc;

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::NsReader;

use super::xmltext;

/// An element with its resolved name, attributes, children and direct text.
#[derive(Debug)]
pub struct Node {
    /// Namespace URI of the element, empty when none.
    pub ns: String,
    /// Local name.
    pub local: String,
    /// Attributes by their local name (WSDL/XSD attributes are unqualified).
    pub attrs: Vec<(String, String)>,
    /// Child elements in document order.
    pub children: Vec<Node>,
    /// Concatenated text directly inside the element.
    pub text: String,
    /// 1-based line of the start tag, for error messages.
    pub line: usize,
    /// The file it came from, when not the main WSDL (an imported XSD or WSDL).
    pub file: Option<Rc<str>>,
    scope: Rc<HashMap<String, String>>,
}

impl Node {
    /// Marks this node and everything under it as read from `file`.
    pub(crate) fn set_file(&mut self, file: &Rc<str>) {
        self.file = Some(file.clone());
        for c in &mut self.children {
            c.set_file(file);
        }
    }

    /// An attribute's value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Child elements in a namespace with a local name.
    pub(crate) fn children_named<'a>(&'a self, ns: &'a str, local: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.ns == ns && c.local == local)
    }

    /// The first child with that name.
    pub fn child(&self, ns: &str, local: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.ns == ns && c.local == local)
    }

    /// Resolves a QName value (`tns:Item`, or `Item` in the default namespace) to `(ns, local)`.
    pub(crate) fn resolve_qname(&self, value: &str) -> (String, String) {
        let (prefix, local) = value.trim().split_once(':').unwrap_or(("", value.trim()));
        let ns = self.scope.get(prefix).cloned().unwrap_or_default();
        (ns, local.to_string())
    }
}

/// Why a file could not be read as XML.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DomError {
    /// 1-based line where reading stopped.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

/// Parses a whole document (any declared encoding) into its root element.
pub fn parse(bytes: &[u8]) -> Result<Node, DomError> {
    let text = xmltext::to_utf8(bytes).map_err(|message| DomError { line: 1, message })?;
    let mut reader = NsReader::from_str(&text);
    // Lines are counted incrementally: counting from the start for every element would make
    // a 2 MB schema (NetSuite) quadratic.
    let counted = std::cell::Cell::new((0usize, 1usize));
    let line_of = |pos: u64| {
        let pos = (pos as usize).min(text.len());
        let (from, line) = counted.get();
        if pos >= from {
            let line = line + text.as_bytes()[from..pos].iter().filter(|&&b| b == b'\n').count();
            counted.set((pos, line));
            line
        } else {
            text.as_bytes()[..pos].iter().filter(|&&b| b == b'\n').count() + 1
        }
    };
    let mut stack: Vec<Node> = Vec::new();
    let mut scope = Rc::new(HashMap::from([("xml".to_string(), "http://www.w3.org/XML/1998/namespace".to_string())]));
    let mut scopes: Vec<Rc<HashMap<String, String>>> = Vec::new();
    loop {
        let pos = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| DomError { line: line_of(reader.error_position()), message: e.to_string() })?;
        match event {
            Event::Start(start) => {
                scopes.push(scope.clone());
                scope = extend_scope(&scope, &start);
                stack.push(new_node(&start, &scope, line_of(pos))?);
            }
            Event::Empty(start) => {
                let inner = extend_scope(&scope, &start);
                let node = new_node(&start, &inner, line_of(pos))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::End(_) => {
                let node =
                    stack.pop().ok_or_else(|| DomError { line: line_of(pos), message: "unexpected end tag".into() })?;
                scope = scopes.pop().unwrap_or_default();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::Text(t) => {
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let c = xmltext::resolve_ref(&r).map_err(|message| DomError { line: line_of(pos), message })?;
                if let Some(node) = stack.last_mut() {
                    node.text.push(c);
                }
            }
            Event::DocType(_) => {
                return Err(DomError {
                    line: line_of(pos),
                    message: "DOCTYPE is not accepted (no entity expansion)".into(),
                });
            }
            Event::Eof => {
                return Err(DomError {
                    line: line_of(pos),
                    message: "the document ends before its root element is closed".into(),
                });
            }
            _ => {}
        }
    }
}

fn extend_scope(scope: &Rc<HashMap<String, String>>, start: &BytesStart) -> Rc<HashMap<String, String>> {
    let mut added: Vec<(String, String)> = Vec::new();
    for attr in start.attributes().flatten() {
        let key = attr.key.as_ref();
        let prefix = if key == "xmlns" { Some("") } else { key.strip_prefix("xmlns:") };
        if let (Some(prefix), Ok(value)) = (prefix, attr.normalized_value(quick_xml::XmlVersion::Implicit1_0)) {
            added.push((prefix.to_string(), value.into_owned()));
        }
    }
    if added.is_empty() {
        return scope.clone();
    }
    let mut map = (**scope).clone();
    map.extend(added);
    Rc::new(map)
}

fn new_node(start: &BytesStart, scope: &Rc<HashMap<String, String>>, line: usize) -> Result<Node, DomError> {
    let name = start.name();
    let full = name.as_ref();
    let (prefix, local) = full.split_once(':').unwrap_or(("", full));
    let ns = scope.get(prefix).cloned().unwrap_or_default();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| DomError { line, message: e.to_string() })?;
        let key = attr.key.as_ref();
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let local_key = key.rsplit(':').next().unwrap_or(key).to_string();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| DomError { line, message: e.to_string() })?;
        attrs.push((local_key, value.into_owned()));
    }
    Ok(Node {
        ns,
        local: local.to_string(),
        attrs,
        children: Vec::new(),
        text: String::new(),
        line,
        file: None,
        scope: scope.clone(),
    })
}
