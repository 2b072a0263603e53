//! What keeps the token endpoint from being a lever against the gateway: argon2 runs on the
//! blocking pool behind a semaphore sized to the cores (so password guessing never stalls
//! the async workers), failed attempts are limited per client id and per source address
//! (GCRA from [`crate::throttle::local`]; a key over its limit is refused with 429 before
//! any hashing), and used client-assertion `jti`s are remembered with an atomic
//! check-and-insert (in Redis when the gateway has one, so every replica sees them).

use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::throttle::Decision;
use crate::throttle::local::LocalLimiter;
use crate::throttle::shared::{OnUnavailable, Shared};

/// Failed-login limits and the hashing gate of the built-in issuer.
pub struct LoginGuard {
    /// Failures per client id.
    pub per_client: Arc<LocalLimiter>,
    /// Failures per source address.
    pub per_address: Arc<LocalLimiter>,
    /// Keys refused until an instant (set when a limit runs out).
    pub penalties: moka::sync::Cache<String, Instant>,
    /// Where argon2 runs.
    pub hashing: Arc<HashPool>,
}

impl std::fmt::Debug for LoginGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginGuard")
            .field("per_client", &self.per_client)
            .field("per_address", &self.per_address)
            .finish()
    }
}

fn client_key(id: &str) -> String {
    format!("client\u{0}{id}")
}

fn address_key(ip: IpAddr) -> String {
    format!("addr\u{0}{ip}")
}

impl LoginGuard {
    /// How long `client_id` (when known) or `addr` must still wait, if either is penalised.
    pub(crate) fn refused(&self, client_id: Option<&str>, addr: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let keys = client_id.map(client_key).into_iter().chain(addr.map(address_key));
        keys.filter_map(|k| self.penalties.get(&k)).filter(|until| *until > now).map(|until| until - now).max()
    }

    /// Records one failed attempt; returns the wait when this failure used up a limit.
    pub(crate) fn failed(&self, client_id: Option<&str>, addr: Option<IpAddr>) -> Option<Duration> {
        let mut wait = None;
        let mut step = |limiter: &LocalLimiter, key: String| {
            if let Decision::Deny { retry_after } = limiter.check(&key) {
                let retry_after = retry_after.max(Duration::from_secs(1));
                self.penalties.insert(key, Instant::now() + retry_after);
                wait = wait.max(Some(retry_after));
            }
        };
        if let Some(id) = client_id {
            step(&self.per_client, client_key(id));
        }
        if let Some(ip) = addr {
            step(&self.per_address, address_key(ip));
        }
        wait
    }

    /// Runs a password check on the hashing threads.
    pub(crate) async fn hash_check<F: FnOnce() -> bool + Send + 'static>(&self, check: F) -> bool {
        self.hashing.run(check).await
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads for argon2 (about 19 MiB and 40 ms each), one per core. Not
/// tokio's blocking pool: that one grows to hundreds of threads under a flood, and each
/// keeps its own allocator arena with a freed 19 MiB block in it (680 MiB of RSS was
/// measured that way); a fixed set keeps both CPU and memory bounded.
pub struct HashPool {
    threads: usize,
    slots: Semaphore,
    jobs: OnceLock<Option<mpsc::Sender<Job>>>,
}

impl HashPool {
    /// A pool of `threads` threads, started on first use.
    pub(crate) fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        HashPool { threads, slots: Semaphore::new(threads), jobs: OnceLock::new() }
    }

    fn sender(&self) -> Option<&mpsc::Sender<Job>> {
        self.jobs
            .get_or_init(|| {
                let (tx, rx) = mpsc::channel::<Job>();
                let rx = Arc::new(Mutex::new(rx));
                for i in 0..self.threads {
                    let rx = rx.clone();
                    let spawned = std::thread::Builder::new().name(format!("veneer-argon2-{i}")).spawn(move || {
                        loop {
                            let job = match rx.lock() {
                                Ok(rx) => rx.recv(),
                                Err(_) => return,
                            };
                            match job {
                                Ok(job) => job(),
                                Err(_) => return, // the pool was dropped
                            }
                        }
                    });
                    if let Err(e) = spawned {
                        tracing::error!(error = %e, "cannot start a hashing thread");
                        return None;
                    }
                }
                Some(tx)
            })
            .as_ref()
    }

    /// Runs `check` on a hashing thread once one is free; false if it cannot run.
    pub(crate) async fn run<F: FnOnce() -> bool + Send + 'static>(&self, check: F) -> bool {
        // At most one job per thread is handed over, so callers wait here, not in a queue
        // that outlives their request.
        let Ok(_slot) = self.slots.acquire().await else { return false };
        let Some(jobs) = self.sender() else { return false };
        let (tx, rx) = tokio::sync::oneshot::channel();
        if jobs
            .send(Box::new(move || {
                let _ = tx.send(check());
            }))
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

/// Used client-assertion ids, remembered until the assertions could have expired.
pub struct ReplayMemory {
    /// This process's memory.
    pub local: moka::sync::Cache<String, ()>,
    /// Redis, shared by replicas, when configured.
    pub shared: Option<Arc<Shared>>,
    /// How long an id is remembered.
    pub ttl: Duration,
}

impl std::fmt::Debug for ReplayMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplayMemory {{ shared: {} }}", self.shared.is_some())
    }
}

impl ReplayMemory {
    /// True the first time `key` is seen (and records it); false for a replay. `Err` when
    /// Redis is unreachable and the policy is to refuse rather than fall back.
    pub(crate) async fn first_use(&self, key: &str) -> Result<bool, ()> {
        if let Some(shared) = &self.shared {
            match shared.first_use(&format!("jti:{key}"), self.ttl.as_secs().max(1)).await {
                Ok(first) => {
                    // Remembered locally too, so a later Redis outage cannot reopen this one.
                    let fresh_here = self.local.entry(key.to_string()).or_insert(()).is_fresh();
                    return Ok(first && fresh_here);
                }
                Err(_) if shared.on_unavailable == OnUnavailable::Local => {}
                Err(_) => return Err(()),
            }
        }
        // One atomic step: `or_insert` tells whether this call inserted the entry.
        Ok(self.local.entry(key.to_string()).or_insert(()).is_fresh())
    }
}
