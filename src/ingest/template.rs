//! Body templates of the data dictionary: JSON where a string `"{value}"` is replaced by
//! the reading's value (typed: a number stays a number) and `"{machine}-{sensor}"` by
//! text. Names are checked when the config loads, so a typo is a config error, not a
//! reading that silently lacks a field.

use serde_json::{Map, Value};

/// A value a template can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// `{sensor}`: the sensor id.
    Sensor,
    /// `{value}`: the value in the ERP's unit (a JSON number).
    Value,
    /// `{unit}`: the ERP's unit, as the ERP names it.
    Unit,
    /// `{timestamp}`: RFC 3339, UTC.
    Timestamp,
    /// `{quantity}`: what the sensor measures.
    Quantity,
    /// `{machine}`: from the reading, its topic, or the dictionary.
    Machine,
    /// `{shift}`: the shift the reading fell in.
    Shift,
    /// `{shift_date}`: the local date that shift started on.
    ShiftDate,
    /// `{key}`: the reading's id, else `sensor@timestamp`; stable across redeliveries, so
    /// an ERP that refuses duplicate document numbers books a reading once.
    Key,
    /// `{meta.NAME}`: the machine's static metadata.
    Meta(String),
    /// `{topic.NAME}`: a named level of the MQTT topic.
    Topic(String),
    /// `{reading.NAME}`: any other field of the reading as sent.
    Reading(String),
    /// `{lookup.NAME}`: a value looked up from the ERP.
    Lookup(String),
}

impl Var {
    fn parse(name: &str) -> Result<Var, String> {
        let known = match name {
            "sensor" => Var::Sensor,
            "value" => Var::Value,
            "unit" => Var::Unit,
            "timestamp" => Var::Timestamp,
            "quantity" => Var::Quantity,
            "machine" => Var::Machine,
            "shift" => Var::Shift,
            "shift_date" => Var::ShiftDate,
            "key" => Var::Key,
            _ => {
                let (scope, rest) = name.split_once('.').unwrap_or((name, ""));
                if rest.is_empty() {
                    return Err(format!(
                        "{{{name}}} is unknown; write one of {{sensor}}, {{value}}, {{unit}}, {{timestamp}}, \
                         {{quantity}}, {{machine}}, {{shift}}, {{shift_date}}, {{key}}, {{meta.NAME}}, \
                         {{topic.NAME}}, {{reading.NAME}}, {{lookup.NAME}}"
                    ));
                }
                match scope {
                    "meta" => Var::Meta(rest.into()),
                    "topic" => Var::Topic(rest.into()),
                    "reading" => Var::Reading(rest.into()),
                    "lookup" => Var::Lookup(rest.into()),
                    _ => {
                        return Err(format!(
                            "{{{name}}}: {scope}. is unknown; write meta., topic., reading. or lookup."
                        ));
                    }
                }
            }
        };
        Ok(known)
    }
}

/// A compiled template.
#[derive(Debug, Clone)]
pub enum Template {
    /// Used as written.
    Literal(Value),
    /// `"{value}"`: the value itself, typed.
    Var(Var),
    /// `"{machine}-{sensor}"`: text.
    Text(Vec<Piece>),
    /// An object, field by field (a field whose value is missing is left out).
    Object(Vec<(String, Template)>),
    /// An array.
    Array(Vec<Template>),
}

/// Part of a text template.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// A value, as text.
    Var(Var),
}

/// Where a template's values come from.
pub(crate) trait Values {
    /// The value of `var`, or `None` when this reading has none.
    fn get(&self, var: &Var) -> Option<Value>;
}

impl Template {
    /// Compiles a template from the config.
    pub fn compile(value: &Value) -> Result<Template, String> {
        Ok(match value {
            Value::String(s) => Self::text(s)?,
            Value::Object(map) => Template::Object(
                map.iter().map(|(k, v)| Ok((k.clone(), Template::compile(v)?))).collect::<Result<_, String>>()?,
            ),
            Value::Array(items) => Template::Array(items.iter().map(Template::compile).collect::<Result<_, _>>()?),
            other => Template::Literal(other.clone()),
        })
    }

    fn text(s: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        for piece in crate::placeholder::split(s)? {
            pieces.push(match piece {
                crate::placeholder::Piece::Text(t) => Piece::Text(t),
                crate::placeholder::Piece::Var(name) => Piece::Var(Var::parse(name)?),
            });
        }
        Ok(match pieces.as_slice() {
            [Piece::Var(v)] => Template::Var(v.clone()),
            [] => Template::Literal(Value::String(String::new())),
            [Piece::Text(t)] => Template::Literal(Value::String(t.clone())),
            _ => Template::Text(pieces),
        })
    }

    /// Every name the template uses.
    pub(crate) fn vars(&self) -> Vec<&Var> {
        match self {
            Template::Literal(_) => Vec::new(),
            Template::Var(v) => vec![v],
            Template::Text(p) => p.iter().filter_map(|p| if let Piece::Var(v) = p { Some(v) } else { None }).collect(),
            Template::Object(fields) => fields.iter().flat_map(|(_, t)| t.vars()).collect(),
            Template::Array(items) => items.iter().flat_map(Template::vars).collect(),
        }
    }

    /// Fills the template in; `None` when a value it names is missing.
    pub(crate) fn render(&self, values: &dyn Values) -> Option<Value> {
        match self {
            Template::Literal(v) => Some(v.clone()),
            Template::Var(v) => values.get(v),
            Template::Text(pieces) => {
                let mut out = String::new();
                for p in pieces {
                    match p {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Var(v) => match values.get(v)? {
                            Value::String(s) => out.push_str(&s),
                            other => out.push_str(&other.to_string()),
                        },
                    }
                }
                Some(Value::String(out))
            }
            Template::Object(fields) => {
                let mut map = Map::new();
                for (k, t) in fields {
                    if let Some(v) = t.render(values) {
                        map.insert(k.clone(), v);
                    }
                }
                Some(Value::Object(map))
            }
            Template::Array(items) => Some(Value::Array(items.iter().filter_map(|t| t.render(values)).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fixed;
    impl Values for Fixed {
        fn get(&self, var: &Var) -> Option<Value> {
            match var {
                Var::Value => Some(json!(37.5)),
                Var::Sensor => Some(json!("T-100")),
                Var::Meta(k) if k == "line" => Some(json!("L1")),
                _ => None,
            }
        }
    }

    #[test]
    fn templates_fill_typed_values_and_text() {
        let t = Template::compile(&json!({
            "value": "{value}", "id": "{meta.line}-{sensor}", "fixed": 3, "shift": "{shift}", "list": ["{sensor}"]
        }))
        .expect("valid");
        assert_eq!(t.render(&Fixed), Some(json!({"value": 37.5, "id": "L1-T-100", "fixed": 3, "list": ["T-100"]})));
        assert_eq!(t.vars().len(), 5);
    }

    #[test]
    fn unknown_names_are_config_errors() {
        for bad in ["{valeu}", "{meta}", "{foo.bar}", "{sensor"] {
            assert!(Template::compile(&json!(bad)).is_err(), "{bad}");
        }
    }
}
