//! Throttling: fair rate limits per client, per route and per client × route (GCRA), and
//! quotas per day or month, local by default and exact across replicas through Redis.
//!
//! Every limited response carries `RateLimit-Policy` and `RateLimit` headers
//! (draft-ietf-httpapi-ratelimit-headers); a refusal is a 429 problem with `Retry-After`.

pub mod local;
pub mod quota;
pub mod rate;
pub mod shared;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};

use self::local::{LocalLimiter, Registry, ceil_secs};
use self::quota::Quota;
use self::rate::Rate;
use self::shared::{OnUnavailable, Shared};
use crate::error::GatewayError;

/// The outcome of one limiter step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted; `remaining` more fit in the burst, which is full again after `reset`.
    Allow {
        /// Requests still admissible right now.
        remaining: u32,
        /// Time until the bucket is full again.
        reset: Duration,
    },
    /// Refused; try again after this long.
    Deny {
        /// Wait before retrying.
        retry_after: Duration,
    },
}

/// One configured limit: a policy name for headers, its rate, and where its state lives.
#[derive(Debug, Clone)]
pub struct Limit {
    /// Policy name in the headers: `client`, `route` or `client-route`.
    pub name: &'static str,
    /// The rate.
    pub rate: Rate,
    local: Arc<LocalLimiter>,
    shared: Option<Arc<Shared>>,
}

impl Limit {
    /// A limit named `name` whose local state is identified by `scope` in `registry`.
    pub fn new(name: &'static str, scope: &str, rate: Rate, registry: &Registry, shared: Option<Arc<Shared>>) -> Self {
        Limit { name, rate, local: registry.get(scope, rate), shared }
    }

    /// One step for `key`; with Redis, the shared bucket decides unless Redis is unreachable.
    pub async fn check(&self, key: &str) -> Result<Decision, GatewayError> {
        self.check_n(key, 1).await
    }

    /// `n` steps at once for `key` (a batch of readings): all admitted, or none.
    pub(crate) async fn check_n(&self, key: &str, n: u32) -> Result<Decision, GatewayError> {
        let Some(shared) = &self.shared else { return Ok(self.local.check_n(key, n)) };
        match shared.check(&format!("rl:{}:{key}", self.name), self.rate, n).await {
            Ok(d) => Ok(d),
            Err(_) if shared.on_unavailable == OnUnavailable::Local => Ok(self.local.check_n(key, n)),
            Err(_) => Err(GatewayError::LimiterUnavailable),
        }
    }
}

/// Per-snapshot throttling settings.
#[derive(Debug, Default)]
pub struct Throttle {
    /// Per-client limits by client id.
    pub clients: HashMap<String, Limit>,
    /// Limit for clients without their own.
    pub default_client: Option<Limit>,
    /// Quotas by client id.
    pub quotas: HashMap<String, Vec<Quota>>,
    /// Limiter state shared with later snapshots.
    pub registry: Arc<Registry>,
    /// The Redis backend, when configured.
    pub shared: Option<Arc<Shared>>,
    /// Telemetry readings per caller, each reading one step.
    pub readings: Option<Limit>,
}

/// What the limits said about one request, for the response headers.
#[derive(Debug, Default)]
pub struct Outcome {
    entries: Vec<(&'static str, u64, u64, Decision)>,
}

impl Outcome {
    /// Records a limiter's answer.
    pub fn push(&mut self, name: &'static str, quota: u64, window: u64, d: Decision) {
        self.entries.push((name, quota, window, d));
    }

    /// The longest wait any refusing limit asks for.
    pub fn refused(&self) -> Option<Duration> {
        self.entries
            .iter()
            .filter_map(|(_, _, _, d)| match d {
                Decision::Deny { retry_after } => Some(*retry_after),
                Decision::Allow { .. } => None,
            })
            .max()
    }

    /// The policies that refused.
    pub(crate) fn refusing(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.iter().filter(|(_, _, _, d)| matches!(d, Decision::Deny { .. })).map(|(n, _, _, _)| *n)
    }

    /// Adds `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        if self.entries.is_empty() {
            return;
        }
        // Two header values written straight into their buffers, numbers by itoa rather
        // than the formatting machinery: this runs on every answer.
        let (mut policy, mut state) = (String::with_capacity(64), String::with_capacity(64));
        let mut digits = itoa::Buffer::new();
        for (i, (n, q, w, d)) in self.entries.iter().enumerate() {
            if i > 0 {
                policy.push_str(", ");
                state.push_str(", ");
            }
            let (remaining, t) = match d {
                Decision::Allow { remaining, reset } => (*remaining, ceil_secs(*reset)),
                Decision::Deny { retry_after } => (0, ceil_secs(*retry_after)),
            };
            item(&mut policy, &mut digits, n, ("q", *q), ("w", *w));
            item(&mut state, &mut digits, n, ("r", u64::from(remaining)), ("t", t));
        }
        if let (Ok(p), Ok(s)) = (HeaderValue::try_from(policy), HeaderValue::try_from(state)) {
            headers.insert("ratelimit-policy", p);
            headers.insert("ratelimit", s);
        }
    }
}

/// One policy's item of a RateLimit header: `"name";a=x;b=y`.
fn item(out: &mut String, digits: &mut itoa::Buffer, name: &str, (a, x): (&str, u64), (b, y): (&str, u64)) {
    out.push('"');
    out.push_str(name);
    out.push_str("\";");
    out.push_str(a);
    out.push('=');
    out.push_str(digits.format(x));
    out.push(';');
    out.push_str(b);
    out.push('=');
    out.push_str(digits.format(y));
}

impl Throttle {
    /// The rate limit that applies to a client.
    pub(crate) fn client_limit(&self, client_id: &str) -> Option<&Limit> {
        self.clients.get(client_id).or(self.default_client.as_ref())
    }

    /// Applies the caller's rate limit, recording the answer in `out`. A registered client
    /// (of the built-in issuer) gets its own configured limit; any other caller the default
    /// one, in a bucket of its own (`caller.key` names issuer and client, so an external
    /// token whose `client_id` equals a registered id never shares that client's bucket).
    pub(crate) async fn check_client(&self, caller: &Caller, out: &mut Outcome) -> Result<(), GatewayError> {
        let limit = if caller.registered { self.client_limit(&caller.key) } else { self.default_client.as_ref() };
        if let Some(limit) = limit {
            let d = limit.check(&caller.key).await?;
            out.push(limit.name, u64::from(limit.rate.burst), limit.rate.window_secs(), d);
        }
        Ok(())
    }

    /// Counts `n` readings against the caller's readings limit.
    pub(crate) async fn check_readings(
        &self,
        caller: &Caller,
        n: usize,
        out: &mut Outcome,
    ) -> Result<(), GatewayError> {
        if let Some(limit) = &self.readings {
            let n = u32::try_from(n).unwrap_or(u32::MAX).max(1);
            let d = limit.check_n(&caller.key, n).await?;
            out.push(limit.name, u64::from(limit.rate.burst), limit.rate.window_secs(), d);
        }
        Ok(())
    }

    /// Counts the call against a registered client's quotas; run last, so a request another
    /// limit refused does not use up quota.
    pub(crate) async fn take_quota(&self, caller: &Caller, out: &mut Outcome) -> Result<(), GatewayError> {
        if !caller.registered || out.refused().is_some() {
            return Ok(());
        }
        for q in self.quotas.get(&caller.key).into_iter().flatten() {
            let d = q.take(&caller.key, self.shared.as_deref()).await?;
            out.push(q.name(), q.limit, q.window_secs(), d);
        }
        Ok(())
    }
}

/// Whose bucket a request counts in.
#[derive(Debug, Clone)]
pub struct Caller {
    /// A registered client's id, or `issuer|client_id` for any other caller.
    pub key: String,
    /// Whether the built-in issuer registered it (only those have own limits and quotas).
    pub registered: bool,
}

/// A route's own limit and whether it counts per route or per client × route.
#[derive(Debug, Clone)]
pub struct RouteLimit {
    /// The limit.
    pub limit: Limit,
    /// True: one bucket per client on this route; false: one for the route.
    pub per_client: bool,
}

impl RouteLimit {
    /// Applies the route's limit; `caller` is [`Caller::key`].
    pub async fn check(&self, route_key: &str, caller: Option<&str>, out: &mut Outcome) -> Result<(), GatewayError> {
        let key = match (self.per_client, caller) {
            (true, Some(c)) => format!("{c}|{route_key}"),
            _ => route_key.to_string(),
        };
        let d = self.limit.check(&key).await?;
        out.push(self.limit.name, u64::from(self.limit.rate.burst), self.limit.rate.window_secs(), d);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both headers, item by item, with the draft's syntax: an admitted and a refused policy.
    #[test]
    fn ratelimit_headers_list_every_policy() {
        let mut out = Outcome::default();
        out.push("client", 5, 3, Decision::Allow { remaining: 4, reset: Duration::from_millis(600) });
        out.push("day", 100_000, 86_400, Decision::Deny { retry_after: Duration::from_secs(3_600) });
        let mut headers = HeaderMap::new();
        out.apply(&mut headers);
        assert_eq!(headers["ratelimit-policy"], r#""client";q=5;w=3, "day";q=100000;w=86400"#);
        assert_eq!(headers["ratelimit"], r#""client";r=4;t=1, "day";r=0;t=3600"#);
        let mut none = HeaderMap::new();
        Outcome::default().apply(&mut none);
        assert!(none.is_empty());
    }
}
