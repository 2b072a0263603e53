//! Where each key of a YAML file is: the parser's own marks, indexed by key path, so a
//! problem found while compiling names the line of the key it is about (not the first line
//! that happens to contain the same text, such as a comment).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Key path → 1-based line. A path is the mapping keys and sequence indexes from the
/// document root: `["backends", "erp", "timeout"]`, `["routes", "3", "operation"]`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Marks(HashMap<Vec<String>, usize>);

enum Frame {
    Map { path: Vec<String>, key: Option<String> },
    Seq { path: Vec<String>, index: usize },
}

#[derive(Default)]
struct Collect {
    stack: Vec<Frame>,
    marks: HashMap<Vec<String>, usize>,
}

impl Collect {
    /// The path of the node that starts now, recording where it is; `None` for a mapping
    /// key (recorded when the key is read).
    fn node_path(&mut self, line: usize) -> Option<Vec<String>> {
        match self.stack.last_mut() {
            None => Some(Vec::new()),
            Some(Frame::Map { key: None, .. }) => None,
            Some(Frame::Map { path, key: Some(k) }) => {
                let mut p = path.clone();
                p.push(std::mem::take(k));
                Some(p)
            }
            Some(Frame::Seq { path, index }) => {
                let mut p = path.clone();
                p.push(index.to_string());
                *index += 1;
                self.marks.entry(p.clone()).or_insert(line);
                Some(p)
            }
        }
    }

    /// A mapping's value is done: the next scalar is a key again.
    fn value_done(&mut self) {
        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
            *key = None;
        }
    }
}

impl MarkedEventReceiver for Collect {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { path, key: key @ None }) = self.stack.last_mut() {
                    let mut p = path.clone();
                    p.push(value.to_string());
                    self.marks.entry(p).or_insert(line);
                    *key = Some(value.to_string());
                    return;
                }
                let _ = self.node_path(line);
                self.value_done();
            }
            Event::Alias(_) => {
                let _ = self.node_path(line);
                self.value_done();
            }
            Event::MappingStart(..) => {
                // A mapping used as a key has no path of its own; its keys are still read.
                let path = self.node_path(line).unwrap_or_default();
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.node_path(line).unwrap_or_default();
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            _ => {}
        }
    }
}

impl Marks {
    /// The marks of `text`; empty when it does not parse (the deserializer reports that).
    pub(crate) fn of(text: &str) -> Marks {
        let mut collect = Collect::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut collect, false).is_err() {
            return Marks::default();
        }
        Marks(collect.marks)
    }

    /// The line of `path`, else of its nearest ancestor that is in the file (a missing
    /// key is blamed on the section that should hold it).
    pub(crate) fn line(&self, path: &[&str]) -> Option<usize> {
        (0..=path.len()).rev().find_map(|n| {
            let key: Vec<String> = path[..n].iter().map(|s| s.to_string()).collect();
            self.0.get(&key).copied()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Marks;

    const TEXT: &str = r#"# a comment naming url: and timeout:
backends:
  erp:
    # set the URL (or url_env: ERP_URL)
    url: "http://x"
    connect_timeout: 2s
    timeout: 10s
    faults:
      - { code: Client, status: 404 }
      - code: Server
        status: 502
routes:
  - route: "GET /a"
    backend: erp
"#;

    #[test]
    fn keys_and_items_have_the_lines_they_are_on() {
        let m = Marks::of(TEXT);
        assert_eq!(m.line(&["backends", "erp", "url"]), Some(5));
        assert_eq!(m.line(&["backends", "erp", "timeout"]), Some(7));
        assert_eq!(m.line(&["backends", "erp", "connect_timeout"]), Some(6));
        assert_eq!(m.line(&["backends", "erp", "faults", "0", "status"]), Some(9));
        assert_eq!(m.line(&["backends", "erp", "faults", "1"]), Some(10));
        assert_eq!(m.line(&["backends", "erp", "faults", "1", "status"]), Some(11));
        assert_eq!(m.line(&["routes", "0", "backend"]), Some(14));
    }

    #[test]
    fn a_missing_key_is_blamed_on_its_section() {
        let m = Marks::of(TEXT);
        assert_eq!(m.line(&["backends", "erp", "url_env"]), Some(3));
        assert_eq!(m.line(&["server", "listen"]), None);
        assert_eq!(Marks::of("a: [unclosed").line(&["a"]), None);
    }
}
