//! `{session.NAME}` placeholders in the values a session sends: text with captured values
//! put in, checked against the capture names when the config loads.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::placeholder::Piece;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

/// A string with `{session.NAME}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

impl Template {
    /// Parses `text`; every placeholder must name one of `known` (the capture names).
    /// `{{` and `}}` stand for literal braces.
    pub fn parse(text: &str, known: &[&str]) -> Result<Template, String> {
        let mut parts = Vec::new();
        for piece in crate::placeholder::split(text)? {
            match piece {
                Piece::Text(t) => parts.push(Part::Text(t)),
                Piece::Var(inner) => {
                    let Some(name) = inner.strip_prefix("session.") else {
                        return Err(format!(
                            "{{{inner}}} in {text:?}: a session value can only use {{session.NAME}} (a captured value)"
                        ));
                    };
                    if !known.contains(&name) {
                        return Err(format!(
                            "{{session.{name}}} in {text:?} is not captured; capture: names {}",
                            if known.is_empty() { "nothing".to_string() } else { known.join(", ") }
                        ));
                    }
                    parts.push(Part::Var(name.to_string()));
                }
            }
        }
        Ok(Template(parts))
    }

    /// The text with every placeholder replaced by its value (empty when missing; the
    /// login checks every capture is present).
    pub(crate) fn render(&self, values: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => out.push_str(values.get(v).map_or("", String::as_str)),
            }
        }
        out
    }
}

/// A JSON value whose strings may hold placeholders (a SOAP header's content).
#[derive(Debug, Clone)]
pub enum ValueTemplate {
    /// A string leaf.
    Text(Template),
    /// Any other leaf, as configured.
    Plain(Value),
    /// An array.
    Array(Vec<ValueTemplate>),
    /// An object, keys in config order.
    Object(Vec<(String, ValueTemplate)>),
}

impl ValueTemplate {
    /// Parses every string in `value`.
    pub fn parse(value: &Value, known: &[&str]) -> Result<ValueTemplate, String> {
        Ok(match value {
            Value::String(s) => ValueTemplate::Text(Template::parse(s, known)?),
            Value::Array(items) => {
                ValueTemplate::Array(items.iter().map(|v| Self::parse(v, known)).collect::<Result<_, _>>()?)
            }
            Value::Object(map) => ValueTemplate::Object(
                map.iter().map(|(k, v)| Ok((k.clone(), Self::parse(v, known)?))).collect::<Result<_, String>>()?,
            ),
            other => ValueTemplate::Plain(other.clone()),
        })
    }

    /// The JSON value with captured values put in.
    pub(crate) fn render(&self, values: &BTreeMap<String, String>) -> Value {
        match self {
            ValueTemplate::Text(t) => Value::String(t.render(values)),
            ValueTemplate::Plain(v) => v.clone(),
            ValueTemplate::Array(items) => Value::Array(items.iter().map(|t| t.render(values)).collect()),
            ValueTemplate::Object(fields) => {
                Value::Object(fields.iter().map(|(k, t)| (k.clone(), t.render(values))).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<String, String> {
        BTreeMap::from([("id".to_string(), "S-1".to_string()), ("url".to_string(), "http://h/x".to_string())])
    }

    #[test]
    fn placeholders_are_replaced_and_braces_escaped() {
        let t = Template::parse("B1SESSION={session.id}; {{x}}", &["id"]).expect("parses");
        assert_eq!(t.render(&values()), "B1SESSION=S-1; {x}");
        assert_eq!(Template::parse("{ session.url }", &["url"]).expect("parses").render(&values()), "http://h/x");
        assert_eq!(Template::parse("plain", &[]).expect("parses").render(&values()), "plain");
    }

    #[test]
    fn unknown_or_foreign_placeholders_are_refused() {
        let e = Template::parse("{session.sid}", &["id"]).expect_err("unknown");
        assert!(e.contains("not captured") && e.contains("id"), "{e}");
        let e = Template::parse("{header.x-session}", &["id"]).expect_err("foreign");
        assert!(e.contains("only use {session.NAME}"), "{e}");
        assert!(Template::parse("{session.id", &["id"]).expect_err("open").contains("unclosed"));
        assert!(Template::parse("a}b", &[]).expect_err("close").contains("unmatched"));
    }

    #[test]
    fn json_templates_keep_their_shape() {
        let v = serde_json::json!({"SessionID": "{session.id}", "n": 3, "list": ["{session.url}", true]});
        let t = ValueTemplate::parse(&v, &["id", "url"]).expect("parses");
        assert_eq!(t.render(&values()), serde_json::json!({"SessionID": "S-1", "n": 3, "list": ["http://h/x", true]}));
    }
}
