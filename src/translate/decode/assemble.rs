//! Putting an object together when its children did not arrive in schema order (or an
//! element repeats): the entries kept while reading, reordered and written at the end tag.

use std::borrow::Cow;

use serde_json::Value;

use crate::schema::{ComplexType, SIMPLE_CONTENT_KEY, TYPE_KEY};

use super::*;

/// Where a key's value comes from when an element's object is put together.
#[derive(Clone, Copy)]
pub(super) enum Source<'s> {
    /// JSON text in the output, from..to.
    Text(usize, usize),
    /// An array of the values `fields[from..to]`.
    Items(usize, usize),
    /// A string from the schema (the `xsi:type` name).
    Str(&'s str),
    /// Undeclared content: the decoder's `extras[i]`.
    Extra(usize),
    Null,
}

/// An object's entries as they are gathered: a key seen again replaces the value in its
/// first place (as inserting into a map would), or is ignored (`keep_first`). Past a few
/// dozen keys an index replaces the linear search.
pub(super) struct Entries<'s, V> {
    pub(super) list: Vec<(Key<'s>, V)>,
    pub(super) index: Option<std::collections::HashMap<Box<str>, usize>>,
}

impl<'s, V> Entries<'s, V> {
    pub(super) const LINEAR: usize = 32;

    pub(super) fn with_capacity(n: usize) -> Self {
        Entries { list: Vec::with_capacity(n), index: None }
    }

    pub(super) fn position(&self, k: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(k).copied(),
            None => self.list.iter().position(|(have, _)| have.len() == k.len() && have == k),
        }
    }

    pub(super) fn put(&mut self, k: Key<'s>, v: V, keep_first: bool) {
        match self.position(&k) {
            Some(_) if keep_first => {}
            Some(i) => self.list[i].1 = v,
            None => {
                if let Some(index) = &mut self.index {
                    index.insert(k.as_ref().into(), self.list.len());
                } else if self.list.len() == Self::LINEAR {
                    let mut index: std::collections::HashMap<Box<str>, usize> =
                        self.list.iter().enumerate().map(|(i, (k, _))| (k.as_ref().into(), i)).collect();
                    index.insert(k.as_ref().into(), self.list.len());
                    self.index = Some(index);
                }
                self.list.push((k, v));
            }
        }
    }

    pub(super) fn take(&mut self, k: &str) -> Option<V> {
        self.position(k).map(|i| self.list.swap_remove(i).1)
    }

    /// Empties it for the next element, keeping the allocation.
    pub(super) fn clear(&mut self) {
        self.list.clear();
        self.index = None;
    }
}

impl<'x, 's> Decoder<'x, 's> {
    /// Before field `field` of the element being read is written: its key, when the object
    /// is written in place; when it comes out of order, the object goes to `assemble`.
    pub(super) fn enter_in_place(&mut self, ct: &ComplexType, no: &mut FieldNo, field: usize) {
        if let Some(object) = &mut no.in_place
            && !object.enter(field, ct, &mut self.out)
        {
            no.in_place = None;
        }
    }

    /// Records that field `no` of the complex element being read was written from `from` on.
    pub(super) fn written(&mut self, no: usize, from: usize) {
        self.fields.push(Field { no, start: from, end: self.out.len() });
    }

    /// Replaces the fields a complex element wrote from `start` (`self.fields[base..]`, in
    /// document order) by its object: keys in schema order whatever the document's order,
    /// a repeated element's last value in its first place, arrays even when empty, and
    /// undeclared content after the declared. With a `select` path, by the value at it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn assemble(
        &mut self,
        ct: &'s ComplexType,
        no: &FieldNo,
        start: usize,
        base: usize,
        select: &[String],
        substituted: Option<&'s str>,
        extras: &[(String, Value)],
    ) {
        // Stable, and linear when the document's order is the schema's (as it nearly always is).
        self.fields[base..].sort_by_key(|f| f.no);
        let entries = &mut self.entries;
        entries.clear();
        // Anything under the selected key that was not decoded down the path.
        let whole = |key: &str, v: Source<'s>| if goes_below(select, key) { Source::Null } else { v };
        // The fields numbered `n`, as a range of `self.fields`; they come in order of number.
        let mut at = base;
        let fields = &self.fields;
        let mut run = |n: usize| {
            let from = at;
            while fields.get(at).is_some_and(|f| f.no == n) {
                at += 1;
            }
            (from, at)
        };
        let last =
            |(from, to): (usize, usize)| (to > from).then(|| Source::Text(fields[to - 1].start, fields[to - 1].end));
        // Keys that cannot repeat are appended; the rest replace a value of the same key.
        let distinct = ct.distinct_keys;
        let mut put = |k: Key<'s>, v: Source<'s>| {
            if distinct { entries.list.push((k, v)) } else { entries.put(k, v, false) }
        };
        if let Some(name) = substituted {
            put(TYPE_KEY.into(), whole(TYPE_KEY, Source::Str(name)));
        }
        for (i, a) in ct.attributes.iter().enumerate() {
            if let Some(v) = last(run(no.attribute(i))) {
                put(a.json_name.as_str().into(), whole(&a.json_name, v));
            }
        }
        if ct.simple_content.is_some()
            && let Some(v) = last(run(no.simple_content()))
        {
            put(SIMPLE_CONTENT_KEY.into(), whole(SIMPLE_CONTENT_KEY, v));
        }
        for (i, c) in ct.children.iter().enumerate() {
            let (from, to) = run(no.child(i));
            if c.is_array() {
                put(c.json_name.as_str().into(), whole(&c.json_name, Source::Items(from, to)));
            } else if let Some(v) = last((from, to)) {
                put(c.json_name.as_str().into(), v);
            }
        }
        for (i, (k, _)) in extras.iter().enumerate() {
            // A declared field always wins over an undeclared one of the same key.
            entries.put(Cow::Owned(k.clone()), Source::Extra(i), true);
        }
        // The object is written after the fields, then moved down over them.
        let tail = self.out.len();
        let (out, fields) = (&mut self.out, &self.fields);
        let write = |out: &mut Vec<u8>, v: Source<'s>, path: &[String]| match v {
            Source::Text(from, to) => out.extend_from_within(from..to),
            Source::Items(from, to) => {
                out.push(b'[');
                for (i, f) in fields[from..to].iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_within(f.start..f.end);
                }
                out.push(b']');
            }
            Source::Str(s) => write_string(out, s),
            Source::Extra(i) => write_untyped(out, &extras[i].1, path),
            Source::Null => out.extend_from_slice(b"null"),
        };
        match select.split_first() {
            None => {
                out.push(b'{');
                for (i, (k, v)) in entries.list.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(out, k);
                    out.push(b':');
                    write(out, *v, &[]);
                }
                out.push(b'}');
            }
            Some((key, path)) => write(out, entries.take(key).unwrap_or(Source::Null), path),
        }
        out.copy_within(tail.., start);
        out.truncate(start + (out.len() - tail));
        self.fields.truncate(base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same puts, and what they leave, whether the keys are searched or indexed.
    #[test]
    fn entries_replace_in_place_or_keep_the_first_below_and_above_the_index_threshold() {
        for n in [3, Entries::<u32>::LINEAR + 5] {
            let mut e = Entries::with_capacity(n);
            for i in 0..n {
                e.put(format!("k{i}").into(), 0, false);
            }
            e.put("k1".into(), 1, false); // a later declared field: replaces, same place
            e.put("k2".into(), 2, true); // an undeclared one of a declared name: ignored
            e.put("extra".into(), 3, true);
            e.put("extra".into(), 4, true);
            let keys: Vec<&str> = e.list.iter().map(|(k, _)| k.as_ref()).collect();
            assert_eq!(keys.len(), n + 1, "n = {n}: {keys:?}");
            assert_eq!((keys[1], keys[n]), ("k1", "extra"), "n = {n}");
            assert_eq!(e.list[1].1, 1, "n = {n}");
            assert_eq!(e.list[2].1, 0, "n = {n}");
            assert_eq!(e.position("extra"), Some(n), "n = {n}");
            assert_eq!(e.take("extra"), Some(3), "n = {n}");
        }
    }
}
