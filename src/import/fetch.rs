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
        let bytes = get(&client, &url).await?;
        let doc = dom::parse(&bytes).map_err(|e| format!("{url}: not XML ({e})"))?;
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        let mut locations = Vec::new();
        collect_locations(&doc, &mut locations);
        for location in locations {
            let target = url.join(&location).map_err(|e| format!("{url}: location {location:?}: {e}"))?;
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
            text = rewrite(&text, &location, &local);
        }
        let local = files.get(&url).cloned().unwrap_or_else(|| local_name(&url, files.values()));
        let file = dir.join(local);
        std::fs::write(&file, text).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    }
    Ok(dir.join(main))
}

async fn get(client: &reqwest::Client, url: &Url) -> Result<Vec<u8>, String> {
    let mut res = client.get(url.clone()).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !res.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", res.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BYTES {
            return Err(format!("GET {url}: larger than {} MiB", MAX_BYTES / (1024 * 1024)));
        }
    }
    Ok(body)
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

/// Rewrites `location="…"` values (as written, or with `&` escaped) to the local file name.
fn rewrite(text: &str, location: &str, local: &str) -> String {
    let mut out = text.to_string();
    for written in [location.to_string(), location.replace('&', "&amp;")] {
        for quote in ['"', '\''] {
            out = out.replace(&format!("{quote}{written}{quote}"), &format!("{quote}{local}{quote}"));
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
    fn locations_are_rewritten_as_written() {
        let text = r#"<xsd:import schemaLocation="http://h/a?x=1&amp;y=2"/><xsd:include schemaLocation='b.xsd'/>"#;
        let text = rewrite(text, "http://h/a?x=1&y=2", "a.xsd");
        let text = rewrite(&text, "b.xsd", "b-2.xsd");
        assert_eq!(text, r#"<xsd:import schemaLocation="a.xsd"/><xsd:include schemaLocation='b-2.xsd'/>"#);
    }
}
