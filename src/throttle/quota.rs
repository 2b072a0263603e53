//! Quotas over long windows (calendar day or month, UTC), for ERP licences that count calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Datelike, TimeZone, Utc};

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
/// snapshots (`crate::state::Retained::quota_counts`), so a reload never refills a quota.
pub type Counts = Mutex<HashMap<String, (u64, u64)>>;

/// The Unix second at which the window holding `now` ends (the next UTC midnight or first
/// of the month). Pure, so calendar edges are tested without a clock.
pub(crate) fn window_end(window: Window, now: DateTime<Utc>) -> u64 {
    let end = match window {
        Window::Day => Utc
            .with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0)
            .single()
            .map(|d| d + chrono::Duration::days(1)),
        Window::Month => {
            let (y, m) = if now.month() == 12 { (now.year() + 1, 1) } else { (now.year(), now.month() + 1) };
            Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()
        }
    };
    end.map_or(now.timestamp() as u64 + nominal_secs(window), |e| e.timestamp() as u64)
}

fn nominal_secs(window: Window) -> u64 {
    match window {
        Window::Day => 86_400,
        Window::Month => 2_592_000,
    }
}

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
    pub(crate) fn window_secs(&self) -> u64 {
        nominal_secs(self.window)
    }

    /// Counts one call for `client`.
    pub async fn take(&self, client: &str, shared: Option<&Shared>) -> Result<Decision, GatewayError> {
        self.take_at(client, shared, Utc::now()).await
    }

    /// [`Quota::take`] at `now`.
    async fn take_at(
        &self,
        client: &str,
        shared: Option<&Shared>,
        now: DateTime<Utc>,
    ) -> Result<Decision, GatewayError> {
        let end = window_end(self.window, now);
        let count = match shared {
            Some(s) => match s.count(&format!("quota:{}:{client}:{end}", self.name()), end).await {
                Ok(n) => n,
                Err(_) if s.on_unavailable == OnUnavailable::Local => self.count_locally(client, end),
                Err(_) => return Err(GatewayError::LimiterUnavailable),
            },
            None => self.count_locally(client, end),
        };
        let until_end = Duration::from_secs(end.saturating_sub(now.timestamp() as u64));
        Ok(if count <= self.limit {
            Decision::Allow { remaining: (self.limit - count).min(u64::from(u32::MAX)) as u32, reset: until_end }
        } else {
            Decision::Deny { retry_after: until_end }
        })
    }

    /// Counts a call in this replica; a new window (a later `end`) starts from zero.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn windows_end_at_the_next_utc_midnight_or_first_of_the_month() {
        let cases = [
            (Window::Day, "2026-11-29T06:40:00Z", "2026-11-30T00:00:00Z"),
            (Window::Day, "2026-11-29T00:00:00Z", "2026-11-30T00:00:00Z"),
            (Window::Day, "2026-11-29T23:59:59Z", "2026-11-30T00:00:00Z"),
            (Window::Day, "2026-12-31T12:00:00Z", "2027-01-01T00:00:00Z"),
            (Window::Day, "2028-02-28T12:00:00Z", "2028-02-29T00:00:00Z"),
            (Window::Month, "2026-11-29T06:40:00Z", "2026-12-01T00:00:00Z"),
            (Window::Month, "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"),
            (Window::Month, "2027-02-15T08:00:00Z", "2027-03-01T00:00:00Z"),
        ];
        for (window, now, end) in cases {
            assert_eq!(window_end(window, at(now)), at(end).timestamp() as u64, "{window:?} at {now}");
        }
    }

    #[tokio::test]
    async fn a_quota_refuses_past_its_limit_and_the_next_window_starts_from_zero() {
        let counts = Arc::new(Counts::default());
        let quota = Quota::new(Window::Day, 2, counts.clone());
        let (evening, next_morning) = (at("2026-11-29T23:00:00Z"), at("2026-11-30T06:00:00Z"));
        for left in [1, 0] {
            let d = quota.take_at("a", None, evening).await.expect("local quota");
            assert_eq!(d, Decision::Allow { remaining: left, reset: Duration::from_secs(3600) });
        }
        let refused = quota.take_at("a", None, evening).await.expect("local quota");
        assert_eq!(refused, Decision::Deny { retry_after: Duration::from_secs(3600) }, "until midnight");
        let other = quota.take_at("b", None, evening).await.expect("local quota");
        assert!(matches!(other, Decision::Allow { remaining: 1, .. }), "per client: {other:?}");
        // A reload builds a new quota over the same counts: still spent.
        let reloaded = Quota::new(Window::Day, 2, counts);
        assert!(matches!(reloaded.take_at("a", None, evening).await, Ok(Decision::Deny { .. })));
        let d = reloaded.take_at("a", None, next_morning).await.expect("local quota");
        assert_eq!(d, Decision::Allow { remaining: 1, reset: Duration::from_secs(18 * 3600) }, "a new day");
    }
}
