//! Quotas over long windows (calendar day or month, UTC), for ERP licences that count calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{Datelike, TimeZone, Utc};

use super::Decision;
use super::shared::{OnUnavailable, Shared};
use crate::error::GatewayError;

/// The window a quota counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// A UTC calendar day.
    Day,
    /// A UTC calendar month.
    Month,
}

/// Local call counts per client: (window end, calls in that window). Shared by successive
/// snapshots ([`crate::state::Retained::quota_counts`]), so a reload never refills a quota.
pub type Counts = Mutex<HashMap<String, (u64, u64)>>;

/// A call quota for one client.
#[derive(Debug)]
pub struct Quota {
    /// The window.
    pub window: Window,
    /// Calls allowed per window.
    pub limit: u64,
    counts: Arc<Counts>,
}

impl Quota {
    /// A quota of `limit` calls per window, counting in `counts`.
    pub fn new(window: Window, limit: u64, counts: Arc<Counts>) -> Self {
        Quota { window, limit, counts }
    }

    /// Policy name for headers.
    pub fn name(&self) -> &'static str {
        match self.window {
            Window::Day => "day",
            Window::Month => "month",
        }
    }

    /// Nominal window length in seconds (for `RateLimit-Policy`).
    pub fn window_secs(&self) -> u64 {
        match self.window {
            Window::Day => 86_400,
            Window::Month => 2_592_000,
        }
    }

    /// Unix second at which the current window ends.
    fn window_end(&self) -> u64 {
        let now = Utc::now();
        let end = match self.window {
            Window::Day => Utc
                .with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0)
                .single()
                .map(|d| d + chrono::Duration::days(1)),
            Window::Month => {
                let (y, m) = if now.month() == 12 { (now.year() + 1, 1) } else { (now.year(), now.month() + 1) };
                Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()
            }
        };
        end.map_or(now.timestamp() as u64 + self.window_secs(), |e| e.timestamp() as u64)
    }

    /// Counts one call for `client`.
    pub async fn take(&self, client: &str, shared: Option<&Shared>) -> Result<Decision, GatewayError> {
        let end = self.window_end();
        let count = match shared {
            Some(s) => match s.count(&format!("quota:{}:{client}:{end}", self.name()), end).await {
                Ok(n) => n,
                Err(_) if s.on_unavailable == OnUnavailable::Local => self.count_locally(client, end),
                Err(_) => return Err(GatewayError::LimiterUnavailable),
            },
            None => self.count_locally(client, end),
        };
        let until_end = Duration::from_secs(end.saturating_sub(Utc::now().timestamp() as u64));
        Ok(if count <= self.limit {
            Decision::Allow { remaining: (self.limit - count).min(u64::from(u32::MAX)) as u32, reset: until_end }
        } else {
            Decision::Deny { retry_after: until_end }
        })
    }

    fn count_locally(&self, client: &str, end: u64) -> u64 {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let entry = counts.entry(client.to_string()).or_insert((end, 0));
        if entry.0 != end {
            *entry = (end, 0);
        }
        entry.1 += 1;
        entry.1
    }
}
