//! Limits shared by every replica through Redis: GCRA in one atomic Lua script (read and
//! write in a single step, clock from Redis `TIME`, so replicas agree), and fixed-window
//! quota counters. When Redis cannot answer in time, the configured fallback applies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

use super::Decision;
use super::rate::Rate;

/// GCRA: KEYS[1] = bucket; ARGV = emission interval (µs), burst, cost (steps taken at
/// once). Returns {allowed, retry_after_µs, remaining, reset_µs}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3] or 1)
local tolerance = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, allow_at - now, 0, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(tolerance / 1000) + 1000)
local remaining = math.floor((tolerance - (new_tat - now)) / interval)
return {1, 0, remaining, new_tat - now}
";

/// Fixed-window counter: KEYS[1] = counter; ARGV = window end (unix seconds). Returns the count.
const COUNT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIREAT', KEYS[1], tonumber(ARGV[1]) + 60) end
return n
";

/// Set-if-absent with expiry: KEYS[1] = key; ARGV = seconds. Returns 1 when it was absent.
const FIRST_USE: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then return 1 end
return 0
";

/// What to do when Redis does not answer (`limits.shared.on_unavailable`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// Fall back to this replica's own limiter (limits become per replica until Redis returns).
    #[default]
    Local,
    /// Refuse requests with 503 until Redis returns.
    Reject,
}

/// The Redis connection and scripts.
pub struct Shared {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    gcra: redis::Script,
    count: redis::Script,
    first_use: redis::Script,
    /// Key prefix, so several gateways can share one Redis.
    pub prefix: String,
    /// Deadline for one Redis round trip.
    pub timeout: Duration,
    /// Fallback policy.
    pub on_unavailable: OnUnavailable,
    down: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared {{ prefix: {:?}, on_unavailable: {:?} }}", self.prefix, self.on_unavailable)
    }
}

impl Shared {
    /// Parses the URL; connects lazily on first use.
    pub fn new(
        url: &str,
        prefix: String,
        timeout: Duration,
        on_unavailable: OnUnavailable,
    ) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
        Ok(Arc::new(Shared {
            client,
            conn: OnceCell::new(),
            gcra: redis::Script::new(GCRA),
            count: redis::Script::new(COUNT),
            first_use: redis::Script::new(FIRST_USE),
            prefix,
            timeout,
            on_unavailable,
            down: AtomicBool::new(false),
        }))
    }

    async fn conn(&self) -> Result<ConnectionManager, String> {
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let c = self
            .conn
            .get_or_try_init(|| async { ConnectionManager::new_with_config(self.client.clone(), cfg).await })
            .await
            .map_err(|e| e.to_string())?;
        Ok(c.clone())
    }

    /// Records Redis health transitions once each, not per request.
    fn mark(&self, ok: bool, error: Option<&str>) {
        if !ok {
            crate::telemetry::limiter_unavailable();
        }
        let was_down = self.down.swap(!ok, Ordering::Relaxed);
        match (was_down, ok) {
            (false, false) => {
                tracing::warn!(error = error.unwrap_or(""), policy = ?self.on_unavailable, "Redis unavailable for shared rate limits")
            }
            (true, true) => tracing::info!("Redis is back; shared rate limits restored"),
            _ => {}
        }
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        key: &str,
        args: &[u64],
    ) -> Result<T, String> {
        let call = async {
            let mut conn = self.conn().await?;
            let mut inv = script.key(format!("{}{key}", self.prefix));
            for a in args {
                inv.arg(*a);
            }
            inv.invoke_async::<T>(&mut conn).await.map_err(|e| e.to_string())
        };
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        self.mark(result.is_ok(), result.as_ref().err().map(String::as_str));
        result
    }

    /// `cost` GCRA steps at once for `key` at `rate`; `Err` when Redis did not answer.
    pub async fn check(&self, key: &str, rate: Rate, cost: u32) -> Result<Decision, String> {
        let interval = rate.interval().as_micros().max(1) as u64;
        let (allowed, retry_us, remaining, reset_us): (i64, i64, i64, i64) =
            self.run(&self.gcra, key, &[interval, u64::from(rate.burst), u64::from(cost.max(1))]).await?;
        let us = |v: i64| Duration::from_micros(v.max(0) as u64);
        Ok(if allowed == 1 {
            Decision::Allow { remaining: remaining.max(0) as u32, reset: us(reset_us) }
        } else {
            Decision::Deny { retry_after: us(retry_us) }
        })
    }

    /// Records `key` for `ttl_secs` in one atomic step; true when it was not there before.
    pub(crate) async fn first_use(&self, key: &str, ttl_secs: u64) -> Result<bool, String> {
        let n: i64 = self.run(&self.first_use, key, &[ttl_secs]).await?;
        Ok(n == 1)
    }

    /// Increments a window counter ending at `window_end` (unix seconds); returns the count.
    pub async fn count(&self, key: &str, window_end: u64) -> Result<u64, String> {
        let n: i64 = self.run(&self.count, key, &[window_end]).await?;
        Ok(n.max(0) as u64)
    }
}
