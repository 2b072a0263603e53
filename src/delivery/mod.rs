//! Queued delivery: a write route with `delivery: queued` is authenticated, throttled, mapped
//! and validated as usual, then stored durably and answered `202 Accepted`; per-backend
//! workers deliver it to the ERP at least once, with retries and backoff, and move what can
//! never succeed to the dead letters. `{delivery.key}` and `duplicate_faults` make "at least
//! once" book exactly once in ERPs that refuse a duplicate external document number.
//!
//! The store ([`store::Store`], redb under the data directory) is the truth; the worker's
//! index in memory (`worker`) is rebuilt from it at start, so a restart (or a kill -9)
//! resumes every accepted item. `Idempotency-Key` ([`idempotency`]) uses the same store.

mod attempt;
pub mod fleet;
pub mod idempotency;
pub mod store;
pub(crate) mod submit;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::store::{Store, Write};
use crate::backend::faults::FaultRule;
use crate::error::GatewayError;

/// A route's delivery settings and its ERP key live with the route (`crate::route::queued`).
pub use crate::route::queued::{Queued, erp_key};
pub use worker::Runtime;

/// `delivery:` in gateway.yaml, compiled.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Where the store lives; `None`: no queued routes, idempotency keys in memory.
    pub data_dir: Option<PathBuf>,
    /// First retry delay; doubles per attempt, with full jitter.
    pub backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// How long an item is retried before it becomes a dead letter (routes may override).
    pub max_age: Duration,
    /// How long a delivered item's status stays queryable.
    pub keep_delivered: Duration,
    /// How long an `Idempotency-Key`'s answer is kept.
    pub idempotency_ttl: Duration,
    /// How long a dead letter is kept.
    pub keep_dead: Duration,
    /// Items the embedded store holds at most (every state).
    pub max_items: u64,
    /// Bytes of stored items at most.
    pub max_bytes: u64,
    /// Bytes of idempotency records at most.
    pub idempotency_max_bytes: u64,
    /// Largest answer kept with its body under an `Idempotency-Key`.
    pub idempotency_max_answer: u64,
    /// Largest input kept with a dead letter that is one from the start (an MQTT payload).
    pub max_dead_input: u64,
    /// Redis Streams for a fleet of replicas (instead of `data_dir`).
    pub fleet: Option<fleet::FleetSettings>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            data_dir: None,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_age: Duration::from_secs(24 * 3600),
            keep_delivered: Duration::from_secs(24 * 3600),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            keep_dead: Duration::from_secs(30 * 24 * 3600),
            max_items: 1_000_000,
            max_bytes: 1 << 30,
            idempotency_max_bytes: 64 << 20,
            idempotency_max_answer: 64 << 10,
            max_dead_input: 64 << 10,
            fleet: None,
        }
    }
}

/// Where an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for its (next) attempt.
    Queued,
    /// An attempt is running.
    Delivering,
    /// The ERP took it (or already had it).
    Delivered,
    /// It will not be delivered without an operator.
    Dead,
}

impl State {
    /// Its code in the store's state index.
    pub fn code(self) -> u8 {
        match self {
            State::Queued => 0,
            State::Delivering => 1,
            State::Delivered => 2,
            State::Dead => 3,
        }
    }

    /// Parses a `?state=` value.
    pub fn parse(s: &str) -> Option<State> {
        match s {
            "queued" => Some(State::Queued),
            "delivering" => Some(State::Delivering),
            "delivered" => Some(State::Delivered),
            "dead" => Some(State::Dead),
            _ => None,
        }
    }
}

/// One accepted write, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    /// Delivery id (UUID v7: sorts by arrival).
    pub id: String,
    /// Route id (`POST /readings`).
    pub route: String,
    /// Backend name.
    pub backend: String,
    /// Who posted it (the throttle's caller key, or `anonymous`).
    pub client: String,
    /// `{delivery.key}`: the caller's `Idempotency-Key` scoped by [`erp_key`], else the id.
    pub key: String,
    /// Ordering partition, for ordered routes.
    pub partition: Option<String>,
    /// The operation's input, validated at acceptance.
    pub input: Value,
    /// SOAP header elements the route filled (the backend's own are rendered per attempt).
    pub route_header: String,
    /// The accepting request's id, passed on to the ERP.
    pub request_id: String,
    /// State.
    pub state: State,
    /// Attempts made.
    pub attempts: u32,
    /// Accepted at (ms since the epoch).
    pub created_ms: u64,
    /// Last change.
    pub updated_ms: u64,
    /// Next attempt, while queued.
    pub next_ms: u64,
    /// The last failure, as a problem document.
    pub last_error: Option<Value>,
    /// The ERP's decoded answer, once delivered.
    pub result: Option<Value>,
    /// True when the ERP said it already had the item (a duplicate fault).
    #[serde(default)]
    pub duplicate: bool,
    /// When an operator last queued it again: `max_age` counts from here then.
    #[serde(default)]
    pub retried_ms: Option<u64>,
}

impl Item {
    /// A new item with a fresh id, queued now, with nothing attempted: the one constructor
    /// for every way an item is made (a route's call, a refused MQTT message kept as a dead
    /// letter); the maker sets what differs.
    pub fn new(route: String, backend: String, client: String, input: Value) -> Item {
        let now = now_ms();
        Item {
            id: new_id(),
            route,
            backend,
            client,
            key: String::new(),
            partition: None,
            input,
            route_header: String::new(),
            request_id: String::new(),
            state: State::Queued,
            attempts: 0,
            created_ms: now,
            updated_ms: now,
            next_ms: now,
            last_error: None,
            result: None,
            duplicate: false,
            retried_ms: None,
        }
    }

    /// The status document `GET /deliveries/{id}` answers.
    pub(crate) fn view(&self) -> Value {
        let mut v = serde_json::json!({
            "id": self.id,
            "state": self.state,
            "route": self.route,
            "attempts": self.attempts,
            "acceptedAt": iso(self.created_ms),
            "updatedAt": iso(self.updated_ms),
        });
        if self.state == State::Queued {
            v["nextAttemptAt"] = iso(self.next_ms).into();
        }
        if let Some(e) = &self.last_error {
            v["lastError"] = e.clone();
        }
        if self.state == State::Delivered {
            v["result"] = self.result.clone().unwrap_or(Value::Null);
            if self.duplicate {
                v["duplicate"] = true.into();
            }
        }
        v
    }
}

impl Item {
    /// What an operator sees: the status, and what was stored for the ERP (the input, who
    /// posted it, the ERP key), so a dead letter can be judged without the store.
    pub(crate) fn admin_view(&self) -> Value {
        let mut v = self.view();
        v["backend"] = self.backend.clone().into();
        v["client"] = self.client.clone().into();
        v["key"] = self.key.clone().into();
        v["input"] = self.input.clone();
        v
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn iso(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64).map(|d| d.to_rfc3339()).unwrap_or_default()
}

/// When an item was accepted, from its v7 id.
pub fn created_ms(id: &str) -> Option<u64> {
    let (secs, nanos) = uuid::Uuid::parse_str(id).ok()?.get_timestamp()?.to_unix();
    Some(secs * 1000 + u64::from(nanos) / 1_000_000)
}

/// A new delivery id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// One page of the admin list: items in a state (and route), after a cursor.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Only items in this state.
    pub state: Option<State>,
    /// Only items of this route.
    pub route: Option<String>,
    /// Only items after this id (the previous page's `next`).
    pub after: Option<String>,
    /// At most this many.
    pub limit: usize,
}

/// The queue: embedded (one node) or Redis Streams (a fleet); one interface.
#[derive(Debug, Clone)]
pub enum Queue {
    /// redb under the data directory.
    Local(Arc<Runtime>),
    /// Redis Streams shared by replicas.
    Fleet(Arc<fleet::Fleet>),
}

impl Queue {
    /// Accepts an item; resolves once it is stored. The store and the index happen on their
    /// own task: a caller that goes away in between (a deadline, a closed connection) must
    /// not leave an item stored but never delivered.
    pub async fn accept(&self, item: Item) -> Result<Item, GatewayError> {
        let queue = self.clone();
        let task = tokio::spawn(async move {
            match &queue {
                Queue::Local(q) => q.accept(item).await,
                Queue::Fleet(q) => q.accept(item).await,
            }
        });
        task.await.unwrap_or_else(|e| Err(GatewayError::Internal(format!("storing an item failed: {e}"))))
    }

    /// Stores an item that is a dead letter from the start (an MQTT message that is not a
    /// valid reading): kept with its reason for an operator, never delivered.
    pub(crate) async fn bury(&self, item: Item) -> Result<(), GatewayError> {
        debug_assert_eq!(item.state, State::Dead);
        match self {
            Queue::Local(q) => q.bury(&item).await,
            Queue::Fleet(q) => q.bury(&item).await,
        }
    }

    /// One item.
    pub async fn get(&self, id: &str) -> Result<Option<Item>, GatewayError> {
        match self {
            Queue::Local(q) => q.get(id),
            Queue::Fleet(q) => q.get(id).await,
        }
    }

    /// A page of items by state and route, oldest first, and the next page's cursor.
    pub async fn list(&self, page: Page) -> Result<(Vec<Item>, Option<String>), GatewayError> {
        match self {
            Queue::Local(q) => q.list(page).await,
            Queue::Fleet(q) => q.list(page).await,
        }
    }

    /// Why queued writes cannot be stored now, if they cannot (for `/readyz`).
    pub fn problem(&self) -> Option<String> {
        match self {
            Queue::Local(q) => q.store().problem(),
            Queue::Fleet(_) => None,
        }
    }

    /// Queues a dead letter again.
    pub async fn retry(&self, id: &str) -> Result<Option<Item>, GatewayError> {
        match self {
            Queue::Local(q) => q.retry(id).await,
            Queue::Fleet(q) => q.retry(id).await,
        }
    }

    /// Deletes a dead letter.
    pub async fn discard(&self, id: &str) -> Result<Option<()>, GatewayError> {
        match self {
            Queue::Local(q) => q.discard(id).await,
            Queue::Fleet(q) => q.discard(id).await,
        }
    }

    /// Starts no new attempt and waits (at most `within`) for the running ones to finish.
    pub async fn stop(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        let running = || match self {
            Queue::Local(q) => q.stop_and_count(),
            Queue::Fleet(q) => q.stop_and_count(),
        };
        let mut left = running();
        while left > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            left = running();
        }
        if left > 0 {
            tracing::warn!(attempts = left, "stopping with deliveries in flight; they are attempted again later");
        }
    }

    /// Pauses or resumes a backend's deliveries.
    pub(crate) async fn set_paused(&self, backend: &str, paused: bool) -> Result<(), GatewayError> {
        match self {
            Queue::Local(q) => q.set_paused(backend, paused).await,
            Queue::Fleet(q) => q.set_paused(backend, paused).await,
        }
    }
}

/// What the delivery workers read from the serving config snapshot, current across
/// reloads: a route by its id (an item names the route it was accepted on), the backends
/// that have queued routes, a backend's call slots. The snapshot implements it
/// (`config::Gateway`, behind its `ArcSwap`), so the workers never hold the whole snapshot.
pub trait Directory: Send + Sync + 'static {
    /// The route with this id (`"POST /path"`), if the serving snapshot still has it.
    fn route(&self, id: &str) -> Option<Arc<crate::route::Route>>;
    /// The backends that at least one queued route calls.
    fn queued_backends(&self) -> Vec<String>;
    /// How many calls `backend` may have in flight (1 for a backend no longer configured).
    fn max_concurrency(&self, backend: &str) -> usize;
}

/// The services a request may use besides the snapshot: the queue and the idempotency keys.
#[derive(Debug, Clone)]
pub struct Services {
    /// Queued delivery, when a store is configured.
    pub queue: Option<Queue>,
    /// `Idempotency-Key` records.
    pub keys: idempotency::Keys,
}

impl Services {
    /// Opens the store (Redis, redb, or memory for idempotency keys alone) and starts the
    /// workers.
    pub async fn start(settings: DeliverySettings, gateway: Arc<dyn Directory>) -> Result<Services, String> {
        if let Some(fleet_settings) = settings.fleet.clone() {
            let keys = idempotency::Keys::redis(&fleet_settings, &settings).await?;
            let fleet = fleet::Fleet::start(fleet_settings, settings, gateway).await?;
            return Ok(Services { queue: Some(Queue::Fleet(fleet)), keys });
        }
        let (store, queue) = match &settings.data_dir {
            Some(dir) => {
                let store = Store::open(dir)?;
                let runtime = Runtime::start(store.clone(), settings.clone(), gateway)?;
                (store, Some(Queue::Local(runtime)))
            }
            None => (Store::memory(), None),
        };
        let sweeping = store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(300)).await;
                idempotency::sweep(&sweeping).await;
            }
        });
        Ok(Services { queue, keys: idempotency::Keys::new(store, &settings) })
    }
}

/// Stores an accepted item durably; returns once it is committed.
pub(crate) async fn persist(store: &Store, item: &Item) -> Result<(), GatewayError> {
    let bytes = serde_json::to_vec(item).map_err(|e| GatewayError::Internal(format!("serialising an item: {e}")))?;
    // A store that cannot write logs that once itself; here it is only a refusal.
    store.write(Write::PutItem(item.id.clone(), item.state.code(), bytes)).await.map(|_| ()).map_err(|e| {
        tracing::debug!(error = %e, "the delivery store refused a write");
        GatewayError::StoreUnavailable
    })
}

/// Does a fault mean "the ERP already has this item"?
pub(crate) fn is_duplicate(rules: &[FaultRule], fault: &crate::translate::fault::Fault) -> bool {
    rules.iter().any(|r| {
        r.code.as_deref().is_none_or(|c| fault.has_code(c))
            && r.reason.as_ref().is_none_or(|re| re.is_match(&fault.reason))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erp_keys_differ_by_caller_route_and_key_and_are_stable() {
        let k = erp_key("line-3", "POST /orders", "order-1001");
        assert_eq!(k, erp_key("line-3", "POST /orders", "order-1001"), "a retry gets the same key");
        assert_eq!(k.len(), 20, "fits a Code20 field");
        assert!(k.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)), "{k}");
        assert_ne!(k, erp_key("line-4", "POST /orders", "order-1001"), "another caller");
        assert_ne!(k, erp_key("line-3", "POST /returns", "order-1001"), "another route");
        assert_ne!(k, erp_key("line-3", "POST /orders", "order-1002"), "another key");
        // Parts are length-delimited: moving a character between them changes the key.
        assert_ne!(erp_key("ab", "c", "d"), erp_key("a", "bc", "d"));
    }
}
