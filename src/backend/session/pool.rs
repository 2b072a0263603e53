//! A backend's sessions: created lazily up to `size`, leased per call (exclusively where the
//! ERP serves one call at a time per session), retired when idle, old or refused, logged out
//! when retired and on shutdown. Failed logins back off, so a wrong password costs the ERP
//! account a bounded number of attempts instead of one per request.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex as AsyncMutex, MutexGuard, Semaphore, SemaphorePermit};

use super::login::{self, LoggedIn};
use super::{MAX_LOGIN_BACKOFF, Session, SessionSpec};
use crate::backend::Link;
use crate::error::GatewayError;

type Slot = AsyncMutex<Option<Arc<Session>>>;

/// Failed logins: how many in a row, and when the next attempt may start.
#[derive(Debug, Default)]
struct LoginHealth {
    failures: u32,
    not_before: Option<Instant>,
    /// A login is being tried after failures; others wait for its outcome instead of
    /// adding attempts.
    probing: bool,
}

/// A backend's session pool.
pub struct SessionPool {
    spec: Arc<SessionSpec>,
    /// The HTTP client and settings of the backend that uses the pool now (a reload that
    /// keeps the pool hands it the new backend's).
    link: Mutex<Link>,
    slots: Vec<Slot>,
    /// Exclusive pools: one permit per slot not leased.
    free: Option<Semaphore>,
    next: AtomicUsize,
    generation: AtomicU64,
    health: Mutex<LoginHealth>,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool").field("spec", &self.spec).finish_non_exhaustive()
    }
}

/// A call's hold on a slot: for an exclusive pool the slot itself, until the lease drops.
pub struct Lease<'a> {
    slot: usize,
    held: Option<MutexGuard<'a, Option<Arc<Session>>>>,
    _permit: Option<SemaphorePermit<'a>>,
}

impl SessionPool {
    /// A pool for `spec`, with no session yet; starts the sweeper that logs idle sessions
    /// out when a runtime is there to run it (not in `veneer check`).
    pub fn new(spec: Arc<SessionSpec>, link: Link) -> Arc<SessionPool> {
        let size = spec.size.max(1);
        let pool = Arc::new(SessionPool {
            free: spec.exclusive.then(|| Semaphore::new(size)),
            slots: (0..size).map(|_| AsyncMutex::new(None)).collect(),
            spec,
            link: Mutex::new(link),
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            health: Mutex::default(),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sweep(Arc::downgrade(&pool)));
        }
        pool
    }

    /// The compiled settings.
    pub fn spec(&self) -> &SessionSpec {
        &self.spec
    }

    /// Hands the pool the client of the backend now using it.
    pub fn adopt(&self, link: Link) {
        *self.link.lock().unwrap_or_else(|p| p.into_inner()) = link;
    }

    fn link(&self) -> Link {
        self.link.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A slot for one call: an exclusive pool waits for a free one (the backend's
    /// `max_concurrency` is at most `size`, so this wait is short); a shared pool takes
    /// the next in turn.
    pub async fn lease(&self) -> Lease<'_> {
        let Some(free) = &self.free else {
            let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
            return Lease { slot, held: None, _permit: None };
        };
        // A closed semaphore never happens (it is never closed); waiting forever is not an
        // option either, so fall through to an unguarded lease in that impossible case.
        let permit = free.acquire().await.ok();
        // Prefer a slot with a live session, so idle ones can age out; a permit guarantees
        // some slot is unlocked.
        let mut fallback = None;
        for (i, slot) in self.slots.iter().enumerate() {
            if let Ok(g) = slot.try_lock() {
                if g.is_some() {
                    return Lease { slot: i, held: Some(g), _permit: permit };
                }
                if fallback.is_none() {
                    fallback = Some((i, g));
                }
            }
        }
        match fallback {
            Some((slot, g)) => Lease { slot, held: Some(g), _permit: permit },
            // Only when the sweeper holds the last free slot for a moment.
            None => {
                let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
                Lease { slot, held: Some(self.slots[slot].lock().await), _permit: permit }
            }
        }
    }

    /// The lease's session, logging in first when it has none or its own is past its
    /// lifetime or idle time (that one is logged out in the background).
    pub async fn session(&self, lease: &mut Lease<'_>) -> Result<Arc<Session>, GatewayError> {
        let mut local;
        let guard: &mut Option<Arc<Session>> = match lease.held.as_mut() {
            Some(g) => g,
            None => {
                local = self.slots[lease.slot].lock().await;
                &mut local
            }
        };
        let now = Instant::now();
        if let Some(s) = guard.as_ref() {
            if s.usable(&self.spec, now) {
                return Ok(s.clone());
            }
            let old = guard.take();
            self.retire_in_background(old);
        }
        let session = Arc::new(self.login().await?);
        *guard = Some(session.clone());
        Ok(session)
    }

    /// The ERP refused `session`: forget it (no logout: the ERP already has) unless a
    /// newer session replaced it meanwhile.
    pub async fn retire(&self, lease: &mut Lease<'_>, session: &Session) {
        let mut local;
        let guard: &mut Option<Arc<Session>> = match lease.held.as_mut() {
            Some(g) => g,
            None => {
                local = self.slots[lease.slot].lock().await;
                &mut local
            }
        };
        if guard.as_ref().is_some_and(|s| s.generation == session.generation) {
            *guard = None;
        }
    }

    async fn login(&self) -> Result<Session, GatewayError> {
        let link = self.link();
        let refused = |reason: String| GatewayError::BackendLogin { backend: link.settings.name.clone(), reason };
        {
            let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
            if h.failures > 0 {
                let wait = h.not_before.map_or(Duration::ZERO, |t| t.saturating_duration_since(Instant::now()));
                if h.probing || !wait.is_zero() {
                    return Err(refused(format!(
                        "the last login failed; the next attempt is in {} s",
                        wait.as_secs().max(1)
                    )));
                }
                h.probing = true;
            }
        }
        let result = login::login(&self.spec, &link).await.and_then(|LoggedIn { values, lifetime }| {
            let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
            let model = link.model.clone();
            Session::new(&self.spec, &model, generation, values, lifetime)
        });
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        h.probing = false;
        match result {
            Ok(session) => {
                h.failures = 0;
                h.not_before = None;
                crate::telemetry::session_login(&link.settings.name, "ok");
                tracing::info!(backend = %link.settings.name, "logged in to the ERP");
                Ok(session)
            }
            Err(e) => {
                h.failures = h.failures.saturating_add(1);
                let wait =
                    self.spec.login_backoff.saturating_mul(1u32 << (h.failures - 1).min(16)).min(MAX_LOGIN_BACKOFF);
                h.not_before = Some(Instant::now() + wait);
                crate::telemetry::session_login(&link.settings.name, "failed");
                let reason = self.spec.redact(&e);
                tracing::warn!(backend = %link.settings.name, error = %reason, retry_in_s = wait.as_secs(), "login to the ERP failed");
                Err(refused(reason))
            }
        }
    }

    fn retire_in_background(&self, session: Option<Arc<Session>>) {
        let (Some(session), Ok(rt)) = (session, tokio::runtime::Handle::try_current()) else { return };
        let spec = self.spec.clone();
        let link = self.link();
        rt.spawn(async move { login::logout(&spec, &link, &session).await });
    }

    /// Logs every session out (shutdown, or a reload that replaced the pool), waiting at
    /// most `deadline` for calls still holding exclusive sessions.
    pub async fn close(&self, deadline: Duration) {
        let link = self.link();
        let mut sessions = Vec::new();
        let _all = match &self.free {
            Some(free) => tokio::time::timeout(deadline, free.acquire_many(self.slots.len() as u32))
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        for slot in &self.slots {
            if let Some(s) = slot.lock().await.take() {
                sessions.push(s);
            }
        }
        let logouts = sessions.iter().map(|s| login::logout(&self.spec, &link, s));
        let _ = tokio::time::timeout(deadline, futures_util::future::join_all(logouts)).await;
    }

    /// Retires sessions past their idle time or lifetime that no call holds.
    async fn sweep_once(&self) {
        let now = Instant::now();
        for slot in &self.slots {
            // An exclusive slot in use is skipped: try_lock fails while a call holds it.
            let Ok(mut g) = slot.try_lock() else { continue };
            let stale = g.as_ref().is_some_and(|s| !s.usable(&self.spec, now) && Arc::strong_count(s) == 1);
            if stale {
                let old = g.take();
                drop(g);
                if let Some(s) = old {
                    login::logout(&self.spec, &self.link(), &s).await;
                }
            }
        }
    }
}

/// Logs idle sessions out (freeing the ERP licences they hold) until the pool is gone.
async fn sweep(pool: Weak<SessionPool>) {
    let every = match pool.upgrade() {
        Some(p) => (p.spec.idle.min(p.spec.lifetime) / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)),
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(p) = pool.upgrade() else { return };
        p.sweep_once().await;
    }
}
