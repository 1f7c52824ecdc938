//! Revisions of a billing month: status, change detection, corrections and
//! diffs between revisions.
//!
//! A month is `provisional` until its grace period after month end has
//! passed, then `final`. Finance issues invoices from a final revision; a
//! later final revision never edits it but carries `corrections`: per line
//! key, the difference from the previous final revision. This module decides
//! whether inputs changed (the [`Fingerprint`]), computes line differences,
//! and reads published revisions back. Writing them is `export`'s job.

pub mod lock;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use polars::prelude::*;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::export::manifest::InputObject;
use crate::export::{self, ExportError, Manifest, decimal_column};
use crate::model::{BillingMonth, date_of};
use crate::money::{AMOUNT_SCALE, QUANTITY_SCALE};
use crate::storage::Store;

/// Where a month stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MonthStatus {
    /// Within the month or its grace period: revisions follow each other freely.
    Provisional,
    /// Grace period over: invoices are issued from it, changes need a reprocess.
    Final,
}

impl MonthStatus {
    /// The status of `month` at `now` with `grace_days` after its end.
    pub fn at(month: BillingMonth, now: DateTime<Utc>, grace_days: u32) -> MonthStatus {
        let final_from = date_of(month.end_day() + grace_days as i32).and_hms_opt(0, 0, 0).expect("midnight").and_utc();
        if now >= final_from { MonthStatus::Final } else { MonthStatus::Provisional }
    }

    /// `provisional` or `final`.
    pub fn as_str(self) -> &'static str {
        match self {
            MonthStatus::Provisional => "provisional",
            MonthStatus::Final => "final",
        }
    }
}

/// Everything a revision was made from; equal fingerprints bill the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// SHA-256 of the directory tables.
    pub directory_hash: String,
    /// Usage objects read (key, size, ETag), in key order.
    pub usage: Vec<InputObject>,
    /// Hash of the billing settings.
    pub config_hash: String,
    /// Billing rules version.
    pub rules_version: String,
}

impl Fingerprint {
    /// The fingerprint recorded in a manifest.
    pub fn of(m: &Manifest) -> Fingerprint {
        Fingerprint {
            directory_hash: m.directory.hash.clone(),
            usage: m.usage.objects.clone(),
            config_hash: m.config_hash.clone(),
            rules_version: m.rules_version.clone(),
        }
    }

    /// What differs from `before`, for people (empty when nothing does).
    pub fn changes_since(&self, before: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        if self.directory_hash != before.directory_hash {
            out.push("the partner directory changed".to_owned());
        }
        if self.usage != before.usage {
            let old: BTreeMap<_, _> = before.usage.iter().map(|o| (&o.key, o)).collect();
            let new: BTreeMap<_, _> = self.usage.iter().map(|o| (&o.key, o)).collect();
            let added = new.keys().filter(|k| !old.contains_key(*k)).count();
            let removed = old.keys().filter(|k| !new.contains_key(*k)).count();
            let changed = new.iter().filter(|(k, o)| old.get(*k).is_some_and(|p| p != *o)).count();
            out.push(format!("usage objects changed ({added} added, {changed} changed, {removed} removed)"));
        }
        if self.config_hash != before.config_hash {
            out.push("the billing configuration changed".to_owned());
        }
        if self.rules_version != before.rules_version {
            out.push(format!("the rules version changed ({} → {})", before.rules_version, self.rules_version));
        }
        out
    }
}

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

fn decimals(df: &DataFrame, name: &str) -> PolarsResult<Vec<Decimal>> {
    let c = df.column(name)?.decimal()?;
    let scale = c.scale() as u32;
    Ok(c.physical().iter().map(|v| Decimal::from_i128_with_scale(v.unwrap_or(0), scale)).collect())
}

/// The lines of an `invoice_lines` frame by key.
pub fn lines_by_key(df: &DataFrame) -> PolarsResult<BTreeMap<LineKey, LineValues>> {
    let s = |n: &str| df.column(n).and_then(|c| c.str().cloned());
    let (seller, buyer, customer, contract, charge, currency) =
        (s("seller_id")?, s("buyer_id")?, s("customer_id")?, s("contract_id")?, s("charge")?, s("currency")?);
    let q = decimals(df, "quantity")?;
    let a = decimals(df, "amount")?;
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
/// appears whole; unchanged lines do not appear.
pub fn line_changes(before: &BTreeMap<LineKey, LineValues>, after: &BTreeMap<LineKey, LineValues>) -> Vec<LineChange> {
    let mut keys: Vec<&LineKey> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (b, a) = (before.get(k), after.get(k));
            if b == a {
                return None;
            }
            let zero = (Decimal::ZERO, Decimal::ZERO);
            let (qb, ab) = b.map_or(zero, |v| (v.quantity, v.amount));
            let (qa, aa) = a.map_or(zero, |v| (v.quantity, v.amount));
            Some(LineChange {
                key: k.clone(),
                currency: a.or(b).map(|v| v.currency.clone()).unwrap_or_default(),
                quantity_before: qb,
                quantity_after: qa,
                amount_before: ab,
                amount_after: aa,
            })
        })
        .collect()
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

/// Reads the manifest of a revision.
pub async fn read_manifest(store: &Store, month: BillingMonth, revision: u32) -> Result<Manifest, ExportError> {
    let key = format!("{}/manifest.json", export::revision_prefix(month, revision));
    let data = store.get(&key).await?;
    serde_json::from_slice(&data).map_err(|source| ExportError::Corrupt { location: store.describe(&key), source })
}

/// Reads the invoice lines of a revision, by key.
pub async fn read_lines(
    store: &Store,
    month: BillingMonth,
    revision: u32,
) -> Result<BTreeMap<LineKey, LineValues>, ExportError> {
    let key = format!("{}/invoice_lines.parquet", export::revision_prefix(month, revision));
    let data = store.get(&key).await?;
    let df =
        crate::formats::read_parquet(data).map_err(|source| ExportError::Encode { table: "invoice_lines", source })?;
    lines_by_key(&df).map_err(|source| ExportError::Encode { table: "invoice_lines", source })
}

/// Every complete revision's manifest of a month, ascending.
pub async fn manifests(store: &Store, month: BillingMonth) -> Result<Vec<Manifest>, ExportError> {
    let mut out = Vec::new();
    for r in export::complete_revisions(store, month).await? {
        out.push(read_manifest(store, month, r).await?);
    }
    Ok(out)
}

/// Months with outputs under the output root, ascending.
pub async fn months(store: &Store) -> Result<Vec<BillingMonth>, ExportError> {
    let mut months: Vec<BillingMonth> = store
        .list("")
        .await?
        .iter()
        .filter_map(|o| o.key.split('/').next()?.strip_prefix("billing_month=")?.parse().ok())
        .collect();
    months.sort();
    months.dedup();
    Ok(months)
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
    fn status_turns_final_after_the_grace_period() {
        let m: BillingMonth = "2026-10".parse().unwrap();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(MonthStatus::at(m, at("2026-10-31T23:59:59Z"), 3), MonthStatus::Provisional);
        assert_eq!(MonthStatus::at(m, at("2026-11-03T23:59:59Z"), 3), MonthStatus::Provisional);
        assert_eq!(MonthStatus::at(m, at("2026-11-04T00:00:00Z"), 3), MonthStatus::Final);
        assert_eq!(MonthStatus::at(m, at("2026-11-01T00:00:00Z"), 0), MonthStatus::Final);
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
}
