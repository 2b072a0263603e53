//! `POST /telemetry` in the OpenAPI document, with the data dictionary it checks against:
//! each sensor (or pattern), what it measures, the unit a device may send, the unit the
//! ERP gets and the valid range.

use serde_json::{Value, json};

use crate::ingest::dictionary::Dictionary;

/// The path item, or `None` when the dictionary is empty (then the endpoint is not served).
pub fn path_item(dict: &Dictionary, scheme: Option<&str>) -> Option<Value> {
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
    let reading = json!({
        "type": "object",
        "required": ["sensor", "value"],
        "properties": {
            "sensor": { "type": "string", "description": "Sensor id from the data dictionary (alias: sensorId)." },
            "value": { "type": "number", "description": "In the sensor's unit, or in `unit`." },
            "unit": { "type": "string", "description": "UCUM code of `value` when not the sensor's own unit; converted." },
            "timestamp": {
                "type": ["string", "integer"],
                "description": "When it was measured: RFC 3339 text or epoch milliseconds (default: when received). Must lie within telemetry.max_age back and max_ahead ahead."
            },
            "machine": { "type": "string", "description": "The machine (default: the dictionary's)." },
            "id": { "type": "string", "description": "Stable reading id (default: sensor@timestamp); the ERP books each id once." }
        },
        "additionalProperties": true,
        "description": "Other fields are passed on as {reading.NAME} to the sensor's body template."
    });
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
                "application/json": { "schema": { "oneOf": [reading.clone(), { "type": "array", "items": reading.clone() }] } },
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
