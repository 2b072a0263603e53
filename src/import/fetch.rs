//! `veneer import-wsdl URL --allow-url`: downloads a WSDL and every document it imports
//! (`xsd:import`/`xsd:include`/`xsd:redefine` with a `schemaLocation`, `wsdl:import` with a
//! `location`) into one folder, rewriting those locations to the local file names. The
//! config then loads from files, and the gateway never fetches at run time. A local WSDL
//! outside the config directory is copied the same way.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;

use crate::schema::dom::{self, Node};

use crate::schema::ns::{WSDL, XSD};
/// Upper bounds, so a hostile or looping server cannot fill the disk.
const MAX_DOCUMENTS: usize = 256;
const MAX_BYTES: usize = 32 * 1024 * 1024;
const MAX_REDIRECTS: usize = 5;

/// Limits of one `import-wsdl --allow-url` download.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Follow redirects to another host. Off by default: a redirect is how a server that
    /// looks harmless points the download at hosts on the operator's own network.
    pub cross_host_redirects: bool,
    /// The whole download (every document) must be done within this; a server that
    /// trickles bytes cannot keep the command running.
    pub deadline: Duration,
    /// Bytes of all documents together, counted while they stream in.
    pub max_total_bytes: usize,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            cross_host_redirects: false,
            deadline: Duration::from_secs(120),
            max_total_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Downloads `url` and everything it imports into `dir`; returns the main file's path.
pub async fn download(url: &str, dir: &Path, name: &str, options: &FetchOptions) -> Result<PathBuf, String> {
    let root = Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(root.scheme(), "http" | "https") {
        return Err(format!("{url:?} is not an http(s) URL; give a file path for local files"));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .redirect(redirect_policy(options.cross_host_redirects))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    tokio::time::timeout(options.deadline, download_all(&client, root, dir, name, options)).await.map_err(|_| {
        format!("downloading {url} and its imports took longer than {} s; stopped", options.deadline.as_secs_f32())
    })?
}

async fn download_all(
    client: &reqwest::Client,
    root: Url,
    dir: &Path,
    name: &str,
    options: &FetchOptions,
) -> Result<PathBuf, String> {
    let mut total = 0usize;
    let fetch = async |url: &Url| {
        let budget = Budget { left: options.max_total_bytes.saturating_sub(total), total: options.max_total_bytes };
        let (bytes, fetched) = get(client, url, budget).await?;
        total += bytes.len();
        Ok((bytes, fetched))
    };
    save_all(root, dir, name, fetch, |u| matches!(u.scheme(), "http" | "https"), "an http(s) URL").await
}

/// Copies a WSDL file that lies outside the config directory, with every document it
/// imports, into `dir`, as a download would be saved: a config that names a file elsewhere
/// on one machine (or an absolute path) does not work in a container or on a replica.
pub(crate) async fn copy_local(main: &Path, dir: &Path, name: &str) -> Result<PathBuf, String> {
    let absolute = std::fs::canonicalize(main).map_err(|e| format!("cannot read {}: {e}", main.display()))?;
    let root = Url::from_file_path(&absolute).map_err(|_| format!("{} is not a file path", absolute.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut total = 0usize;
    let read = async |url: &Url| {
        let path = url.to_file_path().map_err(|_| format!("{url} is not a local file"))?;
        let bytes =
            crate::schema::imports::read_file(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        total += bytes.len();
        if total > FetchOptions::default().max_total_bytes {
            return Err(format!("{}: the WSDL and its imports are larger than a download may be", main.display()));
        }
        Ok((bytes, url.clone()))
    };
    save_all(root, dir, name, read, |u| u.scheme() == "file", "a local file").await
}

/// Saves `root` and everything it imports into `dir`, reading each document with `fetch`
/// (which returns its bytes and where they really came from), rewriting import locations to
/// the saved file names; every location must resolve to a URL `allowed` accepts.
async fn save_all(
    root: Url,
    dir: &Path,
    name: &str,
    mut fetch: impl AsyncFnMut(&Url) -> Result<(Vec<u8>, Url), String>,
    allowed: fn(&Url) -> bool,
    kind: &str,
) -> Result<PathBuf, String> {
    let mut files: HashMap<Url, String> = HashMap::new();
    let main = format!("{name}.wsdl");
    files.insert(root.clone(), main.clone());
    let mut queue = VecDeque::from([root]);
    while let Some(url) = queue.pop_front() {
        let (bytes, fetched) = fetch(&url).await?;
        let doc = dom::parse(&bytes).map_err(|e| format!("{url}: not XML ({e})"))?;
        let mut locations = Vec::new();
        collect_locations(&doc, &mut locations);
        let mut renames: HashMap<String, String> = HashMap::new();
        for location in locations {
            // Relative locations resolve against where the document really came from.
            let target = fetched.join(&location).map_err(|e| format!("{url}: location {location:?}: {e}"))?;
            if !allowed(&target) {
                return Err(format!("{url}: location {location:?} is not {kind}"));
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
            renames.insert(location, local);
        }
        let written = rewrite(&bytes, &renames);
        // The saved file is read later by `check` and `serve`, which resolve its locations on
        // the local disk: every one must now name a saved file, whatever way of writing it
        // slipped past the rewrite.
        let locals: HashSet<&String> = renames.values().collect();
        let reread = dom::parse(&written).map_err(|e| format!("{url}: not XML after rewriting ({e})"))?;
        let mut left = Vec::new();
        collect_locations(&reread, &mut left);
        if let Some(l) = left.iter().find(|l| !locals.contains(l)) {
            return Err(format!(
                "{url}: the import location {l:?} could not be rewritten to its saved file; the document is not saved, since the location would be read from the local disk"
            ));
        }
        let local = files.get(&url).cloned().unwrap_or_else(|| local_name(&url, files.values()));
        let file = dir.join(local);
        std::fs::write(&file, written).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    }
    Ok(dir.join(main))
}

/// Follows at most [`MAX_REDIRECTS`] redirects, only to http(s), and only on the host first
/// asked unless `cross_host` (a different name for the same machine, such as `localhost`
/// for `127.0.0.1`, counts as another host: the names are what can be checked).
fn redirect_policy(cross_host: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let to = attempt.url().clone();
        let from = attempt.previous().first().cloned();
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        if !matches!(to.scheme(), "http" | "https") {
            return attempt.error(format!("redirected to {to}, which is not an http(s) URL"));
        }
        let from_host = from.as_ref().and_then(|u| u.host_str().map(str::to_string));
        if !cross_host && to.host_str() != from_host.as_deref() {
            return attempt.error(format!(
                "redirected from host {} to {to}, another host; pass --allow-cross-host-redirects to follow it",
                from_host.unwrap_or_default()
            ));
        }
        attempt.follow()
    })
}

/// An error with its causes: reqwest's own text leaves out why a redirect was refused.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// What is left of the download's byte budget, and the whole of it (for messages).
#[derive(Clone, Copy)]
struct Budget {
    left: usize,
    total: usize,
}

/// The body of `url`, at most what is left of the budget (and [`MAX_BYTES`]), counted as
/// it streams in so an endless body stops there; and the URL it finally came from (after
/// redirects).
async fn get(client: &reqwest::Client, url: &Url, budget: Budget) -> Result<(Vec<u8>, Url), String> {
    let limit = budget.left.min(MAX_BYTES);
    let too_large = || {
        if limit == MAX_BYTES {
            format!("GET {url}: larger than {} MiB", MAX_BYTES / (1024 * 1024))
        } else {
            format!("GET {url}: the documents together are larger than the download's limit of {} bytes", budget.total)
        }
    };
    let mut res = client.get(url.clone()).send().await.map_err(|e| format!("GET {url}: {}", with_causes(&e)))?;
    if !res.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", res.status()));
    }
    if res.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let fetched = res.url().clone();
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| format!("GET {url}: {}", with_causes(&e)))? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
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
    if let Some(location) = attr.map(str::trim).filter(|l| !l.is_empty())
        && !out.iter().any(|l| l == location)
    {
        out.push(location.to_string());
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

/// Rewrites the location attributes of import elements (`schemaLocation`, `location` on
/// `import`, `include`, `redefine`) whose value, decoded as an XML parser reads it (character
/// and entity references resolved, whitespace normalised), is a key of `renames`. Comparing
/// decoded values matters: `&#47;tmp&#47;a.xsd` is `/tmp/a.xsd` to the schema reader. One
/// pass over the bytes: the document keeps its own encoding and every other byte, and a new
/// name is never rewritten again.
fn rewrite(bytes: &[u8], renames: &HashMap<String, String>) -> Vec<u8> {
    let mut edits: Vec<(usize, usize, &str)> = Vec::new();
    let mut i = 0;
    while let Some(lt) = find(bytes, i, b"<") {
        let rest = &bytes[lt..];
        // Comments, CDATA, processing instructions, declarations and end tags hold no
        // attributes to rewrite (and may hold text that looks like them): skipped whole.
        let closer: Option<&[u8]> = if rest.starts_with(b"<!--") {
            Some(b"-->")
        } else if rest.starts_with(b"<![CDATA[") {
            Some(b"]]>")
        } else if rest.starts_with(b"<?") {
            Some(b"?>")
        } else if rest.starts_with(b"<!") || rest.starts_with(b"</") {
            Some(b">")
        } else {
            None
        };
        i = match closer {
            Some(c) => find(bytes, lt + 2, c).map_or(bytes.len(), |p| p + c.len()),
            None => scan_tag(bytes, lt + 1, renames, &mut edits),
        };
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut copied = 0;
    for (from, to, local) in edits {
        out.extend_from_slice(&bytes[copied..from]);
        out.extend_from_slice(local.as_bytes());
        copied = to;
    }
    out.extend_from_slice(&bytes[copied..]);
    out
}

/// Reads one start tag from `start` (just after `<`), noting the value spans to replace;
/// returns where scanning goes on. Malformed markup simply ends the tag early: the caller
/// re-parses the result and refuses any location left unrewritten.
fn scan_tag<'r>(
    bytes: &[u8],
    start: usize,
    renames: &'r HashMap<String, String>,
    edits: &mut Vec<(usize, usize, &'r str)>,
) -> usize {
    let is_space = |b: u8| b.is_ascii_whitespace();
    let local = |name: &[u8]| name.rsplit(|&b| b == b':').next().unwrap_or(name).to_vec();
    let name_end = start + bytes[start..].iter().position(|&b| is_space(b) || b == b'/' || b == b'>').unwrap_or(0);
    let element = local(&bytes[start..name_end]);
    let is_import = matches!(element.as_slice(), b"import" | b"include" | b"redefine");
    let skip_space = |mut j: usize| {
        while j < bytes.len() && is_space(bytes[j]) {
            j += 1;
        }
        j
    };
    let mut j = name_end.max(start);
    loop {
        j = skip_space(j);
        match bytes.get(j) {
            None => return bytes.len(),
            Some(b'>') => return j + 1,
            Some(b'/') => {
                j += 1;
                continue;
            }
            Some(_) => {}
        }
        let name_len = bytes[j..].iter().position(|&b| is_space(b) || matches!(b, b'=' | b'>' | b'/'));
        let attr_end = j + name_len.unwrap_or(bytes.len() - j);
        if attr_end == j {
            return j + 1;
        }
        let attr = local(&bytes[j..attr_end]);
        j = skip_space(attr_end);
        if bytes.get(j) != Some(&b'=') {
            continue;
        }
        j = skip_space(j + 1);
        let quote = match bytes.get(j) {
            Some(&q) if q == b'"' || q == b'\'' => q,
            _ => return j,
        };
        let value_start = j + 1;
        let Some(value_end) = find(bytes, value_start, &[quote]) else { return bytes.len() };
        if is_import && matches!(attr.as_slice(), b"schemaLocation" | b"location") {
            let local = decode_attribute(&bytes[value_start..value_end]).and_then(|v| renames.get(v.trim()));
            if let Some(local) = local {
                edits.push((value_start, value_end, local.as_str()));
            }
        }
        j = value_end + 1;
    }
}

/// An attribute value as a parser reports it: literal tabs and line breaks become spaces,
/// then references are resolved. `None` when it is not UTF-8 or has a bad reference.
fn decode_attribute(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?.replace(['\t', '\n', '\r'], " ");
    quick_xml::escape::unescape(&text).ok().map(|v| v.into_owned())
}

/// The first position of `needle` in `bytes` at or after `from`.
fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
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

    fn renames(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn locations_are_rewritten_as_written_in_one_pass() {
        let text = r#"<xsd:import schemaLocation="http://h/a?x=1&amp;y=2"/><xsd:include schemaLocation='b.xsd'/><wsdl:import location="http://h/b.xsd"/>"#;
        let renames = renames(&[("http://h/a?x=1&y=2", "a.xsd"), ("http://h/b.xsd", "b.xsd"), ("b.xsd", "b-2.xsd")]);
        let out = rewrite(text.as_bytes(), &renames);
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"<xsd:import schemaLocation="a.xsd"/><xsd:include schemaLocation='b-2.xsd'/><wsdl:import location="b.xsd"/>"#
        );
        // Bytes outside the locations are kept as they are (a Latin-1 file stays Latin-1).
        assert_eq!(
            rewrite(b"<import location=\"x\">\xe9</import>", &renames_of("x", "y")),
            b"<import location=\"y\">\xe9</import>".to_vec()
        );
    }

    fn renames_of(from: &str, to: &str) -> HashMap<String, String> {
        renames(&[(from, to)])
    }

    #[test]
    fn locations_are_compared_decoded() {
        // What the schema reader would see is what counts: character references, entity
        // references and whitespace around the value.
        let text =
            "<s:import schemaLocation=\"&#47;tmp&#x2F;a.xsd\"/>\n<s:include\n  schemaLocation = ' /tmp/a.xsd\t'/>";
        let out = rewrite(text.as_bytes(), &renames_of("/tmp/a.xsd", "a.xsd"));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "<s:import schemaLocation=\"a.xsd\"/>\n<s:include\n  schemaLocation = 'a.xsd'/>"
        );
        // Look-alikes in comments, CDATA, text and other attributes are left alone.
        let text = "<!-- <import location=\"x\"/> --><a><![CDATA[<import location=\"x\"/>]]>location=\"x\"</a><import id=\"x\" location=\"x\"/>";
        let out = rewrite(text.as_bytes(), &renames_of("x", "y"));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "<!-- <import location=\"x\"/> --><a><![CDATA[<import location=\"x\"/>]]>location=\"x\"</a><import id=\"x\" location=\"y\"/>"
        );
    }

    /// A loopback server that answers every connection with `head` and then `body_chunks`
    /// chunks of 64 KiB, or keeps the connection silent when `head` is empty.
    async fn serve(head: &'static str, body_chunks: usize) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = stream.read(&mut request).await;
                    if head.is_empty() {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    }
                    let _ = stream.write_all(head.as_bytes()).await;
                    let chunk = vec![b' '; 64 * 1024];
                    for _ in 0..body_chunks {
                        if stream.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        format!("http://{addr}/svc.wsdl")
    }

    #[tokio::test]
    async fn the_whole_download_has_a_deadline() {
        let url = serve("", 0).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let options = FetchOptions { deadline: Duration::from_millis(300), ..Default::default() };
        let started = std::time::Instant::now();
        let err = download(&url, dir.path(), "x", &options).await.expect_err("the server never answers");
        assert!(err.contains("took longer than 0.3 s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn bodies_are_bounded_while_they_stream() {
        // No content-length: the body is counted as it arrives, and stops at the budget.
        let url = serve("HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\nconnection: close\r\n\r\n", 64).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let options = FetchOptions { max_total_bytes: 1024 * 1024, ..Default::default() };
        let err = download(&url, dir.path(), "x", &options).await.expect_err("over the budget");
        assert!(err.contains("larger than the download's limit of 1048576 bytes"), "{err}");
    }
}
