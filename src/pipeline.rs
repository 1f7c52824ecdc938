//! The billing run in order: directory → ingest → meter → rate → export.
//!
//! Orchestration only: each stage is called once with what the previous one
//! produced, timed and logged. Which revision to publish is
//! [`revision::decide`]'s call, the manifest is built by [`export`], alerts
//! are [`alerts`]', and what people read is [`crate::report`]'s. Nothing is
//! written until every stage before export has succeeded, so invalid input
//! never publishes anything.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::alerts;
use crate::config::{Config, RULES_VERSION};
use crate::directory::DirectoryFiles;
use crate::einvoice;
use crate::error::Error;
use crate::export::{self, Billed, Provenance, Totals};
use crate::ingest::{self, IngestOptions};
use crate::manifest::{self, DirectoryInput, DocumentKind, InputObject, Manifest, MonthStatus, UsageInput};
use crate::meter::{self, MeterOptions};
use crate::model::{BillingMonth, Interner};
use crate::rate::{self, RateOptions};
use crate::revision::lock::MonthLock;
use crate::revision::{self, Decision, Fingerprint, Mode, NewRevision};
use crate::storage::Store;

/// What a finished run reports.
#[derive(Debug)]
pub struct RunReport {
    /// The published manifest.
    pub manifest: Manifest,
    /// Where the revision was written.
    pub location: String,
    /// Totals per seller and per currency.
    pub totals: Totals,
    /// The final revision corrected and the number of correction lines.
    pub corrections: Option<(u32, usize)>,
    /// Milliseconds per stage.
    pub stages: StageTimes,
    /// Usage records read (of the month).
    pub records: usize,
    /// Bytes of usage records spilled to local disk while their days were open.
    pub spilled_bytes: u64,
    /// Days too large to hold whose usage was read a second time (see
    /// [`meter::Reduced::reread`]).
    pub days_read_again: usize,
}

/// Days streamed because they outgrew memory whose records were repeated or
/// not in time order per account ([`meter::Reduced::reread`]): their
/// objects (of the `objects` read) are read again, and the days metered
/// the usual way, by a meter of those days only that does not stream.
async fn meter_again(
    usage_store: &Store,
    objects: &[crate::storage::ObjectMeta],
    days: &std::collections::BTreeSet<crate::model::Day>,
    opts: IngestOptions,
    meter_opts: MeterOptions,
    accounts: &mut Interner,
) -> Result<meter::Reduced, Error> {
    tracing::info!(
        days = days.len(),
        first = %crate::model::date_of(*days.first().expect("not empty")),
        "reading usage again for days too large to hold whose records are repeated or not in time order per account"
    );
    let mut again = meter::DayMeter::new(meter_opts)
        .spill_above(opts.memory_budget / 4)
        .without_streaming()
        .only_days(days.clone());
    ingest::reread(usage_store, objects, days, opts, accounts, |batch| {
        again.push_days(batch.days, batch.complete_before).map_err(Error::from)
    })
    .await?;
    Ok(again.reduce()?)
}

/// One month to bill.
#[derive(Debug, Clone)]
pub struct Request {
    /// The month.
    pub month: BillingMonth,
    /// Run or reprocess.
    pub mode: Mode,
    /// The clock: decides the month status (lock expiry is always the wall clock).
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
        /// The latest revision's manifest (its number and status, and the
        /// counts and totals that go into the summary).
        manifest: Box<Manifest>,
    },
    /// A complete revision of an interrupted run matched the inputs:
    /// `latest.json` now names it.
    Adopted {
        /// The month.
        month: BillingMonth,
        /// Its manifest (its counts and totals go into the summary: the run
        /// that made it died before writing one).
        manifest: Box<Manifest>,
    },
}

/// Bills one month under its lock and publishes a new revision if anything changed.
///
/// The lock is renewed while the run goes on, and released whatever
/// happens: a panic in the run is caught, the lock released, and the panic
/// returned as [`Error::Internal`].
pub async fn bill_month(config: &Config, req: &Request) -> Result<Outcome, Error> {
    use futures::FutureExt;
    // A month that has not begun has no usage: billing it would publish
    // its reservations and minimums alone, for nothing used.
    if req.month.first_date() > req.now.date_naive() {
        return Err(crate::config::ConfigError::Invalid {
            setting: "month",
            reason: format!("{} has not begun (it is {} now)", req.month, req.now.format("%Y-%m-%d %H:%M UTC")),
        }
        .into());
    }
    let out = Store::open(&config.out, &config.s3).await?;
    out.require_create_only().await?;
    let lock = MonthLock::acquire(&out, req.month, req.mode.command(), config.lock_ttl).await?;
    let renewal = lock.start_renewal();
    let run = std::panic::AssertUnwindSafe(bill_locked(config, req, &out, &lock)).catch_unwind();
    // Asked to stop (a scheduler's SIGTERM, a terminal's SIGINT): the run
    // is dropped wherever it is, which publication survives as it survives
    // a crash, and the lock is released, so that the next try (another pod,
    // whose host could not tell this process dead) need not wait it out.
    let result = tokio::select! {
        done = run => done.unwrap_or_else(|panic| Err(Error::from_panic(&*panic))),
        signal = stop_requested() => {
            tracing::warn!(signal, month = %req.month, "asked to stop: the run ends here and releases its lock");
            Err(Error::Terminated { signal })
        }
    };
    drop(renewal);
    let released = lock.release().await;
    let outcome = result?;
    released?;
    Ok(outcome)
}

/// Resolves when the process is asked to stop: the signal's number
/// (SIGTERM 15, SIGINT 2). Never, where signals cannot be listened to.
async fn stop_requested() -> u8 {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            return tokio::select! {
                _ = term.recv() => 15,
                _ = int.recv() => 2,
            };
        }
    }
    std::future::pending().await
}

/// The nightly command: the previous month (until it is final), then the
/// current month to date. Every month is attempted; the first error is returned.
pub async fn nightly(config: &Config, now: DateTime<Utc>, requested_by: &str) -> (Vec<Outcome>, Option<Error>) {
    let current = BillingMonth::containing(now.date_naive());
    let previous = current.previous();
    let mut outcomes = Vec::new();
    let mut first_error = None;
    let previous_final = match Store::open(&config.out, &config.s3).await {
        Ok(out) => match manifest::read_latest(&out, previous).await {
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
                let stop = matches!(e, Error::Terminated { .. });
                first_error.get_or_insert(Error::Month { month, source: Box::new(e) });
                if stop {
                    break; // asked to stop: no next month
                }
            }
        }
    }
    (outcomes, first_error)
}

/// An iterator that notes when it was first asked for an item and when it
/// ran out: statements are prepared at the first item, then rendered as
/// publishing asks for them and written meanwhile, so the time between is
/// what they cost the run (preparing, rendering, and writing all but the
/// last few in flight). It also samples resident memory every
/// [`Timed::SAMPLE`] items, for the most they add to it.
struct Timed<I> {
    inner: I,
    items: usize,
    span: std::sync::Arc<Span>,
}

/// What [`Timed`] saw: the first and the last call, and the most resident
/// memory sampled (after FOCUS too, with the time FOCUS took).
#[derive(Default)]
struct Span {
    first: std::sync::OnceLock<Instant>,
    last: std::sync::OnceLock<Instant>,
    resident: std::sync::atomic::AtomicU64,
    focus: std::sync::OnceLock<Duration>,
}

impl Span {
    fn sample(&self) {
        let now = crate::memory::resident_bytes().unwrap_or(0);
        self.resident.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<I> Timed<I> {
    const SAMPLE: usize = 64;
}

impl<I: Iterator> Iterator for Timed<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        self.span.first.get_or_init(Instant::now);
        let item = self.inner.next();
        if self.items.is_multiple_of(Self::SAMPLE) || item.is_none() {
            self.span.sample();
        }
        self.items += 1;
        if item.is_none() {
            self.span.last.get_or_init(Instant::now);
        }
        item
    }
}

/// Milliseconds spent in each stage of one month's run ("focus" and
/// "statements" are parts of "export").
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

async fn bill_locked(config: &Config, req: &Request, out: &Store, lock: &MonthLock) -> Result<Outcome, Error> {
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
        settings: config.rules.settings(),
        rules_version: RULES_VERSION.to_owned(),
    };
    let history = manifest::history(out, month).await?;
    let mut latest = manifest::read_latest(out, month).await?.map(|l| l.revision);
    let clock = revision::status_at(month, req.now, config.grace_days);
    // A complete revision an interrupted run left unpublished is published
    // first; the run then decides from it.
    let mut adopted = false;
    let new = loop {
        match revision::decide(&history, latest, &fingerprint, clock, &req.mode) {
            Decision::Adopt(newest) => {
                lock.check().await?;
                export::write_latest(out, month, newest).await?;
                tracing::warn!(
                    revision = newest.revision,
                    status = newest.status.as_str(),
                    "published a complete revision that an interrupted run left without latest.json"
                );
                adopted = true;
                latest = Some(newest.revision);
            }
            // What the interrupted run published is what this run would bill.
            Decision::Unchanged { revision, .. } => {
                let manifest = Box::new(
                    history
                        .iter()
                        .find(|m| m.revision == revision)
                        .cloned()
                        .expect("the latest revision is in the history"),
                );
                return Ok(if adopted {
                    Outcome::Adopted { month, manifest }
                } else {
                    Outcome::Unchanged { month, manifest }
                });
            }
            Decision::Refuse { revision, changes } => {
                // A directory that does not validate is said as such (exit
                // 2), not as a change to reprocess: a reprocess could not
                // bill it either.
                tokio::task::spawn_blocking(move || dir_files.parse())
                    .await
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))?;
                return Err(Error::ReprocessRefused { month, revision, changes });
            }
            Decision::Bill(new) => break new,
        }
    };
    // A reprocess re-bills a month that was billed; a first revision is a
    // plain run's, so that the manifest never calls it a reprocess.
    if new.previous.is_none() && matches!(req.mode, revision::Mode::Reprocess { .. }) {
        return Err(crate::config::ConfigError::Invalid {
            setting: "month",
            reason: format!(
                "{month} has never been billed: `capbill run --month {month}` bills it; reprocess re-bills a billed month"
            ),
        }
        .into());
    }
    // A final month is corrected in the unit it was issued in: corrections
    // subtract quantities, and TB-months less TiB-months mean nothing.
    if let Some(issued) = new.corrects.and_then(|r| history.iter().find(|m| m.revision == r)) {
        let unit = &fingerprint.settings["unit"];
        if let Some(was) = issued.settings.get("unit").filter(|was| *was != unit) {
            return Err(crate::config::ConfigError::Invalid {
                setting: "unit",
                reason: format!(
                    "revision {} of {month} was issued in {was} and this run bills in {unit}; a final month is \
                     corrected in the unit it was issued in (set unit = {was} to reprocess it)",
                    issued.revision
                ),
            }
            .into());
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
    // A quarter of the memory budget for the records of open days and of
    // closed days not yet reduced; beyond it the earliest wait on local
    // disk until their day closes.
    let mut day_meter = meter::DayMeter::new(meter_opts).spill_above(config.memory_budget / 4);
    // Account ids, in the order accounts are read; metering adds the
    // directory's accounts that have no records.
    let mut accounts = Interner::default();
    // Time ingestion spent handing records to the meter: waiting while the
    // metering thread is still busy with a day.
    let mut metering = std::time::Duration::ZERO;
    crate::failpoint::reached_async("planned").await;
    let ingest_opts = IngestOptions {
        month,
        skip_bad_records: config.rules.skip_bad_records,
        concurrency: config.s3.concurrency,
        memory_budget: config.memory_budget,
    };
    let usage = ingest::ingest(&usage_store, plan, ingest_opts, &mut accounts, |batch| {
        let t = Instant::now();
        let r = day_meter.push_days(batch.days, batch.complete_before).map_err(Error::from);
        metering += t.elapsed();
        r
    })
    .await;
    let ingest_ms = stages.done("ingest", t);
    crate::failpoint::reached("after-ingest");
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

    // What ingestion allocated and freed over and over is done with: in a
    // large month, freed memory goes back to the system at once, and once
    // the statements are prepared after a tenth of a second (rendering them
    // frees and allocates the same buffers over and over).
    let hand_back = crate::memory::hand_back_freed_memory_above(config.memory_budget / 2);
    let large = hand_back.is_some();
    if large {
        tracing::debug!("freed memory is handed back at once until the statements are prepared");
    }
    let t = Instant::now();
    let records_in = usage.records;
    let mut reduced = day_meter.reduce()?;
    let days_read_again = reduced.reread().len();
    if days_read_again > 0 {
        let days = reduced.reread().clone();
        let again = meter_again(&usage_store, &usage.objects, &days, ingest_opts, meter_opts, &mut accounts).await?;
        reduced.add_reread(again);
    }
    let mut metered = reduced.finish(&directory, accounts, &rate::uncontracted_days(&directory, month))?;
    let elapsed_ms = stages.done("meter", t);
    let spilled_bytes = metered.spilled_bytes;
    tracing::info!(
        stage = "meter",
        elapsed_ms,
        rows_in = records_in,
        rows_out = metered.account_days,
        accounts = metered.account_usage.height(),
        spilled_bytes = metered.spilled_bytes,
        "usage metered"
    );

    let t = Instant::now();
    let rated = rate::rate(&directory, &metered, RateOptions { month, unit: config.rules.unit })?;
    let elapsed_ms = stages.done("rate", t);
    tracing::info!(stage = "rate", elapsed_ms, lines = rated.lines.len(), "lines rated");
    // The owners' daily usage is rating's alone (67 MB for 127,537 entities):
    // the outputs read the accounts'.
    drop(std::mem::take(&mut metered.entity_days));

    let t = Instant::now();
    let NewRevision { revision, status, previous, corrects } = new;
    let mut billed = Billed::build(month, config.rules.unit, &rated.lines, &metered.account_usage)?;
    let mut findings = usage.findings;
    findings.extend(metered.findings.iter().cloned());
    findings.extend(rated.findings);
    // E-invoices (spec 5): every invoice taxed once; those whose parties
    // lack data become findings (in provisional revisions too, so that the
    // data is fixed before the month is final). A final revision numbers
    // and writes its documents.
    let mut documents = None;
    if let Some(settings) = &config.invoicing {
        let invoices = einvoice::lines_by_invoice(&billed.invoice_lines)
            .map_err(|source| einvoice::EinvoiceError::Frame { what: "this revision".into(), source })?;
        let planned = einvoice::plan(&directory, &invoices, settings)?;
        findings.extend(planned.findings.iter().cloned());
        if status == MonthStatus::Final {
            let previous = match corrects {
                Some(prev) => Some(einvoice::read_previous(out, month, prev, &history).await?),
                None => None,
            };
            let issuance = einvoice::issuance(&directory, settings, &invoices, &planned, previous.as_ref())?;
            findings.extend(issuance.findings.iter().cloned());
            let wanted: Vec<_> = issuance
                .issues
                .iter()
                .map(|i| einvoice::Wanted {
                    seller_id: i.draft.key.0.clone(),
                    buyer_id: i.draft.key.1.clone(),
                    currency: i.draft.key.2.clone(),
                    kind: i.kind,
                })
                .collect();
            // Numbers are taken only by a run that still holds the month,
            // right before it publishes.
            lock.check().await?;
            let issue_date = req.now.date_naive();
            let numbers = einvoice::take(out, month, revision, chrono::Datelike::year(&issue_date), &wanted).await?;
            crate::failpoint::reached("after-numbers");
            let mut by_invoice = issuance.carried.clone();
            for (i, n) in issuance.issues.iter().zip(&numbers) {
                if i.kind == DocumentKind::Invoice {
                    by_invoice.insert(i.draft.key.clone(), n.clone());
                }
            }
            billed.number_invoices(&by_invoice)?;
            documents = Some(einvoice::documents(&directory, settings, month, issue_date, &issuance.issues, &numbers)?);
        }
    }
    if let Some(share) = config.total_drop_share
        && let Some(before) = manifest::read_latest(out, month.previous()).await?
    {
        findings.extend(alerts::total_dropped(share, month, &before, &billed.totals.per_currency));
    }
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let tables = billed.with_findings(&findings)?;
    // The files after the tables, made before publishing (small).
    let mut files = Vec::new();

    // A final revision after an earlier final one carries corrections.
    let mut corrections = None;
    let mut corrections_df = None;
    if let Some(prev) = corrects {
        let before = revision::read_lines(out, month, prev).await?;
        let enc = |source| export::ExportError::Encode { table: "corrections", source };
        let after = revision::lines_by_key(&tables.invoice_lines).map_err(enc)?;
        let changes = revision::line_changes(&before, &after);
        let df = revision::corrections_frame(month, revision, prev, &changes).map_err(enc)?;
        files.extend(export::encode_table("corrections", &df)?);
        corrections = Some((prev, changes.len()));
        corrections_df = Some((prev, df));
    }
    // The e-invoices join the revision like every other output.
    let documents = documents.map(|(docs, entries)| {
        files.extend(docs);
        entries
    });
    // The tables, FOCUS and the statements are made only when publishing
    // reaches them, once the files before them are with the writers (and
    // freed as they are written), so that memory never holds every output
    // at once. FOCUS's time and the statements' span are the "focus" and
    // "statements" stages, parts of "export".
    let resident_before = crate::memory::resident_bytes().unwrap_or(0);
    let span = std::sync::Arc::new(Span::default());
    let focus = export::deferred(|| {
        let t = Instant::now();
        // A month large enough to hand memory back encodes FOCUS's two
        // files one after the other.
        let files = export::focus::encode(
            &export::focus::FocusInput {
                month,
                revision,
                unit: config.rules.unit,
                lines: &rated.lines,
                directory: &directory,
                corrections: corrections_df.as_ref().map(|(prev, df)| (*prev, df)),
                invoices: Some(&tables.invoices),
            },
            large,
        );
        span.sample();
        let _ = span.focus.set(t.elapsed());
        files
    });
    let statement_inputs = export::StatementInputs {
        month,
        revision,
        status,
        unit: config.rules.unit,
        directory: &directory,
        tables: &tables,
        daily_usage: &metered.daily_usage,
        accounts: &metered.accounts,
        corrections: corrections_df.as_ref().map(|(_, df)| df),
    };
    let statements = export::deferred(|| {
        let prepared = export::statements(statement_inputs);
        if let Some(h) = &hand_back {
            h.keep_for(100);
        }
        prepared
    });
    let statements = Timed { inner: statements, items: 0, span: span.clone() };

    let provenance = Provenance {
        month,
        revision,
        status,
        generated_at: req.now,
        requested_by: &req.requested_by,
        reason: req.mode.reason(),
        previous_revision: previous,
        corrects_revision: corrects,
        config_hash: &fingerprint.config_hash,
        rules: &config.rules,
        directory: DirectoryInput {
            location: config.directory.to_string(),
            hash: directory.hash.clone(),
            objects: directory.sources.iter().map(InputObject::from).collect(),
        },
        usage: UsageInput {
            location: config.usage.to_string(),
            objects: fingerprint.usage.clone(),
            pruned_objects: usage.pruned,
            records_outside_month: usage.outside_month,
        },
    };
    let mut manifest = export::manifest(provenance, &tables, &findings);
    manifest.documents = documents.unwrap_or_default();
    // Nothing is written unless this run still holds the month, and
    // `latest.json` only if it still does after the revision is written.
    lock.check().await?;
    let files = tables.encode().chain(files.into_iter().map(Ok)).chain(focus).chain(statements);
    let manifest = export::publish(out, month, revision, files, manifest).await?;
    let focus_ms = span.focus.get().map_or(0, |d| d.as_millis() as u64);
    stages.0.insert("focus", focus_ms);
    let statements_ms =
        span.first.get().zip(span.last.get()).map_or(Duration::ZERO, |(first, last)| *last - *first).as_millis() as u64;
    // What FOCUS and the statements added to resident memory at most (sampled).
    let outputs_rss_mib =
        span.resident.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(resident_before) >> 20;
    stages.0.insert("statements", statements_ms);
    crate::failpoint::reached("before-latest");
    lock.check().await?;
    export::write_latest(out, month, &manifest).await?;
    let elapsed_ms = stages.done("export", t);
    tracing::info!(
        stage = "export",
        elapsed_ms,
        revision,
        focus_ms,
        statements_ms,
        outputs_rss_mib,
        "outputs published"
    );
    Ok(Outcome::Published(Box::new(RunReport {
        location: out.describe(&manifest::revision_prefix(month, revision)),
        manifest,
        totals: tables.totals,
        corrections,
        stages,
        records: records_in,
        spilled_bytes,
        days_read_again,
    })))
}
