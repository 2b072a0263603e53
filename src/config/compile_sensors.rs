//! Compiles the data dictionary (`sensors/*.yaml`) and the `telemetry:` and MQTT topic
//! settings against the compiled routes: units parsed and checked for a conversion, ranges,
//! patterns that may not overlap, templates whose names exist, lookups through GET routes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;

use super::problems::{AtLeast, FileText, duration};
use super::raw::GatewayFile;
use super::raw_sensors::{SensorSection, SensorsFile};
use super::{ConfigProblem, ConfigSource};
use crate::ingest::calendar::Calendar;
use crate::ingest::dictionary::{Dictionary, FileContext, Group, Lookup, Sensor, TelemetrySettings};
use crate::ingest::pattern::Pattern;
use crate::ingest::template::{Template, Var};
use crate::ingest::topic::TopicTemplate;
use crate::ingest::units::Conversion;
use crate::route::{Route, RouteTable};

/// Compiles every sensor file; problems go to `problems`.
pub(crate) fn compile(
    source: &ConfigSource,
    gateway_file: &FileText,
    raw: &GatewayFile,
    routes: &NamedRoutes<'_>,
    problems: &mut Vec<ConfigProblem>,
) -> Dictionary {
    let mut dict = Dictionary { settings: settings(gateway_file, raw, problems), ..Default::default() };
    if let Some(m) = &raw.mqtt {
        for (i, t) in m.topics.iter().enumerate() {
            match TopicTemplate::parse(t) {
                Ok(t) => dict.topics.push(t),
                Err(msg) => {
                    problems.push(gateway_file.at(&["mqtt", "topics", &i.to_string()], format!("mqtt.topics: {msg}")))
                }
            }
        }
    }
    let files = source.sensor_files().unwrap_or_else(|p| {
        problems.push(p);
        Vec::new()
    });
    // Every entry with where it is defined, to report overlaps against both.
    let mut seen: Vec<(Pattern, String)> = Vec::new();
    for rel in files {
        let parsed = super::problems::read_text(source, &rel)
            .and_then(|file| super::problems::parse_yaml::<SensorsFile>(&file).map(|parsed| (file, parsed)));
        let (file, parsed) = match parsed {
            Ok(f) => f,
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        let context = Arc::new(file_context(&file, &parsed, routes, problems));
        for (i, t) in parsed.topics.iter().enumerate() {
            match TopicTemplate::parse(t) {
                Ok(t) => dict.topics.push(t),
                Err(msg) => problems.push(file.at(&["topics", &i.to_string()], msg)),
            }
        }
        for (i, s) in parsed.sensors.iter().enumerate() {
            let index = i.to_string();
            let at = file.line(&["sensors", &index]).unwrap_or(1);
            let pattern = Pattern::new(&s.id);
            let here = format!("{}:{at}", rel.display());
            if let Some((_, other)) = seen.iter().find(|(p, _)| p.overlaps(&pattern)) {
                problems.push(file.at(
                    &["sensors", &index, "id"],
                    format!(
                        "sensor {:?} overlaps the entry at {other}: an id could match both; make the patterns disjoint",
                        s.id
                    ),
                ));
                continue;
            }
            seen.push((pattern.clone(), here.clone()));
            let entry = Entry { file: &file, index: &index, context: &context };
            if let Some(sensor) = sensor(&entry, s, pattern, here, routes, problems) {
                dict.sensors.push(Arc::new(sensor));
            }
        }
    }
    dict
}

/// `telemetry:` in gateway.yaml.
fn settings(file: &FileText, raw: &GatewayFile, problems: &mut Vec<ConfigProblem>) -> TelemetrySettings {
    let mut s = TelemetrySettings::default();
    let Some(t) = &raw.telemetry else { return s };
    if let Some(scope) = &t.scope {
        s.scope = scope.clone();
    }
    match t.max_readings {
        Some(0) => problems.push(file.at(&["telemetry", "max_readings"], "telemetry.max_readings must be at least 1")),
        Some(n) => s.max_readings = n,
        None => {}
    }
    for (key, value, slot) in [("max_age", &t.max_age, &mut s.max_age), ("max_ahead", &t.max_ahead, &mut s.max_ahead)] {
        *slot = duration(&format!("telemetry.{key}"), value.as_deref(), *slot, AtLeast::Zero, &mut |m| {
            problems.push(file.at(&["telemetry", key], m))
        });
    }
    s
}

/// The file's calendar, machines and lookups.
fn file_context(
    file: &FileText,
    parsed: &SensorsFile,
    routes: &NamedRoutes<'_>,
    problems: &mut Vec<ConfigProblem>,
) -> FileContext {
    let mut ctx = FileContext { file: file.path.clone(), ..Default::default() };
    if !parsed.shifts.is_empty() || parsed.time_zone.is_some() {
        let shifts: Vec<(String, String)> = parsed.shifts.iter().map(|s| (s.name.clone(), s.start.clone())).collect();
        match Calendar::new(parsed.time_zone.as_deref(), &shifts) {
            Ok(c) => ctx.calendar = Some(c),
            Err(m) => {
                let key = if m.starts_with("time_zone") { "time_zone" } else { "shifts" };
                problems.push(file.at(&[key], m));
            }
        }
    }
    for (machine, meta) in &parsed.machines {
        ctx.machines.insert(machine.clone(), meta.clone().into_iter().collect());
    }
    for (name, l) in &parsed.lookups {
        let at = |key: &str| file.at(&["lookups", name, key], "");
        let route = match routes.find(&l.route) {
            Ok(route) => route,
            // Its own problem is reported where the route is declared.
            Err(Missing::Refused) => continue,
            Err(Missing::Unknown) => {
                problems.push(ConfigProblem {
                    message: format!("lookup {name}: no route {:?} is configured", l.route),
                    ..at("route")
                });
                continue;
            }
        };
        if !route.idempotent {
            problems.push(file.at(
                &["lookups", name, "route"],
                format!("lookup {name}: route {} is not a GET; lookups only read", route.id),
            ));
            continue;
        }
        let mut params = Vec::new();
        for (k, v) in &l.params {
            match Template::compile(&serde_json::Value::String(v.clone())) {
                Ok(t) if t.vars().iter().any(|v| matches!(v, Var::Lookup(_))) => problems.push(file.at(
                    &["lookups", name, "params", k],
                    format!("lookup {name}: a lookup's parameters cannot use another lookup"),
                )),
                Ok(t) => params.push((k.clone(), t)),
                Err(m) => problems.push(file.at(&["lookups", name, "params", k], format!("lookup {name}: {m}"))),
            }
        }
        if !l.pick.is_empty() && !l.pick.starts_with('/') {
            problems.push(file.at(
                &["lookups", name, "pick"],
                format!("lookup {name}: pick {:?} is not a JSON pointer; write e.g. /0/no", l.pick),
            ));
        }
        let dur = |key: &str, v: &Option<String>, default: Duration, problems: &mut Vec<ConfigProblem>| {
            let label = format!("lookup {name}: {key}");
            duration(&label, v.as_deref(), default, AtLeast::Zero, &mut |m| {
                problems.push(file.at(&["lookups", name, key], m))
            })
        };
        let ttl = dur("ttl", &l.ttl, Duration::from_secs(60), problems);
        let max_stale = dur("max_stale", &l.max_stale, Duration::from_secs(3600), problems).max(ttl);
        ctx.lookups.insert(
            name.clone(),
            Arc::new(Lookup { name: name.clone(), route: route.clone(), params, pick: l.pick.clone(), ttl, max_stale }),
        );
    }
    ctx
}

/// Where a sensor entry is: its file, its index in `sensors:`, and the file's context.
struct Entry<'a> {
    file: &'a FileText,
    index: &'a str,
    context: &'a Arc<FileContext>,
}

fn sensor(
    entry: &Entry<'_>,
    s: &SensorSection,
    pattern: Pattern,
    defined_at: String,
    routes: &NamedRoutes<'_>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Sensor> {
    let (file, index, context) = (entry.file, entry.index, entry.context);
    let before = problems.len();
    // `key`: a dotted key path under this sensor's entry.
    let mut fail = |key: &str, message: String| {
        let path: Vec<&str> = ["sensors", index].into_iter().chain(key.split('.').filter(|k| !k.is_empty())).collect();
        problems.push(file.at(&path, format!("sensor {}: {message}", s.id)));
    };
    if s.id.trim().is_empty() {
        fail("id", "the id is empty; write a sensor id or a pattern such as T-1*".into());
    }
    let erp_unit = s.erp_unit.clone().unwrap_or_else(|| s.unit.clone());
    let conversion = match Conversion::between(&s.unit, &erp_unit) {
        Ok(c) => Some(c),
        Err(m) => {
            let needle = if crate::ingest::units::check(&s.unit).is_err() { "unit" } else { "erp_unit" };
            fail(needle, m);
            None
        }
    };
    let range = range(s, &mut fail);
    let decimals = s.decimals.unwrap_or(6);
    if decimals > 12 {
        fail("decimals", format!("decimals {decimals} is more than 12 places; a sensor does not measure that finely"));
    }
    let route = match routes.find(&s.route) {
        Ok(route) => Some(route),
        // Refused where it is declared (its backend or its mapping): said once, there.
        Err(Missing::Refused) => return None,
        Err(Missing::Unknown) => {
            fail("route", format!("no route {:?} is configured; name one of routes/*.yaml as \"POST /path\"", s.route));
            None
        }
    };
    let body = body(s, context, &mut fail);
    let group = group(s, &mut fail);
    if problems.len() > before {
        return None;
    }
    Some(Sensor {
        pattern,
        defined_at,
        quantity: s.quantity.clone(),
        unit: s.unit.clone(),
        erp_label: s.erp_unit_label.clone().unwrap_or(erp_unit),
        conversion: conversion?,
        range,
        decimals,
        machine: s.machine.clone(),
        route: route?.clone(),
        body: body?,
        group,
        context: context.clone(),
    })
}

/// `range: [min, max]`, in the device's unit.
fn range(s: &SensorSection, fail: &mut dyn FnMut(&str, String)) -> Option<(Decimal, Decimal)> {
    match s.range {
        None => None,
        Some([lo, hi]) => match (Decimal::from_f64(lo), Decimal::from_f64(hi)) {
            (Some(lo), Some(hi)) if lo <= hi => Some((lo, hi)),
            _ => {
                fail("range", format!("range [{lo}, {hi}] is not [min, max] with min ≤ max"));
                None
            }
        },
    }
}

/// `body:`, its placeholders checked against the file's lookups and calendar; a bad one is
/// blamed on the body field that holds it.
fn body(s: &SensorSection, context: &FileContext, fail: &mut dyn FnMut(&str, String)) -> Option<Template> {
    match Template::compile(&s.body) {
        Ok(t) => {
            for v in t.vars() {
                if let Var::Lookup(name) = v
                    && !context.lookups.contains_key(name)
                {
                    fail("body", format!("{{lookup.{name}}} is not defined under lookups: in this file"));
                }
                if matches!(v, Var::Shift | Var::ShiftDate) && context.calendar.is_none() {
                    fail("body", "{shift} needs shifts: in this file".into());
                }
            }
            Some(t)
        }
        Err(m) => {
            // Blame the body field holding the bad placeholder (the message starts with it).
            let placeholder = m.split_whitespace().next().unwrap_or("").trim_matches(['"', ':']).to_string();
            let at = (!placeholder.is_empty())
                .then(|| path_of_text(&s.body, &placeholder))
                .flatten()
                .map_or_else(|| "body".to_string(), |p| format!("body.{}", p.join(".")));
            fail(&at, m);
            None
        }
    }
}

/// `group:`: readings sent together in one call, by `field`, at most `max`, waiting `wait`.
fn group(s: &SensorSection, fail: &mut dyn FnMut(&str, String)) -> Option<Group> {
    s.group.as_ref().and_then(|g| {
        let wait = duration("group.wait", g.wait.as_deref(), Duration::from_millis(200), AtLeast::Zero, &mut |m| {
            fail("group.wait", m)
        });
        match g.max {
            Some(0) => {
                fail("group.max", "group.max must be at least 1".into());
                None
            }
            max => Some(Group { field: g.field.clone(), max: max.unwrap_or(100), wait }),
        }
    })
}

/// The routes a sensor file may name: those compiled, and those declared but refused, whose
/// problem is already reported (one broken backend is one problem, not one per sensor).
pub(crate) struct NamedRoutes<'a> {
    /// The compiled routes.
    pub table: &'a RouteTable,
    /// `"METHOD /path"` of each route declared in routes/*.yaml that did not compile.
    pub refused: BTreeSet<String>,
}

/// Why a named route is not there.
enum Missing {
    /// Declared, but refused with its own problem.
    Refused,
    /// Not declared at all.
    Unknown,
}

impl NamedRoutes<'_> {
    /// The route named `"POST /path"` (spacing and method case forgiven).
    fn find(&self, name: &str) -> Result<&Arc<Route>, Missing> {
        let key = route_name(name).ok_or(Missing::Unknown)?;
        let (method, path) = key.split_once(' ').ok_or(Missing::Unknown)?;
        match self.table.iter().find(|r| r.method.as_str() == method && r.path == path) {
            Some(route) => Ok(route),
            None if self.refused.contains(&key) => Err(Missing::Refused),
            None => Err(Missing::Unknown),
        }
    }
}

/// `"post  /path"` as `"POST /path"`.
pub(crate) fn route_name(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    let (method, path) = (words.next()?.to_ascii_uppercase(), words.next()?);
    Some(format!("{method} {path}"))
}

/// The key path (under `value`) of the first string containing `text`.
fn path_of_text(value: &serde_json::Value, text: &str) -> Option<Vec<String>> {
    match value {
        serde_json::Value::String(s) => s.contains(text).then(Vec::new),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            path_of_text(v, text).map(|mut p| {
                p.insert(0, k.clone());
                p
            })
        }),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            path_of_text(v, text).map(|mut p| {
                p.insert(0, i.to_string());
                p
            })
        }),
        _ => None,
    }
}

/// The sensor files' names, for `veneer check`'s summary.
pub(crate) fn describe(dict: &Dictionary) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &dict.sensors {
        let file = s.context.file.display().to_string();
        let range = s.range.map(|(lo, hi)| format!(", range {lo}..{hi} {}", s.unit)).unwrap_or_default();
        out.entry(file).or_default().push(format!(
            "{} ({}): {}{range}, {} decimals → {}",
            s.pattern.text(),
            s.quantity.as_deref().unwrap_or("reading"),
            s.conversion.describe(),
            s.decimals,
            s.route.id
        ));
    }
    out
}
