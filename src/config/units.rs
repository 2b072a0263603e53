//! Human-friendly durations (`250ms`, `5s`, `1m`) and sizes (`512KiB`, `1MiB`, `1MB`).

use std::time::Duration;

/// Parses a duration; the error says what to write instead.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|_| format!("{text:?} is not a duration; write e.g. 250ms, 5s or 1m"))
}

/// Parses a byte size; the error says what to write instead.
pub fn size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1024,
        "MB" => 1000 * 1000,
        "MiB" => 1024 * 1024,
        "GB" => 1000 * 1000 * 1000,
        "GiB" => 1024 * 1024 * 1024,
        _ => return Err(format!("{text:?} is not a size; write e.g. 512KiB or 1MiB")),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("{text:?} is not a size; write e.g. 512KiB or 1MiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(size("1MiB"), Ok(1024 * 1024));
        assert_eq!(size("512 KiB"), Ok(512 * 1024));
        assert_eq!(size("100"), Ok(100));
        assert!(size("1 lot").is_err());
        assert!(size("99999999999999999999GiB").is_err());
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(duration("soon").is_err());
    }
}
