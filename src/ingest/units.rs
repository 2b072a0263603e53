//! Unit conversion between UCUM codes. The UCUM crate (`octofhir-ucum`) parses the codes
//! and derives the conversion between two commensurable units as an affine map
//! (`to = from × factor + offset`) with factor and offset as 28-digit decimals; readings
//! are converted in decimal arithmetic with them, so a value the device sent as `71.25`
//! never passes through binary floating point, and `[in_i]`→`mm` is exactly 25.4.

use std::str::FromStr;

use octofhir_ucum as ucum;
use rust_decimal::Decimal;

/// Significant digits the UCUM crate keeps of a factor or offset that is not a short
/// decimal (`[degF]`→`Cel` is 5/9).
pub(crate) const FACTOR_DIGITS: u32 = 28;

/// A conversion between two commensurable units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    /// UCUM code converted from.
    pub from: String,
    /// UCUM code converted to.
    pub to: String,
    /// Multiplier.
    pub factor: Decimal,
    /// Added after multiplying (temperatures).
    pub offset: Decimal,
    /// True when factor and offset are exact decimals (`[in_i]`→`mm` is 25.4); false when
    /// they are rounded to `FACTOR_DIGITS` significant digits.
    pub exact: bool,
}

impl Conversion {
    /// The conversion from `from` to `to`; the error says what is wrong in words a config
    /// author can act on (unknown code, different dimensions, a non-linear unit).
    pub fn between(from: &str, to: &str) -> Result<Self, String> {
        check(from)?;
        check(to)?;
        if !ucum::is_comparable(from, to).map_err(|e| e.message)? {
            return Err(format!(
                "{from} cannot be converted to {to}: they measure different things ({} vs {})",
                dimension(from),
                dimension(to)
            ));
        }
        let linear = ucum::convert_with_context(0.0, from, to, &ucum::AdvancedConversionContext::default())
            .map_err(|e| format!("{from} to {to}: {}", e.message))?;
        let (Some(factor), Some(offset)) = (linear.factor, linear.offset) else {
            return Err(format!("{from} to {to} is not a linear conversion; log units (dB, pH) are not supported"));
        };
        let (factor, f_exact) = decimal(factor)?;
        let (offset, o_exact) = decimal(offset)?;
        Ok(Conversion { from: from.into(), to: to.into(), factor, offset, exact: f_exact && o_exact })
    }
    /// True when nothing changes.
    pub(crate) fn is_identity(&self) -> bool {
        self.factor == Decimal::ONE && self.offset.is_zero()
    }

    /// Converts a value, rounded to `decimals` places (half away from zero, as a person
    /// would) without trailing zeros, also when no conversion is needed; `None` when the
    /// result does not fit a decimal.
    pub(crate) fn apply(&self, value: Decimal, decimals: u32) -> Option<Decimal> {
        let converted =
            if self.is_identity() { value } else { value.checked_mul(self.factor)?.checked_add(self.offset)? };
        Some(
            converted
                .round_dp_with_strategy(decimals, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
                .normalize(),
        )
    }

    /// How the conversion is done, for `veneer check` and the docs.
    pub(crate) fn describe(&self) -> String {
        let how = if self.exact {
            "exact".to_string()
        } else {
            format!("factor rounded to {FACTOR_DIGITS} significant digits")
        };
        if self.offset.is_zero() {
            format!("{} → {}: × {} ({how})", self.from, self.to, self.factor)
        } else {
            let sign = if self.offset.is_sign_negative() { "−" } else { "+" };
            format!("{} → {}: × {} {sign} {} ({how})", self.from, self.to, self.factor, self.offset.abs())
        }
    }
}

/// Checks a UCUM code; the error names it and suggests the usual spelling.
pub fn check(code: &str) -> Result<(), String> {
    if code.trim().is_empty() {
        return Err("a unit is empty; write a UCUM code such as Cel, bar or mm/s".into());
    }
    // The crate's own message only: its suggestion list can run to a hundred lines.
    ucum::validate(code).map_err(|e| {
        format!(
            "{code:?} is not a UCUM unit ({}); write codes such as Cel, [degF], bar, [psi], mm/s, mm/s2, Hz, %",
            e.message
        )
    })
}

fn dimension(code: &str) -> String {
    ucum::get_canonical_units(code).map(|c| c.unit).unwrap_or_else(|_| "?".into())
}

/// A UCUM number as a decimal, and whether it is exact: a short decimal such as 25.4 or
/// 0.45359237, not a repeating one rounded to the crate's 28 digits.
fn decimal(n: ucum::Number) -> Result<(Decimal, bool), String> {
    let text = n.to_string();
    let d = Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| format!("a conversion factor of {text} does not fit a decimal"))?
        .normalize();
    let digits = d.mantissa().unsigned_abs().to_string().trim_end_matches('0').len();
    Ok((d, digits < 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().expect("decimal")
    }

    #[test]
    fn plant_units_convert_in_decimal() {
        let f = Conversion::between("[degF]", "Cel").expect("convertible");
        assert_eq!(f.apply(dec("212"), 6), Some(dec("100")));
        assert_eq!(f.apply(dec("100"), 6), Some(dec("37.777778")));
        assert!(!f.exact);
        let psi = Conversion::between("[psi]", "bar").expect("convertible");
        assert_eq!(psi.apply(dec("14.5"), 4), Some(dec("0.9997")));
        let inch = Conversion::between("[in_i]", "mm").expect("convertible");
        assert!(inch.exact);
        assert_eq!(inch.apply(dec("2"), 6), Some(dec("50.8")));
        let rpm = Conversion::between("1/min", "Hz").expect("convertible");
        assert_eq!(rpm.apply(dec("3000"), 6), Some(dec("50")));
        assert!(Conversion::between("Cel", "Cel").expect("same").is_identity());
        assert_eq!(Conversion::between("bar", "kPa").expect("convertible").apply(dec("1.5"), 3), Some(dec("150")));
    }

    #[test]
    fn different_dimensions_and_unknown_codes_are_refused() {
        for (from, to) in [("mm/s", "mm/s2"), ("Hz", "mm/s"), ("Cel", "bar")] {
            let e = Conversion::between(from, to).expect_err("refused");
            assert!(e.contains("different things"), "{e}");
        }
        for bad in ["[foo]", "", "m/", "mm/s²"] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
        assert!(check("%").is_ok() && check("mm/s2").is_ok() && check("[psi]").is_ok());
    }
}
