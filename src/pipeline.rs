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
use serde::Serialize;

use chrono::{DateTime, Utc};

use crate::config::{Config, RULES_VERSION};
use crate::directory::DirectoryFiles;
use crate::error::Error;
use crate::export::manifest::{Counts, CurrencyTotal, DirectoryInput, InputObject, UsageInput};
use crate::export::{self, Encoded, Manifest, Tables};
use crate::formats;
use crate::ingest::{self, IngestOptions};
use crate::meter::{self, MeterOptions};
use crate::model::{BillingMonth, Finding, FindingKind, Interner};
use crate::rate::{self, RateOptions};
use crate::revision::lock::MonthLock;
use crate::revision::{self, Fingerprint, MonthStatus};
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
    /// The final revision corrected and the number of correction lines.
    pub corrections: Option<(u32, usize)>,
    /// Milliseconds per stage.
    pub stages: StageTimes,
    /// Usage records read (of the month).
    pub records: usize,
}

impl RunReport {
    /// A short summary for people.
    pub fn summary(&self) -> String {
        let m = &self.manifest;
        let mut s = String::new();
        let _ = writeln!(s, "capbill: billed {} as revision {} ({})", m.billing_month, m.revision, m.status.as_str());
        if let Some(reason) = &m.reason {
            let _ = writeln!(s, "  reprocessed by {}: {reason}", m.requested_by);
        }
        if let Some((prev, n)) = self.corrections {
            let _ = writeln!(s, "  corrections against final revision {prev}: {n} lines (corrections.csv)");
        }
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

/// What a billing invocation is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A normal run: refuses to change a final month.
    Run,
    /// An explicit reprocess of a month, with the operator's reason.
    Reprocess {
        /// Why (goes into the manifest).
        reason: String,
    },
}

/// One month to bill.
#[derive(Debug, Clone)]
pub struct Request {
    /// The month.
    pub month: BillingMonth,
    /// Run or reprocess.
    pub mode: Mode,
    /// The clock: decides the month status and lock expiry.
    pub now: DateTime<Utc>,
    /// `user@host` of whoever asked.
    pub requested_by: String,
}

/// What a billing invocation did.
#[derive(Debug)]
pub enum Outcome {
    /// A new revision was published.
    Published(Box<RunReport>),
    /// Inputs, configuration and status match the latest revision: nothing published.
    Unchanged {
        /// The month.
        month: BillingMonth,
        /// Its latest revision.
        revision: u32,
        /// Its status.
        status: MonthStatus,
    },
    /// A complete revision of an interrupted run matched the inputs:
    /// `latest.json` now names it.
    Adopted {
        /// The month.
        month: BillingMonth,
        /// The revision now latest.
        revision: u32,
        /// Its status.
        status: MonthStatus,
    },
}

impl Outcome {
    /// A short summary for people.
    pub fn summary(&self) -> String {
        match self {
            Outcome::Published(r) => r.summary(),
            Outcome::Unchanged { month, revision, status } => format!(
                "capbill: {month} unchanged: inputs and configuration match revision {revision} ({}); nothing published\n",
                status.as_str()
            ),
            Outcome::Adopted { month, revision, status } => format!(
                "capbill: {month}: completed the publication of revision {revision} ({}), interrupted before latest.json\n",
                status.as_str()
            ),
        }
    }
}

/// Bills one month under its lock and publishes a new revision if anything changed.
pub async fn bill_month(config: &Config, req: &Request) -> Result<Outcome, Error> {
    let out = Store::open(&config.out, &config.s3).await?;
    let command = match req.mode {
        Mode::Run => "run",
        Mode::Reprocess { .. } => "reprocess",
    };
    let lock = MonthLock::acquire(&out, req.month, command, req.now, config.lock_ttl).await?;
    let result = bill_locked(config, req, &out).await;
    let released = lock.release().await;
    let outcome = result?;
    released?;
    Ok(outcome)
}

/// The nightly command: the previous month (until it is final), then the
/// current month to date. Every month is attempted; the first error is returned.
pub async fn nightly(config: &Config, now: DateTime<Utc>, requested_by: &str) -> (Vec<Outcome>, Option<Error>) {
    let current = BillingMonth::containing(now.date_naive());
    let previous = current.previous();
    let mut outcomes = Vec::new();
    let mut first_error = None;
    let previous_final = match Store::open(&config.out, &config.s3).await {
        Ok(out) => match export::read_latest(&out, previous).await {
            Ok(latest) => latest.is_some_and(|l| l.status == MonthStatus::Final),
            Err(e) => {
                first_error = Some(e.into());
                true
            }
        },
        Err(e) => return (outcomes, Some(e.into())),
    };
    let months = if previous_final { vec![current] } else { vec![previous, current] };
    for month in months {
        let req = Request { month, mode: Mode::Run, now, requested_by: requested_by.to_owned() };
        match bill_month(config, &req).await {
            Ok(o) => outcomes.push(o),
            Err(e) => {
                tracing::error!(month = %month, error = %crate::error::chain(&e), "billing the month failed");
                first_error.get_or_insert(e);
            }
        }
    }
    (outcomes, first_error)
}

/// Milliseconds spent in each stage of one month's run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageTimes(pub BTreeMap<&'static str, u64>);

impl StageTimes {
    /// Records a stage that started at `t`; returns its milliseconds.
    fn done(&mut self, stage: &'static str, t: Instant) -> u64 {
        let ms = t.elapsed().as_millis() as u64;
        self.0.insert(stage, ms);
        ms
    }
}

async fn bill_locked(config: &Config, req: &Request, out: &Store) -> Result<Outcome, Error> {
    let month = req.month;
    let mut stages = StageTimes::default();
    let t = Instant::now();
    let dir_store = Store::open(&config.directory, &config.s3).await?;
    let dir_files = DirectoryFiles::fetch(&dir_store).await?;

    // Decide from the listing alone whether anything changed.
    let usage_store = Store::open(&config.usage, &config.s3).await?;
    let plan = ingest::plan(&usage_store, month, config.s3.concurrency).await?;
    let fingerprint = Fingerprint {
        directory_hash: dir_files.hash.clone(),
        usage: plan.objects.iter().map(|(o, _)| InputObject::from(o)).collect(),
        config_hash: config.hash(),
        rules_version: RULES_VERSION.to_owned(),
    };
    let history = revision::manifests(out, month).await?;
    let latest = match export::read_latest(out, month).await? {
        Some(l) => history.iter().find(|m| m.revision == l.revision),
        None => None,
    };
    let mut status = MonthStatus::at(month, req.now, config.grace_days);
    // A run killed between its manifest and latest.json left a complete,
    // unpublished revision: if it is exactly what this run would bill, publish it.
    if let Some(newest) = history.last()
        && latest.is_none_or(|l| l.revision < newest.revision)
        && fingerprint.changes_since(&Fingerprint::of(newest)).is_empty()
        && newest.status == latest.map_or(status, |l| status.max(l.status))
    {
        export::write_latest(out, month, newest).await?;
        return Ok(Outcome::Adopted { month, revision: newest.revision, status: newest.status });
    }
    if let Some(l) = latest {
        let changes = fingerprint.changes_since(&Fingerprint::of(l));
        status = status.max(l.status);
        if changes.is_empty() && l.status == status {
            return Ok(Outcome::Unchanged { month, revision: l.revision, status });
        }
        if l.status == MonthStatus::Final && req.mode == Mode::Run {
            return Err(Error::ReprocessRefused { month, revision: l.revision, changes });
        }
    }

    // The directory is parsed and validated on its own thread while usage is
    // read: reading usage needs none of it. Its errors still come first.
    let parsing = tokio::task::spawn_blocking(move || {
        let directory = dir_files.parse();
        (directory, t.elapsed())
    });

    // Ingest and meter as a stream: each object's records go to the meter,
    // which reduces every day to daily values as soon as the day is complete.
    let t = Instant::now();
    let meter_opts = MeterOptions { month, unit: config.rules.unit, daily_method: config.rules.daily_method };
    let mut day_meter = meter::DayMeter::new(meter_opts);
    // Account ids, in the order accounts are read; metering adds the
    // directory's accounts that have no records.
    let mut accounts = Interner::default();
    // Time ingestion spent handing records to the meter: waiting while the
    // metering thread is still busy with a day.
    let mut metering = std::time::Duration::ZERO;
    let usage = ingest::ingest(
        &usage_store,
        plan,
        IngestOptions { month, skip_bad_records: config.rules.skip_bad_records, concurrency: config.s3.concurrency },
        &mut accounts,
        |batch| {
            let t = Instant::now();
            let r = day_meter.push_days(batch.days, batch.complete_before).map_err(Error::from);
            metering += t.elapsed();
            r
        },
    )
    .await;
    let ingest_ms = stages.done("ingest", t);
    let (directory, directory_time) =
        parsing.await.unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
    let directory = directory?;
    stages.0.insert("directory", directory_time.as_millis() as u64);
    tracing::info!(
        stage = "directory",
        elapsed_ms = directory_time.as_millis() as u64,
        entities = directory.entities.len(),
        accounts = directory.accounts.len(),
        contracts = directory.contracts.len(),
        "partner directory loaded"
    );
    let usage = usage?;
    tracing::info!(
        stage = "ingest",
        elapsed_ms = ingest_ms,
        meter_handoff_ms = metering.as_millis() as u64,
        objects = usage.objects.len(),
        bytes_read = usage.objects.iter().map(|o| o.size).sum::<u64>(),
        records = usage.records,
        outside_month = usage.outside_month,
        pruned = usage.pruned,
        "usage read and reduced to daily values"
    );

    let t = Instant::now();
    let records_in = usage.records;
    let metered =
        day_meter.finish(&directory, accounts, &directory.uncontracted_days(month.first_day(), month.end_day()))?;
    let elapsed_ms = stages.done("meter", t);
    tracing::info!(
        stage = "meter",
        elapsed_ms,
        rows_in = records_in,
        rows_out = metered.account_days,
        accounts = metered.account_usage.height(),
        "usage metered"
    );

    let t = Instant::now();
    let rated = rate::rate(&directory, &metered, RateOptions { month, unit: config.rules.unit });
    let elapsed_ms = stages.done("rate", t);
    tracing::info!(stage = "rate", elapsed_ms, lines = rated.lines.len(), "lines rated");

    let t = Instant::now();
    let mut findings = usage.findings;
    findings.extend(metered.findings.iter().cloned());
    findings.extend(rated.findings);
    findings.extend(drop_findings(config, out, month, &rated.lines).await?);
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let tables = Tables::build(month, config.rules.unit, &rated.lines, &metered.account_usage, &findings)?;
    let mut files = tables.encode()?;
    let revision = history.last().map_or(1, |m| m.revision + 1);

    // A final revision after an earlier final one carries corrections.
    let previous_final = history.iter().rev().find(|m| m.status == MonthStatus::Final).map(|m| m.revision);
    let mut corrections = None;
    if let (MonthStatus::Final, Some(prev)) = (status, previous_final) {
        let before = revision::read_lines(out, month, prev).await?;
        let enc = |source| export::ExportError::Encode { table: "corrections", source };
        let after = revision::lines_by_key(&tables.invoice_lines).map_err(enc)?;
        let changes = revision::line_changes(&before, &after);
        let mut df = revision::corrections_frame(month, revision, prev, &changes).map_err(enc)?;
        let rows = df.height();
        files.push(Encoded::new("corrections.parquet".to_owned(), rows, formats::write_parquet(&mut df).map_err(enc)?));
        files.push(Encoded::new("corrections.csv".to_owned(), rows, formats::write_csv(&mut df).map_err(enc)?));
        corrections = Some((prev, changes.len()));
    }

    let mut by_kind = BTreeMap::new();
    for f in &findings {
        *by_kind.entry(f.kind.as_str().to_owned()).or_insert(0) += 1;
    }
    let (seller_totals, totals) =
        totals(&tables.invoice_lines).map_err(|source| export::ExportError::Encode { table: "invoices", source })?;
    let manifest = Manifest {
        billing_month: month.to_string(),
        revision,
        status,
        generated_at: req.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        requested_by: req.requested_by.clone(),
        reason: match &req.mode {
            Mode::Run => None,
            Mode::Reprocess { reason } => Some(reason.clone()),
        },
        previous_revision: latest.map(|l| l.revision),
        corrects_revision: corrections.map(|(prev, _)| prev),
        capbill_version: env!("CARGO_PKG_VERSION").to_owned(),
        rules_version: RULES_VERSION.to_owned(),
        config_hash: fingerprint.config_hash.clone(),
        settings: serde_json::to_value(config.rules).expect("settings serialise"),
        directory: DirectoryInput {
            location: config.directory.to_string(),
            hash: directory.hash.clone(),
            objects: directory.sources.iter().map(InputObject::from).collect(),
        },
        usage: UsageInput {
            location: config.usage.to_string(),
            objects: fingerprint.usage,
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
    let manifest = export::publish(out, month, revision, files, manifest).await?;
    let elapsed_ms = stages.done("export", t);
    tracing::info!(stage = "export", elapsed_ms, revision, "outputs published");
    Ok(Outcome::Published(Box::new(RunReport {
        location: out.describe(&export::revision_prefix(month, revision)),
        manifest,
        seller_totals,
        corrections,
        stages,
        records: records_in,
    })))
}

/// `total_dropped` findings: a currency whose total fell by more than the
/// configured share compared with the previous month's latest revision.
async fn drop_findings(
    config: &Config,
    out: &Store,
    month: BillingMonth,
    lines: &[crate::model::InvoiceLine<'_>],
) -> Result<Vec<Finding>, Error> {
    let Some(share) = config.total_drop_share else { return Ok(Vec::new()) };
    let Some(prev) = export::read_latest(out, month.previous()).await? else { return Ok(Vec::new()) };
    let mut now: BTreeMap<&str, Decimal> = BTreeMap::new();
    for l in lines {
        *now.entry(l.currency.as_str()).or_default() += l.amount;
    }
    Ok(prev
        .totals
        .iter()
        .filter_map(|t| {
            let current = now.get(t.currency.as_str()).copied().unwrap_or_default();
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
                        prev.revision
                    ),
                )
            })
        })
        .collect())
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
