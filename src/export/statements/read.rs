//! Reading a revision's tables for its statements: the invoices with
//! their lines and corrections, the `account_usage` row of each directory
//! account and the findings by subject, their text borrowed from the
//! tables' columns (`&str`, never copied). Nothing here decides what a page
//! shows.

use std::collections::{BTreeMap, HashMap};

use itertools::izip;
use polars::prelude::*;
use rust_decimal::Decimal;

use super::lookup::DirAccount;
use super::{Account, Correction, FindingRow, Invoice, Line, StatementInputs};
use crate::formats;

/// The invoices of a revision by (seller, buyer, currency), their text borrowed from its tables.
pub(super) type ByInvoice<'a> = BTreeMap<(&'a str, &'a str, &'a str), Invoice<'a>>;

/// The invoices of a revision per (seller, buyer), in that order, each
/// pair's in currency order: one statement each. (A `Vec` per pair, not a
/// map: most pairs have one invoice, and a map would hold room for eleven.)
pub(super) type ByPair<'a> = Vec<((&'a str, &'a str), Vec<Invoice<'a>>)>;

/// [`ByInvoice`]'s invoices grouped per pair, in the same order.
pub(super) fn by_pair(invoices: ByInvoice<'_>) -> ByPair<'_> {
    let mut pairs: ByPair = Vec::with_capacity(invoices.len());
    for ((seller, buyer, _), invoice) in invoices {
        match pairs.last_mut() {
            Some((pair, of_pair)) if *pair == (seller, buyer) => of_pair.push(invoice),
            _ => pairs.push(((seller, buyer), vec![invoice])),
        }
    }
    pairs
}

/// A string column's values, borrowed from the frame (`None` for a null).
fn text<'a>(df: &'a DataFrame, name: &str) -> PolarsResult<impl Iterator<Item = Option<&'a str>> + use<'a>> {
    Ok(df.column(name)?.str()?.iter())
}

/// A string column's values, borrowed from the frame (`""` for a null).
fn texts<'a>(df: &'a DataFrame, name: &str) -> PolarsResult<impl Iterator<Item = &'a str> + use<'a>> {
    Ok(text(df, name)?.map(Option::unwrap_or_default))
}

/// A `u32` column's values (0 for a null).
fn counts<'a>(df: &'a DataFrame, name: &str) -> PolarsResult<impl Iterator<Item = u32> + use<'a>> {
    Ok(df.column(name)?.u32()?.iter().map(Option::unwrap_or_default))
}

/// Each row's invoice: its (seller, buyer, currency), as the `invoices`,
/// `invoice_lines` and `corrections` tables name it.
fn invoice_keys<'a>(df: &'a DataFrame) -> PolarsResult<impl Iterator<Item = (&'a str, &'a str, &'a str)> + use<'a>> {
    Ok(izip!(texts(df, "seller_id")?, texts(df, "buyer_id")?, texts(df, "currency")?))
}

/// The invoices of the `invoices` table with their lines.
pub(super) fn read_invoices<'a>(inputs: &StatementInputs<'a>) -> PolarsResult<ByInvoice<'a>> {
    let inv = &inputs.tables.invoices;
    let rows = izip!(invoice_keys(inv)?, text(inv, "invoice_number")?, formats::decimals(inv, "total")?);
    let mut out: ByInvoice = BTreeMap::new();
    for (key, number, total) in rows {
        let invoice = Invoice {
            currency: key.2,
            number: number.filter(|n| !n.is_empty()),
            total,
            lines: Vec::new(),
            corrections: Vec::new(),
        };
        out.insert(key, invoice);
    }
    let l = &inputs.tables.invoice_lines;
    // Each invoice's lines are counted first, so that it gets room for just them.
    let mut per_invoice: HashMap<(&str, &str, &str), usize> = HashMap::new();
    for key in invoice_keys(l)? {
        *per_invoice.entry(key).or_default() += 1;
    }
    for (key, invoice) in &mut out {
        invoice.lines.reserve_exact(per_invoice.get(key).copied().unwrap_or(0));
    }
    drop(per_invoice);
    let lines = izip!(
        texts(l, "customer_id")?,
        texts(l, "customer_name")?,
        texts(l, "contract_id")?,
        texts(l, "charge")?,
        formats::decimals(l, "quantity")?,
        texts(l, "unit")?,
        formats::decimals(l, "unit_price")?,
        formats::decimals(l, "amount")?,
        counts(l, "days")?,
        text(l, "deal_id")?,
    );
    for (key, line) in invoice_keys(l)?.zip(lines) {
        let (customer_id, customer_name, contract_id, charge, quantity, unit, unit_price, amount, days, deal_id) = line;
        let invoice =
            out.get_mut(&key).ok_or_else(|| PolarsError::ComputeError("an invoice line without its invoice".into()))?;
        invoice.lines.push(Line {
            customer_id,
            customer_name,
            contract_id,
            charge,
            quantity,
            unit,
            unit_price,
            amount,
            days,
            deal_id,
        });
    }
    Ok(out)
}

pub(super) type CorrectionsByInvoice<'a> = BTreeMap<(&'a str, &'a str, &'a str), Vec<Correction<'a>>>;

pub(super) fn read_corrections(c: &DataFrame) -> PolarsResult<CorrectionsByInvoice<'_>> {
    let dec = |n| formats::decimals(c, n);
    let corrections = izip!(
        texts(c, "customer_id")?,
        texts(c, "contract_id")?,
        texts(c, "charge")?,
        dec("quantity_before")?,
        dec("quantity_after")?,
        dec("amount_before")?,
        dec("amount_after")?,
        dec("amount")?,
    );
    let mut out: CorrectionsByInvoice = BTreeMap::new();
    for (key, correction) in invoice_keys(c)?.zip(corrections) {
        let (customer_id, contract_id, charge, quantity_before, quantity_after, amount_before, amount_after, amount) =
            correction;
        out.entry(key).or_default().push(Correction {
            customer_id,
            contract_id,
            charge,
            quantity_before,
            quantity_after,
            amount_before,
            amount_after,
            amount,
        });
    }
    Ok(out)
}

/// The directory's storage accounts, in its order, with their
/// `account_usage` row (an id's last; a row of an id the directory does not
/// have is left out) and their id in `daily_usage`.
pub(super) fn read_accounts<'a>(inputs: &StatementInputs<'a>) -> PolarsResult<Vec<DirAccount<'a>>> {
    let dir = inputs.directory;
    let mut accounts: Vec<DirAccount> =
        dir.accounts.iter().map(|a| DirAccount { usage: None, daily: inputs.accounts.get(&a.id) }).collect();
    // Each id's place in the directory (its first, should the directory name it twice).
    let mut place: HashMap<&str, usize> = HashMap::with_capacity(dir.accounts.len());
    for (i, a) in dir.accounts.iter().enumerate() {
        place.entry(a.id.as_str()).or_insert(i);
    }
    let au = &inputs.tables.account_usage;
    let rows = izip!(
        text(au, "storage_account_id")?,
        texts(au, "company_name")?,
        formats::decimals(au, "byte_days")?,
        formats::decimals(au, "tb_months")?,
        counts(au, "observed_days")?,
        counts(au, "filled_days")?,
    );
    for (id, company, byte_days, tb_months, observed_days, filled_days) in rows {
        let Some(id) = id else { continue };
        let Some(&i) = place.get(id) else { continue };
        accounts[i].usage = Some(Account { id, company, byte_days, tb_months, observed_days, filled_days });
    }
    Ok(accounts)
}

/// The findings by subject, in the table's order.
pub(super) fn read_findings(f: &DataFrame) -> PolarsResult<HashMap<&str, Vec<FindingRow<'_>>>> {
    let nulls = |n: &str| -> PolarsResult<Vec<Option<Decimal>>> {
        let c = f.column(n)?;
        let values = formats::decimals(f, n)?;
        Ok(values.into_iter().zip(c.is_not_null().iter()).map(|(v, ok)| ok.unwrap_or(false).then_some(v)).collect())
    };
    let rows = izip!(
        texts(f, "subject_id")?,
        texts(f, "kind")?,
        texts(f, "detail")?,
        nulls("byte_days")?,
        nulls("tb_months")?
    );
    let mut out: HashMap<&str, Vec<FindingRow>> = HashMap::new();
    for (subject_id, kind, detail, byte_days, tb_months) in rows {
        out.entry(subject_id).or_default().push(FindingRow { kind, subject_id, detail, byte_days, tb_months });
    }
    Ok(out)
}
