//! `xsd:import` and `xsd:include` with a `schemaLocation`: schema documents read from files
//! next to the WSDL (relative paths) or through a catalog (absolute URLs mapped to files).
//! `wsdl:import` of other WSDL documents (WCF and Java tools split the abstract and concrete
//! parts) is read the same way. Nothing is fetched over the network; a URL without a catalog
//! entry is an error that says how to map it. Every file is read once, so import cycles end.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::dom::{self, Node};
use super::wsdl::WsdlError;

const XSD: &str = "http://www.w3.org/2001/XMLSchema";
const WSDL: &str = "http://schemas.xmlsoap.org/wsdl/";

/// The WSDL documents `root` imports with `wsdl:import location=…`, transitively, each with
/// the directory its own relative locations resolve against.
pub fn wsdl_documents(
    root: &Node,
    base: Option<&Path>,
    catalog: &BTreeMap<String, PathBuf>,
) -> Result<Vec<(Node, Option<PathBuf>)>, WsdlError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut pending: Vec<(String, Option<PathBuf>)> = locations(root, base);
    while let Some((location, dir)) = pending.pop() {
        let path = resolve(&location, dir.as_deref(), catalog)?;
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if !seen.insert(key) {
            continue;
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| fail(format!("cannot read WSDL {} (wsdl:import {location:?}): {e}", path.display())))?;
        let mut node = dom::parse(&bytes).map_err(|e| fail(format!("WSDL {}: {e}", path.display())))?;
        node.set_file(&std::rc::Rc::from(path.display().to_string()));
        if node.ns == XSD && node.local == "schema" {
            continue; // a schema imported with wsdl:import: xsd imports cover its content
        }
        if node.ns != WSDL || node.local != "definitions" {
            return Err(fail(format!("{} is not a WSDL 1.1 document (root <{}>)", path.display(), node.local)));
        }
        let dir = path.parent().map(Path::to_path_buf);
        pending.extend(locations(&node, dir.as_deref()));
        out.push((node, dir));
    }
    Ok(out)
}

fn locations(root: &Node, base: Option<&Path>) -> Vec<(String, Option<PathBuf>)> {
    root.children_named(WSDL, "import")
        .filter_map(|i| i.attr("location"))
        .map(|l| (l.to_string(), base.map(Path::to_path_buf)))
        .collect()
}

/// A schema document loaded from a file, with the namespace its declarations belong to
/// (an included schema without a `targetNamespace` takes its includer's).
pub struct External {
    /// The `xsd:schema` root.
    pub node: Node,
    /// The namespace of its declarations.
    pub target_ns: String,
}

struct Ctx<'a> {
    catalog: &'a BTreeMap<String, PathBuf>,
    seen: HashSet<PathBuf>,
    out: Vec<External>,
}

fn fail(message: String) -> WsdlError {
    WsdlError::Invalid { file: None, line: 1, message }
}

/// Loads every schema reachable from the inline schemas of `root` (a WSDL) or from `root`
/// itself (an XSD). `base` is the directory of the WSDL file, when it came from one.
pub fn load(root: &Node, base: Option<&Path>, catalog: &BTreeMap<String, PathBuf>) -> Result<Vec<External>, WsdlError> {
    let mut ctx = Ctx { catalog, seen: HashSet::new(), out: Vec::new() };
    let types: Vec<&Node> = root.children.iter().filter(|t| t.local == "types").collect();
    // Some WSDLs put xsd:import straight under wsdl:types, without a schema around it.
    for t in &types {
        visit(t, base, "", &mut ctx)?;
    }
    let inline: Vec<&Node> = types.iter().flat_map(|t| t.children_named(XSD, "schema")).collect();
    for schema in inline {
        let tns = schema.attr("targetNamespace").unwrap_or("").to_string();
        visit(schema, base, &tns, &mut ctx)?;
    }
    Ok(ctx.out)
}

fn resolve(location: &str, base: Option<&Path>, catalog: &BTreeMap<String, PathBuf>) -> Result<PathBuf, WsdlError> {
    if let Some(mapped) = catalog.get(location) {
        return Ok(mapped.clone());
    }
    if location.contains("://") {
        return Err(fail(format!(
            "{location:?} is a URL and Veneer never fetches over the network; download it and map it under the backend's catalog: {{ \"{location}\": xsd/file.xsd }}"
        )));
    }
    let base = base
        .ok_or_else(|| fail(format!("{location:?} is a relative location, but the WSDL was not read from a file")))?;
    Ok(base.join(location))
}

fn visit(schema: &Node, base: Option<&Path>, tns: &str, ctx: &mut Ctx<'_>) -> Result<(), WsdlError> {
    let refs: Vec<(String, bool)> = schema
        .children
        .iter()
        // xsd:redefine loads its schema like an include; its redefinitions are not applied.
        .filter(|c| c.ns == XSD && matches!(c.local.as_str(), "import" | "include" | "redefine"))
        .filter_map(|c| c.attr("schemaLocation").map(|l| (l.to_string(), c.local != "import")))
        .collect();
    for (location, include) in refs {
        let path = resolve(&location, base, ctx.catalog)?;
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if !ctx.seen.insert(key) {
            continue;
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| fail(format!("cannot read schema {} (schemaLocation {location:?}): {e}", path.display())))?;
        let mut node = dom::parse(&bytes).map_err(|e| fail(format!("schema {}: {e}", path.display())))?;
        node.set_file(&std::rc::Rc::from(path.display().to_string()));
        if node.ns != XSD || node.local != "schema" {
            return Err(fail(format!("{} is not an XML Schema (root <{}>)", path.display(), node.local)));
        }
        let own = node.attr("targetNamespace").map(str::to_string);
        // An included schema without a namespace joins its includer's (chameleon include).
        let target_ns = match (include, own) {
            (_, Some(ns)) => ns,
            (true, None) => tns.to_string(),
            (false, None) => String::new(),
        };
        visit(&node, path.parent(), &target_ns, ctx)?;
        ctx.out.push(External { node, target_ns });
    }
    Ok(())
}
