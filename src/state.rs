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
    gates: Mutex<HashMap<(String, QueueSettings), Arc<Gate>>>,
    breakers: Mutex<HashMap<String, (BreakerSettings, Arc<Breaker>)>>,
    introspection: Mutex<HashMap<String, Arc<IntrospectionState>>>,
    sessions: Mutex<Pools>,
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
            gates: Mutex::default(),
            breakers: Mutex::default(),
            introspection: Mutex::default(),
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
        let mut map = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|(n, s), _| n != name || *s == settings);
        map.entry((name.to_string(), settings)).or_insert_with(|| Arc::new(Gate::new(settings))).clone()
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
        let mut map = self.introspection.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = map.get(&identity) {
            return state.clone();
        }
        map.clear(); // one endpoint is configured at a time
        map.entry(identity).or_insert_with(|| Arc::new(IntrospectionState::new(max_concurrency))).clone()
    }

    /// Backend `name`'s circuit breaker with these settings: the same circuit while they
    /// are unchanged, so a reload never closes an open circuit.
    pub fn breaker(&self, name: &str, settings: BreakerSettings) -> Arc<Breaker> {
        let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(name) {
            Some((kept, breaker)) if *kept == settings => breaker.clone(),
            _ => {
                let breaker = Arc::new(Breaker::new(name, settings));
                map.insert(name.to_string(), (settings, breaker.clone()));
                breaker
            }
        }
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
