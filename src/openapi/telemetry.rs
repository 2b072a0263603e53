//! `POST /telemetry` in the OpenAPI document, with the data dictionary it checks against:
//! each sensor (or pattern), what it measures, the unit a device may send, the unit the
//! ERP gets and the valid range.

use serde_json::{Value, json};

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::ingest::dictionary::{Dictionary, Sensor};
use crate::ingest::template::{Template, Var};
use crate::ingest::units::Conversion;
use crate::openapi::schema::XML_TEXT_PATTERN;
use crate::route::Source;
use crate::schema::TypeRef;

/// The path item, or `None` when the dictionary is empty (then the endpoint is not served).
pub(crate) fn path_item(dict: &Dictionary, scheme: Option<&str>) -> Option<Value> {
    if dict.is_empty() {
        return None;
    }
    let mut table = String::from(
        "| sensor | measures | device unit | ERP unit | valid range | route |\n|---|---|---|---|---|---|\n",
    );
    for s in &dict.sensors {
        let range = s.range.map(|(lo, hi)| format!("{lo} … {hi}")).unwrap_or_else(|| "any".into());
        table.push_str(&format!(
            "| `{}` | {} | `{}` | `{}` ({}) | {range} | `{}` |\n",
            s.pattern.text(),
            s.quantity.as_deref().unwrap_or(""),
            s.unit,
            s.conversion.to,
            s.erp_label,
            s.route.id
        ));
    }
    let reading = reading_schema(dict);
    let result = json!({
        "type": "object",
        "properties": {
            "accepted": { "type": "integer" },
            "rejected": { "type": "integer" },
            "failed": { "type": "integer" },
            "readings": { "type": "array", "items": {
                "type": "object",
                "properties": {
                    "pointer": { "type": "string", "description": "JSON pointer to the reading (or the field at fault)." },
                    "status": { "type": "string", "enum": ["queued", "delivered", "rejected", "failed"] },
                    "delivery": { "type": "string", "description": "GET /deliveries/{id} follows it." },
                    "reason": { "type": "string" },
                    "retryable": { "type": "boolean" }
                }
            } }
        }
    });
    let problem = |d: &str| json!({ "description": d, "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } });
    let mut op = json!({
        "operationId": "postTelemetry",
        "tags": ["telemetry"],
        "summary": "Send many sensor readings at once",
        "description": format!(
            "Each reading is checked against the data dictionary (known sensor, a number, a convertible unit, \
             in range, a sane timestamp), converted to the ERP's unit, enriched and queued through its sensor's \
             route. The answer lists every reading: 202 when any was accepted, 422 when none was. \
             Send a JSON array, one object, or NDJSON (`application/x-ndjson`), at most {} readings.\n\n{table}",
            dict.settings.max_readings
        ),
        "requestBody": {
            "required": true,
            "content": {
                // A batch is accepted (202) when any one reading is: `contains`, not `items`.
                "application/json": { "schema": { "oneOf": [reading.clone(), {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": dict.settings.max_readings,
                    "contains": reading.clone(),
                    "description": "1 to telemetry.max_readings readings; each is checked on its own, and the request is accepted when at least one is valid."
                }] } },
                "application/x-ndjson": { "schema": reading }
            }
        },
        "responses": {
            "202": { "description": "At least one reading accepted; every reading's fate is listed", "content": { "application/json": { "schema": result } } },
            "400": problem("The body is not JSON"),
            "413": problem("The body exceeds the size limit"),
            "415": problem("Neither application/json nor application/x-ndjson"),
            "422": problem("No reading was accepted; errors lists each with a pointer and the reason"),
            "429": problem("A rate limit or quota refused the request"),
            "503": problem("The queue could take none of the readings; try again"),
        }
    });
    if let Some(name) = scheme {
        op["security"] = json!([{ name: [dict.settings.scope] }]);
        op["responses"]["401"] = problem("No valid bearer token");
        op["responses"]["403"] = problem("The token lacks the telemetry scope");
    }
    Some(json!({ "post": op }))
}

/// One reading as the intake accepts it (`ingest::reading::check`): a known sensor, a
/// number within the sensor's range (in its own unit, or in the ERP's unit when `unit` says
/// so), text fields of 1 to 200 characters. One branch per dictionary entry, so each
/// sensor's range goes with its ids. Whether a timestamp is recent enough depends on the
/// clock (`telemetry.max_age`, `max_ahead`), which no schema can say; its description does.
fn reading_schema(dict: &Dictionary) -> Value {
    // Each may reach the ERP through the body template, so only characters XML can carry.
    let text = |d: &str| json!({ "type": "string", "minLength": 1, "maxLength": 200, "pattern": XML_TEXT_PATTERN, "description": d });
    let time = json!({
        "oneOf": [
            { "type": "string", "format": "date-time" },
            { "type": "integer", "minimum": MIN_EPOCH_MS, "maximum": MAX_EPOCH_MS },
        ],
        "description": "When it was measured: RFC 3339 text or epoch milliseconds (default: when received). Must lie within telemetry.max_age back and max_ahead ahead."
    });
    let branches: Vec<Value> = dict.sensors.iter().flat_map(|s| sensor_branches(s)).collect();
    json!({
        "type": "object",
        "required": ["sensor", "value"],
        "properties": {
            "sensor": text("Sensor id from the data dictionary."),
            "sensorId": text("Alias of `sensor`, read when `sensor` is absent."),
            "value": { "type": "number", "description": "In the sensor's unit, or in `unit`." },
            "unit": { "type": "string", "description": "UCUM code of `value` when not the sensor's own unit; converted." },
            "timestamp": time.clone(),
            "time": time.clone(),
            "ts": time,
            "machine": text("The machine (default: the topic's, or the dictionary's)."),
            "machineId": text("Alias of `machine`."),
            "id": text("Stable reading id (default: the source and the time); the ERP books each id once."),
        },
        "anyOf": branches,
        "additionalProperties": true,
        "description": "Other fields are passed on as {reading.NAME} to the sensor's body template."
    })
}

/// Epoch milliseconds the gateway's clock type can hold (years -262143 to 262142).
const MIN_EPOCH_MS: i64 = -8_334_601_228_800_000;
const MAX_EPOCH_MS: i64 = 8_210_266_876_799_999;

/// The readings one dictionary entry accepts: in the device's unit (`unit` absent or the
/// sensor's), and in the ERP's unit when that differs. Converted bounds are rounded inwards
/// to 6 places, so a value the document allows is never refused for a rounding digit.
fn sensor_branches(s: &Sensor) -> Vec<Value> {
    let ids = if s.pattern.is_exact() {
        json!({ "const": s.pattern.text() })
    } else {
        json!({ "pattern": glob_regex(&s.pattern.text()) })
    };
    let bounds = |lo: Option<Decimal>, hi: Option<Decimal>| {
        let mut v = json!({ "type": "number" });
        if let Some(lo) = lo.and_then(|d| d.to_f64()) {
            v["minimum"] = json!(lo);
        }
        if let Some(hi) = hi.and_then(|d| d.to_f64()) {
            v["maximum"] = json!(hi);
        }
        v
    };
    let (lo, hi) = match s.range {
        Some((lo, hi)) => (Some(lo), Some(hi)),
        // Without a range: what a 28-digit decimal holds after the conversion to the ERP's
        // unit (beyond it the value cannot be converted), with room for the offset.
        None => {
            let factor = s.conversion.factor.abs().max(Decimal::ONE);
            let limit = (DECIMAL_LIMIT / factor / Decimal::TWO).trunc();
            (Some(-limit), Some(limit))
        }
    };
    // Where the body template hands the id or the machine to a field of the route's input,
    // that field's length facets hold too (a sensor `P-*` may be `P-` and 20 more).
    let mut ids = ids;
    lengths_into(&mut ids, field_lengths(s, &Var::Sensor));
    let mut machine = json!({});
    lengths_into(&mut machine, field_lengths(s, &Var::Machine));
    // `machineId` is read only when `machine` is absent.
    let machine_rule = json!({
        "if": { "required": ["machine"] },
        "then": { "properties": { "machine": machine } },
        "else": { "properties": { "machineId": machine } }
    });
    let mut out = vec![json!({
        "properties": { "sensor": ids.clone(), "unit": { "const": s.unit }, "value": bounds(lo, hi) },
        "allOf": [machine_rule.clone()]
    })];
    if s.conversion.to != s.unit
        && let Ok(back) = Conversion::between(&s.conversion.to, &s.unit)
        && back.factor > Decimal::ZERO
    {
        let to_erp = |d: Decimal| s.conversion.apply(d, 12);
        let (elo, ehi) = (lo.and_then(to_erp), hi.and_then(to_erp));
        let inward = |d: Decimal, up: bool| {
            let strategy = if up { RoundingStrategy::ToPositiveInfinity } else { RoundingStrategy::ToNegativeInfinity };
            d.round_dp_with_strategy(6, strategy)
        };
        out.push(json!({
            "required": ["unit"],
            "properties": {
                "sensor": ids,
                "unit": { "const": s.conversion.to },
                "value": bounds(elo.map(|d| inward(d, true)), ehi.map(|d| inward(d, false)))
            },
            "allOf": [machine_rule]
        }));
    }
    out
}

/// A round number within rust_decimal's range (about 7.9 × 10²⁸).
const DECIMAL_LIMIT: Decimal = Decimal::from_parts(0x1000_0000, 0x3E25_0261, 0x204F_CE5E, false, 0);

/// `minLength`/`maxLength` added to a string schema.
fn lengths_into(schema: &mut Value, (min, max): (Option<usize>, Option<usize>)) {
    if let Some(n) = min {
        schema["minLength"] = json!(n);
    }
    if let Some(n) = max {
        schema["maxLength"] = json!(n);
    }
}

/// The length facets of the route input field that the body template fills with exactly
/// `var` (a top-level `field: "{var}"`), where the route takes the body as its input or maps
/// that key. `(None, None)` where no such field exists or it has no facets.
fn field_lengths(s: &Sensor, var: &Var) -> (Option<usize>, Option<usize>) {
    let Template::Object(fields) = &s.body else { return (None, None) };
    let Some(key) = fields.iter().find(|(_, t)| matches!(t, Template::Var(v) if v == var)).map(|(k, _)| k) else {
        return (None, None);
    };
    // The JSON key of the operation's input that receives the body's `key`.
    let target = match &s.route.input {
        Source::Body(path) if path.is_empty() => Some(key.clone()),
        Source::Object { fields, spread } => fields
            .iter()
            .find(|(_, src)| matches!(src, Source::Body(p) if p.len() == 1 && &p[0] == key))
            .map(|(k, _)| k.clone())
            .or_else(|| matches!(spread.as_deref(), Some(Source::Body(p)) if p.is_empty()).then(|| key.clone())),
        _ => None,
    };
    let input = &s.route.operation().input;
    let (Some(target), TypeRef::Complex(id)) = (target, &input.ty) else { return (None, None) };
    let ct = s.route.backend.model.schema.complex(*id);
    match ct.children.iter().find(|c| c.json_name == target).map(|c| &c.ty) {
        Some(TypeRef::Simple(st)) if !st.list => {
            let f = &st.facets;
            (f.length.or(f.min_length), f.length.or(f.max_length))
        }
        _ => (None, None),
    }
}

/// One character XML can carry (see `XML_TEXT_PATTERN`).
const XML_CHAR: &str = "[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\uFFFE\\uFFFF]";

/// A sensor-id glob (`*` any run, `?` one character) as an anchored ECMAScript regex; the
/// id reaches the ERP, so a wildcard stands for characters XML can carry.
fn glob_regex(glob: &str) -> String {
    let mut re = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => re.push_str(&format!("{XML_CHAR}*")),
            '?' => re.push_str(XML_CHAR),
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => re.push(c),
            c if c.is_ascii() => {
                re.push('\\');
                re.push(c);
            }
            c => re.push(c),
        }
    }
    re.push('$');
    re
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_anchored_regexes_and_the_limit_is_ten_to_the_28th() {
        assert_eq!(glob_regex("T-1*"), format!("^T-1{XML_CHAR}*$"));
        assert_eq!(glob_regex("a.b?"), format!("^a\\.b{XML_CHAR}$"));
        assert_eq!(XML_TEXT_PATTERN, format!("^{XML_CHAR}*$"));
        assert_eq!(DECIMAL_LIMIT.to_string(), format!("1{}", "0".repeat(28)));
    }
}
