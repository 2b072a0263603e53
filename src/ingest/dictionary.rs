//! The compiled data dictionary: sensors by id or pattern, each with its units, range,
//! enrichment and the route its readings go through; MQTT topic templates; the limits of
//! `POST /telemetry`. Built with the rest of the config and swapped with it on reload.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::calendar::Calendar;
use super::pattern::Pattern;
use super::template::Template;
use super::topic::TopicTemplate;
use super::units::Conversion;
use crate::route::Route;

/// Everything the gateway knows about sensors.
#[derive(Debug, Default)]
pub struct Dictionary {
    /// Every entry, in file order (no two match the same id).
    pub sensors: Vec<Arc<Sensor>>,
    /// Topic templates MQTT subscribes to, in file order.
    pub topics: Vec<TopicTemplate>,
    /// `POST /telemetry` settings.
    pub settings: TelemetrySettings,
}

impl Dictionary {
    /// The entry for a sensor id.
    pub fn sensor(&self, id: &str) -> Option<&Arc<Sensor>> {
        self.sensors.iter().find(|s| s.pattern.matches(id))
    }

    /// True when no sensor is configured (then `POST /telemetry` is not served).
    pub fn is_empty(&self) -> bool {
        self.sensors.is_empty()
    }
}

/// `telemetry:` in gateway.yaml.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// Scope a token needs for `POST /telemetry`.
    pub scope: String,
    /// Readings per request or message at most.
    pub max_readings: usize,
    /// Oldest timestamp accepted, back from now.
    pub max_age: Duration,
    /// Newest timestamp accepted, ahead of now.
    pub max_ahead: Duration,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            scope: "telemetry:write".into(),
            max_readings: 1000,
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_ahead: Duration::from_secs(300),
        }
    }
}

/// One dictionary entry.
#[derive(Debug)]
pub struct Sensor {
    /// The id or pattern it covers.
    pub pattern: Pattern,
    /// Where it is defined (`sensors/press.yaml:12`), for logs and the docs.
    pub defined_at: String,
    /// What it measures.
    pub quantity: Option<String>,
    /// UCUM code the device sends.
    pub unit: String,
    /// Device unit → ERP unit.
    pub conversion: Conversion,
    /// What the ERP is told the unit is.
    pub erp_label: String,
    /// Valid range, in the device's unit.
    pub range: Option<(Decimal, Decimal)>,
    /// Decimal places kept after conversion.
    pub decimals: u32,
    /// The machine, when neither the reading nor its topic names one.
    pub machine: Option<String>,
    /// The route its readings go through.
    pub route: Arc<Route>,
    /// The route's body for one reading.
    pub body: Template,
    /// Readings sent together in one call, when the operation takes a list.
    pub group: Option<Group>,
    /// What the sensor's file defines for all its sensors.
    pub context: Arc<FileContext>,
}

/// `group:`: many readings in one call.
#[derive(Debug, Clone)]
pub struct Group {
    /// The body field holding the list.
    pub field: String,
    /// Readings per call at most.
    pub max: usize,
    /// How long the first reading waits for others.
    pub wait: Duration,
}

/// Shared by the sensors of one file.
#[derive(Debug, Default)]
pub struct FileContext {
    /// The file, relative to the config directory.
    pub file: PathBuf,
    /// Its shift calendar.
    pub calendar: Option<Calendar>,
    /// Machine → static metadata.
    pub machines: BTreeMap<String, Map<String, Value>>,
    /// Lookups by name.
    pub lookups: BTreeMap<String, Arc<Lookup>>,
}

/// A value read from the ERP through a GET route, cached.
#[derive(Debug)]
pub struct Lookup {
    /// Its name in the file.
    pub name: String,
    /// The route asked.
    pub route: Arc<Route>,
    /// Route parameter → template.
    pub params: Vec<(String, Template)>,
    /// JSON pointer into the answer.
    pub pick: String,
    /// How long a value is fresh.
    pub ttl: Duration,
    /// How long a value may stand in while the ERP cannot be asked.
    pub max_stale: Duration,
}
