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
use crate::model::{Day, Finding, Interner};
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
    let complete_before = complete_before(&order.iter().map(|o| o.3).collect::<Vec<_>>());
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

/// For objects in streaming order, given the day folder of each (`None`
/// first, then by day), the day before which no object after each one can
/// add records: `complete_before[i]` is the first day objects `i+1..` may
/// still touch. A day folder D may hold records of D−1 (a record at
/// midnight, or the day before's export written after midnight), so the
/// next object's day minus one stays open; after an object without a day
/// folder (which may hold any day) nothing is complete; after the last
/// object everything is.
fn complete_before(days: &[Option<Day>]) -> Vec<Day> {
    let mut complete = vec![Day::MAX; days.len()];
    for (i, next) in days.iter().enumerate().skip(1) {
        complete[i - 1] = next.map_or(Day::MIN, |d| d - 1);
    }
    complete
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

/// What [`parse_object`] read from one object.
#[derive(Debug)]
pub struct ParsedObject {
    /// Records of the month kept.
    pub records: usize,
    /// Records read that fall outside the month (counted, not kept).
    pub outside_month: u64,
    /// Malformed records skipped (only with `skip_bad_records`).
    pub findings: Vec<Finding>,
}

/// The per-object entry point: parses one usage object's bytes as `format`
/// exactly as a run does (the day partition taken from `key`'s folders, the
/// same sink and bad-record policy), without storage, ordering or
/// interners shared with other objects. Every record of the object is
/// either kept, counted as outside the month, or (with `skip_bad_records`)
/// a finding; otherwise the error names the object. For tests and tools
/// that check one object; a run goes through [`ingest`].
pub fn parse_object(
    data: bytes::Bytes,
    format: Format,
    key: &str,
    month: crate::model::BillingMonth,
    skip_bad_records: bool,
) -> Result<ParsedObject, IngestError> {
    let day = match prune::key_date(key) {
        Some(prune::KeyDate::Day(d)) => Some(d),
        _ => None,
    };
    let opts = IngestOptions { month, skip_bad_records, concurrency: 1 };
    let sink = parse(&data, format, key.to_owned(), day, opts)?;
    let outside_month = sink.outside;
    let (days, findings) = sink.finish(0, &mut Interner::default(), &mut Interner::default())?;
    Ok(ParsedObject { records: days.iter().map(DataFrame::height).sum(), outside_month, findings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::day_of;

    fn day(s: &str) -> Day {
        day_of(chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap())
    }

    #[test]
    fn a_day_stays_open_while_a_later_folder_may_hold_it() {
        // October: a month folder, then the day folders of Sep 30, Oct 1,
        // Oct 30, Oct 31 and Nov 1 (which may hold Oct 31 records).
        let days = [
            None,
            Some(day("2026-09-30")),
            Some(day("2026-10-01")),
            Some(day("2026-10-30")),
            Some(day("2026-10-31")),
            Some(day("2026-11-01")),
        ];
        let c = complete_before(&days);
        // Nothing is complete while objects of any day may follow.
        assert_eq!(c[0], day("2026-09-29"));
        // Oct 1 stays open after Sep 30's folder (which may hold it): Oct
        // 1's folder is still to come. After it, Oct 30's folder comes
        // next, which may hold Oct 29.
        assert_eq!(c[1], day("2026-09-30"));
        assert_eq!(c[2], day("2026-10-29"));
        // Oct 31 stays open after its own folder: Nov 1's may hold Oct 31.
        assert_eq!(c[3], day("2026-10-30"));
        assert_eq!(c[4], day("2026-10-31"));
        assert_eq!(c[5], Day::MAX);
        // Each day stays open until every folder that may hold it is read.
        for (i, &cb) in c.iter().enumerate() {
            for later in days[i + 1..].iter().flatten() {
                // Day `later - 1` is still open: it is not before `cb`.
                assert!(cb < *later, "object {i} closes day {} before the folder of day {later} is read", later - 1);
            }
        }
    }

    #[test]
    fn nothing_is_complete_before_the_objects_without_a_day() {
        assert_eq!(complete_before(&[None, None, Some(day("2026-10-05"))]), [Day::MIN, day("2026-10-04"), Day::MAX]);
        assert_eq!(complete_before(&[]), Vec::<Day>::new());
        assert_eq!(complete_before(&[Some(day("2026-10-05"))]), [Day::MAX]);
    }
}
