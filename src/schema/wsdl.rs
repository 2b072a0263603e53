//! Reads a WSDL 1.1 document, its imported schemas and WSDL documents into a [`ServiceModel`].
//!
//! Covers document/literal (wrapped and bare), rpc/literal and rpc/encoded over SOAP 1.1
//! and 1.2 bindings, and the XSD the corpus of real ERP WSDLs uses. An operation that
//! cannot be modelled is skipped with its file, line and reason ([`ServiceModel::skipped`]);
//! the others still load.
//!
//! This file reads the WSDL definitions (services, ports, bindings, messages) into
//! operations; `wsdl/xsd.rs` reads the XSD types they reference, as more methods of the
//! same `Reader`.

use std::collections::HashMap;
use std::sync::Arc;

use super::dom::{self, Node};
use super::imports;
use super::naming::JsonNaming;
use super::{
    ComplexType, Element, Note, Operation, SchemaSet, ServiceModel, SimpleType, Skipped, SoapVersion, Style, TypeId,
    TypeRef,
};

pub use super::WsdlError;
use super::ns::{SOAP11, SOAP12, WSDL, XSD};

mod xsd;

use xsd::derivation_base;

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
    reader.set.mark_distinct_keys();
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

/// The `wsdl:message` that `at`'s `message=` attribute names, with its name.
fn find_message<'a>(root: &'a Node, at: &Node) -> Result<(&'a Node, String), WsdlError> {
    let name = at.resolve_qname(at.attr("message").unwrap_or("")).1;
    root.children_named(WSDL, "message")
        .find(|m| m.attr("name") == Some(name.as_str()))
        .map(|m| (m, name.clone()))
        .ok_or_else(|| invalid(at, format!("message {name:?} is not defined")))
}
