//! In-process GCRA (governor), keyed by string. Limiters outlive config snapshots through
//! [`Registry`], so a reload that leaves a limit unchanged keeps its state.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};

use super::Decision;
use super::rate::Rate;

type Keyed = RateLimiter<
    String,
    governor::state::keyed::DefaultKeyedStateStore<String>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// One keyed GCRA limiter.
pub struct LocalLimiter {
    rate: Rate,
    inner: Keyed,
    clock: DefaultClock,
}

impl std::fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalLimiter({:?})", self.rate)
    }
}

impl LocalLimiter {
    /// A limiter for `rate`.
    pub fn new(rate: Rate) -> Self {
        let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(rate.interval())
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let clock = DefaultClock::default();
        let inner =
            RateLimiter::dashmap_with_clock(quota, clock.clone()).with_middleware::<StateInformationMiddleware>();
        LocalLimiter { rate, inner, clock }
    }

    /// Takes one request from `key`'s bucket.
    pub fn check(&self, key: &str) -> Decision {
        match self.inner.check_key(&key.to_string()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision::Allow {
                    remaining,
                    reset: self.rate.interval() * (self.rate.burst - remaining.min(self.rate.burst)),
                }
            }
            Err(not_until) => Decision::Deny { retry_after: not_until.wait_time_from(self.clock.now()) },
        }
    }

    /// Forgets keys whose buckets are full again (bounded memory).
    pub fn shrink(&self) {
        self.inner.retain_recent();
    }
}

/// Limiters by identity (scope + rate), shared by successive snapshots.
#[derive(Debug, Default)]
pub struct Registry {
    limiters: Mutex<HashMap<(String, Rate), Arc<LocalLimiter>>>,
}

impl Registry {
    /// The limiter for `scope` at `rate`: the existing one when unchanged, else a new one.
    pub fn get(&self, scope: &str, rate: Rate) -> Arc<LocalLimiter> {
        let mut map = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((scope.to_string(), rate)).or_insert_with(|| Arc::new(LocalLimiter::new(rate))).clone()
    }

    /// Drops idle keys everywhere; run periodically.
    pub fn shrink(&self) {
        let map = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        for l in map.values() {
            l.shrink();
        }
    }
}

/// Seconds, rounded up, for `Retry-After`.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
