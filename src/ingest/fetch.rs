//! Fetching a plan's objects: concurrency, the memory budget of objects
//! read ahead, parser threads, buffer recycling, and the streaming order
//! (objects without a day folder first, then by day) with the
//! [`Batch::complete_before`] promise that follows from it. Dispatches each
//! object to the reader of its format, with the run's names as they are
//! when its parsing begins, and hands objects on in order, when their new
//! names get run ids.
//!
//! It must not look inside records: what a record is and whether it is kept
//! belongs to the readers and the sink.

use futures::StreamExt;
use polars::prelude::DataFrame;

use std::sync::Arc;

use super::names::RunNames;
use super::sink::{Bounds, RecordSink};
use super::{Batch, IngestError, IngestOptions, Ingested, Plan, parquet, partner_api, row_groups, text};
use crate::formats::Format;
use std::collections::BTreeMap;

use crate::model::{BillingMonth, Day, Finding, FindingKind, Interner, date_of};
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
/// Account ids are interned into `accounts` (shared with the parsers
/// meanwhile, see [`super::names`]), which the caller hands on to metering.
pub async fn ingest<E: From<IngestError>>(
    store: &Store,
    plan: Plan,
    opts: IngestOptions,
    accounts: &mut Interner,
    mut consume: impl FnMut(Batch) -> Result<(), E>,
) -> Result<Ingested, E> {
    let Plan { objects: listed, mut findings, pruned } = plan;
    let objects_in_key_order: Vec<ObjectMeta> = listed.iter().map(|(meta, _)| meta.clone()).collect();
    let mut order = pieces(store, listed, opts).await?;
    order.sort_by_key(|p| (p.bounds.first_day(), p.seq, p.part.as_ref().map_or(0, |r| r.groups.start)));
    let complete_before = complete_before(&order.iter().map(|p| p.bounds.first_day()).collect::<Vec<_>>());

    // Objects are fetched `concurrency` at a time and parsed on up to
    // `parsers` blocking threads; results are consumed in order.
    let parsers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, MAX_PARSERS);
    let progress = crate::logging::progress_bar(order.len() as u64, "reading usage");
    // Objects in memory (fetched, or parsed and not yet handed on) are also
    // bounded by size. Their share of the budget is taken in key order, so
    // the first object waiting always gets it; once it is parsed its buffer
    // is kept to read a later object into, and the share is given back
    // when its records are handed on (they are larger than the bytes read).
    let largest = order.iter().map(Piece::size).max().unwrap_or(0);
    let fetch_ahead_kib = u32::try_from(opts.fetch_ahead(largest, parsers) / 1024).unwrap_or(u32::MAX).max(1);
    let budget = &tokio::sync::Semaphore::new(fetch_ahead_kib as usize);
    let spare = &std::sync::Mutex::new(Vec::new());
    let run_names = RunNames::new(std::mem::take(accounts));
    let names = &run_names;
    let mut parsed = futures::stream::iter(order.into_iter().enumerate())
        .then(|(i, piece)| async move {
            let share = u32::try_from(piece.size().div_ceil(1024)).unwrap_or(u32::MAX).min(fetch_ahead_kib);
            let held = budget.acquire_many(share).await.expect("the budget is never closed");
            (i, piece, held)
        })
        .map(|(i, piece, held)| async move {
            let buf = spare.lock().expect("never poisoned").pop().unwrap_or_default();
            let data = match &piece.part {
                Some(part) => store.get_range(&piece.meta.key, part.bytes.clone(), &piece.meta.etag, buf).await,
                None => store.get_version(&piece.meta.key, &piece.meta.etag, buf).await,
            };
            (i, piece, data, held)
        })
        .buffered(opts.concurrency.max(1))
        .map(|(i, piece, data, held)| async move {
            let parsed = match data {
                Ok(data) => {
                    let key = piece.meta.key.clone();
                    let (bounds, part, names) = (piece.bounds, piece.part.clone(), names.clone());
                    let (parsed, data) = tokio::task::spawn_blocking(move || {
                        (parse(&data, piece.format, key, bounds, part.as_deref(), opts, &names), data)
                    })
                    .await
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
                    spare.lock().expect("never poisoned").extend(crate::storage::recycle(data));
                    parsed
                }
                Err(e) => Err(IngestError::from(e)),
            };
            (i, piece.seq, piece.meta, parsed, held)
        })
        .buffered(parsers)
        .boxed();

    let mut records = 0;
    let mut outside_month = 0;
    // Per object: its records outside the month and their first and last day.
    let mut outside: BTreeMap<String, (u64, Day, Day)> = BTreeMap::new();
    let read = async {
        while let Some((i, seq, meta, parsed, held)) = parsed.next().await {
            let sink = parsed?;
            outside_month += sink.outside;
            if let Some((lo, hi)) = sink.outside_days {
                let o = outside.entry(meta.key.clone()).or_insert((0, lo, hi));
                *o = (o.0 + sink.outside, o.1.min(lo), o.2.max(hi));
            }
            let (days, object_findings) = sink.finish(seq).map_err(IngestError::from)?;
            findings.extend(object_findings);
            let n: usize = days.iter().map(DataFrame::height).sum();
            tracing::debug!(object = %meta.key, records = n, days = days.len(), "read usage object");
            records += n;
            progress.inc(1);
            crate::failpoint::reached("ingest");
            consume(Batch { days, object: meta.key, complete_before: complete_before[i] })?;
            drop(held);
        }
        Ok::<(), E>(())
    }
    .await;
    drop(parsed);
    *accounts = run_names.accounts.take();
    read?;
    progress.finish_and_clear();
    findings.extend(outside.into_iter().filter_map(|(key, (n, lo, hi))| unread_records(&key, n, lo, hi, opts.month)));
    Ok(Ingested { objects: objects_in_key_order, findings, pruned, records, outside_month })
}

/// Reads again those of the `objects` a first read read ([`Ingested::objects`])
/// that may hold records of `days` (their key names a day folder near one of
/// them, or no day), handing each one's records to `consume` as [`ingest`]
/// does. Which of the records are kept is the consumer's choice. The
/// findings and counts of this read are not returned: the first read
/// reported them.
pub async fn reread<E: From<IngestError>>(
    store: &Store,
    objects: &[ObjectMeta],
    days: &std::collections::BTreeSet<Day>,
    opts: IngestOptions,
    accounts: &mut Interner,
    consume: impl FnMut(Batch) -> Result<(), E>,
) -> Result<(), E> {
    let may_hold = |key: &str| Bounds::of_key(key).days().is_none_or(|(lo, hi)| days.range(lo..=hi).next().is_some());
    let objects = objects
        .iter()
        .filter(|meta| may_hold(&meta.key))
        .map(|meta| (meta.clone(), Format::of_key(&meta.key).expect("an object read has a usage format, as planned")))
        .collect();
    ingest(store, Plan { objects, findings: Vec::new(), pruned: 0 }, opts, accounts, consume).await.map(drop)
}

/// What a text object's first bytes say it is, when it is not UTF-8 text
/// (which every reader would otherwise report as a confusing first row).
fn not_text(data: &[u8]) -> Option<&'static str> {
    match data {
        [0xFF, 0xFE, ..] | [0xFE, 0xFF, ..] => {
            Some("UTF-16 text (as Windows tools save \"Unicode\" text; save it as UTF-8)")
        }
        [0x1F, 0x8B, ..] => {
            Some("gzip-compressed data (decompress it, or leave it named .gz: such objects are not read)")
        }
        [b'P', b'A', b'R', b'1', ..] => Some("a Parquet file (name it .parquet)"),
        _ => None,
    }
}

/// The finding for records of other months in object `key` (`n` of them,
/// from day `lo` to `hi`) when the run of one of those months would not
/// read it (its folder names another month, [`super::prune::key_may_hold`]):
/// those records are billed in no month unless the object moves. Records
/// that their own month's run reads (a day folder's midnight neighbours,
/// an undated object) are its to bill, and no finding.
fn unread_records(key: &str, n: u64, lo: Day, hi: Day, month: BillingMonth) -> Option<Finding> {
    let (first, last) = (BillingMonth::containing(date_of(lo)), BillingMonth::containing(date_of(hi)));
    let months: Vec<BillingMonth> = std::iter::successors(Some(first), |m| Some(m.next()))
        .take_while(|m| *m <= last)
        .filter(|m| *m != month && !super::prune::key_may_hold(key, *m))
        .collect();
    if months.is_empty() {
        return None;
    }
    let names: Vec<String> = months.iter().map(ToString::to_string).collect();
    let detail = format!(
        "{n} record{} from {} to {} fall outside {month}, and the run of {} does not read this object (its folder names another month): they are billed in no month; move the object under its month's folder and reprocess that month",
        if n == 1 { "" } else { "s" },
        date_of(lo),
        date_of(hi),
        names.join(" and ")
    );
    Some(Finding::new(FindingKind::UnreadRecords, key, detail))
}

/// For pieces in streaming order (by the first day each may hold), that
/// first day of each: `complete_before[i]` is the first day pieces `i+1..`
/// may still touch, the next one's. A day folder D may hold records of D−1
/// (a record at midnight, or the day before's export written after
/// midnight), so its first day is D−1; an object without a day folder or
/// statistics may hold any day, so nothing is complete before it is read;
/// after the last piece everything is.
fn complete_before(first_days: &[Day]) -> Vec<Day> {
    let mut complete = vec![Day::MAX; first_days.len()];
    for (i, &next) in first_days.iter().enumerate().skip(1) {
        complete[i - 1] = next;
    }
    complete
}

/// One read: a whole object, or some row groups of a Parquet object.
struct Piece {
    /// The object's position in key order.
    seq: u32,
    meta: ObjectMeta,
    format: Format,
    /// The days its records may fall on.
    bounds: Bounds,
    /// The row groups read, when not the whole object.
    part: Option<Arc<row_groups::RowGroups>>,
}

impl Piece {
    /// Bytes read.
    fn size(&self) -> u64 {
        self.part.as_ref().map_or(self.meta.size, |p| p.bytes.end - p.bytes.start)
    }
}

/// The plan's objects as the pieces they are read in, in key order.
///
/// A Parquet object without a day folder, or larger than a piece, is read
/// in runs of row groups of about a piece each, whose days the footer's
/// statistics tell: an export of a whole month, or files named by day in
/// one folder, are then streamed by day like day folders, and never held
/// whole. Every other object (and a Parquet object whose time column has
/// no statistics) is one piece.
async fn pieces(
    store: &Store,
    listed: Vec<(ObjectMeta, Format)>,
    opts: IngestOptions,
) -> Result<Vec<Piece>, IngestError> {
    let piece_bytes = opts.piece_bytes();
    let split = futures::stream::iter(listed.into_iter().enumerate().map(|(seq, (meta, format))| async move {
        let seq = seq as u32;
        let bounds = Bounds::of_key(&meta.key);
        let folder = matches!(bounds, Bounds::Folder(_));
        if format != Format::Parquet || (folder && meta.size <= piece_bytes) {
            return Ok(vec![Piece { seq, bounds, part: None, meta, format }]);
        }
        let parts = footer(store, &meta).await?.and_then(|m| row_groups::split(&m, meta.size, piece_bytes));
        // Pieces of a day folder must keep to its days; if they do not, the
        // object is read whole, and its records outside them are reported.
        let within = |p: &row_groups::RowGroups| bounds.days().is_none_or(|(lo, hi)| p.days.0 >= lo && p.days.1 <= hi);
        match parts {
            Some(parts) if !parts.is_empty() && parts.iter().all(within) => Ok(parts
                .into_iter()
                .map(|p| Piece {
                    seq,
                    meta: meta.clone(),
                    format,
                    bounds: Bounds::Statistics(p.days.0, p.days.1),
                    part: Some(Arc::new(p)),
                })
                .collect()),
            _ => Ok(vec![Piece { seq, bounds, part: None, meta, format }]),
        }
    }))
    .buffered(opts.concurrency.max(1))
    .collect::<Vec<Result<Vec<Piece>, IngestError>>>()
    .await;
    let mut pieces = Vec::new();
    for p in split {
        pieces.extend(p?);
    }
    Ok(pieces)
}

/// The footer of a Parquet object (`None` if it is not one; the reader
/// then says why).
async fn footer(
    store: &Store,
    meta: &ObjectMeta,
) -> Result<Option<Arc<::parquet::file::metadata::ParquetMetaData>>, IngestError> {
    let tail = |n: u64| store.get_range(&meta.key, meta.size - n.min(meta.size)..meta.size, &meta.etag, Vec::new());
    match row_groups::footer(&tail(row_groups::FOOTER_GUESS).await?, meta.size) {
        Ok(metadata) => Ok(metadata),
        Err(needed) => Ok(row_groups::footer(&tail(needed).await?, meta.size).unwrap_or(None)),
    }
}

/// Most objects parsed at once: each holds its decoded records until it is
/// handed on, so more parsers cost memory without adding much speed.
const MAX_PARSERS: usize = 4;

/// Parses one piece (on a blocking thread) into a sink of its records.
fn parse(
    data: &bytes::Bytes,
    format: Format,
    key: String,
    bounds: Bounds,
    part: Option<&row_groups::RowGroups>,
    opts: IngestOptions,
    names: &RunNames,
) -> Result<RecordSink, IngestError> {
    let mut sink = RecordSink::new(key, bounds, opts, names);
    // A UTF-8 byte order mark (Windows tools write one) is not part of the
    // JSON; the CSV reader skips it itself.
    let json = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    if format != Format::Parquet
        && let Some(what) = not_text(data)
    {
        return Err(sink.layout(format!("the object is {what}, not UTF-8 text: capbill reads text usage as UTF-8")));
    }
    match format {
        Format::Csv => text::read_csv(data.clone(), &mut sink),
        Format::JsonLines => text::read_json_lines(json, &mut sink),
        Format::Json => {
            if json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
                partner_api::read(json, &mut sink)
            } else {
                text::read_json_lines(json, &mut sink)
            }
        }
        Format::Parquet => match part {
            Some(part) => parquet::read_part(data.clone(), part, &mut sink),
            None => parquet::read(data.clone(), &mut sink),
        },
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
    let bounds = Bounds::of_key(key);
    let opts =
        IngestOptions { month, skip_bad_records, concurrency: 1, memory_budget: crate::config::DEFAULT_MEMORY_BUDGET };
    let sink = parse(&data, format, key.to_owned(), bounds, None, opts, &RunNames::default())?;
    let outside_month = sink.outside;
    let (days, findings) = sink.finish(0)?;
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
    fn text_that_is_not_utf8_says_what_it_is() {
        let month: BillingMonth = "2026-10".parse().unwrap();
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("date,storage_account_id,bytes\n".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        for (data, format, says) in [
            (utf16, Format::Csv, "UTF-16 text"),
            (vec![0x1F, 0x8B, 8, 0], Format::Csv, "gzip-compressed data"),
            (b"PAR1\0\0".to_vec(), Format::JsonLines, "a Parquet file"),
        ] {
            let e = parse_object(bytes::Bytes::from(data), format, "u/x.csv", month, false).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("not UTF-8 text"), "{e}");
        }
    }

    #[test]
    fn a_day_stays_open_while_a_later_folder_may_hold_it() {
        // October: a month folder, then the day folders of Sep 30, Oct 1,
        // Oct 30, Oct 31 and Nov 1 (which may hold Oct 31 records).
        let bounds = [
            Bounds::Any,
            Bounds::Folder(day("2026-09-30")),
            Bounds::Folder(day("2026-10-01")),
            Bounds::Folder(day("2026-10-30")),
            Bounds::Folder(day("2026-10-31")),
            Bounds::Folder(day("2026-11-01")),
        ];
        let c = complete_before(&bounds.map(Bounds::first_day));
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
            for later in &bounds[i + 1..] {
                if let Bounds::Folder(later) = later {
                    // Day `later - 1` is still open: it is not before `cb`.
                    assert!(
                        cb < *later,
                        "object {i} closes day {} before the folder of day {later} is read",
                        later - 1
                    );
                }
            }
        }
    }

    #[test]
    fn statistics_close_a_day_as_soon_as_no_later_piece_starts_before_it() {
        // Row groups of a month export (no folder): Oct 1–2, Oct 2, Oct 3.
        let bounds = [
            Bounds::Statistics(day("2026-10-01"), day("2026-10-02")),
            Bounds::Statistics(day("2026-10-02"), day("2026-10-02")),
            Bounds::Statistics(day("2026-10-03"), day("2026-10-03")),
        ];
        let c = complete_before(&bounds.map(Bounds::first_day));
        assert_eq!(c, [day("2026-10-02"), day("2026-10-03"), Day::MAX]);
    }

    #[test]
    fn nothing_is_complete_before_the_objects_without_a_day() {
        let first = |b: &[Bounds]| b.iter().map(|b| b.first_day()).collect::<Vec<_>>();
        let d5 = day("2026-10-05");
        assert_eq!(
            complete_before(&first(&[Bounds::Any, Bounds::Any, Bounds::Folder(d5)])),
            [Day::MIN, day("2026-10-04"), Day::MAX]
        );
        assert_eq!(complete_before(&[]), Vec::<Day>::new());
        assert_eq!(complete_before(&first(&[Bounds::Folder(d5)])), [Day::MAX]);
    }
}
