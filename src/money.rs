//! Money, currencies and the one place where capbill rounds.
//!
//! Every rounding step of the billing rules goes through this module:
//! the whole-byte daily mean (as a polars expression over integers),
//! `round6` quantities built from exact integer ratios, and amounts rounded
//! to the cent. All of them round half away from zero. Nothing here ever
//! touches floating point: ratios are computed in `i128`, money in
//! [`Decimal`].

use std::fmt;

use polars::prelude::{Expr, lit};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

/// Decimal places of every quantity (TB-months): `round6` of the spec.
pub const QUANTITY_SCALE: u32 = 6;
/// Decimal places of every amount: ISO 4217 currencies billed here use cents.
pub const AMOUNT_SCALE: u32 = 2;

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a code such as `EUR`; anything but three upper-case letters is refused.
    pub fn parse(s: &str) -> Option<Currency> {
        let b = s.as_bytes();
        (b.len() == 3 && b.iter().all(u8::is_ascii_uppercase)).then(|| Currency([b[0], b[1], b[2]]))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).expect("currency codes are ASCII")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

/// `num / den` rounded half away from zero to `scale` decimal places, exactly.
///
/// `den` must be positive. The intermediate `num * 10^scale` must fit in
/// `i128`, which holds for every quantity capbill computes (byte-days of the
/// whole planet's storage for a month are below 10^30).
pub fn ratio(num: i128, den: i128, scale: u32) -> Decimal {
    assert!(den > 0, "ratio denominator must be positive");
    let scaled = num.checked_mul(10i128.pow(scale)).expect("quantity out of range for exact rounding");
    Decimal::from_i128_with_scale(div_half_away(scaled, den), scale)
}

/// Integer division rounding half away from zero (`den > 0`).
pub fn div_half_away(num: i128, den: i128) -> i128 {
    let q = num / den;
    let r = num % den;
    if 2 * r.abs() >= den { q + num.signum() } else { q }
}

/// `value * days / days_in_month`, rounded to a quantity (`round6`).
///
/// Used to prorate reserved capacity and pay-per-use minimums by days.
pub fn prorate(value: Decimal, days: u32, days_in_month: u32) -> Decimal {
    let mantissa = value.mantissa();
    let den = i128::from(days_in_month) * 10i128.pow(value.scale());
    ratio(mantissa * i128::from(days), den, QUANTITY_SCALE)
}

/// Byte-days converted to TB-months (`round6(byte_days / (D × UNIT))`).
pub fn tb_months(byte_days: i128, days_in_month: u32, unit_bytes: u64) -> Decimal {
    ratio(byte_days, i128::from(days_in_month) * i128::from(unit_bytes), QUANTITY_SCALE)
}

/// A line amount: `quantity × price`, rounded half away from zero to cents.
pub fn amount(quantity: Decimal, price: Decimal) -> Decimal {
    let exact = quantity.checked_mul(price).expect("amount out of range for Decimal");
    round_amount(exact)
}

/// Rounds a money value to cents, half away from zero, keeping the scale at 2.
pub fn round_amount(value: Decimal) -> Decimal {
    with_scale(value.round_dp_with_strategy(AMOUNT_SCALE, RoundingStrategy::MidpointAwayFromZero), AMOUNT_SCALE)
}

/// Rounds a quantity to 6 decimals, half away from zero, keeping the scale at 6.
pub fn round_quantity(value: Decimal) -> Decimal {
    with_scale(value.round_dp_with_strategy(QUANTITY_SCALE, RoundingStrategy::MidpointAwayFromZero), QUANTITY_SCALE)
}

/// The same value written with exactly `scale` decimals (`140` → `140.00`).
///
/// Only widens: callers round first, so no digit is ever lost here.
pub fn with_scale(mut value: Decimal, scale: u32) -> Decimal {
    if value.scale() < scale {
        value.rescale(scale);
    }
    value
}

/// Polars expression: the whole-byte mean `sum / count`, half away from zero.
///
/// Both inputs are non-negative integers (`Int128` sums of `u64` bytes), so
/// `(2·sum + count) div (2·count)` is exact integer arithmetic.
pub fn mean_half_away_expr(sum: Expr, count: Expr) -> Expr {
    (sum * lit(2i128) + count.clone()).floor_div(count * lit(2i128))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn halves_round_away_from_zero() {
        assert_eq!(ratio(5, 10, 0), d("1"));
        assert_eq!(ratio(15, 10, 0), d("2"));
        assert_eq!(ratio(-5, 10, 0), d("-1"));
        assert_eq!(ratio(4, 10, 0), d("0"));
        assert_eq!(amount(d("0.599985"), d("9.90")), d("5.94"));
        assert_eq!(amount(d("0.125"), d("1")), d("0.13"));
        assert_eq!(amount(d("-0.125"), d("1")), d("-0.13"));
        assert_eq!(round_amount(d("2.345")), d("2.35"));
        assert_eq!(round_amount(d("2.344999")), d("2.34"));
    }

    #[test]
    fn prorates_by_days() {
        assert_eq!(prorate(d("10"), 16, 31).to_string(), "5.161290");
        assert_eq!(prorate(d("20"), 31, 31).to_string(), "20.000000");
        assert_eq!(prorate(d("1"), 20, 31).to_string(), "0.645161");
        // 1.5 × 1 / 4 = 0.375 exactly; 0.0000005-style halves round up.
        assert_eq!(prorate(d("0.000001"), 1, 2).to_string(), "0.000001");
    }

    #[test]
    fn byte_days_to_tb_months() {
        // 31 days of 120 TB and one of 121 TB would be 120.032258 TB-month.
        let bd = 30i128 * 120_000_000_000_000 + 121_000_000_000_000;
        assert_eq!(tb_months(bd, 31, 1_000_000_000_000).to_string(), "120.032258");
        assert_eq!(tb_months(0, 31, 1 << 40).to_string(), "0.000000");
    }

    #[test]
    fn currency_codes() {
        assert_eq!(Currency::parse("EUR").unwrap().as_str(), "EUR");
        assert!(Currency::parse("eur").is_none());
        assert!(Currency::parse("EURO").is_none());
        assert!(Currency::parse("").is_none());
    }

    proptest! {
        /// The exact ratio agrees with a decimal reference computed at high precision.
        #[test]
        fn ratio_matches_reference(num in 0i128..1_000_000_000_000_000_000, den in 1i128..100_000_000_000_000) {
            let got = ratio(num, den, 6);
            // Reference: compare num·10^6 against (q ± 0.5)·den without rounding.
            let q = got.mantissa();
            let scaled = num * 1_000_000;
            prop_assert!(2 * scaled >= (2 * q - 1) * den, "rounded too high");
            prop_assert!(2 * scaled < (2 * q + 1) * den, "rounded too low");
        }

        #[test]
        fn amounts_have_two_decimals(q in 0i64..10_000_000_000, p in 0i64..100_000) {
            let a = amount(Decimal::new(q, 6), Decimal::new(p, 2));
            prop_assert_eq!(a.scale(), 2);
            let exact = Decimal::new(q, 6) * Decimal::new(p, 2);
            prop_assert!((a - exact).abs() <= d("0.005"));
        }
    }
}
