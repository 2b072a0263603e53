//! The shift calendar of a sensor file: shifts named by their local start time in the
//! plant's time zone, each running until the next one starts (the last one wraps past
//! midnight). Daylight-saving changes are the time zone database's job (chrono-tz).

use chrono::{DateTime, NaiveDate, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;

/// Shifts by local start time.
#[derive(Debug, Clone)]
pub struct Calendar {
    zone: Tz,
    /// (minutes after local midnight, name), sorted by start.
    shifts: Vec<(u32, String)>,
}

/// The shift a moment falls in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShiftAt {
    /// Its name.
    pub name: String,
    /// The local date it started on (a night shift's readings after midnight belong to the
    /// previous day's shift).
    pub date: NaiveDate,
}

impl Calendar {
    /// A calendar in `zone` (an IANA name, default UTC) with `(name, "HH:MM")` shifts.
    pub(crate) fn new(zone: Option<&str>, shifts: &[(String, String)]) -> Result<Self, String> {
        let zone: Tz = match zone {
            None => Tz::UTC,
            Some(z) => z.parse().map_err(|_| {
                format!("time_zone {z:?} is not an IANA time zone; write e.g. Europe/Berlin or America/Chicago")
            })?,
        };
        let mut parsed = Vec::new();
        for (name, start) in shifts {
            let t = NaiveTime::parse_from_str(start, "%H:%M")
                .map_err(|_| format!("shift {name}: start {start:?} is not a time; write e.g. \"06:00\""))?;
            let minutes = t.hour() * 60 + t.minute();
            if let Some((_, other)) = parsed.iter().find(|(m, _)| *m == minutes) {
                return Err(format!("shifts {other} and {name} both start at {start}"));
            }
            parsed.push((minutes, name.clone()));
        }
        parsed.sort();
        Ok(Calendar { zone, shifts: parsed })
    }

    /// The shift at `at`, if the calendar has any.
    pub(crate) fn at(&self, at: DateTime<Utc>) -> Option<ShiftAt> {
        let local = at.with_timezone(&self.zone);
        let minutes = local.hour() * 60 + local.minute();
        match self.shifts.iter().rev().find(|(start, _)| *start <= minutes) {
            Some((_, name)) => Some(ShiftAt { name: name.clone(), date: local.date_naive() }),
            // Before the day's first start: still the previous day's last shift.
            None => self.shifts.last().map(|(_, name)| ShiftAt {
                name: name.clone(),
                date: local.date_naive().pred_opt().unwrap_or(local.date_naive()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_shifts(zone: &str) -> Calendar {
        let shifts =
            [("early", "06:00"), ("late", "14:00"), ("night", "22:00")].map(|(n, s)| (n.to_string(), s.to_string()));
        Calendar::new(Some(zone), &shifts).expect("valid")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("timestamp")
    }

    #[test]
    fn shifts_follow_local_time_and_daylight_saving() {
        let c = three_shifts("Europe/Berlin");
        // 05:30 UTC is 06:30 in Berlin in winter (UTC+1): early.
        assert_eq!(c.at(utc("2026-01-15T05:30:00Z")).map(|s| s.name), Some("early".into()));
        // In summer (UTC+2) 04:30 UTC is 06:30: early; 03:30 UTC is 05:30: still night.
        assert_eq!(c.at(utc("2026-07-15T04:30:00Z")).map(|s| s.name), Some("early".into()));
        let night = c.at(utc("2026-07-15T03:30:00Z")).expect("shift");
        assert_eq!(night.name, "night");
        assert_eq!(night.date.to_string(), "2026-07-14", "the night shift started the day before");
        assert_eq!(c.at(utc("2026-07-15T20:30:00Z")).map(|s| s.name), Some("night".into()));
    }

    #[test]
    fn bad_calendars_are_refused() {
        assert!(Calendar::new(Some("Mars/Olympus"), &[]).is_err());
        assert!(Calendar::new(None, &[("a".into(), "6am".into())]).is_err());
        assert!(Calendar::new(None, &[("a".into(), "06:00".into()), ("b".into(), "06:00".into())]).is_err());
        assert!(Calendar::new(None, &[]).expect("empty").at(Utc::now()).is_none());
    }
}
