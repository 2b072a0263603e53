//! One delivery attempt, shared by every queue store: call the ERP, classify the outcome,
//! and move the item to its next state (delivered, retried with backoff, or dead).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use super::Directory;
use super::{DeliverySettings, Item, Queued, State};
use crate::error::GatewayError;
use crate::route::Route;
use crate::translate::encode;

/// One attempt at an item against the current snapshot: its route (an item whose route
/// was removed is dead), the call, and the route's queued settings for [`settle`].
pub(crate) async fn run(gateway: &dyn Directory, item: &Item) -> (Outcome, Option<Queued>) {
    let Some(route) = gateway.route(&item.route) else {
        let gone = GatewayError::RouteNotFound(format!("route {} is no longer configured", item.route));
        return (Outcome::Dead(problem_value(&gone)), None);
    };
    (call(&route, item).await, route.queued.clone())
}

/// Backends found down as a whole: consecutive failures and the time before which no new
/// attempt starts, so one probe at a time finds a returning ERP instead of every queued
/// item failing (and being rewritten) during an outage.
#[derive(Default)]
pub(crate) struct Holds(Mutex<HashMap<String, (u32, u64)>>);

impl Holds {
    /// Records an attempt's outcome for `backend`; returns the hold (ms since the epoch).
    pub(crate) fn record(&self, backend: &str, down: bool, settings: &DeliverySettings, now: u64) -> u64 {
        let mut holds = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let h = holds.entry(backend.to_string()).or_default();
        h.0 = if down { h.0.saturating_add(1) } else { 0 };
        if down {
            h.1 = now + hold(settings, h.0).as_millis() as u64;
        }
        h.1
    }

    /// No new attempt for `backend` before this (ms since the epoch).
    pub(crate) fn until(&self, backend: &str) -> u64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(backend).map_or(0, |h| h.1)
    }
}

/// How an attempt ended.
pub(crate) enum Outcome {
    /// The ERP's decoded answer; true when it said it already had the item.
    Delivered(Value, bool),
    /// Permanent: a fault mapped to 4xx, or an input that no longer fits.
    Dead(Value),
    /// Transient, for this item: the ERP answered with a server fault.
    Retry(Value),
    /// Transient, for the whole backend: unreachable, timed out, overloaded, circuit open,
    /// or answering garbage. The dispatcher holds the backend back, not just this item.
    Unavailable(Value),
    /// Never sent: every call slot was taken (by direct traffic). Not an attempt.
    Shed,
}

impl Outcome {
    /// Did the attempt find the backend unable to take any call?
    pub(crate) fn backend_down(&self) -> bool {
        matches!(self, Outcome::Unavailable(_))
    }
}

/// The problem document stored as an item's `lastError`.
pub(crate) fn problem_value(e: &GatewayError) -> Value {
    serde_json::to_value(e.to_problem()).unwrap_or(Value::Null)
}

/// One attempt at the ERP: the envelope rebuilt from the stored input (the backend adds its
/// own headers, fresh), sent without the backend's own retries, classified.
pub(crate) async fn call(route: &Route, item: &Item) -> Outcome {
    let op = route.operation();
    let backend = &route.backend;
    let header = &item.route_header;
    let envelope =
        match encode::envelope(op, &backend.model.schema, &item.input, (!header.is_empty()).then_some(header.as_str()))
        {
            Ok(e) => e,
            // The config changed under the item: it no longer fits the operation.
            Err(errors) => return Outcome::Dead(problem_value(&GatewayError::Validation(errors))),
        };
    let forward = http::HeaderValue::from_str(&item.request_id)
        .map(|v| vec![(crate::backend::REQUEST_ID, v)])
        .unwrap_or_default();
    match crate::route::exchange::fetch(route, envelope, forward).await {
        Ok(answer) => Outcome::Delivered(serde_json::from_slice(&answer.body).unwrap_or(Value::Null), false),
        Err(GatewayError::Fault { fault, status, backend }) => {
            if super::is_duplicate(&route.duplicate_faults, &fault) {
                return Outcome::Delivered(Value::Null, true);
            }
            let e = GatewayError::Fault { fault, status, backend };
            if status.is_client_error() { Outcome::Dead(problem_value(&e)) } else { Outcome::Retry(problem_value(&e)) }
        }
        Err(GatewayError::Overloaded { kind: crate::error::OverloadKind::Queue, .. }) => Outcome::Shed,
        Err(e) => Outcome::Unavailable(problem_value(&e)),
    }
}

/// Applies an outcome to the item; returns the event for metrics (`delivered`, `retried`,
/// `dead`). A transient failure past `max_age` (or `max_attempts`) is dead too.
pub(crate) fn settle(
    item: &mut Item,
    outcome: Outcome,
    queued: Option<&Queued>,
    settings: &DeliverySettings,
    now: u64,
) -> &'static str {
    if let Outcome::Shed = outcome {
        item.state = State::Queued;
        item.next_ms = now + 1000;
        return "shed";
    }
    item.attempts += 1;
    item.updated_ms = now;
    let max_age = queued.map_or(settings.max_age, |q| q.max_age);
    let max_attempts = queued.and_then(|q| q.max_attempts);
    match outcome {
        Outcome::Delivered(result, duplicate) => {
            item.state = State::Delivered;
            item.result = Some(result);
            item.duplicate = duplicate;
            "delivered"
        }
        Outcome::Dead(problem) => {
            item.state = State::Dead;
            item.last_error = Some(problem);
            "dead"
        }
        Outcome::Shed => "shed", // handled above
        Outcome::Retry(problem) | Outcome::Unavailable(problem) => {
            item.last_error = Some(problem);
            let since = item.retried_ms.unwrap_or(item.created_ms);
            let too_old = now.saturating_sub(since) >= max_age.as_millis() as u64;
            if too_old || max_attempts.is_some_and(|m| item.attempts >= m) {
                item.state = State::Dead;
                "dead"
            } else {
                item.state = State::Queued;
                item.next_ms = now + backoff(settings, item.attempts).as_millis() as u64;
                "retried"
            }
        }
    }
}

/// How long a backend found down is held back before the next probe: its backoff, but at
/// most 30 s, so a returning ERP is found quickly even when items wait longer.
fn hold(settings: &DeliverySettings, failures: u32) -> Duration {
    backoff(settings, failures).min(Duration::from_secs(30))
}

/// Exponential backoff with full jitter, capped.
pub(crate) fn backoff(settings: &DeliverySettings, attempts: u32) -> Duration {
    let cap = settings.backoff.saturating_mul(1u32 << attempts.min(20)).min(settings.max_backoff);
    cap.mul_f64(rand::random::<f64>()).max(Duration::from_millis(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(created_ms: u64) -> Item {
        Item {
            id: "i".into(),
            route: "POST /r".into(),
            backend: "erp".into(),
            client: "c".into(),
            key: "k".into(),
            partition: None,
            input: Value::Null,
            route_header: String::new(),
            request_id: String::new(),
            state: State::Queued,
            attempts: 0,
            created_ms,
            updated_ms: created_ms,
            next_ms: created_ms,
            last_error: None,
            result: None,
            duplicate: false,
            retried_ms: None,
        }
    }

    #[test]
    fn transient_failures_back_off_until_max_age_then_die() {
        let settings = DeliverySettings::default();
        let mut i = item(0);
        assert_eq!(settle(&mut i, Outcome::Retry(Value::Null), None, &settings, 1_000), "retried");
        assert_eq!(i.state, State::Queued);
        assert!(i.next_ms > 1_000 && i.next_ms <= 1_000 + 2_000, "first backoff at most 2 × 1 s: {}", i.next_ms);
        let day = 24 * 3600 * 1000;
        assert_eq!(settle(&mut i, Outcome::Retry(Value::Null), None, &settings, day), "dead");
        assert_eq!(i.attempts, 2);
        let q = Queued { ordered: false, partition: None, max_age: Duration::from_secs(3600), max_attempts: Some(3) };
        let mut j = item(0);
        for _ in 0..2 {
            assert_eq!(settle(&mut j, Outcome::Retry(Value::Null), Some(&q), &settings, 10), "retried");
        }
        assert_eq!(settle(&mut j, Outcome::Retry(Value::Null), Some(&q), &settings, 10), "dead", "max_attempts");
        let mut k = item(0);
        assert_eq!(settle(&mut k, Outcome::Delivered(Value::Null, true), None, &settings, 5), "delivered");
        assert!(k.duplicate);
    }

    #[test]
    fn backoff_doubles_within_its_cap() {
        let settings = DeliverySettings::default();
        for n in 0..30 {
            assert!(backoff(&settings, n) <= settings.max_backoff);
        }
    }
}
