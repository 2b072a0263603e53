//! Backend protection: a concurrency cap with a bounded, deadline-limited queue, retries
//! with backoff and jitter for idempotent calls within a retry budget, a circuit breaker,
//! and "busy" faults treated as overload.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use regex::Regex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::retry::budget::{Budget, TpsBudget};

use crate::error::{GatewayError, OverloadKind};

/// Concurrency cap and queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueSettings {
    /// Calls in flight at most.
    pub max_concurrency: usize,
    /// Calls waiting for a slot at most; more are refused at once.
    pub max_queue: usize,
    /// Longest wait for a slot.
    pub queue_timeout: Duration,
}

/// Retry policy for idempotent calls.
#[derive(Debug, Clone, Copy)]
pub struct RetrySettings {
    /// Extra attempts after the first.
    pub attempts: u32,
    /// First backoff; doubles each attempt, with full jitter.
    pub backoff: Duration,
    /// Retries allowed as a fraction of calls (0.2 = 20 %), over a 10 s window.
    pub budget_ratio: f32,
}

/// Circuit breaker settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// Failure ratio that opens the circuit.
    pub failure_rate: f64,
    /// Calls in the sliding window.
    pub window: usize,
    /// Calls needed before the ratio counts.
    pub min_calls: usize,
    /// Time open before probing (half-open).
    pub open_for: Duration,
}

/// A fault pattern meaning "the ERP is too busy".
#[derive(Debug, Clone)]
pub struct BusyRule {
    /// Fault code or subcode (prefix ignored).
    pub code: Option<String>,
    /// Pattern searched in the fault reason.
    pub reason: Option<Regex>,
    /// 503 or 429.
    pub status: StatusCode,
    /// Suggested wait.
    pub retry_after: Duration,
}

/// The slot gate in front of one backend.
pub struct Gate {
    settings: QueueSettings,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gate({:?})", self.settings)
    }
}

impl Gate {
    /// A gate with these limits.
    pub(crate) fn new(settings: QueueSettings) -> Self {
        Gate { slots: Arc::new(Semaphore::new(settings.max_concurrency)), settings, waiting: AtomicUsize::new(0) }
    }

    /// Calls in flight at most.
    pub(crate) fn max_concurrency(&self) -> usize {
        self.settings.max_concurrency
    }

    /// Waits for a call slot: at once when free, else in the queue until the deadline.
    pub(crate) async fn enter(&self, backend: &str) -> Result<OwnedSemaphorePermit, GatewayError> {
        let overloaded = |reason: &str| GatewayError::Overloaded {
            backend: backend.to_string(),
            kind: OverloadKind::Queue,
            reason: reason.to_string(),
            retry_after: self.settings.queue_timeout.max(Duration::from_secs(1)),
            status: StatusCode::SERVICE_UNAVAILABLE,
        };
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.settings.max_queue {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(overloaded("all call slots are busy and the queue is full"));
                }
                let waited =
                    tokio::time::timeout(self.settings.queue_timeout, self.slots.clone().acquire_owned()).await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                match waited {
                    Ok(Ok(p)) => p,
                    _ => return Err(overloaded("no call slot became free within the queue timeout")),
                }
            }
        };
        Ok(permit)
    }
}

/// The retry budget and policy of one backend.
pub(crate) struct Retries {
    /// Policy.
    pub settings: RetrySettings,
    budget: TpsBudget,
}

impl std::fmt::Debug for Retries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Retries({:?})", self.settings)
    }
}

impl Retries {
    /// A policy with its budget (validated at config load: ratio within 0..=1).
    pub(crate) fn new(settings: RetrySettings) -> Self {
        let ratio = settings.budget_ratio.clamp(0.0, 1.0);
        Retries { settings, budget: TpsBudget::new(Duration::from_secs(10), 1, ratio) }
    }

    /// Every call deposits, so retries stay a fraction of real traffic.
    pub(crate) fn deposit(&self) {
        self.budget.deposit();
    }

    /// May attempt `n` (1-based retry number) go ahead? Consumes budget when it may.
    pub(crate) fn allow(&self, n: u32) -> bool {
        n <= self.settings.attempts && self.budget.withdraw()
    }

    /// Exponential backoff with full jitter for retry `n`.
    pub(crate) fn backoff(&self, n: u32) -> Duration {
        let cap = self.settings.backoff.saturating_mul(1 << n.min(10));
        cap.mul_f64(rand::random::<f64>())
    }
}

/// Errors worth retrying: the call never reached the ERP, or the ERP said it is busy.
/// Timeouts are not retried: a slow ERP gets slower with more calls.
pub(crate) fn retryable(e: &GatewayError) -> bool {
    match e {
        GatewayError::BackendUnreachable { .. } => true,
        GatewayError::Overloaded { kind, .. } => *kind == OverloadKind::Busy,
        _ => false,
    }
}

/// Errors the circuit breaker counts as failures.
pub(crate) fn breaker_failure(e: &GatewayError) -> bool {
    matches!(e, GatewayError::BackendUnreachable { .. } | GatewayError::BackendTimeout { .. }) || retryable(e)
}
