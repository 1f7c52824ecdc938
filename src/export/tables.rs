//! The output tables of a run (spec 4) as typed polars frames, the totals
//! taken from them, and their Parquet and CSV encodings.
//!
//! Frames are built from what rating and metering handed over; nothing here
//! rates, rounds or decides what is billed. Decimals are `DECIMAL(38, s)`:
//! quantities scale 6, amounts scale 2, prices the largest scale of any
//! price (at least 2), byte-days scale 0.

use polars::prelude::*;
use rust_decimal::Decimal;

use super::{Encoded, ExportError};
use crate::formats::{self, DECIMAL_PRECISION, decimal_column};
use crate::manifest::CurrencyTotal;
use crate::model::{BillingMonth, Finding, InvoiceLine, Unit};
use crate::money::{AMOUNT_SCALE, QUANTITY_SCALE};

/// Totals of a revision, taken once from its `invoices` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    /// Per seller and currency, in seller order.
    pub per_seller: Vec<SellerTotal>,
    /// Per currency, in currency order.
    pub per_currency: Vec<CurrencyTotal>,
}

/// What one seller invoiced in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerTotal {
    /// Seller id.
    pub seller_id: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Sum of its invoices.
    pub total: Decimal,
}

/// The billed tables of a run (lines and invoices), `account_usage`, and
/// the totals: everything but the findings, which the totals' alerts
/// still add to.
#[derive(Debug, Clone)]
pub struct Billed {
    /// One row per invoice line, in output order.
    pub invoice_lines: DataFrame,
    /// One row per (seller, buyer, currency).
    pub invoices: DataFrame,
    /// One row per storage account with a window day or a snapshot.
    pub account_usage: DataFrame,
    /// Taken from `invoices`.
    pub totals: Totals,
}

impl Billed {
    /// Builds the line and invoice frames and their totals on one thread and
    /// `account_usage` on another.
    pub fn build(
        month: BillingMonth,
        unit: Unit,
        lines: &[InvoiceLine<'_>],
        account_usage: &DataFrame,
    ) -> Result<Billed, ExportError> {
        let (billed, account_usage) = std::thread::scope(|scope| {
            let billed = scope.spawn(|| {
                let invoice_lines = invoice_lines_frame(month, unit, lines).map_err(enc("invoice_lines"))?;
                let invoices = invoices_frame(&invoice_lines).map_err(enc("invoices"))?;
                let totals = totals(&invoices).map_err(enc("invoices"))?;
                Ok::<_, ExportError>((invoice_lines, invoices, totals))
            });
            let account_usage = account_usage_frame(account_usage).map_err(enc("account_usage"));
            (billed.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), account_usage)
        });
        let ((invoice_lines, invoices, totals), account_usage) = (billed?, account_usage?);
        Ok(Billed { invoice_lines, invoices, account_usage, totals })
    }

    /// The four output tables, with every finding of the run (sorted by the caller).
    pub fn with_findings(self, findings: &[Finding]) -> Result<Tables, ExportError> {
        let findings = findings_frame(findings).map_err(enc("findings"))?;
        let Billed { invoice_lines, invoices, account_usage, totals } = self;
        Ok(Tables { invoice_lines, invoices, account_usage, findings, totals })
    }
}

/// The four output tables of a run.
#[derive(Debug, Clone)]
pub struct Tables {
    /// One row per invoice line, in output order.
    pub invoice_lines: DataFrame,
    /// One row per (seller, buyer, currency).
    pub invoices: DataFrame,
    /// One row per storage account with a window day or a snapshot.
    pub account_usage: DataFrame,
    /// Every finding, sorted by kind and subject.
    pub findings: DataFrame,
    /// Taken from `invoices`.
    pub totals: Totals,
}

impl Tables {
    /// Builds every output frame at once (tests and tools; a run adds the
    /// totals' alerts to the findings between [`Billed::build`] and
    /// [`Billed::with_findings`]).
    pub fn build(
        month: BillingMonth,
        unit: Unit,
        lines: &[InvoiceLine<'_>],
        account_usage: &DataFrame,
        findings: &[Finding],
    ) -> Result<Tables, ExportError> {
        Billed::build(month, unit, lines, account_usage)?.with_findings(findings)
    }

    fn named(&self) -> [(&'static str, &DataFrame); 4] {
        [
            ("invoice_lines", &self.invoice_lines),
            ("invoices", &self.invoices),
            ("account_usage", &self.account_usage),
            ("findings", &self.findings),
        ]
    }

    /// Encodes every table as Parquet and CSV, one table when publishing
    /// reaches it ([`super::deferred`]), so that memory holds one table's
    /// files besides those being written, not all eight.
    pub fn encode(&self) -> impl Iterator<Item = Result<Encoded, ExportError>> + '_ {
        self.named().into_iter().flat_map(|(name, df)| super::deferred(move || encode_table(name, df)))
    }
}

/// Encodes a frame as one file format.
pub(super) type Encoder = fn(&mut DataFrame) -> PolarsResult<Vec<u8>>;

/// Every output table is written in these formats, in this order.
const ENCODERS: [(&str, Encoder); 2] = [("parquet", formats::write_parquet), ("csv", formats::write_csv)];

fn encode_one(name: &'static str, df: &DataFrame, ext: &str, write: Encoder) -> Result<Encoded, ExportError> {
    let data = write(&mut df.clone()).map_err(enc(name))?;
    Ok(Encoded::new(format!("{name}.{ext}"), df.height(), data))
}

/// A table as Parquet and CSV (every table, and `corrections`).
pub fn encode_table(name: &'static str, df: &DataFrame) -> Result<Vec<Encoded>, ExportError> {
    encode_formats(name, df, ENCODERS, false)
}

/// A table as the files of `encoders` (`name.ext` each, in their order),
/// encoded at once, one thread each: polars's writers use the cores only
/// part of the time (a large table's Parquet is compressed column by
/// column, its CSV written batch by batch). With `one_at_a_time` they are
/// encoded one after the other instead, so that memory never holds both
/// encoders' buffers (FOCUS of a large month). FOCUS passes its own CSV
/// writer.
pub(super) fn encode_formats(
    name: &'static str,
    df: &DataFrame,
    encoders: [(&str, Encoder); 2],
    one_at_a_time: bool,
) -> Result<Vec<Encoded>, ExportError> {
    if one_at_a_time {
        return encoders.into_iter().map(|(ext, write)| encode_one(name, df, ext, write)).collect();
    }
    std::thread::scope(|scope| {
        let jobs = encoders.map(|(ext, write)| scope.spawn(move || encode_one(name, df, ext, write)));
        jobs.into_iter().map(|job| job.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

fn enc(table: &'static str) -> impl Fn(PolarsError) -> ExportError {
    move |source| ExportError::Encode { table, source }
}

fn invoice_lines_frame(month: BillingMonth, unit: Unit, lines: &[InvoiceLine<'_>]) -> PolarsResult<DataFrame> {
    let n = lines.len();
    let price_scale = lines.iter().map(|l| l.unit_price.scale()).max().unwrap_or(AMOUNT_SCALE).max(AMOUNT_SCALE);
    let s = |f: for<'l> fn(&'l InvoiceLine<'_>) -> &'l str| lines.iter().map(f).collect::<Vec<_>>();
    DataFrame::new(
        n,
        vec![
            Column::new("billing_month".into(), vec![month.to_string(); n]),
            Column::new("seller_id".into(), s(|l| l.seller_id)),
            Column::new("seller_name".into(), s(|l| l.seller_name)),
            Column::new("buyer_id".into(), s(|l| l.buyer_id)),
            Column::new("buyer_name".into(), s(|l| l.buyer_name)),
            Column::new("customer_id".into(), s(|l| l.customer_id)),
            Column::new("customer_name".into(), s(|l| l.customer_name)),
            Column::new("contract_id".into(), s(|l| l.contract_id)),
            Column::new("charge".into(), s(|l| l.charge.as_str())),
            decimal_column("quantity", lines.iter().map(|l| Some(l.quantity)), QUANTITY_SCALE)?,
            Column::new("unit".into(), vec![unit.line_unit(); n]),
            decimal_column("unit_price", lines.iter().map(|l| Some(l.unit_price)), price_scale)?,
            decimal_column("amount", lines.iter().map(|l| Some(l.amount)), AMOUNT_SCALE)?,
            Column::new("currency".into(), s(|l| l.currency.as_str())),
            Column::new("days".into(), lines.iter().map(|l| l.days).collect::<Vec<u32>>()),
            Column::new("deal_id".into(), lines.iter().map(|l| l.deal_id).collect::<Vec<_>>()),
        ],
    )
}

/// Totals per (seller, buyer, currency): a polars aggregation over the lines.
fn invoices_frame(lines: &DataFrame) -> PolarsResult<DataFrame> {
    let keys = ["seller_id", "seller_name", "buyer_id", "buyer_name", "currency"];
    lines
        .clone()
        .lazy()
        .group_by(keys.map(col))
        .agg([col("amount").sum().alias("total"), len().cast(DataType::UInt32).alias("lines")])
        .sort(["seller_id", "buyer_id", "currency"], SortMultipleOptions::default())
        .select(keys.map(col).into_iter().chain([col("total"), col("lines")]).collect::<Vec<_>>())
        .with_column(lit(NULL).cast(DataType::String).alias("invoice_number"))
        .collect()
}

/// The e-invoice number of each (seller, buyer, currency) of an `invoices`
/// frame that has one (spec 5.3); none for a frame without the column
/// (revisions published before it existed).
pub fn invoice_numbers(
    invoices: &DataFrame,
) -> PolarsResult<std::collections::BTreeMap<(String, String, String), String>> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(numbers) = invoices.column("invoice_number") else { return Ok(out) };
    let s = |n: &str| invoices.column(n).and_then(|c| c.str().cloned());
    let (seller, buyer, currency, number) = (s("seller_id")?, s("buyer_id")?, s("currency")?, numbers.str()?);
    for i in 0..invoices.height() {
        if let Some(n) = number.get(i).filter(|n| !n.is_empty()) {
            let k = |c: &StringChunked| c.get(i).unwrap_or_default().to_owned();
            out.insert((k(&seller), k(&buyer), k(&currency)), n.to_owned());
        }
    }
    Ok(out)
}

impl Billed {
    /// Fills the `invoices` column `invoice_number` (spec 5.3) from
    /// `numbers` by (seller, buyer, currency); empty for the others.
    pub fn number_invoices(
        &mut self,
        numbers: &std::collections::BTreeMap<(String, String, String), String>,
    ) -> Result<(), ExportError> {
        let fill = |df: &mut DataFrame| -> PolarsResult<()> {
            let s = |n: &str| df.column(n).and_then(|c| c.str().cloned());
            let (seller, buyer, currency) = (s("seller_id")?, s("buyer_id")?, s("currency")?);
            let key = |c: &StringChunked, i| c.get(i).unwrap_or_default().to_owned();
            let values: Vec<Option<&str>> = (0..df.height())
                .map(|i| numbers.get(&(key(&seller, i), key(&buyer, i), key(&currency, i))).map(String::as_str))
                .collect();
            df.with_column(Column::new("invoice_number".into(), values))?;
            Ok(())
        };
        fill(&mut self.invoices).map_err(enc("invoices"))
    }
}

fn account_usage_frame(metered: &DataFrame) -> PolarsResult<DataFrame> {
    let byte_days = metered.column("byte_days")?.i128()?.clone();
    let as_decimal = byte_days.into_decimal(DECIMAL_PRECISION, 0)?.into_series().into_column();
    let mut out = metered.clone();
    out.with_column(as_decimal)?;
    Ok(out)
}

fn findings_frame(findings: &[Finding]) -> PolarsResult<DataFrame> {
    let n = findings.len();
    DataFrame::new(
        n,
        vec![
            Column::new("kind".into(), findings.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>()),
            Column::new("subject_id".into(), findings.iter().map(|f| f.subject_id.as_str()).collect::<Vec<_>>()),
            Column::new("detail".into(), findings.iter().map(|f| f.detail.as_str()).collect::<Vec<_>>()),
            decimal_column(
                "byte_days",
                findings.iter().map(|f| f.byte_days.map(|b| Decimal::from_i128_with_scale(b, 0))),
                0,
            )?,
            decimal_column("tb_months", findings.iter().map(|f| f.tb_months), QUANTITY_SCALE)?,
        ],
    )
}

/// Totals per (seller, currency) and per currency, summed in polars over
/// the invoices.
fn totals(invoices: &DataFrame) -> PolarsResult<Totals> {
    let sum_by = |keys: &[&str]| {
        invoices
            .clone()
            .lazy()
            .group_by(keys.iter().map(|k| col(*k)).collect::<Vec<_>>())
            .agg([col("total").sum()])
            .sort(keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(), SortMultipleOptions::default())
            .collect()
    };
    let per_seller = sum_by(&["seller_id", "currency"])?;
    let per_currency = sum_by(&["currency"])?;
    let (sellers, currencies) = (per_seller.column("seller_id")?.str()?, per_seller.column("currency")?.str()?);
    let text = |c: &StringChunked, i| c.get(i).unwrap_or_default().to_owned();
    let per_seller = formats::decimals(&per_seller, "total")?
        .into_iter()
        .enumerate()
        .map(|(i, total)| SellerTotal { seller_id: text(sellers, i), currency: text(currencies, i), total })
        .collect();
    let currencies = per_currency.column("currency")?.str()?;
    let per_currency = formats::decimals(&per_currency, "total")?
        .into_iter()
        .enumerate()
        .map(|(i, total)| CurrencyTotal { currency: text(currencies, i), total })
        .collect();
    Ok(Totals { per_seller, per_currency })
}
