//! Compiles a backend's protection settings: concurrency cap and queue, retries, circuit
//! breaker, busy faults. Defaults protect a fragile ERP without any config.

use std::time::Duration;

use axum::http::StatusCode;
use regex::Regex;

use super::problems::{self, AtLeast};
use super::raw::BackendSection;
use crate::backend::Protection;
use crate::backend::protect::{BreakerSettings, BusyRule, QueueSettings, RetrySettings};

/// Compiles protection; each problem goes to `fail(key path under the backend, message)`.
pub(crate) fn protection(s: &BackendSection, fail: &mut dyn FnMut(&str, String)) -> Protection {
    let mut duration = |path: &str, v: Option<&String>, default: Duration| {
        problems::duration(path, v.map(String::as_str), default, AtLeast::Zero, &mut |m| fail(path, m))
    };
    let queue = QueueSettings {
        max_concurrency: s.max_concurrency.unwrap_or(32).max(1),
        max_queue: s.queue.as_ref().and_then(|q| q.max).unwrap_or(64),
        queue_timeout: duration(
            "queue.timeout",
            s.queue.as_ref().and_then(|q| q.timeout.as_ref()),
            Duration::from_secs(2),
        ),
    };
    let r = s.retries.as_ref();
    let backoff = duration("retries.backoff", r.and_then(|r| r.backoff.as_ref()), Duration::from_millis(100));
    let open_for = duration(
        "circuit_breaker.open_for",
        s.circuit_breaker.as_ref().and_then(|b| b.open_for.as_ref()),
        Duration::from_secs(30),
    );
    let mut busy = Vec::new();
    for (i, b) in s.busy_faults.iter().enumerate() {
        let retry_after =
            duration(&format!("busy_faults.{i}.retry_after"), b.retry_after.as_ref(), Duration::from_secs(5));
        busy.push((b, retry_after));
    }
    let budget_ratio = match r.and_then(|r| r.budget.as_deref()) {
        None => 0.2,
        Some(t) => match t.trim().strip_suffix('%').and_then(|n| n.trim().parse::<f32>().ok()) {
            Some(p) if (0.0..=100.0).contains(&p) => p / 100.0,
            _ => {
                fail("retries.budget", format!("retries.budget {t:?} must be a percentage such as \"20%\""));
                0.2
            }
        },
    };
    let attempts = r.and_then(|r| r.attempts).unwrap_or(2);
    let retries = (attempts > 0).then_some(RetrySettings { attempts, backoff, budget_ratio });
    let breaker = match &s.circuit_breaker {
        Some(b) if b.enabled == Some(false) => None,
        b => {
            let failure_rate = b.as_ref().and_then(|b| b.failure_rate).unwrap_or(0.5);
            if !(0.0..=1.0).contains(&failure_rate) || failure_rate == 0.0 {
                fail(
                    "circuit_breaker.failure_rate",
                    "circuit_breaker.failure_rate must be above 0 and at most 1".into(),
                );
            }
            let window = b.as_ref().and_then(|b| b.window).unwrap_or(20).max(1);
            let min_calls = b.as_ref().and_then(|b| b.min_calls).unwrap_or(10).clamp(1, window);
            Some(BreakerSettings { failure_rate: failure_rate.clamp(0.01, 1.0), window, min_calls, open_for })
        }
    };
    let busy = busy
        .into_iter()
        .enumerate()
        .filter_map(|(i, (b, retry_after))| {
            let status = match b.status.unwrap_or(503) {
                503 => StatusCode::SERVICE_UNAVAILABLE,
                429 => StatusCode::TOO_MANY_REQUESTS,
                other => {
                    fail(&format!("busy_faults.{i}.status"), format!("busy_faults status {other} must be 503 or 429"));
                    return None;
                }
            };
            let reason = match b.reason.as_deref().map(Regex::new) {
                None => None,
                Some(Ok(r)) => Some(r),
                Some(Err(e)) => {
                    fail(
                        &format!("busy_faults.{i}.reason"),
                        format!("busy_faults reason is not a valid regular expression: {e}"),
                    );
                    return None;
                }
            };
            if b.code.is_none() && reason.is_none() {
                fail(&format!("busy_faults.{i}"), "a busy fault needs code:, reason: or both".into());
                return None;
            }
            Some(BusyRule { code: b.code.clone(), reason, status, retry_after })
        })
        .collect();
    Protection { queue, retries, breaker, busy }
}
