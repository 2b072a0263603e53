//! The durable store behind queued delivery and `Idempotency-Key`: one redb file under the
//! data directory (or memory, for idempotency keys on a gateway without one).
//!
//! Every write goes through one committer thread that takes whatever is waiting, applies it
//! in one transaction and commits once (one fdatasync for the whole batch: group commit),
//! then answers each writer. A writer's future resolves only after its write is durable,
//! which is what lets the gateway answer 202 only for what a kill -9 cannot lose.
//!
//! The committer also keeps what the gateway needs without a scan: the count and bytes of
//! each table (for the queue's and the idempotency records' bounds) and an index of items
//! by state (the admin list of dead letters). After a failed commit (disk full, an I/O
//! error) redb refuses everything until it is reopened, so the committer drops the file,
//! reports the store unwritable (`/readyz` answers 503, writes 503) and reopens it with a
//! backoff, probing with a small write, until a write succeeds again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{oneshot, watch};

const ITEMS: TableDefinition<&str, &[u8]> = TableDefinition::new("items");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
const PAUSED: TableDefinition<&str, u8> = TableDefinition::new("paused");
/// Each item's state code, so a write knows which index entry it replaces.
const ITEM_STATE: TableDefinition<&str, u8> = TableDefinition::new("item_state");
/// (state code, id): items by state, oldest first.
const BY_STATE: TableDefinition<(u8, &str), ()> = TableDefinition::new("items_by_state");
/// Format markers (`by_state`: the index above is complete) and the health probe.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// redb's page cache.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Most writes committed together.
const MAX_BATCH: usize = 2048;

/// First wait before reopening a store that failed; doubles up to [`MAX_REOPEN_WAIT`].
const REOPEN_WAIT: Duration = Duration::from_millis(250);
const MAX_REOPEN_WAIT: Duration = Duration::from_secs(5);

/// The tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Queued items by id.
    Items,
    /// Idempotency records by scoped key.
    Keys,
}

/// One write.
#[derive(Debug)]
pub enum Write {
    /// Insert or replace an item (id, state code, JSON); the state index follows.
    PutItem(String, u8, Vec<u8>),
    /// Insert or replace.
    Put(Table, String, Vec<u8>),
    /// Delete.
    Delete(Table, String),
    /// Delete several (one commit for a sweep).
    DeleteMany(Table, Vec<String>),
    /// Insert only when the key is absent, else leave it; the answer says which.
    PutIfAbsent(Table, String, Vec<u8>),
    /// Mark a backend paused (true) or resumed.
    Paused(String, bool),
}

/// What a write did.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Done.
    Done,
    /// `PutIfAbsent` found this value and left it.
    Exists(Vec<u8>),
}

/// Rows and bytes (keys and values) of one table, kept exact by the committer.
#[derive(Debug, Default)]
pub struct Size {
    rows: AtomicU64,
    bytes: AtomicU64,
}

impl Size {
    /// Rows now.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Bytes now.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// A row written: `replaced` is the value it replaced (its key was counted then).
    fn added(&self, key: usize, value: usize, replaced: Option<usize>) {
        let (grow, shrink) = match replaced {
            Some(old) => (value as u64, old as u64),
            None => {
                self.rows.fetch_add(1, Ordering::Relaxed);
                ((key + value) as u64, 0)
            }
        };
        let _ =
            self.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some((b + grow).saturating_sub(shrink)));
    }

    fn removed(&self, key: usize, value: usize) {
        let _ = self.rows.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| Some(r.saturating_sub(1)));
        let n = (key + value) as u64;
        let _ = self.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(n)));
    }

    fn set(&self, rows: u64, bytes: u64) {
        self.rows.store(rows, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
    }
}

/// Whether the store can write, and why not.
#[derive(Debug)]
struct Health {
    writable: watch::Sender<bool>,
    problem: Mutex<Option<String>>,
}

impl Health {
    fn new() -> Self {
        Health { writable: watch::Sender::new(true), problem: Mutex::default() }
    }

    fn ok(&self) -> bool {
        *self.writable.borrow()
    }

    /// Marks the store unwritable; logged once per outage, not per refused write.
    fn fail(&self, path: &Path, error: &str) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
        if self.writable.send_replace(false) {
            tracing::error!(store = %path.display(), error, "the delivery store cannot write; writes are refused (503) and /readyz is 503 until it can");
        }
    }

    fn recovered(&self, path: &Path, down_for: Duration) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if !self.writable.send_replace(true) {
            tracing::info!(store = %path.display(), down_s = down_for.as_secs_f64(), "the delivery store writes again");
        }
    }
}

struct Request {
    write: Write,
    done: oneshot::Sender<Result<Written, String>>,
}

/// The redb file, dropped (`None`) between a failed commit and a successful reopen.
struct Redb {
    path: PathBuf,
    db: RwLock<Option<Database>>,
}

type MemoryMap = BTreeMap<(u8, String), Vec<u8>>;

enum Engine {
    Redb(Redb),
    Memory(Mutex<MemoryMap>),
}

/// The store; clones share it.
#[derive(Clone)]
pub struct Store {
    engine: Arc<Engine>,
    writes: mpsc::Sender<Request>,
    health: Arc<Health>,
    sizes: Arc<[Size; 2]>,
    committer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match *self.engine {
            Engine::Redb(_) => "redb",
            Engine::Memory(_) => "memory",
        };
        write!(f, "Store({kind})")
    }
}

fn table_code(t: Table) -> u8 {
    match t {
        Table::Items => 0,
        Table::Keys => 1,
    }
}

const PAUSED_CODE: u8 = 2;

/// The state code of a stored item's JSON (for the index; `u8::MAX` when unreadable).
fn state_of(bytes: &[u8]) -> u8 {
    #[derive(serde::Deserialize)]
    struct Only {
        state: super::State,
    }
    serde_json::from_slice::<Only>(bytes).map_or(u8::MAX, |o| o.state.code())
}

/// Runs `f`, turning a panic inside redb (it can panic on a damaged file rather than
/// return an error) into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("the storage engine failed reading it (a damaged page)".into()))
}

/// Opens (or creates) the file and its tables; `check`: verify every page first.
fn open_db(path: &Path, check: bool) -> Result<Database, String> {
    guarded(|| {
        // A bounded page cache: the store is written far more than it is read back, and
        // redb's default (1 GiB) would make a long outage show up as resident memory.
        let mut db = redb::Builder::new().set_cache_size(CACHE_BYTES).create(path).map_err(|e| e.to_string())?;
        if check && !db.check_integrity().map_err(|e| e.to_string())? {
            tracing::warn!(store = %path.display(), "the delivery store was repaired after an unclean stop");
        }
        // Create the tables once, so readers never find them missing.
        let tx = db.begin_write().map_err(|e| e.to_string())?;
        tx.open_table(ITEMS).map_err(|e| e.to_string())?;
        tx.open_table(KEYS).map_err(|e| e.to_string())?;
        tx.open_table(PAUSED).map_err(|e| e.to_string())?;
        tx.open_table(ITEM_STATE).map_err(|e| e.to_string())?;
        tx.open_table(BY_STATE).map_err(|e| e.to_string())?;
        tx.open_table(META).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
        Ok(db)
    })
}

/// Builds the by-state index of a store written before it existed (one transaction).
fn build_index(db: &Database) -> Result<(), String> {
    let read = db.begin_read().map_err(|e| e.to_string())?;
    if read.open_table(META).map_err(|e| e.to_string())?.get("by_state").map_err(|e| e.to_string())?.is_some() {
        return Ok(());
    }
    let tx = db.begin_write().map_err(|e| e.to_string())?;
    {
        let items = read.open_table(ITEMS).map_err(|e| e.to_string())?;
        let mut states = tx.open_table(ITEM_STATE).map_err(|e| e.to_string())?;
        let mut index = tx.open_table(BY_STATE).map_err(|e| e.to_string())?;
        for row in items.iter().map_err(|e| e.to_string())? {
            let (k, v) = row.map_err(|e| e.to_string())?;
            let code = state_of(v.value());
            states.insert(k.value(), code).map_err(|e| e.to_string())?;
            index.insert((code, k.value()), ()).map_err(|e| e.to_string())?;
        }
        tx.open_table(META).map_err(|e| e.to_string())?.insert("by_state", 1).map_err(|e| e.to_string())?;
    }
    tx.commit().map_err(|e| e.to_string())
}

/// Rows and bytes of a table, counted once at open.
fn measure(db: &Database, def: TableDefinition<&str, &[u8]>) -> Result<(u64, u64), String> {
    let tx = db.begin_read().map_err(|e| e.to_string())?;
    let t = tx.open_table(def).map_err(|e| e.to_string())?;
    let (mut rows, mut bytes) = (0u64, 0u64);
    for row in t.iter().map_err(|e| e.to_string())? {
        let (k, v) = row.map_err(|e| e.to_string())?;
        rows += 1;
        bytes += (k.value().len() + v.value().len()) as u64;
    }
    Ok((rows, bytes))
}

impl Store {
    /// Opens (or creates) `dir/veneer.redb`, checking every page first: a damaged file is
    /// an error that names it and says what to do, never a panic later.
    pub fn open(dir: &Path) -> Result<Store, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
        let path = dir.join("veneer.redb");
        let damaged = |e: String| {
            if e.contains("already open") {
                return format!(
                    "the delivery store {} is in use by another process (another veneer on this data directory?): \
                     stop it, or give this one its own directory (--data DIR or VENEER_DATA)",
                    path.display()
                );
            }
            format!(
                "the delivery store {} cannot be opened: {e}. If the disk is full or read-only, fix that and start \
                 again; if the file is damaged, move it aside (the gateway then starts with an empty store, and the \
                 items in the old file are not delivered) or restore it from a backup",
                path.display()
            )
        };
        let db = open_db(&path, true).map_err(damaged)?;
        let sizes: Arc<[Size; 2]> = Arc::default();
        guarded(|| {
            build_index(&db)?;
            for t in [Table::Items, Table::Keys] {
                let (rows, bytes) = measure(&db, definition(t))?;
                sizes[table_code(t) as usize].set(rows, bytes);
            }
            Ok(())
        })
        .map_err(damaged)?;
        Ok(Store::start(Engine::Redb(Redb { path, db: RwLock::new(Some(db)) }), sizes))
    }

    /// A store in memory: nothing survives the process (idempotency keys without a data dir).
    pub fn memory() -> Store {
        Store::start(Engine::Memory(Mutex::default()), Arc::default())
    }

    fn start(engine: Engine, sizes: Arc<[Size; 2]>) -> Store {
        let engine = Arc::new(engine);
        let health = Arc::new(Health::new());
        let (tx, rx) = mpsc::channel::<Request>();
        let (committer, health2, sizes2) = (engine.clone(), health.clone(), sizes.clone());
        let spawned = std::thread::Builder::new()
            .name("veneer-store".into())
            .spawn(move || commit_loop(&committer, &rx, &health2, &sizes2));
        let committer = match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the store's committer thread");
                None
            }
        };
        Store { engine, writes: tx, health, sizes, committer: Arc::new(Mutex::new(committer)) }
    }

    /// Closes the file once every write so far is committed, and returns when it is
    /// closed (another process may open it then). Only the last clone can close it.
    pub fn close(self) -> Result<(), String> {
        if Arc::strong_count(&self.engine) > 2 {
            return Err("the store is still in use".into());
        }
        let handle = self.committer.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(self);
        handle.map_or(Ok(()), |h| h.join().map_err(|_| "the store's committer panicked".to_string()))
    }

    /// Applies one write durably (batched with whatever else is waiting).
    pub async fn write(&self, write: Write) -> Result<Written, String> {
        let (done, answer) = oneshot::channel();
        self.writes.send(Request { write, done }).map_err(|_| "the store is closed".to_string())?;
        answer.await.map_err(|_| "the store's committer stopped".to_string())?
    }

    /// Rows and bytes of a table.
    pub fn size(&self, table: Table) -> &Size {
        &self.sizes[table_code(table) as usize]
    }

    /// Why the store cannot write now, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.health.ok() {
            return None;
        }
        let why = self.health.problem.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Some(why.unwrap_or_else(|| "the store cannot write".into()))
    }

    /// Resolves once the store can write (at once when it can).
    pub async fn writable(&self) {
        let mut rx = self.health.writable.subscribe();
        let _ = rx.wait_for(|ok| *ok).await;
    }

    /// Runs `f` on the open database, or says the store is being reopened.
    fn read<T>(&self, f: impl FnOnce(&Database) -> Result<T, String>) -> Result<T, String> {
        let Engine::Redb(r) = &*self.engine else { return Err("not a file store".into()) };
        let guard = r.db.read().unwrap_or_else(|p| p.into_inner());
        let db = guard.as_ref().ok_or_else(|| "the store is being reopened after a write error".to_string())?;
        guarded(|| f(db))
    }

    /// Reads one value.
    pub fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, String> {
        if let Engine::Memory(m) = &*self.engine {
            return Ok(m.lock().unwrap_or_else(|p| p.into_inner()).get(&(table_code(table), key.to_string())).cloned());
        }
        self.read(|db| {
            let tx = db.begin_read().map_err(|e| e.to_string())?;
            let t = tx.open_table(definition(table)).map_err(|e| e.to_string())?;
            Ok(t.get(key).map_err(|e| e.to_string())?.map(|v| v.value().to_vec()))
        })
    }

    /// Calls `f` with every row of a table, in key order, until it returns false. Rows
    /// are read one at a time (a queue of millions is never held in memory at once).
    pub fn each(&self, table: Table, mut f: impl FnMut(&str, &[u8]) -> bool) -> Result<(), String> {
        if let Engine::Memory(m) = &*self.engine {
            let m = m.lock().unwrap_or_else(|p| p.into_inner());
            for ((_, k), v) in m.iter().filter(|((t, _), _)| *t == table_code(table)) {
                if !f(k, v) {
                    break;
                }
            }
            return Ok(());
        }
        self.read(|db| {
            let tx = db.begin_read().map_err(|e| e.to_string())?;
            let t = tx.open_table(definition(table)).map_err(|e| e.to_string())?;
            for row in t.iter().map_err(|e| e.to_string())? {
                let (k, v) = row.map_err(|e| e.to_string())?;
                if !f(k.value(), v.value()) {
                    break;
                }
            }
            Ok(())
        })
    }

    /// Up to `limit` item ids after `after` (exclusive), oldest first; only those in state
    /// `code` when given (read from the index: no item is read or parsed).
    pub(crate) fn item_ids(&self, code: Option<u8>, after: Option<&str>, limit: usize) -> Result<Vec<String>, String> {
        if let Engine::Memory(m) = &*self.engine {
            let m = m.lock().unwrap_or_else(|p| p.into_inner());
            let ids = m
                .iter()
                .filter(|((t, k), v)| {
                    *t == 0 && after.is_none_or(|a| k.as_str() > a) && code.is_none_or(|c| state_of(v) == c)
                })
                .take(limit)
                .map(|((_, k), _)| k.clone());
            return Ok(ids.collect());
        }
        self.read(|db| {
            let tx = db.begin_read().map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            match code {
                Some(c) => {
                    let t = tx.open_table(BY_STATE).map_err(|e| e.to_string())?;
                    let start = match after {
                        Some(a) => std::ops::Bound::Excluded((c, a)),
                        None => std::ops::Bound::Included((c, "")),
                    };
                    let end = std::ops::Bound::Excluded((c.saturating_add(1), ""));
                    for row in t.range::<(u8, &str)>((start, end)).map_err(|e| e.to_string())? {
                        let (k, _) = row.map_err(|e| e.to_string())?;
                        if k.value().0 != c || out.len() >= limit {
                            break;
                        }
                        out.push(k.value().1.to_string());
                    }
                }
                None => {
                    let t = tx.open_table(ITEMS).map_err(|e| e.to_string())?;
                    let start = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
                    for row in t.range::<&str>((start, std::ops::Bound::Unbounded)).map_err(|e| e.to_string())? {
                        if out.len() >= limit {
                            break;
                        }
                        out.push(row.map_err(|e| e.to_string())?.0.value().to_string());
                    }
                }
            }
            Ok(out)
        })
    }

    /// Backends paused by an operator.
    pub fn paused(&self) -> Result<Vec<String>, String> {
        if let Engine::Memory(m) = &*self.engine {
            let m = m.lock().unwrap_or_else(|p| p.into_inner());
            return Ok(m.keys().filter(|(t, _)| *t == PAUSED_CODE).map(|(_, k)| k.clone()).collect());
        }
        self.read(|db| {
            let tx = db.begin_read().map_err(|e| e.to_string())?;
            let t = tx.open_table(PAUSED).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for row in t.iter().map_err(|e| e.to_string())? {
                out.push(row.map_err(|e| e.to_string())?.0.value().to_string());
            }
            Ok(out)
        })
    }
}

fn definition(t: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match t {
        Table::Items => ITEMS,
        Table::Keys => KEYS,
    }
}

/// When the committer next tries to reopen a failed store, and how long it waited last.
struct Recovery {
    since: Instant,
    next: Instant,
    wait: Duration,
}

/// The committer: waits for a write, takes every other one already waiting, applies them
/// in one transaction, commits once, then answers them all. While the file cannot write,
/// writes are refused at once and the file is reopened and probed with a backoff.
fn commit_loop(engine: &Engine, rx: &mpsc::Receiver<Request>, health: &Health, sizes: &[Size; 2]) {
    let mut recovery: Option<Recovery> = None;
    loop {
        let first = match &recovery {
            None => rx.recv().map_err(|_| ()),
            Some(r) => match rx.recv_timeout(r.next.saturating_duration_since(Instant::now())) {
                Ok(req) => Ok(req),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    recover(engine, health, &mut recovery);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(()),
            },
        };
        let Ok(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        if recovery.as_ref().is_some_and(|r| Instant::now() >= r.next) {
            recover(engine, health, &mut recovery);
        }
        let results = match (engine, &recovery) {
            (Engine::Redb(_), Some(_)) => Err(health
                .problem
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_else(|| "the store cannot write".into())),
            (Engine::Redb(r), None) => {
                let guard = r.db.read().unwrap_or_else(|p| p.into_inner());
                match guard.as_ref() {
                    Some(db) => guarded(|| apply_redb(db, &batch, sizes)),
                    None => Err("the store is closed".into()),
                }
            }
            (Engine::Memory(m), _) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                Ok(batch.iter().map(|r| apply_memory(&mut m, &r.write, sizes)).collect())
            }
        };
        match results {
            Ok(results) => {
                for (req, result) in batch.into_iter().zip(results) {
                    let _ = req.done.send(Ok(result));
                }
            }
            Err(e) => {
                if let (Engine::Redb(r), None) = (engine, &recovery) {
                    // redb refuses everything after an I/O error until it is reopened.
                    health.fail(&r.path, &e);
                    *r.db.write().unwrap_or_else(|p| p.into_inner()) = None;
                    let now = Instant::now();
                    recovery = Some(Recovery { since: now, next: now + REOPEN_WAIT, wait: REOPEN_WAIT });
                }
                for req in batch {
                    let _ = req.done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Room a store must show before it counts as writable again: a write this large must
/// commit (the file grows past its free pages), or a disk that is still full would pass a
/// tiny probe and fail the next real write.
const PROBE_BYTES: usize = 1 << 20;

/// Reopens a failed file (redb repairs what the failed commit left) and probes it with a
/// write of [`PROBE_BYTES`], removed again; the store is writable again only once both are
/// durable. The file is opened and probed without the lock readers take, so a long repair
/// never blocks them (they get "being reopened" meanwhile).
fn recover(engine: &Engine, health: &Health, recovery: &mut Option<Recovery>) {
    let (Engine::Redb(r), Some(state)) = (engine, recovery.as_mut()) else { return };
    let probe = |db: &Database| {
        guarded(|| {
            for value in [Some(vec![0u8; PROBE_BYTES]), None] {
                let tx = db.begin_write().map_err(|e| e.to_string())?;
                {
                    let mut t = tx.open_table(KEYS).map_err(|e| e.to_string())?;
                    match &value {
                        Some(v) => t.insert("\u{0}probe", v.as_slice()).map(|_| ()),
                        None => t.remove("\u{0}probe").map(|_| ()),
                    }
                    .map_err(|e| e.to_string())?;
                }
                tx.commit().map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    };
    let attempt = open_db(&r.path, false).and_then(|db| probe(&db).map(|()| db));
    match attempt {
        Ok(db) => {
            *r.db.write().unwrap_or_else(|p| p.into_inner()) = Some(db);
            health.recovered(&r.path, state.since.elapsed());
            *recovery = None;
        }
        Err(e) => {
            *health.problem.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            state.wait = (state.wait * 2).min(MAX_REOPEN_WAIT);
            state.next = Instant::now() + state.wait;
        }
    }
}

fn apply_redb(db: &Database, batch: &[Request], sizes: &[Size; 2]) -> Result<Vec<Written>, String> {
    let tx = db.begin_write().map_err(|e| e.to_string())?;
    let mut results = Vec::with_capacity(batch.len());
    // Size changes are applied only once the commit succeeded.
    let mut changes: Vec<(usize, usize, usize, Option<usize>, bool)> = Vec::new();
    {
        let mut items = tx.open_table(ITEMS).map_err(|e| e.to_string())?;
        let mut keys = tx.open_table(KEYS).map_err(|e| e.to_string())?;
        let mut paused = tx.open_table(PAUSED).map_err(|e| e.to_string())?;
        let mut states = tx.open_table(ITEM_STATE).map_err(|e| e.to_string())?;
        let mut index = tx.open_table(BY_STATE).map_err(|e| e.to_string())?;
        for req in batch {
            let result = match &req.write {
                Write::PutItem(id, code, v) => put_item(&mut items, &mut states, &mut index, id, *code, v).map(|old| {
                    changes.push((0, id.len(), v.len(), old, false));
                    Written::Done
                }),
                // An item written without its state code: read from its JSON, so the index
                // never misses it.
                Write::Put(Table::Items, id, v) => put_item(&mut items, &mut states, &mut index, id, state_of(v), v)
                    .map(|old| {
                        changes.push((0, id.len(), v.len(), old, false));
                        Written::Done
                    }),
                Write::Put(Table::Keys, k, v) => keys.insert(k.as_str(), v.as_slice()).map(|old| {
                    let old = old.map(|g| g.value().len());
                    changes.push((1, k.len(), v.len(), old, false));
                    Written::Done
                }),
                Write::Delete(t, k) => (|| {
                    let table = if *t == Table::Items { &mut items } else { &mut keys };
                    if let Some(old) = table.remove(k.as_str())?.map(|g| g.value().len()) {
                        changes.push((table_code(*t) as usize, k.len(), old, None, true));
                    }
                    if *t == Table::Items {
                        unindex(k, &mut states, &mut index)?;
                    }
                    Ok(Written::Done)
                })(),
                Write::DeleteMany(t, ks) => (|| {
                    let table = if *t == Table::Items { &mut items } else { &mut keys };
                    for k in ks {
                        if let Some(old) = table.remove(k.as_str())?.map(|g| g.value().len()) {
                            changes.push((table_code(*t) as usize, k.len(), old, None, true));
                        }
                        if *t == Table::Items {
                            unindex(k, &mut states, &mut index)?;
                        }
                    }
                    Ok(Written::Done)
                })(),
                Write::PutIfAbsent(t, k, v) => (|| {
                    let table = if *t == Table::Items { &mut items } else { &mut keys };
                    if let Some(old) = table.get(k.as_str())? {
                        return Ok(Written::Exists(old.value().to_vec()));
                    }
                    table.insert(k.as_str(), v.as_slice())?;
                    changes.push((table_code(*t) as usize, k.len(), v.len(), None, false));
                    if *t == Table::Items {
                        let code = state_of(v);
                        states.insert(k.as_str(), code)?;
                        index.insert((code, k.as_str()), ())?;
                    }
                    Ok(Written::Done)
                })(),
                Write::Paused(backend, true) => paused.insert(backend.as_str(), 1).map(|_| Written::Done),
                Write::Paused(backend, false) => paused.remove(backend.as_str()).map(|_| Written::Done),
            };
            results.push(result.map_err(|e| e.to_string())?);
        }
    }
    tx.commit().map_err(|e| e.to_string())?;
    for (t, k, v, replaced, removed) in changes {
        if removed { sizes[t].removed(k, v) } else { sizes[t].added(k, v, replaced) }
    }
    Ok(results)
}

/// Writes an item and files it under `code` in the state index; the length of the value it
/// replaced, if any.
fn put_item(
    items: &mut redb::Table<&str, &[u8]>,
    states: &mut redb::Table<&str, u8>,
    index: &mut redb::Table<(u8, &str), ()>,
    id: &str,
    code: u8,
    value: &[u8],
) -> Result<Option<usize>, redb::StorageError> {
    let old = items.insert(id, value)?.map(|g| g.value().len());
    unindex(id, states, index)?;
    states.insert(id, code)?;
    index.insert((code, id), ())?;
    Ok(old)
}

/// Drops an item's entry from the state index.
fn unindex(
    id: &str,
    states: &mut redb::Table<&str, u8>,
    index: &mut redb::Table<(u8, &str), ()>,
) -> Result<(), redb::StorageError> {
    if let Some(old) = states.remove(id)?.map(|g| g.value()) {
        index.remove((old, id))?;
    }
    Ok(())
}

fn apply_memory(m: &mut MemoryMap, write: &Write, sizes: &[Size; 2]) -> Written {
    let put = |m: &mut MemoryMap, t: u8, k: &String, v: &Vec<u8>| {
        let old = m.insert((t, k.clone()), v.clone()).map(|o| o.len());
        if let Some(s) = sizes.get(t as usize) {
            s.added(k.len(), v.len(), old);
        }
    };
    let remove = |m: &mut MemoryMap, t: u8, k: &String| {
        if let (Some(old), Some(s)) = (m.remove(&(t, k.clone())), sizes.get(t as usize)) {
            s.removed(k.len(), old.len());
        }
    };
    match write {
        Write::PutItem(k, _, v) => put(m, 0, k, v),
        Write::Put(t, k, v) => put(m, table_code(*t), k, v),
        Write::Delete(t, k) => remove(m, table_code(*t), k),
        Write::DeleteMany(t, ks) => {
            for k in ks {
                remove(m, table_code(*t), k);
            }
        }
        Write::PutIfAbsent(t, k, v) => {
            if let Some(old) = m.get(&(table_code(*t), k.clone())) {
                return Written::Exists(old.clone());
            }
            put(m, table_code(*t), k, v);
        }
        Write::Paused(b, true) => {
            m.insert((PAUSED_CODE, b.clone()), Vec::new());
        }
        Write::Paused(b, false) => {
            m.remove(&(PAUSED_CODE, b.clone()));
        }
    }
    Written::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_if_absent_is_atomic_under_concurrent_writers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        // Concurrent conditional inserts of one key: exactly one wins.
        let mut tasks = Vec::new();
        for i in 0..50u8 {
            let s = store.clone();
            tasks
                .push(tokio::spawn(async move { s.write(Write::PutIfAbsent(Table::Keys, "k".into(), vec![i])).await }));
        }
        let mut won = 0;
        for t in tasks {
            if t.await.expect("join").expect("write") == Written::Done {
                won += 1;
            }
        }
        assert_eq!(won, 1);
        store.write(Write::Put(Table::Items, "a".into(), b"1".to_vec())).await.expect("put");
        store.write(Write::Paused("erp".into(), true)).await.expect("pause");
        assert_eq!(store.get(Table::Items, "a").expect("get"), Some(b"1".to_vec()));
        assert_eq!(store.paused().expect("paused"), vec!["erp".to_string()]);
    }

    fn item(state: &str) -> Vec<u8> {
        format!(r#"{{"state":"{state}","pad":"xxxxxxxx"}}"#).into_bytes()
    }

    /// Sizes and the state index follow every kind of write, survive a reopen, and match
    /// between the file and memory engines.
    #[tokio::test]
    async fn sizes_and_the_state_index_follow_every_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (n, store) in [Store::open(dir.path()).expect("open"), Store::memory()].into_iter().enumerate() {
            let (queued, dead) = (super::super::State::Queued.code(), super::super::State::Dead.code());
            for id in ["a", "b", "c", "d"] {
                store.write(Write::PutItem(id.into(), queued, item("queued"))).await.expect("put");
            }
            store.write(Write::PutItem("b".into(), dead, item("dead"))).await.expect("to dead");
            store.write(Write::PutItem("d".into(), dead, item("dead"))).await.expect("to dead");
            store.write(Write::Delete(Table::Items, "a".into())).await.expect("delete");
            store.write(Write::DeleteMany(Table::Items, vec!["c".into(), "zz".into()])).await.expect("delete");
            let size = store.size(Table::Items);
            assert_eq!((size.rows(), size.bytes()), (2, 2 * (1 + item("dead").len() as u64)), "{store:?}");
            assert_eq!(store.item_ids(Some(dead), None, 10).expect("ids"), ["b", "d"]);
            assert_eq!(store.item_ids(Some(dead), Some("b"), 10).expect("ids"), ["d"]);
            assert_eq!(store.item_ids(Some(queued), None, 10).expect("ids"), Vec::<String>::new());
            assert_eq!(store.item_ids(None, None, 1).expect("ids"), ["b"]);
            store.write(Write::PutIfAbsent(Table::Keys, "k".into(), vec![0; 10])).await.expect("key");
            store.write(Write::Put(Table::Keys, "k".into(), vec![0; 30])).await.expect("key");
            assert_eq!((store.size(Table::Keys).rows(), store.size(Table::Keys).bytes()), (1, 31));
            if n == 0 {
                store.close().expect("close");
            }
        }
        let reopened = Store::open(dir.path()).expect("reopen");
        assert_eq!(reopened.size(Table::Items).rows(), 2);
        assert_eq!(reopened.size(Table::Keys).bytes(), 31);
        assert_eq!(reopened.item_ids(Some(super::super::State::Dead.code()), None, 10).expect("ids"), ["b", "d"]);
    }

    /// A damaged file is an error naming it and what to do, not a panic.
    #[test]
    fn a_damaged_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let store = Store::open(dir.path()).expect("open");
            rt.block_on(async {
                for i in 0..2000 {
                    let id = format!("item-{i:05}");
                    store.write(Write::PutItem(id, 0, item("queued"))).await.expect("put");
                }
            });
            store.close().expect("closed");
        }
        let path = dir.path().join("veneer.redb");
        let mut bytes = std::fs::read(&path).expect("read");
        // Overwrite everything past the header: every tree page is garbage.
        for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
            *b = (i * 7 % 251) as u8;
        }
        std::fs::write(&path, bytes).expect("write");
        let e = Store::open(dir.path()).expect_err("a damaged store");
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("move it aside"), "{e}");
        assert!(!e.contains("in use by another process"), "the damage is what is reported: {e}");
    }
}
