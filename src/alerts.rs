//! Alert rules: checks that turn an unusual night into a finding that
//! monitoring can page on, beyond the findings of the billing rules.
//!
//! Today one rule: `total_dropped`, a currency whose monthly total fell by
//! more than the configured share against the previous month's latest
//! revision. Rules are pure functions of totals already computed; they
//! read nothing and change no amount.

use rust_decimal::Decimal;

use crate::manifest::{CurrencyTotal, Latest};
use crate::model::{BillingMonth, Finding, FindingKind};

/// `total_dropped` findings: each currency whose total in `month` (`now`)
/// fell below `(1 - share)` of its total in the previous month's latest
/// revision (`previous`).
pub fn total_dropped(share: Decimal, month: BillingMonth, previous: &Latest, now: &[CurrencyTotal]) -> Vec<Finding> {
    previous
        .totals
        .iter()
        .filter_map(|t| {
            let current = now.iter().find(|n| n.currency == t.currency).map_or(Decimal::ZERO, |n| n.total);
            let floor = t.total * (Decimal::ONE - share);
            (t.total > Decimal::ZERO && current < floor).then(|| {
                Finding::new(
                    FindingKind::TotalDropped,
                    t.currency.clone(),
                    format!(
                        "billed {current} {} in {month}, below {} of the {} billed in {} (revision {})",
                        t.currency,
                        (Decimal::ONE - share).normalize(),
                        t.total,
                        month.previous(),
                        previous.revision
                    ),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::MonthStatus;
    use std::str::FromStr;

    fn total(currency: &str, t: &str) -> CurrencyTotal {
        CurrencyTotal { currency: currency.into(), total: Decimal::from_str(t).unwrap() }
    }

    #[test]
    fn a_currency_that_fell_below_the_share_is_reported() {
        let previous = Latest {
            billing_month: "2026-09".into(),
            revision: 4,
            status: MonthStatus::Final,
            manifest: "revision=4/manifest.json".into(),
            generated_at: "2026-10-04T00:00:00Z".into(),
            totals: vec![total("CHF", "100.00"), total("EUR", "1000.00"), total("USD", "10.00")],
        };
        let month = "2026-10".parse().unwrap();
        let now = [total("EUR", "499.99"), total("USD", "5.00")];
        let found = total_dropped(Decimal::new(5, 1), month, &previous, &now);
        let got: Vec<_> = found.iter().map(|f| (f.subject_id.as_str(), f.detail.as_str())).collect();
        assert_eq!(
            got,
            [
                ("CHF", "billed 0 CHF in 2026-10, below 0.5 of the 100.00 billed in 2026-09 (revision 4)"),
                ("EUR", "billed 499.99 EUR in 2026-10, below 0.5 of the 1000.00 billed in 2026-09 (revision 4)"),
            ],
            "USD at exactly half is not a drop"
        );
    }
}
