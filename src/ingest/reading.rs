//! One reading, checked against the data dictionary: a known sensor, a number, a unit that
//! converts to the ERP's, a value in range, a sane timestamp. A reading that fails is
//! rejected with a JSON pointer to what was wrong and a reason a device engineer can act on.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;
use serde_json::{Map, Value};

use super::dictionary::{Dictionary, Sensor};
use super::units::Conversion;

/// A reading that passed every check, its value in the ERP's unit.
#[derive(Debug, Clone)]
pub struct Reading {
    /// The sensor id as sent.
    pub sensor_id: String,
    /// Its dictionary entry.
    pub sensor: Arc<Sensor>,
    /// The value in the ERP's unit, rounded to the entry's decimals.
    pub value: Decimal,
    /// When it was measured.
    pub timestamp: DateTime<Utc>,
    /// The machine, from the reading, its topic or the dictionary.
    pub machine: Option<String>,
    /// Stable identity: the reading's `id`, else its source and time
    /// (`plant=P1/machine=M1/T-100@timestamp`).
    pub key: String,
    /// Any other fields of the reading as sent.
    pub extra: Map<String, Value>,
    /// Named levels of the MQTT topic it arrived on.
    pub topic: Vec<(String, String)>,
}

/// Why a reading was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// JSON pointer into the request body or message.
    pub pointer: String,
    /// What is wrong.
    pub reason: String,
}

impl Rejected {
    /// A rejection at `pointer`.
    pub fn at(pointer: &str, reason: impl Into<String>) -> Self {
        Rejected { pointer: pointer.to_string(), reason: reason.into() }
    }
}

/// What a reading arrives with besides its own fields.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Named levels of its MQTT topic (`sensor`, `machine`, …).
    pub topic: Vec<(String, String)>,
    /// Now, for timestamp checks and readings without one.
    pub now: DateTime<Utc>,
}

impl Context {
    fn topic(&self, name: &str) -> Option<&str> {
        self.topic.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One reading of a payload as sent: its pointer, and its JSON (or why it is not JSON: an
/// NDJSON line can fail alone).
pub type Item = (String, Result<Value, Rejected>);

/// The readings of a payload: a JSON array (each at `/i`), one object, or with `ndjson`
/// one object per line (each at `/i`, i counting lines with content). A bare number is
/// one reading whose sensor the topic names.
pub fn split(bytes: &[u8], ndjson: bool) -> Result<Vec<Item>, Rejected> {
    if ndjson {
        let text = std::str::from_utf8(bytes).map_err(|_| Rejected::at("", "the body is not UTF-8 text"))?;
        return Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(n, line)| {
                let pointer = format!("/{n}");
                let value =
                    serde_json::from_str::<Value>(line).map_err(|e| Rejected::at(&pointer, format!("not JSON: {e}")));
                (pointer, value)
            })
            .collect());
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| Rejected::at("", format!("not JSON: {e}")))?;
    Ok(match value {
        Value::Array(items) => items.into_iter().enumerate().map(|(i, v)| (format!("/{i}"), Ok(v))).collect(),
        Value::Number(n) => {
            let mut m = Map::new();
            m.insert("value".into(), Value::Number(n));
            vec![(String::new(), Ok(Value::Object(m)))]
        }
        other => vec![(String::new(), Ok(other))],
    })
}

/// Checks one reading against the dictionary.
pub fn check(dict: &Dictionary, ctx: &Context, pointer: &str, value: Value) -> Result<Reading, Rejected> {
    let at = |field: &str| format!("{pointer}/{field}");
    let mut fields = match value {
        Value::Object(m) => m,
        other => {
            return Err(Rejected::at(pointer, format!("a reading is a JSON object, not {}", kind(&other))));
        }
    };
    let sensor_id = match take_text(&mut fields, &["sensor", "sensorId"], &at("sensor"))? {
        Some(s) => s,
        None => ctx.topic("sensor").map(str::to_string).ok_or_else(|| {
            Rejected::at(&at("sensor"), "no sensor: send \"sensor\": \"T-100\", or publish on a topic that names it")
        })?,
    };
    let sensor = dict.sensor(&sensor_id).ok_or_else(|| {
        Rejected::at(&at("sensor"), format!("sensor {sensor_id:?} is not in the data dictionary (sensors/*.yaml)"))
    })?;
    let raw = match fields.remove("value") {
        Some(Value::Number(n)) => {
            let text = n.to_string();
            Decimal::from_str(&text)
                .or_else(|_| Decimal::from_scientific(&text))
                .ok()
                // Beyond 28 places (1e-40) the nearest decimal, which may be 0.
                .or_else(|| n.as_f64().filter(|f| f.abs() < 1.0).and_then(Decimal::from_f64))
                .ok_or_else(|| Rejected::at(&at("value"), format!("{text} does not fit a decimal of 28 digits")))?
        }
        Some(other) => return Err(Rejected::at(&at("value"), format!("value must be a number, not {}", kind(&other)))),
        None => return Err(Rejected::at(&at("value"), "no value")),
    };
    // In the device's unit first (the range is written in it), then the ERP's.
    let device = match take_text(&mut fields, &["unit"], &at("unit"))? {
        Some(unit) if unit != sensor.unit => {
            let c = Conversion::between(&unit, &sensor.unit).map_err(|m| Rejected::at(&at("unit"), m))?;
            c.apply(raw, 12).ok_or_else(|| Rejected::at(&at("value"), "the value is too large to convert"))?
        }
        _ => raw,
    };
    if let Some((lo, hi)) = sensor.range
        && (device < lo || device > hi)
    {
        return Err(Rejected::at(
            &at("value"),
            format!("{device} {} is outside the valid range {lo}..{hi} of sensor {sensor_id}", sensor.unit),
        ));
    }
    let value = sensor
        .conversion
        .apply(device, sensor.decimals)
        .ok_or_else(|| Rejected::at(&at("value"), "the value is too large to convert"))?;
    // The first of the three names present is the time; each one present must be a time.
    let mut sent = None;
    for k in ["timestamp", "time", "ts"] {
        let Some(v) = fields.get(k) else { continue };
        let t = parse_time(v).ok_or_else(|| {
            Rejected::at(&at(k), "a timestamp is RFC 3339 text (2026-11-25T08:00:00Z) or epoch milliseconds")
        })?;
        if sent.is_none() {
            fields.remove(k);
            sent = Some(t);
        }
    }
    let stamped = sent.is_some();
    let timestamp = sent.unwrap_or(ctx.now);
    // Saturating: a max_age of centuries must not overflow the clock arithmetic.
    let span = |d: std::time::Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    let oldest = ctx.now.checked_sub_signed(span(dict.settings.max_age)).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let newest = ctx.now.checked_add_signed(span(dict.settings.max_ahead)).unwrap_or(DateTime::<Utc>::MAX_UTC);
    if timestamp < oldest || timestamp > newest {
        return Err(Rejected::at(
            &at("timestamp"),
            format!(
                "{} is not between {} and {}: check the device clock",
                timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
                oldest.to_rfc3339_opts(SecondsFormat::Secs, true),
                newest.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        ));
    }
    let machine = take_text(&mut fields, &["machine", "machineId"], &at("machine"))?
        .or_else(|| ctx.topic("machine").map(str::to_string))
        .or_else(|| sensor.machine.clone());
    let key = match take_text(&mut fields, &["id"], &at("id"))? {
        Some(id) => id,
        None => source_key(&sensor_id, machine.as_deref(), &ctx.topic, timestamp, (!stamped).then_some(pointer)),
    };
    Ok(Reading {
        sensor_id,
        sensor: sensor.clone(),
        value,
        timestamp,
        machine,
        key,
        extra: fields,
        topic: ctx.topic.clone(),
    })
}

/// A reading's key when it has no `id`: everything that names its source (the topic's
/// other named levels such as the plant, the machine, the sensor) and the full-precision
/// time it was measured, so two machines reporting one sensor id in the same second never
/// share a key (an ERP refusing the second as a duplicate would drop it). A reading without
/// a time (stamped on arrival) also carries its place in the payload, so two of one batch
/// never share a key. Each part but the sensor is labelled with its name and every value
/// escaped, so no two sources write the same text (`plant=P1/machine=M1/T-100@…`).
fn source_key(
    sensor: &str,
    machine: Option<&str>,
    topic: &[(String, String)],
    at: DateTime<Utc>,
    unstamped: Option<&str>,
) -> String {
    const RESERVED: &percent_encoding::AsciiSet =
        &percent_encoding::CONTROLS.add(b'%').add(b'/').add(b'@').add(b'#').add(b'=');
    let levels = topic
        .iter()
        .filter(|(name, _)| name != "sensor" && name != "machine")
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(machine.map(|m| ("machine", m)));
    let mut key = String::new();
    for (name, value) in levels {
        key.extend(percent_encoding::utf8_percent_encode(name, RESERVED));
        key.push('=');
        key.extend(percent_encoding::utf8_percent_encode(value, RESERVED));
        key.push('/');
    }
    key.extend(percent_encoding::utf8_percent_encode(sensor, RESERVED));
    key.push('@');
    key.push_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    if let Some(pointer) = unstamped.filter(|p| !p.is_empty()) {
        key.push('#');
        key.push_str(pointer);
    }
    key
}

/// The first of `names` present, as text (taken out of `fields`); every one present must be
/// text of 1 to 200 characters, as the OpenAPI document says, also an alias not used.
fn take_text(fields: &mut Map<String, Value>, names: &[&str], pointer: &str) -> Result<Option<String>, Rejected> {
    for n in names {
        match fields.get(*n) {
            None => {}
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 200 => {
                // Each may reach the ERP (the body template, the raw key), so XML text only.
                if let Some(bad) = s.chars().find(|c| !crate::translate::xmltext::is_xml_char(*c)) {
                    let code = bad as u32;
                    return Err(Rejected::at(pointer, format!("{n} contains U+{code:04X}, which XML cannot carry")));
                }
            }
            Some(Value::String(_)) => {
                return Err(Rejected::at(pointer, format!("{n} must be 1 to 200 characters")));
            }
            Some(other) => return Err(Rejected::at(pointer, format!("{n} must be text, not {}", kind(other)))),
        }
    }
    Ok(names.iter().find_map(|n| match fields.remove(*n) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }))
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc)),
        // An integer, also when written with a zero fraction (`1.7e12`, `5.0`), as JSON Schema counts them.
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18).map(|f| f as i64))
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
        _ => None,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigSource, compile::CompileOptions};
    use serde_json::json;

    /// The sample dictionary (`config/sensors/press-line.yaml`).
    fn dict() -> Arc<Dictionary> {
        crate::config::compile(&ConfigSource::Embedded, &CompileOptions::default()).expect("sample config").sensors
    }

    fn ctx() -> Context {
        Context { topic: Vec::new(), now: "2026-11-25T12:00:00Z".parse().expect("time") }
    }

    #[test]
    fn readings_convert_in_decimal_and_keep_a_stable_key() {
        let d = dict();
        let r = check(&d, &ctx(), "/0", json!({"sensor": "T-100", "value": 212, "timestamp": "2026-11-25T08:00:00Z"}))
            .expect("accepted");
        assert_eq!(r.value.to_string(), "100");
        assert_eq!(r.key, "machine=PRESS-01/T-100@2026-11-25T08:00:00Z", "the machine and sensor at that time");
        assert_eq!(r.machine.as_deref(), Some("PRESS-01"), "the dictionary's machine");
        // Sent in another unit than the sensor's: converted twice, still exact.
        let r = check(&d, &ctx(), "", json!({"sensor": "T-100", "value": 100, "unit": "Cel", "id": "x"})).expect("ok");
        assert_eq!(r.value.to_string(), "100");
        assert_eq!(r.key, "x");
        assert_eq!(r.timestamp, ctx().now, "no timestamp: when it arrived");
        let unstamped = |p: &str| check(&d, &ctx(), p, json!({"sensor": "T-100", "value": 1})).expect("ok").key;
        assert_ne!(unstamped("/0"), unstamped("/1"), "two readings of one batch never share a key");
        assert!(!unstamped("").ends_with('#'), "a reading alone (a bare MQTT number) has no stray mark");
        // Two machines, one sensor id, one second: two keys; the topic's levels count too.
        let at = |machine: &str, topic: &[(&str, &str)]| {
            let ctx = Context { topic: topic.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..ctx() };
            let reading = json!({"sensor": "P-7", "value": 1, "machine": machine, "timestamp": "2026-11-25T08:00:00Z"});
            check(&d, &ctx, "/0", reading).expect("ok").key
        };
        assert_ne!(at("press-1", &[]), at("press-2", &[]));
        assert_eq!(at("press-1", &[]), "machine=press-1/P-7@2026-11-25T08:00:00Z");
        assert_ne!(at("press-1", &[("plant", "P1")]), at("press-1", &[("plant", "P2")]));
        assert_eq!(
            at("press-1", &[("plant", "P1"), ("machine", "press-1")]),
            "plant=P1/machine=press-1/P-7@2026-11-25T08:00:00Z"
        );
        // Labelled: a plant named like a machine is another source.
        assert_ne!(at("P1", &[]), at("P1", &[("plant", "P1")]));
        // Separators inside a value are escaped: no two sources write the same key.
        assert_eq!(at("a/b@c=d", &[]), "machine=a%2Fb%40c%3Dd/P-7@2026-11-25T08:00:00Z");
        let r = check(&d, &ctx(), "", json!({"sensor": "P-7", "value": 14.5, "machine": "PRESS-02"})).expect("ok");
        assert_eq!(r.value.to_string(), "1", "0.99974 bar to 3 decimals, trailing zeros dropped");
        assert_eq!(r.machine.as_deref(), Some("PRESS-02"), "the reading's own machine wins");
        let r = check(&d, &ctx(), "", json!({"sensor": "P-7", "value": 100})).expect("ok");
        assert_eq!(r.value.to_string(), "6.895"); // A number beyond a decimal's 28 places is its nearest decimal, not a refusal.
        let tiny: Value = serde_json::from_str(r#"{"sensor": "P-7", "value": 5e-324}"#).expect("json");
        assert_eq!(check(&d, &ctx(), "", tiny).expect("ok").value.to_string(), "0");
    }

    #[test]
    fn every_rejection_points_at_the_field() {
        let d = dict();
        let cases = [
            (json!({"sensor": "X-1", "value": 1}), "/3/sensor", "not in the data dictionary"),
            (json!({"sensor": "T-100", "value": "hot"}), "/3/value", "must be a number"),
            (json!({"sensor": "T-100"}), "/3/value", "no value"),
            (json!({"sensor": "T-100", "value": 5000}), "/3/value", "outside the valid range"),
            (json!({"sensor": "T-100", "value": 1, "unit": "mm/s"}), "/3/unit", "different things"),
            (json!({"sensor": "T-100", "value": 1, "unit": "[foo]"}), "/3/unit", "not a UCUM unit"),
            (
                json!({"sensor": "T-100", "value": 1, "timestamp": "2025-11-25T08:00:00Z"}),
                "/3/timestamp",
                "device clock",
            ),
            (json!({"sensor": "T-100", "value": 1, "timestamp": "yesterday"}), "/3/timestamp", "RFC 3339"),
            (json!({"sensor": 7, "value": 1}), "/3/sensor", "must be text"),
            (json!({"sensor": "T-100", "sensorId": "", "value": 1}), "/3/sensor", "1 to 200"),
            (json!({"sensor": "T-100", "value": 1, "ts": "soon"}), "/3/ts", "RFC 3339"),
            (json!({"sensor": "T-100", "value": 1, "id": "a\u{1}"}), "/3/id", "U+0001"),
            (json!({"value": 1}), "/3/sensor", "no sensor"),
            (json!([1, 2]), "/3", "a JSON object"),
        ];
        for (reading, pointer, reason) in cases {
            let r = check(&d, &ctx(), "/3", reading.clone()).expect_err("rejected");
            assert_eq!(r.pointer, pointer, "{reading}");
            assert!(r.reason.contains(reason), "{reading}: {}", r.reason);
        }
    }

    #[test]
    fn payloads_split_into_readings() {
        let many = split(br#"[{"a":1},{"b":2}]"#, false).expect("array");
        assert_eq!(many.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["/0", "/1"]);
        let bare = split(b"71.5", false).expect("a bare number");
        assert_eq!(bare[0].1.as_ref().ok(), Some(&json!({"value": 71.5})));
        let lines = split(b"{\"a\":1}\n\nnot json\n{\"b\":2}\n", true).expect("ndjson");
        assert_eq!(lines.len(), 3);
        assert!(lines[1].1.as_ref().is_err_and(|r| r.pointer == "/1" && r.reason.starts_with("not JSON")));
        assert!(split(b"NaN", false).is_err());
    }
}
