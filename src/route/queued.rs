//! A route's queued-delivery settings, and the key the ERP sees for a caller's write: both
//! belong to the route, and the delivery workers read them from it.

use std::time::Duration;

use super::Source;

/// A route's queued-delivery settings.
#[derive(Debug, Clone)]
pub struct Queued {
    /// Deliver in arrival order (per partition).
    pub ordered: bool,
    /// What partitions an ordered route (e.g. `{body.machineId}`); one order per route without it.
    pub partition: Option<Source>,
    /// Retry until this age, then dead letter.
    pub max_age: Duration,
    /// Or until this many attempts.
    pub max_attempts: Option<u32>,
}

/// `{delivery.key}` for a caller's own key: the first 80 bits of SHA-256 over the caller
/// (the throttle's key: client id, or issuer and subject), the route and the key, as 20
/// upper-case hex digits. ERPs keep one document-number space for every caller, so the raw
/// key would let client A's `order-1001` be refused as a duplicate of client B's; the
/// digest is stable across the caller's retries (so a duplicate fault still means "already
/// booked"), fits the shortest external-number fields ERPs have (Code20 in Dynamics NAV,
/// whose Code type upper-cases: the digest already is) and two of a billion documents
/// share one with a chance below one in a million.
pub fn erp_key(caller: &str, route: &str, key: &str) -> String {
    let mut d = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [caller, route, key] {
        d.update(&(part.len() as u64).to_be_bytes());
        d.update(part.as_bytes());
    }
    // Runs for every keyed request: hex digits written directly, not formatted one by one.
    let mut key = String::with_capacity(20);
    for b in &d.finish().as_ref()[..10] {
        key.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
        key.push(char::from(b"0123456789ABCDEF"[usize::from(b & 0xf)]));
    }
    key
}
