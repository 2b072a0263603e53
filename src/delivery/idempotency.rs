//! `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header-07) on non-idempotent
//! routes, scoped per caller and route: the first request's answer is stored and replayed
//! for a retry with the same key and payload; the same key with another payload is 422, and
//! a retry while the first is still running is 409.
//!
//! The first request claims the key with one atomic insert-if-absent in the store, so two
//! replicas or two concurrent retries cannot both run it. A claim left by a crash expires
//! after `IN_FLIGHT_TTL`.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::now_ms;
use super::store::{Store, Table, Write, Written};
use crate::error::GatewayError;

/// How long an unfinished claim blocks its key (a request never runs longer than this).
pub(crate) const IN_FLIGHT_TTL: Duration = Duration::from_secs(300);

/// Longest accepted key (the draft leaves it to the server).
pub(crate) const MAX_KEY: usize = 255;

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// Hex SHA-256 of what the request asks of the ERP.
    fingerprint: String,
    /// Absent while the first request runs.
    answer: Option<Answer>,
    expires_ms: u64,
}

/// A stored answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    status: u16,
    content_type: Option<String>,
    location: Option<String>,
    /// Base64 of the body (empty when it was too large to keep).
    body: String,
    /// An answer above `idempotency_max_answer`: its `Repr-Digest` (RFC 9530) and size,
    /// kept instead of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    omitted: Option<(String, usize)>,
}

impl Answer {
    /// The response to replay, marked as a replay. An answer kept without its body replays
    /// its status and Location with an empty body, and says what the body was.
    pub fn response(&self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let body = STANDARD.decode(&self.body).unwrap_or_default();
        let mut res = (status, body).into_response();
        let h = res.headers_mut();
        let content_type = if self.omitted.is_some() { &None } else { &self.content_type };
        for (name, value) in [(header::CONTENT_TYPE, content_type), (header::LOCATION, &self.location)] {
            if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                h.insert(name, v);
            }
        }
        if let Some((digest, size)) = &self.omitted
            && let Ok(v) = HeaderValue::from_str(digest)
        {
            h.insert("repr-digest", v);
            h.insert("idempotent-replayed-omitted-bytes", HeaderValue::from(*size));
        }
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
        res
    }
}

/// What a claim found.
#[derive(Debug)]
pub enum Claim {
    /// The key is this request's: run it, then [`Keys::finish`] or [`Keys::release`].
    Run,
    /// The first request's answer, to replay.
    Replay(Answer),
}

/// Where the records live.
#[derive(Clone)]
enum Backing {
    Store(Store),
    /// Redis, shared by a fleet: `SET NX` with expiry claims a key.
    Redis(redis::aio::ConnectionManager, String),
}

/// The idempotency records.
#[derive(Clone)]
pub struct Keys {
    backing: Backing,
    ttl: Duration,
    /// Bytes of records the embedded store keeps at most; past it the oldest answers go.
    max_bytes: u64,
    /// Larger answers are kept without their body.
    max_answer: usize,
    /// A trim is running (one at a time).
    trimming: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backing {
            Backing::Store(s) => write!(f, "Keys({s:?})"),
            Backing::Redis(..) => write!(f, "Keys(redis)"),
        }
    }
}

impl Keys {
    /// Records kept in `store` as `settings` say (`idempotency_ttl`, `_max_bytes`,
    /// `_max_answer`).
    pub fn new(store: Store, settings: &super::DeliverySettings) -> Keys {
        Keys::with(Backing::Store(store), settings)
    }

    /// Records kept in the fleet's Redis (bounded by their TTL and Redis' own maxmemory).
    pub async fn redis(
        fleet: &super::fleet::FleetSettings,
        settings: &super::DeliverySettings,
    ) -> Result<Keys, String> {
        let conn = super::fleet::connect(&fleet.url).await?;
        Ok(Keys::with(Backing::Redis(conn, format!("{}idem:", fleet.prefix)), settings))
    }

    fn with(backing: Backing, settings: &super::DeliverySettings) -> Keys {
        Keys {
            backing,
            ttl: settings.idempotency_ttl,
            max_bytes: settings.idempotency_max_bytes,
            max_answer: usize::try_from(settings.idempotency_max_answer).unwrap_or(usize::MAX),
            trimming: std::sync::Arc::default(),
        }
    }

    /// Insert-if-absent of a record; the existing one when there is one.
    async fn put_if_absent(&self, key: &str, bytes: Vec<u8>) -> Result<Written, GatewayError> {
        match &self.backing {
            Backing::Store(store) => store
                .write(Write::PutIfAbsent(Table::Keys, key.to_string(), bytes))
                .await
                .map_err(|_| GatewayError::StoreUnavailable),
            Backing::Redis(conn, prefix) => {
                let mut conn = conn.clone();
                let k = format!("{prefix}{key}");
                // A claim's record expires with the claim; the answer's gets the full TTL.
                let set: Option<String> = redis::cmd("SET")
                    .arg(&k)
                    .arg(bytes)
                    .arg("NX")
                    .arg("PX")
                    .arg(IN_FLIGHT_TTL.as_millis() as u64)
                    .query_async(&mut conn)
                    .await
                    .map_err(|_| GatewayError::StoreUnavailable)?;
                if set.is_some() {
                    return Ok(Written::Done);
                }
                let old: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&k)
                    .query_async(&mut conn)
                    .await
                    .map_err(|_| GatewayError::StoreUnavailable)?;
                // Gone between the two calls: expired; an empty record reads as expired.
                Ok(Written::Exists(old.unwrap_or_default()))
            }
        }
    }

    async fn put(&self, key: &str, bytes: Vec<u8>, ttl: Duration) -> Result<(), String> {
        match &self.backing {
            Backing::Store(store) => store.write(Write::Put(Table::Keys, key.to_string(), bytes)).await.map(|_| ()),
            Backing::Redis(conn, prefix) => {
                let mut conn = conn.clone();
                redis::cmd("SET")
                    .arg(format!("{prefix}{key}"))
                    .arg(bytes)
                    .arg("PX")
                    .arg(ttl.as_millis().max(1) as u64)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Claims `key` for a request with this fingerprint.
    pub async fn claim(&self, key: &str, fingerprint: &str) -> Result<Claim, GatewayError> {
        let record = Record {
            fingerprint: fingerprint.to_string(),
            answer: None,
            expires_ms: now_ms() + IN_FLIGHT_TTL.as_millis() as u64,
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| GatewayError::Internal(e.to_string()))?;
        let written = self.put_if_absent(key, bytes.clone()).await?;
        let Written::Exists(old) = written else { return Ok(Claim::Run) };
        let old: Option<Record> = serde_json::from_slice(&old).ok();
        match old {
            // Expired (or unreadable): this request takes the key over.
            None => {}
            Some(old) if old.expires_ms <= now_ms() => {}
            Some(old) if old.fingerprint != fingerprint => return Err(GatewayError::IdempotencyMismatch),
            Some(Record { answer: Some(answer), .. }) => return Ok(Claim::Replay(answer)),
            Some(_) => return Err(GatewayError::IdempotencyInFlight),
        }
        self.put(key, bytes, IN_FLIGHT_TTL).await.map_err(|_| GatewayError::StoreUnavailable)?;
        Ok(Claim::Run)
    }

    /// Stores the answer of the request that claimed `key`; returns the response to send.
    pub async fn finish(&self, key: &str, fingerprint: &str, res: Response) -> Response {
        let (parts, body) = res.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
            self.release(key).await;
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let text = |name| parts.headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_string);
        let omitted = (bytes.len() > self.max_answer).then(|| {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
            (format!("sha-256=:{}:", STANDARD.encode(digest.as_ref())), bytes.len())
        });
        let answer = Answer {
            status: parts.status.as_u16(),
            content_type: text(header::CONTENT_TYPE),
            location: text(header::LOCATION),
            body: if omitted.is_some() { String::new() } else { STANDARD.encode(&bytes) },
            omitted,
        };
        let record = Record {
            fingerprint: fingerprint.to_string(),
            answer: Some(answer),
            expires_ms: now_ms() + self.ttl.as_millis() as u64,
        };
        match serde_json::to_vec(&record) {
            Ok(v) => {
                if let Err(e) = self.put(key, v, self.ttl).await {
                    tracing::error!(error = %e, "an idempotency record could not be stored");
                }
                self.trim_if_full();
            }
            Err(e) => tracing::error!(error = %e, "an idempotency record could not be serialised"),
        }
        Response::from_parts(parts, axum::body::Body::from(bytes))
    }

    /// Past `max_bytes`, the oldest answers are forgotten until the records take 90 % of it
    /// (claims of requests still running are kept). A retry of a forgotten key runs again;
    /// on a queued route `{delivery.key}` and `duplicate_faults` still book it once.
    fn trim_if_full(&self) {
        let Backing::Store(store) = &self.backing else { return };
        if store.size(Table::Keys).bytes() <= self.max_bytes
            || self.trimming.swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let (store, target, trimming) = (store.clone(), self.max_bytes / 10 * 9, self.trimming.clone());
        tokio::spawn(async move {
            let scanning = store.clone();
            let oldest =
                tokio::task::spawn_blocking(move || oldest_answers(&scanning, target)).await.unwrap_or_default();
            let n = oldest.len();
            for batch in oldest.chunks(1000) {
                let _ = store.write(Write::DeleteMany(Table::Keys, batch.to_vec())).await;
            }
            crate::telemetry::idempotency_evicted(n);
            tracing::warn!(
                forgotten = n,
                bytes = store.size(Table::Keys).bytes(),
                "idempotency records reached delivery.idempotency_max_bytes; the oldest answers were forgotten"
            );
            trimming.store(false, std::sync::atomic::Ordering::Release);
        });
    }

    /// Gives up a claim without an answer (the request never reached the ERP).
    pub async fn release(&self, key: &str) {
        match &self.backing {
            Backing::Store(store) => {
                let _ = store.write(Write::Delete(Table::Keys, key.to_string())).await;
            }
            Backing::Redis(conn, prefix) => {
                let _: Result<(), _> =
                    redis::cmd("DEL").arg(format!("{prefix}{key}")).query_async(&mut conn.clone()).await;
            }
        }
    }
}

/// The key's scope: caller and route, so two clients (or two routes) never collide.
pub fn scoped(caller: &str, route: &str, key: &str) -> String {
    format!("{caller}\u{0}{route}\u{0}{key}")
}

/// Checks a client's key: 1–255 visible ASCII characters (RFC 5234 VCHAR, `!` to `~`: no
/// space, which HTTP trims at either end of a field and so could not round-trip).
pub(crate) fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY && key.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// The keys of the oldest finished records, enough of them that the rest take at most
/// `target` bytes.
fn oldest_answers(store: &Store, target: u64) -> Vec<String> {
    /// Only what ordering needs (the answer's body is skipped, not decoded).
    #[derive(Deserialize)]
    struct Head {
        expires_ms: u64,
        #[serde(default)]
        answer: Option<serde::de::IgnoredAny>,
    }
    let mut finished = Vec::new();
    let mut total = 0u64;
    let _ = store.each(Table::Keys, |key, bytes| {
        total += (key.len() + bytes.len()) as u64;
        if let Ok(Head { expires_ms, answer: Some(_) }) = serde_json::from_slice::<Head>(bytes) {
            finished.push((expires_ms, key.to_string(), (key.len() + bytes.len()) as u64));
        }
        true
    });
    finished.sort_unstable();
    let mut out = Vec::new();
    for (_, key, size) in finished {
        if total <= target {
            break;
        }
        total = total.saturating_sub(size);
        out.push(key);
    }
    out
}

/// Deletes expired records.
pub(crate) async fn sweep(store: &Store) {
    let now = now_ms();
    let scanning = store.clone();
    let expired = tokio::task::spawn_blocking(move || {
        let mut expired = Vec::new();
        let _ = scanning.each(Table::Keys, |key, bytes| {
            if serde_json::from_slice::<Record>(bytes).is_ok_and(|r| r.expires_ms <= now) {
                expired.push(key.to_string());
            }
            true
        });
        expired
    })
    .await
    .unwrap_or_default();
    for batch in expired.chunks(1000) {
        let _ = store.write(Write::DeleteMany(Table::Keys, batch.to_vec())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_1_to_255_visible_ascii_characters() {
        assert!(valid_key("8e03978e-40d5-43e8-bc93-6894a57f9324"));
        assert!(valid_key("\"quoted\"") && valid_key(&"~".repeat(MAX_KEY)));
        for bad in ["", "a b", " a", "a\tb", "é", &"x".repeat(MAX_KEY + 1)] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }
}
