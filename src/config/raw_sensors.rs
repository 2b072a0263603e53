//! The data dictionary as written: `sensors/*.yaml`, plain serde structs, unknown keys
//! rejected. Units, patterns, times and templates stay strings here and are checked by
//! [`super::compile_sensors`], which knows the file and line to blame.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// One `sensors/*.yaml` file: sensors plus what they share (machines, shifts, lookups,
/// MQTT topics).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SensorsFile {
    /// IANA time zone of the shift calendar (`Europe/Berlin`); default UTC.
    pub time_zone: Option<String>,
    /// The shift calendar: each shift from its start (`"06:00"`) to the next one's.
    #[serde(default)]
    pub shifts: Vec<ShiftSection>,
    /// Machine id → static metadata (work center, line, plant, …) added to its readings.
    #[serde(default)]
    pub machines: BTreeMap<String, BTreeMap<String, Value>>,
    /// Values looked up from the ERP through a route, cached.
    #[serde(default)]
    pub lookups: BTreeMap<String, LookupSection>,
    /// MQTT topic templates this file's sensors are published on
    /// (`factory/{plant}/{machine}/{sensor}`).
    #[serde(default)]
    pub topics: Vec<String>,
    /// The sensors.
    #[serde(default)]
    pub sensors: Vec<SensorSection>,
}

/// One shift of the calendar.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShiftSection {
    /// Its name, as the ERP knows it.
    pub name: String,
    /// Local start time, `HH:MM`.
    pub start: String,
}

/// `lookups.NAME`: a value read from the ERP through a configured GET route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LookupSection {
    /// The route, as `"GET /production-orders"`.
    pub route: String,
    /// Route parameters (path or query names) → template (`"{machine}"`).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// JSON pointer into the route's answer (`/0/no`).
    #[serde(default)]
    pub pick: String,
    /// How long a looked-up value is fresh (default `60s`).
    pub ttl: Option<String>,
    /// How long a value may be used while the ERP cannot be asked (default `1h`).
    pub max_stale: Option<String>,
}

/// One dictionary entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SensorSection {
    /// A sensor id, or a pattern with `*` and `?` (`T-1*`).
    pub id: String,
    /// What it measures (`temperature`); free text, passed on as `{quantity}`.
    pub quantity: Option<String>,
    /// UCUM code of what the device sends (`[degF]`).
    pub unit: String,
    /// UCUM code the ERP field expects (default: the device's unit).
    pub erp_unit: Option<String>,
    /// What the ERP is told the unit is, when it names units its own way (default: the
    /// UCUM code of `erp_unit`).
    pub erp_unit_label: Option<String>,
    /// Valid range in the device's unit: `[min, max]`.
    pub range: Option<[f64; 2]>,
    /// Decimal places kept after conversion (default 6).
    pub decimals: Option<u32>,
    /// The machine the sensor sits on, when neither the reading nor its topic says.
    pub machine: Option<String>,
    /// The route its readings go through (`"POST /sensor-readings/queued"`).
    pub route: String,
    /// The route's JSON body for one reading; strings such as `"{value}"` are filled in.
    pub body: Value,
    /// Readings for a route whose operation takes a list are sent together.
    pub group: Option<GroupSection>,
}

/// `group:` on a sensor.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupSection {
    /// The body field that holds the list (`Readings`).
    pub field: String,
    /// Readings per call at most (default 100).
    pub max: Option<usize>,
    /// How long the first reading waits for others (default `200ms`).
    pub wait: Option<String>,
}
