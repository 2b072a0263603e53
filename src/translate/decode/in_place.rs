//! Writing an object's fields in place: while a complex element's children arrive in schema
//! order, each value is written once, with its key before it, straight into the output.

use std::borrow::Cow;

use serde_json::Value;

use crate::schema::{ComplexType, SIMPLE_CONTENT_KEY, TYPE_KEY};

/// Writes `s` as a JSON string, as serde_json writes it. Keys and most values have nothing
/// to escape (serde_json escapes quotes, backslashes and control characters only) and are
/// copied between quotes.
pub(super) fn write_string(out: &mut Vec<u8>, s: &str) {
    // Without an early exit, so that the check runs wide over longer text.
    if s.bytes().fold(true, |plain, b| plain & (b >= 0x20) & (b != b'"') & (b != b'\\')) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a `str` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Writes an untyped value (`xsd:any` read as a tree), or the value at `path` within it.
pub(super) fn write_untyped(out: &mut Vec<u8>, v: &Value, path: &[String]) {
    let v = path.iter().try_fold(v, |v, k| v.get(k)).unwrap_or(&Value::Null);
    // Writing a `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

pub(super) type Key<'s> = Cow<'s, str>;

/// One value of a complex element being read, written to the decoder's output: which of
/// the element's fields it is (see [`FieldNo`]) and where its JSON text lies.
#[derive(Clone, Copy)]
pub(super) struct Field {
    pub(super) no: usize,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// Numbers a complex type's fields in the order their keys are written: the attributes,
/// the simple content, then the children (an `xsi:type` name goes first, from the schema).
pub(super) struct FieldNo {
    pub(super) attributes: usize,
    /// Where the last child was found in the schema's list, where the next is looked for first.
    pub(super) last_child: usize,
    /// The object being written in place, while its fields come in the schema's order.
    pub(super) in_place: Option<InPlace>,
}

impl FieldNo {
    pub(super) fn attribute(&self, i: usize) -> usize {
        i
    }
    pub(super) fn simple_content(&self) -> usize {
        self.attributes
    }
    pub(super) fn child(&self, i: usize) -> usize {
        self.attributes + 1 + i
    }
}

/// An object written as its fields come, with keys and separators before each value: when
/// the document gives them in the schema's order, as nearly every one does, the object is
/// finished at its end tag without being put together and moved. Fields are numbered as in
/// [`FieldNo`] (attributes, simple content, children); a field before the last one written,
/// or a single element repeated, hands the object to [`Decoder::assemble`], which puts it
/// together from the recorded fields over what was written in place. The text is the same
/// either way.
pub(super) struct InPlace {
    /// The field number the next new field must be at or after.
    pub(super) next: usize,
    /// The array (a field number) whose items are being written, if its `[` is open.
    pub(super) open_array: Option<usize>,
    /// Keys written so far.
    pub(super) keys: usize,
}

impl InPlace {
    /// Whether an element of `ct` (read down `select`) is written in place: its keys must all
    /// differ and come from the schema alone (no `xsd:any`), with no path into it, and the
    /// simple content of a type that has it is its only text.
    pub(super) fn applies(ct: &ComplexType, select: &[String]) -> bool {
        #[cfg(test)]
        if super::tests::ASSEMBLE_ONLY.get() {
            return false;
        }
        ct.distinct_keys && !ct.open && select.is_empty() && (ct.simple_content.is_none() || ct.children.is_empty())
    }

    /// Opens the object, with the `xsi:type` name first when the element names a subtype.
    pub(super) fn start(out: &mut Vec<u8>, substituted: Option<&str>) -> Self {
        out.push(b'{');
        let mut object = InPlace { next: 0, open_array: None, keys: 0 };
        if let Some(name) = substituted {
            object.key(TYPE_KEY, out);
            write_string(out, name);
        }
        object
    }

    /// Writes what goes before the value of field `no`: another item of the open array, or
    /// the key (and absent arrays' `[]` before it). `false` when the field comes before one
    /// already written or repeats a single element, which only `assemble` can place.
    pub(super) fn enter(&mut self, no: usize, ct: &ComplexType, out: &mut Vec<u8>) -> bool {
        if self.open_array == Some(no) {
            out.push(b',');
            return true;
        }
        if no < self.next {
            return false;
        }
        self.close_array(out);
        self.absent_arrays(ct, self.next..no, out);
        let (key, array) = field(ct, no);
        self.key(key, out);
        if array {
            out.push(b'[');
            self.open_array = Some(no);
        }
        self.next = no + 1;
        true
    }

    /// Closes the object at the element's end tag.
    pub(super) fn finish(mut self, ct: &ComplexType, out: &mut Vec<u8>) {
        self.close_array(out);
        self.absent_arrays(ct, self.next..usize::MAX, out);
        out.push(b'}');
    }

    pub(super) fn key(&mut self, key: &str, out: &mut Vec<u8>) {
        if self.keys > 0 {
            out.push(b',');
        }
        self.keys += 1;
        write_string(out, key);
        out.push(b':');
    }

    pub(super) fn close_array(&mut self, out: &mut Vec<u8>) {
        if self.open_array.take().is_some() {
            out.push(b']');
        }
    }

    /// Arrays are written even when empty: those among the fields numbered `skipped`.
    pub(super) fn absent_arrays(&mut self, ct: &ComplexType, skipped: std::ops::Range<usize>, out: &mut Vec<u8>) {
        if skipped.is_empty() {
            return; // the next field, as nearly always
        }
        let first_child = ct.attributes.len() + 1;
        let from = skipped.start.saturating_sub(first_child).min(ct.children.len());
        let to = skipped.end.saturating_sub(first_child).min(ct.children.len());
        for c in ct.children[from..to.max(from)].iter().filter(|c| c.is_array()) {
            self.key(&c.json_name, out);
            out.extend_from_slice(b"[]");
        }
    }
}

/// The JSON key of field `no` of `ct` (numbered as in [`FieldNo`]) and whether it is an array.
pub(super) fn field(ct: &ComplexType, no: usize) -> (&str, bool) {
    let attributes = ct.attributes.len();
    match no.checked_sub(attributes + 1) {
        Some(i) => ct.children.get(i).map_or(("", false), |c| (c.json_name.as_str(), c.is_array())),
        None if no == attributes => (SIMPLE_CONTENT_KEY, false),
        None => (ct.attributes[no].json_name.as_str(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings are written as serde_json writes them, whether or not they need escaping.
    #[test]
    fn quoted_strings_are_what_serde_json_writes() {
        for s in
            ["plain", "", "quote \" inside", "back\\slash", "tab\there", "nul\u{0}", "Ø 622 mm", "\u{7f}del", "\u{1f}"]
        {
            let mut out = Vec::new();
            write_string(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).expect("json"), "{s:?}");
        }
    }
}
