//! XSD built-in simple types: lexical checks and their JSON representation.
//!
//! Checks are on the lexical form (what travels in XML), so a value accepted here is one the
//! backend's schema validator also accepts. Nothing here allocates on the success path
//! except number normalisation.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// The XSD built-in types Veneer tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Builtin {
    /// `xs:string`, `normalizedString`, `token`, `anyURI`, `QName`, `duration`, … (free text).
    #[default]
    String,
    /// `xs:boolean`.
    Boolean,
    /// `xs:decimal`: arbitrary precision, every digit kept.
    Decimal,
    /// `xs:float` / `xs:double`.
    Float,
    /// An integer type with inclusive bounds (`None` = unbounded).
    Integer {
        /// Lower bound.
        min: Option<i128>,
        /// Upper bound.
        max: Option<i128>,
    },
    /// `xs:date`.
    Date,
    /// `xs:dateTime`.
    DateTime,
    /// `xs:time`.
    Time,
    /// `xs:base64Binary`.
    Base64,
    /// `xs:hexBinary`.
    Hex,
    /// `xs:anyType` / `anySimpleType`: passed through as text.
    Any,
}

/// How a built-in type appears in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonKind {
    /// A JSON string.
    String,
    /// A JSON number.
    Number,
    /// A JSON boolean.
    Boolean,
}

impl Builtin {
    /// The built-in type for an XSD local name, or `None` when it is not a built-in.
    pub(crate) fn from_xsd(local: &str) -> Option<Builtin> {
        let int = |min: Option<i128>, max: Option<i128>| Some(Builtin::Integer { min, max });
        match local {
            "string" | "normalizedString" | "token" | "language" | "Name" | "NCName" | "ID" | "IDREF" | "IDREFS"
            | "ENTITY" | "ENTITIES" | "NMTOKEN" | "NMTOKENS" | "anyURI" | "QName" | "NOTATION" | "duration"
            | "gYear" | "gYearMonth" | "gMonth" | "gMonthDay" | "gDay" | "char" | "guid" => Some(Builtin::String),
            "boolean" => Some(Builtin::Boolean),
            "decimal" => Some(Builtin::Decimal),
            "float" | "double" => Some(Builtin::Float),
            "integer" => int(None, None),
            "long" => int(Some(i64::MIN.into()), Some(i64::MAX.into())),
            "int" => int(Some(i32::MIN.into()), Some(i32::MAX.into())),
            "short" => int(Some(i16::MIN.into()), Some(i16::MAX.into())),
            "byte" => int(Some(i8::MIN.into()), Some(i8::MAX.into())),
            "nonNegativeInteger" => int(Some(0), None),
            "positiveInteger" => int(Some(1), None),
            "nonPositiveInteger" => int(None, Some(0)),
            "negativeInteger" => int(None, Some(-1)),
            "unsignedLong" => int(Some(0), Some(u64::MAX.into())),
            "unsignedInt" => int(Some(0), Some(u32::MAX.into())),
            "unsignedShort" => int(Some(0), Some(u16::MAX.into())),
            "unsignedByte" => int(Some(0), Some(u8::MAX.into())),
            "date" => Some(Builtin::Date),
            "dateTime" => Some(Builtin::DateTime),
            "time" => Some(Builtin::Time),
            "base64Binary" => Some(Builtin::Base64),
            "hexBinary" => Some(Builtin::Hex),
            "anyType" | "anySimpleType" => Some(Builtin::Any),
            _ => None,
        }
    }

    /// How values of this type look in JSON.
    pub(crate) fn json_kind(self) -> JsonKind {
        match self {
            Builtin::Boolean => JsonKind::Boolean,
            Builtin::Decimal | Builtin::Float | Builtin::Integer { .. } => JsonKind::Number,
            _ => JsonKind::String,
        }
    }

    /// Checks an XML lexical form; `Err` says what is expected, for a problem detail.
    pub(crate) fn check(self, text: &str) -> Result<(), String> {
        let ok = match self {
            Builtin::String | Builtin::Any => true,
            Builtin::Boolean => parse_bool(text).is_some(),
            Builtin::Decimal => is_decimal(text),
            Builtin::Float => is_float(text),
            Builtin::Integer { min, max } => return check_integer(text, min, max),
            Builtin::Date => parse_date(text),
            Builtin::DateTime => parse_date_time(text),
            Builtin::Time => parse_time(text),
            Builtin::Base64 => text.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/= \n\r\t".contains(&b)),
            Builtin::Hex => text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()),
        };
        if ok { Ok(()) } else { Err(format!("expected {}", self.describe())) }
    }

    /// A short human description, used in error messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Builtin::String | Builtin::Any => "a string",
            Builtin::Boolean => "a boolean (true or false)",
            Builtin::Decimal => "a decimal number",
            Builtin::Float => "a floating-point number",
            Builtin::Integer { .. } => "an integer",
            Builtin::Date => "a date (YYYY-MM-DD)",
            Builtin::DateTime => "a date-time (YYYY-MM-DDThh:mm:ss, optional fraction and offset)",
            Builtin::Time => "a time (hh:mm:ss)",
            Builtin::Base64 => "base64 data",
            Builtin::Hex => "hex data",
        }
    }
}

/// `true`/`1` and `false`/`0`, as XSD defines them.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn is_decimal(text: &str) -> bool {
    let t = text.trim();
    let t = t.strip_prefix(['+', '-']).unwrap_or(t);
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    (!int.is_empty() || !frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

fn is_float(text: &str) -> bool {
    let t = text.trim();
    matches!(t, "INF" | "-INF" | "+INF" | "NaN")
        || (t.parse::<f64>().is_ok() && !t.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E'))
}

fn check_integer(text: &str, min: Option<i128>, max: Option<i128>) -> Result<(), String> {
    let t = text.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected an integer".into());
    }
    // Beyond i128 only unbounded types (xs:integer) can still be valid.
    let Ok(value) = t.parse::<i128>() else {
        return if min.is_none() && max.is_none() { Ok(()) } else { Err(range_msg(min, max)) };
    };
    if min.is_some_and(|m| value < m) || max.is_some_and(|m| value > m) {
        return Err(range_msg(min, max));
    }
    Ok(())
}

fn range_msg(min: Option<i128>, max: Option<i128>) -> String {
    match (min, max) {
        (Some(a), Some(b)) => format!("expected an integer from {a} to {b}"),
        (Some(a), None) => format!("expected an integer of at least {a}"),
        (None, Some(b)) => format!("expected an integer of at most {b}"),
        (None, None) => "expected an integer".into(),
    }
}

/// Splits a trailing `Z` or `±hh:mm` timezone off an XSD date/time form.
fn split_tz(t: &str) -> Option<&str> {
    if let Some(rest) = t.strip_suffix('Z') {
        return Some(rest);
    }
    let bytes = t.as_bytes();
    if bytes.len() > 6 && matches!(bytes[bytes.len() - 6], b'+' | b'-') && bytes[bytes.len() - 3] == b':' {
        let (rest, tz) = t.split_at(t.len() - 6);
        let (h, m) = (tz[1..3].parse::<u8>().ok()?, tz[4..6].parse::<u8>().ok()?);
        // XSD's range: up to ±14:00 (RFC 3339 would allow ±23:59).
        return ((h < 14 && m < 60) || (h == 14 && m == 0)).then_some(rest);
    }
    Some(t)
}

fn parse_date(text: &str) -> bool {
    let t = text.trim();
    // A date's timezone is `Z` or `±hh:mm`; the '-' separators inside the date are not one.
    let body = if t.len() > 10 { split_tz(t) } else { Some(t) };
    body.is_some_and(|d| d.len() == 10 && NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok())
}

fn parse_date_time(text: &str) -> bool {
    split_tz(text.trim())
        .is_some_and(|dt| dt.len() >= 19 && NaiveDateTime::parse_from_str(dt, "%Y-%m-%dT%H:%M:%S%.f").is_ok())
}

fn parse_time(text: &str) -> bool {
    split_tz(text.trim()).is_some_and(|t| t.len() >= 8 && NaiveTime::parse_from_str(t, "%H:%M:%S%.f").is_ok())
}

/// Whether `text` is a JSON number exactly as RFC 8259 writes one (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`),
/// and so can be copied into JSON as it is. The decoder asks this of every numeric value;
/// parsing into a `serde_json::Number` would accept the same texts but copy each one.
pub(crate) fn is_json_number(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = usize::from(b.first() == Some(&b'-'));
    i = match b.get(i) {
        Some(b'0') => i + 1,
        Some(b'1'..=b'9') => digits(i + 1),
        _ => return false,
    };
    if b.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return false;
        }
        i = end;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(i);
        if end == i {
            return false;
        }
        i = end;
    }
    i == b.len()
}

/// Rewrites an XSD decimal/float lexical form into a valid JSON number, keeping every digit
/// (`+1.50` → `1.50`, `.5` → `0.5`, `007` → `7`). `None` for forms JSON cannot carry (`NaN`, `INF`).
pub(crate) fn json_number_text(text: &str) -> Option<String> {
    let t = text.trim();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let mut out = String::with_capacity(t.len() + 2);
    if neg {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    if let Some(exp) = exp {
        let e = exp.strip_prefix('+').unwrap_or(exp);
        let digits = e.strip_prefix('-').unwrap_or(e);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        out.push('e');
        out.push_str(e);
    }
    Some(out)
}

/// Rewrites a JSON number in exponent form (`1.5e-7`, `9.8e16`) as a plain decimal
/// (`0.00000015`, `98000000000000000`), since `xs:decimal` has no exponent. Exponents beyond
/// ±400 are refused rather than expanded into huge strings.
pub(crate) fn plain_decimal(text: &str) -> Option<String> {
    let t = text.trim();
    let (mantissa, exp) = t.split_once(['e', 'E'])?;
    let exp: i64 = exp.strip_prefix('+').unwrap_or(exp).parse().ok().filter(|e: &i64| e.abs() <= 400)?;
    let (neg, m) = mantissa.strip_prefix('-').map_or((false, mantissa), |m| (true, m));
    let (int, frac) = m.split_once('.').unwrap_or((m, ""));
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) || int.is_empty() && frac.is_empty() {
        return None;
    }
    let digits = format!("{int}{frac}");
    let point = int.len() as i64 + exp; // position of the decimal point within `digits`
    let (int_part, frac_part) = if point <= 0 {
        ("0".to_string(), format!("{}{digits}", "0".repeat(point.unsigned_abs() as usize)))
    } else if point as usize >= digits.len() {
        (format!("{digits}{}", "0".repeat(point as usize - digits.len())), String::new())
    } else {
        (digits[..point as usize].to_string(), digits[point as usize..].to_string())
    };
    let int_part = int_part.trim_start_matches('0');
    let mut out = String::from(if neg { "-" } else { "" });
    out.push_str(if int_part.is_empty() { "0" } else { int_part });
    if !frac_part.is_empty() {
        out.push('.');
        out.push_str(&frac_part);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    /// Every string of up to five characters from the alphabet numbers are made of (and one
    /// that is not): accepted exactly when serde_json parses it as a number.
    #[test]
    fn json_numbers_are_what_serde_json_accepts() {
        let alphabet = ['0', '1', '9', '.', 'e', 'E', '+', '-', 'x'];
        let mut texts = vec![String::new()];
        let mut checked = 0;
        for _ in 0..5 {
            let mut longer = Vec::new();
            for t in &texts {
                for c in alphabet {
                    let s = format!("{t}{c}");
                    let serde = serde_json::Number::from_str(&s).is_ok();
                    assert_eq!(is_json_number(&s), serde, "{s:?}");
                    checked += 1;
                    longer.push(s);
                }
            }
            texts = longer;
        }
        assert_eq!(checked, 9 + 81 + 729 + 6561 + 59049);
        for s in ["12345678901234567890123456789.123456789", "1e999999", "-0.0e-0", "1520.25"] {
            assert!(is_json_number(s) && serde_json::Number::from_str(s).is_ok(), "{s}");
        }
        for s in ["", " 1", "1 ", "+1", ".5", "5.", "01", "1e", "NaN", "INF", "١"] {
            assert!(!is_json_number(s), "{s:?}");
        }
    }

    #[test]
    fn integers_respect_their_ranges() {
        let int = Builtin::from_xsd("int").expect("int is built in");
        assert!(int.check("2147483647").is_ok());
        assert!(int.check("2147483648").is_err());
        assert!(int.check("-5").is_ok());
        assert!(int.check("5.0").is_err());
        let unsigned = Builtin::from_xsd("unsignedByte").expect("built in");
        assert!(unsigned.check("-1").is_err());
        assert!(
            Builtin::from_xsd("integer").expect("built in").check("123456789012345678901234567890123456789012").is_ok()
        );
    }

    #[test]
    fn dates_and_times() {
        assert!(Builtin::Date.check("2026-11-25").is_ok());
        assert!(Builtin::Date.check("2026-11-25Z").is_ok());
        assert!(Builtin::Date.check("2026-11-25+01:00").is_ok());
        assert!(Builtin::Date.check("2026-02-30").is_err());
        assert!(Builtin::Date.check("25.11.2026").is_err());
        assert!(Builtin::DateTime.check("2026-11-25T08:30:00").is_ok());
        assert!(Builtin::DateTime.check("2026-11-25T08:30:00.125Z").is_ok());
        assert!(Builtin::DateTime.check("2026-11-25T08:30:00-05:00").is_ok());
        assert!(Builtin::DateTime.check("2026-11-25 08:30").is_err());
        assert!(Builtin::DateTime.check("2026-11-25T08:30:00+14:00").is_ok());
        assert!(Builtin::DateTime.check("2026-11-25T08:30:00-13:59").is_ok());
        assert!(Builtin::DateTime.check("2026-11-25T08:30:00+14:01").is_err());
        assert!(Builtin::DateTime.check("2026-11-25T08:30:00+15:00").is_err());
        assert!(Builtin::Time.check("08:30:00").is_ok());
    }

    #[test]
    fn decimals_keep_every_digit_in_json() {
        assert_eq!(json_number_text("12345678901234567.123456").as_deref(), Some("12345678901234567.123456"));
        assert_eq!(json_number_text("+1.50").as_deref(), Some("1.50"));
        assert_eq!(json_number_text(".5").as_deref(), Some("0.5"));
        assert_eq!(json_number_text("-007").as_deref(), Some("-7"));
        assert_eq!(json_number_text("1E+3").as_deref(), Some("1e3"));
        assert_eq!(json_number_text("NaN"), None);
        assert_eq!(json_number_text("1.2.3"), None);
        assert!(Builtin::Decimal.check("1e3").is_err());
        assert_eq!(plain_decimal("1.5e-7").as_deref(), Some("0.00000015"));
        assert_eq!(plain_decimal("9.876543210987654e16").as_deref(), Some("98765432109876540"));
        assert_eq!(plain_decimal("-2E+2").as_deref(), Some("-200"));
        assert_eq!(plain_decimal("12.5"), None);
        assert_eq!(plain_decimal("1e999"), None);
    }

    #[test]
    fn booleans_accept_both_lexical_forms() {
        assert_eq!(parse_bool("1"), Some(true));
        assert_eq!(parse_bool("false"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }
}
