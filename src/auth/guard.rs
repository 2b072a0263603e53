//! What keeps the token endpoint from being a lever against the gateway: argon2 runs on the
//! blocking pool behind a semaphore sized to the cores (so password guessing never stalls
//! the async workers), failed attempts are limited per client id and per source address
//! (GCRA from [`crate::throttle::local`]; a key over its limit is refused with 429 before
//! any hashing), and used client-assertion `jti`s are remembered with an atomic
//! check-and-insert (in Redis when the gateway has one, so every replica sees them).

use std::net::IpAddr;
use std::sync::Arc;
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
    /// argon2 verifications at once.
    pub hashing: Arc<Semaphore>,
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
    pub fn refused(&self, client_id: Option<&str>, addr: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let keys = client_id.map(client_key).into_iter().chain(addr.map(address_key));
        keys.filter_map(|k| self.penalties.get(&k)).filter(|until| *until > now).map(|until| until - now).max()
    }

    /// Records one failed attempt; returns the wait when this failure used up a limit.
    pub fn failed(&self, client_id: Option<&str>, addr: Option<IpAddr>) -> Option<Duration> {
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

    /// Runs a password check on the blocking pool, at most one per core at a time.
    pub async fn hash_check<F: FnOnce() -> bool + Send + 'static>(&self, check: F) -> bool {
        let Ok(_permit) = self.hashing.clone().acquire_owned().await else { return false };
        tokio::task::spawn_blocking(check).await.unwrap_or(false)
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
    pub async fn first_use(&self, key: &str) -> Result<bool, ()> {
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
