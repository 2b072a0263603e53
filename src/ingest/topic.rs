//! MQTT topic templates: `factory/{plant}/{machine}/{sensor}` subscribes to
//! `factory/+/+/+` and names each level a message arrives on.

/// A compiled topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    text: String,
    levels: Vec<Level>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Named(String),
    /// A trailing `#`: any number of further levels, unnamed.
    Rest,
}

impl TopicTemplate {
    /// Parses a template; the error says what to write instead.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a topic template is empty; write e.g. factory/{plant}/{machine}/{sensor}".into());
        }
        if text.starts_with('$') {
            return Err(format!(
                "topic {text:?}: $-topics are the broker's; shared subscriptions come from mqtt.share"
            ));
        }
        let parts: Vec<&str> = text.split('/').collect();
        let mut levels = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let named = match crate::placeholder::whole(part) {
                Ok(crate::placeholder::Whole::Var(name)) => Some(name),
                _ => None,
            };
            let level = if let Some(name) = named {
                let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(format!(
                        "topic {text:?}: level {part:?} is not a name; write {{machine}} (letters, digits, _)"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!("topic {text:?}: {{{name}}} is named twice"));
                }
                names.push(name);
                Level::Named(name.to_string())
            } else if *part == "#" && i + 1 == parts.len() {
                Level::Rest
            } else if part.contains(['{', '}', '+', '#']) {
                return Err(format!(
                    "topic {text:?}: level {part:?} mixes text with a placeholder or wildcard; a level is \
                     either text, {{name}}, + (write {{name}} to use it) or a final #"
                ));
            } else {
                Level::Literal(part.to_string())
            };
            levels.push(level);
        }
        Ok(TopicTemplate { text: text.to_string(), levels })
    }

    /// The template as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The MQTT topic filter to subscribe to.
    pub fn filter(&self) -> String {
        self.levels
            .iter()
            .map(|l| match l {
                Level::Literal(s) => s.as_str(),
                Level::Named(_) => "+",
                Level::Rest => "#",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Does it name a level `name`?
    pub fn names(&self, name: &str) -> bool {
        self.levels.iter().any(|l| matches!(l, Level::Named(n) if n == name))
    }

    /// The named levels of `topic`, or `None` when it does not fit the template.
    pub fn capture(&self, topic: &str) -> Option<Vec<(String, String)>> {
        let parts: Vec<&str> = topic.split('/').collect();
        let mut out = Vec::new();
        for (i, level) in self.levels.iter().enumerate() {
            match level {
                Level::Rest => return Some(out),
                Level::Literal(s) => {
                    if parts.get(i) != Some(&s.as_str()) {
                        return None;
                    }
                }
                Level::Named(n) => out.push((n.clone(), parts.get(i)?.to_string())),
            }
        }
        (parts.len() == self.levels.len()).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_subscribe_and_capture() {
        let t = TopicTemplate::parse("factory/{plant}/{machine}/{sensor}").expect("valid");
        assert_eq!(t.filter(), "factory/+/+/+");
        assert_eq!(
            t.capture("factory/P1/PRESS-01/T-100"),
            Some(vec![
                ("plant".into(), "P1".into()),
                ("machine".into(), "PRESS-01".into()),
                ("sensor".into(), "T-100".into())
            ])
        );
        assert_eq!(t.capture("factory/P1/PRESS-01"), None);
        assert_eq!(t.capture("plant/P1/PRESS-01/T-100"), None);
        let rest = TopicTemplate::parse("edge/{machine}/#").expect("valid");
        assert_eq!(rest.filter(), "edge/+/#");
        assert_eq!(rest.capture("edge/M1/a/b"), Some(vec![("machine".into(), "M1".into())]));
    }

    #[test]
    fn bad_templates_say_what_to_write() {
        for bad in ["", "factory/{}/x", "factory/{plant", "a/b{c}/d", "a/+/b", "a/#/b", "a/{x}/{x}", "$SYS/x"] {
            assert!(TopicTemplate::parse(bad).is_err(), "{bad:?} is refused");
        }
    }
}
