//! The durable store behind queued delivery and `Idempotency-Key`: one redb file under the
//! data directory (or memory, for idempotency keys on a gateway without one).
//!
//! Every write goes through one committer thread that takes whatever is waiting, applies it
//! in one transaction and commits once (one fdatasync for the whole batch: group commit),
//! then answers each writer. A writer's future resolves only after its write is durable,
//! which is what lets the gateway answer 202 only for what a kill -9 cannot lose.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

const ITEMS: TableDefinition<&str, &[u8]> = TableDefinition::new("items");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
const PAUSED: TableDefinition<&str, u8> = TableDefinition::new("paused");

/// redb's page cache.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Most writes committed together.
const MAX_BATCH: usize = 2048;

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

struct Request {
    write: Write,
    done: oneshot::Sender<Result<Written, String>>,
}

enum Engine {
    Redb(Database),
    Memory(Mutex<BTreeMap<(u8, String), Vec<u8>>>),
}

/// The store; clones share it.
#[derive(Clone)]
pub struct Store {
    engine: Arc<Engine>,
    writes: mpsc::Sender<Request>,
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

impl Store {
    /// Opens (or creates) `dir/veneer.redb`.
    pub fn open(dir: &Path) -> Result<Store, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
        let path = dir.join("veneer.redb");
        // A bounded page cache: the store is written far more than it is read back, and
        // redb's default (1 GiB) would make a long outage show up as resident memory.
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // Create the tables once, so readers never find them missing.
        let tx = db.begin_write().map_err(|e| e.to_string())?;
        tx.open_table(ITEMS).map_err(|e| e.to_string())?;
        tx.open_table(KEYS).map_err(|e| e.to_string())?;
        tx.open_table(PAUSED).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
        Ok(Store::start(Engine::Redb(db)))
    }

    /// A store in memory: nothing survives the process (idempotency keys without a data dir).
    pub fn memory() -> Store {
        Store::start(Engine::Memory(Mutex::default()))
    }

    fn start(engine: Engine) -> Store {
        let engine = Arc::new(engine);
        let (tx, rx) = mpsc::channel::<Request>();
        let committer = engine.clone();
        let spawned =
            std::thread::Builder::new().name("veneer-store".into()).spawn(move || commit_loop(&committer, &rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the store's committer thread");
        }
        Store { engine, writes: tx }
    }

    /// Applies one write durably (batched with whatever else is waiting).
    pub async fn write(&self, write: Write) -> Result<Written, String> {
        let (done, answer) = oneshot::channel();
        self.writes.send(Request { write, done }).map_err(|_| "the store is closed".to_string())?;
        answer.await.map_err(|_| "the store's committer stopped".to_string())?
    }

    /// Reads one value.
    pub fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, String> {
        match &*self.engine {
            Engine::Memory(m) => {
                Ok(m.lock().unwrap_or_else(|p| p.into_inner()).get(&(table_code(table), key.to_string())).cloned())
            }
            Engine::Redb(db) => {
                let tx = db.begin_read().map_err(|e| e.to_string())?;
                let t = tx.open_table(definition(table)).map_err(|e| e.to_string())?;
                Ok(t.get(key).map_err(|e| e.to_string())?.map(|v| v.value().to_vec()))
            }
        }
    }

    /// Calls `f` with every row of a table, in key order, until it returns false. Rows
    /// are read one at a time (a queue of millions is never held in memory at once).
    pub fn each(&self, table: Table, mut f: impl FnMut(&str, &[u8]) -> bool) -> Result<(), String> {
        match &*self.engine {
            Engine::Memory(m) => {
                let m = m.lock().unwrap_or_else(|p| p.into_inner());
                for ((_, k), v) in m.iter().filter(|((t, _), _)| *t == table_code(table)) {
                    if !f(k, v) {
                        break;
                    }
                }
                Ok(())
            }
            Engine::Redb(db) => {
                let tx = db.begin_read().map_err(|e| e.to_string())?;
                let t = tx.open_table(definition(table)).map_err(|e| e.to_string())?;
                for row in t.iter().map_err(|e| e.to_string())? {
                    let (k, v) = row.map_err(|e| e.to_string())?;
                    if !f(k.value(), v.value()) {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    /// Backends paused by an operator.
    pub fn paused(&self) -> Result<Vec<String>, String> {
        match &*self.engine {
            Engine::Memory(m) => Ok(m
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .filter(|(t, _)| *t == 2)
                .map(|(_, k)| k.clone())
                .collect()),
            Engine::Redb(db) => {
                let tx = db.begin_read().map_err(|e| e.to_string())?;
                let t = tx.open_table(PAUSED).map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                for row in t.iter().map_err(|e| e.to_string())? {
                    out.push(row.map_err(|e| e.to_string())?.0.value().to_string());
                }
                Ok(out)
            }
        }
    }
}

fn definition(t: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match t {
        Table::Items => ITEMS,
        Table::Keys => KEYS,
    }
}

/// The committer: waits for a write, takes every other one already waiting, applies them
/// in one transaction, commits once, then answers them all.
fn commit_loop(engine: &Engine, rx: &mpsc::Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let results = match engine {
            Engine::Redb(db) => apply_redb(db, &batch),
            Engine::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                Ok(batch.iter().map(|r| apply_memory(&mut m, &r.write)).collect())
            }
        };
        match results {
            Ok(results) => {
                for (req, result) in batch.into_iter().zip(results) {
                    let _ = req.done.send(Ok(result));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the store could not commit; the writes were refused");
                for req in batch {
                    let _ = req.done.send(Err(e.clone()));
                }
            }
        }
    }
}

fn apply_redb(db: &Database, batch: &[Request]) -> Result<Vec<Written>, String> {
    let tx = db.begin_write().map_err(|e| e.to_string())?;
    let mut results = Vec::with_capacity(batch.len());
    {
        let mut items = tx.open_table(ITEMS).map_err(|e| e.to_string())?;
        let mut keys = tx.open_table(KEYS).map_err(|e| e.to_string())?;
        let mut paused = tx.open_table(PAUSED).map_err(|e| e.to_string())?;
        for req in batch {
            let result = match &req.write {
                Write::Put(t, k, v) => {
                    let table = if *t == Table::Items { &mut items } else { &mut keys };
                    table.insert(k.as_str(), v.as_slice()).map(|_| Written::Done)
                }
                Write::Delete(t, k) => {
                    let table = if *t == Table::Items { &mut items } else { &mut keys };
                    table.remove(k.as_str()).map(|_| Written::Done)
                }
                Write::DeleteMany(t, ks) => {
                    let table = if *t == Table::Items { &mut items } else { &mut keys };
                    ks.iter().try_for_each(|k| table.remove(k.as_str()).map(|_| ())).map(|()| Written::Done)
                }
                Write::PutIfAbsent(t, k, v) => {
                    let table = if *t == Table::Items { &mut items } else { &mut keys };
                    let existing = table.get(k.as_str()).map(|g| g.map(|v| v.value().to_vec()));
                    match existing {
                        Ok(Some(old)) => Ok(Written::Exists(old)),
                        Ok(None) => table.insert(k.as_str(), v.as_slice()).map(|_| Written::Done),
                        Err(e) => Err(e),
                    }
                }
                Write::Paused(backend, true) => paused.insert(backend.as_str(), 1).map(|_| Written::Done),
                Write::Paused(backend, false) => paused.remove(backend.as_str()).map(|_| Written::Done),
            };
            results.push(result.map_err(|e| e.to_string())?);
        }
    }
    tx.commit().map_err(|e| e.to_string())?;
    Ok(results)
}

fn apply_memory(m: &mut BTreeMap<(u8, String), Vec<u8>>, write: &Write) -> Written {
    match write {
        Write::Put(t, k, v) => {
            m.insert((table_code(*t), k.clone()), v.clone());
        }
        Write::Delete(t, k) => {
            m.remove(&(table_code(*t), k.clone()));
        }
        Write::DeleteMany(t, ks) => {
            for k in ks {
                m.remove(&(table_code(*t), k.clone()));
            }
        }
        Write::PutIfAbsent(t, k, v) => {
            if let Some(old) = m.get(&(table_code(*t), k.clone())) {
                return Written::Exists(old.clone());
            }
            m.insert((table_code(*t), k.clone()), v.clone());
        }
        Write::Paused(b, true) => {
            m.insert((2, b.clone()), Vec::new());
        }
        Write::Paused(b, false) => {
            m.remove(&(2, b.clone()));
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
}
