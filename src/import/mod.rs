//! `veneer import-wsdl`: a routes file (a backend entry plus one route per operation) from a
//! WSDL, with REST shapes a person would choose and comments to edit. The output compiles
//! unchanged. [`fetch`] downloads a WSDL set by URL, only when asked to.

pub mod command;
pub mod fetch;

use std::collections::HashSet;
use std::fmt::Write;

use serde_json::Value;

use crate::openapi::schema::Schemas;
use crate::schema::{Element, Operation, SchemaSet, ServiceModel, TypeRef};

/// What the generator needs besides the model.
pub struct ImportOptions<'a> {
    /// Backend name.
    pub backend: &'a str,
    /// SOAP endpoint to write.
    pub endpoint: &'a str,
    /// WSDL path as the config will reference it (relative to the config directory).
    pub wsdl_path: &'a str,
    /// The `wsdl:port` or service chosen, written as the backend's `port:`.
    pub port: Option<&'a str>,
}

/// The HTTP shape chosen for an operation.
struct Shape {
    method: &'static str,
    path: String,
    /// XSD name → source expression.
    params: Vec<(String, String)>,
    body: bool,
}

const READ: &[&str] = &["Get", "Read", "List", "Find", "Search", "Query", "Fetch", "Lookup"];
const CREATE: &[&str] = &["Create", "Add", "Insert", "New"];
const UPDATE: &[&str] = &["Update", "Modify", "Change", "Set"];
const DELETE: &[&str] = &["Delete", "Remove"];

fn verb<'a>(op: &'a str, verbs: &[&str]) -> Option<&'a str> {
    verbs.iter().find_map(|v| {
        op.strip_prefix(v).filter(|rest| rest.is_empty() || rest.starts_with(|c: char| c.is_uppercase() || c == '_'))
    })
}

/// `GetItemByNo` → `item-by-no`; `Sales_Line` → `sales-line`.
fn kebab(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c == '_' || c == ' ' || c == '.' || c == '-' {
            if !out.ends_with('-') && !out.is_empty() {
                out.push('-');
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !out.ends_with('-') {
            out.push('-');
        }
        out.extend(c.to_lowercase());
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
    }
    let out: String = out.trim_matches('-').chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    out
}

/// The input's children when they are all simple, single values (usable as parameters).
fn simple_inputs<'a>(schema: &'a SchemaSet, input: &'a Element) -> Option<Vec<&'a Element>> {
    let TypeRef::Complex(id) = input.ty else { return None };
    let ct = schema.complex(id);
    let all_simple =
        ct.children.iter().all(|c| matches!(c.ty, TypeRef::Simple(_)) && !c.is_array()) && ct.attributes.is_empty();
    all_simple.then(|| ct.children.iter().collect())
}

fn param_name(el: &Element) -> Option<&str> {
    let n = el.json_name.as_str();
    (!n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(n)
}

fn shape(backend: &str, op: &Operation, schema: &SchemaSet) -> Shape {
    let base = format!("/{}", kebab(backend));
    let fallback =
        || Shape { method: "POST", path: format!("{base}/{}", kebab(&op.name)), params: Vec::new(), body: true };
    let simple = simple_inputs(schema, &op.input);
    let with_params = |method: &'static str, rest: &str, params: &[&Element]| {
        let resource = if rest.is_empty() { String::new() } else { format!("/{}", kebab(rest)) };
        let mut path = format!("{base}{resource}");
        let mut out = Vec::new();
        let required: Vec<&&Element> = params.iter().filter(|p| p.is_required()).collect();
        for p in params {
            let name = param_name(p)?;
            if required.len() == 1 && std::ptr::eq(*required[0], *p) {
                path.push_str(&format!("/{{{name}}}"));
                out.push((p.name.clone(), format!("{{path.{name}}}")));
            } else {
                out.push((p.name.clone(), format!("{{query.{name}}}")));
            }
        }
        Some(Shape { method, path, params: out, body: false })
    };
    if let (Some(rest), Some(params)) = (verb(&op.name, READ), &simple)
        && let Some(s) = with_params("GET", rest, params)
    {
        return s;
    }
    if let (Some(rest), Some(params)) = (verb(&op.name, DELETE), &simple)
        && let Some(s) = with_params("DELETE", rest, params)
    {
        return s;
    }
    if let Some(rest) = verb(&op.name, CREATE) {
        let resource = if rest.is_empty() { String::new() } else { format!("/{}", kebab(rest)) };
        return Shape { method: "POST", path: format!("{base}{resource}"), params: Vec::new(), body: true };
    }
    if let Some(rest) = verb(&op.name, UPDATE) {
        let resource = if rest.is_empty() { String::new() } else { format!("/{}", kebab(rest)) };
        return Shape { method: "PUT", path: format!("{base}{resource}"), params: Vec::new(), body: true };
    }
    fallback()
}

/// YAML double-quoted string.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The routes file for a WSDL.
pub fn routes_yaml(model: &ServiceModel, opts: &ImportOptions<'_>) -> String {
    let mut y = String::new();
    let _ = writeln!(y, "# Generated by `veneer import-wsdl` from {}.", comment(opts.wsdl_path));
    let _ = writeln!(y, "# Edit freely: route paths, which values come from path/query/body, scopes, limits.");
    let _ = writeln!(y, "# `veneer check` validates the result; see the README's config reference.");
    let _ =
        writeln!(y, "backends:\n  {}:\n    url: {}\n    wsdl: {}", opts.backend, q(opts.endpoint), q(opts.wsdl_path));
    let version = model.operations.first().map(|o| o.soap_version);
    if version == Some(crate::schema::SoapVersion::V12) {
        let _ = writeln!(y, "    soap_version: \"1.2\"");
    }
    if let Some(port) = opts.port {
        let _ = writeln!(y, "    port: {}", q(port));
    }
    if !model.skipped.is_empty() {
        let _ = writeln!(y, "\n# Operations of the WSDL left out (where: why):");
        for k in &model.skipped {
            let _ = writeln!(y, "#   {}", comment(&format!("{} ({}): {}", k.operation, k.location(), k.reason)));
        }
    }
    let _ = writeln!(y, "\nroutes:");
    let mut taken: HashSet<(String, String)> = HashSet::new();
    // Path shape → the exact path first written for it: the router needs one spelling of
    // parameter names per shape, whatever the method.
    let mut spelled: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let examples = Schemas::new(&model.schema, "");
    for op in &model.operations {
        let mut s = shape(opts.backend, op, &model.schema);
        // Same method and path shape twice: the later operation keeps its own name.
        let key = |s: &Shape| {
            (
                s.method.to_string(),
                s.path
                    .split('/')
                    .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
                    .collect::<Vec<_>>()
                    .join("/"),
            )
        };
        let clashes = |s: &Shape| spelled.get(&key(s).1).is_some_and(|p| *p != s.path);
        if taken.contains(&key(&s)) || clashes(&s) {
            s = Shape {
                method: "POST",
                path: format!("/{}/{}", kebab(opts.backend), kebab(&op.name)),
                params: Vec::new(),
                body: true,
            };
        }
        let mut n = 2;
        let original = s.path.clone();
        while taken.contains(&key(&s)) {
            s.path = format!("{original}-{n}");
            n += 1;
        }
        taken.insert(key(&s));
        spelled.entry(key(&s).1).or_insert_with(|| s.path.clone());
        let _ = writeln!(y);
        if let Some(doc) = &op.doc {
            for line in doc.lines() {
                let _ = writeln!(y, "  # {}", comment(line.trim()));
            }
        }
        let _ = writeln!(y, "  - route: {}", q(&format!("{} {}", s.method, s.path)));
        let _ = writeln!(y, "    backend: {}", opts.backend);
        let _ = writeln!(y, "    operation: {}", q(&op.name));
        let _ = writeln!(y, "    summary: {}", q(&format!("{} ({})", op.name, opts.backend)));
        if s.body {
            for line in body_fields(&op.input, &model.schema) {
                let _ = writeln!(y, "    # {}", comment(&line));
            }
            let example: Value = examples.example(&op.input, 0);
            let text = serde_json::to_string(&example).unwrap_or_default();
            if text.len() <= 400 {
                let _ = writeln!(y, "    # JSON body, e.g.: {}", comment(&text));
            }
            if s.method == "POST" || s.method == "PUT" {
                let _ = writeln!(y, "    request: \"{{body}}\"");
            }
        } else {
            let _ = writeln!(y, "    request:");
            if s.params.is_empty() {
                let _ = writeln!(y, "      {{}}");
            }
            for (xsd, source) in &s.params {
                let _ = writeln!(y, "      {}: {}", q(xsd), q(source));
            }
        }
    }
    y
}

/// Text from a WSDL made safe for one YAML comment line: a line break (or any control
/// character) in a name or documentation must not end the comment and start YAML.
fn comment(text: &str) -> String {
    text.chars().map(|c| if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') { ' ' } else { c }).collect()
}

/// The body's fields as comment lines: JSON key, type, required. Nested objects show one
/// level; the complete JSON Schema is in the served OpenAPI document.
fn body_fields(input: &Element, schema: &SchemaSet) -> Vec<String> {
    let TypeRef::Complex(id) = input.ty else { return Vec::new() };
    let ct = schema.complex(id);
    let mut fields: Vec<String> = Vec::new();
    if !ct.subtypes.is_empty() {
        fields.push(format!(
            "{} (type name{})",
            crate::schema::TYPE_KEY,
            if ct.is_abstract { ", required" } else { "" }
        ));
    }
    for a in &ct.attributes {
        fields.push(format!("{} ({}{})", a.json_name, simple_kind(&a.ty), if a.required { ", required" } else { "" }));
    }
    for c in &ct.children {
        let kind = match &c.ty {
            TypeRef::Simple(st) => simple_kind(st),
            TypeRef::Complex(id) if schema.complex(*id).array_item.is_some() => "array".to_string(),
            TypeRef::Complex(id) => {
                let ct = schema.complex(*id);
                let keys: Vec<&str> = ct.children.iter().map(|c| c.json_name.as_str()).take(6).collect();
                let mut kind =
                    format!("object {{{}{}}}", keys.join(", "), if ct.children.len() > 6 { ", …" } else { "" });
                if !ct.subtypes.is_empty() {
                    let names: Vec<&str> =
                        ct.subtypes.iter().filter_map(|s| schema.complex(*s).local_name()).take(6).collect();
                    let more =
                        if ct.subtypes.len() > 6 { format!("|… {} types", ct.subtypes.len()) } else { String::new() };
                    kind.push_str(&format!(" with \"@type\" one of {}{more}", names.join("|")));
                }
                kind
            }
        };
        let kind = if c.is_array() { format!("array of {kind}") } else { kind };
        fields.push(format!("{} ({kind}{})", c.json_name, if c.is_required() { ", required" } else { "" }));
    }
    if fields.is_empty() {
        return Vec::new();
    }
    let shown = fields.len().min(20);
    let mut lines = vec!["Body fields (JSON Schema: /openapi.json):".to_string()];
    lines.extend(fields[..shown].iter().map(|f| format!("  {f}")));
    if fields.len() > shown {
        lines.push(format!("  … and {} more", fields.len() - shown));
    }
    lines
}

/// A short name for a simple type: its JSON type or format, an enum's values, a list.
fn simple_kind(st: &crate::schema::SimpleType) -> String {
    use crate::schema::Builtin;
    let f = &st.facets;
    let base = match st.base {
        _ if !f.enumeration.is_empty() => {
            let values: Vec<&str> = f.enumeration.iter().map(String::as_str).take(6).collect();
            format!("one of {}{}", values.join("|"), if f.enumeration.len() > 6 { "|…" } else { "" })
        }
        Builtin::Boolean => "boolean".into(),
        Builtin::Decimal | Builtin::Float => "number".into(),
        Builtin::Integer { .. } => "integer".into(),
        Builtin::Date => "date".into(),
        Builtin::DateTime => "date-time".into(),
        Builtin::Time => "time".into(),
        Builtin::Base64 => "base64".into(),
        Builtin::Hex => "hex".into(),
        Builtin::String | Builtin::Any => match f.max_length {
            Some(n) => format!("string ≤{n}"),
            None => "string".into(),
        },
    };
    if st.list { format!("array of {base}") } else { base }
}

#[cfg(test)]
mod tests {
    use super::kebab;

    #[test]
    fn comments_cannot_break_out_into_yaml() {
        assert_eq!(super::comment("a\nroutes: []\r\u{85}b\u{2028}c"), "a routes: []  b c");
    }

    #[test]
    fn kebab_case() {
        assert_eq!(kebab("GetItemByNo"), "get-item-by-no");
        assert_eq!(kebab("Sales_Line"), "sales-line");
        assert_eq!(kebab("ReadMultiple"), "read-multiple");
        assert_eq!(kebab("IsUpdated"), "is-updated");
        assert_eq!(kebab("nav"), "nav");
    }
}
