//! Text-level XML helpers shared by the decoders: character encodings, references, escaping.

use std::borrow::Cow;

use encoding_rs::Encoding;
use quick_xml::events::BytesRef;

/// Returns the document as UTF-8, transcoding from the encoding its BOM or XML declaration
/// names (ERPs still send ISO-8859-1 and windows-1252).
pub(crate) fn to_utf8(bytes: &[u8]) -> Result<Cow<'_, str>, String> {
    let (encoding, body) = match Encoding::for_bom(bytes) {
        Some((enc, bom_len)) => (enc, &bytes[bom_len..]),
        None => (declared_encoding(bytes)?.unwrap_or(encoding_rs::UTF_8), bytes),
    };
    if (encoding == encoding_rs::UTF_16LE || encoding == encoding_rs::UTF_16BE) && body.starts_with(b"<?xml") {
        // UTF-16 text cannot start with the single-byte "<?xml"; the declaration is wrong.
        return Err("the XML declaration says UTF-16, but the document is written in a single-byte encoding".into());
    }
    if encoding == encoding_rs::UTF_8 {
        return std::str::from_utf8(body)
            .map(Cow::Borrowed)
            .map_err(|e| format!("the document is not valid UTF-8 (byte {})", e.valid_up_to()));
    }
    let (text, _, had_errors) = encoding.decode(body);
    if had_errors {
        return Err(format!("the document is not valid {}", encoding.name()));
    }
    Ok(text)
}

/// The `encoding="…"` of an XML declaration, if any. Read as bytes: it runs on every
/// response, and nearly every one says UTF-8 or nothing.
fn declared_encoding(bytes: &[u8]) -> Result<Option<&'static Encoding>, String> {
    if !bytes.starts_with(b"<?xml") {
        return Ok(None);
    }
    let head = &bytes[..bytes.len().min(256)];
    let decl = &head[..head.iter().position(|&b| b == b'>').unwrap_or(0)];
    let Some(pos) = decl.windows(8).position(|w| w == b"encoding") else {
        return Ok(None);
    };
    let rest = decl[pos + 8..].trim_ascii_start();
    let rest = rest[rest.iter().take_while(|&&b| b == b'=').count()..].trim_ascii_start();
    let Some((&quote, rest)) = rest.split_first().filter(|(q, _)| matches!(q, b'"' | b'\'')) else {
        return Ok(None);
    };
    let label = rest.split(|&b| b == quote).next().unwrap_or_default();
    if label.eq_ignore_ascii_case(b"utf-8") {
        return Ok(Some(encoding_rs::UTF_8));
    }
    Encoding::for_label(label).map(Some).ok_or_else(|| {
        format!("unknown character encoding {:?} in the XML declaration", String::from_utf8_lossy(label))
    })
}

/// Resolves `&amp;`-style and `&#…;` references. Only the five predefined entities exist:
/// there is no DTD, so nothing can expand into more text.
pub fn resolve_ref(r: &BytesRef<'_>) -> Result<char, String> {
    if r.is_char_ref() {
        return match r.resolve_char_ref() {
            Ok(Some(c)) => Ok(c),
            _ => Err(format!("invalid character reference &{};", r.xml10_content())),
        };
    }
    match r.xml10_content().as_ref() {
        "amp" => Ok('&'),
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "quot" => Ok('"'),
        "apos" => Ok('\''),
        other => Err(format!("undefined entity &{other};")),
    }
}

/// Appends `text` to `out` escaped for element content or a double-quoted attribute.
pub(crate) fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // CR would be normalised away by the receiver's parser; keep it as a reference.
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
}

/// True for characters XML 1.0 can carry at all (control characters other than tab, LF, CR
/// cannot be sent, not even escaped).
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn check_attributes(start: &quick_xml::events::BytesStart<'_>) -> Result<(), String> {
    for a in start.attributes() {
        let a = a.map_err(|e| format!("not well-formed XML: {e}"))?;
        if a.value.contains('<') {
            return Err("not well-formed XML: '<' in an attribute value".into());
        }
        a.normalized_value(quick_xml::XmlVersion::Implicit1_0).map_err(|e| format!("not well-formed XML: {e}"))?;
    }
    Ok(())
}

/// Checks that client-supplied raw XML (`xsd:any` content) is a sequence of well-formed
/// elements that can be spliced into an envelope: balanced, no declaration, DOCTYPE or
/// processing instruction, no text outside elements, only predefined entities.
pub fn check_fragment(xml: &str) -> Result<(), String> {
    use quick_xml::events::Event;
    if let Some(bad) = xml.chars().find(|c| !is_xml_char(*c)) {
        return Err(format!("contains the character U+{:04X}, which XML cannot carry", bad as u32));
    }
    let mut r = quick_xml::reader::Reader::from_str(xml);
    let mut depth = 0usize;
    loop {
        match r.read_event().map_err(|e| format!("not well-formed XML at byte {}: {e}", r.error_position()))? {
            Event::Start(s) => {
                check_attributes(&s)?;
                depth += 1;
            }
            Event::Empty(s) => check_attributes(&s)?,
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Comment(_) => {}
            Event::Text(t) if depth == 0 && !t.xml10_content().trim().is_empty() => {
                return Err("text outside an element; give XML elements".into());
            }
            Event::CData(_) if depth == 0 => return Err("CDATA outside an element; give XML elements".into()),
            Event::Text(_) | Event::CData(_) => {}
            Event::GeneralRef(_) if depth == 0 => return Err("text outside an element; give XML elements".into()),
            Event::GeneralRef(g) => {
                resolve_ref(&g)?;
            }
            Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {
                return Err("XML declarations, processing instructions and DOCTYPEs are not allowed here".into());
            }
            Event::Eof if depth == 0 => return Ok(()),
            Event::Eof => return Err("an element is not closed".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_must_be_balanced_elements() {
        assert!(check_fragment(r#"<a x="1">t&amp;<b/></a><c/>"#).is_ok());
        assert!(check_fragment("").is_ok());
        for bad in [
            "<a>",
            "</a>",
            "text",
            "&lt;",
            "<a></b>",
            "<!DOCTYPE a><a/>",
            "<?pi x?><a/>",
            "<a>&bomb;</a>",
            "<a x='1' x='2'/>",
            "<a x='<'/>",
            "<a>\u{0}</a>",
        ] {
            assert!(check_fragment(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn latin1_declaration_is_transcoded() {
        let bytes = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>M\xfcller</a>";
        assert_eq!(
            to_utf8(bytes).expect("latin-1 decodes").as_ref(),
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>Müller</a>"
        );
    }

    #[test]
    fn declared_encodings_are_read_in_every_form() {
        let utf8 = Some(encoding_rs::UTF_8);
        let latin1 = Encoding::for_label(b"iso-8859-1");
        for (decl, expected) in [
            (&b"<?xml version=\"1.0\" encoding=\"utf-8\"?><a/>"[..], utf8),
            (b"<?xml version='1.0' encoding='UTF-8'?><a/>", utf8),
            (b"<?xml version=\"1.0\" encoding = \"ISO-8859-1\" ?><a/>", latin1),
            (b"<?xml version=\"1.0\" encoding==\"windows-1252\"?><a/>", Encoding::for_label(b"windows-1252")),
            (b"<?xml version=\"1.0\"?><a encoding=\"latin1\"/>", None),
            (b"<?xml version=\"1.0\" encoding=utf-8?><a/>", None),
            // Unterminated: not read here; the XML reader reports the document.
            (b"<?xml version=\"1.0\" encoding=\"latin1\"", None),
            (b"<?xml", None),
            (b"<a encoding=\"latin1\"/>", None),
        ] {
            let shown = String::from_utf8_lossy(decl);
            assert_eq!(declared_encoding(decl).expect("known"), expected, "{shown}");
        }
        let err = declared_encoding(b"<?xml version=\"1.0\" encoding=\"klingon\"?>").expect_err("unknown");
        assert_eq!(err, "unknown character encoding \"klingon\" in the XML declaration");
    }

    #[test]
    fn invalid_utf8_is_an_error_not_a_panic() {
        assert!(to_utf8(b"<a>\xff</a>").is_err());
        assert!(to_utf8(b"<?xml version=\"1.0\" encoding=\"klingon\"?><a/>").is_err());
    }

    #[test]
    fn escaping_turns_markup_into_text() {
        let mut out = String::new();
        escape_into(&mut out, "</No><Admin>1</Admin> & \"q\"");
        assert_eq!(out, "&lt;/No&gt;&lt;Admin&gt;1&lt;/Admin&gt; &amp; &quot;q&quot;");
    }
}
