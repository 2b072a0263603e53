//! A rate limit as configured: `50/s` with a burst, and the GCRA numbers derived from it.

use std::time::Duration;

/// `count` requests per `per`, with `burst` allowed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Requests per period.
    pub count: u32,
    /// The period.
    pub per: Duration,
    /// Requests allowed back to back.
    pub burst: u32,
}

impl Rate {
    /// Parses `"50/s"`, `"600/min"`, `"1000/h"` with a burst (default: the count).
    pub fn parse(text: &str, burst: Option<u32>) -> Result<Rate, String> {
        let hint = "write a rate as N/s, N/min or N/h, e.g. \"50/s\"";
        let (n, unit) = text.trim().split_once('/').ok_or_else(|| format!("{text:?}: {hint}"))?;
        let count: u32 = n.trim().parse().ok().filter(|c| *c > 0).ok_or_else(|| format!("{text:?}: {hint}"))?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            _ => return Err(format!("{text:?}: {hint}")),
        };
        let burst = burst.unwrap_or(count);
        if burst == 0 {
            return Err("burst must be at least 1".into());
        }
        Ok(Rate { count, per, burst })
    }

    /// GCRA emission interval: the time one request "costs".
    pub fn interval(&self) -> Duration {
        self.per / self.count
    }

    /// Seconds for an empty bucket to refill completely (the policy window).
    pub(crate) fn window_secs(&self) -> u64 {
        (self.interval() * self.burst).as_secs_f64().ceil().max(1.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let r = Rate::parse("100/s", Some(200)).expect("rate");
        assert_eq!(r.interval(), Duration::from_millis(10));
        assert_eq!(r.window_secs(), 2);
        assert_eq!(Rate::parse("600/min", None).expect("rate").interval(), Duration::from_millis(100));
        assert!(Rate::parse("0/s", None).is_err());
        assert!(Rate::parse("fast", None).is_err());
        assert!(Rate::parse("5/s", Some(0)).is_err());
    }
}
