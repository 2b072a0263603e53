//! State that outlives config snapshots. A reload compiles a new, immutable snapshot; what
//! counts, remembers or protects (rate buckets, quota counters, used client assertions,
//! failed-login penalties, a backend's call slots and circuit breaker) lives here instead,
//! so a reload (or any file touched under the config directory) never resets it.
//!
//! Each piece is keyed by what identifies it in config *and* its settings: a limit whose
//! rate changed, or a backend whose `max_concurrency` changed, starts afresh, exactly as a
//! person editing the file expects; anything unchanged carries on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::guard::HashPool;
use crate::auth::introspect::IntrospectionState;
use crate::backend::breaker::Breaker;
use crate::backend::protect::{BreakerSettings, Gate, QueueSettings};
use crate::backend::session::{SessionPool, SessionSpec};
use crate::backend::{Kept, Link};
use crate::throttle::local::Registry;
use crate::throttle::quota::{Counts, Window};

/// How long a used client-assertion `jti` is remembered (assertions live at most an hour).
pub(crate) const ASSERTION_MEMORY: Duration = Duration::from_secs(3660);

/// Everything carried from one snapshot to the next.
pub struct Retained {
    /// Local GCRA limiters, by scope and rate.
    pub limiters: Arc<Registry>,
    /// `jti`s of client assertions already used (RFC 7523 replay protection).
    pub assertions: moka::sync::Cache<String, ()>,
    /// Keys (client id or source address) refused at the token endpoint until an instant.
    pub login_penalties: moka::sync::Cache<String, Instant>,
    /// The threads argon2 runs on, one per core.
    pub hashing: Arc<HashPool>,
    quotas: Mutex<HashMap<Window, Arc<Counts>>>,
    gates: KeptBy<QueueSettings, Gate>,
    breakers: KeptBy<BreakerSettings, Breaker>,
    introspection: KeptBy<String, IntrospectionState>,
    sessions: Mutex<Pools>,
}

/// Values kept by name while their settings are unchanged: equal settings get the same
/// value (with its state: slots in use, an open circuit), changed ones a new value that
/// replaces the old. One rule for every piece of state a reload must not reset.
struct KeptBy<S, V>(Mutex<HashMap<String, (S, Arc<V>)>>);

impl<S, V> Default for KeptBy<S, V> {
    fn default() -> Self {
        KeptBy(Mutex::default())
    }
}

impl<S: PartialEq + Clone, V> KeptBy<S, V> {
    /// `name`'s value for `settings`, made by `make` when there is none or they changed.
    fn get(&self, name: &str, settings: &S, make: impl FnOnce() -> V) -> Arc<V> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(name) {
            Some((kept, value)) if kept == settings => value.clone(),
            _ => {
                let value = Arc::new(make());
                map.insert(name.to_string(), (settings.clone(), value.clone()));
                value
            }
        }
    }
}

/// ERP session pools by backend name: those of the serving snapshot, and those a compile
/// made that may serve next.
#[derive(Default)]
struct Pools {
    live: HashMap<String, Arc<SessionPool>>,
    staged: HashMap<String, Arc<SessionPool>>,
}

impl std::fmt::Debug for Retained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retained").field("limiters", &self.limiters).finish_non_exhaustive()
    }
}

impl Default for Retained {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        Retained {
            limiters: Arc::default(),
            assertions: moka::sync::Cache::builder().time_to_live(ASSERTION_MEMORY).max_capacity(1_000_000).build(),
            login_penalties: moka::sync::Cache::builder()
                .time_to_live(Duration::from_secs(3600))
                .max_capacity(100_000)
                .build(),
            hashing: Arc::new(HashPool::new(cores)),
            quotas: Mutex::default(),
            gates: KeptBy::default(),
            breakers: KeptBy::default(),
            introspection: KeptBy::default(),
            sessions: Mutex::default(),
        }
    }
}

impl Retained {
    /// The call counters of quotas over `window` (per client), kept across reloads.
    pub(crate) fn quota_counts(&self, window: Window) -> Arc<Counts> {
        let mut map = self.quotas.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(window).or_default().clone()
    }

    /// Backend `name`'s slot gate: the same one while its queue settings are unchanged, so
    /// calls in flight before a reload still count against `max_concurrency` after it.
    pub fn gate(&self, name: &str, settings: QueueSettings) -> Arc<Gate> {
        self.gates.get(name, &settings, || Gate::new(settings))
    }

    /// Backend `name`'s ERP session pool: the serving one (with its logged-in sessions)
    /// while its login settings are unchanged, else a new one. Nothing changes for the
    /// serving snapshot until [`Retained::commit_sessions`]: a reload that is then refused
    /// leaves its pools alone.
    pub(crate) fn session_pool(&self, name: &str, spec: Arc<SessionSpec>, link: Link) -> Arc<SessionPool> {
        let mut pools = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let same = |p: &&Arc<SessionPool>| p.spec().fingerprint == spec.fingerprint;
        if let Some(pool) = pools.live.get(name).filter(same).or_else(|| pools.staged.get(name).filter(same)) {
            return pool.clone();
        }
        let pool = SessionPool::new(spec, link);
        pools.staged.insert(name.to_string(), pool.clone());
        pool
    }

    /// A snapshot with these backends serves now: their pools become the live ones (handed its backends' clients),
    /// and pools it no longer uses log their sessions out in the background.
    pub(crate) fn commit_sessions<'a>(
        &self,
        backends: impl IntoIterator<Item = (&'a String, &'a Arc<crate::backend::Backend>)>,
    ) {
        let mut pools = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let mut live = HashMap::new();
        for (name, backend) in backends {
            if let Some((pool, link)) = backend.session_pool() {
                pool.adopt(link.clone());
                live.insert(name.clone(), pool.clone());
            }
        }
        let old = std::mem::replace(&mut pools.live, live);
        pools.staged.clear();
        let replaced: Vec<Arc<SessionPool>> =
            old.into_values().filter(|p| !pools.live.values().any(|l| Arc::ptr_eq(l, p))).collect();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            for pool in replaced {
                rt.spawn(async move { pool.close(Duration::from_secs(30)).await });
            }
        }
    }

    /// The introspection endpoint's call slots and remembered refusals for these settings
    /// (`identity`), so calls in flight across a reload still count against the cap.
    pub fn introspection(&self, identity: String, max_concurrency: usize) -> Arc<IntrospectionState> {
        // One endpoint is configured at a time: its settings are the identity.
        self.introspection.get("", &identity, || IntrospectionState::new(max_concurrency))
    }

    /// Backend `name`'s circuit breaker with these settings: the same circuit while they
    /// are unchanged, so a reload never closes an open circuit.
    pub fn breaker(&self, name: &str, settings: BreakerSettings) -> Arc<Breaker> {
        self.breakers.get(name, &settings, || Breaker::new(name, settings))
    }
}

impl Kept for Retained {
    fn gate(&self, name: &str, settings: QueueSettings) -> Arc<Gate> {
        Retained::gate(self, name, settings)
    }

    fn breaker(&self, name: &str, settings: BreakerSettings) -> Arc<Breaker> {
        Retained::breaker(self, name, settings)
    }

    fn session_pool(&self, name: &str, spec: Arc<SessionSpec>, link: Link) -> Arc<SessionPool> {
        Retained::session_pool(self, name, spec, link)
    }
}

#[cfg(test)]
mod kept_tests {
    use super::*;

    #[test]
    fn a_value_is_kept_while_its_settings_hold_and_replaced_when_they_change() {
        let kept: KeptBy<u32, String> = KeptBy::default();
        let first = kept.get("erp", &1, || "first".into());
        assert!(Arc::ptr_eq(&first, &kept.get("erp", &1, || "unused".into())), "same settings, same value");
        let other = kept.get("crm", &1, || "crm".into());
        assert!(!Arc::ptr_eq(&first, &other), "another name has its own");
        let changed = kept.get("erp", &2, || "second".into());
        assert_eq!(*changed, "second");
        assert!(Arc::ptr_eq(&changed, &kept.get("erp", &2, || "unused".into())), "the new value is kept now");
    }
}
