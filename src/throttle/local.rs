//! In-process GCRA (governor), keyed by string. Limiters outlive config snapshots through
//! [`Registry`], so a reload that leaves a limit unchanged keeps its state.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, ReasonablyRealtime};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};

use super::Decision;
use super::rate::Rate;

type Keyed =
    RateLimiter<String, governor::state::keyed::DefaultKeyedStateStore<String>, TokioClock, StateInformationMiddleware>;

/// Governor's clock read from tokio's: the same monotonic time in production, and paused,
/// advanced time in tests (`start_paused`), so refill arithmetic is tested exactly.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

impl ReasonablyRealtime for TokioClock {}

/// One keyed GCRA limiter.
pub struct LocalLimiter {
    rate: Rate,
    inner: Keyed,
    clock: TokioClock,
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
        let clock = TokioClock;
        let inner = RateLimiter::dashmap_with_clock(quota, clock).with_middleware::<StateInformationMiddleware>();
        LocalLimiter { rate, inner, clock }
    }

    /// Takes one request from `key`'s bucket.
    pub fn check(&self, key: &str) -> Decision {
        self.check_n(key, 1)
    }

    /// Takes `n` at once from `key`'s bucket, or none; more than the burst is refused with
    /// the wait for a full bucket.
    pub(crate) fn check_n(&self, key: &str, n: u32) -> Decision {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let Ok(result) = self.inner.check_key_n(&key.to_string(), n) else {
            return Decision::Deny { retry_after: self.rate.interval() * self.rate.burst };
        };
        match result {
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
    pub(crate) fn shrink(&self) {
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
    pub(crate) fn shrink(&self) {
        let map = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        for l in map.values() {
            l.shrink();
        }
    }
}

pub(crate) use crate::error::ceil_secs;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn allowed(d: Decision) -> Option<u32> {
        match d {
            Decision::Allow { remaining, .. } => Some(remaining),
            Decision::Deny { .. } => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_refills_one_request_per_interval() {
        let limiter = LocalLimiter::new(Rate::parse("2/s", Some(5)).expect("rate"));
        let burst: Vec<_> = (0..5).map(|_| allowed(limiter.check("a"))).collect();
        assert_eq!(burst, [Some(4), Some(3), Some(2), Some(1), Some(0)]);
        let Decision::Deny { retry_after } = limiter.check("a") else { panic!("the sixth is refused") };
        assert_eq!(retry_after, Duration::from_millis(500), "one interval at 2/s");
        assert_eq!(ceil_secs(retry_after), 1);
        assert_eq!(allowed(limiter.check("b")), Some(4), "another key has its own bucket");
        // Just short of the interval: still refused, with the rest of the wait.
        tokio::time::advance(Duration::from_millis(499)).await;
        assert_eq!(limiter.check("a"), Decision::Deny { retry_after: Duration::from_millis(1) });
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(allowed(limiter.check("a")), Some(0), "exactly one request per interval");
        assert!(allowed(limiter.check("a")).is_none());
        // By time t after emptying, 2·t more are admitted: 3 s refills 5 (the burst caps it).
        tokio::time::advance(Duration::from_secs(3)).await;
        let admitted = (0..8).filter_map(|_| allowed(limiter.check("a"))).count();
        assert_eq!(admitted, 5, "a full bucket holds the burst, no more");
    }

    #[tokio::test(start_paused = true)]
    async fn reset_says_when_the_bucket_is_full_again_and_idle_keys_are_forgotten() {
        let limiter = LocalLimiter::new(Rate::parse("10/s", Some(3)).expect("rate"));
        limiter.check("a");
        assert_eq!(limiter.check("a"), Decision::Allow { remaining: 1, reset: Duration::from_millis(200) });
        assert_eq!(limiter.inner.len(), 1);
        limiter.shrink();
        assert_eq!(limiter.inner.len(), 1, "a key with a spent bucket is remembered");
        tokio::time::advance(Duration::from_millis(300)).await;
        limiter.shrink();
        assert_eq!(limiter.inner.len(), 0, "a full bucket is indistinguishable from a new key");
    }
}
