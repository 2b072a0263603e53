//! SOAP 1.1 and 1.2 Faults, read from a backend response.

use serde_json::{Map, Value, json};

use crate::schema::SoapVersion;

/// How much of a fault's `detail` reaches callers (`fault_detail:` on a backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultDetail {
    /// Everything the ERP wrote (stack traces, SQL errors included).
    Pass,
    /// Only entries of a declared `wsdl:fault` element, typed (the default).
    #[default]
    Typed,
    /// No detail: code and reason only.
    Hide,
}

/// A SOAP Fault, normalised across SOAP versions.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Which envelope it came in.
    pub version: SoapVersion,
    /// `faultcode` (1.1) or `Code/Value` (1.2), as written (`soap:Client`).
    pub code: String,
    /// SOAP 1.2 `Subcode/Value`s, outermost first.
    pub subcodes: Vec<String>,
    /// `faultstring` or the first `Reason/Text`.
    pub reason: String,
    /// `faultactor` or `Role`.
    pub actor: Option<String>,
    /// `detail`/`Detail` content as untyped JSON.
    pub detail: Option<Value>,
    /// Names of the detail entries typed by a declared `wsdl:fault` (the ERP's documented
    /// error shape, as opposed to whatever else it put there).
    pub declared: Vec<String>,
}

/// The local part of a QName value (`soap:Client.NotFound` → `Client.NotFound`).
pub(crate) fn local_part(qname: &str) -> &str {
    qname.trim().rsplit_once(':').map_or(qname.trim(), |(_, l)| l)
}

impl Fault {
    /// The fault code without its prefix.
    pub(crate) fn code_local(&self) -> &str {
        local_part(&self.code)
    }

    /// True when the fault blames the request (SOAP 1.1 `Client*`, SOAP 1.2 `Sender`).
    pub(crate) fn is_client_fault(&self) -> bool {
        let code = self.code_local();
        code.starts_with("Client") || code == "Sender"
    }

    /// True when `code` names this fault's code or one of its subcodes (prefixes ignored).
    pub(crate) fn has_code(&self, code: &str) -> bool {
        self.code_local() == code || self.subcodes.iter().any(|s| local_part(s) == code)
    }

    /// Applies a backend's `fault_detail` policy to what callers will see.
    pub(crate) fn redact(&mut self, policy: FaultDetail) {
        match policy {
            FaultDetail::Pass => {}
            FaultDetail::Hide => self.detail = None,
            FaultDetail::Typed => {
                self.detail = match self.detail.take() {
                    Some(Value::Object(mut m)) => {
                        m.retain(|k, _| self.declared.contains(k));
                        (!m.is_empty()).then_some(Value::Object(m))
                    }
                    _ => None,
                }
            }
        }
    }

    /// The fault as it appears in a problem document.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("code".into(), json!(self.code_local()));
        if !self.subcodes.is_empty() {
            m.insert("subcodes".into(), json!(self.subcodes.iter().map(|s| local_part(s)).collect::<Vec<_>>()));
        }
        m.insert("reason".into(), json!(self.reason));
        if let Some(actor) = &self.actor {
            m.insert("actor".into(), json!(actor));
        }
        if let Some(detail) = &self.detail {
            m.insert("detail".into(), detail.clone());
        }
        Value::Object(m)
    }
}

/// An untyped element tree, for fault bodies whose schema the route does not know.
#[derive(Debug, Default)]
pub(crate) struct XNode {
    /// Local name.
    pub name: String,
    /// Attributes (local name, value); namespace declarations dropped.
    pub attrs: Vec<(String, String)>,
    /// Direct text, concatenated.
    pub text: String,
    /// Child elements.
    pub children: Vec<XNode>,
}

impl XNode {
    fn child(&self, name: &str) -> Option<&XNode> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Untyped JSON: text-only elements become strings, repeated names arrays,
    /// attributes `@name` keys.
    pub(crate) fn to_json(&self) -> Value {
        if self.children.is_empty() && self.attrs.is_empty() {
            return Value::String(self.text.trim().to_string());
        }
        let mut m = Map::new();
        for (k, v) in &self.attrs {
            m.insert(format!("@{k}"), Value::String(v.clone()));
        }
        for c in &self.children {
            let v = c.to_json();
            match m.get_mut(&c.name) {
                Some(Value::Array(items)) => items.push(v),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, v]);
                }
                None => {
                    m.insert(c.name.clone(), v);
                }
            }
        }
        if !self.text.trim().is_empty() {
            m.insert("#text".into(), Value::String(self.text.trim().to_string()));
        }
        Value::Object(m)
    }
}

/// Reads a `Fault` element tree into a [`Fault`].
pub(crate) fn from_tree(version: SoapVersion, node: &XNode) -> Fault {
    let detail_of = |n: Option<&XNode>| {
        n.filter(|d| !d.children.is_empty() || !d.text.trim().is_empty()).map(|d| {
            let mut m = Map::new();
            for c in &d.children {
                m.insert(c.name.clone(), c.to_json());
            }
            if m.is_empty() { Value::String(d.text.trim().to_string()) } else { Value::Object(m) }
        })
    };
    match version {
        SoapVersion::V11 => Fault {
            version,
            code: node.child("faultcode").map(|c| c.text.trim().to_string()).unwrap_or_default(),
            subcodes: Vec::new(),
            reason: node.child("faultstring").map(|c| c.text.trim().to_string()).unwrap_or_default(),
            actor: node.child("faultactor").map(|c| c.text.trim().to_string()),
            detail: detail_of(node.child("detail")),
            declared: Vec::new(),
        },
        SoapVersion::V12 => {
            let code = node.child("Code");
            let mut subcodes = Vec::new();
            let mut sub = code.and_then(|c| c.child("Subcode"));
            while let Some(s) = sub {
                if let Some(v) = s.child("Value") {
                    subcodes.push(v.text.trim().to_string());
                }
                sub = s.child("Subcode");
            }
            Fault {
                version,
                code: code.and_then(|c| c.child("Value")).map(|v| v.text.trim().to_string()).unwrap_or_default(),
                subcodes,
                reason: node
                    .child("Reason")
                    .and_then(|r| r.child("Text"))
                    .map(|t| t.text.trim().to_string())
                    .unwrap_or_default(),
                actor: node.child("Role").map(|r| r.text.trim().to_string()),
                detail: detail_of(node.child("Detail")),
                declared: Vec::new(),
            }
        }
    }
}
