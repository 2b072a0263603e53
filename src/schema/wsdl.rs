//! Reads a WSDL 1.1 document, its imported schemas and WSDL documents into a [`ServiceModel`].
//!
//! Covers document/literal (wrapped and bare), rpc/literal and rpc/encoded over SOAP 1.1
//! and 1.2 bindings, and the XSD the corpus of real ERP WSDLs uses. An operation that
//! cannot be modelled is skipped with its file, line and reason ([`ServiceModel::skipped`]);
//! the others still load.

use std::collections::HashMap;
use std::sync::Arc;

use super::dom::{self, Node};
use super::imports;
use super::naming::JsonNaming;
use super::{
    Attribute, Builtin, ComplexType, Compositor, Element, Facets, Note, Operation, SchemaSet, ServiceModel, SimpleType,
    Skipped, SoapVersion, Style, TypeId, TypeRef,
};

pub use super::WsdlError;
use super::ns::{SOAP_ENC, SOAP11, SOAP12, WSDL, XSD};
use super::xsd_regex;
/// Most elements plus attributes one type may have, and most types derived from one base:
/// bounds exponential expansion of nested groups in hostile schemas.
const MAX_PARTICLES: usize = 10_000;

fn invalid(node: &Node, message: impl Into<String>) -> WsdlError {
    WsdlError::Invalid { file: node.file.as_deref().map(str::to_string), line: node.line, message: message.into() }
}

/// Which binding to take when a WSDL offers both SOAP versions.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Prefer this SOAP version; `None` takes 1.1 when both exist.
    pub soap_version: Option<SoapVersion>,
    /// JSON naming for element and attribute keys.
    pub naming: JsonNaming,
    /// XSD name → JSON key, overriding `naming` (e.g. `Location` → `locations`).
    pub renames: std::collections::BTreeMap<String, String>,
    /// Directory of the WSDL file: relative `schemaLocation`s resolve against it.
    pub base: Option<std::path::PathBuf>,
    /// The config directory. Relative import locations must stay inside its tree or the
    /// tree of `base`: a WSDL (often downloaded) cannot make the gateway read files
    /// elsewhere on the host.
    pub root: Option<std::path::PathBuf>,
    /// Absolute `schemaLocation` URL → local file.
    pub catalog: std::collections::BTreeMap<String, std::path::PathBuf>,
    /// A `wsdl:port` (or `wsdl:service`) name: only its binding's operations, at its address.
    pub port: Option<String>,
    /// Pass `xsd:any` content as raw XML (`"@xml"`) rather than untyped JSON.
    pub any_as_xml: bool,
}

/// Reads a WSDL document.
pub fn read(bytes: &[u8], options: ReadOptions) -> Result<ServiceModel, WsdlError> {
    let mut root = dom::parse(bytes)?;
    if root.ns != WSDL || root.local != "definitions" {
        return Err(invalid(&root, "the root element is not a WSDL 1.1 <definitions>"));
    }
    let sources =
        imports::Sources::new(&options.catalog, options.root.iter().chain(&options.base).map(|p| p.as_path()));
    let mut externals = imports::load(&root, options.base.as_deref(), &sources)?;
    // Imported WSDL documents join the root: their types, messages, portTypes and bindings
    // are looked up as if written in it (each keeps its own namespace scope).
    for (doc, dir) in imports::wsdl_documents(&root, options.base.as_deref(), &sources)? {
        externals.extend(imports::load(&doc, dir.as_deref(), &sources)?);
        root.children.extend(doc.children);
    }
    let mut reader = Reader::new(&root, &externals, options.naming, options.renames.clone());
    reader.set.any_as_xml = options.any_as_xml;
    let (operations, endpoint) = reader.operations(&root, options.soap_version, options.port.as_deref())?;
    reader.link_subtypes();
    if operations.is_empty()
        && let Some(first) = reader.skipped.first()
    {
        let all: Vec<String> = reader
            .skipped
            .iter()
            .take(5)
            .map(|s| format!("{} ({}): {}", s.operation, s.location(), s.reason))
            .collect();
        let more = reader.skipped.len().saturating_sub(5);
        let more = if more > 0 { format!("; and {more} more") } else { String::new() };
        return Err(WsdlError::Invalid {
            file: first.file.clone(),
            line: first.line,
            message: format!("no operation of the WSDL can be used: {}{more}", all.join("; ")),
        });
    }
    Ok(ServiceModel { schema: reader.set, operations, endpoint, skipped: reader.skipped, notes: reader.notes })
}

struct SchemaInfo {
    target_ns: String,
    qualified: bool,
}

struct Reader<'a> {
    naming: JsonNaming,
    renames: std::collections::BTreeMap<String, String>,
    schemas: Vec<SchemaInfo>,
    elements: HashMap<(String, String), (usize, &'a Node)>,
    complex: HashMap<(String, String), (usize, &'a Node)>,
    simple: HashMap<(String, String), (usize, &'a Node)>,
    groups: HashMap<(String, String), (usize, &'a Node)>,
    attribute_groups: HashMap<(String, String), (usize, &'a Node)>,
    /// Head element → global elements declared `substitutionGroup` of it.
    substitutes: HashMap<(String, String), Vec<(String, String)>>,
    /// Global element → the id of its inline (anonymous) complex type.
    element_type_ids: HashMap<(String, String), TypeId>,
    /// Base type → named complex types that extend or restrict it.
    derived: HashMap<(String, String), Vec<(String, String)>>,
    skipped: Vec<Skipped>,
    notes: Vec<Note>,
    named_complex_ids: HashMap<(String, String), TypeId>,
    named_simple: HashMap<(String, String), Arc<SimpleType>>,
    set: SchemaSet,
    depth: usize,
}

impl<'a> Reader<'a> {
    fn new(
        root: &'a Node,
        externals: &'a [imports::External],
        naming: JsonNaming,
        renames: std::collections::BTreeMap<String, String>,
    ) -> Self {
        let mut r = Reader {
            naming,
            renames,
            schemas: Vec::new(),
            elements: HashMap::new(),
            complex: HashMap::new(),
            simple: HashMap::new(),
            groups: HashMap::new(),
            attribute_groups: HashMap::new(),
            derived: HashMap::new(),
            element_type_ids: HashMap::new(),
            substitutes: HashMap::new(),
            skipped: Vec::new(),
            notes: Vec::new(),
            named_complex_ids: HashMap::new(),
            named_simple: HashMap::new(),
            set: SchemaSet::default(),
            depth: 0,
        };
        let inline = root.children_named(WSDL, "types").flat_map(|t| t.children_named(XSD, "schema"));
        let all = inline
            .map(|s| (s, s.attr("targetNamespace").unwrap_or("").to_string()))
            .chain(externals.iter().map(|e| (&e.node, e.target_ns.clone())));
        {
            for (schema, target_ns) in all {
                let idx = r.schemas.len();
                r.schemas.push(SchemaInfo {
                    qualified: schema.attr("elementFormDefault") == Some("qualified"),
                    target_ns: target_ns.clone(),
                });
                for item in &schema.children {
                    let (Some(name), true) = (item.attr("name"), item.ns == XSD) else {
                        continue;
                    };
                    let key = (target_ns.clone(), name.to_string());
                    match item.local.as_str() {
                        "element" => {
                            if let Some(head) = item.attr("substitutionGroup") {
                                r.substitutes.entry(item.resolve_qname(head)).or_default().push(key.clone());
                            }
                            r.elements.insert(key, (idx, item))
                        }
                        "complexType" => {
                            if let Some(base) = derivation_base(item) {
                                r.derived.entry(base).or_default().push(key.clone());
                            }
                            r.complex.insert(key, (idx, item))
                        }
                        "simpleType" => r.simple.insert(key, (idx, item)),
                        "group" => r.groups.insert(key, (idx, item)),
                        "attributeGroup" => r.attribute_groups.insert(key, (idx, item)),
                        _ => None,
                    };
                }
            }
        }
        r
    }

    /// The JSON key for an XSD name: a configured rename, else the naming rule.
    fn json_name(&self, name: &str) -> String {
        self.renames.get(name).cloned().unwrap_or_else(|| self.naming.apply(name))
    }

    /// Reads the operations of the chosen SOAP binding and the address of its port.
    fn operations(
        &mut self,
        root: &'a Node,
        prefer: Option<SoapVersion>,
        port: Option<&str>,
    ) -> Result<(Vec<Operation>, Option<String>), WsdlError> {
        let mut bindings: Vec<(&Node, SoapVersion)> = Vec::new();
        for b in root.children_named(WSDL, "binding") {
            if b.child(SOAP11, "binding").is_some() {
                bindings.push((b, SoapVersion::V11));
            } else if b.child(SOAP12, "binding").is_some() {
                bindings.push((b, SoapVersion::V12));
            } else {
                self.notes.push(Note {
                    file: b.file.as_deref().map(str::to_string),
                    line: b.line,
                    message: format!(
                        "binding {:?} is not a SOAP binding (HTTP GET/POST or MIME); skipped",
                        b.attr("name").unwrap_or("")
                    ),
                });
            }
        }
        // A chosen port (or service) narrows everything to its one binding and address.
        let chosen = match port {
            Some(name) => Some(choose_port(root, name, &bindings, prefer)?),
            None => None,
        };
        if let Some((_, binding)) = chosen {
            bindings.retain(|(b, _)| std::ptr::eq(*b, binding));
        }
        let want = prefer.unwrap_or(SoapVersion::V11);
        let Some(&(binding, version)) = bindings.iter().find(|(_, v)| *v == want).or(bindings.first()) else {
            return Err(invalid(
                root,
                "the WSDL has no SOAP binding (an abstract WSDL needs its binding and service too)",
            ));
        };
        if prefer.is_some_and(|p| p != version) {
            return Err(invalid(
                binding,
                format!("the WSDL has no SOAP {} binding", if want == SoapVersion::V11 { "1.1" } else { "1.2" }),
            ));
        }
        let soap_ns = if version == SoapVersion::V11 { SOAP11 } else { SOAP12 };
        let mut ops: Vec<Operation> = Vec::new();
        // Every binding of the chosen SOAP version counts (Siebel binds two portTypes);
        // an operation name seen twice keeps its first binding.
        let first_binding = binding;
        for &(binding, _) in bindings.iter().filter(|(_, v)| *v == version) {
            let default_style =
                binding.child(soap_ns, "binding").and_then(|b| b.attr("style")).unwrap_or("document").to_string();
            let port_type_name = binding.resolve_qname(binding.attr("type").unwrap_or("")).1;
            let port_type =
                root.children_named(WSDL, "portType").find(|p| p.attr("name") == Some(port_type_name.as_str()));
            for bop in binding.children_named(WSDL, "operation") {
                let name = bop.attr("name").unwrap_or("").to_string();
                if ops.iter().any(|o| o.name == name) || self.skipped.iter().any(|s| s.operation == name) {
                    self.notes.push(Note {
                        file: bop.file.as_deref().map(str::to_string),
                        line: bop.line,
                        message: format!("operation {name:?} is bound more than once; the first binding is used"),
                    });
                    continue;
                }
                self.depth = 0;
                let built = match port_type {
                    None => Err(invalid(
                        binding,
                        format!("the binding refers to portType {port_type_name:?}, which is not defined"),
                    )),
                    Some(pt) => self.operation(root, bop, pt, soap_ns, version, &default_style),
                };
                match built {
                    Ok(op) => ops.push(op),
                    Err(e) => {
                        let (file, line, reason) = match e {
                            WsdlError::Xml(x) => (None, x.line, x.message),
                            WsdlError::Invalid { file, line, message } => (file, line, message),
                        };
                        self.skipped.push(Skipped { operation: name, file, line, reason });
                    }
                }
            }
        }
        let binding = first_binding;
        let binding_name = binding.attr("name").unwrap_or("");
        let endpoint = chosen
            .map(|(p, _)| p)
            .or_else(|| {
                root.children_named(WSDL, "service")
                    .flat_map(|s| s.children_named(WSDL, "port"))
                    .find(|p| p.attr("binding").is_some_and(|b| p.resolve_qname(b).1 == binding_name))
            })
            .and_then(|p| p.child(soap_ns, "address"))
            .and_then(|a| a.attr("location"))
            .map(str::to_string);
        Ok((ops, endpoint))
    }

    /// Models one bound operation; an error skips just this operation.
    fn operation(
        &mut self,
        root: &'a Node,
        bop: &'a Node,
        port_type: &'a Node,
        soap_ns: &str,
        version: SoapVersion,
        default_style: &str,
    ) -> Result<Operation, WsdlError> {
        let name = bop.attr("name").unwrap_or("").to_string();
        let soap_op = bop.child(soap_ns, "operation");
        let rpc = soap_op.and_then(|o| o.attr("style")).unwrap_or(default_style) == "rpc";
        let body = |dir: &str| bop.child(WSDL, dir).and_then(|d| d.child(soap_ns, "body"));
        let encoded = ["input", "output"].iter().any(|d| body(d).and_then(|b| b.attr("use")) == Some("encoded"));
        if encoded && !rpc {
            return Err(invalid(
                bop,
                "document/encoded is not supported (it has no defined wire form); use rpc/encoded or literal",
            ));
        }
        let pt_op = port_type
            .children_named(WSDL, "operation")
            .find(|o| o.attr("name") == Some(name.as_str()))
            .ok_or_else(|| {
                invalid(
                    bop,
                    format!(
                        "the binding names operation {name:?}, but its portType {:?} has no such operation",
                        port_type.attr("name").unwrap_or("")
                    ),
                )
            })?;
        // A one-way operation (input only): the ERP answers with an empty 2xx.
        let one_way = pt_op.child(WSDL, "output").is_none();
        // Parts bound to soap:header (SAP B1's MsgHeader, NetSuite's passport) are not body.
        let header_parts = |dir: &str| -> Vec<String> {
            bop.child(WSDL, dir)
                .map(|d| {
                    d.children_named(soap_ns, "header").filter_map(|h| h.attr("part").map(str::to_string)).collect()
                })
                .unwrap_or_default()
        };
        let (input, output) = if rpc {
            // rpc: the body holds a wrapper named after the operation, in the soap:body
            // namespace, with one unqualified child per part.
            let body_ns = |dir: &str| body(dir).and_then(|b| b.attr("namespace")).unwrap_or("").to_string();
            let input = self.rpc_wrapper(root, pt_op, "input", &name, &body_ns("input"), &header_parts("input"))?;
            let output = if one_way {
                self.empty_element(&format!("{name}Response"))
            } else {
                self.rpc_wrapper(
                    root,
                    pt_op,
                    "output",
                    &format!("{name}Response"),
                    &body_ns("output"),
                    &header_parts("output"),
                )?
            };
            (input, output)
        } else {
            let input = self.message_element(root, pt_op, "input", &header_parts("input"))?;
            let output = if one_way {
                self.empty_element(&format!("{name}Response"))
            } else {
                self.message_element(root, pt_op, "output", &header_parts("output"))?
            };
            (input, output)
        };
        let headers = self.header_elements(root, bop, soap_ns)?;
        let faults = self.fault_elements(root, pt_op);
        let doc = pt_op.child(WSDL, "documentation").map(|d| d.text.trim().to_string()).filter(|d| !d.is_empty());
        Ok(Operation {
            soap_action: soap_op.and_then(|o| o.attr("soapAction")).unwrap_or("").to_string(),
            soap_version: version,
            style: if rpc { Style::Rpc } else { Style::Document },
            encoded,
            one_way,
            name,
            input,
            headers,
            output,
            faults,
            doc,
        })
    }

    /// The body element of an operation's input or output message (document/literal).
    fn message_element(
        &mut self,
        root: &'a Node,
        pt_op: &'a Node,
        dir: &str,
        header_parts: &[String],
    ) -> Result<Element, WsdlError> {
        let io = pt_op.child(WSDL, dir).ok_or_else(|| invalid(pt_op, format!("operation has no <{dir}>")))?;
        let (message, msg_name) = find_message(root, io)?;
        let parts: Vec<&Node> = message
            .children_named(WSDL, "part")
            .filter(|p| !p.attr("name").is_some_and(|n| header_parts.iter().any(|h| h == n)))
            .collect();
        let [part] = parts.as_slice() else {
            return Err(invalid(
                message,
                format!("message {msg_name:?} has {} body parts; document/literal needs exactly one", parts.len()),
            ));
        };
        let el =
            part.attr("element").ok_or_else(|| invalid(part, "a document/literal part needs element=, not type="))?;
        let key = part.resolve_qname(el);
        let &(schema, node) = self.elements.get(&key).ok_or_else(|| {
            invalid(part, format!("element {{{}}}{} is not declared in the WSDL's schemas", key.0, key.1))
        })?;
        self.element(node, schema, true)
    }

    /// The detail elements of an operation's `wsdl:fault`s (undeclared ones are skipped: the
    /// fault then stays untyped).
    fn fault_elements(&mut self, root: &'a Node, pt_op: &'a Node) -> Vec<Element> {
        let mut out = Vec::new();
        for f in pt_op.children_named(WSDL, "fault") {
            let Ok((message, _)) = find_message(root, f) else { continue };
            let Some(part) = message.children_named(WSDL, "part").next() else { continue };
            let Some(el) = part.attr("element") else { continue };
            let key = part.resolve_qname(el);
            if let Some(&(schema, node)) = self.elements.get(&key)
                && let Ok(e) = self.element(node, schema, true)
            {
                out.push(e);
            }
        }
        out
    }

    /// The elements of the input's `soap:header`s (each names a message and one of its parts).
    fn header_elements(&mut self, root: &'a Node, bop: &'a Node, soap_ns: &str) -> Result<Vec<Element>, WsdlError> {
        let mut out = Vec::new();
        let Some(input) = bop.child(WSDL, "input") else { return Ok(out) };
        for h in input.children_named(soap_ns, "header") {
            let Some(part_name) = h.attr("part") else { continue };
            let (message, msg_name) = find_message(root, h)?;
            let Some(part) = message.children_named(WSDL, "part").find(|p| p.attr("name") == Some(part_name)) else {
                return Err(invalid(h, format!("soap:header names part {part_name:?}, which {msg_name:?} lacks")));
            };
            // Header parts are global elements; a type= header part cannot be written unambiguously.
            let Some(el) = part.attr("element") else { continue };
            let key = part.resolve_qname(el);
            let &(schema, node) =
                self.elements.get(&key).ok_or_else(|| invalid(part, format!("element {el:?} is not declared")))?;
            out.push(self.element(node, schema, true)?);
        }
        Ok(out)
    }

    /// An element with no content: the output of a one-way operation.
    fn empty_element(&mut self, name: &str) -> Element {
        let id = self.set.types.len();
        self.set.types.push(ComplexType::default());
        Element {
            json_name: self.json_name(name),
            name: name.to_string(),
            namespace: None,
            ty: TypeRef::Complex(id),
            min_occurs: 1,
            max_occurs: Some(1),
            nillable: false,
            doc: None,
        }
    }

    /// The synthetic rpc wrapper element of an input or output message.
    fn rpc_wrapper(
        &mut self,
        root: &'a Node,
        pt_op: &'a Node,
        dir: &str,
        wrapper: &str,
        ns: &str,
        header_parts: &[String],
    ) -> Result<Element, WsdlError> {
        let io = pt_op.child(WSDL, dir).ok_or_else(|| invalid(pt_op, format!("operation has no <{dir}>")))?;
        let (message, _) = find_message(root, io)?;
        let mut children = Vec::new();
        for part in message
            .children_named(WSDL, "part")
            .filter(|p| !p.attr("name").is_some_and(|n| header_parts.iter().any(|h| h == n)))
        {
            let part_name = part.attr("name").unwrap_or("").to_string();
            let child = match (part.attr("type"), part.attr("element")) {
                (Some(t), _) => Element {
                    json_name: self.json_name(&part_name),
                    name: part_name,
                    namespace: None, // rpc/literal part accessors are unqualified (WS-I BP 1.1)
                    ty: self.type_ref(part, &part.resolve_qname(t))?,
                    min_occurs: 1,
                    max_occurs: Some(1),
                    nillable: false,
                    doc: None,
                },
                (None, Some(e)) => {
                    let key = part.resolve_qname(e);
                    let &(schema, node) = self
                        .elements
                        .get(&key)
                        .ok_or_else(|| invalid(part, format!("element {e:?} is not declared")))?;
                    self.element(node, schema, true)?
                }
                (None, None) => return Err(invalid(part, "a part needs type= or element=")),
            };
            children.push(child);
        }
        let id = self.set.types.len();
        self.set.types.push(ComplexType { children, ..ComplexType::default() });
        Ok(Element {
            json_name: self.json_name(wrapper),
            name: wrapper.to_string(),
            namespace: (!ns.is_empty()).then(|| Arc::from(ns)),
            ty: TypeRef::Complex(id),
            min_occurs: 1,
            max_occurs: Some(1),
            nillable: false,
            doc: None,
        })
    }

    fn element(&mut self, node: &'a Node, schema: usize, global: bool) -> Result<Element, WsdlError> {
        if let Some(r) = node.attr("ref") {
            let key = node.resolve_qname(r);
            let &(s, target) =
                self.elements.get(&key).ok_or_else(|| invalid(node, format!("ref {r:?} names no global element")))?;
            let mut el = self.element(target, s, true)?;
            el.min_occurs = occurs(node.attr("minOccurs"), 1).unwrap_or(1);
            el.max_occurs = occurs(node.attr("maxOccurs"), 1);
            return Ok(el);
        }
        let name = node.attr("name").ok_or_else(|| invalid(node, "element without name= or ref="))?.to_string();
        let info = &self.schemas[schema];
        let qualified = global || node.attr("form").map_or(info.qualified, |f| f == "qualified");
        let namespace = (qualified && !info.target_ns.is_empty()).then(|| Arc::from(info.target_ns.as_str()));
        let ty = if let Some(t) = node.attr("type") {
            self.type_ref(node, &node.resolve_qname(t))?
        } else if let Some(ct) = node.child(XSD, "complexType") {
            // A global element's inline type is shared by every reference to the element, so
            // an element that contains itself (a tree) ends instead of recursing.
            let owner = global.then(|| (info.target_ns.clone(), name.clone()));
            match owner.as_ref().and_then(|o| self.element_type_ids.get(o)) {
                Some(&id) => TypeRef::Complex(id),
                None => TypeRef::Complex(self.complex_type_of(ct, schema, None, owner)?),
            }
        } else if let Some(st) = node.child(XSD, "simpleType") {
            TypeRef::Simple(Arc::new(self.simple_type(st, None)?))
        } else {
            TypeRef::Simple(Arc::new(SimpleType::builtin(Builtin::Any)))
        };
        Ok(Element {
            json_name: self.json_name(&name),
            name,
            namespace,
            ty,
            min_occurs: occurs(node.attr("minOccurs"), 1).unwrap_or(1),
            max_occurs: occurs(node.attr("maxOccurs"), 1),
            nillable: node.attr("nillable") == Some("true"),
            doc: documentation(node),
        })
    }

    fn type_ref(&mut self, at: &Node, key: &(String, String)) -> Result<TypeRef, WsdlError> {
        if key.0 == SOAP_ENC && key.1 == "Array" {
            // An untyped SOAP-encoded array: items of any type.
            let item = array_item(TypeRef::Simple(Arc::new(SimpleType::builtin(Builtin::Any))));
            let id = self.set.types.len();
            self.set.types.push(ComplexType { array_item: Some(Box::new(item)), ..ComplexType::default() });
            return Ok(TypeRef::Complex(id));
        }
        if key.0 == XSD || key.0 == SOAP_ENC {
            return Ok(TypeRef::Simple(builtin_type(at, key)?));
        }
        if let Some(&(schema, node)) = self.complex.get(key) {
            if let Some(&id) = self.named_complex_ids.get(key) {
                return Ok(TypeRef::Complex(id));
            }
            return Ok(TypeRef::Complex(self.complex_type(node, schema, Some(key.clone()))?));
        }
        Ok(TypeRef::Simple(self.named_simple_type(at, key)?))
    }

    fn named_simple_type(&mut self, at: &Node, key: &(String, String)) -> Result<Arc<SimpleType>, WsdlError> {
        if key.0 == XSD || key.0 == SOAP_ENC {
            return builtin_type(at, key);
        }
        if let Some(st) = self.named_simple.get(key) {
            return Ok(st.clone());
        }
        let &(_, node) =
            self.simple.get(key).ok_or_else(|| invalid(at, format!("type {{{}}}{} is not declared", key.0, key.1)))?;
        self.guard(at)?;
        let st = Arc::new(self.simple_type(node, Some(format!("{{{}}}{}", key.0, key.1)))?);
        self.depth -= 1;
        self.named_simple.insert(key.clone(), st.clone());
        Ok(st)
    }

    /// Bounds nesting of simple-type derivations, so a cyclic restriction cannot loop.
    fn guard(&mut self, at: &Node) -> Result<(), WsdlError> {
        self.depth += 1;
        if self.depth > 64 {
            return Err(invalid(at, "type derivation nests more than 64 levels (a cycle?)"));
        }
        Ok(())
    }

    fn simple_type(&mut self, node: &'a Node, name: Option<String>) -> Result<SimpleType, WsdlError> {
        if let Some(list) = node.child(XSD, "list") {
            // A whitespace-separated list: a JSON array of the item type's values.
            let item = match (list.attr("itemType"), list.child(XSD, "simpleType")) {
                (Some(t), _) => (*self.named_simple_type(list, &list.resolve_qname(t))?).clone(),
                (None, Some(inner)) => self.simple_type(inner, None)?,
                (None, None) => SimpleType::builtin(Builtin::String),
            };
            return Ok(SimpleType { name, list: true, ..item });
        }
        if let Some(union) = node.child(XSD, "union") {
            // Members from memberTypes= and inline simpleTypes; a value takes the first that fits.
            let mut members = Vec::new();
            for t in union.attr("memberTypes").unwrap_or("").split_whitespace() {
                members.push(self.named_simple_type(union, &union.resolve_qname(t))?);
            }
            for inner in union.children_named(XSD, "simpleType") {
                members.push(Arc::new(self.simple_type(inner, None)?));
            }
            return Ok(SimpleType { name, union: members, ..SimpleType::builtin(Builtin::String) });
        }
        let Some(restriction) = node.child(XSD, "restriction") else {
            return Ok(SimpleType { name, ..SimpleType::builtin(Builtin::String) });
        };
        let mut st = match restriction.attr("base") {
            Some(base) => (*self.named_simple_type(restriction, &restriction.resolve_qname(base))?).clone(),
            None => match restriction.child(XSD, "simpleType") {
                Some(inner) => self.simple_type(inner, None)?,
                None => SimpleType::builtin(Builtin::String),
            },
        };
        st.name = name;
        apply_facets(&mut st.facets, restriction);
        Ok(st)
    }

    fn complex_type(
        &mut self,
        node: &'a Node,
        schema: usize,
        key: Option<(String, String)>,
    ) -> Result<TypeId, WsdlError> {
        self.complex_type_of(node, schema, key, None)
    }

    /// A complex type, registered under its name (named types) or under the global element
    /// that declares it inline, so recursive references find it instead of looping.
    fn complex_type_of(
        &mut self,
        node: &'a Node,
        schema: usize,
        key: Option<(String, String)>,
        element: Option<(String, String)>,
    ) -> Result<TypeId, WsdlError> {
        let id = self.set.types.len();
        self.set.types.push(ComplexType {
            name: key.as_ref().map(|(ns, n)| format!("{{{ns}}}{n}")),
            open: node.attr("mixed") == Some("true"),
            is_abstract: node.attr("abstract") == Some("true"),
            ..ComplexType::default()
        });
        if let Some(key) = &key {
            self.named_complex_ids.insert(key.clone(), id);
        }
        if let Some(element) = &element {
            self.element_type_ids.insert(element.clone(), id);
        }
        let mut ct = self.set.types[id].clone();
        if let Err(e) = self.content(node, schema, &mut ct) {
            // Unregister the half-built type: the next operation that uses it fails the same
            // way instead of silently getting an empty type.
            if let Some(key) = &key {
                self.named_complex_ids.remove(key);
            }
            if let Some(element) = &element {
                self.element_type_ids.remove(element);
            }
            return Err(e);
        }
        self.set.types[id] = ct;
        Ok(id)
    }

    /// Links every compiled named type to the named types derived from it, transitively,
    /// compiling those not reached yet (until nothing new is compiled). Done after the
    /// operations, so the result does not depend on which type was reached first. A derived
    /// type that cannot be modelled is left out: it only narrows the choice.
    fn link_subtypes(&mut self) {
        let mut rounds = 0;
        loop {
            rounds += 1;
            let mut bases: Vec<((String, String), TypeId)> =
                self.named_complex_ids.iter().map(|(k, v)| (k.clone(), *v)).collect();
            bases.sort();
            let mut compiled = false;
            for (base, id) in bases {
                let mut subs = Vec::new();
                for key in self.descendants(&base) {
                    let sub = match self.named_complex_ids.get(&key) {
                        Some(&sub) => Some(sub),
                        None => match self.complex.get(&key) {
                            Some(&(schema, node)) => {
                                self.depth = 0;
                                compiled = true;
                                self.complex_type(node, schema, Some(key.clone())).ok()
                            }
                            None => None,
                        },
                    };
                    subs.extend(sub.filter(|s| *s != id));
                }
                self.set.types[id].subtypes = subs;
            }
            if !compiled || rounds > 16 {
                break;
            }
        }
    }

    /// Named types derived from `base`, directly or not, in declaration order (bounded).
    fn descendants(&self, base: &(String, String)) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut i = 0;
        let mut frontier = vec![base.clone()];
        while i < frontier.len() && out.len() < MAX_PARTICLES {
            for d in self.derived.get(&frontier[i]).into_iter().flatten() {
                if d != base && !out.contains(d) {
                    out.push(d.clone());
                    frontier.push(d.clone());
                }
            }
            i += 1;
        }
        out
    }

    /// Fills children, attributes and simple content from a complexType (or extension) node.
    fn content(&mut self, node: &'a Node, schema: usize, ct: &mut ComplexType) -> Result<(), WsdlError> {
        for child in node.children.iter().filter(|c| c.ns == XSD) {
            match child.local.as_str() {
                "sequence" | "all" | "choice" => {
                    ct.compositor = match child.local.as_str() {
                        "all" => Compositor::All,
                        "choice" => Compositor::Choice,
                        _ => Compositor::Sequence,
                    };
                    self.particles(child, schema, ct, false)?;
                }
                "attribute" => ct.attributes.push(self.attribute(child)?),
                "attributeGroup" => self.attribute_group(child, ct, 0)?,
                "group" => self.particles(child, schema, ct, false)?,
                "anyAttribute" | "annotation" => {}
                "complexContent" | "simpleContent" => {
                    let Some(derive) = child
                        .children
                        .iter()
                        .find(|c| c.ns == XSD && (c.local == "extension" || c.local == "restriction"))
                    else {
                        continue;
                    };
                    let base = derive.attr("base").map(|b| derive.resolve_qname(b));
                    if base.as_ref().is_some_and(|(ns, local)| ns == SOAP_ENC && local == "Array") {
                        ct.array_item = Some(Box::new(self.soap_array_item(derive, schema)?));
                        continue;
                    }
                    if child.local == "simpleContent" {
                        if let Some(base) = &base {
                            ct.simple_content = Some(self.simple_content_base(derive, base)?);
                        }
                    } else if derive.local == "extension"
                        && let Some(base) = &base
                    {
                        self.inherit(derive, base, ct)?;
                    }
                    self.content(derive, schema, ct)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn simple_content_base(&mut self, at: &'a Node, base: &(String, String)) -> Result<Arc<SimpleType>, WsdlError> {
        if let Some(&(schema, node)) = self.complex.get(base) {
            let id = match self.named_complex_ids.get(base) {
                Some(&id) => id,
                None => self.complex_type(node, schema, Some(base.clone()))?,
            };
            return Ok(self.set.types[id]
                .simple_content
                .clone()
                .unwrap_or_else(|| Arc::new(SimpleType::builtin(Builtin::String))));
        }
        self.named_simple_type(at, base)
    }

    /// A local element particle as children: the element itself, or for a `ref=` to the head
    /// of a substitution group, the head (unless abstract) and every member, transitively,
    /// each with the particle's occurrence.
    fn substitution_group(&mut self, node: &'a Node, schema: usize) -> Result<Vec<Element>, WsdlError> {
        let head = node.attr("ref").map(|r| node.resolve_qname(r));
        let Some(head) = head.filter(|h| self.substitutes.contains_key(h)) else {
            return Ok(vec![self.element(node, schema, false)?]);
        };
        let mut keys = vec![head.clone()];
        let mut i = 0;
        while i < keys.len() && keys.len() < 512 {
            let more: Vec<(String, String)> = self.substitutes.get(&keys[i]).cloned().unwrap_or_default();
            keys.extend(more.into_iter().filter(|k| !keys.contains(k)).collect::<Vec<_>>());
            i += 1;
        }
        let min = occurs(node.attr("minOccurs"), 1).unwrap_or(1);
        let max = occurs(node.attr("maxOccurs"), 1);
        let mut out = Vec::new();
        self.guard(node)?;
        for key in keys {
            let Some(&(schema, decl)) = self.elements.get(&key) else { continue };
            if decl.attr("abstract") == Some("true") {
                continue;
            }
            let mut el = self.element(decl, schema, true)?;
            el.min_occurs = min;
            el.max_occurs = max;
            out.push(el);
        }
        self.depth -= 1;
        Ok(out)
    }

    /// The item of a `soapenc:Array` restriction: from `wsdl:arrayType="tns:T[]"` on its
    /// `soapenc:arrayType` attribute, else from a declared item element, else any type.
    fn soap_array_item(&mut self, derive: &'a Node, schema: usize) -> Result<Element, WsdlError> {
        let declared = derive
            .children
            .iter()
            .filter(|c| c.ns == XSD && matches!(c.local.as_str(), "sequence" | "all"))
            .find_map(|g| g.child(XSD, "element"));
        let array_type = derive.children_named(XSD, "attribute").find_map(|a| {
            a.attrs
                .iter()
                .find(|(k, _)| k.as_str() != "ref" && k.rsplit(':').next() == Some("arrayType"))
                .map(|(_, v)| (a, v.split('[').next().unwrap_or("").to_string()))
        });
        if let Some((at, qname)) = array_type.filter(|(_, q)| !q.is_empty()) {
            let key = at.resolve_qname(&qname);
            return Ok(array_item(self.type_ref(at, &key)?));
        }
        if let Some(el) = declared {
            let mut item = self.element(el, schema, false)?;
            item.max_occurs = None;
            item.min_occurs = 0;
            return Ok(item);
        }
        Ok(array_item(TypeRef::Simple(Arc::new(SimpleType::builtin(Builtin::Any)))))
    }

    /// The attributes of a named `attributeGroup` (`ref=`), nested groups included.
    fn attribute_group(&mut self, node: &'a Node, ct: &mut ComplexType, depth: usize) -> Result<(), WsdlError> {
        let target = match node.attr("ref") {
            Some(r) => {
                let key = node.resolve_qname(r);
                self.attribute_groups
                    .get(&key)
                    .map(|&(_, n)| n)
                    .ok_or_else(|| invalid(node, format!("attributeGroup {r:?} is not declared")))?
            }
            None => node,
        };
        if depth > 32 {
            return Err(invalid(node, "attribute groups nest more than 32 levels (a cycle?)"));
        }
        for child in target.children.iter().filter(|c| c.ns == XSD) {
            match child.local.as_str() {
                "attribute" => ct.attributes.push(self.attribute(child)?),
                "attributeGroup" => self.attribute_group(child, ct, depth + 1)?,
                _ => {}
            }
            too_many(child, ct)?;
        }
        Ok(())
    }

    /// complexContent extension: the base's children and attributes come first.
    fn inherit(&mut self, at: &'a Node, base: &(String, String), ct: &mut ComplexType) -> Result<(), WsdlError> {
        if base.0 == XSD {
            return Ok(()); // anyType base: nothing to inherit
        }
        self.guard(at)?;
        let TypeRef::Complex(id) = self.type_ref(at, base)? else {
            return Err(invalid(at, "complexContent extends a simple type"));
        };
        self.depth -= 1;
        let base_ct = self.set.types[id].clone();
        ct.children.extend(base_ct.children);
        ct.attributes.extend(base_ct.attributes);
        ct.open |= base_ct.open;
        Ok(())
    }

    fn particles(
        &mut self,
        group: &'a Node,
        schema: usize,
        ct: &mut ComplexType,
        optional: bool,
    ) -> Result<(), WsdlError> {
        // Inside a choice, or a group that may be absent, every element is optional.
        let optional = optional || group.local == "choice" || group.attr("minOccurs") == Some("0");
        let repeated = occurs(group.attr("maxOccurs"), 1) != Some(1);
        if group.local == "group" {
            // A named model group (`<xsd:group ref=…>`): its one compositor, inlined.
            let Some(r) = group.attr("ref") else { return Ok(()) };
            let key = group.resolve_qname(r);
            let &(s, def) =
                self.groups.get(&key).ok_or_else(|| invalid(group, format!("group {r:?} is not declared")))?;
            self.guard(group)?;
            for inner in
                def.children.iter().filter(|c| c.ns == XSD && matches!(c.local.as_str(), "sequence" | "choice" | "all"))
            {
                let mut copy = ComplexType::default();
                self.particles(inner, s, &mut copy, optional)?;
                for mut el in copy.children {
                    if repeated {
                        el.max_occurs = None;
                    }
                    ct.children.push(el);
                }
                ct.open |= copy.open;
                too_many(group, ct)?;
            }
            self.depth -= 1;
            return Ok(());
        }
        for child in group.children.iter().filter(|c| c.ns == XSD) {
            match child.local.as_str() {
                "element" => {
                    let group = self.substitution_group(child, schema)?;
                    // A head with substitutes is a choice among them (and itself unless abstract).
                    let choice = group.len() > 1;
                    for mut el in group {
                        if optional || choice {
                            el.min_occurs = 0;
                        }
                        if repeated {
                            el.max_occurs = None;
                        }
                        ct.children.push(el);
                    }
                    too_many(child, ct)?;
                }
                "sequence" | "choice" | "all" | "group" => self.particles(child, schema, ct, optional)?,
                "any" => ct.open = true,
                _ => {}
            }
        }
        Ok(())
    }

    fn attribute(&mut self, node: &'a Node) -> Result<Attribute, WsdlError> {
        let name = node.attr("name").or(node.attr("ref")).unwrap_or("").rsplit(':').next().unwrap_or("").to_string();
        let ty = match (node.attr("type"), node.child(XSD, "simpleType")) {
            (Some(t), _) => self.named_simple_type(node, &node.resolve_qname(t))?,
            (None, Some(st)) => Arc::new(self.simple_type(st, None)?),
            (None, None) => Arc::new(SimpleType::builtin(Builtin::String)),
        };
        Ok(Attribute { json_name: self.json_name(&name), name, ty, required: node.attr("use") == Some("required") })
    }
}

/// The `wsdl:port` named `name` (or the first SOAP port of the service named `name`, in the
/// preferred SOAP version) and its binding.
fn choose_port<'a>(
    root: &'a Node,
    name: &str,
    bindings: &[(&'a Node, SoapVersion)],
    prefer: Option<SoapVersion>,
) -> Result<(&'a Node, &'a Node), WsdlError> {
    let binding_of = |p: &'a Node| {
        let wanted = p.resolve_qname(p.attr("binding").unwrap_or("")).1;
        bindings
            .iter()
            .find(|(b, v)| b.attr("name") == Some(wanted.as_str()) && prefer.is_none_or(|want| want == *v))
            .map(|(b, _)| *b)
    };
    let services = || root.children_named(WSDL, "service");
    let by_port = services().flat_map(|s| s.children_named(WSDL, "port")).find(|p| p.attr("name") == Some(name));
    let by_service = || {
        services()
            .filter(|s| s.attr("name") == Some(name))
            .flat_map(|s| s.children_named(WSDL, "port"))
            .find_map(|p| binding_of(p).map(|b| (p, b)))
    };
    if let Some(found) = by_port.and_then(|p| binding_of(p).map(|b| (p, b))).or_else(by_service) {
        return Ok(found);
    }
    let known: Vec<String> = services()
        .flat_map(|s| {
            s.children_named(WSDL, "port")
                .filter(|p| binding_of(p).is_some())
                .map(move |p| format!("{}/{}", s.attr("name").unwrap_or(""), p.attr("name").unwrap_or("")))
        })
        .collect();
    Err(invalid(
        root,
        format!("no SOAP port or service named {name:?}; the WSDL has (service/port): {}", known.join(", ")),
    ))
}

/// Stops a type from growing past [`MAX_PARTICLES`] while groups are expanded.
fn too_many(at: &Node, ct: &ComplexType) -> Result<(), WsdlError> {
    let total = ct.children.len() + ct.attributes.len();
    if total > MAX_PARTICLES {
        return Err(invalid(
            at,
            format!("a type with over {MAX_PARTICLES} elements and attributes (exponential group nesting?)"),
        ));
    }
    Ok(())
}

/// The `{ns}name` of the type a named complexType derives from (complexContent only).
fn derivation_base(ct: &Node) -> Option<(String, String)> {
    let content = ct.child(XSD, "complexContent")?;
    let derive = content.child(XSD, "extension").or_else(|| content.child(XSD, "restriction"))?;
    let base = derive.resolve_qname(derive.attr("base")?);
    (base.0 != XSD && base.0 != SOAP_ENC).then_some(base)
}

/// The `wsdl:message` that `at`'s `message=` attribute names, with its name.
fn find_message<'a>(root: &'a Node, at: &Node) -> Result<(&'a Node, String), WsdlError> {
    let name = at.resolve_qname(at.attr("message").unwrap_or("")).1;
    root.children_named(WSDL, "message")
        .find(|m| m.attr("name") == Some(name.as_str()))
        .map(|m| (m, name.clone()))
        .ok_or_else(|| invalid(at, format!("message {name:?} is not defined")))
}

/// A built-in simple type (XSD, or SOAP-encoding's same-named wrappers), named in XSD so
/// rpc/encoded values can carry `xsi:type="xsd:…"`.
fn builtin_type(at: &Node, key: &(String, String)) -> Result<Arc<SimpleType>, WsdlError> {
    let b = Builtin::from_xsd(&key.1).ok_or_else(|| invalid(at, format!("unknown XSD built-in type {:?}", key.1)))?;
    Ok(Arc::new(SimpleType { name: Some(format!("{{{XSD}}}{}", key.1)), ..SimpleType::builtin(b) }))
}

/// The member element of a SOAP-encoded array (`<item>`, any name accepted on decode).
fn array_item(ty: TypeRef) -> Element {
    Element {
        name: "item".into(),
        json_name: "item".into(),
        namespace: None,
        ty,
        min_occurs: 0,
        max_occurs: None,
        nillable: true,
        doc: None,
    }
}

fn apply_facets(f: &mut Facets, restriction: &Node) {
    // Patterns of one derivation step are alternatives; each step's set must hold (AND).
    let patterns: Vec<&str> = restriction
        .children
        .iter()
        .filter(|c| c.ns == XSD && c.local == "pattern")
        .filter_map(|c| c.attr("value"))
        .collect();
    if !patterns.is_empty() {
        let alternatives =
            patterns.iter().map(|p| format!("(?:{})", xsd_regex::translate(p))).collect::<Vec<_>>().join("|");
        // XSD regexes are anchored. One Rust's regex still cannot read (class subtraction, a
        // rare block name) is left unchecked rather than refused: the ERP checks it anyway.
        if let Ok(re) = regex::Regex::new(&format!("^(?:{alternatives})$")) {
            f.patterns.push(re);
        }
    }
    for facet in restriction.children.iter().filter(|c| c.ns == XSD) {
        let value = facet.attr("value").unwrap_or("");
        let num = || value.trim().parse().ok();
        match facet.local.as_str() {
            "enumeration" => f.enumeration.push(value.to_string()),
            "length" => f.length = num(),
            "minLength" => f.min_length = num(),
            "maxLength" => f.max_length = num(),
            "minInclusive" => f.min_inclusive = Some(value.to_string()),
            "maxInclusive" => f.max_inclusive = Some(value.to_string()),
            "totalDigits" => f.total_digits = value.trim().parse().ok(),
            "fractionDigits" => f.fraction_digits = value.trim().parse().ok(),
            _ => {}
        }
    }
}

/// Parses minOccurs/maxOccurs; `None` means unbounded.
fn occurs(value: Option<&str>, default: u32) -> Option<u32> {
    match value.map(str::trim) {
        None => Some(default),
        Some("unbounded") => None,
        Some(v) => Some(v.parse().unwrap_or(default)),
    }
}

fn documentation(node: &Node) -> Option<String> {
    let ann = node.child(XSD, "annotation")?;
    let doc = ann.child(XSD, "documentation")?;
    Some(doc.text.trim().to_string()).filter(|d| !d.is_empty())
}
