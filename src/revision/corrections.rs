//! Corrections and diffs between revisions: invoice lines by key, the lines
//! whose quantity or amount changed, the `corrections` table of a final
//! revision that corrects an earlier one, and invoice totals before and
//! after.
//!
//! Reads published invoice lines back; writes nothing (the `corrections`
//! files are published by `export` with the rest of the revision).

use std::collections::BTreeMap;

use polars::prelude::*;
use rust_decimal::Decimal;

use super::RevisionError;
use crate::formats::{self, decimal_column};
use crate::manifest::revision_prefix;
use crate::model::BillingMonth;
use crate::money::{AMOUNT_SCALE, QUANTITY_SCALE};
use crate::storage::Store;

/// The key of an invoice line: seller, buyer, customer, contract, charge.
pub type LineKey = (String, String, String, String, String);

/// Currency, quantity and amount of one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineValues {
    /// Currency.
    pub currency: String,
    /// Quantity.
    pub quantity: Decimal,
    /// Amount.
    pub amount: Decimal,
}

/// A line whose quantity or amount differs between two revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineChange {
    /// Line key.
    pub key: LineKey,
    /// Currency.
    pub currency: String,
    /// Before (zero when the line is new).
    pub quantity_before: Decimal,
    /// After (zero when the line disappeared).
    pub quantity_after: Decimal,
    /// Before.
    pub amount_before: Decimal,
    /// After.
    pub amount_after: Decimal,
}

impl LineChange {
    /// After minus before.
    pub fn quantity_delta(&self) -> Decimal {
        self.quantity_after - self.quantity_before
    }

    /// After minus before.
    pub fn amount_delta(&self) -> Decimal {
        self.amount_after - self.amount_before
    }
}

/// The lines of an `invoice_lines` frame by key.
pub fn lines_by_key(df: &DataFrame) -> PolarsResult<BTreeMap<LineKey, LineValues>> {
    let s = |n: &str| df.column(n).and_then(|c| c.str().cloned());
    let (seller, buyer, customer, contract, charge, currency) =
        (s("seller_id")?, s("buyer_id")?, s("customer_id")?, s("contract_id")?, s("charge")?, s("currency")?);
    let q = formats::decimals(df, "quantity")?;
    let a = formats::decimals(df, "amount")?;
    let get = |c: &StringChunked, i| c.get(i).unwrap_or_default().to_owned();
    Ok((0..df.height())
        .map(|i| {
            (
                (get(&seller, i), get(&buyer, i), get(&customer, i), get(&contract, i), get(&charge, i)),
                LineValues { currency: get(&currency, i), quantity: q[i], amount: a[i] },
            )
        })
        .collect())
}

/// Lines that differ between `before` and `after`, in key order. A line
/// only in `before` appears with its values negated, one only in `after`
/// appears whole; unchanged lines do not appear. A line whose currency
/// changed is two changes, as it moved from one invoice to another (an
/// invoice is per seller, buyer and currency): the old line negated in its
/// currency, then the new one whole in its own, so that the changes of
/// each invoice sum to the change of its total.
pub fn line_changes(before: &BTreeMap<LineKey, LineValues>, after: &BTreeMap<LineKey, LineValues>) -> Vec<LineChange> {
    let mut keys: Vec<&LineKey> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    let change = |key: &LineKey, b: Option<&LineValues>, a: Option<&LineValues>| {
        let zero = (Decimal::ZERO, Decimal::ZERO);
        let (qb, ab) = b.map_or(zero, |v| (v.quantity, v.amount));
        let (qa, aa) = a.map_or(zero, |v| (v.quantity, v.amount));
        LineChange {
            key: key.clone(),
            currency: a.or(b).map(|v| v.currency.clone()).unwrap_or_default(),
            quantity_before: qb,
            quantity_after: qa,
            amount_before: ab,
            amount_after: aa,
        }
    };
    let mut changes = Vec::new();
    for k in keys {
        match (before.get(k), after.get(k)) {
            (b, a) if b == a => {}
            (Some(b), Some(a)) if b.currency != a.currency => {
                changes.push(change(k, Some(b), None));
                changes.push(change(k, None, Some(a)));
            }
            (b, a) => changes.push(change(k, b, a)),
        }
    }
    changes
}

/// The `corrections` output: line differences of `revision` against `corrects`.
pub fn corrections_frame(
    month: BillingMonth,
    revision: u32,
    corrects: u32,
    changes: &[LineChange],
) -> PolarsResult<DataFrame> {
    let n = changes.len();
    let key = |f: fn(&LineKey) -> &String| changes.iter().map(|c| f(&c.key).as_str()).collect::<Vec<_>>();
    DataFrame::new(
        n,
        vec![
            Column::new("billing_month".into(), vec![month.to_string(); n]),
            Column::new("revision".into(), vec![revision; n]),
            Column::new("corrects_revision".into(), vec![corrects; n]),
            Column::new("seller_id".into(), key(|k| &k.0)),
            Column::new("buyer_id".into(), key(|k| &k.1)),
            Column::new("customer_id".into(), key(|k| &k.2)),
            Column::new("contract_id".into(), key(|k| &k.3)),
            Column::new("charge".into(), key(|k| &k.4)),
            Column::new("currency".into(), changes.iter().map(|c| c.currency.as_str()).collect::<Vec<_>>()),
            decimal_column("quantity", changes.iter().map(|c| Some(c.quantity_delta())), QUANTITY_SCALE)?,
            decimal_column("amount", changes.iter().map(|c| Some(c.amount_delta())), AMOUNT_SCALE)?,
            decimal_column("quantity_before", changes.iter().map(|c| Some(c.quantity_before)), QUANTITY_SCALE)?,
            decimal_column("quantity_after", changes.iter().map(|c| Some(c.quantity_after)), QUANTITY_SCALE)?,
            decimal_column("amount_before", changes.iter().map(|c| Some(c.amount_before)), AMOUNT_SCALE)?,
            decimal_column("amount_after", changes.iter().map(|c| Some(c.amount_after)), AMOUNT_SCALE)?,
        ],
    )
}

/// Per invoice (seller, buyer, currency): total before, total after.
pub type InvoiceTotals = BTreeMap<(String, String, String), (Decimal, Decimal)>;

/// Invoice totals of two revisions, keeping only invoices whose total changed.
pub fn invoice_changes(before: &BTreeMap<LineKey, LineValues>, after: &BTreeMap<LineKey, LineValues>) -> InvoiceTotals {
    let mut totals: InvoiceTotals = BTreeMap::new();
    for (side, lines) in [(0, before), (1, after)] {
        for (k, v) in lines {
            let t = totals.entry((k.0.clone(), k.1.clone(), v.currency.clone())).or_default();
            if side == 0 {
                t.0 += v.amount;
            } else {
                t.1 += v.amount;
            }
        }
    }
    totals.retain(|_, (b, a)| b != a);
    totals
}

/// Reads the invoice lines of a published revision, by key.
pub async fn read_lines(
    store: &Store,
    month: BillingMonth,
    revision: u32,
) -> Result<BTreeMap<LineKey, LineValues>, RevisionError> {
    let key = format!("{}/invoice_lines.parquet", revision_prefix(month, revision));
    let data = store.get(&key).await?;
    let lines = formats::read_parquet(data).and_then(|df| lines_by_key(&df));
    lines.map_err(|source| RevisionError::Lines { location: store.describe(&key), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn key(customer: &str, charge: &str) -> LineKey {
        ("s".into(), "b".into(), customer.into(), "K".into(), charge.into())
    }

    fn v(q: &str, a: &str) -> LineValues {
        LineValues {
            currency: "EUR".into(),
            quantity: Decimal::from_str(q).unwrap(),
            amount: Decimal::from_str(a).unwrap(),
        }
    }

    #[test]
    fn changes_are_new_minus_old_and_sum_to_the_invoice_change() {
        let before: BTreeMap<_, _> = [
            (key("x", "usage"), v("1.000000", "9.90")),
            (key("x", "minimum"), v("0.500000", "4.95")),
            (key("y", "usage"), v("2.000000", "19.80")),
        ]
        .into();
        let after: BTreeMap<_, _> = [
            (key("x", "usage"), v("1.200000", "11.88")),
            (key("y", "usage"), v("2.000000", "19.80")),
            (key("z", "usage"), v("0.100000", "0.99")),
        ]
        .into();
        let changes = line_changes(&before, &after);
        let summary: Vec<_> =
            changes.iter().map(|c| (c.key.2.as_str(), c.key.4.as_str(), c.amount_delta().to_string())).collect();
        let expected = [("x", "minimum", "-4.95"), ("x", "usage", "1.98"), ("z", "usage", "0.99")];
        assert_eq!(summary, expected.map(|(a, b, c)| (a, b, c.to_owned())));
        let total: Decimal = changes.iter().map(LineChange::amount_delta).sum();
        let inv = invoice_changes(&before, &after);
        let (b, a) = inv[&("s".to_owned(), "b".to_owned(), "EUR".to_owned())];
        assert_eq!(a - b, total);
        assert!(line_changes(&after, &after).is_empty());
    }

    #[test]
    fn a_line_whose_currency_changed_leaves_one_invoice_and_joins_another() {
        let before: BTreeMap<_, _> =
            [(key("x", "usage"), v("1.000000", "9.90")), (key("y", "usage"), v("2.000000", "19.80"))].into();
        let mut usd = v("1.000000", "11.00");
        usd.currency = "USD".into();
        let after: BTreeMap<_, _> = [(key("x", "usage"), usd), (key("y", "usage"), v("2.000000", "19.80"))].into();
        let changes = line_changes(&before, &after);
        let rows: Vec<_> = changes
            .iter()
            .map(|c| {
                (c.key.2.as_str(), c.currency.as_str(), c.quantity_delta().to_string(), c.amount_delta().to_string())
            })
            .collect();
        let expected = [("x", "EUR", "-1.000000", "-9.90"), ("x", "USD", "1.000000", "11.00")];
        assert_eq!(rows, expected.map(|(a, b, c, d)| (a, b, c.to_owned(), d.to_owned())));
        // Each invoice's corrections sum to the change of its total.
        for ((seller, buyer, currency), (b, a)) in invoice_changes(&before, &after) {
            let sum: Decimal = changes
                .iter()
                .filter(|c| c.key.0 == seller && c.key.1 == buyer && c.currency == currency)
                .map(LineChange::amount_delta)
                .sum();
            assert_eq!(sum, a - b, "{currency}");
        }
    }
}
