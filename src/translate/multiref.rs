//! SOAP-encoding multi-reference values, as Apache Axis 1 writes rpc/encoded responses:
//! `<return href="#id0"/>` points at a `<multiRef id="id0">` placed after the response
//! element in the Body. Before decoding, each reference is replaced by the element it points
//! at (its attributes, namespace declarations and content), so the streaming decoder sees
//! one tree. Cycles are refused and the expansion is bounded, so shared references cannot
//! grow a small response into a huge one.

use std::collections::HashMap;
use std::sync::LazyLock;

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

/// The expanded text may grow to this multiple of the response, plus 1 MiB.
const GROWTH: usize = 8;
/// Deepest chain of references followed (the decoder's own nesting bound is 128).
const MAX_CHAIN: usize = 64;

/// An element with an `id`, by byte positions in the text.
struct Target {
    content: (usize, usize),
    attrs: Vec<(String, String)>,
    /// The whole element, when it sits directly in the Body (then it is dropped there).
    top_level: Option<(usize, usize)>,
}

/// An element with `href="#id"`, by byte positions in the text.
struct Ref {
    span: (usize, usize),
    name: String,
    attrs: Vec<(String, String)>,
    id: String,
}

/// Why a multiRef graph could not be inlined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultirefError {
    /// The text is not well-formed XML.
    #[error("{0}")]
    Malformed(String),
    /// The references are dangling, cyclic, too deep or explode the response.
    #[error("{0}")]
    Graph(String),
}

fn off_boundary() -> MultirefError {
    MultirefError::Malformed("multiRef positions are not on character boundaries".into())
}

/// The text with every `href="#…"` inlined, or `None` when it has none.
pub fn inline(text: &str) -> Result<Option<String>, MultirefError> {
    // One scan on the hot path: most responses have no `href="#…"` at all. The searcher is
    // built once (building it costs more than searching a typical response).
    static HREF: LazyLock<memchr::memmem::Finder<'static>> = LazyLock::new(|| memchr::memmem::Finder::new(b"href="));
    let has_refs = HREF
        .find_iter(text.as_bytes())
        .any(|i| matches!(text.as_bytes().get(i + 5..i + 7), Some([b'"' | b'\'', b'#'])));
    if !has_refs {
        return Ok(None);
    }
    let (targets, refs) = scan(text)?;
    if refs.is_empty() {
        return Ok(None);
    }
    let referenced: std::collections::HashSet<&str> = refs.iter().map(|r| r.id.as_str()).collect();
    let cuts: Vec<(usize, usize)> =
        targets.iter().filter(|(id, _)| referenced.contains(id.as_str())).filter_map(|(_, t)| t.top_level).collect();
    let limit = text.len().saturating_mul(GROWTH).saturating_add(1 << 20);
    let mut out = String::with_capacity(text.len() * 2);
    let mut ex = Expander { text, targets: &targets, refs: &refs, limit, stack: Vec::new() };
    ex.emit((0, text.len()), &cuts, &mut out)?;
    Ok(Some(out))
}

fn attrs_of(e: &BytesStart<'_>) -> Result<Vec<(String, String)>, MultirefError> {
    let mut out = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| MultirefError::Malformed(err.to_string()))?;
        let key = a.key.as_ref().to_string();
        // The raw (still escaped) value; a double quote inside it came from single quoting.
        let value = a.value.as_ref().replace('"', "&quot;");
        out.push((key, value));
    }
    Ok(out)
}

fn scan(text: &str) -> Result<(HashMap<String, Target>, Vec<Ref>), MultirefError> {
    let mut reader = Reader::from_str(text);
    let mut targets = HashMap::new();
    let mut refs = Vec::new();
    // Open elements: (start of the tag, end of the tag, id, href, name, attributes).
    type Open = (usize, usize, Option<String>, Option<String>, String, Vec<(String, String)>);
    let mut stack: Vec<Open> = Vec::new();
    let mut body_depth = None;
    loop {
        let position = |p: u64| usize::try_from(p).map_err(|e| MultirefError::Malformed(e.to_string()));
        let before = position(reader.buffer_position())?;
        let event = reader
            .read_event()
            .map_err(|e| MultirefError::Malformed(format!("at byte {}: {e}", reader.error_position())))?;
        let after = position(reader.buffer_position())?;
        let (start, empty) = match event {
            Event::Start(s) => (s, false),
            Event::Empty(s) => (s, true),
            Event::End(_) => {
                let Some((tag_start, tag_end, id, href, name, attrs)) = stack.pop() else { continue };
                if body_depth == Some(stack.len()) {
                    body_depth = None;
                }
                finish(&mut targets, &mut refs, (tag_start, tag_end, before, after), id, href, name, attrs, {
                    body_depth.is_some_and(|d| stack.len() == d + 1)
                });
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let attrs = attrs_of(&start)?;
        let get = |k: &str| attrs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let id = get("id");
        let href = get("href").and_then(|h| h.strip_prefix('#').map(str::to_string));
        let name = start.name().as_ref().to_string();
        let local = start.local_name().as_ref().to_string();
        if empty {
            let top = body_depth.is_some_and(|d| stack.len() == d + 1);
            finish(&mut targets, &mut refs, (before, after, after, after), id, href, name, attrs, top);
        } else {
            if local == "Body" && stack.len() == 1 {
                body_depth = Some(stack.len());
            }
            stack.push((before, after, id, href, name, attrs));
        }
    }
    refs.sort_by_key(|r| r.span.0);
    Ok((targets, refs))
}

/// Records a closed element as a target (it has an id) and/or a reference (it has an href).
#[allow(clippy::too_many_arguments)]
fn finish(
    targets: &mut HashMap<String, Target>,
    refs: &mut Vec<Ref>,
    (tag_start, tag_end, end_start, end): (usize, usize, usize, usize),
    id: Option<String>,
    href: Option<String>,
    name: String,
    attrs: Vec<(String, String)>,
    top_level: bool,
) {
    if let Some(id) = href {
        let attrs = attrs.into_iter().filter(|(k, _)| k != "href").collect();
        refs.push(Ref { span: (tag_start, end), name, attrs, id });
        return;
    }
    if let Some(id) = id {
        // `root` (soapenc:root="0") only marks serialization roots; it does not travel.
        let attrs = attrs.into_iter().filter(|(k, _)| k != "id" && !k.ends_with(":root") && k != "root").collect();
        let top_level = top_level.then_some((tag_start, end));
        targets.insert(id, Target { content: (tag_end, end_start), attrs, top_level });
    }
}

struct Expander<'a> {
    text: &'a str,
    targets: &'a HashMap<String, Target>,
    refs: &'a [Ref],
    limit: usize,
    stack: Vec<&'a str>,
}

impl<'a> Expander<'a> {
    /// Copies `range` of the text, inlining references in it and leaving out `cuts`.
    fn emit(&mut self, range: (usize, usize), cuts: &[(usize, usize)], out: &mut String) -> Result<(), MultirefError> {
        if self.stack.len() > MAX_CHAIN {
            return Err(MultirefError::Graph(format!("multiRef references chain deeper than {MAX_CHAIN} levels")));
        }
        let mut pos = range.0;
        // References are sorted by position: only those inside the range are looked at.
        let first = self.refs.partition_point(|r| r.span.0 < range.0);
        let inside = self.refs[first..].iter().take_while(|r| r.span.0 < range.1).filter(|r| r.span.1 <= range.1);
        let mut spans: Vec<(usize, usize, Option<&'a Ref>)> = inside.map(|r| (r.span.0, r.span.1, Some(r))).collect();
        spans.extend(cuts.iter().filter(|c| c.0 >= range.0 && c.1 <= range.1).map(|c| (c.0, c.1, None)));
        spans.sort_by_key(|s| s.0);
        for (start, end, r) in spans {
            if start < pos {
                continue; // inside a span already replaced or cut
            }
            out.push_str(self.text.get(pos..start).ok_or_else(off_boundary)?);
            pos = end;
            let Some(r) = r else { continue };
            let target = self
                .targets
                .get(&r.id)
                .ok_or_else(|| MultirefError::Graph(format!("href=\"#{}\" points at no element", r.id)))?;
            if self.stack.contains(&r.id.as_str()) {
                return Err(MultirefError::Graph(format!("the multiRef graph is cyclic at id {:?}", r.id)));
            }
            out.push('<');
            out.push_str(&r.name);
            for (k, v) in
                r.attrs.iter().chain(target.attrs.iter().filter(|(k, _)| !r.attrs.iter().any(|(rk, _)| rk == k)))
            {
                out.push_str(&format!(" {k}=\"{v}\""));
            }
            out.push('>');
            self.stack.push(&r.id);
            self.emit(target.content, &[], out)?;
            self.stack.pop();
            out.push_str("</");
            out.push_str(&r.name);
            out.push('>');
            if out.len() > self.limit {
                return Err(MultirefError::Graph(
                    "multiRef references expand the response beyond its bound (shared too often?)".into(),
                ));
            }
        }
        out.push_str(self.text.get(pos..range.1).ok_or_else(off_boundary)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{MultirefError, inline};

    #[test]
    fn references_are_inlined_and_targets_leave_the_body() {
        let xml = r##"<e:Envelope xmlns:e="urn:env"><e:Body><r:getResponse xmlns:r="urn:r"><return href="#id0"/><n>1</n></r:getResponse><multiRef id="id0" e:root="0" xmlns:ns2="urn:t" t="ns2:Item"><name>pump</name><part href="#id1"/><again href="#id1"/></multiRef><multiRef id="id1"><no>7</no></multiRef></e:Body></e:Envelope>"##;
        let out = inline(xml).expect("inlines").expect("had refs");
        assert_eq!(
            out,
            r##"<e:Envelope xmlns:e="urn:env"><e:Body><r:getResponse xmlns:r="urn:r"><return xmlns:ns2="urn:t" t="ns2:Item"><name>pump</name><part><no>7</no></part><again><no>7</no></again></return><n>1</n></r:getResponse></e:Body></e:Envelope>"##
        );
        assert_eq!(inline("<a><b/></a>").expect("fine"), None);
    }

    #[test]
    fn cycles_dangling_references_and_blowups_are_errors() {
        let cyclic =
            r##"<E><Body><r><x href="#a"/></r><m id="a"><y href="#b"/></m><m id="b"><z href="#a"/></m></Body></E>"##;
        assert!(matches!(inline(cyclic), Err(MultirefError::Graph(m)) if m.contains("cyclic")));
        let dangling = r##"<E><Body><r><x href="#nope"/></r></Body></E>"##;
        assert!(matches!(inline(dangling), Err(MultirefError::Graph(m)) if m.contains("#nope")));
        // A chain deeper than the decoder would follow.
        let mut chain = String::from(r##"<E><Body><r><x href="#c0"/></r>"##);
        for i in 0..100 {
            chain.push_str(&format!(r##"<m id="c{i}"><a href="#c{n}"/></m>"##, n = i + 1));
        }
        chain.push_str(r##"<m id="c100">end</m></Body></E>"##);
        assert!(matches!(inline(&chain), Err(MultirefError::Graph(m)) if m.contains("deeper than")));
        // Each level references the next twice: 2^30 copies if expanded.
        let mut bomb = String::from(r##"<E><Body><r><x href="#l0"/></r>"##);
        for i in 0..30 {
            bomb.push_str(&format!(r##"<m id="l{i}"><a href="#l{n}"/><b href="#l{n}"/></m>"##, n = i + 1));
        }
        bomb.push_str(r##"<m id="l30">payload payload payload payload</m></Body></E>"##);
        assert!(matches!(inline(&bomb), Err(MultirefError::Graph(m)) if m.contains("beyond its bound")));
        assert!(matches!(inline(r##"<E><x href="#a"></E>"##), Err(MultirefError::Malformed(_))), "not well-formed");
    }
}
