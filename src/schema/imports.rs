//! `xsd:import` and `xsd:include` with a `schemaLocation`: schema documents read from files
//! next to the WSDL (relative paths) or through a catalog (absolute URLs mapped to files).
//! `wsdl:import` of other WSDL documents (WCF and Java tools split the abstract and concrete
//! parts) is read the same way. Nothing is fetched over the network; a URL without a catalog
//! entry is an error that says how to map it. Every file is read once, so import cycles end.
//!
//! A WSDL's locations are written by whoever wrote the WSDL (often a remote server, through
//! `import-wsdl --allow-url`), not by the admin, so they are confined: a relative location
//! must stay inside the allowed directory trees (the config directory and the main WSDL's
//! directory), absolute paths are refused, and only regular files of bounded size are read
//! (so `/dev/zero` or a FIFO cannot hang or exhaust `check` and `serve`). Catalog entries are
//! the admin's own config and may point anywhere, but are read with the same file checks.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use super::WsdlError;
use super::dom::{self, Node};

use super::ns::{WSDL, XSD};

/// The most bytes read from one imported file. NetSuite's largest schema is about 2 MB; the
/// cap only keeps a huge or endless file from exhausting memory.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Where imported documents may come from: the catalog, and the directory trees relative
/// locations may resolve into.
pub struct Sources<'a> {
    catalog: &'a BTreeMap<String, PathBuf>,
    /// Each allowed root, absolute and lexically normalised, with its canonical form when
    /// it exists (a root reached through a symbolic link is allowed under both names).
    roots: Vec<(PathBuf, Option<PathBuf>)>,
}

impl<'a> Sources<'a> {
    /// `roots` are the directories whose trees relative locations must stay inside.
    pub fn new<'r>(catalog: &'a BTreeMap<String, PathBuf>, roots: impl IntoIterator<Item = &'r Path>) -> Self {
        let roots = roots
            .into_iter()
            .filter_map(|r| {
                // `Path::parent` of a bare file name is "", meaning the current directory.
                let r = if r.as_os_str().is_empty() { Path::new(".") } else { r };
                let lexical = normalize(&std::path::absolute(r).ok()?);
                Some((lexical, std::fs::canonicalize(r).ok()))
            })
            .collect();
        Sources { catalog, roots }
    }

    /// The roots for messages: a root inside another (the WSDL's folder in the config
    /// directory, usually) goes without saying.
    fn roots_text(&self) -> String {
        let outer = |r: &PathBuf| !self.roots.iter().any(|(o, _)| o != r && r.starts_with(o));
        let mut names: Vec<String> =
            self.roots.iter().map(|(r, _)| r).filter(|r| outer(r)).map(|r| r.display().to_string()).collect();
        names.dedup();
        names.join(" or ")
    }
}

/// Removes `.` and `..` components without touching the file system (`..` at the root
/// stays at the root, as the kernel does).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Reads a file for the schema reader: only a regular file (not a device such as
/// `/dev/zero`, a FIFO or a directory), and at most [`MAX_FILE_BYTES`], counted while
/// reading so a file that grows meanwhile is still bounded.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    let too_large = || format!("larger than {} MiB", MAX_FILE_BYTES / (1024 * 1024));
    // Checked before opening: opening a FIFO for reading would block until a writer comes.
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    // The path may have been swapped since the check: judge what was actually opened.
    if !file.metadata().map_err(|e| e.to_string())?.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// One import to follow: its location as written, the directory it resolves against, and
/// the element that wrote it (for error messages).
struct Ref {
    location: String,
    dir: Option<PathBuf>,
    file: Option<Rc<str>>,
    line: usize,
}

impl Ref {
    fn new(location: &str, dir: Option<&Path>, at: &Node) -> Self {
        Ref { location: location.to_string(), dir: dir.map(Path::to_path_buf), file: at.file.clone(), line: at.line }
    }

    /// An error at the importing element.
    fn fail(&self, message: String) -> WsdlError {
        WsdlError::Invalid { file: self.file.as_deref().map(str::to_string), line: self.line, message }
    }
}

/// The WSDL documents `root` imports with `wsdl:import location=…`, transitively, each with
/// the directory its own relative locations resolve against.
pub(crate) fn wsdl_documents(
    root: &Node,
    base: Option<&Path>,
    sources: &Sources<'_>,
) -> Result<Vec<(Node, Option<PathBuf>)>, WsdlError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut pending: Vec<Ref> = locations(root, base);
    while let Some(r) = pending.pop() {
        let what = format!("wsdl:import location {:?}", r.location);
        let path = resolve(&r, &what, sources)?;
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if !seen.insert(key) {
            continue;
        }
        let bytes =
            read_file(&path).map_err(|e| r.fail(format!("{what}: cannot read WSDL {}: {e}", path.display())))?;
        let mut node = dom::parse(&bytes).map_err(|e| fail(format!("WSDL {}: {e}", path.display())))?;
        node.set_file(&Rc::from(path.display().to_string()));
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

fn locations(root: &Node, base: Option<&Path>) -> Vec<Ref> {
    root.children_named(WSDL, "import").filter_map(|i| i.attr("location").map(|l| Ref::new(l, base, i))).collect()
}

/// A schema document loaded from a file, with the namespace its declarations belong to
/// (an included schema without a `targetNamespace` takes its includer's).
pub struct External {
    /// The `xsd:schema` root.
    pub node: Node,
    /// The namespace of its declarations.
    pub target_ns: String,
}

struct Ctx<'a, 'b> {
    sources: &'a Sources<'b>,
    seen: HashSet<PathBuf>,
    out: Vec<External>,
}

fn fail(message: String) -> WsdlError {
    WsdlError::Invalid { file: None, line: 1, message }
}

/// Loads every schema reachable from the inline schemas of `root` (a WSDL) or from `root`
/// itself (an XSD). `base` is the directory of the WSDL file, when it came from one.
pub fn load(root: &Node, base: Option<&Path>, sources: &Sources<'_>) -> Result<Vec<External>, WsdlError> {
    let mut ctx = Ctx { sources, seen: HashSet::new(), out: Vec::new() };
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

/// The file a location names. `what` says which attribute wrote it, for errors.
fn resolve(r: &Ref, what: &str, sources: &Sources<'_>) -> Result<PathBuf, WsdlError> {
    let location = r.location.as_str();
    if let Some(mapped) = sources.catalog.get(location) {
        return Ok(mapped.clone());
    }
    if location.contains("://") {
        return Err(r.fail(format!(
            "{location:?} is a URL and Veneer never fetches over the network; download it and map it under the backend's catalog: {{ \"{location}\": xsd/file.xsd }}"
        )));
    }
    // `\` counts too: on Windows it is a separator, and nothing legitimate starts with it.
    if Path::new(location).is_absolute() || location.starts_with(['/', '\\']) {
        return Err(r.fail(format!(
            "{what} is an absolute path; imported documents are read only by relative paths inside {}, or through the backend's catalog",
            sources.roots_text()
        )));
    }
    let base =
        r.dir.as_deref().ok_or_else(|| r.fail(format!("{what} is relative, but the WSDL was not read from a file")))?;
    let path = base.join(location);
    let escapes = || {
        r.fail(format!(
            "{what} leads outside {}; imported documents must stay inside it (or be mapped in the backend's catalog)",
            sources.roots_text()
        ))
    };
    let lexical = std::path::absolute(&path).map(|p| normalize(&p)).map_err(|e| r.fail(format!("{what}: {e}")))?;
    if !sources.roots.iter().any(|(root, _)| lexical.starts_with(root)) {
        return Err(escapes());
    }
    // A symbolic link inside the tree may still point out of it.
    if let Ok(real) = std::fs::canonicalize(&path) {
        let inside = sources.roots.iter().any(|(root, canonical)| {
            real.starts_with(root) || canonical.as_deref().is_some_and(|c| real.starts_with(c))
        });
        if !inside {
            return Err(escapes());
        }
    }
    Ok(path)
}

fn visit(schema: &Node, base: Option<&Path>, tns: &str, ctx: &mut Ctx<'_, '_>) -> Result<(), WsdlError> {
    let refs: Vec<(Ref, bool)> = schema
        .children
        .iter()
        // xsd:redefine loads its schema like an include; its redefinitions are not applied.
        .filter(|c| c.ns == XSD && matches!(c.local.as_str(), "import" | "include" | "redefine"))
        .filter_map(|c| c.attr("schemaLocation").map(|l| (Ref::new(l, base, c), c.local != "import")))
        .collect();
    for (r, include) in refs {
        let what = format!("schemaLocation {:?}", r.location);
        let path = resolve(&r, &what, ctx.sources)?;
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if !ctx.seen.insert(key) {
            continue;
        }
        let bytes =
            read_file(&path).map_err(|e| r.fail(format!("{what}: cannot read schema {}: {e}", path.display())))?;
        let mut node = dom::parse(&bytes).map_err(|e| fail(format!("schema {}: {e}", path.display())))?;
        node.set_file(&Rc::from(path.display().to_string()));
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
