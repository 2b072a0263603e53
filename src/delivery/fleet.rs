//! The queue for a fleet of replicas: Redis Streams. Every replica accepts into one stream
//! per backend and delivers from it through one consumer group, so any replica delivers any
//! item; `XAUTOCLAIM` hands a crashed replica's unacknowledged entries to the others after
//! `claim_after`. Items wait out their backoff in a sorted set and are moved back into the
//! stream when due; dead letters go to a dead-letter stream. Item documents (for status
//! queries) are plain keys.
//!
//! A 202 is sent once Redis acknowledged the write; that means stored only when Redis runs
//! with `appendonly yes` and `appendfsync always`, which is checked at start and every 5 s:
//! without them queued routes refuse writes (unless `durability: relaxed`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::Directory;
use super::attempt;
use super::{DeliverySettings, Item, Page, State, now_ms};
use crate::error::GatewayError;

const GROUP: &str = "veneer";

/// Moves due items from the backoff set back into the stream, atomically (any replica may
/// run it at any time). KEYS: delayed zset, stream; ARGV: now (ms), max count. Live streams
/// are never trimmed: an entry is an accepted item.
const PROMOTE: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('XADD', KEYS[2], '*', 'id', id)
end
return #ids
";

/// Redis settings of the fleet queue.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// Redis URL.
    pub url: String,
    /// Key prefix.
    pub prefix: String,
    /// Unacknowledged entries idle this long are taken over by another replica.
    pub claim_after: Duration,
    /// Most entries a backend's stream holds; past it new items are refused (503).
    pub max_len: u64,
    /// `durability: relaxed`: accept writes although Redis does not fsync every write.
    pub relaxed: bool,
}

/// The fleet queue of one replica.
pub struct Fleet {
    conn: ConnectionManager,
    settings: DeliverySettings,
    fleet: FleetSettings,
    gateway: Arc<dyn Directory>,
    consumer: String,
    started: Mutex<HashSet<String>>,
    promote: redis::Script,
    holds: attempt::Holds,
    stopping: std::sync::atomic::AtomicBool,
    running: std::sync::atomic::AtomicUsize,
    /// Redis persists every write before answering (`appendonly yes`, `appendfsync always`).
    durable: std::sync::atomic::AtomicBool,
    checked: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fleet {{ consumer: {} }}", self.consumer)
    }
}

fn unavailable(e: redis::RedisError) -> GatewayError {
    tracing::error!(error = %e, "the Redis delivery queue failed");
    GatewayError::StoreUnavailable
}

impl Fleet {
    /// Connects, checks Redis' durability setting, and starts a dispatcher per backend that
    /// has queued routes (more start when a reload adds some).
    pub async fn start(
        fleet: FleetSettings,
        settings: DeliverySettings,
        gateway: Arc<dyn Directory>,
    ) -> Result<Arc<Fleet>, String> {
        let conn = connect(&fleet.url).await?;
        if fleet.relaxed {
            tracing::warn!(
                "delivery.redis.durability is relaxed: queued routes answer 202 whatever Redis' persistence; a Redis crash or restart can lose accepted writes"
            );
        }
        let consumer = format!("{}-{}", std::process::id(), &super::new_id()[24..]);
        let me = Arc::new(Fleet {
            conn,
            settings,
            fleet,
            gateway,
            consumer,
            started: Mutex::default(),
            promote: redis::Script::new(PROMOTE),
            holds: attempt::Holds::default(),
            stopping: std::sync::atomic::AtomicBool::new(false),
            running: std::sync::atomic::AtomicUsize::new(0),
            durable: std::sync::atomic::AtomicBool::new(false),
            checked: std::sync::atomic::AtomicBool::new(false),
        });
        me.check_durability().await;
        if let Err(e) = me.build_index().await {
            tracing::error!(error = %e, "cannot index the stored deliveries by state; the admin list may miss older items");
        }
        let watcher = me.clone();
        tokio::spawn(async move {
            loop {
                watcher.start_dispatchers().await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                // A restart, a failover to a replica or a CONFIG SET can change it.
                watcher.check_durability().await;
                watcher.sweep_index().await;
            }
        });
        Ok(me)
    }

    /// Appends an item id to a stream. Live streams are never trimmed (`accept` refuses new
    /// items at `max_len` instead); the dead-letter stream, a history, is capped.
    fn xadd(&self, stream: &str, id: &str, capped: bool) -> redis::Cmd {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(stream);
        if capped {
            cmd.arg("MAXLEN").arg("~").arg(self.fleet.max_len);
        }
        cmd.arg("*").arg("id").arg(id);
        cmd
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.fleet.prefix)
    }

    /// Reads Redis' persistence settings; a 202 means stored only with `appendonly yes` and
    /// `appendfsync always`. Logged when it changes, loudly when it is lost. A check that
    /// cannot read them (a timeout during a failover) keeps the last finding; one that
    /// never could (a managed Redis without `CONFIG`) counts as not durable, and says so.
    async fn check_durability(&self) {
        let setting = |name: &'static str| {
            let mut conn = self.conn.clone();
            async move {
                let v: Result<Vec<String>, _> = redis::cmd("CONFIG").arg("GET").arg(name).query_async(&mut conn).await;
                v.map(|v| v.get(1).cloned().unwrap_or_default())
            }
        };
        let first = !self.checked.swap(true, std::sync::atomic::Ordering::Relaxed);
        let (aof, fsync) = match (setting("appendonly").await, setting("appendfsync").await) {
            (Ok(a), Ok(f)) => (a, f),
            (Err(e), _) | (_, Err(e)) => {
                if first {
                    tracing::error!(error = %e, "cannot read Redis' appendonly and appendfsync settings (CONFIG GET): queued routes answer 503 until they can be read; where the provider guarantees persistence and blocks CONFIG, set delivery.redis.durability: relaxed");
                }
                return;
            }
        };
        let durable = aof == "yes" && fsync == "always";
        let was = self.durable.swap(durable, std::sync::atomic::Ordering::Relaxed);
        if durable && !was {
            tracing::info!(
                "Redis persists every write (appendonly yes, appendfsync always): queued routes accept writes"
            );
        } else if !durable && (was || first) {
            if self.fleet.relaxed {
                tracing::warn!(appendonly = %aof, appendfsync = %fsync, "Redis does not persist every write; accepted anyway (durability: relaxed)");
            } else {
                tracing::error!(
                    appendonly = %aof,
                    appendfsync = %fsync,
                    "Redis does not persist every write: queued routes answer 503 until it runs with appendonly yes and appendfsync always (or set delivery.redis.durability: relaxed)"
                );
            }
        }
    }

    /// The sorted set (all scores 0, so ordered by id) that indexes items in `state`.
    fn state_key(&self, state: State) -> String {
        self.key("state", &format!("{state:?}").to_lowercase())
    }

    /// Adds to `pipe` the commands that file `id` under `state` (or under none) in the
    /// state index, in the same transaction as the item's own write. An item that expires
    /// (delivered, dead) is also listed by its expiry time, so its index entry goes with it.
    fn index(&self, pipe: &mut redis::Pipeline, id: &str, state: Option<State>) {
        for s in [State::Queued, State::Delivering, State::Delivered, State::Dead] {
            if Some(s) == state {
                pipe.cmd("ZADD").arg(self.state_key(s)).arg(0).arg(id).ignore();
            } else {
                pipe.cmd("ZREM").arg(self.state_key(s)).arg(id).ignore();
            }
        }
        let expiry = self.key("state", "expiry");
        match state.and_then(|s| self.kept(s)) {
            Some(kept) => pipe.cmd("ZADD").arg(expiry).arg(now_ms() + kept).arg(id).ignore(),
            None => pipe.cmd("ZREM").arg(expiry).arg(id).ignore(),
        };
    }

    /// How long an item in `state` is kept (ms), if it expires.
    fn kept(&self, state: State) -> Option<u64> {
        match state {
            State::Delivered => Some(self.settings.keep_delivered.as_millis() as u64),
            State::Dead => Some(self.settings.keep_dead.as_millis() as u64),
            State::Queued | State::Delivering => None,
        }
    }

    /// Drops the index entries of items whose kept time is over (Redis expired the items).
    async fn sweep_index(&self) {
        let mut conn = self.conn.clone();
        let expiry = self.key("state", "expiry");
        loop {
            let ids: Result<Vec<String>, _> = redis::cmd("ZRANGEBYSCORE")
                .arg(&expiry)
                .arg("-inf")
                .arg(now_ms())
                .arg("LIMIT")
                .arg(0)
                .arg(1000)
                .query_async(&mut conn)
                .await;
            let Ok(ids) = ids else { return };
            if ids.is_empty() {
                return;
            }
            let mut pipe = redis::pipe();
            for state in [State::Delivered, State::Dead] {
                pipe.cmd("ZREM").arg(self.state_key(state)).arg(&ids).ignore();
            }
            pipe.cmd("ZREM").arg(&expiry).arg(&ids).ignore();
            if pipe.query_async::<()>(&mut conn).await.is_err() {
                return;
            }
        }
    }

    /// Files every item written before the state index existed (once per Redis: a marker
    /// key says it is done).
    async fn build_index(&self) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let marker = format!("{}index:v1", self.fleet.prefix);
        let done: bool = redis::cmd("EXISTS").arg(&marker).query_async(&mut conn).await.map_err(|e| e.to_string())?;
        if done {
            return Ok(());
        }
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(self.key("item", "*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            if !keys.is_empty() {
                let values: Vec<Option<String>> =
                    redis::cmd("MGET").arg(&keys).query_async(&mut conn).await.map_err(|e| e.to_string())?;
                let mut pipe = redis::pipe();
                for item in values.into_iter().flatten().filter_map(|j| serde_json::from_str::<Item>(&j).ok()) {
                    pipe.cmd("ZADD").arg(self.state_key(item.state)).arg(0).arg(&item.id).ignore();
                }
                pipe.query_async::<()>(&mut conn).await.map_err(|e| e.to_string())?;
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        redis::cmd("SET").arg(&marker).arg(1).query_async::<()>(&mut conn).await.map_err(|e| e.to_string())
    }

    async fn start_dispatchers(self: &Arc<Self>) {
        let backends: HashSet<String> = self.gateway.queued_backends().into_iter().collect();
        for b in backends {
            let new = self.started.lock().unwrap_or_else(|p| p.into_inner()).insert(b.clone());
            if new {
                self.create_group(&self.key("q", &b)).await;
                let me = self.clone();
                tokio::spawn(async move { me.dispatch(b).await });
            }
        }
    }

    /// Creates the consumer group (from the stream's start, so nothing accepted before is
    /// skipped); another replica having made it already is fine.
    async fn create_group(&self, stream: &str) {
        let mut conn = self.conn.clone();
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        if let Err(e) = &created
            && e.code() != Some("BUSYGROUP")
        {
            tracing::error!(stream, error = %e, "cannot create the delivery consumer group");
        }
    }

    /// Stores a dead letter: its document and an entry in the backend's dead stream.
    pub(crate) async fn bury(&self, item: &Item) -> Result<(), GatewayError> {
        let mut conn = self.conn.clone();
        let json = serde_json::to_string(item).map_err(|e| GatewayError::Internal(e.to_string()))?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.key("item", &item.id))
            .arg(json)
            .arg("PX")
            .arg(self.settings.keep_dead.as_millis() as u64)
            .ignore()
            .add_command(self.xadd(&self.key("dead", &item.backend), &item.id, true))
            .ignore();
        self.index(&mut pipe, &item.id, Some(State::Dead));
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    /// Accepts an item: the item document and its stream entry in one transaction.
    pub async fn accept(&self, item: Item) -> Result<Item, GatewayError> {
        if !self.fleet.relaxed && !self.durable.load(std::sync::atomic::Ordering::Relaxed) {
            crate::telemetry::delivery(&item.backend, "refused_not_durable");
            return Err(GatewayError::QueueNotDurable);
        }
        let mut conn = self.conn.clone();
        let stream = self.key("q", &item.backend);
        // Waiting items count whether they are in the stream or in their backoff.
        let (waiting, backing_off): (u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(&stream)
            .cmd("ZCARD")
            .arg(self.key("delayed", &item.backend))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let len = waiting + backing_off;
        if len >= self.fleet.max_len {
            crate::telemetry::delivery(&item.backend, "refused_full");
            tracing::error!(backend = %item.backend, len, "the delivery stream is full; new items are refused");
            return Err(GatewayError::QueueFull(format!(
                "{len} items wait for backend {}, delivery.redis.max_len is {}",
                item.backend, self.fleet.max_len
            )));
        }
        let json = serde_json::to_string(&item).map_err(|e| GatewayError::Internal(e.to_string()))?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.key("item", &item.id))
            .arg(json)
            .ignore()
            .add_command(self.xadd(&stream, &item.id, false))
            .ignore();
        self.index(&mut pipe, &item.id, Some(item.state));
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)?;
        crate::telemetry::delivery(&item.backend, "accepted");
        Ok(item)
    }

    /// One item, if it exists.
    pub async fn get(&self, id: &str) -> Result<Option<Item>, GatewayError> {
        let mut conn = self.conn.clone();
        let json: Option<String> =
            redis::cmd("GET").arg(self.key("item", id)).query_async(&mut conn).await.map_err(unavailable)?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    async fn put(&self, item: &Item) -> Result<(), GatewayError> {
        let mut conn = self.conn.clone();
        let json = serde_json::to_string(item).map_err(|e| GatewayError::Internal(e.to_string()))?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key("item", &item.id)).arg(json);
        // Delivered items and dead letters expire (their index entries with them).
        if let Some(kept) = self.kept(item.state) {
            cmd.arg("PX").arg(kept);
        }
        let mut pipe = redis::pipe();
        pipe.atomic().add_command(cmd).ignore();
        self.index(&mut pipe, &item.id, Some(item.state));
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    /// A page of items in a state (and route), oldest first, after the cursor: read
    /// through the state index (`ZRANGE … BYLEX`), never a scan of every item; without a
    /// state, each state's index is read and the pages merged by id.
    pub async fn list(&self, page: Page) -> Result<(Vec<Item>, Option<String>), GatewayError> {
        let states: Vec<State> = match page.state {
            // "delivering" is a moment inside an attempt; such items are filed as queued.
            Some(State::Delivering) => vec![State::Queued],
            Some(s) => vec![s],
            None => vec![State::Queued, State::Dead, State::Delivered],
        };
        let mut found = Vec::new();
        // The lowest id at which a state's reading stopped: past it, that state may hold
        // items not read yet, so the page ends there.
        let mut bound: Option<String> = None;
        for state in states {
            let (items, stopped_at) = self.list_state(state, &page).await?;
            found.extend(items);
            if let Some(at) = stopped_at {
                bound = Some(bound.map_or(at.clone(), |b: String| b.min(at)));
            }
        }
        if let Some(b) = &bound {
            found.retain(|i: &Item| i.id <= *b);
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        if found.len() > page.limit {
            found.truncate(page.limit);
            let next = found.last().map(|i| i.id.clone());
            return Ok((found, next));
        }
        Ok((found, bound))
    }

    /// Items filed under `state` after the cursor (up to one more than `page.limit`), and
    /// the id where reading stopped when more may follow.
    async fn list_state(&self, state: State, page: &Page) -> Result<(Vec<Item>, Option<String>), GatewayError> {
        const BATCH: usize = 500;
        // A route filter may skip many: read at most this many per page.
        const MAX_READ: usize = 50_000;
        let mut conn = self.conn.clone();
        let key = self.state_key(state);
        let mut after = page.after.clone();
        let (mut found, mut read) = (Vec::new(), 0usize);
        loop {
            let start = after.as_deref().map_or_else(|| "-".to_string(), |a| format!("({a}"));
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(&key)
                .arg(&start)
                .arg("+")
                .arg("BYLEX")
                .arg("LIMIT")
                .arg(0)
                .arg(BATCH)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if ids.is_empty() {
                return Ok((found, None));
            }
            let keys: Vec<String> = ids.iter().map(|id| self.key("item", id)).collect();
            let values: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys).query_async(&mut conn).await.map_err(unavailable)?;
            for (id, value) in ids.iter().zip(values) {
                read += 1;
                after = Some(id.clone());
                // Gone (expired) items are skipped; the index sweep drops their entries.
                if let Some(i) = value.and_then(|j| serde_json::from_str::<Item>(&j).ok())
                    && i.state == state
                    && page.route.as_deref().is_none_or(|r| i.route == r)
                {
                    found.push(i);
                    if found.len() > page.limit {
                        return Ok((found, after));
                    }
                }
            }
            if read >= MAX_READ {
                return Ok((found, after));
            }
        }
    }

    /// Queues a dead letter again.
    pub async fn retry(&self, id: &str) -> Result<Option<Item>, GatewayError> {
        let Some(mut item) = self.get(id).await? else { return Ok(None) };
        if item.state != State::Dead {
            return Err(GatewayError::Conflict(format!("delivery {id} is not dead; only dead letters are retried")));
        }
        item.state = State::Queued;
        item.next_ms = now_ms();
        item.updated_ms = item.next_ms;
        item.retried_ms = Some(item.next_ms);
        self.accept(item).await.map(Some)
    }

    /// Deletes a dead letter.
    pub async fn discard(&self, id: &str) -> Result<Option<()>, GatewayError> {
        let Some(item) = self.get(id).await? else { return Ok(None) };
        if item.state != State::Dead {
            return Err(GatewayError::Conflict(format!("delivery {id} is not dead; only dead letters are discarded")));
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("DEL").arg(self.key("item", id)).ignore();
        self.index(&mut pipe, id, None);
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)?;
        Ok(Some(()))
    }

    /// Stops reading new entries; the number of attempts still running.
    pub(crate) fn stop_and_count(&self) -> usize {
        self.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        self.running.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Pauses or resumes a backend's deliveries on every replica.
    pub(crate) async fn set_paused(&self, backend: &str, paused: bool) -> Result<(), GatewayError> {
        let mut conn = self.conn.clone();
        let verb = if paused { "SADD" } else { "SREM" };
        redis::cmd(verb)
            .arg(format!("{}paused", self.fleet.prefix))
            .arg(backend)
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn paused(&self, backend: &str) -> bool {
        let mut conn = self.conn.clone();
        redis::cmd("SISMEMBER")
            .arg(format!("{}paused", self.fleet.prefix))
            .arg(backend)
            .query_async::<bool>(&mut conn)
            .await
            .unwrap_or(false)
    }

    /// One backend's dispatcher on this replica.
    async fn dispatch(self: Arc<Self>, backend: String) {
        let stream = self.key("q", &backend);
        let delayed = self.key("delayed", &backend);
        let slots = Arc::new(tokio::sync::Semaphore::new(self.gateway.max_concurrency(&backend)));
        let mut round = 0u64;
        loop {
            round += 1;
            if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            if self.paused(&backend).await {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            let hold = self.holds.until(&backend);
            if now_ms() < hold {
                tokio::time::sleep(Duration::from_millis((hold - now_ms()).min(500))).await;
                continue;
            }
            let mut conn = self.conn.clone();
            let _: Result<i64, _> =
                self.promote.key(&delayed).key(&stream).arg(now_ms()).arg(500).invoke_async(&mut conn).await;
            let free = slots.available_permits();
            let mut entries = Vec::new();
            if free > 0 && round.is_multiple_of(10) {
                entries.extend(self.claim_stale(&stream, free).await);
            }
            let free = free.saturating_sub(entries.len());
            if free > 0 {
                entries.extend(self.read_new(&stream, free).await);
            }
            if round.is_multiple_of(20) {
                let (depth, oldest) = self.depth(&stream, &delayed).await;
                crate::telemetry::queue_depth(&backend, depth, oldest, false);
            }
            if entries.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            for (sid, id) in entries {
                let Ok(permit) = slots.clone().acquire_owned().await else { return };
                let me = self.clone();
                let (stream, delayed) = (stream.clone(), delayed.clone());
                me.running.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::spawn(async move {
                    let _permit = permit;
                    me.attempt(&stream, &delayed, &sid, &id).await;
                    me.running.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                });
            }
        }
    }

    /// Items waiting (in the stream or their backoff) and the oldest one's age in seconds,
    /// from the creation time in its v7 id.
    async fn depth(&self, stream: &str, delayed: &str) -> (usize, f64) {
        let mut conn = self.conn.clone();
        let len: u64 = redis::cmd("XLEN").arg(stream).query_async(&mut conn).await.unwrap_or(0);
        let waiting: u64 = redis::cmd("ZCARD").arg(delayed).query_async(&mut conn).await.unwrap_or(0);
        let first: Option<redis::Value> =
            redis::cmd("XRANGE").arg(stream).arg("-").arg("+").arg("COUNT").arg(1).query_async(&mut conn).await.ok();
        let backing_off: Vec<String> =
            redis::cmd("ZRANGE").arg(delayed).arg(0).arg(0).query_async(&mut conn).await.unwrap_or_default();
        let ids =
            first.map(|v| stream_entries(&v)).unwrap_or_default().into_iter().map(|(_, id)| id).chain(backing_off);
        let now = now_ms();
        let oldest = ids.filter_map(|id| super::created_ms(&id)).map(|c| now.saturating_sub(c)).max().unwrap_or(0);
        ((len + waiting) as usize, oldest as f64 / 1000.0)
    }

    /// New entries for this consumer.
    async fn read_new(&self, stream: &str, count: usize) -> Vec<(String, String)> {
        let mut conn = self.conn.clone();
        let reply: Result<redis::Value, _> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query_async(&mut conn)
            .await;
        match reply {
            Ok(v) => entries(&v),
            Err(e) => {
                tracing::warn!(error = %e, "reading the delivery stream failed");
                // The group vanished (a Redis failover to a copy without it): make it again.
                if e.code() == Some("NOGROUP") {
                    self.create_group(stream).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                Vec::new()
            }
        }
    }

    /// Entries another consumer (a crashed replica) left unacknowledged past `claim_after`.
    async fn claim_stale(&self, stream: &str, count: usize) -> Vec<(String, String)> {
        let mut conn = self.conn.clone();
        let reply: Result<redis::Value, _> = redis::cmd("XAUTOCLAIM")
            .arg(stream)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(self.fleet.claim_after.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await;
        // XAUTOCLAIM answers [next-cursor, [entries…], [deleted ids…]].
        match reply {
            Ok(redis::Value::Array(parts)) if parts.len() >= 2 => {
                let claimed = stream_entries(&parts[1]);
                if !claimed.is_empty() {
                    tracing::info!(count = claimed.len(), "took over deliveries a stopped replica left unfinished");
                }
                claimed
            }
            _ => Vec::new(),
        }
    }

    async fn attempt(&self, stream: &str, delayed: &str, sid: &str, id: &str) {
        let mut item = match self.get(id).await {
            Ok(Some(item)) => item,
            // Discarded: nothing to deliver.
            Ok(None) => {
                self.ack(stream, sid).await;
                return;
            }
            // Redis did not answer: the entry stays pending and is claimed again later.
            Err(_) => return,
        };
        if matches!(item.state, State::Delivered | State::Dead) {
            self.ack(stream, sid).await; // a duplicate entry (claimed after a slow attempt)
            return;
        }
        let (outcome, queued) = attempt::run(self.gateway.as_ref(), &item).await;
        self.holds.record(&item.backend, outcome.backend_down(), &self.settings, now_ms());
        let kind = attempt::settle(&mut item, outcome, queued.as_ref(), &self.settings, now_ms());
        // The item's new state first, then the entry's acknowledgement: a crash between the
        // two repeats an attempt, never loses one.
        while self.put(&item).await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Where the item goes next and the entry's acknowledgement, in one transaction,
        // retried until Redis takes it: never acknowledged without a next place.
        let mut next = redis::pipe();
        next.atomic();
        if item.state == State::Queued {
            next.cmd("ZADD").arg(delayed).arg(item.next_ms).arg(&item.id).ignore();
        } else if item.state == State::Dead {
            next.add_command(self.xadd(&self.key("dead", &item.backend), &item.id, true)).ignore();
            tracing::warn!(delivery = %item.id, route = %item.route, attempts = item.attempts, "delivery moved to the dead letters");
        }
        next.cmd("XACK").arg(stream).arg(GROUP).arg(sid).ignore();
        next.cmd("XDEL").arg(stream).arg(sid).ignore();
        loop {
            let mut conn = self.conn.clone();
            match next.query_async::<()>(&mut conn).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "storing a delivery's next state failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        crate::telemetry::delivery(&item.backend, kind);
    }

    async fn ack(&self, stream: &str, sid: &str) {
        let mut conn = self.conn.clone();
        let _: Result<(), _> = redis::pipe()
            .cmd("XACK")
            .arg(stream)
            .arg(GROUP)
            .arg(sid)
            .ignore()
            .cmd("XDEL")
            .arg(stream)
            .arg(sid)
            .ignore()
            .query_async(&mut conn)
            .await;
    }
}

/// A managed connection with timeouts that suit fsync-per-write Redis (`appendfsync
/// always`): the client's 500 ms default is shorter than a busy disk's fsync queue.
pub(crate) async fn connect(url: &str) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    ConnectionManager::new_with_config(client, config).await.map_err(|e| format!("cannot reach Redis: {e}"))
}

/// `(stream entry id, item id)` pairs of an XREADGROUP reply.
fn entries(v: &redis::Value) -> Vec<(String, String)> {
    // [[stream, [[sid, [field, value, …]], …]]]
    let redis::Value::Array(streams) = v else { return Vec::new() };
    streams
        .iter()
        .filter_map(|s| match s {
            redis::Value::Array(pair) if pair.len() == 2 => Some(stream_entries(&pair[1])),
            _ => None,
        })
        .flatten()
        .collect()
}

fn stream_entries(v: &redis::Value) -> Vec<(String, String)> {
    let redis::Value::Array(list) = v else { return Vec::new() };
    list.iter()
        .filter_map(|e| {
            let redis::Value::Array(pair) = e else { return None };
            let sid = text(pair.first()?)?;
            let redis::Value::Array(fields) = pair.get(1)? else { return None };
            let id = fields
                .chunks(2)
                .find(|kv| kv.first().and_then(text).as_deref() == Some("id"))?
                .get(1)
                .and_then(text)?;
            Some((sid, id))
        })
        .collect()
}

fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
