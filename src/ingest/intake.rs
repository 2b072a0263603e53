//! From checked readings to the ERP: enrichment (machine metadata, shift, ERP lookups), the
//! sensor's body template, grouping for operations that take a list, and the route's queue
//! (or a direct call). Shared by `POST /telemetry` and MQTT; lives as long as the process,
//! so groups and looked-up values survive a reload.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::calendar::ShiftAt;
use super::dictionary::{Group, Lookup};
use super::reading::Reading;
use super::template::{Values, Var};
use crate::delivery::Services;
use crate::delivery::submit::{self, Submitted};
use crate::error::GatewayError;
use crate::route::Route;
use crate::route::exchange;

/// After a failed lookup, the ERP is asked again for that key after this long at the
/// earliest (a stale value, or none, stands in meanwhile).
pub(crate) const RETRY_LOOKUP: Duration = Duration::from_secs(5);

/// What became of one accepted reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored for delivery (with others, when grouped) under this delivery id.
    Queued(String),
    /// Sent at once; the ERP answered with this HTTP status.
    Delivered(u16),
    /// Not stored: the route refused the body, or the store or ERP could not take it.
    Failed {
        /// What went wrong, safe to show the caller.
        reason: String,
        /// True when trying again later may succeed (the store or ERP was unavailable).
        retryable: bool,
        /// The queue refused it for what it holds (full, or not durable): when every
        /// reading of a request fails so, the caller gets that refusal.
        queue: Option<QueueRefusal>,
    },
}

/// Why a queue refused a reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueRefusal {
    /// `queue-full`, with why.
    Full(String),
    /// `queue-not-durable`.
    NotDurable,
}

impl QueueRefusal {
    /// The error a request answers with.
    pub fn error(&self) -> GatewayError {
        match self {
            QueueRefusal::Full(why) => GatewayError::QueueFull(why.clone()),
            QueueRefusal::NotDurable => GatewayError::QueueNotDurable,
        }
    }
}

/// Who readings are taken for.
#[derive(Debug, Clone)]
pub struct Submitter {
    /// Owns the deliveries (may read their status).
    pub client: String,
    /// Logged with each delivery.
    pub request_id: String,
}

/// Groups and looked-up values, kept across reloads.
pub struct Intake {
    groups: Mutex<HashMap<String, Arc<Pending>>>,
    lookups: moka::sync::Cache<String, Arc<tokio::sync::Mutex<Option<Looked>>>>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").finish_non_exhaustive()
    }
}

/// A looked-up value (none: the ERP had none), when the ERP last answered, and when asking
/// it last failed.
struct Looked {
    value: Option<Value>,
    fetched: Option<Instant>,
    failed: Option<Instant>,
}

impl Looked {
    /// The answer this entry gives at `now` without asking the ERP, or `None` when the ERP
    /// should be asked. Fresh answers (an empty one too) stand for `ttl`; after a failure the
    /// ERP rests for [`RETRY_LOOKUP`]. A value older than `max_stale` is never used. Pure in
    /// `now`, so expiry is tested without waiting.
    fn cached(&self, now: Instant, ttl: Duration, max_stale: Duration) -> Option<Option<Value>> {
        let resting = self.failed.is_some_and(|t| now.duration_since(t) < RETRY_LOOKUP);
        (self.younger_than(now, ttl) || resting).then(|| self.usable(now, max_stale))
    }

    /// The value, when it is younger than `max_stale`.
    fn usable(&self, now: Instant, max_stale: Duration) -> Option<Value> {
        self.value.clone().filter(|_| self.younger_than(now, max_stale))
    }

    fn younger_than(&self, now: Instant, age: Duration) -> bool {
        self.fetched.is_some_and(|t| now.duration_since(t) < age)
    }
}

/// A reading's element in a group, its key, and where its outcome goes.
type Waiting = (Value, String, oneshot::Sender<Outcome>);

/// Readings waiting to be sent as one call.
#[derive(Default)]
struct Pending {
    items: Mutex<Vec<Waiting>>,
}

impl Default for Intake {
    fn default() -> Self {
        Self::new()
    }
}

impl Intake {
    /// A fresh intake.
    pub fn new() -> Self {
        Intake {
            groups: Mutex::default(),
            // Bounded: keys come from readings (machines), which a device controls.
            lookups: moka::sync::Cache::builder().max_capacity(10_000).build(),
        }
    }

    /// Takes checked readings: each is enriched, mapped and queued (or sent); the outcomes
    /// come back in the same order. Returns once every reading is stored or has failed.
    pub async fn take(&self, services: Option<&Services>, who: &Submitter, readings: Vec<Reading>) -> Vec<Outcome> {
        let futures = readings.into_iter().map(|r| self.one(services, who, r));
        futures_util::future::join_all(futures).await
    }

    async fn one(&self, services: Option<&Services>, who: &Submitter, reading: Reading) -> Outcome {
        let sensor = reading.sensor.clone();
        let mut looked = HashMap::new();
        for v in sensor.body.vars() {
            if let Var::Lookup(name) = v
                && !looked.contains_key(name)
                && let Some(l) = sensor.context.lookups.get(name)
            {
                let value = self.lookup(l, &reading).await;
                looked.insert(name.clone(), value);
            }
        }
        let shift = sensor.context.calendar.as_ref().and_then(|c| c.at(reading.timestamp));
        let values = Filled { reading: &reading, shift, looked };
        let Some(body) = sensor.body.render(&values) else {
            return Outcome::Failed {
                reason: "the body template rendered nothing".into(),
                retryable: false,
                queue: None,
            };
        };
        match &sensor.group {
            Some(g) => self.grouped(services, who, &sensor.route, g, body, reading.key.clone()).await,
            None => send(services, who, &sensor.route, body, &reading.key).await,
        }
    }

    /// Adds a reading's element to its group and waits for the group's call.
    async fn grouped(
        &self,
        services: Option<&Services>,
        who: &Submitter,
        route: &Arc<Route>,
        group: &Group,
        element: Value,
        key: String,
    ) -> Outcome {
        let id = format!("{}\u{0}{}\u{0}{}", route.id, group.field, who.client);
        let (tx, rx) = oneshot::channel();
        // A full group is taken at once, under the lock, so no call carries more than `max`;
        // the first reading of a group starts its timer.
        let (pending, first, full) = {
            let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
            let pending = groups.entry(id).or_default().clone();
            let mut items = pending.items.lock().unwrap_or_else(|e| e.into_inner());
            items.push((element, key, tx));
            let first = items.len() == 1;
            let full = (items.len() >= group.max).then(|| std::mem::take(&mut *items));
            drop(items);
            (pending, first, full)
        };
        let (services, who, route, field) = (services.cloned(), who.clone(), route.clone(), group.field.clone());
        if let Some(batch) = full {
            tokio::spawn(async move { flush(services.as_ref(), &who, &route, field, batch).await });
        } else if first {
            let wait = group.wait;
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let batch = std::mem::take(&mut *pending.items.lock().unwrap_or_else(|e| e.into_inner()));
                flush(services.as_ref(), &who, &route, field, batch).await;
            });
        }
        rx.await.unwrap_or(Outcome::Failed { reason: "the group was dropped".into(), retryable: true, queue: None })
    }

    /// A lookup's value for this reading: fresh from the cache, else asked from the ERP
    /// (one call per key at a time), else the last known value within `max_stale`.
    async fn lookup(&self, l: &Lookup, reading: &Reading) -> Option<Value> {
        let values = Filled { reading, shift: None, looked: HashMap::new() };
        let params: Vec<(String, String)> = l
            .params
            .iter()
            .filter_map(|(k, t)| {
                t.render(&values).map(|v| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            })
            .collect();
        let key = format!("{}\u{0}{}\u{0}{params:?}", l.route.id, l.pick);
        let slot = self.lookups.get_with(key, || Arc::new(tokio::sync::Mutex::new(None)));
        let mut entry = slot.lock().await;
        let now = Instant::now();
        if let Some(answer) = entry.as_ref().and_then(|e| e.cached(now, l.ttl, l.max_stale)) {
            return answer;
        }
        match exchange::read(&l.route, &params).await {
            Ok(answer) => {
                let value = if l.pick.is_empty() { Some(answer) } else { answer.pointer(&l.pick).cloned() };
                let value = value.filter(|v| !v.is_null());
                *entry = Some(Looked { value: value.clone(), fetched: Some(now), failed: None });
                crate::telemetry::lookup(&l.name, "fetched");
                value
            }
            Err(e) => {
                crate::telemetry::lookup(&l.name, "failed");
                tracing::warn!(lookup = %l.name, route = %l.route.id, error = %e, "lookup failed; using the last known value if any");
                let last = entry.take();
                let looked = Looked {
                    value: last.as_ref().and_then(|e| e.value.clone()),
                    fetched: last.as_ref().and_then(|e| e.fetched),
                    failed: Some(now),
                };
                let value = looked.usable(now, l.max_stale);
                *entry = Some(looked);
                value
            }
        }
    }
}

/// Sends a group as one call (`{field: [elements]}`) and tells each reading the outcome.
async fn flush(services: Option<&Services>, who: &Submitter, route: &Arc<Route>, field: String, batch: Vec<Waiting>) {
    if batch.is_empty() {
        return;
    }
    let mut elements = Vec::with_capacity(batch.len());
    let mut waiting = Vec::with_capacity(batch.len());
    for (element, key, tx) in batch {
        elements.push(element);
        waiting.push((key, tx));
    }
    let mut body = Map::new();
    body.insert(field, Value::Array(elements));
    // The group's key stands for exactly its members (the elements carry their own keys): a
    // resent group is the same call, a group with one more reading is another.
    let key = group_key(waiting.iter().map(|(k, _)| k.as_str()));
    let outcome = send(services, who, route, Value::Object(body), &key).await;
    for (_, tx) in waiting {
        let _ = tx.send(outcome.clone());
    }
}

/// A digest of the members' keys, in a stable order.
fn group_key<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    let mut sorted: Vec<&str> = keys.collect();
    sorted.sort_unstable();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for k in sorted {
        ctx.update(k.as_bytes());
        ctx.update(&[0]);
    }
    let hex: String = ctx.finish().as_ref().iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("group-{hex}")
}

/// One call through the route.
async fn send(services: Option<&Services>, who: &Submitter, route: &Arc<Route>, body: Value, key: &str) -> Outcome {
    match submit::submit(services, route, body, key, &who.client, &who.request_id).await {
        Ok(Submitted::Queued(id)) => Outcome::Queued(id),
        Ok(Submitted::Answered(status)) => Outcome::Delivered(status.as_u16()),
        Err(e) => failed(&e),
    }
}

fn failed(e: &GatewayError) -> Outcome {
    // Anything that says "not now" (the store, the ERP's availability, its answer, Veneer's
    // own credentials upstream) is worth another try; a fault or a mapping error is not.
    let retryable = matches!(
        e,
        GatewayError::StoreUnavailable
            | GatewayError::QueueFull(_)
            | GatewayError::QueueNotDurable
            | GatewayError::Overloaded { .. }
            | GatewayError::BackendUnreachable { .. }
            | GatewayError::BackendTimeout { .. }
            | GatewayError::BackendResponse { .. }
            | GatewayError::UpstreamAuth { .. }
            | GatewayError::BackendLogin { .. }
    );
    let reason = match e {
        GatewayError::Validation(errors) => {
            let details: Vec<String> = errors
                .iter()
                .map(|f| format!("{}: {}", f.pointer.as_deref().or(f.parameter.as_deref()).unwrap_or(""), f.detail))
                .collect();
            format!("the sensor's route refused the mapped body ({}); fix the body: template", details.join("; "))
        }
        other => {
            let p = other.to_problem();
            format!("{}: {}", p.title, p.detail)
        }
    };
    let queue = match e {
        GatewayError::QueueFull(why) => Some(QueueRefusal::Full(why.clone())),
        GatewayError::QueueNotDurable => Some(QueueRefusal::NotDurable),
        _ => None,
    };
    Outcome::Failed { reason, retryable, queue }
}

/// A reading's values for the templates.
struct Filled<'a> {
    reading: &'a Reading,
    shift: Option<ShiftAt>,
    looked: HashMap<String, Option<Value>>,
}

impl Values for Filled<'_> {
    fn get(&self, var: &Var) -> Option<Value> {
        let r = self.reading;
        let s = &r.sensor;
        let text = |t: &str| Some(Value::String(t.to_string()));
        match var {
            Var::Sensor => text(&r.sensor_id),
            Var::Value => serde_json::from_str(&r.value.to_string()).ok(),
            Var::Unit => text(&s.erp_label),
            Var::Timestamp => text(&r.timestamp.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Var::Quantity => s.quantity.as_deref().and_then(text),
            Var::Machine => r.machine.as_deref().and_then(text),
            Var::Shift => self.shift.as_ref().and_then(|sh| text(&sh.name)),
            Var::ShiftDate => self.shift.as_ref().and_then(|sh| text(&sh.date.to_string())),
            Var::Key => text(&r.key),
            Var::Meta(k) => r.machine.as_ref().and_then(|m| s.context.machines.get(m)).and_then(|m| m.get(k)).cloned(),
            Var::Topic(k) => r.topic.iter().find(|(n, _)| n == k).and_then(|(_, v)| text(v)),
            Var::Reading(k) => r.extra.get(k).cloned(),
            Var::Lookup(k) => self.looked.get(k).cloned().flatten(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_is_fresh_for_its_ttl_rests_after_a_failure_and_is_never_staler_than_max_stale() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let (ttl, max_stale) = (s(10), s(60));
        let order = Some(Value::from("PO-1001"));
        let fetched = Looked { value: order.clone(), fetched: Some(t0), failed: None };
        assert_eq!(fetched.cached(t0 + s(9), ttl, max_stale), Some(order.clone()), "fresh");
        assert_eq!(fetched.cached(t0 + ttl, ttl, max_stale), None, "asked again at the ttl");
        let none = Looked { value: None, fetched: Some(t0), failed: None };
        assert_eq!(none.cached(t0 + s(1), ttl, max_stale), Some(None), "an empty answer stands too");
        // The ERP failed at t0 + 30: it rests for RETRY_LOOKUP with the last known value.
        let failed = Looked { value: order.clone(), fetched: Some(t0), failed: Some(t0 + s(30)) };
        assert_eq!(failed.cached(t0 + s(31), ttl, max_stale), Some(order.clone()), "resting, stale but usable");
        assert_eq!(failed.cached(t0 + s(30) + RETRY_LOOKUP, ttl, max_stale), None, "asked again after resting");
        let long_down = Looked { value: order.clone(), fetched: Some(t0), failed: Some(t0 + s(61)) };
        assert_eq!(long_down.cached(t0 + s(62), ttl, max_stale), Some(None), "past max_stale: no value");
        assert_eq!(long_down.usable(t0 + s(59), max_stale), order);
        let never = Looked { value: None, fetched: None, failed: Some(t0) };
        assert_eq!(never.cached(t0, ttl, max_stale), Some(None), "never fetched, resting: nothing");
    }

    #[test]
    fn a_group_key_stands_for_exactly_its_members() {
        let k = |keys: &[&str]| group_key(keys.iter().copied());
        assert_eq!(k(&["r1", "r2"]), k(&["r2", "r1"]), "order does not matter");
        assert_ne!(k(&["r1", "r2"]), k(&["r1", "r2", "r3"]), "one more reading is another call");
        assert_ne!(k(&["r1r2"]), k(&["r1", "r2"]), "keys are delimited");
    }
}
