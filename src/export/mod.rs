//! Outputs of a run (spec 4, 4.1): typed frames, their Parquet and CSV
//! files, the manifest and `latest.json`, published so that a reader who
//! follows `latest.json` never sees a half-written revision.
//!
//! Layout under the output root:
//! `billing_month=YYYY-MM/revision=N/{invoice_lines,invoices,account_usage,findings}.{parquet,csv}`,
//! `.../revision=N/manifest.json`, and `billing_month=YYYY-MM/latest.json`.
//! Files are written first, the manifest after them, `latest.json` last; a
//! revision folder without a manifest is incomplete and ignored (its number
//! is reused by the next run).

pub mod manifest;

use bytes::Bytes;
use polars::prelude::*;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::formats;
use crate::model::{BillingMonth, Finding, InvoiceLine, Unit};
use crate::money::{self, AMOUNT_SCALE, QUANTITY_SCALE};
use crate::storage::{StorageError, Store};

pub use manifest::{Latest, Manifest, OutputFile};

/// An export failure.
#[derive(Debug, Error)]
pub enum ExportError {
    /// Writing to storage failed.
    #[error("cannot publish outputs")]
    Storage(#[from] StorageError),
    /// Building or encoding a frame failed (a bug).
    #[error("cannot encode output {table}")]
    Encode {
        /// Output table.
        table: &'static str,
        /// Cause.
        #[source]
        source: PolarsError,
    },
    /// A previous manifest or latest.json could not be read.
    #[error("{location} is not a valid capbill document")]
    Corrupt {
        /// Where.
        location: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

impl ExportError {
    /// The storage failure behind this error, if that is what it is.
    pub fn storage(&self) -> Option<&StorageError> {
        match self {
            ExportError::Storage(e) => Some(e),
            _ => None,
        }
    }
}

/// Decimal columns are written with this precision (Parquet `DECIMAL(38, s)`).
const PRECISION: usize = 38;

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
}

impl Tables {
    /// Builds the output frames.
    pub fn build(
        month: BillingMonth,
        unit: Unit,
        lines: &[InvoiceLine<'_>],
        account_usage: &DataFrame,
        findings: &[Finding],
    ) -> Result<Tables, ExportError> {
        // The lines and their invoices on one thread, the other two tables on another.
        let (billed, rest) = std::thread::scope(|scope| {
            let billed = scope.spawn(|| {
                let invoice_lines = invoice_lines_frame(month, unit, lines).map_err(enc("invoice_lines"))?;
                let invoices = invoices_frame(&invoice_lines).map_err(enc("invoices"))?;
                Ok::<_, ExportError>((invoice_lines, invoices))
            });
            let rest = (|| {
                let account_usage = account_usage_frame(account_usage).map_err(enc("account_usage"))?;
                let findings = findings_frame(findings).map_err(enc("findings"))?;
                Ok::<_, ExportError>((account_usage, findings))
            })();
            (billed.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), rest)
        });
        let ((invoice_lines, invoices), (account_usage, findings)) = (billed?, rest?);
        Ok(Tables { invoice_lines, invoices, account_usage, findings })
    }

    fn named(&self) -> [(&'static str, &DataFrame); 4] {
        [
            ("invoice_lines", &self.invoice_lines),
            ("invoices", &self.invoices),
            ("account_usage", &self.account_usage),
            ("findings", &self.findings),
        ]
    }

    /// Encodes every table as Parquet and CSV.
    ///
    /// The eight files are encoded (and hashed) at once, one thread each:
    /// polars's writers use the cores only part of the time (a large table's
    /// Parquet is compressed column by column, its CSV written batch by
    /// batch).
    pub fn encode(&self) -> Result<Vec<Encoded>, ExportError> {
        let encoders: [(&str, Encoder); 2] = [("parquet", formats::write_parquet), ("csv", formats::write_csv)];
        std::thread::scope(|scope| {
            let jobs: Vec<_> = self
                .named()
                .into_iter()
                .flat_map(|(name, df)| encoders.map(|(ext, write)| (name, df, ext, write)))
                .map(|(name, df, ext, write)| {
                    scope.spawn(move || {
                        let data = write(&mut df.clone()).map_err(enc(name))?;
                        Ok(Encoded::new(format!("{name}.{ext}"), df.height(), data))
                    })
                })
                .collect();
            jobs.into_iter().map(|job| job.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        })
    }
}

/// Encodes a frame as one file format.
type Encoder = fn(&mut DataFrame) -> PolarsResult<Vec<u8>>;

/// One output file, encoded and ready to publish.
#[derive(Debug)]
pub struct Encoded {
    /// File name within the revision (`invoices.csv`).
    pub file: String,
    /// Data rows.
    pub rows: usize,
    /// Content.
    pub data: Vec<u8>,
    /// SHA-256 of the content, hex.
    pub sha256: String,
}

impl Encoded {
    /// A file of `rows` rows with content `data`, hashed here: on the
    /// encoding thread, not in turn while the files are written.
    pub fn new(file: String, rows: usize, data: Vec<u8>) -> Self {
        let sha256 = hex::encode(Sha256::digest(&data));
        Encoded { file, rows, data, sha256 }
    }
}

fn enc(table: &'static str) -> impl Fn(PolarsError) -> ExportError {
    move |source| ExportError::Encode { table, source }
}

/// A `Decimal(38, scale)` column from exact values (each widened to `scale`).
pub fn decimal_column(
    name: &str,
    values: impl IntoIterator<Item = Option<Decimal>>,
    scale: u32,
) -> PolarsResult<Column> {
    let mantissas: Vec<Option<i128>> =
        values.into_iter().map(|v| v.map(|d| money::with_scale(d, scale).mantissa())).collect();
    Ok(Int128Chunked::from_iter_options(name.into(), mantissas.into_iter())
        .into_decimal(PRECISION, scale as usize)?
        .into_series()
        .into_column())
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
        .collect()
}

fn account_usage_frame(metered: &DataFrame) -> PolarsResult<DataFrame> {
    let byte_days = metered.column("byte_days")?.i128()?.clone();
    let as_decimal = byte_days.into_decimal(PRECISION, 0)?.into_series().into_column();
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

/// Prefix of a month's outputs.
pub fn month_prefix(month: BillingMonth) -> String {
    format!("billing_month={month}")
}

/// The key of `latest.json` for a month.
pub fn latest_key(month: BillingMonth) -> String {
    format!("{}/latest.json", month_prefix(month))
}

/// The folder key of a revision.
pub fn revision_prefix(month: BillingMonth, revision: u32) -> String {
    format!("{}/revision={revision}", month_prefix(month))
}

/// Revisions of a month that are complete (have a manifest), ascending.
pub async fn complete_revisions(store: &Store, month: BillingMonth) -> Result<Vec<u32>, ExportError> {
    let prefix = month_prefix(month);
    let mut revs: Vec<u32> = store
        .list(&prefix)
        .await?
        .iter()
        .filter_map(|o| {
            let rest = o.key.strip_prefix(&prefix)?.strip_prefix("/revision=")?;
            let (n, file) = rest.split_once('/')?;
            (file == "manifest.json").then(|| n.parse().ok()).flatten()
        })
        .collect();
    revs.sort_unstable();
    Ok(revs)
}

/// Reads `latest.json` of a month, if any.
pub async fn read_latest(store: &Store, month: BillingMonth) -> Result<Option<Latest>, ExportError> {
    let key = latest_key(month);
    match store.get_opt(&key).await? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| ExportError::Corrupt { location: store.describe(&key), source }),
    }
}

/// Writes a revision: every file, then its manifest, then `latest.json`.
///
/// `manifest` arrives without outputs; they are filled in here from the bytes written.
pub async fn publish(
    store: &Store,
    month: BillingMonth,
    revision: u32,
    files: Vec<Encoded>,
    mut manifest: Manifest,
) -> Result<Manifest, ExportError> {
    let prefix = revision_prefix(month, revision);
    manifest.outputs.clear();
    let progress = crate::logging::progress_bar(files.len() as u64, "writing outputs");
    for Encoded { file, rows, data, sha256 } in files {
        progress.inc(1);
        let size = data.len() as u64;
        store.put(&format!("{prefix}/{file}"), Bytes::from(data)).await?;
        tracing::debug!(file = %file, rows, size, "wrote output");
        manifest.outputs.push(OutputFile { file, rows, bytes: size, sha256 });
        crate::failpoint::reached(&format!("export:{}", manifest.outputs.len()));
    }
    let body = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    store.put(&format!("{prefix}/manifest.json"), Bytes::from(body)).await?;
    progress.finish_and_clear();
    crate::failpoint::reached("before-latest");
    write_latest(store, month, &manifest).await?;
    Ok(manifest)
}

/// Points `latest.json` at a published manifest.
pub async fn write_latest(store: &Store, month: BillingMonth, manifest: &Manifest) -> Result<(), ExportError> {
    let body = serde_json::to_vec_pretty(&Latest::of(manifest)).expect("latest serialises");
    store.put(&latest_key(month), Bytes::from(body)).await?;
    Ok(())
}
