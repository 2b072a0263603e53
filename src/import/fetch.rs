//! `veneer import-wsdl URL --allow-url`: downloads a WSDL and every document it imports
//! (`xsd:import`/`xsd:include`/`xsd:redefine` with a `schemaLocation`, `wsdl:import` with a
//! `location`) into one folder, rewriting those locations to the local file names. The
//! config then loads from files, and the gateway never fetches at run time.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;

use crate::schema::dom::{self, Node};

const XSD: &str = "http://www.w3.org/2001/XMLSchema";
const WSDL: &str = "http://schemas.xmlsoap.org/wsdl/";
/// Upper bounds, so a hostile or looping server cannot fill the disk.
const MAX_DOCUMENTS: usize = 256;
const MAX_BYTES: usize = 32 * 1024 * 1024;

/// Downloads `url` and everything it imports into `dir`; returns the main file's path.
pub async fn download(url: &str, dir: &Path, name: &str) -> Result<PathBuf, String> {
    let root = Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(root.scheme(), "http" | "https") {
        return Err(format!("{url:?} is not an http(s) URL; give a file path for local files"));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut files: HashMap<Url, String> = HashMap::new();
    let main = format!("{name}.wsdl");
    files.insert(root.clone(), main.clone());
    let mut queue = VecDeque::from([root]);
    while let Some(url) = queue.pop_front() {
        let (bytes, fetched) = get(&client, &url).await?;
        let doc = dom::parse(&bytes).map_err(|e| format!("{url}: not XML ({e})"))?;
        let mut locations = Vec::new();
        collect_locations(&doc, &mut locations);
        let mut renames: Vec<(String, String)> = Vec::new();
        for location in locations {
            // Relative locations resolve against where the document really came from.
            let target = fetched.join(&location).map_err(|e| format!("{url}: location {location:?}: {e}"))?;
            if !matches!(target.scheme(), "http" | "https") {
                return Err(format!("{url}: location {location:?} is not an http(s) URL"));
            }
            let local = match files.get(&target) {
                Some(local) => local.clone(),
                None => {
                    if files.len() >= MAX_DOCUMENTS {
                        return Err(format!("{url}: more than {MAX_DOCUMENTS} imported documents"));
                    }
                    let local = local_name(&target, files.values());
                    files.insert(target.clone(), local.clone());
                    queue.push_back(target);
                    local
                }
            };
            renames.push((location, local));
        }
        let local = files.get(&url).cloned().unwrap_or_else(|| local_name(&url, files.values()));
        let file = dir.join(local);
        std::fs::write(&file, rewrite(&bytes, &renames))
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    }
    Ok(dir.join(main))
}

/// The body of `url`, and the URL it finally came from (after redirects).
async fn get(client: &reqwest::Client, url: &Url) -> Result<(Vec<u8>, Url), String> {
    let mut res = client.get(url.clone()).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !res.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", res.status()));
    }
    let fetched = res.url().clone();
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BYTES {
            return Err(format!("GET {url}: larger than {} MiB", MAX_BYTES / (1024 * 1024)));
        }
    }
    Ok((body, fetched))
}

/// Every import location in a document, in document order.
fn collect_locations(node: &Node, out: &mut Vec<String>) {
    let attr = match (node.ns.as_str(), node.local.as_str()) {
        (XSD, "import" | "include" | "redefine") => node.attr("schemaLocation"),
        (WSDL, "import") => node.attr("location"),
        _ => None,
    };
    if let Some(location) = attr.map(str::trim).filter(|l| !l.is_empty()) {
        if !out.iter().any(|l| l == location) {
            out.push(location.to_string());
        }
    }
    for child in &node.children {
        collect_locations(child, out);
    }
}

/// A file name for a URL: its last path segment and query, made safe, unique in the folder.
fn local_name<'a>(url: &Url, taken: impl Iterator<Item = &'a String> + Clone) -> String {
    let segment = url.path_segments().and_then(|mut s| s.next_back()).filter(|s| !s.is_empty()).unwrap_or("schema");
    let mut stem: String = segment.trim_end_matches(".xsd").trim_end_matches(".wsdl").to_string();
    if let Some(q) = url.query() {
        stem.push('-');
        stem.push_str(q);
    }
    let stem: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).take(80).collect();
    let ext = if segment.ends_with(".wsdl") { "wsdl" } else { "xsd" };
    let mut name = format!("{stem}.{ext}");
    let mut n = 2;
    while taken.clone().any(|t| *t == name) {
        name = format!("{stem}-{n}.{ext}");
        n += 1;
    }
    name
}

/// Rewrites quoted location values (as written, or with `&` escaped) to local file names,
/// all in one pass over the bytes: the document keeps its own encoding, and a new name is
/// never rewritten again by a later location that happens to equal it.
fn rewrite(bytes: &[u8], renames: &[(String, String)]) -> Vec<u8> {
    let mut patterns: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (location, local) in renames {
        for written in [location.clone(), location.replace('&', "&amp;")] {
            for quote in ['"', '\''] {
                patterns.push((
                    format!("{quote}{written}{quote}").into_bytes(),
                    format!("{quote}{local}{quote}").into_bytes(),
                ));
            }
        }
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // Every pattern starts with a quote, so only quotes need a look.
        let quoted = matches!(bytes[i], b'"' | b'\'');
        match patterns.iter().find(|(from, _)| quoted && bytes[i..].starts_with(from)) {
            Some((from, to)) => {
                out.extend_from_slice(to);
                i += from.len();
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_are_safe_and_unique() {
        let taken = ["types.xsd".to_string()];
        let url = Url::parse("http://erp.local/svc/types.xsd").expect("url");
        assert_eq!(local_name(&url, taken.iter()), "types-2.xsd");
        let wcf = Url::parse("http://erp.local/B2BService.svc?xsd=xsd0").expect("url");
        assert_eq!(local_name(&wcf, [].iter()), "B2BService.svc-xsd-xsd0.xsd");
    }

    #[test]
    fn locations_are_rewritten_as_written_in_one_pass() {
        let text = r#"<xsd:import schemaLocation="http://h/a?x=1&amp;y=2"/><xsd:include schemaLocation='b.xsd'/><i schemaLocation="http://h/b.xsd"/>"#;
        let renames = [
            ("http://h/a?x=1&y=2".to_string(), "a.xsd".to_string()),
            ("http://h/b.xsd".to_string(), "b.xsd".to_string()),
            ("b.xsd".to_string(), "b-2.xsd".to_string()),
        ];
        let out = rewrite(text.as_bytes(), &renames);
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"<xsd:import schemaLocation="a.xsd"/><xsd:include schemaLocation='b-2.xsd'/><i schemaLocation="b.xsd"/>"#
        );
        // Bytes outside the locations are kept as they are (a Latin-1 file stays Latin-1).
        assert_eq!(rewrite(b"<a l=\"x\">\xe9</a>", &[("x".into(), "y".into())]), b"<a l=\"y\">\xe9</a>".to_vec());
    }
}
