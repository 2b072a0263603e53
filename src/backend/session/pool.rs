//! A backend's sessions: created lazily up to `size`, leased per call (exclusively where the
//! ERP serves one call at a time per session), retired when idle, old or refused, logged out
//! once no call holds them, and all logged out on shutdown or when a reload replaces the
//! pool. Logins are careful with the ERP account: one at a time, and after a refusal none
//! until the backoff has passed, so a wrong password costs one attempt per backoff window
//! instead of one per request or per pooled session.
//!
//! Callers run a session call on a task of its own (see `Transport`), so a caller that goes
//! away never leaves a login half-recorded or an exclusive session released while the ERP
//! still works on it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex as AsyncMutex, MutexGuard, Semaphore, SemaphorePermit};

use super::login::{self, LoggedIn, LoginError};
use super::{MAX_LOGIN_BACKOFF, Session, SessionSpec};
use crate::backend::Link;
use crate::error::GatewayError;

type Slot = AsyncMutex<Option<Arc<Session>>>;

/// Logins so far: refusals in a row, and when the next attempt may start.
#[derive(Debug, Default)]
struct LoginHealth {
    failures: u32,
    not_before: Option<Instant>,
}

/// A backend's session pool.
pub struct SessionPool {
    /// The settings it was made with: its logins and logouts follow them (a reload keeps
    /// the pool only while they are unchanged).
    spec: Arc<SessionSpec>,
    /// The HTTP client and settings of the backend that uses the pool now.
    link: Mutex<Link>,
    slots: Vec<Slot>,
    /// Exclusive pools: one permit per slot not leased.
    free: Option<Semaphore>,
    next: AtomicUsize,
    generation: AtomicU64,
    health: Mutex<LoginHealth>,
    /// Held by the one login in flight, until its outcome is recorded.
    careful: AsyncMutex<()>,
    /// Sessions taken out of their slot, logged out once no call holds them.
    retired: Mutex<Vec<Arc<Session>>>,
    /// Replaced by a reload, or shut down: sessions still used are retired after the call.
    closed: AtomicBool,
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

/// A slot's content, through the lease's guard or a guard of its own.
enum SlotRef<'a, 'b> {
    Held(&'b mut MutexGuard<'a, Option<Arc<Session>>>),
    Own(MutexGuard<'a, Option<Arc<Session>>>),
}

impl std::ops::Deref for SlotRef<'_, '_> {
    type Target = Option<Arc<Session>>;
    fn deref(&self) -> &Self::Target {
        match self {
            SlotRef::Held(g) => g,
            SlotRef::Own(g) => g,
        }
    }
}

impl std::ops::DerefMut for SlotRef<'_, '_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            SlotRef::Held(g) => g,
            SlotRef::Own(g) => g,
        }
    }
}

impl SessionPool {
    /// A pool for `spec`, with no session yet; starts the sweeper that logs out idle and
    /// retired sessions when a runtime is there to run it (not in `veneer check`).
    pub(crate) fn new(spec: Arc<SessionSpec>, link: Link) -> Arc<SessionPool> {
        let size = spec.size.max(1);
        let pool = Arc::new(SessionPool {
            free: spec.exclusive.then(|| Semaphore::new(size)),
            slots: (0..size).map(|_| AsyncMutex::new(None)).collect(),
            spec,
            link: Mutex::new(link),
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            health: Mutex::default(),
            careful: AsyncMutex::new(()),
            retired: Mutex::default(),
            closed: AtomicBool::new(false),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sweep(Arc::downgrade(&pool)));
        }
        pool
    }

    /// The settings it was made with.
    pub(crate) fn spec(&self) -> &SessionSpec {
        &self.spec
    }

    /// Hands the pool the client of the backend now using it.
    pub(crate) fn adopt(&self, link: Link) {
        *self.link.lock().unwrap_or_else(|p| p.into_inner()) = link;
    }

    fn link(&self) -> Link {
        self.link.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Was the pool replaced or shut down?
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// A slot for one call: an exclusive pool waits for a free one (the backend's
    /// `max_concurrency` is at most `size`, so this wait is short); a shared pool takes
    /// the next in turn.
    pub(crate) async fn lease(&self) -> Lease<'_> {
        let Some(free) = &self.free else {
            let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
            return Lease { slot, held: None, _permit: None };
        };
        // The semaphore is never closed; were it, the slot lock below still keeps calls
        // one at a time per session.
        let permit = free.acquire().await.ok();
        // Prefer a slot with a live session, so idle ones can age out; a permit guarantees
        // some slot is unlocked (the sweeper takes one too before it locks a slot).
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
            None => {
                let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
                Lease { slot, held: Some(self.slots[slot].lock().await), _permit: permit }
            }
        }
    }

    /// The lease's session, logging in first when it has none or its own is past its
    /// lifetime or idle time (that one is retired).
    pub(crate) async fn session<'a>(&'a self, lease: &mut Lease<'a>) -> Result<Arc<Session>, GatewayError> {
        let mut guard = self.slot(lease).await;
        if let Some(s) = guard.as_ref() {
            if s.usable(Instant::now()) {
                return Ok(s.clone());
            }
            if let Some(old) = guard.take() {
                self.retire_later(old);
            }
        }
        let session = Arc::new(self.login().await?);
        *guard = Some(session.clone());
        Ok(session)
    }

    /// The lease's slot: the one an exclusive lease holds, else locked for the moment.
    async fn slot<'a, 'b>(&'a self, lease: &'b mut Lease<'a>) -> SlotRef<'a, 'b> {
        let slot = lease.slot;
        match lease.held.as_mut() {
            Some(g) => SlotRef::Held(g),
            None => SlotRef::Own(self.slots[slot].lock().await),
        }
    }

    /// Takes `session` out of the lease's slot (unless a newer one replaced it meanwhile)
    /// and logs it out once no call holds it: after the ERP refused it (the logout then
    /// fails harmlessly) or after a call on a closed pool.
    pub(crate) async fn retire<'a>(&'a self, lease: &mut Lease<'a>, session: &Arc<Session>) {
        let mut guard = self.slot(lease).await;
        if guard.as_ref().is_some_and(|s| s.generation == session.generation) {
            *guard = None;
        }
        drop(guard);
        self.retire_later(session.clone());
    }

    /// After a call on a closed pool (replaced by a reload, or shut down): the session is
    /// taken out and logged out now, since the pool's sweeper ends with the pool.
    pub(crate) async fn retire_closed<'a>(self: &'a Arc<Self>, lease: &mut Lease<'a>, session: &Arc<Session>) {
        self.retire(lease, session).await;
        let taken: Vec<Arc<Session>> = std::mem::take(&mut *self.retired.lock().unwrap_or_else(|p| p.into_inner()));
        let (pool, link) = (self.clone(), self.link());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for s in taken {
                    login::logout(&pool.spec, &link, &s).await;
                }
            });
        }
    }

    /// The ERP refused a session it had just handed out (before any call succeeded in it):
    /// the login is what does not work (a header or URL the ERP does not accept), so it
    /// counts as a failed login, with the backoff.
    pub(crate) async fn refused_at_once<'a>(&'a self, lease: &mut Lease<'a>, session: &Arc<Session>) -> GatewayError {
        self.retire(lease, session).await;
        self.login_failed(
            "the ERP refused the session right after handing it out; check the session's soap_headers, http_headers and url"
                .into(),
        )
    }

    /// The login answer's values cannot be used (a URL outside the backend's origins, text
    /// that fits no header): the session is retired and this counts as a failed login, so
    /// the ERP is not asked again before the backoff.
    pub(crate) async fn unusable<'a>(
        &'a self,
        lease: &mut Lease<'a>,
        session: &Arc<Session>,
        reason: String,
    ) -> GatewayError {
        self.retire(lease, session).await;
        self.login_failed(reason)
    }

    async fn login(&self) -> Result<Session, GatewayError> {
        // One login in flight per pool, whatever its size and health, and its outcome is
        // recorded before the next may start: a wrong password (at a cold start, or changed
        // under a healthy pool whose sessions all expire at once) costs one failed login
        // per backoff window, not one per slot. ERPs lock an account after a few (SAP B1).
        let _one = self.careful.lock().await;
        if let Some(wait) = self.backoff_left() {
            return Err(self
                .refusal(format!("the last login failed; the next attempt is in {} s", wait.as_secs().max(1)), wait));
        }
        let link = self.link();
        let result = login::login(&self.spec, &link).await;
        match result {
            Ok(LoggedIn { values, idle }) => {
                let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
                // Refusals in a row are forgotten only once a call works in a session (see
                // `worked`): a login the ERP accepts whose session it then refuses (a bad
                // URL or header) keeps doubling the backoff.
                h.not_before = None;
                drop(h);
                crate::telemetry::session_login(&link.settings.name, "ok");
                tracing::info!(backend = %link.settings.name, "logged in to the ERP");
                let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                Ok(Session::new(generation, values, self.spec.lifetime, idle))
            }
            Err(LoginError::Transport(e)) => {
                crate::telemetry::session_login(&link.settings.name, "unreachable");
                Err(e)
            }
            Err(LoginError::Refused(reason)) => Err(self.login_failed(reason)),
        }
    }

    /// A call worked in one of the pool's sessions: logins work, refusals are forgotten.
    pub(crate) fn worked(&self) {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if h.failures > 0 {
            *h = LoginHealth::default();
        }
    }

    /// Time left before the next login may be tried, after a refusal.
    fn backoff_left(&self) -> Option<Duration> {
        let h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let wait = h.not_before?.saturating_duration_since(Instant::now());
        (!wait.is_zero()).then_some(wait)
    }

    /// Records a refused login (backoff doubling from `login_backoff`) and logs why.
    fn login_failed(&self, reason: String) -> GatewayError {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        h.failures = h.failures.saturating_add(1);
        let wait = self.spec.login_backoff.saturating_mul(1u32 << (h.failures - 1).min(16)).min(MAX_LOGIN_BACKOFF);
        h.not_before = Some(Instant::now() + wait);
        drop(h);
        let name = self.link().settings.name.clone();
        crate::telemetry::session_login(&name, "failed");
        let reason = self.spec.redact(&reason);
        tracing::warn!(backend = %name, error = %reason, retry_in_s = wait.as_secs(), "login to the ERP failed");
        self.refusal(reason, wait)
    }

    /// A login refusal; callers may try again after `wait` (the backoff left).
    fn refusal(&self, reason: String, wait: Duration) -> GatewayError {
        GatewayError::BackendLogin { backend: self.link().settings.name.clone(), reason, retry_after: Some(wait) }
    }

    fn retire_later(&self, session: Arc<Session>) {
        self.retired.lock().unwrap_or_else(|p| p.into_inner()).push(session);
    }

    /// Logs every session out (shutdown, or a reload that replaced the pool); calls still
    /// holding exclusive sessions get until `deadline`.
    pub(crate) async fn close(&self, deadline: Duration) {
        self.closed.store(true, Ordering::Relaxed);
        let until = tokio::time::Instant::now() + deadline;
        let _all = match &self.free {
            Some(free) => tokio::time::timeout_at(until, free.acquire_many(self.slots.len() as u32))
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        let mut sessions = Vec::new();
        for slot in &self.slots {
            if let Ok(mut g) = tokio::time::timeout_at(until, slot.lock()).await
                && let Some(s) = g.take()
            {
                sessions.push(s);
            }
        }
        sessions.append(&mut self.retired.lock().unwrap_or_else(|p| p.into_inner()));
        let link = self.link();
        let logouts = sessions.iter().map(|s| login::logout(&self.spec, &link, s));
        let _ = tokio::time::timeout_at(until + Duration::from_secs(5), futures_util::future::join_all(logouts)).await;
    }

    /// Retires sessions past their idle time or lifetime, and logs out retired sessions no
    /// call holds any more.
    async fn sweep_once(&self) {
        let now = Instant::now();
        let mut done = Vec::new();
        for slot in &self.slots {
            // An exclusive slot is only touched with a permit, so a call never waits for the
            // sweeper; a slot in use is skipped.
            let permit = match &self.free {
                Some(free) => match free.try_acquire() {
                    Ok(p) => Some(p),
                    Err(_) => break,
                },
                None => None,
            };
            let Ok(mut g) = slot.try_lock() else { continue };
            if g.as_ref().is_some_and(|s| !s.usable(now))
                && let Some(s) = g.take()
            {
                done.push(s);
            }
            drop(g);
            drop(permit);
        }
        {
            let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
            let (free, held): (Vec<_>, Vec<_>) = retired.drain(..).partition(|s| Arc::strong_count(s) == 1);
            *retired = held;
            done.extend(free);
        }
        // Shared pools: a stale session some call still holds waits for the next sweep.
        let (free, held): (Vec<_>, Vec<_>) = done.into_iter().partition(|s| Arc::strong_count(s) == 1);
        self.retired.lock().unwrap_or_else(|p| p.into_inner()).extend(held);
        let link = self.link();
        for s in free {
            login::logout(&self.spec, &link, &s).await;
        }
    }
}

/// Logs idle and retired sessions out (freeing the ERP licences they hold) until the pool
/// is gone.
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
