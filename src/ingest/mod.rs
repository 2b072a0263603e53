//! Telemetry in: the data dictionary of sensors (units, ranges, enrichment, the route each
//! sensor's readings go through), batched readings over HTTP, and MQTT from the edge broker.
//!
//! Both ways in share one path: a payload is split into readings ([`reading::split`]),
//! each is checked against the dictionary ([`reading::check`]), and the accepted ones are
//! enriched, mapped and stored by the [`intake::Intake`].

pub(crate) mod calendar;
pub mod dictionary;
pub mod intake;
pub mod mqtt;
pub mod pattern;
pub mod reading;
pub mod template;
pub mod topic;
pub mod units;

use crate::delivery::Services;
use dictionary::Dictionary;
use intake::{Intake, Outcome, Submitter};
use reading::{Context, Rejected};

/// What became of each reading of a payload, in order, with its pointer.
pub(crate) type Results = Vec<(String, Result<Outcome, Rejected>)>;

/// Checks every reading of a payload and takes the valid ones; one result per reading.
pub async fn take(
    intake: &Intake,
    dict: &Dictionary,
    services: Option<&Services>,
    who: &Submitter,
    ctx: &Context,
    items: Vec<reading::Item>,
) -> Results {
    let mut results: Vec<(String, Option<Result<Outcome, Rejected>>)> = Vec::with_capacity(items.len());
    let mut accepted = Vec::new();
    let mut slots = Vec::new();
    for (pointer, value) in items {
        match value.and_then(|v| reading::check(dict, ctx, &pointer, v)) {
            Ok(r) => {
                slots.push(results.len());
                accepted.push(r);
                results.push((pointer, None));
            }
            Err(rejected) => results.push((pointer, Some(Err(rejected)))),
        }
    }
    for (slot, outcome) in slots.into_iter().zip(intake.take(services, who, accepted).await) {
        results[slot].1 = Some(Ok(outcome));
    }
    results
        .into_iter()
        .map(|(p, r)| {
            (p, r.unwrap_or(Ok(Outcome::Failed { reason: "not processed".into(), retryable: true, queue: None })))
        })
        .collect()
}

/// Counts a payload's results in the metrics.
pub fn count(origin: &'static str, results: &Results) {
    let (mut queued, mut delivered, mut rejected, mut failed) = (0, 0, 0, 0);
    for (_, r) in results {
        match r {
            Ok(Outcome::Queued(_)) => queued += 1,
            Ok(Outcome::Delivered(_)) => delivered += 1,
            Ok(Outcome::Failed { .. }) => failed += 1,
            Err(_) => rejected += 1,
        }
    }
    for (outcome, n) in [("queued", queued), ("delivered", delivered), ("rejected", rejected), ("failed", failed)] {
        if n > 0 {
            crate::telemetry::readings(origin, outcome, n);
        }
    }
}
