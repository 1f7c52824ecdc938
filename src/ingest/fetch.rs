//! Fetching a plan's objects: concurrency, the memory budget of objects
//! read ahead, parser threads, buffer recycling, and the streaming order
//! (objects without a day folder first, then by day) with the
//! [`Batch::complete_before`] promise that follows from it. Dispatches each
//! object to the reader of its format.
//!
//! It must not look inside records: what a record is and whether it is kept
//! belongs to the readers and the sink.

use futures::StreamExt;
use polars::prelude::DataFrame;

use super::sink::RecordSink;
use super::{Batch, IngestError, IngestOptions, Ingested, Plan, parquet, partner_api, prune, text};
use crate::formats::Format;
use crate::model::{Day, Interner};
use crate::storage::ObjectMeta;
use crate::storage::Store;

/// Reads every object of the plan and hands each one's records to `consume`.
///
/// Objects are fetched `concurrency` at a time and parsed straight from
/// memory (no temporary files). They are processed in a streaming order:
/// objects whose folders name no day first, then day-partitioned ones by day.
/// An object under a day folder must hold records of that day (or of the
/// day before or after, for records at midnight); other records in it are
/// malformed. So after the objects of day D, every day before D−1 is
/// complete, and [`Batch::complete_before`] says so. "Last wins" still
/// follows key order: each record carries its object's position in it.
/// Account ids are interned into `accounts`, which the caller hands on to
/// metering.
pub async fn ingest<E: From<IngestError>>(
    store: &Store,
    plan: Plan,
    opts: IngestOptions,
    accounts: &mut Interner,
    mut consume: impl FnMut(Batch) -> Result<(), E>,
) -> Result<Ingested, E> {
    let Plan { objects: listed, mut findings, pruned } = plan;
    let mut order: Vec<(u32, ObjectMeta, Format, Option<Day>)> = listed
        .into_iter()
        .enumerate()
        .map(|(seq, (meta, format))| {
            let day = match prune::key_date(&meta.key) {
                Some(prune::KeyDate::Day(d)) => Some(d),
                _ => None,
            };
            (seq as u32, meta, format, day)
        })
        .collect();
    order.sort_by_key(|(seq, _, _, day)| (day.unwrap_or(Day::MIN), *seq));
    // complete_before[i]: days before it get no records from objects i+1.. .
    let mut complete_before = vec![Day::MAX; order.len()];
    for i in (0..order.len().saturating_sub(1)).rev() {
        complete_before[i] = match order[i + 1].3 {
            None => Day::MIN,
            Some(d) => d - 1,
        };
    }
    let objects_in_key_order = {
        let mut v: Vec<(u32, ObjectMeta)> = order.iter().map(|(s, m, _, _)| (*s, m.clone())).collect();
        v.sort_by_key(|(s, _)| *s);
        v.into_iter().map(|(_, m)| m).collect::<Vec<_>>()
    };

    // Objects are fetched `concurrency` at a time and parsed on up to
    // `parsers` blocking threads; results are consumed in order.
    let parsers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, MAX_PARSERS);
    let progress = crate::logging::progress_bar(order.len() as u64, "reading usage");
    // Objects in memory (fetched and not yet parsed) are also bounded by
    // size. Their share of the budget is taken in key order, so the first
    // object waiting always gets it, and given back once it is parsed, when
    // its buffer is kept to read a later object into.
    let budget = &tokio::sync::Semaphore::new(FETCH_AHEAD_KIB as usize);
    let spare = &std::sync::Mutex::new(Vec::new());
    let mut parsed = futures::stream::iter(order.into_iter().enumerate())
        .then(|(i, (seq, meta, format, day))| async move {
            let share = u32::try_from(meta.size.div_ceil(1024)).unwrap_or(u32::MAX).min(FETCH_AHEAD_KIB);
            let held = budget.acquire_many(share).await.expect("the budget is never closed");
            (i, seq, meta, format, day, held)
        })
        .map(|(i, seq, meta, format, day, held)| async move {
            let buf = spare.lock().expect("never poisoned").pop().unwrap_or_default();
            let data = store.get_into(&meta.key, buf).await;
            (i, seq, meta, format, day, data, held)
        })
        .buffered(opts.concurrency.max(1))
        .map(|(i, seq, meta, format, day, data, held)| async move {
            let parsed = match data {
                Ok(data) => {
                    let key = meta.key.clone();
                    let (parsed, data) =
                        tokio::task::spawn_blocking(move || (parse(&data, format, key, day, opts), data))
                            .await
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
                    spare.lock().expect("never poisoned").extend(crate::storage::recycle(data));
                    parsed
                }
                Err(e) => Err(IngestError::from(e)),
            };
            drop(held);
            (i, seq, meta, parsed)
        })
        .buffered(parsers)
        .boxed();

    let mut records = 0;
    let mut outside_month = 0;
    let mut buckets = Interner::default();
    while let Some((i, seq, meta, parsed)) = parsed.next().await {
        let sink = parsed?;
        outside_month += sink.outside;
        let (days, object_findings) = sink.finish(seq, accounts, &mut buckets).map_err(IngestError::from)?;
        findings.extend(object_findings);
        let n: usize = days.iter().map(DataFrame::height).sum();
        tracing::debug!(object = %meta.key, records = n, days = days.len(), "read usage object");
        records += n;
        progress.inc(1);
        crate::failpoint::reached("ingest");
        consume(Batch { days, object: meta.key, complete_before: complete_before[i] })?;
    }
    progress.finish_and_clear();
    Ok(Ingested { objects: objects_in_key_order, findings, pruned, records, outside_month })
}

/// Most KiB of objects fetched and not yet parsed, unless one object alone
/// is larger. Four 250 MB partner API exports: two being parsed, two read
/// ahead. More only costs memory: reading ahead is for waiting on S3, not for
/// keeping objects that parsers cannot take yet.
const FETCH_AHEAD_KIB: u32 = 1 << 20;

/// Most objects parsed at once: each holds its decoded records until it is
/// handed on, so more parsers cost memory without adding much speed.
const MAX_PARSERS: usize = 4;

/// Parses one object (on a blocking thread) into a sink of its records.
fn parse(
    data: &bytes::Bytes,
    format: Format,
    key: String,
    day: Option<Day>,
    opts: IngestOptions,
) -> Result<RecordSink, IngestError> {
    let mut sink = RecordSink::new(key, day, opts);
    match format {
        Format::Csv => text::read_csv(data.clone(), &mut sink),
        Format::JsonLines => text::read_json_lines(data, &mut sink),
        Format::Json => {
            if data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
                partner_api::read(data, &mut sink)
            } else {
                text::read_json_lines(data, &mut sink)
            }
        }
        Format::Parquet => parquet::read(data.clone(), &mut sink),
    }?;
    Ok(sink)
}
