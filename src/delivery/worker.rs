//! Delivery workers: one dispatcher per backend over an index in memory (due time, id,
//! ordering partition), rebuilt from the store at start. The dispatcher starts at most
//! `max_concurrency` attempts at a time, never two of one ordered partition, and skips
//! nothing: a poison item becomes a dead letter at once and the items behind it go on.
//!
//! Each attempt rebuilds the envelope from the stored input (so the backend's WS-Security
//! header is fresh) against the current snapshot's route, calls the backend without its
//! own retries (the queue retries, with backoff, until `max_age`), and stores the outcome
//! durably before the index moves on.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::Directory;
use super::attempt::{self, Outcome};
use super::store::{Store, Table};
use super::{DeliverySettings, Item, Page, Queued, State, now_ms, persist};
use crate::error::GatewayError;

/// One backend's queue index.
#[derive(Default)]
struct Lane {
    /// Queued items by (next attempt, id).
    due: BTreeSet<(u64, String)>,
    /// Unfinished ids per ordering partition: only the first may be attempted.
    partitions: HashMap<String, BTreeSet<String>>,
    /// Partition of each unfinished ordered item.
    partition_of: HashMap<String, String>,
    /// Attempts running.
    running: HashSet<String>,
    /// Every unfinished id (v7 ids sort by age: the first is the oldest).
    unfinished: BTreeSet<String>,
    paused: bool,
}

impl Lane {
    fn add(&mut self, item: &Item) {
        // Indexed once: a second retry of the same dead letter must not start it twice.
        if !self.unfinished.insert(item.id.clone()) {
            return;
        }
        self.due.insert((item.next_ms, item.id.clone()));
        if let Some(p) = &item.partition {
            self.partitions.entry(p.clone()).or_default().insert(item.id.clone());
            self.partition_of.insert(item.id.clone(), p.clone());
        }
    }

    fn finish(&mut self, id: &str) {
        self.running.remove(id);
        self.unfinished.remove(id);
        if let Some(p) = self.partition_of.remove(id)
            && let Some(set) = self.partitions.get_mut(&p)
        {
            set.remove(id);
            if set.is_empty() {
                self.partitions.remove(&p);
            }
        }
    }

    /// Up to `slots` ids due by `now` that may start; and when the next one is due.
    /// `hold`: no attempt before then (the backend was found down).
    fn take(&mut self, now: u64, slots: usize, hold: u64) -> (Vec<String>, Option<u64>) {
        let mut out = Vec::new();
        let mut next = None;
        if self.paused {
            return (out, None);
        }
        if now < hold {
            return (out, Some(hold));
        }
        let mut started = Vec::new();
        for (due, id) in &self.due {
            if out.len() >= slots {
                break;
            }
            if *due > now {
                next = Some(*due);
                break;
            }
            let first_of_partition =
                self.partition_of.get(id).is_none_or(|p| self.partitions.get(p).and_then(|s| s.first()) == Some(id));
            if first_of_partition {
                out.push(id.clone());
                started.push((*due, id.clone()));
            }
        }
        for key in started {
            self.due.remove(&key);
            self.running.insert(key.1);
        }
        (out, next)
    }
}

/// The queue: the store, the lanes and their dispatchers.
pub struct Runtime {
    store: Store,
    settings: DeliverySettings,
    gateway: Arc<dyn Directory>,
    lanes: Mutex<HashMap<String, Lane>>,
    wake: Mutex<HashMap<String, Arc<Notify>>>,
    holds: attempt::Holds,
    stopping: std::sync::atomic::AtomicBool,
    /// One caller at a time makes room when the store is at its bound.
    making_room: tokio::sync::Mutex<()>,
    /// Items admitted under the bound and not yet counted by the store.
    storing: std::sync::atomic::AtomicU64,
}

/// A place in the store held for one item until it is stored (or refused by the store).
struct Reserved<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Runtime({:?})", self.store)
    }
}

impl Runtime {
    /// Loads every unfinished item from the store and starts a dispatcher per backend.
    pub fn start(
        store: Store,
        settings: DeliverySettings,
        gateway: Arc<dyn Directory>,
    ) -> Result<Arc<Runtime>, String> {
        let rt = Arc::new(Runtime {
            store,
            settings,
            gateway,
            lanes: Mutex::default(),
            wake: Mutex::default(),
            holds: attempt::Holds::default(),
            stopping: std::sync::atomic::AtomicBool::new(false),
            making_room: tokio::sync::Mutex::new(()),
            storing: std::sync::atomic::AtomicU64::new(0),
        });
        // Paused backends first, so no attempt starts before the pause is known.
        for b in rt.store.paused()? {
            rt.lane_do(&b, |l| l.paused = true);
        }
        let mut resumed = 0usize;
        rt.store.each(Table::Items, |_, bytes| {
            if let Ok(mut item) = serde_json::from_slice::<Item>(bytes)
                && matches!(item.state, State::Queued | State::Delivering)
            {
                // An attempt cut off by a crash may or may not have reached the ERP: at
                // least once means it is tried again (duplicate_faults catch the rest).
                item.state = State::Queued;
                rt.index(&item);
                resumed += 1;
            }
            true
        })?;
        if resumed > 0 {
            tracing::info!(items = resumed, "queued deliveries resumed from the store");
        }
        let sweeper = rt.clone();
        tokio::spawn(async move { sweeper.sweep_forever().await });
        Ok(rt)
    }

    /// The store (for idempotency records and the admin API).
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    fn lane_do<T>(&self, backend: &str, f: impl FnOnce(&mut Lane) -> T) -> T {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        f(lanes.entry(backend.to_string()).or_default())
    }

    fn notify(self: &Arc<Self>, backend: &str) -> Arc<Notify> {
        let mut wake = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = wake.get(backend) {
            return n.clone();
        }
        let n = Arc::new(Notify::new());
        wake.insert(backend.to_string(), n.clone());
        let me = self.clone();
        let name = backend.to_string();
        tokio::spawn(async move { me.dispatch(name).await });
        n
    }

    fn index(self: &Arc<Self>, item: &Item) {
        self.lane_do(&item.backend, |l| l.add(item));
        self.notify(&item.backend).notify_one();
    }

    /// Why the store takes no new item now: it holds `max_items` (with the items being
    /// stored) or `max_bytes` (every state counts, since every record uses the disk).
    fn full(&self) -> Option<String> {
        let size = self.store.size(Table::Items);
        let items = size.rows() + self.storing.load(std::sync::atomic::Ordering::Acquire);
        let bytes = size.bytes();
        if items >= self.settings.max_items {
            Some(format!("{items} items stored, delivery.max_items is {}", self.settings.max_items))
        } else if bytes >= self.settings.max_bytes {
            Some(format!("{bytes} bytes stored, delivery.max_bytes is {}", self.settings.max_bytes))
        } else {
            None
        }
    }

    /// Takes one of the store's places for an item about to be stored, if one is free.
    fn reserve(&self) -> Option<Reserved<'_>> {
        let size = self.store.size(Table::Items);
        if size.bytes() >= self.settings.max_bytes {
            return None;
        }
        let (rows, max) = (size.rows(), self.settings.max_items);
        let ordering = std::sync::atomic::Ordering::AcqRel;
        let taken = self
            .storing
            .fetch_update(ordering, std::sync::atomic::Ordering::Acquire, |n| (rows + n < max).then_some(n + 1));
        taken.ok().map(|_| Reserved(&self.storing))
    }

    /// Makes room for a new item, or refuses it before the disk fills: at the bound, the
    /// oldest delivered items' statuses are forgotten early (down to 90 % of it); only
    /// when what is left is unfinished work and dead letters is the item refused. The
    /// place is held until the item is stored, so concurrent writers never pass the bound.
    async fn check_room(&self, item: &Item) -> Result<Reserved<'_>, GatewayError> {
        if let Some(place) = self.reserve() {
            return Ok(place);
        }
        let _one = self.making_room.lock().await;
        if self.full().is_some() {
            self.forget_delivered().await;
        }
        if let Some(place) = self.reserve() {
            return Ok(place);
        }
        let why = self.full().unwrap_or_else(|| "too many items are being stored at once".into());
        crate::telemetry::delivery(&item.backend, "refused_full");
        tracing::warn!(backend = %item.backend, reason = %why, "the delivery store is full; new items are refused");
        Err(GatewayError::QueueFull(why))
    }

    /// Deletes the oldest delivered items until the store is at 90 % of its bounds.
    async fn forget_delivered(&self) {
        let size = self.store.size(Table::Items);
        let ninety = |n: u64| u64::try_from(u128::from(n) * 9 / 10).unwrap_or(n);
        let (items, bytes) = (ninety(self.settings.max_items), ninety(self.settings.max_bytes));
        let mut forgotten = 0usize;
        while size.rows() > items || size.bytes() > bytes {
            let store = self.store.clone();
            let ids = tokio::task::spawn_blocking(move || store.item_ids(Some(State::Delivered.code()), None, 1000))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            if ids.is_empty() {
                break;
            }
            forgotten += ids.len();
            if self.store.write(super::store::Write::DeleteMany(Table::Items, ids)).await.is_err() {
                break;
            }
        }
        if forgotten > 0 {
            tracing::info!(
                items = forgotten,
                "the store reached its bound; the oldest delivered statuses were forgotten early"
            );
        }
    }

    /// Accepts an item: durable first, then indexed.
    pub(crate) async fn accept(self: &Arc<Self>, item: Item) -> Result<Item, GatewayError> {
        let place = self.check_room(&item).await?;
        persist(&self.store, &item).await?;
        drop(place);
        crate::telemetry::delivery(&item.backend, "accepted");
        self.index(&item);
        Ok(item)
    }

    /// Stores a dead letter (never indexed for delivery).
    pub(crate) async fn bury(&self, item: &Item) -> Result<(), GatewayError> {
        let _place = self.check_room(item).await?;
        persist(&self.store, item).await
    }

    /// One item, if it exists.
    pub(crate) fn get(&self, id: &str) -> Result<Option<Item>, GatewayError> {
        let bytes = self.store.get(Table::Items, id).map_err(|_| GatewayError::StoreUnavailable)?;
        let Some(bytes) = bytes else { return Ok(None) };
        let mut item: Item = serde_json::from_slice(&bytes).map_err(|e| GatewayError::Internal(e.to_string()))?;
        if item.state == State::Queued && self.lane_do(&item.backend, |l| l.running.contains(&item.id)) {
            item.state = State::Delivering;
        }
        Ok(Some(item))
    }

    /// Items in a state (and route), oldest first, at most `limit`, after the id `after`:
    /// read from the store's state index, off the async workers (a page never stalls
    /// `/healthz`, whatever the store holds). The page and the cursor of the next one.
    pub(crate) async fn list(self: &Arc<Self>, page: Page) -> Result<(Vec<Item>, Option<String>), GatewayError> {
        let me = self.clone();
        let task = tokio::task::spawn_blocking(move || me.list_blocking(&page));
        task.await.map_err(|e| GatewayError::Internal(format!("listing deliveries failed: {e}")))?
    }

    fn list_blocking(&self, page: &Page) -> Result<(Vec<Item>, Option<String>), GatewayError> {
        // A route filter reads items the page may not show: read at most this many per page.
        const MAX_READ: usize = 50_000;
        let code = page.state.map(|s| match s {
            // Stored as queued; the index has no "delivering" (it is a moment in memory).
            State::Delivering => State::Queued.code(),
            s => s.code(),
        });
        let mut out = Vec::new();
        let mut after = page.after.clone();
        let mut read = 0usize;
        while out.len() < page.limit && read < MAX_READ {
            let ids = self.store.item_ids(code, after.as_deref(), 500).map_err(|_| GatewayError::StoreUnavailable)?;
            if ids.is_empty() {
                return Ok((out, None));
            }
            for id in ids {
                read += 1;
                let item = self.get(&id)?;
                after = Some(id);
                if let Some(i) = item.filter(|i| {
                    page.state.is_none_or(|s| i.state == s) && page.route.as_deref().is_none_or(|r| i.route == r)
                }) {
                    out.push(i);
                    if out.len() >= page.limit {
                        break;
                    }
                }
            }
        }
        Ok((out, after))
    }

    /// Queues a dead letter again (after the ERP's data was fixed).
    pub(crate) async fn retry(self: &Arc<Self>, id: &str) -> Result<Option<Item>, GatewayError> {
        let Some(mut item) = self.get(id)? else { return Ok(None) };
        if item.state != State::Dead {
            return Err(GatewayError::Conflict(format!("delivery {id} is {:?}, not dead", item.state).to_lowercase()));
        }
        item.state = State::Queued;
        item.next_ms = now_ms();
        item.updated_ms = item.next_ms;
        item.retried_ms = Some(item.next_ms);
        persist(&self.store, &item).await?;
        self.index(&item);
        Ok(Some(item))
    }

    /// Deletes a dead letter.
    pub(crate) async fn discard(&self, id: &str) -> Result<Option<()>, GatewayError> {
        let Some(item) = self.get(id)? else { return Ok(None) };
        if item.state != State::Dead {
            return Err(GatewayError::Conflict(format!("delivery {id} is not dead; only dead letters are discarded")));
        }
        self.store
            .write(super::store::Write::Delete(Table::Items, id.to_string()))
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?;
        Ok(Some(()))
    }

    /// Pauses or resumes a backend's deliveries (remembered across restarts).
    pub(crate) async fn set_paused(self: &Arc<Self>, backend: &str, paused: bool) -> Result<(), GatewayError> {
        self.store
            .write(super::store::Write::Paused(backend.to_string(), paused))
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?;
        self.lane_do(backend, |l| l.paused = paused);
        self.notify(backend).notify_one();
        Ok(())
    }

    /// Stops starting attempts; the number still running.
    pub(crate) fn stop_and_count(&self) -> usize {
        self.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        self.lanes.lock().unwrap_or_else(|p| p.into_inner()).values().map(|l| l.running.len()).sum()
    }

    /// Queue depth and oldest unfinished age (seconds) per backend, and whether paused.
    pub(crate) fn depths(&self) -> Vec<(String, usize, f64, bool)> {
        let lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        lanes
            .iter()
            .map(|(b, l)| {
                let oldest = l
                    .unfinished
                    .first()
                    .and_then(|id| super::created_ms(id))
                    .map_or(0.0, |c| now.saturating_sub(c) as f64 / 1000.0);
                (b.clone(), l.unfinished.len(), oldest, l.paused)
            })
            .collect()
    }

    /// One backend's dispatcher: starts due attempts while slots are free.
    async fn dispatch(self: Arc<Self>, backend: String) {
        let wake = self.notify(&backend);
        loop {
            let slots = { self.gateway.max_concurrency(&backend) };
            if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            // No attempt while the store cannot record its outcome.
            if self.store.problem().is_some() {
                self.store.writable().await;
                continue;
            }
            let now = now_ms();
            let hold = self.holds.until(&backend);
            let (ids, next) = self.lane_do(&backend, |l| {
                let free = slots.saturating_sub(l.running.len());
                l.take(now, free, hold)
            });
            for id in ids {
                let me = self.clone();
                let backend = backend.clone();
                tokio::spawn(async move {
                    me.attempt(&id).await;
                    me.notify(&backend).notify_one();
                });
            }
            let wait =
                next.map_or(Duration::from_secs(1), |n| Duration::from_millis(n.saturating_sub(now_ms()).max(1)));
            let _ = tokio::time::timeout(wait.min(Duration::from_secs(1)), wake.notified()).await;
        }
    }

    /// One attempt at one item; its outcome is stored before the index moves on.
    async fn attempt(self: &Arc<Self>, id: &str) {
        let item =
            match self.store.get(Table::Items, id).map(|b| b.and_then(|b| serde_json::from_slice::<Item>(&b).ok())) {
                Ok(Some(item)) => item,
                Ok(None) => {
                    // Discarded meanwhile.
                    self.forget(id);
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "the delivery store cannot be read; retrying later");
                    self.requeue_in_memory(id, now_ms() + 1000);
                    return;
                }
            };
        let (outcome, queued) = attempt::run(self.gateway.as_ref(), &item).await;
        self.settle(item, outcome, queued).await;
    }

    async fn settle(self: &Arc<Self>, mut item: Item, outcome: Outcome, queued: Option<Queued>) {
        let down = outcome.backend_down();
        let now = now_ms();
        let hold = self.holds.record(&item.backend, down, &self.settings, now);
        if down && hold > now {
            tracing::debug!(backend = %item.backend, hold_ms = hold - now, "backend unavailable; deliveries held back");
        }
        let kind = attempt::settle(&mut item, outcome, queued.as_ref(), &self.settings, now);
        // Durable before the index moves on: a crash now repeats the attempt, never loses it.
        // A store that cannot write (disk full) is waited for, not hammered: it logs the
        // outage once and says when it writes again.
        while persist(&self.store, &item).await.is_err() {
            self.store.writable().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        crate::telemetry::delivery(&item.backend, kind);
        if item.state == State::Queued {
            self.requeue_in_memory(&item.id, item.next_ms);
        } else {
            if item.state == State::Dead {
                tracing::warn!(delivery = %item.id, route = %item.route, attempts = item.attempts, "delivery moved to the dead letters");
            }
            self.lane_do(&item.backend, |l| l.finish(&item.id));
        }
    }

    fn requeue_in_memory(&self, id: &str, next_ms: u64) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        for lane in lanes.values_mut() {
            if lane.running.remove(id) {
                lane.due.insert((next_ms, id.to_string()));
                return;
            }
        }
    }

    fn forget(&self, id: &str) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        for lane in lanes.values_mut() {
            if lane.unfinished.contains(id) {
                lane.finish(id);
            }
        }
    }

    /// Every 10 s the queue gauges are refreshed (from memory); every 5 minutes delivered
    /// items past `keep_delivered` and dead letters past `keep_dead` are deleted (read
    /// through the state index, off the async workers).
    async fn sweep_forever(self: Arc<Self>) {
        for round in 0u64.. {
            for (backend, depth, oldest, paused) in self.depths() {
                crate::telemetry::queue_depth(&backend, depth, oldest, paused);
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
            if round % 30 != 29 {
                continue;
            }
            for (state, keep) in
                [(State::Delivered, self.settings.keep_delivered), (State::Dead, self.settings.keep_dead)]
            {
                let me = self.clone();
                let expired = tokio::task::spawn_blocking(move || me.expired(state, keep)).await.unwrap_or_default();
                for batch in expired.chunks(1000) {
                    let _ = self.store.write(super::store::Write::DeleteMany(Table::Items, batch.to_vec())).await;
                }
                if !expired.is_empty() {
                    tracing::info!(state = ?state, items = expired.len(), "expired deliveries deleted");
                }
            }
        }
    }

    /// Ids of items in `state` unchanged for longer than `keep`.
    fn expired(&self, state: State, keep: Duration) -> Vec<String> {
        let (now, keep) = (now_ms(), keep.as_millis() as u64);
        let mut expired = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let Ok(ids) = self.store.item_ids(Some(state.code()), after.as_deref(), 1000) else { return expired };
            if ids.is_empty() {
                return expired;
            }
            for id in ids {
                let old = self
                    .store
                    .get(Table::Items, &id)
                    .ok()
                    .flatten()
                    .and_then(|b| serde_json::from_slice::<Item>(&b).ok());
                if old.is_some_and(|i| i.state == state && now.saturating_sub(i.updated_ms) > keep) {
                    expired.push(id.clone());
                }
                after = Some(id);
            }
        }
    }
}
