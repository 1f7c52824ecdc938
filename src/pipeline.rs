//! The billing run in order: directory → ingest → meter → rate → export.
//!
//! Orchestration only: each stage is called once with what the previous one
//! produced, timed and logged. Nothing is written until every stage before
//! export has succeeded, so invalid input never publishes anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use polars::prelude::*;
use rust_decimal::Decimal;

use crate::config::{Config, RULES_VERSION};
use crate::directory::Directory;
use crate::error::Error;
use crate::export::manifest::{Counts, CurrencyTotal, DirectoryInput, InputObject, UsageInput};
use crate::export::{self, Manifest, Tables};
use crate::ingest::{self, IngestOptions};
use crate::meter::{self, MeterOptions};
use crate::model::BillingMonth;
use crate::rate::{self, RateOptions};
use crate::storage::Store;

/// What a finished run reports.
#[derive(Debug)]
pub struct RunReport {
    /// The published manifest.
    pub manifest: Manifest,
    /// Where the revision was written.
    pub location: String,
    /// Totals per (seller, currency).
    pub seller_totals: Vec<(String, String, Decimal)>,
}

impl RunReport {
    /// A short summary for people.
    pub fn summary(&self) -> String {
        let m = &self.manifest;
        let mut s = String::new();
        let _ = writeln!(s, "capbill: billed {} as revision {}", m.billing_month, m.revision);
        let _ = writeln!(
            s,
            "  {} invoice lines on {} invoices, {} storage accounts metered, {} usage objects read",
            m.counts.invoice_lines,
            m.counts.invoices,
            m.counts.accounts,
            m.usage.objects.len()
        );
        let _ = writeln!(s, "  totals per seller:");
        for (seller, currency, total) in &self.seller_totals {
            let _ = writeln!(s, "    {seller:<24} {total:>14} {currency}");
        }
        for t in &m.totals {
            let _ = writeln!(s, "    {:<24} {:>14} {}", "(all sellers)", t.total, t.currency);
        }
        if m.counts.findings.is_empty() {
            let _ = writeln!(s, "  findings: none");
        } else {
            let _ = writeln!(s, "  findings:");
            for (kind, n) in &m.counts.findings {
                let _ = writeln!(s, "    {kind:<28} {n}");
            }
        }
        let _ = writeln!(s, "  outputs: {}", self.location);
        s
    }
}

/// Bills `month` with `config` and publishes a new revision.
pub async fn run(config: &Config, month: BillingMonth) -> Result<RunReport, Error> {
    let started = chrono::Utc::now();

    let t = Instant::now();
    let dir_store = Store::open(&config.directory, &config.s3).await?;
    let directory = Directory::load(&dir_store).await?;
    tracing::info!(
        stage = "directory",
        elapsed_ms = t.elapsed().as_millis() as u64,
        entities = directory.entities.len(),
        accounts = directory.accounts.len(),
        contracts = directory.contracts.len(),
        "partner directory loaded"
    );

    let t = Instant::now();
    let usage_store = Store::open(&config.usage, &config.s3).await?;
    let usage = ingest::ingest(
        &usage_store,
        IngestOptions { month, skip_bad_records: config.rules.skip_bad_records, concurrency: config.s3.concurrency },
    )
    .await?;
    tracing::info!(
        stage = "ingest",
        elapsed_ms = t.elapsed().as_millis() as u64,
        objects = usage.objects.len(),
        bytes_read = usage.objects.iter().map(|o| o.size).sum::<u64>(),
        records = usage.records.height(),
        outside_month = usage.outside_month,
        pruned = usage.pruned,
        "usage read"
    );

    let t = Instant::now();
    let records_in = usage.records.height();
    let metered = meter::meter(
        usage.records,
        &directory,
        MeterOptions { month, unit: config.rules.unit, daily_method: config.rules.daily_method },
    )?;
    tracing::info!(
        stage = "meter",
        elapsed_ms = t.elapsed().as_millis() as u64,
        rows_in = records_in,
        rows_out = metered.account_days.height(),
        accounts = metered.account_usage.height(),
        "usage metered"
    );

    let t = Instant::now();
    let rated = rate::rate(&directory, &metered, RateOptions { month, unit: config.rules.unit })?;
    tracing::info!(
        stage = "rate",
        elapsed_ms = t.elapsed().as_millis() as u64,
        lines = rated.lines.len(),
        "lines rated"
    );

    let t = Instant::now();
    let mut findings = usage.findings;
    findings.extend(metered.findings.iter().cloned());
    findings.extend(rated.findings);
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let tables = Tables::build(month, config.rules.unit, &rated.lines, &metered.account_usage, &findings)?;
    let files = tables.encode()?;

    let mut by_kind = BTreeMap::new();
    for f in &findings {
        *by_kind.entry(f.kind.as_str().to_owned()).or_insert(0) += 1;
    }
    let (seller_totals, totals) =
        totals(&tables.invoice_lines).map_err(|source| export::ExportError::Encode { table: "invoices", source })?;

    let out_store = Store::open(&config.out, &config.s3).await?;
    let revision = export::complete_revisions(&out_store, month).await?.last().map_or(1, |r| r + 1);
    let manifest = Manifest {
        billing_month: month.to_string(),
        revision,
        generated_at: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        capbill_version: env!("CARGO_PKG_VERSION").to_owned(),
        rules_version: RULES_VERSION.to_owned(),
        config_hash: config.hash(),
        settings: serde_json::to_value(config.rules).expect("settings serialise"),
        directory: DirectoryInput {
            location: config.directory.to_string(),
            hash: directory.hash.clone(),
            objects: directory.sources.iter().map(InputObject::from).collect(),
        },
        usage: UsageInput {
            location: config.usage.to_string(),
            objects: usage.objects.iter().map(InputObject::from).collect(),
            pruned_objects: usage.pruned,
            records_outside_month: usage.outside_month,
        },
        outputs: Vec::new(),
        totals,
        counts: Counts {
            invoice_lines: tables.invoice_lines.height(),
            invoices: tables.invoices.height(),
            accounts: tables.account_usage.height(),
            findings: by_kind,
        },
    };
    let manifest = export::publish(&out_store, month, revision, files, manifest).await?;
    tracing::info!(stage = "export", elapsed_ms = t.elapsed().as_millis() as u64, revision, "outputs published");
    Ok(RunReport { location: out_store.describe(&export::revision_prefix(month, revision)), manifest, seller_totals })
}

/// Totals per (seller, currency) and per currency, summed in polars.
type SellerTotals = Vec<(String, String, Decimal)>;

fn totals(lines: &DataFrame) -> PolarsResult<(SellerTotals, Vec<CurrencyTotal>)> {
    let per_seller = lines
        .clone()
        .lazy()
        .group_by([col("seller_id"), col("currency")])
        .agg([col("amount").sum()])
        .sort(["seller_id", "currency"], SortMultipleOptions::default())
        .collect()?;
    let per_currency = lines
        .clone()
        .lazy()
        .group_by([col("currency")])
        .agg([col("amount").sum()])
        .sort(["currency"], SortMultipleOptions::default())
        .collect()?;
    let decimals = |df: &DataFrame| -> PolarsResult<Vec<Decimal>> {
        let a = df.column("amount")?.decimal()?;
        let scale = a.scale() as u32;
        Ok(a.physical().iter().map(|v| Decimal::from_i128_with_scale(v.unwrap_or(0), scale)).collect())
    };
    let sellers = per_seller.column("seller_id")?.str()?;
    let cur = per_seller.column("currency")?.str()?;
    let seller_totals = decimals(&per_seller)?
        .into_iter()
        .enumerate()
        .map(|(i, t)| (sellers.get(i).unwrap_or_default().to_owned(), cur.get(i).unwrap_or_default().to_owned(), t))
        .collect();
    let cur = per_currency.column("currency")?.str()?;
    let totals = decimals(&per_currency)?
        .into_iter()
        .enumerate()
        .map(|(i, total)| CurrencyTotal { currency: cur.get(i).unwrap_or_default().to_owned(), total })
        .collect();
    Ok((seller_totals, totals))
}
