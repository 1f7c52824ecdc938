//! Money, currencies and the one place where capbill rounds.
//!
//! Every rounding step of the billing rules goes through this module:
//! the whole-byte daily mean (as a polars expression over integers),
//! `round6` quantities built from exact integer ratios, and amounts rounded
//! to the cent. All of them round half away from zero. Nothing here ever
//! touches floating point: ratios are computed in `i128`, money in
//! [`Decimal`].
//!
//! Nothing here panics: every operation on values that come from input is
//! checked and returns [`MoneyError`] when it would overflow (the lints
//! below deny `unwrap`, `expect`, `panic` and unchecked arithmetic). The
//! directory's bounds (quantities and prices below 10^9 with at most 6
//! decimals) keep every amount of rating far inside the range.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::arithmetic_side_effects)]

use std::fmt;

use polars::prelude::{Expr, lit};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;
use thiserror::Error;

/// Decimal places of every quantity (TB-months): `round6` of the spec.
pub const QUANTITY_SCALE: u32 = 6;
/// Decimal places of every amount: ISO 4217 currencies billed here use cents.
pub const AMOUNT_SCALE: u32 = 2;

/// A computation whose exact result does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MoneyError {
    /// The exact result (or an intermediate) does not fit in `i128` or [`Decimal`].
    #[error("{what} is out of range for exact arithmetic")]
    Overflow {
        /// What was computed: `quantity`, `amount`, `prorated quantity`.
        what: &'static str,
    },
    /// A ratio's denominator is zero or negative.
    #[error("ratio denominator {den} is not positive")]
    Denominator {
        /// The denominator.
        den: i128,
    },
}

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
        // Only ASCII upper-case letters are ever stored: never empty.
        std::str::from_utf8(&self.0).unwrap_or_default()
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

/// `10^exp`, or an overflow of `what`.
fn pow10(exp: u32, what: &'static str) -> Result<i128, MoneyError> {
    10i128.checked_pow(exp).ok_or(MoneyError::Overflow { what })
}

/// `num / den` rounded half away from zero to `scale` decimal places, exactly.
///
/// `den` must be positive. The intermediate `num * 10^scale` must fit in
/// `i128` and the result in a [`Decimal`] (96 bits): byte-days of the whole
/// planet's storage for a month are below 10^30, so any real quantity fits;
/// anything else is [`MoneyError::Overflow`].
pub fn ratio(num: i128, den: i128, scale: u32) -> Result<Decimal, MoneyError> {
    const WHAT: &str = "quantity";
    let scaled = num.checked_mul(pow10(scale, WHAT)?).ok_or(MoneyError::Overflow { what: WHAT })?;
    let q = div_half_away(scaled, den)?;
    Decimal::try_from_i128_with_scale(q, scale).map_err(|_| MoneyError::Overflow { what: WHAT })
}

/// Integer division rounding half away from zero; `den` must be positive.
pub fn div_half_away(num: i128, den: i128) -> Result<i128, MoneyError> {
    if den <= 0 {
        return Err(MoneyError::Denominator { den });
    }
    // With `den > 0` neither division can overflow, and `den - |r| > 0`.
    let (Some(q), Some(r)) = (num.checked_div(den), num.checked_rem(den)) else {
        return Err(MoneyError::Denominator { den });
    };
    let r = r.unsigned_abs();
    if r >= den.unsigned_abs().saturating_sub(r) {
        q.checked_add(num.signum()).ok_or(MoneyError::Overflow { what: "quotient" })
    } else {
        Ok(q)
    }
}

/// `value * days / days_in_month`, rounded to a quantity (`round6`).
///
/// Used to prorate reserved capacity and pay-per-use minimums by days.
pub fn prorate(value: Decimal, days: u32, days_in_month: u32) -> Result<Decimal, MoneyError> {
    const WHAT: &str = "prorated quantity";
    let overflow = MoneyError::Overflow { what: WHAT };
    let num = value.mantissa().checked_mul(i128::from(days)).ok_or(overflow)?;
    let den = i128::from(days_in_month).checked_mul(pow10(value.scale(), WHAT)?).ok_or(overflow)?;
    ratio(num, den, QUANTITY_SCALE)
}

/// Byte-days converted to TB-months (`round6(byte_days / (D × UNIT))`).
pub fn tb_months(byte_days: i128, days_in_month: u32, unit_bytes: u64) -> Result<Decimal, MoneyError> {
    let den = i128::from(days_in_month)
        .checked_mul(i128::from(unit_bytes))
        .ok_or(MoneyError::Overflow { what: "quantity" })?;
    ratio(byte_days, den, QUANTITY_SCALE)
}

/// A line amount: `quantity × price`, rounded half away from zero to cents.
///
/// Computed exactly in `i128` ([`Exact::product`]: a [`Decimal`] product
/// that does not fit 96 bits would be rounded silently first).
pub fn amount(quantity: Decimal, price: Decimal) -> Result<Decimal, MoneyError> {
    const WHAT: &str = "amount";
    let overflow = MoneyError::Overflow { what: WHAT };
    let Exact { mantissa: exact, scale } = Exact::product(quantity, price).map_err(|_| overflow)?;
    let cents = match scale.checked_sub(AMOUNT_SCALE) {
        Some(extra) => div_half_away(exact, pow10(extra, WHAT)?)?,
        None => exact.checked_mul(pow10(AMOUNT_SCALE.saturating_sub(scale), WHAT)?).ok_or(overflow)?,
    };
    Decimal::try_from_i128_with_scale(cents, AMOUNT_SCALE).map_err(|_| overflow)
}

/// The VAT of a net amount at `rate` percent: `net × rate / 100` rounded
/// half away from zero to cents, exactly (spec 5.2, EN 16931 BR-CO-17).
///
/// Called once per invoice and tax category on the sum of its line
/// amounts, never per line.
pub fn vat_amount(net: Decimal, rate_percent: Decimal) -> Result<Decimal, MoneyError> {
    const WHAT: &str = "VAT amount";
    let overflow = MoneyError::Overflow { what: WHAT };
    let exact = net.mantissa().checked_mul(rate_percent.mantissa()).ok_or(overflow)?;
    // Dividing by 100 adds two decimal places.
    let scale = net.scale().checked_add(rate_percent.scale()).and_then(|s| s.checked_add(2)).ok_or(overflow)?;
    let cents = match scale.checked_sub(AMOUNT_SCALE) {
        Some(extra) => div_half_away(exact, pow10(extra, WHAT)?)?,
        None => exact.checked_mul(pow10(AMOUNT_SCALE.saturating_sub(scale), WHAT)?).ok_or(overflow)?,
    };
    Decimal::try_from_i128_with_scale(cents, AMOUNT_SCALE).map_err(|_| overflow)
}

/// The sum of amounts, exactly, with 2 decimals.
pub fn sum_amounts(amounts: impl IntoIterator<Item = Decimal>) -> Result<Decimal, MoneyError> {
    let mut total = Decimal::new(0, AMOUNT_SCALE);
    for a in amounts {
        total = total.checked_add(a).ok_or(MoneyError::Overflow { what: "sum of amounts" })?;
    }
    Ok(with_scale(total, AMOUNT_SCALE))
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

/// Digits of a Parquet/Arrow `DECIMAL(38, s)`: every decimal column capbill writes.
pub const DECIMAL_DIGITS: u32 = 38;

/// An exact decimal `mantissa / 10^scale` that may need more than the 28
/// digits of a [`Decimal`]: the product of two of them, such as a FOCUS
/// list cost (a price × a quantity, up to 30 digits), which [`Decimal`]
/// arithmetic would round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exact {
    /// The unscaled integer.
    pub mantissa: i128,
    /// Decimal places.
    pub scale: u32,
}

impl Exact {
    /// A decimal as it is.
    pub fn of(value: Decimal) -> Self {
        Exact { mantissa: value.mantissa(), scale: value.scale() }
    }

    /// `a × b`, exactly: the product of the mantissas at the sum of the scales.
    pub fn product(a: Decimal, b: Decimal) -> Result<Self, MoneyError> {
        let overflow = MoneyError::Overflow { what: "product" };
        Ok(Exact {
            mantissa: a.mantissa().checked_mul(b.mantissa()).ok_or(overflow)?,
            scale: a.scale().checked_add(b.scale()).ok_or(overflow)?,
        })
    }

    /// The mantissa written with exactly `scale` decimals, as a
    /// `DECIMAL(38, scale)` stores it. Never rounds: a value that would lose
    /// a digit at that scale, or needs more than 38 digits, is
    /// [`MoneyError::Overflow`] of `what`.
    pub fn mantissa_at(self, scale: u32, what: &'static str) -> Result<i128, MoneyError> {
        let overflow = MoneyError::Overflow { what };
        let m = match scale.checked_sub(self.scale) {
            Some(wider) => self.mantissa.checked_mul(pow10(wider, what)?).ok_or(overflow)?,
            None => {
                let drop = pow10(self.scale.saturating_sub(scale), what)?;
                if self.mantissa.checked_rem(drop) != Some(0) {
                    return Err(overflow);
                }
                self.mantissa.checked_div(drop).ok_or(overflow)?
            }
        };
        if m.unsigned_abs() >= 10u128.pow(DECIMAL_DIGITS) {
            return Err(overflow);
        }
        Ok(m)
    }
}

/// Polars expression: the whole-byte mean `sum / count`, half away from zero.
///
/// Both inputs are non-negative integers (`Int128` sums of `u64` bytes), so
/// `(2·sum + count) div (2·count)` is exact integer arithmetic.
#[allow(clippy::arithmetic_side_effects, reason = "builds a polars expression: nothing is computed here")]
pub fn mean_half_away_expr(sum: Expr, count: Expr) -> Expr {
    (sum * lit(2i128) + count.clone()).floor_div(count * lit(2i128))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn exact_products_keep_every_digit_and_refuse_what_a_decimal_38_cannot_hold() {
        // 10^8 TB-months at the directory's highest price (10^17 − 100):
        // 29 digits at scale 12, beyond a Decimal's 28, kept whole.
        let p = Exact::product(d("100000000.000000"), d("999999999.999999")).unwrap();
        assert_eq!(p.mantissa_at(12, "cost").unwrap(), 99_999_999_999_999_900_000_000_000_000);
        assert_eq!(p.mantissa_at(14, "cost").unwrap(), 9_999_999_999_999_990_000_000_000_000_000);
        // One more decimal in the quantity: 30 digits.
        let q = Exact::product(d("100000000.123456"), d("999999999.999999")).unwrap();
        assert_eq!(q.mantissa_at(12, "cost").unwrap(), 100_000_000_123_455_899_999_999_876_544);
        // Narrower only where the digits dropped are zeros.
        assert_eq!(Exact::of(d("140.00")).mantissa_at(0, "amount").unwrap(), 140);
        assert!(Exact::of(d("140.05")).mantissa_at(1, "amount").is_err());
        // 38 digits at most.
        assert!(Exact::of(Decimal::MAX).mantissa_at(10, "x").is_err());
        assert_eq!(Exact::of(Decimal::MAX).mantissa_at(9, "x").unwrap(), Decimal::MAX.mantissa() * 10i128.pow(9));
    }

    #[test]
    fn halves_round_away_from_zero() {
        assert_eq!(ratio(5, 10, 0).unwrap(), d("1"));
        assert_eq!(ratio(15, 10, 0).unwrap(), d("2"));
        assert_eq!(ratio(-5, 10, 0).unwrap(), d("-1"));
        assert_eq!(ratio(4, 10, 0).unwrap(), d("0"));
        assert_eq!(amount(d("0.599985"), d("9.90")).unwrap(), d("5.94"));
        assert_eq!(amount(d("0.125"), d("1")).unwrap(), d("0.13"));
        assert_eq!(amount(d("-0.125"), d("1")).unwrap(), d("-0.13"));
        assert_eq!(round_amount(d("2.345")), d("2.35"));
        assert_eq!(round_amount(d("2.344999")), d("2.34"));
    }

    /// Halves next to an even and next to an odd digit, of both signs: banker's
    /// rounding (half to even) would give 0.12, 2, -2 and 0; half up would give -2.
    #[test]
    fn every_half_rounds_away_from_zero_whatever_the_digit_before_it() {
        // (value, rounded to 2 dp): 0.125 and 0.135 sit on either side of an even digit.
        for (v, want) in
            [("0.125", "0.13"), ("0.135", "0.14"), ("-0.125", "-0.13"), ("-0.135", "-0.14"), ("2.665", "2.67")]
        {
            assert_eq!(round_amount(d(v)), d(want), "round_amount({v})");
            // The same value as an amount: quantity × 1.
            assert_eq!(amount(d(v), d("1")).unwrap(), d(want), "amount({v} × 1)");
        }
        // 0 dp through the exact ratio: 2.5 → 3, 3.5 → 4, -2.5 → -3, 0.5 → 1, -0.5 → -1.
        for (num, want) in [(25, 3), (35, 4), (-25, -3), (-35, -4), (5, 1), (-5, -1), (45, 5)] {
            assert_eq!(ratio(num, 10, 0).unwrap(), Decimal::from(want), "{num}/10");
            assert_eq!(div_half_away(num, 10).unwrap(), i128::from(want), "{num}/10");
        }
        // 6 dp: 0.0000025 → 0.000003 and 0.0000035 → 0.000004 (quantities).
        assert_eq!(ratio(25, 10_000_000, 6).unwrap().to_string(), "0.000003");
        assert_eq!(ratio(35, 10_000_000, 6).unwrap().to_string(), "0.000004");
        assert_eq!(round_quantity(d("0.0000025")).to_string(), "0.000003");
        assert_eq!(round_quantity(d("-0.0000025")).to_string(), "-0.000003");
        // Prorating: 0.000005 TB × 1 / 2 = 0.0000025 → 0.000003.
        assert_eq!(prorate(d("0.000005"), 1, 2).unwrap().to_string(), "0.000003");
        // An amount whose exact product ends in a half cent: 0.5 × 0.05 = 0.025 → 0.03.
        assert_eq!(amount(d("0.5"), d("0.05")).unwrap(), d("0.03"));
    }

    /// The whole-byte daily mean rounds halves away from zero: (2 + 3) / 2 =
    /// 2.5 → 3 and (3 + 4) / 2 = 3.5 → 4 (half to even would give 2 and 4).
    #[test]
    fn the_daily_mean_rounds_halves_away_from_zero() {
        use polars::prelude::*;
        let df = df!("sum" => [5i128, 7, 9, 6, 10], "count" => [2i128, 2, 2, 4, 4]).unwrap();
        let out = df.lazy().select([mean_half_away_expr(col("sum"), col("count")).alias("m")]).collect().unwrap();
        let got: Vec<i128> = out.column("m").unwrap().i128().unwrap().into_no_null_iter().collect();
        // 5/2 = 2.5 → 3, 7/2 = 3.5 → 4, 9/2 = 4.5 → 5, 6/4 = 1.5 → 2, 10/4 = 2.5 → 3.
        assert_eq!(got, [3, 4, 5, 2, 3]);
    }

    #[test]
    fn prorates_by_days() {
        assert_eq!(prorate(d("10"), 16, 31).unwrap().to_string(), "5.161290");
        assert_eq!(prorate(d("20"), 31, 31).unwrap().to_string(), "20.000000");
        assert_eq!(prorate(d("1"), 20, 31).unwrap().to_string(), "0.645161");
        // 1.5 × 1 / 4 = 0.375 exactly; 0.0000005-style halves round up.
        assert_eq!(prorate(d("0.000001"), 1, 2).unwrap().to_string(), "0.000001");
    }

    #[test]
    fn byte_days_to_tb_months() {
        // 31 days of 120 TB and one of 121 TB would be 120.032258 TB-month.
        let bd = 30i128 * 120_000_000_000_000 + 121_000_000_000_000;
        assert_eq!(tb_months(bd, 31, 1_000_000_000_000).unwrap().to_string(), "120.032258");
        assert_eq!(tb_months(0, 31, 1 << 40).unwrap().to_string(), "0.000000");
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let max = Decimal::MAX;
        assert_eq!(amount(max, max), Err(MoneyError::Overflow { what: "amount" }));
        // Fits i128 but not the 96 bits of a Decimal: 10^29 cents.
        assert_eq!(
            amount(Decimal::from_i128_with_scale(10i128.pow(27), 0), d("1000")),
            Err(MoneyError::Overflow { what: "amount" })
        );
        assert_eq!(prorate(max, 31, 31), Err(MoneyError::Overflow { what: "quantity" }));
        assert_eq!(prorate(max, u32::MAX, 1), Err(MoneyError::Overflow { what: "prorated quantity" }));
        assert_eq!(tb_months(i128::MAX, 31, 1_000_000_000_000), Err(MoneyError::Overflow { what: "quantity" }));
        assert_eq!(ratio(1, 0, 6), Err(MoneyError::Denominator { den: 0 }));
        assert_eq!(ratio(1, -3, 6), Err(MoneyError::Denominator { den: -3 }));
        assert_eq!(div_half_away(i128::MAX, 1), Ok(i128::MAX));
        assert_eq!(div_half_away(i128::MIN, 1), Ok(i128::MIN));
        assert_eq!(div_half_away(i128::MAX, i128::MAX), Ok(1));
        assert_eq!(div_half_away(i128::MAX / 2 + 1, i128::MAX), Ok(1), "a half rounds away from zero");
        assert_eq!(div_half_away(i128::MAX / 2, i128::MAX), Ok(0));
    }

    #[test]
    fn the_largest_amount_the_directory_bounds_allow_is_exact() {
        // 999999999.999999 TB × 999999999.999999 per TB (the directory's bounds), all 31 days.
        let q = prorate(d("999999999.999999"), 31, 31).unwrap();
        assert_eq!(q.to_string(), "999999999.999999");
        let a = amount(q, d("999999999.999999")).unwrap();
        // (10^9 − 10^−6)² = 10^18 − 2·10^3 + 10^−12, rounded to cents.
        assert_eq!(a.to_string(), "999999999999998000.00");
    }

    #[test]
    fn vat_is_rounded_once_half_away_from_zero() {
        assert_eq!(vat_amount(d("100.00"), d("19")).unwrap().to_string(), "19.00");
        assert_eq!(vat_amount(d("0.50"), d("19")).unwrap().to_string(), "0.10", "0.095 rounds up");
        assert_eq!(vat_amount(d("0.02"), d("7.7")).unwrap().to_string(), "0.00", "0.00154");
        assert_eq!(vat_amount(d("10.50"), d("5.5")).unwrap().to_string(), "0.58", "0.5775");
        // Three lines of 0.05 at 19 %: per line 0.0095 → 0.01 each, 0.03 in all;
        // once on the sum: 0.15 × 19 % = 0.0285 → 0.03. And 0.50 × 3: per line
        // 0.10 each (0.30), on the sum 1.50 × 19 % = 0.285 → 0.29.
        let net = sum_amounts([d("0.50"), d("0.50"), d("0.50")]).unwrap();
        assert_eq!(vat_amount(net, d("19")).unwrap().to_string(), "0.29");
        assert_eq!(sum_amounts([]).unwrap().to_string(), "0.00");
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
            let got = ratio(num, den, 6).unwrap();
            // Reference: compare num·10^6 against (q ± 0.5)·den without rounding.
            let q = got.mantissa();
            let scaled = num * 1_000_000;
            prop_assert!(2 * scaled >= (2 * q - 1) * den, "rounded too high");
            prop_assert!(2 * scaled < (2 * q + 1) * den, "rounded too low");
        }

        #[test]
        fn amounts_have_two_decimals(q in 0i64..10_000_000_000, p in 0i64..100_000) {
            let a = amount(Decimal::new(q, 6), Decimal::new(p, 2)).unwrap();
            prop_assert_eq!(a.scale(), 2);
            let exact = Decimal::new(q, 6) * Decimal::new(p, 2);
            prop_assert!((a - exact).abs() <= d("0.005"));
        }

        /// The exact `i128` amount agrees with `rust_decimal`'s own rounding
        /// wherever its product is exact (both factors within the directory's bounds).
        #[test]
        fn amounts_agree_with_decimal_rounding(
            q in 0i64..1_000_000_000_000_000,
            p in 0i64..1_000_000_000_000,
            ps in 0u32..=6,
            neg in proptest::bool::ANY,
        ) {
            let (q, p) = (Decimal::new(if neg { -q } else { q }, 6), Decimal::new(p, ps));
            let reference = (q * p).round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
            let a = amount(q, p).unwrap();
            prop_assert_eq!(a, reference);
            prop_assert_eq!(a.to_string(), with_scale(reference, 2).to_string());
        }
    }
}
