//! The operation model: what a SOAP operation sends and receives, read from a WSDL.
//!
//! Element trees refer to complex types by index into [`SchemaSet::types`], so recursive
//! types cost nothing and the model can grow (extension, choice, attributes, imports)
//! without changing the translators' shape. Everything here is immutable after loading.

pub(crate) mod builtin;
pub mod dom;
pub mod imports;
pub mod naming;
pub mod ns;
pub mod wsdl;
pub mod xmltext;
pub(crate) mod xsd_regex;

use std::sync::Arc;

pub use builtin::Builtin;

/// Index of a complex type in [`SchemaSet::types`].
pub(crate) type TypeId = usize;

/// Every complex type reachable from a WSDL's operations.
#[derive(Debug, Default)]
pub struct SchemaSet {
    /// Complex types, addressed by `TypeId`.
    pub types: Vec<ComplexType>,
    /// `xsd:any` content travels as raw XML under `XML_KEY` instead of untyped JSON.
    pub any_as_xml: bool,
}

impl SchemaSet {
    /// The complex type behind an id.
    pub(crate) fn complex(&self, id: TypeId) -> &ComplexType {
        &self.types[id]
    }

    /// Sets [`ComplexType::distinct_keys`] on every type, once the types are complete.
    pub(crate) fn mark_distinct_keys(&mut self) {
        for ct in &mut self.types {
            let mut seen = std::collections::HashSet::new();
            let simple = ct.simple_content.as_ref().map(|_| SIMPLE_CONTENT_KEY);
            let keys = [TYPE_KEY].into_iter().chain(ct.attributes.iter().map(|a| a.json_name.as_str()));
            let mut keys = keys.chain(simple).chain(ct.children.iter().map(|c| c.json_name.as_str()));
            ct.distinct_keys = keys.all(|k| seen.insert(k));
        }
    }
}

/// One element declaration with its occurrence and type.
#[derive(Debug, Clone)]
pub struct Element {
    /// Local name as written in XML (after schema resolution).
    pub name: String,
    /// The key used for this element in JSON (see [`naming`]).
    pub json_name: String,
    /// Namespace the element is qualified with, `None` when unqualified.
    pub namespace: Option<Arc<str>>,
    /// Its type.
    pub ty: TypeRef,
    /// `minOccurs`.
    pub min_occurs: u32,
    /// `maxOccurs`; `None` means unbounded.
    pub max_occurs: Option<u32>,
    /// `nillable="true"`.
    pub nillable: bool,
    /// `xsd:documentation`, for generated docs.
    pub doc: Option<String>,
}

impl Element {
    /// True when the element becomes a JSON array (maxOccurs > 1), whatever the count.
    pub fn is_array(&self) -> bool {
        self.max_occurs != Some(1) && self.max_occurs != Some(0)
    }

    /// True when the element must appear at least once.
    pub(crate) fn is_required(&self) -> bool {
        self.min_occurs > 0
    }
}

/// The type of an element or attribute.
#[derive(Debug, Clone)]
pub enum TypeRef {
    /// A simple type: text content checked against a built-in base and facets.
    Simple(Arc<SimpleType>),
    /// A complex type in the [`SchemaSet`].
    Complex(TypeId),
}

/// How the child particles of a complex type are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compositor {
    /// `xsd:sequence`: children in schema order.
    #[default]
    Sequence,
    /// `xsd:all`: any order on the wire; we write schema order.
    All,
    /// `xsd:choice`: exactly one of the children.
    Choice,
}

/// A complex type: child elements, attributes and optionally simple text content.
#[derive(Debug, Clone, Default)]
pub struct ComplexType {
    /// `{namespace}name` for named types, for messages and docs.
    pub name: Option<String>,
    /// How `children` combine.
    pub compositor: Compositor,
    /// Child elements in schema order (a base type's children first after extension).
    pub children: Vec<Element>,
    /// Attributes, kept as JSON keys beside the children.
    pub attributes: Vec<Attribute>,
    /// `simpleContent`: the text of the element, exposed as `SIMPLE_CONTENT_KEY`.
    pub simple_content: Option<Arc<SimpleType>>,
    /// `mixed="true"` or `xsd:any` seen: content we cannot type precisely.
    pub open: bool,
    /// `abstract="true"`: a value must name one of [`ComplexType::subtypes`] with `xsi:type`.
    pub is_abstract: bool,
    /// Named types derived from this one (transitively), which a value may substitute with
    /// `xsi:type` (NetSuite's `Record` → `Customer`); JSON names the choice in `TYPE_KEY`.
    pub subtypes: Vec<TypeId>,
    /// A SOAP-encoding array (`soapenc:Array` restricted by `wsdl:arrayType`): the value is
    /// a JSON array of these items, not an object.
    pub array_item: Option<Box<Element>>,
    /// No two of its JSON keys (`xsi:type`, attributes, simple content, children) are the
    /// same, so a decoded object needs no duplicate-key check. Set once the whole schema is
    /// read (`SchemaSet::mark_distinct_keys`); `false` is always safe.
    pub distinct_keys: bool,
}

impl ComplexType {
    /// The local part of the type's name (`Customer` for `{urn:…}Customer`).
    pub fn local_name(&self) -> Option<&str> {
        self.name.as_deref().map(|n| split_name(n).1)
    }

    /// The namespace of a named type.
    pub fn namespace(&self) -> Option<&str> {
        self.name.as_deref().map(|n| split_name(n).0)
    }
}

/// `{ns}local` (how type names are kept) → `(ns, local)`; a bare name has no namespace.
pub(crate) fn split_name(name: &str) -> (&str, &str) {
    name.strip_prefix('{').and_then(|n| n.split_once('}')).unwrap_or(("", name))
}

/// JSON key holding the undeclared (`xsd:any`) content of an open type as one XML string,
/// when the backend sets `xsd_any: xml`.
pub(crate) const XML_KEY: &str = "@xml";

/// JSON key naming the `xsi:type` of a value whose type has subtypes (`"@type": "Customer"`);
/// no XML name can start with `@`, so it never collides with a field.
pub(crate) const TYPE_KEY: &str = "@type";

/// JSON key holding the text of an element with simple content and attributes.
pub(crate) const SIMPLE_CONTENT_KEY: &str = "value";

/// An attribute declaration.
#[derive(Debug, Clone)]
pub struct Attribute {
    /// Local name in XML.
    pub name: String,
    /// JSON key.
    pub json_name: String,
    /// Its simple type.
    pub ty: Arc<SimpleType>,
    /// `use="required"`.
    pub required: bool,
}

/// A simple type: a built-in base plus restricting facets.
#[derive(Debug, Clone, Default)]
pub struct SimpleType {
    /// `{namespace}name` for named types.
    pub name: Option<String>,
    /// The built-in type it derives from.
    pub base: Builtin,
    /// Restrictions on the value (of each item, for a list).
    pub facets: Facets,
    /// `xsd:list`: a whitespace-separated list of values of this type; JSON holds an array.
    pub list: bool,
    /// `xsd:union` member types, tried in order; empty for anything but a union.
    pub union: Vec<Arc<SimpleType>>,
}

impl SimpleType {
    /// The union member a text belongs to: the first whose type and enumeration accept it.
    pub(crate) fn union_member(&self, text: &str) -> Option<&SimpleType> {
        self.union.iter().map(Arc::as_ref).find(|m| {
            m.base.check(text).is_ok()
                && (m.facets.enumeration.is_empty() || m.facets.enumeration.iter().any(|e| e == text))
        })
    }
}

impl SimpleType {
    /// A bare built-in type with no facets.
    pub(crate) fn builtin(base: Builtin) -> Self {
        SimpleType { name: None, base, facets: Facets::default(), list: false, union: Vec::new() }
    }
}

/// XSD constraining facets that the encoder checks before anything is sent.
#[derive(Debug, Clone, Default)]
pub struct Facets {
    /// Allowed values; empty means any.
    pub enumeration: Vec<String>,
    /// `xsd:length`.
    pub length: Option<usize>,
    /// `xsd:minLength`.
    pub min_length: Option<usize>,
    /// `xsd:maxLength`.
    pub max_length: Option<usize>,
    /// `xsd:minInclusive`, as written.
    pub min_inclusive: Option<String>,
    /// `xsd:maxInclusive`, as written.
    pub max_inclusive: Option<String>,
    /// `xsd:totalDigits`.
    pub total_digits: Option<u32>,
    /// `xsd:fractionDigits`.
    pub fraction_digits: Option<u32>,
    /// `xsd:pattern`s, anchored; every one must match (one per derivation step).
    pub patterns: Vec<regex::Regex>,
}

/// SOAP protocol version of a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    /// SOAP 1.1: `text/xml` and a `SOAPAction` header.
    V11,
    /// SOAP 1.2: `application/soap+xml; action=…`.
    V12,
}

impl SoapVersion {
    /// The envelope namespace.
    pub(crate) fn envelope_ns(self) -> &'static str {
        match self {
            SoapVersion::V11 => "http://schemas.xmlsoap.org/soap/envelope/",
            SoapVersion::V12 => "http://www.w3.org/2003/05/soap-envelope",
        }
    }
}

/// Binding style of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// document/literal: the body holds the message element.
    Document,
    /// rpc: the body holds an element named after the operation, one child per part.
    Rpc,
}

/// One SOAP operation of a bound port.
#[derive(Debug, Clone)]
pub struct Operation {
    /// The WSDL operation name.
    pub name: String,
    /// `soapAction` from the binding (may be empty).
    pub soap_action: String,
    /// SOAP version of the binding it came from.
    pub soap_version: SoapVersion,
    /// Binding style.
    pub style: Style,
    /// `use="encoded"` (SOAP-encoding, rpc/encoded): values carry `xsi:type`, arrays
    /// `soapenc:arrayType`.
    pub encoded: bool,
    /// One-way (input only): the ERP answers an empty 2xx, and the route answers 202.
    pub one_way: bool,
    /// The request body element (the wrapper in document/literal wrapped).
    pub input: Element,
    /// Elements the binding puts in the request's `soap:Header` (SAP B1's `MsgHeader`,
    /// NetSuite's `passport`); routes fill them with `soap_headers:`.
    pub headers: Vec<Element>,
    /// The response body element.
    pub output: Element,
    /// Detail elements of the operation's declared `wsdl:fault`s.
    pub faults: Vec<Element>,
    /// `wsdl:documentation`.
    pub doc: Option<String>,
}

/// A WSDL read into operations and the types they use.
#[derive(Debug)]
pub struct ServiceModel {
    /// Types referenced by the operations.
    pub schema: SchemaSet,
    /// Operations of the chosen binding, in WSDL order.
    pub operations: Vec<Operation>,
    /// `soap:address` of the chosen port, when present.
    pub endpoint: Option<String>,
    /// Operations of the binding that could not be modelled, and why; the rest still load.
    pub skipped: Vec<Skipped>,
    /// Things read but not used (HTTP bindings, an operation bound twice), for diagnostics.
    pub notes: Vec<Note>,
}

/// Something in a WSDL that was read but left unused.
#[derive(Debug, Clone)]
pub struct Note {
    /// The imported file the line is in; `None` for the WSDL itself.
    pub file: Option<String>,
    /// 1-based line.
    pub line: usize,
    /// What was left and why.
    pub message: String,
}

/// `line N` in the WSDL, or `FILE, line N` in an imported file.
fn location(file: Option<&str>, line: usize) -> String {
    match file {
        Some(f) => format!("{f}, line {line}"),
        None => format!("line {line}"),
    }
}

impl Note {
    /// Where: `line N` in the WSDL, or `FILE, line N` in an imported file.
    pub fn location(&self) -> String {
        location(self.file.as_deref(), self.line)
    }
}

impl Skipped {
    /// Where the problem is: `line N` in the WSDL, or `FILE, line N` in an imported file.
    pub fn location(&self) -> String {
        location(self.file.as_deref(), self.line)
    }
}

/// An operation left out of a [`ServiceModel`], with the reason and where in the WSDL.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// The WSDL operation name.
    pub operation: String,
    /// The imported file the line is in; `None` for the WSDL itself.
    pub file: Option<String>,
    /// 1-based line of the construct that could not be used.
    pub line: usize,
    /// What is missing or unsupported.
    pub reason: String,
}

impl ServiceModel {
    /// The operation with this WSDL name.
    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.iter().find(|op| op.name == name)
    }
}

/// Why a WSDL could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WsdlError {
    /// Not well-formed XML.
    #[error("{0}")]
    Xml(#[from] dom::DomError),
    /// Well-formed, but not a WSDL this reader understands.
    #[error("{}line {line}: {message}", file.as_ref().map(|f| format!("{f}, ")).unwrap_or_default())]
    Invalid {
        /// The imported file the line is in; `None` for the WSDL itself.
        file: Option<String>,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}
